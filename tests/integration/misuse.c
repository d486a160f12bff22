/*
 * misuse.c - programs that misuse the malloc API the way buggy daemons do,
 * run under LD_PRELOAD=libgwmem-preload.so by misuse-test.sh, which also
 * runs them on plain glibc and compares (docs/misuse.md has the table).
 * Each mode prints one "result:" line the driver checks, and exits 0 when
 * the allocator stayed consistent (no block handed out twice, the program
 * kept running).
 *
 *   misuse xdouble ROUNDS      two threads free the same block at the same
 *                              moment, ROUNDS times; then every thread
 *                              allocates and no block may be live twice
 *   misuse stack | global      free() of a stack / static address
 *   misuse realloc-freed       realloc() of a block already freed
 *   misuse realloc-interior    realloc() of a pointer into a block
 *   misuse foreign             glibc's own blocks (__libc_malloc) through
 *                              free/realloc/malloc_usable_size
 *   misuse xexit ROUNDS THREADS  threads hand each other blocks of 16 B to
 *                              600 KB and exit in the middle of the traffic
 *   misuse fill [BYTES [HOLD]] allocate BYTES-sized blocks until malloc
 *                              fails; print how many, and the address space
 *                              mapped then (for RLIMIT_AS tests); with HOLD,
 *                              then allocate HOLD blocks of 48 bytes, print
 *                              "ready" and wait 3 s (for the CLI to read)
 *   misuse xinit THREADS       THREADS threads make their first call into
 *                              glibc's malloc (a large block) at the same
 *                              moment, then exit
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

extern void *__libc_malloc(size_t) __attribute__((weak));
extern void __libc_free(void *) __attribute__((weak));

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
	return x < y ? -1 : x > y;
}

/* Sort and count addresses that appear more than once. */
static long duplicates(void **v, long n)
{
	long d = 0;

	qsort(v, (size_t)n, sizeof(v[0]), cmp_ptr);
	for (long i = 1; i < n; i++)
		if (v[i] == v[i - 1]) {
			if (d < 5)
				printf("duplicate: %p\n", v[i]);
			d++;
		}
	return d;
}

/* --- cross-thread double free --------------------------------------------- */

#define XD_THREADS 2
#define XD_FILL 60000L

static void *volatile xd_target;
static int xd_round, xd_done, xd_rounds;
static void **xd_live;
static long xd_nlive;

static void *xd_worker(void *arg)
{
	long id = (long)arg;

	for (int r = 1; r <= xd_rounds; r++) {
		for (int spins = 0; __atomic_load_n(&xd_round, __ATOMIC_ACQUIRE) < r; spins++)
			if (spins > 200)
				sched_yield();    /* 2 cores shared by 3 spinners */
		free(xd_target);
		__atomic_add_fetch(&xd_done, 1, __ATOMIC_ACQ_REL);
	}
	/* both frees of the last round are done before anyone allocates: a
	 * block allocated again in between may be freed again legitimately */
	for (int spins = 0; __atomic_load_n(&xd_done, __ATOMIC_ACQUIRE) < xd_rounds * XD_THREADS; spins++)
		if (spins > 200)
			sched_yield();
	/* whatever went into this thread's cache comes back out here */
	for (long i = 0; i < XD_FILL; i++) {
		void *p = malloc(48);
		if (!p)
			break;
		memset(p, (int)id, 48);
		xd_live[__atomic_fetch_add(&xd_nlive, 1, __ATOMIC_RELAXED)] = p;
	}
	return NULL;
}

