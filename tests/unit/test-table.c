/* tests/unit/test-table.c: striped allocation table, dense records, index with backward-shift deletion, block map of pooled blocks, growth, seqlock snapshots */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gwmem.h"
#include "blockmap.h"
#include "pool.h"
#include "shm.h"
#include "table.h"
#include "view.h"
#include "suite.h"

static char dir[64];
static struct gw_shm shm;
static struct gw_table tab;

static void make_table_cap(uint32_t max_tracked, uint32_t max_bytes)
{
	struct gwmem_config cfg;

	gwmem_config_defaults(&cfg);
	strcpy(dir, "/tmp/gwmem-test-table.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	strcpy(cfg.leak_detection.shm_dir, dir);
	cfg.leak_detection.max_tracked_allocations = max_tracked;
	cfg.leak_detection.max_stacks = 64;
	if (max_bytes)
		cfg.leak_detection.max_segment_bytes = max_bytes;
	ck_assert_int_eq(gw_shm_create(&shm, &cfg, true), 0);
	gw_shm_publish(&shm);
	ck_assert(gw_table_init(&tab, &shm));
	ck_assert_uint_gt(tab.nstripes, 0);
}

static void make_table(uint32_t max_tracked)
{
	make_table_cap(max_tracked, 0);
}

static void drop_table(void)
{
	gw_shm_exit(&shm, false);
	munmap(shm.hdr, shm.size);
	rmdir(dir);
}

static uint32_t stripe_of(uint64_t p)
{
	return (uint32_t)(gw_table_hash(p) & (tab.nstripes - 1));
}

static struct gwmem_shm_record *recs_of(uint32_t s)
{
	return (struct gwmem_shm_record *)(tab.base + tab.stripes[s].offset);
}

/* bytes of the segment file backed by memory, as du sees them */
static uint64_t file_blocks_bytes(void)
{
	struct stat st;

	ck_assert_int_eq(stat(shm.path, &st), 0);
	return (uint64_t)st.st_blocks * 512;
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
		for (uint32_t i = 0; i < tab.stripes[s].slots; i++)
			ck_assert_uint_eq(recs_of(s)[i].ptr, 0);
	}
	drop_table();
}
END_TEST

/* A stripe's records are dense, in insertion order; a freed record is the
 * next one used. */
START_TEST(test_table_dense_records)
{
	uint64_t p[6];
	unsigned n = 0;

	make_table(4096);
	for (uint64_t v = 4096; n < 6; v += 16)
		if (stripe_of(v) == 3)
			p[n++] = v;
	for (unsigned i = 0; i < 6; i++)
		ck_assert(gw_table_insert(&tab, p[i], 100 + i, 0, 0, 0, 0));
	struct gwmem_shm_record *recs = recs_of(3);
	for (unsigned i = 0; i < 6; i++) {
		ck_assert_uint_eq(recs[i].ptr, p[i]);
		ck_assert_uint_eq(recs[i].size, 100 + i);
	}
	ck_assert_uint_eq(recs[6].ptr, 0);
	ck_assert(gw_table_remove(&tab, p[2], NULL));
	ck_assert(gw_table_remove(&tab, p[4], NULL));
	ck_assert_uint_eq(recs[2].ptr, 0);
	ck_assert_uint_eq(recs[4].ptr, 0);
	/* last freed, first reused */
	ck_assert(gw_table_insert(&tab, p[4], 7, 0, 0, 0, 0));
	ck_assert_uint_eq(recs[4].ptr, p[4]);
	ck_assert(gw_table_insert(&tab, p[2], 8, 0, 0, 0, 0));
	ck_assert_uint_eq(recs[2].ptr, p[2]);
	ck_assert_uint_eq(recs[6].ptr, 0);
	ck_assert_uint_eq(tab.stripes[3].count, 6);
	drop_table();
}
END_TEST

/* Index entries of one probe run: deleting shifts the run back, so every
 * lookup still finds its pointer and no hole is left. */
