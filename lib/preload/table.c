/*
 * table.c - the lock-striped allocation table (writer and reader).
 *
 * Writers: take the stripe's spinlock, make seq odd, change records and the
 * stripe totals, make seq even, unlock; the private index changes under the
 * same lock.  No syscall and no allocation on that path, except when the
 * stripe's array grows (a fallocate, rare: each growth adds half of the
 * array) or its index doubles (an mmap).  A contended lock spins, then
 * yields.
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

/*
 * A record store reaches the page of r: mark it for the next fork's copy
 * (shm.c copies only marked pages of the record area).  Stripe lock held,
 * as the fork's copy holds every stripe lock; a store that would not
 * change the mark is skipped, so a page's mark line stays shared between
 * the cores writing records there.
 */
static GW_ALWAYS_INLINE void mark_page(const struct gw_table *t, uint64_t page)
{
	uint8_t *m = &t->changed[page];

	if (!LD(m))
		ST(m, 1);
}

/* Page of the record area that the byte at r lies in. */
static inline uint64_t area_page(const struct gw_table *t, const void *r)
{
	return ((uint64_t)((const char *)r - t->base) - t->records_offset) >> t->page_shift;
}

static GW_ALWAYS_INLINE void rec_changed(const struct gw_table *t, const void *r)
{
	if (t->changed)
		mark_page(t, area_page(t, r));
}

static inline struct gwmem_shm_record *stripe_records(const struct gw_table *t,
						      const struct gwmem_shm_stripe *s)
{
	return (struct gwmem_shm_record *)(t->base + s->offset);
}

static inline uint32_t entry_home(uint64_t h, uint32_t mask)
{
	return (uint32_t)(h >> 32) & mask;
}

/* First empty entry on the probe path of hash h (the index has one). */
static uint32_t empty_entry(const struct gw_table_entry *ent, uint32_t mask, uint64_t h)
{
	uint32_t i = entry_home(h, mask);

	while (ent[i].hash)
		i = (i + 1) & mask;
	return i;
}

static inline void entry_set(struct gw_table_entry *e, uint64_t h, uint32_t rec, uint64_t size)
{
	e->hash = h;
	e->rec = rec;
	e->size = size < UINT32_MAX ? (uint32_t)size : UINT32_MAX;
}

/*
 * Double the stripe's index (or give it its first one).  The new entries
 * come from mmap: zero, private to this process, copied by fork like the
 * rest of its memory.  Called with the stripe lock held.
 */
static GW_NOINLINE bool index_grow(struct gw_table *t, uint32_t si)
{
	struct gw_table_index *x = &t->index[si];
	const uint64_t page_entries = gw_os_page_size() / sizeof(struct gw_table_entry);
	uint64_t n = x->ent ? 2 * ((uint64_t)x->mask + 1) : GW_TABLE_SMALL;
	struct gw_table_entry *nw;

	if (!x->ent) {
		nw = t->small + (uint64_t)si * GW_TABLE_SMALL;
	} else {
		if (n < page_entries)
			n = page_entries;
		if (n > UINT32_MAX)
			return false;
		nw = gw_os_map(n * sizeof(struct gw_table_entry));
		if (!nw) {
			if (t->counters)
				__atomic_fetch_add(&t->counters->mmap_failures, 1, __ATOMIC_RELAXED);
			gw_counters_event(GW_EVENT_TABLE_FULL, false,
					  "cannot map %llu bytes for the allocation index: "
					  "new allocations are served but not tracked",
					  (unsigned long long)(n * sizeof(struct gw_table_entry)));
			return false;
		}
		for (uint64_t i = 0; i <= x->mask; i++)
			if (x->ent[i].hash)
				nw[empty_entry(nw, (uint32_t)(n - 1), x->ent[i].hash)] = x->ent[i];
		if (x->ent < t->small || x->ent >= t->small + (size_t)t->nstripes * GW_TABLE_SMALL)
			gw_os_unmap(x->ent, ((size_t)x->mask + 1) * sizeof(struct gw_table_entry));
	}
	__atomic_store_n(&x->ent, nw, __ATOMIC_RELAXED);
	__atomic_store_n(&x->mask, (uint32_t)(n - 1), __ATOMIC_RELAXED);
	return true;
}

