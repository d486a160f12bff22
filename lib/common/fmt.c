/*
 * fmt.c - allocation-free formatting and diagnostics.
 *
 * Everything in lib/ that prints goes through here, because stdio may call
 * malloc and we may be inside malloc.  The format subset is what the library
 * needs, nothing more; the CLI uses stdio directly.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fmt.h"

void gw_buf_putc(struct gw_buf *b, char c)
{
	if (b->len + 1 < b->cap)
		b->data[b->len] = c;
	b->len++;
}

void gw_buf_puts(struct gw_buf *b, const char *s)
{
	if (!s)
		s = "(null)";
	while (*s)
		gw_buf_putc(b, *s++);
}

void gw_buf_u64(struct gw_buf *b, uint64_t v)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		gw_buf_putc(b, tmp[--n]);
}

void gw_buf_u64_width(struct gw_buf *b, uint64_t v, unsigned width)
{
	unsigned digits = 1;

	for (uint64_t x = v; x >= 10; x /= 10)
		digits++;
	while (width-- > digits)
		gw_buf_putc(b, ' ');
	gw_buf_u64(b, v);
}

void gw_buf_i64(struct gw_buf *b, int64_t v)
{
	if (v < 0) {
		gw_buf_putc(b, '-');
		gw_buf_u64(b, (uint64_t)0 - (uint64_t)v);
	} else {
		gw_buf_u64(b, (uint64_t)v);
	}
}

void gw_buf_hex(struct gw_buf *b, uint64_t v)
{
	static const char digits[] = "0123456789abcdef";
	char tmp[16];
	int n = 0;

	do {
		tmp[n++] = digits[v & 15];
		v >>= 4;
	} while (v);
	while (n)
		gw_buf_putc(b, tmp[--n]);
}

void gw_buf_double(struct gw_buf *b, double v, int decimals)
{
	uint64_t scale = 1;

	if (v != v) {
		gw_buf_puts(b, "nan");
		return;
	}
	if (v < 0) {
		gw_buf_putc(b, '-');
		v = -v;
	}
	if (decimals < 0)
		decimals = 0;
	if (decimals > 9)
		decimals = 9;
	for (int i = 0; i < decimals; i++)
		scale *= 10;
	/* v * scale must fit the integer it is converted to */
	if (v > 1e18 || v * (double)scale >= 1.8e19) {
		gw_buf_puts(b, "inf");
		return;
	}
	uint64_t fixed = (uint64_t)(v * (double)scale + 0.5);
	gw_buf_u64(b, fixed / scale);
	if (decimals) {
		char frac[12];
		uint64_t f = fixed % scale;
		gw_buf_putc(b, '.');
		for (int i = decimals - 1; i >= 0; i--) {
			frac[i] = (char)('0' + f % 10);
			f /= 10;
		}
		for (int i = 0; i < decimals; i++)
			gw_buf_putc(b, frac[i]);
	}
}

const char *gw_buf_cstr(struct gw_buf *b)
{
	if (b->cap == 0)
		return "";
	b->data[b->len < b->cap ? b->len : b->cap - 1] = '\0';
	return b->data;
}

size_t gw_vformat(struct gw_buf *b, const char *fmt, va_list ap)
{
	size_t start = b->len;

	for (const char *p = fmt; *p; p++) {
		if (*p != '%') {
			gw_buf_putc(b, *p);
			continue;
		}
		p++;
		int decimals = 3;
		if (*p == '.') {
			decimals = 0;
			for (p++; *p >= '0' && *p <= '9'; p++)
				decimals = decimals * 10 + (*p - '0');
		}
		int longs = 0;
		bool size = false;
		while (*p == 'l') {
			longs++;
			p++;
		}
		if (*p == 'z') {
			size = true;
			p++;
		}
		switch (*p) {
		case 's':
			gw_buf_puts(b, va_arg(ap, const char *));
			break;
		case 'c':
			gw_buf_putc(b, (char)va_arg(ap, int));
			break;
		case 'd':
		case 'i':
			if (size)
				gw_buf_i64(b, va_arg(ap, ssize_t));
			else if (longs == 1)
				gw_buf_i64(b, va_arg(ap, long));
			else if (longs >= 2)
				gw_buf_i64(b, va_arg(ap, long long));
			else
				gw_buf_i64(b, va_arg(ap, int));
			break;
		case 'u':
		case 'x':
		{
			uint64_t v;
			if (size)
				v = va_arg(ap, size_t);
			else if (longs == 1)
				v = va_arg(ap, unsigned long);
			else if (longs >= 2)
				v = va_arg(ap, unsigned long long);
			else
				v = va_arg(ap, unsigned int);
			if (*p == 'x')
				gw_buf_hex(b, v);
			else
				gw_buf_u64(b, v);
			break;
		}
		case 'p':
			gw_buf_puts(b, "0x");
			gw_buf_hex(b, (uintptr_t)va_arg(ap, void *));
			break;
		case 'f':
			gw_buf_double(b, va_arg(ap, double), decimals);
			break;
		case '%':
			gw_buf_putc(b, '%');
			break;
		case '\0':
			p--;
			break;
		default:
			gw_buf_putc(b, '%');
			gw_buf_putc(b, *p);
			break;
		}
	}
	gw_buf_cstr(b);
	return b->len - start;
}

size_t gw_format(struct gw_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	size_t n = gw_vformat(b, fmt, ap);
	va_end(ap);
	return n;
}

size_t gw_snprintf(char *dst, size_t cap, const char *fmt, ...)
{
	struct gw_buf b = { dst, cap, 0 };
	va_list ap;
	va_start(ap, fmt);
	size_t n = gw_vformat(&b, fmt, ap);
	va_end(ap);
	return n;
}

int gw_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void gw_log(const char *fmt, ...)
{
	char mem[512];
	struct gw_buf b = GW_BUF_INIT(mem);
	int saved = errno;
	va_list ap;

	gw_buf_puts(&b, "gwmem: ");
	va_start(ap, fmt);
	gw_vformat(&b, fmt, ap);
	va_end(ap);
	if (b.len >= b.cap - 1)
		b.len = b.cap - 2;
	b.data[b.len++] = '\n';
	(void)gw_write_all(2, b.data, b.len);
	errno = saved;
}

const char *gw_strerror(int err)
{
	/* strerror() may allocate (unknown numbers, or a locale's text) in
	 * older glibc; strerrordesc_np never does */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	const char *s = strerrordesc_np(err);
	return s ? s : "unknown error";
#else
	return strerror(err);
#endif
}

void gw_assert_fail(const char *expr, const char *file, int line)
{
	gw_log("assertion failed: %s (%s:%d)", expr, file, line);
	abort();
}
