/*
 * fixpool.h - what the other API modules (objpool, rc) use of the
 * fixed-block pool: hook-less allocation and O(1) block indexing.
 */
#ifndef GW_FIXPOOL_H
#define GW_FIXPOOL_H

#include <stddef.h>

#include "gwmem.h"
#include "internal.h"

/* Creation flag (internal): do not report blocks to the leak-tracking hooks;
 * the caller reports its own objects. */
#define GW_FIXPOOL_NOHOOK (1u << 31)

/* Index of live-or-free block p in [0, capacity), or -1 if p is not a block start. */
long gw_fixpool_index(const struct gwmem_fixpool *pool, const void *p) GW_HIDDEN;
/* Address of block index i (any state). */
void *gw_fixpool_block(const struct gwmem_fixpool *pool, size_t i) GW_HIDDEN;
/* gwmem_fixpool_alloc() on behalf of a public function whose caller's
 * return address is 'ra' (where a tracked pool's backtrace starts). */
void *gw_fixpool_alloc_ra(struct gwmem_fixpool *pool, const void *ra) GW_HIDDEN;
/* Blocks the pool can hold at most (max_chunks * blocks_per_chunk). */
size_t gw_fixpool_capacity(const struct gwmem_fixpool *pool) GW_HIDDEN;

#endif /* GW_FIXPOOL_H */
