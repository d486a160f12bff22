/*
 * growth.c - site matching between two snapshots and frame printing for
 * `gwmem diff` and `gwmem top`.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "growth.h"
#include "shared.h"

bool same_process(const struct gw_view *a, const struct gw_view *b)
{
	return a->hdr.pid == b->hdr.pid && a->hdr.proc_starttime == b->hdr.proc_starttime &&
	       a->hdr.start_monotonic_ns == b->hdr.start_monotonic_ns;
}

struct key {
	uint64_t hash;
	int depth;
	uint64_t frames[GWMEM_SHM_MAX_FRAMES];
};

static void site_key(const struct gw_view *v, uint32_t id, struct key *k)
{
	uint64_t h = UINT64_C(1469598103934665603);

	k->depth = gw_view_stack(v, id, k->frames, GWMEM_SHM_MAX_FRAMES);
	if (k->depth < 0)
		k->depth = 0;
	for (int i = 0; i < k->depth; i++)
		h = (h ^ k->frames[i]) * UINT64_C(1099511628211);
	k->hash = h ^ (uint64_t)k->depth;
}

static int by_growth(const void *a, const void *b)
{
	const struct growth_site *x = a, *y = b;
	if (x->dbytes != y->dbytes)
		return x->dbytes > y->dbytes ? -1 : 1;
	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	return x->stack_id < y->stack_id ? -1 : x->stack_id > y->stack_id;
}

struct growth_site *growth_compute(const struct gw_view *ov, const struct gw_sites *os,
				   const struct gw_view *nv, const struct gw_sites *ns, size_t *n)
{
	bool same = same_process(ov, nv);
	size_t cap = 1;
	while (cap < 2 * (size_t)os->nsites + 2)
		cap *= 2;
	/* old site index + 1 per bucket; matched flags per old site */
	uint32_t *table = calloc(cap, sizeof(*table));
	bool *matched = calloc((size_t)os->nsites + 1, sizeof(*matched));
	struct key *okeys = NULL;
	struct growth_site *out = calloc((size_t)os->nsites + ns->nsites + 1, sizeof(*out));
	size_t m = 0;

	if (!table || !matched || !out)
		goto fail;
	if (!same) {
		okeys = calloc((size_t)os->nsites + 1, sizeof(*okeys));
		if (!okeys)
			goto fail;
		for (uint32_t i = 0; i < os->nsites; i++)
			site_key(ov, os->sites[i].stack_id, &okeys[i]);
	}
	for (uint32_t i = 0; i < os->nsites; i++) {
		uint64_t h = same ? os->sites[i].stack_id * UINT64_C(0x9e3779b97f4a7c15) : okeys[i].hash;
		size_t b = (size_t)(h >> 17) & (cap - 1);
		while (table[b])
			b = (b + 1) & (cap - 1);
		table[b] = i + 1;
	}
	for (uint32_t j = 0; j < ns->nsites; j++) {
		const struct gw_site *s = &ns->sites[j];
		struct key nk;
		uint64_t h;
		if (same) {
			h = s->stack_id * UINT64_C(0x9e3779b97f4a7c15);
		} else {
			site_key(nv, s->stack_id, &nk);
			h = nk.hash;
		}
		size_t b = (size_t)(h >> 17) & (cap - 1);
		int64_t found = -1;
		for (; table[b]; b = (b + 1) & (cap - 1)) {
			uint32_t i = table[b] - 1;
			if (matched[i])
				continue;
			if (same ? os->sites[i].stack_id == s->stack_id :
				   (okeys[i].hash == nk.hash && okeys[i].depth == nk.depth &&
				    memcmp(okeys[i].frames, nk.frames, (size_t)nk.depth * 8) == 0)) {
				found = i;
				break;
			}
		}
		struct growth_site *g = &out[m++];
		g->stack_id = s->stack_id;
		g->in_new = true;
		g->count = s->count;
		g->bytes = s->bytes;
		g->dcount = (int64_t)s->count;
		g->dbytes = (int64_t)s->bytes;
		if (found >= 0) {
			matched[found] = true;
			g->old_stack_id = os->sites[found].stack_id;
			g->dcount -= (int64_t)os->sites[found].count;
			g->dbytes -= (int64_t)os->sites[found].bytes;
		}
	}
	for (uint32_t i = 0; i < os->nsites; i++) {
		if (matched[i])
			continue;
		struct growth_site *g = &out[m++];
		g->stack_id = g->old_stack_id = os->sites[i].stack_id;
		g->dcount = -(int64_t)os->sites[i].count;
		g->dbytes = -(int64_t)os->sites[i].bytes;
	}
	qsort(out, m, sizeof(*out), by_growth);
	free(table);
	free(matched);
	free(okeys);
	*n = m;
	return out;
fail:
	free(table);
	free(matched);
	free(okeys);
	free(out);
	return NULL;
}

void print_frame_text(FILE *f, unsigned idx, const struct gw_frame_info *fi)
{
	fprintf(f, "      #%u 0x%llx", idx, (unsigned long long)fi->address);
	if (fi->function[0]) {
		fputc(' ', f);
		put_escaped(f, GW_ESC_TEXT, fi->function);
	}
	if (fi->module[0]) {
		fputs(" (", f);
		put_escaped(f, GW_ESC_TEXT, fi->module);
		fprintf(f, "+0x%llx)", (unsigned long long)fi->offset);
	}
	if (fi->file[0]) {
		fputs(" at ", f);
		put_escaped(f, GW_ESC_TEXT, fi->file);
		if (fi->line)
			fprintf(f, ":%u", fi->line);
	}
	fputc('\n', f);
}

void print_frame_json(FILE *f, const struct gw_frame_info *fi)
{
	fprintf(f, "{\"address\": \"0x%llx\", \"module\": ", (unsigned long long)fi->address);
	json_string(f, fi->module);
	fprintf(f, ", \"offset\": \"0x%llx\", \"function\": ", (unsigned long long)fi->offset);
	json_string(f, fi->function);
	fprintf(f, ", \"file\": ");
	json_string(f, fi->file);
	fprintf(f, ", \"line\": %u}", fi->line);
}

