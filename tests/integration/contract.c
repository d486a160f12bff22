/*
 * contract.c - the malloc family's contract, one part per subcommand.
 *
 *   contract align | errno | overflow | realloc | memalign | usable | free | all
 *
 * Run with and without LD_PRELOAD=libgwmem-preload.so: every check holds on
 * glibc, so the same program checks that the interposer keeps the contract.
 * Each subcommand prints what it checked; any failure prints the check and
 * makes the exit status 1.  Built with -fno-builtin so the compiler does not
 * fold away calls whose result it thinks it knows (malloc(SIZE_MAX)).
 */
#include <errno.h>
#include <malloc.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
static unsigned long checks;

#define CHECK(cond, ...)                                                    \
	do {                                                                \
		checks++;                                                   \
		if (!(cond)) {                                              \
			failures++;                                         \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                       \
			fputc('\n', stderr);                                \
			if (failures > 20)                                  \
				exit(1);                                    \
		}                                                           \
	} while (0)

#define MAX_ALIGN alignof(max_align_t)

/* Sizes the compiler cannot see through. */
static volatile size_t vsize_max = SIZE_MAX;
static volatile size_t vptrdiff_max1 = (size_t)PTRDIFF_MAX + 1;

static int is_aligned(const void *p, size_t a)
{
	return ((uintptr_t)p & (a - 1)) == 0;
}

static unsigned char pattern(size_t i, size_t salt)
{
	return (unsigned char)((i * 131u + salt * 7u + 1u) & 0xff);
}

static void fill(unsigned char *p, size_t n, size_t salt)
{
	for (size_t i = 0; i < n; i++)
		p[i] = pattern(i, salt);
}

static size_t first_bad(const unsigned char *p, size_t n, size_t salt)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != pattern(i, salt))
			return i;
	return n;
}

static const size_t big_sizes[] = {
	4097, 8191, 8192, 16383, 16384, 16385, 32768, 65535, 65536, 65537,
	131071, 131072, 131073, 262144, 1 << 20, (1 << 20) + 1, 4 << 20, 64 << 20,
};
#define NBIG (sizeof(big_sizes) / sizeof(big_sizes[0]))

/* --- align: every size 0..4096 live at once, plus large ones ----------- */

static void test_align(void)
{
	enum { N = 4097 };
	static unsigned char *blocks[N];

	for (size_t n = 0; n < N; n++) {
		blocks[n] = malloc(n);
		CHECK(blocks[n] != NULL || n == 0, "malloc(%zu) returned NULL", n);
		CHECK(is_aligned(blocks[n], MAX_ALIGN), "malloc(%zu) = %p not %zu-aligned", n,
		      (void *)blocks[n], MAX_ALIGN);
		if (blocks[n])
			fill(blocks[n], n, n);
	}
	/* Blocks that overlap would have overwritten each other's pattern. */
	for (size_t n = 0; n < N; n++) {
		if (blocks[n])
			CHECK(first_bad(blocks[n], n, n) == n, "block of %zu bytes corrupted", n);
		free(blocks[n]);
	}
	for (size_t n = 0; n < N; n += 7) {
		unsigned char *p = calloc(1, n);
		CHECK(p != NULL || n == 0, "calloc(1, %zu) returned NULL", n);
		CHECK(is_aligned(p, MAX_ALIGN), "calloc(1, %zu) = %p misaligned", n, (void *)p);
		for (size_t i = 0; p && i < n; i++)
			if (p[i]) {
				CHECK(0, "calloc(1, %zu) byte %zu is %d", n, i, p[i]);
				break;
			}
		if (p)
			memset(p, 0xa5, n);	/* dirty it so a reused block must be re-zeroed */
		free(p);
	}
	for (size_t k = 0; k < NBIG; k++) {
		size_t n = big_sizes[k];
		unsigned char *p = malloc(n);
		CHECK(p != NULL, "malloc(%zu) returned NULL", n);
		if (!p)
			continue;
		CHECK(is_aligned(p, MAX_ALIGN), "malloc(%zu) = %p misaligned", n, (void *)p);
		p[0] = 1;
		p[n / 2] = 2;
		p[n - 1] = 3;
		CHECK(p[0] == 1 && p[n / 2] == 2 && p[n - 1] == 3, "malloc(%zu) not writable", n);
		free(p);
		p = calloc(n, 1);
		CHECK(p != NULL && p[0] == 0 && p[n / 2] == 0 && p[n - 1] == 0,
		      "calloc(%zu, 1) not zeroed", n);
		free(p);
	}
	printf("align: sizes 0..4096 (all live at once) and %zu large sizes up to %zu MiB: "
	       "%zu-byte aligned, writable, no overlap; calloc zeroed\n",
	       NBIG, big_sizes[NBIG - 1] >> 20, (size_t)MAX_ALIGN);
}

