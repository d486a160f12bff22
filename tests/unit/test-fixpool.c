/* tests/unit/test-fixpool.c: fixed-block pools: statistics, alignment, misuse, limits, threads. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gwmem.h"
#include "suite.h"

static struct gwmem_fixpool *mkpool(size_t bs, size_t bpc, size_t maxc, size_t align, unsigned flags)
{
	struct gwmem_fixpool_options o = {0};

	o.block_size = bs;
	o.blocks_per_chunk = bpc;
	o.max_chunks = maxc;
	o.alignment = align;
	o.flags = flags | GWMEM_FIXPOOL_QUIET;
	o.name = "test";
	return gwmem_fixpool_create(&o);
}

/* Take every block of p into blocks[0..n); the next allocation is ENOMEM. */
static void take_all(struct gwmem_fixpool *p, void **blocks, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		blocks[i] = gwmem_fixpool_alloc(p);
		ck_assert_ptr_nonnull(blocks[i]);
	}
	ck_assert_ptr_null(gwmem_fixpool_alloc(p));
	ck_assert_int_eq(errno, ENOMEM);
}

START_TEST(test_fixpool_stats_by_hand)
{
	struct gwmem_fixpool *p = mkpool(24, 10, 3, 16, 0);
	struct gwmem_fixpool_stats st;
	void *b[15];

	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(gwmem_fixpool_stats(p, &st), 0);
	ck_assert_uint_eq(st.total_chunks, 0);
	ck_assert_uint_eq(st.free_blocks, 0);
	ck_assert(st.chunk_utilization == 0.0);
	ck_assert_uint_eq(st.block_stride, 32);

	for (int i = 0; i < 15; i++) {
		b[i] = gwmem_fixpool_alloc(p);
		ck_assert_ptr_nonnull(b[i]);
		memset(b[i], i, 24);
	}
	gwmem_fixpool_stats(p, &st);
	ck_assert_uint_eq(st.total_allocated, 15);
	ck_assert_uint_eq(st.total_freed, 0);
	ck_assert_uint_eq(st.active_blocks, 15);
	ck_assert_uint_eq(st.total_chunks, 2);
	ck_assert_uint_eq(st.free_blocks, 5);
	ck_assert_double_eq_tol(st.chunk_utilization, 0.75, 1e-12);

	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(gwmem_fixpool_free(p, b[i]), 0);
	gwmem_fixpool_stats(p, &st);
	ck_assert_uint_eq(st.total_allocated, 15);
	ck_assert_uint_eq(st.total_freed, 5);
	ck_assert_uint_eq(st.active_blocks, 10);
	ck_assert_uint_eq(st.free_blocks, 10);
	ck_assert_double_eq_tol(st.chunk_utilization, 0.5, 1e-12);
	ck_assert_uint_eq(st.invalid_frees, 0);
	for (int i = 5; i < 15; i++)
		for (int k = 0; k < 24; k++)
			ck_assert_int_eq(((unsigned char *)b[i])[k], i);
	gwmem_fixpool_destroy(p);
}
END_TEST

START_TEST(test_fixpool_alignment)
{
	static const size_t aligns[] = {8, 16, 64, 256, 4096, 16384};

	for (size_t a = 0; a < sizeof(aligns) / sizeof(aligns[0]); a++) {
		struct gwmem_fixpool *p = mkpool(40, 7, 4, aligns[a], 0);

		ck_assert_ptr_nonnull(p);
		for (int i = 0; i < 28; i++) {
			void *b = gwmem_fixpool_alloc(p);

			ck_assert_ptr_nonnull(b);
			ck_assert_uint_eq((uintptr_t)b % aligns[a], 0);
		}
		gwmem_fixpool_destroy(p);
	}
	/* Default alignment: 16 for >= 16 bytes. */
	struct gwmem_fixpool *p = mkpool(100, 0, 0, 0, 0);
	for (int i = 0; i < 50; i++)
		ck_assert_uint_eq((uintptr_t)gwmem_fixpool_alloc(p) % 16, 0);
	gwmem_fixpool_destroy(p);
	ck_assert_ptr_null(mkpool(16, 4, 4, 24, 0));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(mkpool(0, 4, 4, 0, 0));
}
END_TEST

