/*
 * table.h - the lock-striped allocation hash table in the segment.
 *
 * Layout and rules: include/gwmem/shm_layout.h ("stripe", "seqlock").  A
 * pointer's stripe is hash(ptr) & (nstripes - 1); inside the stripe records
 * live in an open-addressing table with linear probing from
 * (hash(ptr) >> 32) & (slots - 1) and backward-shift deletion, so a probe
 * always ends at an empty slot.  A stripe accepts at most GW_TABLE_LIMIT(slots)
 * records, which bounds probe lengths; past it inserts are refused and counted.
 */
#ifndef GW_TABLE_H
#define GW_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gwmem/shm_layout.h"
#include "internal.h"

/* Records a stripe of 'slots' slots accepts: 15/16 of them, leaving one empty at least. */
#define GW_TABLE_LIMIT(slots) ((slots) - ((slots) / 16 > 1 ? (slots) / 16 : 1))

struct gw_table {
	struct gwmem_shm_stripe *stripes;
	struct gwmem_shm_record *records;
	uint32_t nstripes;
	uint32_t slots;                     /* per stripe */
	struct gwmem_shm_counters *counters; /* untracked_table_full; may be NULL */
};

/* Hash used for stripe and slot selection (also usable by readers). */
static inline uint64_t gw_table_hash(uint64_t p)
{
	/* murmur3 fmix64: pointers are 16-byte aligned, their low bits say nothing */
	p ^= p >> 33;
	p *= UINT64_C(0xff51afd7ed558ccd);
	p ^= p >> 33;
	p *= UINT64_C(0xc4ceb9fe1a85ec53);
	p ^= p >> 33;
	return p;
}

/* Where ptr's search starts: its stripe head and its home record. */
static inline struct gwmem_shm_stripe *gw_table_home(const struct gw_table *t, uint64_t h,
						     struct gwmem_shm_record **recs, uint32_t *slot)
{
	const uint32_t si = (uint32_t)h & (t->nstripes - 1);

	*recs = &t->records[(uint64_t)si * t->slots];
	*slot = (uint32_t)(h >> 32) & (t->slots - 1);
	return &t->stripes[si];
}

/*
 * Start loading ptr's stripe head and home record for writing.  The table
 * is megabytes of 4 KiB pages hit at random: a caller with other work to do
 * first (the backtrace) hides most of the miss.
 */
static inline void gw_table_prefetch(const struct gw_table *t, uint64_t ptr)
{
	struct gwmem_shm_record *recs;
	struct gwmem_shm_stripe *s;
	uint32_t i;

	if (gw_unlikely(!t->nstripes))
		return;
	s = gw_table_home(t, gw_table_hash(ptr), &recs, &i);
	__builtin_prefetch(&recs[i], 1, 3);
	__builtin_prefetch(s, 1, 3);
}

/* Attach to a segment's table (the memory is zero or a copy from a parent). */
void gw_table_init(struct gw_table *t, struct gwmem_shm_header *hdr) GW_HIDDEN;

/*
 * Record a live allocation.  An existing record for the same pointer (an
 * untracked free happened in between) is overwritten.  Returns false when
 * the stripe is full: the stripe's 'full' and counters.untracked_table_full
 * are incremented.
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
 * Reader side: copy stripe 'idx' (head and 'slots' records) consistently,
 * retrying while a writer is inside, at most max_retries times.  Only reads
 * the segment.  Returns 0, or -EAGAIN when no consistent copy was obtained.
 */
int gw_table_snapshot_stripe(const struct gwmem_shm_stripe *stripe,
			     const struct gwmem_shm_record *records, uint32_t slots,
			     struct gwmem_shm_stripe *head_out, struct gwmem_shm_record *out,
			     unsigned max_retries) GW_HIDDEN;

/* Sum of count over all stripes (relaxed: a moving estimate). */
uint64_t gw_table_count(const struct gw_table *t) GW_HIDDEN;

#endif /* GW_TABLE_H */
