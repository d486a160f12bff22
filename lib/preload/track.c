/*
 * track.c - the decision to record an allocation, the per-thread "inside
 * gwmem" guard, sampling, and the glue between the interposer and
 * unwind.c (backtrace), stacks.c (stack id), table.c (record) and shm.c
 * (segment); fork handling of all of them.
 *
 * Order on the allocation path: sample -> guard on -> backtrace (may
 * allocate, may take loader locks) -> guard off -> stack id (rare spinlock)
 * -> table insert (one stripe lock).  No gwmem lock is held while
 * libunwind or the loader runs.
 *
 * What it leaves to others: the exported malloc family and when to call
 * us (interpose.c), the report signal, the reporter thread and the module
 * map (reporter.c), the gwmem_hook_* exports for libgwmem.so (hooks.c).
 */
#include "config.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-omit-frame-pointer")
#endif

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gwmem.h"
#include "counters.h"
#include "fmt.h"
#include "hooks.h"
#include "os.h"
#include "pool.h"
#include "reporter.h"
#include "shm.h"
#include "stacks.h"
#include "table.h"
#include "track.h"
#include "unwind.h"

#pragma weak gw_pool_stats

/* A forked child gets a file of its own after living this long. */
#define GW_TRACK_PUBLISH_NS UINT64_C(1000000000)

static void writers_lock(void);
static void writers_unlock(bool tracking);

bool gw_track_on;

static struct {
	bool inited;
	bool tracking;                  /* table and stacks in use */
	struct gw_shm shm;
	struct gw_table table;
	struct gw_stacks stacks;
	uint32_t max_frames;
	uint32_t sample_rate;
	uint64_t start_ns;              /* header's start_monotonic_ns */
	uint32_t fork_gen;              /* bumped in every forked child */
	bool keep_segment;
	bool adopt_pending;             /* forked child still mapping its parent's segment */
	struct gw_spin adopt_lock;
} T GW_FORK_DATA = {                    /* its locks and fork state: both sides write it */
	.fork_gen = 1,
};

static GW_TLS unsigned tls_guard;
static GW_TLS uint32_t tls_sample;
static GW_TLS uint32_t tls_sampled_pending;
static GW_TLS uint32_t tls_tid;
static GW_TLS uint32_t tls_gen;
GW_TLS int *gw_track_tls_errno;

/* --- guard ------------------------------------------------------------- */

bool gw_track_guarded(void)
{
	return tls_guard != 0;
}

void gw_track_guard_enter(void)
{
	tls_guard++;
}

void gw_track_guard_leave(void)
{
	tls_guard--;
}

/* --- small helpers ----------------------------------------------------- */

static inline uint32_t now_ds(void)
{
	struct timespec ts;
	uint64_t ns;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	/* the coarse clock lags the precise one by up to a tick */
	return ns > T.start_ns ? (uint32_t)((ns - T.start_ns) / 100000000u) : 0;
}

static inline uint32_t current_tid(void)
{
	if (gw_unlikely(tls_gen != T.fork_gen)) {
		tls_tid = gw_os_gettid();
		tls_gen = T.fork_gen;
	}
	return tls_tid;
}

static GW_NOINLINE GW_COLD void fork_adopt(void);

/*
 * What a forked child records and forgets before it adopts its copy: a
 * shell's subshell allocates a few blocks and exits, and moving the copy
 * in (an mremap, a page fault per page it then writes) would cost more
 * than its whole life.  Up to GW_TRACK_PENDING operations wait here, in
 * order, and are applied to the copy when it is adopted; one more adopts
 * it.  An insert keeps the stack id the backtrace cache gave (ids of the
 * copy are the parent's, valid in it) or the frames to intern.  Guarded by
 * T.adopt_lock.
 */
#define GW_TRACK_PENDING 16u

struct pending_op {
	uint64_t ptr;
	uint64_t size;
	uint32_t stack_id;              /* 0: intern frames[0, nframes) */
	uint32_t time_ds;
	uint32_t tid;
	uint16_t tag;
	uint8_t insert;                 /* else a remove */
	uint8_t nframes;
	uint64_t frames[GWMEM_SHM_MAX_FRAMES];
};

static struct {
	uint32_t n;
	struct pending_op op[GW_TRACK_PENDING];
} P;

/* Before anything writes the segment: a forked child takes its copy now. */
static inline void adopt_check(void)
{
	if (gw_unlikely(__atomic_load_n(&T.adopt_pending, __ATOMIC_ACQUIRE)))
		fork_adopt();
}