/* --- errno: huge requests fail with NULL + ENOMEM ----------------------- */

static void expect_enomem(void *p, const char *what)
{
	int e = errno;
	CHECK(p == NULL, "%s returned %p", what, p);
	CHECK(e == ENOMEM, "%s: errno %d (%s), want ENOMEM", what, e, strerror(e));
	free(p);
}

static void test_errno(void)
{
	errno = 0;
	expect_enomem(malloc(vsize_max), "malloc(SIZE_MAX)");
	errno = 0;
	expect_enomem(malloc(vptrdiff_max1), "malloc(PTRDIFF_MAX+1)");
	errno = 0;
	expect_enomem(malloc(vsize_max - 4096), "malloc(SIZE_MAX-4096)");
	errno = 0;
	expect_enomem(calloc(1, vsize_max), "calloc(1, SIZE_MAX)");
	errno = 0;
	expect_enomem(calloc(vptrdiff_max1, 1), "calloc(PTRDIFF_MAX+1, 1)");
	errno = 0;
	expect_enomem(realloc(NULL, vsize_max), "realloc(NULL, SIZE_MAX)");
	errno = 0;
	expect_enomem(aligned_alloc(64, vsize_max - 63), "aligned_alloc(64, SIZE_MAX-63)");
	errno = 0;
	expect_enomem(memalign(4096, vptrdiff_max1), "memalign(4096, PTRDIFF_MAX+1)");
	errno = 0;
	expect_enomem(valloc(vsize_max), "valloc(SIZE_MAX)");
#ifdef __GLIBC__       /* musl has no pvalloc (docs/musl.md) */
	errno = 0;
	expect_enomem(pvalloc(vsize_max - 100), "pvalloc(SIZE_MAX-100)");
#endif

	/* errno is left alone on success (glibc does; a daemon that allocates
	 * while reporting a failed syscall relies on it), and free never touches
	 * it (POSIX.1-2024) */
	static const size_t ok_sizes[] = { 32, 32, 1000, 20000, 300000 };
	for (size_t i = 0; i < sizeof(ok_sizes) / sizeof(ok_sizes[0]); i++) {
		errno = 1234;
		void *p = malloc(ok_sizes[i]);
		CHECK(p != NULL && errno == 1234, "successful malloc(%zu) changed errno to %d",
		      ok_sizes[i], errno);
		errno = 1234;
		free(p);
		CHECK(errno == 1234, "free(malloc(%zu)) changed errno to %d", ok_sizes[i], errno);
	}
	printf("errno: malloc/calloc/realloc/aligned_alloc/memalign/valloc/pvalloc of SIZE_MAX "
	       "and PTRDIFF_MAX+1 give NULL + ENOMEM; success leaves errno alone\n");
}

/* --- overflow: calloc and reallocarray products ------------------------- */

