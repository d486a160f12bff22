/*
 * pool.c - size classes, chunk reservation, per-thread caches, central free
 * lists and release of empty chunks to the OS.
 *
 * At start one address range is reserved (PROT_NONE) and cut into one
 * region per class, each holding max_chunks chunk slots (fewer where the
 * address-space budget says so: 3 GiB targets get a smaller reservation,
 * and so does a process under RLIMIT_AS, see pool_budget(), whose chunks
 * are small too, see class_bpc(); gw_pool_trim() gives the unused part back
 * when the next allocator runs out).  A chunk is made
 * usable (mprotect) the first time a slot is needed and carved lazily, so
 * untouched blocks cost no memory.  A block's class follows from its
 * address (regions are equal powers of two), so blocks carry no header; a freed block holds
 * the free-list link in its first word and a canary in its second (the
 * same idea as glibc's tcache key).  A free claims its block by exchanging
 * the canary in atomically: of two frees of one block, however close, one
 * gets the canary back and is reported as a double free, so no block is
 * ever on two free lists.  Every block on a free list carries the canary,
 * carved ones included.  A chunk given back to the OS reads as zeroes, so
 * its pages are also marked in a bitmap (gw_pool_g.released) that a free
 * finding 0 instead of the canary consults, and then its chunk's carved
 * count: past it a block was not handed out since the chunk was carved
 * again from zero.
 *
 * The fast paths live in pool.h (inlined into the interposer): they touch
 * only the calling thread's cache.  This file holds the slow paths, which
 * move blocks between a thread cache and the class's central lists in
 * batches under the class mutex, and everything else.
 *
 * Central lists are per chunk (like tcmalloc spans): each chunk keeps its
 * own free list and count, and chunks with free or uncarved blocks are on
 * the class's partial list.  A chunk whose every carved block is back in
 * the central list is empty and can be given back with madvise(DONTNEED);
 * its slot stays committed and is carved again from zero when needed.
 *
 * Not here: which allocator serves a request (interpose.c), the next
 * allocator (next.c), tracking (track.c).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "counters.h"
#include "fmt.h"
#include "os.h"
#include "pool.h"

/* --- data --------------------------------------------------------------- */

enum cache_state {
	CACHE_NEW = 0,       /* this thread has not set up its cache */
	CACHE_ACTIVE = 1,    /* registered, limits set */
	CACHE_DEAD = 2,      /* thread is exiting: no caching from now on */
};

#define NO_CHUNK UINT32_MAX
#define XFER_SLOTS 8

/* One chunk slot of a class region. */
struct chunk {
	void *free_head;        /* central free blocks of this chunk */
	uint32_t free_count;    /* blocks on free_head */
	uint32_t carved;        /* blocks carved from the start of the chunk */
	uint32_t next_partial;  /* partial list links (NO_CHUNK ends) */
	uint32_t prev_partial;
	uint8_t on_partial;
	uint8_t backed;         /* 1 when the chunk holds memory (not released) */
};

struct gw_size_class {
	uint32_t index;
	uint32_t size;
	uint32_t blocks_per_chunk;
	uint32_t max_chunks;
	uint32_t used_slots;      /* chunk slots committed so far (0..max_chunks) */
	uint32_t partial_head;    /* chunks with free or uncarved blocks */
	uint32_t batch;           /* blocks moved per refill/flush */
	uint32_t pad;
	size_t chunk_bytes;
	struct chunk *chunks;
	/* totals folded in from thread caches, under the lock */
	uint64_t total_allocated;
	uint64_t total_freed;
	uint64_t carved_blocks;   /* blocks carved and not released */
	uint64_t backed_chunks;
	uint64_t released_chunks;
	uint64_t empty_chunks;    /* backed chunks whose every carved block is free */
	uint64_t overflow;
	uint64_t last_release_ns;
	/* transfer cache: lists flushed by one thread's cache, handed whole to
	 * the next refill, so blocks moving between threads are not walked
	 * (each walk step is a cache miss on a line another core wrote) */
	uint32_t nxfer;
	struct { void *head; uint32_t count; } xfer[XFER_SLOTS];
} __attribute__((aligned(GW_CACHELINE)));

/* gw_pool_small_class[(n + 15) >> 4] == gw_pool_size_class_calc(n) for n <= 1024 */
const uint8_t gw_pool_small_class[65] = {
	0, 0, 1, 2, 3, 4, 5, 6, 7,                 /* 0..128 by 16 */
	8, 8, 9, 9, 10, 10, 11, 11,                /* 160, 192, 224, 256 */
	12, 12, 12, 12, 13, 13, 13, 13,            /* 320, 384 */
	14, 14, 14, 14, 15, 15, 15, 15,            /* 448, 512 */
	16, 16, 16, 16, 16, 16, 16, 16,            /* 640 */
	17, 17, 17, 17, 17, 17, 17, 17,            /* 768 */
	18, 18, 18, 18, 18, 18, 18, 18,            /* 896 */
	19, 19, 19, 19, 19, 19, 19, 19,            /* 1024 */
};

struct gw_pool_global gw_pool_g;
struct gw_pool_class_ro gw_pool_ro[GW_POOL_MAX_CLASSES];
GW_TLS struct gw_pool_cache gw_pool_tc;

static struct gw_size_class classes[GW_POOL_MAX_CLASSES];
/*
 * Each class's lock, apart from the class: fork locks and unlocks them all
 * (and a child re-initialises them), and every page written after a fork
 * is a copy-on-write fault on both sides, so they share as few pages as
 * they can (a line each, so that threads refilling different classes do
 * not contend for one).
 */
static struct {
	pthread_mutex_t m;
} __attribute__((aligned(GW_CACHELINE))) class_locks[GW_POOL_MAX_CLASSES];
#define CLASS_LOCK(c) (&class_locks[(c)->index].m)
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gw_pool_cache *registry;
static pthread_key_t cache_key;
static bool pools_ready;
static bool release_enabled;
static uint64_t release_interval_ns;
static double release_threshold;

/* the chunk metadata of every class, one mapping (gw_pool_trim unmaps
 * the pages of slots no class can use any more) */
static struct chunk *meta_base;
static size_t meta_bytes;

