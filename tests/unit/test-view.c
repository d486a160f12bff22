/* tests/unit/test-view.c: segment validation, snapshots, hostile input */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "view.h"
#include "report.h"
#include "segbuild.h"
#include "suite.h"

static void *valid_segment(void)
{
	void *seg = sb_new(4242, 100);

	sb_stack_set(seg, 1, 3);
	sb_stack_set(seg, 2, SB_FRAMES);
	ck_assert_int_eq(sb_record(seg, 0x10000, 100, 1, 5), 0);
	ck_assert_int_eq(sb_record(seg, 0x10010, 50, 1, 7), 0);
	ck_assert_int_eq(sb_record(seg, 0x10020, 7, 2, 9), 0);
	ck_assert_int_eq(sb_record(seg, 0x10030, 1, 0, 9), 0);
	return seg;
}

static int check_mem(void *seg, size_t size)
{
	struct gw_view v;
	int err = gw_view_from_memory(&v, seg, size);
	if (err)
		return err;
	return gw_view_snapshot(&v, NULL, NULL, NULL);
}

static char tmpdir[64];

static const char *write_tmp(const char *name, const void *data, size_t len)
{
	static char path[128];
	if (!tmpdir[0]) {
		strcpy(tmpdir, "/tmp/gwmem-view-XXXXXX");
		ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	}
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

struct count_ctx {
	uint64_t n, bytes;
};

static int count_stripe(void *ctx, uint32_t stripe, const struct gwmem_shm_record *slots,
			uint32_t nslots, uint32_t count, uint64_t bytes)
{
	struct count_ctx *c = ctx;
	for (uint32_t i = 0; i < nslots; i++)
		if (slots[i].ptr) {
			c->n++;
			c->bytes += slots[i].size;
		}
	return 0;
}

START_TEST(test_valid_memory)
{
	void *seg = valid_segment();
	struct gw_view v;
	struct count_ctx c = { 0 };
	struct gw_view_snap_stats st;
	uint64_t frames[GWMEM_SHM_MAX_FRAMES];
	char cmd[64];

	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	ck_assert_uint_eq(v.hdr.pid, 4242);
	ck_assert_int_eq(gw_view_snapshot(&v, count_stripe, &c, &st), 0);
	ck_assert_uint_eq(c.n, 4);
	ck_assert_uint_eq(c.bytes, 158);
	ck_assert_uint_eq(st.records, 4);
	ck_assert_uint_eq(st.bytes, 158);
	ck_assert_int_eq(gw_view_stack(&v, 1, frames, GWMEM_SHM_MAX_FRAMES), 3);
	ck_assert_uint_eq(frames[0], 0x400000 + 16 * 8 + 1);
	ck_assert_int_eq(gw_view_stack(&v, 2, frames, 4), 4);   /* capped by the caller */
	ck_assert_int_eq(gw_view_stack(&v, 0, frames, 4), 0);
	ck_assert_int_eq(gw_view_stack(&v, 3, frames, 4), 0);   /* unpublished */
	ck_assert_int_eq(gw_view_stack(&v, SB_STACKS + 1, frames, 4), GW_VIEW_ERR_CORRUPT);
	ck_assert_uint_eq(gw_view_now_ds(&v), 100);
	gw_view_command(&v, cmd, sizeof(cmd));
	ck_assert_str_eq(cmd, "testprog --flag");

	struct gwmem_shm_module m;
	ck_assert(gw_view_module_find(&v, 0x400100, &m));
	ck_assert_str_eq(m.path, "/usr/bin/testprog");
	ck_assert(!gw_view_module_find(&v, 0x600000, &m));
	struct gwmem_shm_module mods[4];
	ck_assert_int_eq(gw_view_modules(&v, mods, 4), 1);
	free(seg);
}
END_TEST

START_TEST(test_valid_file)
{
	void *seg = valid_segment();
	struct gw_view v;
	const char *path = write_tmp("seg", seg, SB_SIZE);

	ck_assert_int_eq(gw_view_open(&v, path), 0);
	ck_assert_uint_eq(v.hdr.pid, 4242);
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, NULL), 0);
	ck_assert_int_eq(gw_view_refresh(&v), 0);
	gw_view_close(&v);

	/* truncated: file shorter than segment_size */
	path = write_tmp("trunc", seg, SB_SIZE - 100);
	ck_assert_int_eq(gw_view_open(&v, path), GW_VIEW_ERR_CORRUPT);
	path = write_tmp("tiny", seg, 100);
	ck_assert_int_eq(gw_view_open(&v, path), GW_VIEW_ERR_CORRUPT);
	path = write_tmp("empty", seg, 0);
	ck_assert_int_eq(gw_view_open(&v, path), GW_VIEW_ERR_CORRUPT);

	char missing[160], link[160];
	snprintf(missing, sizeof(missing), "%s/missing", tmpdir);
	ck_assert_int_eq(gw_view_open(&v, missing), GW_VIEW_ERR_NOENT);
	snprintf(link, sizeof(link), "%s/link", tmpdir);
	unlink(link);
	ck_assert_int_eq(symlink(path, link), 0);
	ck_assert_int_eq(gw_view_open(&v, link), GW_VIEW_ERR_CORRUPT);
	ck_assert_int_eq(gw_view_open(&v, tmpdir), GW_VIEW_ERR_CORRUPT);   /* a directory */
	free(seg);
}
END_TEST

