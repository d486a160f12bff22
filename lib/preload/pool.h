/*
 * pool.h - size-class pools of the preload library.
 *
 * Definitions:
 *  - class: a block size; requests are rounded up to the smallest class that
 *    fits.  Classes go 16..128 by 16, then four per power of two up to
 *    memory_pool.default_block_size.  Every power of two is a class, so a
 *    power-of-two class of size >= A gives blocks aligned to A.
 *  - chunk: blocks_per_chunk blocks of one class, contiguous, carved lazily.
 *  - region: a class's max_chunks chunk slots, contiguous inside one address
 *    reservation made at start; pointer -> class is a range check plus one
 *    table load, so blocks have no header.
 *  - thread cache: per-thread, per-class free list; the fast path touches
 *    only it.  Blocks move to/from the class's central lists in batches,
 *    under the class lock, which is also when statistics are folded in.
 */
#ifndef GW_POOL_H
#define GW_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gwmem.h"
#include "gwmem/shm_layout.h"
#include "internal.h"

#include <string.h>

#define GW_POOL_MAX_CLASSES GWMEM_SHM_MAX_CLASSES

/* A thread's cache of free blocks of one class: a singly linked list through
 * the blocks' first word.  Only allocations are counted on the fast path:
 * since count = moved + frees - allocs, frees follow from the others.  The
 * deltas are folded into the class totals under the class lock. */
struct gw_pool_bin {
	void *head;
	uint32_t count;
	uint32_t limit;        /* flush above this many; 0 until the cache is set up */
	uint64_t allocs;       /* blocks handed to the program since the last fold */
	int64_t moved;         /* blocks received from central minus given back, since the fold */
};

struct gw_pool_cache {
	struct gw_pool_bin bins[GW_POOL_MAX_CLASSES];
	struct gw_pool_cache *next, *prev;  /* registry of live caches */
	uint32_t state;                     /* enum in pool.c */
	uint32_t tid;
};

/* What the inline fast paths read; written once by gw_pool_init.  Every
 * class region is 2^region_shift bytes, class i's at base + (i << shift),
 * so a block's class is its offset shifted right. */
struct gw_pool_global {
	uintptr_t base;          /* reservation start */
	uintptr_t span;          /* nclasses << region_shift; 0 = pools off */
	size_t max_size;         /* largest class size; 0 = pools off */
	uintptr_t secret;        /* double-free canary key */
	unsigned region_shift;
	unsigned nclasses;
	unsigned trimmed;        /* gw_pool_trim gave address space back: the span has holes */
	unsigned page_shift;
	/* one bit per page of the span, set while the page is given back
	 * (chunk_release): a block that starts there is in an empty chunk, so
	 * a free of it is a double free, whatever the zeroed page says */
	uint64_t *released;
};

/* Per class data the fast paths read (the rest is in pool.c). */
struct gw_pool_class_ro {
	uintptr_t committed;     /* bytes of the region backed by chunks (grows, until gw_pool_trim) */
	uintptr_t reserved;      /* bytes of the region still reserved (gw_pool_trim) */
	uint32_t size;
	uint32_t inv;            /* inverse of size's odd part mod 2^32 */
	uint32_t limit;          /* UINT32_MAX / size */
	uint32_t tz;             /* trailing zero bits of size */
};

extern struct gw_pool_global gw_pool_g GW_HIDDEN;
extern struct gw_pool_class_ro gw_pool_ro[GW_POOL_MAX_CLASSES] GW_HIDDEN;
extern GW_TLS struct gw_pool_cache gw_pool_tc GW_HIDDEN;

/* What gw_pool_bad_free reports: counted (invalid_frees, double_frees),
 * logged once per kind and rate-limited. */
enum gw_pool_misuse {
	GW_POOL_INVALID_FREE,      /* free of an address the pools never handed out */
	GW_POOL_DOUBLE_FREE,       /* free of a block that is free */
	GW_POOL_INVALID_REALLOC,   /* realloc of an address the pools never handed out */
	GW_POOL_FREED_REALLOC,     /* realloc of a block that is free */
};

void *gw_pool_alloc_slow(unsigned cls) GW_HIDDEN;
/* The rest of a free whose block is claimed already (canary exchanged in). */
void gw_pool_free_slow(void *p, unsigned cls) GW_HIDDEN;
void gw_pool_bad_free(void *p, enum gw_pool_misuse why) GW_HIDDEN;

static inline unsigned gw_pool_size_class_calc(size_t n)
{
	if (n <= 128)
		return n ? (unsigned)((n - 1) >> 4) : 0;
	size_t s = n - 1;
	unsigned b = (unsigned)(sizeof(size_t) * 8 - 1) - (unsigned)__builtin_clzl(s);
	return 8 + (b - 7) * 4 + (unsigned)((s >> (b - 2)) & 3);
}

/* Class of every size up to 1024 by 16-byte steps: one load instead of
 * the bit arithmetic below, on the sizes that matter most. */
