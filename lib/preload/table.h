/*
 * table.h - the lock-striped allocation hash table in the segment.
 *
 * Layout and rules: include/gwmem/shm_layout.h ("stripe", "seqlock").  A
 * pointer's stripe and home slot come from a hash of its address without
 * the low 8 bits, plus bits 4..7 of the address: the blocks of one 256-byte
 * span (pool blocks are dense in their class regions) share a stripe and
 * neighbouring slots, so their records share cache lines and pages, while
 * spans spread evenly over the stripes.  Inside the stripe records live in
 * an open-addressing array with linear probing and backward-shift
 * deletion, so a probe always ends at an empty slot.
 *
 * The array grows with the live records: from one page, by half again each
 * time it is 3/4 full, into the stripe's other region (shm.c backs its
 * pages first), after which the old array's pages are given back.  The cost
 * of an operation depends on the live records of its stripe, never on
 * max_tracked_allocations, which only bounds the regions.  A stripe whose
 * array has reached its region accepts records up to 7/8 of it; past that,
 * or when the segment cannot grow, or past its share of
 * max_tracked_allocations (x 5/4 for imbalance), inserts are refused and
 * counted.
 */
#ifndef GW_TABLE_H
#define GW_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gwmem/shm_layout.h"
#include "internal.h"
#include "shm.h"

/* Records an array of 'slots' slots accepts when it cannot grow: 7/8 of them. */
#define GW_TABLE_LIMIT(slots) ((slots) - (slots) / 8)
/* An array that can grow does so before it is more than 3/4 full. */
#define GW_TABLE_GROW_AT(slots) ((slots) / 4 * 3)

struct gw_table {
	struct gwmem_shm_stripe *stripes;
	char *base;                          /* the segment */
	struct gw_shm *shm;                  /* backs the pages of a new array */
	uint64_t records_offset;
	uint32_t nstripes;
	uint32_t region_slots;               /* largest array of a stripe */
	uint32_t min_slots;                  /* first array: one page */
	uint32_t stripe_limit;               /* records a stripe accepts: its share of
						max_tracked_allocations, with room for imbalance */
	struct gwmem_shm_counters *counters; /* untracked_*_full; may be NULL */
};

/* Hash of the address's 256-byte span: stripe (low bits) and home (high bits). */
static inline uint64_t gw_table_hash(uint64_t p)
{
	/* murmur3 fmix64 */
	p >>= 8;
	p ^= p >> 33;
	p *= UINT64_C(0xff51afd7ed558ccd);
	p ^= p >> 33;
	p *= UINT64_C(0xc4ceb9fe1a85ec53);
	p ^= p >> 33;
	return p;
}

/* Home slot of ptr (hash h) in an array of 'slots' slots (slots >= 16). */
static inline uint32_t gw_table_home_slot(uint64_t h, uint64_t ptr, uint32_t slots)
{
	uint32_t i = (uint32_t)(((h >> 32) * slots) >> 32) + (uint32_t)((ptr >> 4) & 15);

	return i >= slots ? i - slots : i;
}

static inline struct gwmem_shm_stripe *gw_table_stripe(const struct gw_table *t, uint64_t h)
{
	return &t->stripes[(uint32_t)h & (t->nstripes - 1)];
}

/*
 * Start loading ptr's stripe head and home record for writing.  A caller
 * with other work to do first (the backtrace) hides most of the miss.
 * Reads the head without its lock: a stale array is only a wasted prefetch.
 */
static inline void gw_table_prefetch(const struct gw_table *t, uint64_t ptr)
{
	struct gwmem_shm_stripe *s;
	uint64_t h;
	uint32_t slots;

	if (gw_unlikely(!t->nstripes))
		return;
	h = gw_table_hash(ptr);
	s = gw_table_stripe(t, h);
	__builtin_prefetch(s, 1, 3);
	slots = __atomic_load_n(&s->slots, __ATOMIC_RELAXED);
	if (slots) {
		uint64_t off = __atomic_load_n(&s->offset, __ATOMIC_RELAXED);
		__builtin_prefetch(t->base + off + (uint64_t)gw_table_home_slot(h, ptr, slots) *
				   sizeof(struct gwmem_shm_record), 1, 3);
	}
}

/* Attach to a segment's table (the memory is zero or a copy from a parent). */
void gw_table_init(struct gw_table *t, struct gw_shm *shm) GW_HIDDEN;

/*
 * Record a live allocation.  An existing record for the same pointer (an
 * untracked free happened in between) is overwritten.  Returns false when
 * the record was refused: stripe full (stripe.full and
 * counters.untracked_table_full incremented) or the segment could not grow
 * (counters.untracked_segment_full).
 */
bool gw_table_insert(struct gw_table *t, uint64_t ptr, uint64_t size, uint32_t stack_id,
		     uint32_t time_ds, uint32_t tid, uint32_t tag) GW_HIDDEN;

/* Remove the record of ptr; false if there was none.  *size_out gets its size. */
bool gw_table_remove(struct gw_table *t, uint64_t ptr, uint64_t *size_out) GW_HIDDEN;

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
