/*
 * libcint.c - memory that libc allocates for itself, served and freed by the
 * interposed malloc: stdio buffers, strdup/asprintf/getline/open_memstream,
 * getaddrinfo and getpwnam (NSS), qsort (merge sort buffer), regcomp,
 * scandir, newlocale, and thread start/exit (TLS, stacks, dtv).
 */
#include <dirent.h>
#include <locale.h>
#include <netdb.h>
#include <pthread.h>
#include <pwd.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int failures;
#define CHECK(c, what)                                                       \
	do {                                                                 \
		if (!(c)) {                                                  \
			failures++;                                          \
			fprintf(stderr, "FAIL %s:%d: %s (%s)\n", __FILE__, __LINE__, #c, what); \
		}                                                            \
	} while (0)

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

static void *thread_fn(void *arg)
{
	char *s = strdup((const char *)arg);
	char *t = NULL;
	if (asprintf(&t, "%s-%s", s, s) < 0)
		t = NULL;
	free(s);
	return t;
}

static void test_stdio(void)
{
	char path[] = "/tmp/gwmem-libcint-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0, "mkstemp");
	if (fd < 0)
		return;
	close(fd);
	for (int round = 0; round < 20; round++) {
		FILE *f = fopen(path, "w");
		CHECK(f != NULL, "fopen w");
		if (!f)
			break;
		for (int i = 0; i < 2000; i++)
			fprintf(f, "line %d %s\n", i, round % 2 ? "odd" : "even");
		fclose(f);
		f = fopen(path, "r");
		CHECK(f != NULL, "fopen r");
		if (!f)
			break;
		char *line = NULL;
		size_t cap = 0;
		int n = 0;
		while (getline(&line, &cap, f) > 0)
			n++;
		free(line);
		fclose(f);
		CHECK(n == 2000, "getline count");
	}
	unlink(path);

	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	CHECK(m != NULL, "open_memstream");
	if (m) {
		for (int i = 0; i < 10000; i++)
			fprintf(m, "%d,", i);
		fclose(m);
		CHECK(len > 40000 && buf && strncmp(buf, "0,1,2,", 6) == 0, "memstream contents");
		free(buf);
	}
}

static void test_strings(void)
{
	for (int i = 0; i < 10000; i++) {
		char *s = strdup("the quick brown fox");
		char *t = strndup(s, 9);
		char *u = NULL;
		CHECK(asprintf(&u, "%s/%d/%s", t, i, s) > 0, "asprintf");
		CHECK(strcmp(t, "the quick") == 0, "strndup");
		free(s);
		free(t);
		free(u);
	}
}

static void test_nss(void)
{
	struct addrinfo hints = { 0 }, *res = NULL;
	hints.ai_socktype = SOCK_STREAM;
	int rc = getaddrinfo("localhost", "80", &hints, &res);
	CHECK(rc == 0 && res != NULL, "getaddrinfo(localhost)");
	if (rc == 0)
		freeaddrinfo(res);
	rc = getaddrinfo("127.0.0.1", "8883", &hints, &res);
	CHECK(rc == 0 && res != NULL, "getaddrinfo(127.0.0.1)");
	if (rc == 0)
		freeaddrinfo(res);
	for (int i = 0; i < 50; i++) {
		struct passwd *pw = getpwnam("root");
		CHECK(pw && pw->pw_uid == 0, "getpwnam(root)");
		pw = getpwuid(0);
		CHECK(pw && strcmp(pw->pw_name, "root") == 0, "getpwuid(0)");
	}
}

static void test_qsort_regex_dir(void)
{
	enum { N = 200000 };	/* large enough for glibc's malloc'd merge buffer */
	int *v = malloc(N * sizeof(int));
	CHECK(v != NULL, "malloc");
	if (v) {
		for (int i = 0; i < N; i++)
			v[i] = (int)((i * 2654435761u) % 1000003u);
		qsort(v, N, sizeof(int), cmp_int);
		int sorted = 1;
		for (int i = 1; i < N; i++)
			sorted &= v[i - 1] <= v[i];
		CHECK(sorted, "qsort");
		free(v);
	}
	for (int i = 0; i < 200; i++) {
		regex_t re;
		CHECK(regcomp(&re, "^gw(mem|demo)-[0-9]+(\\.[a-z]+)*$", REG_EXTENDED) == 0, "regcomp");
		CHECK(regexec(&re, "gwmem-42.so.x", 0, NULL, 0) == 0, "regexec match");
		CHECK(regexec(&re, "gwmem-x", 0, NULL, 0) != 0, "regexec no match");
		regfree(&re);
	}
	struct dirent **names = NULL;
	int n = scandir("/proc/self", &names, NULL, alphasort);
	CHECK(n > 5, "scandir /proc/self");
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	locale_t l = newlocale(LC_ALL_MASK, "C", (locale_t)0);
	CHECK(l != (locale_t)0, "newlocale");
	if (l)
		freelocale(l);
}

static void test_threads(void)
{
	for (int round = 0; round < 8; round++) {
		pthread_t t[16];
		for (int i = 0; i < 16; i++)
			CHECK(pthread_create(&t[i], NULL, thread_fn, "thread") == 0, "pthread_create");
		for (int i = 0; i < 16; i++) {
			void *r = NULL;
			pthread_join(t[i], &r);
			CHECK(r && strcmp(r, "thread-thread") == 0, "thread result");
			free(r);
		}
	}
	/* detached threads exit on their own */
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	for (int i = 0; i < 16; i++) {
		pthread_t t;
		CHECK(pthread_create(&t, &a, thread_fn, "x") == 0, "detached");
	}
	pthread_attr_destroy(&a);
	usleep(50000);
}

int main(void)
{
	test_stdio();
	test_strings();
	test_nss();
	test_qsort_regex_dir();
	test_threads();
	printf("libc: stdio/getline/open_memstream, strdup/strndup/asprintf, getaddrinfo(localhost), "
	       "getpwnam/getpwuid, qsort of 200000, regcomp, scandir, newlocale, 144 threads; "
	       "%d failures\n", failures);
	return failures ? 1 : 0;
}
