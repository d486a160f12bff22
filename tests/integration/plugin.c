/*
 * plugin.c - a shared module for dltest: it allocates in its constructor,
 * keeps a thread-local buffer, and hands out and takes back memory across
 * the module boundary.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* the project builds with -fvisibility=hidden: export the entry points */
#define PLUGIN_API __attribute__((visibility("default")))

PLUGIN_API char *plugin_describe(int n);
PLUGIN_API void plugin_take(void *p);
PLUGIN_API int plugin_check(void);

static char *ctor_buf;
static __thread char *tls_buf;

__attribute__((constructor)) static void plugin_init(void)
{
	ctor_buf = malloc(4096);
	if (ctor_buf)
		memset(ctor_buf, 'p', 4095), ctor_buf[4095] = 0;
}

__attribute__((destructor)) static void plugin_fini(void)
{
	free(ctor_buf);
}

char *plugin_describe(int n)
{
	if (!tls_buf)
		tls_buf = calloc(1, 256);
	char *s = malloc(64 + (size_t)n);
	if (s)
		memset(s, 'a' + n % 26, 63 + (size_t)n), s[63 + n] = 0;
	return s;
}

void plugin_take(void *p)
{
	free(p);
}

int plugin_check(void)
{
	return ctor_buf && strlen(ctor_buf) == 4095;
}
