/* tests/unit/test-fmt.c: allocation-free formatting used inside malloc. */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"
#include "suite.h"

START_TEST(test_format_subset)
{
	char out[128];
	gw_snprintf(out, sizeof(out), "%s=%d %u %ld %llu %zu %x %p %c %%", "k", -42, 7u, -9L,
		    18446744073709551615ULL, (size_t)12, 0xbeefu, (void *)0x1000, 'z');
	ck_assert_str_eq(out, "k=-42 7 -9 18446744073709551615 12 beef 0x1000 z %");
	gw_snprintf(out, sizeof(out), "%f %.1f %.0f %.3f", 1.5, 2.25, 9.7, -0.0625);
	ck_assert_str_eq(out, "1.500 2.3 10 -0.063");
	/* a value below 1e18 whose scaled form does not fit 64 bits */
	gw_snprintf(out, sizeof(out), "%.9f %f", 5.5e17, 5.5e16);
	ck_assert_str_eq(out, "inf inf");
	const char *volatile none = NULL;
	gw_snprintf(out, sizeof(out), "%s", none);
	ck_assert_str_eq(out, "(null)");
}
END_TEST

START_TEST(test_truncation_is_bounded)
{
	char out[8];
	memset(out, 'x', sizeof(out));
	size_t n = gw_snprintf(out, sizeof(out), "%s", "0123456789abcdef");
	ck_assert_uint_eq(n, 16);             /* the length it wanted */
	ck_assert_str_eq(out, "0123456");     /* cut, NUL-terminated, in bounds */
	struct gw_buf b = { out, 0, 0 };
	gw_buf_puts(&b, "abc");               /* zero capacity: counts, writes nothing */
	ck_assert_uint_eq(b.len, 3);
}
END_TEST

START_TEST(test_width)
{
	char out[32];
	struct gw_buf b = GW_BUF_INIT(out);
	gw_buf_u64_width(&b, 42, 6);
	gw_buf_u64_width(&b, 1234567, 3);
	ck_assert_str_eq(gw_buf_cstr(&b), "    421234567");
}
END_TEST

static Suite *suite_fmt(void)
{
	Suite *s = suite_create("fmt");
	TCase *tc = tcase_create("format");
	tcase_add_test(tc, test_format_subset);
	tcase_add_test(tc, test_truncation_is_bounded);
	tcase_add_test(tc, test_width);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_fmt)
