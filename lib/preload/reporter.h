/*
 * reporter.h - the report signal, the reporter thread and its periodic work
 * (module map, heartbeat, pool statistics), for track.c.
 *
 * Contract with track.c (the caller):
 *  - gw_reporter_start() once, after the segment exists (gw_track_segment
 *    answers), also when tracking is off: it writes the module map, starts
 *    the thread and installs the handler of leak_detection.report_signal
 *    unless the program has its own.
 *  - gw_reporter_atfork_child() in a forked child (the thread was not
 *    copied); the child's first recorded allocation then calls
 *    gw_reporter_check(), which starts a new thread there, outside fork's
 *    restrictions.
 *  - gw_reporter_stop() at exit: the thread ends at its next wake-up.
 */
#ifndef GW_REPORTER_H
#define GW_REPORTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gwmem.h"
#include "internal.h"

int gw_reporter_start(const struct gwmem_config *cfg) GW_HIDDEN;
void gw_reporter_stop(void) GW_HIDDEN;
void gw_reporter_atfork_child(uint64_t fork_ns) GW_HIDDEN;

/* Set in a forked child until its reporter thread is running again. */
extern bool gw_reporter_restart_pending GW_HIDDEN;
void gw_reporter_restart(void) GW_HIDDEN GW_NOINLINE GW_COLD;

/* Called on the recording path, inside the guard: one relaxed load. */
static inline void gw_reporter_check(void)
{
	if (gw_unlikely(__atomic_load_n(&gw_reporter_restart_pending, __ATOMIC_RELAXED)))
		gw_reporter_restart();
}

/*
 * Write a report file now, as the report signal does (the reporter thread
 * calls it): <report_dir>/gwmem-report.<pid>.<unix-time>[.<n>].txt, created
 * O_EXCL|O_NOFOLLOW, mode 0600.  The path goes to path_out (may be NULL).
 * Returns 0 or -errno.
 */
int gw_reporter_report_now(char *path_out, size_t cap) GW_HIDDEN;

#endif /* GW_REPORTER_H */
