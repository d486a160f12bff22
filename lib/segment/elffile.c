/*
 * elffile.c - finding, checking and reading module files: ELF headers and
 * sections (32/64-bit, either byte order), the build-id note, the
 * sysroot/debug-directory search, symbol tables and DWARF line tables.
 *
 * Owns the rule "a file with another build-id is never used" for every
 * reader: the CLI hands the files found here to libdwfl, the preload's
 * reporter names frames with gw_elffile_symbol/gw_elffile_line directly.  Leaves
 * the choice of addresses to look up, and output, to its callers.
 *
 * Nothing here calls malloc or stdio (the preload's reporter thread runs
 * it): files come from gw_os_open_regular (never a FIFO or a device) and
 * are mapped read-only; every read is bounds-checked against the mapping.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "elffile.h"
#include "fmt.h"
#include "os.h"

#define SHT_SYMTAB_  2u
#define SHT_NOTE_    7u
#define SHT_NOBITS_  8u
#define SHT_DYNSYM_  11u
#define SHF_COMPRESSED_ 0x800u
#define STT_FUNC_    2u
#define STT_IFUNC_   10u
#define EM_ARM_      40u
#define NT_BUILD_ID_ 3u

/* Files larger than this are not mapped: no module or debug file is. */
#define ELF_MAX_SIZE ((uint64_t)1 << 31)

/* --- bounded reads ------------------------------------------------------ */

