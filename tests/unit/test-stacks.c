/* tests/unit/test-stacks.c: stack deduplication, full stack table, concurrent interning */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gwmem.h"
#include "shm.h"
#include "stacks.h"
#include "suite.h"

static char dir[64];
static struct gw_shm shm;
static struct gw_stacks st;

static void make_stacks(uint32_t max_stacks, uint32_t max_frames)
{
	struct gwmem_config cfg;

	gwmem_config_defaults(&cfg);
	strcpy(dir, "/tmp/gwmem-test-stacks.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	strcpy(cfg.leak_detection.shm_dir, dir);
	cfg.leak_detection.max_tracked_allocations = 64;
	cfg.leak_detection.max_stacks = max_stacks;
	cfg.leak_detection.max_frames = max_frames;
	ck_assert_int_eq(gw_shm_create(&shm, &cfg, true), 0);
	gw_stacks_init(&st, &shm, max_stacks);
	ck_assert_uint_eq(st.capacity, max_stacks);
}

static void drop_stacks(void)
{
	gw_shm_exit(&shm, false);
	munmap(shm.hdr, shm.size);
	rmdir(dir);
}

/* bytes of the segment file backed by memory, as du sees them */
static uint64_t file_blocks_bytes(void)
{
	struct stat sb;

	ck_assert_int_eq(stat(shm.path, &sb), 0);
	return (uint64_t)sb.st_blocks * 512;
}

START_TEST(test_stacks_dedup)
{
	uint64_t a[16], b[16];

	make_stacks(1024, 16);
	for (unsigned i = 0; i < 16; i++) {
		a[i] = 0x400000 + i * 0x10;
		b[i] = a[i];
	}
	b[15]++;
	uint32_t ia = gw_stacks_intern(&st, a, 16);
	ck_assert_uint_ne(ia, 0);
	for (int i = 0; i < 100000; i++)
		ck_assert_uint_eq(gw_stacks_intern(&st, a, 16), ia);
	uint32_t ib = gw_stacks_intern(&st, b, 16);
	ck_assert_uint_ne(ib, 0);
	ck_assert_uint_ne(ib, ia);
	/* a prefix is another stack */
	uint32_t ic = gw_stacks_intern(&st, a, 15);
	ck_assert_uint_ne(ic, ia);
	ck_assert_uint_ne(ic, ib);
	ck_assert_uint_eq(shm.hdr->counters.stacks_used, 3);
	ck_assert_uint_eq(shm.hdr->counters.dropped_stacks, 0);
	/* deeper than max_frames is cut */
	uint64_t deep[20];
	memcpy(deep, a, sizeof(a));
	deep[16] = deep[17] = deep[18] = deep[19] = 7;
	ck_assert_uint_eq(gw_stacks_intern(&st, deep, 20), ia);
	ck_assert_uint_eq(gw_stacks_intern(&st, a, 0), 0);

	const struct gwmem_shm_stack *e = gw_stacks_get(&st, ia);
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->depth, 16);
	ck_assert_uint_eq(e->hash, gw_stacks_hash(a, 16));
	ck_assert_int_eq(memcmp(e->frames, a, sizeof(a)), 0);
	ck_assert_ptr_null(gw_stacks_get(&st, 0));
	ck_assert_ptr_null(gw_stacks_get(&st, st.capacity + 1));
	/* ids are appended: 1, 2, 3 */
	ck_assert_uint_eq(ia, 1);
	ck_assert_uint_eq(ib, 2);
	ck_assert_uint_eq(ic, 3);
	ck_assert_ptr_null(gw_stacks_get(&st, 4));
	/* the stride in the segment is 16 + 8 * max_frames */
	ck_assert_uint_eq(shm.hdr->stack_stride, 16 + 8 * 16);
	drop_stacks();
}
END_TEST