START_TEST(test_fixpool_misuse)
{
	struct gwmem_fixpool *p = mkpool(48, 8, 2, 16, 0);
	struct gwmem_fixpool *q = mkpool(48, 8, 2, 16, 0);
	struct gwmem_fixpool_stats st;
	void *a = gwmem_fixpool_alloc(p), *b = gwmem_fixpool_alloc(p);
	void *other = gwmem_fixpool_alloc(q);
	int local;
	void *seen[16];

	ck_assert(gwmem_fixpool_owns(p, a));
	ck_assert(!gwmem_fixpool_owns(p, other));
	ck_assert_int_eq(gwmem_fixpool_free(p, a), 0);
	ck_assert(!gwmem_fixpool_owns(p, a));
	ck_assert_int_eq(gwmem_fixpool_free(p, a), -EALREADY);          /* double */
	ck_assert_int_eq(gwmem_fixpool_free(p, (char *)b + 1), -EINVAL); /* interior */
	ck_assert_int_eq(gwmem_fixpool_free(p, (char *)b + 47), -EINVAL);
	ck_assert_int_eq(gwmem_fixpool_free(p, &local), -EINVAL);       /* foreign */
	ck_assert_int_eq(gwmem_fixpool_free(p, other), -EINVAL);        /* other pool */
	ck_assert_int_eq(gwmem_fixpool_free(p, NULL), 0);
	gwmem_fixpool_stats(p, &st);
	ck_assert_uint_eq(st.double_frees, 1);
	ck_assert_uint_eq(st.interior_frees, 2);
	ck_assert_uint_eq(st.foreign_frees, 2);
	ck_assert_uint_eq(st.invalid_frees, 5);
	ck_assert_uint_eq(st.total_freed, 1);
	ck_assert_uint_eq(st.active_blocks, 1);

	/* The pool is intact: the 15 blocks left are all distinct, then ENOMEM. */
	seen[0] = b;
	for (int i = 1; i < 16; i++) {
		seen[i] = gwmem_fixpool_alloc(p);
		ck_assert_ptr_nonnull(seen[i]);
		for (int j = 0; j < i; j++)
			ck_assert_ptr_ne(seen[i], seen[j]);
	}
	ck_assert_ptr_null(gwmem_fixpool_alloc(p));
	ck_assert_int_eq(errno, ENOMEM);
	gwmem_fixpool_stats(p, &st);
	ck_assert_uint_eq(st.failed_allocs, 1);
	ck_assert_uint_eq(st.total_chunks, 2);
	ck_assert_uint_eq(st.free_blocks, 0);
	ck_assert_double_eq_tol(st.chunk_utilization, 1.0, 1e-12);
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(gwmem_fixpool_free(p, seen[i]), 0);
	gwmem_fixpool_stats(p, &st);
	ck_assert_uint_eq(st.active_blocks, 0);
	ck_assert_uint_eq(st.free_blocks, 16);
	gwmem_fixpool_destroy(p);
	gwmem_fixpool_destroy(q);
}
END_TEST

/*
 * Every byte of every block, for strides that are and are not powers of
 * two: the block index comes from a multiply by a reciprocal, and only
 * block starts may pass.  Stride 8 leaves no room for the index in a free
 * block and takes the general path.
 */
START_TEST(test_fixpool_every_offset)
{
	static const struct { size_t bs, align; unsigned flags; } cases[] = {
		{8, 8, 0}, {24, 8, 0}, {40, 8, 0}, {48, 16, 0}, {100, 4, 0}, {96, 32, 0},
		{32, 0, 0}, {4100, 8, 0}, {40, 8, GWMEM_FIXPOOL_THREADSAFE}, {24, 8, GWMEM_FIXPOOL_ZERO},
	};
	enum { BPC = 37, MAXC = 3, N = BPC * MAXC };

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct gwmem_fixpool *p = mkpool(cases[k].bs, BPC, MAXC, cases[k].align, cases[k].flags);
		struct gwmem_fixpool_stats st;
		static unsigned char *b[N];
		uint64_t interior = 0, foreign = 0;
		size_t stride;

		ck_assert_ptr_nonnull(p);
		gwmem_fixpool_stats(p, &st);
		stride = st.block_stride;
		for (int i = 0; i < N; i++) {
			b[i] = gwmem_fixpool_alloc(p);
			ck_assert_ptr_nonnull(b[i]);
		}
		ck_assert_ptr_null(gwmem_fixpool_alloc(p));
		for (int i = 0; i < N; i++) {
			for (size_t off = 1; off < stride; off++) {
				ck_assert_int_eq(gwmem_fixpool_free(p, b[i] + off), -EINVAL);
				interior++;
			}
			/* Around the committed blocks: not blocks of this pool. */
			if (i == 0 || i == N - 1) {
				ck_assert_int_eq(gwmem_fixpool_free(p, i ? b[i] + stride : b[i] - 1), -EINVAL);
				foreign++;
			}
		}
		for (int i = 0; i < N; i++) {
			ck_assert(gwmem_fixpool_owns(p, b[i]));
			ck_assert_int_eq(gwmem_fixpool_free(p, b[i]), 0);
			ck_assert_int_eq(gwmem_fixpool_free(p, b[i]), -EALREADY);
		}
		gwmem_fixpool_stats(p, &st);
		ck_assert_uint_eq(st.interior_frees + st.foreign_frees, interior + foreign);
		ck_assert_uint_eq(st.double_frees, N);
		ck_assert_uint_eq(st.total_allocated, N);
		ck_assert_uint_eq(st.total_freed, N);
		ck_assert_uint_eq(st.active_blocks, 0);
		ck_assert_uint_eq(st.free_blocks, N);
		ck_assert_uint_eq(st.total_chunks, MAXC);
		/* Intact: every block comes back once more, distinct. */
		for (int i = 0; i < N; i++) {
			b[i] = gwmem_fixpool_alloc(p);
			ck_assert_ptr_nonnull(b[i]);
			ck_assert(gwmem_fixpool_owns(p, b[i]));
		}
		for (int i = 0; i < N; i++)
			for (int j = 0; j < i; j++)
				ck_assert_ptr_ne(b[i], b[j]);
		ck_assert_ptr_null(gwmem_fixpool_alloc(p));
		gwmem_fixpool_destroy(p);
	}
}
END_TEST