static int mode_xdouble(int rounds)
{
	pthread_t th[XD_THREADS];

	xd_rounds = rounds;
	xd_live = calloc((size_t)(XD_THREADS + 1) * XD_FILL, sizeof(void *));
	if (!xd_live)
		return 2;
	for (long i = 0; i < XD_THREADS; i++)
		pthread_create(&th[i], NULL, xd_worker, (void *)i);
	for (int r = 1; r <= rounds; r++) {
		xd_target = malloc(48);
		__atomic_store_n(&xd_round, r, __ATOMIC_RELEASE);
		for (int spins = 0; __atomic_load_n(&xd_done, __ATOMIC_ACQUIRE) < r * XD_THREADS; spins++)
			if (spins > 200)
				sched_yield();
	}
	for (long i = 0; i < XD_FILL; i++) {
		void *p = malloc(48);
		if (!p)
			break;
		xd_live[__atomic_fetch_add(&xd_nlive, 1, __ATOMIC_RELAXED)] = p;
	}
	for (int i = 0; i < XD_THREADS; i++)
		pthread_join(th[i], NULL);
	long d = duplicates(xd_live, xd_nlive);
	printf("result: xdouble rounds=%d live=%ld duplicates=%ld\n", rounds, xd_nlive, d);
	return d ? 1 : 0;
}

/* --- frees of what malloc never returned ------------------------------------ */

static char global_buf[256];

static int mode_stack(void)
{
	char buf[256];
	void *volatile p = buf;

	free(p);
	void *q = malloc(64);
	printf("result: stack free survived, malloc after it %s\n", q ? "works" : "fails");
	free(q);
	return 0;
}

static int mode_global(void)
{
	void *volatile p = global_buf + 16;

	free(p);
	void *q = malloc(64);
	printf("result: global free survived, malloc after it %s\n", q ? "works" : "fails");
	free(q);
	return 0;
}

/* --- realloc misuse ----------------------------------------------------------- */

static int mode_realloc_freed(void)
{
	char *p = malloc(40);
	void *live[64];

	if (!p)
		return 2;
	free(p);
	errno = 0;
	char *q = realloc(p, 24);
	int err = errno;
	/* the freed block must not be live twice: a realloc that "succeeds" in
	 * place and a later malloc returning the same block would overlap */
	long dup = 0;
	for (int i = 0; i < 64; i++) {
		live[i] = malloc(40);
		if (q && live[i] == q)
			dup++;
	}
	for (int i = 0; i < 64; i++)
		free(live[i]);
	printf("result: realloc-freed returned %s (errno %d), overlapping blocks %ld\n",
	       q ? "a block" : "NULL", err, dup);
	return dup ? 1 : 0;
}

static int mode_realloc_interior(void)
{
	char *p = malloc(64);

	if (!p)
		return 2;
	memset(p, 7, 64);
	errno = 0;
	void *q = realloc(p + 16, 100);
	int err = errno;
	int intact = p[0] == 7 && p[63] == 7;
	free(p);
	printf("result: realloc-interior returned %s (errno %d), block %s\n", q ? "a block" : "NULL",
	       err, intact ? "intact" : "changed");
	return q == NULL && intact ? 0 : 1;
}

/* --- blocks glibc allocated itself --------------------------------------------- */

static int mode_foreign(void)
{
	if (!__libc_malloc || !__libc_free) {
		printf("result: foreign skipped (no __libc_malloc)\n");
		return 77;
	}
	char *a = __libc_malloc(100), *b = __libc_malloc(5000);
	if (!a || !b)
		return 2;
	memset(a, 1, 100);
	memset(b, 2, 5000);
	size_t ua = malloc_usable_size(a);
	char *a2 = realloc(a, 3000);
	int ok = a2 && a2[0] == 1 && a2[99] == 1 && ua >= 100;
	free(a2);
	free(b);
	printf("result: foreign blocks usable_size=%zu realloc %s, free ok\n", ua,
	       ok ? "kept the data" : "lost the data");
	return ok ? 0 : 1;
}

/* --- threads exiting in the middle of cross-thread traffic ---------------------- */

#define XE_Q 64

struct xe_queue {
	pthread_mutex_t lock;
	unsigned n;
	void *items[XE_Q];
	size_t sizes[XE_Q];
};

static struct xe_queue *xe_q;
static int xe_threads;

