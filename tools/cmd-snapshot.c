/*
 * cmd-snapshot.c - `gwmem snapshot PID -o FILE`: a consistent copy of a
 * segment, readable by every other subcommand.
 *
 * The file has the segment layout (the current version, whatever the
 * source's), made compact: the header (flag GW_VIEW_FLAG_SNAPSHOT set,
 * heartbeat_monotonic_ns = the time of the snapshot, so ages stay those at
 * snapshot time), stripe heads with the verified totals and even sequence
 * numbers, the module map, the stack table cut to the stacks in use
 * (copied after the records, so every stack a record names is in it), and
 * each stripe's records as copied under its seqlock, in the first of the
 * stripe's regions, which are as large as the largest array copied.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fmt.h"
#include "shared.h"

static const char help[] =
"NAME\n"
"    gwmem snapshot - save a consistent copy of a process's segment\n"
"\n"
"SYNOPSIS\n"
"    gwmem snapshot PID|FILE -o OUTPUT [--json] [--shm-dir DIR]\n"
"\n"
"DESCRIPTION\n"
"    Copies the live allocation table (stripe by stripe, each consistent),\n"
"    the stack table, the module map and the statistics of PID into OUTPUT\n"
"    (created mode 0600; an existing regular file is replaced, a symbolic\n"
"    link is refused).  The process is not stopped.  A snapshot is read by\n"
"    every other command in place of a PID: `gwmem leaks OUTPUT`,\n"
"    `gwmem diff OLD NEW`, `gwmem stats OUTPUT`.  Ages in a snapshot are those\n"
"    at the time it was taken.\n"
"\n"
"OPTIONS\n"
"    -o, --output FILE  where to write (required)\n"
"    --json             print {\"path\", \"pid\", \"live_count\", \"live_bytes\", \"size\"}\n"
"    --shm-dir DIR      segment directory\n"
"    -h, --help         show this help\n"
"\n"
"EXIT STATUS\n"
"    0 ok, 1 usage error, 2 no such process or segment, 3 permission denied,\n"
"    4 segment version mismatch, 5 corrupt segment, 6 segment busy, 7 other\n"
"    error (cannot write OUTPUT).\n"
"\n"
"EXAMPLES\n"
"    gwmem snapshot 1234 -o /var/tmp/before.snap\n"
"    gwmem snapshot $(pidof redis-server) -o redis-$(date +%s).snap\n";

/* Each stripe's records as copied, until the output's geometry is known. */
struct copy_ctx {
	struct gwmem_shm_record **recs;
	uint32_t *slots, *count;
	uint64_t *bytes;
	uint32_t max_slots;
	bool nomem;
};

static int copy_stripe(void *ctx, uint32_t stripe, const struct gwmem_shm_record *slots,
		       uint32_t nslots, uint32_t count, uint64_t bytes)
{
	struct copy_ctx *c = ctx;

	c->recs[stripe] = nslots ? malloc((size_t)nslots * sizeof(*slots)) : NULL;
	if (nslots && !c->recs[stripe]) {
		c->nomem = true;
		return GW_VIEW_ERR_NOMEM;
	}
	if (nslots)
		memcpy(c->recs[stripe], slots, (size_t)nslots * sizeof(*slots));
	c->slots[stripe] = nslots;
	c->count[stripe] = count;
	c->bytes[stripe] = bytes;
	if (nslots > c->max_slots)
		c->max_slots = nslots;
	return 0;
}

