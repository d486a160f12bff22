/*
 * compact.c - the compacting heap of the public API (gwmem_heap_*).
 *
 * Definitions:
 *  - granule: 16 bytes; every size and offset in the arena counts granules
 *    (uint32_t, so an arena may hold up to 64 GiB).
 *  - block: a 16-byte header followed by the payload; blocks tile the arena
 *    with no gap.  The header holds the block's size and its predecessor's
 *    size (boundary tags, for O(1) coalescing), and for a used block the
 *    handle-table slot that owns it.  A free block keeps its free-list links
 *    in its first payload granule, so a block is at least 2 granules.
 *  - bins: segregated free lists; one per exact size below 64 granules, then
 *    four per power of two.  A bitmap of non-empty bins finds, in a few word
 *    operations, the smallest bin whose every block fits the request (TLSF's
 *    good fit); only if there is none is the request's own bin scanned.
 *  - handle: (generation << 32) | (slot + 1).  A slot's generation changes
 *    each time its block is freed, so an old handle never matches again.
 *  - pin: a per-slot count; a pinned block is never moved, and cannot be
 *    freed until unpinned.
 *
 * Compaction slides every unpinned used block towards the start of the
 * arena in address order (memmove, then the slot's offset is updated);
 * pinned blocks stay, and the space left before each becomes one free block.
 * The heap has one mutex; a pinned pointer may be used without it.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "gwmem.h"
#include "fmt.h"
#include "hook.h"
#include "internal.h"
#include "os.h"

#define GRANULE 16u
#define MIN_BLOCK 2u
#define NONE UINT32_MAX
#define EXACT_BINS 64u
#define NBINS (EXACT_BINS + 26u * 4u)
#define BITMAP_WORDS ((NBINS + 63) / 64)

#define BLK_FREE 1u

struct blk {
	uint32_t size;    /* granules, header included */
	uint32_t prev;    /* granules of the previous block; 0 for the first */
	uint32_t slot;    /* used: handle slot + 1; free: 0 */
	uint32_t flags;
};

struct fblk {
	struct blk h;
	uint32_t next;    /* free-list links, granule offsets or NONE */
	uint32_t prevf;
};

struct slot {
	uint32_t off;     /* live: block offset; free: next free slot or NONE */
	uint32_t gen;
	uint32_t pins;
	uint32_t live;
	size_t size;      /* bytes requested */
};

struct gwmem_heap {
	pthread_mutex_t lock;
	uint8_t *arena;
	uint32_t ngran;
	bool own_arena;
	size_t arena_map_size;
	size_t self_size;
	double threshold;
	bool auto_compact;
	unsigned tag;

	uint32_t bins[NBINS];
	uint64_t binmap[BITMAP_WORDS];

	struct slot *slots;
	uint32_t nslots;
	uint32_t free_slot;

	size_t used_gran;
	size_t free_gran;
	size_t nused;
	size_t nfree;
	size_t npinned;
	uint64_t compactions;
	uint64_t bytes_moved;
	uint64_t stale;
	size_t peak_used_gran;    /* high-water marks, to size the arena */
	size_t peak_used;
};

static inline struct blk *at(const struct gwmem_heap *hp, uint32_t off)
{
	return (struct blk *)(hp->arena + (size_t)off * GRANULE);
}

static inline struct fblk *fat(const struct gwmem_heap *hp, uint32_t off)
{
	return (struct fblk *)at(hp, off);
}

static inline unsigned flog2(uint32_t v)
{
	return 31u - (unsigned)__builtin_clz(v);
}

static inline unsigned bin_of(uint32_t g)
{
	unsigned l;

	if (g < EXACT_BINS)
		return g;
	l = flog2(g);
	return EXACT_BINS + (l - 6) * 4 + ((g >> (l - 2)) & 3);
}

/* --- free lists --------------------------------------------------------- */

