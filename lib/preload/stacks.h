/*
 * stacks.h - the deduplicated stack table in the segment.
 *
 * Entries are appended: a stack id is 1 + the index of the entry (0 = no
 * stack: table full or no backtrace), ids 1..counters.stacks_used are in
 * use, and an entry's pages are backed only when it is about to be written
 * (in extents of a few pages), so the table's memory follows the distinct
 * stacks seen, not max_stacks.
 *
 * Finding the id of a frame list goes through a hash index in private
 * memory (readers of the segment only ever look ids up).  Lookups are
 * lock-free: the index is published with a release store and never freed
 * (an index that was outgrown stays valid for what it holds, its
 * successors are at least as large, so all of them together cost less than
 * twice the current one); an entry is valid once its hash is non-zero,
 * published with a release store after its frames.  Inserts, rare once a
 * program has warmed up, take one spinlock.
 */
#ifndef GW_STACKS_H
#define GW_STACKS_H

#include <stdbool.h>
#include <stdint.h>

#include "gwmem/shm_layout.h"
#include "internal.h"
#include "shm.h"
#include "spin.h"

struct gw_stack_index {
	uint32_t mask;              /* slots - 1 */
	uint32_t ids[];             /* 0 = empty, else a stack id */
};

struct gw_stacks {
	char *base;                 /* first entry */
	struct gw_shm *shm;
	uint64_t offset;            /* of the first entry in the segment */
	uint32_t capacity;          /* entries the segment has room for */
	uint32_t stride;            /* bytes per entry */
	uint32_t max_frames;
	uint32_t limit;             /* entries accepted: max_stacks */
	struct gw_spin lock;        /* insert lock (process-local) */
	uint32_t backed;            /* entries whose pages are backed */
	struct gw_stack_index *index;
	struct gwmem_shm_counters *counters; /* stacks_used, dropped_stacks */
};

/* Attach to a segment's stack table; limit is leak_detection.max_stacks. */
void gw_stacks_init(struct gw_stacks *st, struct gw_shm *shm, uint32_t limit) GW_HIDDEN;

/* Hash of a frame list; never 0. */
uint64_t gw_stacks_hash(const uint64_t *frames, uint32_t depth) GW_HIDDEN;

/*
 * The id of the stack frames[0..depth) (depth is cut to max_frames),
 * inserting it when new.  Returns 0 when depth is 0, the table is full or
 * the segment cannot grow (counters.dropped_stacks is then incremented).
 */
uint32_t gw_stacks_intern(struct gw_stacks *st, const uint64_t *frames, uint32_t depth) GW_HIDDEN;

/* The entry for id, or NULL for 0, out-of-range or not yet published ids. */
const struct gwmem_shm_stack *gw_stacks_get(const struct gw_stacks *st, uint32_t id) GW_HIDDEN;

/* fork: hold the insert lock across fork; the child clears it. */
/*
 * Address space is short: returns the segment offset where the backed
 * entries end (0 when unused).  The segment gives the pages past them
 * back; an entry that would need them is refused by gw_shm_back, and its
 * site is recorded without a stack (dropped_stacks).
 */
uint64_t gw_stacks_trim(struct gw_stacks *st) GW_HIDDEN;
void gw_stacks_lock(struct gw_stacks *st) GW_HIDDEN;
void gw_stacks_unlock(struct gw_stacks *st) GW_HIDDEN;

#endif /* GW_STACKS_H */
