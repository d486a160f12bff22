/*
 * os.h - the operating-system primitives lib/ uses, none of which allocate:
 * page mappings (the only place in lib/ that maps or unmaps memory),
 * environment lookup that works before libc is ready, clocks, and small
 * file reads into caller buffers.
 */
#ifndef GW_OS_H
#define GW_OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "internal.h"

size_t gw_os_page_size(void) GW_HIDDEN;

/*
 * Every mapping of lib/ is made here (mimalloc's prim.h idea: one OS
 * contract).  Functions that return a pointer return NULL with errno set
 * on failure; none of them counts failures (common/ has no state): the
 * caller counts in its own counters (mmap_failures) where it has them.
 */

/* Anonymous private read-write mapping, or NULL (errno set). */
void *gw_os_map(size_t size) GW_HIDDEN;
/* Reserve address space only (PROT_NONE, MAP_NORESERVE), or NULL. */
void *gw_os_reserve(size_t size) GW_HIDDEN;
/* Make [p, p+size) of a reservation usable; returns 0 or -errno. */
int gw_os_commit(void *p, size_t size) GW_HIDDEN;
/* Give the pages back to the OS; the range stays mapped and reads as zero. */
void gw_os_decommit(void *p, size_t size) GW_HIDDEN;
/* Unmap [p, p+size); errno is kept. */
void gw_os_unmap(void *p, size_t size) GW_HIDDEN;

/*
 * The first size bytes of file fd, MAP_SHARED: read-write when writable,
 * else read-only.  With at != NULL the mapping replaces whatever is mapped
 * at [at, at+size) (MAP_FIXED) and lands there or fails.  Returns the
 * address or NULL (errno set).  fd may be closed afterwards.
 */
void *gw_os_map_shared(int fd, size_t size, bool writable, void *at) GW_HIDDEN;
/* The same for the file's bytes [off, off + size), at 'at' (MAP_FIXED). */
void *gw_os_map_shared_range(int fd, uint64_t off, size_t size, void *at) GW_HIDDEN;
/* Replace [at, at+size) by fresh private zero pages (MAP_FIXED); NULL (errno) on failure. */
void *gw_os_map_anon_at(void *at, size_t size) GW_HIDDEN;
/*
 * Move the mapping [from, from+size) to 'to', replacing what is mapped
 * there (mremap MREMAP_FIXED); from is unmapped afterwards.  Returns 0 or
 * -errno (then both ranges are as they were).
 */
int gw_os_remap_to(void *from, void *to, size_t size) GW_HIDDEN;

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
