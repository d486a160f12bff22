/*
 * bufpool.c - byte-buffer pools of the public API (gwmem_bufpool_*,
 * gwmem_bytebuf_*).
 *
 * A buffer pool hands out byte buffers of a few power-of-two size classes,
 * from min_size to max_size.  Each class is a thread-safe fixed-block pool of
 * its own, so a buffer is mmap'd memory, a put finds its class and block by
 * address in O(1) and a foreign or doubly-put buffer is refused and counted.
 * A get takes the smallest class that holds the requested capacity, or the
 * next larger one when that class is full.
 *
 * A buffer travels in a struct gwmem_bytebuf {data, len, cap}: writers
 * append (or write data directly and set len), and a put clears what the
 * buffer held: the first len bytes, or the whole capacity with
 * GWMEM_BUFPOOL_ZERO_ALL, so the next user never sees the previous one's
 * bytes.
 *
 * Leaves to others: the blocks themselves (fixpool.c), leak tracking of
 * tracked pools (tracker.c through the fixpool's GWMEM_FIXPOOL_TRACK).
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "gwmem.h"
#include "fixpool.h"
#include "fmt.h"
#include "internal.h"
#include "os.h"

#define BUF_MAX_CLASSES 21  /* 16 B .. 16 MiB */

struct gwmem_bufpool {
	unsigned nclasses;
	unsigned min_shift;
	unsigned flags;
	struct gwmem_fixpool *cls[BUF_MAX_CLASSES];
	uint64_t gets;
	uint64_t puts;
	uint64_t failed;
	uint64_t invalid;
	char name[32];
};

static unsigned shift_of(size_t n)
{
	unsigned s = 0;

	while (((size_t)1 << s) < n)
		s++;
	return s;
}

struct gwmem_bufpool *gwmem_bufpool_create(const struct gwmem_bufpool_options *opts)
{
	size_t min = opts && opts->min_size ? opts->min_size : 64;
	size_t max = opts && opts->max_size ? opts->max_size : 65536;
	size_t per_class = opts && opts->max_buffers ? opts->max_buffers : 1024;
	struct gwmem_bufpool *bp;
	unsigned lo, hi;

	if (!opts || min > max || max > ((size_t)1 << 24) || per_class > ((size_t)1 << 24)) {
		errno = EINVAL;
		return NULL;
	}
	lo = shift_of(min < 16 ? 16 : min);
	hi = shift_of(max);
	if (hi - lo + 1 > BUF_MAX_CLASSES) {
		errno = EINVAL;
		return NULL;
	}
	bp = gw_os_map(GW_ALIGN_UP(sizeof(*bp), gw_os_page_size()));
	if (!bp) {
		errno = ENOMEM;
		return NULL;
	}
	memset(bp, 0, sizeof(*bp));
	bp->min_shift = lo;
	bp->nclasses = hi - lo + 1;
	bp->flags = opts->flags;
	if (opts->name)
		gw_snprintf(bp->name, sizeof(bp->name), "%s", opts->name);
	for (unsigned c = 0; c < bp->nclasses; c++) {
		struct gwmem_fixpool_options fo = {0};
		size_t sz = (size_t)1 << (lo + c);

		fo.block_size = sz;
		fo.alignment = sz < 64 ? 16 : 64;
		/* chunks of about 64 KiB (at least one buffer), up to max_buffers buffers */
		fo.blocks_per_chunk = sz >= 65536 ? 1 : 65536 / sz;
		if (fo.blocks_per_chunk > per_class)
			fo.blocks_per_chunk = per_class;
		fo.max_chunks = (per_class + fo.blocks_per_chunk - 1) / fo.blocks_per_chunk;
		fo.flags = GWMEM_FIXPOOL_THREADSAFE | GWMEM_FIXPOOL_QUIET |
			   (opts->flags & GWMEM_BUFPOOL_TRACK ? GWMEM_FIXPOOL_TRACK : 0);
		fo.name = bp->name[0] ? bp->name : "bufpool";
		bp->cls[c] = gwmem_fixpool_create(&fo);
		if (!bp->cls[c]) {
			int e = errno;

			gwmem_bufpool_destroy(bp);
			errno = e;
			return NULL;
		}
	}
	return bp;
}

