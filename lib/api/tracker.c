/*
 * tracker.c - in-process leak tracking for pools created with a tracking
 * flag (GWMEM_FIXPOOL_TRACK, GWMEM_BUFPOOL_TRACK, the objpool's 'track'):
 * firmware that is not run under libgwmem-preload.so can still ask which
 * call sites hold blocks older than T seconds (gwmem_track_leaks()) and the
 * totals (gwmem_track_totals()).
 *
 * Definitions:
 *  - record: 16 bytes per block of a tracked pool, in an array indexed like
 *    the pool's blocks (the pool maps a block to its index in O(1)), so
 *    recording is a store, not a table insert.  time_ns != 0 means live.
 *    The array is an anonymous mapping: pages of blocks never used cost
 *    nothing.
 *  - stack: up to GWMEM_TRACK_FRAMES return addresses, deduplicated into a
 *    process-wide stack table (append-only array + hash index, one lock);
 *    a record holds the stack's id.  When the table is full, new stacks get
 *    id 0 ("unknown") and are counted.
 *
 * Capture: glibc's backtrace(), which follows the unwind tables (.eh_frame)
 * through libgcc's unwinder and so works on code built without frame
 * pointers; it is primed when the first tracked pool is created, because
 * its first call loads libgcc_s.  Where there is no backtrace() (musl) the
 * capture falls back to the frame-pointer walk, bounded by the thread's
 * stack.  The recorded stack starts at the caller of the public function:
 * frames above its return address (this library's own) are dropped.
 *
 * This library does not interpose malloc and does not need the preload
 * library; under the preload the same blocks are also reported to its
 * segment through the hooks (common/hook.h), so `gwmem leaks` shows them.
 *
 * Queries read the records without stopping the pools: a block freed or
 * handed out during a query may or may not be counted.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#if defined(__GLIBC__)
#include <execinfo.h>
#define GW_HAVE_BACKTRACE 1
#else
#define GW_HAVE_BACKTRACE 0
#endif
#include <dlfcn.h>
#include <unistd.h>

#include "gwmem.h"
#include "fmt.h"
#include "internal.h"
#include "os.h"
#include "spin.h"
#include "tracker.h"

#define GW_TRACK_MAX_STACKS 16384u
#define GW_TRACK_INDEX_SLOTS (2 * GW_TRACK_MAX_STACKS)

struct rec {
	uint64_t time_ns;     /* monotonic; 0 = not live */
	uint32_t stack;       /* stack id, 0 = unknown */
	uint32_t tid;
};

struct gw_track {
	struct gw_track *next;
	struct rec *rec;
	size_t rec_bytes;
	size_t capacity;
	size_t hi;            /* highest index recorded + 1 */
	size_t block_size;
	uint64_t allocs;
	uint64_t frees;
	char name[32];
};

struct stack {
	uint32_t hash;
	uint32_t n;
	uintptr_t pc[GWMEM_TRACK_FRAMES];
};

/* The registry of tracked pools and the stack table. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gw_track *tracks;

static struct gw_spin st_lock;
static struct stack *stacks;      /* [0] unused: id 0 is "unknown" */
static uint32_t *st_index;        /* stack id, 0 = empty */
static uint32_t nstacks = 1;
static uint64_t stacks_dropped;
static pthread_once_t st_once = PTHREAD_ONCE_INIT;

static void st_init(void)
{
	stacks = gw_os_map(GW_TRACK_MAX_STACKS * sizeof(struct stack));
	st_index = gw_os_map(GW_TRACK_INDEX_SLOTS * sizeof(uint32_t));
#if GW_HAVE_BACKTRACE
	{
		void *pc[2];

		backtrace(pc, 2); /* loads libgcc_s now, not inside a pool call */
	}
#endif
}

static uint32_t st_hash(const uintptr_t *pc, unsigned n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (unsigned i = 0; i < n; i++)
		h = (h ^ pc[i]) * 0x100000001b3ull;
	return (uint32_t)(h ^ (h >> 32));
}

static uint32_t st_intern(const uintptr_t *pc, unsigned n)
{
	uint32_t h = st_hash(pc, n), id = 0;
	size_t i;

	if (!stacks || !st_index)
		return 0;
	gw_spin_lock(&st_lock);
	for (i = h & (GW_TRACK_INDEX_SLOTS - 1); st_index[i]; i = (i + 1) & (GW_TRACK_INDEX_SLOTS - 1)) {
		struct stack *s = &stacks[st_index[i]];

		if (s->hash == h && s->n == n && memcmp(s->pc, pc, n * sizeof(*pc)) == 0) {
			id = st_index[i];
			goto out;
		}
	}
	if (nstacks >= GW_TRACK_MAX_STACKS) {
		stacks_dropped++;
		goto out;
	}
	id = nstacks;
	stacks[id].hash = h;
	stacks[id].n = n;
	memcpy(stacks[id].pc, pc, n * sizeof(*pc));
	st_index[i] = id;
	__atomic_store_n(&nstacks, id + 1, __ATOMIC_RELEASE);
out:
	gw_spin_unlock(&st_lock);
	return id;
}