static uint32_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (uint32_t)(*s >> 11);
}

static size_t xe_size(uint64_t *s)
{
	uint32_t r = rng(s);
	switch (r & 7) {
	case 0:
		return 100000 + r % 500000;          /* around glibc's mmap threshold */
	case 1:
		return 900 + r % 300;                /* around the largest pool class */
	case 2:
		return 16 + r % 64;
	default:
		return 16 + r % 4000;
	}
}

static void xe_consume(struct xe_queue *q, uint64_t *s)
{
	void *items[XE_Q];
	unsigned n;

	pthread_mutex_lock(&q->lock);
	n = q->n;
	memcpy(items, q->items, n * sizeof(void *));
	q->n = 0;
	pthread_mutex_unlock(&q->lock);
	for (unsigned i = 0; i < n; i++) {
		if ((rng(s) & 7) == 0) {
			void *r = realloc(items[i], xe_size(s));
			if (r)
				items[i] = r;
		}
		free(items[i]);
	}
}

static void *xe_worker(void *arg)
{
	uint64_t s = (uintptr_t)arg * 0x9e3779b97f4a7c15u + 1;
	unsigned self = (unsigned)((uintptr_t)arg % (unsigned)xe_threads);
	int ops = 50 + (int)(rng(&s) % 400);    /* exit at a random point of the traffic */

	for (int i = 0; i < ops; i++) {
		size_t n = xe_size(&s);
		void *p = (rng(&s) & 1) ? malloc(n) : calloc(1, n);
		if (!p)
			continue;
		((char *)p)[0] = 1;
		struct xe_queue *q = &xe_q[rng(&s) % (unsigned)xe_threads];
		pthread_mutex_lock(&q->lock);
		if (q->n < XE_Q) {
			q->items[q->n] = p;
			q->sizes[q->n] = n;
			q->n++;
			p = NULL;
		}
		pthread_mutex_unlock(&q->lock);
		free(p);
		if ((i & 3) == 0)
			xe_consume(&xe_q[self], &s);
	}
	return NULL;
}

static int mode_xexit(int rounds, int threads)
{
	pthread_t *th = calloc((size_t)threads, sizeof(*th));

	xe_threads = threads;
	xe_q = calloc((size_t)threads, sizeof(*xe_q));
	if (!th || !xe_q)
		return 2;
	for (int i = 0; i < threads; i++)
		pthread_mutex_init(&xe_q[i].lock, NULL);
	uintptr_t seed = 1;
	/* keep 'threads' workers running; each one that exits is replaced at
	 * once, so threads die while others still send them blocks */
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < threads; i++)
			if (pthread_create(&th[i], NULL, xe_worker, (void *)seed++) != 0)
				return 2;
		for (int i = 0; i < threads; i++)
			pthread_join(th[i], NULL);
	}
	uint64_t s = 7;
	for (int i = 0; i < threads; i++)
		xe_consume(&xe_q[i], &s);
	printf("result: xexit %d rounds of %d threads, %lu threads in all\n", rounds, threads,
	       (unsigned long)seed - 1);
	free(th);
	free(xe_q);
	return 0;
}

/* --- many threads making their first call into the next allocator at once --- */

static int xi_go;

static void *xi_worker(void *arg)
{
	while (!__atomic_load_n(&xi_go, __ATOMIC_ACQUIRE))
		;
	/* beyond the pools: the first call into glibc's malloc of this thread */
	void *p = malloc(200000 + (uintptr_t)arg * 64);
	if (p)
		((char *)p)[0] = 1;
	free(p);
	return NULL;
}

