/*
 * fixpool.c - fixed-block pools of the public API (gwmem_fixpool_*).
 *
 * Definitions:
 *  - block: block_size bytes, placed every 'stride' bytes (block_size rounded
 *    up to the alignment, itself at least a pointer's; at least one pointer:
 *    a free block holds the link
 *    of its free list in its first word and, when the stride allows, its
 *    index in the second).
 *  - index: block g starts at base + g * stride, whatever its chunk, so the
 *    index of a pointer is its offset divided by the stride: one multiply
 *    by a reciprocal, exact for every block start (see block_index()).
 *  - chunk: blocks_per_chunk blocks, back to back: chunk c holds indexes
 *    [c * bpc, (c + 1) * bpc).  Chunks are the unit of commitment; two
 *    neighbours may share a page.
 *  - reservation: max_chunks chunks of address space, reserved PROT_NONE at
 *    creation; a chunk is committed when first needed and blocks are carved
 *    from it lazily, in batches that never cross into an uncommitted chunk.
 *    'limit' is the committed length: a pointer p is a block start iff
 *    p - base < limit and (p - base) % stride == 0.
 *  - bitmap: one bit per block (thread-safe pools keep the state in the
 *    block, see block_canary(), or for 8-byte blocks one byte per block,
 *    see bit_set()), set while the block is handed out.  With the
 *    range check it makes every free O(1) and exact: foreign, interior and
 *    double frees are refused and counted, the free lists never see them.
 *  - stripe: a free list with its own lock, plus the owner's two lists.
 *    Thread-safe pools have GW_FIXPOOL_STRIPES of them, one per thread
 *    (threads are spread round robin); a thread whose stripe runs dry
 *    carves new blocks or steals another stripe's list.
 *  - owner, private list and allocation list: the first thread to allocate
 *    or free in a stripe owns it.  Its frees push onto the stripe's private
 *    list with plain stores and its allocations pop from the stripe's
 *    allocation list with plain stores: no lock, and no locked instruction
 *    on allocation.  Any other thread takes either list whole through a
 *    handshake with the owner (take_private(), take_own()), so a block on
 *    them is never hidden from an allocation that would otherwise fail.
 *    Threads that share a stripe with its owner use the locked list.
 *  - local list: the free list and counters of a single-threaded pool, in
 *    the pool's first cache line.  The fast path (gwmem_fixpool_alloc() and
 *    gwmem_fixpool_free() up to their first unlikely branch) has no lock, no
 *    atomic and no call; everything else (thread-safe pools, zeroing,
 *    strides too small to hold an index, an empty list, misuse, the
 *    leak-tracking hooks) takes the general path.
 *
 * Leaves to others: object lifetimes (objpool.c), leak tracking (the preload
 * library, reached through lib/hook.h).
 */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#ifdef __linux__
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "gwmem.h"
#include "fixpool.h"
#include "fmt.h"
#include "hook.h"
#include "internal.h"
#include "os.h"
#include "spin.h"
#include "tracker.h"

#define GW_FIXPOOL_STRIPES 16
#define GW_FIXPOOL_BATCH   32

/*
 * A refill takes another thread's private list before carving only when it
 * holds this many blocks: each take costs the owner two cache misses (its
 * flags' lines, written by the thief), so under producer/consumer a larger
 * list makes them rarer per block, for at most this many blocks more of
 * footprint per pair of threads.
 */
#define GW_FIXPOOL_STEAL_MIN 128

/* A free block's second word holds its index when the stride leaves room. */
#define GW_FIXPOOL_IDX_STRIDE (2 * sizeof(void *))

/* ceil(2^N / stride), N = 64 or 32: see off_index(). */
#ifdef __SIZEOF_INT128__
typedef uint64_t gw_recip_t;
#else
typedef uint32_t gw_recip_t;
#endif

/*
 * The first line is what the lock guards, plus 'req', which a thief writes
 * (under the lock) and the owner reads at every free; the second is written
 * by the owner alone at every free, so a producer stealing lists and a
 * consumer pushing to its private list write different lines.
 */
struct stripe {
	struct gw_spin lock;
	uint32_t req;             /* a thief is taking the private list */
	uint32_t areq;            /* a thief is taking the allocation list */
	void *head;
	uint64_t nalloc;
	uint64_t nfreed;          /* frees onto 'head' */

	uintptr_t owner GW_ALIGNED(GW_CACHELINE); /* owner_token() of the owner, 0 = none yet */
	uint32_t busy;            /* the owner is pushing onto 'priv' */
	uint32_t abusy;           /* the owner is at 'own', see own_pop() */
	void *priv;               /* private list: the owner's frees */
	uint64_t npriv;           /* its length */
	uint64_t nfreed_priv;     /* frees onto 'priv' */
	void *own;                /* allocation list: the owner's allocations */
	uint64_t nalloc_own;      /* allocations from 'own' */
} GW_ALIGNED(GW_CACHELINE);

/*
 * Invariants:
 *  - 'head' is non-NULL only in a pool without 'general': the fast path
 *    tests nothing else before popping, and every other pool lands in
 *    alloc_general() on the same test.
 *  - a block is on exactly one list (local, a stripe's, or a stripe's
 *    private or allocation list), on a list being moved between them, or
 *    handed out.
 *  - active blocks = sum(nalloc + nalloc_own) - sum(nfreed + nfreed_priv)
 *    over the local list and the stripes; each counter has one writer at a
 *    time (the stripe lock's holder; the owner for nalloc_own and
 *    nfreed_priv).
 */
struct gwmem_fixpool {
	/* First cache line: all that the fast path touches in the pool. */
	void *head;               /* local free list */
	uint64_t nalloc;          /* local counters */
	uint64_t nfreed;
	uint8_t *base;            /* block 0, aligned to 'alignment' */
	uint64_t *bitmap;
	size_t fast_limit;        /* 'limit', or 0 when 'general': fails every fast free */
	size_t stride;
	gw_recip_t recip;         /* see off_index() */
	size_t limit;             /* committed bytes, nchunks * chunk_bytes; read with acquire */
	bool general;             /* every call takes the general path */

	void *map;                /* reservation as mapped */
	size_t map_size;
	size_t nchunks;           /* committed */
	size_t chunk_bytes;       /* stride * bpc, <= 2^31 */
	size_t bpc;               /* blocks per chunk */
	size_t block_size;
	size_t alignment;
	size_t max_chunks;
	size_t bitmap_bytes;
	unsigned flags;
	unsigned tag;
	char name[32];

	struct gw_spin grow;      /* carving and committing */
	size_t carve_next;        /* index of the next block to carve */

	uint64_t failed;
	uint64_t foreign;
	uint64_t interior;
	uint64_t dbl;
	struct gw_track *track;   /* GWMEM_FIXPOOL_TRACK: records of live blocks */
	bool canary;              /* live state in the blocks, see block_canary() */
	bool owner_free;          /* frees by a stripe's owner skip its lock, see take_private() */
	bool lean;                /* thread-safe, canary, owner_free, no zeroing: see lean_alloc() */
	bool own_asym;            /* owners order 'abusy' with a compiler barrier: see own_enter() */
	bool prefetchw;           /* the CPU has PREFETCHW: see prefetch_for_write() */
	uintptr_t secret;
	uint64_t peak;            /* high-water mark of live blocks, see note_peak() */
	int logged;

	struct stripe st[GW_FIXPOOL_STRIPES];
};
_Static_assert(sizeof(void *) != 8 || offsetof(struct gwmem_fixpool, limit) <= GW_CACHELINE,
	       "the fast path's fields fit in the first cache line");

/* --- locking and stripes ------------------------------------------------ */

static GW_TLS unsigned tls_stripe; /* 1 + stripe index, 0 until assigned */
static unsigned stripe_next;

