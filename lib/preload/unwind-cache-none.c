/*
 * unwind-cache-none.c - the backtrace cache where it does not apply (not
 * x86_64, no _dl_find_object, or tracking compiled out): every lookup is a
 * miss that may not fill, so gw_unwind_stack_id always unwinds.
 * lib/preload/meson.build picks this file or unwind-cache.c.
 */
#include "config.h"

#include "unwind.h"
#include "unwind-cache.h"

#if GW_UNWIND_CACHE
#error "unwind-cache-none.c is the fallback; the build picks unwind-cache.c here"
#endif

static GW_TLS uint64_t tls_misses;

uint32_t gw_unwind_cache_lookup(struct gw_unwind_probe *pr)
{
	pr->hi = 0;
	tls_misses++;
	return 0;
}

void gw_unwind_cache_store(const struct gw_unwind_probe *pr, uint32_t id, const uint64_t *buf,
			   unsigned nraw, unsigned first, unsigned out, unsigned max, bool cut)
{
}

void gw_unwind_cache_flush(void)
{
}

void gw_unwind_cache_enable(bool on)
{
}

uint64_t gw_unwind_cache_misses(void)
{
	return tls_misses;
}

void gw_unwind_cache_thread_memory(uintptr_t *lo, uintptr_t *hi)
{
	*lo = *hi = 0;
}
