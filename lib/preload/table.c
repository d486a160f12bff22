/*
 * table.c - the lock-striped allocation hash table (writer and reader).
 *
 * Writers: take the stripe's spinlock, make seq odd, change records and the
 * stripe totals, make seq even, unlock.  No syscall and no allocation on
 * that path, except when the stripe's array grows (a fallocate, rare:
 * each growth adds half of the array).  A contended lock spins, then yields.
 * Readers never write: they copy a stripe's head and array between two
 * equal even reads of seq.  The CLI and the report read through
 * gw_view_snapshot (view.c); gw_table_snapshot_stripe here is the same
 * protocol for the unit tests.
 *
 * Record fields are written with relaxed atomic stores, so a reader racing
 * a writer sees torn *sets* of fields (caught by the seqlock) but never a
 * torn word.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "counters.h"
#include "os.h"
#include "spin.h"
#include "table.h"

#define ST(p, v)  __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define LD(p)     __atomic_load_n((p), __ATOMIC_RELAXED)

void gw_table_init(struct gw_table *t, struct gw_shm *shm)
{
	struct gwmem_shm_header *hdr = shm ? shm->hdr : NULL;

	memset(t, 0, sizeof(*t));
	if (!hdr || !hdr->nstripes || !hdr->slots_per_stripe)
		return;
	t->base = (char *)hdr;
	t->shm = shm;
	t->stripes = (struct gwmem_shm_stripe *)(t->base + hdr->stripes_offset);
	t->records_offset = hdr->records_offset;
	t->nstripes = hdr->nstripes;
	t->region_slots = hdr->slots_per_stripe;
	t->min_slots = (uint32_t)(gw_os_page_size() / sizeof(struct gwmem_shm_record));
	if (t->min_slots < 16)
		t->min_slots = 16;
	if (t->min_slots > t->region_slots)
		t->min_slots = t->region_slots;
	t->counters = &hdr->counters;
	uint64_t share = ((uint64_t)hdr->config.max_tracked_allocations * 5 / 4 + t->nstripes - 1) / t->nstripes;
	t->stripe_limit = share < UINT32_MAX ? (uint32_t)share : UINT32_MAX;
	if (t->stripe_limit < 1)
		t->stripe_limit = 1;
}

/* the lock word sits in the segment's stripe head: gw_spin's word form */
static inline void stripe_lock(struct gwmem_shm_stripe *s)
{
	gw_spin_lock_word(&s->lock);
}

static inline void stripe_unlock(struct gwmem_shm_stripe *s)
{
	gw_spin_unlock_word(&s->lock);
}