START_TEST(test_table_backward_shift)
{
	uint64_t p[4];
	unsigned n = 0;

	make_table(4096);
	ck_assert(gw_table_insert(&tab, 256, 1, 0, 0, 0, 0));   /* gives the stripe its index */
	uint32_t want_s = stripe_of(256), mask = tab.index[want_s].mask;
	uint32_t want_h = (uint32_t)(gw_table_hash(256) >> 32) & mask;
	ck_assert(gw_table_remove(&tab, 256, NULL));
	for (uint64_t v = 4096; n < 4 && v < (UINT64_C(1) << 40); v += 16)
		if (stripe_of(v) == want_s && ((uint32_t)(gw_table_hash(v) >> 32) & mask) == want_h)
			p[n++] = v;
	ck_assert_uint_eq(n, 4);
	for (unsigned i = 0; i < 4; i++)
		ck_assert(gw_table_insert(&tab, p[i], 10 + i, 0, 0, 0, 0));
	ck_assert_uint_eq(tab.index[want_s].mask, mask);
	const struct gw_table_entry *ent = tab.index[want_s].ent;
	for (unsigned i = 0; i < 4; i++)
		ck_assert_uint_eq(ent[(want_h + i) & mask].hash, gw_table_hash(p[i]));
	/* delete the head of the run: the others shift back, no hole remains */
	ck_assert(gw_table_remove(&tab, p[0], NULL));
	for (unsigned i = 0; i < 3; i++)
		ck_assert_uint_eq(ent[(want_h + i) & mask].hash, gw_table_hash(p[i + 1]));
	ck_assert_uint_eq(ent[(want_h + 3) & mask].hash, 0);
	/* the middle one */
	ck_assert(gw_table_remove(&tab, p[2], NULL));
	ck_assert_uint_eq(ent[want_h].hash, gw_table_hash(p[1]));
	ck_assert_uint_eq(ent[(want_h + 1) & mask].hash, gw_table_hash(p[3]));
	ck_assert_uint_eq(ent[(want_h + 2) & mask].hash, 0);
	ck_assert(!gw_table_remove(&tab, p[0], NULL));
	ck_assert(!gw_table_remove(&tab, p[2], NULL));
	uint64_t sz;
	ck_assert(gw_table_remove(&tab, p[3], &sz));
	ck_assert_uint_eq(sz, 13);
	ck_assert(gw_table_remove(&tab, p[1], &sz));
	ck_assert_uint_eq(sz, 11);
	ck_assert_uint_eq(tab.stripes[want_s].count, 0);
	drop_table();
}
END_TEST

/* Sizes that do not fit an index entry are read from the record; a freed
 * record is reused and the array does not grow for it. */
START_TEST(test_table_big_sizes_and_reuse)
{
	const uint64_t base = UINT64_C(0x7f0000400000), big = UINT64_C(5) << 32;

	make_table(65536);
	for (uint64_t i = 0; i < 3000; i++)
		ck_assert(gw_table_insert(&tab, base + i * 32, i % 7 ? 32 : big, 0, 0, 0, 0));
	for (uint64_t i = 0; i < 3000; i += 3)
		ck_assert(gw_table_remove(&tab, base + i * 32, NULL));
	ck_assert_uint_eq(gw_table_count(&tab), 2000);
	for (uint64_t i = 0; i < 3000; i++) {
		uint64_t sz = 0;

		if (i % 3 == 0) {
			ck_assert(!gw_table_remove(&tab, base + i * 32, NULL));
			continue;
		}
		ck_assert(gw_table_remove(&tab, base + i * 32, &sz));
		ck_assert_uint_eq(sz, i % 7 ? 32 : big);
	}
	/* every record is free now: new ones reuse them, the arrays stay */
	uint32_t slots0 = tab.stripes[0].slots;
	for (uint64_t i = 0; i < 3000; i++)
		ck_assert(gw_table_insert(&tab, base + i * 32 + 16, 8, 0, 0, 0, 0));
	ck_assert_uint_eq(tab.stripes[0].slots, slots0);
	ck_assert_uint_eq(gw_table_count(&tab), 3000);
	drop_table();
}
END_TEST

START_TEST(test_table_full_stripe_counted)
{
	unsigned ok = 0, refused = 0;

	/* a small table: every region is one page, and each stripe takes its
	 * share of max_tracked_allocations (x 5/4) */
	make_table(2400);
	uint32_t region = tab.region_slots;
	ck_assert_uint_eq(tab.min_slots, GW_TABLE_FIRST);
	ck_assert_uint_eq(tab.stripe_limit, (2400 * 5 / 4 + tab.nstripes - 1) / tab.nstripes);
	const uint32_t limit = tab.stripe_limit < region ? tab.stripe_limit : region;
	for (uint64_t v = 256; ok + refused < region + 20; v += 256) {
		if (stripe_of(v) != 0)
			continue;
		if (gw_table_insert(&tab, v, 8, 0, 0, 0, 0))
			ok++;
		else
			refused++;
	}
	ck_assert_uint_eq(ok, limit);
	ck_assert_uint_eq(refused, region + 20 - limit);
	ck_assert_uint_eq(tab.stripes[0].full, refused);
	ck_assert_uint_eq(shm.hdr->counters.untracked_table_full, refused);
	ck_assert_uint_eq(tab.stripes[0].count, ok);
	ck_assert_uint_eq(tab.stripes[0].slots, region);
	drop_table();
}
END_TEST

/* The table grows with the live records; the file's memory follows them and
 * does not depend on max_tracked_allocations. */
