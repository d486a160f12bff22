/*
 * report.c - grouping live records by allocation site and writing the
 * report (text, JSON, folded stacks).
 *
 * Owns: the per-stack-id aggregation (arrays indexed by stack id, so a
 * million records cost a million array updates, no hashing), the ranking,
 * and the output formats.  Leaves segment validation to view.c and
 * symbolization to a callback: dladdr in the preload, libdwfl in the CLI.
 *
 * The preload's reporter thread runs this, so nothing here may call malloc
 * or stdio: memory comes from os.c, output from a stack buffer + write(2).
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "elfsym.h"
#include "escape.h"
#include "fmt.h"
#include "os.h"
#include "report.h"

/* --- buffered output ---------------------------------------------------- */

struct out {
	int fd;
	int err;
	size_t len;
	char buf[4096];
};

static void out_flush(struct out *o)
{
	if (o->len && !o->err)
		o->err = gw_write_all(o->fd, o->buf, o->len);
	o->len = 0;
}

static void out_write(struct out *o, const char *s, size_t n)
{
	while (n) {
		size_t room = sizeof(o->buf) - o->len;
		size_t k = n < room ? n : room;
		memcpy(o->buf + o->len, s, k);
		o->len += k;
		s += k;
		n -= k;
		if (o->len == sizeof(o->buf))
			out_flush(o);
	}
}

static void out_puts(struct out *o, const char *s)
{
	out_write(o, s, strlen(s));
}

