/*
 * unwind-libgcc.c - backtraces through the compiler's own unwinder:
 * _Unwind_Backtrace from libgcc_s.so.1, for targets built without
 * libunwind (musl systems, 32-bit ARM, -Dunwinder=libgcc).
 *
 * libgcc_s is the unwinder C++ exceptions and glibc's backtrace() use; it
 * is on every glibc and musl system that runs C++ or pthread_cancel, and
 * it reads the same tables libunwind does (.eh_frame on most targets,
 * EXIDX on 32-bit ARM), so code built without frame pointers is walked
 * exactly.  It is loaded with dlopen (RTLD_LOCAL) when tracking starts,
 * not linked, so that a process with tracking off never maps it and the
 * preload has no link-time dependency that a minimal image may lack.
 *
 * Which unwinder runs, the frame skipping and the caching stay in
 * unwind.c; this file only loads libgcc_s and walks.
 */
#include "config.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <unwind.h>

#include "unwind.h"

typedef _Unwind_Reason_Code (*backtrace_fn)(_Unwind_Trace_Fn, void *);

#if defined(__ARM_EABI_UNWINDER__)
/* ARM EHABI: _Unwind_GetIP is a macro over _Unwind_VRS_Get (r15, Thumb bit set) */
typedef _Unwind_VRS_Result (*vrs_get_fn)(_Unwind_Context *, _Unwind_VRS_RegClass, uint32_t,
					 _Unwind_VRS_DataRepresentation, void *);
static vrs_get_fn vrs_get;
#define IP_SYMBOL "_Unwind_VRS_Get"
#else
typedef _Unwind_Ptr (*get_ip_fn)(struct _Unwind_Context *);
static get_ip_fn get_ip;
#define IP_SYMBOL "_Unwind_GetIP"
#endif

static backtrace_fn unwind_backtrace;

bool gw_unwind_libgcc_load(void)
{
	static const char *const names[] = { "libgcc_s.so.1", "libgcc_s.so" };
	void *h = NULL;

	if (__atomic_load_n(&unwind_backtrace, __ATOMIC_ACQUIRE))
		return true;
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]) && !h; i++)
		h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return false;
	void *bt = dlsym(h, "_Unwind_Backtrace");
	void *ip = dlsym(h, IP_SYMBOL);
	if (!bt || !ip)
		return false;
	/* the handle stays open for the life of the process: frames may be read
	 * by any thread at any time */
#if defined(__ARM_EABI_UNWINDER__)
	vrs_get = (vrs_get_fn)ip;
#else
	get_ip = (get_ip_fn)ip;
#endif
	__atomic_store_n(&unwind_backtrace, (backtrace_fn)bt, __ATOMIC_RELEASE);
	return true;
}

struct walk {
	void **ips;
	unsigned n, max;
	bool own;       /* the first frame is this file's walker: not reported */
};

static uintptr_t frame_ip(struct _Unwind_Context *ctx)
{
#if defined(__ARM_EABI_UNWINDER__)
	uint32_t pc = 0;

	if (vrs_get(ctx, _UVRSC_CORE, 15, _UVRSD_UINT32, &pc) != _UVRSR_OK)
		return 0;
	return pc & ~(uint32_t)1;
#else
	return (uintptr_t)get_ip(ctx);
#endif
}

static _Unwind_Reason_Code walk_step(struct _Unwind_Context *ctx, void *arg)
{
	struct walk *w = arg;
	uintptr_t ip = frame_ip(ctx);

	if (ip == 0)
		return _URC_END_OF_STACK;
	if (w->own) {
		w->own = false;
		return _URC_NO_REASON;
	}
	w->ips[w->n++] = (void *)ip;
	return w->n < w->max ? _URC_NO_REASON : _URC_END_OF_STACK;
}

/*
 * Like unw_backtrace: ips[0] is the return address into the function that
 * called this one.  _Unwind_Backtrace starts at its own caller (this
 * function), whose frame is dropped.  Kept out of line so that this frame
 * exists on every target.
 */
__attribute__((noinline)) unsigned gw_unwind_libgcc_backtrace(void **ips, unsigned max)
{
	backtrace_fn bt = __atomic_load_n(&unwind_backtrace, __ATOMIC_ACQUIRE);
	struct walk w = { .ips = ips, .n = 0, .max = max, .own = true };

	if (!bt || max == 0)
		return 0;
	bt(walk_step, &w);
	return w.n;
}
