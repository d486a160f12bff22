/* tests/unit/test-pool.c: size classes, chunk carving, thread-cache refill
 * and flush, statistics arithmetic, misuse detection, release of chunks. */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "counters.h"
#include "pool.h"
#include "suite.h"

static struct gwmem_config cfg;

static void setup_pool(uint32_t block, uint32_t bpc, uint32_t max_chunks)
{
	gwmem_config_defaults(&cfg);
	cfg.memory_pool.default_block_size = block;
	cfg.memory_pool.blocks_per_chunk = bpc;
	cfg.memory_pool.max_chunks = max_chunks;
	cfg.compaction.auto_compact = false;   /* releases only when a test forces them */
	cfg.compaction.compact_interval_seconds = 3600;
	cfg.compaction.fragmentation_threshold = 1.0;
	ck_assert_int_eq(gw_pool_init(&cfg), 0);
}

static struct gwmem_shm_class class_stats(size_t size)
{
	struct gwmem_shm_class s[GW_POOL_MAX_CLASSES];
	unsigned n = gw_pool_stats(s, GW_POOL_MAX_CLASSES);
	for (unsigned i = 0; i < n; i++)
		if (s[i].block_size == size)
			return s[i];
	ck_abort_msg("no class of size %zu", size);
	return s[0];
}

START_TEST(test_size_classes)
{
	/* every size maps to the smallest class that fits, classes grow by <= 25 % */
	for (size_t n = 1; n <= 65536; n++) {
		unsigned c = gw_pool_size_class(n);
		size_t sz = gw_pool_class_size(c);
		ck_assert_uint_ge(sz, n);
		if (c > 0)
			ck_assert_uint_lt(gw_pool_class_size(c - 1), n);
		ck_assert_uint_eq(sz % 16, 0);
	}
	for (size_t n = 0; n <= 4096; n++)
		ck_assert_uint_eq(gw_pool_size_class(n), gw_pool_size_class_calc(n));
	ck_assert_uint_eq(gw_pool_size_class(0), 0);
	ck_assert_uint_eq(gw_pool_class_size(gw_pool_size_class(129)), 160);
	ck_assert_uint_eq(gw_pool_class_size(gw_pool_size_class(1025)), 1280);
	/* every power of two is a class: aligned allocations rely on it */
	for (size_t p = 16; p <= 65536; p <<= 1)
		ck_assert_uint_eq(gw_pool_class_size(gw_pool_size_class(p)), p);
}
END_TEST

START_TEST(test_alloc_alignment_and_ownership)
{
	setup_pool(16384, 64, 8);
	ck_assert_uint_eq(gw_pool_max_size(), 16384);
	/* regions start on a multiple of their size: the free-list link check
	 * and power-of-two alignment both depend on it */
	ck_assert_uint_eq(gw_pool_g.base & (((uintptr_t)1 << gw_pool_g.region_shift) - 1), 0);
	for (size_t n = 0; n <= 16384; n += 7) {
		char *p = gw_pool_alloc(n);
		ck_assert_ptr_nonnull(p);
		ck_assert_uint_eq((uintptr_t)p % 16, 0);
		ck_assert(gw_pool_owns(p));
		ck_assert_uint_ge(gw_pool_usable_size(p), n);
		memset(p, 0xab, gw_pool_usable_size(p));
		gw_pool_free(p);
	}
	for (size_t a = 32; a <= 16384; a <<= 1) {
		void *p = gw_pool_alloc_aligned(24, a);
		ck_assert_ptr_nonnull(p);
		ck_assert_uint_eq((uintptr_t)p % a, 0);
		gw_pool_free(p);
	}
	ck_assert_ptr_null(gw_pool_alloc(16385));
	int local;
	ck_assert(!gw_pool_owns(&local));
}
END_TEST

