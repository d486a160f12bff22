/*
 * cmd-diff.c - `gwmem diff OLD NEW`: growth per allocation site between two
 * snapshots (or a snapshot and a live process).
 */
#include "config.h"

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

struct diff_args {
	struct common_opts co;
	uint64_t top;
	bool all;
	const char *old_arg, *new_arg;
};

/* Both sides opened and grouped, and the matched sites ranked by growth. */
struct diff_data {
	struct target ot, nt;
	bool have_old, have_new;
	struct gw_sites os, ns;
	struct growth_site *g;
	size_t ng;
	struct symbolizer *sym;
};

static int diff_option(const struct cmd *c, void *args, int ch, const char *arg)
{
	struct diff_args *a = args;

	if (ch == 'a') {
		a->all = true;
		return 0;
	}
	if (!parse_u64(arg, &a->top))
		return usage_error(c, "invalid --top '%s'", arg);
	return 0;
}

static int diff_parse(int argc, char **argv, struct diff_args *a)
{
	static const struct option own[] = {
		{ "top", required_argument, NULL, 't' },
		{ "all", no_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	int operand, rc = parse_options(&cmd_diff, argc, argv,
					COMMON_SHM_DIR | COMMON_JSON | COMMON_SYMBOLS, own, "",
					diff_option, a, &a->co, &operand);
	if (rc != PARSE_OK)
		return rc;
	if (argc - operand != 2)
		return usage_error(&cmd_diff, "expected OLD and NEW");
	a->old_arg = argv[operand];
	a->new_arg = argv[operand + 1];
	return PARSE_OK;
}

static int diff_collect(const struct diff_args *a, struct diff_data *d)
{
	struct gw_report_opts opt = { .top = 0 };
	int rc, err;

	rc = target_open("diff", a->old_arg, a->co.shm_dir, &d->ot);
	if (rc)
		return rc;
	d->have_old = true;
	rc = target_open("diff", a->new_arg, a->co.shm_dir, &d->nt);
	if (rc)
		return rc;
	d->have_new = true;
	err = gw_report_collect(&d->ot.view, &opt, &d->os);
	if (err)
		return view_fail("diff", d->ot.path, err, NULL);
	err = gw_report_collect(&d->nt.view, &opt, &d->ns);
	if (err)
		return view_fail("diff", d->nt.path, err, NULL);
	if (!same_process(&d->ot.view, &d->nt.view))
		fprintf(stderr, "gwmem diff: warning: %s and %s come from different processes; "
			"sites are matched by identical frames\n", d->ot.path, d->nt.path);
	d->g = growth_compute(&d->ot.view, &d->os, &d->nt.view, &d->ns, &d->ng);
	if (!d->g) {
		fprintf(stderr, "gwmem diff: out of memory\n");
		return GWMEM_EXIT_ERROR;
	}
	if (a->co.symbols)
		d->sym = symbolizer_new(&d->nt.view, &a->co.sym);
	return 0;
}

static void diff_print(const struct diff_args *a, const struct diff_data *d)
{
	bool json = a->co.json;
	int64_t dbytes = (int64_t)d->ns.live_bytes - (int64_t)d->os.live_bytes;
	int64_t dcount = (int64_t)d->ns.live_count - (int64_t)d->os.live_count;

	if (json) {
		printf("{");
		side_json("old", &d->ot, &d->os);
		printf(", ");
		side_json("new", &d->nt, &d->ns);
		printf(", \"bytes_delta\": %lld, \"count_delta\": %lld, \"sites\": [",
		       (long long)dbytes, (long long)dcount);
	} else {
		printf("%s (pid %u, %.1f s) -> %s (pid %u, %.1f s): %+lld bytes, %+lld allocations\n",
		       d->ot.path, d->ot.view.hdr.pid, (double)d->os.now_ds / 10.0, d->nt.path,
		       d->nt.view.hdr.pid, (double)d->ns.now_ds / 10.0, (long long)dbytes, (long long)dcount);
	}
	size_t shown = 0;
	for (size_t i = 0; i < d->ng && (!a->top || shown < a->top); i++) {
		const struct growth_site *s = &d->g[i];
		if (!a->all && s->dbytes <= 0 && s->dcount <= 0)
			continue;
		const struct gw_view *v = s->in_new ? &d->nt.view : &d->ot.view;
		uint64_t frames[GWMEM_SHM_MAX_FRAMES];
		int depth = gw_view_stack(v, s->in_new ? s->stack_id : s->old_stack_id, frames,
					  GWMEM_SHM_MAX_FRAMES);
		if (depth < 0)
			depth = 0;
		/* the label: first frame outside the allocation wrappers */
		struct gw_report_opts lopt = { .wrappers = a->co.sym.wrappers };
		struct gw_frame_info lfi;
		char label[600] = "";
		if (d->sym && s->in_new) {
			lopt.symbolize = symbolizer_frame;
			lopt.sym_ctx = d->sym;
		}
		if (depth) {
			gw_report_site_frame(v, &lopt, frames, depth, &lfi);
			gw_report_frame_label(&lfi, label, sizeof(label));
		}
		if (json) {
			printf("%s\n  {\"stack_id\": %u, \"bytes_delta\": %lld, \"count_delta\": %lld, "
			       "\"bytes\": %llu, \"count\": %llu, \"site\": ", shown ? "," : "",
			       s->stack_id, (long long)s->dbytes, (long long)s->dcount,
			       (unsigned long long)s->bytes, (unsigned long long)s->count);
			json_string(stdout, label);
			printf(", \"frames\": [");
		} else {
			printf("\n#%zu  %+lld bytes (%+lld allocations), now %llu bytes in %llu allocations  [stack %u]",
			       shown + 1, (long long)s->dbytes, (long long)s->dcount,
			       (unsigned long long)s->bytes, (unsigned long long)s->count, s->stack_id);
			if (label[0]) {
				printf("  in ");
				put_escaped(stdout, GW_ESC_TEXT, label);
			}
			putchar('\n');
		}
		for (int f = 0; f < depth; f++) {
			struct gw_frame_info fi;
			if (d->sym && s->in_new)
				symbolizer_frame(d->sym, frames[f], &fi);
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
}

static void diff_release(struct diff_data *d)
{
	free(d->g);
	symbolizer_free(d->sym);
	gw_report_sites_release(&d->os);
	gw_report_sites_release(&d->ns);
	if (d->have_old)
		target_close(&d->ot);
	if (d->have_new)
		target_close(&d->nt);
}

static int diff_main(int argc, char **argv)
{
	struct diff_args a = { .top = 20 };
	struct diff_data d = { 0 };
	int rc = diff_parse(argc, argv, &a);

	if (rc != PARSE_OK)
		return rc;
	rc = diff_collect(&a, &d);
	if (!rc)
		diff_print(&a, &d);
	diff_release(&d);
	return rc;
}

const struct cmd cmd_diff = {
	.name = "diff",
	.summary = "growth per allocation site between two snapshots",
	.main = diff_main,
	.help = help,
};
