/*
 * symbolize.h - function and file:line for return addresses, with elfutils
 * libdwfl: /proc/PID/maps for a running process, the segment's module map
 * for one that is gone (or whose maps we may not read).  Falls back to
 * module+offset.
 */
#ifndef GWMEM_TOOLS_SYMBOLIZE_H
#define GWMEM_TOOLS_SYMBOLIZE_H

#include <stdbool.h>

#include "report.h"
#include "view.h"

struct symbolizer;

/* Never NULL unless out of memory; without DWARF it still gives module+offset. */
struct symbolizer *symbolizer_new(const struct gw_view *v, bool live);
void symbolizer_free(struct symbolizer *s);
/* A gw_symbolize_fn: ctx is the struct symbolizer. */
void symbolizer_frame(void *ctx, uint64_t address, struct gw_frame_info *out);

#endif /* GWMEM_TOOLS_SYMBOLIZE_H */
