/*
 * cmd-diff.c - `gwmem diff OLD NEW`: growth per allocation site between two
 * snapshots (or a snapshot and a live process).
 */
#include "config.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "growth.h"
#include "shared.h"
#include "symbolize.h"

static const char help[] =
"NAME\n"
"    gwmem diff - growth per allocation site between two snapshots\n"
"\n"
"SYNOPSIS\n"
"    gwmem diff OLD NEW [--top N] [--all] [--json] [--no-symbols] [--shm-dir DIR]\n"
"               [--sysroot DIR] [--debug-dir DIR]... [--symbol-timeout SECONDS]\n"
"\n"
"DESCRIPTION\n"
"    OLD and NEW are snapshot files written by `gwmem snapshot`, segment\n"
"    files, or PIDs (the live segment now).  Every live allocation of each is\n"
"    grouped by allocation site; sites are matched (by stack id when both come\n"
"    from the same process, else by identical frames) and ranked by the bytes\n"
"    they grew.  A site that keeps growing between snapshots taken minutes or\n"
"    hours apart is the most reliable leak signal in a long-running daemon.\n"
"\n"
"OPTIONS\n"
"    --top N         sites to show (default 20; 0 = all)\n"
"    --all           also show sites that shrank or did not change\n"
"    --json          {\"old\": {...}, \"new\": {...}, \"bytes_delta\": N, \"count_delta\": N,\n"
"                    \"sites\": [{\"stack_id\", \"bytes_delta\", \"count_delta\", \"bytes\",\n"
"                    \"count\", \"frames\": [...]}]} (frames as in `gwmem leaks --json`)\n"
"    --no-symbols    module+offset only\n"
SYMBOLIZE_HELP
"    --shm-dir DIR   segment directory for PID arguments\n"
"    -h, --help      show this help\n"
"\n"
"EXIT STATUS\n"
"    0 ok, 1 usage error, 2 no such process or segment, 3 permission denied,\n"
"    4 segment version mismatch, 5 corrupt segment, 6 segment busy, 7 other error.\n"
"\n"
"EXAMPLES\n"
"    gwmem snapshot 1234 -o /var/tmp/a.snap; sleep 600\n"
"    gwmem snapshot 1234 -o /var/tmp/b.snap\n"
"    gwmem diff /var/tmp/a.snap /var/tmp/b.snap\n"
"    gwmem diff /var/tmp/a.snap 1234 --json\n";

static void side_json(const char *name, const struct target *t, const struct gw_sites *s)
{
	printf("\"%s\": {\"pid\": %u, \"path\": ", name, t->view.hdr.pid);
	json_string(stdout, t->path);
	printf(", \"time_s\": %.1f, \"live_bytes\": %llu, \"live_count\": %llu}",
	       (double)s->now_ds / 10.0, (unsigned long long)s->live_bytes,
	       (unsigned long long)s->live_count);
}

