/*
 * shm.c - creating, sizing, naming, permissions and removal of the
 * shared-memory segment, the memory behind it, and the child's own copy
 * after fork.
 *
 * The segment is a regular file in shm_dir (tmpfs), mapped MAP_SHARED so the
 * gwmem CLI can map it read-only and watch the table while the process runs.
 * The file's apparent size covers what the configured limits allow, but it
 * is sparse: a page gets memory (fallocate) only when the table, the stack
 * table or the module map is about to write it, and the table gives the
 * pages of an array it outgrew back (punched hole).  So the memory follows
 * the live allocations, and the limits cost address space only.  A page is
 * always backed before its first store: a sparse tmpfs page touched when the
 * filesystem is full would kill the host with SIGBUS, while a failed
 * fallocate is an error we can count (the allocation is served untracked).
 *
 * Which pages are backed is a bitmap in private memory; the file keeps its
 * own truth in the live counts the readers follow (shm_layout.h).
 *
 * What this file leaves to others: the records (table.c), the stack table
 * (stacks.c), the module map and counters (track.c, counters.c).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "counters.h"
#include "fmt.h"
#include "os.h"
#include "shm.h"
#include "spin.h"

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif

/* Our descriptor is moved this high so that programs that dup2() onto low
 * numbers are less likely to hit it; it is checked before every use anyway. */
#define HIGH_FD 512

