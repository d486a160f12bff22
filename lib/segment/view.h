/*
 * view.h - a read-only, validated view of a gwmem shared-memory segment
 * (include/gwmem/shm_layout.h), used by the gwmem CLI and by the preload
 * library's own report writer.
 *
 * The segment is untrusted input: the file may be truncated, torn, stale
 * or hostile.  gw_view_open() checks every offset, count and stride against
 * the mapping before anything uses it, and keeps a private copy of the
 * header, so later changes by a writer cannot move the bounds already
 * checked.  Records are read through gw_view_snapshot(), which copies each
 * stripe under its seqlock and verifies the stripe's totals.
 *
 * Nothing here calls malloc or stdio: scratch memory comes from os.c.
 */
#ifndef GW_VIEW_H
#define GW_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gwmem/shm_layout.h"
#include "internal.h"

/*
 * header.flags bit set only in snapshot files written by `gwmem snapshot`:
 * heartbeat_monotonic_ns then holds the time the snapshot was taken, and
 * ages are computed relative to it.  The preload never sets it.
 */
#define GW_VIEW_FLAG_SNAPSHOT   GWMEM_SHM_FLAG_SNAPSHOT

/* Errors, all negative; gw_view_strerror() names them. */
enum gw_view_error {
	GW_VIEW_OK = 0,
	GW_VIEW_ERR_NOENT = -1,     /* no such segment file */
	GW_VIEW_ERR_ACCESS = -2,    /* permission denied */
	GW_VIEW_ERR_VERSION = -3,   /* layout version this reader does not know */
	GW_VIEW_ERR_CORRUPT = -4,   /* fails validation */
	GW_VIEW_ERR_BUSY = -5,      /* being initialised, or writers never let go */
	GW_VIEW_ERR_IO = -6,        /* other system error */
	GW_VIEW_ERR_NOMEM = -7,     /* scratch mapping failed */
};

struct gw_view {
	const unsigned char *base;
	size_t size;
	bool mapped;                    /* base was mapped by gw_view_open */
	int fd;                         /* the file (records are read with pread), or -1 */
	const char *why;                /* static text: what failed validation */
	struct gwmem_shm_header hdr;    /* validated private copy */
};

/* Open and validate a segment or snapshot file; 0 or a gw_view_error. */
int gw_view_open(struct gw_view *v, const char *path) GW_HIDDEN;
/* Validate a segment already in memory (the preload's own); 0 or an error. */
int gw_view_from_memory(struct gw_view *v, const void *base, size_t size) GW_HIDDEN;
void gw_view_close(struct gw_view *v) GW_HIDDEN;
const char *gw_view_strerror(int err) GW_HIDDEN;

/* Re-copy the live header (counters, classes, state); geometry must not change. */
int gw_view_refresh(struct gw_view *v) GW_HIDDEN;

/* Live header fields, read with relaxed atomics (they change under us). */
static inline const struct gwmem_shm_header *gw_view_live_header(const struct gw_view *v)
{
	return (const struct gwmem_shm_header *)(const void *)v->base;
}

/*
 * A consistent copy of each stripe in turn.  fn gets the stripe's slots
 * (ptr == 0 marks an empty slot), after the copy was taken between two
 * equal even reads of the stripe's seq and its live records were checked to
 * match the stripe's count and bytes, and every live record's stack id to be
 * within the stack table.  A non-zero return from fn stops the walk and is
 * returned.
 */
typedef int (*gw_view_stripe_fn)(void *ctx, uint32_t stripe,
				 const struct gwmem_shm_record *slots, uint32_t nslots,
				 uint32_t count, uint64_t bytes);

struct gw_view_snap_stats {
	uint64_t records;     /* live records seen */
	uint64_t bytes;       /* their sizes, summed */
	uint64_t retries;     /* stripe copies retried */
	uint64_t chunked;     /* stripes read a chunk at a time (a writer too busy
				 for a whole copy): their records are a scan, not
				 one instant */
};

int gw_view_snapshot(const struct gw_view *v, gw_view_stripe_fn fn, void *ctx,
		     struct gw_view_snap_stats *st) GW_HIDDEN;

/*
 * Frames of stack id (1-based) into frames[cap]; returns the depth (0 for
 * id 0 or an entry not yet published) or GW_VIEW_ERR_CORRUPT.
 */
int gw_view_stack(const struct gw_view *v, uint32_t id, uint64_t *frames, unsigned cap) GW_HIDDEN;

/* The module containing addr, copied (path NUL-terminated); false if none. */
bool gw_view_module_find(const struct gw_view *v, uint64_t addr, struct gwmem_shm_module *out) GW_HIDDEN;
/* A consistent copy of the module map; returns the number copied, or an error. */
int gw_view_modules(const struct gw_view *v, struct gwmem_shm_module *out, unsigned cap) GW_HIDDEN;

/* "Now" in tenths of a second since the segment's start, for ages. */
uint64_t gw_view_now_ds(const struct gw_view *v) GW_HIDDEN;

/* The command line with NULs turned into spaces, into dst[cap]; other bytes
 * are copied as they are: escape it for the output (escape.h). */
void gw_view_command(const struct gw_view *v, char *dst, size_t cap) GW_HIDDEN;

#endif /* GW_VIEW_H */