static uint64_t align_to(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/*
 * Write to a new file next to 'path' (O_EXCL|O_NOFOLLOW, mode 0600), then
 * rename it over 'path': a planted symlink is replaced, never followed, and
 * a reader never sees half a snapshot.
 */
static int write_file(const char *path, const void *buf, size_t len)
{
	char tmp[PATH_MAX];
	int fd, err;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	err = fchmod(fd, 0600) < 0 ? -errno : 0;
	if (!err)
		err = gw_write_all(fd, buf, len);
	if (!err && fsync(fd) < 0 && errno != EINVAL)
		err = -errno;
	if (close(fd) < 0 && !err)
		err = -errno;
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	if (err)
		unlink(tmp);
	return err;
}

struct snapshot_args {
	struct common_opts co;
	const char *output;
	const char *target;
};

static int snapshot_option(const struct cmd *c, void *args, int ch, const char *arg)
{
	struct snapshot_args *a = args;

	(void)c;
	if (ch == 'o')
		a->output = arg;
	return 0;
}

static int snapshot_parse(int argc, char **argv, struct snapshot_args *a)
{
	static const struct option own[] = {
		{ "output", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	int operand, rc = parse_options(&cmd_snapshot, argc, argv, COMMON_SHM_DIR | COMMON_JSON, own, "o:",
					snapshot_option, a, &a->co, &operand);
	if (rc != PARSE_OK)
		return rc;
	if (argc - operand != 1)
		return usage_error(&cmd_snapshot, operand >= argc ? "missing PID" : "too many arguments");
	if (!a->output)
		return usage_error(&cmd_snapshot, "missing -o OUTPUT");
	a->target = argv[operand];
	return PARSE_OK;
}

/*
 * The snapshot image, compact: header, stripe heads, module map, the stacks
 * in use, each stripe's records as copied.  Checked to read back.  Returns
 * 0 (*bufp, *sizep set) or an exit status.
 */
static int snapshot_collect(const struct target *t, unsigned char **bufp, size_t *sizep,
			    struct gw_view_snap_stats *st)
{
	const struct gw_view *v = &t->view;
	const struct gwmem_shm_header *h = &v->hdr;
	unsigned char *buf = NULL;
	size_t size = 0;
	int rc = 0;
	uint32_t ns = h->nstripes;
	struct copy_ctx ctx = { 0 };

	ctx.recs = calloc(ns + 1, sizeof(*ctx.recs));
	ctx.slots = calloc(ns + 1, sizeof(*ctx.slots));
	ctx.count = calloc(ns + 1, sizeof(*ctx.count));
	ctx.bytes = calloc(ns + 1, sizeof(*ctx.bytes));
	if (!ctx.recs || !ctx.slots || !ctx.count || !ctx.bytes) {
		fprintf(stderr, "gwmem snapshot: out of memory\n");
		rc = GWMEM_EXIT_ERROR;
		goto out;
	}
	int err = gw_view_snapshot(v, copy_stripe, &ctx, st);
	if (err) {
		rc = ctx.nomem ? GWMEM_EXIT_ERROR : view_fail("snapshot", t->path, err, NULL);
		if (ctx.nomem)
			fprintf(stderr, "gwmem snapshot: out of memory\n");
		goto out;
	}

	/* the output's geometry: what was copied, nothing more */
	uint64_t stacks = h->stack_capacity;
	if (h->version >= 2 && gw_view_live_header(v)->counters.stacks_used < stacks)
		stacks = gw_view_live_header(v)->counters.stacks_used;
	uint64_t off = GWMEM_SHM_HEADER_SIZE;
	const uint64_t stripes_off = off;
	off = align_to(off + (uint64_t)ns * sizeof(struct gwmem_shm_stripe), 64);
	const uint64_t modules_off = off;
	off = align_to(off + (uint64_t)h->modules_capacity * sizeof(struct gwmem_shm_module), 64);
	const uint64_t stacks_off = off;
	off = align_to(off + stacks * h->stack_stride, 64);
	const uint64_t records_off = off;
	const uint32_t region = ctx.max_slots ? ctx.max_slots : (ns ? 1 : 0);
	off += (uint64_t)ns * 2 * region * sizeof(struct gwmem_shm_record);
	size = (size_t)align_to(off, 4096);
	buf = calloc(1, size);
	if (!buf) {
		fprintf(stderr, "gwmem snapshot: out of memory (%zu bytes)\n", size);
		rc = GWMEM_EXIT_ERROR;
		goto out;
	}
	struct gwmem_shm_header *nh = (void *)buf;
	memcpy(buf, h, sizeof(*h));
	nh->version = GWMEM_SHM_VERSION;
	nh->segment_size = size;
	nh->stripes_offset = ns ? stripes_off : 0;
	nh->modules_offset = modules_off;
	nh->stacks_offset = stacks ? stacks_off : 0;
	nh->stack_capacity = (uint32_t)stacks;
	nh->records_offset = ns ? records_off : 0;
	nh->slots_per_stripe = region;
	nh->counters.stacks_used = stacks;
	nh->allocated_bytes = size;

	/* records and stripe heads */
	const struct gwmem_shm_stripe *live_sh = (const void *)(v->base + h->stripes_offset);
	struct gwmem_shm_stripe *sh = (void *)(buf + stripes_off);
	for (uint32_t i = 0; i < ns; i++) {
		uint64_t at = records_off + (uint64_t)i * 2 * region * sizeof(struct gwmem_shm_record);

		memcpy(&sh[i], &live_sh[i], sizeof(sh[i]));
		sh[i].seq = 0;
		sh[i].lock = 0;
		sh[i].count = ctx.count[i];
		sh[i].bytes = ctx.bytes[i];
		sh[i].slots = ctx.slots[i];
		sh[i].offset = at;
		if (ctx.slots[i])
			memcpy(buf + at, ctx.recs[i], (size_t)ctx.slots[i] * sizeof(struct gwmem_shm_record));
	}

	/* stacks after the records: every stack a copied record names was published before it */
	for (uint32_t i = 0; i < stacks; i++) {
		struct gwmem_shm_stack *dst = (void *)(buf + stacks_off + (uint64_t)i * h->stack_stride);
		uint64_t frames[GWMEM_SHM_MAX_FRAMES];
		int depth = gw_view_stack(v, i + 1, frames, GWMEM_SHM_MAX_FRAMES);
		if (depth <= 0)
			continue;
		memcpy(dst->frames, frames, (size_t)depth * 8);
		dst->depth = (uint32_t)depth;
		dst->hash = ((const struct gwmem_shm_stack *)(const void *)(v->base + h->stacks_offset +
								     (uint64_t)i * h->stack_stride))->hash;
		if (!dst->hash)
			dst->hash = 1;
	}

	/* module map */
	if (h->modules_capacity) {
		int n = gw_view_modules(v, (void *)(buf + modules_off), h->modules_capacity);
		nh->modules_count = n > 0 ? (uint32_t)n : 0;
	}
	nh->modules_seq = 0;

	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (!(h->flags & GW_VIEW_FLAG_SNAPSHOT))
		nh->heartbeat_monotonic_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	nh->flags |= GW_VIEW_FLAG_SNAPSHOT;
	if (nh->state == GWMEM_SHM_STATE_STARTING)
		nh->state = GWMEM_SHM_STATE_RUNNING;

	/* what we write must read back */
	struct gw_view check;
	err = gw_view_from_memory(&check, buf, size);
	if (!err)
		err = gw_view_snapshot(&check, NULL, NULL, NULL);
	if (err) {
		rc = view_fail("snapshot", t->path, err, &check);
		goto out;
	}
	*bufp = buf;
	*sizep = size;
	buf = NULL;
out:
	free(buf);
	for (uint32_t i = 0; ctx.recs && i < ns; i++)
		free(ctx.recs[i]);
	free(ctx.recs);
	free(ctx.slots);
	free(ctx.count);
	free(ctx.bytes);
	return rc;
}

static void snapshot_print(const struct snapshot_args *a, const struct target *t,
			   const struct gw_view_snap_stats *st, size_t size)
{
	const struct gwmem_shm_header *h = &t->view.hdr;

	if (a->co.json) {
		printf("{\"path\": ");
		json_string(stdout, a->output);
		printf(", \"pid\": %u, \"live_count\": %llu, \"live_bytes\": %llu, \"size\": %zu}\n",
		       h->pid, (unsigned long long)st->records, (unsigned long long)st->bytes, size);
	} else {
		printf("%s: pid %u, %llu live allocations, %llu bytes\n", a->output, h->pid,
		       (unsigned long long)st->records, (unsigned long long)st->bytes);
	}
}

static int snapshot_main(int argc, char **argv)
{
	struct snapshot_args a = { 0 };
	struct gw_view_snap_stats st;
	struct target t;
	unsigned char *buf = NULL;
	int rc = snapshot_parse(argc, argv, &a);

	if (rc != PARSE_OK)
		return rc;
	rc = target_open("snapshot", a.target, a.co.shm_dir, &t);
	if (rc)
		return rc;
	size_t size = 0;
	/* the validated header copy, refreshed for counters and classes */
	gw_view_refresh(&t.view);
	rc = snapshot_collect(&t, &buf, &size, &st);
	if (rc)
		goto out;
	int err = write_file(a.output, buf, size);
	if (err) {
		fprintf(stderr, "gwmem snapshot: %s: %s\n", a.output, strerror(-err));
		rc = exit_for_errno(-err) == GWMEM_EXIT_ACCESS ? GWMEM_EXIT_ACCESS : GWMEM_EXIT_ERROR;
		goto out;
	}
	snapshot_print(&a, &t, &st, size);
out:
	free(buf);
	target_close(&t);
	return rc;
}

const struct cmd cmd_snapshot = {
	.name = "snapshot",
	.summary = "save a consistent copy of a segment to a file",
	.main = snapshot_main,
	.help = help,
};