extern const uint8_t gw_pool_small_class[65] GW_HIDDEN;

/* Classes: 16..128 by 16 (0..7), then four per power of two. */
static GW_ALWAYS_INLINE unsigned gw_pool_size_class(size_t n)
{
	if (n <= 1024)
		return gw_pool_small_class[(n + 15) >> 4];
	return gw_pool_size_class_calc(n);
}

static inline size_t gw_pool_class_size(unsigned cls)
{
	if (cls < 8)
		return (cls + 1) * 16u;
	unsigned b = 7 + (cls - 8) / 4, k = (cls - 8) % 4;
	return ((size_t)1 << b) + (k + 1) * ((size_t)1 << (b - 2));
}

/*
 * What the second word of a block holds when it is handed out, until the
 * program writes there: not 0, so that the free of a block the program
 * did not write that far needs no page lookup (gw_pool_free_inline), and
 * never a canary (those are odd: an even address xor an odd secret).
 */
#define GW_POOL_LIVE ((uintptr_t)2)

static GW_ALWAYS_INLINE uintptr_t gw_pool_canary(void *b)
{
	return (uintptr_t)b ^ gw_pool_g.secret;
}

/* Fast path: pop from this thread's cache.  n <= gw_pool_g.max_size. */
static GW_ALWAYS_INLINE void *gw_pool_alloc_inline(size_t n)
{
	unsigned cls = gw_pool_size_class(n);
	struct gw_pool_bin *bin = &gw_pool_tc.bins[cls];
	void **b = bin->head;

	if (gw_likely(b != NULL)) {
		void *next = b[0];
		/* a link rewritten by a write after free must not become a block we
		 * hand out: it has to stay in this block's region (or end the list) */
		if (gw_likely((((uintptr_t)next ^ (uintptr_t)b) >> gw_pool_g.region_shift) == 0 ||
			      next == NULL)) {
			bin->head = next;
			bin->count--;
			bin->allocs++;
			/* clear the double-free canary: from here on a free may claim
			 * the block (atomic because a racing free exchanges it) */
			__atomic_store_n((uintptr_t *)&b[1], GW_POOL_LIVE, __ATOMIC_RELAXED);
			return b;
		}
	}
	return gw_pool_alloc_slow(cls);
}

static GW_ALWAYS_INLINE bool gw_pool_owns_inline(const void *p)
{
	return (uintptr_t)p - gw_pool_g.base < gw_pool_g.span;
}

/*
 * Ownership once the reservation may have holes: after gw_pool_trim() gave
 * the unused part of each region back, the next allocator's mmap can place
 * its blocks there, inside the span.  Those are not ours.  Until then (the
 * usual case) this is the range check plus one predictable branch.
 */
static GW_ALWAYS_INLINE bool gw_pool_owns_exact(const void *p)
{
	uintptr_t off = (uintptr_t)p - gw_pool_g.base;

	if (off >= gw_pool_g.span)
		return false;
	if (gw_likely(!__atomic_load_n(&gw_pool_g.trimmed, __ATOMIC_ACQUIRE)))
		return true;
	unsigned cls = (unsigned)(off >> gw_pool_g.region_shift);
	uintptr_t roff = off & (((uintptr_t)1 << gw_pool_g.region_shift) - 1);
	return roff < __atomic_load_n(&gw_pool_ro[cls].reserved, __ATOMIC_ACQUIRE);
}

/* The page at offset off of the span was given back (see released). */
static GW_ALWAYS_INLINE bool gw_pool_page_released(uintptr_t off)
{
	uintptr_t pg = off >> gw_pool_g.page_shift;

	return (__atomic_load_n(&gw_pool_g.released[pg >> 6], __ATOMIC_SEQ_CST) >> (pg & 63)) & 1u;
}

/*
 * The canary exchange of a free of p read 0: true when p is free all the
 * same, because its page was given back (released) or it lies at or past
 * its chunk's carved count (a chunk carved again from zero after it was
 * given back, or never carved that far).  Out of line: only a 0 gets here.
 */
bool gw_pool_zero_is_free(const void *p) GW_HIDDEN;

