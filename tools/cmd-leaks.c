/*
 * cmd-leaks.c - `gwmem leaks` and `gwmem report`: live allocations grouped
 * by allocation site, ranked by bytes, symbolized with libdwfl.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "shared.h"
#include "symbolize.h"

static const char leaks_help[] =
"NAME\n"
"    gwmem leaks - live allocations grouped by allocation site\n"
"\n"
"SYNOPSIS\n"
"    gwmem leaks PID|FILE [--older-than SECONDS] [--top N] [--min-bytes N]\n"
"                [--json | --format text|json|folded] [--no-symbols] [--shm-dir DIR]\n"
"                [--sysroot DIR] [--debug-dir DIR]... [--symbol-timeout SECONDS]\n"
"\n"
"DESCRIPTION\n"
"    Takes a consistent snapshot of the allocation table of a process running\n"
"    with libgwmem-preload.so (or of a segment or snapshot file), keeps the\n"
"    allocations at least SECONDS old, groups them by allocation site (the\n"
"    deduplicated backtrace) and prints the sites ranked by live bytes, with\n"
"    count, bytes, the age of the oldest allocation and symbolized frames\n"
"    (function, file:line; module+offset when there is no debug information).\n"
"    The target is never stopped or written to.\n"
"\n"
"    A process that is gone (crashed, or exited keeping its segment) is still\n"
"    readable; its frames are symbolized from the module map it recorded.\n""\n"
"    When the target's allocation table was full, the allocations it could\n"
"    not record are missing from the result: a line starting with\n"
"    \"partial:\" (text), \"partial\": true (JSON) or a warning on standard\n"
"    error (folded) says how many.\n"
"\n"
"    Strings from the segment (command line, module paths) and from the\n"
"    files it names (function and file names) are escaped: control bytes and\n"
"    bytes that are not UTF-8 are shown as \\xNN in text and folded output;\n"
"    JSON is valid UTF-8, with control characters as \\u00NN.\n"
"\n"
"OPTIONS\n"
"    --older-than SECONDS\n"
"        Only allocations at least this old (tenths allowed: 0.5).  Default:\n"
"        leak_detection.threshold_seconds of the target's configuration;\n"
"        0 shows everything live.\n"
"    --top N\n"
"        Show the N largest sites (default 20; 0 = all).\n"
"    --min-bytes N\n"
"        Hide sites holding fewer than N bytes.\n"
"    --json\n"
"        JSON output, same as --format json:\n"
"        {\"pid\": N, \"sites\": [{\"count\": N, \"bytes\": N, \"oldest_age_s\": X,\n"
"          \"frames\": [{\"address\": \"0x...\", \"module\": \"...\", \"function\": \"...\",\n"
"                      \"file\": \"...\", \"line\": N}]}]}\n"
"        (more fields are present; unknown strings are \"\" and lines 0).\n"
"        \"partial\": true when the allocation table was full and\n"
"        \"untracked_table_full\" allocations were never recorded.\n"
"    --format text|json|folded\n"
"        folded: one line per site, frames outermost first separated by ';',\n"
"        then the live bytes: the input of flamegraph.pl and speedscope.\n"
"    --no-symbols\n"
"        Skip DWARF symbolization: module+offset only (faster).\n"
SYMBOLIZE_HELP
"    --shm-dir DIR\n"
"        Segment directory (default $GWMEM_SHM_DIR or " GWMEM_DEFAULT_SHM_DIR ").\n"
"    -h, --help\n"
"        Show this help.\n"
"\n"
"EXIT STATUS\n"
"    0 ok, 1 usage error, 2 no such process or segment, 3 permission denied,\n"
"    4 segment version mismatch, 5 corrupt segment, 6 segment busy, 7 other error.\n"
"\n"
"EXAMPLES\n"
"    gwmem leaks 1234\n"
"    gwmem leaks 1234 --older-than 0 --top 5 --json\n"
"    gwmem leaks $(pidof mosquitto) --format folded | flamegraph.pl > leaks.svg\n"
"    gwmem leaks /var/tmp/mosquitto.snap\n"
"    gwmem leaks device.snap --sysroot ~/yocto/sysroot --debug-dir ~/yocto/debug\n";

static const char report_help[] =
"NAME\n"
"    gwmem report - the full report a process writes on SIGUSR1\n"
"\n"
"SYNOPSIS\n"
"    gwmem report PID|FILE [--top N] [--json] [--no-symbols] [--shm-dir DIR]\n"
"                 [--sysroot DIR] [--debug-dir DIR]... [--symbol-timeout SECONDS]\n"
"\n"
"DESCRIPTION\n"
"    Prints the statistics header (pid, command, live bytes and allocations,\n"
"    table fill, untracked and dropped counts, pool classes) followed by the\n"
"    top allocation sites by live bytes, of every live allocation whatever its\n"
"    age.  This is the report `kill -USR1 PID` makes the process write into\n"
"    leak_detection.report_dir, symbolized here with DWARF (function,\n"
"    file:line) instead of dladdr.\n"
"\n"
"OPTIONS\n"
"    --top N         sites to show (default 20; 0 = all)\n"
"    --json          the JSON of `gwmem leaks --json --older-than 0`\n"
"    --no-symbols    module+offset only\n"
"    --shm-dir DIR   segment directory\n"
SYMBOLIZE_HELP
"    -h, --help      show this help\n"
"\n"
"EXIT STATUS\n"
"    0 ok, 1 usage error, 2 no such process or segment, 3 permission denied,\n"
"    4 segment version mismatch, 5 corrupt segment, 6 segment busy, 7 other error.\n"
"\n"
"EXAMPLES\n"
"    gwmem report 1234 > /tmp/report.txt\n"
"    gwmem report /dev/shm/gwmem.1234.5678 --top 50\n";

static int run(const struct cmd *c, bool is_report, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "older-than", required_argument, NULL, 'o' },
		{ "top", required_argument, NULL, 't' },
		{ "min-bytes", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'j' },
		{ "format", required_argument, NULL, 'f' },
		{ "no-symbols", no_argument, NULL, 'n' },
		{ "shm-dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		SYMBOLIZE_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct gw_report_opts opt = { .top = 20, .format = GW_REPORT_TEXT, .stats = is_report };
	bool have_older = false, symbols = true;
	const char *dir = NULL;
	struct symbolize_opts so;
	uint64_t v;
	int ch, rc;

	symbolize_opts_init(&so, c->name);
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'o':
			if (is_report || !parse_seconds_ds(optarg, &opt.older_than_ds))
				return usage_error(c, "invalid --older-than '%s'", optarg);
			have_older = true;
			break;
		case 't':
			if (!parse_u64(optarg, &v) || v > UINT32_MAX)
				return usage_error(c, "invalid --top '%s'", optarg);
			opt.top = (uint32_t)v;
			break;
		case 'm':
			if (is_report || !parse_u64(optarg, &opt.min_bytes))
				return usage_error(c, "invalid --min-bytes '%s'", optarg);
			break;
		case 'j':
			opt.format = GW_REPORT_JSON;
			break;
		case 'f':
			if (strcmp(optarg, "text") == 0)
				opt.format = GW_REPORT_TEXT;
			else if (strcmp(optarg, "json") == 0)
				opt.format = GW_REPORT_JSON;
			else if (strcmp(optarg, "folded") == 0 && !is_report)
				opt.format = GW_REPORT_FOLDED;
			else
				return usage_error(c, "unknown format '%s'", optarg);
			break;
		case 'n':
			symbols = false;
			break;
		case 'd':
			dir = optarg;
			break;
		case 'h':
			return print_help(c);
		default:
			switch (symbolize_opt(&so, ch, optarg)) {
			case 1: break;
			case -1: return GWMEM_EXIT_USAGE;
			default: return usage_error(c, "unknown option '%s'", argv[optind - 1]);
			}
			break;
		}
	}
	if (optind != argc - 1)
		return usage_error(c, optind >= argc ? "missing PID" : "too many arguments");

	struct target t;
	rc = target_open(c->name, argv[optind], shm_dir(dir), &t);
	if (rc)
		return rc;
	if (!have_older && !is_report)
		opt.older_than_ds = (uint64_t)t.view.hdr.config.threshold_seconds * 10;
	if (opt.format != GW_REPORT_TEXT)
		opt.stats = false;

	struct symbolizer *sym = symbols ? symbolizer_new(&t.view, &so) : NULL;
	if (sym) {
		opt.symbolize = symbolizer_frame;
		opt.sym_ctx = sym;
	}
	struct gw_sites sites;
	int err = gw_report_collect(&t.view, &opt, &sites);
	if (err) {
		rc = view_fail(c->name, t.path, err, NULL);
		goto out;
	}
	fflush(stdout);
	err = gw_report_write(STDOUT_FILENO, &t.view, &sites, &opt);
	if (err) {
		fprintf(stderr, "gwmem %s: write: %s\n", c->name, strerror(-err));
		rc = GWMEM_EXIT_ERROR;
	}
	/* folded output has no room for a note: the text and JSON forms carry it in band */
	if (opt.format == GW_REPORT_FOLDED && t.view.hdr.counters.untracked_table_full)
		fprintf(stderr, "gwmem %s: warning: partial result: the allocation table was full and "
			"%llu allocations were not tracked\n", c->name,
			(unsigned long long)t.view.hdr.counters.untracked_table_full);
	gw_report_sites_release(&sites);
out:
	symbolizer_free(sym);
	target_close(&t);
	return rc;
}

static int leaks_run(int argc, char **argv)
{
	return run(&cmd_leaks, false, argc, argv);
}

static int report_run(int argc, char **argv)
{
	return run(&cmd_report, true, argc, argv);
}

const struct cmd cmd_leaks = {
	.name = "leaks",
	.summary = "live allocations grouped by allocation site, ranked by bytes",
	.run = leaks_run,
	.help = leaks_help,
};

const struct cmd cmd_report = {
	.name = "report",
	.summary = "the SIGUSR1 report: statistics and top allocation sites",
	.run = report_run,
	.help = report_help,
};