static struct gwmem_shm_class *stats_area;
static uint32_t *stats_nclasses;

/* --- helpers ------------------------------------------------------------ */

static inline uintptr_t region_base(unsigned cls)
{
	return gw_pool_g.base + ((uintptr_t)cls << gw_pool_g.region_shift);
}

static inline struct chunk *chunk_of(struct gw_size_class *c, void *p)
{
	uintptr_t off = (uintptr_t)p - region_base(c->index);
	return &c->chunks[off / c->chunk_bytes];
}

static inline void *chunk_start(struct gw_size_class *c, uint32_t idx)
{
	return (void *)(region_base(c->index) + (uintptr_t)idx * c->chunk_bytes);
}

static void partial_push(struct gw_size_class *c, uint32_t idx)
{
	struct chunk *k = &c->chunks[idx];

	if (k->on_partial)
		return;
	k->on_partial = 1;
	k->prev_partial = NO_CHUNK;
	k->next_partial = c->partial_head;
	if (c->partial_head != NO_CHUNK)
		c->chunks[c->partial_head].prev_partial = idx;
	c->partial_head = idx;
}

static void partial_remove(struct gw_size_class *c, uint32_t idx)
{
	struct chunk *k = &c->chunks[idx];

	if (!k->on_partial)
		return;
	if (k->prev_partial != NO_CHUNK)
		c->chunks[k->prev_partial].next_partial = k->next_partial;
	else
		c->partial_head = k->next_partial;
	if (k->next_partial != NO_CHUNK)
		c->chunks[k->next_partial].prev_partial = k->prev_partial;
	k->on_partial = 0;
}

static inline bool chunk_empty(const struct gw_size_class *c, const struct chunk *k)
{
	return k->backed && k->carved > 0 && k->free_count == k->carved;
}

/* --- init --------------------------------------------------------------- */

/*
 * The reservation starts on a multiple of the region size: then every block
 * of a region shares the address bits above region_shift (the fast path's
 * free-list link check relies on it), and power-of-two classes hand out
 * blocks aligned to their size (memalign and friends rely on that).  A mapping
 * only promises a page, so reserve the slack and trim it.
 */
static void *reserve_aligned(size_t len, size_t align)
{
	if (len > SIZE_MAX - align)
		return NULL;
	char *raw = gw_os_reserve(len + align);
	if (!raw)
		return NULL;
	char *base = (char *)GW_ALIGN_UP((uintptr_t)raw, align);
	if (base > raw)
		gw_os_unmap(raw, (size_t)(base - raw));
	size_t tail = (size_t)(raw + len + align - (base + len));
	if (tail)
		gw_os_unmap(base + len, tail);
	return base;
}

/*
 * Address space the reservation may take.  A PROT_NONE reservation counts
 * against RLIMIT_AS like any mapping, and whatever the pools hold back the
 * next allocator cannot have: so under a limit the pools take at most a
 * sixteenth of it (requests past a full class go to the next allocator),
 * never "as much as mmap allows", which left glibc nothing.  On 32-bit
 * targets the 3 GiB address space and the RAM bound it too: a reservation
 * larger than half the RAM could never be backed anyway.
 */
/* The address space that bounds the process (RLIMIT_AS, or 4 GiB on a
 * 32-bit target); 0 when nothing does, and gw_pool_trim never helps. */
static uint64_t as_limit;
/* an RLIMIT_AS is set (not merely a 32-bit address space) */
static bool as_rlimit;

static uint64_t pool_budget(void)
{
	uint64_t budget = sizeof(void *) == 8 ? (UINT64_C(64) << 30) : (UINT64_C(768) << 20);
	struct rlimit rl;

	as_limit = sizeof(void *) < 8 ? UINT64_C(1) << 32 : 0;
	if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		as_rlimit = true;
		if (!as_limit || (uint64_t)rl.rlim_cur < as_limit)
			as_limit = (uint64_t)rl.rlim_cur;
		if ((uint64_t)rl.rlim_cur / 16 < budget)
			budget = (uint64_t)rl.rlim_cur / 16;
	}
	if (sizeof(void *) < 8) {
		char buf[256];
		ssize_t n = gw_os_read_file("/proc/meminfo", buf, sizeof(buf) - 1, true);
		if (n > 0) {
			buf[n] = '\0';
			const char *p = strstr(buf, "MemTotal:");
			if (p) {
				uint64_t kib = strtoull(p + 9, NULL, 10);
				if (kib && (kib << 10) / 2 < budget)
					budget = (kib << 10) / 2;
			}
		}
	}
	return budget;
}

/*
 * Under an address-space limit a chunk is at most GW_POOL_LIMITED_CHUNK
 * bytes: every class in use holds at least one committed chunk for good,
 * and with the default 256 blocks the large classes would keep 64-256 KiB
 * each that the next allocator can never have, even after gw_pool_trim.
 */
#define GW_POOL_LIMITED_CHUNK (16u * 1024u)

static uint32_t class_bpc(unsigned cls, uint32_t bpc)
{
	size_t size = gw_pool_class_size(cls);

	if (as_rlimit && (uint64_t)size * bpc > GW_POOL_LIMITED_CHUNK) {
		uint32_t n = (uint32_t)(GW_POOL_LIMITED_CHUNK / size);
		return n < 8 ? 8 : n;
	}
	return bpc;
}

static void cache_destructor(void *arg);

static unsigned cache_limit(size_t size)
{
	/* about 32 KiB per class and thread, between 4 and 256 blocks */
	size_t n = (32 * 1024) / size;
	if (n < 4)
		n = 4;
	if (n > 256)
		n = 256;
	return (unsigned)n;
}

