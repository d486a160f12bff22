/*
 * stacks.c - deduplicated backtraces in the segment: entries appended in
 * the order they are first seen, found again through a private hash index
 * (open addressing, linear probing, never deleted from).
 *
 * The table holds at most 'limit' (max_stacks) entries.  When the limit is
 * reached, or the segment cannot grow, allocations are still recorded,
 * with stack id 0, and counted as dropped_stacks.
 */
#include "config.h"

#include <string.h>

#include "counters.h"
#include "os.h"
#include "stacks.h"

/* Entries backed per step: a few pages' worth. */
#define BACK_STEP_BYTES (16u * 1024u)
#define INDEX_MIN 1024u

static inline struct gwmem_shm_stack *entry(const struct gw_stacks *st, uint32_t i)
{
	return (struct gwmem_shm_stack *)(st->base + (size_t)i * st->stride);
}

void gw_stacks_init(struct gw_stacks *st, struct gw_shm *shm, uint32_t limit)
{
	struct gwmem_shm_header *hdr = shm ? shm->hdr : NULL;

	memset(st, 0, sizeof(*st));
	if (!hdr || !hdr->stack_capacity)
		return;
	st->shm = shm;
	st->offset = hdr->stacks_offset;
	st->base = (char *)hdr + hdr->stacks_offset;
	st->capacity = hdr->stack_capacity;
	st->stride = hdr->stack_stride;
	st->max_frames = hdr->max_frames;
	st->limit = limit && limit < st->capacity ? limit : st->capacity;
	st->counters = &hdr->counters;
}

uint64_t gw_stacks_hash(const uint64_t *frames, uint32_t depth)
{
	uint64_t h = UINT64_C(0x9e3779b97f4a7c15) ^ depth;

	/*
	 * Runs on every recorded allocation: the multiplies do not depend on
	 * h, so the chain through the loop is one rotate and one xor per
	 * frame; the rotate keeps the order of the frames in the hash.  The
	 * finalizer spreads it over all the bits the index takes.
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

/* The id of (hash, frames) in idx, or 0; *slot gets the empty slot that ends the probe. */
static uint32_t index_find(const struct gw_stacks *st, const struct gw_stack_index *idx, uint64_t hash,
			   const uint64_t *frames, uint32_t depth, uint32_t *slot)
{
	uint32_t i = (uint32_t)hash & idx->mask;

	for (;; i = (i + 1) & idx->mask) {
		uint32_t id = __atomic_load_n(&idx->ids[i], __ATOMIC_ACQUIRE);
		const struct gwmem_shm_stack *e;

		if (id == 0)
			break;
		e = entry(st, id - 1);
		if (__atomic_load_n(&e->hash, __ATOMIC_ACQUIRE) == hash && same(e, frames, depth))
			return id;
	}
	if (slot)
		*slot = i;
	return 0;
}

/* A new index twice as large holding every entry; the old one is kept (lock-free readers). */
static struct gw_stack_index *index_grow(struct gw_stacks *st, uint32_t used)
{
	const struct gw_stack_index *old = st->index;
	uint32_t slots = old ? (old->mask + 1) * 2 : INDEX_MIN;
	struct gw_stack_index *idx;

	while (slots < 2 * (used + 1))
		slots *= 2;
	idx = gw_os_map(sizeof(*idx) + (size_t)slots * sizeof(uint32_t));
	if (!idx)
		return NULL;
	idx->mask = slots - 1;
	for (uint32_t n = 0; n < used; n++) {
		uint32_t i = (uint32_t)entry(st, n)->hash & idx->mask;

		while (idx->ids[i])
			i = (i + 1) & idx->mask;
		idx->ids[i] = n + 1;
	}
	__atomic_store_n(&st->index, idx, __ATOMIC_RELEASE);
	return idx;
}

/* Back the pages of entry n (and a few after it). */
static bool back_entry(struct gw_stacks *st, uint32_t n)
{
	uint32_t want;

	if (n < st->backed)
		return true;
	want = n + 1 + BACK_STEP_BYTES / st->stride;
	if (want > st->capacity)
		want = st->capacity;
	if (gw_shm_back(st->shm, st->offset + (uint64_t)st->backed * st->stride,
			(uint64_t)(want - st->backed) * st->stride) < 0)
		return false;
	st->backed = want;
	return true;
}

uint32_t gw_stacks_intern(struct gw_stacks *st, const uint64_t *frames, uint32_t depth)
{
	struct gw_stack_index *idx;
	struct gwmem_shm_stack *e;
	uint64_t hash;
	uint32_t id, slot, n;
	bool full = false;

	if (!st->capacity || depth == 0)
		return 0;
	if (depth > st->max_frames)
		depth = st->max_frames;
	hash = gw_stacks_hash(frames, depth);

	/* lock-free lookup: the common case once a program is warm */
	idx = __atomic_load_n(&st->index, __ATOMIC_ACQUIRE);
	if (idx && (id = index_find(st, idx, hash, frames, depth, NULL)) != 0)
		return id;

	gw_stacks_lock(st);
	idx = st->index;
	if (idx && (id = index_find(st, idx, hash, frames, depth, &slot)) != 0) {
		gw_stacks_unlock(st);
		return id;
	}
	n = (uint32_t)__atomic_load_n(&st->counters->stacks_used, __ATOMIC_RELAXED);
	full = n >= st->limit;
	if (full)
		goto drop;
	if (!back_entry(st, n))
		goto drop;
	if (!idx || 2 * (n + 1) > idx->mask + 1) {
		idx = index_grow(st, n);
		if (!idx)
			goto drop;
		index_find(st, idx, hash, frames, depth, &slot);
	}
	e = entry(st, n);
	e->depth = depth;
	memcpy(e->frames, frames, depth * sizeof(uint64_t));
	__atomic_store_n(&e->hash, hash, __ATOMIC_RELEASE);
	__atomic_store_n(&st->counters->stacks_used, (uint64_t)n + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&idx->ids[slot], n + 1, __ATOMIC_RELEASE);
	gw_stacks_unlock(st);
	return n + 1;

drop:
	gw_stacks_unlock(st);
	__atomic_fetch_add(&st->counters->dropped_stacks, 1, __ATOMIC_RELAXED);
	if (full)
		gw_counters_event(GW_EVENT_STACKS_FULL, false,
				"stack table full (%u stacks): new allocation sites are recorded without a "
				"backtrace; raise leak_detection.max_stacks", st->limit);
	else
		gw_counters_event(GW_EVENT_STACKS_FULL, false,
				"the stack table cannot grow (%u stacks): new allocation sites are recorded "
				"without a backtrace; raise leak_detection.max_segment_bytes or free space "
				"in shm_dir (or the pages were given back under an address-space limit)", n);
	return 0;
}

uint64_t gw_stacks_trim(struct gw_stacks *st)
{
	uint64_t end;

	if (!st->capacity)
		return 0;
	/* the next entry past them asks gw_shm_back for the pages given back,
	 * which refuses: the site is recorded without a stack */
	gw_stacks_lock(st);
	end = st->offset + (uint64_t)st->backed * st->stride;
	gw_stacks_unlock(st);
	return end;
}

const struct gwmem_shm_stack *gw_stacks_get(const struct gw_stacks *st, uint32_t id)
{
	const struct gwmem_shm_stack *e;

	if (id == 0 || id > st->capacity ||
	    id > __atomic_load_n(&st->counters->stacks_used, __ATOMIC_ACQUIRE))
		return NULL;
	e = entry(st, id - 1);
	return __atomic_load_n(&e->hash, __ATOMIC_ACQUIRE) ? e : NULL;
}
