/*
 * table.h - the lock-striped allocation table in the segment.
 *
 * Layout and rules: include/gwmem/shm_layout.h ("stripe", "seqlock").  A
 * pointer's stripe comes from a hash of its address.  Inside the stripe
 * the records are a dense array in the segment (what readers copy), and a
 * private index finds them: an open-addressing table of 16-byte entries
 * (the pointer's hash, record number and size), at most half full, with
 * linear probing and backward-shift deletion.  The index lives in this
 * process's memory, not in the segment: readers scan the records, only
 * the writer looks pointers up.  So a remove reads the stripe head and one
 * index line (short runs, no rehash: the entry carries its hash) and only
 * writes its record; an insert takes the record a remove freed last, so
 * the records of a churning program stay in cache.
 *
 * Pooled blocks bypass the hash index: their class and block number follow
 * from the address, and a private block map (blockmap.h) holds, per block,
 * the record number + 1 in the block's stripe.  Its dense u32 entries stay
 * in cache where hash entries would miss, and a remove trusts an entry
 * only when the record it names holds the same pointer.  Forwarded and
 * large blocks (and every block when the map is off) use the hash index.
 *
 * The record arrays of all stripes share the segment's record area: an
 * array holds 8, 16, 32 ... records (up to slots_per_stripe), and doubles
 * when every record in it is in use.  Arrays smaller than a page are cut
 * buddy-fashion from pages kept for them, so a stripe with a few records
 * costs 256 bytes, not a page, and a page whose arrays are all free is
 * given back.  Larger arrays come from the free arrays of their size or
 * from the area's unused end, page-aligned, and their pages are given back
 * (hole punched) when the stripe outgrows them.  shm.c backs every page
 * before it is written.  The index doubles when it is half full.  The
 * cost of an operation depends on the live records of its stripe, never on
 * max_tracked_allocations, which only bounds the area.  Past the stripe's
 * share of max_tracked_allocations (x 5/4 for imbalance), or when the
 * segment or the index cannot grow, inserts are refused and counted.
 */
#ifndef GW_TABLE_H
#define GW_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockmap.h"
#include "gwmem/shm_layout.h"
#include "internal.h"
#include "shm.h"

/*
 * One index entry: the full hash of the pointer (the hash is a bijection,
 * so equal hashes mean equal pointers and a lookup never reads the
 * record), the record's number and its size when that fits 32 bits (a
 * remove then only writes the record).  hash 0 marks an empty entry (the
 * hash of pointer 0, never recorded).
 */
struct gw_table_entry {
	uint64_t hash;
	uint32_t rec;
	uint32_t size;        /* record size, or UINT32_MAX: read the record */
};

/* A stripe's private index. */
struct gw_table_index {
	struct gw_table_entry *ent; /* mask + 1 entries (or NULL) */
	uint32_t mask;        /* entries - 1, a power of two minus one */
	uint32_t used;        /* records handed out: [used, slots) were never used */
	uint32_t free;        /* first free record + 1 (0: none); a free record's
				 size holds the next one + 1 */
	uint32_t hashed;      /* entries in ent (records of pointers the block
				 map does not cover) */
};

/* Entries of a stripe's first index (kept together for all stripes). */
#define GW_TABLE_SMALL 32u
/* Records of a stripe's first array; array sizes are this times 2^k. */
#define GW_TABLE_FIRST 8u
/* Size classes of arrays: GW_TABLE_FIRST << k, k < GW_TABLE_CLASSES. */
#define GW_TABLE_CLASSES 32u

/* A page of the record area cut into arrays smaller than a page. */
struct gw_table_small {
	uint64_t off;                        /* file offset of the page */
	uint64_t used;                       /* units in use, one bit each */
};

struct gw_table {
	struct gwmem_shm_stripe *stripes;
	char *base;                          /* the segment */
	struct gw_shm *shm;                  /* backs the pages of a new array */
	struct gw_table_index *index;        /* nstripes private indexes */
	struct gw_table_entry *small;        /* nstripes first indexes of GW_TABLE_SMALL entries */
	uint64_t records_offset;
	uint64_t area_end;                   /* end of the record area (file offset) */
	uint64_t area_next;                  /* its unused part starts here */
	uint64_t *spare;                     /* free arrays of a page or more:
						GW_TABLE_CLASSES lists of 2 * nstripes */
	uint32_t nspare[GW_TABLE_CLASSES];   /* free arrays per size class */
	struct gw_table_small *small_pages;  /* pages cut into arrays smaller than a page */
	uint32_t nsmall_pages;               /* of at most 2 * nstripes */
	uint32_t small_classes;              /* classes below a page */
	uint32_t unit;                       /* bytes of the smallest array */
	uint32_t area_lock;                  /* area_next, free arrays, small pages */
	uint32_t nstripes;
	uint32_t region_slots;               /* largest array of a stripe */
	uint32_t min_slots;                  /* first array: GW_TABLE_FIRST records */
	uint32_t stripe_limit;               /* records a stripe accepts: its share of
						max_tracked_allocations, with room for imbalance */
	struct gwmem_shm_counters *counters; /* untracked_*_full; may be NULL */
	struct gw_blockmap map;              /* pooled blocks' records (may be off) */
	uint8_t *changed;                    /* the segment's change marks of the record
						area (gw_shm_watch), or NULL */
	unsigned page_shift;
};

