/*
 * next.h - the next allocator in the chain (glibc's, or another preloaded
 * one), found with dlsym(RTLD_NEXT).  Everything the pools do not serve goes
 * there: large sizes, unusual alignments, full classes, pools disabled.
 */
#ifndef GW_NEXT_H
#define GW_NEXT_H

#include <stddef.h>

#include "internal.h"

struct gw_next {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	void *(*memalign)(size_t, size_t);
	size_t (*usable_size)(void *);
	int (*trim)(size_t);        /* malloc_trim, where the next allocator has one */
};

extern struct gw_next gw_next GW_HIDDEN;

/*
 * Resolve the next allocator; idempotent.  Returns true when every entry is
 * usable.  While it runs, the caller must serve reentrant allocations
 * itself (dlsym may allocate).
 */
bool gw_next_init(void) GW_HIDDEN;
bool gw_next_ready(void) GW_HIDDEN;

#endif /* GW_NEXT_H */
