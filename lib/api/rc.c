/*
 * rc.c - reference-counted objects, weak references, the weak cache and rc
 * pools of the public API (gwmem_rc_*, gwmem_weakcache_*, gwmem_rcpool_*).
 *
 * An rc object is a header followed by the caller's payload; the pointer the
 * caller sees is the payload.  Counting follows the usual strong/weak scheme:
 *  - strong: references that keep the payload alive.  The transition to 0
 *    runs the destructor exactly once (only one thread sees 1 -> 0) and
 *    marks the header dead, so later upgrades fail.
 *  - weak: weak references, plus one for all strong references together.
 *    The transition to 0 releases the memory, so a weak reference can always
 *    read the header of a dead object safely.
 * A struct gwmem_rc_weak is the header itself: creating one is an atomic
 * increment, upgrading one a compare-and-swap loop that never resurrects a
 * count of 0.
 *
 * Memory: headers+payloads up to 4 KiB come from internal thread-safe
 * fixed-block pools (one per power-of-two size class, created on first use,
 * address space reserved only); larger ones are mapped one by one.  Objects
 * of an rc pool come from its object pool instead and go back to it.
 *
 * Validation by address: every function that takes an object or a weak
 * reference first checks that its header lies where this library put one
 * (a block of a class pool or of a registered rc pool, whose chunks stay
 * mapped until the pool goes, or a mapping in the registry of large
 * objects) and only then reads it.  A pointer that is not an rc object, a
 * large object already unmapped, a pointer into a stack buffer: refused
 * without a read.  The magic then tells a live header from a dead one.
 * What this cannot catch is a caller racing the release of the very object
 * it passes (it holds no reference, by definition of misuse).
 *
 * Weak cache: a fixed power-of-two bucket array with chained entries, one
 * lock per group of buckets (GW_WC_STRIPES), so lookups from several threads
 * rarely meet.  Entries hold a weak reference; weak references dropped by a
 * purge are released after the lock is let go, because releasing may run an
 * rc pool's callbacks.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "gwmem.h"
#include "fixpool.h"
#include "fmt.h"
#include "hook.h"
#include "internal.h"
#include "objpool.h"
#include "os.h"
#include "spin.h"

#define RC_MAGIC_LIVE 0x67774c56u /* "gwLV" */
#define RC_MAGIC_DEAD 0x67774444u /* "gwDD" */
#define RC_MAGIC_FREE 0x67774646u /* "gwFF": memory released */
#define RC_CLASS_MIN_SHIFT 6      /* 64 bytes */
#define RC_CLASS_MAX_SHIFT 12     /* 4 KiB */
#define RC_NCLASSES (RC_CLASS_MAX_SHIFT - RC_CLASS_MIN_SHIFT + 1)
#define RC_CLASS_MAPPED 0xffu
#define RC_CLASS_POOLED 0xfeu

/*
 * The magic lies past the first two words: a free block of a thread-safe
 * fixed pool keeps its list link and its canary there (fixpool.c), so a
 * released header never shows a stale magic that chance made LIVE.
 */
struct rc_hdr {
	uint32_t strong;
	uint32_t weak;
	size_t size;              /* payload bytes (mapped: whole mapping) */
	uint32_t magic;
	uint32_t cls;             /* size class, RC_CLASS_MAPPED or RC_CLASS_POOLED */
	gwmem_rc_dtor_fn dtor;
	void *arg;
	struct gwmem_rcpool *pool;
};

#define RC_HDR_SIZE GW_ALIGN_UP(sizeof(struct rc_hdr), 16)
_Static_assert(offsetof(struct rc_hdr, magic) >= 2 * sizeof(void *),
	       "the magic is not where a free block keeps its list state");

static inline struct rc_hdr *hdr_of(const void *obj)
{
	return (struct rc_hdr *)((uint8_t *)obj - RC_HDR_SIZE);
}

static inline void *payload_of(struct rc_hdr *h)
{
	return (uint8_t *)h + RC_HDR_SIZE;
}

/* --- memory: internal size classes ------------------------------------- */

static struct gwmem_fixpool *rc_classes[RC_NCLASSES];
static pthread_once_t rc_once = PTHREAD_ONCE_INIT;
static unsigned rc_tag;
static bool rc_ready;     /* rc_classes[] written */