static void test_overflow(void)
{
	size_t half = vsize_max / 2 + 2;
	volatile size_t root = (size_t)1 << (sizeof(size_t) * 4);	/* root*root == 0 mod 2^bits */

	errno = 0;
	expect_enomem(calloc(half, 2), "calloc(SIZE_MAX/2+2, 2)");
	errno = 0;
	expect_enomem(calloc(root, root), "calloc(2^32, 2^32) (wraps to 0)");
	errno = 0;
	expect_enomem(calloc(root + 1, root), "calloc(2^32+1, 2^32) (wraps to 2^32)");
	errno = 0;
	expect_enomem(calloc(vsize_max, vsize_max), "calloc(SIZE_MAX, SIZE_MAX)");
	errno = 0;
	expect_enomem(reallocarray(NULL, half, 2), "reallocarray(NULL, SIZE_MAX/2+2, 2)");
	errno = 0;
	expect_enomem(reallocarray(NULL, root, root), "reallocarray(NULL, 2^32, 2^32)");

	/* a failed reallocarray keeps the old block */
	unsigned char *p = malloc(100);
	CHECK(p != NULL, "malloc(100)");
	fill(p, 100, 5);
	errno = 0;
	void *q = reallocarray(p, root + 1, root);
	CHECK(q == NULL && errno == ENOMEM, "reallocarray(p, overflow) = %p errno %d", q, errno);
	CHECK(first_bad(p, 100, 5) == 100, "old block changed after failed reallocarray");
	/* a good reallocarray works */
	q = reallocarray(p, 50, 4);
	CHECK(q != NULL, "reallocarray(p, 50, 4)");
	if (q) {
		CHECK(first_bad(q, 100, 5) == 100, "reallocarray lost contents");
		p = q;
	}
	free(p);
	printf("overflow: calloc and reallocarray with wrapping products give NULL + ENOMEM; "
	       "failed reallocarray keeps the block\n");
}

/* --- realloc: contents survive growth and shrinking ---------------------- */

static void test_realloc(void)
{
	static const size_t steps[] = {
		1, 7, 8, 15, 16, 17, 24, 100, 128, 500, 1000, 1024, 1025, 4000, 4096, 5000,
		16384, 16385, 20000, 70000, 200000, 2000000, 200000, 20000, 5000, 1000, 100, 16, 1,
	};
	unsigned char *p = NULL;
	size_t have = 0;
	unsigned long moves = 0;

	for (int round = 0; round < 20; round++) {
		for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
			size_t n = steps[k] + (size_t)round;
			unsigned char *q = realloc(p, n);
			CHECK(q != NULL, "realloc(%p, %zu) returned NULL", (void *)p, n);
			if (!q)
				break;
			CHECK(is_aligned(q, MAX_ALIGN), "realloc to %zu misaligned", n);
			size_t keep = have < n ? have : n;
			CHECK(first_bad(q, keep, 11) == keep, "realloc %zu -> %zu lost byte %zu", have,
			      n, first_bad(q, keep, 11));
			moves += q != p;
			p = q;
			fill(p, n, 11);
			have = n;
		}
	}

	/* a failed realloc leaves the old block intact and usable.  SIZE_MAX/2
	 * cannot be had on 64-bit; a 32-bit process on a 64-bit kernel may well
	 * get 2 GiB, so there ask for one byte more than PTRDIFF_MAX */
	size_t too_big = sizeof(void *) == 8 ? vsize_max / 2 : (size_t)PTRDIFF_MAX + 1;
	errno = 0;
	unsigned char *q = realloc(p, too_big);
	CHECK(q == NULL && errno == ENOMEM, "realloc(p, %zu) = %p errno %d", too_big, (void *)q, errno);
	CHECK(first_bad(p, have, 11) == have, "old block changed by failed realloc");
	errno = 0;
	q = realloc(p, vsize_max);
	CHECK(q == NULL && errno == ENOMEM, "realloc(p, SIZE_MAX) = %p errno %d", (void *)q, errno);
	CHECK(first_bad(p, have, 11) == have, "old block changed by failed realloc");
	q = realloc(p, have + 4096);
	CHECK(q != NULL && first_bad(q, have, 11) == have, "realloc after a failure");
	free(q ? q : p);

	/* realloc(NULL, n) is malloc(n) */
	p = realloc(NULL, 40);
	CHECK(p != NULL && is_aligned(p, MAX_ALIGN), "realloc(NULL, 40)");
	/* realloc(p, 0): glibc frees and returns NULL; a unique pointer is also allowed */
	q = realloc(p, 0);
	free(q);

	/* blocks from every allocator entry point can be realloc'd */
	void *srcs[5];
	srcs[0] = calloc(3, 33);
	srcs[1] = aligned_alloc(256, 512);
	srcs[2] = memalign(4096, 100);
	srcs[3] = valloc(10);
	(void)!posix_memalign(&srcs[4], 64, 70);
	for (int i = 0; i < 5; i++) {
		CHECK(srcs[i] != NULL, "source block %d", i);
		if (!srcs[i])
			continue;
		fill(srcs[i], 10, 40 + (size_t)i);
		unsigned char *r = realloc(srcs[i], 100000);
		CHECK(r && first_bad(r, 10, 40 + (size_t)i) == 10, "realloc of block from entry %d", i);
		free(r);
	}
	printf("realloc: %d grow/shrink steps from 1 B to 2 MB keep contents (%lu moved); "
	       "failed realloc keeps the block; realloc(NULL) and blocks from every entry point\n",
	       20 * (int)(sizeof(steps) / sizeof(steps[0])), moves);
}

