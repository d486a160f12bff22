/*
 * view.c - validation and consistent reading of a shared-memory segment.
 *
 * Owns: opening a segment file safely (no symlinks, regular files only),
 * checking the layout bounds, the seqlocked snapshot of records and the
 * module map, and reading stack entries.  Leaves grouping and printing to
 * report.c and symbolization to its callers.
 *
 * Every bound is checked on the private header copy in struct gw_view, with
 * overflow-checked arithmetic; the shared bytes are only read at offsets
 * derived from that copy.  The writer may still scribble on the records and
 * stacks while we read them: values can be wrong, never out of bounds.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "os.h"
#include "spin.h"
#include "view.h"

#define SNAPSHOT_RETRIES        500u    /* ~1/4 s of a stuck writer, then busy (backoff) */
#define MISMATCH_RETRIES        3u      /* equal even seqs yet wrong totals: corrupt */
#define TORN_BEFORE_CHUNKS      16u     /* whole copies torn by a writer, then chunks */
#define CHUNK_RECORDS           64u     /* records a chunk: 2 KiB, copied in well under a microsecond */
#define CHUNK_RETRIES           2000u   /* torn copies of one chunk, then busy */
#define CHUNK_RESTARTS          16u     /* times the array may move under a chunked read */

/*
 * Bounds from the configuration limits (max_tracked_allocations <= 1e8,
 * max_stacks <= 1e7, 32 stripes): a geometry beyond them was not written by
 * gwmem, and would make us map or scan more than any real segment holds.
 */
#define MAX_STRIPES             1024u
#define MAX_RECORD_SLOTS        (UINT64_C(1) << 28)     /* all stripes (v1), one region (v2) */
#define MAX_STACK_ENTRIES       (UINT64_C(1) << 24)
#define SNAPSHOT_YIELDS         256u    /* waits before sleeping */

const char *gw_view_strerror(int err)
{
	switch (err) {
	case GW_VIEW_OK: return "success";
	case GW_VIEW_ERR_NOENT: return "no such segment";
	case GW_VIEW_ERR_ACCESS: return "permission denied";
	case GW_VIEW_ERR_VERSION: return "segment layout version mismatch";
	case GW_VIEW_ERR_CORRUPT: return "corrupt segment";
	case GW_VIEW_ERR_BUSY: return "segment busy";
	case GW_VIEW_ERR_NOMEM: return "out of memory";
	default: return "I/O error";
	}
}

/* off + n * elem <= size, without overflow. */
static bool range_ok(uint64_t off, uint64_t n, uint64_t elem, uint64_t size)
{
	uint64_t len, end;

	if (__builtin_mul_overflow(n, elem, &len))
		return false;
	if (__builtin_add_overflow(off, len, &end))
		return false;
	return end <= size;
}

static bool has_nul(const char *s, size_t n)
{
	return memchr(s, 0, n) != NULL;
}

static int fail(struct gw_view *v, int err, const char *why)
{
	v->why = why;
	return err;
}

/*
 * The most records a stripe's region can hold in a segment gwmem wrote with
 * the limits its header records (lib/preload/shm.c, gw_shm_geometry): max
 * * 5/3 / nstripes (5/4 since the arrays are dense), at most the cap's
 * share, rounded up to whole pages (of at most 64 KiB).  A larger region
 * was not written by gwmem, and a forged one would make a reader scan, or
 * hold, up to a region's size for a handful of records.
 */
static uint64_t region_bound(const struct gwmem_shm_header *h)
{
	const uint64_t rsize = sizeof(struct gwmem_shm_record);
	uint64_t page = h->page_size, want = h->config.max_tracked_allocations;
	uint64_t n = h->nstripes, slots, cap;

	if (page < 4096 || page > 65536)
		page = 65536;
	if (want < 16)
		want = 16;
	slots = (want * 5 + 3 * n - 1) / (3 * n);
	cap = h->max_segment_bytes / n / rsize;
	/* 0: not recorded (a snapshot of a layout-1 segment); real segments
	 * have at least GW_SHM_MIN_BYTES */
	if (h->max_segment_bytes && slots > cap)
		slots = cap;
	slots = (slots + page / rsize - 1) / (page / rsize) * (page / rsize);
	return slots > page / rsize ? slots : page / rsize;
}

/*
 * The first offset in [off, end) that may hold data, and in *data_end where
 * that data ends (a hole starts or end): for a file, SEEK_DATA and
 * SEEK_HOLE, so that the holes of a sparse file are skipped, never read
 * (they read as zeroes: no record, no published stack); in memory, all of
 * it.
 */
/*
 * Whether every page of [off, off + len) of the mapped file is in memory:
 * then it is data, and reading it through the mapping allocates nothing.
 * mincore costs one call per 256 pages of the range itself, where
 * SEEK_HOLE from off walks on to the next hole of the whole file (a
 * layout-3 record area is one long run of backed pages).  false when not
 * known: the callers then look for holes with lseek.
 */