START_TEST(test_chunk_carving_and_overflow)
{
	/* 2 chunks of 8 blocks of 64 bytes: the 17th block does not fit */
	setup_pool(1024, 8, 2);
	void *p[17];
	for (int i = 0; i < 16; i++) {
		p[i] = gw_pool_alloc(64);
		ck_assert_ptr_nonnull(p[i]);
		for (int j = 0; j < i; j++)
			ck_assert_ptr_ne(p[i], p[j]);
	}
	p[16] = gw_pool_alloc(64);
	ck_assert_ptr_null(p[16]);
	struct gwmem_shm_class s = class_stats(64);
	ck_assert_uint_eq(s.total_chunks, 2);
	ck_assert_uint_eq(s.active_blocks, 16);
	ck_assert_uint_ge(s.overflow, 1);
	for (int i = 0; i < 16; i++)
		gw_pool_free(p[i]);
	s = class_stats(64);
	ck_assert_uint_eq(s.total_allocated, 16);
	ck_assert_uint_eq(s.total_freed, 16);
	ck_assert_uint_eq(s.active_blocks, 0);
	ck_assert_uint_eq(s.free_blocks, 16);
	/* freed blocks are reused: no new chunk */
	for (int i = 0; i < 16; i++)
		ck_assert_ptr_nonnull(p[i] = gw_pool_alloc(64));
	ck_assert_uint_eq(class_stats(64).total_chunks, 2);
}
END_TEST

struct thread_arg {
	void *blocks[512];
	int n;
};

static void *thread_fill(void *arg)
{
	struct thread_arg *t = arg;
	for (int i = 0; i < t->n; i++)
		t->blocks[i] = gw_pool_alloc(48);
	/* keep half, free the others into this thread's cache, then exit */
	for (int i = t->n / 2; i < t->n; i++)
		gw_pool_free(t->blocks[i]);
	return NULL;
}

START_TEST(test_pool_refill_after_thread_exit)
{
	/* a thread fills its cache and exits; the next thread gets the blocks */
	setup_pool(1024, 64, 100);
	struct thread_arg t = { .n = 200 };
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, thread_fill, &t), 0);
	pthread_join(th, NULL);
	struct gwmem_shm_class s = class_stats(48);
	ck_assert_uint_eq(s.total_allocated, 200);
	ck_assert_uint_eq(s.total_freed, 100);
	ck_assert_uint_eq(s.active_blocks, 100);
	uint64_t chunks = s.total_chunks;
	/* the exited thread's cached blocks are back in the central lists */
	struct thread_arg t2 = { .n = 100 };
	ck_assert_int_eq(pthread_create(&th, NULL, thread_fill, &t2), 0);
	pthread_join(th, NULL);
	ck_assert_uint_eq(class_stats(48).total_chunks, chunks);
	/* frees from another thread than the allocating one */
	for (int i = 0; i < 100; i++)
		gw_pool_free(t.blocks[i]);
	for (int i = 0; i < 50; i++)
		gw_pool_free(t2.blocks[i]);
	s = class_stats(48);
	ck_assert_uint_eq(s.active_blocks, 0);
	ck_assert_uint_eq(s.total_allocated, s.total_freed);
}
END_TEST

START_TEST(test_thread_cache_flush)
{
	/* freeing more blocks than the cache holds moves them to the central lists */
	setup_pool(1024, 256, 100);
	void *p[2000];
	for (int i = 0; i < 2000; i++)
		ck_assert_ptr_nonnull(p[i] = gw_pool_alloc(16));
	for (int i = 0; i < 2000; i++)
		gw_pool_free(p[i]);
	struct gwmem_shm_class s = class_stats(16);
	ck_assert_uint_eq(s.total_allocated, 2000);
	ck_assert_uint_eq(s.total_freed, 2000);
	/* carved blocks that are not in use are free: 2000 carved, none active */
	ck_assert_uint_eq(s.active_blocks, 0);
	ck_assert_uint_eq(s.free_blocks, s.total_chunks * 256);
	ck_assert_uint_ge(s.free_blocks, 2000);
}
END_TEST

