/*
 * elfsym.c - the allocation-free symbolizer: module+offset from the
 * segment's module map, then function and file:line from the module's
 * files through elffile.c.
 *
 * Owns the per-report state: a copy of the module map, each module's
 * mapped file and debug file (opened on first use, build-id checked), and
 * a cache of symbolized addresses (the same frames repeat across sites,
 * and a line lookup walks the module's whole line table).  All of it lives
 * in one anonymous mapping; nothing here calls malloc or stdio.
 */
#include "config.h"

#include <string.h>

#include "elffile.h"
#include "elfsym.h"
#include "fmt.h"
#include "os.h"

#define CACHE_SLOTS 512u

struct mod_files {
	bool tried;
	bool have_file;
	bool have_debug;
	struct gw_elffile file;
	struct gw_elffile debug;
};

struct cache_slot {
	bool used;
	struct gw_frame_info info;
};

/* A frame symbolized ahead by gw_elfsym_prepare. */
struct prepared {
	uint64_t address;
	struct gw_frame_info info;
};

struct gw_elfsym {
	const struct gw_view *view;
	size_t map_size;
	struct prepared *prep;        /* sorted by address, nprep entries */
	size_t nprep;
	size_t prep_size;
	int nmods;
	struct gwmem_shm_module *mods;
	struct mod_files *files;
	struct cache_slot *cache;
	char dir[GWMEM_SHM_PATH_MAX];
	char dotdir[GWMEM_SHM_PATH_MAX + 8];
	char link[256];
	char where[GWMEM_SHM_PATH_MAX + 128];
};

struct gw_elfsym *gw_elfsym_new(const struct gw_view *v)
{
	uint32_t cap = v->hdr.modules_capacity;
	size_t size;
	struct gw_elfsym *s;

	if (!cap)
		return NULL;
	size = sizeof(*s) + (size_t)cap * (sizeof(struct gwmem_shm_module) + sizeof(struct mod_files)) +
	       CACHE_SLOTS * sizeof(struct cache_slot);
	size = GW_ALIGN_UP(size, gw_os_page_size());
	s = gw_os_map(size);
	if (!s)
		return NULL;
	s->view = v;
	s->map_size = size;
	s->mods = (struct gwmem_shm_module *)(s + 1);
	s->files = (struct mod_files *)(s->mods + cap);
	s->cache = (struct cache_slot *)(s->files + cap);
	int n = gw_view_modules(v, s->mods, cap);
	s->nmods = n > 0 ? n : 0;
	return s;
}

void gw_elfsym_free(struct gw_elfsym *s)
{
	if (!s)
		return;
	if (s->prep)
		gw_os_unmap(s->prep, s->prep_size);
	for (int i = 0; i < s->nmods; i++) {
		if (s->files[i].have_file)
			gw_elffile_close(&s->files[i].file);
		if (s->files[i].have_debug)
			gw_elffile_close(&s->files[i].debug);
	}
	gw_os_unmap(s, s->map_size);
}

static bool has_section(const struct gw_elffile *e, const char *name)
{
	struct gw_elffile_section sec;
	return gw_elffile_section_by_name(e, name, &sec) && sec.data;
}

/* Open module i's file and, when it lacks line data, its debug file. */
static void open_module(struct gw_elfsym *s, int i)
{
	struct mod_files *f = &s->files[i];
	const struct gwmem_shm_module *m = &s->mods[i];
	const char *path = m->path[0] ? m->path : s->view->hdr.exe;

	f->tried = true;
	if (path[0] != '/')
		return;                          /* linux-vdso.so.1 and the like */
	/* copied, not mapped: a file truncated under us must not SIGBUS the host */
	if (gw_elffile_find_module(&f->file, path, NULL, m->build_id, m->build_id_len, s->where,
				   sizeof(s->where), GW_ELFFILE_COPY) != GW_ELFFILE_FOUND)
		return;
	f->have_file = true;
	if (has_section(&f->file, ".debug_line") && has_section(&f->file, ".symtab"))
		return;

	const char *slash = strrchr(path, '/');
	size_t dlen = (size_t)(slash - path);
	if (dlen >= sizeof(s->dir))
		dlen = sizeof(s->dir) - 1;
	memcpy(s->dir, path, dlen);
	s->dir[dlen] = '\0';
	gw_snprintf(s->dotdir, sizeof(s->dotdir), "%s/.debug", s->dir);
	const char *dirs[] = { "/usr/lib/debug", s->dir, s->dotdir };
	const char *link = gw_elffile_debuglink(&f->file, s->link, sizeof(s->link)) ? s->link : NULL;
	if (gw_elffile_find_debug(&f->debug, path, link, dirs, 3, m->build_id, m->build_id_len,
				  s->where, sizeof(s->where), GW_ELFFILE_COPY) == GW_ELFFILE_FOUND)
		f->have_debug = true;
}

/* Module+offset and the function; *mod the module's index (-1 if no file). */
static void lookup_name(struct gw_elfsym *s, uint64_t address, struct gw_frame_info *fi, int *mod)
{
	*mod = -1;
	gw_report_symbolize_modules((void *)s->view, address, fi);
	fi->address = address;
	if (!address)
		return;
	uint64_t pc = address - 1;
	for (int i = 0; i < s->nmods; i++) {
		const struct gwmem_shm_module *m = &s->mods[i];
		if (pc < m->start || pc >= m->end)
			continue;
		struct mod_files *f = &s->files[i];
		if (!f->tried)
			open_module(s, i);
		if (!f->have_file)
			return;
		uint64_t vaddr = pc - m->bias, off;
		/* the debug file has the full .symtab when the module was stripped */
		if (!(f->have_debug && gw_elffile_symbol(&f->debug, vaddr, fi->function,
							 sizeof(fi->function), &off)))
			gw_elffile_symbol(&f->file, vaddr, fi->function, sizeof(fi->function), &off);
		*mod = i;
		return;
	}
}

