/* tests/unit/test-next.c: finding the next allocator (dlsym RTLD_NEXT) and
 * what it is trusted with: large, aligned and resized blocks */
#include "config.h"

#include <check.h>
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "next.h"
#include "suite.h"

START_TEST(test_next_not_ready_before_init)
{
	ck_assert(!gw_next_ready());
	ck_assert_ptr_null((void *)gw_next.malloc);
}
END_TEST

START_TEST(test_next_resolves_the_next_object)
{
	ck_assert(gw_next_init());
	ck_assert(gw_next_ready());
	/* this program defines no allocator: the next one after it is the one
	 * the program itself would call */
	ck_assert_ptr_eq((void *)gw_next.malloc, dlsym(RTLD_DEFAULT, "malloc"));
	ck_assert_ptr_eq((void *)gw_next.free, dlsym(RTLD_DEFAULT, "free"));
	ck_assert_ptr_eq((void *)gw_next.calloc, dlsym(RTLD_DEFAULT, "calloc"));
	ck_assert_ptr_eq((void *)gw_next.realloc, dlsym(RTLD_DEFAULT, "realloc"));
	ck_assert_ptr_eq((void *)gw_next.memalign, dlsym(RTLD_DEFAULT, "memalign"));
	ck_assert_ptr_eq((void *)gw_next.usable_size, dlsym(RTLD_DEFAULT, "malloc_usable_size"));

	/* idempotent: a second call changes nothing */
	struct gw_next first = gw_next;
	ck_assert(gw_next_init());
	ck_assert_int_eq(memcmp(&first, &gw_next, sizeof(first)), 0);
}
END_TEST

START_TEST(test_next_blocks)
{
	ck_assert(gw_next_init());

	/* a large block, usable to its usable size, freed by the program's free() */
	size_t n = 1u << 20;
	unsigned char *p = gw_next.malloc(n);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_ge(gw_next.usable_size(p), n);
	memset(p, 0x3c, n);
	free(p);

	/* calloc zeroes, realloc keeps the contents */
	uint32_t *z = gw_next.calloc(4096, sizeof(*z));
	ck_assert_ptr_nonnull(z);
	for (size_t i = 0; i < 4096; i++)
		ck_assert_uint_eq(z[i], 0);
	for (size_t i = 0; i < 4096; i++)
		z[i] = (uint32_t)i * 7u;
	z = gw_next.realloc(z, 3 * 4096 * sizeof(*z));
	ck_assert_ptr_nonnull(z);
	for (size_t i = 0; i < 4096; i++)
		ck_assert_uint_eq(z[i], (uint32_t)i * 7u);
	gw_next.free(z);

	/* alignments the pools forward */
	for (size_t align = 16; align <= 65536; align <<= 2) {
		void *a = gw_next.memalign(align, 3 * align + 1);
		ck_assert_ptr_nonnull(a);
		ck_assert_uint_eq((uintptr_t)a % align, 0);
		gw_next.free(a);
	}
}
END_TEST

static Suite *suite_next(void)
{
	Suite *s = suite_create("next");
	TCase *tc = tcase_create("next");

	tcase_add_test(tc, test_next_not_ready_before_init);
	tcase_add_test(tc, test_next_resolves_the_next_object);
	tcase_add_test(tc, test_next_blocks);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_next)
