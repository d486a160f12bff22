/*
 * table.c - the lock-striped allocation hash table (writer and reader).
 *
 * Writers: take the stripe's spinlock, make seq odd, change records and the
 * stripe totals, make seq even, unlock.  No syscall and no allocation on
 * that path; a contended lock spins, then yields.  Readers never write:
 * they copy a stripe between two equal even reads of seq.  The CLI and the
 * report read through gw_view_snapshot (view.c);
 * gw_table_snapshot_stripe here is the same protocol for the unit tests.
 *
 * Record fields are written with relaxed atomic stores, so a reader racing
 * a writer sees torn *sets* of fields (caught by the seqlock) but never a
 * torn word.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "spin.h"
#include "table.h"

#define ST(p, v)  __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define LD(p)     __atomic_load_n((p), __ATOMIC_RELAXED)

void gw_table_init(struct gw_table *t, struct gwmem_shm_header *hdr)
{
	char *base = (char *)hdr;

	memset(t, 0, sizeof(*t));
	if (!hdr || !hdr->nstripes || !hdr->slots_per_stripe)
		return;
	t->stripes = (struct gwmem_shm_stripe *)(base + hdr->stripes_offset);
	t->records = (struct gwmem_shm_record *)(base + hdr->records_offset);
	t->nstripes = hdr->nstripes;
	t->slots = hdr->slots_per_stripe;
	t->counters = &hdr->counters;
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

bool gw_table_insert(struct gw_table *t, uint64_t ptr, uint64_t size, uint32_t stack_id,
		     uint32_t time_ds, uint32_t tid, uint32_t tag)
{
	const uint64_t h = gw_table_hash(ptr);
	const uint32_t mask = t->slots - 1;
	struct gwmem_shm_stripe *s;
	struct gwmem_shm_record *recs, *r;
	struct gwmem_shm_record v = { ptr, size, stack_id, time_ds, tid, tag };
	uint32_t i;

	if (gw_unlikely(!t->nstripes || !ptr))
		return false;
	s = gw_table_home(t, h, &recs, &i);

	stripe_lock(s);
	for (uint32_t n = 0; n < t->slots; n++, i = (i + 1) & mask) {
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
		if (r->ptr == 0)
			break;
	}
	if (gw_unlikely(s->count >= GW_TABLE_LIMIT(t->slots) || recs[i].ptr != 0)) {
		ST(&s->full, s->full + 1);
		stripe_unlock(s);
		if (t->counters)
			__atomic_fetch_add(&t->counters->untracked_table_full, 1, __ATOMIC_RELAXED);
		return false;
	}
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
	const uint32_t mask = t->slots - 1;
	struct gwmem_shm_stripe *s;
	struct gwmem_shm_record *recs;
	uint32_t i, j;
	bool found = false;

	if (gw_unlikely(!t->nstripes || !ptr))
		return false;
	s = gw_table_home(t, h, &recs, &i);
	/* both lines are likely misses: load them in parallel, not one after
	 * the other through the lock */
	__builtin_prefetch(&recs[i], 1, 3);
	/* an empty stripe cannot hold it: skip the lock (sampling, untracked frees) */
	if (LD(&s->count) == 0)
		return false;

	stripe_lock(s);
	for (uint32_t n = 0; n < t->slots; n++, i = (i + 1) & mask) {
		if (recs[i].ptr == ptr) {
			found = true;
			break;
		}
		if (recs[i].ptr == 0)
			break;
	}
	if (!found) {
		stripe_unlock(s);
		return false;
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
	for (uint32_t n = 0; n < t->slots; n++) {
		uint32_t home;

		j = (j + 1) & mask;
		if (recs[j].ptr == 0)
			break;
		home = (uint32_t)(gw_table_hash(recs[j].ptr) >> 32) & mask;
		if (((j - home) & mask) >= ((j - i) & mask)) {
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

int gw_table_snapshot_stripe(const struct gwmem_shm_stripe *stripe,
			     const struct gwmem_shm_record *records, uint32_t slots,
			     struct gwmem_shm_stripe *head_out, struct gwmem_shm_record *out,
			     unsigned max_retries)
{
	struct gw_backoff b = GW_BACKOFF_INIT;

	for (unsigned attempt = 0; attempt <= max_retries; attempt++) {
		uint32_t s1, s2;

		if (attempt)
			gw_backoff_wait(&b);
		s1 = __atomic_load_n(&stripe->seq, __ATOMIC_ACQUIRE);
		if (s1 & 1)
			continue;
		head_out->seq = s1;
		head_out->lock = 0;
		head_out->count = LD(&stripe->count);
		head_out->bytes = LD(&stripe->bytes);
		head_out->inserted = LD(&stripe->inserted);
		head_out->removed = LD(&stripe->removed);
		head_out->full = LD(&stripe->full);
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