/* --- memalign family ---------------------------------------------------- */

static void check_block(void *p, size_t align, size_t n, const char *what)
{
	CHECK(p != NULL, "%s(%zu, %zu) returned NULL", what, align, n);
	if (!p)
		return;
	CHECK(is_aligned(p, align), "%s(%zu, %zu) = %p misaligned", what, align, n, p);
	CHECK(malloc_usable_size(p) >= n, "%s(%zu, %zu): usable %zu", what, align, n,
	      malloc_usable_size(p));
	fill(p, n, align);
	CHECK(first_bad(p, n, align) == n, "%s block not writable", what);
}

static void test_memalign(void)
{
	static const size_t sizes[] = { 1, 8, 100, 4096, 5000, 70000 };
	long page = sysconf(_SC_PAGESIZE);
	unsigned long n_ok = 0;
	void *keep[16 * 6 * 3];
	size_t nkeep = 0;

	for (size_t align = sizeof(void *); align <= 65536; align *= 2) {
		for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
			size_t n = sizes[k];
			void *p = (void *)0x1;
			int rc = posix_memalign(&p, align, n);
			CHECK(rc == 0, "posix_memalign(%zu, %zu) = %d", align, n, rc);
			if (rc == 0) {
				check_block(p, align, n, "posix_memalign");
				keep[nkeep++] = p;
			}
			p = aligned_alloc(align, n);
			check_block(p, align, n, "aligned_alloc");
			keep[nkeep++] = p;
			p = memalign(align, n);
			check_block(p, align, n, "memalign");
			keep[nkeep++] = p;
			n_ok += 3;
		}
		/* Keep a few live at once so blocks are not simply reused. */
		for (size_t i = 0; i < nkeep; i++)
			free(keep[i]);
		nkeep = 0;
	}

	for (size_t n = 1; n < 3 * (size_t)page; n += 1000) {
		void *p = valloc(n);
		check_block(p, (size_t)page, n, "valloc");
		free(p);
		n_ok++;
#ifdef __GLIBC__
		p = pvalloc(n);
		size_t rounded = (n + (size_t)page - 1) & ~((size_t)page - 1);
		check_block(p, (size_t)page, rounded, "pvalloc");
		free(p);
		n_ok++;
#endif
	}
#ifdef __GLIBC__
	void *p = pvalloc(0);
	CHECK(p != NULL && is_aligned(p, (size_t)page), "pvalloc(0)");
	free(p);
#endif

	/* bad alignments: EINVAL and *memptr untouched */
	static const size_t bad[] = { 0, 1, 2, 4, 3, 24, 48, 100, 4097, ((size_t)1 << 40) + 8 };
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		if (bad[k] >= sizeof(void *) && (bad[k] & (bad[k] - 1)) == 0)
			continue;
		void *sentinel = (void *)&sentinel;
		void *mp = sentinel;
		errno = 4321;
		int rc = posix_memalign(&mp, bad[k], 16);
		CHECK(rc == EINVAL, "posix_memalign(align %zu) = %d, want EINVAL", bad[k], rc);
		CHECK(mp == sentinel, "posix_memalign(align %zu) changed *memptr", bad[k]);
#ifdef __GLIBC__       /* musl's sets errno: it calls aligned_alloc (docs/musl.md) */
		CHECK(errno == 4321, "posix_memalign changed errno");