/* true when this allocation is to be recorded */
static inline bool sample_in(void)
{
	if (gw_likely(T.sample_rate <= 1))
		return true;
	if (++tls_sample >= T.sample_rate) {
		tls_sample = 0;
		return true;
	}
	/* fold the skipped ones into the shared counter in batches */
	if (++tls_sampled_pending >= 64) {
		gw_count_n(sampled_out, tls_sampled_pending);
		tls_sampled_pending = 0;
	}
	return false;
}

/* --- init / exit ------------------------------------------------------- */

struct gwmem_shm_header *gw_track_segment(size_t *size)
{
	/* callers read and write it: a forked child's own copy, never its parent's */
	adopt_check();
	if (size)
		*size = T.shm.hdr ? (size_t)T.shm.hdr->segment_size : 0;
	return T.shm.hdr;
}

uint64_t gw_track_give_back(void)
{
	/* a child still on its parent's segment has nothing of its own yet */
	if (!T.shm.hdr || __atomic_load_n(&T.adopt_pending, __ATOMIC_ACQUIRE))
		return 0;
	if (!T.tracking)
		return gw_shm_give_back(&T.shm, 0, 0);
	return gw_shm_give_back(&T.shm, gw_stacks_trim(&T.stacks), gw_table_trim(&T.table));
}

int gw_track_init(const struct gwmem_config *cfg)
{
	struct gwmem_shm_header *h;
	bool tracking;
	int err;

	if (T.inited)
		return T.shm.hdr ? 0 : -ENOENT;
	T.inited = true;
	tracking = gw_cfg_tracking && cfg->memory.leak_detection_enabled &&
		   cfg->leak_detection.tracking_enabled;

	tls_guard++;
	/* on while we start: what we allocate meanwhile (guarded) the
	 * interposer gives to the next allocator; T.tracking is still false,
	 * so nothing is recorded yet */
	__atomic_store_n(&gw_track_on, true, __ATOMIC_RELEASE);
	err = gw_shm_create(&T.shm, cfg, tracking);
	if (err < 0) {
		__atomic_store_n(&gw_track_on, false, __ATOMIC_RELEASE);
		gw_count(mmap_failures);
		gw_counters_event(GW_EVENT_SHM_FAILED, false,
				  "cannot create the shared-memory segment in %s: %s; running without tracking",
				  cfg->leak_detection.shm_dir, gw_strerror(-err));
		tls_guard--;
		return err;
	}
	h = T.shm.hdr;
	gw_counters_attach(&h->counters);
	gw_pool_attach_stats(h->classes, &h->nclasses);
	gw_hooks_attach(h);

	T.start_ns = h->start_monotonic_ns;
	T.keep_segment = cfg->leak_detection.keep_segment_on_exit;
	T.sample_rate = cfg->leak_detection.sample_rate ? cfg->leak_detection.sample_rate : 1;
	T.max_frames = h->max_frames;
	if (tracking && !gw_table_init(&T.table, &T.shm)) {
		gw_count(mmap_failures);
		gw_counters_event(GW_EVENT_SHM_FAILED, false,
				  "cannot map the allocation index; running without tracking");
		tracking = false;
	}
	if (tracking) {
		gw_stacks_init(&T.stacks, &T.shm, cfg->leak_detection.max_stacks);
		gw_unwind_init(cfg->leak_detection.unwinder);
		T.tracking = true;
	}
	gw_reporter_start(cfg);
	gw_shm_publish(&T.shm);
	__atomic_store_n(&gw_track_on, T.tracking, __ATOMIC_RELEASE);
	tls_guard--;
	return 0;
}

void gw_track_exit(void)
{
	if (!T.shm.hdr)
		return;
	gw_reporter_stop();
	/* a kept segment shows the pools as they are now, not as of the
	 * reporter's last publication */
	if (T.keep_segment && gw_pool_stats && T.shm.mode == GW_SHM_SHARED)
		T.shm.hdr->nclasses = gw_pool_stats(T.shm.hdr->classes, GWMEM_SHM_MAX_CLASSES);
	/* other threads may still allocate while the process winds down:
	 * the mapping stays, only the file goes */
	if (!gw_shm_exit_unlink(&T.shm, T.keep_segment))
		return;
	/* the file could not be removed (privileges dropped since it was
	 * created): give its memory back; tracking stops here */
	__atomic_store_n(&gw_track_on, false, __ATOMIC_RELEASE);
	bool tracking = T.tracking;
	writers_lock();
	gw_shm_exit_truncate(&T.shm);
	T.tracking = false;
	writers_unlock(tracking);
}

