/*
 * xthread.c - two-thread producer/consumer with cross-thread free: the
 * producer allocates messages of 16-1024 B (one in 16 of 1-8 KiB) and
 * passes them through a single-producer/single-consumer ring; the consumer
 * reads and frees them.  Every free is a remote free.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "bench.h"

#define RING 4096

static void *ring[RING];
static atomic_ulong head, tail;	/* head: next to write; tail: next to read */
static long total;

static void *consumer(void *arg)
{
	unsigned long sum = 0;
	(void)arg;
	for (long i = 0; i < total; i++) {
		unsigned long t = atomic_load_explicit(&tail, memory_order_relaxed);
		while (atomic_load_explicit(&head, memory_order_acquire) == t)
			sched_yield();
		unsigned char *m = ring[t % RING];
		sum += m[0];
		free(m);
		atomic_store_explicit(&tail, t + 1, memory_order_release);
	}
	return (void *)(uintptr_t)sum;
}

int main(int argc, char **argv)
{
	uint64_t s = 0xfeedfacecafebeefull;
	pthread_t c;

	total = (long)(1e6 * bench_scale(argc, argv));
	double t0 = bench_now();
	pthread_create(&c, NULL, consumer, NULL);
	for (long i = 0; i < total; i++) {
		uint64_t r = bench_rng(&s);
		size_t size = (r & 15) == 0 ? 1024 + (r >> 8) % 7168 : 16 + (r >> 8) % 1009;
		unsigned char *m = malloc(size);
		m[0] = (unsigned char)i;
		m[size - 1] = 1;
		unsigned long h = atomic_load_explicit(&head, memory_order_relaxed);
		while (h - atomic_load_explicit(&tail, memory_order_acquire) >= RING)
			sched_yield();
		ring[h % RING] = m;
		atomic_store_explicit(&head, h + 1, memory_order_release);
	}
	pthread_join(c, NULL);
	bench_result("xthread", bench_now() - t0, total, NULL);
	return 0;
}
