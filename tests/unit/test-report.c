/* tests/unit/test-report.c: grouping by stack id, filters, ranking, output */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "report.h"
#include "view.h"
#include "segbuild.h"
#include "suite.h"

/*
 * now = 100 ds.  stack 1: 3 records (10 @5, 20 @6, 30 @7) = 60 bytes;
 * stack 2: 1 record of 100 @1; no stack: 2 x 5 @50; stack 3: 2 x 30 @90
 * (ties stack 1 on bytes with fewer records).
 */
static void *segment(void)
{
	void *seg = sb_new(777, 100);
	sb_stack_set(seg, 1, 2);
	sb_stack_set(seg, 2, 3);
	sb_stack_set(seg, 3, 1);
	ck_assert_int_eq(sb_record(seg, 0x1000, 10, 1, 5), 0);
	ck_assert_int_eq(sb_record(seg, 0x1010, 20, 1, 6), 0);
	ck_assert_int_eq(sb_record(seg, 0x1020, 30, 1, 7), 0);
	ck_assert_int_eq(sb_record(seg, 0x1030, 100, 2, 1), 0);
	ck_assert_int_eq(sb_record(seg, 0x1040, 5, 0, 50), 0);
	ck_assert_int_eq(sb_record(seg, 0x1050, 5, 0, 50), 0);
	ck_assert_int_eq(sb_record(seg, 0x1060, 30, 3, 90), 0);
	ck_assert_int_eq(sb_record(seg, 0x1070, 30, 3, 90), 0);
	return seg;
}

START_TEST(test_group_rank)
{
	void *seg = segment();
	struct gw_view v;
	struct gw_sites s;
	struct gw_report_opts o = { .top = 0 };

	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	ck_assert_int_eq(gw_report_collect(&v, &o, &s), 0);
	ck_assert_uint_eq(s.live_count, 8);
	ck_assert_uint_eq(s.live_bytes, 230);
	ck_assert_uint_eq(s.nmatching, 4);
	ck_assert_uint_eq(s.nsites, 4);
	ck_assert_uint_eq(s.now_ds, 100);
	/* 100 (2), 60 x3 (1), 60 x2 (3), 10 (0) */
	ck_assert_uint_eq(s.sites[0].stack_id, 2);
	ck_assert_uint_eq(s.sites[0].bytes, 100);
	ck_assert_uint_eq(s.sites[0].count, 1);
	ck_assert_uint_eq(s.sites[0].oldest_ds, 1);
	ck_assert_uint_eq(s.sites[1].stack_id, 1);
	ck_assert_uint_eq(s.sites[1].count, 3);
	ck_assert_uint_eq(s.sites[1].bytes, 60);
	ck_assert_uint_eq(s.sites[1].oldest_ds, 5);
	ck_assert_uint_eq(s.sites[2].stack_id, 3);
	ck_assert_uint_eq(s.sites[2].count, 2);
	ck_assert_uint_eq(s.sites[3].stack_id, 0);
	ck_assert_uint_eq(s.sites[3].bytes, 10);
	gw_report_sites_release(&s);
	free(seg);
}
END_TEST