static void bin_insert(struct gwmem_heap *hp, uint32_t off)
{
	struct fblk *f = fat(hp, off);
	unsigned b = bin_of(f->h.size);

	f->h.flags = BLK_FREE;
	f->h.slot = 0;
	f->prevf = NONE;
	f->next = hp->bins[b];
	if (f->next != NONE)
		fat(hp, f->next)->prevf = off;
	hp->bins[b] = off;
	hp->binmap[b / 64] |= (uint64_t)1 << (b % 64);
	hp->free_gran += f->h.size;
	hp->nfree++;
}

static void bin_remove(struct gwmem_heap *hp, uint32_t off)
{
	struct fblk *f = fat(hp, off);
	unsigned b = bin_of(f->h.size);

	if (f->prevf != NONE)
		fat(hp, f->prevf)->next = f->next;
	else
		hp->bins[b] = f->next;
	if (f->next != NONE)
		fat(hp, f->next)->prevf = f->prevf;
	if (hp->bins[b] == NONE)
		hp->binmap[b / 64] &= ~((uint64_t)1 << (b % 64));
	f->h.flags = 0;
	hp->free_gran -= f->h.size;
	hp->nfree--;
}

/* First non-empty bin >= b, or NBINS. */
static unsigned bin_next(const struct gwmem_heap *hp, unsigned b)
{
	for (unsigned w = b / 64; w < BITMAP_WORDS; w++) {
		uint64_t m = hp->binmap[w];

		if (w == b / 64)
			m &= ~(uint64_t)0 << (b % 64);
		if (m)
			return w * 64 + (unsigned)__builtin_ctzll(m);
	}
	return NBINS;
}

/* A free block of at least g granules, removed from its bin, or NONE. */
static uint32_t find_fit(struct gwmem_heap *hp, uint32_t g)
{
	unsigned b = bin_of(g);
	unsigned nb;
	uint32_t off;

	/* Exact bins: every block in bin b fits.  Log bins: bins above b do. */
	nb = bin_next(hp, b < EXACT_BINS ? b : b + 1);
	if (nb < NBINS) {
		off = hp->bins[nb];
		bin_remove(hp, off);
		return off;
	}
	if (b >= EXACT_BINS) {
		for (off = hp->bins[b]; off != NONE; off = fat(hp, off)->next) {
			if (at(hp, off)->size >= g) {
				bin_remove(hp, off);
				return off;
			}
		}
	}
	return NONE;
}

static size_t largest_free(const struct gwmem_heap *hp)
{
	uint32_t best = 0;

	for (int b = (int)NBINS - 1; b >= 0; b--) {
		if (!(hp->binmap[b / 64] & ((uint64_t)1 << (b % 64))))
			continue;
		for (uint32_t off = hp->bins[b]; off != NONE; off = fat(hp, off)->next)
			if (at(hp, off)->size > best)
				best = at(hp, off)->size;
		break;
	}
	return (size_t)best * GRANULE;
}

static double fragmentation(const struct gwmem_heap *hp)
{
	if (hp->free_gran == 0)
		return 0.0;
	return 1.0 - (double)largest_free(hp) / ((double)hp->free_gran * GRANULE);
}

static void reset_bins(struct gwmem_heap *hp)
{
	for (unsigned b = 0; b < NBINS; b++)
		hp->bins[b] = NONE;
	memset(hp->binmap, 0, sizeof(hp->binmap));
	hp->free_gran = 0;
	hp->nfree = 0;
}

/* Set the prev field of the block after [off, off+size), if any. */
static inline void fix_next_prev(struct gwmem_heap *hp, uint32_t off, uint32_t size)
{
	if (off + size < hp->ngran)
		at(hp, off + size)->prev = size;
}

/* --- handles ------------------------------------------------------------ */

static struct slot *lookup(struct gwmem_heap *hp, gwmem_handle_t h)
{
	uint32_t idx = (uint32_t)(h & 0xffffffffu);
	struct slot *s;

	if (idx == 0 || idx > hp->nslots)
		goto stale;
	s = &hp->slots[idx - 1];
	if (!s->live || s->gen != (uint32_t)(h >> 32))
		goto stale;
	return s;
stale:
	hp->stale++;
	return NULL;
}

