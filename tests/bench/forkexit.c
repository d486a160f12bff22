/*
 * forkexit.c - the cost of fork for a child that calls _exit at once
 * without allocating (what a fork+exec helper, system() or a shell's
 * builtin subshell costs before its exec): the parent holds 2,000 live
 * blocks, or argv[2] (so a tracked segment has records to copy), allocates and frees
 * a few between forks like a program doing work, forks, and waits for the
 * child.  scripts/bench-fork --forkexit runs it side by side.
 */
#include <string.h>
#include <sys/wait.h>

#include "bench.h"

int main(int argc, char **argv)
{
	long n = (long)(4000 * bench_scale(argc, argv));
	/* argv[2]: live blocks (default 2,000); a tracked fork's cost used to
	 * grow with them */
	long nlive = argc > 2 ? atol(argv[2]) : 2000;
	void **live;
	uint64_t s = 0xf04cf04cull;

	if (nlive < 1 || nlive > 10000000 || !(live = calloc((size_t)nlive, sizeof(*live)))) {
		fprintf(stderr, "forkexit: live blocks: 1 to 10000000\n");
		return 2;
	}

	for (long i = 0; i < nlive; i++) {
		live[i] = malloc(16 + (size_t)(bench_rng(&s) % 240));
		memset(live[i], 1, 16);
	}
	double t0 = bench_now();
	for (long i = 0; i < n; i++) {
		/* a little work between forks: one block replaced */
		long k = (long)(bench_rng(&s) % (uint64_t)nlive);
		free(live[k]);
		live[k] = malloc(16 + (size_t)(bench_rng(&s) % 240));
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		if (pid < 0 || waitpid(pid, NULL, 0) != pid) {
			fprintf(stderr, "forkexit: fork or wait failed\n");
			return 1;
		}
	}
	double wall = bench_now() - t0;
	for (long i = 0; i < nlive; i++)
		free(live[i]);
	free(live);
	bench_result("forkexit", wall, n, NULL);
	return 0;
}
