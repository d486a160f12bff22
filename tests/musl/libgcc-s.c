/*
 * libgcc-s.c - a libgcc_s.so.1 for musl programs on a Debian host, built by
 * musl-test.sh from GCC's own libgcc_eh.a.
 *
 * A musl system (OpenWrt, Alpine) ships libgcc_s.so.1 linked against musl;
 * Debian ships only glibc's, which a musl process cannot load.  The musl
 * test needs one to exercise the preload's libgcc unwinder, so it links
 * the static unwinder GCC installs (libgcc_eh.a) into a shared object:
 *
 *  - libgcc_eh.a marks its entry points hidden; musl-test.sh renames the
 *    two the preload uses (objcopy --redefine-sym) and they are exported
 *    here again under their own names.  The wrappers compile to a jump, so
 *    _Unwind_Backtrace still starts at its real caller's frame.
 *  - Debian's GCC 12 finds FDEs with glibc's _dl_find_object (glibc 2.35),
 *    which musl lacks: it is provided here on top of dl_iterate_phdr, with
 *    the fields libgcc reads (the object's mapping and its PT_GNU_EH_FRAME).
 */
#define _GNU_SOURCE
#include <link.h>
#include <stddef.h>
#include <stdint.h>
#include <unwind.h>

/* glibc's struct dl_find_object on x86_64 (no dlfo_eh_dbase, no count) */
struct dl_find_object {
	unsigned long long dlfo_flags;
	void *dlfo_map_start;
	void *dlfo_map_end;
	struct link_map *dlfo_link_map;
	void *dlfo_eh_frame;
	unsigned long long dlfo_reserved[7];
};

int _dl_find_object(void *pc, struct dl_find_object *out);

struct query {
	uintptr_t pc;
	struct dl_find_object *out;
	int found;
};

static int find_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct query *q = data;
	uintptr_t lo = UINTPTR_MAX, hi = 0, eh = 0;
	int hit = 0;

	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_LOAD) {
			if (a < lo)
				lo = a;
			if (a + ph->p_memsz > hi)
				hi = a + ph->p_memsz;
			if (q->pc >= a && q->pc < a + ph->p_memsz)
				hit = 1;
		} else if (ph->p_type == PT_GNU_EH_FRAME) {
			eh = a;
		}
	}
	if (!hit)
		return 0;
	q->out->dlfo_flags = 0;
	q->out->dlfo_map_start = (void *)lo;
	q->out->dlfo_map_end = (void *)hi;
	q->out->dlfo_link_map = NULL;
	q->out->dlfo_eh_frame = (void *)eh;
	q->found = 1;
	return 1;
}

int _dl_find_object(void *pc, struct dl_find_object *out)
{
	struct query q = { (uintptr_t)pc, out, 0 };

	dl_iterate_phdr(find_cb, &q);
	return q.found && out->dlfo_eh_frame ? 0 : -1;
}

_Unwind_Reason_Code gcc_Unwind_Backtrace(_Unwind_Trace_Fn fn, void *arg);
_Unwind_Ptr gcc_Unwind_GetIP(struct _Unwind_Context *ctx);

_Unwind_Reason_Code _Unwind_Backtrace(_Unwind_Trace_Fn fn, void *arg)
{
	return gcc_Unwind_Backtrace(fn, arg);
}

_Unwind_Ptr _Unwind_GetIP(struct _Unwind_Context *ctx)
{
	return gcc_Unwind_GetIP(ctx);
}
