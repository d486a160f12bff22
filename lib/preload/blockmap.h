/*
 * blockmap.h - the allocation table's private index of pooled blocks.
 *
 * A pooled block's class and block number follow from its address (every
 * class region is 2^shift bytes of equal-sized blocks, see pool.h), so the
 * table finds the record of a pooled pointer without hashing: one u32 per
 * block, record number + 1 in the pointer's stripe (0: none), in a dense
 * array per class indexed by block number.  Sixteen entries share a cache
 * line and neighbouring blocks share it, so the entries of a program's
 * live blocks stay in cache where 16-byte hash entries at half load would
 * not.  The stripe of a pointer is still its hash (the segment and its
 * readers do not change); an entry is written under that stripe's lock.
 *
 * The arrays are private memory of this process (a forked child inherits
 * them with the rest), one mapping sized by each class's chunk slots times
 * its blocks per chunk (not by the region), touched page by page as blocks
 * are recorded: 4 bytes per carved pooled block, a page at least per class
 * in use.  Pointers outside
 * the map (forwarded or large blocks, a class without an array, an address
 * that is not a block start) keep the hash index of table.c.
 *
 * The map stays off (everything uses the hash index) when the pools are
 * off, where address space is tight (RLIMIT_AS set, 32-bit targets: the
 * pools' own budget is then what matters) and when its mapping fails.
 */
#ifndef GW_BLOCKMAP_H
#define GW_BLOCKMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gwmem/shm_layout.h"
#include "internal.h"

#define GW_BLOCKMAP_MAX_CLASSES GWMEM_SHM_MAX_CLASSES

struct gw_blockmap_class {
	uint32_t *ent;          /* cap entries (NULL when cap is 0) */
	uint32_t cap;           /* blocks with an entry: numbers [0, cap) */
	uint32_t inv;           /* inverse of the size's odd part mod 2^32 */
	uint32_t tz;            /* trailing zero bits of the size */
	uint32_t pad;
};

struct gw_blockmap {
	uintptr_t base;         /* first region */
	uintptr_t span;         /* nclasses << shift; 0: the map is off */
	uintptr_t rmask;        /* (1 << shift) - 1 */
	unsigned shift;
	unsigned nclasses;
	void *mem;              /* the mapping of every class's array */
	size_t bytes;
	struct gw_blockmap_class cls[GW_BLOCKMAP_MAX_CLASSES];
};

/* Why gw_blockmap_init_pools left the map off (GW_BLOCKMAP_ON when it did not). */
enum gw_blockmap_state {
	GW_BLOCKMAP_ON = 0,
	GW_BLOCKMAP_NO_POOLS,       /* the pools are off */
	GW_BLOCKMAP_TIGHT,          /* RLIMIT_AS or a 32-bit address space */
	GW_BLOCKMAP_MAP_FAILED,     /* the mapping was refused (counted, said once) */
};

/*
 * Map nclasses (<= GW_BLOCKMAP_MAX_CLASSES) regions of 2^shift bytes (shift
 * <= 31) from base: class i has blocks of sizes[i] bytes and an entry for
 * its first caps[i] blocks.  False (the map stays off) when the mapping
 * fails.  The pools' geometry goes through gw_blockmap_init_pools; the
 * tests give their own.
 */
bool gw_blockmap_init(struct gw_blockmap *m, uintptr_t base, unsigned shift, unsigned nclasses,
		      const uint32_t *sizes, const uint32_t *caps) GW_HIDDEN;

/* The map of the pools as they are now (m is zeroed first). */
enum gw_blockmap_state gw_blockmap_init_pools(struct gw_blockmap *m) GW_HIDDEN;

/* Unmap the arrays; the map is off afterwards. */
void gw_blockmap_fini(struct gw_blockmap *m) GW_HIDDEN;

/*
 * The entry of the block that starts at ptr, or NULL when ptr has none
 * (outside the regions, not a block start, past the class's entries, or
 * the map is off).  Depends only on the address and the geometry fixed at
 * init, so an insert and the matching remove always agree.
 */
static GW_ALWAYS_INLINE uint32_t *gw_blockmap_slot(const struct gw_blockmap *m, uint64_t ptr)
{
	uint64_t off = ptr - m->base;

	if (off >= m->span)
		return NULL;
	const struct gw_blockmap_class *c = &m->cls[off >> m->shift];
	/*
	 * Exact division by the block size (Hacker's Delight 10-17): for a
	 * multiple of the size the rotated product is the quotient; for any
	 * other offset it exceeds UINT32_MAX / size, which is at least cap.
	 */
	uint32_t q = (uint32_t)(off & m->rmask) * c->inv;

	q = (q >> c->tz) | (q << ((32 - c->tz) & 31));
	if (q >= c->cap)
		return NULL;
	return c->ent + q;
}

#endif /* GW_BLOCKMAP_H */
