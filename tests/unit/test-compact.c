/* tests/unit/test-compact.c: compacting heap: info, handles, pins, compaction, property rounds, threads. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gwmem.h"
#include "suite.h"

static struct gwmem_heap *mk(void *mem, size_t size, unsigned flags)
{
	struct gwmem_heap_options o = {0};

	o.memory = mem;
	o.size = size;
	o.flags = flags;
	o.name = "test";
	return gwmem_heap_create(&o);
}

START_TEST(test_heap_info_by_hand)
{
	static _Alignas(16) unsigned char arena[4096];
	struct gwmem_heap *hp = mk(arena, sizeof(arena), 0);
	struct gwmem_heap_info in;
	gwmem_handle_t h[8];

	gwmem_heap_info(hp, &in);
	ck_assert_uint_eq(in.total_size, 4096);
	ck_assert_uint_eq(in.free_memory, 4096);
	ck_assert_uint_eq(in.free_blocks, 1);
	ck_assert(in.fragmentation == 0.0);

	/* 100 bytes -> 7 granules of payload + 1 of header = 128 bytes. */
	h[0] = gwmem_heap_alloc(hp, 100);
	ck_assert_uint_ne(h[0], GWMEM_HANDLE_NULL);
	ck_assert_uint_eq(gwmem_heap_size(hp, h[0]), 100);
	gwmem_heap_info(hp, &in);
	ck_assert_uint_eq(in.used_memory, 128);
	ck_assert_uint_eq(in.free_memory, 4096 - 128);
	ck_assert_uint_eq(in.used_regions, 1);
	ck_assert_uint_eq(in.free_blocks, 1);
	ck_assert_int_eq(gwmem_heap_free(hp, h[0]), 0);

	/* 8 x 240 bytes (256 with header), free every other: 4 holes of 256 + tail of 2048. */
	for (int i = 0; i < 8; i++)
		h[i] = gwmem_heap_alloc(hp, 240);
	for (int i = 0; i < 8; i += 2)
		ck_assert_int_eq(gwmem_heap_free(hp, h[i]), 0);
	gwmem_heap_info(hp, &in);
	ck_assert_uint_eq(in.used_memory, 1024);
	ck_assert_uint_eq(in.free_memory, 3072);
	ck_assert_uint_eq(in.largest_free, 2048);
	ck_assert_uint_eq(in.free_blocks, 5);
	ck_assert_uint_eq(in.used_regions, 4);
	ck_assert_double_eq_tol(in.fragmentation, 1.0 - 2048.0 / 3072.0, 1e-12);

	/* Freeing a neighbour coalesces: holes 0,1,2 merge into 768 bytes. */
	ck_assert_int_eq(gwmem_heap_free(hp, h[1]), 0);
	gwmem_heap_info(hp, &in);
	ck_assert_uint_eq(in.free_blocks, 4);
	ck_assert_uint_eq(in.free_memory, 3328);

	ck_assert_int_eq(gwmem_heap_compact(hp), 3);
	gwmem_heap_info(hp, &in);
	ck_assert_uint_eq(in.free_blocks, 1);
	ck_assert_uint_eq(in.largest_free, 3328);
	ck_assert(in.fragmentation == 0.0);
	ck_assert_uint_eq(in.compactions, 1);
	ck_assert_uint_eq(in.bytes_moved, 3 * 256);
	gwmem_heap_destroy(hp);
}
END_TEST

START_TEST(test_heap_stale_handles)
{
	struct gwmem_heap *hp = mk(NULL, 1 << 16, 0);
	struct gwmem_heap_info in;
	gwmem_handle_t a = gwmem_heap_alloc(hp, 50), b;

	ck_assert_int_eq(gwmem_heap_free(hp, a), 0);
	ck_assert_int_eq(gwmem_heap_free(hp, a), -ESTALE);
	ck_assert_ptr_null(gwmem_heap_pin(hp, a));
	ck_assert_int_eq(errno, ESTALE);
	ck_assert_int_eq(gwmem_heap_unpin(hp, a), -ESTALE);
	ck_assert_uint_eq(gwmem_heap_size(hp, a), 0);
	/* The slot is reused with a new generation: the old handle stays dead. */
	b = gwmem_heap_alloc(hp, 50);
	ck_assert_uint_eq(b & 0xffffffffu, a & 0xffffffffu);
	ck_assert_uint_ne(b, a);
	ck_assert_ptr_null(gwmem_heap_pin(hp, a));
	ck_assert_ptr_nonnull(gwmem_heap_pin(hp, b));
	ck_assert_int_eq(gwmem_heap_unpin(hp, b), 0);
	ck_assert_int_eq(gwmem_heap_unpin(hp, b), -EINVAL);
	ck_assert_int_eq(gwmem_heap_free(hp, GWMEM_HANDLE_NULL), -ESTALE);
	ck_assert_int_eq(gwmem_heap_free(hp, 0xdeadbeef12345678ull), -ESTALE);
	gwmem_heap_info(hp, &in);
	ck_assert_uint_eq(in.stale_handles, 7);
	ck_assert_uint_eq(gwmem_heap_alloc(hp, 0), GWMEM_HANDLE_NULL);
	ck_assert_int_eq(errno, EINVAL);
	gwmem_heap_destroy(hp);
}
END_TEST

