/*
 * leaky.c - a target with known allocation sites, run under the preload by
 * the leak-suite drivers.
 *
 *   leaky sites    known leaks, then "READY <pid>" and wait for stdin EOF:
 *                    leak_small      10 x 24 bytes
 *                    leak_big         3 x 5000 bytes
 *                    leak_threaded    7 x 100 bytes in each of two threads
 *                    churn_all       50 x 64 bytes, all freed (must not show)
 *                    cache_fill       5 x 200 bytes (calloc), kept reachable
 *   leaky churn    two threads malloc/free until stdin closes
 *   leaky million N  N live allocations (hold_a, hold_b) and a churning thread
 *   leaky grow     each stdin line "grow" leaks 10 x 128 bytes in leak_grow,
 *                  answered by "GREW"
 * Every wait is bounded by alarm(60).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noclone, visibility("default")))

static void *volatile sink[64];
static void *cache[5];
static volatile int stop;

NOINLINE void leak_small(void)
{
	for (int i = 0; i < 10; i++)
		sink[i % 64] = malloc(24);
}

NOINLINE void leak_big(void)
{
	for (int i = 0; i < 3; i++)
		sink[i % 64] = malloc(5000);
}

NOINLINE void leak_threaded(void)
{
	for (int i = 0; i < 7; i++)
		sink[i % 64] = malloc(100);
}

NOINLINE void churn_all(void)
{
	void *p[50];
	for (int i = 0; i < 50; i++)
		p[i] = malloc(64);
	for (int i = 0; i < 50; i++)
		free(p[i]);
}

NOINLINE void cache_fill(void)
{
	for (int i = 0; i < 5; i++)
		cache[i] = calloc(1, 200);
}

NOINLINE void leak_grow(void)
{
	for (int i = 0; i < 10; i++)
		sink[i % 64] = malloc(128);
}

NOINLINE void hold_a(void **v, long n)
{
	for (long i = 0; i < n; i++)
		v[i] = malloc(16 + (size_t)(i % 4) * 8);
}

NOINLINE void hold_b(void **v, long n)
{
	for (long i = 0; i < n; i++)
		v[i] = malloc(48);
}

static void *thread_main(void *arg)
{
	(void)arg;
	leak_threaded();
	return NULL;
}

static void *churn_main(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	void *slots[256] = { 0 };

	while (!stop) {
		for (int i = 0; i < 1000; i++) {
			unsigned k = (seed = seed * 1103515245u + 12345u) >> 16;
			unsigned idx = k % 256;
			free(slots[idx]);
			slots[idx] = malloc(16 + k % 2000);
		}
	}
	for (int i = 0; i < 256; i++)
		free(slots[i]);
	return NULL;
}

static void wait_eof(void)
{
	char line[64];
	while (fgets(line, sizeof(line), stdin))
		;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "sites";
	pthread_t t[2];

	alarm(60);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(mode, "sites") == 0) {
		leak_small();
		leak_big();
		for (int i = 0; i < 2; i++)
			pthread_create(&t[i], NULL, thread_main, NULL);
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		churn_all();
		cache_fill();
		printf("READY %d\n", (int)getpid());
		wait_eof();
		for (int i = 0; i < 5; i++)
			free(cache[i]);
	} else if (strcmp(mode, "churn") == 0) {
		for (int i = 0; i < 2; i++)
			pthread_create(&t[i], NULL, churn_main, (void *)(uintptr_t)(i + 1));
		printf("READY %d\n", (int)getpid());
		wait_eof();
		stop = 1;
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
	} else if (strcmp(mode, "grow") == 0) {
		char line[64];
		printf("READY %d\n", (int)getpid());
		while (fgets(line, sizeof(line), stdin)) {
			if (strncmp(line, "grow", 4) == 0) {
				leak_grow();
				printf("GREW\n");
			}
		}
	} else if (strcmp(mode, "million") == 0) {
		/* argv[2] live allocations from two sites, while a thread keeps churning */
		long n = argc > 2 ? atol(argv[2]) : 1000000;
		void **v = calloc((size_t)n, sizeof(*v));
		hold_a(v, n / 2);
		hold_b(v + n / 2, n - n / 2);
		pthread_create(&t[0], NULL, churn_main, (void *)(uintptr_t)7);
		printf("READY %d\n", (int)getpid());
		wait_eof();
		stop = 1;
		pthread_join(t[0], NULL);
	} else {
		fprintf(stderr, "usage: leaky sites|churn|grow\n");
		return 2;
	}
	return 0;
}