/* seqlock writer side: odd while the records are being changed */
static inline void write_begin(struct gwmem_shm_stripe *s)
{
	ST(&s->seq, s->seq + 1);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static inline void write_end(struct gwmem_shm_stripe *s)
{
	__atomic_store_n(&s->seq, s->seq + 1, __ATOMIC_RELEASE);
}

static inline void rec_store(struct gwmem_shm_record *r, const struct gwmem_shm_record *v)
{
	ST(&r->size, v->size);
	ST(&r->stack_id, v->stack_id);
	ST(&r->time_ds, v->time_ds);
	ST(&r->tid, v->tid);
	ST(&r->tag, v->tag);
	ST(&r->ptr, v->ptr);
}

static inline struct gwmem_shm_record *stripe_records(const struct gw_table *t,
						      const struct gwmem_shm_stripe *s)
{
	return (struct gwmem_shm_record *)(t->base + s->offset);
}

static inline uint32_t next_slot(uint32_t i, uint32_t slots)
{
	return ++i == slots ? 0 : i;
}

/* First empty slot on ptr's probe path (the array has one). */
static uint32_t empty_slot(const struct gwmem_shm_record *recs, uint32_t slots, uint64_t h, uint64_t ptr)
{
	uint32_t i = gw_table_home_slot(h, ptr, slots);

	while (recs[i].ptr != 0)
		i = next_slot(i, slots);
	return i;
}

/*
 * Move the stripe's records into a larger array in its other region.
 * Called with the stripe lock held.  The new pages are backed (and zeroed)
 * before readers can see them; the old ones are given back after the head
 * points at the new array, so a reader still copying the old one sees seq
 * move and retries.
 */
static GW_NOINLINE bool grow(struct gw_table *t, struct gwmem_shm_stripe *s, uint32_t si)
{
	const uint64_t rsize = sizeof(struct gwmem_shm_record);
	const uint32_t old_slots = s->slots;
	const uint64_t old_off = s->offset;
	const uint64_t region_a = t->records_offset + (uint64_t)si * 2 * t->region_slots * rsize;
	const uint64_t region_b = region_a + (uint64_t)t->region_slots * rsize;
	struct gwmem_shm_record *old = old_slots ? stripe_records(t, s) : NULL, *nw;
	uint64_t new_slots, new_off;

	if (old_slots >= t->region_slots)
		return false;
	new_slots = old_slots ? (uint64_t)old_slots + old_slots / 2 : t->min_slots;
	new_slots = (new_slots + t->min_slots - 1) / t->min_slots * t->min_slots;
	if (new_slots > t->region_slots)
		new_slots = t->region_slots;
	new_off = old_slots && old_off == region_a ? region_b : region_a;
	if (gw_shm_back(t->shm, new_off, new_slots * rsize) < 0) {
		/* the insert that needed it may still fit (up to 7/8); the one
		 * that does not is counted as untracked_table_full too */
		if (t->counters)
			__atomic_fetch_add(&t->counters->untracked_segment_full, 1, __ATOMIC_RELAXED);
		gw_counters_event(GW_EVENT_TABLE_FULL, false,
				"the segment cannot grow (max_segment_bytes %llu, or %s is full): "
				"new allocations are served but not tracked",
				(unsigned long long)t->shm->max_bytes, t->shm->dir);
		return false;
	}
	nw = (struct gwmem_shm_record *)(t->base + new_off);
	/* a region whose pages could not be punched earlier still holds old
	 * records: only ptr says whether a slot is used */
	for (uint64_t i = 0; i < new_slots; i++)
		ST(&nw[i].ptr, 0);

	write_begin(s);
	for (uint32_t i = 0; i < old_slots; i++) {
		uint64_t p = old[i].ptr;

		if (p)
			rec_store(&nw[empty_slot(nw, (uint32_t)new_slots, gw_table_hash(p), p)], &old[i]);
	}
	ST(&s->offset, new_off);
	ST(&s->slots, (uint32_t)new_slots);
	write_end(s);
	if (old_slots)
		gw_shm_release(t->shm, old_off, (uint64_t)old_slots * rsize);
	return true;
}

bool gw_table_insert(struct gw_table *t, uint64_t ptr, uint64_t size, uint32_t stack_id,
		     uint32_t time_ds, uint32_t tid, uint32_t tag)
{
	const uint64_t h = gw_table_hash(ptr);
	struct gwmem_shm_stripe *s;
	struct gwmem_shm_record *recs, *r;
	struct gwmem_shm_record v = { ptr, size, stack_id, time_ds, tid, tag };
	uint32_t i, slots;

	if (gw_unlikely(!t->nstripes || !ptr))
		return false;
	s = gw_table_stripe(t, h);

	stripe_lock(s);
	slots = s->slots;
	if (gw_likely(slots)) {
		recs = stripe_records(t, s);
		for (i = gw_table_home_slot(h, ptr, slots); recs[i].ptr; i = next_slot(i, slots)) {
			r = &recs[i];
			if (r->ptr == ptr) {
				write_begin(s);
				ST(&s->bytes, s->bytes - r->size + size);
				rec_store(r, &v);
				ST(&s->inserted, s->inserted + 1);
				ST(&s->removed, s->removed + 1);
				write_end(s);
				stripe_unlock(s);
				return true;
			}
		}
	}
	if (gw_unlikely(s->count >= GW_TABLE_GROW_AT(slots)) && s->count < t->stripe_limit)
		grow(t, s, (uint32_t)(s - t->stripes));
	slots = s->slots;
	if (gw_unlikely(s->count >= GW_TABLE_LIMIT(slots) || s->count >= t->stripe_limit)) {
		ST(&s->full, s->full + 1);
		stripe_unlock(s);
		if (t->counters)
			__atomic_fetch_add(&t->counters->untracked_table_full, 1, __ATOMIC_RELAXED);
		return false;
	}
	recs = stripe_records(t, s);
	i = empty_slot(recs, slots, h, ptr);
	write_begin(s);
	rec_store(&recs[i], &v);
	ST(&s->count, s->count + 1);
	ST(&s->bytes, s->bytes + size);
	ST(&s->inserted, s->inserted + 1);
	write_end(s);
	stripe_unlock(s);
	return true;
}

bool gw_table_remove(struct gw_table *t, uint64_t ptr, uint64_t *size_out)
{
	const uint64_t h = gw_table_hash(ptr);
	struct gwmem_shm_stripe *s;
	struct gwmem_shm_record *recs;
	uint32_t i, j, slots;

	if (gw_unlikely(!t->nstripes || !ptr))
		return false;
	s = gw_table_stripe(t, h);
	/* an empty stripe cannot hold it: skip the lock (sampling, untracked frees) */
	if (LD(&s->count) == 0)
		return false;

	stripe_lock(s);
	slots = s->slots;
	if (!slots) {
		stripe_unlock(s);
		return false;
	}
	recs = stripe_records(t, s);
	for (i = gw_table_home_slot(h, ptr, slots);; i = next_slot(i, slots)) {
		if (recs[i].ptr == ptr)
			break;
		if (recs[i].ptr == 0) {
			stripe_unlock(s);
			return false;
		}
	}
	if (size_out)
		*size_out = recs[i].size;

	write_begin(s);
	ST(&s->bytes, s->bytes - recs[i].size);
	ST(&s->count, s->count - 1);
	ST(&s->removed, s->removed + 1);
	/*
	 * Backward-shift deletion: move later records of the probe run into
	 * the hole when their home slot does not lie cyclically in (hole, j].
	 */
	j = i;
	for (;;) {
		uint64_t p;
		uint32_t home, dj, di;

		j = next_slot(j, slots);
		p = recs[j].ptr;
		if (p == 0)
			break;
		home = gw_table_home_slot(gw_table_hash(p), p, slots);
		dj = j >= home ? j - home : j + slots - home;
		di = j >= i ? j - i : j + slots - i;
		if (dj >= di) {
			rec_store(&recs[i], &recs[j]);
			i = j;
		}
	}
	ST(&recs[i].ptr, 0);
	write_end(s);
	stripe_unlock(s);
	return true;
}

void gw_table_lock_all(struct gw_table *t)
{
	for (uint32_t i = 0; i < t->nstripes; i++)
		stripe_lock(&t->stripes[i]);
}

void gw_table_unlock_all(struct gw_table *t)
{
	for (uint32_t i = 0; i < t->nstripes; i++)
		stripe_unlock(&t->stripes[i]);
}

void gw_table_reset_locks(struct gw_table *t)
{
	for (uint32_t i = 0; i < t->nstripes; i++) {
		struct gwmem_shm_stripe *s = &t->stripes[i];

		/* a writer interrupted by fork cannot exist (prepare held every
		 * lock), but keep seq even whatever happened */
		if (s->seq & 1)
			s->seq++;
		stripe_unlock(s);
	}
}

int gw_table_snapshot_stripe(const struct gw_table *t, uint32_t idx, struct gwmem_shm_stripe *head_out,
			     struct gwmem_shm_record *out, uint32_t cap, unsigned max_retries)
{
	const struct gwmem_shm_stripe *stripe = &t->stripes[idx];
	struct gw_backoff b = GW_BACKOFF_INIT;

	for (unsigned attempt = 0; attempt <= max_retries; attempt++) {
		uint32_t s1, s2, slots;
		const struct gwmem_shm_record *records;

		if (attempt)
			gw_backoff_wait(&b);
		s1 = __atomic_load_n(&stripe->seq, __ATOMIC_ACQUIRE);
		if (s1 & 1)
			continue;
		memset(head_out, 0, sizeof(*head_out));
		head_out->seq = s1;
		head_out->count = LD(&stripe->count);
		head_out->bytes = LD(&stripe->bytes);
		head_out->inserted = LD(&stripe->inserted);
		head_out->removed = LD(&stripe->removed);
		head_out->full = LD(&stripe->full);
		head_out->offset = LD(&stripe->offset);
		head_out->slots = slots = LD(&stripe->slots);
		if (slots > cap)
			return -ENOSPC;
		records = (const struct gwmem_shm_record *)(t->base + head_out->offset);
		for (uint32_t i = 0; i < slots; i++) {
			out[i].ptr = LD(&records[i].ptr);
			out[i].size = LD(&records[i].size);
			out[i].stack_id = LD(&records[i].stack_id);
			out[i].time_ds = LD(&records[i].time_ds);
			out[i].tid = LD(&records[i].tid);
			out[i].tag = LD(&records[i].tag);
		}
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		s2 = LD(&stripe->seq);
		if (s1 == s2)
			return 0;
	}
	return -EAGAIN;
}

uint64_t gw_table_count(const struct gw_table *t)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < t->nstripes; i++)
		n += LD(&t->stripes[i].count);
	return n;
}
