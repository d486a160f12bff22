/*
 * shm.h - the shared-memory segment: sizing from the configuration, naming
 * (<shm_dir>/gwmem.<pid>.<starttime>), creation with safe permissions,
 * removal at exit, and the copy a forked child makes of its parent's segment.
 *
 * The layout itself is include/gwmem/shm_layout.h; this module only decides
 * where each part goes and fills the header.  The table, stacks and module
 * map are written by their own modules.
 */
#ifndef GW_SHM_H
#define GW_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gwmem.h"
#include "gwmem/shm_layout.h"
#include "internal.h"

/* Module map entries reserved in every segment. */
#define GW_SHM_MODULES 256u
/* Allocation table design load: records = max_tracked_allocations * 4 / 3. */
#define GW_SHM_LOAD_NUM 3u
#define GW_SHM_LOAD_DEN 4u
/* At most this many stripes (one lock and seqlock each). */
#define GW_SHM_MAX_STRIPES 1024u

/* Where each part of a segment goes; all offsets 64-byte aligned.  Parts
 * that are absent (tracking off) have capacity 0 and offset 0. */
struct gw_shm_geom {
	uint64_t size;
	uint64_t modules_offset;
	uint32_t modules_capacity;
	uint32_t max_frames;
	uint64_t stacks_offset;
	uint32_t stack_capacity;       /* entries, a power of two */
	uint32_t stack_stride;         /* 16 + 8 * max_frames */
	uint64_t stripes_offset;
	uint64_t records_offset;
	uint32_t nstripes;             /* a power of two */
	uint32_t slots_per_stripe;     /* a power of two */
};

/* One mapped segment; hdr == NULL means "no segment". */
struct gw_shm {
	struct gwmem_shm_header *hdr;
	size_t size;
	dev_t dev;
	ino_t ino;
	char path[GWMEM_CONFIG_PATH_MAX + 64];
};

/* Compute the layout for cfg; tracking == false gives a header + module map only. */
void gw_shm_geometry(const struct gwmem_config *cfg, bool tracking, struct gw_shm_geom *g) GW_HIDDEN;

/* "<dir>/gwmem.<pid>.<starttime>" into buf; returns 0 or -ENAMETOOLONG. */
int gw_shm_name(char *buf, size_t cap, const char *dir, pid_t pid, uint64_t starttime) GW_HIDDEN;

/*
 * Create and map this process's segment and fill its header (state
 * STARTING).  A stale file of ours with the same name (left by the image
 * before exec) is replaced.  Returns 0 or -errno; on error s->hdr is NULL
 * and nothing is left behind.
 */
int gw_shm_create(struct gw_shm *s, const struct gwmem_config *cfg, bool tracking) GW_HIDDEN;

/* Make the segment visible to readers: state RUNNING (release store). */
void gw_shm_publish(struct gw_shm *s) GW_HIDDEN;

/* Normal exit: remove the file, or mark it EXITED when keep.  The mapping
 * stays (other threads may still write to it until the process is gone). */
void gw_shm_exit(struct gw_shm *s, bool keep) GW_HIDDEN;

/*
 * In a forked child: write the inherited segment into a new file named for
 * the child, map it at the same address (so every pointer into it stays
 * valid) and fix pid, ppid, start time and flags.  On failure the child
 * keeps a private anonymous copy at the same address (so nothing it writes
 * reaches the parent's file) and s->hdr stays valid but unpublished (path
 * empty).  Returns 0 or -errno.
 */
int gw_shm_fork_child(struct gw_shm *s) GW_HIDDEN;

/* Round up to a power of two (v >= 1, result <= 2^31). */
uint32_t gw_shm_pow2(uint64_t v) GW_HIDDEN;

#endif /* GW_SHM_H */
