/*
 * cmd-stats.c - `gwmem stats`: pool statistics per size class, totals,
 * fragmentation, tracking table fill and untracked/dropped counts, as text,
 * JSON, or Prometheus textfile-collector samples.
 *
 * One table lists every figure once (metrics[] per process, class_metrics[]
 * per pool size class): where it sits in the collected struct, its JSON key,
 * its text line, its Prometheus family, type and help.  The three printers
 * walk the tables; a new counter is one new row.
 */
#include "config.h"

#include <stddef.h>
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

/* --- the figures ---------------------------------------------------------- */

/* Everything printed about one process, collected once. */
struct stats {
	uint64_t segment_size, segment_memory, max_segment_bytes, live_bytes, live_count, table_slots, stripes;
	uint64_t stacks_used, stack_capacity, max_frames, threshold_seconds, sample_rate;
	uint64_t untracked_table_full, untracked_segment_full, untracked_internal, sampled_out, dropped_stacks;
	uint64_t invalid_frees, double_frees, forwarded_allocs, mmap_failures, reports_written;
	uint64_t address_space_given_back;
	uint64_t pool_active_bytes, pool_free_bytes, pool_chunks;
	double table_fill, uptime_seconds, pool_fragmentation;
};

/* One pool size class. */
struct class_stats {
	struct gwmem_shm_class k;
	double fragmentation;         /* free carved bytes / carved bytes */
};

enum kind {
	COUNT,                        /* uint64_t */
	RATIO,                        /* double in 0..1: text as a percentage */
	SECONDS,                      /* double */
};

enum prom_type { GAUGE, COUNTER };

/* JSON objects the per-process figures sit in. */
enum section { TOP, COUNTERS, POOL, NSECTIONS };

/* Text lines, in the order printed. */
enum line { NO_TEXT, LIVE, TABLE, STACKS, UNTRACKED, DROPPED, MISUSE, OTHER, POOLS, NLINES };

static const char *const line_label[NLINES] = {
	[LIVE] = "live tracked:     ",
	[TABLE] = "allocation table: ",
	[STACKS] = "stack table:      ",
	[UNTRACKED] = "untracked:        ",
	[DROPPED] = "dropped stacks:   ",
	[MISUSE] = "misuse:           ",
	[OTHER] = "other:            ",
	[POOLS] = "pools:            ",
};

struct metric {
	const char *name;             /* JSON key in 'section'; NULL: not in JSON */
	enum section section;
	enum line line;               /* NO_TEXT: not in the text output */
	const char *text;             /* the value's words on its line; "%v" is the value */
	const char *prom;             /* Prometheus family; NULL: not exported */
	const char *label;            /* this sample's own label in the family, or NULL */
	enum prom_type type;
	const char *help;
	enum kind kind;
	size_t offset;                /* in struct stats */
};

#define S(field) offsetof(struct stats, field)

/*
 * Order: the text fragments of a line, the keys of a JSON object and the
 * Prometheus families each follow the row order; the rows of one family
 * (its labelled samples) are adjacent.
 */
