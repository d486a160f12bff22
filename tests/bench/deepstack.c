/*
 * deepstack.c - a daemon-like loop whose allocations happen 12-23 frames
 * deep (request dispatch -> handler chain -> parser -> allocation), from a
 * few hundred distinct call paths, with a live set that turns over.  It is
 * the tracking-cost workload: every allocation needs a backtrace of that
 * depth.  Built with frame pointers and no inlining of the chain.
 */
#include <string.h>

#include "bench.h"

#define LIVE 4096

static void *live[LIVE];
static uint64_t seed = 0x0ddba11cafef00dull;
static volatile long sink;

__attribute__((noinline)) static void leaf(int variant)
{
	uint64_t r = bench_rng(&seed);
	unsigned k = (unsigned)(r % LIVE);
	free(live[k]);
	size_t size = 16 + (size_t)((r >> 16) % (variant & 1 ? 240 : 2000));
	live[k] = malloc(size);
	bench_touch(live[k], (unsigned char)variant);
	/* a short-lived temporary too, like a parse buffer */
	char *tmp = malloc(32 + (r >> 40) % 96);
	tmp[0] = 1;
	sink += tmp[0];
	free(tmp);
}

/* Two kinds of frame, so the stacks differ by path and not only by depth. */
__attribute__((noinline)) static void step_a(int depth, int variant);
__attribute__((noinline)) static void step_b(int depth, int variant);

__attribute__((noinline)) static void step_a(int depth, int variant)
{
	volatile char pad[32];
	pad[0] = (char)depth;
	if (depth <= 0)
		leaf(variant);
	else if ((variant >> (depth & 7)) & 1)
		step_b(depth - 1, variant);
	else
		step_a(depth - 1, variant);
	sink += pad[0];
}

__attribute__((noinline)) static void step_b(int depth, int variant)
{
	volatile char pad[48];
	pad[0] = (char)depth;
	if (depth <= 0)
		leaf(variant);
	else if ((variant >> (depth & 7)) & 2)
		step_a(depth - 1, variant);
	else
		step_b(depth - 1, variant);
	sink += pad[1 + (depth & 1)];
}

int main(int argc, char **argv)
{
	long n = (long)(1.5e6 * bench_scale(argc, argv));
	uint64_t s = 42;

	double t0 = bench_now();
	for (long i = 0; i < n; i++) {
		uint64_t r = bench_rng(&s);
		/* main + dispatch chain: depth 10..21 here, plus leaf and malloc = 12..23 */
		int depth = 10 + (int)(r % 12);
		step_a(depth, (int)((r >> 8) & 255));
	}
	for (int k = 0; k < LIVE; k++)
		free(live[k]);
	bench_result("deepstack", bench_now() - t0, n * 2, NULL);
	return 0;
}
