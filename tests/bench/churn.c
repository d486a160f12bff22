/*
 * churn.c - single-thread small-object churn: a live set of 8192 blocks of
 * 8-512 B; each step frees a random block and allocates a new one of random
 * size.  The allocator's fast path, and nothing else.
 */
#include "bench.h"

int main(int argc, char **argv)
{
	enum { LIVE = 8192 };
	static void *slot[LIVE];
	long n = (long)(12e6 * bench_scale(argc, argv));
	uint64_t s = 0x12345678abcdefull;

	double t0 = bench_now();
	for (long i = 0; i < n; i++) {
		uint64_t r = bench_rng(&s);
		unsigned k = (unsigned)(r % LIVE);
		free(slot[k]);
		size_t size = 8 + (size_t)((r >> 20) % 505);
		slot[k] = malloc(size);
		bench_touch(slot[k], (unsigned char)i);
	}
	for (unsigned k = 0; k < LIVE; k++)
		free(slot[k]);
	bench_result("churn", bench_now() - t0, n, NULL);
	return 0;
}