/* --- create / destroy --------------------------------------------------- */

struct gwmem_heap *gwmem_heap_create(const struct gwmem_heap_options *opts)
{
	struct gwmem_heap *hp;
	size_t page = gw_os_page_size();
	size_t size, nslots, self;
	uint8_t *arena;

	if (!opts || opts->size < 4 * GRANULE) {
		errno = EINVAL;
		return NULL;
	}
	size = opts->size;
	arena = opts->memory;
	if (arena) {
		uint8_t *a = (uint8_t *)GW_ALIGN_UP((uintptr_t)arena, GRANULE);

		if ((size_t)(a - arena) >= size) {
			errno = EINVAL;
			return NULL;
		}
		size -= (size_t)(a - arena);
		arena = a;
	}
	size = size / GRANULE * GRANULE;
	if (size / GRANULE >= NONE || size < 4 * GRANULE) {
		errno = EINVAL;
		return NULL;
	}
	nslots = opts->max_handles ? opts->max_handles : size / 64;
	if (nslots == 0)
		nslots = 1;
	if (nslots >= NONE || nslots > size / (MIN_BLOCK * GRANULE))
		nslots = size / (MIN_BLOCK * GRANULE);

	self = GW_ALIGN_UP(sizeof(*hp) + nslots * sizeof(struct slot), page);
	hp = gw_os_map(self);
	if (!hp) {
		errno = ENOMEM;
		return NULL;
	}
	memset(hp, 0, sizeof(*hp));
	hp->self_size = self;
	hp->slots = (struct slot *)(hp + 1);
	hp->nslots = (uint32_t)nslots;
	if (!arena) {
		hp->arena_map_size = GW_ALIGN_UP(size, page);
		arena = gw_os_map(hp->arena_map_size);
		if (!arena) {
			gw_os_unmap(hp, self);
			errno = ENOMEM;
			return NULL;
		}
		hp->own_arena = true;
	}
	hp->arena = arena;
	hp->ngran = (uint32_t)(size / GRANULE);

	/* 0 means "compact whenever it can help"; negative means the default */
	hp->threshold = opts->fragmentation_threshold >= 0 ? opts->fragmentation_threshold : 0.3;
	hp->auto_compact = !(opts->flags & GWMEM_HEAP_NO_AUTO_COMPACT);
	if (opts->flags & GWMEM_HEAP_CONFIG) {
		struct gwmem_config cfg;

		gwmem_config_load(&cfg, NULL, GWMEM_CONFIG_QUIET);
		hp->threshold = cfg.compaction.fragmentation_threshold;
		hp->auto_compact = hp->auto_compact && cfg.compaction.auto_compact &&
				   cfg.memory.compaction_enabled;
	}

	for (uint32_t i = 0; i < hp->nslots; i++) {
		hp->slots[i].off = i + 1 < hp->nslots ? i + 1 : NONE;
		hp->slots[i].gen = 1;
	}
	hp->free_slot = 0;

	reset_bins(hp);
	at(hp, 0)->size = hp->ngran;
	at(hp, 0)->prev = 0;
	bin_insert(hp, 0);
	pthread_mutex_init(&hp->lock, NULL);
	{
		char tag[48];

		gw_snprintf(tag, sizeof(tag), "heap:%s", opts->name ? opts->name : "anon");
		hp->tag = GW_HOOK_TAG(tag);
	}
	return hp;
}

void gwmem_heap_destroy(struct gwmem_heap *hp)
{
	if (!hp)
		return;
	if (gwmem_hook_free)
		for (uint32_t i = 0; i < hp->nslots; i++)
			if (hp->slots[i].live)
				GW_HOOK_FREE(&hp->slots[i]);
	pthread_mutex_destroy(&hp->lock);
	if (hp->own_arena)
		gw_os_unmap(hp->arena, hp->arena_map_size);
	gw_os_unmap(hp, hp->self_size);
}