static bool all_resident(const struct gw_view *v, uint64_t off, uint64_t len)
{
	const uint64_t page = gw_os_page_size();
	unsigned char vec[256];

	if (!v->mapped || !len)
		return len == 0;
	for (uint64_t at = off / page * page; at < off + len;) {
		uint64_t pages = (off + len - at + page - 1) / page;

		if (pages > sizeof(vec))
			pages = sizeof(vec);
		if (mincore((void *)(v->base + at), (size_t)(pages * page), vec) < 0)
			return false;
		for (uint64_t i = 0; i < pages; i++)
			if (!(vec[i] & 1))
				return false;
		at += pages * page;
	}
	return true;
}

static uint64_t next_data(const struct gw_view *v, uint64_t off, uint64_t end, uint64_t *data_end)
{
	*data_end = end;
	if (v->fd < 0 || off >= end || all_resident(v, off, end - off))
		return off;
	off_t d = lseek(v->fd, (off_t)off, SEEK_DATA);
	if (d < 0)
		return errno == ENXIO ? end : off;   /* ENXIO: only a hole up to the end */
	if ((uint64_t)d >= end)
		return end;
	off_t e = lseek(v->fd, d, SEEK_HOLE);
	if (e >= 0 && (uint64_t)e < end)
		*data_end = (uint64_t)e;
	return (uint64_t)d;
}