START_TEST(test_stacks_full_table)
{
	uint32_t ids[40];

	make_stacks(16, 4);
	for (unsigned i = 0; i < 40; i++) {
		uint64_t f[2] = { 0x1000 + i, 0x2000 };
		ids[i] = gw_stacks_intern(&st, f, 2);
	}
	for (unsigned i = 0; i < 16; i++) {
		ck_assert_uint_ne(ids[i], 0);
		for (unsigned j = 0; j < i; j++)
			ck_assert_uint_ne(ids[i], ids[j]);
	}
	for (unsigned i = 16; i < 40; i++)
		ck_assert_uint_eq(ids[i], 0);
	ck_assert_uint_eq(shm.hdr->counters.stacks_used, 16);
	ck_assert_uint_eq(shm.hdr->counters.dropped_stacks, 24);
	/* known stacks are still found once the table is full */
	for (unsigned i = 0; i < 16; i++) {
		uint64_t f[2] = { 0x1000 + i, 0x2000 };
		ck_assert_uint_eq(gw_stacks_intern(&st, f, 2), ids[i]);
	}
	drop_stacks();
}
END_TEST

static uint32_t thread_ids[2][200];

static void *interner(void *arg)
{
	unsigned t = (unsigned)(uintptr_t)arg;

	for (unsigned round = 0; round < 50; round++) {
		for (unsigned i = 0; i < 200; i++) {
			uint64_t f[3] = { 0x5000 + i * 8, 0x6000, 0x7000 + (i % 7) };
			uint32_t id = gw_stacks_intern(&st, f, 3);
			if (round == 0)
				thread_ids[t][i] = id;
			else
				ck_assert_uint_eq(id, thread_ids[t][i]);
		}
	}
	return NULL;
}

START_TEST(test_stacks_concurrent)
{
	pthread_t th[2];

	make_stacks(4096, 8);
	pthread_create(&th[0], NULL, interner, (void *)0);
	pthread_create(&th[1], NULL, interner, (void *)1);
	pthread_join(th[0], NULL);
	pthread_join(th[1], NULL);
	for (unsigned i = 0; i < 200; i++) {
		ck_assert_uint_ne(thread_ids[0][i], 0);
		ck_assert_uint_eq(thread_ids[0][i], thread_ids[1][i]);
	}
	ck_assert_uint_eq(shm.hdr->counters.stacks_used, 200);
	drop_stacks();
}
END_TEST

/* The table's memory follows the stacks seen: max_stacks costs nothing up front. */
START_TEST(test_stacks_growth)
{
	const unsigned n = 5000;
	uint64_t empty, full;

	make_stacks(100000, 16);
	empty = file_blocks_bytes();
	for (unsigned i = 0; i < n; i++) {
		uint64_t f[16];
		for (unsigned k = 0; k < 16; k++)
			f[k] = 0x400000 + i * 64 + k;
		ck_assert_uint_eq(gw_stacks_intern(&st, f, 16), i + 1);
	}
	full = file_blocks_bytes();
	/* 144-byte entries, backed a few pages ahead */
	ck_assert_uint_ge(full - empty, (uint64_t)n * 144);
	ck_assert_uint_le(full - empty, (uint64_t)n * 144 + 32 * 1024);
	ck_assert_uint_le(empty, 64 * 1024);
	/* every one is found again after the index grew several times */
	for (unsigned i = 0; i < n; i++) {
		uint64_t f[16];
		for (unsigned k = 0; k < 16; k++)
			f[k] = 0x400000 + i * 64 + k;
		ck_assert_uint_eq(gw_stacks_intern(&st, f, 16), i + 1);
	}
	ck_assert_uint_eq(shm.hdr->counters.stacks_used, n);
	drop_stacks();
}
END_TEST

Suite *suite_stacks(void)
{
	Suite *s = suite_create("stacks");
	TCase *tc = tcase_create("stacks");
	tcase_add_test(tc, test_stacks_dedup);
	tcase_add_test(tc, test_stacks_full_table);
	tcase_add_test(tc, test_stacks_concurrent);
	tcase_add_test(tc, test_stacks_growth);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_stacks)