START_TEST(test_filters)
{
	void *seg = segment();
	struct gw_view v;
	struct gw_sites s;

	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	/* older than 9.4 s: time <= 6 -> stack 2 (100), stack 1 (10 + 20) */
	struct gw_report_opts o = { .older_than_ds = 94 };
	ck_assert_int_eq(gw_report_collect(&v, &o, &s), 0);
	ck_assert_uint_eq(s.nsites, 2);
	ck_assert_uint_eq(s.sites[0].stack_id, 2);
	ck_assert_uint_eq(s.sites[1].stack_id, 1);
	ck_assert_uint_eq(s.sites[1].count, 2);
	ck_assert_uint_eq(s.sites[1].bytes, 30);
	ck_assert_uint_eq(s.match_count, 3);
	ck_assert_uint_eq(s.match_bytes, 130);
	ck_assert_uint_eq(s.live_count, 8);
	gw_report_sites_release(&s);

	/* top 1 of 4 */
	o = (struct gw_report_opts){ .top = 1 };
	ck_assert_int_eq(gw_report_collect(&v, &o, &s), 0);
	ck_assert_uint_eq(s.nsites, 1);
	ck_assert_uint_eq(s.nmatching, 4);
	ck_assert_uint_eq(s.sites[0].stack_id, 2);
	gw_report_sites_release(&s);

	/* min bytes 60: stack 0 (10) goes */
	o = (struct gw_report_opts){ .min_bytes = 60 };
	ck_assert_int_eq(gw_report_collect(&v, &o, &s), 0);
	ck_assert_uint_eq(s.nsites, 3);
	ck_assert_uint_eq(s.match_bytes, 220);
	gw_report_sites_release(&s);

	/* older than everything */
	o = (struct gw_report_opts){ .older_than_ds = 1000 };
	ck_assert_int_eq(gw_report_collect(&v, &o, &s), 0);
	ck_assert_uint_eq(s.nsites, 0);
	ck_assert_uint_eq(s.nmatching, 0);
	gw_report_sites_release(&s);
	free(seg);
}
END_TEST

/* Many sites: the heap selection keeps exactly the N largest, in order. */
START_TEST(test_top_selection)
{
	void *seg = sb_new(1, 10);
	struct gw_view v;
	struct gw_sites s;

	for (uint32_t id = 1; id <= SB_STACKS; id++)
		sb_stack_set(seg, id, 1);
	/* 16 stacks, sizes a permutation of 1..16 * 8 */
	uint32_t size_of[SB_STACKS + 1];
	for (uint32_t id = 1; id <= SB_STACKS; id++) {
		size_of[id] = ((id * 7) % SB_STACKS + 1) * 8;
		ck_assert_int_eq(sb_record(seg, 0x100000 + id * 0x10, size_of[id], id, 0), 0);
	}
	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	for (uint32_t top = 1; top <= SB_STACKS + 2; top++) {
		struct gw_report_opts o = { .top = top };
		ck_assert_int_eq(gw_report_collect(&v, &o, &s), 0);
		uint32_t want = top < SB_STACKS ? top : SB_STACKS;
		ck_assert_uint_eq(s.nsites, want);
		for (uint32_t i = 0; i < s.nsites; i++) {
			ck_assert_uint_eq(s.sites[i].bytes, (SB_STACKS - i) * 8);
			ck_assert_uint_eq(size_of[s.sites[i].stack_id], s.sites[i].bytes);
		}
		gw_report_sites_release(&s);
	}
	free(seg);
}
END_TEST

static char *render(const struct gw_view *v, struct gw_report_opts *o)
{
	struct gw_sites s;
	char path[] = "/tmp/gwmem-report-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	unlink(path);
	ck_assert_int_eq(gw_report_collect(v, o, &s), 0);
	ck_assert_int_eq(gw_report_write(fd, v, &s, o), 0);
	gw_report_sites_release(&s);
	off_t len = lseek(fd, 0, SEEK_END);
	char *buf = calloc(1, (size_t)len + 1);
	ck_assert_int_eq(pread(fd, buf, (size_t)len, 0), len);
	close(fd);
	return buf;
}

START_TEST(test_wrappers)
{
	ck_assert(gw_report_is_wrapper("strdup", NULL));
	ck_assert(gw_report_is_wrapper("__strdup", NULL));
	ck_assert(gw_report_is_wrapper("strdup@@GLIBC_2.2.5", NULL));
	ck_assert(gw_report_is_wrapper("_Znwm", NULL));
	ck_assert(gw_report_is_wrapper("g_strdup_printf", NULL));
	ck_assert(gw_report_is_wrapper("__vasprintf_internal", NULL));
	ck_assert(!gw_report_is_wrapper("strdupx", NULL));
	ck_assert(!gw_report_is_wrapper("main", NULL));
	ck_assert(!gw_report_is_wrapper("", NULL));
	ck_assert(!gw_report_is_wrapper(NULL, NULL));
	ck_assert(gw_report_is_wrapper("my_alloc", "foo, my_alloc"));
	ck_assert(gw_report_is_wrapper("pool_get_buf", "x,pool_get*"));
	ck_assert(!gw_report_is_wrapper("pool_put", "x,pool_get*,"));
	ck_assert(!gw_report_is_wrapper("my_alloc", "my_allo"));

	struct gw_frame_info fi = { .address = 0x1000, .offset = 0x10, .line = 42 };
	char label[128];
	strcpy(fi.function, "leak_fn");
	strcpy(fi.file, "/src/app/leak.c");
	strcpy(fi.module, "/usr/bin/app");
	gw_report_frame_label(&fi, label, sizeof(label));
	ck_assert_str_eq(label, "leak_fn (leak.c:42)");
	fi.file[0] = '\0';
	gw_report_frame_label(&fi, label, sizeof(label));
	ck_assert_str_eq(label, "leak_fn (app)");
	fi.function[0] = '\0';
	gw_report_frame_label(&fi, label, sizeof(label));
	ck_assert_str_eq(label, "app+0x10");
}
END_TEST