START_TEST(test_table_growth)
{
	const uint64_t n = 200000, base = UINT64_C(0x7f0000000000);
	uint64_t before, grown, used;

	make_table(4000000);
	before = file_blocks_bytes();
	ck_assert_uint_le(before, 128 * 1024);   /* header and 1024 stripe heads */
	for (uint64_t i = 0; i < n; i++)
		ck_assert(gw_table_insert(&tab, base + i * 48, 48, 0, 0, 0, 0));
	ck_assert_uint_eq(gw_table_count(&tab), n);
	for (uint32_t s = 0; s < tab.nstripes; s++) {
		ck_assert_uint_gt(tab.stripes[s].slots, tab.min_slots);
		ck_assert_uint_le(tab.stripes[s].count, tab.stripes[s].slots);
		/* dense: at most twice what is live */
		ck_assert_uint_le(tab.stripes[s].slots, tab.stripes[s].count * 2);
	}
	grown = file_blocks_bytes();
	used = shm.hdr->allocated_bytes;
	/* 64 bytes a record at most, plus the header */
	ck_assert_uint_le(grown, 64 * n + 128 * 1024);
	/* nothing but the current arrays: the small pages and the arrays the
	 * stripes outgrew were all given back */
	uint64_t arrays = 0;
	for (uint32_t s = 0; s < tab.nstripes; s++)
		arrays += (uint64_t)tab.stripes[s].slots * sizeof(struct gwmem_shm_record);
	ck_assert_uint_le(grown, arrays + 128 * 1024);
	ck_assert_uint_eq(tab.nsmall_pages, 0);
	ck_assert_uint_le(used, 64 * n + 128 * 1024);
	ck_assert_uint_ge(used, 32 * n);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t sz = 0;
		ck_assert(gw_table_remove(&tab, base + i * 48, &sz));
		ck_assert_uint_eq(sz, 48);
	}
	ck_assert_uint_eq(gw_table_count(&tab), 0);
	drop_table();
}
END_TEST

/* Many stripes with a few records each: their arrays are packed into
 * shared pages, so memory follows the records, not the stripe count, and
 * an array a stripe outgrew is reused by the next one that needs its size. */
START_TEST(test_table_small_arrays_packed)
{
	const uint64_t n = 2000, base = UINT64_C(0x7f0000800000);
	uint64_t before;

	make_table(4000000);
	ck_assert_uint_eq(tab.nstripes, 1024);
	before = file_blocks_bytes();
	for (uint64_t i = 0; i < n; i++)
		ck_assert(gw_table_insert(&tab, base + i * 64, 64, 0, 0, 0, 0));
	/* 2000 records over about 870 stripes: 256-byte arrays, not pages
	 * (which would take 3.5 MB) */
	ck_assert_uint_le(file_blocks_bytes() - before, 64 * n + 256 * tab.nstripes);

	/* stripe 5 grows from 8 to 16 records: its 8-record array is free... */
	uint64_t p[9];
	unsigned k = 0;
	for (uint64_t v = base + n * 64; k < 9; v += 16)
		if (stripe_of(v) == 5)
			p[k++] = v;
	while (tab.stripes[5].count)
		for (uint64_t i = 0; i < n; i++)
			if (stripe_of(base + i * 64) == 5)
				gw_table_remove(&tab, base + i * 64, NULL);
	uint64_t first = tab.stripes[5].offset;
	for (unsigned i = 0; i < 9; i++)
		ck_assert(gw_table_insert(&tab, p[i], 16, 0, 0, 0, 0));
	ck_assert_uint_eq(tab.stripes[5].slots, 2 * GW_TABLE_FIRST);
	ck_assert_uint_ne(tab.stripes[5].offset, first);
	/* ...and the next stripe that needs an 8-record array gets it */
	uint32_t empty = 0;
	while (empty < tab.nstripes && tab.stripes[empty].slots)
		empty++;
	ck_assert_uint_lt(empty, tab.nstripes);
	for (uint64_t v = UINT64_C(0x7e0000000000);; v += 16) {
		if (stripe_of(v) != empty)
			continue;
		ck_assert(gw_table_insert(&tab, v, 1, 0, 0, 0, 0));
		break;
	}
	ck_assert_uint_eq(tab.stripes[empty].offset, first);
	ck_assert_uint_eq(tab.stripes[empty].count, 1);
	drop_table();
}
END_TEST

/* A segment that may not grow any further refuses records, counts them and
 * never faults. */
START_TEST(test_table_segment_cap)
{
	const uint64_t base = UINT64_C(0x7f0000000000);
	uint64_t ok = 0;

	make_table_cap(200000, 256 * 1024);
	for (uint64_t i = 0; i < 100000; i++)
		ok += gw_table_insert(&tab, base + i * 32, 32, 0, 0, 0, 0);
	ck_assert_uint_gt(ok, 1000);
	ck_assert_uint_lt(ok, 100000);
	ck_assert_uint_eq(gw_table_count(&tab), ok);
	ck_assert_uint_gt(shm.hdr->counters.untracked_segment_full + shm.hdr->counters.untracked_table_full, 0);
	ck_assert_uint_le(shm.hdr->allocated_bytes, 256 * 1024);
	ck_assert_uint_le(file_blocks_bytes(), 256 * 1024);
	drop_table();
}
END_TEST

static volatile int stop_flag;

#define WRITER_LIVE 4096

