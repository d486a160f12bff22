/*
 * cmd-ps.c - `gwmem ps`: the processes that have a segment.  Collects one
 * row per segment name (sorted by pid, then start time), then prints them.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shared.h"

static const char help[] =
"NAME\n"
"    gwmem ps - list the processes that have a gwmem segment\n"
"\n"
"SYNOPSIS\n"
"    gwmem ps [--json] [--shm-dir DIR]\n"
"\n"
"DESCRIPTION\n"
"    One line per segment in the segment directory: pid, state, live bytes,\n"
"    live allocations, the share of allocations that were tracked, the\n"
"    memory the segment file takes in the directory (SHM-KIB; on tmpfs that\n"
"    is RAM) and the command line.  State is running (the process runs),\n"
"    exited (it exited normally and kept its segment), crashed (it is gone\n"
"    without its exit handler running: the segment holds what was live at\n"
"    the crash), empty (it exited but could not remove its segment, having\n"
"    dropped the privileges it was created with, so it emptied it) or\n"
"    starting.  Segments that cannot be read are listed with the reason.\n"
"    Live figures come from the table's stripe heads: cheap, not a snapshot.\n"
"\n"
"OPTIONS\n"
"    --json          a JSON array of {\"pid\", \"state\", \"live_bytes\", \"shm_bytes\",\n"
"                    \"live_count\", \"tracked_percent\", \"command\", \"path\"}\n"
"    --shm-dir DIR   segment directory (default $GWMEM_SHM_DIR or " GWMEM_DEFAULT_SHM_DIR ")\n"
"    -h, --help      show this help\n"
"\n"
"EXIT STATUS\n"
"    0 ok (also when there is no segment), 1 usage error, 2 the directory is\n"
"    missing, 3 the directory is not readable.\n"
"\n"
"EXAMPLES\n"
"    gwmem ps\n"
"    GWMEM_SHM_DIR=/run/gwmem gwmem ps --json\n";

/* One segment: read (err == 0) or the reason it could not be. */
struct ps_row {
	pid_t pid;
	uint64_t starttime;
	char name[256];
	int err;                      /* a gw_view_error */
	bool empty;                   /* a 0-byte file: emptied at exit */
	unsigned long long shm_bytes; /* what the file takes in shm_dir (tmpfs: RAM) */
	const char *state;
	uint64_t bytes, count;
	double tracked_pct;
	char cmd[GWMEM_SHM_CMDLINE_MAX + 1];
};

struct ps_rows {
	struct ps_row *row;
	size_t n, cap;
};

static int by_pid(const void *a, const void *b)
{
	const struct ps_row *x = a, *y = b;
	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return x->starttime < y->starttime ? -1 : x->starttime > y->starttime;
}

static int ps_parse(int argc, char **argv, struct common_opts *co)
{
	int operand, rc = parse_options(&cmd_ps, argc, argv, COMMON_SHM_DIR | COMMON_JSON, NULL, NULL,
					NULL, NULL, co, &operand);
	if (rc != PARSE_OK)
		return rc;
	if (operand != argc)
		return usage_error(&cmd_ps, "too many arguments");
	return PARSE_OK;
}

static int add_name(void *ctx, const struct segment_entry *e)
{
	struct ps_rows *r = ctx;

	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 64;
		struct ps_row *nr = realloc(r->row, cap * sizeof(*nr));
		if (!nr)
			return GWMEM_EXIT_ERROR;
		r->row = nr;
		r->cap = cap;
	}
	struct ps_row *x = &r->row[r->n++];
	memset(x, 0, sizeof(*x));
	x->pid = e->pid;
	x->starttime = e->starttime;
	snprintf(x->name, sizeof(x->name), "%s", e->name);
	return 0;
}