/* Each corruption, applied to a fresh valid segment, must be refused with err. */
typedef void (*corrupt_fn)(void *seg);

#define H(seg) sb_hdr(seg)
static void c_magic(void *s) { H(s)->magic ^= 1; }
static void c_header_size(void *s) { H(s)->header_size = 4096; }
static void c_segment_size(void *s) { H(s)->segment_size += 64; }
static void c_state(void *s) { H(s)->state = 9; }
static void c_ptrbits(void *s) { H(s)->pointer_bits = 16; }
static void c_nclasses(void *s) { H(s)->nclasses = GWMEM_SHM_MAX_CLASSES + 1; }
static void c_cmdline(void *s) { memset(H(s)->cmdline, 'a', sizeof(H(s)->cmdline)); }
static void c_exe(void *s) { memset(H(s)->exe, 'b', sizeof(H(s)->exe)); }
static void c_tag(void *s) { memset(H(s)->tag_names[3], 'c', 32); }
static void c_modcount(void *s) { H(s)->modules_count = SB_MODULES + 1; }
static void c_modoff(void *s) { H(s)->modules_offset = SB_SIZE - 8; }
static void c_modcap(void *s) { H(s)->modules_capacity = 0xffffffffu; H(s)->modules_count = 0; }
static void c_modoff_low(void *s) { H(s)->modules_offset = 64; }
static void c_stkoff(void *s) { H(s)->stacks_offset = UINT64_MAX - 8; }
static void c_stkcap(void *s) { H(s)->stack_capacity = 1u << 31; }
static void c_stkcap_pow2(void *s) { sb_to_v1(s); H(s)->stack_capacity = 12; }
static void c_maxframes(void *s) { H(s)->max_frames = GWMEM_SHM_MAX_FRAMES + 1; }
static void c_stride(void *s) { H(s)->stack_stride = 16; }
static void c_stride_odd(void *s) { H(s)->stack_stride = SB_STRIDE + 4; }
static void c_depth(void *s) { sb_stack(s, 2)->depth = SB_FRAMES + 1; }
static void c_depth_huge(void *s) { sb_stack(s, 1)->depth = 0xffffffffu; }
static void c_stripes(void *s) { H(s)->nstripes = 1u << 31; H(s)->slots_per_stripe = 1u << 31; }
static void c_stripes_pow2(void *s) { H(s)->nstripes = 3; }
static void c_slots_pow2(void *s) { sb_to_v1(s); H(s)->slots_per_stripe = 6; }
static void c_recoff(void *s) { H(s)->records_offset = SB_SIZE - 32; }
static void c_stroff(void *s) { H(s)->stripes_offset = SB_SIZE; }
static void c_recoff_align(void *s) { H(s)->records_offset += 4; }