#if !GW_HAVE_BACKTRACE
/* Frame-pointer walk, bounded: each frame above the last, within 1 MiB. */
static unsigned fp_walk(uintptr_t *pc, unsigned max)
{
	uintptr_t *fp = __builtin_frame_address(0);
	unsigned n = 0;

	while (fp && n < max) {
		uintptr_t *next = (uintptr_t *)fp[0];

		if (fp[1] < 4096)
			break;
		pc[n++] = fp[1];
		if (next <= fp || (uintptr_t)next - (uintptr_t)fp > (1u << 20) || ((uintptr_t)next & (sizeof(void *) - 1)))
			break;
		fp = next;
	}
	return n;
}
#endif

/* The stack of the caller whose return address is 'ra'. */
static GW_NOINLINE uint32_t capture(const void *ra)
{
	uintptr_t pc[GWMEM_TRACK_FRAMES + 8];
	unsigned n, first = 0;

#if GW_HAVE_BACKTRACE
	n = (unsigned)backtrace((void **)pc, (int)GW_ARRAY_SIZE(pc));
#else
	n = fp_walk(pc, GW_ARRAY_SIZE(pc));
#endif
	for (unsigned i = 0; i < n; i++) {
		if (pc[i] == (uintptr_t)ra) {
			first = i;
			break;
		}
	}
	n -= first;
	if (n > GWMEM_TRACK_FRAMES)
		n = GWMEM_TRACK_FRAMES;
	return n ? st_intern(pc + first, n) : 0;
}

struct gw_track *gw_track_create(const char *name, size_t capacity, size_t block_size)
{
	struct gw_track *t;

	pthread_once(&st_once, st_init);
	t = gw_os_map(GW_ALIGN_UP(sizeof(*t), gw_os_page_size()));
	if (!t)
		goto nomem;
	memset(t, 0, sizeof(*t));
	t->capacity = capacity;
	t->block_size = block_size;
	t->rec_bytes = GW_ALIGN_UP(capacity * sizeof(struct rec), gw_os_page_size());
	t->rec = gw_os_map(t->rec_bytes);
	if (!t->rec) {
		gw_os_unmap(t, GW_ALIGN_UP(sizeof(*t), gw_os_page_size()));
		goto nomem;
	}
	gw_snprintf(t->name, sizeof(t->name), "%s", name && *name ? name : "anon");
	pthread_mutex_lock(&reg_lock);
	t->next = tracks;
	tracks = t;
	pthread_mutex_unlock(&reg_lock);
	return t;
nomem:
	errno = ENOMEM;
	return NULL;
}