static const struct metric metrics[] = {
	{ "segment_size", TOP, NO_TEXT, NULL, NULL, NULL, GAUGE, NULL, COUNT, S(segment_size) },
	{ "segment_memory", TOP, NO_TEXT, NULL, "gwmem_segment_memory_bytes", NULL, GAUGE,
	  "Bytes of the segment file backed by memory (what du shows).", COUNT, S(segment_memory) },
	{ "max_segment_bytes", TOP, NO_TEXT, NULL, NULL, NULL, GAUGE, NULL, COUNT, S(max_segment_bytes) },
	{ "live_bytes", TOP, LIVE, "%v bytes", "gwmem_live_bytes", NULL, GAUGE,
	  "Bytes in live tracked allocations.", COUNT, S(live_bytes) },
	{ "live_count", TOP, LIVE, " in %v allocations", "gwmem_live_allocations", NULL, GAUGE,
	  "Live tracked allocations.", COUNT, S(live_count) },
	{ NULL, TOP, TABLE, "%v of", NULL, NULL, GAUGE, NULL, COUNT, S(live_count) },
	{ "table_slots", TOP, TABLE, " %v slots", "gwmem_table_slots", NULL, GAUGE,
	  "Allocation table capacity (slots).", COUNT, S(table_slots) },
	{ NULL, TOP, TABLE, " (%v)", "gwmem_table_fill_ratio", NULL, GAUGE,
	  "Allocation table fill (live / slots).", RATIO, S(table_fill) },
	{ "stripes", TOP, TABLE, ", %v stripes", NULL, NULL, GAUGE, NULL, COUNT, S(stripes) },
	{ "stacks_used", TOP, STACKS, "%v of", "gwmem_stacks_used", NULL, GAUGE,
	  "Distinct backtraces in the stack table.", COUNT, S(stacks_used) },
	{ "stack_capacity", TOP, STACKS, " %v stacks", "gwmem_stack_capacity", NULL, GAUGE,
	  "Stack table capacity.", COUNT, S(stack_capacity) },
	{ "max_frames", TOP, STACKS, ", %v frames max", NULL, NULL, GAUGE, NULL, COUNT, S(max_frames) },
	{ "threshold_seconds", TOP, NO_TEXT, NULL, NULL, NULL, GAUGE, NULL, COUNT, S(threshold_seconds) },
	{ "untracked_table_full", COUNTERS, UNTRACKED, "%v table full",
	  "gwmem_untracked_allocations_total", "reason=\"table_full\"", COUNTER,
	  "Allocations served but not tracked, by reason.", COUNT, S(untracked_table_full) },
	{ "untracked_internal", COUNTERS, UNTRACKED, ", %v internal",
	  "gwmem_untracked_allocations_total", "reason=\"internal\"", COUNTER,
	  NULL, COUNT, S(untracked_internal) },
	{ "sampled_out", COUNTERS, UNTRACKED, ", %v sampled out",
	  "gwmem_untracked_allocations_total", "reason=\"sampled_out\"", COUNTER,
	  NULL, COUNT, S(sampled_out) },
	{ "sample_rate", TOP, UNTRACKED, " (1 in %v)", NULL, NULL, GAUGE, NULL, COUNT, S(sample_rate) },
	{ "dropped_stacks", COUNTERS, DROPPED, "%v", "gwmem_dropped_stacks_total", NULL, COUNTER,
	  "Allocations recorded without a stack (stack table full).", COUNT, S(dropped_stacks) },
	{ "invalid_frees", COUNTERS, MISUSE, "%v invalid frees", "gwmem_invalid_frees_total", NULL, COUNTER,
	  "Frees of pointers gwmem never handed out.", COUNT, S(invalid_frees) },
	{ "double_frees", COUNTERS, MISUSE, ", %v double frees", "gwmem_double_frees_total", NULL, COUNTER,
	  "Frees of pool blocks already free.", COUNT, S(double_frees) },
	{ "forwarded_allocs", COUNTERS, OTHER, "%v forwarded allocations",
	  "gwmem_forwarded_allocations_total", NULL, COUNTER,
	  "Allocations served by the next allocator.", COUNT, S(forwarded_allocs) },
	{ "mmap_failures", COUNTERS, OTHER, ", %v mmap failures", "gwmem_mmap_failures_total", NULL, COUNTER,
	  "Chunk or segment mappings that failed.", COUNT, S(mmap_failures) },
	{ "reports_written", COUNTERS, OTHER, ", %v reports written", "gwmem_reports_written_total", NULL,
	  COUNTER, "Signal reports written.", COUNT, S(reports_written) },
	{ "untracked_segment_full", COUNTERS, OTHER, ", %v times the segment could not grow",
	  "gwmem_segment_full_total", NULL, COUNTER,
	  "Times the segment could not grow (max_segment_bytes or a full shm_dir).", COUNT,
	  S(untracked_segment_full) },
	{ "address_space_given_back", COUNTERS, OTHER, ", %v bytes of address space given back",
	  "gwmem_address_space_given_back_bytes_total", NULL, COUNTER,
	  "Address space gwmem unmapped when the next allocator ran out of it (RLIMIT_AS).", COUNT,
	  S(address_space_given_back) },
	{ NULL, TOP, NO_TEXT, NULL, "gwmem_uptime_seconds", NULL, GAUGE,
	  "Seconds since the segment was created.", SECONDS, S(uptime_seconds) },
	{ "active_bytes", POOL, POOLS, "%v bytes active", NULL, NULL, GAUGE, NULL, COUNT, S(pool_active_bytes) },
	{ "free_bytes", POOL, POOLS, ", %v bytes free", NULL, NULL, GAUGE, NULL, COUNT, S(pool_free_bytes) },
	{ "chunks", POOL, POOLS, ", %v chunks", NULL, NULL, GAUGE, NULL, COUNT, S(pool_chunks) },
	{ "fragmentation", POOL, POOLS, ", fragmentation %v", NULL, NULL, GAUGE, NULL, RATIO,
	  S(pool_fragmentation) },
};