START_TEST(test_heap_pinned_during_compaction)
{
	struct gwmem_heap *hp = mk(NULL, 8192, 0);
	gwmem_handle_t h[10];
	struct gwmem_heap_info in;
	char *pinned, *p;

	for (int i = 0; i < 10; i++) {
		h[i] = gwmem_heap_alloc(hp, 200);
		p = gwmem_heap_pin(hp, h[i]);
		memset(p, 'a' + i, 200);
		gwmem_heap_unpin(hp, h[i]);
	}
	for (int i = 0; i < 10; i += 3)
		gwmem_heap_free(hp, h[i]); /* frees 0, 3, 6, 9 */
	pinned = gwmem_heap_pin(hp, h[5]);
	ck_assert_int_eq(gwmem_heap_free(hp, h[5]), -EBUSY);
	ck_assert_int_gt(gwmem_heap_compact(hp), 0);
	ck_assert_ptr_eq(gwmem_heap_pin(hp, h[5]), pinned); /* did not move */
	gwmem_heap_unpin(hp, h[5]);
	for (int i = 0; i < 10; i++) {
		if (i % 3 == 0)
			continue;
		p = gwmem_heap_pin(hp, h[i]);
		int bad = 0;

		for (int k = 0; k < 200; k++)
			bad += p[k] != 'a' + i;
		ck_assert_int_eq(bad, 0);
		gwmem_heap_unpin(hp, h[i]);
	}
	gwmem_heap_info(hp, &in);
	ck_assert_uint_eq(in.pinned, 1);
	ck_assert_uint_eq(in.free_blocks, 2); /* the gap before the pinned block + the tail */
	gwmem_heap_unpin(hp, h[5]);
	gwmem_heap_compact(hp);
	gwmem_heap_info(hp, &in);
	ck_assert_uint_eq(in.free_blocks, 1);
	ck_assert_uint_eq(in.pinned, 0);
	gwmem_heap_destroy(hp);
}
END_TEST

static void fragment(struct gwmem_heap *hp, gwmem_handle_t *h, int n, size_t sz)
{
	for (int i = 0; i < n; i++)
		h[i] = gwmem_heap_alloc(hp, sz);
	for (int i = 0; i < n; i += 2)
		gwmem_heap_free(hp, h[i]);
}

START_TEST(test_heap_auto_compact)
{
	struct gwmem_heap_info in;
	gwmem_handle_t h[16];
	struct gwmem_heap *hp = mk(NULL, 16 * 256, 0);

	/* 16 blocks of 256 fill the arena; 8 holes of 256 -> fragmentation 7/8. */
	fragment(hp, h, 16, 240);
	gwmem_heap_info(hp, &in);
	ck_assert_uint_eq(in.free_memory, 2048);
	ck_assert_double_eq_tol(in.fragmentation, 0.875, 1e-12);
	ck_assert_uint_ne(gwmem_heap_alloc(hp, 1000), GWMEM_HANDLE_NULL);
	gwmem_heap_info(hp, &in);
	ck_assert_uint_eq(in.compactions, 1);
	gwmem_heap_destroy(hp);

	hp = mk(NULL, 16 * 256, GWMEM_HEAP_NO_AUTO_COMPACT);
	fragment(hp, h, 16, 240);
	ck_assert_uint_eq(gwmem_heap_alloc(hp, 1000), GWMEM_HANDLE_NULL);
	ck_assert_int_eq(errno, ENOMEM);
	gwmem_heap_info(hp, &in);
	ck_assert_uint_eq(in.compactions, 0);
	gwmem_heap_destroy(hp);

	/* Threshold from the config: 0.9 is above 0.875, so no compaction. */
	setenv("GWMEM_COMPACTION_FRAGMENTATION_THRESHOLD", "0.9", 1);
	hp = mk(NULL, 16 * 256, GWMEM_HEAP_CONFIG);
	unsetenv("GWMEM_COMPACTION_FRAGMENTATION_THRESHOLD");
	fragment(hp, h, 16, 240);
	ck_assert_uint_eq(gwmem_heap_alloc(hp, 1000), GWMEM_HANDLE_NULL);
	gwmem_heap_destroy(hp);
}
END_TEST