/* --- the record area ------------------------------------------------------ */

/* Size class of an array of 'slots' records (a class size, or the largest). */
static unsigned array_class(const struct gw_table *t, uint32_t slots)
{
	unsigned k = 0;

	while (k + 1 < GW_TABLE_CLASSES && ((uint64_t)t->min_slots << k) < slots)
		k++;
	return k;
}

static uint32_t class_slots(const struct gw_table *t, unsigned k)
{
	uint64_t n = (uint64_t)t->min_slots << k;

	return n < t->region_slots ? (uint32_t)n : t->region_slots;
}

static uint64_t unit_mask(unsigned units, unsigned at)
{
	return (units >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << units) - 1) << at;
}

/* An array of a page or more (class k): a free one, or a new one from the
 * unused end of the area, page-aligned.  Area lock held.  Returns 0 when
 * the area is used up. */
static uint64_t page_take(struct gw_table *t, unsigned k)
{
	const uint64_t bytes = (uint64_t)class_slots(t, k) * sizeof(struct gwmem_shm_record);
	const uint64_t page = gw_os_page_size();
	uint64_t at;

	if (t->nspare[k])
		return t->spare[(uint64_t)k * 2 * t->nstripes + --t->nspare[k]];
	at = (t->area_next + page - 1) / page * page;
	if (at > t->area_end || bytes > t->area_end - at)
		return 0;
	t->area_next = at + bytes;
	return at;
}

/* Area lock held; the pages were given back already.  A class never has
 * more than 2 * nstripes arrays (a stripe's own, the small pages), so the
 * list cannot overflow; if it did, only address space would be lost. */
static void page_put(struct gw_table *t, unsigned k, uint64_t off)
{
	if (t->nspare[k] < 2 * t->nstripes)
		t->spare[(uint64_t)k * 2 * t->nstripes + t->nspare[k]++] = off;
}

/* The small page that holds off, or NULL. */
static struct gw_table_small *small_page_of(struct gw_table *t, uint64_t off)
{
	const uint64_t page = gw_os_page_size();

	for (uint32_t i = 0; i < t->nsmall_pages; i++)
		if (off - t->small_pages[i].off < page)
			return &t->small_pages[i];
	return NULL;
}

/* An array of 'units' units (a power of two below a page), aligned to its
 * size, from a small page with room or from a new one.  Area lock held. */
static uint64_t small_take(struct gw_table *t, unsigned units)
{
	const unsigned per_page = (unsigned)(gw_os_page_size() / t->unit);
	uint64_t off;

	for (uint32_t i = 0; i < t->nsmall_pages; i++) {
		struct gw_table_small *sp = &t->small_pages[i];

		for (unsigned at = 0; at + units <= per_page; at += units) {
			if (sp->used & unit_mask(units, at))
				continue;
			sp->used |= unit_mask(units, at);
			return sp->off + (uint64_t)at * t->unit;
		}
	}
	if (t->nsmall_pages >= 2 * t->nstripes)
		return 0;
	off = page_take(t, t->small_classes);
	if (off) {
		t->small_pages[t->nsmall_pages].off = off;
		t->small_pages[t->nsmall_pages].used = unit_mask(units, 0);
		t->nsmall_pages++;
	}
	return off;
}

/* Area lock held.  A page whose arrays are all free goes back, memory and all. */
static void small_put(struct gw_table *t, unsigned units, uint64_t off)
{
	struct gw_table_small *sp = small_page_of(t, off);

	if (!sp)
		return;
	sp->used &= ~unit_mask(units, (unsigned)((off - sp->off) / t->unit));
	if (sp->used)
		return;
	gw_shm_release(t->shm, sp->off, gw_os_page_size());
	page_put(t, t->small_classes, sp->off);
	*sp = t->small_pages[--t->nsmall_pages];
}