/* Free blocks hold list state; a block handed out must not show it. */
START_TEST(test_fixpool_no_stale_link)
{
	struct gwmem_fixpool *p = mkpool(32, 16, 2, 0, 0);
	void **a = gwmem_fixpool_alloc(p), **b = gwmem_fixpool_alloc(p);

	gwmem_fixpool_free(p, a);
	gwmem_fixpool_free(p, b);
	b = gwmem_fixpool_alloc(p);
	a = gwmem_fixpool_alloc(p);
	ck_assert_ptr_null(a[0]);
	ck_assert_ptr_null(a[1]);
	ck_assert_ptr_null(b[0]);
	ck_assert_ptr_null(b[1]);
	gwmem_fixpool_destroy(p);
}
END_TEST

START_TEST(test_fixpool_zero_and_reuse)
{
	struct gwmem_fixpool *p = mkpool(64, 4, 1, 0, GWMEM_FIXPOOL_ZERO);
	unsigned char *a = gwmem_fixpool_alloc(p);

	memset(a, 0xab, 64);
	gwmem_fixpool_free(p, a);
	unsigned char *b = gwmem_fixpool_alloc(p);
	ck_assert_ptr_eq(a, b); /* LIFO reuse */
	for (int i = 0; i < 64; i++)
		ck_assert_int_eq(b[i], 0);
	gwmem_fixpool_destroy(p);
}
END_TEST

START_TEST(test_fixpool_config_defaults)
{
	struct gwmem_fixpool_stats st;
	struct gwmem_fixpool *p;

	setenv("GWMEM_CONFIG", "/nonexistent/gwmem.toml", 1);
	p = mkpool(32, 0, 0, 0, GWMEM_FIXPOOL_CONFIG);
	gwmem_fixpool_stats(p, &st);
	ck_assert_uint_eq(st.blocks_per_chunk, 256);
	ck_assert_uint_eq(st.max_chunks, 100);
	gwmem_fixpool_destroy(p);

	setenv("GWMEM_MEMORY_POOL_BLOCKS_PER_CHUNK", "32", 1);
	setenv("GWMEM_MEMORY_POOL_MAX_CHUNKS", "3", 1);
	p = mkpool(32, 0, 0, 0, GWMEM_FIXPOOL_CONFIG);
	gwmem_fixpool_stats(p, &st);
	ck_assert_uint_eq(st.blocks_per_chunk, 32);
	ck_assert_uint_eq(st.max_chunks, 3);
	for (int i = 0; i < 96; i++)
		ck_assert_ptr_nonnull(gwmem_fixpool_alloc(p));
	ck_assert_ptr_null(gwmem_fixpool_alloc(p));
	gwmem_fixpool_destroy(p);
	unsetenv("GWMEM_MEMORY_POOL_BLOCKS_PER_CHUNK");
	unsetenv("GWMEM_MEMORY_POOL_MAX_CHUNKS");
}
END_TEST

/* --- threads ------------------------------------------------------------ */

#define NTHREADS 8
#define NOPS 100000
#define HELD 64

struct targ {
	struct gwmem_fixpool *p;
	unsigned id;
	uint64_t allocs, frees, errors;
	void **shared;         /* one-slot mailbox per thread pair for cross-thread frees */
};

static void *stress(void *arg)
{
	struct targ *t = arg;
	uint32_t *held[HELD] = {0};
	unsigned seed = t->id * 7919 + 1;

	for (unsigned op = 0; op < NOPS; op++) {
		unsigned k = (unsigned)rand_r(&seed) % HELD;

		if (held[k]) {
			for (int w = 0; w < 8; w++)
				if (held[k][w] != (t->id << 24 | k << 8 | (unsigned)w))
					t->errors++;
			/* Every 16th block goes through the mailbox to another thread. */
			if (op % 16 == 0) {
				void *mine = __atomic_exchange_n(&t->shared[(t->id + 1) % NTHREADS], held[k],
								 __ATOMIC_ACQ_REL);
				if (mine && gwmem_fixpool_free(t->p, mine) == 0)
					t->frees++;
				else if (mine)
					t->errors++;
			} else if (gwmem_fixpool_free(t->p, held[k]) == 0) {
				t->frees++;
			} else {
				t->errors++;
			}
			held[k] = NULL;
		} else {
			held[k] = gwmem_fixpool_alloc(t->p);
			if (!held[k]) {
				t->errors++;
				continue;
			}
			t->allocs++;
			for (int w = 0; w < 8; w++)
				held[k][w] = t->id << 24 | k << 8 | (unsigned)w;
		}
	}
	for (int k = 0; k < HELD; k++)
		if (held[k] && gwmem_fixpool_free(t->p, held[k]) == 0)
			t->frees++;
	return NULL;
}

