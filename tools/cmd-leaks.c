/*
 * cmd-leaks.c - `gwmem leaks` and `gwmem report`: live allocations grouped
 * by allocation site, ranked by bytes, symbolized with libdwfl.  Grouping
 * and the output formats are lib/segment/report.c's, shared with the
 * preload's own SIGUSR1 report.
 */
#include "config.h"

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

struct leaks_args {
	struct common_opts co;
	struct gw_report_opts opt;
	bool have_older;
	const char *target;
};

static int leaks_option(const struct cmd *c, void *args, int ch, const char *arg)
{
	struct leaks_args *a = args;
	bool is_report = c == &cmd_report;
	uint64_t v;

	switch (ch) {
	case 'o':
		if (is_report || !parse_seconds_ds(arg, &a->opt.older_than_ds))
			return usage_error(c, "invalid --older-than '%s'", arg);
		a->have_older = true;
		return 0;
	case 't':
		if (!parse_u64(arg, &v) || v > UINT32_MAX)
			return usage_error(c, "invalid --top '%s'", arg);
		a->opt.top = (uint32_t)v;
		return 0;
	case 'm':
		if (is_report || !parse_u64(arg, &a->opt.min_bytes))
			return usage_error(c, "invalid --min-bytes '%s'", arg);
		return 0;
	case 'f':
		if (strcmp(arg, "text") == 0)
			a->opt.format = GW_REPORT_TEXT;
		else if (strcmp(arg, "json") == 0)
			a->opt.format = GW_REPORT_JSON;
		else if (strcmp(arg, "folded") == 0 && !is_report)
			a->opt.format = GW_REPORT_FOLDED;
		else
			return usage_error(c, "unknown format '%s'", arg);
		return 0;
	default:
		return usage_error(c, "unknown option");
	}
}

/* `leaks` and `report` share the options; report refuses the filters. */
static int leaks_parse(const struct cmd *c, int argc, char **argv, struct leaks_args *a)
{
	static const struct option own[] = {
		{ "older-than", required_argument, NULL, 'o' },
		{ "top", required_argument, NULL, 't' },
		{ "min-bytes", required_argument, NULL, 'm' },
		{ "format", required_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	int operand, rc;

	a->opt = (struct gw_report_opts){ .top = 20, .format = GW_REPORT_TEXT, .stats = c == &cmd_report };
	rc = parse_options(c, argc, argv, COMMON_SHM_DIR | COMMON_JSON | COMMON_SYMBOLS, own, "",
			   leaks_option, a, &a->co, &operand);
	if (rc != PARSE_OK)
		return rc;
	if (a->co.json)
		a->opt.format = GW_REPORT_JSON;
	a->opt.wrappers = a->co.sym.wrappers;
	if (operand != argc - 1)
		return usage_error(c, operand >= argc ? "missing PID" : "too many arguments");
	a->target = argv[operand];
	return PARSE_OK;
}

/* Snapshot, filter, group and rank; symbols are looked up while printing. */
static int leaks_collect(const struct cmd *c, struct leaks_args *a, struct target *t, struct gw_sites *sites)
{
	int err;

	if (!a->have_older && c != &cmd_report)
		a->opt.older_than_ds = (uint64_t)t->view.hdr.config.threshold_seconds * 10;
	if (a->opt.format != GW_REPORT_TEXT)
		a->opt.stats = false;
	err = gw_report_collect(&t->view, &a->opt, sites);
	return err ? view_fail(c->name, t->path, err, NULL) : 0;
}

static int leaks_print(const struct cmd *c, const struct leaks_args *a, const struct target *t,
		       const struct gw_sites *sites)
{
	uint64_t table_full = t->view.hdr.counters.untracked_table_full;
	int err;

	fflush(stdout);
	err = gw_report_write(STDOUT_FILENO, &t->view, sites, &a->opt);
	if (err) {
		fprintf(stderr, "gwmem %s: write: %s\n", c->name, strerror(-err));
		return GWMEM_EXIT_ERROR;
	}
	/* folded output has no room for a note: the text and JSON forms carry it in band */
	if (a->opt.format == GW_REPORT_FOLDED && table_full)
		fprintf(stderr, "gwmem %s: warning: partial result: %llu allocations were not tracked "
			"(%s)\n", c->name, (unsigned long long)table_full,
			t->view.hdr.counters.untracked_segment_full
				? "the segment could not grow, or the table was full"
				: "the allocation table was full");
	return 0;
}

static int leaks_or_report(const struct cmd *c, int argc, char **argv)
{
	struct leaks_args a = { 0 };
	struct gw_sites sites;
	struct target t;
	int rc = leaks_parse(c, argc, argv, &a);

	if (rc != PARSE_OK)
		return rc;
	rc = target_open(c->name, a.target, a.co.shm_dir, &t);
	if (rc)
		return rc;
	struct symbolizer *sym = a.co.symbols ? symbolizer_new(&t.view, &a.co.sym) : NULL;
	/* frames without names: the build-ids tell a host which files name them */
	a.opt.modules = !sym || !GWMEM_WITH_SYMBOLIZER;
	if (sym) {
		a.opt.symbolize = symbolizer_frame;
		a.opt.sym_ctx = sym;
	}
	rc = leaks_collect(c, &a, &t, &sites);
	if (!rc) {
		rc = leaks_print(c, &a, &t, &sites);
		gw_report_sites_release(&sites);
	}
	symbolizer_free(sym);
	target_close(&t);
	return rc;
}

static int leaks_main(int argc, char **argv)
{
	return leaks_or_report(&cmd_leaks, argc, argv);
}

static int report_main(int argc, char **argv)
{
	return leaks_or_report(&cmd_report, argc, argv);
}

const struct cmd cmd_leaks = {
	.name = "leaks",
	.summary = "live allocations grouped by allocation site, ranked by bytes",
	.main = leaks_main,
	.help = leaks_help,
};

const struct cmd cmd_report = {
	.name = "report",
	.summary = "the SIGUSR1 report: statistics and top allocation sites",
	.main = report_main,
	.help = report_help,
};