START_TEST(test_formats)
{
	void *seg = segment();
	struct gw_view v;

	ck_assert_int_eq(gw_view_from_memory(&v, seg, SB_SIZE), 0);
	struct gw_report_opts o = { .format = GW_REPORT_JSON };
	char *out = render(&v, &o);
	ck_assert_ptr_nonnull(strstr(out, "{\"pid\": 777, "));
	ck_assert_ptr_nonnull(strstr(out, "\"stack_id\": 2, \"count\": 1, \"bytes\": 100, \"oldest_age_s\": 9.9, "
					  "\"site\": \"testprog+0x101\", \"frames\": ["));
	ck_assert_ptr_nonnull(strstr(out, "\"count\": 3, \"bytes\": 60, \"oldest_age_s\": 9.5"));
	/* stack 2 frame 0 = 0x400000 + 16*16 + 1: module+offset from the segment's module map */
	ck_assert_ptr_nonnull(strstr(out, "{\"address\": \"0x400101\", \"module\": \"/usr/bin/testprog\", \"offset\": \"0x101\", \"function\": \"\", \"file\": \"\", \"line\": 0}"));
	ck_assert_ptr_nonnull(strstr(out, "\n], \"modules\": [\n  {\"start\": \"0x400000\", "));
	ck_assert_ptr_nonnull(strstr(out, "\"path\": \"/usr/bin/testprog\"}\n]}\n"));
	free(out);

	o = (struct gw_report_opts){ .format = GW_REPORT_FOLDED };
	out = render(&v, &o);
	ck_assert_ptr_nonnull(strstr(out, "testprog+0x121;testprog+0x111;testprog+0x101 100\n"));
	ck_assert_ptr_nonnull(strstr(out, "[no_stack] 10\n"));
	free(out);

	o = (struct gw_report_opts){ .format = GW_REPORT_TEXT, .stats = true };
	out = render(&v, &o);
	ck_assert_ptr_nonnull(strstr(out, "gwmem report: pid 777 (testprog --flag)"));
	ck_assert_ptr_nonnull(strstr(out, "#1  100 bytes in 1 allocations, oldest 9.9 s  [stack 2]  in testprog+0x101\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nmodules (start-end, build-id, path):\n  0x400000-"));
	ck_assert_ptr_nonnull(strstr(out, "live:           230 bytes in 8 allocations"));
	free(out);

	/* the preload's entry point */
	char path[] = "/tmp/gwmem-self-XXXXXX";
	int fd = mkstemp(path);
	unlink(path);
	ck_assert_int_eq(gw_report_self(fd, seg, SB_SIZE), 0);
	ck_assert_int_gt(lseek(fd, 0, SEEK_END), 200);
	close(fd);
	ck_assert_int_eq(gw_report_self(-1, seg, 100), GW_VIEW_ERR_CORRUPT);
	free(seg);
}
END_TEST

static Suite *suite_report(void)
{
	Suite *s = suite_create("report");
	TCase *tc = tcase_create("group");
	tcase_add_test(tc, test_group_rank);
	tcase_add_test(tc, test_filters);
	tcase_add_test(tc, test_top_selection);
	tcase_add_test(tc, test_formats);
	tcase_add_test(tc, test_wrappers);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_report)
