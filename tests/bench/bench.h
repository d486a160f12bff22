/*
 * bench.h - shared by the benchmark programs: a fast PRNG, a wall clock,
 * and the one result line scripts/bench parses:
 *
 *   RESULT workload=<name> wall_s=<seconds> maxrss_kb=<peak RSS> ops=<n> [extra]
 *
 * Every program takes an optional scale factor (argv[1], default 1.0) that
 * multiplies its iteration count, so the driver can run smaller versions
 * under slow tools (heaptrack, valgrind).
 */
#ifndef GWMEM_BENCH_H
#define GWMEM_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t bench_rng(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static inline double bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline double bench_scale(int argc, char **argv)
{
	double s = argc > 1 ? atof(argv[1]) : 1.0;
	return s > 0 ? s : 1.0;
}

/*
 * Peak RSS of this program: VmHWM from /proc/self/status.  Not getrusage's
 * ru_maxrss: Linux carries that across execve, so a program started by a
 * big parent (the Python driver) would report the parent's peak.
 */
static inline long bench_maxrss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	}
	if (f)
		fclose(f);
	if (kb < 0) {
		struct rusage ru;
		getrusage(RUSAGE_SELF, &ru);
		kb = ru.ru_maxrss;
	}
	return kb;
}

/* Resident set size now (not the peak), from /proc/self/statm. */
static inline long bench_rss_kb(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static inline void bench_result(const char *name, double wall, long ops, const char *extra)
{
	printf("RESULT workload=%s wall_s=%.4f maxrss_kb=%ld ops=%ld%s%s\n", name, wall,
	       bench_maxrss_kb(), ops, extra ? " " : "", extra ? extra : "");
	fflush(stdout);
}

/* Keep the optimizer from dropping a store to memory nobody reads. */
static inline void bench_touch(void *p, unsigned char v)
{
	*(volatile unsigned char *)p = v;
}

#endif