/* Property: random alloc/free/pin/compact rounds keep every byte of every live block. */
#define MAXLIVE 300

struct live {
	gwmem_handle_t h;
	size_t size;
	unsigned char seed;
	char *pin;
};

static void check_all(struct gwmem_heap *hp, struct live *lv, int n)
{
	for (int i = 0; i < n; i++) {
		unsigned char *p = gwmem_heap_pin(hp, lv[i].h);

		ck_assert_ptr_nonnull(p);
		if (lv[i].pin)
			ck_assert_ptr_eq(p, lv[i].pin);
		size_t bad = 0;

		for (size_t k = 0; k < lv[i].size; k++)
			bad += p[k] != (unsigned char)(lv[i].seed + k);
		ck_assert_uint_eq(bad, 0);
		gwmem_heap_unpin(hp, lv[i].h);
	}
}

START_TEST(test_heap_property_rounds)
{
	for (unsigned seed = 1; seed <= 8; seed++) {
		static _Alignas(16) unsigned char arena[1 << 17];
		struct gwmem_heap *hp = mk(arena, sizeof(arena), seed & 1 ? 0 : GWMEM_HEAP_NO_AUTO_COMPACT);
		struct live lv[MAXLIVE];
		struct gwmem_heap_info in;
		unsigned s = seed;
		int n = 0;

		for (int round = 0; round < 4000; round++) {
			int r = rand_r(&s) % 100;

			if (r < 55 && n < MAXLIVE) {
				size_t sz = 1 + (size_t)rand_r(&s) % (r < 5 ? 4000 : 700);
				gwmem_handle_t h = gwmem_heap_alloc(hp, sz);

				if (h == GWMEM_HANDLE_NULL) {
					ck_assert_int_eq(errno, ENOMEM);
					continue;
				}
				unsigned char *p = gwmem_heap_pin(hp, h);
				lv[n] = (struct live){.h = h, .size = sz, .seed = (unsigned char)rand_r(&s)};
				for (size_t k = 0; k < sz; k++)
					p[k] = (unsigned char)(lv[n].seed + k);
				if (rand_r(&s) % 10 == 0)
					lv[n].pin = (char *)p; /* stays pinned */
				else
					gwmem_heap_unpin(hp, h);
				n++;
			} else if (r < 95 && n > 0) {
				int i = rand_r(&s) % n;

				if (lv[i].pin) {
					ck_assert_int_eq(gwmem_heap_free(hp, lv[i].h), -EBUSY);
					gwmem_heap_unpin(hp, lv[i].h);
				}
				ck_assert_int_eq(gwmem_heap_free(hp, lv[i].h), 0);
				ck_assert_int_eq(gwmem_heap_free(hp, lv[i].h), -ESTALE);
				lv[i] = lv[--n];
			} else {
				ck_assert_int_ge(gwmem_heap_compact(hp), 0);
				check_all(hp, lv, n);
			}
			gwmem_heap_info(hp, &in);
			if (in.used_memory + in.free_memory != in.total_size || in.used_regions != (size_t)n)
				ck_abort_msg("round %d: used %zu + free %zu != %zu, regions %zu != %d", round,
					     in.used_memory, in.free_memory, in.total_size, in.used_regions, n);
		}
		check_all(hp, lv, n);
		for (int i = 0; i < n; i++) {
			if (lv[i].pin)
				gwmem_heap_unpin(hp, lv[i].h);
			ck_assert_int_eq(gwmem_heap_free(hp, lv[i].h), 0);
		}
		gwmem_heap_info(hp, &in);
		ck_assert_uint_eq(in.free_blocks, 1);
		ck_assert_uint_eq(in.free_memory, in.total_size);
		gwmem_heap_destroy(hp);
	}
}
END_TEST

#define NTHREADS 8
#define NOPS 100000
static struct gwmem_heap *shared;

