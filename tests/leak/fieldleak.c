/*
 * fieldleak.c - a target built the way device firmware is: -O2 -g, no
 * -rdynamic, leaking from static functions, some through strdup.  The
 * symbolization tests strip it, run it under the preload and check that
 * the report, and the CLI with --sysroot or --debug-dir, name each site.
 *
 *   fieldleak     prints "SITE <function> <line>" for each leaking call
 *                 (the line of the allocation call), then "READY <pid>",
 *                 and waits for stdin EOF (bounded by alarm(60)).
 *
 * Sites:  leak_alpha 4 x 300 bytes (malloc), leak_beta 2 x 700 (calloc),
 *         dup_one 3 x strdup of 24 bytes, dup_two 5 x strdup of 40 bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noclone))

static void *volatile sink[32];
static volatile unsigned next;

static void keep(void *p)
{
	sink[next++ % 32] = p;
}

NOINLINE static void leak_alpha(int n)
{
	printf("SITE leak_alpha %d\n", __LINE__ + 2);
	for (int i = 0; i < n; i++)
		keep(malloc(300));
}

NOINLINE static void leak_beta(int n)
{
	printf("SITE leak_beta %d\n", __LINE__ + 2);
	for (int i = 0; i < n; i++)
		keep(calloc(1, 700));
}

NOINLINE static void dup_one(int n)
{
	printf("SITE dup_one %d\n", __LINE__ + 2);
	for (int i = 0; i < n; i++)
		keep(strdup("twenty-three characters"));
}

NOINLINE static void dup_two(int n)
{
	printf("SITE dup_two %d\n", __LINE__ + 2);
	for (int i = 0; i < n; i++)
		keep(strdup("a string of thirty-nine characters ...."));
}

int main(void)
{
	static char outbuf[4096];   /* so that printf allocates nothing in the leak functions */
	char buf[64];

	setvbuf(stdout, outbuf, _IOLBF, sizeof(outbuf));
	alarm(60);
	leak_alpha(4);
	leak_beta(2);
	dup_one(3);
	dup_two(5);
	printf("READY %d\n", (int)getpid());
	fflush(stdout);
	while (fgets(buf, sizeof(buf), stdin))
		;
	return 0;
}