static void *writer(void *arg)
{
	/* writer n owns pointers n << 32 + ...; the argument is n, not the base,
	 * which would not fit a 32-bit pointer */
	unsigned n = (unsigned)(uintptr_t)arg;
	uint64_t base = (uint64_t)n << 32;
	static uint64_t lives[3][WRITER_LIVE];
	uint64_t *live = lives[n];
	unsigned seed = n, round = 0;

	memset(live, 0, sizeof(lives[n]));
	while (!__atomic_load_n(&stop_flag, __ATOMIC_RELAXED)) {
		/* the live set grows for a while (the arrays grow under the
		 * readers), then churns */
		unsigned span = round < 20000 ? 64 + round / 5 : WRITER_LIVE;
		unsigned i = (unsigned)rand_r(&seed) % (span < WRITER_LIVE ? span : WRITER_LIVE);

		round++;
		if (live[i]) {
			ck_assert(gw_table_remove(&tab, live[i], NULL));
			live[i] = 0;
		} else {
			live[i] = base + (uint64_t)(rand_r(&seed) % 50000) * 65536 + i * 16;
			gw_table_insert(&tab, live[i], 1 + (unsigned)rand_r(&seed) % 5000, i % 64, 0, 0, 0);
		}
	}
	for (unsigned i = 0; i < WRITER_LIVE; i++)
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

	make_table(200000);
	copy = calloc(tab.region_slots, sizeof(*copy));
	stop_flag = 0;
	pthread_create(&w[0], NULL, writer, (void *)(uintptr_t)1);
	pthread_create(&w[1], NULL, writer, (void *)(uintptr_t)2);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned round = 0; round < 1000000; round++) {
		uint32_t s = round % tab.nstripes;
		int r = gw_table_snapshot_stripe(&tab, s, &head, copy, tab.region_slots, 1000);
		if (r != 0) {
			ck_assert_int_eq(r, -EAGAIN);
			busy++;
			continue;
		}
		uint64_t bytes = 0, count = 0;
		for (uint32_t i = 0; i < head.slots; i++) {
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
		if (t.tv_sec - t0.tv_sec >= 2 && good > 1000)
			break;
	}
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELAXED);
	pthread_join(w[0], NULL);
	pthread_join(w[1], NULL);
	ck_assert_uint_gt(good, 1000);
	ck_assert_uint_lt(busy, good);
	ck_assert_uint_eq(gw_table_count(&tab), 0);
	/* the arrays grew while they were read */
	uint32_t grown = 0;
	for (uint32_t s = 0; s < tab.nstripes; s++)
		grown += tab.stripes[s].slots > tab.min_slots;
	ck_assert_uint_gt(grown, 0);
	free(copy);
	drop_table();
}
END_TEST

/* The CLI's reader (gw_view, pread of the arrays) while writers grow the table. */
/* One large stripe that a writer changes without a pause: a whole copy is
 * always torn, so the reader reads it a chunk at a time and still answers,
 * with every record it reports one that was live. */
static uint64_t busy_ptrs[8000];

static void *busy_writer(void *arg)
{
	unsigned seed = 7, k = 0;

	(void)arg;
	while (!__atomic_load_n(&stop_flag, __ATOMIC_RELAXED)) {
		/* the last 100 records churn; the first 7900 stay */
		unsigned i = 7900 + (unsigned)rand_r(&seed) % 100;

		ck_assert(gw_table_remove(&tab, busy_ptrs[i], NULL));
		ck_assert(gw_table_insert(&tab, busy_ptrs[i], 16, 1, 0, 0, 0));
		k++;
	}
	return NULL;
}

struct busy_seen {
	uint64_t records, bytes;
};

static int busy_stripe(void *ctx, uint32_t stripe, const struct gwmem_shm_record *slots, uint32_t nslots,
		       uint32_t count, uint64_t bytes)
{
	struct busy_seen *seen = ctx;

	(void)stripe;
	for (uint32_t i = 0; i < nslots; i++) {
		if (!slots[i].ptr)
			continue;
		ck_assert_uint_eq(slots[i].size, 16);
		ck_assert_uint_eq(stripe_of(slots[i].ptr), 0);
		seen->records++;
	}
	ck_assert_uint_le(seen->records, 8000);
	seen->bytes += bytes;
	(void)count;
	return 0;
}

START_TEST(test_table_view_busy_writer)
{
	pthread_t w;
	struct gw_view v;
	struct gw_view_snap_stats st;
	uint64_t chunked = 0;
	unsigned n = 0;

	make_table(262144);
	for (uint64_t p = UINT64_C(0x7f0000000000); n < 8000; p += 16)
		if (stripe_of(p) == 0)
			busy_ptrs[n++] = p;
	for (unsigned i = 0; i < n; i++)
		ck_assert(gw_table_insert(&tab, busy_ptrs[i], 16, 1, 0, 0, 0));
	ck_assert_int_eq(gw_view_open(&v, shm.path), 0);
	stop_flag = 0;
	pthread_create(&w, NULL, busy_writer, NULL);
	for (int round = 0; round < 20; round++) {
		struct busy_seen seen = { 0, 0 };
		int r = gw_view_snapshot(&v, busy_stripe, &seen, &st);

		ck_assert_msg(r == 0, "snapshot %d: %d %s", round, r, v.why ? v.why : "");
		/* the 7900 that stay are always seen; at most the churning 100 are missing */
		ck_assert_uint_ge(seen.records, 7900);
		ck_assert_uint_eq(st.records, seen.records);
		ck_assert_uint_eq(st.bytes, 16 * seen.records);
		chunked += st.chunked;
	}
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELAXED);
	pthread_join(w, NULL);
	/* a quiet stripe is read whole again, exactly */
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, &st), 0);
	ck_assert_uint_eq(st.records, 8000);
	ck_assert_uint_eq(st.chunked, 0);
	/* how many stripes needed chunks depends on the machine's timing (on
	 * two quiet cores most copies of 256 KiB are torn): not asserted */
	(void)chunked;
	gw_view_close(&v);
	drop_table();
}
END_TEST

