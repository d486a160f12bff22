/*
 * elfsym.h - naming a segment's frames from the module files it lists,
 * without libdw and without malloc: the preload's reporter thread uses it
 * for the SIGUSR1 report (the CLI uses libdwfl, tools/symbolize.c).
 *
 * Functions come from .symtab (static functions too) or .dynsym, file:line
 * from DWARF .debug_line, of the module file itself or of its separate
 * debug file (/usr/lib/debug/.build-id, .gnu_debuglink next to it); a file
 * whose build-id differs from the recorded one is never used.  Files are
 * mapped once per symbolizer and unmapped by gw_elfsym_free.
 */
#ifndef GW_ELFSYM_H
#define GW_ELFSYM_H

#include "internal.h"
#include "report.h"
#include "view.h"

struct gw_elfsym;

/* NULL if the view has no module map or memory is short (callers fall back to module+offset). */
struct gw_elfsym *gw_elfsym_new(const struct gw_view *v) GW_HIDDEN;
void gw_elfsym_free(struct gw_elfsym *s) GW_HIDDEN;
/*
 * Symbolize addrs[0..n) ahead, reading each module's line table once for
 * all of its frames (a line lookup alone walks the whole table).  Optional:
 * gw_elfsym_frame answers any address; prepared ones cost a binary search.
 */
void gw_elfsym_prepare(struct gw_elfsym *s, const uint64_t *addrs, size_t n) GW_HIDDEN;
/* A gw_symbolize_fn; ctx is the struct gw_elfsym. */
void gw_elfsym_frame(void *ctx, uint64_t address, struct gw_frame_info *out) GW_HIDDEN;

#endif /* GW_ELFSYM_H */