/* --- compaction --------------------------------------------------------- */

static unsigned compact_locked(struct gwmem_heap *hp)
{
	uint32_t off = 0, dst = 0, prev = 0;
	unsigned moved = 0;

	reset_bins(hp);
	while (off < hp->ngran) {
		struct blk *b = at(hp, off);
		uint32_t sz = b->size;

		if (b->flags & BLK_FREE) {
			off += sz;
			continue;
		}
		if (hp->slots[b->slot - 1].pins) {
			/* Stays: the space slid blocks left behind becomes one free block. */
			if (dst < off) {
				at(hp, dst)->size = off - dst;
				at(hp, dst)->prev = prev;
				bin_insert(hp, dst);
				prev = off - dst;
			}
			dst = off;
		} else if (dst != off) {
			memmove(at(hp, dst), b, (size_t)sz * GRANULE);
			b = at(hp, dst);
			hp->slots[b->slot - 1].off = dst;
			hp->bytes_moved += (size_t)sz * GRANULE;
			moved++;
		}
		b->prev = prev;
		prev = sz;
		dst += sz;
		off += sz;
	}
	if (dst < hp->ngran) {
		at(hp, dst)->size = hp->ngran - dst;
		at(hp, dst)->prev = prev;
		bin_insert(hp, dst);
	}
	hp->compactions++;
	return moved;
}

int gwmem_heap_compact(struct gwmem_heap *hp)
{
	unsigned moved;

	if (!hp)
		return -EINVAL;
	pthread_mutex_lock(&hp->lock);
	moved = compact_locked(hp);
	pthread_mutex_unlock(&hp->lock);
	return (int)(moved > INT32_MAX ? INT32_MAX : moved);
}

/* --- alloc / free ------------------------------------------------------- */

/* A free block of at least g granules, compacting first when allowed and
 * fragmentation is above the threshold (0: whenever free space would do). */
static uint32_t fit_or_compact(struct gwmem_heap *hp, uint32_t g)
{
	uint32_t off = find_fit(hp, g);

	if (off == NONE && hp->auto_compact && hp->free_gran >= g &&
	    (hp->threshold <= 0 || fragmentation(hp) > hp->threshold)) {
		compact_locked(hp);
		off = find_fit(hp, g);
	}
	return off;
}

/* Block 'off' (taken out of its bin, or used) keeps g granules; the rest,
 * if it can stand alone, becomes a free block. */
static void split(struct gwmem_heap *hp, uint32_t off, uint32_t g)
{
	struct blk *b = at(hp, off);

	if (b->size - g >= MIN_BLOCK) {
		uint32_t rest = b->size - g;

		b->size = g;
		at(hp, off + g)->size = rest;
		at(hp, off + g)->prev = g;
		fix_next_prev(hp, off + g, rest);
		bin_insert(hp, off + g);
	}
}

/* Turn block 'off' (not in any bin) into a free block, merged with free neighbours. */
static void release(struct gwmem_heap *hp, uint32_t off)
{
	struct blk *b = at(hp, off);
	uint32_t size = b->size;

	if (off + size < hp->ngran && (at(hp, off + size)->flags & BLK_FREE)) {
		uint32_t nsz = at(hp, off + size)->size;

		bin_remove(hp, off + size);
		size += nsz;
	}
	if (b->prev && (at(hp, off - b->prev)->flags & BLK_FREE)) {
		uint32_t p = off - b->prev;

		bin_remove(hp, p);
		size += at(hp, p)->size;
		off = p;
	}
	at(hp, off)->size = size;
	fix_next_prev(hp, off, size);
	bin_insert(hp, off);
}

static void note_peak(struct gwmem_heap *hp)
{
	if (hp->used_gran > hp->peak_used_gran)
		hp->peak_used_gran = hp->used_gran;
	if (hp->nused > hp->peak_used)
		hp->peak_used = hp->nused;
}

