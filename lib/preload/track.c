/*
 * track.c - the decision to record an allocation, the per-thread "inside
 * gwmem" guard, sampling, and the glue between the interposer and
 * unwind.c (backtrace), stacks.c (stack id), table.c (record) and shm.c
 * (segment).  Also the report machinery: the report signal's handler (one
 * byte into a pipe), the reporter thread (report file, module map,
 * heartbeat, pool release), fork handling and the gwmem_hook_* exports used
 * by libgwmem.so's pools.
 *
 * Order on the allocation path: sample -> guard on -> backtrace (may
 * allocate, may take loader locks) -> guard off -> stack id (rare spinlock)
 * -> table insert (one stripe lock).  No gwmem lock is held while
 * libunwind or the loader runs.
 *
 * What it leaves to others: the exported malloc family and when to call
 * us (interpose.c), the report text (report.c via gw_report_self).
 */
#include "config.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-omit-frame-pointer")
#endif

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gwmem.h"
#include "counters.h"
#include "fmt.h"
#include "os.h"
#include "pool.h"
#include "shm.h"
#include "spin.h"
#include "stacks.h"
#include "table.h"
#include "track.h"
#include "unwind.h"

/* Provided by report.c / pool.c when they are linked in; optional here. */
int gw_report_self(int fd, const void *segment, size_t size) GW_HIDDEN;
#pragma weak gw_report_self
#pragma weak gw_pool_attach_stats
#pragma weak gw_pool_release

/* Exported for libgwmem.so (lib/hook.h declares them weak on its side). */
GWMEM_EXPORT unsigned gwmem_hook_tag(const char *name);
GWMEM_EXPORT void gwmem_hook_alloc(void *p, size_t size, unsigned tag);
GWMEM_EXPORT void gwmem_hook_free(void *p);

#define HOOK_RANGES 4

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

	/* reports */
	int report_signal;
	bool handler_installed;
	int pipe_rd, pipe_wr;
	ino_t pipe_ino;
	dev_t pipe_dev;
	bool reporter_running;
	bool reporter_needed;           /* forked child: start it on the next allocation */
	bool stop;
	char report_dir[GWMEM_CONFIG_PATH_MAX];
	int fork_pipe[2];
	unsigned long long modules_gen;

	/* hooks */
	struct gw_spin hook_lock;
	unsigned nhook;
	struct gw_range hook_ranges[HOOK_RANGES];
	struct gw_spin tag_lock;
} T = {
	.fork_gen = 1,
	.pipe_rd = -1,
	.pipe_wr = -1,
	.fork_pipe = { -1, -1 },
};

static char early_tags[GWMEM_SHM_TAG_MAX][32];

static GW_TLS unsigned tls_guard;
static GW_TLS uint32_t tls_sample;
static GW_TLS uint32_t tls_sampled_pending;
static GW_TLS uint32_t tls_tid;
static GW_TLS uint32_t tls_gen;

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

/* strerror() may allocate for unknown numbers in older glibc */
static const char *err_str(int err)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	const char *s = strerrordesc_np(err);
	return s ? s : "unknown error";
#else
	return strerror(err);
#endif
}

static bool fd_is_pipe(int fd, dev_t dev, ino_t ino)
{
	struct stat st;

	return fd >= 0 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) && st.st_ino == ino && st.st_dev == dev;
}

/* --- module map -------------------------------------------------------- */

struct modules_ctx {
	struct gwmem_shm_module *mods;
	uint32_t cap, n;
	const char *exe;
	unsigned long long gen;
	bool unchanged;
};