/*
 * The process ends through _exit or _Exit (dash ends every script so): no
 * exit handler runs, so this applies the rule of a
 * normal exit (remove the file, or mark it exited when it is kept) before
 * the process goes.  _exit may be called from a signal handler or from a
 * vfork child, which shares our memory but has a pid of its own: only the
 * process that created the file acts on it (a forked child's copy is never
 * SHARED before it has its own file), and only with calls that are safe
 * there (getpid, lstat, unlink; no lock).  A file that cannot be removed
 * stays as it is: truncating it needs the writers stopped.
 */
void gw_track_exit_now(void)
{
	if (!T.shm.hdr || T.shm.mode != GW_SHM_SHARED ||
	    __atomic_load_n(&T.shm.hdr->pid, __ATOMIC_RELAXED) != (uint32_t)getpid())
		return;
	gw_shm_exit_unlink(&T.shm, T.keep_segment);
}

/* --- recording --------------------------------------------------------- */

static uint32_t intern_frames(void *ctx, const uint64_t *frames, unsigned n)
{
	(void)ctx;
	return gw_stacks_intern(&T.stacks, frames, n);
}

/* --- a forked child's operations before it adopts its copy -------------- */

static void pending_apply(const struct pending_op *op)
{
	if (!op->insert) {
		gw_table_remove(&T.table, op->ptr, NULL);
		return;
	}
	uint32_t id = op->stack_id ? op->stack_id : gw_stacks_intern(&T.stacks, op->frames, op->nframes);

	gw_table_insert(&T.table, op->ptr, op->size, id, op->time_ds, op->tid, op->tag);
}

/* Queue op; false when the copy is adopted (or must be: the queue is full). */
static bool pending_add(const struct pending_op *op)
{
	bool queued = false;

	gw_spin_lock(&T.adopt_lock);
	if (__atomic_load_n(&T.adopt_pending, __ATOMIC_ACQUIRE) && P.n < GW_TRACK_PENDING) {
		struct pending_op *q = &P.op[P.n++];

		memcpy(q, op, offsetof(struct pending_op, frames) + op->nframes * sizeof(op->frames[0]));
		queued = true;
	}
	gw_spin_unlock(&T.adopt_lock);
	return queued;
}

/* intern callback of a pending insert: keep the frames, no stack id yet (0
 * also keeps the backtrace cache from remembering this path) */
static uint32_t pending_frames(void *ctx, const uint64_t *frames, unsigned n)
{
	struct pending_op *op = ctx;

	memcpy(op->frames, frames, n * sizeof(frames[0]));
	op->nframes = (uint8_t)n;
	return 0;
}

static GW_NOINLINE GW_COLD void record_pending(void *p, size_t size, unsigned tag)
{
	struct pending_op op;

	op.nframes = 0;
	tls_guard++;
	gw_reporter_check();
	op.stack_id = gw_unwind_stack_id(T.max_frames, pending_frames, &op);
	tls_guard--;
	op.ptr = (uintptr_t)p;
	op.size = size;
	op.time_ds = now_ds();
	op.tid = current_tid();
	op.tag = (uint16_t)tag;
	op.insert = 1;
	if (pending_add(&op))
		return;
	fork_adopt();
	tls_guard++;
	pending_apply(&op);
	tls_guard--;
}

static GW_NOINLINE GW_COLD void free_pending(void *p)
{
	struct pending_op op = { .ptr = (uintptr_t)p };

	if (pending_add(&op))
		return;
	fork_adopt();
	pending_apply(&op);
}

/*
 * Inlined into its callers: one frame less for the unwinder to walk (and
 * to skip) on every recorded allocation.
 */
