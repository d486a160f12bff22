/*
 * unwind.h - backtrace capture for allocation records.
 *
 * Two unwinders: a table-driven one (libunwind's unw_backtrace, or libgcc's
 * _Unwind_Backtrace where the build has no libunwind; works on any code,
 * the default) and a bounds-checked frame-pointer walk (several times cheaper,
 * right only for code built with frame pointers, never faults).  Both skip
 * the leading frames that lie in gwmem's own text (and optionally in a second
 * range: the object that called a gwmem_hook_* function), so frames[0] is
 * the return address in the code that called malloc.
 *
 * Callers hold the "inside gwmem" guard: libunwind and pthread_getattr_np
 * may allocate on first use in a thread.
 */
#ifndef GW_UNWIND_H
#define GW_UNWIND_H

#include <stdbool.h>
#include <stdint.h>

#include "gwmem.h"
#include "internal.h"

struct gw_range {
	uintptr_t lo, hi;       /* [lo, hi); lo == hi: empty */
};

static inline bool gw_range_has(const struct gw_range *r, uintptr_t a)
{
	return a >= r->lo && a < r->hi;
}

/*
 * Choose the unwinder and find gwmem's own text range (the executable
 * segments of the object holding this code).  When that object is the main
 * program (gwmem linked statically, unit tests) nothing is skipped by range.
 */
void gw_unwind_init(enum gwmem_unwinder kind) GW_HIDDEN;

/* Executable range of the object containing addr (union of its PF_X PT_LOADs);
 * *is_main (may be NULL) tells whether that object is the main program. */
bool gw_unwind_object_text(const void *addr, struct gw_range *out, bool *is_main) GW_HIDDEN;

/* Override the skipped range (tests; an empty range disables range skipping). */
void gw_unwind_set_self(struct gw_range r) GW_HIDDEN;
struct gw_range gw_unwind_self(void) GW_HIDDEN;

/*
 * Capture at most max (<= GWMEM_SHM_MAX_FRAMES) return addresses of the
 * calling thread, innermost first, dropping first the 'skip' innermost
 * frames, then every leading frame inside gwmem's text or inside 'extra'
 * (may be NULL).  Returns the number stored.
 */
unsigned gw_unwind_capture(uint64_t *frames, unsigned max, unsigned skip,
			   const struct gw_range *extra) GW_HIDDEN;

typedef uint32_t (*gw_unwind_intern_fn)(void *ctx, const uint64_t *frames, unsigned n);

/*
 * The stack id of the calling thread's backtrace: the frames
 * gw_unwind_capture(.., max, 0, NULL) would give (less this function's own
 * frame) passed to intern(ctx, ..).  On x86_64 with libunwind, a
 * per-thread cache answers repeated call paths without unwinding or
 * interning, and only when libunwind would give the same frames
 * (unwind-cache.c says how and when it stands aside).
 */
uint32_t gw_unwind_stack_id(unsigned max, gw_unwind_intern_fn intern, void *ctx) GW_HIDDEN;

/* The cache's controls, defined by unwind-cache.c or, where the build has no
 * cache, by unwind-cache-none.c (no-ops, every lookup a miss).
 * Forget every thread's cached backtraces (objects were unloaded). */
void gw_unwind_cache_flush(void) GW_HIDDEN;
/* Use the cache or not (tests compare both). */
void gw_unwind_cache_enable(bool on) GW_HIDDEN;
/* Lookups of the calling thread so far that the enabled cache did not
 * answer (tests; hits are not counted: a hit writes nothing). */
uint64_t gw_unwind_cache_misses(void) GW_HIDDEN;
/* The calling thread's cache memory, [*lo, *hi) (entries, rule memo,
 * bookkeeping; 0, 0 without a cache): tests check that a hit writes none
 * of it. */
void gw_unwind_cache_thread_memory(uintptr_t *lo, uintptr_t *hi) GW_HIDDEN;

/*
 * Walk a frame-pointer chain starting at frame fp, storing return
 * addresses; every frame must lie in [lo, hi), be pointer-aligned and lie
 * strictly above the previous one, else the walk stops.  Never faults when
 * [lo, hi) is mapped.
 */
unsigned gw_unwind_fp_walk(uintptr_t fp, uintptr_t lo, uintptr_t hi,
			   uint64_t *frames, unsigned max) GW_HIDDEN;

/*
 * unwind-libgcc.c: load libgcc_s.so.1 (dlopen; false if it or its
 * _Unwind_Backtrace is missing), and walk like unw_backtrace: at most max
 * return addresses, ips[0] in the caller of gw_unwind_libgcc_backtrace.
 */
bool gw_unwind_libgcc_load(void) GW_HIDDEN;
unsigned gw_unwind_libgcc_backtrace(void **ips, unsigned max) GW_HIDDEN;

/*
 * Whether a lies in an executable segment of a loaded object (the check the
 * frame-pointer unwinder makes on every frame; lock-free, re-reads the
 * loader's list when it changed).
 */
bool gw_unwind_in_text(uintptr_t a) GW_HIDDEN;

/*
 * The calling thread's stack bounds, found on its first use (state 0
 * unknown, 1 known, 2 failed).  In one per-thread struct read inline: the
 * backtrace cache checks them on every recorded allocation, and a call
 * there costs more than the check.
 */
struct gw_unwind_stack {
	uintptr_t lo, hi;
	uint8_t state;
};
extern GW_TLS struct gw_unwind_stack gw_unwind_tls_stack GW_HIDDEN;

/* Fill gw_unwind_tls_stack (may allocate: caller holds the guard). */
void gw_unwind_thread_stack_find(void) GW_HIDDEN;

/* The calling thread's stack bounds (cached per thread); false if unknown. */
static inline bool gw_unwind_thread_stack(uintptr_t *lo, uintptr_t *hi)
{
	if (gw_unlikely(gw_unwind_tls_stack.state == 0))
		gw_unwind_thread_stack_find();
	*lo = gw_unwind_tls_stack.lo;
	*hi = gw_unwind_tls_stack.hi;
	return gw_unwind_tls_stack.state == 1;
}

#endif /* GW_UNWIND_H */
