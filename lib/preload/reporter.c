/*
 * reporter.c - the preload's reporter: the report signal, whose handler
 * only writes one byte into a pipe; the reporter thread, which answers
 * that byte with a report file (text by report.c's gw_report_self) and
 * four times a second publishes the pools' statistics (gw_pool_release),
 * once a second the heartbeat and the module map (path, range and
 * build-id of every loaded object, seqlocked, for the CLI's symbolizer);
 * and bringing all of that back in a forked child.
 *
 * What it leaves to others: the segment itself (shm.c, through
 * gw_track_segment), the report text (report.c), when to start and stop
 * (track.c).  The thread holds the "inside gwmem" guard for its whole
 * life: whatever it allocates (dl_iterate_phdr, pthread internals) is
 * never recorded.
 */
#include "config.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gwmem.h"
#include "counters.h"
#include "fmt.h"
#include "os.h"
#include "pool.h"
#include "report.h"
#include "reporter.h"
#include "track.h"
#include "unwind.h"

/* set by every forked child (GW_FORK_DATA, as R: its fork state) */
bool gw_reporter_restart_pending GW_FORK_DATA;

/*
 * "No module map written yet": a loader generation no loader reports.  Not
 * 0: musl's dlpi_adds counts dlopen calls (glibc's counts every object
 * loaded), so a musl process that never calls dlopen reports 0 + 0 forever
 * and would never get its module map.
 */
#define MODULES_GEN_NONE (~0ull)

/* A forked child starts its reporter (and gets a segment file) after this. */
#define GW_REPORTER_CHILD_DELAY_NS UINT64_C(1000000000)

static struct {
	int report_signal;
	bool handler_installed;
	int pipe_rd, pipe_wr;
	ino_t pipe_ino;
	dev_t pipe_dev;
	bool running;
	bool stop;
	char report_dir[GWMEM_CONFIG_PATH_MAX];
	unsigned long long modules_gen;
	uint64_t fork_ns;               /* forked child: when */
	int inherited_wr;               /* forked child: the parent's write end, until restart */
	bool wanted;                    /* forked child: a report signal came before restart */
} R GW_FORK_DATA = {
	.pipe_rd = -1,
	.pipe_wr = -1,
	.inherited_wr = -1,
	.modules_gen = MODULES_GEN_NONE,
};

static bool fd_is_pipe(int fd, dev_t dev, ino_t ino)
{
	struct stat st;

	return fd >= 0 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) && st.st_ino == ino && st.st_dev == dev;
}

/* --- module map -------------------------------------------------------- */

struct modules_ctx {
	struct gwmem_shm_module *mods;
	uint64_t offset;                /* of mods in the segment; 0 for a probe */
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
	/* the segment's pages are backed before their first store */
	if (c->offset && gw_track_back(c->offset + (uint64_t)c->n * sizeof(*c->mods), sizeof(*c->mods)) < 0)
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
	struct gwmem_shm_header *h = gw_track_segment(NULL);
	struct gwmem_shm_module tmp[1];
	struct modules_ctx probe = { tmp, 0, 1, 0, h ? h->exe : NULL, R.modules_gen, false };
	struct modules_ctx c;