START_TEST(test_fixpool_threads)
{
	struct gwmem_fixpool *p = mkpool(32, 128, 64, 0, GWMEM_FIXPOOL_THREADSAFE);
	struct gwmem_fixpool_stats st;
	pthread_t th[NTHREADS];
	struct targ ta[NTHREADS];
	void *mail[NTHREADS] = {0};
	uint64_t allocs = 0, frees = 0;

	for (unsigned i = 0; i < NTHREADS; i++) {
		ta[i] = (struct targ){.p = p, .id = i, .shared = mail};
		ck_assert_int_eq(pthread_create(&th[i], NULL, stress, &ta[i]), 0);
	}
	for (unsigned i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_uint_eq(ta[i].errors, 0);
		allocs += ta[i].allocs;
		frees += ta[i].frees;
	}
	for (unsigned i = 0; i < NTHREADS; i++)
		if (mail[i]) {
			ck_assert_int_eq(gwmem_fixpool_free(p, mail[i]), 0);
			frees++;
		}
	ck_assert_uint_eq(allocs, frees);
	gwmem_fixpool_stats(p, &st);
	ck_assert_uint_eq(st.total_allocated, allocs);
	ck_assert_uint_eq(st.total_freed, frees);
	ck_assert_uint_eq(st.active_blocks, 0);
	ck_assert_uint_eq(st.invalid_frees, 0);
	ck_assert_uint_eq(st.free_blocks, st.total_chunks * 128);
	gwmem_fixpool_destroy(p);
}
END_TEST

/* Concurrent double frees of one block: exactly one wins. */
static void *race_free(void *arg)
{
	void **a = arg;

	return (void *)(intptr_t)gwmem_fixpool_free(a[0], a[1]);
}

START_TEST(test_fixpool_double_free_race)
{
	struct gwmem_fixpool *p = mkpool(32, 16, 4, 0, GWMEM_FIXPOOL_THREADSAFE);

	for (int round = 0; round < 200; round++) {
		void *arg[2] = {p, gwmem_fixpool_alloc(p)};
		pthread_t t1, t2;
		void *r1, *r2;

		pthread_create(&t1, NULL, race_free, arg);
		pthread_create(&t2, NULL, race_free, arg);
		pthread_join(t1, &r1);
		pthread_join(t2, &r2);
		ck_assert_int_eq((int)(intptr_t)r1 + (int)(intptr_t)r2, -EALREADY);
	}
	struct gwmem_fixpool_stats st;
	gwmem_fixpool_stats(p, &st);
	ck_assert_uint_eq(st.double_frees, 200);
	ck_assert_uint_eq(st.active_blocks, 0);
	gwmem_fixpool_destroy(p);
}
END_TEST

/*
 * Producer/consumer, the usual gateway pattern: one thread allocates, another
 * frees, at most RING blocks live out of 1,024.  Every allocation must
 * succeed: the pool may say ENOMEM only when its chunks are all in use.
 */
#define RING 128
struct spsc {
	struct gwmem_fixpool *p;
	void *slot[RING];
	unsigned long head, tail; /* written by the producer / the consumer */
	unsigned long ops;
	unsigned long failures;
};

static void *producer(void *arg)
{
	struct spsc *q = arg;

	for (unsigned long i = 0; i < q->ops;) {
		unsigned long h = q->head;
		void *b;

		if (h - __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE) >= RING) {
			sched_yield();
			continue;
		}
		b = gwmem_fixpool_alloc(q->p);
		if (!b) {
			q->failures++;
			continue;
		}
		*(unsigned long *)b = i;
		q->slot[h % RING] = b;
		__atomic_store_n(&q->head, h + 1, __ATOMIC_RELEASE);
		i++;
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct spsc *q = arg;

	for (unsigned long i = 0; i < q->ops;) {
		unsigned long t = q->tail;
		void *b;

		if (t == __atomic_load_n(&q->head, __ATOMIC_ACQUIRE)) {
			sched_yield();
			continue;
		}
		b = q->slot[t % RING];
		ck_assert_uint_eq(*(unsigned long *)b, i);
		ck_assert_int_eq(gwmem_fixpool_free(q->p, b), 0);
		__atomic_store_n(&q->tail, t + 1, __ATOMIC_RELEASE);
		i++;
	}
	return NULL;
}

