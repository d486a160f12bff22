/*
 * tracker.h - in-process leak tracking of the API's pools: what fixpool.c
 * calls for a pool created with GWMEM_FIXPOOL_TRACK.
 */
#ifndef GW_TRACKER_H
#define GW_TRACKER_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

struct gw_track;

/* Records for blocks 0 .. capacity-1 of one pool; NULL (errno set) on failure. */
struct gw_track *gw_track_create(const char *name, size_t capacity, size_t block_size) GW_HIDDEN;
void gw_track_destroy(struct gw_track *t) GW_HIDDEN;
/* Block 'index' was handed out; 'ra' is the return address into the caller
 * of the public function, where the recorded backtrace starts. */
void gw_track_alloc(struct gw_track *t, size_t index, const void *ra) GW_HIDDEN;
/* Block 'index' came back. */
void gw_track_free(struct gw_track *t, size_t index) GW_HIDDEN;

#endif /* GW_TRACKER_H */