	if (!h || !h->modules_capacity)
		return;
	/* cheap check first: only the first object is visited when nothing changed */
	dl_iterate_phdr(modules_cb, &probe);
	if (probe.unchanged)
		return;
	c = (struct modules_ctx){ (struct gwmem_shm_module *)((char *)h + h->modules_offset), h->modules_offset,
				  h->modules_capacity, 0, h->exe, R.modules_gen, false };
	__atomic_store_n(&h->modules_seq, h->modules_seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	dl_iterate_phdr(modules_cb, &c);
	/* code may have gone: cached backtraces hold unwind rules of it */
	gw_unwind_cache_flush();
	__atomic_store_n(&h->modules_count, c.n, __ATOMIC_RELAXED);
	__atomic_store_n(&h->modules_seq, h->modules_seq + 1, __ATOMIC_RELEASE);
	R.modules_gen = c.gen;
}

/* --- reports ----------------------------------------------------------- */

static void on_report_signal(int sig)
{
	int saved = errno;
	int fd = __atomic_load_n(&R.pipe_wr, __ATOMIC_RELAXED);

	(void)sig;
	/* the program may have closed our pipe and reused the number: check */
	if (fd_is_pipe(fd, R.pipe_dev, R.pipe_ino)) {
		ssize_t r = write(fd, "r", 1);
		(void)r;
	} else if (fd < 0 && __atomic_load_n(&gw_reporter_restart_pending, __ATOMIC_RELAXED)) {
		/* a forked child whose reporter has not started yet: its next
		 * allocation starts it, without waiting for its first second */
		__atomic_store_n(&R.wanted, true, __ATOMIC_RELAXED);
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
	R.pipe_dev = st.st_dev;
	R.pipe_ino = st.st_ino;
	R.pipe_rd = fds[0];
	__atomic_store_n(&R.pipe_wr, fds[1], __ATOMIC_RELEASE);
	return 0;
}

/* Close our pipe ends, but only if they are still ours. */
static void pipe_close(void)
{
	int rd = R.pipe_rd, wr = R.pipe_wr;
	bool rd_ours = fd_is_pipe(rd, R.pipe_dev, R.pipe_ino);
	bool wr_ours = fd_is_pipe(wr, R.pipe_dev, R.pipe_ino);

	__atomic_store_n(&R.pipe_wr, -1, __ATOMIC_RELEASE);
	R.pipe_rd = -1;
	R.pipe_ino = 0;
	if (rd_ours)
		close(rd);
	if (wr_ours)
		close(wr);
}

int gw_reporter_report_now(char *path_out, size_t cap)
{
	size_t size;
	struct gwmem_shm_header *h = gw_track_segment(&size);
	char path[GWMEM_CONFIG_PATH_MAX + 96];
	uint64_t secs = gw_os_realtime_ns() / 1000000000u;
	int fd = -1, err;

	if (!h)
		return -ENOENT;
	/*
	 * The plain names come first (.txt, then .1 .. .3): easy to find.  Pid
	 * and time are public, so anyone who can write to report_dir can plant
	 * those names ahead (files or symlinks: O_EXCL|O_NOFOLLOW refuses both);
	 * then the name gets a random part nobody can guess, so a planted name
	 * costs a retry, never the report.
	 */
	for (unsigned n = 0; n < 20 && fd < 0; n++) {
		uint64_t rnd = 0;
		if (n == 0)
			gw_snprintf(path, sizeof(path), "%s/gwmem-report.%u.%llu.txt", R.report_dir,
				    (unsigned)getpid(), (unsigned long long)secs);
		else if (n < 4)
			gw_snprintf(path, sizeof(path), "%s/gwmem-report.%u.%llu.%u.txt", R.report_dir,
				    (unsigned)getpid(), (unsigned long long)secs, n);
		else {
			if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
				rnd = gw_os_monotonic_ns() * UINT64_C(0x9e3779b97f4a7c15);
			/* top bit set: always 16 hex digits, never mistaken for a .N */
			gw_snprintf(path, sizeof(path), "%s/gwmem-report.%u.%llu.%llx.txt", R.report_dir,
				    (unsigned)getpid(), (unsigned long long)secs,
				    (unsigned long long)(rnd | (UINT64_C(1) << 63)));
		}
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			break;
		if (fd < 0 && n == 3)
			gw_counters_event(GW_EVENT_REPORT_FAILED, false,
					  "report names in %s are taken (planted?); using a random name",
					  R.report_dir);
	}
	if (fd < 0) {
		err = -errno;
		gw_counters_event(GW_EVENT_REPORT_FAILED, false, "cannot create report in %s: %s",
				  R.report_dir, gw_strerror(-err));
		return err;
	}
	err = gw_report_self(fd, h, size);
	close(fd);
	if (err < 0) {
		gw_counters_event(GW_EVENT_REPORT_FAILED, false, "writing report %s failed: %s", path,
				  gw_strerror(-err));
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
	gw_track_guard_enter();
	for (unsigned tick = 0; !__atomic_load_n(&R.stop, __ATOMIC_ACQUIRE); tick++) {
		struct pollfd pfd = { .fd = R.pipe_rd, .events = POLLIN };
		int r = pfd.fd >= 0 ? poll(&pfd, 1, 250) : poll(NULL, 0, 250);

		if (__atomic_load_n(&R.stop, __ATOMIC_ACQUIRE))
			break;
		if (r > 0 || pfd.fd < 0) {
			if (!fd_is_pipe(R.pipe_rd, R.pipe_dev, R.pipe_ino)) {
				/* closed behind our back (daemonize closing every fd): new pipe */
				pipe_close();
				pipe_open();
			} else if (pfd.revents & POLLIN) {
				char buf[64];
				bool want = false;

				for (int i = 0; i < 64 && read(R.pipe_rd, buf, sizeof(buf)) > 0; i++)
					want = true;
				if (want) {
					/* a forked child's segment becomes visible first */
					gw_track_fork_tick(true);
					gw_reporter_report_now(NULL, 0);
				}
			}
		}
		/* pool statistics reach the segment when the pools publish them:
		 * four times a second; heartbeat and module map once a second */
		gw_pool_release(false);
		/* every tick: a fork buffer goes soon after the last fork */
		gw_track_fork_tick(false);
		if (tick % 4)
			continue;
		struct gwmem_shm_header *h = gw_track_segment(NULL);
		if (h)
			__atomic_store_n(&h->heartbeat_monotonic_ns, gw_os_monotonic_ns(), __ATOMIC_RELAXED);
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

	if (R.pipe_rd < 0 && (err = pipe_open()) < 0)
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
		R.running = true;
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
		R.handler_installed = true;
}

int gw_reporter_start(const struct gwmem_config *cfg)
{
	int err;

	memcpy(R.report_dir, cfg->leak_detection.report_dir, sizeof(R.report_dir));
	R.report_dir[sizeof(R.report_dir) - 1] = '\0';
	modules_refresh();
	R.report_signal = cfg->leak_detection.report_signal;
	err = reporter_start();
	if (err < 0)
		gw_counters_event(GW_EVENT_REPORT_FAILED, false, "cannot start the reporter thread: %s",
				  gw_strerror(-err));
	else
		install_handler(R.report_signal);
	return err;
}

void gw_reporter_stop(void)
{
	__atomic_store_n(&R.stop, true, __ATOMIC_RELEASE);
}

void gw_reporter_atfork_child(uint64_t fork_ns)
{
	int wr = __atomic_load_n(&R.pipe_wr, __ATOMIC_RELAXED);

	/*
	 * The parent's pipe is shared with us: from now on a signal to the
	 * child must not wake the parent's reporter.  Our ends of it are
	 * closed when our own reporter starts (and by exec: close-on-exec),
	 * not here: four system calls a child that execs or exits soon does
	 * not need.
	 */
	if (wr >= 0)
		R.inherited_wr = wr;
	__atomic_store_n(&R.pipe_wr, -1, __ATOMIC_RELAXED);
	__atomic_store_n(&R.wanted, false, __ATOMIC_RELAXED);
	R.running = false;
	R.fork_ns = fork_ns;
	if (!R.stop)
		__atomic_store_n(&gw_reporter_restart_pending, true, __ATOMIC_RELAXED);
}

/*
 * Called on the allocations of a forked child until it runs.  A child that
 * execs or exits within a second (a shell's $(...), system()) never
 * starts a thread nor creates a segment file: both cost more than the
 * fork itself.  The first allocation after that second does both.
 */
void gw_reporter_restart(void)
{
	bool wanted = __atomic_load_n(&R.wanted, __ATOMIC_RELAXED);

	if (!wanted && gw_os_monotonic_ns() - R.fork_ns < GW_REPORTER_CHILD_DELAY_NS)
		return;
	__atomic_store_n(&gw_reporter_restart_pending, false, __ATOMIC_RELAXED);
	/* the parent's pipe ends, if they still are what we inherited */
	R.pipe_wr = R.inherited_wr;
	R.inherited_wr = -1;
	pipe_close();
	gw_track_fork_tick(true);
	R.modules_gen = MODULES_GEN_NONE;
	modules_refresh();
	if (reporter_start() < 0) {
		gw_counters_event(GW_EVENT_REPORT_FAILED, false, "cannot start the reporter thread after fork");
		return;
	}
	if (wanted) {
		/* the signal that came before the thread: answer it now */
		__atomic_store_n(&R.wanted, false, __ATOMIC_RELAXED);
		on_report_signal(R.report_signal);
	}
}
