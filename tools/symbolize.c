/*
 * symbolize.c - libdwfl symbolization for the CLI.
 *
 * Every module comes from the module map the segment recorded (path, load
 * bias, build-id), for a running process, a copied segment or a snapshot
 * from another architecture alike.  The files are found by
 * lib/segment/elffile.c, never by libdwfl itself: that search opens only
 * regular files (a FIFO where a module was must not hang the CLI), looks
 * under --sysroot and --debug-dir, and refuses a file whose build-id
 * differs from the recorded one (no name is better than a wrong name).
 * The fds found are handed to libdwfl (dwfl_report_elf, find_debuginfo).
 *
 * Time is bounded: SIGALRM (installed without SA_RESTART, so a blocked
 * open or read returns EINTR) is armed with what is left of the budget
 * while we are inside libdwfl; once spent, frames keep module+offset.
 * Frames are return addresses, so lookups use address - 1.  Results are
 * cached by address: the same frames repeat across sites.
 */
#include "config.h"

#include <elfutils/libdwfl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "elffile.h"
#include "shared.h"
#include "symbolize.h"

#define CACHE_SIZE 4096u

struct cache_entry {
	uint64_t address;
	bool used;
	struct gw_frame_info info;
};

/* What we know of a reported module; the module's userdata points here. */
struct mod {
	struct gwmem_shm_module shm;      /* as recorded: device path, bias, build-id */
	const char *path;                 /* device path (exe for the main program) */
	char host[4096];                  /* the file used on this host */
};

/* A module's userdata: find_debuginfo gets only that, and needs the options. */
struct mod_slot {
	struct mod m;
	struct symbolizer *s;
};

struct symbolizer {
	const struct gw_view *view;
	struct symbolize_opts opts;
	Dwfl *dwfl;
	struct mod_slot *mods;
	int nmods;
	struct cache_entry *cache;
	uint64_t budget_ns;
	uint64_t spent_ns;
	bool expired;
};

static volatile sig_atomic_t alarm_fired;