static const struct {
	const char *name;
	corrupt_fn fn;
	int err;
} corruptions[] = {
	{ "magic", c_magic, GW_VIEW_ERR_CORRUPT },
	{ "header_size", c_header_size, GW_VIEW_ERR_CORRUPT },
	{ "segment_size", c_segment_size, GW_VIEW_ERR_CORRUPT },
	{ "state", c_state, GW_VIEW_ERR_CORRUPT },
	{ "pointer_bits", c_ptrbits, GW_VIEW_ERR_CORRUPT },
	{ "nclasses", c_nclasses, GW_VIEW_ERR_CORRUPT },
	{ "cmdline", c_cmdline, GW_VIEW_ERR_CORRUPT },
	{ "exe", c_exe, GW_VIEW_ERR_CORRUPT },
	{ "tag", c_tag, GW_VIEW_ERR_CORRUPT },
	{ "modules_count", c_modcount, GW_VIEW_ERR_CORRUPT },
	{ "modules_offset", c_modoff, GW_VIEW_ERR_CORRUPT },
	{ "modules_capacity", c_modcap, GW_VIEW_ERR_CORRUPT },
	{ "modules_offset_in_header", c_modoff_low, GW_VIEW_ERR_CORRUPT },
	{ "stacks_offset_overflow", c_stkoff, GW_VIEW_ERR_CORRUPT },
	{ "stack_capacity_huge", c_stkcap, GW_VIEW_ERR_CORRUPT },
	{ "stack_capacity_pow2", c_stkcap_pow2, GW_VIEW_ERR_CORRUPT },
	{ "max_frames", c_maxframes, GW_VIEW_ERR_CORRUPT },
	{ "stride_small", c_stride, GW_VIEW_ERR_CORRUPT },
	{ "stride_unaligned", c_stride_odd, GW_VIEW_ERR_CORRUPT },
	{ "depth", c_depth, GW_VIEW_ERR_CORRUPT },
	{ "depth_huge", c_depth_huge, GW_VIEW_ERR_CORRUPT },
	{ "stripes_overflow", c_stripes, GW_VIEW_ERR_CORRUPT },
	{ "nstripes_pow2", c_stripes_pow2, GW_VIEW_ERR_CORRUPT },
	{ "slots_pow2", c_slots_pow2, GW_VIEW_ERR_CORRUPT },
	{ "records_offset", c_recoff, GW_VIEW_ERR_CORRUPT },
	{ "stripes_offset", c_stroff, GW_VIEW_ERR_CORRUPT },
	{ "records_offset_unaligned", c_recoff_align, GW_VIEW_ERR_CORRUPT },
};

START_TEST(test_corruptions)
{
	for (size_t i = 0; i < sizeof(corruptions) / sizeof(corruptions[0]); i++) {
		void *seg = valid_segment();
		struct gw_view v;
		corruptions[i].fn(seg);
		int err = gw_view_from_memory(&v, seg, SB_SIZE);
		ck_assert_msg(err == corruptions[i].err, "%s: got %d (%s), want %d", corruptions[i].name,
			      err, v.why ? v.why : "-", corruptions[i].err);
		ck_assert_ptr_nonnull(v.why);
		/* the same through a file */
		const char *path = write_tmp("c", seg, SB_SIZE);
		ck_assert_int_eq(gw_view_open(&v, path), corruptions[i].err);
		free(seg);
	}
}
END_TEST