static void rc_init(void)
{
	for (unsigned i = 0; i < RC_NCLASSES; i++) {
		struct gwmem_fixpool_options fo = {0};
		size_t sz = (size_t)1 << (RC_CLASS_MIN_SHIFT + i);

		fo.block_size = sz;
		fo.alignment = 16;
		fo.blocks_per_chunk = 64;
		/* 16 MiB of address space per class on 32-bit, 256 MiB on 64-bit. */
		fo.max_chunks = ((sizeof(void *) == 4 ? (size_t)16 : (size_t)256) << 20) / (sz * 64);
		fo.flags = GWMEM_FIXPOOL_THREADSAFE | GWMEM_FIXPOOL_QUIET | GW_FIXPOOL_NOHOOK;
		fo.name = "rc";
		rc_classes[i] = gwmem_fixpool_create(&fo);
	}
	rc_tag = GW_HOOK_TAG("rc");
	__atomic_store_n(&rc_ready, true, __ATOMIC_RELEASE);
}

/* Memory for 'size' bytes; *cls receives its class. */
static void *mem_alloc(size_t size, uint32_t *cls)
{
	unsigned c = RC_CLASS_MIN_SHIFT;
	void *p;

	pthread_once(&rc_once, rc_init);
	while (c <= RC_CLASS_MAX_SHIFT && ((size_t)1 << c) < size)
		c++;
	if (c <= RC_CLASS_MAX_SHIFT && rc_classes[c - RC_CLASS_MIN_SHIFT]) {
		p = gwmem_fixpool_alloc(rc_classes[c - RC_CLASS_MIN_SHIFT]);
		if (p) {
			*cls = c - RC_CLASS_MIN_SHIFT;
			return p;
		}
	}
	p = gw_os_map(size);
	if (!p) {
		errno = ENOMEM;
		return NULL;
	}
	*cls = RC_CLASS_MAPPED;
	return p;
}

static void mem_free(void *p, uint32_t cls, size_t size)
{
	if (cls == RC_CLASS_MAPPED)
		gw_os_unmap(p, size);
	else
		gwmem_fixpool_free(rc_classes[cls], p);
}

/* --- registries: large objects and rc pools ----------------------------- */

/*
 * Large objects: an open-addressing set of header addresses (page-mapped, grown
 * by doubling, under one lock).  Lookups take the lock too: a resize must
 * not pull the table away from a reader.
 */
static struct {
	struct gw_spin lock;
	uintptr_t *slot;      /* 0 empty, 1 deleted, else a header address */
	size_t cap;           /* power of two, or 0 */
	size_t used;          /* live + deleted slots */
} large;

static size_t large_hash(uintptr_t a, size_t cap)
{
	uint64_t h = (uint64_t)a * 0x9e3779b97f4a7c15ull;

	return (size_t)(h >> 32) & (cap - 1);
}

static void large_put_locked(uintptr_t *tab, size_t cap, uintptr_t a)
{
	size_t i = large_hash(a, cap);

	while (tab[i] > 1)
		i = (i + 1) & (cap - 1);
	tab[i] = a;
}

static bool large_add(const void *h)
{
	bool ok = true;

	gw_spin_lock(&large.lock);
	if ((large.used + 1) * 4 > large.cap * 3) {
		size_t ncap = large.cap ? large.cap * 2 : 256;
		uintptr_t *tab = gw_os_map(ncap * sizeof(uintptr_t));

		if (!tab) {
			ok = false;
			goto out;
		}
		large.used = 0;
		for (size_t i = 0; i < large.cap; i++)
			if (large.slot[i] > 1) {
				large_put_locked(tab, ncap, large.slot[i]);
				large.used++;
			}
		if (large.slot)
			gw_os_unmap(large.slot, large.cap * sizeof(uintptr_t));
		large.slot = tab;
		large.cap = ncap;
	}
	large_put_locked(large.slot, large.cap, (uintptr_t)h);
	large.used++;
out:
	gw_spin_unlock(&large.lock);
	return ok;
}

static bool large_has_locked(uintptr_t a, size_t *at)
{
	size_t i;

	if (!large.cap)
		return false;
	for (i = large_hash(a, large.cap); large.slot[i]; i = (i + 1) & (large.cap - 1)) {
		if (large.slot[i] == a) {
			*at = i;
			return true;
		}
	}
	return false;
}

static bool large_has(const void *h)
{
	size_t at;
	bool r;

	gw_spin_lock(&large.lock);
	r = large_has_locked((uintptr_t)h, &at);
	gw_spin_unlock(&large.lock);
	return r;
}

static void large_del(const void *h)
{
	size_t at;

	gw_spin_lock(&large.lock);
	if (large_has_locked((uintptr_t)h, &at))
		large.slot[at] = 1;
	gw_spin_unlock(&large.lock);
}

