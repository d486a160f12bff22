/*
 * cmd-top.c - `gwmem top PID`: the growth view of `gwmem diff`, refreshed
 * every second against the first snapshot, with plain ANSI escapes.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "growth.h"
#include "shared.h"
#include "symbolize.h"

static const char help[] =
"NAME\n"
"    gwmem top - live allocation sites and their growth, refreshed\n"
"\n"
"SYNOPSIS\n"
"    gwmem top PID [--interval SECONDS] [--iterations N] [--lines N] [--no-symbols]\n"
"              [--shm-dir DIR] [--sysroot DIR] [--debug-dir DIR]... [--symbol-timeout SECONDS]\n"
"\n"
"DESCRIPTION\n"
"    Takes a snapshot of PID every interval and shows the allocation sites\n"
"    ranked by how many bytes they grew since gwmem top started, with their\n"
"    current live bytes and count and the allocating function.  The screen is\n"
"    redrawn with ANSI escapes when standard output is a terminal; otherwise\n"
"    each refresh is appended.  Stop with Ctrl-C, or bound it with --iterations.\n"
"\n"
"OPTIONS\n"
"    --interval SECONDS  refresh period (default 1, tenths allowed)\n"
"    --iterations N      stop after N refreshes (default: run until interrupted)\n"
"    --lines N           sites shown per refresh (default 20)\n"
"    --no-symbols        module+offset only\n"
SYMBOLIZE_HELP
"    --shm-dir DIR       segment directory\n"
"    -h, --help          show this help\n"
"\n"
"EXIT STATUS\n"
"    0 ok, 1 usage error, 2 no such process or segment, 3 permission denied,\n"
"    4 segment version mismatch, 5 corrupt segment, 6 segment busy, 7 other error.\n"
"\n"
"EXAMPLES\n"
"    gwmem top $(pidof mosquitto)\n"
"    gwmem top 1234 --iterations 10 --interval 0.5 > top.log\n";

struct top_args {
	struct common_opts co;
	uint64_t interval_ds, iterations, lines;
	const char *target;
};

static int top_option(const struct cmd *c, void *args, int ch, const char *arg)
{
	struct top_args *a = args;

	switch (ch) {
	case 'i':
		if (!parse_seconds_ds(arg, &a->interval_ds) || !a->interval_ds)
			return usage_error(c, "invalid --interval '%s'", arg);
		return 0;
	case 'n':
		if (!parse_u64(arg, &a->iterations))
			return usage_error(c, "invalid --iterations '%s'", arg);
		return 0;
	case 'l':
		if (!parse_u64(arg, &a->lines) || !a->lines)
			return usage_error(c, "invalid --lines '%s'", arg);
		return 0;
	default:
		return usage_error(c, "unknown option");
	}
}

static int top_parse(int argc, char **argv, struct top_args *a)
{
	static const struct option own[] = {
		{ "interval", required_argument, NULL, 'i' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "lines", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 },
	};
	int operand, rc = parse_options(&cmd_top, argc, argv, COMMON_SHM_DIR | COMMON_SYMBOLS, own, "",
					top_option, a, &a->co, &operand);
	if (rc != PARSE_OK)
		return rc;
	if (argc - operand != 1)
		return usage_error(&cmd_top, operand >= argc ? "missing PID" : "too many arguments");
	a->target = argv[operand];
	return PARSE_OK;
}

/* One refresh: the sites now, matched against the first collection. */
static int top_collect(struct target *t, const struct gw_sites *base, struct gw_sites *cur,
		       struct growth_site **g, size_t *ng)
{
	struct gw_report_opts opt = { .top = 0 };
	int err;

	gw_view_refresh(&t->view);
	err = gw_report_collect(&t->view, &opt, cur);
	if (err)
		return view_fail("top", t->path, err, NULL);
	*g = growth_compute(&t->view, base, &t->view, cur, ng);
	if (!*g) {
		gw_report_sites_release(cur);
		return GWMEM_EXIT_ERROR;
	}
	return 0;
}