/* A stripe head naming an array outside the stripe's regions: corrupt at snapshot. */
START_TEST(test_bad_stripe_array)
{
	struct gw_view v;
	void *seg = valid_segment();

	sb_stripe(seg, 1)->offset = sb_stripe(seg, 2)->offset;
	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, NULL), GW_VIEW_ERR_CORRUPT);
	free(seg);
	seg = valid_segment();
	sb_stripe(seg, 3)->slots = SB_SLOTS + 1;
	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, NULL), GW_VIEW_ERR_CORRUPT);
	/* outside the record area, past its end, or not on a record */
	const uint64_t bad_offsets[] = {
		H(seg)->records_offset - 32,
		H(seg)->records_offset + (uint64_t)SB_STRIPES * 2 * SB_SLOTS * 32 - 32,
		sb_stripe(seg, 0)->offset + 8,
	};
	for (unsigned i = 0; i < sizeof(bad_offsets) / sizeof(bad_offsets[0]); i++) {
		free(seg);
		seg = valid_segment();
		sb_stripe(seg, 0)->offset = bad_offsets[i];
		ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
		ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, NULL), GW_VIEW_ERR_CORRUPT);
	}
	/* layout 2 placed a stripe's array in one of its own two regions only:
	 * such a segment is read as before... */
	free(seg);
	seg = valid_segment();
	H(seg)->version = 2;
	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, NULL), 0);
	/* ...and an array elsewhere in the area is not its */
	struct gwmem_shm_record *b = sb_slots(seg, 0);
	sb_stripe(seg, 0)->offset += 4 * SB_SLOTS * sizeof(struct gwmem_shm_record);
	memmove(b + 4 * SB_SLOTS, b, SB_SLOTS * sizeof(*b));
	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, NULL), GW_VIEW_ERR_CORRUPT);
	/* an array in the second region, or none yet, is fine */
	free(seg);
	seg = valid_segment();
	struct gwmem_shm_record *a = sb_slots(seg, 0);
	sb_stripe(seg, 0)->offset += SB_SLOTS * sizeof(struct gwmem_shm_record);
	memmove(a + SB_SLOTS, a, SB_SLOTS * sizeof(*a));
	memset(a, 0, SB_SLOTS * sizeof(*a));
	struct gw_view_snap_stats st;
	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, &st), 0);
	ck_assert_uint_eq(st.records, 4);
	free(seg);
	seg = sb_new(1, 1);
	for (uint32_t i = 0; i < SB_STRIPES; i++)
		sb_stripe(seg, i)->slots = 0;
	/* with no array, the offset means nothing and is never used */
	sb_stripe(seg, 1)->offset = UINT64_MAX;
	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, &st), 0);
	ck_assert_uint_eq(st.records, 0);
	free(seg);
}
END_TEST

/* Segments and snapshots of layout version 1 are still read, from memory and from a file. */
START_TEST(test_version1)
{
	struct gw_view v;
	struct gw_view_snap_stats st;
	uint64_t frames[GWMEM_SHM_MAX_FRAMES];
	void *seg = valid_segment();

	sb_to_v1(seg);
	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, &st), 0);
	ck_assert_uint_eq(st.records, 4);
	ck_assert_uint_eq(st.bytes, 158);
	ck_assert_int_eq(gw_view_stack(&v, 2, frames, GWMEM_SHM_MAX_FRAMES), SB_FRAMES);
	const char *path = write_tmp("v1", seg, SB_SIZE);
	ck_assert_int_eq(gw_view_open(&v, path), 0);
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, &st), 0);
	ck_assert_uint_eq(st.records, 4);
	gw_view_close(&v);
	free(seg);
}
END_TEST

START_TEST(test_version)
{
	void *seg = valid_segment();
	struct gw_view v;

	H(seg)->version = GWMEM_SHM_VERSION + 1;
	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), GW_VIEW_ERR_VERSION);
	ck_assert_uint_eq(v.hdr.version, GWMEM_SHM_VERSION + 1);
	ck_assert_ptr_nonnull(strstr(gw_view_strerror(GW_VIEW_ERR_VERSION), "version"));
	H(seg)->version = 0;
	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), GW_VIEW_ERR_VERSION);
	free(seg);
}
END_TEST