struct class_metric {
	const char *name;             /* JSON key */
	const char *column;           /* text table heading; NULL: not in the table */
	int width;
	const char *prom;             /* Prometheus family, labelled class_size; NULL: not exported */
	enum prom_type type;
	const char *help;
	enum kind kind;
	size_t offset;                /* in struct class_stats */
};

#define C(field) offsetof(struct class_stats, field)

static const struct class_metric class_metrics[] = {
	{ "block_size", "CLASS", 8, NULL, GAUGE, NULL, COUNT, C(k.block_size) },
	{ "total_allocated", "ALLOCATED", 12, NULL, GAUGE, NULL, COUNT, C(k.total_allocated) },
	{ "total_freed", "FREED", 12, NULL, GAUGE, NULL, COUNT, C(k.total_freed) },
	{ "active_blocks", "ACTIVE", 10, "gwmem_pool_active_blocks", GAUGE,
	  "Pool blocks handed out, per size class.", COUNT, C(k.active_blocks) },
	{ "free_blocks", "FREE", 8, "gwmem_pool_free_blocks", GAUGE,
	  "Carved pool blocks on free lists, per size class.", COUNT, C(k.free_blocks) },
	{ "total_chunks", "CHUNKS", 9, "gwmem_pool_chunks", GAUGE,
	  "Pool chunks backed by memory, per size class.", COUNT, C(k.total_chunks) },
	{ "released_chunks", NULL, 0, NULL, GAUGE, NULL, COUNT, C(k.released_chunks) },
	{ "overflow", "OVERFLOW", 9, "gwmem_pool_overflow_total", COUNTER,
	  "Requests sent to the next allocator because the class was full.", COUNT, C(k.overflow) },
	{ "fragmentation", "FRAG", 7, "gwmem_pool_fragmentation_ratio", GAUGE,
	  "Free carved bytes / carved bytes, per size class.", RATIO, C(fragmentation) },
};

#define NMETRICS (sizeof(metrics) / sizeof(metrics[0]))
#define NCLASS_METRICS (sizeof(class_metrics) / sizeof(class_metrics[0]))

static uint64_t count_at(const void *base, size_t offset)
{
	uint64_t v;
	memcpy(&v, (const char *)base + offset, sizeof(v));
	return v;
}

static double real_at(const void *base, size_t offset)
{
	double v;
	memcpy(&v, (const char *)base + offset, sizeof(v));
	return v;
}

static double value_at(const void *base, enum kind kind, size_t offset)
{
	return kind == COUNT ? (double)count_at(base, offset) : real_at(base, offset);
}

static double frag(uint64_t active, uint64_t free_)
{
	return active + free_ ? (double)free_ / (double)(active + free_) : 0.0;
}

/* --- parse ---------------------------------------------------------------- */

enum format { FMT_TEXT, FMT_JSON, FMT_PROM };

struct stats_args {
	struct common_opts co;
	enum format format;
	const char *target;           /* NULL: every running process */
};

static int stats_option(const struct cmd *c, void *args, int ch, const char *arg)
{
	struct stats_args *a = args;

	if (ch != 'f')
		return usage_error(c, "unknown option");
	if (strcmp(arg, "text") == 0)
		a->format = FMT_TEXT;
	else if (strcmp(arg, "json") == 0)
		a->format = FMT_JSON;
	else if (strcmp(arg, "prometheus") == 0)
		a->format = FMT_PROM;
	else
		return usage_error(c, "unknown format '%s'", arg);
	return 0;
}