static void module_build_id(const struct dl_phdr_info *info, struct gwmem_shm_module *m)
{
	for (unsigned i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		const char *p, *end;

		if (ph->p_type != PT_NOTE)
			continue;
		p = (const char *)(info->dlpi_addr + ph->p_vaddr);
		end = p + ph->p_memsz;
		while (p + sizeof(ElfW(Nhdr)) <= end) {
			const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
			size_t namesz = (nh->n_namesz + 3) & ~3u, descsz = (nh->n_descsz + 3) & ~3u;
			const char *name = p + sizeof(*nh), *desc = name + namesz;

			if (desc + descsz > end)
				break;
			if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
				uint32_t len = nh->n_descsz < sizeof(m->build_id) ? nh->n_descsz : sizeof(m->build_id);
				memcpy(m->build_id, desc, len);
				m->build_id_len = len;
				return;
			}
			p = desc + descsz;
		}
	}
}

static int modules_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct modules_ctx *c = data;
	struct gwmem_shm_module *m;
	uint64_t lo = UINT64_MAX, hi = 0;
	const char *path = info->dlpi_name;

	if (c->n == 0 && size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) {
		unsigned long long gen = info->dlpi_adds + ((unsigned long long)info->dlpi_subs << 32);

		if (gen == c->gen) {
			c->unchanged = true;
			return 1;
		}
		c->gen = gen;
	}
	if (c->n >= c->cap)
		return 1;
	for (unsigned i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type != PT_LOAD)
			continue;
		if (info->dlpi_addr + ph->p_vaddr < lo)
			lo = info->dlpi_addr + ph->p_vaddr;
		if (info->dlpi_addr + ph->p_vaddr + ph->p_memsz > hi)
			hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
	}
	if (!hi)
		return 0;
	m = &c->mods[c->n++];
	memset(m, 0, sizeof(*m));
	m->start = lo;
	m->end = hi;
	m->bias = info->dlpi_addr;
	if ((!path || !path[0]) && c->n == 1)
		path = c->exe;
	if (path)
		gw_snprintf(m->path, sizeof(m->path), "%s", path);
	module_build_id(info, m);
	return 0;
}