/*
 * An rc pool.  'refs' counts the owner (until gwmem_rcpool_destroy()) and
 * every object whose memory has not yet gone back to the pool, so a pool
 * destroyed with live objects is released by the last of them.
 */
struct gwmem_rcpool {
	struct gwmem_objpool *op;
	struct gwmem_fixpool *fp;  /* the object pool's blocks, for address checks */
	struct gwmem_objpool_options user;
	uint32_t refs;
	bool dying;
	char name[32];
};

/*
 * rc pools, for address checks: an array of pointers that readers scan
 * without a lock.  It grows by copying into a larger mapping; old arrays are
 * never unmapped (they total less than the current one), so a reader that
 * loaded an old array pointer still reads mapped memory.
 */
static struct {
	struct gw_spin lock;
	struct gwmem_rcpool **slot;
	size_t cap;
} pools;

static bool pool_register(struct gwmem_rcpool *rp)
{
	bool ok = false;

	gw_spin_lock(&pools.lock);
	for (size_t i = 0; i < pools.cap; i++) {
		if (!pools.slot[i]) {
			__atomic_store_n(&pools.slot[i], rp, __ATOMIC_RELEASE);
			ok = true;
			goto out;
		}
	}
	size_t ncap = pools.cap ? pools.cap * 2 : 64;
	struct gwmem_rcpool **tab = gw_os_map(ncap * sizeof(*tab));

	if (tab) {
		if (pools.cap)
			memcpy(tab, pools.slot, pools.cap * sizeof(*tab));
		tab[pools.cap] = rp;
		__atomic_store_n(&pools.cap, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&pools.slot, tab, __ATOMIC_RELEASE);
		__atomic_store_n(&pools.cap, ncap, __ATOMIC_RELEASE);
		ok = true;
	}
out:
	gw_spin_unlock(&pools.lock);
	return ok;
}

static void pool_unregister(struct gwmem_rcpool *rp)
{
	gw_spin_lock(&pools.lock);
	for (size_t i = 0; i < pools.cap; i++)
		if (pools.slot[i] == rp)
			__atomic_store_n(&pools.slot[i], NULL, __ATOMIC_RELEASE);
	gw_spin_unlock(&pools.lock);
}

/*
 * Whether h may be read as an rc header: the start of a block of a class
 * pool or of an rc pool, or a registered large mapping.  Blocks of those
 * pools stay mapped while the pool lives, whatever their state.
 */
static bool hdr_mapped(const void *h)
{
	size_t cap;
	struct gwmem_rcpool **tab;

	if (!h || ((uintptr_t)h & 15))
		return false;
	if (__atomic_load_n(&rc_ready, __ATOMIC_ACQUIRE)) {
		for (unsigned c = 0; c < RC_NCLASSES; c++)
			if (rc_classes[c] && gw_fixpool_index(rc_classes[c], h) >= 0)
				return true;
	}
	cap = __atomic_load_n(&pools.cap, __ATOMIC_ACQUIRE);
	tab = __atomic_load_n(&pools.slot, __ATOMIC_ACQUIRE);
	for (size_t i = 0; i < cap; i++) {
		struct gwmem_rcpool *rp = __atomic_load_n(&tab[i], __ATOMIC_ACQUIRE);

		if (rp && gw_fixpool_index(rp->fp, h) >= 0)
			return true;
	}
	return large_has(h);
}

/* --- global statistics --------------------------------------------------- */

/* Striped by thread so that rc churn on several cores does not share a line. */
#define RC_STAT_STRIPES 16
static struct rc_stat {
	uint64_t created;
	uint64_t destroyed;
	uint64_t released;     /* memory given back (strong and weak both gone) */
	uint64_t bytes_created;
	uint64_t bytes_destroyed;
	uint64_t invalid;
} GW_ALIGNED(GW_CACHELINE) rc_stat[RC_STAT_STRIPES];

static GW_TLS unsigned tls_rc_stripe; /* 1 + stripe, 0 until assigned */
static unsigned rc_stripe_next;

static inline struct rc_stat *my_stat(void)
{
	unsigned s = tls_rc_stripe;

	if (gw_unlikely(s == 0)) {
		s = __atomic_fetch_add(&rc_stripe_next, 1, __ATOMIC_RELAXED) % RC_STAT_STRIPES + 1;
		tls_rc_stripe = s;
	}
	return &rc_stat[s - 1];
}

