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

#define RC_MAGIC_LIVE 0x67774c56u /* "gwLV" */
#define RC_MAGIC_DEAD 0x67774444u /* "gwDD" */
#define RC_CLASS_MIN_SHIFT 6      /* 64 bytes */
#define RC_CLASS_MAX_SHIFT 12     /* 4 KiB */
#define RC_NCLASSES (RC_CLASS_MAX_SHIFT - RC_CLASS_MIN_SHIFT + 1)
#define RC_CLASS_MAPPED 0xffu
#define RC_CLASS_POOLED 0xfeu

struct rc_hdr {
	uint32_t strong;
	uint32_t weak;
	uint32_t magic;
	uint32_t cls;             /* size class, RC_CLASS_MAPPED or RC_CLASS_POOLED */
	size_t size;              /* payload bytes (mapped: whole mapping) */
	gwmem_rc_dtor_fn dtor;
	void *arg;
	struct gwmem_rcpool *pool;
};

#define RC_HDR_SIZE GW_ALIGN_UP(sizeof(struct rc_hdr), 16)

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

/* --- rc objects --------------------------------------------------------- */

struct gwmem_rcpool {
	struct gwmem_objpool *op;
	struct gwmem_objpool_options user;
};

static void rc_release_memory(struct rc_hdr *h)
{
	if (h->cls == RC_CLASS_POOLED) {
		gwmem_objpool_put(h->pool->op, h);
		return;
	}
	GW_HOOK_FREE(payload_of(h));
	if (h->cls == RC_CLASS_MAPPED)
		mem_free(h, h->cls, GW_ALIGN_UP(h->size + RC_HDR_SIZE, gw_os_page_size()));
	else
		mem_free(h, h->cls, 0);
}

static inline void weak_drop(struct rc_hdr *h)
{
	if (__atomic_sub_fetch(&h->weak, 1, __ATOMIC_ACQ_REL) == 0)
		rc_release_memory(h);
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
	h->strong = 1;
	h->weak = 1;
	h->cls = cls;
	h->size = size;
	h->dtor = dtor;
	h->arg = arg;
	h->pool = NULL;
	__atomic_store_n(&h->magic, RC_MAGIC_LIVE, __ATOMIC_RELEASE);
	GW_HOOK_ALLOC(payload_of(h), size, rc_tag);
	return payload_of(h);
}

static inline bool live(const struct rc_hdr *h)
{
	return __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) == RC_MAGIC_LIVE;
}

void *gwmem_rc_ref(void *obj)
{
	struct rc_hdr *h;

	if (gw_unlikely(!obj || !live(h = hdr_of(obj)))) {
		errno = EINVAL;
		return NULL;
	}
	__atomic_fetch_add(&h->strong, 1, __ATOMIC_RELAXED);
	return obj;
}

int gwmem_rc_unref(void *obj)
{
	struct rc_hdr *h;
	uint32_t old;

	if (gw_unlikely(!obj || !live(h = hdr_of(obj))))
		return -EINVAL;
	old = __atomic_load_n(&h->strong, __ATOMIC_RELAXED);
	do {
		if (gw_unlikely(old == 0))
			return -EINVAL;
	} while (!__atomic_compare_exchange_n(&h->strong, &old, old - 1, true, __ATOMIC_RELEASE,
					      __ATOMIC_RELAXED));
	if (old != 1)
		return 0;
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	__atomic_store_n(&h->magic, RC_MAGIC_DEAD, __ATOMIC_RELEASE);
	if (h->dtor)
		h->dtor(obj, h->arg);
	weak_drop(h);
	return 1;
}

uint32_t gwmem_rc_count(const void *obj)
{
	const struct rc_hdr *h;

	if (!obj || !live(h = hdr_of(obj)))
		return 0;
	return __atomic_load_n(&h->strong, __ATOMIC_RELAXED);
}

struct gwmem_rc_weak *gwmem_rc_weak_new(void *obj)
{
	struct rc_hdr *h;

	if (!obj || !live(h = hdr_of(obj)) || !__atomic_load_n(&h->strong, __ATOMIC_RELAXED)) {
		errno = EINVAL;
		return NULL;
	}
	__atomic_fetch_add(&h->weak, 1, __ATOMIC_RELAXED);
	return (struct gwmem_rc_weak *)h;
}

void *gwmem_rc_weak_upgrade(struct gwmem_rc_weak *w)
{
	struct rc_hdr *h = (struct rc_hdr *)w;
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
	const struct rc_hdr *h = (const struct rc_hdr *)w;

	return h && __atomic_load_n(&h->strong, __ATOMIC_RELAXED) > 0;
}

void gwmem_rc_weak_release(struct gwmem_rc_weak *w)
{
	if (w)
		weak_drop((struct rc_hdr *)w);
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
	o = *opts;
	o.object_size = opts->object_size + RC_HDR_SIZE;
	o.alignment = opts->alignment > 16 ? opts->alignment : 16;
	o.init = rcpool_init;
	o.reset = rcpool_reset;
	o.destroy = rcpool_destroy_cb;
	o.arg = rp;
	rp->op = gw_objpool_create(&o, true);
	if (!rp->op) {
		int e = errno;

		gw_os_unmap(rp, GW_ALIGN_UP(sizeof(*rp), gw_os_page_size()));
		errno = e;
		return NULL;
	}
	return rp;
}

void gwmem_rcpool_destroy(struct gwmem_rcpool *rp)
{
	if (!rp)
		return;
	gwmem_objpool_destroy(rp->op);
	gw_os_unmap(rp, GW_ALIGN_UP(sizeof(*rp), gw_os_page_size()));
}

void *gwmem_rcpool_get(struct gwmem_rcpool *rp)
{
	struct rc_hdr *h;

	if (!rp) {
		errno = EINVAL;
		return NULL;
	}
	h = gwmem_objpool_get(rp->op);
	if (!h)
		return NULL;
	h->strong = 1;
	h->weak = 1;
	h->cls = RC_CLASS_POOLED;
	h->size = rp->user.object_size;
	h->dtor = NULL;
	h->arg = NULL;
	h->pool = rp;
	__atomic_store_n(&h->magic, RC_MAGIC_LIVE, __ATOMIC_RELEASE);
	return payload_of(h);
}

int gwmem_rcpool_stats(struct gwmem_rcpool *rp, struct gwmem_objpool_stats *out)
{
	if (!rp)
		return -EINVAL;
	return gwmem_objpool_stats(rp->op, out);
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
			*pp = cur->next;
			cur->next = dead;
			dead = cur;
			__atomic_fetch_sub(&wc->count, 1, __ATOMIC_RELAXED);
		} else {
			pp = &cur->next;
		}
	}
	e->next = wc->buckets[b];
	wc->buckets[b] = e;
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
			*pp = e->next;
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
			*pp = e->next;
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
				*pp = e->next;
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