/* A writer the scheduler takes off the CPU inside its section (seq odd for
 * 100 ms, as on a loaded machine) is waited for, not reported busy. */
static void *preempted_writer(void *arg)
{
	struct gwmem_shm_stripe *s = arg;
	struct timespec ts = { 0, 100 * 1000 * 1000 };

	__atomic_store_n(&s->seq, s->seq + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
	nanosleep(&ts, NULL);
	__atomic_store_n(&s->seq, s->seq + 1, __ATOMIC_RELEASE);
	return NULL;
}

START_TEST(test_table_view_waits_for_preempted_writer)
{
	pthread_t w;
	struct gw_view v;
	struct gw_view_snap_stats st;

	make_table(4096);
	ck_assert(gw_table_insert(&tab, 4096, 10, 1, 0, 0, 0));
	ck_assert_int_eq(gw_view_open(&v, shm.path), 0);
	stop_flag = 0;
	pthread_create(&w, NULL, preempted_writer, &tab.stripes[stripe_of(4096)]);
	while (!__atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE))
		;
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, &st), 0);
	ck_assert_uint_eq(st.records, 1);
	pthread_join(w, NULL);
	gw_view_close(&v);
	drop_table();
}
END_TEST

START_TEST(test_table_view_while_growing)
{
	pthread_t w[2];
	struct gw_view v;
	struct gw_view_snap_stats st;
	unsigned good = 0;
	struct timespec t0, t;

	make_table(200000);
	ck_assert_int_eq(gw_view_open(&v, shm.path), 0);
	stop_flag = 0;
	pthread_create(&w[0], NULL, writer, (void *)(uintptr_t)1);
	pthread_create(&w[1], NULL, writer, (void *)(uintptr_t)2);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		int r = gw_view_snapshot(&v, NULL, NULL, &st);

		if (r != 0 && r != GW_VIEW_ERR_BUSY)
			ck_abort_msg("snapshot: %d %s", r, v.why ? v.why : "");
		good += r == 0;
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (t.tv_sec - t0.tv_sec < 2);
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELAXED);
	pthread_join(w[0], NULL);
	pthread_join(w[1], NULL);
	ck_assert_uint_gt(good, 10);
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, &st), 0);
	ck_assert_uint_eq(st.records, 0);
	gw_view_close(&v);
	drop_table();
}
END_TEST

/* A reader that opened the segment while it was small reads it after it
 * has grown: the arrays moved to regions the reader never looked at. */
START_TEST(test_table_old_reader)
{
	const uint64_t base = UINT64_C(0x7f0000000000);
	struct gw_view v;
	struct gw_view_snap_stats st;

	make_table(200000);
	ck_assert(gw_table_insert(&tab, base, 10, 0, 0, 0, 0));
	ck_assert_int_eq(gw_view_open(&v, shm.path), 0);
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, &st), 0);
	ck_assert_uint_eq(st.records, 1);
	uint64_t allocated = shm.hdr->allocated_bytes;
	for (uint64_t i = 1; i < 30000; i++)
		ck_assert(gw_table_insert(&tab, base + i * 64, 10, 0, 0, 0, 0));
	ck_assert_uint_gt(shm.hdr->allocated_bytes, allocated);
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, &st), 0);
	ck_assert_uint_eq(st.records, 30000);
	ck_assert_uint_eq(st.bytes, 300000);
	gw_view_close(&v);
	drop_table();
}
END_TEST

/* --- the block map: pooled pointers bypass the hash index ------------------ */

/* A made-up pool geometry: three regions of 1 MiB from bm_base, blocks of
 * 16, 48 and 256 bytes, entries for the first 1000, 100 and 50 blocks.
 * The table never dereferences a pointer, so nothing is mapped there. */
static const uint64_t bm_base = UINT64_C(0x7e0000000000);

static void make_mapped_table(void)
{
	static const uint32_t sizes[] = { 16, 48, 256 }, caps[] = { 1000, 100, 50 };

	make_table(200000);
	/* without pools the table starts with the map off (a test process
	 * run with CK_FORK=no may have started them in an earlier test) */
	if (!gw_pool_ready())
		ck_assert_uint_eq(tab.map.span, 0);
	gw_blockmap_fini(&tab.map);
	ck_assert(gw_blockmap_init(&tab.map, bm_base, 20, 3, sizes, caps));
}

static uint32_t hashed_entries(void)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < tab.nstripes; i++)
		n += tab.index[i].hashed;
	return n;
}

/* A pooled pointer other than p (a block of class 0) in p's stripe. */
static uint64_t same_stripe_block(uint64_t p)
{
	for (uint64_t q = bm_base; q < bm_base + 1000 * 16; q += 16)
		if (q != p && stripe_of(q) == stripe_of(p))
			return q;
	ck_abort_msg("no block shares the stripe");
	return 0;
}