static int mode_xinit(int threads)
{
	pthread_t th[256];

	if (threads > 256)
		threads = 256;
	for (int i = 0; i < threads; i++)
		if (pthread_create(&th[i], NULL, xi_worker, (void *)(uintptr_t)i) != 0)
			return 2;
	__atomic_store_n(&xi_go, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	printf("result: xinit %d threads\n", threads);
	return 0;
}

/* --- how much memory a program gets under an address-space limit ------------- */

/* VmSize from /proc/self/status, in kB (-1 if unreadable): read into a
 * stack buffer, since malloc fails by now */
static long vm_size_kb(void)
{
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY);
	ssize_t r = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (r <= 0)
		return -1;
	buf[r] = '\0';
	const char *v = strstr(buf, "VmSize:");
	return v ? strtol(v + 7, NULL, 10) : -1;
}

static int mode_fill(size_t block, long hold)
{
	void **list = NULL;
	long n = 0;

	/* a chain through the blocks themselves: no other allocation */
	for (;;) {
		void **p = malloc(block);
		if (!p)
			break;
		memset(p, 1, block);
		p[0] = list;
		list = p;
		n++;
	}
	long vm = vm_size_kb();
	if (hold > 0) {
		/* small blocks after the failure: the pools serve them, tracking
		 * records what it has room for, the CLI reads the segment */
		void **small = NULL;
		for (long i = 0; i < hold; i++) {
			void **q = malloc(48);
			if (!q)
				break;
			q[0] = small;
			small = q;
		}
		printf("result: ready\n");
		sleep(3);
		while (small) {
			void **next = small[0];
			free(small);
			small = next;
		}
	}
	/* every block, wherever the next allocator put it (after the pools gave
	 * address space back, inside their old range), is its block: usable
	 * size, realloc keeping the data, free */
	long bad = 0;
	for (void ***pp = (void ***)&list; *pp; pp = (void ***)&(*pp)[0]) {
		void **p = *pp;
		if (malloc_usable_size(p) < block || ((unsigned char *)p)[block - 1] != 1)
			bad++;
		void **q = realloc(p, block / 2);
		if (!q) {
			bad++;
			continue;
		}
		if (((unsigned char *)q)[block / 2 - 1] != 1)
			bad++;
		*pp = q;
	}
	long small = 0;
	for (void **p = list; p && small < 1000; small++) {
		/* small blocks still come from somewhere after large ones fail */
		void *q = malloc(64);
		if (!q)
			break;
		free(q);
		p = p[0];
	}
	while (list) {
		void **next = list[0];
		free(list);
		list = next;
	}
	printf("result: fill %zu-byte blocks: %ld\n", block, n);
	printf("result: address space mapped at the failure: %ld kB\n", vm);
	if (bad)
		printf("result: %ld blocks with a wrong size or content after realloc\n", bad);
	return n > 0 && !bad ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *m = argc > 1 ? argv[1] : "";

	setvbuf(stdout, NULL, _IONBF, 0);
	if (!strcmp(m, "xdouble"))
		return mode_xdouble(argc > 2 ? atoi(argv[2]) : 20000);
	if (!strcmp(m, "stack"))
		return mode_stack();
	if (!strcmp(m, "global"))
		return mode_global();
	if (!strcmp(m, "realloc-freed"))
		return mode_realloc_freed();
	if (!strcmp(m, "realloc-interior"))
		return mode_realloc_interior();
	if (!strcmp(m, "foreign"))
		return mode_foreign();
	if (!strcmp(m, "fill"))
		return mode_fill(argc > 2 ? (size_t)atol(argv[2]) : (size_t)1 << 20,
				 argc > 3 ? atol(argv[3]) : 0);
	if (!strcmp(m, "xinit"))
		return mode_xinit(argc > 2 ? atoi(argv[2]) : 16);
	if (!strcmp(m, "xexit"))
		return mode_xexit(argc > 2 ? atoi(argv[2]) : 20, argc > 3 ? atoi(argv[3]) : 32);
	fprintf(stderr, "usage: %s xdouble [ROUNDS] | stack | global | realloc-freed | "
		"realloc-interior | foreign | xexit [ROUNDS THREADS] | xinit [THREADS] | fill [BYTES [HOLD]]\n", argv[0]);
	return 2;
}