static void *stress(void *arg)
{
	uint64_t *errors = arg;
	unsigned s = (unsigned)(uintptr_t)arg;
	gwmem_handle_t held[8] = {0};
	unsigned char tag = (unsigned char)(uintptr_t)arg;

	for (int op = 0; op < NOPS; op++) {
		int k = rand_r(&s) % 8;

		if (held[k]) {
			unsigned char *p = gwmem_heap_pin(shared, held[k]);
			size_t n = gwmem_heap_size(shared, held[k]);

			for (size_t i = 0; p && i < n; i++)
				if (p[i] != (unsigned char)(tag + k))
					(*errors)++;
			gwmem_heap_unpin(shared, held[k]);
			if (gwmem_heap_free(shared, held[k]) != 0)
				(*errors)++;
			held[k] = 0;
		} else {
			size_t n = 8 + (size_t)rand_r(&s) % 120;

			held[k] = gwmem_heap_alloc(shared, n);
			if (!held[k])
				continue;
			unsigned char *p = gwmem_heap_pin(shared, held[k]);
			memset(p, (unsigned char)(tag + k), n);
			gwmem_heap_unpin(shared, held[k]);
		}
		if (op % 5000 == 0)
			gwmem_heap_compact(shared);
	}
	for (int k = 0; k < 8; k++)
		if (held[k])
			gwmem_heap_free(shared, held[k]);
	return NULL;
}

START_TEST(test_heap_threads)
{
	pthread_t th[NTHREADS];
	uint64_t errors[NTHREADS] = {0};
	struct gwmem_heap_info in;

	shared = mk(NULL, 1 << 16, 0);
	for (int i = 0; i < NTHREADS; i++)
		pthread_create(&th[i], NULL, stress, &errors[i]);
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_uint_eq(errors[i], 0);
	}
	gwmem_heap_info(shared, &in);
	ck_assert_uint_eq(in.used_regions, 0);
	ck_assert_uint_eq(in.free_memory, in.total_size);
	ck_assert_uint_eq(in.stale_handles, 0);
	gwmem_heap_destroy(shared);
}
END_TEST

static void fill(struct gwmem_heap *hp, gwmem_handle_t h, size_t n, unsigned char seed)
{
	unsigned char *p = gwmem_heap_pin(hp, h);

	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(seed + i);
	gwmem_heap_unpin(hp, h);
}

static bool check_fill(struct gwmem_heap *hp, gwmem_handle_t h, size_t n, unsigned char seed)
{
	unsigned char *p = gwmem_heap_pin(hp, h);
	bool ok = true;

	for (size_t i = 0; i < n && ok; i++)
		ok = p[i] == (unsigned char)(seed + i);
	gwmem_heap_unpin(hp, h);
	return ok;
}