void gw_track_destroy(struct gw_track *t)
{
	struct gw_track **pp;

	if (!t)
		return;
	pthread_mutex_lock(&reg_lock);
	for (pp = &tracks; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	pthread_mutex_unlock(&reg_lock);
	gw_os_unmap(t->rec, t->rec_bytes);
	gw_os_unmap(t, GW_ALIGN_UP(sizeof(*t), gw_os_page_size()));
}

void gw_track_alloc(struct gw_track *t, size_t index, const void *ra)
{
	struct rec *r;
	size_t hi;

	if (index >= t->capacity)
		return;
	r = &t->rec[index];
	__atomic_store_n(&r->stack, capture(ra), __ATOMIC_RELAXED);
	__atomic_store_n(&r->tid, gw_os_gettid(), __ATOMIC_RELAXED);
	__atomic_store_n(&r->time_ns, gw_os_monotonic_ns() | 1, __ATOMIC_RELEASE);
	hi = __atomic_load_n(&t->hi, __ATOMIC_RELAXED);
	while (index + 1 > hi &&
	       !__atomic_compare_exchange_n(&t->hi, &hi, index + 1, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	__atomic_fetch_add(&t->allocs, 1, __ATOMIC_RELAXED);
}

void gw_track_free(struct gw_track *t, size_t index)
{
	if (index >= t->capacity)
		return;
	__atomic_store_n(&t->rec[index].time_ns, 0, __ATOMIC_RELEASE);
	__atomic_fetch_add(&t->frees, 1, __ATOMIC_RELAXED);
}

/* --- queries ------------------------------------------------------------ */

struct acc {
	uint64_t blocks;
	uint64_t bytes;
	uint64_t oldest;      /* smallest time_ns */
	struct gw_track *pool;
};

size_t gwmem_track_leaks(double older_than_seconds, struct gwmem_track_site *sites, size_t max_sites)
{
	uint64_t now = gw_os_monotonic_ns(), limit;
	size_t acc_bytes = GW_ALIGN_UP(GW_TRACK_MAX_STACKS * sizeof(struct acc), gw_os_page_size());
	struct acc *acc;
	size_t nsites = 0, kept = 0;
	uint32_t ns;

	if (older_than_seconds < 0)
		older_than_seconds = 0;
	limit = (uint64_t)(older_than_seconds * 1e9);
	acc = gw_os_map(acc_bytes);
	if (!acc) {
		errno = ENOMEM;
		return 0;
	}
	pthread_mutex_lock(&reg_lock);
	for (struct gw_track *t = tracks; t; t = t->next) {
		size_t hi = __atomic_load_n(&t->hi, __ATOMIC_RELAXED);

		for (size_t i = 0; i < hi; i++) {
			uint64_t tm = __atomic_load_n(&t->rec[i].time_ns, __ATOMIC_ACQUIRE);
			uint32_t id;

			if (!tm || tm > now || now - tm < limit)
				continue;
			id = __atomic_load_n(&t->rec[i].stack, __ATOMIC_RELAXED);
			if (id >= GW_TRACK_MAX_STACKS)
				id = 0;
			if (!acc[id].blocks || tm < acc[id].oldest)
				acc[id].oldest = tm;
			if (!acc[id].pool)
				acc[id].pool = t;
			acc[id].blocks++;
			acc[id].bytes += t->block_size;
		}
	}
	/* Keep the max_sites sites with the most bytes, largest first. */
	ns = __atomic_load_n(&nstacks, __ATOMIC_ACQUIRE);
	for (uint32_t id = 0; id < ns; id++) {
		size_t at;

		if (!acc[id].blocks)
			continue;
		nsites++;
		if (!sites || max_sites == 0)
			continue;
		for (at = kept; at > 0 && sites[at - 1].bytes < acc[id].bytes; at--)
			;
		if (at >= max_sites)
			continue;
		memmove(&sites[at + 1], &sites[at], (kept - at - (kept == max_sites)) * sizeof(*sites));
		if (kept < max_sites)
			kept++;
		memset(&sites[at], 0, sizeof(sites[at]));
		sites[at].blocks = acc[id].blocks;
		sites[at].bytes = acc[id].bytes;
		sites[at].oldest_age = (double)(now - acc[id].oldest) / 1e9;
		gw_snprintf(sites[at].pool, sizeof(sites[at].pool), "%s", acc[id].pool->name);
		if (id) {
			sites[at].nframes = stacks[id].n;
			for (unsigned f = 0; f < stacks[id].n; f++)
				sites[at].frames[f] = (void *)stacks[id].pc[f];
		}
	}
	pthread_mutex_unlock(&reg_lock);
	gw_os_unmap(acc, acc_bytes);
	return nsites;
}

int gwmem_track_totals(struct gwmem_track_totals *out)
{
	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&reg_lock);
	for (struct gw_track *t = tracks; t; t = t->next) {
		size_t hi = __atomic_load_n(&t->hi, __ATOMIC_RELAXED);

		out->pools++;
		out->allocs += __atomic_load_n(&t->allocs, __ATOMIC_RELAXED);
		out->frees += __atomic_load_n(&t->frees, __ATOMIC_RELAXED);
		for (size_t i = 0; i < hi; i++)
			if (__atomic_load_n(&t->rec[i].time_ns, __ATOMIC_RELAXED)) {
				out->live_blocks++;
				out->live_bytes += t->block_size;
			}
	}
	pthread_mutex_unlock(&reg_lock);
	gw_spin_lock(&st_lock);
	out->stacks = nstacks - 1;
	out->stacks_dropped = stacks_dropped;
	gw_spin_unlock(&st_lock);
	return 0;
}

int gwmem_track_report(int fd, double older_than_seconds, size_t max_sites)
{
	struct gwmem_track_site site[32];
	size_t n, shown;
	char mem[1024];

	if (fd < 0)
		return -EINVAL;
	if (max_sites == 0 || max_sites > GW_ARRAY_SIZE(site))
		max_sites = GW_ARRAY_SIZE(site);
	n = gwmem_track_leaks(older_than_seconds, site, max_sites);
	shown = n < max_sites ? n : max_sites;
	for (size_t i = 0; i < shown; i++) {
		struct gw_buf b = GW_BUF_INIT(mem);

		gw_format(&b, "%llu blocks, %llu bytes, oldest %.1f s, pool %s\n",
			  (unsigned long long)site[i].blocks, (unsigned long long)site[i].bytes,
			  site[i].oldest_age, site[i].pool);
		for (unsigned f = 0; f < site[i].nframes; f++) {
			Dl_info di;

			if (dladdr(site[i].frames[f], &di) && di.dli_sname)
				gw_format(&b, "  #%u %p %s+0x%lx (%s)\n", f, site[i].frames[f], di.dli_sname,
					  (unsigned long)((uintptr_t)site[i].frames[f] - (uintptr_t)di.dli_saddr),
					  di.dli_fname ? di.dli_fname : "?");
			else if (dladdr(site[i].frames[f], &di) && di.dli_fname)
				gw_format(&b, "  #%u %p (%s+0x%lx)\n", f, site[i].frames[f], di.dli_fname,
					  (unsigned long)((uintptr_t)site[i].frames[f] - (uintptr_t)di.dli_fbase));
			else
				gw_format(&b, "  #%u %p\n", f, site[i].frames[f]);
		}
		if (write(fd, gw_buf_cstr(&b), strlen(gw_buf_cstr(&b))) < 0)
			return -errno;
	}
	return (int)(n > INT32_MAX ? INT32_MAX : n);
}
