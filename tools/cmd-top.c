/*
 * cmd-top.c - `gwmem top PID`: the growth view of `gwmem diff`, refreshed
 * every second against the first snapshot, with plain ANSI escapes.
 */
#include "config.h"

#include <getopt.h>
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

static int run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "interval", required_argument, NULL, 'i' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "lines", required_argument, NULL, 'l' },
		{ "no-symbols", no_argument, NULL, 's' },
		{ "shm-dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		SYMBOLIZE_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	uint64_t interval = 10, iterations = 0, lines = 20;
	bool symbols = true;
	int ch, rc;
	struct symbolize_opts so;

	symbolize_opts_init(&so, "top");

	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'i':
			if (!parse_seconds_ds(optarg, &interval) || !interval)
				return usage_error(&cmd_top, "invalid --interval '%s'", optarg);
			break;
		case 'n':
			if (!parse_u64(optarg, &iterations))
				return usage_error(&cmd_top, "invalid --iterations '%s'", optarg);
			break;
		case 'l':
			if (!parse_u64(optarg, &lines) || !lines)
				return usage_error(&cmd_top, "invalid --lines '%s'", optarg);
			break;
		case 's': symbols = false; break;
		case 'd': dir = optarg; break;
		case 'h': return print_help(&cmd_top);
		default:
			switch (symbolize_opt(&so, ch, optarg)) {
			case 1: break;
			case -1: return GWMEM_EXIT_USAGE;
			default: return usage_error(&cmd_top, "unknown option '%s'", argv[optind - 1]);
			}
			break;
		}
	}
	if (argc - optind != 1)
		return usage_error(&cmd_top, optind >= argc ? "missing PID" : "too many arguments");

	struct target t;
	rc = target_open("top", argv[optind], shm_dir(dir), &t);
	if (rc)
		return rc;
	struct gw_report_opts opt = { .top = 0 };
	struct gw_sites base = { 0 }, cur = { 0 };
	struct symbolizer *sym = symbols ? symbolizer_new(&t.view, &so) : NULL;
	bool tty = isatty(STDOUT_FILENO);
	int err = gw_report_collect(&t.view, &opt, &base);
	if (err) {
		rc = view_fail("top", t.path, err, NULL);
		goto out;
	}
	char cmd[GWMEM_SHM_CMDLINE_MAX + 1];
	gw_view_command(&t.view, cmd, sizeof(cmd));

	for (uint64_t it = 0; !iterations || it < iterations; it++) {
		if (it) {
			struct timespec ts = { (time_t)(interval / 10), (long)(interval % 10) * 100000000L };
			nanosleep(&ts, NULL);
		}
		gw_view_refresh(&t.view);
		err = gw_report_collect(&t.view, &opt, &cur);
		if (err) {
			rc = view_fail("top", t.path, err, NULL);
			goto out;
		}
		size_t ng = 0;
		struct growth_site *g = growth_compute(&t.view, &base, &t.view, &cur, &ng);
		if (!g) {
			rc = GWMEM_EXIT_ERROR;
			gw_report_sites_release(&cur);
			goto out;
		}
		if (tty)
			printf("\033[H\033[2J");
		else if (it)
			printf("\n");
		printf("gwmem top - pid %u (", t.view.hdr.pid);
		put_escaped(stdout, GW_ESC_TEXT, cmd);
		printf(") %s, %.1f s\n", segment_state(&t.view), (double)cur.now_ds / 10.0);
		printf("live: %llu bytes in %llu allocations (%+lld bytes, %+lld allocations since start)\n\n",
		       (unsigned long long)cur.live_bytes, (unsigned long long)cur.live_count,
		       (long long)cur.live_bytes - (long long)base.live_bytes,
		       (long long)cur.live_count - (long long)base.live_count);
		printf("%12s %10s %12s %9s  %s\n", "GROWTH", "+COUNT", "LIVE-BYTES", "COUNT", "SITE");
		for (size_t i = 0; i < ng && i < lines; i++) {
			char site[320] = "[no stack]";
			uint64_t frames[1];
			if (g[i].in_new && gw_view_stack(&t.view, g[i].stack_id, frames, 1) == 1) {
				struct gw_frame_info fi;
				if (sym)
					symbolizer_frame(sym, frames[0], &fi);
				else
					gw_report_symbolize_modules((void *)&t.view, frames[0], &fi);
				fi.address = frames[0];
				frame_short(&fi, site, sizeof(site));
			}
			printf("%+12lld %+10lld %12llu %9llu  ", (long long)g[i].dbytes,
			       (long long)g[i].dcount, (unsigned long long)g[i].bytes,
			       (unsigned long long)g[i].count);
			put_escaped(stdout, GW_ESC_TEXT, site);
			putchar('\n');
		}
		fflush(stdout);
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
	.run = run,
	.help = help,
};