/* An array of class k, or 0 when the area is used up. */
static uint64_t area_take(struct gw_table *t, unsigned k)
{
	uint64_t off;

	gw_spin_lock_word(&t->area_lock);
	off = k < t->small_classes ? small_take(t, 1u << k) : page_take(t, k);
	gw_spin_unlock_word(&t->area_lock);
	return off;
}

/* Give back an array of class k; the pages of a large one are released. */
static void area_put(struct gw_table *t, unsigned k, uint64_t off)
{
	if (k >= t->small_classes)
		gw_shm_release(t->shm, off, (uint64_t)class_slots(t, k) * sizeof(struct gwmem_shm_record));
	gw_spin_lock_word(&t->area_lock);
	if (k < t->small_classes)
		small_put(t, 1u << k, off);
	else
		page_put(t, k, off);
	gw_spin_unlock_word(&t->area_lock);
}

uint64_t gw_table_trim(struct gw_table *t)
{
	const uint64_t page = gw_os_page_size();
	uint64_t end;

	if (!t->shm)
		return 0;
	gw_spin_lock_word(&t->area_lock);
	end = (t->area_next + page - 1) / page * page;
	if (end < t->area_end)
		t->area_end = end;
	end = t->area_end;
	gw_spin_unlock_word(&t->area_lock);
	return end;
}

/*
 * Move the stripe's records into an array twice as large, in the same
 * order (the index names records by number).  Called with the stripe lock
 * held.  The new pages are backed before readers can see them; the old
 * array is given back after the head points at the new one, so a reader
 * still copying it sees seq move and retries.
 */
static GW_NOINLINE bool records_grow(struct gw_table *t, struct gwmem_shm_stripe *s)
{
	const uint64_t rsize = sizeof(struct gwmem_shm_record);
	const uint32_t old_slots = s->slots;
	const uint64_t old_off = s->offset;
	struct gwmem_shm_record *old = old_slots ? stripe_records(t, s) : NULL, *nw;
	unsigned k = old_slots ? array_class(t, old_slots) + 1 : 0;
	uint64_t new_slots, new_off;

	if (old_slots >= t->region_slots || k >= GW_TABLE_CLASSES)
		return false;
	new_slots = class_slots(t, k);
	new_off = area_take(t, k);
	if (!new_off || gw_shm_back(t->shm, new_off, new_slots * rsize) < 0) {
		if (new_off)
			area_put(t, k, new_off);   /* nothing of it was written */
		if (t->counters)
			__atomic_fetch_add(&t->counters->untracked_segment_full, 1, __ATOMIC_RELAXED);
		gw_counters_event(GW_EVENT_TABLE_FULL, false,
				"the segment cannot grow (max_segment_bytes %llu, %s is full, or address "
				"space was given back under a limit): new allocations are served but not tracked",
				(unsigned long long)t->shm->max_bytes, t->shm->dir);
		return false;
	}
	nw = (struct gwmem_shm_record *)(t->base + new_off);
	for (uint64_t pg = area_page(t, nw); t->changed && pg <= area_page(t, &nw[new_slots - 1]); pg++)
		mark_page(t, pg);
	/* a free array, or pages that could not be punched, hold old records:
	 * only ptr says whether a slot is used */
	for (uint64_t i = old_slots; i < new_slots; i++)
		ST(&nw[i].ptr, 0);
	for (uint32_t i = 0; i < old_slots; i++)
		rec_store(&nw[i], &old[i]);

	write_begin(s);
	ST(&s->offset, new_off);
	ST(&s->slots, (uint32_t)new_slots);
	write_end(s);
	if (old_slots)
		area_put(t, k - 1, old_off);
	return true;
}

