/*
 * hook.h - how libgwmem.so's pools and heaps report their blocks to the
 * preload library's leak tracking.
 *
 * libgwmem-preload.so defines gwmem_hook_alloc/free/tag (exported); libgwmem.so
 * references them weakly.  When the preload is not there the references are
 * NULL and each hook costs one predictable branch; when it is, a pool block
 * is recorded like an allocation (with the backtrace of the pool call and a
 * tag naming the pool) until it is returned.
 */
#ifndef GW_HOOK_H
#define GW_HOOK_H

#include <stddef.h>

/* Register a pool name; returns a tag 1..15 for records (15 when all are taken). */
unsigned gwmem_hook_tag(const char *name) __attribute__((weak));
/* Record p (size bytes) as live, with the caller's backtrace and a tag. */
void gwmem_hook_alloc(void *p, size_t size, unsigned tag) __attribute__((weak));
/* p is no longer live. */
void gwmem_hook_free(void *p) __attribute__((weak));

#define GW_HOOK_ALLOC(p, size, tag) \
	do { if (gwmem_hook_alloc) gwmem_hook_alloc((p), (size), (tag)); } while (0)
#define GW_HOOK_FREE(p) \
	do { if (gwmem_hook_free) gwmem_hook_free(p); } while (0)
#define GW_HOOK_TAG(name) (gwmem_hook_tag ? gwmem_hook_tag(name) : 0u)

#endif /* GW_HOOK_H */