START_TEST(test_fixpool_producer_consumer)
{
	struct spsc q = {.p = mkpool(64, 256, 4, 0, GWMEM_FIXPOOL_THREADSAFE), .ops = 100000};
	struct gwmem_fixpool_stats st;
	pthread_t a, b;

	pthread_create(&a, NULL, producer, &q);
	pthread_create(&b, NULL, consumer, &q);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	gwmem_fixpool_stats(q.p, &st);
	ck_assert_uint_eq(q.failures, 0);
	ck_assert_uint_eq(st.failed_allocs, 0);
	ck_assert_uint_eq(st.total_allocated, q.ops);
	ck_assert_uint_eq(st.active_blocks, 0);
	ck_assert_uint_le(st.peak_active_blocks, RING + 1);
	ck_assert_uint_ge(st.peak_active_blocks, 1);
	gwmem_fixpool_destroy(q.p);
}
END_TEST

/*
 * Four threads each keep up to XT_HELD blocks and hand every block to the
 * next thread to free: at most 4 * (XT_HELD + 1) of 64 blocks live, so an
 * allocation never fails, although the free blocks keep moving between the
 * threads' lists.
 */
#define XT_HELD 12
#define XT_THREADS 4
struct xt {
	struct gwmem_fixpool *p;
	void **mail;            /* XT_THREADS mailboxes */
	unsigned id;
	unsigned long failures;
};

static void *xthread(void *arg)
{
	struct xt *t = arg;
	void *held[XT_HELD] = {0};

	for (unsigned long op = 0; op < 200000; op++) {
		unsigned k = (unsigned)(op % XT_HELD);
		void *b;

		if (held[k]) {
			b = __atomic_exchange_n(&t->mail[(t->id + 1) % XT_THREADS], held[k], __ATOMIC_ACQ_REL);
			if (b)
				ck_assert_int_eq(gwmem_fixpool_free(t->p, b), 0);
			held[k] = NULL;
		}
		held[k] = gwmem_fixpool_alloc(t->p);
		if (!held[k])
			t->failures++;
	}
	for (unsigned k = 0; k < XT_HELD; k++)
		if (held[k])
			ck_assert_int_eq(gwmem_fixpool_free(t->p, held[k]), 0);
	return NULL;
}

START_TEST(test_fixpool_cross_thread_frees)
{
	struct gwmem_fixpool *p = mkpool(32, 16, 4, 0, GWMEM_FIXPOOL_THREADSAFE);
	void *mail[XT_THREADS] = {0};
	struct xt t[XT_THREADS];
	pthread_t th[XT_THREADS];
	struct gwmem_fixpool_stats st;

	for (unsigned i = 0; i < XT_THREADS; i++) {
		t[i] = (struct xt){.p = p, .mail = mail, .id = i};
		pthread_create(&th[i], NULL, xthread, &t[i]);
	}
	for (unsigned i = 0; i < XT_THREADS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_uint_eq(t[i].failures, 0);
	}
	for (unsigned i = 0; i < XT_THREADS; i++)
		if (mail[i])
			ck_assert_int_eq(gwmem_fixpool_free(p, mail[i]), 0);
	gwmem_fixpool_stats(p, &st);
	ck_assert_uint_eq(st.failed_allocs, 0);
	ck_assert_uint_eq(st.active_blocks, 0);
	gwmem_fixpool_destroy(p);
}
END_TEST

/*
 * A thread frees every block of the pool, which puts them on its stripe's
 * private list, and stays alive without touching the pool again: another
 * thread must still get every block back (the pool is exhausted only when
 * all its chunks are in use), then ENOMEM.  8-byte blocks keep their live
 * state in a byte map, larger ones in the block: both; and lists shorter
 * than a refill batch (taken only once carving has failed) as well as
 * longer ones.
 */
struct idle_freer {
	struct gwmem_fixpool *p;
	void **blocks;
	size_t n;
	pthread_barrier_t *bar;
	int errors;
};

static void *free_all_then_idle(void *arg)
{
	struct idle_freer *f = arg;

	for (size_t i = 0; i < f->n; i++)
		if (gwmem_fixpool_free(f->p, f->blocks[i]) != 0)
			f->errors++;
	pthread_barrier_wait(f->bar); /* freed */
	pthread_barrier_wait(f->bar); /* the other thread is done */
	return NULL;
}