START_TEST(test_busy_and_torn)
{
	void *seg = valid_segment();
	struct gw_view v;

	H(seg)->state = GWMEM_SHM_STATE_STARTING;
	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), GW_VIEW_ERR_BUSY);
	H(seg)->state = GWMEM_SHM_STATE_RUNNING;

	/* a writer that never leaves a stripe: busy, after bounded retries */
	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	sb_stripe(seg, 1)->seq = 3;
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, NULL), GW_VIEW_ERR_BUSY);
	sb_stripe(seg, 1)->seq = 4;
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, NULL), 0);

	/* totals that do not match the records */
	sb_stripe(seg, 0)->count += 1;
	ck_assert_int_eq(check_mem(seg, SB_SIZE), GW_VIEW_ERR_CORRUPT);
	sb_stripe(seg, 0)->count -= 1;
	sb_stripe(seg, 0)->bytes += 1;
	ck_assert_int_eq(check_mem(seg, SB_SIZE), GW_VIEW_ERR_CORRUPT);
	sb_stripe(seg, 0)->bytes -= 1;
	ck_assert_int_eq(check_mem(seg, SB_SIZE), 0);

	/* a record naming a stack beyond the table */
	struct gwmem_shm_record *r = sb_slots(seg, 0);
	for (uint32_t i = 0; i < SB_SLOTS; i++)
		if (r[i].ptr)
			r[i].stack_id = SB_STACKS + 1;
	ck_assert_int_eq(check_mem(seg, SB_SIZE), GW_VIEW_ERR_CORRUPT);
	free(seg);
}
END_TEST

static int devnull(void)
{
	int fd = open("/dev/null", O_WRONLY);
	ck_assert_int_ge(fd, 0);
	return fd;
}

/* Everything a reader does with a view, on whatever the mutation left. */
static void exercise(void *seg, size_t size, int fd)
{
	struct gw_view v;
	uint64_t frames[GWMEM_SHM_MAX_FRAMES];
	struct gwmem_shm_module mods[8];
	char cmd[300];

	if (gw_view_from_memory(&v, seg, size) != 0)
		return;
	gw_view_snapshot(&v, count_stripe, &(struct count_ctx){ 0 }, NULL);
	for (uint32_t id = 0; id <= v.hdr.stack_capacity + 1 && id < 64; id++)
		gw_view_stack(&v, id, frames, GWMEM_SHM_MAX_FRAMES);
	gw_view_modules(&v, mods, 8);
	gw_view_command(&v, cmd, sizeof(cmd));
	struct gw_report_opts o = { .top = 5, .stats = true };
	struct gw_sites s;
	if (gw_report_collect(&v, &o, &s) == 0) {
		for (int f = 0; f < 3; f++) {
			o.format = (enum gw_report_format)f;
			gw_report_write(fd, &v, &s, &o);
		}
		gw_report_sites_release(&s);
	}
}

START_TEST(test_fuzz)
{
	void *good = valid_segment();
	void *seg = malloc(SB_SIZE);
	unsigned seed = 12345;
	int fd = devnull();
	unsigned accepted = 0;

	for (int iter = 0; iter < 4000; iter++) {
		memcpy(seg, good, SB_SIZE);
		int nmut = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 12;
		for (int k = 0; k < nmut; k++) {
			seed = seed * 1103515245u + 12345u;
			unsigned r = seed >> 8;
			size_t off;
			if (r % 4 == 0)
				off = (r >> 3) % SB_SIZE;           /* anywhere */
			else
				off = (r >> 3) % 1024;              /* header fields */
			seed = seed * 1103515245u + 12345u;
			unsigned char b = (unsigned char)(seed >> 16);
			if ((seed >> 28) & 1)
				b = (seed >> 27) & 1 ? 0xff : 0;    /* extremes */
			((unsigned char *)seg)[off] = b;
		}
		/* half of the time, keep segment_size right so deeper checks run */
		if (iter & 1)
			sb_hdr(seg)->segment_size = SB_SIZE;
		size_t size = SB_SIZE;
		if (iter % 97 == 0)
			size = (size_t)(seed % SB_SIZE);
		struct gw_view v;
		if (gw_view_from_memory(&v, seg, size) == 0)
			accepted++;
		exercise(seg, size, fd);
	}
	/* random bytes, not derived from a valid segment */
	for (int iter = 0; iter < 500; iter++) {
		for (size_t i = 0; i < SB_SIZE; i += 4) {
			seed = seed * 1103515245u + 12345u;
			memcpy((char *)seg + i, &seed, 4);
		}
		if (iter & 1) {
			sb_hdr(seg)->magic = GWMEM_SHM_MAGIC;
			sb_hdr(seg)->version = GWMEM_SHM_VERSION;
		}
		exercise(seg, SB_SIZE, fd);
	}
	ck_assert_uint_gt(accepted, 10);     /* the fuzz reached past validation */
	close(fd);
	free(seg);
	free(good);
}
END_TEST