/* Checks on the private header copy; the shared bytes are only read for the stack scan. */
static int validate(struct gw_view *v)
{
	const struct gwmem_shm_header *h = &v->hdr;
	uint64_t size = v->size;

	if (size < GWMEM_SHM_HEADER_SIZE || size < sizeof(*h))
		return fail(v, GW_VIEW_ERR_CORRUPT, "file smaller than the segment header");
	if (h->magic != GWMEM_SHM_MAGIC)
		return fail(v, GW_VIEW_ERR_CORRUPT, "bad magic");
	if (h->version < GWMEM_SHM_VERSION_MIN || h->version > GWMEM_SHM_VERSION)
		return fail(v, GW_VIEW_ERR_VERSION, "unknown layout version");
	if (h->header_size != GWMEM_SHM_HEADER_SIZE)
		return fail(v, GW_VIEW_ERR_CORRUPT, "bad header size");
	if (h->segment_size != size)
		return fail(v, GW_VIEW_ERR_CORRUPT, "segment size does not match the file size");
	if (h->state == GWMEM_SHM_STATE_STARTING)
		return fail(v, GW_VIEW_ERR_BUSY, "segment is being initialised");
	if (h->state > GWMEM_SHM_STATE_EXITED)
		return fail(v, GW_VIEW_ERR_CORRUPT, "bad state");
	if (h->pointer_bits != 32 && h->pointer_bits != 64)
		return fail(v, GW_VIEW_ERR_CORRUPT, "bad pointer size");
	if (h->nclasses > GWMEM_SHM_MAX_CLASSES)
		return fail(v, GW_VIEW_ERR_CORRUPT, "too many size classes");
	if (!has_nul(h->cmdline, sizeof(h->cmdline)) || !has_nul(h->exe, sizeof(h->exe)))
		return fail(v, GW_VIEW_ERR_CORRUPT, "unterminated command line or executable path");
	for (unsigned i = 0; i < GWMEM_SHM_TAG_MAX; i++)
		if (!has_nul(h->tag_names[i], sizeof(h->tag_names[i])))
			return fail(v, GW_VIEW_ERR_CORRUPT, "unterminated pool tag name");

	/* module map */
	if (h->modules_count > h->modules_capacity)
		return fail(v, GW_VIEW_ERR_CORRUPT, "module count exceeds capacity");
	if (h->modules_capacity &&
	    (h->modules_offset < GWMEM_SHM_HEADER_SIZE || h->modules_offset % 8 ||
	     !range_ok(h->modules_offset, h->modules_capacity, sizeof(struct gwmem_shm_module), size)))
		return fail(v, GW_VIEW_ERR_CORRUPT, "module map out of bounds");

	/* stack table: gwmem gives it max(16, max_stacks) entries at most */
	if (h->version >= 2 && h->stack_capacity > 16 && h->stack_capacity > h->config.max_stacks)
		return fail(v, GW_VIEW_ERR_CORRUPT, "stack table larger than max_stacks allows");
	if (h->stack_capacity) {
		if (h->version == 1 && !GW_IS_POW2(h->stack_capacity))
			return fail(v, GW_VIEW_ERR_CORRUPT, "stack capacity not a power of two");
		if (h->stack_capacity > MAX_STACK_ENTRIES)
			return fail(v, GW_VIEW_ERR_CORRUPT, "stack capacity beyond any configuration");
		if (h->max_frames == 0 || h->max_frames > GWMEM_SHM_MAX_FRAMES)
			return fail(v, GW_VIEW_ERR_CORRUPT, "bad max_frames");
		if (h->stack_stride % 8 ||
		    h->stack_stride < sizeof(struct gwmem_shm_stack) + 8u * h->max_frames)
			return fail(v, GW_VIEW_ERR_CORRUPT, "bad stack stride");
		if (h->stacks_offset < GWMEM_SHM_HEADER_SIZE || h->stacks_offset % 8 ||
		    !range_ok(h->stacks_offset, h->stack_capacity, h->stack_stride, size))
			return fail(v, GW_VIEW_ERR_CORRUPT, "stack table out of bounds");
	}

	/* allocation table */
	if (h->nstripes) {
		if (!GW_IS_POW2(h->nstripes) || h->nstripes > MAX_STRIPES)
			return fail(v, GW_VIEW_ERR_CORRUPT, "bad stripe count");
		if (h->version == 1 ? !GW_IS_POW2(h->slots_per_stripe)
				    : h->slots_per_stripe == 0)
			return fail(v, GW_VIEW_ERR_CORRUPT, "bad stripe geometry");
		if (h->stripes_offset < GWMEM_SHM_HEADER_SIZE || h->stripes_offset % 8 ||
		    !range_ok(h->stripes_offset, h->nstripes, sizeof(struct gwmem_shm_stripe), size))
			return fail(v, GW_VIEW_ERR_CORRUPT, "stripe heads out of bounds");
		uint64_t nrec;
		/* v2: two regions of slots_per_stripe records per stripe */
		if (__builtin_mul_overflow((uint64_t)h->nstripes * (h->version == 1 ? 1 : 2),
					   (uint64_t)h->slots_per_stripe, &nrec))
			return fail(v, GW_VIEW_ERR_CORRUPT, "record count overflows");
		if ((h->version == 1 ? nrec : h->slots_per_stripe) > MAX_RECORD_SLOTS)
			return fail(v, GW_VIEW_ERR_CORRUPT, "record table beyond any configuration");
		if (h->version >= 2 && h->slots_per_stripe > region_bound(h))
			return fail(v, GW_VIEW_ERR_CORRUPT,
				    "record regions larger than the segment's own limits allow");
		if (h->records_offset < GWMEM_SHM_HEADER_SIZE || h->records_offset % 8 ||
		    !range_ok(h->records_offset, nrec, sizeof(struct gwmem_shm_record), size))
			return fail(v, GW_VIEW_ERR_CORRUPT, "records out of bounds");
	}

	/* published stack entries: depth within max_frames.  v2 appends
	 * entries, so only the ones in use are read (the rest may be holes) */
	uint64_t nstacks = h->stack_capacity;
	if (h->version >= 2 && h->counters.stacks_used < nstacks)
		nstacks = h->counters.stacks_used;
	uint64_t data_end = 0;
	for (uint32_t i = 0; i < nstacks; i++) {
		uint64_t at = h->stacks_offset + (uint64_t)i * h->stack_stride;
		/* entries in a hole are unpublished (hash 0): skipped without
		 * touching the hole, which would give a sparse file memory */
		if (at >= data_end) {
			uint64_t end = h->stacks_offset + nstacks * h->stack_stride;
			uint64_t data = next_data(v, at, end, &data_end);
			if (data >= end)
				break;
			if (data > at) {
				/* the first entry that starts in the data */
				i += (uint32_t)((data - at + h->stack_stride - 1) / h->stack_stride);
				if (i >= nstacks)
					break;
				at = h->stacks_offset + (uint64_t)i * h->stack_stride;
			}
		}
		const struct gwmem_shm_stack *e = (const void *)(v->base + at);
		if (__atomic_load_n(&e->hash, __ATOMIC_ACQUIRE) == 0)
			continue;
		if (__atomic_load_n(&e->depth, __ATOMIC_RELAXED) > h->max_frames)
			return fail(v, GW_VIEW_ERR_CORRUPT, "stack depth exceeds max_frames");
	}
	v->why = NULL;
	return GW_VIEW_OK;
}

static void copy_header(struct gw_view *v)
{
	memcpy(&v->hdr, v->base, sizeof(v->hdr));
}

int gw_view_from_memory(struct gw_view *v, const void *base, size_t size)
{
	memset(v, 0, sizeof(*v));
	v->fd = -1;
	v->base = base;
	v->size = size;
	if (!base || size < GWMEM_SHM_HEADER_SIZE || size < sizeof(v->hdr))
		return fail(v, GW_VIEW_ERR_CORRUPT, "segment smaller than its header");
	copy_header(v);
	return validate(v);
}

