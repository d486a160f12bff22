/*
 * fuzz-view.h - what the segment harnesses do with a view that passed
 * validation: everything a CLI command does with it (snapshot walk, every
 * stack, the module map, the command line, ages) and the report in each
 * output format, written to /dev/null.  Shared by fuzz-view.c (segments
 * in memory) and fuzz-snapshot.c (files opened by path).
 */
#ifndef GWMEM_FUZZ_VIEW_H
#define GWMEM_FUZZ_VIEW_H

#include <fcntl.h>
#include <unistd.h>

#include "report.h"
#include "view.h"

static int fuzz_stripe(void *ctx, uint32_t stripe, const struct gwmem_shm_record *slots,
		       uint32_t nslots, uint32_t count, uint64_t bytes)
{
	uint64_t *sum = ctx;

	(void)stripe; (void)count; (void)bytes;
	for (uint32_t i = 0; i < nslots; i++)
		*sum += slots[i].size ^ slots[i].stack_id;
	return 0;
}

static void fuzz_exercise(struct gw_view *v)
{
	static int null_fd = -1;
	struct gw_view_snap_stats st;
	struct gwmem_shm_module mods[8], m;
	uint64_t frames[GWMEM_SHM_MAX_FRAMES];
	uint64_t sum = 0;
	char cmd[512];

	if (null_fd < 0)
		null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	gw_view_snapshot(v, fuzz_stripe, &sum, &st);
	for (uint32_t id = 0; id < 64 && id <= v->hdr.stack_capacity + 1; id++)
		gw_view_stack(v, id, frames, GWMEM_SHM_MAX_FRAMES);
	gw_view_modules(v, mods, 8);
	gw_view_module_find(v, 0x400123, &m);
	gw_view_command(v, cmd, sizeof(cmd));
	(void)gw_view_now_ds(v);

	static const enum gw_report_format formats[] = {
		GW_REPORT_TEXT, GW_REPORT_JSON, GW_REPORT_FOLDED,
	};
	for (unsigned f = 0; f < sizeof(formats) / sizeof(formats[0]); f++) {
		struct gw_report_opts o = {
			.top = 8,
			.format = formats[f],
			.stats = true,
			.modules = true,
			.symbolize = gw_report_symbolize_modules,
			.sym_ctx = v,
		};
		struct gw_sites s;
		if (gw_report_collect(v, &o, &s) == 0) {
			gw_report_write(null_fd, v, &s, &o);
			gw_report_sites_release(&s);
		}
	}
}

#endif /* GWMEM_FUZZ_VIEW_H */