START_TEST(test_fixpool_private_list_reclaimed)
{
	static const size_t sizes[] = {8, 64, 8, 64}, bpcs[] = {4, 4, 16, 16};

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t N = 4 * bpcs[k];
		struct gwmem_fixpool *p = mkpool(sizes[k], bpcs[k], 4, 0, GWMEM_FIXPOOL_THREADSAFE);
		struct gwmem_fixpool_stats st;
		void *blocks[4 * 16];
		pthread_barrier_t bar;
		struct idle_freer f = {.p = p, .blocks = blocks, .n = N, .bar = &bar};
		pthread_t t;

		take_all(p, blocks, N);
		pthread_barrier_init(&bar, NULL, 2);
		pthread_create(&t, NULL, free_all_then_idle, &f);
		pthread_barrier_wait(&bar);
		ck_assert_int_eq(f.errors, 0);
		take_all(p, blocks, N);
		pthread_barrier_wait(&bar);
		pthread_join(t, NULL);
		pthread_barrier_destroy(&bar);
		gwmem_fixpool_stats(p, &st);
		ck_assert_uint_eq(st.failed_allocs, 2);
		ck_assert_uint_eq(st.active_blocks, N);
		ck_assert_uint_eq(st.total_chunks, 4);
		for (size_t i = 0; i < N; i++)
			ck_assert_int_eq(gwmem_fixpool_free(p, blocks[i]), 0);
		gwmem_fixpool_destroy(p);
	}
}
END_TEST

/*
 * A thread takes one block, which makes it carve a batch and keep the rest
 * on its stripe's list, frees it (onto its private list) and stays alive
 * without touching the pool again: another thread must still get every
 * block of the pool, those on both of the idle thread's lists included,
 * then ENOMEM.
 */
static void *alloc_one_then_idle(void *arg)
{
	struct idle_freer *f = arg;
	void *b = gwmem_fixpool_alloc(f->p);

	if (!b || gwmem_fixpool_free(f->p, b) != 0)
		f->errors++;
	pthread_barrier_wait(f->bar); /* done */
	pthread_barrier_wait(f->bar); /* the other thread is done */
	return NULL;
}

START_TEST(test_fixpool_owner_list_reclaimed)
{
	enum { N = 4 * 64 };
	struct gwmem_fixpool *p = mkpool(64, 64, 4, 0, GWMEM_FIXPOOL_THREADSAFE);
	struct gwmem_fixpool_stats st;
	static void *blocks[N];
	pthread_barrier_t bar;
	struct idle_freer f = {.p = p, .bar = &bar};
	pthread_t t;

	pthread_barrier_init(&bar, NULL, 2);
	pthread_create(&t, NULL, alloc_one_then_idle, &f);
	pthread_barrier_wait(&bar);
	ck_assert_int_eq(f.errors, 0);
	take_all(p, blocks, N);
	pthread_barrier_wait(&bar);
	pthread_join(t, NULL);
	pthread_barrier_destroy(&bar);
	gwmem_fixpool_stats(p, &st);
	ck_assert_uint_eq(st.failed_allocs, 1);
	ck_assert_uint_eq(st.active_blocks, N);
	ck_assert_uint_eq(st.total_allocated, N + 1);
	for (size_t i = 0; i < N; i++)
		ck_assert_int_eq(gwmem_fixpool_free(p, blocks[i]), 0);
	gwmem_fixpool_stats(p, &st);
	ck_assert_uint_eq(st.active_blocks, 0);
	gwmem_fixpool_destroy(p);
}
END_TEST

/*
 * Two threads with empty lists allocate at the same moment while every free
 * block sits on a third thread's list: whichever takes that list, the other
 * must find a block too (it is on the first thread's list by then, or on its
 * way there), not fail with ENOMEM.  A long list makes the hand-over slow.
 */
struct steal_arg {
	struct gwmem_fixpool *p;
	pthread_barrier_t *bar;
	void *got;
};

static void *steal_one(void *arg)
{
	struct steal_arg *a = arg;

	pthread_barrier_wait(a->bar);
	a->got = gwmem_fixpool_alloc(a->p);
	return NULL;
}

START_TEST(test_fixpool_steal_in_flight)
{
	enum { N = 16 * 4096 };
	struct gwmem_fixpool *p = mkpool(64, 4096, 16, 0, GWMEM_FIXPOOL_THREADSAFE);
	void **all = malloc(N * sizeof(void *));
	struct gwmem_fixpool_stats st;

	for (size_t i = 0; i < N; i++) {
		all[i] = gwmem_fixpool_alloc(p);
		ck_assert_ptr_nonnull(all[i]);
	}
	/* Free in a scattered order so the list walk misses the cache. */
	for (size_t i = 0; i < N - 2; i++)
		ck_assert_int_eq(gwmem_fixpool_free(p, all[(i * 7919) % N]), 0);
	for (int round = 0; round < 8; round++) {
		pthread_barrier_t bar;
		struct steal_arg a[2] = {{p, &bar, NULL}, {p, &bar, NULL}};
		pthread_t t[2];

		pthread_barrier_init(&bar, NULL, 2);
		for (int k = 0; k < 2; k++)
			pthread_create(&t[k], NULL, steal_one, &a[k]);
		for (int k = 0; k < 2; k++)
			pthread_join(t[k], NULL);
		pthread_barrier_destroy(&bar);
		ck_assert_ptr_nonnull(a[0].got);
		ck_assert_ptr_nonnull(a[1].got);
		ck_assert_int_eq(gwmem_fixpool_free(p, a[0].got), 0);
		ck_assert_int_eq(gwmem_fixpool_free(p, a[1].got), 0);
	}
	gwmem_fixpool_stats(p, &st);
	ck_assert_uint_eq(st.failed_allocs, 0);
	ck_assert_uint_eq(st.active_blocks, 2);
	free(all);
	gwmem_fixpool_destroy(p);
}
END_TEST

