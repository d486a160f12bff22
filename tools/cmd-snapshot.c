/*
 * cmd-snapshot.c - `gwmem snapshot PID -o FILE`: a consistent copy of a
 * segment, readable by every other subcommand.
 *
 * The file has the segment's own layout: the header (flag
 * GW_VIEW_FLAG_SNAPSHOT set, heartbeat_monotonic_ns = the time of the
 * snapshot, so ages stay those at snapshot time), the module map, the
 * records copied stripe by stripe under each stripe's seqlock, stripe heads
 * with the verified totals and even sequence numbers, and the stack table
 * copied after the records (so every stack a record names is in it).
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

struct copy_ctx {
	unsigned char *dst;
	const struct gw_view *v;
};

static int copy_stripe(void *ctx, uint32_t stripe, const struct gwmem_shm_record *slots,
		       uint32_t nslots, uint32_t count, uint64_t bytes)
{
	struct copy_ctx *c = ctx;
	const struct gwmem_shm_header *h = &c->v->hdr;
	struct gwmem_shm_stripe *sh = (void *)(c->dst + h->stripes_offset);
	struct gwmem_shm_record *rec = (void *)(c->dst + h->records_offset);

	memcpy(&rec[(uint64_t)stripe * h->slots_per_stripe], slots, (size_t)nslots * sizeof(*slots));
	sh[stripe].seq = 0;
	sh[stripe].lock = 0;
	sh[stripe].count = count;
	sh[stripe].bytes = bytes;
	return 0;
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
 * The snapshot image in buf[v->size]: header, records, stacks, module map,
 * checked to read back.  Returns 0 or an exit status.
 */
static int snapshot_collect(const struct target *t, unsigned char *buf, struct gw_view_snap_stats *st)
{
	const struct gw_view *v = &t->view;
	const struct gwmem_shm_header *h = &v->hdr;

	memcpy(buf, h, sizeof(*h));

	/* records and stripe heads */
	const struct gwmem_shm_stripe *live_sh = (const void *)(v->base + h->stripes_offset);
	if (h->nstripes)
		memcpy(buf + h->stripes_offset, live_sh, (size_t)h->nstripes * sizeof(*live_sh));
	struct copy_ctx ctx = { buf, v };
	int err = gw_view_snapshot(v, copy_stripe, &ctx, st);
	if (err)
		return view_fail("snapshot", t->path, err, NULL);

	/* stacks after the records: every stack a copied record names was published before it */
	for (uint32_t i = 0; i < h->stack_capacity; i++) {
		uint64_t off = h->stacks_offset + (uint64_t)i * h->stack_stride;
		struct gwmem_shm_stack *dst = (void *)(buf + off);
		uint64_t frames[GWMEM_SHM_MAX_FRAMES];
		int depth = gw_view_stack(v, i + 1, frames, GWMEM_SHM_MAX_FRAMES);
		if (depth <= 0)
			continue;
		memcpy(dst->frames, frames, (size_t)depth * 8);
		dst->depth = (uint32_t)depth;
		dst->hash = ((const struct gwmem_shm_stack *)(const void *)(v->base + off))->hash;
		if (!dst->hash)
			dst->hash = 1;
	}

	/* module map */
	struct gwmem_shm_header *nh = (void *)buf;
	if (h->modules_capacity) {
		int n = gw_view_modules(v, (void *)(buf + h->modules_offset), h->modules_capacity);
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
	err = gw_view_from_memory(&check, buf, v->size);
	if (!err)
		err = gw_view_snapshot(&check, NULL, NULL, NULL);
	if (err)
		return view_fail("snapshot", t->path, err, &check);
	return 0;
}

static void snapshot_print(const struct snapshot_args *a, const struct target *t,
			   const struct gw_view_snap_stats *st)
{
	const struct gwmem_shm_header *h = &t->view.hdr;

	if (a->co.json) {
		printf("{\"path\": ");
		json_string(stdout, a->output);
		printf(", \"pid\": %u, \"live_count\": %llu, \"live_bytes\": %llu, \"size\": %zu}\n",
		       h->pid, (unsigned long long)st->records, (unsigned long long)st->bytes, t->view.size);
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
	buf = calloc(1, t.view.size);
	if (!buf) {
		fprintf(stderr, "gwmem snapshot: out of memory (%zu bytes)\n", t.view.size);
		rc = GWMEM_EXIT_ERROR;
		goto out;
	}
	/* the validated header copy, refreshed for counters and classes */
	gw_view_refresh(&t.view);
	rc = snapshot_collect(&t, buf, &st);
	if (rc)
		goto out;
	int err = write_file(a.output, buf, t.view.size);
	if (err) {
		fprintf(stderr, "gwmem snapshot: %s: %s\n", a.output, strerror(-err));
		rc = exit_for_errno(-err) == GWMEM_EXIT_ACCESS ? GWMEM_EXIT_ACCESS : GWMEM_EXIT_ERROR;
		goto out;
	}
	snapshot_print(&a, &t, &st);
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