static int run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "top", required_argument, NULL, 't' },
		{ "all", no_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "no-symbols", no_argument, NULL, 'n' },
		{ "shm-dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		SYMBOLIZE_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	bool json = false, all = false, symbols = true;
	uint64_t top = 20;
	int ch, rc;
	struct symbolize_opts so;

	symbolize_opts_init(&so, "diff");

	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 't':
			if (!parse_u64(optarg, &top))
				return usage_error(&cmd_diff, "invalid --top '%s'", optarg);
			break;
		case 'a': all = true; break;
		case 'j': json = true; break;
		case 'n': symbols = false; break;
		case 'd': dir = optarg; break;
		case 'h': return print_help(&cmd_diff);
		default:
			switch (symbolize_opt(&so, ch, optarg)) {
			case 1: break;
			case -1: return GWMEM_EXIT_USAGE;
			default: return usage_error(&cmd_diff, "unknown option '%s'", argv[optind - 1]);
			}
			break;
		}
	}
	if (argc - optind != 2)
		return usage_error(&cmd_diff, "expected OLD and NEW");
	dir = shm_dir(dir);

	struct target ot, nt;
	struct gw_sites os = { 0 }, ns = { 0 };
	struct gw_report_opts opt = { .top = 0 };
	struct symbolizer *sym = NULL;
	struct growth_site *g = NULL;
	size_t ng = 0;
	int err;

	rc = target_open("diff", argv[optind], dir, &ot);
	if (rc)
		return rc;
	rc = target_open("diff", argv[optind + 1], dir, &nt);
	if (rc) {
		target_close(&ot);
		return rc;
	}
	err = gw_report_collect(&ot.view, &opt, &os);
	if (err) {
		rc = view_fail("diff", ot.path, err, NULL);
		goto out;
	}
	err = gw_report_collect(&nt.view, &opt, &ns);
	if (err) {
		rc = view_fail("diff", nt.path, err, NULL);
		goto out;
	}
	if (!same_process(&ot.view, &nt.view))
		fprintf(stderr, "gwmem diff: warning: %s and %s come from different processes; "
			"sites are matched by identical frames\n", ot.path, nt.path);
	g = growth_compute(&ot.view, &os, &nt.view, &ns, &ng);
	if (!g) {
		fprintf(stderr, "gwmem diff: out of memory\n");
		rc = GWMEM_EXIT_ERROR;
		goto out;
	}
	if (symbols)
		sym = symbolizer_new(&nt.view, &so);

	int64_t dbytes = (int64_t)ns.live_bytes - (int64_t)os.live_bytes;
	int64_t dcount = (int64_t)ns.live_count - (int64_t)os.live_count;
	if (json) {
		printf("{");
		side_json("old", &ot, &os);
		printf(", ");
		side_json("new", &nt, &ns);
		printf(", \"bytes_delta\": %lld, \"count_delta\": %lld, \"sites\": [",
		       (long long)dbytes, (long long)dcount);
	} else {
		printf("%s (pid %u, %.1f s) -> %s (pid %u, %.1f s): %+lld bytes, %+lld allocations\n",
		       ot.path, ot.view.hdr.pid, (double)os.now_ds / 10.0, nt.path, nt.view.hdr.pid,
		       (double)ns.now_ds / 10.0, (long long)dbytes, (long long)dcount);
	}
	size_t shown = 0;
	for (size_t i = 0; i < ng && (!top || shown < top); i++) {
		const struct growth_site *s = &g[i];
		if (!all && s->dbytes <= 0 && s->dcount <= 0)
			continue;
		const struct gw_view *v = s->in_new ? &nt.view : &ot.view;
		uint64_t frames[GWMEM_SHM_MAX_FRAMES];
		int depth = gw_view_stack(v, s->in_new ? s->stack_id : s->old_stack_id, frames,
					  GWMEM_SHM_MAX_FRAMES);
		if (depth < 0)
			depth = 0;
		if (json) {
			printf("%s\n  {\"stack_id\": %u, \"bytes_delta\": %lld, \"count_delta\": %lld, "
			       "\"bytes\": %llu, \"count\": %llu, \"frames\": [", shown ? "," : "",
			       s->stack_id, (long long)s->dbytes, (long long)s->dcount,
			       (unsigned long long)s->bytes, (unsigned long long)s->count);
		} else {
			printf("\n#%zu  %+lld bytes (%+lld allocations), now %llu bytes in %llu allocations  [stack %u]\n",
			       shown + 1, (long long)s->dbytes, (long long)s->dcount,
			       (unsigned long long)s->bytes, (unsigned long long)s->count, s->stack_id);
		}
		for (int f = 0; f < depth; f++) {
			struct gw_frame_info fi;
			if (sym && s->in_new)
				symbolizer_frame(sym, frames[f], &fi);
			else
				gw_report_symbolize_modules((void *)v, frames[f], &fi);
			fi.address = frames[f];
			if (json) {
				printf(f ? ",\n    " : "\n    ");
				print_frame_json(stdout, &fi);
			} else {
				print_frame_text(stdout, (unsigned)f, &fi);
			}
		}
		if (json)
			printf("]}");
		shown++;
	}
	if (json)
		printf(shown ? "\n]}\n" : "]}\n");
	else if (!shown)
		printf("no site grew\n");
out:
	free(g);
	symbolizer_free(sym);
	gw_report_sites_release(&os);
	gw_report_sites_release(&ns);
	target_close(&ot);
	target_close(&nt);
	return rc;
}

const struct cmd cmd_diff = {
	.name = "diff",
	.summary = "growth per allocation site between two snapshots",
	.run = run,
	.help = help,
};
