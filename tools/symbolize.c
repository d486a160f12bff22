/*
 * symbolize.c - libdwfl symbolization for the CLI.
 *
 * A running process is reported with dwfl_linux_proc_report (its
 * /proc/PID/maps); a process that is gone, or whose maps are not readable,
 * from the module map the preload wrote into the segment (dwfl_report_elf
 * per module at its load bias).  Separate debug files are found by
 * build-id through dwfl_standard_find_debuginfo (/usr/lib/debug/.build-id).
 * Frames are return addresses, so lookups use address - 1.  Results are
 * cached by address: the same frames repeat across sites.
 */
#include "config.h"

#include <elfutils/libdwfl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "symbolize.h"

#define CACHE_SIZE 4096u

struct cache_entry {
	uint64_t address;
	bool used;
	struct gw_frame_info info;
};

struct symbolizer {
	const struct gw_view *view;
	Dwfl *dwfl;
	struct cache_entry *cache;
};

static const Dwfl_Callbacks proc_callbacks = {
	.find_elf = dwfl_linux_proc_find_elf,
	.find_debuginfo = dwfl_standard_find_debuginfo,
};

static const Dwfl_Callbacks offline_callbacks = {
	.find_elf = dwfl_build_id_find_elf,
	.find_debuginfo = dwfl_standard_find_debuginfo,
	.section_address = dwfl_offline_section_address,
};

static Dwfl *report_live(pid_t pid)
{
	Dwfl *d = dwfl_begin(&proc_callbacks);

	if (!d)
		return NULL;
	dwfl_report_begin(d);
	if (dwfl_linux_proc_report(d, pid) != 0 || dwfl_report_end(d, NULL, NULL) != 0) {
		dwfl_end(d);
		return NULL;
	}
	return d;
}

static Dwfl *report_modules(const struct gw_view *v)
{
	uint32_t cap = v->hdr.modules_capacity;
	struct gwmem_shm_module *mods;
	int n, reported = 0;
	Dwfl *d;

	if (!cap)
		return NULL;
	mods = calloc(cap, sizeof(*mods));
	if (!mods)
		return NULL;
	n = gw_view_modules(v, mods, cap);
	d = dwfl_begin(&offline_callbacks);
	if (!d || n <= 0)
		goto out;
	dwfl_report_begin(d);
	for (int i = 0; i < n; i++) {
		const char *path = mods[i].path;
		if (!path[0])
			path = v->hdr.exe;   /* dl_iterate_phdr names the main program "" */
		if (path[0] != '/')
			continue;            /* linux-vdso.so.1 and the like */
		const char *base = strrchr(path, '/') + 1;
		if (dwfl_report_elf(d, base, path, -1, mods[i].bias, false))
			reported++;
	}
	dwfl_report_end(d, NULL, NULL);
out:
	free(mods);
	if (d && !reported) {
		dwfl_end(d);
		d = NULL;
	}
	return d;
}

struct symbolizer *symbolizer_new(const struct gw_view *v, bool live)
{
	struct symbolizer *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->view = v;
	s->cache = calloc(CACHE_SIZE, sizeof(*s->cache));
	if (live)
		s->dwfl = report_live((pid_t)v->hdr.pid);
	if (!s->dwfl)
		s->dwfl = report_modules(v);
	return s;
}

void symbolizer_free(struct symbolizer *s)
{
	if (!s)
		return;
	if (s->dwfl)
		dwfl_end(s->dwfl);
	free(s->cache);
	free(s);
}

static void copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

static void lookup(struct symbolizer *s, uint64_t address, struct gw_frame_info *fi)
{
	/* module+offset from the segment first: it is what the process had mapped */
	gw_report_symbolize_modules((void *)s->view, address, fi);
	if (!s->dwfl || !address)
		return;

	Dwarf_Addr pc = address - 1;
	Dwfl_Module *mod = dwfl_addrmodule(s->dwfl, pc);
	if (!mod)
		return;
	Dwarf_Addr bias = 0;
	const char *mainfile = NULL;
	const char *name = dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, &mainfile, NULL);
	if (dwfl_module_getelf(mod, &bias)) {
		dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, &mainfile, NULL);
		if (!fi->module[0]) {
			copy(fi->module, sizeof(fi->module), mainfile ? mainfile : name);
			fi->offset = address - bias;
		}
	}

	GElf_Off off = 0;
	GElf_Sym sym;
	const char *fn = dwfl_module_addrinfo(mod, pc, &off, &sym, NULL, NULL, NULL);
	if (fn)
		copy(fi->function, sizeof(fi->function), fn);

	Dwfl_Line *line = dwfl_module_getsrc(mod, pc);
	if (line) {
		int lineno = 0;
		const char *src = dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL);
		if (src) {
			copy(fi->file, sizeof(fi->file), src);
			fi->line = lineno > 0 ? (uint32_t)lineno : 0;
		}
	}
}

void symbolizer_frame(void *ctx, uint64_t address, struct gw_frame_info *out)
{
	struct symbolizer *s = ctx;
	struct cache_entry *e = NULL;

	if (s->cache) {
		uint64_t h = address * UINT64_C(0x9e3779b97f4a7c15);
		e = &s->cache[(h >> 40) % CACHE_SIZE];
		if (e->used && e->address == address) {
			*out = e->info;
			return;
		}
	}
	lookup(s, address, out);
	out->address = address;
	if (e) {
		e->used = true;
		e->address = address;
		e->info = *out;
	}
}