int gw_view_open(struct gw_view *v, const char *path)
{
	struct stat st;
	int err;
	int fd;

	memset(v, 0, sizeof(*v));
	v->fd = -1;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		switch (errno) {
		case ENOENT:
		case ENOTDIR:
			return fail(v, GW_VIEW_ERR_NOENT, "no such file");
		case EACCES:
		case EPERM:
			return fail(v, GW_VIEW_ERR_ACCESS, "cannot open the file");
		case ELOOP:
			return fail(v, GW_VIEW_ERR_CORRUPT, "is a symbolic link");
		default:
			return fail(v, GW_VIEW_ERR_IO, "cannot open the file");
		}
	}
	if (fstat(fd, &st) < 0) {
		err = fail(v, GW_VIEW_ERR_IO, "fstat failed");
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		err = fail(v, GW_VIEW_ERR_CORRUPT, "not a regular file");
		goto out;
	}
	if ((uint64_t)st.st_size < GWMEM_SHM_HEADER_SIZE || (uint64_t)st.st_size > SIZE_MAX / 2) {
		err = fail(v, GW_VIEW_ERR_CORRUPT, "file too small (truncated segment)");
		goto out;
	}
	v->size = (size_t)st.st_size;
	void *p = gw_os_map_shared(fd, v->size, false, NULL);
	if (!p) {
		err = fail(v, errno == ENOMEM ? GW_VIEW_ERR_NOMEM : GW_VIEW_ERR_IO, "cannot map the segment");
		goto out;
	}
	v->base = p;
	v->mapped = true;
	/* kept for the holes (next_data) and the records (read_at) */
	v->fd = fd;
	copy_header(v);
	err = validate(v);
	if (err) {
		const char *why = v->why;
		gw_view_close(v);
		v->why = why;
		return err;
	}
	return GW_VIEW_OK;
out:
	close(fd);
	return err;
}

void gw_view_close(struct gw_view *v)
{
	if (v->mapped && v->base)
		gw_os_unmap((void *)v->base, v->size);
	if (v->fd >= 0)
		close(v->fd);
	v->fd = -1;
	v->base = NULL;
	v->size = 0;
	v->mapped = false;
}

int gw_view_refresh(struct gw_view *v)
{
	struct gwmem_shm_header old = v->hdr;
	const struct gwmem_shm_header *h = &v->hdr;

	copy_header(v);
	if (h->magic != old.magic || h->version != old.version || h->segment_size != old.segment_size ||
	    h->modules_offset != old.modules_offset || h->modules_capacity != old.modules_capacity ||
	    h->stacks_offset != old.stacks_offset || h->stack_capacity != old.stack_capacity ||
	    h->stack_stride != old.stack_stride || h->max_frames != old.max_frames ||
	    h->stripes_offset != old.stripes_offset || h->records_offset != old.records_offset ||
	    h->nstripes != old.nstripes || h->slots_per_stripe != old.slots_per_stripe) {
		v->hdr = old;
		return fail(v, GW_VIEW_ERR_CORRUPT, "segment geometry changed");
	}
	if (h->modules_count > h->modules_capacity || h->nclasses > GWMEM_SHM_MAX_CLASSES ||
	    h->state > GWMEM_SHM_STATE_EXITED ||
	    !has_nul(h->cmdline, sizeof(h->cmdline)) || !has_nul(h->exe, sizeof(h->exe))) {
		v->hdr = old;
		return fail(v, GW_VIEW_ERR_CORRUPT, "header fields out of range");
	}
	for (unsigned i = 0; i < GWMEM_SHM_TAG_MAX; i++)
		if (!has_nul(h->tag_names[i], sizeof(h->tag_names[i]))) {
			v->hdr = old;
			return fail(v, GW_VIEW_ERR_CORRUPT, "unterminated pool tag name");
		}
	return GW_VIEW_OK;
}

/* --- records ------------------------------------------------------------ */

/*
 * Copy len bytes at off (within the validated mapping) into dst.  Through
 * the mapping when the range has no hole (one lseek): that is fast enough
 * to beat a busy writer to the seqlock.  A hole (a page the writer gave
 * back under a stale head, or a sparse forged file) is read with pread,
 * which returns zeroes without taking memory, where touching it through
 * the mapping would allocate a tmpfs page, or fault if it is full.
 * Returns false when the file has become shorter.
 */