static int stats_parse(int argc, char **argv, struct stats_args *a)
{
	static const struct option own[] = {
		{ "format", required_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	int operand, rc = parse_options(&cmd_stats, argc, argv, COMMON_SHM_DIR | COMMON_JSON, own, "",
					stats_option, a, &a->co, &operand);
	if (rc != PARSE_OK)
		return rc;
	if (a->co.json)
		a->format = FMT_JSON;
	if (argc - operand > 1)
		return usage_error(&cmd_stats, "too many arguments");
	a->target = operand < argc ? argv[operand] : NULL;
	return PARSE_OK;
}

/* --- collect -------------------------------------------------------------- */

struct stats_set {
	struct target *t;
	struct stats *st;
	size_t n, cap;
};

static int stats_gather(const struct target *tg, struct stats *s)
{
	const struct gw_view *v = &tg->view;
	const struct gwmem_shm_header *h = &v->hdr;
	const struct gwmem_shm_counters *c = &h->counters;
	struct gw_view_snap_stats snap;
	int err = gw_view_snapshot(v, NULL, NULL, &snap);

	if (err)
		return err;
	memset(s, 0, sizeof(*s));
	s->segment_size = h->segment_size;
	s->segment_memory = h->version >= 2 ? h->allocated_bytes : h->segment_size;
	s->max_segment_bytes = h->version >= 2 ? h->max_segment_bytes : h->segment_size;
	s->live_bytes = snap.bytes;
	s->live_count = snap.records;
	s->table_slots = (uint64_t)h->nstripes * h->slots_per_stripe;
	s->table_fill = s->table_slots ? (double)s->live_count / (double)s->table_slots : 0.0;
	s->stripes = h->nstripes;
	s->stacks_used = c->stacks_used;
	s->stack_capacity = h->stack_capacity;
	s->max_frames = h->max_frames;
	s->threshold_seconds = h->config.threshold_seconds;
	s->sample_rate = h->config.sample_rate;
	s->untracked_table_full = c->untracked_table_full;
	s->untracked_segment_full = c->untracked_segment_full;
	s->untracked_internal = c->untracked_internal;
	s->sampled_out = c->sampled_out;
	s->dropped_stacks = c->dropped_stacks;
	s->invalid_frees = c->invalid_frees;
	s->double_frees = c->double_frees;
	s->forwarded_allocs = c->forwarded_allocs;
	s->mmap_failures = c->mmap_failures;
	s->reports_written = c->reports_written;
	s->address_space_given_back = c->address_space_given_back;
	s->uptime_seconds = (double)gw_view_now_ds(v) / 10.0;
	for (uint32_t i = 0; i < h->nclasses; i++) {
		s->pool_active_bytes += h->classes[i].active_blocks * h->classes[i].block_size;
		s->pool_free_bytes += h->classes[i].free_blocks * h->classes[i].block_size;
		s->pool_chunks += h->classes[i].total_chunks;
	}
	s->pool_fragmentation = frag(s->pool_active_bytes, s->pool_free_bytes);
	return 0;
}

static struct target *set_add(struct stats_set *set)
{
	if (set->n == set->cap) {
		size_t cap = set->cap ? 2 * set->cap : 16;
		struct target *nt = realloc(set->t, cap * sizeof(*nt));
		if (!nt)
			return NULL;
		set->t = nt;
		set->cap = cap;
	}
	memset(&set->t[set->n], 0, sizeof(set->t[0]));
	return &set->t[set->n];
}

/* Every segment whose process runs now. */
static int add_running(void *ctx, const struct segment_entry *e)
{
	struct stats_set *set = ctx;
	struct target *t;

	if (!proc_alive(e->pid, e->starttime))
		return 0;
	t = set_add(set);
	if (!t)
		return GWMEM_EXIT_ERROR;
	snprintf(t->path, sizeof(t->path), "%s/%s", e->dir, e->name);
	if (gw_view_open(&t->view, t->path) == 0) {
		t->live = true;
		set->n++;
	}
	return 0;
}

/*
 * Open the target (or every running one) and gather its figures.  A
 * segment that fails its snapshot is reported and left out; its exit
 * status is returned after the others are printed.
 */
static int stats_collect(const struct stats_args *a, struct stats_set *set, int *partial_rc)
{
	int rc;

	if (a->target) {
		struct target *t = set_add(set);
		if (!t)
			return GWMEM_EXIT_ERROR;
		rc = target_open("stats", a->target, a->co.shm_dir, t);
		if (rc)
			return rc;
		set->n = 1;
	} else {
		rc = segment_foreach("stats", a->co.shm_dir, add_running, set);
		if (rc)
			return rc;
	}
	set->st = calloc(set->n ? set->n : 1, sizeof(*set->st));
	if (!set->st)
		return GWMEM_EXIT_ERROR;
	size_t ok = 0;
	for (size_t i = 0; i < set->n; i++) {
		int err = stats_gather(&set->t[i], &set->st[ok]);
		if (err) {
			*partial_rc = view_fail("stats", set->t[i].path, err, NULL);
			target_close(&set->t[i]);
			continue;
		}
		if (ok != i)
			set->t[ok] = set->t[i];
		ok++;
	}
	set->n = ok;
	return 0;
}

/* --- print ---------------------------------------------------------------- */

/* fragment with "%v" replaced by the value */
static void text_fragment(const char *fragment, const struct stats *s, const struct metric *m)
{
	const char *v = strstr(fragment, "%v");

	fwrite(fragment, 1, (size_t)(v - fragment), stdout);
	if (m->kind == COUNT)
		printf("%llu", (unsigned long long)count_at(s, m->offset));
	else if (m->kind == RATIO)
		printf("%.1f%%", 100.0 * real_at(s, m->offset));
	else
		printf("%.1f", real_at(s, m->offset));
	fputs(v + 2, stdout);
}

static void print_text(const struct target *tg, const struct stats *s)
{
	const struct gwmem_shm_header *h = &tg->view.hdr;
	char cmd[GWMEM_SHM_CMDLINE_MAX + 1];

	gw_view_command(&tg->view, cmd, sizeof(cmd));
	printf("pid %u (", h->pid);
	put_escaped(stdout, GW_ESC_TEXT, cmd);
	printf("), %s\n", segment_state(&tg->view));
	printf("segment:          %s, %llu bytes in memory (at most %llu), %llu bytes of address space\n",
	       tg->path, (unsigned long long)s->segment_memory, (unsigned long long)s->max_segment_bytes,
	       (unsigned long long)s->segment_size);
	for (int line = LIVE; line < NLINES; line++) {
		fputs(line_label[line], stdout);
		for (size_t i = 0; i < NMETRICS; i++)
			if (metrics[i].line == (enum line)line)
				text_fragment(metrics[i].text, s, &metrics[i]);
		putchar('\n');
	}
	if (!h->nclasses)
		return;
	putchar('\n');
	for (size_t i = 0, col = 0; i < NCLASS_METRICS; i++)
		if (class_metrics[i].column)
			printf("%s%*s", col++ ? " " : "", class_metrics[i].width, class_metrics[i].column);
	putchar('\n');
	for (uint32_t k = 0; k < h->nclasses; k++) {
		struct class_stats cs = { h->classes[k], frag(h->classes[k].active_blocks, h->classes[k].free_blocks) };
		for (size_t i = 0, col = 0; i < NCLASS_METRICS; i++) {
			const struct class_metric *m = &class_metrics[i];
			if (!m->column)
				continue;
			fputs(col++ ? " " : "", stdout);
			if (m->kind == COUNT)
				printf("%*llu", m->width, (unsigned long long)count_at(&cs, m->offset));
			else
				printf("%*.1f%%", m->width - 1, 100.0 * real_at(&cs, m->offset));
		}
		putchar('\n');
	}
}

static void json_value(const void *base, enum kind kind, size_t offset)
{
	if (kind == COUNT)
		printf("%llu", (unsigned long long)count_at(base, offset));
	else
		printf("%.4f", real_at(base, offset));
}

static void print_json(const struct target *tg, const struct stats *s)
{
	static const char *const opening[NSECTIONS] = {
		[TOP] = "", [COUNTERS] = ",\n \"counters\": {", [POOL] = ",\n \"pool\": {",
	};
	const struct gwmem_shm_header *h = &tg->view.hdr;
	char cmd[GWMEM_SHM_CMDLINE_MAX + 1];

	gw_view_command(&tg->view, cmd, sizeof(cmd));
	printf("{\"pid\": %u, \"command\": ", h->pid);
	json_string(stdout, cmd);
	printf(", \"state\": \"%s\", \"segment\": ", segment_state(&tg->view));
	json_string(stdout, tg->path);
	for (int sec = TOP; sec < NSECTIONS; sec++) {
		bool first = sec != TOP;    /* the top object already has keys */
		fputs(opening[sec], stdout);
		for (size_t i = 0; i < NMETRICS; i++) {
			const struct metric *m = &metrics[i];
			if (!m->name || m->section != (enum section)sec)
				continue;
			printf("%s\"%s\": ", first ? "" : ", ", m->name);
			json_value(s, m->kind, m->offset);
			first = false;
		}
		if (sec != TOP)
			putchar('}');
	}
	printf(",\n \"classes\": [");
	for (uint32_t k = 0; k < h->nclasses; k++) {
		struct class_stats cs = { h->classes[k], frag(h->classes[k].active_blocks, h->classes[k].free_blocks) };
		printf("%s\n  {", k ? "," : "");
		for (size_t i = 0; i < NCLASS_METRICS; i++) {
			printf("%s\"%s\": ", i ? ", " : "", class_metrics[i].name);
			json_value(&cs, class_metrics[i].kind, class_metrics[i].offset);
		}
		putchar('}');
	}
	printf("%s]}\n", h->nclasses ? "\n " : "");
}

/* name{pid="P",command="C"[,label]} value: the command escaped as a label value */
static void prom_sample(const char *name, const struct target *tg, const char *label, double value)
{
	char cmd[GWMEM_SHM_CMDLINE_MAX + 1];

	command_name(&tg->view, cmd, sizeof(cmd));
	printf("%s{pid=\"%u\",command=\"", name, tg->view.hdr.pid);
	put_escaped(stdout, GW_ESC_PROM, cmd);
	printf("\"%s%s} %.17g\n", label ? "," : "", label ? label : "", value);
}

static void prom_family(const char *name, const char *text, enum prom_type type)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, text, name, type == COUNTER ? "counter" : "gauge");
}