static inline unsigned stripe_id(void)
{
	unsigned s = tls_stripe;

	if (gw_unlikely(s == 0)) {
		s = __atomic_fetch_add(&stripe_next, 1, __ATOMIC_RELAXED) % GW_FIXPOOL_STRIPES + 1;
		tls_stripe = s;
	}
	return s - 1;
}

static inline bool is_ts(const struct gwmem_fixpool *fp)
{
	return fp->flags & GWMEM_FIXPOOL_THREADSAFE;
}

/*
 * The general path is compiled twice, for 'ts' = is_ts(fp) true and false,
 * so that the thread-safe path does not test the flag at every step.
 */

/* The general path's list: a stripe, or stripe 0 unlocked in a single-threaded pool. */
static GW_ALWAYS_INLINE struct stripe *my_stripe(struct gwmem_fixpool *fp, bool ts)
{
	return ts ? &fp->st[stripe_id()] : &fp->st[0];
}

static GW_ALWAYS_INLINE void slock(bool ts, struct gw_spin *l)
{
	if (ts)
		gw_spin_lock(l);
}

static GW_ALWAYS_INLINE void sunlock(bool ts, struct gw_spin *l)
{
	if (ts)
		gw_spin_unlock(l);
}

/* Allocations counted on the stripe, from either of its lists. */
static inline uint64_t stripe_allocs(const struct stripe *s)
{
	return __atomic_load_n(&s->nalloc, __ATOMIC_RELAXED) + __atomic_load_n(&s->nalloc_own, __ATOMIC_RELAXED);
}

/* Frees counted on the stripe, onto either of its lists. */
static inline uint64_t stripe_freed(const struct stripe *s)
{
	return __atomic_load_n(&s->nfreed, __ATOMIC_RELAXED) + __atomic_load_n(&s->nfreed_priv, __ATOMIC_RELAXED);
}

/* --- the owner's private list ------------------------------------------- */

/*
 * The owner pushes onto its private list with plain stores; any other
 * thread takes the list whole (take_private()).  They agree Dekker-style
 * through two flags: the owner sets 'busy' then reads 'req'; a thief, under
 * the stripe lock, sets 'req' then reads 'busy'.  With a full barrier
 * between each store and its load, at least one of them sees the other's
 * flag: the owner sees 'req' and gives its block to the locked list
 * instead, or the thief sees 'busy' and waits the few instructions until
 * the push is done.  The owner's barrier is the exchange that claims the
 * block, which every free performs anyway (see stripe_free()); on x86 any
 * locked instruction is a full barrier, so the owner's flag accesses are
 * plain.  Elsewhere, and under ThreadSanitizer (which does not model the
 * locked instruction as a fence), the flags are sequentially consistent
 * accesses, which order the store before the load by themselves.  So a free
 * by the owner costs one atomic read-modify-write, the claim, where a
 * locked list cost two; the lock's exchange also waited for the caller's
 * pending stores to reach memory (under producer/consumer, lines the other
 * core was reading), which is what made the consumer the bottleneck.
 *
 * The owner is the first thread to free into the stripe; it keeps the
 * stripe for the pool's life.  Threads are spread over the stripes round
 * robin, so a thread that shares its stripe with the owner, or comes after
 * an owner that exited, frees onto the locked list as before.
 */
#if defined(__SANITIZE_THREAD__)
#define GW_FIXPOOL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GW_FIXPOOL_TSAN 1
#endif
#endif

#if (defined(__x86_64__) || defined(__i386__)) && !defined(GW_FIXPOOL_TSAN)
#define GW_OWNER_STORE_MO __ATOMIC_RELAXED
#define GW_OWNER_LOAD_MO  __ATOMIC_ACQUIRE
#else
#define GW_OWNER_STORE_MO __ATOMIC_SEQ_CST
#define GW_OWNER_LOAD_MO  __ATOMIC_SEQ_CST
#endif

/* Unique among live threads; a thread that reuses a dead owner's is rightly its heir. */
static inline uintptr_t owner_token(void)
{
	return (uintptr_t)&tls_stripe;
}

