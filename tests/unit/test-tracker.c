/* tests/unit/test-tracker.c: in-process leak tracking of fixpool, objpool and bufpool blocks. */
#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gwmem.h"
#include "suite.h"

/* Two distinct allocation sites, kept out of line so they have their own frames. */
__attribute__((noinline)) void *site_a(struct gwmem_fixpool *p)
{
	void *r = gwmem_fixpool_alloc(p);
	__asm__ __volatile__("" ::: "memory");
	return r;
}

__attribute__((noinline)) void *site_b(struct gwmem_fixpool *p)
{
	void *r = gwmem_fixpool_alloc(p);
	__asm__ __volatile__("" ::: "memory");
	return r;
}

/* Whether return address pc lies inside function f (within 256 bytes of its start). */
static int in_fn(void *pc, void *f)
{
	return (uintptr_t)pc > (uintptr_t)f && (uintptr_t)pc - (uintptr_t)f < 256;
}

START_TEST(test_track_sites_and_age)
{
	struct gwmem_fixpool_options o = {.block_size = 48, .blocks_per_chunk = 64, .max_chunks = 4,
					  .flags = GWMEM_FIXPOOL_TRACK, .name = "tracked"};
	struct gwmem_fixpool *p = gwmem_fixpool_create(&o);
	struct gwmem_track_site s[4];
	struct gwmem_track_totals tt0, tt;
	void *a[10], *b[3];
	size_t n;

	ck_assert_ptr_nonnull(p);
	gwmem_track_totals(&tt0);
	/* volatile counters: an unrolled loop would call each site from several places */
	for (volatile int i = 0; i < 10; i++)
		a[i] = site_a(p);
	for (volatile int i = 0; i < 3; i++)
		b[i] = site_b(p);
	gwmem_fixpool_free(p, a[9]);
	gwmem_track_totals(&tt);
	ck_assert_uint_eq(tt.live_blocks - tt0.live_blocks, 12);
	ck_assert_uint_eq(tt.live_bytes - tt0.live_bytes, 12 * 48);
	ck_assert_uint_eq(tt.allocs - tt0.allocs, 13);
	ck_assert_uint_eq(tt.frees - tt0.frees, 1);

	/* every live block, grouped by site, largest first */
	n = gwmem_track_leaks(0, s, 4);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(s[0].blocks, 9);
	ck_assert_uint_eq(s[0].bytes, 9 * 48);
	ck_assert_uint_eq(s[1].blocks, 3);
	ck_assert_str_eq(s[0].pool, "tracked");
	ck_assert_uint_ge(s[0].nframes, 2);
	/* the first frame is the caller of the pool function */
	ck_assert_msg(in_fn(s[0].frames[0], (void *)site_a), "frame 0 %p not in site_a %p", s[0].frames[0],
		      (void *)site_a);
	ck_assert(in_fn(s[1].frames[0], (void *)site_b));
	ck_assert_uint_eq(gwmem_track_leaks(0, NULL, 0), 2);

	/* age: nothing is older than 10 s; everything older than 0.1 s after a pause */
	ck_assert_uint_eq(gwmem_track_leaks(10, s, 4), 0);
	usleep(150 * 1000);
	b[0] = (gwmem_fixpool_free(p, b[0]), site_b(p)); /* a young block at site b */
	n = gwmem_track_leaks(0.1, s, 4);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(s[1].blocks, 2);
	ck_assert(s[0].oldest_age >= 0.1 && s[0].oldest_age < 60);

	/* the report names the sites' functions (exported: -rdynamic not needed for these) */
	char path[] = "/tmp/gwmem-track.XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_eq(gwmem_track_report(fd, 0, 8), 3); /* the young block came from a third call */
	lseek(fd, 0, SEEK_SET);
	char text[8192] = {0};
	ck_assert_int_gt(read(fd, text, sizeof(text) - 1), 0);
	close(fd);
	unlink(path);
	ck_assert_msg(strstr(text, "9 blocks, 432 bytes"), "%s", text);
	ck_assert_msg(strstr(text, "pool tracked"), "%s", text);

	for (int i = 0; i < 9; i++)
		gwmem_fixpool_free(p, a[i]);
	for (int i = 0; i < 3; i++)
		gwmem_fixpool_free(p, b[i]);
	ck_assert_uint_eq(gwmem_track_leaks(0, s, 4), 0);
	gwmem_fixpool_destroy(p);
	gwmem_track_totals(&tt);
	ck_assert_uint_eq(tt.pools, tt0.pools - 1);
	ck_assert_int_eq(gwmem_track_totals(NULL), -EINVAL);
}
END_TEST

START_TEST(test_track_objpool_and_bufpool)
{
	struct gwmem_objpool_options oo;
	struct gwmem_bufpool_options bo = {.max_size = 1024, .flags = GWMEM_BUFPOOL_TRACK, .name = "bufs"};
	struct gwmem_track_site s[8];
	struct gwmem_objpool *op;
	struct gwmem_bufpool *bp;
	struct gwmem_bytebuf buf;
	void *obj[5];

	gwmem_objpool_options_init(&oo, 100, NULL);
	oo.track = true;
	oo.name = "objs";
	op = gwmem_objpool_create(&oo);
	bp = gwmem_bufpool_create(&bo);
	ck_assert_ptr_nonnull(op);
	ck_assert_ptr_nonnull(bp);
	for (volatile int i = 0; i < 5; i++)
		obj[i] = gwmem_objpool_get(op);
	ck_assert_int_eq(gwmem_bufpool_get(bp, 700, &buf), 0);
	ck_assert_uint_eq(gwmem_track_leaks(0, s, 8), 2);
	ck_assert_str_eq(s[0].pool, "bufs"); /* 1024 bytes */
	ck_assert_uint_eq(s[0].bytes, 1024);
	ck_assert_str_eq(s[1].pool, "objs");
	ck_assert_uint_eq(s[1].blocks, 5);
	ck_assert_uint_eq(s[1].bytes, 500);
	/* an object put back and kept idle is not live */
	for (int i = 0; i < 5; i++)
		gwmem_objpool_put(op, obj[i]);
	gwmem_bufpool_put(bp, &buf);
	ck_assert_uint_eq(gwmem_track_leaks(0, s, 8), 0);
	obj[0] = gwmem_objpool_get(op); /* from the idle list: live again */
	ck_assert_uint_eq(gwmem_track_leaks(0, s, 8), 1);
	gwmem_objpool_put(op, obj[0]);
	gwmem_objpool_destroy(op);
	gwmem_bufpool_destroy(bp);
}
END_TEST

static Suite *suite_tracker(void)
{
	Suite *s = suite_create("tracker");
	TCase *tc = tcase_create("track");

	tcase_add_test(tc, test_track_sites_and_age);
	tcase_add_test(tc, test_track_objpool_and_bufpool);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_tracker)