gwmem_handle_t gwmem_heap_alloc(struct gwmem_heap *hp, size_t size)
{
	uint32_t g, off, idx;
	struct slot *s;
	struct blk *b;
	gwmem_handle_t h;

	if (!hp || size == 0) {
		errno = EINVAL;
		return GWMEM_HANDLE_NULL;
	}
	if (size > (size_t)hp->ngran * GRANULE) {
		errno = ENOMEM;
		return GWMEM_HANDLE_NULL;
	}
	g = (uint32_t)((size + GRANULE - 1) / GRANULE + 1);
	if (g < MIN_BLOCK)
		g = MIN_BLOCK;

	pthread_mutex_lock(&hp->lock);
	if (hp->free_slot == NONE)
		goto nomem;
	off = fit_or_compact(hp, g);
	if (off == NONE)
		goto nomem;

	b = at(hp, off);
	split(hp, off, g);
	idx = hp->free_slot;
	s = &hp->slots[idx];
	hp->free_slot = s->off;
	s->off = off;
	s->live = 1;
	s->pins = 0;
	s->size = size;
	b->slot = idx + 1;
	b->flags = 0;
	hp->used_gran += b->size;
	hp->nused++;
	note_peak(hp);
	h = ((gwmem_handle_t)s->gen << 32) | (idx + 1);
	pthread_mutex_unlock(&hp->lock);
	GW_HOOK_ALLOC(s, size, hp->tag);
	return h;

nomem:
	pthread_mutex_unlock(&hp->lock);
	errno = ENOMEM;
	return GWMEM_HANDLE_NULL;
}

int gwmem_heap_free(struct gwmem_heap *hp, gwmem_handle_t h)
{
	struct slot *s;
	uint32_t off, size, idx;
	struct blk *b;

	if (!hp)
		return -EINVAL;
	pthread_mutex_lock(&hp->lock);
	s = lookup(hp, h);
	if (!s) {
		pthread_mutex_unlock(&hp->lock);
		return -ESTALE;
	}
	if (s->pins) {
		pthread_mutex_unlock(&hp->lock);
		return -EBUSY;
	}
	off = s->off;
	b = at(hp, off);
	size = b->size;
	hp->used_gran -= size;
	hp->nused--;

	idx = (uint32_t)(s - hp->slots);
	s->live = 0;
	if (++s->gen == 0)
		s->gen = 1;
	s->off = hp->free_slot;
	hp->free_slot = idx;
	(void)b;
	release(hp, off);
	pthread_mutex_unlock(&hp->lock);
	GW_HOOK_FREE(s);
	return 0;
}

int gwmem_heap_realloc(struct gwmem_heap *hp, gwmem_handle_t h, size_t size)
{
	uint32_t g, off, cur, noff;
	struct slot *s;
	int ret = 0;

	if (!hp || size == 0)
		return -EINVAL;
	if (size > (size_t)hp->ngran * GRANULE)
		return -ENOMEM;
	g = (uint32_t)((size + GRANULE - 1) / GRANULE + 1);
	if (g < MIN_BLOCK)
		g = MIN_BLOCK;
	pthread_mutex_lock(&hp->lock);
	s = lookup(hp, h);
	if (!s) {
		ret = -ESTALE;
		goto out;
	}
	off = s->off;
	cur = at(hp, off)->size;
	if (g <= cur) {
		/* Shrink in place; the tail joins the free block after it. */
		if (cur - g >= MIN_BLOCK) {
			at(hp, off)->size = g;
			at(hp, off + g)->size = cur - g;
			at(hp, off + g)->prev = g;
			at(hp, off + g)->flags = 0;
			fix_next_prev(hp, off + g, cur - g);
			release(hp, off + g);
			hp->used_gran -= cur - g;
		}
		goto done;
	}
	if (off + cur < hp->ngran && (at(hp, off + cur)->flags & BLK_FREE) &&
	    cur + at(hp, off + cur)->size >= g) {
		/* Grow in place into the free block that follows. */
		uint32_t nsz = at(hp, off + cur)->size;

		bin_remove(hp, off + cur);
		at(hp, off)->size = cur + nsz;
		fix_next_prev(hp, off, cur + nsz);
		split(hp, off, g);
		hp->used_gran += at(hp, off)->size - cur;
		goto done;
	}
	if (s->pins) {
		ret = -EBUSY;
		goto out;
	}
	/* Move: a compaction may slide this very block, so read its offset after. */
	noff = fit_or_compact(hp, g);
	if (noff == NONE) {
		ret = -ENOMEM;
		goto out;
	}
	off = s->off;
	cur = at(hp, off)->size;
	/* find_fit() took noff out of its bin; keep its header, copy the payload */
	split(hp, noff, g);
	memcpy(at(hp, noff) + 1, at(hp, off) + 1, (size_t)(cur - 1) * GRANULE);
	at(hp, noff)->flags = 0;
	at(hp, noff)->slot = (uint32_t)(s - hp->slots) + 1;
	s->off = noff;
	hp->used_gran += at(hp, noff)->size;
	hp->used_gran -= cur;
	at(hp, off)->flags = 0;
	release(hp, off);
	hp->bytes_moved += (size_t)cur * GRANULE;
done:
	s->size = size;
	note_peak(hp);
out:
	pthread_mutex_unlock(&hp->lock);
	return ret;
}