int gw_pool_init(const struct gwmem_config *cfg)
{
	size_t max_block = cfg->memory_pool.default_block_size;
	uint32_t bpc = cfg->memory_pool.blocks_per_chunk;
	uint32_t max_chunks = cfg->memory_pool.max_chunks;
	unsigned ncls;
	const uint64_t budget = pool_budget();
	const size_t page = gw_os_page_size();
	unsigned shift;

	if (pools_ready)
		return 0;
	if (max_block < 16)
		max_block = 16;
	ncls = gw_pool_size_class(max_block) + 1;
	if (ncls > GW_POOL_MAX_CLASSES)
		ncls = GW_POOL_MAX_CLASSES;
	const unsigned ncls_cfg = ncls;

	/* regions: max_chunks chunk slots each, all rounded to one power of two
	 * (at most 2 GiB so offsets fit the 32-bit divisibility test), and the
	 * whole reservation within the budget; regions of 64 KiB at least,
	 * fewer classes when even that is too much */
	const uint64_t region_min = UINT64_C(1) << 16;
	uint64_t region_max = UINT64_C(1) << 31;
	while (region_max * ncls > budget && region_max > region_min)
		region_max >>= 1;
	if (region_max * ncls > budget) {
		ncls = (unsigned)(budget / region_max);
		if (ncls == 0) {
			gw_log("the address-space limit leaves no room for the pools; serving everything "
			       "from the next allocator");
			return -ENOMEM;
		}
	}
	const unsigned ncls_wanted = ncls;
	uint64_t total;
	void *base;

	/* a refused reservation (strict overcommit, a fragmented or nearly
	 * full address space) is retried with regions half the size, down to
	 * 64 KiB: fewer chunks, still pools */
	for (;;) {
		uint64_t biggest = 0;
		ncls = ncls_wanted;
		for (unsigned i = 0; i < ncls; i++) {
			classes[i].blocks_per_chunk = class_bpc(i, bpc);
			uint64_t chunk = (uint64_t)gw_pool_class_size(i) * classes[i].blocks_per_chunk;
			uint64_t slots = max_chunks;
			if (chunk * slots > region_max)
				slots = region_max / chunk;
			if (slots == 0) {
				/* chunks of this class do not fit: serve it from the next allocator */
				ncls = i;
				break;
			}
			classes[i].max_chunks = (uint32_t)slots;
			if (slots * chunk > biggest)
				biggest = slots * chunk;
		}
		if (ncls == 0)
			return -EINVAL;
		shift = 16;
		while ((UINT64_C(1) << shift) < biggest)
			shift++;
		total = (uint64_t)ncls << shift;
		/* shift >= 16: regions are at least 64 KiB, the largest class */
		base = total <= SIZE_MAX / 2 ? reserve_aligned((size_t)total, (size_t)1 << shift) : NULL;
		if (base)
			break;
		if (region_max <= region_min) {
			gw_count(mmap_failures);
			gw_counters_event(GW_EVENT_MMAP_FAILED, false,
					  "cannot reserve %llu MiB of address space for the pools; serving "
					  "everything from the next allocator", (unsigned long long)(total >> 20));
			return -ENOMEM;
		}
		region_max >>= 1;
	}
	if (ncls < ncls_cfg || classes[ncls - 1].max_chunks < max_chunks)
		gw_log("address space is limited: the pools reserve %llu KiB (%u classes; %u chunks "
		       "for the largest)", (unsigned long long)(total >> 10), ncls,
		       classes[ncls - 1].max_chunks);

	/* chunk metadata for every class, from one mapping */
	size_t meta = 0;
	for (unsigned i = 0; i < ncls; i++)
		meta += classes[i].max_chunks * sizeof(struct chunk);
	struct chunk *chunks = gw_os_map(GW_ALIGN_UP(meta, page));
	meta_base = chunks;
	meta_bytes = GW_ALIGN_UP(meta, page);
	if (!chunks) {
		gw_os_unmap(base, (size_t)total);
		gw_count(mmap_failures);
		return -ENOMEM;
	}

	/* a bit per page of the reservation (32 KiB for 1 GiB), pages
	 * touched only where chunks are given back */
	const size_t released_bytes = GW_ALIGN_UP(((size_t)(total / page) + 63) / 64 * 8, page);
	uint64_t *released = gw_os_map(released_bytes);
	if (!released) {
		gw_os_unmap(base, (size_t)total);
		gw_os_unmap(chunks, GW_ALIGN_UP(meta, page));
		gw_count(mmap_failures);
		return -ENOMEM;
	}

	if (pthread_key_create(&cache_key, cache_destructor) != 0) {
		gw_os_unmap(base, (size_t)total);
		gw_os_unmap(chunks, GW_ALIGN_UP(meta, page));
		gw_os_unmap(released, released_bytes);
		return -EAGAIN;
	}

	for (unsigned i = 0; i < ncls; i++) {
		struct gw_size_class *c = &classes[i];
		uint32_t size = (uint32_t)gw_pool_class_size(i);
		uint32_t tz = (uint32_t)__builtin_ctz(size), odd = size >> tz, inv = odd;

		c->index = i;
		pthread_mutex_init(CLASS_LOCK(c), NULL);
		c->size = size;
		c->chunk_bytes = (size_t)size * c->blocks_per_chunk;
		c->partial_head = NO_CHUNK;
		c->last_release_ns = gw_os_monotonic_ns();   /* the interval starts now */
		c->chunks = chunks;
		chunks += c->max_chunks;
		c->batch = cache_limit(size) / 2;
		if (c->batch == 0)
			c->batch = 1;
		/* Newton's iteration: inv * odd == 1 (mod 2^32) */
		for (int k = 0; k < 5; k++)
			inv *= 2 - odd * inv;
		gw_pool_ro[i].committed = 0;
		gw_pool_ro[i].reserved = (uintptr_t)1 << shift;
		gw_pool_ro[i].size = size;
		gw_pool_ro[i].inv = inv;
		gw_pool_ro[i].limit = UINT32_MAX / size;
		gw_pool_ro[i].tz = tz;
	}

	uintptr_t secret = 0;
	if (getrandom(&secret, sizeof(secret), GRND_NONBLOCK) != sizeof(secret))
		secret = (uintptr_t)gw_os_monotonic_ns() * UINT64_C(0x9e3779b97f4a7c15);
	secret |= 1;    /* never 0: a zeroed block must not look freed */

	release_enabled = cfg->memory.compaction_enabled && cfg->compaction.auto_compact;
	release_interval_ns = (uint64_t)cfg->compaction.compact_interval_seconds * 1000000000u;
	release_threshold = cfg->compaction.fragmentation_threshold;

	gw_pool_g.base = (uintptr_t)base;
	gw_pool_g.page_shift = (unsigned)__builtin_ctzl(page);
	gw_pool_g.released = released;
	gw_pool_g.region_shift = shift;
	gw_pool_g.nclasses = ncls;
	gw_pool_g.secret = secret;
	gw_pool_g.max_size = gw_pool_class_size(ncls - 1);
	__atomic_store_n(&gw_pool_g.span, (uintptr_t)total, __ATOMIC_RELEASE);
	__atomic_store_n(&pools_ready, true, __ATOMIC_RELEASE);
	return 0;
}

