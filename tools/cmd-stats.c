/*
 * cmd-stats.c - `gwmem stats`: pool statistics per size class, totals,
 * fragmentation, tracking table fill and untracked/dropped counts, as text,
 * JSON, or Prometheus textfile-collector gauges.
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
"    gwmem stats - pool, tracking and table statistics of a process\n"
"\n"
"SYNOPSIS\n"
"    gwmem stats [PID|FILE] [--format text|json|prometheus] [--json] [--shm-dir DIR]\n"
"\n"
"DESCRIPTION\n"
"    Prints, for the target: live tracked bytes and allocations (from a\n"
"    consistent snapshot), the allocation table fill, the stack table fill,\n"
"    the untracked (table full, internal, sampled out) and dropped-stack\n"
"    counts, misuse counters, and per pool size class the active and free\n"
"    blocks, chunks, released chunks, overflow to the next allocator and\n"
"    fragmentation (free carved bytes / carved bytes).\n"
"    Without PID, every segment whose process is running is printed: with\n"
"    --format prometheus this is one scrape for the whole device.\n"
"\n"
"OPTIONS\n"
"    --format text|json|prometheus\n"
"        prometheus writes node_exporter textfile-collector gauges\n"
"        (gwmem_live_bytes, gwmem_live_allocations, gwmem_table_fill_ratio,\n"
"        gwmem_untracked_allocations_total{reason=...}, gwmem_pool_*{class_size=...}\n"
"        ...), each labelled with pid and command.\n"
"    --json          same as --format json\n"
"    --shm-dir DIR   segment directory (default $GWMEM_SHM_DIR or " GWMEM_DEFAULT_SHM_DIR ")\n"
"    -h, --help      show this help\n"
"\n"
"EXIT STATUS\n"
"    0 ok, 1 usage error, 2 no such process or segment, 3 permission denied,\n"
"    4 segment version mismatch, 5 corrupt segment, 6 segment busy, 7 other error.\n"
"\n"
"EXAMPLES\n"
"    gwmem stats 1234\n"
"    gwmem stats --format prometheus > /var/lib/node_exporter/gwmem.prom.$$ &&\n"
"        mv /var/lib/node_exporter/gwmem.prom.$$ /var/lib/node_exporter/gwmem.prom\n";

enum fmt { FMT_TEXT, FMT_JSON, FMT_PROM };

struct totals {
	uint64_t count, bytes, slots;
	uint64_t pool_active_bytes, pool_free_bytes, pool_chunks;
};

static double frag(uint64_t active, uint64_t free_)
{
	return active + free_ ? (double)free_ / (double)(active + free_) : 0.0;
}

static int gather(const char *path, const struct gw_view *v, struct totals *t)
{
	struct gw_view_snap_stats st;
	const struct gwmem_shm_header *h = &v->hdr;
	int err = gw_view_snapshot(v, NULL, NULL, &st);

	if (err)
		return err;
	memset(t, 0, sizeof(*t));
	t->count = st.records;
	t->bytes = st.bytes;
	t->slots = (uint64_t)h->nstripes * h->slots_per_stripe;
	for (uint32_t i = 0; i < h->nclasses; i++) {
		t->pool_active_bytes += h->classes[i].active_blocks * h->classes[i].block_size;
		t->pool_free_bytes += h->classes[i].free_blocks * h->classes[i].block_size;
		t->pool_chunks += h->classes[i].total_chunks;
	}
	(void)path;
	return 0;
}

static void print_text(const struct target *tg, const struct totals *t)
{
	const struct gwmem_shm_header *h = &tg->view.hdr;
	const struct gwmem_shm_counters *c = &h->counters;
	char cmd[GWMEM_SHM_CMDLINE_MAX + 1];

	gw_view_command(&tg->view, cmd, sizeof(cmd));
	printf("pid %u (", h->pid);
	put_escaped(stdout, GW_ESC_TEXT, cmd);
	printf("), %s\n", segment_state(&tg->view));
	printf("segment:          %s, %llu bytes\n", tg->path, (unsigned long long)h->segment_size);
	printf("live tracked:     %llu bytes in %llu allocations\n",
	       (unsigned long long)t->bytes, (unsigned long long)t->count);
	printf("allocation table: %llu of %llu slots (%.1f%%), %u stripes\n",
	       (unsigned long long)t->count, (unsigned long long)t->slots,
	       t->slots ? 100.0 * (double)t->count / (double)t->slots : 0.0, h->nstripes);
	printf("stack table:      %llu of %u stacks, %u frames max\n",
	       (unsigned long long)c->stacks_used, h->stack_capacity, h->max_frames);
	printf("untracked:        %llu table full, %llu internal, %llu sampled out (1 in %u)\n",
	       (unsigned long long)c->untracked_table_full, (unsigned long long)c->untracked_internal,
	       (unsigned long long)c->sampled_out, h->config.sample_rate);
	printf("dropped stacks:   %llu\n", (unsigned long long)c->dropped_stacks);
	printf("misuse:           %llu invalid frees, %llu double frees\n",
	       (unsigned long long)c->invalid_frees, (unsigned long long)c->double_frees);
	printf("other:            %llu forwarded allocations, %llu mmap failures, %llu reports written\n",
	       (unsigned long long)c->forwarded_allocs, (unsigned long long)c->mmap_failures,
	       (unsigned long long)c->reports_written);
	printf("pools:            %llu bytes active, %llu bytes free, %llu chunks, fragmentation %.1f%%\n",
	       (unsigned long long)t->pool_active_bytes, (unsigned long long)t->pool_free_bytes,
	       (unsigned long long)t->pool_chunks, 100.0 * frag(t->pool_active_bytes, t->pool_free_bytes));
	if (!h->nclasses)
		return;
	printf("\n%8s %12s %12s %10s %8s %9s %9s %7s\n", "CLASS", "ALLOCATED", "FREED", "ACTIVE", "FREE",
	       "CHUNKS", "OVERFLOW", "FRAG");
	for (uint32_t i = 0; i < h->nclasses; i++) {
		const struct gwmem_shm_class *k = &h->classes[i];
		printf("%8llu %12llu %12llu %10llu %8llu %9llu %9llu %6.1f%%\n",
		       (unsigned long long)k->block_size, (unsigned long long)k->total_allocated,
		       (unsigned long long)k->total_freed, (unsigned long long)k->active_blocks,
		       (unsigned long long)k->free_blocks, (unsigned long long)k->total_chunks,
		       (unsigned long long)k->overflow, 100.0 * frag(k->active_blocks, k->free_blocks));
	}
}

static void print_json(const struct target *tg, const struct totals *t)
{
	const struct gwmem_shm_header *h = &tg->view.hdr;
	const struct gwmem_shm_counters *c = &h->counters;
	char cmd[GWMEM_SHM_CMDLINE_MAX + 1];

	gw_view_command(&tg->view, cmd, sizeof(cmd));
	printf("{\"pid\": %u, \"command\": ", h->pid);
	json_string(stdout, cmd);
	printf(", \"state\": \"%s\", \"segment\": ", segment_state(&tg->view));
	json_string(stdout, tg->path);
	printf(", \"segment_size\": %llu, \"live_bytes\": %llu, \"live_count\": %llu, "
	       "\"table_slots\": %llu, \"stripes\": %u, \"stacks_used\": %llu, \"stack_capacity\": %u, "
	       "\"max_frames\": %u, \"threshold_seconds\": %u, \"sample_rate\": %u,\n",
	       (unsigned long long)h->segment_size, (unsigned long long)t->bytes,
	       (unsigned long long)t->count, (unsigned long long)t->slots, h->nstripes,
	       (unsigned long long)c->stacks_used, h->stack_capacity, h->max_frames,
	       h->config.threshold_seconds, h->config.sample_rate);
	printf(" \"counters\": {\"untracked_table_full\": %llu, \"untracked_internal\": %llu, "
	       "\"sampled_out\": %llu, \"dropped_stacks\": %llu, \"invalid_frees\": %llu, "
	       "\"double_frees\": %llu, \"forwarded_allocs\": %llu, \"mmap_failures\": %llu, "
	       "\"reports_written\": %llu},\n",
	       (unsigned long long)c->untracked_table_full, (unsigned long long)c->untracked_internal,
	       (unsigned long long)c->sampled_out, (unsigned long long)c->dropped_stacks,
	       (unsigned long long)c->invalid_frees, (unsigned long long)c->double_frees,
	       (unsigned long long)c->forwarded_allocs, (unsigned long long)c->mmap_failures,
	       (unsigned long long)c->reports_written);
	printf(" \"pool\": {\"active_bytes\": %llu, \"free_bytes\": %llu, \"chunks\": %llu, "
	       "\"fragmentation\": %.4f},\n \"classes\": [",
	       (unsigned long long)t->pool_active_bytes, (unsigned long long)t->pool_free_bytes,
	       (unsigned long long)t->pool_chunks, frag(t->pool_active_bytes, t->pool_free_bytes));
	for (uint32_t i = 0; i < h->nclasses; i++) {
		const struct gwmem_shm_class *k = &h->classes[i];
		printf("%s\n  {\"block_size\": %llu, \"total_allocated\": %llu, \"total_freed\": %llu, "
		       "\"active_blocks\": %llu, \"free_blocks\": %llu, \"total_chunks\": %llu, "
		       "\"released_chunks\": %llu, \"overflow\": %llu, \"fragmentation\": %.4f}",
		       i ? "," : "", (unsigned long long)k->block_size,
		       (unsigned long long)k->total_allocated, (unsigned long long)k->total_freed,
		       (unsigned long long)k->active_blocks, (unsigned long long)k->free_blocks,
		       (unsigned long long)k->total_chunks, (unsigned long long)k->released_chunks,
		       (unsigned long long)k->overflow, frag(k->active_blocks, k->free_blocks));
	}
	printf("%s]}\n", h->nclasses ? "\n " : "");
}

struct prom_metric {
	const char *name;
	const char *help;
};

static const struct prom_metric prom[] = {
	{ "gwmem_live_bytes", "Bytes in live tracked allocations." },
	{ "gwmem_live_allocations", "Live tracked allocations." },
	{ "gwmem_table_slots", "Allocation table capacity (slots)." },
	{ "gwmem_table_fill_ratio", "Allocation table fill (live / slots)." },
	{ "gwmem_stacks_used", "Distinct backtraces in the stack table." },
	{ "gwmem_stack_capacity", "Stack table capacity." },
	{ "gwmem_untracked_allocations_total", "Allocations served but not tracked, by reason." },
	{ "gwmem_dropped_stacks_total", "Allocations recorded without a stack (stack table full)." },
	{ "gwmem_invalid_frees_total", "Frees of pointers gwmem never handed out." },
	{ "gwmem_double_frees_total", "Frees of pool blocks already free." },
	{ "gwmem_forwarded_allocations_total", "Allocations served by the next allocator." },
	{ "gwmem_uptime_seconds", "Seconds since the segment was created." },
	{ "gwmem_pool_active_blocks", "Pool blocks handed out, per size class." },
	{ "gwmem_pool_free_blocks", "Carved pool blocks on free lists, per size class." },
	{ "gwmem_pool_chunks", "Pool chunks backed by memory, per size class." },
	{ "gwmem_pool_overflow_total", "Requests sent to the next allocator because the class was full." },
	{ "gwmem_pool_fragmentation_ratio", "Free carved bytes / carved bytes, per size class." },
};

static void prom_value(int m, const struct target *tg, const char *extra, double value)
{
	char cmd[GWMEM_SHM_CMDLINE_MAX + 1];

	command_name(&tg->view, cmd, sizeof(cmd));
	printf("%s{pid=\"%u\",command=\"", prom[m].name, tg->view.hdr.pid);
	put_escaped(stdout, GW_ESC_PROM, cmd);
	printf("\"%s} %.17g\n", extra ? extra : "", value);
}

static void print_prom(const struct target *tgs, const struct totals *ts, size_t n)
{
	for (int m = 0; m < (int)(sizeof(prom) / sizeof(prom[0])); m++) {
		/* monotonically growing counts are counters (the _total names) */
		size_t len = strlen(prom[m].name);
		bool counter = len > 6 && strcmp(prom[m].name + len - 6, "_total") == 0;
		printf("# HELP %s %s\n# TYPE %s %s\n", prom[m].name, prom[m].help, prom[m].name,
		       counter ? "counter" : "gauge");
		for (size_t i = 0; i < n; i++) {
			const struct target *tg = &tgs[i];
			const struct totals *t = &ts[i];
			const struct gwmem_shm_header *h = &tg->view.hdr;
			const struct gwmem_shm_counters *c = &h->counters;
			char extra[96];
			switch (m) {
			case 0: prom_value(m, tg, NULL, (double)t->bytes); break;
			case 1: prom_value(m, tg, NULL, (double)t->count); break;
			case 2: prom_value(m, tg, NULL, (double)t->slots); break;
			case 3: prom_value(m, tg, NULL, t->slots ? (double)t->count / (double)t->slots : 0); break;
			case 4: prom_value(m, tg, NULL, (double)c->stacks_used); break;
			case 5: prom_value(m, tg, NULL, (double)h->stack_capacity); break;
			case 6:
				prom_value(m, tg, ",reason=\"table_full\"", (double)c->untracked_table_full);
				prom_value(m, tg, ",reason=\"internal\"", (double)c->untracked_internal);
				prom_value(m, tg, ",reason=\"sampled_out\"", (double)c->sampled_out);
				break;
			case 7: prom_value(m, tg, NULL, (double)c->dropped_stacks); break;
			case 8: prom_value(m, tg, NULL, (double)c->invalid_frees); break;
			case 9: prom_value(m, tg, NULL, (double)c->double_frees); break;
			case 10: prom_value(m, tg, NULL, (double)c->forwarded_allocs); break;
			case 11: prom_value(m, tg, NULL, (double)gw_view_now_ds(&tg->view) / 10.0); break;
			default:
				for (uint32_t k = 0; k < h->nclasses; k++) {
					const struct gwmem_shm_class *cl = &h->classes[k];
					snprintf(extra, sizeof(extra), ",class_size=\"%llu\"",
						 (unsigned long long)cl->block_size);
					double val = m == 12 ? (double)cl->active_blocks :
						     m == 13 ? (double)cl->free_blocks :
						     m == 14 ? (double)cl->total_chunks :
						     m == 15 ? (double)cl->overflow :
						     frag(cl->active_blocks, cl->free_blocks);
					prom_value(m, tg, extra, val);
				}
			}
		}
	}
}

