/*
 * report.h - the leak report: live records grouped by allocation site
 * (stack id), ranked by bytes, written to an fd as text, JSON or folded
 * stacks.  Shared by the preload's SIGUSR1 reporter (gw_report_self) and the
 * gwmem CLI.  Nothing here calls malloc or stdio: grouping arrays come from
 * os.c, output goes through a stack buffer and write(2).
 *
 * Definitions:
 *  - site: the set of live records with one stack id; stack id 0 ("no
 *    stack": table full or backtrace unavailable) is a site of its own.
 *  - age: now - record time, in tenths of a second (gw_view_now_ds()).
 */
#ifndef GW_REPORT_H
#define GW_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gwmem/shm_layout.h"
#include "internal.h"
#include "view.h"

enum gw_report_format {
	GW_REPORT_TEXT = 0,
	GW_REPORT_JSON = 1,
	GW_REPORT_FOLDED = 2,
};

/* One symbolized frame; empty strings and line 0 when unknown. */
struct gw_frame_info {
	uint64_t address;
	uint64_t offset;              /* address in the module's file (address - bias); 0 if no module */
	uint32_t line;
	char module[GWMEM_SHM_PATH_MAX];
	char function[256];
	char file[256];
};

/* Fill out for a return address (the callee subtracts 1 to look it up). */
typedef void (*gw_symbolize_fn)(void *ctx, uint64_t address, struct gw_frame_info *out);

struct gw_site {
	uint32_t stack_id;
	uint32_t oldest_ds;           /* smallest time_ds among the site's records */
	uint64_t count;
	uint64_t bytes;
};

struct gw_sites {
	struct gw_site *sites;        /* ranked by bytes, nsites entries */
	uint32_t nsites;              /* ranked sites kept (<= top) */
	uint32_t nmatching;           /* sites with at least one record passing the filters */
	uint64_t match_count;         /* records in matching sites */
	uint64_t match_bytes;
	uint64_t live_count;          /* every live record in the snapshot */
	uint64_t live_bytes;
	uint64_t now_ds;
	uint64_t retries;             /* seqlock retries while copying */
	size_t map_size;
	void *map;
};

struct gw_report_opts {
	uint32_t top;                 /* sites to keep; 0 = all */
	uint64_t min_bytes;           /* drop sites with fewer bytes (after filtering) */
	uint64_t older_than_ds;       /* only records at least this old; 0 = all */
	enum gw_report_format format;
	bool stats;                   /* text: write the stats header first, the module list last */
	bool modules;                 /* text: the module list (with build-ids) last, without stats too */
	gw_symbolize_fn symbolize;    /* NULL: module+offset from the segment's module map */
	void *sym_ctx;
	const char *wrappers;         /* more allocation wrappers (gw_report_is_wrapper), or NULL */
};

/* Snapshot the view, group, filter and rank.  0 or a gw_view_error. */
int gw_report_collect(const struct gw_view *v, const struct gw_report_opts *o, struct gw_sites *out) GW_HIDDEN;
void gw_report_sites_release(struct gw_sites *s) GW_HIDDEN;

/* Write the ranked sites in o->format.  0 or -errno. */
int gw_report_write(int fd, const struct gw_view *v, const struct gw_sites *s,
		    const struct gw_report_opts *o) GW_HIDDEN;

/* Symbolizer for in-process use: dladdr names plus module+offset; ctx is the view. */
void gw_report_symbolize_dladdr(void *ctx, uint64_t address, struct gw_frame_info *out) GW_HIDDEN;
/* Module+offset only, from the segment's module map; ctx is the view. */
void gw_report_symbolize_modules(void *ctx, uint64_t address, struct gw_frame_info *out) GW_HIDDEN;

/*
 * Allocation wrappers: functions that allocate on behalf of their caller
 * (strdup, asprintf, getline, operator new, g_malloc, xmalloc...).  A site
 * is named by its first frame outside them, so two callers of strdup are
 * two sites in labels, `top`, `diff` and folded output; detailed views and
 * JSON keep every frame.  extra: a comma-separated list of more names,
 * "name*" matching a prefix (NULL for none).  A versioned name
 * ("strdup@@GLIBC_2.2.5") matches as its bare name.
 */
bool gw_report_is_wrapper(const char *function, const char *extra) GW_HIDDEN;
/*
 * Symbolize frames[0..depth) until the first frame outside the wrappers;
 * *fi is that frame (frame 0 if every frame is a wrapper).  Returns its index.
 */
int gw_report_site_frame(const struct gw_view *v, const struct gw_report_opts *o,
			 const uint64_t *frames, int depth, struct gw_frame_info *fi) GW_HIDDEN;
/* One-line label of a frame: "func (file.c:42)", "func (module)", "module+0x1a2b". */
void gw_report_frame_label(const struct gw_frame_info *fi, char *dst, size_t cap) GW_HIDDEN;

/*
 * The SIGUSR1 report of this process's own segment: stats and the top
 * sites by live bytes, named from the module files (elfsym.c: .symtab and
 * DWARF line data, build-ids checked), and the module list with build-ids.
 * Allocation-free, no stdio.
 * Returns 0 or a negative gw_view_error / -errno.
 */
int gw_report_self(int fd, const void *segment, size_t size) GW_HIDDEN;

#endif /* GW_REPORT_H */