bool gw_pool_ready(void)
{
	return __atomic_load_n(&pools_ready, __ATOMIC_ACQUIRE);
}

size_t gw_pool_max_size(void)
{
	return gw_pool_ready() ? gw_pool_g.max_size : 0;
}

/* --- central lists (class lock held) ------------------------------------ */

/*
 * Mark the whole pages inside chunk idx as given back (on) or in use again,
 * in gw_pool_g.released, and return them in *lo, *hi.  Only those pages:
 * the neighbours may share the edge pages, whose blocks keep their canaries.
 * Sequentially consistent, like the free path's loads: see
 * gw_pool_free_inline.
 */
static void chunk_mark_released(struct gw_size_class *c, uint32_t idx, bool on, uintptr_t *lo,
				uintptr_t *hi)
{
	const uintptr_t page = gw_os_page_size();

	*lo = GW_ALIGN_UP((uintptr_t)chunk_start(c, idx), page);
	*hi = ((uintptr_t)chunk_start(c, idx) + c->chunk_bytes) & ~(page - 1);
	for (uintptr_t a = *lo; a < *hi; a += page) {
		uintptr_t pg = (a - gw_pool_g.base) >> gw_pool_g.page_shift;
		uint64_t bit = UINT64_C(1) << (pg & 63);
		if (on)
			__atomic_fetch_or(&gw_pool_g.released[pg >> 6], bit, __ATOMIC_SEQ_CST);
		else
			__atomic_fetch_and(&gw_pool_g.released[pg >> 6], ~bit, __ATOMIC_SEQ_CST);
	}
}

/*
 * Back a new chunk slot with memory; returns its index or NO_CHUNK.  Chunk
 * slots are committed in order; a chunk need not be a whole number of
 * pages, so the committed range grows page by page past its end.
 */
static uint32_t chunk_new(struct gw_size_class *c)
{
	const uintptr_t page = gw_os_page_size();

	if (c->used_slots >= c->max_chunks)
		return NO_CHUNK;
	uint32_t idx = c->used_slots;
	uintptr_t region = region_base(c->index);
	uintptr_t done = GW_ALIGN_UP((uintptr_t)idx * c->chunk_bytes, page);
	uintptr_t need = GW_ALIGN_UP((uintptr_t)(idx + 1) * c->chunk_bytes, page);
	if (need > done && gw_os_commit((void *)(region + done), need - done) != 0) {
		gw_count(mmap_failures);
		gw_counters_event(GW_EVENT_MMAP_FAILED, false,
				  "cannot commit a %zu-byte chunk for class %u; using the next allocator",
				  c->chunk_bytes, c->size);
		return NO_CHUNK;
	}
	c->used_slots++;
	__atomic_store_n(&gw_pool_ro[c->index].committed, (uintptr_t)c->used_slots * c->chunk_bytes,
			 __ATOMIC_RELEASE);
	struct chunk *k = &c->chunks[idx];
	memset(k, 0, sizeof(*k));
	k->backed = 1;
	c->backed_chunks++;
	partial_push(c, idx);
	return idx;
}

/*
 * Take up to 'want' blocks from the central lists, linked through their
 * first word; returns the count and the list in *head.
 */
static uint32_t central_take(struct gw_size_class *c, uint32_t want, void **head)
{
	uint32_t got = 0;
	void *list = NULL;

	while (got < want) {
		uint32_t idx = c->partial_head;
		if (idx == NO_CHUNK) {
			idx = chunk_new(c);
			if (idx == NO_CHUNK)
				break;
		}
		struct chunk *k = &c->chunks[idx];
		if (chunk_empty(c, k))
			c->empty_chunks--;
		if (!k->backed) {
			uintptr_t lo, hi;
			/* in use again before any of its blocks is handed out */
			chunk_mark_released(c, idx, false, &lo, &hi);
			k->backed = 1;
			c->backed_chunks++;
			c->released_chunks--;
		}
		while (got < want && k->free_head) {
			void **b = k->free_head;
			k->free_head = b[0];
			k->free_count--;
			b[0] = list;
			list = b;
			got++;
		}
		if (got < want && k->carved < c->blocks_per_chunk) {
			uint32_t n = want - got;
			if (n > c->blocks_per_chunk - k->carved)
				n = c->blocks_per_chunk - k->carved;
			char *start = (char *)chunk_start(c, idx) + (size_t)k->carved * c->size;
			/* link from the end so the list hands out ascending addresses;
			 * the canary makes a free of a block not yet handed out (a
			 * late double free into a chunk carved again) a double free */
			for (uint32_t i = n; i-- > 0;) {
				void **b = (void **)(start + (size_t)i * c->size);
				b[0] = list;
				b[1] = (void *)gw_pool_canary(b);
				list = b;
			}
			/* after the canaries: a free that reads 0 reads this (gw_pool_zero_is_free) */
			__atomic_store_n(&k->carved, k->carved + n, __ATOMIC_RELEASE);
			c->carved_blocks += n;
			got += n;
		}
		if (!k->free_head && k->carved == c->blocks_per_chunk)
			partial_remove(c, idx);
	}
	if (got < want)
		c->overflow++;
	*head = list;
	return got;
}