void *gwmem_heap_pin(struct gwmem_heap *hp, gwmem_handle_t h)
{
	struct slot *s;
	void *p;

	if (!hp) {
		errno = EINVAL;
		return NULL;
	}
	pthread_mutex_lock(&hp->lock);
	s = lookup(hp, h);
	if (!s) {
		pthread_mutex_unlock(&hp->lock);
		errno = ESTALE;
		return NULL;
	}
	if (s->pins++ == 0)
		hp->npinned++;
	p = (uint8_t *)at(hp, s->off) + sizeof(struct blk);
	pthread_mutex_unlock(&hp->lock);
	return p;
}

int gwmem_heap_unpin(struct gwmem_heap *hp, gwmem_handle_t h)
{
	struct slot *s;
	int ret = 0;

	if (!hp)
		return -EINVAL;
	pthread_mutex_lock(&hp->lock);
	s = lookup(hp, h);
	if (!s)
		ret = -ESTALE;
	else if (s->pins == 0)
		ret = -EINVAL;
	else if (--s->pins == 0)
		hp->npinned--;
	pthread_mutex_unlock(&hp->lock);
	return ret;
}

size_t gwmem_heap_size(struct gwmem_heap *hp, gwmem_handle_t h)
{
	struct slot *s;
	size_t n = 0;

	if (!hp) {
		errno = EINVAL;
		return 0;
	}
	pthread_mutex_lock(&hp->lock);
	s = lookup(hp, h);
	if (s)
		n = s->size;
	pthread_mutex_unlock(&hp->lock);
	if (!s)
		errno = ESTALE;
	return n;
}

int gwmem_heap_info(struct gwmem_heap *hp, struct gwmem_heap_info *out)
{
	if (!hp || !out)
		return -EINVAL;
	pthread_mutex_lock(&hp->lock);
	memset(out, 0, sizeof(*out));
	out->total_size = (size_t)hp->ngran * GRANULE;
	out->used_memory = hp->used_gran * GRANULE;
	out->free_memory = hp->free_gran * GRANULE;
	out->largest_free = largest_free(hp);
	out->fragmentation = hp->free_gran ? 1.0 - (double)out->largest_free / (double)out->free_memory : 0.0;
	out->used_regions = hp->nused;
	out->free_blocks = hp->nfree;
	out->pinned = hp->npinned;
	out->compactions = hp->compactions;
	out->bytes_moved = hp->bytes_moved;
	out->stale_handles = hp->stale;
	out->peak_used_memory = hp->peak_used_gran * GRANULE;
	out->peak_used_regions = hp->peak_used;
	pthread_mutex_unlock(&hp->lock);
	return 0;
}
