/* tests/unit/test-escape.c: untrusted strings escaped for text, folded, JSON, Prometheus */
#include "config.h"

#include <check.h>
#include <string.h>

#include "escape.h"
#include "suite.h"

static const char *esc(enum gw_escape_mode m, const char *s)
{
	static char out[512];
	gw_escape_buf(m, s, out, sizeof(out));
	return out;
}

START_TEST(test_plain_strings_pass)
{
	static const char *plain[] = { "", "/usr/lib/libc.so.6", "main", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" };
	for (unsigned i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		ck_assert_str_eq(esc(GW_ESC_TEXT, plain[i]), plain[i]);
		ck_assert_str_eq(esc(GW_ESC_JSON, plain[i]), plain[i]);
		ck_assert_str_eq(esc(GW_ESC_PROM, plain[i]), plain[i]);
	}
	ck_assert_str_eq(esc(GW_ESC_FOLDED, "a b;c"), "a_b_c");
}
END_TEST

START_TEST(test_text_controls)
{
	ck_assert_str_eq(esc(GW_ESC_TEXT, "a\x1b[2Jb"), "a\\x1b[2Jb");
	ck_assert_str_eq(esc(GW_ESC_TEXT, "\x07\x7f\n\t"), "\\x07\\x7f\\x0a\\x09");
	/* C1 CSI, as UTF-8 and as a lone byte */
	ck_assert_str_eq(esc(GW_ESC_TEXT, "x\xc2\x9by\x9bz"), "x\\xc2\\x9by\\x9bz");
	/* quotes and backslashes are not special in text */
	ck_assert_str_eq(esc(GW_ESC_TEXT, "\"\\"), "\"\\");
	ck_assert_str_eq(esc(GW_ESC_FOLDED, "f\x1b;g h"), "f\\x1b_g_h");
}
END_TEST

START_TEST(test_invalid_utf8)
{
	/* a truncated sequence does not swallow the next character */
	ck_assert_str_eq(esc(GW_ESC_TEXT, "\xc3(\xe2\x82"), "\\xc3(\\xe2\\x82");
	/* overlong '/', a surrogate, above U+10FFFF, a lone continuation byte */
	ck_assert_str_eq(esc(GW_ESC_TEXT, "\xc0\xaf"), "\\xc0\\xaf");
	ck_assert_str_eq(esc(GW_ESC_TEXT, "\xed\xa0\x80"), "\\xed\\xa0\\x80");
	ck_assert_str_eq(esc(GW_ESC_TEXT, "\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");
	ck_assert_str_eq(esc(GW_ESC_TEXT, "\x80"), "\\x80");
	ck_assert_str_eq(esc(GW_ESC_TEXT, "\xff\xfe"), "\\xff\\xfe");
}
END_TEST

START_TEST(test_json)
{
	ck_assert_str_eq(esc(GW_ESC_JSON, "q\"b\\"), "q\\\"b\\\\");
	ck_assert_str_eq(esc(GW_ESC_JSON, "\x1b\n\x7f"), "\\u001b\\u000a\\u007f");
	ck_assert_str_eq(esc(GW_ESC_JSON, "\xc2\x9b"), "\\u009b");
	/* not UTF-8: shown as text would show it, with the backslash escaped */
	ck_assert_str_eq(esc(GW_ESC_JSON, "a\xffz"), "a\\\\xffz");
	ck_assert_str_eq(esc(GW_ESC_JSON, "\xc3\xa9"), "\xc3\xa9");
}
END_TEST

START_TEST(test_prometheus)
{
	ck_assert_str_eq(esc(GW_ESC_PROM, "q\"b\\n\n"), "q\\\"b\\\\n\\n");
	ck_assert_str_eq(esc(GW_ESC_PROM, "\x1b[1m\xff"), "\\\\x1b[1m\\\\xff");
	ck_assert_str_eq(esc(GW_ESC_PROM, "\xc2\x9b"), "\\\\xc2\\\\x9b");
}
END_TEST

START_TEST(test_buffer_cut_whole)
{
	char out[8];

	/* "abcd" + "\x1b" would need 8 of the 7; the escape is not cut in half */
	ck_assert_uint_eq(gw_escape_buf(GW_ESC_TEXT, "abcd\x1b", out, sizeof(out)), 4);
	ck_assert_str_eq(out, "abcd");
	ck_assert_uint_eq(gw_escape_buf(GW_ESC_TEXT, "abc\x1b", out, sizeof(out)), 7);
	ck_assert_str_eq(out, "abc\\x1b");
	/* a multi-byte character is not cut either */
	ck_assert_uint_eq(gw_escape_buf(GW_ESC_TEXT, "abcdef\xc3\xa9", out, sizeof(out)), 6);
	ck_assert_str_eq(out, "abcdef");
	ck_assert_uint_eq(gw_escape_buf(GW_ESC_TEXT, "abcdefgh", out, sizeof(out)), 7);
	ck_assert_str_eq(out, "abcdefg");
	ck_assert_uint_eq(gw_escape_buf(GW_ESC_TEXT, "x", out, 1), 0);
	ck_assert_str_eq(out, "");
}
END_TEST

/* Every byte value, alone and before a character: output is printable UTF-8. */
START_TEST(test_every_byte)
{
	for (unsigned b = 1; b < 256; b++) {
		char in[4] = { (char)b, 'x', 0, 0 };
		for (int m = GW_ESC_TEXT; m <= GW_ESC_PROM; m++) {
			const unsigned char *o = (const unsigned char *)esc((enum gw_escape_mode)m, in);
			for (; *o; o++) {
				ck_assert_msg(*o >= 0x20 && *o != 0x7f, "byte 0x%02x mode %d gave 0x%02x", b, m, *o);
				ck_assert_msg(*o < 0x80, "byte 0x%02x mode %d passed raw", b, m);
			}
		}
	}
}
END_TEST

static Suite *suite_escape(void)
{
	Suite *s = suite_create("escape");
	TCase *tc = tcase_create("modes");
	tcase_add_test(tc, test_plain_strings_pass);
	tcase_add_test(tc, test_text_controls);
	tcase_add_test(tc, test_invalid_utf8);
	tcase_add_test(tc, test_json);
	tcase_add_test(tc, test_prometheus);
	tcase_add_test(tc, test_buffer_cut_whole);
	tcase_add_test(tc, test_every_byte);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_escape)