static void chunk_release(struct gw_size_class *c, uint32_t idx)
{
	struct chunk *k = &c->chunks[idx];
	uintptr_t lo, hi;

	/* marked before the pages are zeroed: a free that finds its canary
	 * gone finds the mark (gw_pool_free_inline) */
	chunk_mark_released(c, idx, true, &lo, &hi);
	if (hi > lo)
		gw_os_decommit((void *)lo, hi - lo);
	c->carved_blocks -= k->carved;
	k->free_head = NULL;
	k->free_count = 0;
	__atomic_store_n(&k->carved, 0, __ATOMIC_RELEASE);
	k->backed = 0;
	c->backed_chunks--;
	c->released_chunks++;
	c->empty_chunks--;
	partial_push(c, idx);    /* its slot can be carved again */
}

/* Blocks back into their chunks' free lists; true if a chunk became empty. */
static bool chunks_put(struct gw_size_class *c, void *list, uint32_t n)
{
	bool new_empty = false;

	while (n-- && list) {
		void **b = list;
		list = b[0];
		struct chunk *k = chunk_of(c, b);
		b[0] = k->free_head;
		k->free_head = b;
		k->free_count++;
		if (!k->on_partial)
			partial_push(c, (uint32_t)(k - c->chunks));
		if (k->free_count == k->carved) {
			c->empty_chunks++;
			new_empty = true;
		}
	}
	return new_empty;
}

/* Bundles of the transfer cache into the chunk lists: chunks only look
 * empty once their blocks are there. */
static void xfer_drain(struct gw_size_class *c)
{
	while (c->nxfer) {
		c->nxfer--;
		chunks_put(c, c->xfer[c->nxfer].head, c->xfer[c->nxfer].count);
	}
}

/* Release empty chunks, keeping one for reuse; returns how many. */
static unsigned class_release(struct gw_size_class *c, bool force, uint64_t now)
{
	unsigned released = 0;

	if (!force) {
		uint64_t free_blocks = c->carved_blocks - (c->total_allocated - c->total_freed);
		double frag = c->carved_blocks ? (double)free_blocks / (double)c->carved_blocks : 0;
		if (now - c->last_release_ns < release_interval_ns && frag <= release_threshold)
			return 0;
	}
	xfer_drain(c);
	if (c->empty_chunks <= 1 && !(force && c->empty_chunks))
		return 0;
	c->last_release_ns = now;
	uint64_t keep = force ? 0 : 1;
	for (uint32_t i = 0; i < c->used_slots && c->empty_chunks > keep; i++) {
		if (chunk_empty(c, &c->chunks[i])) {
			chunk_release(c, i);
			released++;
		}
	}
	return released;
}

/* Give blocks back to their chunks' free lists, releasing chunks when due. */
static void central_put(struct gw_size_class *c, void *list, uint32_t n)
{
	if (chunks_put(c, list, n) && release_enabled)
		class_release(c, false, gw_os_monotonic_ns());
}

/* --- statistics of one class (class lock held) -------------------------- */

static struct gwmem_shm_class class_snapshot(const struct gw_size_class *c, uint64_t allocs,
					     uint64_t frees)
{
	struct gwmem_shm_class s = {
		.block_size = c->size,
		.total_allocated = c->total_allocated + allocs,
		.total_freed = c->total_freed + frees,
		.total_chunks = c->backed_chunks,
		.released_chunks = c->released_chunks,
		.overflow = c->overflow,
	};
	/*
	 * Threads' deltas are read one after another without stopping them: a
	 * block allocated by one thread after its bin was read and freed by
	 * another before its bin was read counts as freed but not allocated.
	 * Published totals are therefore clamped; they settle at the next fold.
	 */
	if (s.total_freed > s.total_allocated)
		s.total_freed = s.total_allocated;
	s.active_blocks = s.total_allocated - s.total_freed;
	s.free_blocks = c->carved_blocks >= s.active_blocks ? c->carved_blocks - s.active_blocks : 0;
	return s;
}

/*
 * Write the class totals to the segment whenever blocks move between a
 * thread cache and the central lists, so readers never wait for the
 * periodic publish (which also adds the deltas still held by threads).
 */
static inline void class_publish(const struct gw_size_class *c)
{
	struct gwmem_shm_class *area = __atomic_load_n(&stats_area, __ATOMIC_ACQUIRE);

	if (area)
		area[c->index] = class_snapshot(c, 0, 0);
}

/* --- thread caches ------------------------------------------------------ */

static inline uint64_t bin_frees(const struct gw_pool_bin *bin)
{
	int64_t f = (int64_t)bin->count - bin->moved + (int64_t)bin->allocs;
	return f > 0 ? (uint64_t)f : 0;
}

static void fold_bin(struct gw_size_class *c, struct gw_pool_bin *bin)
{
	c->total_allocated += bin->allocs;
	c->total_freed += bin_frees(bin);
	bin->allocs = 0;
	bin->moved = bin->count;
}

static void cache_setup(struct gw_pool_cache *tc)
{
	for (unsigned i = 0; i < gw_pool_g.nclasses; i++)
		tc->bins[i].limit = cache_limit(classes[i].size);
	tc->tid = gw_os_gettid();
	pthread_mutex_lock(&registry_lock);
	tc->prev = NULL;
	tc->next = registry;
	if (registry)
		registry->prev = tc;
	registry = tc;
	pthread_mutex_unlock(&registry_lock);
	tc->state = CACHE_ACTIVE;
	/* may allocate (glibc's second-level key array): the cache is usable already */
	pthread_setspecific(cache_key, tc);
}

static void registry_unlink(struct gw_pool_cache *tc)
{
	if (tc->prev)
		tc->prev->next = tc->next;
	else if (registry == tc)
		registry = tc->next;
	if (tc->next)
		tc->next->prev = tc->prev;
	tc->next = tc->prev = NULL;
}

/* Move every cached block of tc back to the central lists (tc not running). */
static void cache_drain(struct gw_pool_cache *tc)
{
	for (unsigned i = 0; i < gw_pool_g.nclasses; i++) {
		struct gw_pool_bin *bin = &tc->bins[i];
		struct gw_size_class *c = &classes[i];
		pthread_mutex_lock(CLASS_LOCK(c));
		fold_bin(c, bin);
		central_put(c, bin->head, bin->count);
		class_publish(c);
		pthread_mutex_unlock(CLASS_LOCK(c));
		bin->head = NULL;
		bin->count = 0;
		bin->moved = 0;
	}
}