START_TEST(test_blockmap_geometry)
{
	make_mapped_table();
	/* block starts of every class, up to each class's entries */
	ck_assert_ptr_eq(gw_blockmap_slot(&tab.map, bm_base), tab.map.cls[0].ent);
	ck_assert_ptr_eq(gw_blockmap_slot(&tab.map, bm_base + 999 * 16), tab.map.cls[0].ent + 999);
	ck_assert_ptr_eq(gw_blockmap_slot(&tab.map, bm_base + (1u << 20) + 99 * 48), tab.map.cls[1].ent + 99);
	ck_assert_ptr_eq(gw_blockmap_slot(&tab.map, bm_base + (2u << 20) + 7 * 256), tab.map.cls[2].ent + 7);
	/* not a block start, past the entries, outside the regions */
	ck_assert_ptr_null(gw_blockmap_slot(&tab.map, bm_base + 8));
	ck_assert_ptr_null(gw_blockmap_slot(&tab.map, bm_base + (1u << 20) + 16));
	ck_assert_ptr_null(gw_blockmap_slot(&tab.map, bm_base + (1u << 20) + 47));
	ck_assert_ptr_null(gw_blockmap_slot(&tab.map, bm_base + 1000 * 16));
	ck_assert_ptr_null(gw_blockmap_slot(&tab.map, bm_base + (1u << 20) + 100 * 48));
	ck_assert_ptr_null(gw_blockmap_slot(&tab.map, bm_base + (3u << 20)));
	ck_assert_ptr_null(gw_blockmap_slot(&tab.map, bm_base - 16));
	/* arrays start on their own cache line */
	ck_assert_uint_eq((uintptr_t)tab.map.cls[1].ent % 64, 0);
	gw_blockmap_fini(&tab.map);
	ck_assert_ptr_null(gw_blockmap_slot(&tab.map, bm_base));
	drop_table();
}
END_TEST

START_TEST(test_blockmap_insert_remove)
{
	uint64_t sz, total = 0;

	make_mapped_table();
	for (uint64_t k = 0; k < 1000; k++) {
		ck_assert(gw_table_insert(&tab, bm_base + k * 16, k + 1, 7, 0, 1, 0));
		total += k + 1;
	}
	for (uint64_t k = 0; k < 100; k++)
		ck_assert(gw_table_insert(&tab, bm_base + (1u << 20) + k * 48, 40, 7, 0, 1, 0));
	total += 100 * 40;
	ck_assert_uint_eq(gw_table_count(&tab), 1100);
	/* no hash entry, no hash index was even made */
	ck_assert_uint_eq(hashed_entries(), 0);
	for (uint32_t i = 0; i < tab.nstripes; i++)
		ck_assert_ptr_null(tab.index[i].ent);
	/* each entry names the pointer's record in its stripe */
	for (uint64_t k = 0; k < 1000; k += 37) {
		uint64_t p = bm_base + k * 16;
		uint32_t e = *gw_blockmap_slot(&tab.map, p);
		ck_assert_uint_ne(e, 0);
		ck_assert_uint_eq(recs_of(stripe_of(p))[e - 1].ptr, p);
		ck_assert_uint_eq(recs_of(stripe_of(p))[e - 1].size, k + 1);
	}
	uint64_t bytes = 0;
	for (uint32_t i = 0; i < tab.nstripes; i++)
		bytes += tab.stripes[i].bytes;
	ck_assert_uint_eq(bytes, total);
	/* a remove takes its size from the record and clears the entry */
	for (uint64_t k = 0; k < 1000; k++) {
		ck_assert(gw_table_remove(&tab, bm_base + k * 16, &sz));
		ck_assert_uint_eq(sz, k + 1);
		ck_assert_uint_eq(*gw_blockmap_slot(&tab.map, bm_base + k * 16), 0);
		ck_assert(!gw_table_remove(&tab, bm_base + k * 16, NULL));
	}
	ck_assert_uint_eq(gw_table_count(&tab), 100);
	for (uint64_t k = 0; k < 100; k++)
		ck_assert(gw_table_remove(&tab, bm_base + (1u << 20) + k * 48, NULL));
	ck_assert_uint_eq(gw_table_count(&tab), 0);
	for (uint32_t i = 0; i < tab.nstripes; i++)
		ck_assert_uint_eq(tab.stripes[i].bytes, 0);
	drop_table();
}
END_TEST

/* Pointers the map does not cover keep the hash index, next to mapped ones. */
START_TEST(test_blockmap_forwarded_pointers)
{
	const uint64_t outside[] = {
		bm_base - 4096, bm_base + (3u << 20), bm_base + 8,    /* below, above, not a block start */
		bm_base + 1000 * 16,                                  /* past the class's entries */
		UINT64_C(0x5555000010),                               /* the next allocator's */
	};
	const unsigned n = sizeof(outside) / sizeof(outside[0]);
	uint64_t sz;

	make_mapped_table();
	for (unsigned i = 0; i < n; i++) {
		ck_assert_ptr_null(gw_blockmap_slot(&tab.map, outside[i]));
		ck_assert(gw_table_insert(&tab, outside[i], 100 + i, 1, 0, 1, 0));
		ck_assert(gw_table_insert(&tab, bm_base + i * 16, 10 + i, 1, 0, 1, 0));
	}
	ck_assert_uint_eq(hashed_entries(), n);
	ck_assert_uint_eq(gw_table_count(&tab), 2 * n);
	/* again: both kinds are updated in place */
	for (unsigned i = 0; i < n; i++) {
		ck_assert(gw_table_insert(&tab, outside[i], 200 + i, 1, 0, 1, 0));
		ck_assert(gw_table_insert(&tab, bm_base + i * 16, 20 + i, 1, 0, 1, 0));
	}
	ck_assert_uint_eq(hashed_entries(), n);
	ck_assert_uint_eq(gw_table_count(&tab), 2 * n);
	for (unsigned i = 0; i < n; i++) {
		ck_assert(gw_table_remove(&tab, outside[i], &sz));
		ck_assert_uint_eq(sz, 200 + i);
		ck_assert(gw_table_remove(&tab, bm_base + i * 16, &sz));
		ck_assert_uint_eq(sz, 20 + i);
	}
	ck_assert_uint_eq(hashed_entries(), 0);
	ck_assert_uint_eq(gw_table_count(&tab), 0);
	drop_table();
}
END_TEST

