/*
 * growth.h - growth per allocation site between two snapshots (diff, top),
 * and printing of symbolized frames with stdio.
 */
#ifndef GWMEM_TOOLS_GROWTH_H
#define GWMEM_TOOLS_GROWTH_H

#include <stdio.h>

#include "report.h"
#include "view.h"

struct growth_site {
	uint32_t stack_id;       /* in the newer view; old_stack_id when gone */
	uint32_t old_stack_id;
	bool in_new;
	int64_t dcount;
	int64_t dbytes;
	uint64_t count;          /* now */
	uint64_t bytes;
};

/*
 * Match the sites of two collections (by stack id when both views come from
 * the same process, else by identical frames) and rank by byte growth, then
 * by bytes.  Returns a malloc'd array of *n entries, or NULL.
 */
struct growth_site *growth_compute(const struct gw_view *ov, const struct gw_sites *os,
				   const struct gw_view *nv, const struct gw_sites *ns, size_t *n);

bool same_process(const struct gw_view *a, const struct gw_view *b);

void print_frame_text(FILE *f, unsigned idx, const struct gw_frame_info *fi);
void print_frame_json(FILE *f, const struct gw_frame_info *fi);

#endif /* GWMEM_TOOLS_GROWTH_H */
