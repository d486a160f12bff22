/* tests/unit/test-bufpool.c: byte-buffer pools: classes, clearing, misuse, stats, threads; version. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gwmem.h"
#include "suite.h"

static struct gwmem_bufpool *mk(size_t min, size_t max, size_t per, unsigned flags)
{
	struct gwmem_bufpool_options o = {.min_size = min, .max_size = max, .max_buffers = per,
					  .flags = flags, .name = "test"};

	return gwmem_bufpool_create(&o);
}

START_TEST(test_bufpool_classes)
{
	struct gwmem_bufpool *bp = mk(100, 4096, 4, 0);
	struct gwmem_bufpool_stats st;
	struct gwmem_bytebuf b[6];

	ck_assert_ptr_nonnull(bp);
	ck_assert_int_eq(gwmem_bufpool_get(bp, 1, &b[0]), 0);
	ck_assert_uint_eq(b[0].cap, 128); /* 100 rounds up to the 128-byte class */
	ck_assert_uint_eq(b[0].len, 0);
	ck_assert_int_eq(gwmem_bufpool_get(bp, 129, &b[1]), 0);
	ck_assert_uint_eq(b[1].cap, 256);
	ck_assert_int_eq(gwmem_bufpool_get(bp, 4096, &b[2]), 0);
	ck_assert_uint_eq(b[2].cap, 4096);
	ck_assert_uint_eq((uintptr_t)b[2].data % 64, 0);
	ck_assert_int_eq(gwmem_bufpool_get(bp, 4097, &b[3]), -EMSGSIZE);
	ck_assert_ptr_null(b[3].data);
	ck_assert_int_eq(gwmem_bufpool_get(bp, 1000000, &b[3]), -EMSGSIZE);
	/* a full class spills into the next one */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(gwmem_bufpool_get(bp, 128, &b[3]), 0);
	ck_assert_uint_eq(b[3].cap, 128);
	ck_assert_int_eq(gwmem_bufpool_get(bp, 128, &b[4]), 0);
	ck_assert_uint_eq(b[4].cap, 256);
	gwmem_bufpool_stats(bp, &st);
	ck_assert_uint_eq(st.nclasses, 6); /* 128 .. 4096 */
	ck_assert_uint_eq(st.cls[0].in_use, 4);
	ck_assert_uint_eq(st.cls[1].in_use, 2);
	ck_assert_uint_eq(st.in_use, 7);
	ck_assert_uint_eq(st.gets, 7);
	ck_assert_uint_eq(st.failed_gets, 2);
	gwmem_bufpool_destroy(bp);
	ck_assert_ptr_null(mk(8192, 4096, 0, 0));
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(test_bufpool_cleared_on_return)
{
	struct gwmem_bufpool *bp = mk(64, 64, 1, 0);
	struct gwmem_bytebuf b, c;
	char zero[64] = {0};

	ck_assert_int_eq(gwmem_bufpool_get(bp, 10, &b), 0);
	ck_assert_int_eq(gwmem_bytebuf_append(&b, "Hello, World!", 13), 0);
	ck_assert_uint_eq(b.len, 13);
	ck_assert_int_eq(memcmp(b.data, "Hello, World!", 13), 0);
	ck_assert_int_eq(gwmem_bytebuf_append(&b, zero, 52), -ENOSPC);
	ck_assert_uint_eq(b.len, 13);
	unsigned char *data = b.data;
	ck_assert_int_eq(gwmem_bufpool_put(bp, &b), 0);
	ck_assert_ptr_null(b.data);
	ck_assert_int_eq(gwmem_bufpool_get(bp, 64, &c), 0);
	ck_assert_ptr_eq(c.data, data); /* the one buffer, reused */
	ck_assert_int_eq(memcmp(c.data, zero, 64), 0);
	gwmem_bufpool_put(bp, &c);
	gwmem_bufpool_destroy(bp);

	/* ZERO_ALL: bytes written past len are cleared too */
	bp = mk(64, 64, 1, GWMEM_BUFPOOL_ZERO_ALL);
	gwmem_bufpool_get(bp, 64, &b);
	memset(b.data, 0xab, 64);
	gwmem_bufpool_put(bp, &b);
	gwmem_bufpool_get(bp, 64, &b);
	ck_assert_int_eq(memcmp(b.data, zero, 64), 0);
	gwmem_bufpool_put(bp, &b);
	gwmem_bufpool_destroy(bp);
}
END_TEST