/* An entry that does not name its pointer's record is never trusted: a
 * remove through it changes nothing, an insert through it makes a new
 * record instead of overwriting another pointer's. */
START_TEST(test_blockmap_stale_entry)
{
	const uint64_t p = bm_base + 5 * 16;
	uint32_t *sp, *sq;
	uint64_t q, sz;

	make_mapped_table();
	q = same_stripe_block(p);
	sp = gw_blockmap_slot(&tab.map, p);
	sq = gw_blockmap_slot(&tab.map, q);
	ck_assert(gw_table_insert(&tab, q, 33, 3, 0, 1, 0));
	/* p has no record; its entry names q's */
	*sp = *sq;
	ck_assert(!gw_table_remove(&tab, p, &sz));
	ck_assert_uint_eq(*sp, 0);
	ck_assert_uint_eq(gw_table_count(&tab), 1);
	ck_assert_uint_eq(recs_of(stripe_of(q))[*sq - 1].ptr, q);
	/* an entry past every record handed out */
	*sp = 1000000;
	ck_assert(!gw_table_remove(&tab, p, NULL));
	ck_assert_uint_eq(*sp, 0);
	/* reuse: p's record freed, q takes it, p's entry still names it */
	ck_assert(gw_table_remove(&tab, q, NULL));
	ck_assert(gw_table_insert(&tab, p, 11, 1, 0, 1, 0));
	uint32_t e = *sp;
	ck_assert(gw_table_remove(&tab, p, NULL));
	ck_assert(gw_table_insert(&tab, q, 22, 2, 0, 1, 0));
	ck_assert_uint_eq(*sq, e);                /* last freed, first reused */
	*sp = e;
	ck_assert(gw_table_insert(&tab, p, 44, 4, 0, 1, 0));
	ck_assert_uint_ne(*sp, e);
	ck_assert_uint_eq(gw_table_count(&tab), 2);
	ck_assert(gw_table_remove(&tab, q, &sz));
	ck_assert_uint_eq(sz, 22);
	ck_assert(gw_table_remove(&tab, p, &sz));
	ck_assert_uint_eq(sz, 44);
	ck_assert_uint_eq(gw_table_count(&tab), 0);
	drop_table();
}
END_TEST

/* The same pointer inserted twice (realloc in place, an untracked free in
 * between) keeps one record, updated where it is. */
START_TEST(test_blockmap_replacement)
{
	const uint64_t p = bm_base + (2u << 20) + 3 * 256;
	uint32_t e;
	uint64_t sz;

	make_mapped_table();
	ck_assert(gw_table_insert(&tab, p, 100, 1, 0, 1, 0));
	e = *gw_blockmap_slot(&tab.map, p);
	ck_assert(gw_table_insert(&tab, p, 250, 9, 0, 1, 0));
	ck_assert_uint_eq(*gw_blockmap_slot(&tab.map, p), e);
	ck_assert_uint_eq(gw_table_count(&tab), 1);
	ck_assert_uint_eq(tab.stripes[stripe_of(p)].bytes, 250);
	ck_assert_uint_eq(recs_of(stripe_of(p))[e - 1].stack_id, 9);
	ck_assert_uint_eq(tab.stripes[stripe_of(p)].inserted, 2);
	ck_assert_uint_eq(tab.stripes[stripe_of(p)].removed, 1);
	ck_assert(gw_table_remove(&tab, p, &sz));
	ck_assert_uint_eq(sz, 250);
	ck_assert_uint_eq(gw_table_count(&tab), 0);
	drop_table();
}
END_TEST

/* With the map off, the same pointers go through the hash index. */
START_TEST(test_blockmap_off)
{
	uint64_t sz;

	make_mapped_table();
	gw_blockmap_fini(&tab.map);
	for (uint64_t k = 0; k < 300; k++)
		ck_assert(gw_table_insert(&tab, bm_base + k * 16, k + 1, 1, 0, 1, 0));
	ck_assert_uint_eq(hashed_entries(), 300);
	for (uint64_t k = 0; k < 300; k++) {
		ck_assert(gw_table_remove(&tab, bm_base + k * 16, &sz));
		ck_assert_uint_eq(sz, k + 1);
	}
	ck_assert_uint_eq(hashed_entries(), 0);
	ck_assert_uint_eq(gw_table_count(&tab), 0);
	drop_table();
}
END_TEST