uint32_t gw_shm_pow2(uint64_t v)
{
	uint64_t p = 1;

	while (p < v && p < (UINT64_C(1) << 31))
		p <<= 1;
	return (uint32_t)p;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

void gw_shm_geometry(const struct gwmem_config *cfg, bool tracking, struct gw_shm_geom *g)
{
	const uint64_t page = gw_os_page_size();
	uint64_t off = GWMEM_SHM_HEADER_SIZE;
	uint64_t cap = cfg->leak_detection.max_segment_bytes;

	memset(g, 0, sizeof(*g));
	/* under an address-space limit the segment takes a small share of it:
	 * the program must keep about what glibc alone would give it */
	struct rlimit rl;
	bool limited = getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY;
	if (limited && cap > rl.rlim_cur / GW_SHM_RLIMIT_SHARE)
		cap = rl.rlim_cur / GW_SHM_RLIMIT_SHARE;
	if (cap < GW_SHM_MIN_BYTES)
		cap = GW_SHM_MIN_BYTES;
	g->max_bytes = cap;
	if (tracking) {
		/*
		 * 32 stripes up to 262,144 tracked allocations; above, one per
		 * 2,048 (at most 1024), so that a stripe's array stays small
		 * enough for a reader to copy it between two writes of a busy
		 * process.  Small arrays share pages (table.h), so many
		 * stripes cost little memory.
		 */
		uint64_t want_stripes = cfg->leak_detection.max_tracked_allocations / 2048;
		g->nstripes = cfg->leak_detection.max_tracked_allocations <= 262144 ? GW_SHM_STRIPES
			      : want_stripes >= GW_SHM_MAX_STRIPES ? GW_SHM_MAX_STRIPES
			      : gw_shm_pow2(want_stripes);
		g->stripes_offset = off;
		off += (uint64_t)g->nstripes * sizeof(struct gwmem_shm_stripe);
	}
	g->initial = align_up(off, page);
	if (tracking) {
		/* the module map names the frames of recorded stacks: without
		 * tracking there are none, and its 70 KiB of address space
		 * would only count against RLIMIT_AS */
		g->modules_offset = off;
		g->modules_capacity = GW_SHM_MODULES;
		off = align_up(off + (uint64_t)GW_SHM_MODULES * sizeof(struct gwmem_shm_module), page);
	}

	if (tracking) {
		uint32_t frames = cfg->leak_detection.max_frames;
		uint64_t stacks = cfg->leak_detection.max_stacks;
		uint64_t want = cfg->leak_detection.max_tracked_allocations;
		const uint64_t page_slots = page / sizeof(struct gwmem_shm_record);
		uint64_t slots, region_max;

		if (frames < 1)
			frames = 1;
		if (frames > GWMEM_SHM_MAX_FRAMES)
			frames = GWMEM_SHM_MAX_FRAMES;
		if (stacks < 16)
			stacks = 16;
		g->max_frames = frames;
		g->stack_stride = 16 + 8 * frames;
		/* entries are appended: the table never holds more than the
		 * limit, and never more than the cap can back */
		/* the whole mapping counts against RLIMIT_AS, sparse or not:
		 * under a limit the stack table and the record regions share
		 * the cap (a quarter and a half) instead of spanning it each */
		const uint64_t stack_cap = limited ? cap / 4 : cap;
		if (stacks * g->stack_stride > stack_cap)
			stacks = stack_cap / g->stack_stride;
		g->stack_capacity = (uint32_t)stacks;
		g->stacks_offset = off;
		off = align_up(off + stacks * g->stack_stride, page);

		/*
		 * A stripe's array is dense (table.h), and stripes are not
		 * exactly balanced (x 5/4): a region holds max * 5/4 / nstripes
		 * records.  The regions of all stripes together span at most
		 * twice the cap (address space is not free either: 32-bit, or
		 * RLIMIT_AS), so one array is at most 1/nstripes of the cap.
		 */
		if (want < 16)
			want = 16;
		slots = (want * 5 + 4 * g->nstripes - 1) / (4 * g->nstripes);
		region_max = (limited ? cap / 4 : cap) / g->nstripes / sizeof(struct gwmem_shm_record);
		if (slots > region_max)
			slots = region_max;
		slots = align_up(slots, page_slots);
		if (slots > UINT32_MAX / 2)
			slots = (UINT32_MAX / 2) & ~(page_slots - 1);
		g->slots_per_stripe = (uint32_t)slots;
		g->records_offset = off;
		off += (uint64_t)g->nstripes * 2 * slots * sizeof(struct gwmem_shm_record);
	}
	g->size = align_up(off, page);
}

int gw_shm_name(char *buf, size_t cap, const char *dir, pid_t pid, uint64_t starttime)
{
	size_t n = gw_snprintf(buf, cap, "%s/" GWMEM_SHM_PREFIX "%u.%llu", dir, (unsigned)pid,
			       (unsigned long long)starttime);

	return n < cap ? 0 : -ENAMETOOLONG;
}

/*
 * Create the file exclusively.  If a file of that name exists it can only
 * be ours from before an exec (pid and start time are the same), so it is
 * replaced.  Anything else there (a planted symlink, another user's file:
 * both names are predictable from /proc) must not deny us tracking: the
 * segment then gets a name with an unpredictable suffix,
 * gwmem.<pid>.<starttime>.<16 hex digits>, which the CLI finds as well and
 * tells apart from the planted one by its owner.  path (of capacity cap)
 * gets the name used.
 */
static int open_exact(const char *path)
{
	const int flags = O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;

	for (int attempt = 0; attempt < 2; attempt++) {
		struct stat st;
		int fd = open(path, flags, 0600);

		if (fd >= 0) {
			if (fchmod(fd, 0600) < 0) {
				int err = -errno;
				unlink(path);
				close(fd);
				return err;
			}
			return fd;
		}
		if (errno != EEXIST)
			return -errno;
		if (lstat(path, &st) < 0)
			continue;
		if (!S_ISREG(st.st_mode) || st.st_uid != geteuid())
			return -EEXIST;
		if (unlink(path) < 0)
			return -errno;
	}
	return -EEXIST;
}

/*
 * After an exec the new image cannot tell which suffixed name its previous
 * image used (the environment is the program's), so when the plain name is
 * blocked it looks for gwmem.<pid>.<starttime>.<suffix> files and removes
 * the ones that can only be a previous image's: regular files of our uid,
 * written by a process in our PID namespace (the same pid and start time
 * then name this very process), other than the file just created.  Read
 * with getdents64 into a stack buffer: no malloc during start-up.
 */
static void remove_previous_images(const char *path, int fd)
{
	char buf[4096];
	const char *slash = strrchr(path, '/');
	struct stat ours, ns;
	uint64_t my_ns = 0;
	size_t base_len;
	int dfd;

	if (!slash || fstat(fd, &ours) < 0)
		return;
	base_len = strlen(slash + 1) - 17;   /* "gwmem.<pid>.<starttime>" */
	if (stat("/proc/self/ns/pid", &ns) == 0)
		my_ns = (uint64_t)ns.st_ino;
	char dir[GWMEM_CONFIG_PATH_MAX];
	if ((size_t)(slash - path) >= sizeof(dir))
		return;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	dfd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return;
	for (int rounds = 0; rounds < 1024; rounds++) {
		long n = syscall(SYS_getdents64, dfd, buf, sizeof(buf));

		if (n <= 0)
			break;
		for (long at = 0; at < n;) {
			struct gw_dirent {
				uint64_t ino;
				int64_t off;
				unsigned short reclen;
				unsigned char type;
				char name[];
			} *d = (struct gw_dirent *)(buf + at);
			struct stat st;
			uint64_t their_ns = 0;

			at += d->reclen;
			if (strlen(d->name) != base_len + 17 || strncmp(d->name, slash + 1, base_len) != 0 ||
			    d->name[base_len] != '.')
				continue;
			int f = openat(dfd, d->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
			if (f < 0)
				continue;
			bool stale = fstat(f, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
				     !(st.st_dev == ours.st_dev && st.st_ino == ours.st_ino) &&
				     pread(f, &their_ns, sizeof(their_ns),
					   (off_t)offsetof(struct gwmem_shm_header, pid_ns)) == (ssize_t)sizeof(their_ns) &&
				     their_ns == my_ns;
			close(f);
			if (stale)
				unlinkat(dfd, d->name, 0);
		}
	}
	close(dfd);
}

static int open_segment(char *path, size_t cap)
{
	size_t len = strlen(path);
	int fd = open_exact(path);
	bool blocked = fd == -EEXIST;

	for (int attempt = 0; fd == -EEXIST && attempt < 4; attempt++) {
		uint64_t r;

		if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
			r = gw_os_monotonic_ns() * UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t)(uintptr_t)&r;
		if (len + 18 > cap)
			return -ENAMETOOLONG;
		path[len] = '.';
		for (int k = 0; k < 16; k++)
			path[len + 1 + k] = "0123456789abcdef"[(r >> (60 - 4 * k)) & 15];
		path[len + 17] = '\0';
		fd = open_exact(path);
		if (fd >= 0 && attempt == 0)
			gw_counters_event(GW_EVENT_SHM_FAILED, false,
					  "a file that is not ours has this process's segment name in its directory; "
					  "the segment is %s", path);
	}
	if (blocked && fd >= 0)
		remove_previous_images(path, fd);
	return fd;
}

/* Move fd out of the way of the program's low numbers (best effort). */
static int high_fd(int fd)
{
	int h = fcntl(fd, F_DUPFD_CLOEXEC, HIGH_FD);

	if (h < 0)
		return fd;
	close(fd);
	return h;
}

static bool fd_is_ours(const struct gw_shm *s, int fd)
{
	struct stat st;

	return fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == s->dev &&
	       st.st_ino == s->ino;
}

/*
 * Our descriptor, checked: a program may close every descriptor (daemons
 * do) and reuse the number for a file of its own, which we must never
 * write.  When it is gone, the file is opened again by name if it is still
 * the same file; otherwise the segment cannot grow any more.
 */
static int segment_fd(struct gw_shm *s)
{
	int fd;

	if (fd_is_ours(s, s->fd))
		return s->fd;
	s->fd = -1;
	if (!s->path[0])
		return -1;
	fd = open(s->path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (!fd_is_ours(s, fd)) {
		close(fd);
		return -1;
	}
	s->fd = high_fd(fd);
	return s->fd;
}

/* Give the file blocks for [off, off + len): fallocate, or zeroes written
 * on a filesystem without it; -errno when there is no room. */
static int file_back(int fd, uint64_t off, uint64_t len)
{
	static const char zeroes[4096];

	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	while (len) {
		size_t n = len < sizeof(zeroes) ? (size_t)len : sizeof(zeroes);
		ssize_t w = pwrite(fd, zeroes, n, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		off += (uint64_t)w;
		len -= (uint64_t)w;
	}
	return 0;
}

static inline bool bit_get(const uint8_t *b, size_t i)
{
	return (__atomic_load_n(&b[i / 8], __ATOMIC_RELAXED) >> (i % 8)) & 1u;
}

/* A store that would not change the byte is skipped: the bitmaps are
 * private memory, and after a fork each page of them written again is a
 * copy-on-write fault (every fork sets the buffer's bits it already has). */
static inline void bit_put(uint8_t *b, size_t i, bool on)
{
	uint8_t old = b[i / 8], v;

	v = on ? (uint8_t)(old | (1u << (i % 8))) : (uint8_t)(old & ~(1u << (i % 8)));
	if (v != old)
		__atomic_store_n(&b[i / 8], v, __ATOMIC_RELAXED);
}

/*
 * The parts of [0, size) that are mapped: all of it, or the two around the
 * hole gw_shm_give_back made in the stack table.  Whole-mapping operations
 * (private zeroes, a child's copy moved in, a child's own file mapped)
 * work run by run: what is in the hole now is someone else's.
 */
static unsigned mapped_runs(const struct gw_shm *s, size_t lo[2], size_t hi[2])
{
	lo[0] = 0;
	if (s->hole_hi <= s->hole_lo) {
		hi[0] = s->size;
		return 1;
	}
	hi[0] = s->hole_lo;
	lo[1] = s->hole_hi;
	hi[1] = s->size;
	return 2;
}

void gw_shm_lock(struct gw_shm *s)
{
	gw_spin_lock(&s->lock);
}

void gw_shm_unlock(struct gw_shm *s)
{
	gw_spin_unlock(&s->lock);
}

static void publish_allocated(struct gw_shm *s)
{
	__atomic_store_n(&s->hdr->allocated_bytes, s->allocated, __ATOMIC_RELAXED);
}

bool gw_shm_is_backed(const struct gw_shm *s, uint64_t off, uint64_t len)
{
	size_t first, last;

	if (!s->backed || !len || off + len > s->size)
		return false;
	first = (size_t)(off / s->page);
	last = (size_t)((off + len - 1) / s->page);
	for (size_t i = first; i <= last; i++)
		if (!bit_get(s->backed, i))
			return false;
	return true;
}

int gw_shm_back(struct gw_shm *s, uint64_t off, uint64_t len)
{
	size_t first, last, i;
	int err = 0;

	if (!s->hdr || !s->backed || !len || off > s->size || len > s->size - off)
		return -EINVAL;
	if (gw_shm_is_backed(s, off, len))
		return 0;
	first = (size_t)(off / s->page);
	last = (size_t)((off + len - 1) / s->page);
	gw_shm_lock(s);
	if ((s->mode != GW_SHM_SHARED && s->mode != GW_SHM_PRIVATE) ||
	    (s->hole_hi > s->hole_lo && off < s->hole_hi && off + len > s->hole_lo)) {
		gw_shm_unlock(s);
		return -ENOSPC;
	}
	for (i = first; i <= last && !err;) {
		size_t j = i;

		if (bit_get(s->backed, i)) {
			i++;
			continue;
		}
		while (j <= last && !bit_get(s->backed, j))
			j++;
		uint64_t bytes = (uint64_t)(j - i) * s->page;
		if (s->allocated + bytes > s->max_bytes) {
			err = -ENOSPC;
			break;
		}
		if (s->mode == GW_SHM_SHARED) {
			int fd = segment_fd(s);

			err = fd < 0 ? -EBADF : file_back(fd, (uint64_t)i * s->page, bytes);
			if (err)
				break;
		}
		for (size_t k = i; k < j; k++)
			bit_put(s->backed, k, true);
		s->allocated += bytes;
		i = j;
	}
	publish_allocated(s);
	gw_shm_unlock(s);
	return err;
}

void gw_shm_release(struct gw_shm *s, uint64_t off, uint64_t len)
{
	size_t first, last;

	if (!s->hdr || !s->backed || !len || off % s->page || off > s->size || len > s->size - off)
		return;
	len = align_up(len, s->page);
	if (len > s->size - off)
		len = s->size - off;
	first = (size_t)(off / s->page);
	last = (size_t)((off + len - 1) / s->page);
	gw_shm_lock(s);
	if (s->mode == GW_SHM_FORKED) {
		/* the parent's file: never ours to change */
		gw_shm_unlock(s);
		return;
	}
	if (s->mode == GW_SHM_SHARED) {
		int fd = segment_fd(s);

		/* when the hole cannot be punched the pages stay backed (and counted) */
		if (fd < 0 || fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
					(off_t)len) < 0) {
			gw_shm_unlock(s);
			return;
		}
	} else {
		gw_os_decommit((char *)s->hdr + off, (size_t)len);
	}
	for (size_t i = first; i <= last; i++) {
		if (bit_get(s->backed, i)) {
			bit_put(s->backed, i, false);
			s->allocated -= s->page;
		}
	}
	publish_allocated(s);
	gw_shm_unlock(s);
}

uint64_t gw_shm_give_back(struct gw_shm *s, uint64_t stacks_end, uint64_t end)
{
	uint64_t given = 0;

	gw_shm_lock(s);
	if (!s->hdr || (s->mode != GW_SHM_SHARED && s->mode != GW_SHM_PRIVATE)) {
		gw_shm_unlock(s);
		return 0;
	}
	/* the buffer a fork copies into, kept for the next fork: made again then */
	if (s->mode == GW_SHM_SHARED && s->fork_copy) {
		gw_os_unmap(s->fork_copy, s->size);
		gw_os_unmap(s->fork_have, (s->npages + 7) / 8);
		s->fork_copy = NULL;
		s->fork_have = NULL;
		given += s->size;
	}
	/*
	 * The tail nobody will write: the file keeps its size (readers follow
	 * the header, whose segment_size stays), only our mapping ends here.
	 * Every store into the segment is preceded by gw_shm_back, which
	 * refuses offsets past s->size from now on; whole-mapping operations
	 * (a fork's copy, a child's file, private zeroes at exit) use s->size.
	 */
	/*
	 * The stack table's unused entries, up to the record area: a hole in
	 * the middle of the mapping (once only; where the record area is
	 * empty, the tail below takes it too).
	 */
	uint64_t lo = align_up(stacks_end, s->page);
	uint64_t hi = s->hdr->records_offset & ~((uint64_t)s->page - 1);
	end = align_up(end, s->page);
	if (end && end <= hi) {
		end = lo;
		lo = hi = 0;
	}
	if (stacks_end && s->hole_hi <= s->hole_lo && lo < hi && hi <= s->size) {
		for (size_t i = (size_t)(lo / s->page); i < (size_t)(hi / s->page); i++) {
			if (bit_get(s->backed, i)) {
				bit_put(s->backed, i, false);
				s->allocated -= s->page;
			}
		}
		gw_os_unmap((char *)s->hdr + lo, (size_t)(hi - lo));
		given += hi - lo;
		s->hole_lo = (size_t)lo;
		s->hole_hi = (size_t)hi;
		publish_allocated(s);
	}
	if (end && end < s->size) {
		for (size_t i = (size_t)(end / s->page); i < s->npages; i++) {
			if (bit_get(s->backed, i)) {
				/* never the case (the callers' data ends before), but
				 * the count must stay true */
				bit_put(s->backed, i, false);
				s->allocated -= s->page;
			}
		}
		gw_os_unmap((char *)s->hdr + end, s->size - (size_t)end);
		given += s->size - end;
		s->size = (size_t)end;
		s->npages = (size_t)(end / s->page);
		publish_allocated(s);
	}
	gw_shm_unlock(s);
	return given;
}

static void fill_config(struct gwmem_shm_config *c, const struct gwmem_config *cfg, bool tracking)
{
	c->pool_enabled = cfg->memory.pool_enabled;
	c->leak_detection_enabled = cfg->memory.leak_detection_enabled;
	c->compaction_enabled = cfg->memory.compaction_enabled;
	c->tracking_enabled = tracking;
	c->auto_compact = cfg->compaction.auto_compact;
	c->unwinder = (uint8_t)cfg->leak_detection.unwinder;
	c->default_block_size = cfg->memory_pool.default_block_size;
	c->blocks_per_chunk = cfg->memory_pool.blocks_per_chunk;
	c->max_chunks = cfg->memory_pool.max_chunks;
	c->threshold_seconds = cfg->leak_detection.threshold_seconds;
	c->max_tracked_allocations = cfg->leak_detection.max_tracked_allocations;
	c->max_stacks = cfg->leak_detection.max_stacks;
	c->max_frames = cfg->leak_detection.max_frames;
	c->sample_rate = cfg->leak_detection.sample_rate;
	c->report_signal = cfg->leak_detection.report_signal;
	c->compact_interval_seconds = cfg->compaction.compact_interval_seconds;
	c->fragmentation_threshold = cfg->compaction.fragmentation_threshold;
}

static void fill_header(struct gwmem_shm_header *h, const struct gw_shm_geom *g,
			const struct gwmem_config *cfg, bool tracking, uint64_t starttime)
{
	char buf[GWMEM_SHM_CMDLINE_MAX];
	ssize_t n;

	/* the file is new and zero-filled: only non-zero fields are written */
	h->version = GWMEM_SHM_VERSION;
	h->header_size = GWMEM_SHM_HEADER_SIZE;
	h->segment_size = g->size;
	h->pid = (uint32_t)getpid();
	h->ppid = (uint32_t)getppid();
	h->proc_starttime = starttime;
	h->start_realtime_ns = gw_os_realtime_ns();
	h->start_monotonic_ns = gw_os_monotonic_ns();
	h->heartbeat_monotonic_ns = h->start_monotonic_ns;
	h->state = GWMEM_SHM_STATE_STARTING;
	h->flags = (tracking ? GWMEM_SHM_FLAG_TRACKING : 0) |
		   (cfg->memory.pool_enabled ? GWMEM_SHM_FLAG_POOLS : 0) |
		   (tracking && cfg->leak_detection.unwinder == GWMEM_UNWIND_FRAME_POINTER ?
		    GWMEM_SHM_FLAG_FRAME_POINTER : 0);
	h->pointer_bits = (uint32_t)(sizeof(void *) * 8);
	h->page_size = (uint32_t)gw_os_page_size();

	/* argv, NUL-separated; a longer command line is cut, still NUL-terminated */
	n = gw_os_read_file("/proc/self/cmdline", buf, sizeof(buf), false);
	if (n == -EFBIG)
		n = (ssize_t)sizeof(buf) - 1;
	if (n > 0)
		memcpy(h->cmdline, buf, (size_t)n);
	h->cmdline[GWMEM_SHM_CMDLINE_MAX - 1] = '\0';
	n = readlink("/proc/self/exe", h->exe, GWMEM_SHM_PATH_MAX - 1);
	if (n < 0)
		h->exe[0] = '\0';

	fill_config(&h->config, cfg, tracking);
	memcpy(h->tag_names[0], "malloc", 7);

	h->modules_offset = g->modules_offset;
	h->modules_capacity = g->modules_capacity;
	h->stacks_offset = g->stacks_offset;
	h->stack_capacity = g->stack_capacity;
	h->stack_stride = g->stack_stride;
	h->max_frames = g->max_frames;
	h->stripes_offset = g->stripes_offset;
	h->records_offset = g->records_offset;
	h->nstripes = g->nstripes;
	h->slots_per_stripe = g->slots_per_stripe;
	h->max_segment_bytes = g->max_bytes;
	struct stat ns;
	if (stat("/proc/self/ns/pid", &ns) == 0)
		h->pid_ns = (uint64_t)ns.st_ino;
	__atomic_store_n(&h->magic, GWMEM_SHM_MAGIC, __ATOMIC_RELEASE);
}

int gw_shm_create(struct gw_shm *s, const struct gwmem_config *cfg, bool tracking)
{
	struct gw_shm_geom g;
	struct stat st;
	uint64_t starttime = gw_os_proc_starttime(getpid());
	size_t bitmap;
	void *p;
	int fd, err;

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->page = gw_os_page_size();
	gw_shm_geometry(cfg, tracking, &g);
	if (g.size > SIZE_MAX / 2) {
		err = -EFBIG;
		goto fail;
	}
	s->npages = (size_t)(g.size / s->page);
	bitmap = (size_t)align_up((s->npages + 7) / 8, s->page);
	s->backed = gw_os_map(bitmap);
	if (!s->backed) {
		err = -ENOMEM;
		goto fail;
	}
	gw_snprintf(s->dir, sizeof(s->dir), "%s", cfg->leak_detection.shm_dir);
	err = gw_shm_name(s->path, sizeof(s->path), s->dir, getpid(), starttime);
	if (err)
		goto fail_bitmap;
	fd = open_segment(s->path, sizeof(s->path));
	if (fd < 0) {
		err = fd;
		goto fail_bitmap;
	}
	if (fstat(fd, &st) < 0 || ftruncate(fd, (off_t)g.size) < 0) {
		err = -errno;
		goto fail_unlink;
	}
	/* header and stripe heads: everything else is backed on demand */
	err = file_back(fd, 0, g.initial);
	if (err)
		goto fail_unlink;
	p = gw_os_map_shared(fd, g.size, true, NULL);
	if (!p) {
		err = -errno;
		goto fail_unlink;
	}
	s->hdr = p;
	s->size = (size_t)g.size;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->fd = high_fd(fd);
	s->mode = GW_SHM_SHARED;
	s->max_bytes = g.max_bytes;
	for (size_t i = 0; i < g.initial / s->page; i++)
		bit_put(s->backed, i, true);
	s->allocated = g.initial;
	fill_header(s->hdr, &g, cfg, tracking, starttime);
	publish_allocated(s);
	return 0;

fail_unlink:
	unlink(s->path);
	close(fd);
fail_bitmap:
	gw_os_unmap(s->backed, bitmap);
	s->backed = NULL;
fail:
	s->path[0] = '\0';
	return err;
}

void gw_shm_publish(struct gw_shm *s)
{
	if (!s->hdr)
		return;
	__atomic_store_n(&s->hdr->state, GWMEM_SHM_STATE_RUNNING, __ATOMIC_RELEASE);
}

bool gw_shm_exit_unlink(struct gw_shm *s, bool keep)
{
	struct stat st;

	if (!s->hdr || s->mode != GW_SHM_SHARED || !s->path[0])
		return false;
	if (keep) {
		__atomic_store_n(&s->hdr->state, GWMEM_SHM_STATE_EXITED, __ATOMIC_RELEASE);
		return false;
	}
	/* remove only the file we created, not one that replaced it */
	if (lstat(s->path, &st) < 0 || st.st_dev != s->dev || st.st_ino != s->ino) {
		s->path[0] = '\0';
		return false;
	}
	if (unlink(s->path) == 0) {
		s->path[0] = '\0';
		return false;
	}
	/* still there and not ours to remove any more: truncate it */
	return true;
}

/* Replace the whole mapping by private zeroes at the same address. */
static bool map_zeroes(struct gw_shm *s);

void gw_shm_exit(struct gw_shm *s, bool keep)
{
	if (gw_shm_exit_unlink(s, keep))
		gw_shm_exit_truncate(s);
}


static bool map_zeroes(struct gw_shm *s)
{
	size_t lo[2], hi[2];
	bool ok = true;

	for (unsigned r = 0, n = mapped_runs(s, lo, hi); r < n; r++)
		ok = ok && gw_os_map_anon_at((char *)s->hdr + lo[r], hi[r] - lo[r]) != NULL;
	return ok;
}

void gw_shm_exit_truncate(struct gw_shm *s)
{
	int fd;

	if (!s->hdr || s->mode != GW_SHM_SHARED)
		return;
	fd = segment_fd(s);
	/*
	 * Our own stores go to private zeroes first, then the file loses its
	 * pages: a store that reached a truncated shared mapping would be
	 * SIGBUS.  The file stays with no data at all: `gwmem ps` shows it
	 * as an empty segment and `gwmem clean` removes it.
	 */
	if (fd >= 0 && map_zeroes(s)) {
		s->mode = GW_SHM_DETACHED;
		s->allocated = 0;
		memset(s->backed, 0, (s->npages + 7) / 8);
		if (ftruncate(fd, 0) < 0) {
			/* nothing more we can do: the file keeps its pages */
		}
		close(fd);
		s->fd = -1;
	}
	s->path[0] = '\0';
}

int gw_shm_watch(struct gw_shm *s, uint64_t lo, uint64_t hi, uint8_t *marks)
{
	if (s->changed || !marks || lo % s->page || hi <= lo || hi > s->size || hi - lo < s->page)
		return -EINVAL;
	/* every page counts as changed until a fork buffer holds it: the
	 * first copy takes each backed page whatever the marks say */
	s->changed = marks;
	s->changed_lo = lo;
	s->changed_hi = lo + (hi - lo) / s->page * s->page;
	return 0;
}

/* The change mark of the page at off, or NULL when the page is compared. */
static inline uint8_t *watched(const struct gw_shm *s, size_t off)
{
	if (!s->changed || off < s->changed_lo || off >= s->changed_hi)
		return NULL;
	return &s->changed[(off - s->changed_lo) / s->page];
}

/*
 * The copy buffer is kept while the program forks: at the next fork only
 * the pages that changed since are copied again (a page is compared
 * first, or, in the range a writer marks (gw_shm_watch: the record
 * area), only the pages marked since; reading the buffer costs no fault,
 * writing it does, since every
 * fork made it copy-on-write), so a shell that forks in a loop copies the
 * few pages its allocations touched in between, and a page its live
 * children still share stays shared.  Pages the segment gave back are
 * dropped from the buffer too (an adopted copy must read zeroes there,
 * like the file).  The buffer goes as soon as the program stops forking
 * (gw_shm_fork_idle, from the reporter's next tick).
 */
void gw_shm_fork_prepare(struct gw_shm *s)
{
	char *q = s->fork_copy;
	const char *base = (const char *)s->hdr;

	s->fork_copied = false;
	if (!s->hdr || s->mode != GW_SHM_SHARED)
		return;
	if (!q) {
		q = gw_os_map(s->size);
		if (!q)
			return;
		s->fork_have = gw_os_map((s->npages + 7) / 8);
		if (!s->fork_have) {
			gw_os_unmap(q, s->size);
			return;
		}
		s->fork_copy = q;
	}
	for (size_t i = 0; i < s->npages;) {
		size_t j = i;
		bool on;

		/* most of a large segment is neither backed nor buffered: skip
		 * it a byte of the two bitmaps (eight pages) at a time */
		if (i % 8 == 0 && !__atomic_load_n(&s->backed[i / 8], __ATOMIC_RELAXED) &&
		    !s->fork_have[i / 8]) {
			i += 8;
			continue;
		}
		on = bit_get(s->backed, i);
		if (on) {
			size_t off = i * s->page;
			uint8_t *mark = watched(s, off);
			bool marked = mark && __atomic_load_n(mark, __ATOMIC_RELAXED);

			/* a marked page changed; elsewhere only a comparison says */
			if (!bit_get(s->fork_have, i) || (mark ? marked : memcmp(q + off, base + off, s->page) != 0))
				memcpy(q + off, base + off, s->page);
			if (marked)
				__atomic_store_n(mark, 0, __ATOMIC_RELAXED);
			bit_put(s->fork_have, i, true);
			i++;
			continue;
		}
		while (j < s->npages && !bit_get(s->backed, j) && bit_get(s->fork_have, j))
			j++;
		if (j == i) {
			/* not backed, and not in the buffer either */
			i++;
			continue;
		}
		gw_os_decommit(q + i * s->page, (j - i) * s->page);
		for (size_t k = i; k < j; k++)
			bit_put(s->fork_have, k, false);
		i = j;
	}
	s->fork_copied = true;
	s->fork_ns = gw_os_monotonic_ns();
}

void gw_shm_fork_parent(struct gw_shm *s)
{
	s->fork_copied = false;
}

void gw_shm_fork_idle(struct gw_shm *s, uint64_t now_ns)
{
	if (!s->fork_copy || now_ns - s->fork_ns < GW_SHM_FORK_IDLE_NS)
		return;
	gw_shm_lock(s);
	gw_os_unmap(s->fork_copy, s->size);
	gw_os_unmap(s->fork_have, (s->npages + 7) / 8);
	s->fork_copy = NULL;
	s->fork_have = NULL;
	gw_shm_unlock(s);
}

/* The parent's page list of its buffer, inherited by a child: of no use
 * to it, unmapped when the child makes system calls anyway. */
static void fork_have_drop(struct gw_shm *s)
{
	if (s->fork_have)
		gw_os_unmap(s->fork_have, (s->npages + 7) / 8);
	s->fork_have = NULL;
}

/* The child's last resort: private zeroes, so the parent's file is safe. */
static void fork_zeroes(struct gw_shm *s)
{
	map_zeroes(s);
	memset(s->backed, 0, (s->npages + 7) / 8);
	s->allocated = 0;
	s->mode = GW_SHM_DETACHED;
}

int gw_shm_fork_child(struct gw_shm *s)
{
	if (!s->hdr)
		return 0;
	gw_spin_unlock(&s->lock);
	if (s->mode == GW_SHM_FORKED) {
		/* forked again before its first write: its segment still is the
		 * snapshot in fork_copy, which this fork shared with us as well */
		s->fork_ns = gw_os_monotonic_ns();
		return 0;
	}
	if (s->mode != GW_SHM_SHARED) {
		/* a private copy (our parent's, before it had a file) was made
		 * private in us by the fork itself: nothing to copy.  Its own
		 * fork buffer, if any, is not ours to keep. */
		fork_have_drop(s);
		if (s->fork_copy)
			gw_os_unmap(s->fork_copy, s->size);
		s->fork_copy = NULL;
		s->fork_copied = false;
		s->fork_ns = gw_os_monotonic_ns();
		return 0;
	}
	if (!s->fork_copied) {
		fork_have_drop(s);
		s->fork_ns = gw_os_monotonic_ns();
		/* the parent could not copy: never write its file */
		if (s->fork_copy)
			gw_os_unmap(s->fork_copy, s->size);
		s->fork_copy = NULL;
		s->fd = -1;
		s->path[0] = '\0';
		fork_zeroes(s);
		return -ENOMEM;
	}
	/* nothing else now: a child that execs or exits never needs more
	 * (fork_ns is the time of the parent's prepare: the fork's) */
	s->fork_copied = false;
	s->mode = GW_SHM_FORKED;
	return 0;
}

int gw_shm_fork_adopt(struct gw_shm *s)
{
	void *q = s->fork_copy;
	int err;

	if (!s->hdr || s->mode != GW_SHM_FORKED)
		return 0;
	/* the parent's descriptor: close it only if it still is */
	if (fd_is_ours(s, s->fd))
		close(s->fd);
	s->fd = -1;
	s->path[0] = '\0';
	s->fork_copy = NULL;
	fork_have_drop(s);
	/* run by run (the hole is someone else's); a run moved is no longer
	 * at q, so only the others are unmapped there on failure */
	size_t lo[2], hi[2];
	unsigned r = 0, n = q ? mapped_runs(s, lo, hi) : 0;
	err = q ? 0 : -ENOMEM;
	for (; r < n && !err; r++)
		err = gw_os_remap_to((char *)q + lo[r], (char *)s->hdr + lo[r], hi[r] - lo[r]);
	if (q && s->hole_hi > s->hole_lo)
		gw_os_unmap((char *)q + s->hole_lo, s->hole_hi - s->hole_lo);
	if (err) {
		for (r = r - 1; r < n; r++)   /* the one that failed and those after it */
			gw_os_unmap((char *)q + lo[r], hi[r] - lo[r]);
		fork_zeroes(s);
		return err;
	}
	s->mode = GW_SHM_PRIVATE;
	return 0;
}

static int write_backed(const struct gw_shm *s, int fd)
{
	const char *base = (const char *)s->hdr;

	for (size_t i = 0; i < s->npages;) {
		size_t j = i;

		if (!bit_get(s->backed, i)) {
			i++;
			continue;
		}
		while (j < s->npages && bit_get(s->backed, j))
			j++;
		uint64_t off = (uint64_t)i * s->page, len = (uint64_t)(j - i) * s->page;
		int err = file_back(fd, off, len);
		if (err)
			return err;
		while (len) {
			ssize_t n = pwrite(fd, base + off, (size_t)len, (off_t)off);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return n < 0 ? -errno : -EIO;
			off += (uint64_t)n;
			len -= (uint64_t)n;
		}
		i = j;
	}
	return 0;
}

int gw_shm_materialize(struct gw_shm *s)
{
	struct gwmem_shm_header *h = s->hdr;
	uint64_t starttime;
	struct stat st;
	void *p;
	int fd, err;

	if (!h || s->mode != GW_SHM_PRIVATE)
		return 0;
	starttime = gw_os_proc_starttime(getpid());
	err = gw_shm_name(s->path, sizeof(s->path), s->dir, getpid(), starttime);
	if (err)
		goto fail;
	fd = open_segment(s->path, sizeof(s->path));
	if (fd < 0) {
		err = fd;
		goto fail;
	}
	/* the apparent size the header says: our mapping may end before it
	 * (gw_shm_give_back) */
	if (fstat(fd, &st) < 0 || ftruncate(fd, (off_t)h->segment_size) < 0) {
		err = -errno;
		goto fail_unlink;
	}
	h->pid = (uint32_t)getpid();
	h->ppid = (uint32_t)getppid();
	h->proc_starttime = starttime;
	h->heartbeat_monotonic_ns = gw_os_monotonic_ns();
	h->flags |= GWMEM_SHM_FLAG_FORKED;
	struct stat ns;
	if (stat("/proc/self/ns/pid", &ns) == 0)
		h->pid_ns = (uint64_t)ns.st_ino;
	err = write_backed(s, fd);
	if (err)
		goto fail_unlink;
	size_t lo[2], hi[2];
	p = h;
	for (unsigned r = 0, n = mapped_runs(s, lo, hi); r < n && p; r++)
		p = gw_os_map_shared_range(fd, lo[r], hi[r] - lo[r], (char *)h + lo[r]) ? h : NULL;
	if (!p) {
		/* MAP_FIXED failing leaves the old mapping in place */
		err = -errno;
		goto fail_unlink;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->fd = high_fd(fd);
	s->mode = GW_SHM_SHARED;
	__atomic_store_n(&h->state, GWMEM_SHM_STATE_RUNNING, __ATOMIC_RELEASE);
	return 0;

fail_unlink:
	unlink(s->path);
	close(fd);
fail:
	s->path[0] = '\0';
	s->mode = GW_SHM_DETACHED;
	return err;
}
