/*
 * pool.h - size-class pools of the preload library.
 *
 * Definitions:
 *  - class: a block size; requests are rounded up to the smallest class that
 *    fits.  Classes go 16..128 by 16, then four per power of two up to
 *    memory_pool.default_block_size.  Every power of two is a class, so a
 *    power-of-two class of size >= A gives blocks aligned to A.
 *  - chunk: blocks_per_chunk blocks of one class, contiguous, carved lazily.
 *  - region: a class's max_chunks chunk slots, contiguous inside one address
 *    reservation made at start; pointer -> class is a range check plus one
 *    table load, so blocks have no header.
 *  - thread cache: per-thread, per-class free list; the fast path touches
 *    only it.  Blocks move to/from the class's central lists in batches,
 *    under the class lock, which is also when statistics are folded in.
 */
#ifndef GW_POOL_H
#define GW_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gwmem.h"
#include "gwmem/shm_layout.h"
#include "internal.h"

/* Reserve address space and build the classes; 0 or -errno (pools then stay off). */
int gw_pool_init(const struct gwmem_config *cfg) GW_HIDDEN;
bool gw_pool_ready(void) GW_HIDDEN;

/* Largest size the pools serve; 0 when they are off. */
size_t gw_pool_max_size(void) GW_HIDDEN;

/* A block of at least n bytes (n <= gw_pool_max_size()), or NULL when the class is full. */
void *gw_pool_alloc(size_t n) GW_HIDDEN;
/* A block of at least n bytes aligned to align (a power of two), or NULL. */
void *gw_pool_alloc_aligned(size_t n, size_t align) GW_HIDDEN;
/* True if p lies in the pool reservation (then only gw_pool_free may free it). */
bool gw_pool_owns(const void *p) GW_HIDDEN;
/* Free a block; an invalid or already-free pointer is counted and ignored. */
void gw_pool_free(void *p) GW_HIDDEN;
/* Usable size of a pool block (its class size), 0 for an invalid pointer. */
size_t gw_pool_usable_size(const void *p) GW_HIDDEN;

/* Statistics: summed from central and every thread cache; nclasses returned. */
unsigned gw_pool_stats(struct gwmem_shm_class *out, unsigned max) GW_HIDDEN;
/* Keep live per-class statistics in 'area' (GWMEM_SHM_MAX_CLASSES entries) from now on. */
void gw_pool_attach_stats(struct gwmem_shm_class *area, uint32_t *nclasses) GW_HIDDEN;
/* Release fully free chunks to the OS if due; 'force' ignores the interval. Returns chunks released. */
unsigned gw_pool_release(bool force) GW_HIDDEN;
/* Print the statistics table to fd without allocating. */
void gw_pool_print_stats(int fd) GW_HIDDEN;

void gw_pool_atfork_prepare(void) GW_HIDDEN;
void gw_pool_atfork_parent(void) GW_HIDDEN;
void gw_pool_atfork_child(void) GW_HIDDEN;

#endif /* GW_POOL_H */
