/*
 * counters.h - process-wide event counters (misuse, fallbacks, failures).
 *
 * They live in a static struct until the shared-memory segment exists, then
 * in the segment (gw_counters_attach), so the CLI sees them live.  Every
 * counter is off the fast path: it counts rare events, with relaxed atomics.
 * gw_counters_event() prints a diagnostic the first time a kind of event is
 * seen (and every 2^k-th time after), never more.
 */
#ifndef GW_COUNTERS_H
#define GW_COUNTERS_H

#include <stdint.h>

#include "gwmem/shm_layout.h"
#include "internal.h"

extern struct gwmem_shm_counters *gw_counters GW_HIDDEN;

#define gw_count(field) \
	__atomic_fetch_add(&gw_counters->field, 1, __ATOMIC_RELAXED)
#define gw_count_n(field, n) \
	__atomic_fetch_add(&gw_counters->field, (n), __ATOMIC_RELAXED)

/* Copy the current counters into 'area' (in the segment) and use it from now on. */
void gw_counters_attach(struct gwmem_shm_counters *area) GW_HIDDEN;
/*
 * A forked child while it still maps its parent's segment: count from
 * zero in private memory (detach), then add those counts into its own copy
 * of the segment and use that (reattach).
 */
void gw_counters_detach(void) GW_HIDDEN;
void gw_counters_reattach(struct gwmem_shm_counters *area) GW_HIDDEN;

enum gw_event {
	GW_EVENT_INVALID_FREE,
	GW_EVENT_DOUBLE_FREE,
	GW_EVENT_POOL_FULL,
	GW_EVENT_MMAP_FAILED,
	GW_EVENT_TABLE_FULL,
	GW_EVENT_STACKS_FULL,
	GW_EVENT_SHM_FAILED,
	GW_EVENT_NEXT_MISSING,
	GW_EVENT_REPORT_FAILED,
	GW_EVENT_GIVE_BACK,
	GW_EVENT_MAX
};

/*
 * Log "gwmem: <message>" for an event the first time it happens (and at
 * counts 2^k after that, with the count), and abort if memory.abort_on_error
 * is set and 'fatal_if_configured'.
 */
void gw_counters_event(enum gw_event ev, bool fatal_if_configured, const char *fmt, ...) GW_HIDDEN
	__attribute__((format(printf, 3, 4), cold));

#endif /* GW_COUNTERS_H */