START_TEST(test_double_and_invalid_free_counted)
{
	setup_pool(1024, 64, 10);
	char *p = gw_pool_alloc(100);
	char *q = gw_pool_alloc(100);
	ck_assert_ptr_nonnull(p);
	gw_pool_free(p);
	uint64_t before = gw_counters->double_frees;
	gw_pool_free(p);                 /* double free: refused and counted */
	ck_assert_uint_eq(gw_counters->double_frees, before + 1);
	before = gw_counters->invalid_frees;
	gw_pool_free(q + 8);             /* interior pointer */
	ck_assert_uint_eq(gw_counters->invalid_frees, before + 1);
	int local;
	gw_pool_free(&local);            /* foreign pointer */
	ck_assert_uint_eq(gw_counters->invalid_frees, before + 2);
	/* the pool still works and hands p out once only */
	char *a = gw_pool_alloc(100), *b = gw_pool_alloc(100);
	ck_assert_ptr_ne(a, b);
	gw_pool_free(q);
	gw_pool_free(a);
	gw_pool_free(b);
}
END_TEST

/* Two threads free one block at the same moment, many times: exactly one
 * free of each pair is counted as a double free, and afterwards no block is
 * handed out twice (each was linked into one cache only). */
#define RACE_ROUNDS 5000
static void *volatile race_block;
static int race_round, race_done;

static void *race_free(void *arg)
{
	(void)arg;
	for (int r = 1; r <= RACE_ROUNDS; r++) {
		while (__atomic_load_n(&race_round, __ATOMIC_ACQUIRE) < r)
			sched_yield();
		gw_pool_free(race_block);
		__atomic_add_fetch(&race_done, 1, __ATOMIC_ACQ_REL);
	}
	/* both frees of the last round first: a block allocated again in
	 * between could be freed again legitimately */
	while (__atomic_load_n(&race_done, __ATOMIC_ACQUIRE) < 2 * RACE_ROUNDS)
		sched_yield();
	/* the blocks this thread's cache took come back out here */
	void **got = calloc(RACE_ROUNDS + 64, sizeof(void *));
	for (int i = 0; i < RACE_ROUNDS + 64; i++)
		got[i] = gw_pool_alloc(48);
	return got;
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
	return x < y ? -1 : x > y;
}

START_TEST(test_racing_double_free)
{
	setup_pool(1024, 256, 100);
	uint64_t before = gw_counters->double_frees;
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, race_free, NULL), 0);
	for (int r = 1; r <= RACE_ROUNDS; r++) {
		race_block = gw_pool_alloc(48);
		ck_assert_ptr_nonnull(race_block);
		__atomic_store_n(&race_round, r, __ATOMIC_RELEASE);
		while (__atomic_load_n(&race_done, __ATOMIC_ACQUIRE) < 2 * r)
			sched_yield();
	}
	void **got[2];
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], (void **)&got[i]);
	ck_assert_uint_eq(gw_counters->double_frees - before, RACE_ROUNDS);
	size_t n = 2 * (RACE_ROUNDS + 64);
	void **all = calloc(n, sizeof(void *));
	memcpy(all, got[0], (RACE_ROUNDS + 64) * sizeof(void *));
	memcpy(all + RACE_ROUNDS + 64, got[1], (RACE_ROUNDS + 64) * sizeof(void *));
	qsort(all, n, sizeof(void *), cmp_ptr);
	for (size_t i = 1; i < n; i++)
		if (all[i])
			ck_assert_ptr_ne(all[i], all[i - 1]);
	free(all);
	free(got[0]);
	free(got[1]);
}
END_TEST

