/*
 * fmt.h - allocation-free formatting into caller buffers, and the one way
 * lib/ writes diagnostics (write(2) on stderr).  Safe to call from inside
 * malloc; gw_fmt_* never call stdio.
 */
#ifndef GW_FMT_H
#define GW_FMT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* A bounded output buffer; 'len' keeps counting past 'cap' so truncation is visible. */
struct gw_buf {
	char *data;
	size_t cap;
	size_t len;
};

#define GW_BUF_INIT(arr) { (arr), sizeof(arr), 0 }

void gw_buf_puts(struct gw_buf *b, const char *s) GW_HIDDEN;
void gw_buf_putc(struct gw_buf *b, char c) GW_HIDDEN;
void gw_buf_u64(struct gw_buf *b, uint64_t v) GW_HIDDEN;
void gw_buf_i64(struct gw_buf *b, int64_t v) GW_HIDDEN;
/* v right-aligned in at least 'width' columns. */
void gw_buf_u64_width(struct gw_buf *b, uint64_t v, unsigned width) GW_HIDDEN;
void gw_buf_hex(struct gw_buf *b, uint64_t v) GW_HIDDEN;
/* Fixed-point: v printed with 'decimals' digits after the point. */
void gw_buf_double(struct gw_buf *b, double v, int decimals) GW_HIDDEN;
/* NUL-terminates (truncating if needed) and returns data. */
const char *gw_buf_cstr(struct gw_buf *b) GW_HIDDEN;

/*
 * A small printf: %s %c %d %i %u %ld %lu %lld %llu %zu %zd %x %lx %llx %zx %p
 * %f (3 decimals), %.Nf, %%.  No widths.  Returns the length it wanted.
 */
size_t gw_vformat(struct gw_buf *b, const char *fmt, va_list ap) GW_HIDDEN;
size_t gw_format(struct gw_buf *b, const char *fmt, ...) GW_HIDDEN __attribute__((format(printf, 2, 3)));
size_t gw_snprintf(char *dst, size_t cap, const char *fmt, ...) GW_HIDDEN __attribute__((format(printf, 3, 4)));

/* Write all of buf to fd, retrying on EINTR and short writes. Returns 0 or -errno. */
int gw_write_all(int fd, const void *buf, size_t len) GW_HIDDEN;

/* "gwmem: <message>\n" on stderr. */
void gw_log(const char *fmt, ...) GW_HIDDEN __attribute__((format(printf, 1, 2)));

/* The text of errno value err (positive), without allocating where libc allows. */
const char *gw_strerror(int err) GW_HIDDEN;

#endif /* GW_FMT_H */