/* Fast path: push to this thread's cache.  p must be owned by the pools. */
static GW_ALWAYS_INLINE void gw_pool_free_inline(void *p)
{
	uintptr_t off = (uintptr_t)p - gw_pool_g.base;
	unsigned cls = (unsigned)(off >> gw_pool_g.region_shift);
	const struct gw_pool_class_ro *ro = &gw_pool_ro[cls];
	uintptr_t roff = off & (((uintptr_t)1 << gw_pool_g.region_shift) - 1);

	/* inside a backed chunk, and a multiple of the block size (exact
	 * divisibility test by modular inverse: Hacker's Delight 10-17) */
	uint32_t q = (uint32_t)roff * ro->inv;
	q = (q >> ro->tz) | (q << ((32 - ro->tz) & 31));
	if (gw_unlikely(roff >= ro->committed || q > ro->limit)) {
		gw_pool_bad_free(p, GW_POOL_INVALID_FREE);
		return;
	}
	/*
	 * The double-free check and the change to "free" are one atomic step:
	 * whoever exchanges the canary in owns the block and links it; a free
	 * that gets the canary back (the block is free already, or another
	 * thread's free of it won the race) touches nothing else.  So a block
	 * is on at most one free list, whatever the timing: read-modify-writes
	 * of one word read the latest value in its modification order; the
	 * link is published by the list's own synchronisation (this thread's
	 * cache, or the class lock).
	 *
	 * A block in a page that was given back (its chunk was empty, so the
	 * block is free) has lost its canary to the zeroed page: the exchange
	 * reads 0 there, and then the page's bit says so.  The release sets
	 * the bit before it zeroes the page, so an exchange that read the
	 * zeroed page finds the bit set (one that came before the zeroing got
	 * the canary back); sequentially consistent for that order (an x86
	 * exchange always is).  A chunk given back and carved again from zero
	 * holds zeroes past its carved blocks, with the bits clear again: a
	 * block there was not handed out since, so a 0 is also looked up
	 * against the chunk's carved count (gw_pool_zero_is_free).  Only a 0
	 * costs the lookups.
	 */
	void **b = p;
	uintptr_t old = __atomic_exchange_n((uintptr_t *)&b[1], gw_pool_canary(p), __ATOMIC_SEQ_CST);
	if (gw_unlikely(old == gw_pool_canary(p) || (old == 0 && gw_pool_zero_is_free(p)))) {
		gw_pool_bad_free(p, GW_POOL_DOUBLE_FREE);
		return;
	}
	struct gw_pool_bin *bin = &gw_pool_tc.bins[cls];
	if (gw_likely(bin->count < bin->limit)) {
		b[0] = bin->head;
		bin->head = b;
		bin->count++;
		return;
	}
	gw_pool_free_slow(p, cls);
}

/* Reserve address space and build the classes; 0 or -errno (pools then stay off). */
int gw_pool_init(const struct gwmem_config *cfg) GW_HIDDEN;
bool gw_pool_ready(void) GW_HIDDEN;

/* Largest size the pools serve; 0 when they are off. */
size_t gw_pool_max_size(void) GW_HIDDEN;

/* A block of at least n bytes (n <= gw_pool_max_size()), or NULL when the class is full. */
void *gw_pool_alloc(size_t n) GW_HIDDEN;
/* A block of at least n bytes aligned to align (a power of two), or NULL. */
void *gw_pool_alloc_aligned(size_t n, size_t align) GW_HIDDEN;
/* True if p lies in the pool reservation (then only gw_pool_free may free it). */
bool gw_pool_owns(const void *p) GW_HIDDEN;
/* Free a block; an invalid or already-free pointer is counted and ignored. */
void gw_pool_free(void *p) GW_HIDDEN;
/* Blocks class cls can ever hold (chunk slots x blocks per chunk); 0 past the classes. */
uint32_t gw_pool_class_blocks(unsigned cls) GW_HIDDEN;
/* Usable size of a pool block (its class size), 0 for an invalid pointer. */
size_t gw_pool_usable_size(const void *p) GW_HIDDEN;
/*
 * For realloc: 0 if p is a live pool block, else the misuse it is (also
 * counted and reported).  A block that is free carries the canary; a
 * racing free may still change that, which the free's own claim settles.
 */
int gw_pool_check_realloc(void *p) GW_HIDDEN;

/* Statistics: summed from central and every thread cache; nclasses returned. */
unsigned gw_pool_stats(struct gwmem_shm_class *out, unsigned max) GW_HIDDEN;
/* Keep live per-class statistics in 'area' (GWMEM_SHM_MAX_CLASSES entries) from now on. */
void gw_pool_attach_stats(struct gwmem_shm_class *area, uint32_t *nclasses) GW_HIDDEN;
/* Stop writing statistics anywhere (takes no lock: a forked child's
 * atfork handler, while it still maps its parent's segment). */
void gw_pool_detach_stats(void) GW_HIDDEN;
/*
 * The next allocator ran out of address space (interpose.c decides that it
 * is address space it lacks): give back, once, the address space of every
 * region past its last chunk that holds memory (empty chunks are released
 * first); classes then never grow again (their requests are forwarded).
 * Returns the bytes given back (0 the second time).
 */
uint64_t gw_pool_trim(void) GW_HIDDEN;
/* Release fully free chunks to the OS if due; 'force' ignores the interval. Returns chunks released. */
unsigned gw_pool_release(bool force) GW_HIDDEN;
/* Print the statistics table to fd without allocating. */
void gw_pool_print_stats(int fd) GW_HIDDEN;

void gw_pool_atfork_prepare(void) GW_HIDDEN;
void gw_pool_atfork_parent(void) GW_HIDDEN;
void gw_pool_atfork_child(void) GW_HIDDEN;

#endif /* GW_POOL_H */
