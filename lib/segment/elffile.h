/*
 * elffile.h - reading the ELF files of the modules a segment names: finding
 * them on this host (a sysroot, debug directories, build-ids), checking
 * that they are the files the process ran, and naming addresses in them
 * (.symtab/.dynsym, DWARF .debug_line).
 *
 * Module and debug files are untrusted input like segments: they may be
 * truncated, of another architecture or endianness, or not files at all
 * (a FIFO where a module used to be).  Every offset, size and count is
 * checked against the mapping.  Nothing here calls malloc or stdio, so the
 * preload's reporter thread can use it: files are mapped read-only.
 *
 * Definitions:
 *  - vaddr: an address in the file's own terms (the p_vaddr/st_value
 *    space), i.e. a runtime address minus the module's load bias.
 *  - build-id: the NT_GNU_BUILD_ID note; a file whose build-id differs from
 *    the one recorded for the module is never used (no name is better than
 *    a wrong one).
 */
#ifndef GW_ELFFILE_H
#define GW_ELFFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define GW_ELFFILE_BUILD_ID_MAX 20u

struct gw_elffile {
	const unsigned char *base;    /* read-only mapping of the whole file */
	size_t size;
	int fd;                       /* -1 once released to another owner, or when copied */
	size_t map_size;              /* the mapping's length (page-rounded for a copy) */
	bool is64;
	bool big_endian;
	uint16_t machine;
	uint64_t shoff;
	uint32_t shnum;
	uint32_t shentsize;
	uint32_t shstrndx;
	uint8_t build_id[GW_ELFFILE_BUILD_ID_MAX];
	uint32_t build_id_len;
};

struct gw_elffile_section {
	const unsigned char *data;    /* NULL for SHT_NOBITS or out of bounds */
	uint64_t size;
	uint64_t addr;
	uint64_t entsize;
	uint32_t type;
	uint32_t link;
};

/*
 * How a file is held.  Mapped by default; GW_ELFFILE_COPY reads it into
 * anonymous memory instead (at most GW_ELFFILE_COPY_MAX bytes), for a
 * reader inside someone else's process: a mapped file that is truncated
 * while we read it raises SIGBUS, which must never reach the host.
 */
#define GW_ELFFILE_COPY      1u
#define GW_ELFFILE_COPY_MAX  ((uint64_t)32 << 20)

/* Map (or copy) and validate path (a regular file only); 0 or -errno (-ENOEXEC: not ELF, -EFBIG). */
int gw_elffile_open(struct gw_elffile *e, const char *path, unsigned flags) GW_HIDDEN;
void gw_elffile_close(struct gw_elffile *e) GW_HIDDEN;
/* Hand the fd to another owner (libdwfl); gw_elffile_close no longer closes it. */
int gw_elffile_release_fd(struct gw_elffile *e) GW_HIDDEN;

bool gw_elffile_section_by_name(const struct gw_elffile *e, const char *name, struct gw_elffile_section *out) GW_HIDDEN;

/* recorded build-id (len 0: none recorded) against the file's. */
bool gw_elffile_build_id_matches(const struct gw_elffile *e, const uint8_t *id, uint32_t len) GW_HIDDEN;
/* Lower-case hex of id into dst[cap] ("" for len 0). */
void gw_elffile_build_id_hex(const uint8_t *id, uint32_t len, char *dst, size_t cap) GW_HIDDEN;

/* Outcome of a search; 'where' names the file found or the mismatching one. */
enum gw_elffile_find {
	GW_ELFFILE_FOUND = 0,
	GW_ELFFILE_MISSING = 1,           /* no candidate exists (or none is a readable ELF file) */
	GW_ELFFILE_MISMATCH = 2,          /* a candidate exists, but with another build-id */
};

/*
 * The module file of a device path: sysroot + path (path alone when sysroot
 * is NULL or ""), accepted only if its build-id matches id[len].
 */
enum gw_elffile_find gw_elffile_find_module(struct gw_elffile *e, const char *path, const char *sysroot,
				    const uint8_t *id, uint32_t len, char *where, size_t cap,
				    unsigned flags) GW_HIDDEN;

/*
 * A separate debug file of the module at device path, searched in each of
 * dirs[n] the way gdb and elfutils do: DIR/.build-id/xx/rest.debug, then
 * DIR/<path>.debug, DIR/<debuglink> and DIR/<basename>.debug (debuglink:
 * the module's .gnu_debuglink name, or NULL).  Build-id checked like
 * gw_elffile_find_module.
 */
enum gw_elffile_find gw_elffile_find_debug(struct gw_elffile *e, const char *path, const char *debuglink,
				   const char *const *dirs, unsigned n, const uint8_t *id, uint32_t len,
				   char *where, size_t cap, unsigned flags) GW_HIDDEN;

/* The .gnu_debuglink file name of e into dst[cap]; false if none. */
bool gw_elffile_debuglink(const struct gw_elffile *e, char *dst, size_t cap) GW_HIDDEN;

/*
 * The function containing vaddr, from .symtab (static functions too) or
 * else .dynsym, into name[cap]; *off = vaddr - symbol start.  False if no
 * symbol covers it.
 */
bool gw_elffile_symbol(const struct gw_elffile *e, uint64_t vaddr, char *name, size_t cap, uint64_t *off) GW_HIDDEN;

/*
 * The source file and line of vaddr from .debug_line (DWARF 2 to 5), into
 * file[cap] (with its directory when the table gives one) and *line.
 * False if the file has no line data covering vaddr.
 */
bool gw_elffile_line(const struct gw_elffile *e, uint64_t vaddr, char *file, size_t cap, uint32_t *line) GW_HIDDEN;

/*
 * Many lines in one pass over .debug_line (a lookup walks the whole table):
 * reqs sorted by vaddr; each gets found, line, and what names its file.
 */
struct gw_elffile_line_req {
	uint64_t vaddr;               /* in */
	bool found;                   /* out */
	uint32_t line;
	uint64_t row;                 /* the matching row's address */
	uint64_t file;                /* file index in its unit */
	const unsigned char *unit;    /* the unit's header */
};
void gw_elffile_lines(const struct gw_elffile *e, struct gw_elffile_line_req *reqs, size_t n) GW_HIDDEN;
/* The source file of a found request, into file[cap]; false if it cannot be named. */
bool gw_elffile_line_file(const struct gw_elffile *e, const struct gw_elffile_line_req *r, char *file,
			  size_t cap) GW_HIDDEN;

#endif /* GW_ELFFILE_H */