static uint16_t rd16(const struct gw_elffile *e, const unsigned char *p)
{
	return e->big_endian ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

static uint32_t rd32(const struct gw_elffile *e, const unsigned char *p)
{
	if (e->big_endian)
		return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint64_t rd64(const struct gw_elffile *e, const unsigned char *p)
{
	uint64_t hi = rd32(e, p + (e->big_endian ? 0 : 4)), lo = rd32(e, p + (e->big_endian ? 4 : 0));
	return hi << 32 | lo;
}

static bool in_file(const struct gw_elffile *e, uint64_t off, uint64_t len)
{
	return off <= e->size && len <= e->size - off;
}

/* --- opening ------------------------------------------------------------ */

static bool section_at(const struct gw_elffile *e, uint32_t idx, struct gw_elffile_section *s, uint32_t *name)
{
	const unsigned char *h;
	uint64_t off, flags;

	if (idx >= e->shnum)
		return false;
	h = e->base + e->shoff + (uint64_t)idx * e->shentsize;
	memset(s, 0, sizeof(*s));
	if (name)
		*name = rd32(e, h);
	s->type = rd32(e, h + 4);
	if (e->is64) {
		flags = rd64(e, h + 8);
		s->addr = rd64(e, h + 16);
		off = rd64(e, h + 24);
		s->size = rd64(e, h + 32);
		s->link = rd32(e, h + 40);
		s->entsize = rd64(e, h + 56);
	} else {
		flags = rd32(e, h + 8);
		s->addr = rd32(e, h + 12);
		off = rd32(e, h + 16);
		s->size = rd32(e, h + 20);
		s->link = rd32(e, h + 24);
		s->entsize = rd32(e, h + 36);
	}
	/* compressed debug sections would need zlib: treated as absent */
	if (s->type != SHT_NOBITS_ && !(flags & SHF_COMPRESSED_) && in_file(e, off, s->size))
		s->data = e->base + off;
	return true;
}

static void read_build_id(struct gw_elffile *e)
{
	struct gw_elffile_section s;

	for (uint32_t i = 1; i < e->shnum; i++) {
		if (!section_at(e, i, &s, NULL) || s.type != SHT_NOTE_ || !s.data)
			continue;
		uint64_t p = 0;
		while (s.size - p >= 12) {
			uint32_t namesz = rd32(e, s.data + p), descsz = rd32(e, s.data + p + 4);
			uint32_t type = rd32(e, s.data + p + 8);
			uint64_t name = p + 12, desc = name + (((uint64_t)namesz + 3) & ~(uint64_t)3);
			uint64_t next = desc + (((uint64_t)descsz + 3) & ~(uint64_t)3);
			if (next > s.size || next <= p)
				break;
			if (type == NT_BUILD_ID_ && namesz == 4 && memcmp(s.data + name, "GNU", 4) == 0 &&
			    descsz > 0) {
				e->build_id_len = descsz < GW_ELFFILE_BUILD_ID_MAX ? descsz : GW_ELFFILE_BUILD_ID_MAX;
				memcpy(e->build_id, s.data + desc, e->build_id_len);
				return;
			}
			p = next;
		}
	}
}

static int parse_header(struct gw_elffile *e)
{
	const unsigned char *b = e->base;
	struct gw_elffile_section s0;

	if (e->size < 52 || memcmp(b, "\177ELF", 4) != 0 || (b[4] != 1 && b[4] != 2) ||
	    (b[5] != 1 && b[5] != 2))
		return -ENOEXEC;
	e->is64 = b[4] == 2;
	e->big_endian = b[5] == 2;
	if (e->is64 && e->size < 64)
		return -ENOEXEC;
	e->machine = rd16(e, b + 18);
	e->shoff = e->is64 ? rd64(e, b + 40) : rd32(e, b + 32);
	e->shentsize = rd16(e, b + (e->is64 ? 58 : 46));
	e->shnum = rd16(e, b + (e->is64 ? 60 : 48));
	e->shstrndx = rd16(e, b + (e->is64 ? 62 : 50));
	if (!e->shoff) {
		e->shnum = 0;
		return 0;
	}
	if (e->shentsize < (e->is64 ? 64u : 40u) || !in_file(e, e->shoff, e->shentsize))
		return -ENOEXEC;
	/* more than 0xff00 sections: the real count and index live in section 0 */
	if (e->shnum == 0 || e->shstrndx == 0xffff) {
		uint32_t save = e->shnum;
		e->shnum = 1;
		section_at(e, 0, &s0, NULL);
		e->shnum = save ? save : (s0.size > UINT32_MAX ? 0 : (uint32_t)s0.size);
		if (e->shstrndx == 0xffff)
			e->shstrndx = s0.link;
	}
	if (!in_file(e, e->shoff, (uint64_t)e->shnum * e->shentsize))
		return -ENOEXEC;
	read_build_id(e);
	return 0;
}

/* Read the whole file into anonymous memory. */
static int copy_file(struct gw_elffile *e, int fd, size_t size)
{
	size_t map = GW_ALIGN_UP(size, gw_os_page_size());
	unsigned char *p = gw_os_map(map);
	size_t got = 0;

	if (!p)
		return -ENOMEM;
	while (got < size) {
		ssize_t n = pread(fd, p + got, size - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			gw_os_unmap(p, map);
			return n < 0 ? -errno : -EIO;      /* shrank meanwhile */
		}
		got += (size_t)n;
	}
	e->base = p;
	e->map_size = map;
	return 0;
}

int gw_elffile_open(struct gw_elffile *e, const char *path, unsigned flags)
{
	uint64_t size = 0;
	int fd, err;

	memset(e, 0, sizeof(*e));
	e->fd = -1;
	fd = gw_os_open_regular(path, &size);
	if (fd < 0)
		return fd;
	if (size < 52 || size > ELF_MAX_SIZE || size > SIZE_MAX) {
		close(fd);
		return -ENOEXEC;
	}
	if (flags & GW_ELFFILE_COPY) {
		err = size > GW_ELFFILE_COPY_MAX ? -EFBIG : copy_file(e, fd, (size_t)size);
		close(fd);
		if (err)
			return err;
	} else {
		e->base = gw_os_map_file(fd, (size_t)size);
		if (!e->base) {
			err = -errno;
			close(fd);
			return err ? err : -ENOMEM;
		}
		e->map_size = (size_t)size;
		e->fd = fd;
	}
	e->size = (size_t)size;
	err = parse_header(e);
	if (err)
		gw_elffile_close(e);
	return err;
}

void gw_elffile_close(struct gw_elffile *e)
{
	if (e->base)
		gw_os_unmap((void *)e->base, e->map_size);
	if (e->fd >= 0)
		close(e->fd);
	e->base = NULL;
	e->size = 0;
	e->map_size = 0;
	e->fd = -1;
}

int gw_elffile_release_fd(struct gw_elffile *e)
{
	int fd = e->fd;
	e->fd = -1;
	return fd;
}

static const char *str_at(const struct gw_elffile_section *strtab, uint64_t off)
{
	if (!strtab->data || off >= strtab->size)
		return NULL;
	if (!memchr(strtab->data + off, '\0', strtab->size - off))
		return NULL;
	return (const char *)strtab->data + off;
}

bool gw_elffile_section_by_name(const struct gw_elffile *e, const char *name, struct gw_elffile_section *out)
{
	struct gw_elffile_section names;
	uint32_t n;

	if (!section_at(e, e->shstrndx, &names, NULL))
		return false;
	for (uint32_t i = 1; i < e->shnum; i++) {
		const char *s;
		if (!section_at(e, i, out, &n))
			return false;
		s = str_at(&names, n);
		if (s && strcmp(s, name) == 0)
			return true;
	}
	return false;
}

/* --- build-ids and the search ------------------------------------------- */

bool gw_elffile_build_id_matches(const struct gw_elffile *e, const uint8_t *id, uint32_t len)
{
	if (!len)
		return true;          /* nothing recorded: nothing to check against */
	return e->build_id_len == len && memcmp(e->build_id, id, len) == 0;
}

void gw_elffile_build_id_hex(const uint8_t *id, uint32_t len, char *dst, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	for (uint32_t i = 0; i < len && n + 2 < cap; i++) {
		dst[n++] = hex[id[i] >> 4];
		dst[n++] = hex[id[i] & 15];
	}
	if (cap)
		dst[n] = '\0';
}

/*
 * Try one candidate.  A file that exists with another build-id is
 * remembered in 'where' (the first such) so the caller can say why a
 * module stays unnamed.
 */
static bool try_candidate(struct gw_elffile *e, const char *path, const uint8_t *id, uint32_t len,
			  bool *mismatch, char *where, size_t cap, unsigned flags)
{
	if (gw_elffile_open(e, path, flags) != 0)
		return false;
	if (gw_elffile_build_id_matches(e, id, len)) {
		gw_snprintf(where, cap, "%s", path);
		return true;
	}
	if (!*mismatch) {
		gw_snprintf(where, cap, "%s", path);
		*mismatch = true;
	}
	gw_elffile_close(e);
	return false;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

enum gw_elffile_find gw_elffile_find_module(struct gw_elffile *e, const char *path, const char *sysroot,
				    const uint8_t *id, uint32_t len, char *where, size_t cap,
				    unsigned flags)
{
	char buf[4096];
	bool mismatch = false;

	memset(e, 0, sizeof(*e));
	e->fd = -1;
	if (!path || path[0] != '/')
		return GW_ELFFILE_MISSING;
	if (sysroot && sysroot[0])
		gw_snprintf(buf, sizeof(buf), "%s%s", sysroot, path);
	else
		gw_snprintf(buf, sizeof(buf), "%s", path);
	if (try_candidate(e, buf, id, len, &mismatch, where, cap, flags))
		return GW_ELFFILE_FOUND;
	return mismatch ? GW_ELFFILE_MISMATCH : GW_ELFFILE_MISSING;
}

enum gw_elffile_find gw_elffile_find_debug(struct gw_elffile *e, const char *path, const char *debuglink,
				   const char *const *dirs, unsigned n, const uint8_t *id, uint32_t len,
				   char *where, size_t cap, unsigned flags)
{
	char buf[4096], hex[2 * GW_ELFFILE_BUILD_ID_MAX + 1];
	bool mismatch = false;

	memset(e, 0, sizeof(*e));
	e->fd = -1;
	gw_elffile_build_id_hex(id, len, hex, sizeof(hex));
	for (unsigned i = 0; i < n; i++) {
		const char *d = dirs[i];
		if (!d || !d[0])
			continue;
		if (len >= 2) {
			char xx[3] = { hex[0], hex[1], '\0' };   /* gw_format has no precision */
			gw_snprintf(buf, sizeof(buf), "%s/.build-id/%s/%s.debug", d, xx, hex + 2);
			if (try_candidate(e, buf, id, len, &mismatch, where, cap, flags))
				return GW_ELFFILE_FOUND;
		}
		if (path && path[0] == '/') {
			gw_snprintf(buf, sizeof(buf), "%s%s.debug", d, path);
			if (try_candidate(e, buf, id, len, &mismatch, where, cap, flags))
				return GW_ELFFILE_FOUND;
		}
		if (debuglink && debuglink[0] && !strchr(debuglink, '/')) {
			gw_snprintf(buf, sizeof(buf), "%s/%s", d, debuglink);
			if (try_candidate(e, buf, id, len, &mismatch, where, cap, flags))
				return GW_ELFFILE_FOUND;
		}
		if (path && path[0]) {
			gw_snprintf(buf, sizeof(buf), "%s/%s.debug", d, base_name(path));
			if (try_candidate(e, buf, id, len, &mismatch, where, cap, flags))
				return GW_ELFFILE_FOUND;
		}
	}
	return mismatch ? GW_ELFFILE_MISMATCH : GW_ELFFILE_MISSING;
}

bool gw_elffile_debuglink(const struct gw_elffile *e, char *dst, size_t cap)
{
	struct gw_elffile_section s;

	if (!gw_elffile_section_by_name(e, ".gnu_debuglink", &s) || !s.data || !s.size)
		return false;
	size_t n = strnlen((const char *)s.data, s.size);
	if (n == s.size || n == 0 || n >= cap)
		return false;
	memcpy(dst, s.data, n);
	dst[n] = '\0';
	return true;
}

/* --- symbols ------------------------------------------------------------ */

struct sym_best {
	uint64_t start;
	uint64_t size;
	const char *name;
	bool global;
};

static void scan_symtab(const struct gw_elffile *e, const struct gw_elffile_section *tab, uint64_t vaddr,
			struct sym_best *best)
{
	struct gw_elffile_section strtab;
	uint64_t esz = e->is64 ? 24 : 16;

	if (!tab->data || !section_at(e, tab->link, &strtab, NULL) || !strtab.data)
		return;
	if (tab->entsize >= esz)
		esz = tab->entsize;
	for (uint64_t off = esz; off + esz <= tab->size; off += esz) {
		const unsigned char *p = tab->data + off;
		uint32_t name = rd32(e, p);
		uint8_t info = p[e->is64 ? 4 : 12];
		uint16_t shndx = rd16(e, p + (e->is64 ? 6 : 14));
		uint64_t value = e->is64 ? rd64(e, p + 8) : rd32(e, p + 4);
		uint64_t size = e->is64 ? rd64(e, p + 16) : rd32(e, p + 8);
		unsigned type = info & 15, bind = info >> 4;

		if ((type != STT_FUNC_ && type != STT_IFUNC_) || shndx == 0)
			continue;
		if (e->machine == EM_ARM_)
			value &= ~(uint64_t)1;            /* Thumb bit */
		if (value > vaddr)
			continue;
		bool inside = size ? vaddr - value < size : false;
		bool global = bind != 0;
		/* a sized symbol that contains vaddr beats the nearest unsized one below it;
		 * among aliases of one function, a global name beats a local one */
		if (best->name) {
			bool best_inside = best->size && vaddr - best->start < best->size;
			if (best_inside && !inside)
				continue;
			if (best_inside == inside) {
				if (value < best->start)
					continue;
				if (value == best->start && (best->global || !global))
					continue;
			}
		} else if (!inside && size) {
			continue;                     /* sized but ends below vaddr */
		}
		const char *s = str_at(&strtab, name);
		if (!s || !s[0])
			continue;
		best->start = value;
		best->size = size;
		best->name = s;
		best->global = global;
	}
}

bool gw_elffile_symbol(const struct gw_elffile *e, uint64_t vaddr, char *name, size_t cap, uint64_t *off)
{
	struct sym_best best = { 0 };
	struct gw_elffile_section s;

	for (uint32_t i = 1; i < e->shnum; i++) {
		if (section_at(e, i, &s, NULL) && s.type == SHT_SYMTAB_)
			scan_symtab(e, &s, vaddr, &best);
	}
	if (!best.name) {
		for (uint32_t i = 1; i < e->shnum; i++) {
			if (section_at(e, i, &s, NULL) && s.type == SHT_DYNSYM_)
				scan_symtab(e, &s, vaddr, &best);
		}
	}
	if (!best.name)
		return false;
	gw_snprintf(name, cap, "%s", best.name);
	if (off)
		*off = vaddr - best.start;
	return true;
}

/* --- DWARF line tables --------------------------------------------------- */

struct cursor {
	const struct gw_elffile *e;
	const unsigned char *p;
	const unsigned char *end;
	bool bad;
};

static bool need(struct cursor *c, size_t n)
{
	if (c->bad || (size_t)(c->end - c->p) < n) {
		c->bad = true;
		return false;
	}
	return true;
}

static uint64_t u8_(struct cursor *c)
{
	return need(c, 1) ? *c->p++ : 0;
}

static uint64_t u16_(struct cursor *c)
{
	uint64_t v = need(c, 2) ? rd16(c->e, c->p) : 0;
	if (!c->bad)
		c->p += 2;
	return v;
}

static uint64_t u32_(struct cursor *c)
{
	uint64_t v = need(c, 4) ? rd32(c->e, c->p) : 0;
	if (!c->bad)
		c->p += 4;
	return v;
}

static uint64_t u64_(struct cursor *c)
{
	uint64_t v = need(c, 8) ? rd64(c->e, c->p) : 0;
	if (!c->bad)
		c->p += 8;
	return v;
}

static uint64_t uleb(struct cursor *c)
{
	uint64_t v = 0;
	unsigned shift = 0;
	for (;;) {
		if (!need(c, 1))
			return 0;
		uint8_t b = *c->p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80))
			return v;
	}
}

static int64_t sleb(struct cursor *c)
{
	uint64_t v = 0;
	unsigned shift = 0;
	uint8_t b = 0;
	do {
		if (!need(c, 1))
			return 0;
		b = *c->p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
	} while (b & 0x80);
	if (shift < 64 && (b & 0x40))
		v |= ~(uint64_t)0 << shift;
	return (int64_t)v;
}

static const char *cstr(struct cursor *c)
{
	const char *s = (const char *)c->p;
	const void *z = c->bad ? NULL : memchr(c->p, '\0', (size_t)(c->end - c->p));
	if (!z) {
		c->bad = true;
		return NULL;
	}
	c->p = (const unsigned char *)z + 1;
	return s;
}

static void skip(struct cursor *c, uint64_t n)
{
	if (need(c, n > SIZE_MAX ? SIZE_MAX : (size_t)n))
		c->p += n;
}

enum {
	DW_FORM_block2 = 0x03, DW_FORM_block4 = 0x04, DW_FORM_data2 = 0x05, DW_FORM_data4 = 0x06,
	DW_FORM_data8 = 0x07, DW_FORM_string = 0x08, DW_FORM_block = 0x09, DW_FORM_block1 = 0x0a,
	DW_FORM_data1 = 0x0b, DW_FORM_sdata = 0x0d, DW_FORM_strp = 0x0e, DW_FORM_udata = 0x0f,
	DW_FORM_data16 = 0x1e, DW_FORM_line_strp = 0x1f,
};

struct line_ctx {
	struct gw_elffile_section str;        /* .debug_str */
	struct gw_elffile_section line_str;   /* .debug_line_str */
	bool offset64;
};

/*
 * Read one attribute of a DWARF 5 directory/file entry: a string (*s) or
 * a number (*v).  False for a form we do not know (the table is skipped).
 */
static bool read_form(struct cursor *c, const struct line_ctx *lc, uint64_t form, const char **s,
		      uint64_t *v)
{
	uint64_t off;

	*s = NULL;
	*v = 0;
	switch (form) {
	case DW_FORM_string: *s = cstr(c); return !c->bad;
	case DW_FORM_strp:
	case DW_FORM_line_strp:
		off = lc->offset64 ? u64_(c) : u32_(c);
		*s = str_at(form == DW_FORM_strp ? &lc->str : &lc->line_str, off);
		return !c->bad;
	case DW_FORM_udata: *v = uleb(c); return !c->bad;
	case DW_FORM_sdata: *v = (uint64_t)sleb(c); return !c->bad;
	case DW_FORM_data1: *v = u8_(c); return !c->bad;
	case DW_FORM_data2: *v = u16_(c); return !c->bad;
	case DW_FORM_data4: *v = u32_(c); return !c->bad;
	case DW_FORM_data8: *v = u64_(c); return !c->bad;
	case DW_FORM_data16: skip(c, 16); return !c->bad;
	case DW_FORM_block: skip(c, uleb(c)); return !c->bad;
	case DW_FORM_block1: skip(c, u8_(c)); return !c->bad;
	case DW_FORM_block2: skip(c, u16_(c)); return !c->bad;
	case DW_FORM_block4: skip(c, u32_(c)); return !c->bad;
	default: return false;
	}
}

#define MAX_ENTRY_FORMATS 8

struct entry_format {
	unsigned n;
	uint64_t type[MAX_ENTRY_FORMATS];
	uint64_t form[MAX_ENTRY_FORMATS];
};

struct unit {
	uint16_t version;
	bool offset64;
	uint8_t min_inst;
	uint8_t addr_size;
	int8_t line_base;
	uint8_t line_range;
	uint8_t opcode_base;
	uint8_t std_len[256];
	const unsigned char *dirs;        /* start of the directory table */
	const unsigned char *program;
	const unsigned char *end;
	struct entry_format dir_fmt, file_fmt;
	uint64_t ndirs, nfiles;
	const unsigned char *files;       /* start of the file table */
};

static bool read_formats(struct cursor *c, struct entry_format *f)
{
	f->n = (unsigned)u8_(c);
	if (f->n > MAX_ENTRY_FORMATS)
		return false;
	for (unsigned i = 0; i < f->n; i++) {
		f->type[i] = uleb(c);
		f->form[i] = uleb(c);
	}
	return !c->bad;
}

/* Parse a unit header at c->p; c->p ends at the start of the next unit. */
static bool unit_header(struct cursor *c, struct line_ctx *lc, struct unit *u)
{
	uint64_t len = u32_(c);
	const unsigned char *hdr_end;

	lc->offset64 = false;
	if (len == 0xffffffffu) {
		len = u64_(c);
		lc->offset64 = true;
	} else if (len >= 0xfffffff0u) {
		c->bad = true;
	}
	if (c->bad || len > (uint64_t)(c->end - c->p)) {
		c->bad = true;
		return false;
	}
	u->end = c->p + len;
	u->offset64 = lc->offset64;
	struct cursor h = { c->e, c->p, u->end, false };
	c->p = u->end;

	u->version = (uint16_t)u16_(&h);
	if (u->version < 2 || u->version > 5)
		return false;
	u->addr_size = h.e->is64 ? 8 : 4;
	if (u->version >= 5) {
		u->addr_size = (uint8_t)u8_(&h);
		u8_(&h);                          /* segment selector size */
	}
	uint64_t hlen = lc->offset64 ? u64_(&h) : u32_(&h);
	if (h.bad || hlen > (uint64_t)(h.end - h.p))
		return false;
	hdr_end = h.p + hlen;
	u->min_inst = (uint8_t)u8_(&h);
	if (u->version >= 4)
		u8_(&h);                          /* maximum_operations_per_instruction */
	u8_(&h);                                  /* default_is_stmt */
	u->line_base = (int8_t)u8_(&h);
	u->line_range = (uint8_t)u8_(&h);
	u->opcode_base = (uint8_t)u8_(&h);
	if (h.bad || !u->line_range || !u->opcode_base)
		return false;
	memset(u->std_len, 0, sizeof(u->std_len));
	for (unsigned i = 1; i < u->opcode_base; i++)
		u->std_len[i] = (uint8_t)u8_(&h);
	u->program = hdr_end;
	if (u->version >= 5) {
		if (!read_formats(&h, &u->dir_fmt))
			return false;
		u->ndirs = uleb(&h);
		u->dirs = h.p;
		for (uint64_t i = 0; i < u->ndirs && !h.bad; i++) {
			for (unsigned k = 0; k < u->dir_fmt.n; k++) {
				const char *s;
				uint64_t v;
				if (!read_form(&h, lc, u->dir_fmt.form[k], &s, &v))
					return false;
			}
		}
		if (!read_formats(&h, &u->file_fmt))
			return false;
		u->nfiles = uleb(&h);
		u->files = h.p;
	} else {
		u->dirs = h.p;
		u->ndirs = 0;
		while (!h.bad) {
			const char *s = cstr(&h);
			if (!s || !s[0])
				break;
			u->ndirs++;
		}
		u->files = h.p;
	}
	return !h.bad && u->program <= u->end;
}

/* The first of reqs[0..n) (sorted by vaddr) at or above addr. */
static size_t first_at(const struct gw_elffile_line_req *reqs, size_t n, uint64_t addr)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (reqs[mid].vaddr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Run the line program of u (whose header starts at ustart), giving each
 * request the closest row at or below its vaddr.
 */
static void run_program(const struct gw_elffile *e, const struct unit *u, const unsigned char *ustart,
			struct gw_elffile_line_req *reqs, size_t n)
{
	struct cursor c = { e, u->program, u->end, false };
	uint64_t addr = 0, file = 1, line = 1;
	bool have_prev = false;
	uint64_t prev_addr = 0, prev_file = 0, prev_line = 0;

	/* a row at prev_addr covers [prev_addr, addr of the next row) */
#define EMIT(end_seq) do { \
		if (have_prev && prev_addr < addr) { \
			for (size_t i_ = first_at(reqs, n, prev_addr); i_ < n && reqs[i_].vaddr < addr; i_++) { \
				struct gw_elffile_line_req *r_ = &reqs[i_]; \
				if (r_->found && prev_addr <= r_->row) \
					continue; \
				r_->found = true; \
				r_->row = prev_addr; \
				r_->file = prev_file; \
				r_->line = (uint32_t)prev_line; \
				r_->unit = ustart; \
			} \
		} \
		have_prev = !(end_seq); \
		prev_addr = addr; prev_file = file; prev_line = line; \
	} while (0)

	while (!c.bad && c.p < c.end) {
		uint8_t op = (uint8_t)u8_(&c);
		if (op >= u->opcode_base) {
			unsigned adj = op - u->opcode_base;
			addr += (uint64_t)u->min_inst * (adj / u->line_range);
			line += (uint64_t)(int64_t)(u->line_base + (int)(adj % u->line_range));
			EMIT(false);
			continue;
		}
		switch (op) {
		case 0: {
			uint64_t len = uleb(&c);
			if (!len || !need(&c, len > SIZE_MAX ? SIZE_MAX : (size_t)len))
				return;
			const unsigned char *next = c.p + len;
			uint8_t sub = (uint8_t)u8_(&c);
			if (sub == 1) {                   /* end_sequence */
				EMIT(true);
				addr = 0;
				file = 1;
				line = 1;
			} else if (sub == 2) {            /* set_address */
				if (len - 1 == 8)
					addr = u64_(&c);
				else if (len - 1 == 4)
					addr = u32_(&c);
			}
			c.p = next;
			break;
		}
		case 1: EMIT(false); break;                                          /* copy */
		case 2: addr += (uint64_t)u->min_inst * uleb(&c); break;              /* advance_pc */
		case 3: line += (uint64_t)sleb(&c); break;                            /* advance_line */
		case 4: file = uleb(&c); break;                                       /* set_file */
		case 8: addr += (uint64_t)u->min_inst * ((255u - u->opcode_base) / u->line_range); break;
		case 9: addr += u16_(&c); break;                                      /* fixed_advance_pc */
		default:
			for (unsigned i = 0; i < u->std_len[op]; i++)
				uleb(&c);
			break;
		}
	}
#undef EMIT
}

/* Name file index idx of unit u as "dir/name" into dst. */
static bool unit_file(const struct gw_elffile *e, struct line_ctx *lc, const struct unit *u, uint64_t idx,
		      char *dst, size_t cap)
{
	struct cursor c = { e, u->files, u->program, false };
	const char *name = NULL, *dir = NULL, *dir0 = NULL;
	uint64_t dirno = 0;

	if (u->version >= 5) {
		if (idx >= u->nfiles)
			return false;
		for (uint64_t i = 0; i <= idx; i++) {
			for (unsigned k = 0; k < u->file_fmt.n; k++) {
				const char *s;
				uint64_t v;
				if (!read_form(&c, lc, u->file_fmt.form[k], &s, &v))
					return false;
				if (i == idx && u->file_fmt.type[k] == 1)
					name = s;
				else if (i == idx && u->file_fmt.type[k] == 2)
					dirno = v;
			}
		}
		struct cursor d = { e, u->dirs, u->program, false };
		for (uint64_t i = 0; i < u->ndirs && i <= dirno; i++) {
			for (unsigned k = 0; k < u->dir_fmt.n; k++) {
				const char *s;
				uint64_t v;
				if (!read_form(&d, lc, u->dir_fmt.form[k], &s, &v))
					return false;
				if (i == dirno && u->dir_fmt.type[k] == 1)
					dir = s;
				if (i == 0 && u->dir_fmt.type[k] == 1)
					dir0 = s;
			}
		}
	} else {
		if (idx == 0)
			return false;
		for (uint64_t i = 1; i <= idx; i++) {
			name = cstr(&c);
			if (!name || !name[0])
				return false;
			dirno = uleb(&c);
			uleb(&c);
			uleb(&c);
		}
		if (dirno) {
			struct cursor d = { e, u->dirs, u->program, false };
			for (uint64_t i = 1; i <= dirno; i++)
				dir = cstr(&d);
		}
	}
	if (!name || c.bad)
		return false;
	/* DWARF 5: directory 0 is the compilation directory, others may be relative to it */
	if (dir && dir[0] && name[0] != '/' && dir[0] != '/' && dirno && dir0 && dir0[0])
		gw_snprintf(dst, cap, "%s/%s/%s", dir0, dir, name);
	else if (dir && dir[0] && name[0] != '/')
		gw_snprintf(dst, cap, "%s/%s", dir, name);
	else
		gw_snprintf(dst, cap, "%s", name);
	return true;
}

static bool line_sections(const struct gw_elffile *e, struct gw_elffile_section *dl, struct line_ctx *lc)
{
	if (!gw_elffile_section_by_name(e, ".debug_line", dl) || !dl->data)
		return false;
	memset(lc, 0, sizeof(*lc));
	gw_elffile_section_by_name(e, ".debug_str", &lc->str);
	gw_elffile_section_by_name(e, ".debug_line_str", &lc->line_str);
	return true;
}

void gw_elffile_lines(const struct gw_elffile *e, struct gw_elffile_line_req *reqs, size_t n)
{
	struct gw_elffile_section dl;
	struct line_ctx lc;
	struct unit u;

	for (size_t i = 0; i < n; i++)
		reqs[i].found = false;
	if (!n || !line_sections(e, &dl, &lc))
		return;
	struct cursor c = { e, dl.data, dl.data + dl.size, false };
	while (!c.bad && c.p < c.end) {
		const unsigned char *start = c.p;
		if (!unit_header(&c, &lc, &u))
			continue;               /* c->bad stops the walk; else skip that unit */
		run_program(e, &u, start, reqs, n);
	}
}

bool gw_elffile_line_file(const struct gw_elffile *e, const struct gw_elffile_line_req *r, char *file,
			  size_t cap)
{
	struct gw_elffile_section dl;
	struct line_ctx lc;
	struct unit u;

	file[0] = '\0';
	if (!r->found || !line_sections(e, &dl, &lc) || r->unit < dl.data || r->unit >= dl.data + dl.size)
		return false;
	struct cursor c = { e, r->unit, dl.data + dl.size, false };
	if (!unit_header(&c, &lc, &u))
		return false;
	if (!unit_file(e, &lc, &u, r->file, file, cap)) {
		file[0] = '\0';
		return false;
	}
	return true;
}

bool gw_elffile_line(const struct gw_elffile *e, uint64_t vaddr, char *file, size_t cap, uint32_t *line)
{
	struct gw_elffile_line_req r = { .vaddr = vaddr };

	gw_elffile_lines(e, &r, 1);
	if (!r.found)
		return false;
	*line = r.line;
	gw_elffile_line_file(e, &r, file, cap);
	return true;
}