#define RC_STAT_ADD(field, n) __atomic_fetch_add(&my_stat()->field, (n), __ATOMIC_RELAXED)

static GW_COLD GW_NOINLINE void note_invalid(void)
{
	RC_STAT_ADD(invalid, 1);
}

/* --- rc objects --------------------------------------------------------- */

static void pool_unref(struct gwmem_rcpool *rp);

/* Strong and weak references are all gone: give the memory back. */
static void rc_release_memory(struct rc_hdr *h)
{
	/* Refuse the header from now on, whatever reuses the memory. */
	__atomic_store_n(&h->magic, RC_MAGIC_FREE, __ATOMIC_RELEASE);
	RC_STAT_ADD(released, 1);
	if (h->cls == RC_CLASS_POOLED) {
		struct gwmem_rcpool *rp = h->pool;

		gwmem_objpool_put(rp->op, h);
		pool_unref(rp);
		return;
	}
	GW_HOOK_FREE(payload_of(h));
	if (h->cls == RC_CLASS_MAPPED) {
		size_t len = GW_ALIGN_UP(h->size + RC_HDR_SIZE, gw_os_page_size());

		large_del(h);
		mem_free(h, h->cls, len);
	} else {
		mem_free(h, h->cls, 0);
	}
}

/* Drop one weak reference, never below zero; the last releases the memory. */
static bool weak_drop(struct rc_hdr *h)
{
	uint32_t old = __atomic_load_n(&h->weak, __ATOMIC_RELAXED);

	do {
		if (gw_unlikely(old == 0))
			return false;
	} while (!__atomic_compare_exchange_n(&h->weak, &old, old - 1, true, __ATOMIC_ACQ_REL,
					      __ATOMIC_RELAXED));
	if (old == 1)
		rc_release_memory(h);
	return true;
}

void *gwmem_rc_new(size_t size, gwmem_rc_dtor_fn dtor, void *arg)
{
	struct rc_hdr *h;
	uint32_t cls;
	size_t total;

	if (size > SIZE_MAX / 2) {
		errno = ENOMEM;
		return NULL;
	}
	total = size + RC_HDR_SIZE;
	if (total > ((size_t)1 << RC_CLASS_MAX_SHIFT))
		total = GW_ALIGN_UP(total, gw_os_page_size());
	h = mem_alloc(total, &cls);
	if (!h)
		return NULL;
	if (cls != RC_CLASS_MAPPED)
		memset(h, 0, total);
	else if (!large_add(h)) {
		mem_free(h, cls, total);
		errno = ENOMEM;
		return NULL;
	}
	h->strong = 1;
	h->weak = 1;
	h->cls = cls;
	h->size = size;
	h->dtor = dtor;
	h->arg = arg;
	h->pool = NULL;
	__atomic_store_n(&h->magic, RC_MAGIC_LIVE, __ATOMIC_RELEASE);
	RC_STAT_ADD(created, 1);
	RC_STAT_ADD(bytes_created, size);
	GW_HOOK_ALLOC(payload_of(h), size, rc_tag);
	return payload_of(h);
}

/* The header of a mapped rc header with magic 'magic', or NULL. */
static inline struct rc_hdr *checked(const void *hp, bool dead_too)
{
	struct rc_hdr *h = (struct rc_hdr *)hp;
	uint32_t m;

	if (gw_unlikely(!hdr_mapped(h)))
		goto bad;
	m = __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE);
	if (gw_likely(m == RC_MAGIC_LIVE) || (dead_too && m == RC_MAGIC_DEAD))
		return h;
bad:
	note_invalid();
	return NULL;
}

/* The header of live object obj, or NULL (not an rc object, or dead). */
static inline struct rc_hdr *live_hdr(const void *obj)
{
	if (gw_unlikely((uintptr_t)obj < RC_HDR_SIZE)) {
		if (obj)
			note_invalid();
		return NULL;
	}
	return checked(hdr_of(obj), false);
}

void *gwmem_rc_ref(void *obj)
{
	struct rc_hdr *h = live_hdr(obj);

	if (gw_unlikely(!h)) {
		errno = EINVAL;
		return NULL;
	}
	__atomic_fetch_add(&h->strong, 1, __ATOMIC_RELAXED);
	return obj;
}