static void out_fmt(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_fmt(struct out *o, const char *fmt, ...)
{
	char tmp[1024];
	struct gw_buf b = GW_BUF_INIT(tmp);
	va_list ap;

	va_start(ap, fmt);
	gw_vformat(&b, fmt, ap);
	va_end(ap);
	gw_buf_cstr(&b);
	out_puts(o, tmp);
}

/* v tenths as "12.3" */
static void out_ds(struct out *o, uint64_t ds)
{
	out_fmt(o, "%llu.%u", (unsigned long long)(ds / 10), (unsigned)(ds % 10));
}

static void out_put(void *ctx, const char *s, size_t n)
{
	out_write(ctx, s, n);
}

/* A string from the segment or from the files it names, escaped for the output. */
static void out_esc(struct out *o, enum gw_escape_mode m, const char *s)
{
	gw_escape(m, s, out_put, o);
}

static void out_json_str(struct out *o, const char *s)
{
	out_write(o, "\"", 1);
	out_esc(o, GW_ESC_JSON, s);
	out_write(o, "\"", 1);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = src ? strnlen(src, cap - 1) : 0;
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

static const char *basename_of(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* --- grouping ----------------------------------------------------------- */

struct agg {
	uint64_t count;
	uint64_t bytes;
	uint32_t oldest;
	uint32_t pad;
};

struct collect_ctx {
	struct agg *agg;
	uint32_t nagg;
	uint64_t now_ds;
	uint64_t older_than_ds;
	uint64_t live_count;
	uint64_t live_bytes;
};

static int collect_stripe(void *ctx, uint32_t stripe, const struct gwmem_shm_record *slots,
			  uint32_t nslots, uint32_t count, uint64_t bytes)
{
	struct collect_ctx *c = ctx;

	c->live_count += count;
	c->live_bytes += bytes;
	for (uint32_t i = 0; i < nslots; i++) {
		const struct gwmem_shm_record *r = &slots[i];
		if (!r->ptr)
			continue;
		uint64_t age = c->now_ds > r->time_ds ? c->now_ds - r->time_ds : 0;
		if (age < c->older_than_ds)
			continue;
		/* stack ids were checked against the capacity by the snapshot */
		struct agg *a = &c->agg[r->stack_id < c->nagg ? r->stack_id : 0];
		if (!a->count || r->time_ds < a->oldest)
			a->oldest = r->time_ds;
		a->count++;
		a->bytes += r->size;
	}
	return 0;
}

/* Ranking order: more bytes first, then more records, then lower stack id. */
static bool site_before(const struct gw_site *a, const struct gw_site *b)
{
	if (a->bytes != b->bytes)
		return a->bytes > b->bytes;
	if (a->count != b->count)
		return a->count > b->count;
	return a->stack_id < b->stack_id;
}

/* Min-heap on rank (root = the worst kept site). */
static void heap_down(struct gw_site *h, uint32_t n, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, w = i;
		if (l < n && site_before(&h[w], &h[l]))
			w = l;
		if (r < n && site_before(&h[w], &h[r]))
			w = r;
		if (w == i)
			return;
		struct gw_site t = h[i];
		h[i] = h[w];
		h[w] = t;
		i = w;
	}
}

static void heap_up(struct gw_site *h, uint32_t i)
{
	while (i) {
		uint32_t p = (i - 1) / 2;
		if (!site_before(&h[p], &h[i]))
			return;
		struct gw_site t = h[i];
		h[i] = h[p];
		h[p] = t;
		i = p;
	}
}

int gw_report_collect(const struct gw_view *v, const struct gw_report_opts *o, struct gw_sites *out)
{
	struct collect_ctx c = { 0 };
	struct gw_view_snap_stats st;
	uint64_t nagg = (uint64_t)v->hdr.stack_capacity + 1;
	size_t agg_size = (size_t)nagg * sizeof(struct agg);
	int err;

	memset(out, 0, sizeof(*out));
	c.agg = gw_os_map(agg_size);
	if (!c.agg)
		return GW_VIEW_ERR_NOMEM;
	c.nagg = (uint32_t)nagg;
	c.now_ds = gw_view_now_ds(v);
	c.older_than_ds = o->older_than_ds;
	out->now_ds = c.now_ds;

	err = gw_view_snapshot(v, collect_stripe, &c, &st);
	if (err)
		goto out;
	out->retries = st.retries;
	out->live_count = c.live_count;
	out->live_bytes = c.live_bytes;

	uint64_t nonempty = 0;
	for (uint64_t i = 0; i < nagg; i++) {
		if (!c.agg[i].count || c.agg[i].bytes < o->min_bytes)
			continue;
		nonempty++;
		out->match_count += c.agg[i].count;
		out->match_bytes += c.agg[i].bytes;
	}
	out->nmatching = (uint32_t)nonempty;
	uint64_t keep = o->top && o->top < nonempty ? o->top : nonempty;
	out->map_size = keep ? (size_t)keep * sizeof(struct gw_site) : sizeof(struct gw_site);
	out->map = gw_os_map(out->map_size);
	if (!out->map) {
		out->map = NULL;
		err = GW_VIEW_ERR_NOMEM;
		goto out;
	}
	struct gw_site *h = out->map;
	uint32_t n = 0;
	for (uint64_t i = 0; i < nagg && keep; i++) {
		if (!c.agg[i].count || c.agg[i].bytes < o->min_bytes)
			continue;
		struct gw_site s = { (uint32_t)i, c.agg[i].oldest, c.agg[i].count, c.agg[i].bytes };
		if (n < keep) {
			h[n] = s;
			heap_up(h, n);
			n++;
		} else if (site_before(&s, &h[0])) {
			h[0] = s;
			heap_down(h, n, 0);
		}
	}
	/* heap sort: repeatedly move the worst to the end, giving best-first order */
	for (uint32_t end = n; end > 1; end--) {
		struct gw_site t = h[0];
		h[0] = h[end - 1];
		h[end - 1] = t;
		heap_down(h, end - 1, 0);
	}
	out->sites = h;
	out->nsites = n;
out:
	gw_os_unmap(c.agg, agg_size);
	if (err)
		gw_report_sites_release(out);
	return err;
}

void gw_report_sites_release(struct gw_sites *s)
{
	if (s->map)
		gw_os_unmap(s->map, s->map_size);
	s->map = NULL;
	s->sites = NULL;
	s->nsites = 0;
}

/* --- symbolizers -------------------------------------------------------- */

void gw_report_symbolize_modules(void *ctx, uint64_t address, struct gw_frame_info *fi)
{
	const struct gw_view *v = ctx;
	struct gwmem_shm_module m;

	memset(fi, 0, sizeof(*fi));
	fi->address = address;
	if (v && gw_view_module_find(v, address ? address - 1 : 0, &m)) {
		copy_str(fi->module, sizeof(fi->module), m.path);
		fi->offset = address - m.bias;
	}
}

void gw_report_symbolize_dladdr(void *ctx, uint64_t address, struct gw_frame_info *fi)
{
	Dl_info info;

	gw_report_symbolize_modules(ctx, address, fi);
	if (!address || (uintptr_t)address != address)
		return;
	memset(&info, 0, sizeof(info));
	if (!dladdr((void *)(uintptr_t)(address - 1), &info))
		return;
	if (info.dli_sname)
		copy_str(fi->function, sizeof(fi->function), info.dli_sname);
	if (!fi->module[0] && info.dli_fname) {
		copy_str(fi->module, sizeof(fi->module), info.dli_fname);
		fi->offset = address - (uint64_t)(uintptr_t)info.dli_fbase;
	}
}

/* --- site labels -------------------------------------------------------- */

/* libc, libstdc++, GLib and the usual x-helpers; "name*" is a prefix. */
static const char *const default_wrappers[] = {
	"malloc", "calloc", "realloc", "reallocarray", "__libc_malloc", "__libc_calloc",
	"__libc_realloc", "memalign", "aligned_alloc", "posix_memalign", "valloc", "pvalloc",
	"strdup", "__strdup", "strndup", "__strndup", "wcsdup", "__wcsdup",
	"asprintf", "__asprintf*", "vasprintf", "__vasprintf*", "___vasprintf*",
	"getline", "getdelim", "__getdelim", "_IO_getdelim", "open_memstream", "open_wmemstream",
	"_Znwm", "_Znam", "_Znwj", "_Znaj", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t",
	"_ZnwmSt11align_val_t*", "_ZnamSt11align_val_t*", "operator new*",
	"g_malloc*", "g_try_malloc*", "g_realloc*", "g_try_realloc*", "g_strdup*", "g_strndup",
	"g_memdup*", "g_slice_alloc*", "g_new*",
	"xmalloc", "xcalloc", "xrealloc", "xzalloc", "xstrdup", "xstrndup", "xmemdup", "xasprintf",
	"zmalloc", "zcalloc", "zrealloc", "zstrdup", "ztrymalloc*",
};

/* name (up to '@' or its end) against pattern[0..plen) */
static bool name_matches(const char *name, size_t nlen, const char *pat, size_t plen)
{
	if (plen && pat[plen - 1] == '*')
		return nlen >= plen - 1 && memcmp(name, pat, plen - 1) == 0;
	return nlen == plen && memcmp(name, pat, plen) == 0;
}

bool gw_report_is_wrapper(const char *fn, const char *extra)
{
	if (!fn || !fn[0])
		return false;
	const char *at = strchr(fn, '@');
	size_t nlen = at ? (size_t)(at - fn) : strlen(fn);

	for (size_t i = 0; i < GW_ARRAY_SIZE(default_wrappers); i++)
		if (name_matches(fn, nlen, default_wrappers[i], strlen(default_wrappers[i])))
			return true;
	for (const char *p = extra; p && *p;) {
		const char *comma = strchr(p, ',');
		size_t plen = comma ? (size_t)(comma - p) : strlen(p);
		while (plen && *p == ' ') {
			p++;
			plen--;
		}
		while (plen && p[plen - 1] == ' ')
			plen--;
		if (plen && name_matches(fn, nlen, p, plen))
			return true;
		if (!comma)
			break;
		p = comma + 1;
	}
	return false;
}

void gw_report_frame_label(const struct gw_frame_info *fi, char *dst, size_t cap)
{
	const char *file = basename_of(fi->file);
	const char *mod = basename_of(fi->module);

	if (fi->function[0] && file[0])
		gw_snprintf(dst, cap, "%s (%s:%u)", fi->function, file, fi->line);
	else if (fi->function[0] && mod[0])
		gw_snprintf(dst, cap, "%s (%s)", fi->function, mod);
	else if (fi->function[0])
		gw_snprintf(dst, cap, "%s", fi->function);
	else if (mod[0])
		gw_snprintf(dst, cap, "%s+0x%llx", mod, (unsigned long long)fi->offset);
	else
		gw_snprintf(dst, cap, "0x%llx", (unsigned long long)fi->address);
}

/* --- writers ------------------------------------------------------------ */

static void symbolize(const struct gw_view *v, const struct gw_report_opts *o, uint64_t addr,
		      struct gw_frame_info *fi)
{
	if (o->symbolize)
		o->symbolize(o->sym_ctx, addr, fi);
	else
		gw_report_symbolize_modules((void *)v, addr, fi);
	fi->address = addr;
	fi->module[sizeof(fi->module) - 1] = '\0';
	fi->function[sizeof(fi->function) - 1] = '\0';
	fi->file[sizeof(fi->file) - 1] = '\0';
}

int gw_report_site_frame(const struct gw_view *v, const struct gw_report_opts *o,
			 const uint64_t *frames, int depth, struct gw_frame_info *fi)
{
	for (int f = 0; f < depth; f++) {
		symbolize(v, o, frames[f], fi);
		if (!gw_report_is_wrapper(fi->function, o->wrappers))
			return f;
	}
	if (depth > 0)
		symbolize(v, o, frames[0], fi);
	else
		memset(fi, 0, sizeof(*fi));
	return 0;
}

/* Each module with its build-id: what a host needs to find the right files. */
static void write_modules(struct out *o, const struct gw_view *v, enum gw_report_format format)
{
	uint32_t cap = v->hdr.modules_capacity;
	size_t size = GW_ALIGN_UP((size_t)cap * sizeof(struct gwmem_shm_module) + 1, gw_os_page_size());
	struct gwmem_shm_module *mods = cap ? gw_os_map(size) : NULL;
	char hex[2 * sizeof(mods->build_id) + 1];
	int n = mods ? gw_view_modules(v, mods, cap) : 0;

	if (format == GW_REPORT_JSON)
		out_puts(o, ", \"modules\": [");
	else if (n > 0)
		out_puts(o, "\nmodules (start-end, build-id, path):\n");
	for (int i = 0; i < n; i++) {
		const struct gwmem_shm_module *m = &mods[i];
		const char *path = m->path[0] ? m->path : v->hdr.exe;
		uint32_t len = m->build_id_len < sizeof(m->build_id) ? m->build_id_len : sizeof(m->build_id);
		size_t k = 0;
		for (uint32_t b = 0; b < len; b++) {
			hex[k++] = "0123456789abcdef"[m->build_id[b] >> 4];
			hex[k++] = "0123456789abcdef"[m->build_id[b] & 15];
		}
		hex[k] = '\0';
		if (format == GW_REPORT_JSON) {
			out_fmt(o, "%s\n  {\"start\": \"0x%llx\", \"end\": \"0x%llx\", \"bias\": \"0x%llx\", "
				"\"build_id\": \"%s\", \"path\": ", i ? "," : "", (unsigned long long)m->start,
				(unsigned long long)m->end, (unsigned long long)m->bias, hex);
			out_json_str(o, path);
			out_puts(o, "}");
		} else {
			out_fmt(o, "  0x%llx-0x%llx %s ", (unsigned long long)m->start,
				(unsigned long long)m->end, k ? hex : "-");
			out_esc(o, GW_ESC_TEXT, path);
			out_puts(o, "\n");
		}
	}
	if (format == GW_REPORT_JSON)
		out_puts(o, n > 0 ? "\n]" : "]");
	if (mods)
		gw_os_unmap(mods, size);
}

static void write_stats(struct out *o, const struct gw_view *v, const struct gw_sites *s)
{
	const struct gwmem_shm_header *h = &v->hdr;
	const struct gwmem_shm_counters *c = &h->counters;
	static const char *states[] = { "starting", "running", "exited" };
	char cmd[GWMEM_SHM_CMDLINE_MAX + 1];
	uint64_t slots = (uint64_t)h->nstripes * h->slots_per_stripe;

	gw_view_command(v, cmd, sizeof(cmd));
	out_fmt(o, "gwmem report: pid %u (", h->pid);
	out_esc(o, GW_ESC_TEXT, cmd);
	out_puts(o, ")\n  executable:     ");
	out_esc(o, GW_ESC_TEXT, h->exe);
	out_puts(o, "\n");
	out_fmt(o, "  state:          %s%s\n", states[h->state < 3 ? h->state : 0],
		(h->flags & GW_VIEW_FLAG_SNAPSHOT) ? " (snapshot)" : "");
	out_puts(o, "  uptime:         ");
	out_ds(o, s->now_ds);
	out_puts(o, " s\n");
	out_fmt(o, "  live:           %llu bytes in %llu allocations\n",
		(unsigned long long)s->live_bytes, (unsigned long long)s->live_count);
	out_fmt(o, "  table:          %llu of %llu slots used, %u stacks of %u, threshold %u s\n",
		(unsigned long long)s->live_count, (unsigned long long)slots,
		(unsigned)c->stacks_used, h->stack_capacity, h->config.threshold_seconds);
	out_fmt(o, "  untracked:      %llu table full, %llu internal, %llu sampled out; %llu dropped stacks\n",
		(unsigned long long)c->untracked_table_full, (unsigned long long)c->untracked_internal,
		(unsigned long long)c->sampled_out, (unsigned long long)c->dropped_stacks);
	out_fmt(o, "  counters:       %llu forwarded, %llu invalid frees, %llu double frees, %llu mmap failures, %llu reports\n",
		(unsigned long long)c->forwarded_allocs, (unsigned long long)c->invalid_frees,
		(unsigned long long)c->double_frees, (unsigned long long)c->mmap_failures,
		(unsigned long long)c->reports_written);
	bool header = false;
	for (uint32_t i = 0; i < h->nclasses && i < GWMEM_SHM_MAX_CLASSES; i++) {
		const struct gwmem_shm_class *k = &h->classes[i];
		if (!k->total_allocated && !k->total_chunks)
			continue;
		if (!header) {
			out_puts(o, "  pool classes:   size active free chunks released overflow\n");
			header = true;
		}
		out_fmt(o, "    %llu %llu %llu %llu %llu %llu\n",
			(unsigned long long)k->block_size, (unsigned long long)k->active_blocks,
			(unsigned long long)k->free_blocks, (unsigned long long)k->total_chunks,
			(unsigned long long)k->released_chunks, (unsigned long long)k->overflow);
	}
}

static void write_frame_text(struct out *o, unsigned idx, const struct gw_frame_info *fi)
{
	out_fmt(o, "      #%u 0x%llx", idx, (unsigned long long)fi->address);
	if (fi->function[0]) {
		out_puts(o, " ");
		out_esc(o, GW_ESC_TEXT, fi->function);
	}
	if (fi->module[0]) {
		out_puts(o, " (");
		out_esc(o, GW_ESC_TEXT, fi->module);
		out_fmt(o, "+0x%llx)", (unsigned long long)fi->offset);
	}
	if (fi->file[0]) {
		out_puts(o, " at ");
		out_esc(o, GW_ESC_TEXT, fi->file);
		if (fi->line)
			out_fmt(o, ":%u", fi->line);
	}
	out_puts(o, "\n");
}

static void write_frame_json(struct out *o, const struct gw_frame_info *fi)
{
	out_fmt(o, "{\"address\": \"0x%llx\", \"module\": ", (unsigned long long)fi->address);
	out_json_str(o, fi->module);
	out_fmt(o, ", \"offset\": \"0x%llx\", \"function\": ", (unsigned long long)fi->offset);
	out_json_str(o, fi->function);
	out_puts(o, ", \"file\": ");
	out_json_str(o, fi->file);
	out_fmt(o, ", \"line\": %u}", fi->line);
}

/* Folded frame name: no ';' (the separator), no spaces before the count, no control bytes. */
static void write_frame_folded(struct out *o, const struct gw_frame_info *fi)
{
	char name[320];
	if (fi->function[0])
		gw_snprintf(name, sizeof(name), "%s", fi->function);
	else if (fi->module[0])
		gw_snprintf(name, sizeof(name), "%s+0x%llx", basename_of(fi->module),
			    (unsigned long long)fi->offset);
	else
		gw_snprintf(name, sizeof(name), "0x%llx", (unsigned long long)fi->address);
	out_esc(o, GW_ESC_FOLDED, name);
}

int gw_report_write(int fd, const struct gw_view *v, const struct gw_sites *s,
		    const struct gw_report_opts *opt)
{
	struct out o = { .fd = fd };
	uint64_t frames[GWMEM_SHM_MAX_FRAMES];
	struct gw_frame_info fi;
	char cmd[GWMEM_SHM_CMDLINE_MAX + 1];
	char label[600];
	/* allocations served but never recorded: the result misses them */
	uint64_t table_full = v->hdr.counters.untracked_table_full;

	gw_view_command(v, cmd, sizeof(cmd));
	if (opt->format == GW_REPORT_JSON) {
		out_fmt(&o, "{\"pid\": %u, \"command\": ", v->hdr.pid);
		out_json_str(&o, cmd);
		out_puts(&o, ", \"now_s\": ");
		out_ds(&o, s->now_ds);
		out_puts(&o, ", \"older_than_s\": ");
		out_ds(&o, opt->older_than_ds);
		out_fmt(&o, ", \"live_count\": %llu, \"live_bytes\": %llu, \"matching_sites\": %u, "
			"\"matching_count\": %llu, \"matching_bytes\": %llu, "
			"\"untracked_table_full\": %llu, \"partial\": %s, \"sites\": [",
			(unsigned long long)s->live_count, (unsigned long long)s->live_bytes,
			s->nmatching, (unsigned long long)s->match_count,
			(unsigned long long)s->match_bytes, (unsigned long long)table_full,
			table_full ? "true" : "false");
	} else if (opt->format == GW_REPORT_TEXT) {
		if (opt->stats) {
			write_stats(&o, v, s);
			out_puts(&o, "\n");
		}
		out_fmt(&o, "%u of %u allocation sites, %llu bytes in %llu allocations",
			s->nsites, s->nmatching, (unsigned long long)s->match_bytes,
			(unsigned long long)s->match_count);
		if (opt->older_than_ds) {
			out_puts(&o, " older than ");
			out_ds(&o, opt->older_than_ds);
			out_puts(&o, " s");
		}
		out_puts(&o, ", ranked by bytes:\n");
		if (table_full && v->hdr.counters.untracked_segment_full)
			out_fmt(&o, "partial: %llu allocations were not tracked; they are missing here (the "
				"segment could not grow %llu times: leak_detection.max_segment_bytes reached, "
				"shm_dir full, or address space given back under a limit; or the table was "
				"full: leak_detection.max_tracked_allocations)\n",
				(unsigned long long)table_full,
				(unsigned long long)v->hdr.counters.untracked_segment_full);
		else if (table_full)
			out_fmt(&o, "partial: the allocation table was full and %llu allocations were not "
				"tracked; they are missing here (raise leak_detection.max_tracked_allocations)\n",
				(unsigned long long)table_full);
	}

	for (uint32_t i = 0; i < s->nsites; i++) {
		const struct gw_site *site = &s->sites[i];
		uint64_t age = s->now_ds > site->oldest_ds ? s->now_ds - site->oldest_ds : 0;
		int depth = gw_view_stack(v, site->stack_id, frames, GWMEM_SHM_MAX_FRAMES);
		if (depth < 0)
			depth = 0;

		if (opt->format == GW_REPORT_JSON) {
			out_fmt(&o, "%s\n  {\"stack_id\": %u, \"count\": %llu, \"bytes\": %llu, \"oldest_age_s\": ",
				i ? "," : "", site->stack_id, (unsigned long long)site->count,
				(unsigned long long)site->bytes);
			out_ds(&o, age);
			gw_report_site_frame(v, opt, frames, depth, &fi);
			gw_report_frame_label(&fi, label, sizeof(label));
			out_puts(&o, ", \"site\": ");
			out_json_str(&o, depth ? label : "");
			out_puts(&o, ", \"frames\": [");
			for (int f = 0; f < depth; f++) {
				symbolize(v, opt, frames[f], &fi);
				out_puts(&o, f ? ",\n    " : "\n    ");
				write_frame_json(&o, &fi);
			}
			out_puts(&o, "]}");
		} else if (opt->format == GW_REPORT_FOLDED) {
			/* the innermost frames are the caller's, not the wrapper's */
			int first = gw_report_site_frame(v, opt, frames, depth, &fi);
			for (int f = depth - 1; f >= first; f--) {
				symbolize(v, opt, frames[f], &fi);
				write_frame_folded(&o, &fi);
				if (f > first)
					out_puts(&o, ";");
			}
			if (!depth)
				out_puts(&o, "[no_stack]");
			out_fmt(&o, " %llu\n", (unsigned long long)site->bytes);
		} else {
			out_fmt(&o, "\n#%u  %llu bytes in %llu allocations, oldest ", i + 1,
				(unsigned long long)site->bytes, (unsigned long long)site->count);
			out_ds(&o, age);
			out_fmt(&o, " s  [stack %u]", site->stack_id);
			if (depth) {
				gw_report_site_frame(v, opt, frames, depth, &fi);
				gw_report_frame_label(&fi, label, sizeof(label));
				out_puts(&o, "  in ");
				out_esc(&o, GW_ESC_TEXT, label);
			}
			out_puts(&o, "\n");
			if (!depth)
				out_puts(&o, "      (no stack: stack table full or backtrace unavailable)\n");
			for (int f = 0; f < depth; f++) {
				symbolize(v, opt, frames[f], &fi);
				write_frame_text(&o, (unsigned)f, &fi);
			}
		}
	}
	if (opt->format == GW_REPORT_JSON) {
		out_puts(&o, s->nsites ? "\n]" : "]");
		write_modules(&o, v, opt->format);
		out_puts(&o, "}\n");
	} else if (opt->format == GW_REPORT_TEXT && (opt->stats || opt->modules)) {
		write_modules(&o, v, opt->format);
	}
	out_flush(&o);
	return o.err;
}

int gw_report_self(int fd, const void *segment, size_t size)
{
	struct gw_view v;
	struct gw_sites s;
	int err;

	err = gw_view_from_memory(&v, segment, size);
	if (err)
		return err;
	/* names from the module files (static functions, file:line); dladdr if they cannot be mapped */
	struct gw_elfsym *sym = gw_elfsym_new(&v);
	struct gw_report_opts opt = {
		.top = 20,
		.format = GW_REPORT_TEXT,
		.stats = true,
		.symbolize = sym ? gw_elfsym_frame : gw_report_symbolize_dladdr,
		.sym_ctx = sym ? (void *)sym : (void *)&v,
		/* the list the CLI takes too (not a configuration key: only labels change) */
		.wrappers = gw_os_getenv("GWMEM_ALLOC_WRAPPERS"),
	};
	err = gw_report_collect(&v, &opt, &s);
	if (!err && sym) {
		/* every frame the report prints, symbolized in one pass per module */
		size_t cap = (size_t)s.nsites * GWMEM_SHM_MAX_FRAMES, n = 0;
		size_t asize = GW_ALIGN_UP(cap * sizeof(uint64_t) + 1, gw_os_page_size());
		uint64_t *addrs = cap ? gw_os_map(asize) : NULL;
		for (uint32_t i = 0; addrs && i < s.nsites; i++) {
			int depth = gw_view_stack(&v, s.sites[i].stack_id, addrs + n, GWMEM_SHM_MAX_FRAMES);
			n += depth > 0 ? (size_t)depth : 0;
		}
		gw_elfsym_prepare(sym, addrs, n);
		if (addrs)
			gw_os_unmap(addrs, asize);
	}
	if (!err) {
		err = gw_report_write(fd, &v, &s, &opt);
		gw_report_sites_release(&s);
	}
	gw_elfsym_free(sym);
	return err;
}
