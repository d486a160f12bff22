/*
 * shm.c - creating, sizing, naming, permissions and removal of the
 * shared-memory segment, and the child's own copy after fork.
 *
 * The segment is a regular file in shm_dir (tmpfs), mapped MAP_SHARED so the
 * gwmem CLI can map it read-only and watch the table while the process runs.
 * Its blocks are allocated up front (fallocate): a sparse tmpfs file whose
 * filesystem fills up later would kill the host with SIGBUS on an ordinary
 * store into the table, which is worse than not tracking at all.
 *
 * What this file leaves to others: the records (table.c), the stack table
 * (stacks.c), the module map and counters (track.c, counters.c).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fmt.h"
#include "os.h"
#include "shm.h"

uint32_t gw_shm_pow2(uint64_t v)
{
	uint64_t p = 1;

	while (p < v && p < (UINT64_C(1) << 31))
		p <<= 1;
	return (uint32_t)p;
}

static uint64_t align64(uint64_t v)
{
	return (v + 63) & ~UINT64_C(63);
}

void gw_shm_geometry(const struct gwmem_config *cfg, bool tracking, struct gw_shm_geom *g)
{
	const uint64_t page = gw_os_page_size();
	uint64_t off = GWMEM_SHM_HEADER_SIZE;

	memset(g, 0, sizeof(*g));
	g->modules_offset = off;
	g->modules_capacity = GW_SHM_MODULES;
	off = align64(off + (uint64_t)GW_SHM_MODULES * sizeof(struct gwmem_shm_module));

	if (tracking) {
		uint32_t frames = cfg->leak_detection.max_frames;
		uint64_t stacks = cfg->leak_detection.max_stacks;
		uint64_t want, slots;

		if (frames < 1)
			frames = 1;
		if (frames > GWMEM_SHM_MAX_FRAMES)
			frames = GWMEM_SHM_MAX_FRAMES;
		if (stacks < 16)
			stacks = 16;
		g->max_frames = frames;
		g->stack_stride = 16 + 8 * frames;
		/* open addressing: keep the table at most 8/9 full so probes end */
		g->stack_capacity = gw_shm_pow2(stacks + stacks / 8 + 1);
		g->stacks_offset = off;
		off = align64(off + (uint64_t)g->stack_capacity * g->stack_stride);

		want = cfg->leak_detection.max_tracked_allocations;
		if (want < 16)
			want = 16;
		slots = gw_shm_pow2((want * GW_SHM_LOAD_DEN + GW_SHM_LOAD_NUM - 1) / GW_SHM_LOAD_NUM);
		if (slots < 64)
			slots = 64;
		/* stripes of 256 slots (8 KiB of records), at most 1024 stripes */
		g->nstripes = (uint32_t)(slots / 256);
		if (g->nstripes < 1)
			g->nstripes = 1;
		if (g->nstripes > GW_SHM_MAX_STRIPES)
			g->nstripes = GW_SHM_MAX_STRIPES;
		g->slots_per_stripe = (uint32_t)(slots / g->nstripes);
		g->stripes_offset = off;
		off = align64(off + (uint64_t)g->nstripes * sizeof(struct gwmem_shm_stripe));
		g->records_offset = off;
		off += slots * sizeof(struct gwmem_shm_record);
	}
	g->size = (off + page - 1) & ~(page - 1);
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
 * replaced; anything that is not a regular file owned by us (a planted
 * symlink, another user's file) is refused.
 */
static int open_segment(const char *path)
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

static int reserve_blocks(int fd, size_t size)
{
	if (fallocate(fd, 0, 0, (off_t)size) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	return ftruncate(fd, (off_t)size) == 0 ? 0 : -errno;
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
	__atomic_store_n(&h->magic, GWMEM_SHM_MAGIC, __ATOMIC_RELEASE);
}

int gw_shm_create(struct gw_shm *s, const struct gwmem_config *cfg, bool tracking)
{
	struct gw_shm_geom g;
	struct stat st;
	uint64_t starttime = gw_os_proc_starttime(getpid());
	void *p;
	int fd, err;

	memset(s, 0, sizeof(*s));
	gw_shm_geometry(cfg, tracking, &g);
	err = gw_shm_name(s->path, sizeof(s->path), cfg->leak_detection.shm_dir, getpid(), starttime);
	if (err)
		goto fail;
	fd = open_segment(s->path);
	if (fd < 0) {
		err = fd;
		goto fail;
	}
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto fail_unlink;
	}
	err = reserve_blocks(fd, g.size);
	if (err)
		goto fail_unlink;
	p = gw_os_map_shared(fd, g.size, true, NULL);
	if (!p) {
		err = -errno;
		goto fail_unlink;
	}
	close(fd);
	s->hdr = p;
	s->size = g.size;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	fill_header(s->hdr, &g, cfg, tracking, starttime);
	return 0;

fail_unlink:
	unlink(s->path);
	close(fd);
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

void gw_shm_exit(struct gw_shm *s, bool keep)
{
	struct stat st;

	if (!s->hdr || !s->path[0])
		return;
	if (keep) {
		__atomic_store_n(&s->hdr->state, GWMEM_SHM_STATE_EXITED, __ATOMIC_RELEASE);
		return;
	}
	/* remove only the file we created, not one that replaced it */
	if (lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
		unlink(s->path);
	s->path[0] = '\0';
}

static int write_all_at(int fd, const char *p, size_t len)
{
	off_t off = 0;

	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Replace the shared mapping by a private copy at the same address. */
static void detach_private(struct gw_shm *s)
{
	void *q = gw_os_map(s->size);

	s->path[0] = '\0';
	if (!q) {
		/* last resort: a private mapping of zeroes, so the parent's file is safe */
		(void)gw_os_map_anon_at(s->hdr, s->size);
		return;
	}
	memcpy(q, s->hdr, s->size);
	if (gw_os_remap_to(q, s->hdr, s->size) < 0) {
		gw_os_unmap(q, s->size);
		(void)gw_os_map_anon_at(s->hdr, s->size);
	}
}

int gw_shm_fork_child(struct gw_shm *s)
{
	struct gwmem_shm_header *h = s->hdr;
	uint64_t starttime;
	struct stat st;
	char path[sizeof(s->path)];
	void *p;
	int fd, err;

	if (!h)
		return 0;
	starttime = gw_os_proc_starttime(getpid());
	/* the directory is the parent's: cut the file name off its path */
	memcpy(path, s->path, sizeof(path));
	char *slash = strrchr(path, '/');
	if (!s->path[0] || !slash) {
		err = -ENOENT;
		goto fail;
	}
	*slash = '\0';
	err = gw_shm_name(s->path, sizeof(s->path), path, getpid(), starttime);
	if (err)
		goto fail;
	fd = open_segment(s->path);
	if (fd < 0) {
		err = fd;
		goto fail;
	}
	err = fstat(fd, &st) < 0 ? -errno : 0;
	if (!err)
		err = write_all_at(fd, (const char *)h, s->size);
	if (err)
		goto fail_unlink;
	p = gw_os_map_shared(fd, s->size, true, h);
	if (!p) {
		err = -errno;
		goto fail_unlink;
	}
	close(fd);
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	h->pid = (uint32_t)getpid();
	h->ppid = (uint32_t)getppid();
	h->proc_starttime = starttime;
	h->heartbeat_monotonic_ns = gw_os_monotonic_ns();
	h->flags |= GWMEM_SHM_FLAG_FORKED;
	__atomic_store_n(&h->state, GWMEM_SHM_STATE_RUNNING, __ATOMIC_RELEASE);
	return 0;

fail_unlink:
	unlink(s->path);
	close(fd);
fail:
	detach_private(s);
	return err;
}