/*
 * One family at a time, every process inside it: the exposition format
 * wants all samples of a family together.
 */
static void print_prom(const struct target *tgs, const struct stats *ss, size_t n)
{
	for (size_t i = 0; i < NMETRICS;) {
		size_t end = i + 1;
		if (!metrics[i].prom) {
			i++;
			continue;
		}
		while (end < NMETRICS && metrics[end].prom && strcmp(metrics[end].prom, metrics[i].prom) == 0)
			end++;
		prom_family(metrics[i].prom, metrics[i].help, metrics[i].type);
		for (size_t t = 0; t < n; t++)
			for (size_t j = i; j < end; j++)
				prom_sample(metrics[j].prom, &tgs[t], metrics[j].label,
					    value_at(&ss[t], metrics[j].kind, metrics[j].offset));
		i = end;
	}
	for (size_t i = 0; i < NCLASS_METRICS; i++) {
		const struct class_metric *m = &class_metrics[i];
		if (!m->prom)
			continue;
		prom_family(m->prom, m->help, m->type);
		for (size_t t = 0; t < n; t++) {
			const struct gwmem_shm_header *h = &tgs[t].view.hdr;
			for (uint32_t k = 0; k < h->nclasses; k++) {
				struct class_stats cs = { h->classes[k],
					frag(h->classes[k].active_blocks, h->classes[k].free_blocks) };
				char label[64];
				snprintf(label, sizeof(label), "class_size=\"%llu\"",
					 (unsigned long long)cs.k.block_size);
				prom_sample(m->prom, &tgs[t], label, value_at(&cs, m->kind, m->offset));
			}
		}
	}
}