/* Live figures from the stripe heads: cheap, not a snapshot. */
static void ps_read(const char *dir, struct ps_row *x)
{
	char path[PATH_MAX];
	struct gw_view v;

	snprintf(path, sizeof(path), "%s/%s", dir, x->name);
	struct stat st;
	if (lstat(path, &st) < 0) {
		x->err = GW_VIEW_ERR_NOENT;
		return;
	}
	x->shm_bytes = (unsigned long long)st.st_blocks * 512;
	/* a process that could not remove its segment at exit (it dropped
	 * the privileges it created it with) emptied it instead */
	if (S_ISREG(st.st_mode) && st.st_size == 0) {
		x->empty = true;
		x->state = "empty";
		return;
	}
	x->err = gw_view_open(&v, path);
	if (x->err)
		return;
	uint64_t inserted;
	stripe_totals(&v, &x->count, &x->bytes, &inserted);
	const struct gwmem_shm_counters *c = &v.hdr.counters;
	uint64_t denom = inserted + c->untracked_table_full + c->sampled_out;
	x->tracked_pct = denom ? 100.0 * (double)inserted / (double)denom : 100.0;
	if (!v.hdr.nstripes)
		x->tracked_pct = 0;
	x->pid = (pid_t)v.hdr.pid;
	x->state = segment_state(&v);
	gw_view_command(&v, x->cmd, sizeof(x->cmd));
	gw_view_close(&v);
}

static int ps_collect(const struct common_opts *co, struct ps_rows *r)
{
	int rc = segment_foreach("ps", co->shm_dir, add_name, r);
	if (rc)
		return rc;
	if (r->n)
		qsort(r->row, r->n, sizeof(*r->row), by_pid);
	for (size_t i = 0; i < r->n; i++)
		ps_read(co->shm_dir, &r->row[i]);
	return 0;
}

static void ps_print_text(const struct ps_rows *r)
{
	printf("%-8s %-8s %14s %10s %8s %9s  %s\n", "PID", "STATE", "LIVE-BYTES", "ALLOCS", "TRACKED", "SHM-KIB",
	       "COMMAND");
	for (size_t i = 0; i < r->n; i++) {
		const struct ps_row *x = &r->row[i];
		if (x->err == GW_VIEW_ERR_NOENT)
			continue;    /* removed since the scan */
		if (x->empty) {
			printf("%-8d %-8s %14s %10s %8s %9llu  (%s: exited, emptied: gwmem clean removes it)\n",
			       (int)x->pid, x->state, "-", "-", "-", x->shm_bytes / 1024, x->name);
			continue;
		}
		if (x->err) {
			printf("%-8d %-8s %14s %10s %8s %9llu  (%s: %s)\n", (int)x->pid, "?", "-", "-", "-",
			       x->shm_bytes / 1024, x->name, gw_view_strerror(x->err));
			continue;
		}
		printf("%-8d %-8s %14llu %10llu %7.1f%% %9llu  ", (int)x->pid, x->state,
		       (unsigned long long)x->bytes, (unsigned long long)x->count, x->tracked_pct,
		       x->shm_bytes / 1024);
		put_escaped(stdout, GW_ESC_TEXT, x->cmd);
		putchar('\n');
	}
}

static void ps_print_json(const char *dir, const struct ps_rows *r)
{
	char path[PATH_MAX];
	size_t shown = 0;

	printf("[");
	for (size_t i = 0; i < r->n; i++) {
		const struct ps_row *x = &r->row[i];
		if (x->err == GW_VIEW_ERR_NOENT)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, x->name);
		printf("%s\n  {\"pid\": %d, ", shown++ ? "," : "", (int)x->pid);
		if (x->empty) {
			printf("\"state\": \"empty\", \"shm_bytes\": %llu", x->shm_bytes);
		} else if (x->err) {
			printf("\"state\": \"unreadable\", \"error\": ");
			json_string(stdout, gw_view_strerror(x->err));
		} else {
			printf("\"state\": \"%s\", \"live_bytes\": %llu, \"live_count\": %llu, "
			       "\"tracked_percent\": %.1f, \"shm_bytes\": %llu, \"command\": ", x->state,
			       (unsigned long long)x->bytes, (unsigned long long)x->count, x->tracked_pct,
			       x->shm_bytes);
			json_string(stdout, x->cmd);
		}
		printf(", \"path\": ");
		json_string(stdout, path);
		printf("}");
	}
	printf(shown ? "\n]\n" : "]\n");
}

static int ps_main(int argc, char **argv)
{
	struct common_opts co;
	struct ps_rows rows = { 0 };
	int rc = ps_parse(argc, argv, &co);

	if (rc != PARSE_OK)
		return rc;
	rc = ps_collect(&co, &rows);
	if (!rc) {
		if (co.json)
			ps_print_json(co.shm_dir, &rows);
		else
			ps_print_text(&rows);
	}
	free(rows.row);
	return rc;
}

const struct cmd cmd_ps = {
	.name = "ps",
	.summary = "list processes with a segment: pid, state, live bytes, tracked %",
	.main = ps_main,
	.help = help,
};