int gwmem_rc_unref(void *obj)
{
	struct rc_hdr *h = live_hdr(obj);
	uint32_t old;

	if (gw_unlikely(!h))
		return -EINVAL;
	old = __atomic_load_n(&h->strong, __ATOMIC_RELAXED);
	do {
		if (gw_unlikely(old == 0))
			return -EINVAL;
	/* acq_rel rather than release + an acquire fence on the last one: the
	 * same instructions where it matters, and ThreadSanitizer models it */
	} while (!__atomic_compare_exchange_n(&h->strong, &old, old - 1, true, __ATOMIC_ACQ_REL,
					      __ATOMIC_RELAXED));
	if (old != 1)
		return 0;
	__atomic_store_n(&h->magic, RC_MAGIC_DEAD, __ATOMIC_RELEASE);
	RC_STAT_ADD(destroyed, 1);
	RC_STAT_ADD(bytes_destroyed, h->size);
	if (h->dtor)
		h->dtor(obj, h->arg);
	weak_drop(h);
	return 1;
}

uint32_t gwmem_rc_count(const void *obj)
{
	const struct rc_hdr *h = live_hdr(obj);

	return h ? __atomic_load_n(&h->strong, __ATOMIC_RELAXED) : 0;
}

uint32_t gwmem_rc_weak_count(const void *obj)
{
	const struct rc_hdr *h = live_hdr(obj);
	uint32_t w;

	if (!h)
		return 0;
	/* one of the weak counts stands for all the strong references */
	w = __atomic_load_n(&h->weak, __ATOMIC_RELAXED);
	return w ? w - 1 : 0;
}

struct gwmem_rc_weak *gwmem_rc_weak_new(void *obj)
{
	struct rc_hdr *h = live_hdr(obj);

	if (!h || !__atomic_load_n(&h->strong, __ATOMIC_RELAXED)) {
		errno = EINVAL;
		return NULL;
	}
	__atomic_fetch_add(&h->weak, 1, __ATOMIC_RELAXED);
	return (struct gwmem_rc_weak *)h;
}

void *gwmem_rc_weak_upgrade(struct gwmem_rc_weak *w)
{
	struct rc_hdr *h = checked(w, true);
	uint32_t old;

	if (!h) {
		errno = EINVAL;
		return NULL;
	}
	old = __atomic_load_n(&h->strong, __ATOMIC_RELAXED);
	do {
		if (old == 0) {
			errno = ENOENT;
			return NULL;
		}
	} while (!__atomic_compare_exchange_n(&h->strong, &old, old + 1, true, __ATOMIC_ACQUIRE,
					      __ATOMIC_RELAXED));
	return payload_of(h);
}

bool gwmem_rc_weak_alive(const struct gwmem_rc_weak *w)
{
	const struct rc_hdr *h = checked(w, true);

	return h && __atomic_load_n(&h->strong, __ATOMIC_RELAXED) > 0;
}

void gwmem_rc_weak_release(struct gwmem_rc_weak *w)
{
	struct rc_hdr *h;

	if (!w)
		return;
	h = checked(w, true);
	if (h && !weak_drop(h))
		note_invalid();
}

int gwmem_rc_stats(struct gwmem_rc_stats *out)
{
	uint64_t bc = 0, bd = 0, rel = 0;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < RC_STAT_STRIPES; i++) {
		out->created += __atomic_load_n(&rc_stat[i].created, __ATOMIC_RELAXED);
		out->destroyed += __atomic_load_n(&rc_stat[i].destroyed, __ATOMIC_RELAXED);
		rel += __atomic_load_n(&rc_stat[i].released, __ATOMIC_RELAXED);
		bc += __atomic_load_n(&rc_stat[i].bytes_created, __ATOMIC_RELAXED);
		bd += __atomic_load_n(&rc_stat[i].bytes_destroyed, __ATOMIC_RELAXED);
		out->invalid_calls += __atomic_load_n(&rc_stat[i].invalid, __ATOMIC_RELAXED);
	}
	out->live = out->created > out->destroyed ? out->created - out->destroyed : 0;
	out->live_bytes = bc > bd ? bc - bd : 0;
	out->retained = out->destroyed > rel ? out->destroyed - rel : 0;
	return 0;
}

/*
 * With [memory] stats_on_exit (or GWMEM_STATS=1), say at exit how many rc
 * objects were never released: the in-process form of a leak report.
 */
__attribute__((destructor)) static void rc_exit_report(void)
{
	struct gwmem_rc_stats st;
	struct gwmem_config cfg;

	gwmem_rc_stats(&st);
	if (st.created == 0)
		return;
	gwmem_config_load(&cfg, NULL, GWMEM_CONFIG_QUIET);
	if (!cfg.memory.stats_on_exit)
		return;
	gw_log("rc objects: %llu created, %llu destroyed, %llu leaked at exit (%llu bytes), "
	       "%llu held dead by weak references, %llu invalid calls",
	       (unsigned long long)st.created, (unsigned long long)st.destroyed,
	       (unsigned long long)st.live, (unsigned long long)st.live_bytes,
	       (unsigned long long)st.retained, (unsigned long long)st.invalid_calls);
}

