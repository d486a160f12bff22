/*
 * symbolize-none.c - the symbolizer of the light CLI (-Dsymbolizer=disabled):
 * no libdw, frames are module+offset from the segment's module map, and the
 * outputs list each module's build-id so that a host can find the files
 * (`gwmem leaks SNAPSHOT --sysroot DIR --debug-dir DIR` there).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "symbolize.h"

struct symbolizer {
	const struct gw_view *view;         /* a segment's module map, or */
	struct gwmem_shm_module *mods;      /* a saved report's */
	int nmods;
	const char *exe;
};

static struct symbolizer *make(const struct symbolize_opts *o)
{
	if (o->sysroot || o->ndebug)
		fprintf(stderr, "gwmem %s: this gwmem has no symbolizer (built with -Dsymbolizer=disabled): "
			"frames show module+offset; symbolize the snapshot on a host\n", o->cmd);
	return calloc(1, sizeof(struct symbolizer));
}

struct symbolizer *symbolizer_new(const struct gw_view *v, const struct symbolize_opts *o)
{
	struct symbolizer *s = make(o);

	if (s)
		s->view = v;
	return s;
}

struct symbolizer *symbolizer_new_modules(const struct gwmem_shm_module *mods, int n, const char *exe,
					  const struct symbolize_opts *o)
{
	struct symbolizer *s = make(o);

	if (!s)
		return NULL;
	s->mods = n > 0 ? calloc((size_t)n, sizeof(*mods)) : NULL;
	if (s->mods) {
		memcpy(s->mods, mods, (size_t)n * sizeof(*mods));
		s->nmods = n;
	}
	s->exe = exe;
	return s;
}

void symbolizer_free(struct symbolizer *s)
{
	if (s)
		free(s->mods);
	free(s);
}

void symbolizer_frame(void *ctx, uint64_t address, struct gw_frame_info *out)
{
	struct symbolizer *s = ctx;

	if (s->view) {
		gw_report_symbolize_modules((void *)s->view, address, out);
	} else {
		memset(out, 0, sizeof(*out));
		for (int i = 0; i < s->nmods && address; i++) {
			const struct gwmem_shm_module *m = &s->mods[i];
			if (address - 1 >= m->start && address - 1 < m->end) {
				snprintf(out->module, sizeof(out->module), "%s",
					 m->path[0] || !s->exe ? m->path : s->exe);
				out->offset = address - m->bias;
				break;
			}
		}
	}
	out->address = address;
}