static void cache_destructor(void *arg)
{
	struct gw_pool_cache *tc = arg;

	cache_drain(tc);
	pthread_mutex_lock(&registry_lock);
	registry_unlink(tc);
	pthread_mutex_unlock(&registry_lock);
	/* allocations made by later destructors go straight to the central lists */
	for (unsigned i = 0; i < gw_pool_g.nclasses; i++)
		tc->bins[i].limit = 0;
	tc->state = CACHE_DEAD;
}

void *gw_pool_alloc_slow(unsigned cls)
{
	struct gw_pool_cache *tc = &gw_pool_tc;
	struct gw_pool_bin *bin = &tc->bins[cls];
	struct gw_size_class *c = &classes[cls];
	void *list;

	if (gw_unlikely(!gw_pool_ready()))
		return NULL;
	if (gw_unlikely(tc->state == CACHE_NEW))
		cache_setup(tc);
	if (bin->head) {
		/* the fast path saw a link outside the class: the list is corrupt */
		gw_counters_event(GW_EVENT_INVALID_FREE, true,
				  "corrupted free list in class %u (write after free?); dropping %u cached blocks",
				  c->size, bin->count);
		gw_count(invalid_frees);
		bin->head = NULL;
		bin->count = 0;
	}
	uint32_t want = tc->state == CACHE_DEAD ? 1 : c->batch;
	pthread_mutex_lock(CLASS_LOCK(c));
	fold_bin(c, bin);
	uint32_t got;
	if (c->nxfer) {
		c->nxfer--;
		list = c->xfer[c->nxfer].head;
		got = c->xfer[c->nxfer].count;
	} else {
		got = central_take(c, want, &list);
	}
	class_publish(c);
	pthread_mutex_unlock(CLASS_LOCK(c));
	if (got == 0)
		return NULL;
	void **b = list;
	bin->head = b[0];
	bin->count = got - 1;
	bin->moved += got;
	bin->allocs++;
	__atomic_store_n((uintptr_t *)&b[1], GW_POOL_LIVE, __ATOMIC_RELAXED);
	if (tc->state == CACHE_DEAD) {
		/* nothing may stay cached in a dead thread's cache */
		pthread_mutex_lock(CLASS_LOCK(c));
		fold_bin(c, bin);
		central_put(c, bin->head, bin->count);
		pthread_mutex_unlock(CLASS_LOCK(c));
		bin->head = NULL;
		bin->count = 0;
		bin->moved = 0;
	}
	return b;
}

void gw_pool_free_slow(void *p, unsigned cls)
{
	struct gw_pool_cache *tc = &gw_pool_tc;
	struct gw_pool_bin *bin = &tc->bins[cls];
	struct gw_size_class *c = &classes[cls];
	void **b = p;

	if (tc->state == CACHE_NEW) {
		cache_setup(tc);
		if (bin->count < bin->limit) {
			b[0] = bin->head;
			bin->head = b;
			bin->count++;
			return;
		}
	}
	/* flush the block and half the cache (all of it in a dead thread) as
	 * one NULL-terminated list */
	uint32_t n = tc->state == CACHE_DEAD ? bin->count : bin->count / 2;
	void *list = bin->head, *rest = list;
	void **last = NULL;
	for (uint32_t i = 0; i < n; i++) {
		last = rest;
		rest = last[0];
	}
	if (last)
		last[0] = NULL;
	/* p counts as freed into the cache, then leaves with the n others */
	bin->head = rest;
	bin->count -= n;
	bin->moved -= (int64_t)n + 1;
	b[0] = n ? list : NULL;
	pthread_mutex_lock(CLASS_LOCK(c));
	fold_bin(c, bin);
	if (c->nxfer < XFER_SLOTS) {
		c->xfer[c->nxfer].head = b;
		c->xfer[c->nxfer].count = n + 1;
		c->nxfer++;
	} else {
		central_put(c, b, n + 1);
	}
	class_publish(c);
	pthread_mutex_unlock(CLASS_LOCK(c));
}

void gw_pool_bad_free(void *p, enum gw_pool_misuse why)
{
	switch (why) {
	case GW_POOL_DOUBLE_FREE:
		gw_count(double_frees);
		gw_counters_event(GW_EVENT_DOUBLE_FREE, true,
				  "double free of %p (block is already free); ignored", p);
		break;
	case GW_POOL_FREED_REALLOC:
		gw_count(double_frees);
		gw_counters_event(GW_EVENT_DOUBLE_FREE, true,
				  "realloc of %p, which is already free; returning NULL (EINVAL)", p);
		break;
	case GW_POOL_INVALID_REALLOC:
		gw_count(invalid_frees);
		gw_counters_event(GW_EVENT_INVALID_FREE, true,
				  "realloc of %p, which is not a block the pools handed out; returning NULL "
				  "(EINVAL)", p);
		break;
	default:
		gw_count(invalid_frees);
		gw_counters_event(GW_EVENT_INVALID_FREE, true,
				  "free of %p, which is not a block the pools handed out; ignored", p);
		break;
	}
}

/* --- the non-inline API ------------------------------------------------- */

void *gw_pool_alloc(size_t n)
{
	if (!gw_pool_ready() || n > gw_pool_g.max_size)
		return NULL;
	return gw_pool_alloc_inline(n);
}

void *gw_pool_alloc_aligned(size_t n, size_t align)
{
	if (align <= 16)
		return gw_pool_alloc(n);
	/* power-of-two classes hand out blocks aligned to their size */
	size_t want = n > align ? n : align;
	if (want & (want - 1))
		want = (size_t)1 << (sizeof(size_t) * 8 - (size_t)__builtin_clzl(want));
	if (!gw_pool_ready() || want > gw_pool_g.max_size)
		return NULL;
	return gw_pool_alloc_inline(want);
}

bool gw_pool_owns(const void *p)
{
	return gw_pool_owns_inline(p);
}

void gw_pool_free(void *p)
{
	if (!gw_pool_owns_inline(p)) {
		gw_pool_bad_free(p, GW_POOL_INVALID_FREE);
		return;
	}
	gw_pool_free_inline(p);
}