void gwmem_bufpool_destroy(struct gwmem_bufpool *bp)
{
	if (!bp)
		return;
	for (unsigned c = 0; c < bp->nclasses; c++)
		gwmem_fixpool_destroy(bp->cls[c]);
	gw_os_unmap(bp, GW_ALIGN_UP(sizeof(*bp), gw_os_page_size()));
}

int gwmem_bufpool_get(struct gwmem_bufpool *bp, size_t min_capacity, struct gwmem_bytebuf *out)
{
	unsigned c;

	if (!bp || !out)
		return -EINVAL;
	out->data = NULL;
	out->len = out->cap = 0;
	c = shift_of(min_capacity ? min_capacity : 1);
	if (c >= bp->min_shift + bp->nclasses) {
		__atomic_fetch_add(&bp->failed, 1, __ATOMIC_RELAXED);
		return -EMSGSIZE;
	}
	c = c > bp->min_shift ? c - bp->min_shift : 0;
	for (; c < bp->nclasses; c++) {
		void *b = gw_fixpool_alloc_ra(bp->cls[c], __builtin_return_address(0));

		if (b) {
			out->data = b;
			out->cap = (size_t)1 << (bp->min_shift + c);
			__atomic_fetch_add(&bp->gets, 1, __ATOMIC_RELAXED);
			return 0;
		}
	}
	__atomic_fetch_add(&bp->failed, 1, __ATOMIC_RELAXED);
	return -ENOMEM;
}

int gwmem_bufpool_put(struct gwmem_bufpool *bp, struct gwmem_bytebuf *b)
{
	int ret = -EINVAL;

	if (!bp || !b)
		return -EINVAL;
	for (unsigned c = 0; c < bp->nclasses; c++) {
		size_t cap = (size_t)1 << (bp->min_shift + c);

		if (!b->data || gw_fixpool_index(bp->cls[c], b->data) < 0)
			continue;
		if (!gwmem_fixpool_owns(bp->cls[c], b->data)) {
			ret = -EALREADY;
			break;
		}
		/* cleared on return: the next user never sees these bytes */
		memset(b->data, 0, (bp->flags & GWMEM_BUFPOOL_ZERO_ALL) || b->len > cap ? cap : b->len);
		ret = gwmem_fixpool_free(bp->cls[c], b->data);
		if (ret == 0) {
			__atomic_fetch_add(&bp->puts, 1, __ATOMIC_RELAXED);
			b->data = NULL;
			b->len = b->cap = 0;
			return 0;
		}
		break;
	}
	__atomic_fetch_add(&bp->invalid, 1, __ATOMIC_RELAXED);
	return ret;
}

int gwmem_bufpool_stats(struct gwmem_bufpool *bp, struct gwmem_bufpool_stats *out)
{
	if (!bp || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->gets = __atomic_load_n(&bp->gets, __ATOMIC_RELAXED);
	out->puts = __atomic_load_n(&bp->puts, __ATOMIC_RELAXED);
	out->failed_gets = __atomic_load_n(&bp->failed, __ATOMIC_RELAXED);
	out->invalid_puts = __atomic_load_n(&bp->invalid, __ATOMIC_RELAXED);
	out->nclasses = bp->nclasses;
	for (unsigned c = 0; c < bp->nclasses && c < GWMEM_BUFPOOL_MAX_CLASSES; c++) {
		struct gwmem_fixpool_stats fs;

		gwmem_fixpool_stats(bp->cls[c], &fs);
		out->cls[c].capacity = (size_t)1 << (bp->min_shift + c);
		out->cls[c].in_use = fs.active_blocks;
		out->cls[c].idle = fs.free_blocks;
		out->cls[c].peak_in_use = fs.peak_active_blocks;
		out->in_use += fs.active_blocks;
		out->bytes_reserved += fs.total_chunks * fs.blocks_per_chunk * fs.block_stride;
	}
	return 0;
}

int gwmem_bytebuf_append(struct gwmem_bytebuf *b, const void *p, size_t n)
{
	if (!b || (!p && n))
		return -EINVAL;
	if (n > b->cap - b->len || b->len > b->cap)
		return -ENOSPC;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}