static bool read_at(const struct gw_view *v, uint64_t off, void *dst, size_t len)
{
	char *d = dst;

	if (!len)
		return true;    /* off may be anything then (an empty stripe's head) */
	if (v->fd < 0 || all_resident(v, off, len)) {
		memcpy(dst, v->base + off, len);
		return true;
	}
	off_t hole = lseek(v->fd, (off_t)off, SEEK_HOLE);
	if (hole < 0 || (uint64_t)hole >= off + len) {
		memcpy(dst, v->base + off, len);
		return true;
	}
	while (len) {
		ssize_t n = pread(v->fd, d, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		d += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return true;
}

/* Where stripe s's records are, from a head read under its seqlock: v1 a
 * fixed array, v2 the array the head names, which must be one of the
 * stripe's two regions. */
static bool stripe_array(const struct gw_view *v, uint32_t s, const struct gwmem_shm_stripe *sh,
			 uint64_t *off, uint32_t *slots)
{
	const struct gwmem_shm_header *h = &v->hdr;
	const uint64_t region = (uint64_t)h->slots_per_stripe * sizeof(struct gwmem_shm_record);

	if (h->version == 1) {
		*off = h->records_offset + (uint64_t)s * region;
		*slots = h->slots_per_stripe;
		return true;
	}
	*slots = __atomic_load_n(&sh->slots, __ATOMIC_RELAXED);
	*off = __atomic_load_n(&sh->offset, __ATOMIC_RELAXED);
	if (*slots == 0)
		return true;
	if (*slots > h->slots_per_stripe)
		return false;
	if (h->version == 2)
		return *off == h->records_offset + (uint64_t)s * 2 * region ||
		       *off == h->records_offset + ((uint64_t)s * 2 + 1) * region;
	/* v3: anywhere in the record area, whole records */
	const uint64_t area = (uint64_t)h->nstripes * 2 * region;
	return *off >= h->records_offset && (*off - h->records_offset) % sizeof(struct gwmem_shm_record) == 0 &&
	       *off - h->records_offset <= area &&
	       (uint64_t)*slots * sizeof(struct gwmem_shm_record) <= area - (*off - h->records_offset);
}

/* A stuck writer: spin, then yield (spin.h), then sleep, so that a reader
 * waiting on a stopped target does not take a core for the whole wait. */
static void backoff(struct gw_backoff *b, unsigned attempt)
{
	if (attempt < SNAPSHOT_YIELDS) {
		gw_backoff_wait(b);
		return;
	}
	/* then sleeps of 0.1 ms doubling every 32 waits up to 2 ms: a writer
	 * the scheduler took off the CPU inside its section (a loaded
	 * machine) gets about a quarter of a second before "busy" */
	unsigned step = (attempt - SNAPSHOT_YIELDS) / 32;
	long ns = step >= 5 ? 2000000L : 100000L << step;
	struct timespec ts = { 0, ns };
	nanosleep(&ts, NULL);
}

/* Records read at a time: the bounce buffer is 64 KiB. */
#define BOUNCE_RECORDS 2048u

/*
 * The live records (ptr != 0) of the array of slots records at off, copied
 * into out[0..cap) in order; returns how many live records there are (cap
 * + 1 when there are more than cap: the count is wrong, the rest is not
 * read), or -1 when the file has become shorter.
 * The array is read bounce-buffer by bounce-buffer and its holes are
 * skipped (next_data), so what a reader holds and reads is bounded by the
 * live count it was told and by the data the file really has, never by the
 * size a (forged) head claims.
 */
static int64_t gather(const struct gw_view *v, uint64_t off, uint32_t slots, struct gwmem_shm_record *bounce,
		      struct gwmem_shm_record *out, uint32_t cap)
{
	const uint64_t rsize = sizeof(struct gwmem_shm_record);
	const uint64_t end = off + (uint64_t)slots * rsize;
	int64_t n = 0;

	for (uint64_t at = off; at < end;) {
		uint64_t data_end, data = next_data(v, at, end, &data_end);

		if (data >= end)
			break;
		/* whole records: a record starting in the hole is empty */
		at = off + (data - off + rsize - 1) / rsize * rsize;
		while (at < data_end && at < end) {
			uint64_t k = (data_end - at + rsize - 1) / rsize;
			if (k > BOUNCE_RECORDS)
				k = BOUNCE_RECORDS;
			if (k > (end - at) / rsize)
				k = (end - at) / rsize;
			if (!read_at(v, at, bounce, (size_t)(k * rsize)))
				return -1;
			for (uint64_t i = 0; i < k; i++) {
				if (!bounce[i].ptr)
					continue;
				if (n == (int64_t)cap)
					return n + 1;   /* more than the count: no need to go on */
				out[n++] = bounce[i];
			}
			at += k * rsize;
		}
	}
	return n;
}

/* The live records of recs[0..slots) moved to its front, in order; how
 * many there are (cap + 1 as soon as there are more than cap). */
static int64_t compact(struct gwmem_shm_record *recs, uint32_t slots, uint32_t cap)
{
	int64_t n = 0;

	for (uint32_t i = 0; i < slots; i++) {
		if (!recs[i].ptr)
			continue;
		if (n == (int64_t)cap)
			return n + 1;
		recs[n++] = recs[i];
	}
	return n;
}

/* Grow the scratch to hold want records, keeping what it holds. */
static bool scratch_grow(struct gwmem_shm_record **scratch, size_t *size, uint64_t want)
{
	size_t need = GW_ALIGN_UP(((size_t)want + 1) * sizeof(**scratch), gw_os_page_size());

	if (need <= *size)
		return true;
	if (need < 2 * *size)
		need = 2 * *size;
	struct gwmem_shm_record *p = gw_os_map(need);
	if (!p)
		return false;
	if (*scratch) {
		memcpy(p, *scratch, *size);
		gw_os_unmap(*scratch, *size);
	}
	*scratch = p;
	*size = need;
	return true;
}

/*
 * A stripe that a busy writer changes faster than a reader can copy it
 * whole (a large stripe of a churning process, or a reader slowed down by
 * a loaded machine): read it a chunk at a time, each chunk between two
 * equal even seqs of the same array.  A record stays where it is from its
 * insert to its remove (lib/preload/table.h), so every record seen was
 * live at some moment of the read: the result is a scan, not one instant,
 * and the stripe's totals are those of the records seen.  The scratch
 * grows with the live records found, never with what the head claims.
 * Returns the number of records in *scratch and their sizes' sum in
 * *bytes, or a GW_VIEW_ERR_* (BUSY: no chunk could be read, or the array
 * kept moving).
 */
static int64_t gather_chunked(const struct gw_view *v, uint32_t s, const struct gwmem_shm_stripe *sh,
			      struct gwmem_shm_record *bounce, struct gwmem_shm_record **scratch,
			      size_t *scratch_size, uint64_t *bytes)
{
	const uint64_t rsize = sizeof(struct gwmem_shm_record);

	for (unsigned restart = 0; restart < CHUNK_RESTARTS; restart++) {
		uint64_t off0 = 0, sum = 0;
		uint32_t slots0 = 0;
		int64_t n = 0;
		bool moved = false;

		for (uint32_t at = 0, first = 1; first || at < slots0; first = 0) {
			struct gw_backoff b = GW_BACKOFF_INIT;
			uint32_t k = 0;
			unsigned t = 0, odd = 0;

			for (;;) {
				uint64_t off;
				uint32_t slots;

				uint32_t s1 = __atomic_load_n(&sh->seq, __ATOMIC_ACQUIRE);
				if (s1 & 1u) {
					/* a writer inside its section: wait for it as a
					 * whole copy would, without using up the chunk's tries */
					if (++odd >= SNAPSHOT_RETRIES)
						return GW_VIEW_ERR_BUSY;
					backoff(&b, odd);
					continue;
				}
				bool placed = stripe_array(v, s, sh, &off, &slots);
				if (first) {
					off0 = off;
					slots0 = slots;
				}
				moved = placed && (off != off0 || slots != slots0);
				k = slots0 - at < CHUNK_RECORDS ? slots0 - at : CHUNK_RECORDS;
				bool ok = placed && !moved && (!k || read_at(v, off0 + (uint64_t)at * rsize, bounce,
									      (size_t)k * rsize));
				__atomic_thread_fence(__ATOMIC_ACQUIRE);
				if (__atomic_load_n(&sh->seq, __ATOMIC_RELAXED) != s1) {
					moved = false;
					if (++t == CHUNK_RETRIES)
						break;
					continue;
				}
				if (!placed)
					return GW_VIEW_ERR_CORRUPT;
				if (!moved && !ok)
					return GW_VIEW_ERR_IO;
				break;
			}
			if (t == CHUNK_RETRIES)
				return GW_VIEW_ERR_BUSY;
			if (moved)
				break;
			for (uint32_t i = 0; i < k; i++) {
				if (!bounce[i].ptr)
					continue;
				if (!scratch_grow(scratch, scratch_size, (uint64_t)n + 1))
					return GW_VIEW_ERR_NOMEM;
				if (__builtin_add_overflow(sum, bounce[i].size, &sum))
					return GW_VIEW_ERR_CORRUPT;
				(*scratch)[n++] = bounce[i];
			}
			at += k;
		}
		if (moved)
			continue;
		*bytes = sum;
		return n;
	}
	return GW_VIEW_ERR_BUSY;
}

int gw_view_snapshot(const struct gw_view *v, gw_view_stripe_fn fn, void *ctx,
		     struct gw_view_snap_stats *st)
{
	const struct gwmem_shm_header *h = &v->hdr;
	struct gw_view_snap_stats local = { 0 };
	const size_t bounce_size = BOUNCE_RECORDS * sizeof(struct gwmem_shm_record);
	struct gwmem_shm_record *bounce, *scratch;
	size_t scratch_size;
	int err = GW_VIEW_OK;

	if (!st)
		st = &local;
	memset(st, 0, sizeof(*st));
	if (h->nstripes == 0)
		return GW_VIEW_OK;
	bounce = gw_os_map(bounce_size);
	if (!bounce)
		return GW_VIEW_ERR_NOMEM;
	/* address space for the largest array the geometry allows (bounded by
	 * the recorded limits, see region_bound); its pages are touched only
	 * by what is copied in */
	scratch_size = (size_t)h->slots_per_stripe * sizeof(struct gwmem_shm_record);
	scratch = gw_os_map(scratch_size);
	if (!scratch) {
		gw_os_unmap(bounce, bounce_size);
		return GW_VIEW_ERR_NOMEM;
	}

	const struct gwmem_shm_stripe *stripes = (const void *)(v->base + h->stripes_offset);

	for (uint32_t s = 0; s < h->nstripes && !err; s++) {
		const struct gwmem_shm_stripe *sh = &stripes[s];
		bool done = false, mismatch = false;
		unsigned mismatches = 0, torn = 0;
		uint32_t count = 0, slots = 0;
		uint64_t bytes = 0, off = 0;
		struct gw_backoff b = GW_BACKOFF_INIT;

		for (unsigned attempt = 0; attempt < SNAPSHOT_RETRIES && !done; attempt++) {
			if (attempt) {
				st->retries++;
				backoff(&b, attempt);
			}
			uint32_t s1 = __atomic_load_n(&sh->seq, __ATOMIC_ACQUIRE);
			if (s1 & 1u)
				continue;
			count = __atomic_load_n(&sh->count, __ATOMIC_RELAXED);
			bytes = __atomic_load_n(&sh->bytes, __ATOMIC_RELAXED);
			bool placed = stripe_array(v, s, sh, &off, &slots);
			const uint32_t claimed = count;
			/* no more live records than slots: the scratch is
			 * bounded by the region, itself bounded by the limits */
			if (placed && count > slots)
				count = slots;
			/*
			 * An array without holes (what the file really holds),
			 * or one not much larger than its live count, is copied
			 * whole (read_at: one memcpy or one pread) and sorted out
			 * after the copy, so the window a busy writer must leave
			 * us stays one copy, as it always was.  Only a sparse
			 * array far larger than its count (a forged file) is
			 * gathered piece by piece, holes skipped, keeping at most
			 * count records.
			 */
			bool gathered = false;
			if (placed && v->fd >= 0 && slots > 4 * (uint64_t)count + BOUNCE_RECORDS) {
				off_t hole = lseek(v->fd, (off_t)off, SEEK_HOLE);
				gathered = hole < 0 || (uint64_t)hole < off + (uint64_t)slots * sizeof(*scratch);
			}
			int64_t live = 0;
			bool copied = true;
			if (placed && gathered)
				live = gather(v, off, slots, bounce, scratch, count);
			else if (placed)
				copied = read_at(v, off, scratch, (size_t)slots * sizeof(*scratch));
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			uint32_t s2 = __atomic_load_n(&sh->seq, __ATOMIC_RELAXED);
			if (s1 != s2) {
				if (++torn >= TORN_BEFORE_CHUNKS && h->version >= 3)
					break;
				continue;
			}
			if (!placed) {
				err = GW_VIEW_ERR_CORRUPT;
				break;
			}
			if (!copied)
				live = -1;
			else if (!gathered)
				live = compact(scratch, slots, count);
			if (live < 0) {
				err = GW_VIEW_ERR_IO;
				break;
			}
			if (live != (int64_t)claimed) {
				mismatch = true;
				if (++mismatches >= MISMATCH_RETRIES)
					break;
				continue;
			}

			uint64_t sum = 0;
			bool bad_record = false;
			for (uint32_t i = 0; i < count; i++) {
				/* no allocation exceeds PTRDIFF_MAX, and sums must not
				 * wrap: a forged set of sizes could otherwise match the
				 * stripe's total modulo 2^64 and make every total a lie */
				if (scratch[i].size > (uint64_t)INT64_MAX ||
				    __builtin_add_overflow(sum, scratch[i].size, &sum))
					bad_record = true;
				if (scratch[i].stack_id > h->stack_capacity)
					bad_record = true;
			}
			if (sum != bytes) {
				mismatch = true;
				if (++mismatches >= MISMATCH_RETRIES)
					break;
				continue;
			}
			if (bad_record) {
				err = GW_VIEW_ERR_CORRUPT;
				break;
			}
			mismatch = false;
			done = true;
		}
		if (!err && !done && torn >= TORN_BEFORE_CHUNKS && h->version >= 3) {
			/* the writer is faster than a whole copy: read it in chunks
			 * (layout 3: records do not move; before, a remove
			 * shifted them) */
			int64_t n = gather_chunked(v, s, sh, bounce, &scratch, &scratch_size, &bytes);

			if (n < 0) {
				err = (int)n;
				break;
			}
			count = (uint32_t)n;
			done = true;
			mismatch = false;
			st->chunked++;
			for (uint32_t i = 0; i < count && !err; i++)
				if (scratch[i].size > (uint64_t)INT64_MAX || scratch[i].stack_id > h->stack_capacity)
					err = GW_VIEW_ERR_CORRUPT;
		}
		if (err)
			break;
		if (!done) {
			err = mismatch ? GW_VIEW_ERR_CORRUPT : GW_VIEW_ERR_BUSY;
			break;
		}
		st->records += count;
		if (__builtin_add_overflow(st->bytes, bytes, &st->bytes)) {
			err = GW_VIEW_ERR_CORRUPT;    /* totals over all stripes wrap */
			break;
		}
		if (fn) {
			/* the live records only, packed: nslots == count */
			int r = fn(ctx, s, scratch, count, count, bytes);
			if (r) {
				err = r;
				break;
			}
		}
	}
	gw_os_unmap(scratch, scratch_size);
	gw_os_unmap(bounce, bounce_size);
	return err;
}

/* --- stacks and modules ------------------------------------------------- */

int gw_view_stack(const struct gw_view *v, uint32_t id, uint64_t *frames, unsigned cap)
{
	const struct gwmem_shm_header *h = &v->hdr;

	if (id == 0)
		return 0;
	if (id > h->stack_capacity)
		return GW_VIEW_ERR_CORRUPT;
	/* v2: entries past the live count may be holes */
	if (h->version >= 2 &&
	    id > __atomic_load_n(&gw_view_live_header(v)->counters.stacks_used, __ATOMIC_ACQUIRE))
		return 0;
	const struct gwmem_shm_stack *e = (const void *)(v->base + h->stacks_offset +
							  (uint64_t)(id - 1) * h->stack_stride);
	if (__atomic_load_n(&e->hash, __ATOMIC_ACQUIRE) == 0)
		return 0;
	uint32_t depth = __atomic_load_n(&e->depth, __ATOMIC_RELAXED);
	if (depth > h->max_frames)
		return GW_VIEW_ERR_CORRUPT;
	if (depth > cap)
		depth = cap;
	for (uint32_t i = 0; i < depth; i++)
		frames[i] = __atomic_load_n(&e->frames[i], __ATOMIC_RELAXED);
	return (int)depth;
}

static const struct gwmem_shm_module *module_at(const struct gw_view *v, uint32_t i)
{
	return (const void *)(v->base + v->hdr.modules_offset + (uint64_t)i * sizeof(struct gwmem_shm_module));
}

/* Seqlocked read of the live module count; capped by the validated capacity. */
static bool modules_begin(const struct gw_view *v, uint32_t *seq, uint32_t *count)
{
	const struct gwmem_shm_header *live = gw_view_live_header(v);

	*seq = __atomic_load_n(&live->modules_seq, __ATOMIC_ACQUIRE);
	if (*seq & 1u)
		return false;
	*count = __atomic_load_n(&live->modules_count, __ATOMIC_RELAXED);
	if (*count > v->hdr.modules_capacity)
		*count = v->hdr.modules_capacity;
	return true;
}

static bool modules_end(const struct gw_view *v, uint32_t seq)
{
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(&gw_view_live_header(v)->modules_seq, __ATOMIC_RELAXED) == seq;
}

int gw_view_modules(const struct gw_view *v, struct gwmem_shm_module *out, unsigned cap)
{
	struct gw_backoff b = GW_BACKOFF_INIT;

	for (unsigned attempt = 0; attempt < SNAPSHOT_RETRIES; attempt++) {
		uint32_t seq, count;

		if (attempt)
			backoff(&b, attempt);
		if (!modules_begin(v, &seq, &count))
			continue;
		if (count > cap)
			count = cap;
		for (uint32_t i = 0; i < count; i++) {
			memcpy(&out[i], module_at(v, i), sizeof(out[i]));
			out[i].path[GWMEM_SHM_PATH_MAX - 1] = '\0';
			if (out[i].build_id_len > sizeof(out[i].build_id))
				out[i].build_id_len = 0;
		}
		if (modules_end(v, seq))
			return (int)count;
	}
	return GW_VIEW_ERR_BUSY;
}

bool gw_view_module_find(const struct gw_view *v, uint64_t addr, struct gwmem_shm_module *out)
{
	struct gw_backoff b = GW_BACKOFF_INIT;

	for (unsigned attempt = 0; attempt < SNAPSHOT_RETRIES; attempt++) {
		uint32_t seq, count;
		bool found = false;

		if (attempt)
			backoff(&b, attempt);
		if (!modules_begin(v, &seq, &count))
			continue;
		for (uint32_t i = 0; i < count && !found; i++) {
			const struct gwmem_shm_module *m = module_at(v, i);
			uint64_t start = __atomic_load_n(&m->start, __ATOMIC_RELAXED);
			uint64_t end = __atomic_load_n(&m->end, __ATOMIC_RELAXED);
			if (addr >= start && addr < end) {
				memcpy(out, m, sizeof(*out));
				out->path[GWMEM_SHM_PATH_MAX - 1] = '\0';
				if (out->build_id_len > sizeof(out->build_id))
					out->build_id_len = 0;
				found = true;
			}
		}
		if (modules_end(v, seq))
			return found;
	}
	return false;
}

/* --- misc --------------------------------------------------------------- */

uint64_t gw_view_now_ds(const struct gw_view *v)
{
	const struct gwmem_shm_header *h = &v->hdr;
	uint64_t now;

	if (h->flags & GW_VIEW_FLAG_SNAPSHOT) {
		now = h->heartbeat_monotonic_ns;
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	}
	if (now < h->start_monotonic_ns)
		return 0;
	return (now - h->start_monotonic_ns) / 100000000u;
}

void gw_view_command(const struct gw_view *v, char *dst, size_t cap)
{
	const char *src = v->hdr.cmdline;
	size_t n = sizeof(v->hdr.cmdline);
	size_t end = 0, o = 0;

	if (!cap)
		return;
	/* the last non-NUL byte ends the command; NULs before it separate argv */
	for (size_t i = 0; i < n; i++)
		if (src[i])
			end = i + 1;
	for (size_t i = 0; i < end && o + 1 < cap; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[o++] = c ? (char)c : ' ';
	}
	dst[o] = '\0';
}
