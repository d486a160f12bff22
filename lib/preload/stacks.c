/*
 * stacks.c - deduplicated backtraces in the segment: hash of the frames ->
 * open-addressing table with linear probing, never deleted from.
 *
 * The table holds at most 'limit' (max_stacks) entries in a power-of-two
 * array sized so that it is never more than 8/9 full (shm.c): a probe for
 * a new stack always ends at an empty slot.  When the limit is reached,
 * allocations are still recorded, with stack id 0, and counted as
 * dropped_stacks.
 */
#include "config.h"

#include <string.h>

#include "counters.h"
#include "stacks.h"

static inline struct gwmem_shm_stack *entry(const struct gw_stacks *st, uint32_t i)
{
	return (struct gwmem_shm_stack *)(st->base + (size_t)i * st->stride);
}

void gw_stacks_init(struct gw_stacks *st, struct gwmem_shm_header *hdr, uint32_t limit)
{
	memset(st, 0, sizeof(*st));
	if (!hdr || !hdr->stack_capacity)
		return;
	st->base = (char *)hdr + hdr->stacks_offset;
	st->capacity = hdr->stack_capacity;
	st->stride = hdr->stack_stride;
	st->max_frames = hdr->max_frames;
	/* keep one slot empty at least, whatever the caller asks */
	st->limit = limit && limit < st->capacity ? limit : st->capacity - st->capacity / 8;
	st->counters = &hdr->counters;
}

uint64_t gw_stacks_hash(const uint64_t *frames, uint32_t depth)
{
	uint64_t h = UINT64_C(0x9e3779b97f4a7c15) ^ depth;

	/*
	 * Runs on every recorded allocation: the multiplies do not depend on
	 * h, so the chain through the loop is one rotate and one xor per
	 * frame; the rotate keeps the order of the frames in the hash.  The
	 * finalizer spreads it over all the bits the table index takes.
	 */
	for (uint32_t i = 0; i < depth; i++)
		h = ((h << 23) | (h >> 41)) ^ (frames[i] * UINT64_C(0xff51afd7ed558ccd));
	h ^= h >> 33;
	h *= UINT64_C(0xc4ceb9fe1a85ec53);
	h ^= h >> 29;
	return h ? h : 1;
}

/* Word compare inlined: depths are a handful of frames, a libc memcmp call
 * costs more than the compare. */
static inline bool same(const struct gwmem_shm_stack *e, const uint64_t *frames, uint32_t depth)
{
	if (e->depth != depth)
		return false;
	for (uint32_t i = 0; i < depth; i++)
		if (e->frames[i] != frames[i])
			return false;
	return true;
}

void gw_stacks_lock(struct gw_stacks *st)
{
	gw_spin_lock(&st->lock);
}

void gw_stacks_unlock(struct gw_stacks *st)
{
	gw_spin_unlock(&st->lock);
}

uint32_t gw_stacks_intern(struct gw_stacks *st, const uint64_t *frames, uint32_t depth)
{
	const uint32_t mask = st->capacity - 1;
	uint64_t hash;
	uint32_t i, n;

	if (!st->capacity || depth == 0)
		return 0;
	if (depth > st->max_frames)
		depth = st->max_frames;
	hash = gw_stacks_hash(frames, depth);
	i = (uint32_t)hash & mask;

	/* lock-free lookup: the common case once a program is warm */
	for (n = 0; n < st->capacity; n++, i = (i + 1) & mask) {
		struct gwmem_shm_stack *e = entry(st, i);
		uint64_t h = __atomic_load_n(&e->hash, __ATOMIC_ACQUIRE);

		if (h == 0)
			break;
		if (h == hash && same(e, frames, depth))
			return i + 1;
	}

	gw_stacks_lock(st);
	/* entries only appear, never move: continue from the empty slot found */
	for (; n < st->capacity; n++, i = (i + 1) & mask) {
		struct gwmem_shm_stack *e = entry(st, i);
		uint64_t h = __atomic_load_n(&e->hash, __ATOMIC_RELAXED);

		if (h == hash && same(e, frames, depth)) {
			gw_stacks_unlock(st);
			return i + 1;
		}
		if (h != 0)
			continue;
		if (__atomic_load_n(&st->counters->stacks_used, __ATOMIC_RELAXED) >= st->limit)
			break;
		e->depth = depth;
		memcpy(e->frames, frames, depth * sizeof(uint64_t));
		__atomic_store_n(&e->hash, hash, __ATOMIC_RELEASE);
		__atomic_fetch_add(&st->counters->stacks_used, 1, __ATOMIC_RELAXED);
		gw_stacks_unlock(st);
		return i + 1;
	}
	gw_stacks_unlock(st);
	__atomic_fetch_add(&st->counters->dropped_stacks, 1, __ATOMIC_RELAXED);
	gw_counters_event(GW_EVENT_STACKS_FULL, false,
			  "stack table full (%u stacks): new allocation sites are recorded without a backtrace; "
			  "raise leak_detection.max_stacks", st->limit);
	return 0;
}

const struct gwmem_shm_stack *gw_stacks_get(const struct gw_stacks *st, uint32_t id)
{
	const struct gwmem_shm_stack *e;

	if (id == 0 || id > st->capacity)
		return NULL;
	e = entry(st, id - 1);
	return __atomic_load_n(&e->hash, __ATOMIC_ACQUIRE) ? e : NULL;
}
