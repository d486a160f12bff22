/*
 * unwind-cache.h - the per-thread backtrace cache behind gw_unwind_stack_id
 * (unwind.c): a repeated call path is answered with its stack id, without
 * libunwind, when a replay of the path's .eh_frame rules over the current
 * stack finds every return address again (unwind-cache.c says why that is
 * sound).
 *
 * lib/preload/meson.build builds unwind-cache.c where the replay applies
 * (x86_64, glibc's _dl_find_object, tracking built) and unwind-cache-none.c
 * elsewhere, and sets GW_UNWIND_CACHE to match, so that unwind.c does not
 * even probe where there is no cache.  gw_unwind_cache_flush, _enable and
 * _hits (unwind.h) are defined by the same file.
 */
#ifndef GW_UNWIND_CACHE_H
#define GW_UNWIND_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

#ifndef GW_UNWIND_CACHE
#error "GW_UNWIND_CACHE comes from lib/preload/meson.build"
#endif
static const bool gw_unwind_cache_built GW_UNUSED = GW_UNWIND_CACHE;

/* The registers at the probe point, from which a replay starts, and what a
 * miss leaves for gw_unwind_cache_store. */
struct gw_unwind_probe {
	uintptr_t ip, sp, bp;
	uintptr_t hi;           /* top of the thread's stack; 0: no cache for this call */
	uint32_t epoch;
	void *cand;             /* the cache's candidate entry for this state, if any */
};

/*
 * Read rip, rsp and rbp at this point of the calling function.  The probe
 * must sit in the function that then calls libunwind, so that the rules
 * replayed from it are the ones libunwind follows from the same frame.
 */
#if defined(__x86_64__)
#define GW_UNWIND_PROBE(pr) \
	__asm__ __volatile__("lea 0(%%rip), %0\n\t" \
			     "mov %%rsp, %1\n\t" \
			     "mov %%rbp, %2" \
			     : "=r"((pr).ip), "=r"((pr).sp), "=r"((pr).bp))
#else
#define GW_UNWIND_PROBE(pr) ((void)((pr).ip = (pr).sp = (pr).bp = 0))
#endif

/*
 * The stack id of a cached path whose replay from the probe state in
 * pr->ip/sp/bp holds, or 0: then pr->hi says whether the call may fill the
 * cache with gw_unwind_cache_store() once it has unwound.
 */
uint32_t gw_unwind_cache_lookup(struct gw_unwind_probe *pr) GW_HIDDEN;

/*
 * After a miss: libunwind's raw frames buf[0..nraw), the stack's frames
 * buf[first..first + out) of at most max, whether the capture filled its
 * buffer (cut), and the id they were interned as.
 */
void gw_unwind_cache_store(const struct gw_unwind_probe *pr, uint32_t id, const uint64_t *buf,
			   unsigned nraw, unsigned first, unsigned out, unsigned max, bool cut) GW_HIDDEN;

#endif /* GW_UNWIND_CACHE_H */