uint32_t gw_pool_class_blocks(unsigned cls)
{
	uint64_t n;

	if (!pools_ready || cls >= gw_pool_g.nclasses)
		return 0;
	n = (uint64_t)classes[cls].max_chunks * classes[cls].blocks_per_chunk;
	return n < UINT32_MAX ? (uint32_t)n : UINT32_MAX;
}

size_t gw_pool_usable_size(const void *p)
{
	uintptr_t off = (uintptr_t)p - gw_pool_g.base;

	if (off >= gw_pool_g.span)
		return 0;
	unsigned cls = (unsigned)(off >> gw_pool_g.region_shift);
	uintptr_t roff = off & (((uintptr_t)1 << gw_pool_g.region_shift) - 1);
	if (roff >= gw_pool_ro[cls].committed || roff % gw_pool_ro[cls].size)
		return 0;
	return gw_pool_ro[cls].size;
}

int gw_pool_check_realloc(void *p)
{
	if (gw_pool_usable_size(p) == 0) {
		gw_pool_bad_free(p, GW_POOL_INVALID_REALLOC);
		return GW_POOL_INVALID_REALLOC;
	}
	uintptr_t word = __atomic_load_n((uintptr_t *)p + 1, __ATOMIC_SEQ_CST);
	if (word == gw_pool_canary(p) || (word == 0 && gw_pool_zero_is_free(p))) {
		gw_pool_bad_free(p, GW_POOL_FREED_REALLOC);
		return GW_POOL_FREED_REALLOC;
	}
	return 0;
}

bool gw_pool_zero_is_free(const void *p)
{
	uintptr_t off = (uintptr_t)p - gw_pool_g.base;

	/* first the page: a release marks it before it zeroes it, and clears
	 * carved only after (chunk_release) */
	if (gw_pool_page_released(off))
		return true;
	/*
	 * Then the carved count, read without the class lock: a live block was
	 * carved before it was handed out, under the lock, and its free comes
	 * after that (the program's own order), so a live block is always below
	 * it; a chunk's count drops (to 0) only when every block is free.
	 */
	struct gw_size_class *c = &classes[off >> gw_pool_g.region_shift];
	uintptr_t roff = off & (((uintptr_t)1 << gw_pool_g.region_shift) - 1);
	const struct chunk *k = &c->chunks[roff / c->chunk_bytes];
	uint32_t i = (uint32_t)((roff % c->chunk_bytes) / c->size);
	return i >= __atomic_load_n(&k->carved, __ATOMIC_ACQUIRE);
}

/* --- giving address space back ------------------------------------------ */

uint64_t gw_pool_trim(void)
{
	static int done;
	const uintptr_t page = gw_os_page_size();

	if (!gw_pool_ready() || __atomic_exchange_n(&done, 1, __ATOMIC_ACQ_REL))
		return 0;
	const uintptr_t region = (uintptr_t)1 << gw_pool_g.region_shift;
	uint64_t given = 0;
	/*
	 * First stop growth and publish the new bounds, then the flag, and
	 * only then unmap: an address in a hole can only be someone else's
	 * after the unmap, by which time every reader checks the bounds.  A
	 * class keeps its chunks up to the last one that holds memory; the
	 * empty ones are released first, and released ones past that last
	 * one leave the partial list (they can never be carved again).
	 */
	for (unsigned i = 0; i < gw_pool_g.nclasses; i++) {
		struct gw_size_class *c = &classes[i];
		pthread_mutex_lock(CLASS_LOCK(c));
		class_release(c, true, gw_os_monotonic_ns());
		uint32_t slots = c->used_slots;
		while (slots > 0 && !c->chunks[slots - 1].backed)
			slots--;
		for (uint32_t k = slots; k < c->used_slots; k++) {
			partial_remove(c, k);
			c->released_chunks--;
		}
		c->used_slots = c->max_chunks = slots;
		/* chunk_new commits up to this page boundary, no further */
		uintptr_t keep = GW_ALIGN_UP((uintptr_t)slots * c->chunk_bytes, page);
		__atomic_store_n(&gw_pool_ro[i].reserved, keep, __ATOMIC_RELEASE);
		/* the chunks past it held no block: none of it is a block any more */
		if (gw_pool_ro[i].committed > (uintptr_t)slots * c->chunk_bytes)
			__atomic_store_n(&gw_pool_ro[i].committed, (uintptr_t)slots * c->chunk_bytes,
					 __ATOMIC_RELEASE);
		class_publish(c);
		pthread_mutex_unlock(CLASS_LOCK(c));
	}
	__atomic_store_n(&gw_pool_g.trimmed, 1u, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < gw_pool_g.nclasses; i++) {
		uintptr_t keep = gw_pool_ro[i].reserved;
		if (keep < region) {
			gw_os_unmap((void *)(region_base(i) + keep), (size_t)(region - keep));
			given += region - keep;
		}
	}
	/* the pages of chunk metadata that hold no slot a class still has:
	 * never read again (chunk_new stops at max_chunks, and every block
	 * left is in a chunk below it) */
	for (uintptr_t a = (uintptr_t)meta_base; a < (uintptr_t)meta_base + meta_bytes; a += page) {
		bool used = false;
		for (unsigned i = 0; i < gw_pool_g.nclasses && !used; i++) {
			uintptr_t lo = (uintptr_t)classes[i].chunks;
			uintptr_t hi = (uintptr_t)(classes[i].chunks + classes[i].used_slots);
			used = hi > lo && lo < a + page && hi > a;
		}
		if (!used) {
			gw_os_unmap((void *)a, page);
			given += page;
		}
	}
	return given;
}

/* --- statistics --------------------------------------------------------- */

unsigned gw_pool_stats(struct gwmem_shm_class *out, unsigned max)
{
	unsigned n = gw_pool_g.nclasses < max ? gw_pool_g.nclasses : max;

	if (!gw_pool_ready())
		return 0;
	pthread_mutex_lock(&registry_lock);
	for (unsigned i = 0; i < n; i++) {
		struct gw_size_class *c = &classes[i];
		uint64_t allocs = 0, frees = 0;
		/* other threads' deltas are read racily: statistics, not accounting */
		for (struct gw_pool_cache *tc = registry; tc; tc = tc->next) {
			struct gw_pool_bin bin = tc->bins[i];
			allocs += bin.allocs;
			frees += bin_frees(&bin);
		}
		pthread_mutex_lock(CLASS_LOCK(c));
		out[i] = class_snapshot(c, allocs, frees);
		pthread_mutex_unlock(CLASS_LOCK(c));
	}
	pthread_mutex_unlock(&registry_lock);
	return n;
}