START_TEST(test_release_empty_chunks)
{
	setup_pool(1024, 16, 100);
	void *p[16 * 8];
	for (int i = 0; i < 16 * 8; i++)
		ck_assert_ptr_nonnull(p[i] = gw_pool_alloc(1024));
	ck_assert_uint_eq(class_stats(1024).total_chunks, 8);
	for (int i = 0; i < 16 * 8; i++)
		gw_pool_free(p[i]);
	/* some blocks may sit in this thread's cache; a forced release frees
	 * every chunk that is entirely back in the central lists */
	gw_pool_release(true);
	struct gwmem_shm_class s = class_stats(1024);
	ck_assert_uint_ge(s.released_chunks, 6);
	ck_assert_uint_le(s.total_chunks, 2);
	/* released chunks are carved again */
	for (int i = 0; i < 16 * 8; i++)
		ck_assert_ptr_nonnull(p[i] = gw_pool_alloc(1024));
	s = class_stats(1024);
	ck_assert_uint_le(s.total_chunks, 9);   /* blocks left in the cache may pin one more */
	ck_assert_uint_eq(s.active_blocks, 128);
}
END_TEST

START_TEST(test_auto_release)
{
	/* auto_compact with no interval: empty chunks go back as they empty, one is kept */
	gwmem_config_defaults(&cfg);
	cfg.memory_pool.blocks_per_chunk = 16;
	cfg.compaction.compact_interval_seconds = 0;
	ck_assert_int_eq(gw_pool_init(&cfg), 0);
	void *p[16 * 8];
	for (int i = 0; i < 16 * 8; i++)
		ck_assert_ptr_nonnull(p[i] = gw_pool_alloc(4096));
	ck_assert_uint_eq(class_stats(4096).total_chunks, 8);
	for (int i = 0; i < 16 * 8; i++)
		gw_pool_free(p[i]);
	/* chunks went back as they emptied... */
	ck_assert_uint_ge(class_stats(4096).released_chunks, 1);
	/* ...and the periodic, unforced release (the reporter thread's tick)
	 * also takes the lists parked in the transfer cache: the thread cache
	 * holds at most 8 blocks of 4 KiB, so at least 6 chunks are empty */
	gw_pool_release(false);
	struct gwmem_shm_class s = class_stats(4096);
	ck_assert_uint_ge(s.released_chunks, 5);
	ck_assert_uint_le(s.total_chunks, 3);
}
END_TEST

START_TEST(test_double_free_into_released_chunk)
{
	/* chunks of 16 blocks of 1 KiB: 4 whole pages each, given back whole */
	setup_pool(1024, 16, 100);
	enum { N = 16 * 8 };
	void *p[N], *again[2 * N];
	for (int i = 0; i < N; i++)
		ck_assert_ptr_nonnull(p[i] = gw_pool_alloc(1024));
	for (int i = 0; i < N; i++)
		gw_pool_free(p[i]);
	gw_pool_release(true);
	ck_assert_uint_ge(class_stats(1024).released_chunks, 6);

	/* every block of a released chunk: its page reads as zeroes, its
	 * canary is gone; a second free is still a double free */
	uint64_t before = gw_counters->double_frees;
	unsigned stale = 0;
	for (int i = 0; i < N; i++) {
		if (!gw_pool_page_released((uintptr_t)p[i] - gw_pool_g.base))
			continue;
		ck_assert_int_eq(gw_pool_check_realloc(p[i]), GW_POOL_FREED_REALLOC);
		gw_pool_free(p[i]);
		stale++;
	}
	ck_assert_uint_ge(stale, 6 * 16);
	ck_assert_uint_eq(gw_counters->double_frees - before, 2 * stale);   /* realloc + free */

	/* and none of them went onto a free list: the chunks carved again
	 * hand every block out once */
	for (int i = 0; i < 2 * N; i++)
		ck_assert_ptr_nonnull(again[i] = gw_pool_alloc(1024));
	qsort(again, 2 * N, sizeof(again[0]), cmp_ptr);
	for (int i = 1; i < 2 * N; i++)
		ck_assert_ptr_ne(again[i - 1], again[i]);
	/* in use again: a free is an ordinary free */
	for (int i = 0; i < 2 * N; i++)
		ck_assert(!gw_pool_page_released((uintptr_t)again[i] - gw_pool_g.base));
	before = gw_counters->double_frees;
	for (int i = 0; i < 2 * N; i++)
		gw_pool_free(again[i]);
	ck_assert_uint_eq(gw_counters->double_frees, before);
}
END_TEST

