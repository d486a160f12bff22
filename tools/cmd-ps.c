/*
 * cmd-ps.c - `gwmem ps`: the processes that have a segment.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

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
"    live allocations, the share of allocations that were tracked, and the\n"
"    command line.  State is running (the process runs), exited (it exited\n"
"    normally and kept its segment), crashed (it is gone without its exit\n"
"    handler running: the segment holds what was live at the crash) or\n"
"    starting.  Segments that cannot be read are listed with the reason.\n"
"    Live figures come from the table's stripe heads: cheap, not a snapshot.\n"
"\n"
"OPTIONS\n"
"    --json          a JSON array of {\"pid\", \"state\", \"live_bytes\",\n"
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

struct entry {
	pid_t pid;
	uint64_t starttime;
	char name[256];
};

static int by_pid(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return x->starttime < y->starttime ? -1 : x->starttime > y->starttime;
}

static int run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "shm-dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	bool json = false;
	int ch;

	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'j': json = true; break;
		case 'd': dir = optarg; break;
		case 'h': return print_help(&cmd_ps);
		default: return usage_error(&cmd_ps, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc)
		return usage_error(&cmd_ps, "too many arguments");
	dir = shm_dir(dir);

	DIR *d = opendir(dir);
	if (!d) {
		int e = errno;
		fprintf(stderr, "gwmem ps: %s: %s\n", dir, strerror(e));
		return e == EACCES ? GWMEM_EXIT_ACCESS : GWMEM_EXIT_NOENT;
	}
	struct entry *list = NULL;
	size_t n = 0, cap = 0;
	for (struct dirent *e; (e = readdir(d));) {
		struct entry x;
		if (!parse_segment_name(e->d_name, &x.pid, &x.starttime))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			struct entry *nl = realloc(list, cap * sizeof(*list));
			if (!nl)
				break;
			list = nl;
		}
		snprintf(x.name, sizeof(x.name), "%s", e->d_name);
		list[n++] = x;
	}
	closedir(d);
	if (n)
		qsort(list, n, sizeof(*list), by_pid);

	if (json)
		printf("[");
	else
		printf("%-8s %-8s %14s %10s %8s  %s\n", "PID", "STATE", "LIVE-BYTES", "ALLOCS", "TRACKED", "COMMAND");
	for (size_t i = 0; i < n; i++) {
		char path[PATH_MAX], cmd[GWMEM_SHM_CMDLINE_MAX + 1];
		struct gw_view v;
		snprintf(path, sizeof(path), "%s/%s", dir, list[i].name);
		int err = gw_view_open(&v, path);
		if (err == GW_VIEW_ERR_NOENT)
			continue;    /* removed since readdir */
		if (err) {
			if (json) {
				printf("%s\n  {\"pid\": %d, \"state\": \"unreadable\", \"error\": ", i ? "," : "", (int)list[i].pid);
				json_string(stdout, gw_view_strerror(err));
				printf(", \"path\": ");
				json_string(stdout, path);
				printf("}");
			} else {
				printf("%-8d %-8s %14s %10s %8s  (%s: %s)\n", (int)list[i].pid, "?", "-", "-", "-",
				       list[i].name, gw_view_strerror(err));
			}
			continue;
		}
		uint64_t count, bytes, inserted;
		stripe_totals(&v, &count, &bytes, &inserted);
		const struct gwmem_shm_counters *c = &v.hdr.counters;
		uint64_t denom = inserted + c->untracked_table_full + c->sampled_out;
		double pct = denom ? 100.0 * (double)inserted / (double)denom : 100.0;
		if (!v.hdr.nstripes)
			pct = 0;
		gw_view_command(&v, cmd, sizeof(cmd));
		const char *state = segment_state(&v);
		if (json) {
			printf("%s\n  {\"pid\": %u, \"state\": \"%s\", \"live_bytes\": %llu, \"live_count\": %llu, "
			       "\"tracked_percent\": %.1f, \"command\": ", i ? "," : "", v.hdr.pid, state,
			       (unsigned long long)bytes, (unsigned long long)count, pct);
			json_string(stdout, cmd);
			printf(", \"path\": ");
			json_string(stdout, path);
			printf("}");
		} else {
			printf("%-8u %-8s %14llu %10llu %7.1f%%  ", v.hdr.pid, state,
			       (unsigned long long)bytes, (unsigned long long)count, pct);
			put_escaped(stdout, GW_ESC_TEXT, cmd);
			putchar('\n');
		}
		gw_view_close(&v);
	}
	if (json)
		printf(n ? "\n]\n" : "]\n");
	free(list);
	return 0;
}

const struct cmd cmd_ps = {
	.name = "ps",
	.summary = "list processes with a segment: pid, state, live bytes, tracked %",
	.run = run,
	.help = help,
};