/* Record sizes whose sum wraps modulo 2^64 can match a stripe's total;
 * the reader must refuse them rather than report wrapped totals. */
START_TEST(test_sizes_that_wrap)
{
	const uint64_t big = (uint64_t)INT64_MAX - 7;   /* a size no malloc returns */
	struct gw_view v;
	struct gw_view_snap_stats st;

	/* three in one stripe (0x1000, 0x1040, 0x1080 share stripe 0): the
	 * stripe's sum wraps and still equals its (wrapped) bytes field */
	void *seg = sb_new(4242, 100);
	for (uint64_t p = 0x1000; p <= 0x1080; p += 0x40)
		ck_assert_int_eq(sb_record(seg, p, big, 0, 0), 0);
	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, &st), GW_VIEW_ERR_CORRUPT);
	gw_view_close(&v);
	free(seg);

	/* one per stripe: each stripe is fine, the total over stripes wraps */
	seg = sb_new(4242, 100);
	for (uint64_t p = 0x1000; p < 0x1030; p += 0x10)
		ck_assert_int_eq(sb_record(seg, p, big, 0, 0), 0);
	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, &st), GW_VIEW_ERR_CORRUPT);
	gw_view_close(&v);
	free(seg);

	/* one size past PTRDIFF_MAX */
	seg = sb_new(4242, 100);
	ck_assert_int_eq(sb_record(seg, 0x1000, (uint64_t)INT64_MAX + 1, 0, 0), 0);
	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, &st), GW_VIEW_ERR_CORRUPT);
	gw_view_close(&v);
	free(seg);

	/* the largest sizes that do not wrap are read */
	seg = sb_new(4242, 100);
	ck_assert_int_eq(sb_record(seg, 0x1000, big, 0, 0), 0);
	ck_assert_int_eq(sb_record(seg, 0x1010, 8, 0, 0), 0);
	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	ck_assert_int_eq(gw_view_snapshot(&v, NULL, NULL, &st), 0);
	ck_assert_uint_eq(st.bytes, (uint64_t)INT64_MAX + 1);
	gw_view_close(&v);
	free(seg);
}
END_TEST

/*
 * A sparse forged file whose geometry is within its recorded limits: 4
 * stripes of 2^24-record regions (4 GiB apparent) and a 2^22-entry stack
 * table, holding one record at the end of a region and one stack at the end
 * of the table.  Reading it must cost what it holds, not what it claims:
 * a reader that copied the claimed array (512 MiB) or touched every stack
 * entry would take that much memory.
 */
static uint64_t maxrss_kib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)ru.ru_maxrss;
}