static GW_ALWAYS_INLINE void record(void *p, size_t size, unsigned tag, const struct gw_range *extra,
				    void *oldp)
{
	uint64_t frames[GWMEM_SHM_MAX_FRAMES];
	struct gw_table_key key;
	unsigned n;
	uint32_t id;

	if (gw_unlikely(__atomic_load_n(&T.adopt_pending, __ATOMIC_ACQUIRE))) {
		if (!extra && !oldp) {
			record_pending(p, size, tag);
			return;
		}
		fork_adopt();
	}
	/* the record's line is a cache (and TLB) miss in a table of
	 * megabytes: start loading it now, the backtrace takes long enough */
	key = gw_table_prefetch(&T.table, (uintptr_t)p);
	tls_guard++;
	gw_reporter_check();
	if (!extra) {
		/* interning inside the guard too: the backtrace cache is per
		 * thread, a signal handler's allocation must not run into it */
		id = gw_unwind_stack_id(T.max_frames, intern_frames, NULL);
		tls_guard--;
	} else {
		n = gw_unwind_capture(frames, T.max_frames, 0, extra);
		tls_guard--;
		id = gw_stacks_intern(&T.stacks, frames, n);
	}
	if (oldp)
		gw_table_remove(&T.table, (uintptr_t)oldp, NULL);
	gw_table_insert_key(&T.table, (uintptr_t)p, &key, size, id, now_ds(), current_tid(), tag);
}

void gw_track_alloc(void *p, size_t size)
{
	if (gw_unlikely(!p || !T.tracking))
		return;
	if (gw_unlikely(tls_guard)) {
		gw_count(untracked_internal);
		return;
	}
	if (!sample_in())
		return;
	record(p, size, GWMEM_SHM_TAG_MALLOC, NULL, NULL);
}

/*
 * The interposer tail-calls this (malloc's "return gw_track_alloc_ret(p, n)"
 * compiles to a jump), so neither malloc nor a wrapper is on the stack while
 * libunwind walks it: every gwmem frame costs it about 7 ns.  errno is kept
 * here for the same reason: a wrapper restoring it could not tail-call.
 */
void *gw_track_alloc_ret(void *p, size_t size)
{
	int *e = gw_track_errno();
	int saved = *e;

	gw_track_alloc(p, size);
	*e = saved;
	return p;
}

void gw_track_free(void *p)
{
	/* no recursion risk here (no unwinding), so even guarded frees are
	 * removed: a stale record would claim a leak that is not there */
	if (gw_unlikely(!p || !T.tracking))
		return;
	/* the allocator reads the block right after us (free list link,
	 * double-free check) and it is often not in cache: let that miss
	 * overlap the table's */
	__builtin_prefetch(p, 1, 3);
	if (gw_unlikely(__atomic_load_n(&T.adopt_pending, __ATOMIC_ACQUIRE))) {
		free_pending(p);
		return;
	}
	gw_table_remove(&T.table, (uintptr_t)p, NULL);
}

void gw_track_realloc(void *oldp, void *newp, size_t size)
{
	if (gw_unlikely(!T.tracking))
		return;
	adopt_check();
	if (!newp) {
		/* realloc(p, 0) freed p; a failed realloc keeps it */
		if (size == 0 && oldp)
			gw_table_remove(&T.table, (uintptr_t)oldp, NULL);
		return;
	}
	if (gw_unlikely(tls_guard) || !sample_in()) {
		if (tls_guard)
			gw_count(untracked_internal);
		if (oldp)
			gw_table_remove(&T.table, (uintptr_t)oldp, NULL);
		return;
	}
	record(newp, size, GWMEM_SHM_TAG_MALLOC, NULL, oldp);
}

bool gw_track_admit(void)
{
	if (gw_unlikely(!T.tracking))
		return false;
	if (gw_unlikely(tls_guard)) {
		gw_count(untracked_internal);
		return false;
	}
	return sample_in();
}

void gw_track_record_hooked(void *p, size_t size, unsigned tag, const struct gw_range *caller)
{
	record(p, size, tag, caller, NULL);
}

/* --- fork -------------------------------------------------------------- */

/* Every writer of the segment stopped, in lock order (stacks, stripes, backing). */
static void writers_lock(void)
{
	if (T.tracking) {
		gw_stacks_lock(&T.stacks);
		gw_table_lock_all(&T.table);
	}
	gw_shm_lock(&T.shm);
}

static void writers_unlock(bool tracking)
{
	gw_shm_unlock(&T.shm);
	if (tracking) {
		gw_table_unlock_all(&T.table);
		gw_stacks_unlock(&T.stacks);
	}
}

/*
 * The parent copies the live part of its segment while it holds every
 * writer lock, so the copy is consistent; the child gets that copy through
 * the fork, but does nothing with it until it first records or forgets an
 * allocation (fork_adopt): until then it only reads its parent's file, and
 * its counters and pool statistics go to private memory.  Once adopted,
 * the copy stays private until the child has lived for a second
 * (gw_track_fork_tick), so a child that execs or exits soon never creates
 * a file, and the parent never waits for the child.
 */