#endif
	}
	/* failure by size: ENOMEM returned, *memptr untouched */
	void *sentinel = (void *)&sentinel;
	void *mp = sentinel;
	int rc = posix_memalign(&mp, 64, vsize_max - 10);
	CHECK(rc == ENOMEM, "posix_memalign(64, SIZE_MAX-10) = %d, want ENOMEM", rc);
	CHECK(mp == sentinel, "posix_memalign(64, SIZE_MAX-10) changed *memptr");
	mp = sentinel;
	rc = posix_memalign(&mp, 65536, vptrdiff_max1);
	CHECK(rc == ENOMEM && mp == sentinel, "posix_memalign(65536, PTRDIFF_MAX+1) = %d", rc);

	printf("memalign: posix_memalign/aligned_alloc/memalign at alignments %zu..65536 and "
	       "valloc/pvalloc (%lu blocks) aligned, usable and writable; bad alignment gives "
	       "EINVAL, huge size ENOMEM, *memptr untouched\n",
	       sizeof(void *), n_ok);
}

/* --- malloc_usable_size ------------------------------------------------- */

static void test_usable(void)
{
	unsigned long n_ok = 0;

	CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) = %zu",
	      malloc_usable_size(NULL));
	for (size_t n = 0; n <= 4096 + 64; n++) {
		unsigned char *p = malloc(n);
		if (!p)
			continue;
		size_t u = malloc_usable_size(p);
		CHECK(u >= n, "malloc_usable_size(malloc(%zu)) = %zu", n, u);
		memset(p, 0x5a, u);	/* every usable byte is ours to write */
		/* realloc within the usable size keeps contents */
		unsigned char *q = realloc(p, u);
		CHECK(q != NULL, "realloc to usable size %zu", u);
		if (q) {
			CHECK(q[0] == 0x5a || u == 0, "realloc to usable size lost data");
			CHECK(u == 0 || q[u - 1] == 0x5a, "realloc to usable size lost last byte");
			p = q;
		}
		free(p);
		n_ok++;
	}
	for (size_t k = 0; k < NBIG; k++) {
		unsigned char *p = malloc(big_sizes[k]);
		CHECK(p != NULL, "malloc(%zu)", big_sizes[k]);
		if (!p)
			continue;
		size_t u = malloc_usable_size(p);
		CHECK(u >= big_sizes[k], "malloc_usable_size(malloc(%zu)) = %zu", big_sizes[k], u);
		p[u - 1] = 1;
		free(p);
		n_ok++;
	}
	printf("usable: malloc_usable_size >= request for %lu sizes up to 64 MiB, every usable "
	       "byte writable, realloc to the usable size keeps data, usable(NULL) = 0\n",
	       n_ok);
}

/* --- free ---------------------------------------------------------------- */

static void test_free(void)
{
	errno = 77;
	for (int i = 0; i < 1000; i++)
		free(NULL);
	CHECK(errno == 77, "free(NULL) changed errno to %d", errno);
	void *p = calloc(0, 0);
	free(p);
	p = calloc(0, 16);
	free(p);
	p = malloc(0);
	free(p);
	p = reallocarray(NULL, 0, 0);
	free(p);
	/* free in reverse, random and interleaved orders */
	enum { N = 2000 };
	static void *v[N];
	for (int i = 0; i < N; i++)
		v[i] = malloc((size_t)(i * 37) % 3000);
	for (int i = N - 1; i >= 0; i -= 2)
		free(v[i]);
	for (int i = 0; i < N; i += 2)
		free(v[i]);
	printf("free: free(NULL) x1000 is a no-op leaving errno alone; zero-size blocks free; "
	       "%d blocks freed in mixed order\n", N);
}

struct sub {
	const char *name;
	void (*fn)(void);
};

static const struct sub subs[] = {
	{ "align", test_align },       { "errno", test_errno },   { "overflow", test_overflow },
	{ "realloc", test_realloc },   { "memalign", test_memalign }, { "usable", test_usable },
	{ "free", test_free },
};

int main(int argc, char **argv)
{
	const char *which = argc > 1 ? argv[1] : "all";
	int ran = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (strcmp(which, "all") == 0 || strcmp(which, subs[i].name) == 0) {
			subs[i].fn();
			ran++;
		}
	}
	if (!ran) {
		fprintf(stderr, "usage: %s [all|align|errno|overflow|realloc|memalign|usable|free]\n",
			argv[0]);
		return 2;
	}
	printf("%s: %lu checks, %d failures (LD_PRELOAD=%s)\n", which, checks, failures,
	       getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "");
	return failures ? 1 : 0;
}
