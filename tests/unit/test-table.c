/* tests/unit/test-table.c: striped allocation table, backward-shift deletion, seqlock snapshots */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gwmem.h"
#include "shm.h"
#include "table.h"
#include "suite.h"

static char dir[64];
static struct gw_shm shm;
static struct gw_table tab;

static void make_table(uint32_t max_tracked)
{
	struct gwmem_config cfg;

	gwmem_config_defaults(&cfg);
	strcpy(dir, "/tmp/gwmem-test-table.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	strcpy(cfg.leak_detection.shm_dir, dir);
	cfg.leak_detection.max_tracked_allocations = max_tracked;
	cfg.leak_detection.max_stacks = 64;
	ck_assert_int_eq(gw_shm_create(&shm, &cfg, true), 0);
	gw_table_init(&tab, shm.hdr);
	ck_assert_uint_gt(tab.nstripes, 0);
}

static void drop_table(void)
{
	gw_shm_exit(&shm, false);
	rmdir(dir);
}

static uint32_t stripe_of(uint64_t p)
{
	return (uint32_t)(gw_table_hash(p) & (tab.nstripes - 1));
}

static uint32_t home_of(uint64_t p)
{
	return (uint32_t)(gw_table_hash(p) >> 32) & (tab.slots - 1);
}

START_TEST(test_table_insert_remove)
{
	uint64_t total = 0, sz;

	make_table(4096);
	for (uint64_t i = 1; i <= 1000; i++) {
		ck_assert(gw_table_insert(&tab, i * 16, i, (uint32_t)i, 0, 1, 0));
		total += i;
	}
	ck_assert_uint_eq(gw_table_count(&tab), 1000);
	uint64_t bytes = 0;
	for (uint32_t s = 0; s < tab.nstripes; s++)
		bytes += tab.stripes[s].bytes;
	ck_assert_uint_eq(bytes, total);
	/* a second insert of a live pointer replaces its record */
	ck_assert(gw_table_insert(&tab, 16, 500, 1, 0, 1, 0));
	ck_assert_uint_eq(gw_table_count(&tab), 1000);
	ck_assert(gw_table_remove(&tab, 16, &sz));
	ck_assert_uint_eq(sz, 500);
	for (uint64_t i = 2; i <= 1000; i += 2) {
		ck_assert(gw_table_remove(&tab, i * 16, &sz));
		ck_assert_uint_eq(sz, i);
	}
	for (uint64_t i = 2; i <= 1000; i += 2)
		ck_assert(!gw_table_remove(&tab, i * 16, NULL));
	for (uint64_t i = 3; i <= 1000; i += 2) {
		ck_assert(gw_table_remove(&tab, i * 16, &sz));
		ck_assert_uint_eq(sz, i);
	}
	ck_assert_uint_eq(gw_table_count(&tab), 0);
	for (uint32_t s = 0; s < tab.nstripes; s++) {
		ck_assert_uint_eq(tab.stripes[s].bytes, 0);
		ck_assert_uint_eq(tab.stripes[s].seq & 1, 0);
		ck_assert_uint_eq(tab.stripes[s].inserted, tab.stripes[s].removed);
	}
	for (uint64_t i = 0; i < (uint64_t)tab.nstripes * tab.slots; i++)
		ck_assert_uint_eq(tab.records[i].ptr, 0);
	drop_table();
}
END_TEST

START_TEST(test_table_backward_shift)
{
	uint64_t p[4];
	unsigned n = 0;

	make_table(4096);
	/* four pointers with the same stripe and home slot: one probe run */
	uint32_t want_s = stripe_of(16), want_h = home_of(16);
	for (uint64_t v = 16; n < 4 && v < (UINT64_C(1) << 40); v += 16)
		if (stripe_of(v) == want_s && home_of(v) == want_h)
			p[n++] = v;
	ck_assert_uint_eq(n, 4);
	for (unsigned i = 0; i < 4; i++)
		ck_assert(gw_table_insert(&tab, p[i], 10 + i, 0, 0, 0, 0));
	struct gwmem_shm_record *recs = &tab.records[(uint64_t)want_s * tab.slots];
	for (unsigned i = 0; i < 4; i++)
		ck_assert_uint_eq(recs[(want_h + i) & (tab.slots - 1)].ptr, p[i]);
	/* delete the head of the run: the others shift back, no hole remains */
	ck_assert(gw_table_remove(&tab, p[0], NULL));
	for (unsigned i = 0; i < 3; i++)
		ck_assert_uint_eq(recs[(want_h + i) & (tab.slots - 1)].ptr, p[i + 1]);
	ck_assert_uint_eq(recs[(want_h + 3) & (tab.slots - 1)].ptr, 0);
	/* the middle one */
	ck_assert(gw_table_remove(&tab, p[2], NULL));
	ck_assert_uint_eq(recs[want_h].ptr, p[1]);
	ck_assert_uint_eq(recs[(want_h + 1) & (tab.slots - 1)].ptr, p[3]);
	ck_assert_uint_eq(recs[(want_h + 2) & (tab.slots - 1)].ptr, 0);
	uint64_t sz;
	ck_assert(gw_table_remove(&tab, p[3], &sz));
	ck_assert_uint_eq(sz, 13);
	ck_assert(gw_table_remove(&tab, p[1], &sz));
	ck_assert_uint_eq(sz, 11);
	ck_assert_uint_eq(tab.stripes[want_s].count, 0);
	drop_table();
}
END_TEST

START_TEST(test_table_full_stripe_counted)
{
	unsigned ok = 0, refused = 0;

	make_table(16);
	ck_assert_uint_eq(tab.nstripes, 1);
	ck_assert_uint_eq(tab.slots, 64);
	for (uint64_t i = 1; i <= 100; i++) {
		if (gw_table_insert(&tab, i * 32, 8, 0, 0, 0, 0))
			ok++;
		else
			refused++;
	}
	ck_assert_uint_eq(ok, GW_TABLE_LIMIT(64));
	ck_assert_uint_eq(refused, 100 - GW_TABLE_LIMIT(64));
	ck_assert_uint_eq(tab.stripes[0].full, refused);
	ck_assert_uint_eq(shm.hdr->counters.untracked_table_full, refused);
	ck_assert_uint_eq(tab.stripes[0].count, ok);
	/* lookups of absent pointers in a nearly full stripe still end */
	ck_assert(!gw_table_remove(&tab, 99 * 32, NULL));
	ck_assert(gw_table_remove(&tab, 1 * 32, NULL));
	ck_assert(gw_table_insert(&tab, 1000 * 32, 8, 0, 0, 0, 0));
	drop_table();
}
END_TEST

static volatile int stop_flag;

static void *writer(void *arg)
{
	/* writer n owns pointers n << 32 + ...; the argument is n, not the base,
	 * which would not fit a 32-bit pointer */
	unsigned n = (unsigned)(uintptr_t)arg;
	uint64_t base = (uint64_t)n << 32, live[256] = { 0 };
	unsigned seed = n;

	while (!__atomic_load_n(&stop_flag, __ATOMIC_RELAXED)) {
		unsigned i = (unsigned)rand_r(&seed) % 256;
		if (live[i]) {
			ck_assert(gw_table_remove(&tab, live[i], NULL));
			live[i] = 0;
		} else {
			live[i] = base + (uint64_t)(rand_r(&seed) % 100000) * 4096 + i * 16;
			gw_table_insert(&tab, live[i], 1 + (unsigned)rand_r(&seed) % 5000, i, 0, 0, 0);
		}
	}
	for (unsigned i = 0; i < 256; i++)
		if (live[i])
			gw_table_remove(&tab, live[i], NULL);
	return NULL;
}

START_TEST(test_table_concurrent_snapshots)
{
	pthread_t w[2];
	struct gwmem_shm_record *copy;
	struct gwmem_shm_stripe head;
	unsigned long good = 0, busy = 0;
	struct timespec t0, t;

	make_table(2048);
	copy = calloc(tab.slots, sizeof(*copy));
	stop_flag = 0;
	pthread_create(&w[0], NULL, writer, (void *)(uintptr_t)1);
	pthread_create(&w[1], NULL, writer, (void *)(uintptr_t)2);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned round = 0; round < 1000000; round++) {
		uint32_t s = round % tab.nstripes;
		int r = gw_table_snapshot_stripe(&tab.stripes[s], &tab.records[(uint64_t)s * tab.slots],
						 tab.slots, &head, copy, 1000);
		if (r != 0) {
			busy++;
			continue;
		}
		uint64_t bytes = 0, count = 0;
		for (uint32_t i = 0; i < tab.slots; i++) {
			if (copy[i].ptr) {
				count++;
				bytes += copy[i].size;
			}
		}
		ck_assert_uint_eq(count, head.count);
		ck_assert_uint_eq(bytes, head.bytes);
		ck_assert_uint_eq(head.seq & 1, 0);
		good++;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec >= 1 && good > 1000)
			break;
	}
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELAXED);
	pthread_join(w[0], NULL);
	pthread_join(w[1], NULL);
	ck_assert_uint_gt(good, 1000);
	ck_assert_uint_lt(busy, good);
	ck_assert_uint_eq(gw_table_count(&tab), 0);
	free(copy);
	drop_table();
}
END_TEST

Suite *suite_table(void)
{
	Suite *s = suite_create("table");
	TCase *tc = tcase_create("table");
	tcase_add_test(tc, test_table_insert_remove);
	tcase_add_test(tc, test_table_backward_shift);
	tcase_add_test(tc, test_table_full_stripe_counted);
	tcase_add_test(tc, test_table_concurrent_snapshots);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_table)