static void top_print(const struct top_args *a, const struct target *t, struct symbolizer *sym,
		      const struct gw_sites *base, const struct gw_sites *cur,
		      const struct growth_site *g, size_t ng, bool clear)
{
	char cmd[GWMEM_SHM_CMDLINE_MAX + 1];

	gw_view_command(&t->view, cmd, sizeof(cmd));
	if (clear)
		printf("\033[H\033[2J");
	printf("gwmem top - pid %u (", t->view.hdr.pid);
	put_escaped(stdout, GW_ESC_TEXT, cmd);
	printf(") %s, %.1f s\n", segment_state(&t->view), (double)cur->now_ds / 10.0);
	printf("live: %llu bytes in %llu allocations (%+lld bytes, %+lld allocations since start)\n\n",
	       (unsigned long long)cur->live_bytes, (unsigned long long)cur->live_count,
	       (long long)cur->live_bytes - (long long)base->live_bytes,
	       (long long)cur->live_count - (long long)base->live_count);
	printf("%12s %10s %12s %9s  %s\n", "GROWTH", "+COUNT", "LIVE-BYTES", "COUNT", "SITE");
	for (size_t i = 0; i < ng && i < a->lines; i++) {
		char site[600] = "[no stack]";
		uint64_t frames[GWMEM_SHM_MAX_FRAMES];
		int depth = g[i].in_new ? gw_view_stack(&t->view, g[i].stack_id, frames,
							GWMEM_SHM_MAX_FRAMES) : 0;
		if (depth > 0) {
			/* named by the first frame outside the allocation wrappers */
			struct gw_report_opts lopt = { .wrappers = a->co.sym.wrappers };
			struct gw_frame_info fi;
			if (sym) {
				lopt.symbolize = symbolizer_frame;
				lopt.sym_ctx = sym;
			}
			gw_report_site_frame(&t->view, &lopt, frames, depth, &fi);
			gw_report_frame_label(&fi, site, sizeof(site));
		}
		printf("%+12lld %+10lld %12llu %9llu  ", (long long)g[i].dbytes,
		       (long long)g[i].dcount, (unsigned long long)g[i].bytes,
		       (unsigned long long)g[i].count);
		put_escaped(stdout, GW_ESC_TEXT, site);
		putchar('\n');
	}
	fflush(stdout);
}

static int top_main(int argc, char **argv)
{
	struct top_args a = { .interval_ds = 10, .lines = 20 };
	struct gw_report_opts opt = { .top = 0 };
	struct gw_sites base = { 0 };
	struct target t;
	int rc = top_parse(argc, argv, &a);

	if (rc != PARSE_OK)
		return rc;
	rc = target_open("top", a.target, a.co.shm_dir, &t);
	if (rc)
		return rc;
	struct symbolizer *sym = a.co.symbols ? symbolizer_new(&t.view, &a.co.sym) : NULL;
	bool tty = isatty(STDOUT_FILENO);
	int err = gw_report_collect(&t.view, &opt, &base);
	if (err) {
		rc = view_fail("top", t.path, err, NULL);
		goto out;
	}
	for (uint64_t it = 0; !a.iterations || it < a.iterations; it++) {
		struct gw_sites cur = { 0 };
		struct growth_site *g = NULL;
		size_t ng = 0;
		if (it) {
			struct timespec ts = { (time_t)(a.interval_ds / 10), (long)(a.interval_ds % 10) * 100000000L };
			nanosleep(&ts, NULL);
		}
		rc = top_collect(&t, &base, &cur, &g, &ng);
		if (rc)
			goto out;
		/* a terminal is redrawn; a file or pipe gets one block per refresh */
		if (!tty && it)
			printf("\n");
		top_print(&a, &t, sym, &base, &cur, g, ng, tty);
		free(g);
		gw_report_sites_release(&cur);
	}
out:
	symbolizer_free(sym);
	gw_report_sites_release(&base);
	target_close(&t);
	return rc;
}

const struct cmd cmd_top = {
	.name = "top",
	.summary = "allocation sites and their growth, refreshed every second",
	.main = top_main,
	.help = help,
};