/* Threads recording neighbouring blocks (one map line, different stripes)
 * at once: every remove finds its own insert's size, nothing is lost. */
#define BM_THREADS 4
static void *bm_worker(void *arg)
{
	const uint64_t t = (uintptr_t)arg;
	uint64_t bad = 0, sz;

	for (uint64_t round = 0; round < 300; round++) {
		for (uint64_t k = t; k < 1000; k += BM_THREADS)
			if (!gw_table_insert(&tab, bm_base + k * 16, k * 8 + round, 1, 0, (uint32_t)t, 0))
				bad++;
		for (uint64_t k = t; k < 1000; k += BM_THREADS)
			if (!gw_table_remove(&tab, bm_base + k * 16, &sz) || sz != k * 8 + round)
				bad++;
	}
	return (void *)(uintptr_t)bad;
}

START_TEST(test_blockmap_concurrent)
{
	pthread_t th[BM_THREADS];
	void *bad;

	make_mapped_table();
	for (uintptr_t i = 0; i < BM_THREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, bm_worker, (void *)i), 0);
	for (int i = 0; i < BM_THREADS; i++) {
		ck_assert_int_eq(pthread_join(th[i], &bad), 0);
		ck_assert_ptr_null(bad);
	}
	ck_assert_uint_eq(gw_table_count(&tab), 0);
	ck_assert_uint_eq(hashed_entries(), 0);
	for (uint32_t i = 0; i < tab.nstripes; i++)
		ck_assert_uint_eq(tab.stripes[i].bytes, 0);
	drop_table();
}
END_TEST

/* The map of real pools: their blocks have entries, other memory has none;
 * a limit on the address space leaves it off. */
START_TEST(test_blockmap_pools)
{
	struct gwmem_config cfg;
	struct gw_blockmap m;
	void *a, *b;

	gwmem_config_defaults(&cfg);
	ck_assert_int_eq(gw_pool_init(&cfg), 0);
	ck_assert_int_eq(gw_blockmap_init_pools(&m), GW_BLOCKMAP_ON);
	a = gw_pool_alloc(24);
	b = gw_pool_alloc(4000);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_nonnull(gw_blockmap_slot(&m, (uintptr_t)a));
	ck_assert_ptr_nonnull(gw_blockmap_slot(&m, (uintptr_t)b));
	ck_assert_ptr_ne(gw_blockmap_slot(&m, (uintptr_t)a), gw_blockmap_slot(&m, (uintptr_t)b));
	ck_assert_ptr_null(gw_blockmap_slot(&m, (uintptr_t)a + 8));
	ck_assert_ptr_null(gw_blockmap_slot(&m, (uintptr_t)&m));
	/* 4 bytes per block a class can ever hold, cache-line rounded */
	uint64_t blocks = 0;
	for (unsigned i = 0; i < gw_pool_g.nclasses; i++)
		blocks += gw_pool_class_blocks(i) + 15;
	ck_assert_uint_le(m.bytes, 4 * blocks + 4096);
	gw_blockmap_fini(&m);
	gw_pool_free(a);
	gw_pool_free(b);

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
	/* (the sanitizers' shadow memory does not live under such a limit) */
	struct rlimit rl;
	ck_assert_int_eq(getrlimit(RLIMIT_AS, &rl), 0);
	rl.rlim_cur = (rlim_t)64 << 30;
	ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
	ck_assert_int_eq(gw_blockmap_init_pools(&m), GW_BLOCKMAP_TIGHT);
	ck_assert_uint_eq(m.span, 0);
	ck_assert_ptr_null(gw_blockmap_slot(&m, (uintptr_t)a));
#endif
}
END_TEST

Suite *suite_table(void)
{
	Suite *s = suite_create("table");
	TCase *tc = tcase_create("table");
	tcase_add_test(tc, test_table_insert_remove);
	tcase_add_test(tc, test_table_dense_records);
	tcase_add_test(tc, test_table_backward_shift);
	tcase_add_test(tc, test_table_big_sizes_and_reuse);
	tcase_add_test(tc, test_table_full_stripe_counted);
	tcase_add_test(tc, test_table_growth);
	tcase_add_test(tc, test_table_small_arrays_packed);
	tcase_add_test(tc, test_table_segment_cap);
	tcase_add_test(tc, test_table_concurrent_snapshots);
	tcase_add_test(tc, test_table_view_while_growing);
	tcase_add_test(tc, test_table_view_busy_writer);
	tcase_add_test(tc, test_table_view_waits_for_preempted_writer);
	tcase_add_test(tc, test_table_old_reader);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	tc = tcase_create("blockmap");
	tcase_add_test(tc, test_blockmap_geometry);
	tcase_add_test(tc, test_blockmap_insert_remove);
	tcase_add_test(tc, test_blockmap_forwarded_pointers);
	tcase_add_test(tc, test_blockmap_stale_entry);
	tcase_add_test(tc, test_blockmap_replacement);
	tcase_add_test(tc, test_blockmap_off);
	tcase_add_test(tc, test_blockmap_concurrent);
	tcase_add_test(tc, test_blockmap_pools);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_table)