/* Hash of an address: stripe (low bits), index home and check (high half). */
static inline uint64_t gw_table_hash(uint64_t p)
{
	/* murmur3 fmix64 */
	p ^= p >> 33;
	p *= UINT64_C(0xff51afd7ed558ccd);
	p ^= p >> 33;
	p *= UINT64_C(0xc4ceb9fe1a85ec53);
	p ^= p >> 33;
	return p;
}

static inline struct gwmem_shm_stripe *gw_table_stripe(const struct gw_table *t, uint64_t h)
{
	return &t->stripes[(uint32_t)h & (t->nstripes - 1)];
}

/*
 * Where ptr's record is looked for: its hash (stripe, index home) and its
 * block map entry (NULL: the hashed index).  Both depend on ptr alone (the
 * map's geometry is fixed at init), so a caller that prefetches and later
 * inserts computes them once.
 */
struct gw_table_key {
	uint64_t h;
	uint32_t *slot;
};

static inline struct gw_table_key gw_table_key(const struct gw_table *t, uint64_t ptr)
{
	struct gw_table_key k = { gw_table_hash(ptr), gw_blockmap_slot(&t->map, ptr) };

	return k;
}

/*
 * Start loading ptr's stripe head and index entry for writing.  A caller
 * with other work to do first (the backtrace) hides most of the miss.
 * Reads the index without the lock: a stale one is only a wasted prefetch.
 * Returns ptr's key, for gw_table_insert_key.
 */
static inline struct gw_table_key gw_table_prefetch(const struct gw_table *t, uint64_t ptr)
{
	const struct gw_table_index *x;
	const struct gw_table_entry *ent;
	struct gw_table_key k = gw_table_key(t, ptr);
	uint32_t si;

	if (gw_unlikely(!t->nstripes))
		return k;
	si = (uint32_t)k.h & (t->nstripes - 1);
	__builtin_prefetch(&t->stripes[si], 1, 3);
	if (k.slot) {
		__builtin_prefetch(k.slot, 1, 3);
		return k;
	}
	x = &t->index[si];
	ent = __atomic_load_n(&x->ent, __ATOMIC_RELAXED);
	if (ent)
		__builtin_prefetch(ent + ((uint32_t)(k.h >> 32) & __atomic_load_n(&x->mask, __ATOMIC_RELAXED)),
				   1, 3);
	return k;
}

/*
 * Attach to a new segment's table (its records are zero: the private
 * indexes start empty).  The block map covers the pools as they are now
 * (gw_pool_init comes first), unless gw_blockmap_init_pools leaves it off.
 * Returns false (and t stays unused) when the private indexes cannot be
 * mapped.
 */
bool gw_table_init(struct gw_table *t, struct gw_shm *shm) GW_HIDDEN;

/*
 * Record a live allocation.  An existing record for the same pointer (an
 * untracked free happened in between) is overwritten.  Returns false when
 * the record was refused: stripe full (stripe.full and
 * counters.untracked_table_full incremented) or the segment could not grow
 * (counters.untracked_segment_full).
 */
bool gw_table_insert(struct gw_table *t, uint64_t ptr, uint64_t size, uint32_t stack_id,
		     uint32_t time_ds, uint32_t tid, uint32_t tag) GW_HIDDEN;

/* The same, with ptr's key from gw_table_key or gw_table_prefetch. */
bool gw_table_insert_key(struct gw_table *t, uint64_t ptr, const struct gw_table_key *key, uint64_t size,
			 uint32_t stack_id, uint32_t time_ds, uint32_t tid, uint32_t tag) GW_HIDDEN;

/* Remove the record of ptr; false if there was none.  *size_out gets its size. */
bool gw_table_remove(struct gw_table *t, uint64_t ptr, uint64_t *size_out) GW_HIDDEN;

/*
 * Address space is short: the record area ends where its used part ends
 * (rounded up to a page) from now on; returns that offset, past which
 * the table never backs nor touches a page (0 when the table is unused).
 * Stripes that outgrow their arrays then refuse records as with a full
 * segment.
 */
uint64_t gw_table_trim(struct gw_table *t) GW_HIDDEN;

/* Take / release every stripe lock (fork: nothing is half-written in the copy). */
void gw_table_lock_all(struct gw_table *t) GW_HIDDEN;
void gw_table_unlock_all(struct gw_table *t) GW_HIDDEN;
/* In a forked child: clear every lock without waiting (only this thread exists). */
void gw_table_reset_locks(struct gw_table *t) GW_HIDDEN;

/*
 * Reader side, for the tests: copy stripe 'idx' (head and its current
 * array, at most cap records) consistently, retrying while a writer is
 * inside, at most max_retries times.  Only reads the segment.  Returns 0
 * (head_out->slots records in out), -EAGAIN when no consistent copy was
 * obtained, -ENOSPC when the array is larger than cap.
 */
int gw_table_snapshot_stripe(const struct gw_table *t, uint32_t idx, struct gwmem_shm_stripe *head_out,
			     struct gwmem_shm_record *out, uint32_t cap, unsigned max_retries) GW_HIDDEN;

/* Sum of count over all stripes (relaxed: a moving estimate). */
uint64_t gw_table_count(const struct gw_table *t) GW_HIDDEN;

#endif /* GW_TABLE_H */