bool gw_table_init(struct gw_table *t, struct gw_shm *shm)
{
	struct gwmem_shm_header *hdr = shm ? shm->hdr : NULL;
	size_t priv;
	void *mem;

	memset(t, 0, sizeof(*t));
	if (!hdr || !hdr->nstripes || !hdr->slots_per_stripe)
		return true;
	/* first indexes, indexes, the change marks of the record pages and
	 * the free-array lists: private memory, pages touched as they are
	 * used.  The marks follow the indexes: an insert or remove writes
	 * its stripe's index and its record page's mark, so after a fork the
	 * two are one copy-on-write fault, not two (for the first record
	 * pages, which a program with few live allocations never leaves). */
	const uint64_t page = gw_os_page_size();
	const uint64_t area_bytes = (uint64_t)hdr->nstripes * 2 * hdr->slots_per_stripe *
				    sizeof(struct gwmem_shm_record);
	/* a byte per page of the record area (whole pages, as the geometry
	 * makes it; rounded up all the same: no mark lands past the array) */
	const size_t marks = GW_ALIGN_UP((size_t)((area_bytes + page - 1) / page), 64);
	priv = (size_t)hdr->nstripes * (sizeof(struct gw_table_index) +
					 GW_TABLE_SMALL * sizeof(struct gw_table_entry) +
					 2 * GW_TABLE_CLASSES * sizeof(uint64_t) +
					 2 * sizeof(struct gw_table_small)) + marks;
	mem = gw_os_map(priv);
	if (!mem)
		return false;
	t->small = mem;
	t->index = (struct gw_table_index *)(t->small + (size_t)hdr->nstripes * GW_TABLE_SMALL);
	uint8_t *mark_bytes = (uint8_t *)(t->index + hdr->nstripes);
	t->spare = (uint64_t *)(mark_bytes + marks);
	t->small_pages = (struct gw_table_small *)(t->spare + (size_t)2 * GW_TABLE_CLASSES * hdr->nstripes);
	t->base = (char *)hdr;
	t->shm = shm;
	t->stripes = (struct gwmem_shm_stripe *)(t->base + hdr->stripes_offset);
	t->records_offset = hdr->records_offset;
	t->nstripes = hdr->nstripes;
	t->region_slots = hdr->slots_per_stripe;
	t->area_next = t->records_offset;
	t->area_end = t->records_offset + area_bytes;
	/* the smallest array: 8 records, or 1/64 of a page (a small page's
	 * units fit one 64-bit mask) */
	t->unit = GW_TABLE_FIRST * sizeof(struct gwmem_shm_record);
	if (t->unit < gw_os_page_size() / 64)
		t->unit = (uint32_t)(gw_os_page_size() / 64);
	t->min_slots = t->unit / sizeof(struct gwmem_shm_record);
	if (t->min_slots > t->region_slots)
		t->min_slots = t->region_slots;
	while (((uint64_t)t->unit << t->small_classes) < gw_os_page_size())
		t->small_classes++;
	t->counters = &hdr->counters;
	uint64_t share = ((uint64_t)hdr->config.max_tracked_allocations * 5 / 4 + t->nstripes - 1) / t->nstripes;
	t->stripe_limit = share < UINT32_MAX / 2 ? (uint32_t)share : UINT32_MAX / 2;
	if (t->stripe_limit < 1)
		t->stripe_limit = 1;
	gw_blockmap_init_pools(&t->map);
	/* the fork's copy takes only the record pages written since the last
	 * one (without the marks it compares every page, as for the rest) */
	t->page_shift = (unsigned)__builtin_ctzll(page);
	if (shm && gw_shm_watch(shm, t->records_offset, t->area_end, mark_bytes) == 0)
		t->changed = mark_bytes;
	return true;
}

/* Refuse an insert: counted in the stripe and the segment. */
static bool refuse(struct gw_table *t, struct gwmem_shm_stripe *s)
{
	ST(&s->full, s->full + 1);
	stripe_unlock(s);
	if (t->counters)
		__atomic_fetch_add(&t->counters->untracked_table_full, 1, __ATOMIC_RELAXED);
	return false;
}

