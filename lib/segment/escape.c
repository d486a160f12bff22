/*
 * escape.c - escaping of untrusted strings for text, folded stacks, JSON and
 * Prometheus label values (the rules are in escape.h).
 *
 * The input is walked as UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF); a byte that does not start a well-formed sequence
 * is escaped on its own and decoding resumes at the next byte, so one bad
 * byte never swallows the characters after it.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "escape.h"

static const char hex[] = "0123456789abcdef";

/*
 * Length of the well-formed UTF-8 sequence at s (1..4), or 0 when s[0]
 * does not start one.  s is NUL-terminated, and NUL is never a
 * continuation byte, so no read passes the terminator.
 */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;          /* overlong */
	else if (c == 0xed)
		hi = 0x9f;          /* surrogates */
	else if (c == 0xf0)
		lo = 0x90;          /* overlong */
	else if (c == 0xf4)
		hi = 0x8f;          /* above U+10FFFF */
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* One byte shown as \xNN; 'backslashes' of them (1, or 2 where '\' itself must be escaped). */
static size_t byte_escape(char *e, unsigned char b, int backslashes)
{
	size_t n = 0;

	while (backslashes--)
		e[n++] = '\\';
	e[n++] = 'x';
	e[n++] = hex[b >> 4];
	e[n++] = hex[b & 15];
	return n;
}

/* A code point below U+0100 as the JSON escape \u00NN. */
static size_t json_u(char *e, unsigned cp)
{
	e[0] = '\\';
	e[1] = 'u';
	e[2] = '0';
	e[3] = '0';
	e[4] = hex[(cp >> 4) & 15];
	e[5] = hex[cp & 15];
	return 6;
}

/*
 * The escaped form of the character of n bytes at s (n == 0: one byte that
 * is not UTF-8) into e[8]; returns its length, or 0 when s[0..n) is written
 * as it is.
 */
static size_t escape_one(enum gw_escape_mode m, const unsigned char *s, size_t n, char *e)
{
	unsigned char c = s[0];
	bool invalid = n == 0;
	bool ctl = n == 1 && (c < 0x20 || c == 0x7f);
	bool c1 = n == 2 && c == 0xc2 && s[1] < 0xa0;    /* U+0080..U+009F */

	switch (m) {
	case GW_ESC_FOLDED:
		if (c == ';' || c == ' ') {
			e[0] = '_';
			return 1;
		}
		/* fall through */
	case GW_ESC_TEXT:
		if (invalid || ctl)
			return byte_escape(e, c, 1);
		if (c1)
			return byte_escape(e, s[0], 1) + byte_escape(e + 4, s[1], 1);
		return 0;
	case GW_ESC_JSON:
		if (c == '"' || c == '\\') {
			e[0] = '\\';
			e[1] = (char)c;
			return 2;
		}
		if (ctl)
			return json_u(e, c);
		if (c1)
			return json_u(e, s[1]);          /* 0xc2 0x8N encodes U+008N */
		if (invalid)
			return byte_escape(e, c, 2);
		return 0;
	case GW_ESC_PROM:
		if (c == '"' || c == '\\') {
			e[0] = '\\';
			e[1] = (char)c;
			return 2;
		}
		if (c == '\n') {
			e[0] = '\\';
			e[1] = 'n';
			return 2;
		}
		if (invalid || ctl)
			return byte_escape(e, c, 2);
		if (c1)
			return byte_escape(e, s[0], 2) + byte_escape(e + 5, s[1], 2);
		return 0;
	}
	return 0;
}

void gw_escape(enum gw_escape_mode mode, const char *str, gw_escape_put put, void *ctx)
{
	const unsigned char *s = (const unsigned char *)str;
	const unsigned char *run = s;    /* bytes written as they are, not yet handed to put */
	char e[12];

	while (*s) {
		size_t n = utf8_len(s);
		size_t k = escape_one(mode, s, n, e);
		size_t adv = n ? n : 1;
		if (k) {
			if (s > run)
				put(ctx, (const char *)run, (size_t)(s - run));
			put(ctx, e, k);
			run = s + adv;
		}
		s += adv;
	}
	if (s > run)
		put(ctx, (const char *)run, (size_t)(s - run));
}

struct bufput {
	char *dst;
	size_t cap;     /* room for text, the NUL excluded */
	size_t len;
	bool full;
};

static void buf_put(void *ctx, const char *s, size_t n)
{
	struct bufput *b = ctx;

	/* whole pieces only: never half an escape or half a character */
	if (b->full || n > b->cap - b->len) {
		b->full = true;
		return;
	}
	memcpy(b->dst + b->len, s, n);
	b->len += n;
}

size_t gw_escape_buf(enum gw_escape_mode mode, const char *s, char *dst, size_t cap)
{
	if (!cap)
		return 0;
	/*
	 * Unescaped runs arrive as one piece; feed them character by character
	 * so that a long run is cut at a character boundary, not dropped.
	 */
	struct bufput b = { dst, cap - 1, 0, false };
	const unsigned char *p = (const unsigned char *)s;
	char one[8];

	while (*p && !b.full) {
		size_t n = utf8_len(p);
		size_t adv = n ? n : 1;
		memcpy(one, p, adv);
		one[adv] = '\0';
		gw_escape(mode, one, buf_put, &b);
		p += adv;
	}
	dst[b.len] = '\0';
	return b.len;
}