/*
 * Many producers and consumers at once: MP_PAIRS pairs, each passing blocks
 * through a ring of MP_RING, so at most MP_PAIRS * (MP_RING + 1) of the
 * pool's 128 blocks are live and no allocation may fail.  The blocks are
 * scarce, so producers run dry and take lists from one another: consumers'
 * private lists, and other producers' allocation lists (the handshake with
 * an owner that allocates without a locked instruction).  With 16 threads
 * some share a stripe.  Once the threads have exited, every block sitting
 * on their lists must still be reachable: the main thread takes all 128,
 * then ENOMEM.  Then double frees across threads: blocks one thread freed
 * are refused when another frees them again, exactly, whichever list they
 * sit on.
 */
#define MP_PAIRS 8
#define MP_RING 6
#define MP_BLOCKS 128
struct mp {
	struct gwmem_fixpool *p;
	void *slot[MP_RING];
	unsigned long head, tail;
	unsigned long ops;
	unsigned long failures; /* producer: allocations refused */
	unsigned long errors;   /* consumer: wrong content or refused frees */
};

static void *mp_producer(void *arg)
{
	struct mp *q = arg;

	for (unsigned long i = 0; i < q->ops;) {
		unsigned long h = q->head;
		unsigned long *b;

		if (h - __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE) >= MP_RING) {
			sched_yield();
			continue;
		}
		b = gwmem_fixpool_alloc(q->p);
		if (!b) {
			q->failures++;
			continue;
		}
		b[0] = i;
		b[1] = ~i;
		q->slot[h % MP_RING] = b;
		__atomic_store_n(&q->head, h + 1, __ATOMIC_RELEASE);
		i++;
	}
	return NULL;
}

static void *mp_consumer(void *arg)
{
	struct mp *q = arg;

	for (unsigned long i = 0; i < q->ops;) {
		unsigned long t = q->tail;
		unsigned long *b;

		if (t == __atomic_load_n(&q->head, __ATOMIC_ACQUIRE)) {
			sched_yield();
			continue;
		}
		b = q->slot[t % MP_RING];
		__atomic_store_n(&q->tail, t + 1, __ATOMIC_RELEASE);
		if (b[0] != i || b[1] != ~i || gwmem_fixpool_free(q->p, b) != 0)
			q->errors++;
		i++;
	}
	return NULL;
}

struct xfree {
	struct gwmem_fixpool *p;
	void **blocks;
	size_t n;
	int expect;             /* what every free must return */
	unsigned long wrong;
};

static void *xfree_all(void *arg)
{
	struct xfree *x = arg;

	for (size_t i = 0; i < x->n; i++)
		if (gwmem_fixpool_free(x->p, x->blocks[i]) != x->expect)
			x->wrong++;
	return NULL;
}

/* Free blocks[0..n) on a new thread; each free must return 'expect'. */
static void free_on_thread(struct gwmem_fixpool *p, void **blocks, size_t n, int expect)
{
	struct xfree x = {.p = p, .blocks = blocks, .n = n, .expect = expect};
	pthread_t t;

	pthread_create(&t, NULL, xfree_all, &x);
	pthread_join(t, NULL);
	ck_assert_uint_eq(x.wrong, 0);
}