/*
 * Whether a record number taken from a block map entry names ptr's live
 * record.  An entry is cleared whenever its record is freed, so this only
 * guards against what should not happen (a stale entry must never let one
 * pointer remove another's record).  Stripe lock held.
 */
static inline struct gwmem_shm_record *mapped_record(const struct gw_table *t,
						     const struct gwmem_shm_stripe *s,
						     const struct gw_table_index *x, uint32_t e, uint64_t ptr)
{
	struct gwmem_shm_record *r;

	if (!e || e - 1 >= x->used)
		return NULL;
	r = &stripe_records(t, s)[e - 1];
	return r->ptr == ptr ? r : NULL;
}

bool gw_table_insert(struct gw_table *t, uint64_t ptr, uint64_t size, uint32_t stack_id,
		     uint32_t time_ds, uint32_t tid, uint32_t tag)
{
	struct gw_table_key key = gw_table_key(t, ptr);

	return gw_table_insert_key(t, ptr, &key, size, stack_id, time_ds, tid, tag);
}

bool gw_table_insert_key(struct gw_table *t, uint64_t ptr, const struct gw_table_key *key, uint64_t size,
			 uint32_t stack_id, uint32_t time_ds, uint32_t tid, uint32_t tag)
{
	const uint64_t h = key->h;
	struct gwmem_shm_stripe *s;
	struct gw_table_index *x;
	struct gw_table_entry *e;
	struct gwmem_shm_record *recs, *r = NULL;
	struct gwmem_shm_record v = { ptr, size, stack_id, time_ds, tid, tag };
	uint32_t i, si, rec, *slot;

	if (gw_unlikely(!t->nstripes || !ptr))
		return false;
	si = (uint32_t)h & (t->nstripes - 1);
	s = &t->stripes[si];
	x = &t->index[si];
	slot = key->slot;

	stripe_lock(s);
	/* the same pointer again (an untracked free happened in between, or a
	 * realloc in place): its record is updated where it is */
	if (slot) {
		r = mapped_record(t, s, x, LD(slot), ptr);
	} else if (gw_likely(x->ent != NULL)) {
		for (i = entry_home(h, x->mask); x->ent[i].hash; i = (i + 1) & x->mask) {
			e = &x->ent[i];
			if (e->hash != h)
				continue;
			r = &stripe_records(t, s)[e->rec];
			entry_set(e, h, e->rec, size);
			break;
		}
	}
	if (r) {
		rec_changed(t, r);
		write_begin(s);
		ST(&s->bytes, s->bytes - r->size + size);
		rec_store(r, &v);
		ST(&s->inserted, s->inserted + 1);
		ST(&s->removed, s->removed + 1);
		write_end(s);
		stripe_unlock(s);
		return true;
	}
	if (gw_unlikely(s->count >= t->stripe_limit))
		return refuse(t, s);
	if (!slot && gw_unlikely(!x->ent || 2 * ((uint64_t)x->hashed + 1) > (uint64_t)x->mask + 1) &&
	    !index_grow(t, si) && (!x->ent || 4 * ((uint64_t)x->hashed + 1) > 3 * ((uint64_t)x->mask + 1)))
		return refuse(t, s);
	if (x->free) {
		rec = x->free - 1;
		x->free = (uint32_t)stripe_records(t, s)[rec].size;
	} else {
		if (gw_unlikely(x->used >= s->slots) && !records_grow(t, s))
			return refuse(t, s);
		rec = x->used++;
	}
	recs = stripe_records(t, s);
	rec_changed(t, &recs[rec]);
	write_begin(s);
	rec_store(&recs[rec], &v);
	ST(&s->count, s->count + 1);
	ST(&s->bytes, s->bytes + size);
	ST(&s->inserted, s->inserted + 1);
	write_end(s);
	if (slot) {
		ST(slot, rec + 1);
	} else {
		entry_set(&x->ent[empty_entry(x->ent, x->mask, h)], h, rec, size);
		x->hashed++;
	}
	stripe_unlock(s);
	return true;
}

