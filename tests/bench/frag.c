/*
 * frag.c - fragmentation: allocate many small blocks (16-512 B), free 90 %
 * of them at random, then allocate larger blocks (1-4 KiB) worth as many
 * bytes as were freed.  Size-class allocators cannot reuse the freed small
 * blocks for the larger sizes; the interesting number is the RSS at the
 * end, printed as rss_end_kb beside the peak.
 */
#include <string.h>

#include "bench.h"

int main(int argc, char **argv)
{
	long n = (long)(5e5 * bench_scale(argc, argv));
	uint64_t s = 0x5eed5eed5eedull;
	void **small = malloc((size_t)n * sizeof(void *));
	size_t *sizes = malloc((size_t)n * sizeof(size_t));
	size_t freed = 0;

	double t0 = bench_now();
	for (long i = 0; i < n; i++) {
		sizes[i] = 16 + (size_t)(bench_rng(&s) % 497);
		small[i] = malloc(sizes[i]);
		memset(small[i], 1, sizes[i]);
	}
	long rss_full = bench_rss_kb();
	for (long i = 0; i < n; i++) {
		if (bench_rng(&s) % 10 != 0) {
			free(small[i]);
			small[i] = NULL;
			freed += sizes[i];
		}
	}
	long rss_freed = bench_rss_kb();
	long nbig = 0, cap = 1024;
	void **big = malloc((size_t)cap * sizeof(void *));
	for (size_t got = 0; got < freed; nbig++) {
		if (nbig == cap) {
			cap *= 2;
			big = realloc(big, (size_t)cap * sizeof(void *));
		}
		size_t sz = 1024 + (size_t)(bench_rng(&s) % 3073);
		big[nbig] = malloc(sz);
		memset(big[nbig], 2, sz);
		got += sz;
	}
	long rss_end = bench_rss_kb();
	double wall = bench_now() - t0;
	char extra[160];
	snprintf(extra, sizeof(extra), "rss_full_kb=%ld rss_after_free_kb=%ld rss_end_kb=%ld live_mb=%zu",
		 rss_full, rss_freed, rss_end, (freed / 9 + freed) >> 20);
	bench_result("frag", wall, n + nbig, extra);
	for (long i = 0; i < n; i++)
		free(small[i]);
	for (long i = 0; i < nbig; i++)
		free(big[i]);
	free(big);
	free(small);
	free(sizes);
	return 0;
}
