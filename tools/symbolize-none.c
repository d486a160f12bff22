/*
 * symbolize-none.c - the symbolizer of the light CLI (-Dsymbolizer=disabled):
 * no libdw, frames are module+offset from the segment's module map, and the
 * outputs list each module's build-id so that a host can find the files
 * (`gwmem leaks SNAPSHOT --sysroot DIR --debug-dir DIR` there).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "symbolize.h"

struct symbolizer {
	const struct gw_view *view;
};

struct symbolizer *symbolizer_new(const struct gw_view *v, const struct symbolize_opts *o)
{
	struct symbolizer *s = calloc(1, sizeof(*s));

	if (o->sysroot || o->ndebug)
		fprintf(stderr, "gwmem %s: this gwmem has no symbolizer (built with -Dsymbolizer=disabled): "
			"frames show module+offset; symbolize the snapshot on a host\n", o->cmd);
	if (s)
		s->view = v;
	return s;
}

void symbolizer_free(struct symbolizer *s)
{
	free(s);
}

void symbolizer_frame(void *ctx, uint64_t address, struct gw_frame_info *out)
{
	struct symbolizer *s = ctx;

	gw_report_symbolize_modules((void *)s->view, address, out);
	out->address = address;
}