START_TEST(test_sparse_forged_geometry)
{
	const uint32_t slots = 1u << 24, nstacks = 1u << 22;
	const uint64_t rsize = sizeof(struct gwmem_shm_record);
	const uint64_t stacks_off = SB_REC_OFF + 2ull * SB_STRIPES * slots * rsize;
	const uint64_t size = stacks_off + (uint64_t)nstacks * SB_STRIDE;
	void *seg = sb_new(4242, 100);
	struct gwmem_shm_header *h = sb_hdr(seg);

	h->segment_size = size;
	h->config.max_tracked_allocations = 100000000;
	h->config.max_stacks = 10000000;
	h->max_segment_bytes = 4294967295u;
	h->slots_per_stripe = slots;
	h->stacks_offset = stacks_off;
	h->stack_capacity = nstacks;
	h->counters.stacks_used = nstacks;
	for (uint32_t i = 0; i < SB_STRIPES; i++) {
		sb_stripe(seg, i)->offset = SB_REC_OFF + (uint64_t)i * 2 * slots * rsize;
		sb_stripe(seg, i)->slots = i == 0 ? slots : 0;
	}
	sb_stripe(seg, 0)->count = 1;
	sb_stripe(seg, 0)->bytes = 100;

	const char *path = write_tmp("sparse", seg, SB_REC_OFF);
	int fd = open(path, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	struct gwmem_shm_record r = { .ptr = 0x10000, .size = 100, .stack_id = nstacks, .time_ds = 5 };
	ck_assert_int_eq(pwrite(fd, &r, sizeof(r), (off_t)(SB_REC_OFF + (slots - 1) * rsize)), (ssize_t)sizeof(r));
	unsigned char entry[SB_STRIDE] = { 0 };
	struct gwmem_shm_stack *e = (void *)entry;
	e->hash = 0x1234;
	e->depth = 1;
	e->frames[0] = 0x400101;
	ck_assert_int_eq(pwrite(fd, entry, sizeof(entry), (off_t)(size - SB_STRIDE)), (ssize_t)sizeof(entry));
	close(fd);

	const uint64_t before = maxrss_kib();
	struct gw_view v;
	struct count_ctx c = { 0 };
	struct gw_view_snap_stats st;
	uint64_t frames[4];

	ck_assert_int_eq(gw_view_open(&v, path), 0);
	ck_assert_int_eq(gw_view_snapshot(&v, count_stripe, &c, &st), 0);
	ck_assert_uint_eq(c.n, 1);
	ck_assert_uint_eq(c.bytes, 100);
	ck_assert_int_eq(gw_view_stack(&v, nstacks, frames, 4), 1);
	ck_assert_uint_eq(frames[0], 0x400101);
	gw_view_close(&v);
	/* what the claimed array or stack table would cost: 512 MiB, 320 MiB */
	ck_assert_uint_lt(maxrss_kib() - before, 16 * 1024);

	/* the same geometry is refused when the recorded limits do not allow it */
	h->config.max_tracked_allocations = 1000;
	fd = open(path, O_WRONLY);
	ck_assert_int_eq(pwrite(fd, h, sizeof(*h), 0), (ssize_t)sizeof(*h));
	close(fd);
	ck_assert_int_eq(gw_view_open(&v, path), GW_VIEW_ERR_CORRUPT);
	h->config.max_tracked_allocations = 100000000;
	h->config.max_stacks = 1000;
	fd = open(path, O_WRONLY);
	ck_assert_int_eq(pwrite(fd, h, sizeof(*h), 0), (ssize_t)sizeof(*h));
	close(fd);
	ck_assert_int_eq(gw_view_open(&v, path), GW_VIEW_ERR_CORRUPT);
	unlink(path);
	free(seg);
}
END_TEST

static Suite *suite_view(void)
{
	Suite *s = suite_create("view");
	TCase *tc = tcase_create("validate");
	tcase_add_test(tc, test_valid_memory);
	tcase_add_test(tc, test_valid_file);
	tcase_add_test(tc, test_corruptions);
	tcase_add_test(tc, test_version);
	tcase_add_test(tc, test_version1);
	tcase_add_test(tc, test_bad_stripe_array);
	tcase_add_test(tc, test_busy_and_torn);
	tcase_add_test(tc, test_sizes_that_wrap);
	tcase_add_test(tc, test_sparse_forged_geometry);
	suite_add_tcase(s, tc);
	tc = tcase_create("fuzz");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_fuzz);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_view)