START_TEST(test_heap_realloc)
{
	static _Alignas(16) unsigned char arena[8192];
	struct gwmem_heap *hp = mk(arena, sizeof(arena), GWMEM_HEAP_NO_AUTO_COMPACT);
	struct gwmem_heap_info in;
	gwmem_handle_t a, b, c;

	a = gwmem_heap_alloc(hp, 100);
	b = gwmem_heap_alloc(hp, 100);
	fill(hp, a, 100, 1);
	fill(hp, b, 100, 2);
	/* shrink in place: the tail becomes free space */
	ck_assert_int_eq(gwmem_heap_realloc(hp, a, 40), 0);
	ck_assert_uint_eq(gwmem_heap_size(hp, a), 40);
	ck_assert(check_fill(hp, a, 40, 1));
	gwmem_heap_info(hp, &in);
	ck_assert_uint_eq(in.used_memory, 64 + 128);
	/* grow in place into that tail */
	ck_assert_int_eq(gwmem_heap_realloc(hp, a, 100), 0);
	ck_assert(check_fill(hp, a, 40, 1));
	gwmem_heap_info(hp, &in);
	ck_assert_uint_eq(in.used_memory, 256);
	ck_assert_uint_eq(in.bytes_moved, 0);
	fill(hp, a, 100, 1);
	/* grow past b: the block moves, the handle stays */
	ck_assert_int_eq(gwmem_heap_realloc(hp, a, 1000), 0);
	ck_assert_uint_eq(gwmem_heap_size(hp, a), 1000);
	ck_assert(check_fill(hp, a, 100, 1));
	ck_assert(check_fill(hp, b, 100, 2));
	gwmem_heap_info(hp, &in);
	ck_assert_uint_eq(in.used_memory, 1024 + 128);
	ck_assert_uint_eq(in.used_regions, 2);
	ck_assert_uint_eq(in.free_memory + in.used_memory, sizeof(arena));
	/* a pinned block grows only in place */
	c = gwmem_heap_alloc(hp, 16);
	ck_assert_ptr_nonnull(gwmem_heap_pin(hp, b));
	ck_assert_int_eq(gwmem_heap_realloc(hp, b, 4000), -EBUSY);
	ck_assert_int_eq(gwmem_heap_realloc(hp, b, 50), 0);
	ck_assert_int_eq(gwmem_heap_unpin(hp, b), 0);
	/* misuse and limits */
	ck_assert_int_eq(gwmem_heap_realloc(hp, a, 0), -EINVAL);
	ck_assert_int_eq(gwmem_heap_realloc(hp, a, 100000), -ENOMEM);
	ck_assert_int_eq(gwmem_heap_realloc(hp, a, 8000), -ENOMEM);
	ck_assert(check_fill(hp, a, 100, 1));
	ck_assert_int_eq(gwmem_heap_free(hp, c), 0);
	ck_assert_int_eq(gwmem_heap_realloc(hp, c, 10), -ESTALE);
	ck_assert_int_eq(gwmem_heap_free(hp, a), 0);
	ck_assert_int_eq(gwmem_heap_free(hp, b), 0);
	gwmem_heap_info(hp, &in);
	ck_assert_uint_eq(in.free_memory, sizeof(arena));
	ck_assert_uint_eq(in.free_blocks, 1);
	/* high-water marks stay */
	ck_assert_uint_eq(in.peak_used_regions, 3);
	ck_assert_uint_ge(in.peak_used_memory, 1024 + 128 + 32);
	gwmem_heap_destroy(hp);
}
END_TEST

/* fragmentation_threshold 0 compacts whenever the free space would fit. */
START_TEST(test_heap_threshold_zero_always)
{
	static _Alignas(16) unsigned char arena[4096];
	struct gwmem_heap_options o = {.memory = arena, .size = sizeof(arena), .fragmentation_threshold = 0};
	struct gwmem_heap_info in;
	gwmem_handle_t h[16], big;
	struct gwmem_heap *hp;

	for (int pass = 0; pass < 2; pass++) {
		/* pass 0: threshold 0 (always); pass 1: 0.99 (never at this fragmentation) */
		o.fragmentation_threshold = pass ? 0.99 : 0;
		hp = gwmem_heap_create(&o);
		for (int i = 0; i < 16; i++)
			h[i] = gwmem_heap_alloc(hp, 240);
		/* 14 holes of 256 bytes freed around the two kept: no hole fits 1 KiB */
		for (int i = 0; i < 16; i++)
			if (i != 3 && i != 9)
				gwmem_heap_free(hp, h[i]);
		gwmem_heap_info(hp, &in);
		ck_assert(in.fragmentation > 0 && in.fragmentation < 0.99);
		big = gwmem_heap_alloc(hp, 2500);
		gwmem_heap_info(hp, &in);
		if (pass == 0) {
			ck_assert_uint_ne(big, GWMEM_HANDLE_NULL);
			ck_assert_uint_eq(in.compactions, 1);
		} else {
			ck_assert_uint_eq(big, GWMEM_HANDLE_NULL);
			ck_assert_uint_eq(in.compactions, 0);
		}
		gwmem_heap_destroy(hp);
	}
	/* negative: the default 0.3 */
	o.fragmentation_threshold = -1;
	hp = gwmem_heap_create(&o);
	ck_assert_ptr_nonnull(hp);
	gwmem_heap_destroy(hp);
}
END_TEST

static Suite *suite_compact(void)
{
	Suite *s = suite_create("compact");
	TCase *tc = tcase_create("single");

	tcase_add_test(tc, test_heap_info_by_hand);
	tcase_add_test(tc, test_heap_stale_handles);
	tcase_add_test(tc, test_heap_pinned_during_compaction);
	tcase_add_test(tc, test_heap_auto_compact);
	tcase_add_test(tc, test_heap_realloc);
	tcase_add_test(tc, test_heap_threshold_zero_always);
	suite_add_tcase(s, tc);
	tc = tcase_create("rounds");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_heap_property_rounds);
	tcase_add_test(tc, test_heap_threads);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_compact)