void gw_track_atfork_prepare(void)
{
	if (!T.shm.hdr)
		return;
	/* a child that has not adopted its copy yet forks: the table and
	 * stacks are its parent's, their locks are not ours to take; its
	 * state is the copy plus the queue, which adopt_lock keeps still */
	gw_spin_lock(&T.adopt_lock);
	if (T.adopt_pending)
		gw_shm_lock(&T.shm);
	else
		writers_lock();
	gw_shm_fork_prepare(&T.shm);
}

void gw_track_atfork_parent(void)
{
	if (!T.shm.hdr)
		return;
	gw_shm_fork_parent(&T.shm);
	if (T.adopt_pending)
		gw_shm_unlock(&T.shm);
	else
		writers_unlock(T.tracking);
	gw_spin_unlock(&T.adopt_lock);
}

/* Locks in the copy were taken by the parent's prepare: clear them. */
static void child_reset_locks(void)
{
	if (T.tracking)
		gw_table_reset_locks(&T.table);
}

void gw_track_atfork_child(void)
{
	int err;

	if (!T.shm.hdr)
		return;
	T.fork_gen++;
	T.adopt_lock = (struct gw_spin)GW_SPIN_INIT;
	if (T.tracking && !T.adopt_pending)
		gw_stacks_unlock(&T.stacks);
	err = gw_shm_fork_child(&T.shm);
	if (T.shm.mode == GW_SHM_FORKED) {
		/* the segment is still the parent's file: nothing of ours may
		 * reach it before fork_adopt */
		gw_counters_detach();
		gw_pool_detach_stats();
		__atomic_store_n(&T.adopt_pending, true, __ATOMIC_RELEASE);
	} else {
		child_reset_locks();
	}
	if (err < 0)
		gw_counters_event(GW_EVENT_SHM_FAILED, false,
				  "forked child %u cannot copy its segment: %s; its allocations are not visible",
				  (unsigned)getpid(), gw_strerror(-err));
	gw_reporter_atfork_child(T.shm.fork_ns);
}

/*
 * A forked child's first write: the copy its parent made at fork replaces
 * the parent's file at the same address, its locks are cleared, the
 * operations queued meanwhile are applied, and the counters and pool
 * statistics move into it.  Threads the child started
 * meanwhile wait here for the one that does it.
 */
static void fork_adopt(void)
{
	int err;

	gw_spin_lock(&T.adopt_lock);
	if (!__atomic_load_n(&T.adopt_pending, __ATOMIC_ACQUIRE)) {
		gw_spin_unlock(&T.adopt_lock);
		return;
	}
	tls_guard++;
	err = gw_shm_fork_adopt(&T.shm);
	child_reset_locks();
	gw_counters_reattach(&T.shm.hdr->counters);
	if (T.tracking)
		for (uint32_t i = 0; i < P.n; i++)
			pending_apply(&P.op[i]);
	P.n = 0;
	__atomic_store_n(&T.adopt_pending, false, __ATOMIC_RELEASE);
	gw_spin_unlock(&T.adopt_lock);
	/* after adopt_lock: the pools' locks come before it (fork) */
	gw_pool_attach_stats(T.shm.hdr->classes, &T.shm.hdr->nclasses);
	tls_guard--;
	if (err < 0)
		gw_counters_event(GW_EVENT_SHM_FAILED, false,
				  "forked child %u cannot copy its segment: %s; its allocations are not visible",
				  (unsigned)getpid(), gw_strerror(-err));
}

int gw_track_fork_publish(void)
{
	int err;

	adopt_check();
	if (T.shm.mode != GW_SHM_PRIVATE)
		return 0;
	writers_lock();
	err = gw_shm_materialize(&T.shm);
	writers_unlock(T.tracking);
	if (err < 0)
		gw_counters_event(GW_EVENT_SHM_FAILED, false,
				  "forked child %u cannot create its segment: %s; its allocations are not visible",
				  (unsigned)getpid(), gw_strerror(-err));
	return err;
}

void gw_track_fork_tick(bool now)
{
	if (T.shm.mode == GW_SHM_SHARED && !now)
		gw_shm_fork_idle(&T.shm, gw_os_monotonic_ns());
	if (T.shm.mode != GW_SHM_PRIVATE)
		return;
	if (!now && gw_os_monotonic_ns() - T.shm.fork_ns < GW_TRACK_PUBLISH_NS)
		return;
	gw_track_fork_publish();
}

int gw_track_back(uint64_t off, uint64_t len)
{
	return gw_shm_back(&T.shm, off, len);
}


