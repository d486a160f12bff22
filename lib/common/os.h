/*
 * os.h - the operating-system primitives lib/ uses, none of which allocate:
 * page mappings, environment lookup that works before libc is ready,
 * clocks, and small file reads into caller buffers.
 */
#ifndef GW_OS_H
#define GW_OS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "internal.h"

size_t gw_os_page_size(void) GW_HIDDEN;

/* Anonymous read-write mapping, or NULL (errno set). Counts failures. */
void *gw_os_map(size_t size) GW_HIDDEN;
/* Reserve address space only (PROT_NONE, MAP_NORESERVE), or NULL. */
void *gw_os_reserve(size_t size) GW_HIDDEN;
/* Make [p, p+size) of a reservation usable; returns 0 or -errno. */
int gw_os_commit(void *p, size_t size) GW_HIDDEN;
/* Give the pages back to the OS; the range stays mapped and reads as zero. */
void gw_os_decommit(void *p, size_t size) GW_HIDDEN;
void gw_os_unmap(void *p, size_t size) GW_HIDDEN;

/*
 * getenv() that walks environ itself, so it works before libc finished
 * starting; returns NULL under AT_SECURE (set-uid) unless 'always' is set.
 */
const char *gw_os_getenv(const char *name) GW_HIDDEN;
bool gw_os_secure(void) GW_HIDDEN;

uint64_t gw_os_monotonic_ns(void) GW_HIDDEN;
uint64_t gw_os_realtime_ns(void) GW_HIDDEN;
uint32_t gw_os_gettid(void) GW_HIDDEN;

/*
 * Read up to cap-1 bytes of a file into buf (NUL-terminated), refusing
 * directories, FIFOs and symlinks if nofollow.  Returns the length, or
 * -errno; -EFBIG when the file has more than cap-1 bytes.
 */
ssize_t gw_os_read_file(const char *path, char *buf, size_t cap, bool nofollow) GW_HIDDEN;

/*
 * Open a file for reading only if it is a regular file: O_NONBLOCK, so a
 * FIFO planted where a module or debug file should be never blocks, then
 * S_ISREG.  Returns the fd (blocking again) and its size, or -errno
 * (-EINVAL for FIFOs, devices and sockets).
 */
int gw_os_open_regular(const char *path, uint64_t *size) GW_HIDDEN;
/* Read-only private mapping of the first size bytes of fd, or NULL. */
const void *gw_os_map_file(int fd, size_t size) GW_HIDDEN;

/* Field 22 of /proc/<pid>/stat (start time in clock ticks), or 0. */
uint64_t gw_os_proc_starttime(pid_t pid) GW_HIDDEN;

#endif /* GW_OS_H */
