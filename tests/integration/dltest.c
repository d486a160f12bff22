/*
 * dltest.c - dlopen/dlclose of a module that allocates in its constructor,
 * memory passed both ways across the module boundary, and dlerror() (which
 * allocates inside libc) for a missing library.
 *
 *   dltest /path/to/plugin.so [rounds]
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: dltest PLUGIN [rounds]\n");
		return 2;
	}
	int rounds = argc > 2 ? atoi(argv[2]) : 50;
	int bad = 0, errs = 0;

	for (int r = 0; r < rounds; r++) {
		void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
		if (!h) {
			fprintf(stderr, "dlopen: %s\n", dlerror());
			return 1;
		}
		char *(*describe)(int) = (char *(*)(int))dlsym(h, "plugin_describe");
		void (*take)(void *) = (void (*)(void *))dlsym(h, "plugin_take");
		int (*check)(void) = (int (*)(void))dlsym(h, "plugin_check");
		if (!describe || !take || !check) {
			fprintf(stderr, "dlsym failed\n");
			return 1;
		}
		bad += !check();
		for (int i = 0; i < 20; i++) {
			char *s = describe(i + r);
			if (!s || strlen(s) != (size_t)(63 + i + r))
				bad++;
			free(s);			/* module memory freed here */
			char *mine = malloc(100 + (size_t)i * 50);
			take(mine);			/* our memory freed there */
		}
		if (dlclose(h) != 0)
			bad++;
		if (!dlopen("libgwmem-does-not-exist.so.9", RTLD_NOW) && dlerror())
			errs++;
	}
	printf("dlopen: %d dlopen/dlclose rounds, 20 cross-module malloc/free each, %d dlerror "
	       "messages; %d failures\n", rounds, errs, bad);
	return bad || errs != rounds ? 1 : 0;
}