/* --- rc pools ----------------------------------------------------------- */

static int rcpool_init(void *obj, void *arg)
{
	struct gwmem_rcpool *rp = arg;

	return rp->user.init ? rp->user.init(payload_of(obj), rp->user.arg) : 0;
}

static void rcpool_reset(void *obj, void *arg)
{
	struct gwmem_rcpool *rp = arg;

	if (rp->user.reset)
		rp->user.reset(payload_of(obj), rp->user.arg);
}

static void rcpool_destroy_cb(void *obj, void *arg)
{
	struct gwmem_rcpool *rp = arg;

	if (rp->user.destroy)
		rp->user.destroy(payload_of(obj), rp->user.arg);
}

struct gwmem_rcpool *gwmem_rcpool_create(const struct gwmem_objpool_options *opts)
{
	struct gwmem_objpool_options o;
	struct gwmem_rcpool *rp;

	if (!opts || opts->object_size == 0 || opts->object_size > SIZE_MAX / 2) {
		errno = EINVAL;
		return NULL;
	}
	rp = gw_os_map(GW_ALIGN_UP(sizeof(*rp), gw_os_page_size()));
	if (!rp) {
		errno = ENOMEM;
		return NULL;
	}
	rp->user = *opts;
	/* the caller's name string need not outlive this call */
	if (opts->name)
		gw_snprintf(rp->name, sizeof(rp->name), "%s", opts->name);
	rp->user.name = opts->name ? rp->name : NULL;
	rp->refs = 1;
	o = rp->user;
	o.object_size = opts->object_size + RC_HDR_SIZE;
	o.alignment = opts->alignment > 16 ? opts->alignment : 16;
	o.init = rcpool_init;
	o.reset = rcpool_reset;
	o.destroy = rcpool_destroy_cb;
	o.arg = rp;
	rp->op = gw_objpool_create(&o, true);
	if (!rp->op)
		goto fail;
	rp->fp = gw_objpool_fixpool(rp->op);
	if (!pool_register(rp)) {
		gwmem_objpool_destroy(rp->op);
		errno = ENOMEM;
		goto fail;
	}
	return rp;
fail:;
	int e = errno;

	gw_os_unmap(rp, GW_ALIGN_UP(sizeof(*rp), gw_os_page_size()));
	errno = e;
	return NULL;
}