START_TEST(test_bufpool_misuse)
{
	struct gwmem_bufpool *bp = mk(64, 1024, 8, 0);
	struct gwmem_bufpool_stats st;
	struct gwmem_bytebuf b, copy, foreign = {.data = (unsigned char *)&st, .len = 0, .cap = 64};
	struct gwmem_bytebuf interior;

	gwmem_bufpool_get(bp, 100, &b);
	copy = b;
	interior = b;
	interior.data += 8;
	ck_assert_int_eq(gwmem_bufpool_put(bp, &foreign), -EINVAL);
	ck_assert_int_eq(gwmem_bufpool_put(bp, &interior), -EINVAL);
	ck_assert_int_eq(gwmem_bufpool_put(bp, &b), 0);
	ck_assert_int_eq(gwmem_bufpool_put(bp, &copy), -EALREADY);
	ck_assert_int_eq(gwmem_bufpool_put(bp, &b), -EINVAL); /* data NULL after the put */
	ck_assert_int_eq(gwmem_bufpool_put(NULL, &b), -EINVAL);
	ck_assert_int_eq(gwmem_bufpool_get(bp, 1, NULL), -EINVAL);
	gwmem_bufpool_stats(bp, &st);
	ck_assert_uint_eq(st.invalid_puts, 4);
	ck_assert_uint_eq(st.puts, 1);
	ck_assert_uint_eq(st.in_use, 0);
	gwmem_bufpool_destroy(bp);
}
END_TEST

static struct gwmem_bufpool *shared;

static void *worker(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	long errors = 0;

	for (int i = 0; i < 20000; i++) {
		struct gwmem_bytebuf b;
		size_t want = (size_t)(rand_r(&seed) % 2000) + 1;

		if (gwmem_bufpool_get(shared, want, &b) != 0) {
			errors++;
			continue;
		}
		for (size_t k = 0; k < want; k++)
			if (b.data[k] != 0)
				errors++;
		memset(b.data, 0x5a, want);
		b.len = want;
		if (gwmem_bufpool_put(shared, &b) != 0)
			errors++;
	}
	return (void *)errors;
}

START_TEST(test_bufpool_threads)
{
	pthread_t t[4];
	struct gwmem_bufpool_stats st;

	shared = mk(64, 2048, 16, 0);
	for (uintptr_t i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, worker, (void *)(i + 1));
	for (int i = 0; i < 4; i++) {
		void *r;

		pthread_join(t[i], &r);
		ck_assert_int_eq((long)r, 0);
	}
	gwmem_bufpool_stats(shared, &st);
	ck_assert_uint_eq(st.gets, 80000);
	ck_assert_uint_eq(st.puts, 80000);
	ck_assert_uint_eq(st.in_use, 0);
	gwmem_bufpool_destroy(shared);
}
END_TEST

START_TEST(test_version)
{
	char want[32];

	ck_assert_int_eq(gwmem_version(), GWMEM_VERSION);
	snprintf(want, sizeof(want), "%d.%d.%d", GWMEM_VERSION_MAJOR, GWMEM_VERSION_MINOR, GWMEM_VERSION_PATCH);
	ck_assert_str_eq(gwmem_version_string(), want);
}
END_TEST

static Suite *suite_bufpool(void)
{
	Suite *s = suite_create("bufpool");
	TCase *tc = tcase_create("single");

	tcase_add_test(tc, test_bufpool_classes);
	tcase_add_test(tc, test_bufpool_cleared_on_return);
	tcase_add_test(tc, test_bufpool_misuse);
	tcase_add_test(tc, test_version);
	suite_add_tcase(s, tc);
	tc = tcase_create("threads");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_bufpool_threads);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_bufpool)