/* Free record rec (r) of size 'size' of the stripe.  Stripe lock held. */
static inline void record_free(const struct gw_table *t, struct gwmem_shm_stripe *s,
			       struct gw_table_index *x, struct gwmem_shm_record *r, uint32_t rec,
			       uint64_t size)
{
	rec_changed(t, r);
	write_begin(s);
	ST(&s->bytes, s->bytes - size);
	ST(&s->count, s->count - 1);
	ST(&s->removed, s->removed + 1);
	ST(&r->ptr, 0);
	/* the unused record links the free list (readers skip ptr 0) */
	ST(&r->size, (uint64_t)x->free);
	write_end(s);
	x->free = rec + 1;
}

bool gw_table_remove(struct gw_table *t, uint64_t ptr, uint64_t *size_out)
{
	const uint64_t h = gw_table_hash(ptr);
	struct gwmem_shm_stripe *s;
	struct gw_table_index *x;
	struct gw_table_entry *ent;
	struct gwmem_shm_record *r;
	uint32_t i, j, si, mask, rec, *slot;
	uint64_t size;

	if (gw_unlikely(!t->nstripes || !ptr))
		return false;
	/*
	 * A pooled block's entry first: the record's address depends on it,
	 * and the hash below takes a while.  Only this pointer's insert and
	 * remove write its entry, and the caller owns the block, so the entry
	 * read here without the lock is the one read under it (anything else
	 * only costs a wasted prefetch, or an early "not tracked" for a block
	 * that was never recorded).
	 */
	slot = gw_blockmap_slot(&t->map, ptr);
	uint32_t e = slot ? LD(slot) : 0;

	if (slot && !e)
		return false;
	si = (uint32_t)h & (t->nstripes - 1);
	s = &t->stripes[si];
	/* an empty stripe cannot hold it: skip the lock (sampling, untracked frees) */
	if (LD(&s->count) == 0)
		return false;

	x = &t->index[si];
	if (slot) {
		/* start loading the record before the lock (the array may be
		 * moving: a stale address only wastes the prefetch) */
		__builtin_prefetch(t->base + LD(&s->offset) +
				   (uint64_t)(e - 1) * sizeof(struct gwmem_shm_record), 1, 3);
		stripe_lock(s);
		e = LD(slot);
		r = mapped_record(t, s, x, e, ptr);
		if (!r) {
			/* nothing, or stale: never another pointer's record */
			ST(slot, 0);
			stripe_unlock(s);
			return false;
		}
		rec = e - 1;
		size = r->size;
		if (size_out)
			*size_out = size;
		record_free(t, s, x, r, rec, size);
		ST(slot, 0);
		stripe_unlock(s);
		return true;
	}

	stripe_lock(s);
	ent = x->ent;
	mask = x->mask;
	if (!ent) {
		stripe_unlock(s);
		return false;
	}
	for (i = entry_home(h, mask);; i = (i + 1) & mask) {
		if (ent[i].hash == h)
			break;
		if (!ent[i].hash) {
			stripe_unlock(s);
			return false;
		}
	}
	rec = ent[i].rec;
	r = &stripe_records(t, s)[rec];
	size = ent[i].size != UINT32_MAX ? ent[i].size : r->size;
	if (size_out)
		*size_out = size;
	record_free(t, s, x, r, rec, size);
	x->hashed--;
	/*
	 * Backward-shift deletion: move later entries of the probe run into
	 * the hole when their home does not lie cyclically in (hole, j].
	 */
	for (j = i;;) {
		j = (j + 1) & mask;
		if (!ent[j].hash)
			break;
		if (((j - entry_home(ent[j].hash, mask)) & mask) >= ((j - i) & mask)) {
			ent[i] = ent[j];
			i = j;
		}
	}
	ent[i].hash = 0;
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