static int run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "shm-dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	enum fmt fmt = FMT_TEXT;
	int ch, rc = 0;

	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			if (strcmp(optarg, "text") == 0)
				fmt = FMT_TEXT;
			else if (strcmp(optarg, "json") == 0)
				fmt = FMT_JSON;
			else if (strcmp(optarg, "prometheus") == 0)
				fmt = FMT_PROM;
			else
				return usage_error(&cmd_stats, "unknown format '%s'", optarg);
			break;
		case 'j': fmt = FMT_JSON; break;
		case 'd': dir = optarg; break;
		case 'h': return print_help(&cmd_stats);
		default: return usage_error(&cmd_stats, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (argc - optind > 1)
		return usage_error(&cmd_stats, "too many arguments");
	dir = shm_dir(dir);

	struct target *tgs = NULL;
	struct totals *ts = NULL;
	size_t n = 0;

	if (optind < argc) {
		tgs = calloc(1, sizeof(*tgs));
		ts = calloc(1, sizeof(*ts));
		if (!tgs || !ts)
			return GWMEM_EXIT_ERROR;
		rc = target_open("stats", argv[optind], dir, &tgs[0]);
		if (rc)
			goto out;
		n = 1;
	} else {
		DIR *d = opendir(dir);
		if (!d) {
			int e = errno;
			fprintf(stderr, "gwmem stats: %s: %s\n", dir, strerror(e));
			return e == EACCES ? GWMEM_EXIT_ACCESS : GWMEM_EXIT_NOENT;
		}
		size_t cap = 0;
		for (struct dirent *e; (e = readdir(d));) {
			pid_t pid;
			uint64_t st;
			if (!parse_segment_name(e->d_name, &pid, &st) || !proc_alive(pid, st))
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				struct target *nt = realloc(tgs, cap * sizeof(*tgs));
				if (!nt)
					break;
				tgs = nt;
			}
			struct target *t = &tgs[n];
			memset(t, 0, sizeof(*t));
			snprintf(t->path, sizeof(t->path), "%s/%s", dir, e->d_name);
			if (gw_view_open(&t->view, t->path) == 0) {
				t->live = true;
				n++;
			}
		}
		closedir(d);
		ts = calloc(n ? n : 1, sizeof(*ts));
		if (!ts) {
			rc = GWMEM_EXIT_ERROR;
			goto out;
		}
	}

	size_t ok = 0;
	for (size_t i = 0; i < n; i++) {
		int err = gather(tgs[i].path, &tgs[i].view, &ts[ok]);
		if (err) {
			rc = view_fail("stats", tgs[i].path, err, NULL);
			gw_view_close(&tgs[i].view);
			continue;
		}
		if (ok != i)
			tgs[ok] = tgs[i];
		ok++;
	}
	if (fmt == FMT_PROM) {
		print_prom(tgs, ts, ok);
	} else if (fmt == FMT_JSON) {
		if (optind == argc)
			printf("[");
		for (size_t i = 0; i < ok; i++) {
			if (optind == argc)
				printf(i ? ",\n" : "\n");
			print_json(&tgs[i], &ts[i]);
		}
		if (optind == argc)
			printf("]\n");
	} else {
		for (size_t i = 0; i < ok; i++) {
			if (i)
				printf("\n");
			print_text(&tgs[i], &ts[i]);
		}
	}
	for (size_t i = 0; i < ok; i++)
		target_close(&tgs[i]);
out:
	free(tgs);
	free(ts);
	return rc;
}

const struct cmd cmd_stats = {
	.name = "stats",
	.summary = "pool statistics per size class, table fill, untracked counts",
	.run = run,
	.help = help,
};