static void publish_stats(void)
{
	struct gwmem_shm_class tmp[GW_POOL_MAX_CLASSES];
	unsigned n;

	struct gwmem_shm_class *area = __atomic_load_n(&stats_area, __ATOMIC_ACQUIRE);
	uint32_t *nclasses = __atomic_load_n(&stats_nclasses, __ATOMIC_ACQUIRE);

	if (!area || !nclasses)
		return;
	n = gw_pool_stats(tmp, GW_POOL_MAX_CLASSES);
	memcpy(area, tmp, n * sizeof(tmp[0]));
	__atomic_store_n(nclasses, n, __ATOMIC_RELEASE);
}

void gw_pool_attach_stats(struct gwmem_shm_class *area, uint32_t *nclasses)
{
	__atomic_store_n(&stats_nclasses, nclasses, __ATOMIC_RELEASE);
	__atomic_store_n(&stats_area, area, __ATOMIC_RELEASE);
	publish_stats();
}

void gw_pool_detach_stats(void)
{
	__atomic_store_n(&stats_area, NULL, __ATOMIC_RELEASE);
	__atomic_store_n(&stats_nclasses, NULL, __ATOMIC_RELEASE);
}

unsigned gw_pool_release(bool force)
{
	unsigned released = 0;
	uint64_t now = gw_os_monotonic_ns();

	if (!gw_pool_ready())
		return 0;
	if (force || release_enabled) {
		for (unsigned i = 0; i < gw_pool_g.nclasses; i++) {
			pthread_mutex_lock(&class_locks[i].m);
			released += class_release(&classes[i], force, now);
			class_publish(&classes[i]);
			pthread_mutex_unlock(&class_locks[i].m);
		}
	}
	publish_stats();
	return released;
}

void gw_pool_print_stats(int fd)
{
	struct gwmem_shm_class s[GW_POOL_MAX_CLASSES];
	unsigned n = gw_pool_stats(s, GW_POOL_MAX_CLASSES);
	char mem[256];
	uint64_t total_active = 0, total_bytes = 0, total_chunk_bytes = 0;
	static const char hdr[] =
		"gwmem:  class   allocated       freed    active      free  chunks  released  overflow   util\n";

	gw_snprintf(mem, sizeof(mem), "gwmem: pool statistics for pid %d\n", (int)getpid());
	gw_write_all(fd, mem, strlen(mem));
	gw_write_all(fd, hdr, sizeof(hdr) - 1);
	for (unsigned i = 0; i < n; i++) {
		if (!s[i].total_allocated && !s[i].total_chunks)
			continue;
		uint64_t cap = s[i].total_chunks * classes[i].blocks_per_chunk;
		double util = cap ? (double)s[i].active_blocks / (double)cap : 0;
		struct gw_buf b = GW_BUF_INIT(mem);
		gw_buf_puts(&b, "gwmem: ");
		gw_buf_u64_width(&b, s[i].block_size, 6);
		gw_buf_u64_width(&b, s[i].total_allocated, 12);
		gw_buf_u64_width(&b, s[i].total_freed, 12);
		gw_buf_u64_width(&b, s[i].active_blocks, 10);
		gw_buf_u64_width(&b, s[i].free_blocks, 10);
		gw_buf_u64_width(&b, s[i].total_chunks, 8);
		gw_buf_u64_width(&b, s[i].released_chunks, 10);
		gw_buf_u64_width(&b, s[i].overflow, 10);
		gw_format(&b, "  %.3f\n", util);
		gw_write_all(fd, mem, b.len < sizeof(mem) ? b.len : sizeof(mem) - 1);
		total_active += s[i].active_blocks;
		total_bytes += s[i].active_blocks * s[i].block_size;
		total_chunk_bytes += s[i].total_chunks * classes[i].chunk_bytes;
	}
	struct gw_buf b = GW_BUF_INIT(mem);
	gw_format(&b, "gwmem: total: %llu active blocks, %llu bytes in blocks, %llu bytes of chunks; "
		  "invalid frees %llu, double frees %llu, forwarded allocations %llu\n",
		  (unsigned long long)total_active, (unsigned long long)total_bytes,
		  (unsigned long long)total_chunk_bytes,
		  (unsigned long long)gw_counters->invalid_frees,
		  (unsigned long long)gw_counters->double_frees,
		  (unsigned long long)gw_counters->forwarded_allocs);
	gw_write_all(fd, mem, b.len < sizeof(mem) ? b.len : sizeof(mem) - 1);
}

/* --- fork --------------------------------------------------------------- */

void gw_pool_atfork_prepare(void)
{
	if (!gw_pool_ready())
		return;
	pthread_mutex_lock(&registry_lock);
	for (unsigned i = 0; i < gw_pool_g.nclasses; i++)
		pthread_mutex_lock(&class_locks[i].m);
}

void gw_pool_atfork_parent(void)
{
	if (!gw_pool_ready())
		return;
	for (unsigned i = gw_pool_g.nclasses; i-- > 0;)
		pthread_mutex_unlock(&class_locks[i].m);
	pthread_mutex_unlock(&registry_lock);
}

void gw_pool_atfork_child(void)
{
	if (!gw_pool_ready())
		return;
	for (unsigned i = 0; i < gw_pool_g.nclasses; i++)
		pthread_mutex_init(&class_locks[i].m, NULL);
	pthread_mutex_init(&registry_lock, NULL);
	/* the other threads are gone in the child: their cached blocks come back */
	struct gw_pool_cache *self = &gw_pool_tc;
	struct gw_pool_cache *tc = registry;
	while (tc) {
		struct gw_pool_cache *next = tc->next;
		if (tc != self) {
			cache_drain(tc);
			registry_unlink(tc);
		}
		tc = next;
	}
}