/* Whether the calling thread owns 's', claiming it when it has no owner yet. */
static GW_ALWAYS_INLINE bool stripe_owned(struct stripe *s)
{
	uintptr_t me = owner_token(), o = __atomic_load_n(&s->owner, __ATOMIC_RELAXED);

	if (gw_likely(o == me))
		return true;
	return o == 0 && __atomic_compare_exchange_n(&s->owner, &o, me, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/*
 * Take the private list of 'o' whole, or NULL when it is empty.  Any thread
 * may call it, the owner too (it is not between its flags then).  While the
 * thief holds the list, free_somewhere() still counts its blocks, as for
 * steal().  '*n' gets the list's length.
 */
static void *take_private(struct stripe *o, uint64_t *n)
{
	struct gw_backoff b = GW_BACKOFF_INIT;
	void *head;

	if (!__atomic_load_n(&o->priv, __ATOMIC_RELAXED))
		return NULL;
	gw_spin_lock(&o->lock);
	__atomic_store_n(&o->req, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&o->busy, __ATOMIC_SEQ_CST))
		gw_backoff_wait(&b);
	head = __atomic_load_n(&o->priv, __ATOMIC_RELAXED);
	*n = __atomic_load_n(&o->npriv, __ATOMIC_RELAXED);
	__atomic_store_n(&o->priv, NULL, __ATOMIC_RELAXED);
	__atomic_store_n(&o->npriv, 0, __ATOMIC_RELAXED);
	/* release: the owner that reads 0 here sees the emptied list */
	__atomic_store_n(&o->req, 0, __ATOMIC_RELEASE);
	gw_spin_unlock(&o->lock);
	return head;
}

/* --- the owner's allocation list ---------------------------------------- */

/*
 * The owner pops its allocations from 'own' with plain loads and stores.
 * A thief takes the list whole with the same Dekker handshake as for the
 * private list, on a second pair of flags ('abusy', 'areq'), but here the
 * owner has no locked instruction to serve as its barrier, and adding one
 * is the cost this list exists to avoid.  So the barrier is asymmetric:
 * the owner orders its store of 'abusy' before its load of 'areq' with a
 * compiler barrier only, and a thief, after setting 'areq', makes every
 * running thread of the process execute a full barrier with membarrier(2)
 * (MEMBARRIER_CMD_PRIVATE_EXPEDITED: an interrupt to the CPUs running the
 * process's other threads, a few microseconds).  Either the owner's barrier
 * falls before its load of 'areq', which then sees the thief's flag, or
 * after, and then its 'abusy' store was visible to the thief's load: as
 * with a fence on both sides, at least one sees the other.  A thief takes
 * an allocation list only when every cheaper source is empty (the last
 * pass of steal()), so the interrupt is paid by the rare thread about to
 * fail, not per allocation.
 *
 * Where membarrier is refused (old kernel, seccomp) the owner executes a
 * full fence instead (gw_own_asym false).  ThreadSanitizer models neither,
 * so under it both sides use sequentially consistent accesses.
 */
#if defined(__linux__) && defined(SYS_membarrier) && !defined(GW_FIXPOOL_TSAN)
#define GW_FIXPOOL_MEMBARRIER 1
/* <linux/membarrier.h>'s commands (kernel ABI), which not every libc's headers carry */
enum {
	GW_MEMBARRIER_QUERY = 0,
	GW_MEMBARRIER_GLOBAL = 1 << 0,
	GW_MEMBARRIER_PRIVATE_EXPEDITED = 1 << 3,
	GW_MEMBARRIER_REGISTER_PRIVATE_EXPEDITED = 1 << 4,
};
#endif

#ifdef GW_FIXPOOL_TSAN
#define GW_OWN_MO __ATOMIC_SEQ_CST
#else
#define GW_OWN_MO __ATOMIC_RELAXED
#endif

/* 0: not asked yet; 1: registered, owners need no fence; 2: refused. */
static int gw_own_asym;

/* Register the process for expedited membarrier once; whether it worked. */
static bool own_asym_init(void)
{
	int v = __atomic_load_n(&gw_own_asym, __ATOMIC_ACQUIRE);

	if (v == 0) {
#ifdef GW_FIXPOOL_MEMBARRIER
		long q = syscall(SYS_membarrier, GW_MEMBARRIER_QUERY, 0, 0);

		v = q > 0 && (q & GW_MEMBARRIER_PRIVATE_EXPEDITED) &&
		    syscall(SYS_membarrier, GW_MEMBARRIER_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 ? 1 : 2;
#else
		v = 2;
#endif
		__atomic_store_n(&gw_own_asym, v, __ATOMIC_RELEASE);
	}
	return v == 1;
}

/* Whether the CPU has PREFETCHW (CPUID 0x80000001, ECX bit 8). */
static bool cpu_has_prefetchw(void)
{
#if defined(__x86_64__)
	unsigned a, b, c, d;

	return __get_cpuid(0x80000001u, &a, &b, &c, &d) && (c & (1u << 8));
#else
	return false;
#endif
}

/*
 * The thief's half of the asymmetric barrier.  The registration is per
 * address space: a forked child registers again on first use, and where
 * even that fails the global command (slow, but needing no registration)
 * gives the same guarantee.  False only if no barrier could be had: the
 * caller then leaves the list alone.
 */
static bool own_barrier(void)
{
#ifdef GW_FIXPOOL_MEMBARRIER
	if (syscall(SYS_membarrier, GW_MEMBARRIER_PRIVATE_EXPEDITED, 0, 0) == 0)
		return true;
	if (syscall(SYS_membarrier, GW_MEMBARRIER_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 &&
	    syscall(SYS_membarrier, GW_MEMBARRIER_PRIVATE_EXPEDITED, 0, 0) == 0)
		return true;
	return syscall(SYS_membarrier, GW_MEMBARRIER_GLOBAL, 0, 0) == 0;
#else
	return false;
#endif
}

/*
 * Enter the owner's section at 'own': set 'abusy', order it before the
 * load of 'areq', and say whether no thief is there.  The acquire load
 * pairs with the thief's release of 'areq': an owner that reads the thief's
 * final 0 sees the list it emptied.  The caller leaves with own_leave()
 * either way.
 */
static GW_ALWAYS_INLINE bool own_enter(const struct gwmem_fixpool *fp, struct stripe *s)
{
	__atomic_store_n(&s->abusy, 1, GW_OWN_MO);
#ifndef GW_FIXPOOL_TSAN
	if (gw_likely(fp->own_asym))
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
	else
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
#else
	(void)fp;
#endif
	return !__atomic_load_n(&s->areq, GW_OWN_MO == __ATOMIC_RELAXED ? __ATOMIC_ACQUIRE : GW_OWN_MO);
}

/* release: a thief that reads 0 sees the list as the owner left it */
static GW_ALWAYS_INLINE void own_leave(struct stripe *s)
{
	__atomic_store_n(&s->abusy, 0, __ATOMIC_RELEASE);
}

/*
 * Take the allocation list of 'o' whole, or NULL when it is empty or
 * no barrier could be had.  Called by other threads only, without the
 * owner's section; the stripe lock keeps thieves apart.
 */
static void *take_own(const struct gwmem_fixpool *fp, struct stripe *o)
{
	struct gw_backoff b = GW_BACKOFF_INIT;
	void *head = NULL;

	if (!__atomic_load_n(&o->own, __ATOMIC_RELAXED))
		return NULL;
	gw_spin_lock(&o->lock);
	__atomic_store_n(&o->areq, 1, __ATOMIC_SEQ_CST);
	if (!fp->own_asym || own_barrier()) {
		while (__atomic_load_n(&o->abusy, __ATOMIC_SEQ_CST))
			gw_backoff_wait(&b);
		head = __atomic_load_n(&o->own, __ATOMIC_RELAXED);
		__atomic_store_n(&o->own, NULL, __ATOMIC_RELAXED);
	}
	/* release: the owner that reads 0 here sees the emptied list */
	__atomic_store_n(&o->areq, 0, __ATOMIC_RELEASE);
	gw_spin_unlock(&o->lock);
	return head;
}

/* --- block <-> index ---------------------------------------------------- */

enum bad_ptr { BAD_NONE, BAD_FOREIGN, BAD_INTERIOR };

/*
 * Index of the block at offset 'off' from base: off / stride by a multiply.
 * With r = ceil(2^N / d) = (2^N + e) / d, 0 <= e < d, a block start
 * off = k * d gives off * r = k * 2^N + k * e with k * e < off < 2^N, so
 * the high half is k exactly.  Any other offset is not a multiple of d and
 * fails the caller's q * d == off check, whatever q is.  N is 64 where the
 * compiler has a 128-bit product, else 32 (32-bit targets: off < 2^32).
 */
static inline size_t off_index(const struct gwmem_fixpool *fp, size_t off)
{
#ifdef __SIZEOF_INT128__
	return (size_t)(((unsigned __int128)off * fp->recip) >> 64);
#else
	return (size_t)(((uint64_t)off * fp->recip) >> 32);
#endif
}

static inline long block_index(const struct gwmem_fixpool *fp, const void *p, enum bad_ptr *why)
{
	size_t off = (uintptr_t)p - (uintptr_t)fp->base;
	size_t g;

	if (gw_unlikely(off >= __atomic_load_n(&fp->limit, __ATOMIC_ACQUIRE))) {
		*why = BAD_FOREIGN;
		return -1;
	}
	g = off_index(fp, off);
	if (gw_unlikely(g * fp->stride != off)) {
		*why = BAD_INTERIOR;
		return -1;
	}
	*why = BAD_NONE;
	return (long)g;
}

long gw_fixpool_index(const struct gwmem_fixpool *fp, const void *p)
{
	enum bad_ptr why;

	return block_index(fp, p, &why);
}

size_t gw_fixpool_capacity(const struct gwmem_fixpool *fp)
{
	return (size_t)fp->bpc * fp->max_chunks;
}

static inline void *block_at(const struct gwmem_fixpool *fp, size_t g)
{
	return fp->base + g * fp->stride;
}

void *gw_fixpool_block(const struct gwmem_fixpool *fp, size_t i)
{
	return block_at(fp, i);
}

/*
 * The live state of block g.  Single-threaded pools keep one bit per block
 * (the fast path's bitmap).  Thread-safe pools keep one byte per block: the
 * allocating thread owns the block it popped, so marking it live is a plain
 * store, and only the free needs an atomic exchange (two racing frees of
 * one block: exactly one sees it live).  With bits, a producer setting and a
 * consumer clearing bits of neighbouring blocks would fight over one cache
 * line on every call; bytes spread 64 blocks per line instead of 512.
 */
static inline uint8_t *live_bytes(const struct gwmem_fixpool *fp)
{
	return (uint8_t *)fp->bitmap;
}

/* Mark the block handed out. */
static GW_ALWAYS_INLINE void bit_set(struct gwmem_fixpool *fp, bool ts, size_t g)
{
	if (ts) {
		__atomic_store_n(&live_bytes(fp)[g], 1, __ATOMIC_RELAXED);
		return;
	}
	fp->bitmap[g >> 6] |= (uint64_t)1 << (g & 63);
}

/* Mark the block free; returns whether it was handed out. */
static GW_ALWAYS_INLINE bool bit_clear(struct gwmem_fixpool *fp, bool ts, size_t g)
{
	uint64_t m = (uint64_t)1 << (g & 63);
	uint64_t *w = &fp->bitmap[g >> 6];

	if (ts)
		return __atomic_exchange_n(&live_bytes(fp)[g], 0, __ATOMIC_RELAXED);
	bool old = *w & m;
	*w &= ~m;
	return old;
}

static inline bool bit_get(const struct gwmem_fixpool *fp, size_t g)
{
	if (is_ts(fp))
		return __atomic_load_n(&live_bytes(fp)[g], __ATOMIC_RELAXED);
	return __atomic_load_n(&fp->bitmap[g >> 6], __ATOMIC_RELAXED) & ((uint64_t)1 << (g & 63));
}

/*
 * Thread-safe pools whose stride holds two words keep the live state in the
 * block itself rather than in a shared map: a free block's second word is
 * its canary, index ^ secret (never 0: the secret's top bit is set and
 * indexes stay far below it), and handing a block out zeroes that word.  A
 * free exchanges the canary in: whoever gets the old value back as the
 * canary knows the block was already free, so two racing frees of one block
 * still have exactly one winner, and the exchange hits the cache line the
 * freeing thread is reading the block from anyway, where the byte map cost
 * the line a producer and a consumer both write.  A user's data equal to
 * its block's canary (one chance in 2^64 per free, the secret being random
 * per pool) would make a free look like a double free.  Blocks never carved
 * are refused by their index (at or above carve_next).
 */
static inline uintptr_t block_canary(const struct gwmem_fixpool *fp, size_t g)
{
	return (uintptr_t)g ^ fp->secret;
}

static inline bool canary_live(const struct gwmem_fixpool *fp, size_t g)
{
	return g < __atomic_load_n(&fp->carve_next, __ATOMIC_ACQUIRE) &&
	       __atomic_load_n(&((uintptr_t *)block_at(fp, g))[1], __ATOMIC_RELAXED) != block_canary(fp, g);
}

/* --- create / destroy --------------------------------------------------- */

struct gwmem_fixpool *gwmem_fixpool_create(const struct gwmem_fixpool_options *opts)
{
	struct gwmem_fixpool *fp;
	size_t page = gw_os_page_size();
	size_t bpc, max_chunks, align, stride, nbits;

	if (!opts || opts->block_size == 0 || opts->block_size > ((size_t)1 << 30)) {
		errno = EINVAL;
		return NULL;
	}
	bpc = opts->blocks_per_chunk;
	max_chunks = opts->max_chunks;
	if ((opts->flags & GWMEM_FIXPOOL_CONFIG) && (bpc == 0 || max_chunks == 0)) {
		struct gwmem_config cfg;

		gwmem_config_load(&cfg, NULL, GWMEM_CONFIG_QUIET);
		if (bpc == 0)
			bpc = cfg.memory_pool.blocks_per_chunk;
		if (max_chunks == 0)
			max_chunks = cfg.memory_pool.max_chunks;
	}
	if (bpc == 0)
		bpc = 256;
	if (max_chunks == 0)
		max_chunks = 100;

	align = opts->alignment;
	if (align == 0) {
		align = 16;
		while (align > sizeof(void *) && align / 2 >= opts->block_size)
			align /= 2;
	}
	if (!GW_IS_POW2(align) || align > ((size_t)1 << 20)) {
		errno = EINVAL;
		return NULL;
	}
	/* a free block holds pointers: never less than pointer alignment (a
	 * misaligned link store is undefined, and faults on some ARM cores) */
	if (align < sizeof(void *))
		align = sizeof(void *);
	stride = opts->block_size < sizeof(void *) ? sizeof(void *) : opts->block_size;
	stride = GW_ALIGN_UP(stride, align);
	if (bpc > ((size_t)1 << 31) / stride || max_chunks > ((SIZE_MAX >> 2) - (1u << 20)) / (stride * bpc)) {
		errno = EINVAL;
		return NULL;
	}

	fp = gw_os_map(GW_ALIGN_UP(sizeof(*fp), page));
	if (!fp) {
		errno = ENOMEM;
		return NULL;
	}
	memset(fp, 0, sizeof(*fp));
	fp->block_size = opts->block_size;
	fp->stride = stride;
	fp->alignment = align;
	fp->bpc = bpc;
	fp->max_chunks = max_chunks;
	fp->chunk_bytes = stride * bpc;
#ifdef __SIZEOF_INT128__
	fp->recip = UINT64_MAX / stride + 1;
#else
	fp->recip = UINT32_MAX / stride + 1;
#endif
	fp->flags = opts->flags;
	fp->canary = is_ts(fp) && stride >= GW_FIXPOOL_IDX_STRIDE;
	{
		uint64_t r = gw_os_monotonic_ns() ^ ((uint64_t)(uintptr_t)fp * 0x9e3779b97f4a7c15ull);

		r ^= r >> 29;
		r *= 0xbf58476d1ce4e5b9ull;
		r ^= r >> 32;
		fp->secret = (uintptr_t)r | ((uintptr_t)1 << (sizeof(uintptr_t) * 8 - 1));
	}

	fp->map_size = GW_ALIGN_UP(max_chunks * fp->chunk_bytes, page) + (align > page ? align : 0);
	fp->map = gw_os_reserve(fp->map_size);
	if (!fp->map)
		goto fail_nomem;
	fp->base = (uint8_t *)GW_ALIGN_UP((uintptr_t)fp->map, align);

	nbits = bpc * max_chunks;
	fp->bitmap_bytes = GW_ALIGN_UP(is_ts(fp) ? nbits : (nbits + 63) / 64 * 8, page);
	fp->bitmap = gw_os_map(fp->bitmap_bytes);
	if (!fp->bitmap)
		goto fail_nomem;

	if (opts->name)
		gw_snprintf(fp->name, sizeof(fp->name), "%s", opts->name);
	if (!(fp->flags & GW_FIXPOOL_NOHOOK)) {
		char tag[48];

		gw_snprintf(tag, sizeof(tag), "fixpool:%s", fp->name[0] ? fp->name : "anon");
		fp->tag = GW_HOOK_TAG(tag);
	}
	/*
	 * The hooks are weak references bound when libgwmem.so is loaded, so
	 * whether they are there is known now: a pool that must report its
	 * blocks takes the general path, the others do not test them per call.
	 */
	if (fp->flags & GWMEM_FIXPOOL_TRACK) {
		fp->track = gw_track_create(fp->name, bpc * max_chunks, fp->block_size);
		if (!fp->track)
			goto fail_nomem;
	}
	/* the hooks and the tracker run between the claim and the push: not
	 * while a thief may be waiting for the owner */
	fp->owner_free = is_ts(fp) && !fp->track &&
			 ((fp->flags & GW_FIXPOOL_NOHOOK) || (!gwmem_hook_alloc && !gwmem_hook_free));
	fp->lean = fp->owner_free && fp->canary && !(fp->flags & GWMEM_FIXPOOL_ZERO);
	fp->own_asym = fp->lean && own_asym_init();
	fp->prefetchw = cpu_has_prefetchw();
	fp->general = is_ts(fp) || (fp->flags & GWMEM_FIXPOOL_ZERO) || stride < GW_FIXPOOL_IDX_STRIDE || fp->track ||
		      (!(fp->flags & GW_FIXPOOL_NOHOOK) && (gwmem_hook_alloc || gwmem_hook_free));
	return fp;

fail_nomem:
	errno = ENOMEM;
	if (fp->bitmap)
		gw_os_unmap(fp->bitmap, fp->bitmap_bytes);
	if (fp->map)
		gw_os_unmap(fp->map, fp->map_size);
	gw_os_unmap(fp, GW_ALIGN_UP(sizeof(*fp), page));
	return NULL;
}

void gwmem_fixpool_destroy(struct gwmem_fixpool *fp)
{
	if (!fp)
		return;
	/* Live blocks die with the pool: tell the leak tracker. */
	if (gwmem_hook_free && !(fp->flags & GW_FIXPOOL_NOHOOK)) {
		size_t nwords = (fp->nchunks * fp->bpc + 63) / 64;

		for (size_t g = 0; is_ts(fp) && g < fp->nchunks * fp->bpc; g++)
			if (fp->canary ? canary_live(fp, g) : live_bytes(fp)[g])
				GW_HOOK_FREE(block_at(fp, g));
		for (size_t w = 0; !is_ts(fp) && w < nwords; w++) {
			uint64_t bits = fp->bitmap[w];

			while (bits) {
				size_t g = w * 64 + (size_t)__builtin_ctzll(bits);

				bits &= bits - 1;
				GW_HOOK_FREE(block_at(fp, g));
			}
		}
	}
	gw_track_destroy(fp->track);
	gw_os_unmap(fp->bitmap, fp->bitmap_bytes);
	gw_os_unmap(fp->map, fp->map_size);
	gw_os_unmap(fp, GW_ALIGN_UP(sizeof(*fp), gw_os_page_size()));
}

/* --- carving ------------------------------------------------------------ */

/*
 * Carve up to 'want' never-used blocks into a list.  A chunk is committed
 * only when nothing could be carved from the current one, so total_chunks
 * counts chunks that were needed, not batches.  Returns the number carved.
 * Under fp->grow in a thread-safe pool.
 */
static size_t carve(struct gwmem_fixpool *fp, size_t want, void **head, void **tail)
{
	size_t n = 0;

	*head = *tail = NULL;
	while (n < want) {
		size_t g = fp->carve_next;

		if (g >= fp->nchunks * fp->bpc) {
			size_t c = fp->nchunks;
			uintptr_t lo, hi;

			if (n > 0 || c >= fp->max_chunks)
				break;
			/* Whole pages; the first and last may be shared with the neighbours. */
			lo = (uintptr_t)fp->base + c * fp->chunk_bytes;
			hi = lo + fp->chunk_bytes;
			lo &= ~(uintptr_t)(gw_os_page_size() - 1);
			if (gw_os_commit((void *)lo, GW_ALIGN_UP(hi, gw_os_page_size()) - lo) != 0)
				break;
			fp->nchunks = c + 1;
			__atomic_store_n(&fp->limit, fp->nchunks * fp->chunk_bytes, __ATOMIC_RELEASE);
			if (!fp->general)
				fp->fast_limit = fp->limit;
		}
		void *b = block_at(fp, g);

		*(void **)b = NULL;
		if (fp->stride >= GW_FIXPOOL_IDX_STRIDE)
			((uintptr_t *)b)[1] = fp->canary ? block_canary(fp, g) : g;
		/* release: a free that sees g below carve_next sees its canary */
		__atomic_store_n(&fp->carve_next, g + 1, __ATOMIC_RELEASE);
		if (*tail)
			*(void **)*tail = b;
		else
			*head = b;
		*tail = b;
		n++;
	}
	return n;
}

/* --- misuse ------------------------------------------------------------- */

static GW_COLD GW_NOINLINE int bad_free(struct gwmem_fixpool *fp, const void *p, enum bad_ptr why)
{
	const char *what;
	uint64_t *ctr;
	int ret;

	switch (why) {
	case BAD_FOREIGN:
		what = "foreign pointer";
		ctr = &fp->foreign;
		ret = -EINVAL;
		break;
	case BAD_INTERIOR:
		what = "interior pointer";
		ctr = &fp->interior;
		ret = -EINVAL;
		break;
	default:
		what = "double free";
		ctr = &fp->dbl;
		ret = -EALREADY;
		break;
	}
	__atomic_fetch_add(ctr, 1, __ATOMIC_RELAXED);
	if (!(fp->flags & GWMEM_FIXPOOL_QUIET) && !__atomic_exchange_n(&fp->logged, 1, __ATOMIC_RELAXED))
		gw_log("fixpool '%s': %s %p refused (reported once per pool)",
		       fp->name[0] ? fp->name : "anon", what, p);
	return ret;
}

/* --- general path: stripes, zeroing, hooks, small strides --------------- */

/*
 * Free blocks that exist somewhere (on a list, or on a list being moved
 * between stripes), from the counters: carved - (allocations - frees).
 * Every nalloc is read before every nfreed, so a concurrent free can only
 * make the result larger, never hide a free block: the caller then merely
 * looks once more.
 */
static size_t free_somewhere(const struct gwmem_fixpool *fp)
{
	uint64_t na = 0, nf = 0, carved;

	for (unsigned i = 0; i < GW_FIXPOOL_STRIPES; i++)
		na += stripe_allocs(&fp->st[i]);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	for (unsigned i = 0; i < GW_FIXPOOL_STRIPES; i++)
		nf += stripe_freed(&fp->st[i]);
	carved = __atomic_load_n(&fp->carve_next, __ATOMIC_RELAXED);
	return na - nf < carved ? (size_t)(carved - (na - nf)) : 0;
}

/*
 * A refill found no block.  While the counters say one is free somewhere
 * (another thread holds a list it took, between taking and putting it),
 * wait a little and try again, at most 100,000 times; false means give up.
 */
static bool refill_again(const struct gwmem_fixpool *fp, struct gw_backoff *retry, unsigned attempt)
{
	if (free_somewhere(fp) == 0 || attempt >= 100000)
		return false;
	gw_backoff_wait(retry);
	return true;
}

/* Every block is in use: the refused allocation is counted. */
static GW_COLD void *refill_refused(struct gwmem_fixpool *fp)
{
	__atomic_fetch_add(&fp->failed, 1, __ATOMIC_RELAXED);
	errno = ENOMEM;
	return NULL;
}

/* Sample the number of live blocks into the high-water mark. */
static void note_peak(struct gwmem_fixpool *fp)
{
	uint64_t na = 0, nf = 0, peak;

	for (unsigned i = 0; i < GW_FIXPOOL_STRIPES; i++)
		na += stripe_allocs(&fp->st[i]);
	for (unsigned i = 0; i < GW_FIXPOOL_STRIPES; i++)
		nf += stripe_freed(&fp->st[i]);
	if (na < nf)
		return;
	peak = __atomic_load_n(&fp->peak, __ATOMIC_RELAXED);
	while (na - nf > peak &&
	       !__atomic_compare_exchange_n(&fp->peak, &peak, na - nf, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/*
 * Take the first list of another stripe that is worth it: a private list of
 * at least 'min' blocks, or with 'min' at most 1 any non-empty list, an
 * owner's allocation list last (its handshake interrupts the other CPUs,
 * see take_own()).  The thief has no lock of its own stripe while it holds
 * the list: the list is "in flight", which free_somewhere() still counts,
 * so a concurrent refill that finds every list empty looks again instead
 * of failing.
 */
static void *steal(struct gwmem_fixpool *fp, struct stripe *s, uint64_t min)
{
	for (unsigned j = 0; j < GW_FIXPOOL_STRIPES; j++) {
		struct stripe *o = &fp->st[j];
		uint64_t n;
		void *head;

		if (o == s)
			continue;
		if (min <= 1 && __atomic_load_n(&o->head, __ATOMIC_RELAXED)) {
			gw_spin_lock(&o->lock);
			head = o->head;
			__atomic_store_n(&o->head, NULL, __ATOMIC_RELAXED);
			gw_spin_unlock(&o->lock);
			if (head)
				return head;
		}
		if (__atomic_load_n(&o->npriv, __ATOMIC_RELAXED) >= min && (head = take_private(o, &n)))
			return head;
	}
	for (unsigned j = 0; min <= 1 && j < GW_FIXPOOL_STRIPES; j++) {
		void *head;

		/* our own stripe too: its owner may not be us */
		if ((head = take_own(fp, &fp->st[j])))
			return head;
	}
	return NULL;
}

/*
 * The stripe is empty.  In order: take our own private list (its blocks are
 * warm in this core's cache), another stripe's private list of a batch or
 * more, carve never-used blocks, take any other list, look at our own list
 * again (a free may have refilled it).  Reusing freed blocks before carving
 * keeps the pool's footprint near its live blocks, and a batch makes the
 * handshake of take_private() rare.  Only when the counters say no block is
 * free anywhere does a thread-safe pool report ENOMEM; otherwise a list is
 * being moved by another thread and the search is repeated, yielding the
 * CPU to that thread.
 */
static GW_NOINLINE void *stripe_refill(struct gwmem_fixpool *fp, bool ts, struct stripe *s)
{
	struct gw_backoff retry = GW_BACKOFF_INIT;
	void *head = NULL, *tail, *b;
	size_t n = 0;
	uint64_t np;

	for (unsigned attempt = 0;; attempt++) {
		if (ts) {
			head = take_private(s, &np);
			if (!head)
				head = steal(fp, s, GW_FIXPOOL_STEAL_MIN);
			n = head ? 2 : 0;
			tail = NULL; /* found only if our list is no longer empty */
		}
		if (n == 0) {
			slock(ts, &fp->grow);
			n = carve(fp, ts ? GW_FIXPOOL_BATCH : 1, &head, &tail);
			sunlock(ts, &fp->grow);
		}
		if (n == 0 && ts) {
			head = steal(fp, s, 1);
			if (head) {
				tail = NULL;
				n = 2;
			}
		}
		slock(ts, &s->lock);
		if (n > 0) {
			b = head;
			if (*(void **)head) {
				/* Splice the rest in front of our list; walk it only
				 * when a free refilled our list meanwhile. */
				void *rest = *(void **)head;

				if (s->head) {
					if (!tail) {
						size_t cap = gw_fixpool_capacity(fp);

						tail = rest;
						for (size_t k = 0; k < cap && *(void **)tail; k++)
							tail = *(void **)tail;
					}
					*(void **)tail = s->head;
				}
				__atomic_store_n(&s->head, rest, __ATOMIC_RELAXED);
			}
			__atomic_store_n(&s->nalloc, s->nalloc + 1, __ATOMIC_RELAXED);
			sunlock(ts, &s->lock);
			if (ts)
				note_peak(fp);
			return b;
		}
		b = s->head;
		if (b) {
			__atomic_store_n(&s->head, *(void **)b, __ATOMIC_RELAXED);
			__atomic_store_n(&s->nalloc, s->nalloc + 1, __ATOMIC_RELAXED);
		}
		sunlock(ts, &s->lock);
		if (b)
			return b;
		if (!ts || !refill_again(fp, &retry, attempt))
			return refill_refused(fp);
	}
}

static GW_ALWAYS_INLINE void *stripe_alloc(struct gwmem_fixpool *fp, bool ts, const void *ra)
{
	struct stripe *s = my_stripe(fp, ts);
	enum bad_ptr why;
	size_t g;
	void *b;

	slock(ts, &s->lock);
	b = s->head;
	if (gw_likely(b)) {
		__atomic_store_n(&s->head, *(void **)b, __ATOMIC_RELAXED);
		__atomic_store_n(&s->nalloc, s->nalloc + 1, __ATOMIC_RELAXED);
		sunlock(ts, &s->lock);
	} else {
		sunlock(ts, &s->lock);
		b = stripe_refill(fp, ts, s);
		if (!b)
			return NULL;
	}
	if (!ts && s->nalloc - s->nfreed > fp->peak)
		fp->peak = s->nalloc - s->nfreed;
	/*
	 * A free block keeps its index in its second word (written by carve()
	 * and free, both of which validated it), which spares a division here.
	 */
	if (gw_likely(fp->stride >= GW_FIXPOOL_IDX_STRIDE))
		g = ((uintptr_t *)b)[1] ^ (fp->canary ? fp->secret : 0);
	else
		g = (size_t)block_index(fp, b, &why);
	if (fp->canary)
		/* zeroing the canary is what marks the block handed out */
		__atomic_store_n(&((uintptr_t *)b)[1], 0, __ATOMIC_RELAXED);
	else
		bit_set(fp, ts, g);
	if (fp->flags & GWMEM_FIXPOOL_ZERO) {
		memset(b, 0, fp->block_size);
	} else {
		((void **)b)[0] = NULL; /* do not hand out free-list state */
		if (fp->stride >= GW_FIXPOOL_IDX_STRIDE && !fp->canary)
			((uintptr_t *)b)[1] = 0;
	}
	if (fp->track)
		gw_track_alloc(fp->track, g, ra);
	if (!(fp->flags & GW_FIXPOOL_NOHOOK))
		GW_HOOK_ALLOC(b, fp->block_size, fp->tag);
	return b;
}

/*
 * Mark block g free; false if it already was (or was never carved).  In a
 * thread-safe pool the exchange is sequentially consistent: it is the
 * owner's barrier of the private-list handshake (see take_private()).
 */
static GW_ALWAYS_INLINE bool claim(struct gwmem_fixpool *fp, bool ts, void *p, size_t g)
{
	if (fp->canary) {
		uintptr_t c = block_canary(fp, g);

		return g < __atomic_load_n(&fp->carve_next, __ATOMIC_ACQUIRE) &&
		       __atomic_exchange_n(&((uintptr_t *)p)[1], c, __ATOMIC_SEQ_CST) != c;
	}
	if (ts)
		return __atomic_exchange_n(&live_bytes(fp)[g], 0, __ATOMIC_SEQ_CST);
	return bit_clear(fp, ts, g);
}

static GW_ALWAYS_INLINE int stripe_free(struct gwmem_fixpool *fp, bool ts, void *p)
{
	struct stripe *s;
	enum bad_ptr why;
	long g;

	g = block_index(fp, p, &why);
	if (gw_unlikely(g < 0))
		return bad_free(fp, p, why);
	s = my_stripe(fp, ts);
	if (ts && fp->owner_free && stripe_owned(s)) {
		/* see take_private(): busy, the claim's barrier, then req */
		__atomic_store_n(&s->busy, 1, GW_OWNER_STORE_MO);
		if (gw_unlikely(!claim(fp, ts, p, (size_t)g))) {
			__atomic_store_n(&s->busy, 0, __ATOMIC_RELEASE);
			return bad_free(fp, p, BAD_NONE);
		}
		if (gw_likely(!__atomic_load_n(&s->req, GW_OWNER_LOAD_MO))) {
			if (fp->stride >= GW_FIXPOOL_IDX_STRIDE && !fp->canary)
				((uintptr_t *)p)[1] = (uintptr_t)g;
			*(void **)p = __atomic_load_n(&s->priv, __ATOMIC_RELAXED);
			__atomic_store_n(&s->priv, p, __ATOMIC_RELAXED);
			__atomic_store_n(&s->npriv, s->npriv + 1, __ATOMIC_RELAXED);
			__atomic_store_n(&s->nfreed_priv, s->nfreed_priv + 1, __ATOMIC_RELAXED);
			__atomic_store_n(&s->busy, 0, __ATOMIC_RELEASE);
			return 0;
		}
		/* a thief is at the private list: use the locked one */
		__atomic_store_n(&s->busy, 0, __ATOMIC_RELEASE);
	} else if (gw_unlikely(!claim(fp, ts, p, (size_t)g))) {
		return bad_free(fp, p, BAD_NONE);
	}
	/* Before the push: once listed, another thread may hand the block out. */
	if (fp->track)
		gw_track_free(fp->track, (size_t)g);
	if (!(fp->flags & GW_FIXPOOL_NOHOOK))
		GW_HOOK_FREE(p);
	if (fp->stride >= GW_FIXPOOL_IDX_STRIDE && !fp->canary)
		((uintptr_t *)p)[1] = (uintptr_t)g;
	slock(ts, &s->lock);
	*(void **)p = s->head;
	__atomic_store_n(&s->head, p, __ATOMIC_RELAXED);
	__atomic_store_n(&s->nfreed, s->nfreed + 1, __ATOMIC_RELAXED);
	sunlock(ts, &s->lock);
	return 0;
}

/* --- thread-safe fast path ---------------------------------------------- */

/*
 * Thread-safe pools with the canary and without zeroing, tracking or hooks
 * ('lean', the usual case) run these first: stripe_alloc() and
 * stripe_free() reduced to their common case, with none of their per-pool
 * flags tested.  Anything else (an empty stripe, a stripe this thread does
 * not own, a thief at the private list, misuse) goes to the general code,
 * which does the same steps and more, through a call: that keeps these
 * small enough to need few registers saved.
 */
static void *own_refill(struct gwmem_fixpool *fp, struct stripe *s);

static GW_NOINLINE void *ts_alloc(struct gwmem_fixpool *fp, const void *ra)
{
	struct stripe *s = &fp->st[stripe_id()];

	if (fp->lean && stripe_owned(s))
		return own_refill(fp, s);
	return stripe_alloc(fp, true, ra);
}

static GW_NOINLINE int ts_free(struct gwmem_fixpool *fp, void *p)
{
	return stripe_free(fp, true, p);
}

/*
 * The next block to hand out: under producer/consumer its line sits
 * modified in the consumer's cache, where its free wrote the link and the
 * canary.  Fetching it for writing one allocation ahead takes that transfer
 * off the next allocation's path (its pop reads the link, then the caller
 * and the pop write the block).  On x86-64 that is PREFETCHW, which GCC
 * emits for __builtin_prefetch only when built for a CPU that has it: so it
 * is written out, and used where CPUID lists it (fp->prefetchw).
 */
static GW_ALWAYS_INLINE void prefetch_for_write(const struct gwmem_fixpool *fp, const void *p)
{
#if defined(__x86_64__)
	if (fp->prefetchw)
		__asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
	(void)fp;
	__builtin_prefetch(p, 1, 3);
#endif
}

/* Pop from the owner's allocation list, in its section (see own_enter()). */
static GW_ALWAYS_INLINE void **own_pop(struct gwmem_fixpool *fp, struct stripe *s, bool *thief)
{
	void **b = NULL;

	*thief = !own_enter(fp, s);
	if (gw_likely(!*thief)) {
		b = __atomic_load_n(&s->own, __ATOMIC_RELAXED);
		if (gw_likely(b)) {
			__atomic_store_n(&s->own, b[0], __ATOMIC_RELAXED);
			__atomic_store_n(&s->nalloc_own, s->nalloc_own + 1, __ATOMIC_RELAXED);
			if (b[0])
				prefetch_for_write(fp, b[0]);
		}
	}
	own_leave(s);
	return b;
}

/* Hand out a block taken off a list. */
static GW_ALWAYS_INLINE void *lean_hand_out(void **b)
{
	b[0] = NULL; /* do not hand out free-list state */
	/* zeroing the canary is what marks the block handed out */
	__atomic_store_n((uintptr_t *)&b[1], 0, __ATOMIC_RELAXED);
	return b;
}

/*
 * Put a list found by the owner's refill in its allocation list, which is
 * empty (only the owner adds to it); onto the locked list if a thief is at
 * it, where the thief will look next.
 */
static void own_install(struct gwmem_fixpool *fp, struct stripe *s, void *list)
{
	size_t cap = gw_fixpool_capacity(fp);
	void *tail = list;

	if (own_enter(fp, s)) {
		__atomic_store_n(&s->own, list, __ATOMIC_RELAXED);
		own_leave(s);
		return;
	}
	own_leave(s);
	for (size_t k = 0; k < cap && *(void **)tail; k++)
		tail = *(void **)tail;
	gw_spin_lock(&s->lock);
	*(void **)tail = s->head;
	__atomic_store_n(&s->head, list, __ATOMIC_RELAXED);
	gw_spin_unlock(&s->lock);
}

/* Take the locked list of 's' whole. */
static void *take_head(struct stripe *s)
{
	void *head;

	if (!__atomic_load_n(&s->head, __ATOMIC_RELAXED))
		return NULL;
	gw_spin_lock(&s->lock);
	head = s->head;
	__atomic_store_n(&s->head, NULL, __ATOMIC_RELAXED);
	gw_spin_unlock(&s->lock);
	return head;
}

/*
 * The owner's allocation list is empty (or a thief was at it).  As
 * stripe_refill(), in the same order: our own private list, our locked
 * list, another stripe's private list of a batch or more, carving, any
 * other list; the first block is handed out, the rest becomes the
 * allocation list.  ENOMEM only when the counters say that no block is free
 * anywhere.
 */
static GW_NOINLINE void *own_refill(struct gwmem_fixpool *fp, struct stripe *s)
{
	struct gw_backoff bo = GW_BACKOFF_INIT, retry = GW_BACKOFF_INIT;
	void *head, *tail;
	uint64_t np;
	bool thief;
	void **b;

	for (unsigned attempt = 0;; attempt++) {
		b = own_pop(fp, s, &thief);
		if (b)
			return lean_hand_out(b);
		if (thief) {
			/* it empties the list and leaves within a few instructions */
			gw_backoff_wait(&bo);
			continue;
		}
		head = take_private(s, &np);
		if (!head)
			head = take_head(s);
		if (!head)
			head = steal(fp, s, GW_FIXPOOL_STEAL_MIN);
		if (!head) {
			gw_spin_lock(&fp->grow);
			carve(fp, GW_FIXPOOL_BATCH, &head, &tail);
			gw_spin_unlock(&fp->grow);
		}
		if (!head)
			head = steal(fp, s, 1);
		if (head) {
			b = head;
			if (b[0])
				own_install(fp, s, b[0]);
			__atomic_store_n(&s->nalloc_own, s->nalloc_own + 1, __ATOMIC_RELAXED);
			note_peak(fp);
			return lean_hand_out(b);
		}
		if (!refill_again(fp, &retry, attempt))
			return refill_refused(fp);
	}
}

static GW_ALWAYS_INLINE void *lean_alloc(struct gwmem_fixpool *fp, const void *ra)
{
	struct stripe *s = &fp->st[stripe_id()];
	bool thief;
	void **b;

	if (gw_unlikely(__atomic_load_n(&s->owner, __ATOMIC_RELAXED) != owner_token()))
		return ts_alloc(fp, ra);
	b = own_pop(fp, s, &thief);
	if (gw_unlikely(!b))
		return own_refill(fp, s);
	return lean_hand_out(b);
}

static GW_ALWAYS_INLINE int lean_free(struct gwmem_fixpool *fp, void *p)
{
	size_t off = (uintptr_t)p - (uintptr_t)fp->base, g;
	struct stripe *s;
	uintptr_t c;

	if (gw_unlikely(off >= __atomic_load_n(&fp->limit, __ATOMIC_ACQUIRE)))
		return ts_free(fp, p);
	g = off_index(fp, off);
	s = &fp->st[stripe_id()];
	if (gw_unlikely(g * fp->stride != off || __atomic_load_n(&s->owner, __ATOMIC_RELAXED) != owner_token()))
		return ts_free(fp, p);
	/* stripe_free()'s owner path: busy, the claim's barrier, then req */
	c = block_canary(fp, g);
	__atomic_store_n(&s->busy, 1, GW_OWNER_STORE_MO);
	if (gw_unlikely(g >= __atomic_load_n(&fp->carve_next, __ATOMIC_ACQUIRE) ||
			__atomic_exchange_n(&((uintptr_t *)p)[1], c, __ATOMIC_SEQ_CST) == c)) {
		__atomic_store_n(&s->busy, 0, __ATOMIC_RELEASE);
		return bad_free(fp, p, BAD_NONE);
	}
	if (gw_unlikely(__atomic_load_n(&s->req, GW_OWNER_LOAD_MO))) {
		__atomic_store_n(&s->busy, 0, __ATOMIC_RELEASE);
		gw_spin_lock(&s->lock);
		*(void **)p = s->head;
		__atomic_store_n(&s->head, p, __ATOMIC_RELAXED);
		__atomic_store_n(&s->nfreed, s->nfreed + 1, __ATOMIC_RELAXED);
		gw_spin_unlock(&s->lock);
		return 0;
	}
	*(void **)p = __atomic_load_n(&s->priv, __ATOMIC_RELAXED);
	__atomic_store_n(&s->priv, p, __ATOMIC_RELAXED);
	__atomic_store_n(&s->npriv, s->npriv + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&s->nfreed_priv, s->nfreed_priv + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&s->busy, 0, __ATOMIC_RELEASE);
	return 0;
}

/* --- fast path: single-threaded pools ----------------------------------- */

static GW_ALWAYS_INLINE void *local_pop(struct gwmem_fixpool *fp, void **b)
{
	uintptr_t g = (uintptr_t)b[1];

	fp->head = b[0];
	fp->bitmap[g >> 6] |= (uint64_t)1 << (g & 63);
	fp->nalloc++;
	if (gw_unlikely(fp->nalloc - fp->nfreed > fp->peak))
		fp->peak = fp->nalloc - fp->nfreed;
	b[0] = NULL; /* do not hand out free-list state */
	b[1] = NULL;
	return b;
}

/* Everything but a pop from a non-empty local list. */
static GW_NOINLINE void *alloc_slow(struct gwmem_fixpool *fp, const void *ra)
{
	void *head, *tail;

	if (fp->general)
		return is_ts(fp) ? ts_alloc(fp, ra) : stripe_alloc(fp, false, ra);
	if (carve(fp, GW_FIXPOOL_BATCH, &head, &tail) == 0) {
		__atomic_fetch_add(&fp->failed, 1, __ATOMIC_RELAXED);
		errno = ENOMEM;
		return NULL;
	}
	return local_pop(fp, head);
}

static GW_NOINLINE void *alloc_general(struct gwmem_fixpool *fp, const void *ra)
{
	if (gw_likely(fp->lean))
		return lean_alloc(fp, ra);
	return alloc_slow(fp, ra);
}

/*
 * The two calls made per block start on a cache line of their own: their
 * fast paths then span the fewest fetch blocks, whatever the code before
 * them, and their speed does not move with unrelated changes to the file.
 */
GW_ALIGNED(64) void *gwmem_fixpool_alloc(struct gwmem_fixpool *fp)
{
	void **b;

	if (gw_unlikely(!fp)) {
		errno = EINVAL;
		return NULL;
	}
	b = fp->head;
	if (gw_unlikely(!b))
		return alloc_general(fp, __builtin_return_address(0));
	return local_pop(fp, b);
}

void *gw_fixpool_alloc_ra(struct gwmem_fixpool *fp, const void *ra)
{
	void **b = fp->head;

	if (gw_unlikely(!b))
		return alloc_general(fp, ra);
	return local_pop(fp, b);
}

/* A fast pool's free that failed the fast checks, or any free of a general pool. */
static GW_NOINLINE int free_slow(struct gwmem_fixpool *fp, void *p)
{
	enum bad_ptr why;

	if (fp->general)
		return is_ts(fp) ? ts_free(fp, p) : stripe_free(fp, false, p);
	block_index(fp, p, &why);
	GW_ASSERT(why != BAD_NONE);
	return bad_free(fp, p, why);
}

static GW_NOINLINE int free_general(struct gwmem_fixpool *fp, void *p)
{
	if (gw_likely(fp->lean))
		return lean_free(fp, p);
	return free_slow(fp, p);
}

/* on a line of its own: see gwmem_fixpool_alloc() */
GW_ALIGNED(64) int gwmem_fixpool_free(struct gwmem_fixpool *fp, void *p)
{
	size_t off, g;
	uint64_t *w, m;

	if (gw_unlikely(!p))
		return 0;
	if (gw_unlikely(!fp))
		return -EINVAL;
	/* block_index() against fast_limit, which also turns general pools away */
	off = (uintptr_t)p - (uintptr_t)fp->base;
	if (gw_unlikely(off >= fp->fast_limit))
		return free_general(fp, p);
	g = off_index(fp, off);
	if (gw_unlikely(g * fp->stride != off))
		return free_general(fp, p);
	w = &fp->bitmap[g >> 6];
	m = (uint64_t)1 << (g & 63);
	if (gw_unlikely(!(*w & m)))
		return bad_free(fp, p, BAD_NONE);
	*w &= ~m;
	((void **)p)[0] = fp->head;
	((uintptr_t *)p)[1] = g;
	fp->head = p;
	fp->nfreed++;
	return 0;
}

bool gwmem_fixpool_owns(const struct gwmem_fixpool *fp, const void *p)
{
	enum bad_ptr why;
	long g;

	if (!fp || !p)
		return false;
	g = block_index(fp, p, &why);
	if (g < 0)
		return false;
	return fp->canary ? canary_live(fp, (size_t)g) : bit_get(fp, (size_t)g);
}

int gwmem_fixpool_stats(const struct gwmem_fixpool *fp, struct gwmem_fixpool_stats *out)
{
	uint64_t na, nf;
	size_t nchunks;

	if (!fp || !out)
		return -EINVAL;
	na = __atomic_load_n(&fp->nalloc, __ATOMIC_RELAXED);
	nf = __atomic_load_n(&fp->nfreed, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < GW_FIXPOOL_STRIPES; i++) {
		na += stripe_allocs(&fp->st[i]);
		nf += stripe_freed(&fp->st[i]);
	}
	nchunks = __atomic_load_n(&fp->limit, __ATOMIC_ACQUIRE) / fp->chunk_bytes;
	memset(out, 0, sizeof(*out));
	out->total_allocated = na;
	out->total_freed = nf;
	out->active_blocks = na - nf;
	out->total_chunks = nchunks;
	out->free_blocks = (uint64_t)nchunks * fp->bpc - out->active_blocks;
	out->chunk_utilization = nchunks ? (double)out->active_blocks / ((double)nchunks * (double)fp->bpc) : 0.0;
	out->failed_allocs = __atomic_load_n(&fp->failed, __ATOMIC_RELAXED);
	out->foreign_frees = __atomic_load_n(&fp->foreign, __ATOMIC_RELAXED);
	out->interior_frees = __atomic_load_n(&fp->interior, __ATOMIC_RELAXED);
	out->double_frees = __atomic_load_n(&fp->dbl, __ATOMIC_RELAXED);
	out->invalid_frees = out->foreign_frees + out->interior_frees + out->double_frees;
	out->block_size = fp->block_size;
	out->block_stride = fp->stride;
	out->blocks_per_chunk = fp->bpc;
	out->max_chunks = fp->max_chunks;
	if (is_ts(fp))
		note_peak((struct gwmem_fixpool *)fp);
	out->peak_active_blocks = __atomic_load_n(&fp->peak, __ATOMIC_RELAXED);
	if (out->peak_active_blocks < out->active_blocks)
		out->peak_active_blocks = out->active_blocks;
	return 0;
}