START_TEST(test_double_free_into_recarved_chunk)
{
	/* chunks of 64 blocks of 1 KiB (16 pages); a refill carves 16 at a time */
	setup_pool(1024, 64, 100);
	enum { N = 64 * 4 };
	void *p[N], *again[2 * N];
	for (int i = 0; i < N; i++)
		ck_assert_ptr_nonnull(p[i] = gw_pool_alloc(1024));
	for (int i = 0; i < N; i++)
		gw_pool_free(p[i]);
	gw_pool_release(true);
	ck_assert_uint_ge(class_stats(1024).released_chunks, 2);

	/* one block from a chunk given back: it is carved again from zero,
	 * 16 blocks of its 64, and its pages no longer count as released */
	bool rel[N];
	for (int i = 0; i < N; i++)
		rel[i] = gw_pool_page_released((uintptr_t)p[i] - gw_pool_g.base);
	void *q = NULL;
	for (int tries = 0; tries < N && !q; tries++) {
		void *b = gw_pool_alloc(1024);
		for (int i = 0; i < N && !q; i++)
			if (b == p[i] && rel[i])
				q = b;
	}
	ck_assert_ptr_nonnull(q);
	const uintptr_t chunk = 64 * 1024;
	const uintptr_t qc = ((uintptr_t)q - gw_pool_g.base) / chunk;

	/* a late second free of a block of that chunk past what was carved
	 * again reads zeroes, not the canary, and no released page: still a
	 * double free, and the block goes on no list */
	uint64_t before = gw_counters->double_frees;
	unsigned stale = 0;
	for (int i = 0; i < N; i++) {
		uintptr_t off = (uintptr_t)p[i] - gw_pool_g.base;
		if (off / chunk != qc || off % chunk < 16 * 1024)
			continue;
		ck_assert(!gw_pool_page_released(off));
		ck_assert_int_eq(gw_pool_check_realloc(p[i]), GW_POOL_FREED_REALLOC);
		gw_pool_free(p[i]);
		stale++;
	}
	ck_assert_uint_eq(stale, 48);
	ck_assert_uint_eq(gw_counters->double_frees - before, 2 * stale);   /* realloc + free */

	/* every block is handed out once */
	for (int i = 0; i < 2 * N; i++)
		ck_assert_ptr_nonnull(again[i] = gw_pool_alloc(1024));
	qsort(again, 2 * N, sizeof(again[0]), cmp_ptr);
	for (int i = 1; i < 2 * N; i++)
		ck_assert_ptr_ne(again[i - 1], again[i]);
	/* a live block whose second word the program set to 0 is freed as usual */
	before = gw_counters->double_frees;
	for (int i = 0; i < 2 * N; i++) {
		((uintptr_t *)again[i])[1] = 0;
		gw_pool_free(again[i]);
	}
	ck_assert_uint_eq(gw_counters->double_frees, before);
}
END_TEST

/*
 * gw_pool_trim: every region past its last chunk that holds memory goes
 * (empty chunks are released first), once; blocks in the chunks kept stay
 * usable, a class with no room left returns NULL (its requests go to the
 * next allocator), and ownership follows the new bounds.
 */
static void *free_range(void *arg)
{
	void **v = arg;

	for (int i = 0; i < 16 * 5; i++)
		gw_pool_free(v[i]);
	return NULL;
}

