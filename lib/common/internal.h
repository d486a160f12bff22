/*
 * internal.h - attributes, branch hints, asserts and build-time switches
 * shared by every lib/ module.  Nothing here allocates.
 */
#ifndef GW_INTERNAL_H
#define GW_INTERNAL_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_HIDDEN       __attribute__((visibility("hidden")))
#define GW_NOINLINE     __attribute__((noinline))
#define GW_ALWAYS_INLINE inline __attribute__((always_inline))
#define GW_COLD         __attribute__((cold))
#define GW_UNUSED       __attribute__((unused))
#define GW_CACHELINE    64
#define GW_ALIGNED(n)   __attribute__((aligned(n)))
#define GW_TLS          __thread __attribute__((tls_model("initial-exec")))
/*
 * The state a fork writes after it in the parent (locks taken by the
 * prepare handlers) or in the child (handlers resetting it).  Every page
 * written after a fork is a copy-on-write fault on that side, so these
 * objects share one section, which the preload's link puts at the start
 * of a page (lib/preload/fork-data.ld): one fault on each side for all of
 * them.  Elsewhere (the unit tests) the section is only kept together.
 * Keep what goes there small: all of it must fit in a page.
 */
#define GW_FORK_DATA    __attribute__((section("gw_fork_data")))

#define gw_likely(x)    __builtin_expect(!!(x), 1)
#define gw_unlikely(x)  __builtin_expect(!!(x), 0)

#define GW_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define GW_ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((uintptr_t)(a) - 1))
#define GW_IS_POW2(x)   ((x) != 0 && ((x) & ((x) - 1)) == 0)

/* Build-time switches (meson_options.txt -> config.h -> here). */
static const bool gw_cfg_tracking GW_UNUSED = GWMEM_WITH_TRACKING;
static const bool gw_cfg_debug_asserts GW_UNUSED = GWMEM_WITH_DEBUG_ASSERTS;

void gw_assert_fail(const char *expr, const char *file, int line) GW_HIDDEN __attribute__((noreturn, cold));

#ifndef NDEBUG
#define GW_ASSERT(e) ((e) ? (void)0 : gw_assert_fail(#e, __FILE__, __LINE__))
#else
#define GW_ASSERT(e) ((void)0)
#endif
#define GW_ASSERT_EXPENSIVE(e) \
	((!gw_cfg_debug_asserts || (e)) ? (void)0 : gw_assert_fail(#e, __FILE__, __LINE__))

#endif /* GW_INTERNAL_H */