/* The file that has module i's line table: its debug file, else itself. */
static const struct gw_elffile *line_file(struct gw_elfsym *s, int i)
{
	struct mod_files *f = &s->files[i];
	if (f->have_debug && has_section(&f->debug, ".debug_line"))
		return &f->debug;
	return &f->file;
}

/* Let module i's files go; later lookups in it give module+offset only. */
static void release_module(struct gw_elfsym *s, int i)
{
	struct mod_files *f = &s->files[i];

	if (f->have_file)
		gw_elffile_close(&f->file);
	if (f->have_debug)
		gw_elffile_close(&f->debug);
	f->have_file = f->have_debug = false;
	f->tried = true;
}

static void lookup(struct gw_elfsym *s, uint64_t address, struct gw_frame_info *fi)
{
	int i;

	lookup_name(s, address, fi, &i);
	if (i < 0)
		return;
	struct gw_elffile_line_req r = { .vaddr = address - 1 - s->mods[i].bias };
	const struct gw_elffile *e = line_file(s, i);
	gw_elffile_lines(e, &r, 1);
	if (r.found) {
		fi->line = r.line;
		gw_elffile_line_file(e, &r, fi->file, sizeof(fi->file));
	}
}

void gw_elfsym_prepare(struct gw_elfsym *s, const uint64_t *addrs, size_t n)
{
	size_t size, rsize, m = 0;
	struct prepared *p;

	if (!s || !n || s->prep)
		return;
	size = GW_ALIGN_UP(n * sizeof(*p), gw_os_page_size());
	p = gw_os_map(size);
	if (!p)
		return;                  /* frames are then looked up one by one */
	/* sorted and unique (shell sort: n is a few thousand at most) */
	for (size_t i = 0; i < n; i++)
		p[i].address = addrs[i];
	for (size_t gap = n / 2; gap; gap /= 2)
		for (size_t i = gap; i < n; i++)
			for (size_t j = i; j >= gap && p[j - gap].address > p[j].address; j -= gap) {
				uint64_t t = p[j].address;
				p[j].address = p[j - gap].address;
				p[j - gap].address = t;
			}
	for (size_t i = 0; i < n; i++)
		if (!m || p[m - 1].address != p[i].address)
			p[m++].address = p[i].address;

	/* the module of each frame, from the map (no file read yet): which[i] = index + 1, or 0 */
	rsize = GW_ALIGN_UP(m * (sizeof(struct gw_elffile_line_req) + sizeof(uint32_t)), gw_os_page_size());
	struct gw_elffile_line_req *reqs = gw_os_map(rsize);
	if (!reqs) {
		gw_os_unmap(p, size);
		return;                  /* frames are then looked up one by one */
	}
	uint32_t *which = (uint32_t *)(reqs + m);
	for (size_t i = 0; i < m; i++) {
		uint64_t a = p[i].address;
		gw_report_symbolize_modules((void *)s->view, a, &p[i].info);
		p[i].info.address = a;
		which[i] = 0;
		for (int mod = 0; a && mod < s->nmods; mod++)
			if (a - 1 >= s->mods[mod].start && a - 1 < s->mods[mod].end) {
				which[i] = (uint32_t)(mod + 1);
				break;
			}
	}
	/*
	 * Module by module: names, then one pass over its line table for all of
	 * its frames, then its files are let go, so at most one module's files
	 * are held at a time (they are copies: memory counts on a gateway).
	 */
	for (int mod = 0; mod < s->nmods; mod++) {
		size_t k = 0;
		int opened = -1;
		for (size_t i = 0; i < m; i++) {
			if (which[i] != (uint32_t)(mod + 1))
				continue;
			lookup_name(s, p[i].address, &p[i].info, &opened);
			memset(&reqs[k], 0, sizeof(reqs[k]));
			reqs[k++].vaddr = p[i].address - 1 - s->mods[mod].bias;
		}
		if (k && opened == mod) {
			const struct gw_elffile *e = line_file(s, mod);
			gw_elffile_lines(e, reqs, k);
			k = 0;
			for (size_t i = 0; i < m; i++) {
				if (which[i] != (uint32_t)(mod + 1))
					continue;
				struct gw_elffile_line_req *r = &reqs[k++];
				if (r->found) {
					p[i].info.line = r->line;
					gw_elffile_line_file(e, r, p[i].info.file, sizeof(p[i].info.file));
				}
			}
		}
		release_module(s, mod);
	}
	gw_os_unmap(reqs, rsize);
	s->prep = p;
	s->nprep = m;
	s->prep_size = size;
}

void gw_elfsym_frame(void *ctx, uint64_t address, struct gw_frame_info *out)
{
	struct gw_elfsym *s = ctx;
	struct cache_slot *c = &s->cache[((address * UINT64_C(0x9e3779b97f4a7c15)) >> 40) % CACHE_SLOTS];

	if (s->nprep) {
		size_t lo = 0, hi = s->nprep;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (s->prep[mid].address < address)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < s->nprep && s->prep[lo].address == address) {
			*out = s->prep[lo].info;
			return;
		}
	}

	if (c->used && c->info.address == address) {
		*out = c->info;
		return;
	}
	lookup(s, address, out);
	out->address = address;
	c->used = true;
	c->info = *out;
}