static void stats_print(const struct stats_args *a, const struct stats_set *set)
{
	if (a->format == FMT_PROM) {
		print_prom(set->t, set->st, set->n);
	} else if (a->format == FMT_JSON) {
		/* one object for one target, an array for the whole device */
		if (!a->target)
			printf("[");
		for (size_t i = 0; i < set->n; i++) {
			if (!a->target)
				printf(i ? ",\n" : "\n");
			print_json(&set->t[i], &set->st[i]);
		}
		if (!a->target)
			printf("]\n");
	} else {
		for (size_t i = 0; i < set->n; i++) {
			if (i)
				printf("\n");
			print_text(&set->t[i], &set->st[i]);
		}
	}
}

static int stats_main(int argc, char **argv)
{
	struct stats_args a = { .format = FMT_TEXT };
	struct stats_set set = { 0 };
	int partial_rc = 0;
	int rc = stats_parse(argc, argv, &a);

	if (rc != PARSE_OK)
		return rc;
	rc = stats_collect(&a, &set, &partial_rc);
	if (!rc) {
		stats_print(&a, &set);
		rc = partial_rc;
	}
	for (size_t i = 0; i < set.n; i++)
		target_close(&set.t[i]);
	free(set.t);
	free(set.st);
	return rc;
}

const struct cmd cmd_stats = {
	.name = "stats",
	.summary = "pool statistics per size class, table fill, untracked counts",
	.main = stats_main,
	.help = help,
};
