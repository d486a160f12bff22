/*
 * track.h - allocation tracking: the decision to record, the per-thread
 * "inside gwmem" guard, sampling, and the glue between the interposer and
 * unwind/stacks/table/shm.
 *
 * Contract with interpose.c (the caller):
 *  - gw_track_init() is called once, after the pools and the next allocator
 *    are usable (so anything it calls may allocate) and before gw_track_on
 *    is read as true.  It creates the segment (also when tracking is off, so
 *    `gwmem stats` works), attaches pool stats and counters to it, and
 *    starts the reporter (reporter.c: report signal, thread, module map).
 *  - gw_track_alloc/free/realloc are called for every allocation the
 *    interposer serves (pooled or forwarded) while gw_track_on is true,
 *    outside every gwmem lock.  They return at once when the calling thread
 *    is already inside gwmem (guard), counting untracked_internal.
 *  - The atfork hooks are called from interpose's pthread_atfork handlers,
 *    prepare after the pool locks are taken, parent/child before they are
 *    released.
 *  - gw_track_exit() runs from the preload library's destructor.
 */
#ifndef GW_TRACK_H
#define GW_TRACK_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gwmem.h"
#include "internal.h"

extern bool gw_track_on GW_HIDDEN;

int gw_track_init(const struct gwmem_config *cfg) GW_HIDDEN;
void gw_track_alloc(void *p, size_t size) GW_HIDDEN;
/* gw_track_alloc keeping errno, returning p: for tail calls from malloc. */
void *gw_track_alloc_ret(void *p, size_t size) GW_HIDDEN;
void gw_track_free(void *p) GW_HIDDEN;

/*
 * The calling thread's errno, by address: the tracked paths keep errno
 * around all they do, and asking libc for its address (a call) on every
 * allocation and free costs more than remembering it.  A thread's errno
 * stays where it is for the thread's life, and a forked child's thread
 * has it at the same address.
 */
extern GW_TLS int *gw_track_tls_errno GW_HIDDEN;

static inline int *gw_track_errno(void)
{
	int *e = gw_track_tls_errno;

	if (gw_unlikely(!e))
		gw_track_tls_errno = e = &errno;
	return e;
}
void gw_track_realloc(void *oldp, void *newp, size_t size) GW_HIDDEN;

void gw_track_atfork_prepare(void) GW_HIDDEN;
void gw_track_atfork_parent(void) GW_HIDDEN;
void gw_track_atfork_child(void) GW_HIDDEN;
/*
 * A forked child keeps its copy of the segment private until it has lived
 * for a second (the reporter thread then gives it a file): this does it
 * now.  Returns 0, or -errno when the file could not be made.
 */
int gw_track_fork_publish(void) GW_HIDDEN;
/* Reporter thread: gw_track_fork_publish() once due (now: a report is asked for). */
void gw_track_fork_tick(bool now) GW_HIDDEN;
/* Back [off, off + len) of the segment before writing it (shm.c gw_shm_back). */
int gw_track_back(uint64_t off, uint64_t len) GW_HIDDEN;
void gw_track_exit(void) GW_HIDDEN;
/* The process ends through _exit: the segment's exit rule, signal-safely. */
void gw_track_exit_now(void) GW_HIDDEN;
/*
 * Address space is short (the next allocator failed under RLIMIT_AS): the
 * stack table and the record area stop where their used parts end, the
 * segment's mapping past them goes, and the fork buffer (shm.c
 * gw_shm_give_back).  Tracking
 * goes on with what it has.  Returns the bytes given back.
 */
uint64_t gw_track_give_back(void) GW_HIDDEN;

/* The per-thread guard: true while this thread runs gwmem's own code that
 * may allocate (libunwind, dlsym, dladdr, the reporter). */
bool gw_track_guarded(void) GW_HIDDEN;
void gw_track_guard_enter(void) GW_HIDDEN;
void gw_track_guard_leave(void) GW_HIDDEN;

/* The segment (header first) and its size (the header's: the mapping may
 * end before, gw_track_give_back); NULL/0 when there is none. */
struct gwmem_shm_header;
struct gwmem_shm_header *gw_track_segment(size_t *size) GW_HIDDEN;

/*
 * For hooks.c (blocks of libgwmem.so's pools): gw_track_admit() is
 * gw_track_alloc's decision (tracking on, not inside gwmem, sampled in;
 * counts what it turns away), gw_track_record_hooked() its record, with
 * the frames inside 'caller' (the pool library's text) skipped like
 * gwmem's own.  Both outside every gwmem lock.
 */
struct gw_range;
bool gw_track_admit(void) GW_HIDDEN;
void gw_track_record_hooked(void *p, size_t size, unsigned tag, const struct gw_range *caller) GW_HIDDEN;

#endif /* GW_TRACK_H */