static void pool_unref(struct gwmem_rcpool *rp)
{
	if (__atomic_sub_fetch(&rp->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	pool_unregister(rp);
	gwmem_objpool_destroy(rp->op);
	gw_os_unmap(rp, GW_ALIGN_UP(sizeof(*rp), gw_os_page_size()));
}

void gwmem_rcpool_destroy(struct gwmem_rcpool *rp)
{
	if (!rp || __atomic_exchange_n(&rp->dying, true, __ATOMIC_ACQ_REL))
		return;
	pool_unref(rp);
}

void *gwmem_rcpool_get(struct gwmem_rcpool *rp)
{
	struct rc_hdr *h;

	if (!rp || __atomic_load_n(&rp->dying, __ATOMIC_ACQUIRE)) {
		errno = EINVAL;
		return NULL;
	}
	__atomic_fetch_add(&rp->refs, 1, __ATOMIC_RELAXED);
	h = gwmem_objpool_get(rp->op);
	if (!h) {
		int e = errno;

		pool_unref(rp);
		errno = e;
		return NULL;
	}
	h->strong = 1;
	h->weak = 1;
	h->cls = RC_CLASS_POOLED;
	h->size = rp->user.object_size;
	h->dtor = NULL;
	h->arg = NULL;
	h->pool = rp;
	__atomic_store_n(&h->magic, RC_MAGIC_LIVE, __ATOMIC_RELEASE);
	RC_STAT_ADD(created, 1);
	RC_STAT_ADD(bytes_created, h->size);
	return payload_of(h);
}

int gwmem_rcpool_stats(struct gwmem_rcpool *rp, struct gwmem_objpool_stats *out)
{
	if (!rp)
		return -EINVAL;
	return gwmem_objpool_stats(rp->op, out);
}

size_t gwmem_rcpool_size(struct gwmem_rcpool *rp)
{
	return rp ? gwmem_objpool_size(rp->op) : 0;
}

size_t gwmem_rcpool_shrink(struct gwmem_rcpool *rp, size_t keep)
{
	return rp ? gwmem_objpool_shrink(rp->op, keep) : 0;
}

size_t gwmem_rcpool_clear(struct gwmem_rcpool *rp)
{
	return gwmem_rcpool_shrink(rp, 0);
}

/* --- weak cache --------------------------------------------------------- */

#define GW_WC_STRIPES 16

struct wc_entry {
	struct wc_entry *next;
	struct rc_hdr *ref;       /* one weak reference */
	uint32_t hash;
	uint32_t cls;
	size_t keylen;
	size_t mem_size;
	unsigned char key[];
};

struct gwmem_weakcache {
	struct wc_entry **buckets;
	size_t nbuckets;          /* power of two */
	size_t buckets_bytes;
	size_t count;
	pthread_mutex_t locks[GW_WC_STRIPES];
};

static uint32_t wc_hash(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint32_t h = 2166136261u;     /* FNV-1a */

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h ^ (h >> 15);
}

static inline pthread_mutex_t *wc_lock(struct gwmem_weakcache *wc, size_t b)
{
	return &wc->locks[b & (GW_WC_STRIPES - 1)];
}

static void entry_free(struct wc_entry *e)
{
	struct rc_hdr *ref = e->ref;

	mem_free(e, e->cls, e->mem_size);
	if (ref)
		weak_drop(ref);
}

struct gwmem_weakcache *gwmem_weakcache_create(size_t buckets)
{
	struct gwmem_weakcache *wc;
	size_t n = 16;

	if (buckets == 0)
		buckets = 256;
	while (n < buckets && n < ((size_t)1 << 24))
		n <<= 1;
	wc = gw_os_map(GW_ALIGN_UP(sizeof(*wc), gw_os_page_size()));
	if (!wc) {
		errno = ENOMEM;
		return NULL;
	}
	memset(wc, 0, sizeof(*wc));
	wc->nbuckets = n;
	wc->buckets_bytes = GW_ALIGN_UP(n * sizeof(*wc->buckets), gw_os_page_size());
	wc->buckets = gw_os_map(wc->buckets_bytes);
	if (!wc->buckets) {
		gw_os_unmap(wc, GW_ALIGN_UP(sizeof(*wc), gw_os_page_size()));
		errno = ENOMEM;
		return NULL;
	}
	for (unsigned i = 0; i < GW_WC_STRIPES; i++)
		pthread_mutex_init(&wc->locks[i], NULL);
	return wc;
}

void gwmem_weakcache_destroy(struct gwmem_weakcache *wc)
{
	if (!wc)
		return;
	for (size_t b = 0; b < wc->nbuckets; b++) {
		struct wc_entry *e = wc->buckets[b], *next;

		for (; e; e = next) {
			next = e->next;
			entry_free(e);
		}
	}
	for (unsigned i = 0; i < GW_WC_STRIPES; i++)
		pthread_mutex_destroy(&wc->locks[i]);
	gw_os_unmap(wc->buckets, wc->buckets_bytes);
	gw_os_unmap(wc, GW_ALIGN_UP(sizeof(*wc), gw_os_page_size()));
}

static inline bool entry_dead(const struct wc_entry *e)
{
	return __atomic_load_n(&e->ref->strong, __ATOMIC_ACQUIRE) == 0;
}

static inline bool entry_match(const struct wc_entry *e, uint32_t hash, const void *key, size_t len)
{
	return e->hash == hash && e->keylen == len && memcmp(e->key, key, len) == 0;
}

int gwmem_weakcache_insert(struct gwmem_weakcache *wc, const void *key, size_t keylen, void *obj)
{
	struct wc_entry *e, **pp, *dead = NULL;
	struct gwmem_rc_weak *w;
	uint32_t hash, cls;
	size_t b, sz;

	if (!wc || (!key && keylen) || keylen > ((size_t)1 << 20))
		return -EINVAL;
	w = gwmem_rc_weak_new(obj);
	if (!w)
		return -EINVAL;
	sz = sizeof(*e) + keylen;
	if (sz > ((size_t)1 << RC_CLASS_MAX_SHIFT))
		sz = GW_ALIGN_UP(sz, gw_os_page_size());
	e = mem_alloc(sz, &cls);
	if (!e) {
		gwmem_rc_weak_release(w);
		return -ENOMEM;
	}
	hash = wc_hash(key, keylen);
	e->ref = (struct rc_hdr *)w;
	e->hash = hash;
	e->cls = cls;
	e->keylen = keylen;
	e->mem_size = sz;
	if (keylen)
		memcpy(e->key, key, keylen);

	b = hash & (wc->nbuckets - 1);
	pthread_mutex_lock(wc_lock(wc, b));
	/* Unlink the old entry for this key and any dead entry on the way. */
	for (pp = &wc->buckets[b]; *pp;) {
		struct wc_entry *cur = *pp;

		if (entry_match(cur, hash, key, keylen) || entry_dead(cur)) {
			__atomic_store_n(pp, cur->next, __ATOMIC_RELAXED);
			cur->next = dead;
			dead = cur;
			__atomic_fetch_sub(&wc->count, 1, __ATOMIC_RELAXED);
		} else {
			pp = &cur->next;
		}
	}
	e->next = wc->buckets[b];
	__atomic_store_n(&wc->buckets[b], e, __ATOMIC_RELAXED);
	__atomic_fetch_add(&wc->count, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(wc_lock(wc, b));

	while (dead) {
		struct wc_entry *next = dead->next;

		entry_free(dead);
		dead = next;
	}
	return 0;
}

void *gwmem_weakcache_get(struct gwmem_weakcache *wc, const void *key, size_t keylen)
{
	struct wc_entry *e, **pp, *dead = NULL;
	void *obj = NULL;
	uint32_t hash;
	size_t b;

	if (!wc || (!key && keylen)) {
		errno = EINVAL;
		return NULL;
	}
	hash = wc_hash(key, keylen);
	b = hash & (wc->nbuckets - 1);
	pthread_mutex_lock(wc_lock(wc, b));
	for (pp = &wc->buckets[b]; (e = *pp); pp = &e->next) {
		if (!entry_match(e, hash, key, keylen))
			continue;
		obj = gwmem_rc_weak_upgrade((struct gwmem_rc_weak *)e->ref);
		if (!obj) {
			__atomic_store_n(pp, e->next, __ATOMIC_RELAXED);
			dead = e;
			__atomic_fetch_sub(&wc->count, 1, __ATOMIC_RELAXED);
		}
		break;
	}
	pthread_mutex_unlock(wc_lock(wc, b));
	if (dead)
		entry_free(dead);
	if (!obj)
		errno = ENOENT;
	return obj;
}

int gwmem_weakcache_remove(struct gwmem_weakcache *wc, const void *key, size_t keylen)
{
	struct wc_entry *e, **pp, *found = NULL;
	uint32_t hash;
	size_t b;

	if (!wc || (!key && keylen))
		return -EINVAL;
	hash = wc_hash(key, keylen);
	b = hash & (wc->nbuckets - 1);
	pthread_mutex_lock(wc_lock(wc, b));
	for (pp = &wc->buckets[b]; (e = *pp); pp = &e->next) {
		if (entry_match(e, hash, key, keylen)) {
			__atomic_store_n(pp, e->next, __ATOMIC_RELAXED);
			found = e;
			__atomic_fetch_sub(&wc->count, 1, __ATOMIC_RELAXED);
			break;
		}
	}
	pthread_mutex_unlock(wc_lock(wc, b));
	if (!found)
		return -ENOENT;
	entry_free(found);
	return 0;
}

size_t gwmem_weakcache_purge(struct gwmem_weakcache *wc)
{
	size_t n = 0;

	if (!wc)
		return 0;
	for (size_t b = 0; b < wc->nbuckets; b++) {
		struct wc_entry *e, **pp, *dead = NULL;

		if (!__atomic_load_n(&wc->buckets[b], __ATOMIC_RELAXED))
			continue;
		pthread_mutex_lock(wc_lock(wc, b));
		for (pp = &wc->buckets[b]; (e = *pp);) {
			if (entry_dead(e)) {
				__atomic_store_n(pp, e->next, __ATOMIC_RELAXED);
				e->next = dead;
				dead = e;
				__atomic_fetch_sub(&wc->count, 1, __ATOMIC_RELAXED);
			} else {
				pp = &e->next;
			}
		}
		pthread_mutex_unlock(wc_lock(wc, b));
		while (dead) {
			struct wc_entry *next = dead->next;

			entry_free(dead);
			dead = next;
			n++;
		}
	}
	return n;
}

size_t gwmem_weakcache_size(struct gwmem_weakcache *wc)
{
	return wc ? __atomic_load_n(&wc->count, __ATOMIC_RELAXED) : 0;
}