START_TEST(test_fixpool_many_producers_consumers)
{
	struct gwmem_fixpool *p = mkpool(64, 16, MP_BLOCKS / 16, 0, GWMEM_FIXPOOL_THREADSAFE);
	static struct mp q[MP_PAIRS];
	static void *blocks[MP_BLOCKS];
	pthread_t th[2 * MP_PAIRS];
	struct gwmem_fixpool_stats st;
	uint64_t allocated = 0;

	for (unsigned i = 0; i < MP_PAIRS; i++) {
		q[i] = (struct mp){.p = p, .ops = 20000};
		pthread_create(&th[2 * i], NULL, mp_producer, &q[i]);
		pthread_create(&th[2 * i + 1], NULL, mp_consumer, &q[i]);
	}
	for (unsigned i = 0; i < 2 * MP_PAIRS; i++)
		pthread_join(th[i], NULL);
	for (unsigned i = 0; i < MP_PAIRS; i++) {
		ck_assert_uint_eq(q[i].failures, 0);
		ck_assert_uint_eq(q[i].errors, 0);
		allocated += q[i].ops;
	}
	gwmem_fixpool_stats(p, &st);
	ck_assert_uint_eq(st.failed_allocs, 0);
	ck_assert_uint_eq(st.total_allocated, allocated);
	ck_assert_uint_eq(st.active_blocks, 0);
	ck_assert_uint_le(st.peak_active_blocks, MP_PAIRS * (MP_RING + 1));
	ck_assert_uint_eq(st.total_chunks, MP_BLOCKS / 16);

	/* The exited threads' lists hold every block: all must come back. */
	take_all(p, blocks, MP_BLOCKS);
	/* Freed on one thread, freed again on another: refused, counted. */
	free_on_thread(p, blocks, MP_BLOCKS, 0);
	free_on_thread(p, blocks, MP_BLOCKS, -EALREADY);
	/* ... and the second thread's refusals left the first one's lists intact. */
	take_all(p, blocks, MP_BLOCKS);
	free_on_thread(p, blocks, MP_BLOCKS / 2, 0);
	free_on_thread(p, blocks + MP_BLOCKS / 2, MP_BLOCKS / 2, 0);
	free_on_thread(p, blocks, MP_BLOCKS, -EALREADY);
	gwmem_fixpool_stats(p, &st);
	ck_assert_uint_eq(st.double_frees, 2 * MP_BLOCKS);
	ck_assert_uint_eq(st.active_blocks, 0);
	ck_assert_uint_eq(st.failed_allocs, 2);
	take_all(p, blocks, MP_BLOCKS);
	for (size_t i = 0; i < MP_BLOCKS; i++)
		ck_assert_int_eq(gwmem_fixpool_free(p, blocks[i]), 0);
	gwmem_fixpool_destroy(p);
}
END_TEST

/* Thread-safe pools: misuse refused the same way (their live state is kept otherwise). */
START_TEST(test_fixpool_threadsafe_misuse)
{
	struct gwmem_fixpool *p = mkpool(48, 64, 2, 16, GWMEM_FIXPOOL_THREADSAFE);
	struct gwmem_fixpool_stats st;
	char *a = gwmem_fixpool_alloc(p), *b = gwmem_fixpool_alloc(p);

	ck_assert(gwmem_fixpool_owns(p, a));
	memset(a, 0xff, 48);
	ck_assert_int_eq(gwmem_fixpool_free(p, a), 0);
	ck_assert(!gwmem_fixpool_owns(p, a));
	ck_assert_int_eq(gwmem_fixpool_free(p, a), -EALREADY);
	ck_assert_int_eq(gwmem_fixpool_free(p, a + 16), -EINVAL);
	/* a block of the committed chunk that was never handed out */
	ck_assert_int_eq(gwmem_fixpool_free(p, b + 48 * 40), -EALREADY);
	ck_assert(!gwmem_fixpool_owns(p, b + 48 * 40));
	/* a user's data in the second word does not fool the check */
	((uintptr_t *)b)[1] = (uintptr_t)0x123456789;
	ck_assert_int_eq(gwmem_fixpool_free(p, b), 0);
	ck_assert_int_eq(gwmem_fixpool_free(p, b), -EALREADY);
	gwmem_fixpool_stats(p, &st);
	ck_assert_uint_eq(st.double_frees, 3);
	ck_assert_uint_eq(st.interior_frees, 1);
	ck_assert_uint_eq(st.active_blocks, 0);
	/* a freed block comes back live and clean */
	a = gwmem_fixpool_alloc(p);
	ck_assert(gwmem_fixpool_owns(p, a));
	ck_assert_ptr_null(((void **)a)[0]);
	ck_assert_uint_eq(((uintptr_t *)a)[1], 0);
	ck_assert_int_eq(gwmem_fixpool_free(p, a), 0);
	gwmem_fixpool_destroy(p);
}
END_TEST

static Suite *suite_fixpool(void)
{
	Suite *s = suite_create("fixpool");
	TCase *tc = tcase_create("single");

	tcase_add_test(tc, test_fixpool_stats_by_hand);
	tcase_add_test(tc, test_fixpool_alignment);
	tcase_add_test(tc, test_fixpool_misuse);
	tcase_add_test(tc, test_fixpool_every_offset);
	tcase_add_test(tc, test_fixpool_no_stale_link);
	tcase_add_test(tc, test_fixpool_zero_and_reuse);
	tcase_add_test(tc, test_fixpool_config_defaults);
	tcase_add_test(tc, test_fixpool_threadsafe_misuse);
	suite_add_tcase(s, tc);
	tc = tcase_create("threads");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_fixpool_threads);
	tcase_add_test(tc, test_fixpool_double_free_race);
	tcase_add_test(tc, test_fixpool_producer_consumer);
	tcase_add_test(tc, test_fixpool_cross_thread_frees);
	tcase_add_test(tc, test_fixpool_steal_in_flight);
	tcase_add_test(tc, test_fixpool_private_list_reclaimed);
	tcase_add_test(tc, test_fixpool_owner_list_reclaimed);
	tcase_add_test(tc, test_fixpool_many_producers_consumers);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_fixpool)
