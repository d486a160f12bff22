/*
 * next.c - finding and calling the next allocator in the chain.
 *
 * dlsym(RTLD_NEXT) finds whatever comes after us in the lookup scope: glibc,
 * musl, or another preloaded allocator.  glibc's __libc_* entry points are
 * the fallback when dlsym cannot be used (they are weak references, absent
 * on musl).
 */
#include "config.h"

#include <dlfcn.h>
#include <stddef.h>

#include "counters.h"
#include "next.h"

extern void *__libc_malloc(size_t) __attribute__((weak));
extern void __libc_free(void *) __attribute__((weak));
extern void *__libc_calloc(size_t, size_t) __attribute__((weak));
extern void *__libc_realloc(void *, size_t) __attribute__((weak));
extern void *__libc_memalign(size_t, size_t) __attribute__((weak));

/*
 * The next aligned allocator.  musl's memalign is a wrapper that calls
 * aligned_alloc through its interposable symbol, which is ours: calling it
 * would recurse until the stack overflows.  musl's aligned_alloc is its
 * real implementation (any power-of-two alignment, any size), so it is
 * the one taken there.
 */
#ifdef __GLIBC__
#define NEXT_MEMALIGN "memalign"
#else
#define NEXT_MEMALIGN "aligned_alloc"
#endif

struct gw_next gw_next;
static bool next_ready;

static void *find(const char *name, void *fallback)
{
	void *f = dlsym(RTLD_NEXT, name);
	return f ? f : fallback;
}

bool gw_next_init(void)
{
	if (next_ready)
		return true;
	struct gw_next n = {
		.malloc = find("malloc", (void *)__libc_malloc),
		.free = find("free", (void *)__libc_free),
		.calloc = find("calloc", (void *)__libc_calloc),
		.realloc = find("realloc", (void *)__libc_realloc),
		.memalign = find(NEXT_MEMALIGN, (void *)__libc_memalign),
		.usable_size = find("malloc_usable_size", NULL),
		.trim = find("malloc_trim", NULL),
	};
	if (!n.malloc || !n.free || !n.calloc || !n.realloc || !n.memalign) {
		gw_counters_event(GW_EVENT_NEXT_MISSING, false,
				  "cannot find the next allocator (dlsym RTLD_NEXT); large requests will fail");
		return false;
	}
	/*
	 * Make the first call into the next allocator here, while gwmem's init
	 * is serialised and (nearly always) only the main thread runs.  glibc
	 * initialises malloc on its first call with an unsynchronised
	 * "if (!__malloc_initialized) ptmalloc_init()", which also attaches
	 * main_arena to the calling thread without counting it.  Without gwmem
	 * the main thread always gets there first; with gwmem serving small
	 * blocks from the pools, the first large request may come from several
	 * threads at once: two of them then run ptmalloc_init, both hold
	 * main_arena with attached_threads == 1, and the second to exit aborts
	 * in __malloc_arena_thread_freeres ("a->attached_threads > 0").
	 */
	n.free(n.malloc(1));
	gw_next = n;
	__atomic_store_n(&next_ready, true, __ATOMIC_RELEASE);
	return true;
}

bool gw_next_ready(void)
{
	return __atomic_load_n(&next_ready, __ATOMIC_ACQUIRE);
}