START_TEST(test_trim_gives_back_unused_space)
{
	/* chunks of 16 blocks of 1 KiB, 4 pages each */
	setup_pool(1024, 16, 100);
	enum { N = 16 * 6 };
	void *p[N];
	for (int i = 0; i < N; i++)
		ck_assert_ptr_nonnull(p[i] = gw_pool_alloc(1024));
	/* keep the first chunk's blocks; the five after it go empty, freed
	 * by a thread that exits (its cache goes back to the chunks) */
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, free_range, p + 16), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	const uintptr_t region = (uintptr_t)1 << gw_pool_g.region_shift;
	const unsigned cls = gw_pool_size_class(1024);
	const uintptr_t rbase = gw_pool_g.base + ((uintptr_t)cls << gw_pool_g.region_shift);
	uint64_t given = gw_pool_trim();
	ck_assert_uint_ge(given, (gw_pool_g.nclasses - 1) * (uint64_t)region);
	ck_assert_uint_eq(gw_pool_trim(), 0);   /* once */
	/* the class keeps its first chunk (and, with blocks still in this
	 * thread's cache, the chunks those are in), nothing past its last */
	uintptr_t reserved = gw_pool_ro[cls].reserved;
	ck_assert_uint_eq(reserved, 16 * 1024);
	struct gwmem_shm_class st = class_stats(1024);
	ck_assert_uint_eq(st.total_chunks, 1);
	ck_assert_uint_eq(st.released_chunks, 0);     /* the released ones past it are gone */
	unsigned char v;
	ck_assert_int_eq(mincore((void *)(rbase + reserved), 4096, &v), -1);
	ck_assert(!gw_pool_owns_exact((void *)(rbase + reserved)));
	ck_assert(!gw_pool_owns_exact((void *)(gw_pool_g.base + region * (cls ^ 1))));
	/* the kept blocks are blocks: freed and handed out again */
	for (int i = 0; i < 16; i++) {
		ck_assert(gw_pool_owns_exact(p[i]));
		ck_assert_uint_eq(gw_pool_usable_size(p[i]), 1024);
		gw_pool_free(p[i]);
	}
	uint64_t doubles = gw_counters->double_frees;
	void *again[N];
	int got = 0;
	while (got < N && (again[got] = gw_pool_alloc(1024)) != NULL)
		got++;
	ck_assert_int_eq(got, 16);   /* the chunk kept, and no new one */
	for (int i = 0; i < got; i++)
		ck_assert(gw_pool_owns_exact(again[i]));
	qsort(again, (size_t)got, sizeof(again[0]), cmp_ptr);
	for (int i = 1; i < got; i++)
		ck_assert_ptr_ne(again[i - 1], again[i]);
	/* a class that had no chunk has no room: NULL, not a fault */
	ck_assert_ptr_null(gw_pool_alloc(512));
	for (int i = 0; i < got; i++)
		gw_pool_free(again[i]);
	ck_assert_uint_eq(gw_counters->double_frees, doubles);
}
END_TEST

Suite *suite_pool(void);
Suite *suite_pool(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("classes");
	tcase_add_test(tc, test_size_classes);
	tcase_add_test(tc, test_alloc_alignment_and_ownership);
	suite_add_tcase(s, tc);
	tc = tcase_create("chunks");
	tcase_add_test(tc, test_chunk_carving_and_overflow);
	tcase_add_test(tc, test_release_empty_chunks);
	tcase_add_test(tc, test_auto_release);
	tcase_add_test(tc, test_trim_gives_back_unused_space);
	suite_add_tcase(s, tc);
	tc = tcase_create("cache");
	tcase_add_test(tc, test_pool_refill_after_thread_exit);
	tcase_add_test(tc, test_thread_cache_flush);
	suite_add_tcase(s, tc);
	tc = tcase_create("misuse");
	tcase_add_test(tc, test_double_and_invalid_free_counted);
	tcase_add_test(tc, test_racing_double_free);
	tcase_add_test(tc, test_double_free_into_released_chunk);
	tcase_add_test(tc, test_double_free_into_recarved_chunk);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_pool)