static void on_alarm(int sig)
{
	(void)sig;
	alarm_fired = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* --- the time budget ------------------------------------------------------ */

static bool budget_enter(struct symbolizer *s, uint64_t *t0)
{
	struct sigaction sa;
	struct itimerval it;

	if (s->expired)
		return false;
	if (s->spent_ns >= s->budget_ns) {
		s->expired = true;
		fprintf(stderr, "gwmem %s: symbolization stopped after %.1f s (--symbol-timeout); "
			"the remaining frames show module+offset\n", s->opts.cmd,
			(double)s->spent_ns / 1e9);
		return false;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;          /* no SA_RESTART: blocked calls return EINTR */
	sigaction(SIGALRM, &sa, NULL);
	alarm_fired = 0;
	uint64_t left = s->budget_ns - s->spent_ns;
	memset(&it, 0, sizeof(it));
	it.it_value.tv_sec = (time_t)(left / 1000000000u);
	it.it_value.tv_usec = (suseconds_t)(left % 1000000000u / 1000u);
	if (!it.it_value.tv_sec && !it.it_value.tv_usec)
		it.it_value.tv_usec = 1;
	setitimer(ITIMER_REAL, &it, NULL);
	*t0 = now_ns();
	return true;
}

static void budget_leave(struct symbolizer *s, uint64_t t0)
{
	struct itimerval it;

	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	s->spent_ns += now_ns() - t0;
	if (alarm_fired)
		s->spent_ns = s->budget_ns;
}

/* --- finding files ---------------------------------------------------------- */

static const char *mod_name(const char *path)
{
	const char *b = strrchr(path, '/');
	return b ? b + 1 : path;
}

static void warn_mismatch(const struct symbolizer *s, const struct mod *m, const char *what,
			  const char *where)
{
	char hex[2 * GW_ELFFILE_BUILD_ID_MAX + 1];

	gw_elffile_build_id_hex(m->shm.build_id, m->shm.build_id_len, hex, sizeof(hex));
	/* both paths come from the segment's module map: escaped like stdout */
	fprintf(stderr, "gwmem %s: warning: ", s->opts.cmd);
	put_escaped(stderr, GW_ESC_TEXT, m->path);
	fprintf(stderr, ": %s ", what);
	put_escaped(stderr, GW_ESC_TEXT, where);
	fprintf(stderr, " has another build-id than the recorded %s; "
		"not used, its frames show module+offset\n", hex);
}

/*
 * libdwfl asks for a separate debug file when the module file has no
 * DWARF.  Searched: each --debug-dir, the sysroot's and this host's
 * /usr/lib/debug, and next to the file as gdb does (DIR/debuglink,
 * DIR/.debug/debuglink).
 */
static int find_debuginfo(Dwfl_Module *dmod, void **userdata, const char *modname, Dwarf_Addr base,
			  const char *file_name, const char *debuglink_file, GElf_Word debuglink_crc,
			  char **debuginfo_file_name)
{
	struct mod_slot *slot = *userdata;
	struct mod *m = slot ? &slot->m : NULL;
	struct symbolizer *s;
	const char *dirs[SYMBOLIZE_MAX_DEBUG_DIRS + 4];
	char sysdbg[4096], here[4096], heredot[4096], where[4096];
	struct gw_elffile e;
	unsigned n = 0;

	(void)dmod; (void)modname; (void)base; (void)debuglink_crc;
	if (!m)
		return -1;
	s = slot->s;
	for (unsigned i = 0; i < s->opts.ndebug; i++)
		dirs[n++] = s->opts.debug_dirs[i];
	if (s->opts.sysroot) {
		snprintf(sysdbg, sizeof(sysdbg), "%s/usr/lib/debug", s->opts.sysroot);
		dirs[n++] = sysdbg;
	} else {
		dirs[n++] = "/usr/lib/debug";
	}
	if (file_name && strrchr(file_name, '/')) {
		int len = (int)(strrchr(file_name, '/') - file_name);
		snprintf(here, sizeof(here), "%.*s", len, file_name);
		snprintf(heredot, sizeof(heredot), "%.*s/.debug", len, file_name);
		dirs[n++] = here;
		dirs[n++] = heredot;
	}
	switch (gw_elffile_find_debug(&e, m->path, debuglink_file, dirs, n, m->shm.build_id,
				      m->shm.build_id_len, where, sizeof(where), 0)) {
	case GW_ELFFILE_FOUND:
		*debuginfo_file_name = strdup(where);
		int fd = gw_elffile_release_fd(&e);
		gw_elffile_close(&e);
		return fd;
	case GW_ELFFILE_MISMATCH:
		warn_mismatch(s, m, "debug file", where);
		return -1;
	default:
		return -1;
	}
}

static const Dwfl_Callbacks callbacks = {
	.find_elf = NULL,                  /* every module is reported with its fd */
	.find_debuginfo = find_debuginfo,
	.section_address = dwfl_offline_section_address,
};

/* Find each module's files and report them to a new Dwfl; s->mods keeps them all. */
static Dwfl *report_modules(struct symbolizer *s, const struct gwmem_shm_module *shm, int n,
			    const char *exe)
{
	struct mod_slot *slots;
	int reported = 0;
	Dwfl *d = NULL;

	if (n <= 0)
		return NULL;
	slots = calloc((size_t)n, sizeof(*slots));
	if (!slots)
		return NULL;
	s->mods = slots;
	s->nmods = n;
	d = dwfl_begin(&callbacks);
	if (!d)
		return NULL;
	dwfl_report_begin(d);
	for (int i = 0; i < n; i++) {
		struct mod_slot *slot = &slots[i];
		struct mod *m = &slot->m;
		struct gw_elffile e;
		char where[4096];

		slot->s = s;
		m->shm = shm[i];
		m->shm.path[sizeof(m->shm.path) - 1] = '\0';
		m->path = m->shm.path;
		if (!m->path[0] && exe)
			m->path = exe;          /* dl_iterate_phdr names the main program "" */
		if (m->path[0] != '/')
			continue;               /* linux-vdso.so.1 and the like */
		switch (gw_elffile_find_module(&e, m->path, s->opts.sysroot, m->shm.build_id,
					       m->shm.build_id_len, where, sizeof(where), 0)) {
		case GW_ELFFILE_FOUND:
			break;
		case GW_ELFFILE_MISMATCH:
			warn_mismatch(s, m, "file", where);
			continue;
		default:
			continue;
		}
		snprintf(m->host, sizeof(m->host), "%s", where);
		int fd = gw_elffile_release_fd(&e);
		gw_elffile_close(&e);
		Dwfl_Module *dm = dwfl_report_elf(d, mod_name(m->path), m->host, fd, m->shm.bias, false);
		if (!dm) {
			close(fd);
			continue;
		}
		void **ud = NULL;
		dwfl_module_info(dm, &ud, NULL, NULL, NULL, NULL, NULL, NULL);
		if (ud)
			*ud = slot;
		reported++;
	}
	dwfl_report_end(d, NULL, NULL);
	if (!reported) {
		dwfl_end(d);
		d = NULL;
	}
	return d;
}

struct symbolizer *symbolizer_new_modules(const struct gwmem_shm_module *mods, int n, const char *exe,
					  const struct symbolize_opts *o)
{
	struct symbolizer *s = calloc(1, sizeof(*s));
	uint64_t t0;

	if (!s)
		return NULL;
	s->opts = *o;
	s->budget_ns = (o->timeout_ds ? o->timeout_ds : SYMBOLIZE_DEFAULT_TIMEOUT_DS) * 100000000u;
	s->cache = calloc(CACHE_SIZE, sizeof(*s->cache));
	if (budget_enter(s, &t0)) {
		s->dwfl = report_modules(s, mods, n, exe);
		budget_leave(s, t0);
	}
	return s;
}

struct symbolizer *symbolizer_new(const struct gw_view *v, const struct symbolize_opts *o)
{
	uint32_t cap = v->hdr.modules_capacity;
	struct gwmem_shm_module *mods = cap ? calloc(cap, sizeof(*mods)) : NULL;
	int n = mods ? gw_view_modules(v, mods, cap) : 0;
	struct symbolizer *s = symbolizer_new_modules(mods, n, v->hdr.exe, o);

	free(mods);
	if (s)
		s->view = v;
	return s;
}

void symbolizer_free(struct symbolizer *s)
{
	if (!s)
		return;
	if (s->dwfl)
		dwfl_end(s->dwfl);
	free(s->mods);
	free(s->cache);
	free(s);
}

static void copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

static void lookup(struct symbolizer *s, uint64_t address, struct gw_frame_info *fi)
{
	uint64_t t0;

	/* module+offset from the recorded map first: it is what the process had mapped */
	if (s->view) {
		gw_report_symbolize_modules((void *)s->view, address, fi);
	} else {
		memset(fi, 0, sizeof(*fi));
		fi->address = address;
		for (int i = 0; i < s->nmods && address; i++) {
			const struct mod *m = &s->mods[i].m;
			if (address - 1 >= m->shm.start && address - 1 < m->shm.end) {
				copy(fi->module, sizeof(fi->module), m->path);
				fi->offset = address - m->shm.bias;
				break;
			}
		}
	}
	if (!s->dwfl || !address || !budget_enter(s, &t0))
		return;

	Dwarf_Addr pc = address - 1;
	Dwfl_Module *mod = dwfl_addrmodule(s->dwfl, pc);
	if (!mod)
		goto out;
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
out:
	budget_leave(s, t0);
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
