/*
 * stacks.h - the deduplicated stack table in the segment.
 *
 * A stack id is 1 + the index of the entry (0 = no stack: table full or no
 * backtrace).  Lookups are lock-free: an entry is valid once its hash is
 * non-zero, and the hash is published with a release store after the
 * frames, so a reader that sees the hash (acquire) sees the frames.
 * Inserts, rare once a program has warmed up, take one spinlock.
 */
#ifndef GW_STACKS_H
#define GW_STACKS_H

#include <stdbool.h>
#include <stdint.h>

#include "gwmem/shm_layout.h"
#include "internal.h"
#include "spin.h"

struct gw_stacks {
	char *base;                 /* first entry */
	uint32_t capacity;          /* entries, a power of two */
	uint32_t stride;            /* bytes per entry */
	uint32_t max_frames;
	uint32_t limit;             /* entries accepted: max_stacks */
	struct gw_spin lock;        /* insert lock (process-local) */
	struct gwmem_shm_counters *counters; /* stacks_used, dropped_stacks */
};

/* Attach to a segment's stack table; limit is leak_detection.max_stacks. */
void gw_stacks_init(struct gw_stacks *st, struct gwmem_shm_header *hdr, uint32_t limit) GW_HIDDEN;

/* Hash of a frame list; never 0. */
uint64_t gw_stacks_hash(const uint64_t *frames, uint32_t depth) GW_HIDDEN;

/*
 * The id of the stack frames[0..depth) (depth is cut to max_frames),
 * inserting it when new.  Returns 0 when depth is 0 or the table is full
 * (counters.dropped_stacks is then incremented).
 */
uint32_t gw_stacks_intern(struct gw_stacks *st, const uint64_t *frames, uint32_t depth) GW_HIDDEN;

/* The entry for id, or NULL for 0, out-of-range or not yet published ids. */
const struct gwmem_shm_stack *gw_stacks_get(const struct gw_stacks *st, uint32_t id) GW_HIDDEN;

/* fork: hold the insert lock across fork; the child clears it. */
void gw_stacks_lock(struct gw_stacks *st) GW_HIDDEN;
void gw_stacks_unlock(struct gw_stacks *st) GW_HIDDEN;

#endif /* GW_STACKS_H */