/* Rewrite the module map when objects were loaded or unloaded (seqlocked). */
static void modules_refresh(void)
{
	struct gwmem_shm_header *h = T.shm.hdr;
	struct gwmem_shm_module tmp[1];
	struct modules_ctx probe = { tmp, 1, 0, h ? h->exe : NULL, T.modules_gen, false };
	struct modules_ctx c;

	if (!h || !h->modules_capacity)
		return;
	/* cheap check first: only the first object is visited when nothing changed */
	dl_iterate_phdr(modules_cb, &probe);
	if (probe.unchanged)
		return;
	c = (struct modules_ctx){ (struct gwmem_shm_module *)((char *)h + h->modules_offset),
				  h->modules_capacity, 0, h->exe, T.modules_gen, false };
	__atomic_store_n(&h->modules_seq, h->modules_seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	dl_iterate_phdr(modules_cb, &c);
	/* code may have gone: cached backtraces hold unwind rules of it */
	gw_unwind_cache_flush();
	__atomic_store_n(&h->modules_count, c.n, __ATOMIC_RELAXED);
	__atomic_store_n(&h->modules_seq, h->modules_seq + 1, __ATOMIC_RELEASE);
	T.modules_gen = c.gen;
}

/* --- reports ----------------------------------------------------------- */

static void on_report_signal(int sig)
{
	int saved = errno;
	int fd = __atomic_load_n(&T.pipe_wr, __ATOMIC_RELAXED);

	(void)sig;
	/* the program may have closed our pipe and reused the number: check */
	if (fd_is_pipe(fd, T.pipe_dev, T.pipe_ino)) {
		ssize_t r = write(fd, "r", 1);
		(void)r;
	}
	errno = saved;
}

static int pipe_open(void)
{
	int fds[2];
	struct stat st;

	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	if (fstat(fds[0], &st) < 0) {
		int err = -errno;
		close(fds[0]);
		close(fds[1]);
		return err;
	}
	T.pipe_dev = st.st_dev;
	T.pipe_ino = st.st_ino;
	T.pipe_rd = fds[0];
	__atomic_store_n(&T.pipe_wr, fds[1], __ATOMIC_RELEASE);
	return 0;
}

/* Close our pipe ends, but only if they are still ours. */
static void pipe_close(void)
{
	int rd = T.pipe_rd, wr = T.pipe_wr;
	bool rd_ours = fd_is_pipe(rd, T.pipe_dev, T.pipe_ino);
	bool wr_ours = fd_is_pipe(wr, T.pipe_dev, T.pipe_ino);

	__atomic_store_n(&T.pipe_wr, -1, __ATOMIC_RELEASE);
	T.pipe_rd = -1;
	T.pipe_ino = 0;
	if (rd_ours)
		close(rd);
	if (wr_ours)
		close(wr);
}

static int minimal_report(int fd)
{
	const struct gwmem_shm_header *h = T.shm.hdr;
	char mem[1024];
	struct gw_buf b = GW_BUF_INIT(mem);
	uint64_t count = 0, bytes = 0;

	for (uint32_t i = 0; i < T.table.nstripes; i++) {
		count += __atomic_load_n(&T.table.stripes[i].count, __ATOMIC_RELAXED);
		bytes += __atomic_load_n(&T.table.stripes[i].bytes, __ATOMIC_RELAXED);
	}
	gw_format(&b, "gwmem report\npid: %u\ncommand: %s\nlive allocations: %llu\nlive bytes: %llu\n",
		  h->pid, h->cmdline, (unsigned long long)count, (unsigned long long)bytes);
	gw_format(&b, "untracked (table full): %llu\nuntracked (internal): %llu\nsampled out: %llu\n"
		  "dropped stacks: %llu\nstacks: %llu\n",
		  (unsigned long long)h->counters.untracked_table_full,
		  (unsigned long long)h->counters.untracked_internal,
		  (unsigned long long)h->counters.sampled_out,
		  (unsigned long long)h->counters.dropped_stacks,
		  (unsigned long long)h->counters.stacks_used);
	return gw_write_all(fd, b.data, b.len < b.cap ? b.len : b.cap - 1);
}

int gw_track_report_now(char *path_out, size_t cap)
{
	char path[GWMEM_CONFIG_PATH_MAX + 96];
	uint64_t secs = gw_os_realtime_ns() / 1000000000u;
	int fd = -1, err;

	if (!T.shm.hdr)
		return -ENOENT;
	for (unsigned n = 0; n < 16 && fd < 0; n++) {
		if (n == 0)
			gw_snprintf(path, sizeof(path), "%s/gwmem-report.%u.%llu.txt", T.report_dir,
				    (unsigned)getpid(), (unsigned long long)secs);
		else
			gw_snprintf(path, sizeof(path), "%s/gwmem-report.%u.%llu.%u.txt", T.report_dir,
				    (unsigned)getpid(), (unsigned long long)secs, n);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		err = -errno;
		gw_counters_event(GW_EVENT_REPORT_FAILED, false, "cannot create report in %s: %s",
				  T.report_dir, err_str(-err));
		return err;
	}
	if (gw_report_self)
		err = gw_report_self(fd, T.shm.hdr, T.shm.size);
	else
		err = minimal_report(fd);
	close(fd);
	if (err < 0) {
		gw_counters_event(GW_EVENT_REPORT_FAILED, false, "writing report %s failed: %s", path,
				  err_str(-err));
		return err;
	}
	gw_count(reports_written);
	gw_log("report written to %s", path);
	if (path_out && cap)
		gw_snprintf(path_out, cap, "%s", path);
	return 0;
}

static void *reporter_main(void *arg)
{
	(void)arg;
	/* everything this thread does is gwmem's own business: never recorded */
	tls_guard = 1;
	for (unsigned tick = 0; !__atomic_load_n(&T.stop, __ATOMIC_ACQUIRE); tick++) {
		struct pollfd pfd = { .fd = T.pipe_rd, .events = POLLIN };
		int r = pfd.fd >= 0 ? poll(&pfd, 1, 250) : poll(NULL, 0, 250);

		if (__atomic_load_n(&T.stop, __ATOMIC_ACQUIRE))
			break;
		if (r > 0 || pfd.fd < 0) {
			if (!fd_is_pipe(T.pipe_rd, T.pipe_dev, T.pipe_ino)) {
				/* closed behind our back (daemonize closing every fd): new pipe */
				pipe_close();
				pipe_open();
			} else if (pfd.revents & POLLIN) {
				char buf[64];
				bool want = false;

				for (int i = 0; i < 64 && read(T.pipe_rd, buf, sizeof(buf)) > 0; i++)
					want = true;
				if (want)
					gw_track_report_now(NULL, 0);
			}
		}
		/* pool statistics reach the segment when the pools publish them:
		 * four times a second; heartbeat and module map once a second */
		if (gw_pool_release)
			gw_pool_release(false);
		if (tick % 4)
			continue;
		if (T.shm.hdr)
			__atomic_store_n(&T.shm.hdr->heartbeat_monotonic_ns, gw_os_monotonic_ns(),
					 __ATOMIC_RELAXED);
		modules_refresh();
	}
	return NULL;
}

static int reporter_start(void)
{
	pthread_attr_t attr;
	pthread_t th;
	sigset_t all, old;
	int err;

	if (T.pipe_rd < 0 && (err = pipe_open()) < 0)
		return err;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	/* the thread must never take the program's signals */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = -pthread_create(&th, &attr, reporter_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (err == 0) {
		pthread_setname_np(th, "gwmem-report");
		T.reporter_running = true;
	}
	return err;
}

static void install_handler(int sig)
{
	struct sigaction old, sa;

	if (sig <= 0 || sig >= NSIG)
		return;
	/* the program's own handler wins; so does an explicit SIG_IGN */
	if (sigaction(sig, NULL, &old) < 0 || (old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_report_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) == 0)
		T.handler_installed = true;
}

/* Forked child: the parent's reporter thread was not copied. */
static GW_NOINLINE GW_COLD void reporter_restart(void)
{
	__atomic_store_n(&T.reporter_needed, false, __ATOMIC_RELAXED);
	T.modules_gen = 0;
	modules_refresh();
	if (reporter_start() < 0)
		gw_counters_event(GW_EVENT_REPORT_FAILED, false, "cannot start the reporter thread after fork");
}

/* --- init / exit ------------------------------------------------------- */

struct gwmem_shm_header *gw_track_segment(size_t *size)
{
	if (size)
		*size = T.shm.hdr ? T.shm.size : 0;
	return T.shm.hdr;
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
	err = gw_shm_create(&T.shm, cfg, tracking);
	if (err < 0) {
		gw_count(mmap_failures);
		gw_counters_event(GW_EVENT_SHM_FAILED, false,
				  "cannot create the shared-memory segment in %s: %s; running without tracking",
				  cfg->leak_detection.shm_dir, err_str(-err));
		tls_guard--;
		return err;
	}
	h = T.shm.hdr;
	gw_counters_attach(&h->counters);
	if (gw_pool_attach_stats)
		gw_pool_attach_stats(h->classes, &h->nclasses);
	for (unsigned i = 1; i < GWMEM_SHM_TAG_MAX; i++)
		memcpy(h->tag_names[i], early_tags[i], sizeof(early_tags[i]));

	T.start_ns = h->start_monotonic_ns;
	T.keep_segment = cfg->leak_detection.keep_segment_on_exit;
	T.sample_rate = cfg->leak_detection.sample_rate ? cfg->leak_detection.sample_rate : 1;
	T.max_frames = h->max_frames;
	memcpy(T.report_dir, cfg->leak_detection.report_dir, sizeof(T.report_dir));
	T.report_dir[sizeof(T.report_dir) - 1] = '\0';
	if (tracking) {
		gw_table_init(&T.table, h);
		gw_stacks_init(&T.stacks, h, cfg->leak_detection.max_stacks);
		gw_unwind_init(cfg->leak_detection.unwinder);
		T.tracking = true;
	}
	modules_refresh();

	T.report_signal = cfg->leak_detection.report_signal;
	err = reporter_start();
	if (err < 0)
		gw_counters_event(GW_EVENT_REPORT_FAILED, false, "cannot start the reporter thread: %s",
				  err_str(-err));
	else
		install_handler(T.report_signal);
	gw_shm_publish(&T.shm);
	__atomic_store_n(&gw_track_on, T.tracking, __ATOMIC_RELEASE);
	tls_guard--;
	return 0;
}

void gw_track_exit(void)
{
	if (!T.shm.hdr)
		return;
	__atomic_store_n(&T.stop, true, __ATOMIC_RELEASE);
	/* other threads may still allocate while the process winds down:
	 * the mapping stays, only the file goes */
	gw_shm_exit(&T.shm, T.keep_segment);
}

/* --- recording --------------------------------------------------------- */

static uint32_t intern_frames(void *ctx, const uint64_t *frames, unsigned n)
{
	(void)ctx;
	return gw_stacks_intern(&T.stacks, frames, n);
}

/*
 * Inlined into its callers: one frame less for the unwinder to walk (and
 * to skip) on every recorded allocation.
 */
static GW_ALWAYS_INLINE void record(void *p, size_t size, unsigned tag, const struct gw_range *extra,
				    void *oldp)
{
	uint64_t frames[GWMEM_SHM_MAX_FRAMES];
	unsigned n;
	uint32_t id;

	/* the record's line is a cache (and TLB) miss in a table of
	 * megabytes: start loading it now, the backtrace takes long enough */
	gw_table_prefetch(&T.table, (uintptr_t)p);
	tls_guard++;
	if (gw_unlikely(__atomic_load_n(&T.reporter_needed, __ATOMIC_RELAXED)))
		reporter_restart();
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
	gw_table_insert(&T.table, (uintptr_t)p, size, id, now_ds(), current_tid(), tag);
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
	int saved = errno;

	gw_track_alloc(p, size);
	errno = saved;
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
	gw_table_remove(&T.table, (uintptr_t)p, NULL);
}

void gw_track_realloc(void *oldp, void *newp, size_t size)
{
	if (gw_unlikely(!T.tracking))
		return;
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

/* --- fork -------------------------------------------------------------- */

/*
 * The child copies the segment while the parent still holds every stripe
 * lock (and the stack insert lock), so the copy is consistent.  The parent
 * waits for that copy in its atfork handler: the child closes its end of
 * fork_pipe when done (or dies), and the parent's read returns.
 */
void gw_track_atfork_prepare(void)
{
	if (!T.shm.hdr)
		return;
	if (pipe2(T.fork_pipe, O_CLOEXEC) < 0)
		T.fork_pipe[0] = T.fork_pipe[1] = -1;
	if (T.tracking) {
		gw_stacks_lock(&T.stacks);
		gw_table_lock_all(&T.table);
	}
}

void gw_track_atfork_parent(void)
{
	if (!T.shm.hdr)
		return;
	if (T.fork_pipe[0] >= 0) {
		struct pollfd pfd = { .fd = T.fork_pipe[0], .events = POLLIN };
		char c;

		close(T.fork_pipe[1]);
		/* bounded: a child stopped by a debugger must not hang us forever */
		for (int i = 0; i < 100; i++) {
			int r = poll(&pfd, 1, 100);

			if (r > 0 || (r < 0 && errno != EINTR))
				break;
		}
		if (pfd.revents & POLLIN) {
			ssize_t n = read(T.fork_pipe[0], &c, 1);
			(void)n;
		}
		close(T.fork_pipe[0]);
		T.fork_pipe[0] = T.fork_pipe[1] = -1;
	}
	if (T.tracking) {
		gw_table_unlock_all(&T.table);
		gw_stacks_unlock(&T.stacks);
	}
}

void gw_track_atfork_child(void)
{
	int err;

	if (!T.shm.hdr)
		return;
	T.fork_gen++;
	if (T.fork_pipe[0] >= 0)
		close(T.fork_pipe[0]);
	err = gw_shm_fork_child(&T.shm);
	if (T.tracking) {
		gw_table_reset_locks(&T.table);
		gw_stacks_unlock(&T.stacks);
	}
	if (T.fork_pipe[1] >= 0) {
		ssize_t n = write(T.fork_pipe[1], "c", 1);
		(void)n;
		close(T.fork_pipe[1]);
	}
	T.fork_pipe[0] = T.fork_pipe[1] = -1;
	if (err < 0)
		gw_counters_event(GW_EVENT_SHM_FAILED, false,
				  "forked child %u cannot create its segment: %s; its allocations are not visible",
				  (unsigned)getpid(), err_str(-err));
	/* the parent's pipe is shared with us: a signal to the child must not
	 * wake the parent's reporter */
	pipe_close();
	T.reporter_running = false;
	if (!T.stop)
		__atomic_store_n(&T.reporter_needed, true, __ATOMIC_RELAXED);
}

/* --- hooks for libgwmem.so -------------------------------------------- */

/* Text range of the object that called a hook (cached: a handful of objects). */
static const struct gw_range *hook_caller_range(uintptr_t ra)
{
	static const struct gw_range empty;
	unsigned n = __atomic_load_n(&T.nhook, __ATOMIC_ACQUIRE);
	struct gw_range r;
	bool is_main = false, ok;

	for (unsigned i = 0; i < n; i++)
		if (gw_range_has(&T.hook_ranges[i], ra))
			return &T.hook_ranges[i];
	tls_guard++;
	ok = gw_unwind_object_text((const void *)ra, &r, &is_main);
	tls_guard--;
	/* pools linked into the main program: their frames cannot be told
	 * apart from the program's, keep them */
	if (!ok || is_main)
		return &empty;
	gw_spin_lock(&T.hook_lock);
	n = T.nhook;
	if (n < HOOK_RANGES) {
		T.hook_ranges[n] = r;
		__atomic_store_n(&T.nhook, n + 1, __ATOMIC_RELEASE);
	}
	gw_spin_unlock(&T.hook_lock);
	return n < HOOK_RANGES ? &T.hook_ranges[n] : &empty;
}

unsigned gwmem_hook_tag(const char *name)
{
	char (*tags)[32] = T.shm.hdr ? T.shm.hdr->tag_names : early_tags;
	unsigned found = GWMEM_SHM_TAG_MAX - 1;

	if (!name || !name[0])
		return found;
	gw_spin_lock(&T.tag_lock);
	for (unsigned i = 1; i < GWMEM_SHM_TAG_MAX; i++) {
		if (!tags[i][0]) {
			gw_snprintf(tags[i], sizeof(tags[i]), "%s", name);
			found = i;
			break;
		}
		if (strncmp(tags[i], name, sizeof(tags[i]) - 1) == 0) {
			found = i;
			break;
		}
	}
	gw_spin_unlock(&T.tag_lock);
	return found;
}

void gwmem_hook_alloc(void *p, size_t size, unsigned tag)
{
	const struct gw_range *extra;

	if (!p || !T.tracking || !__atomic_load_n(&gw_track_on, __ATOMIC_RELAXED))
		return;
	if (tls_guard) {
		gw_count(untracked_internal);
		return;
	}
	if (!sample_in())
		return;
	extra = hook_caller_range((uintptr_t)__builtin_return_address(0));
	record(p, size, tag < GWMEM_SHM_TAG_MAX ? tag : GWMEM_SHM_TAG_MAX - 1, extra, NULL);
}

void gwmem_hook_free(void *p)
{
	if (!p || !T.tracking)
		return;
	gw_table_remove(&T.table, (uintptr_t)p, NULL);
}
