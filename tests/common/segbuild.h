/*
 * segbuild.h - builds a small valid segment in memory, by hand, for the
 * segment readers' unit tests and the CLI tests (no preload involved).
 * Header-only, static.
 *
 * Geometry (layout version 2): 4 modules, 16 stacks of 8 frames, 4 stripes
 * whose array of 8 slots is in the first of their two 8-slot regions.
 * sb_to_v1() turns it into the version 1 layout (fixed arrays), for the
 * readers' compatibility tests.
 */
#ifndef GWMEM_TEST_SEGBUILD_H
#define GWMEM_TEST_SEGBUILD_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gwmem/shm_layout.h"

#define SB_MODULES   4u
#define SB_STACKS    16u
#define SB_FRAMES    8u
#define SB_STRIDE    (16u + 8u * SB_FRAMES)
#define SB_STRIPES   4u
#define SB_SLOTS     8u

#define SB_MOD_OFF   ((uint64_t)GWMEM_SHM_HEADER_SIZE)
#define SB_STK_OFF   (SB_MOD_OFF + SB_MODULES * sizeof(struct gwmem_shm_module))
#define SB_STR_OFF   ((SB_STK_OFF + SB_STACKS * SB_STRIDE + 63) & ~(uint64_t)63)
#define SB_REC_OFF   (SB_STR_OFF + SB_STRIPES * sizeof(struct gwmem_shm_stripe))
#define SB_SIZE      (SB_REC_OFF + 2 * SB_STRIPES * SB_SLOTS * sizeof(struct gwmem_shm_record))

static inline struct gwmem_shm_header *sb_hdr(void *seg)
{
	return seg;
}

static inline struct gwmem_shm_stripe *sb_stripe(void *seg, uint32_t i)
{
	return (struct gwmem_shm_stripe *)((char *)seg + SB_STR_OFF) + i;
}

static inline struct gwmem_shm_record *sb_slots(void *seg, uint32_t stripe)
{
	return (struct gwmem_shm_record *)((char *)seg + SB_REC_OFF) + (uint64_t)stripe * 2 * SB_SLOTS;
}

static inline struct gwmem_shm_stack *sb_stack(void *seg, uint32_t id)
{
	return (struct gwmem_shm_stack *)((char *)seg + SB_STK_OFF + (uint64_t)(id - 1) * SB_STRIDE);
}

/* A fresh valid segment (calloc'd, SB_SIZE bytes); ages are relative to
 * now_ds tenths after start (snapshot flag set, so no clock is read). */
static inline void *sb_new(uint32_t pid, uint64_t now_ds)
{
	void *seg = calloc(1, SB_SIZE);
	struct gwmem_shm_header *h = seg;

	h->magic = GWMEM_SHM_MAGIC;
	h->version = GWMEM_SHM_VERSION;
	h->header_size = GWMEM_SHM_HEADER_SIZE;
	h->segment_size = SB_SIZE;
	h->pid = pid;
	h->proc_starttime = 12345;
	h->start_monotonic_ns = 1000000000ull;
	h->heartbeat_monotonic_ns = h->start_monotonic_ns + now_ds * 100000000ull;
	h->state = GWMEM_SHM_STATE_RUNNING;
	h->flags = GWMEM_SHM_FLAG_TRACKING | (1u << 31);
	h->pointer_bits = 64;
	h->page_size = 4096;
	memcpy(h->cmdline, "testprog\0--flag", 15);
	strcpy(h->exe, "/usr/bin/testprog");
	h->config.threshold_seconds = 300;
	h->config.max_frames = SB_FRAMES;
	h->nclasses = 2;
	h->classes[0].block_size = 16;
	h->classes[0].active_blocks = 3;
	h->classes[1].block_size = 32;
	h->modules_offset = SB_MOD_OFF;
	h->modules_capacity = SB_MODULES;
	h->modules_count = 1;
	struct gwmem_shm_module *m = (void *)((char *)seg + SB_MOD_OFF);
	m->start = 0x400000;
	m->end = 0x500000;
	m->bias = 0x400000;
	strcpy(m->path, "/usr/bin/testprog");
	h->stacks_offset = SB_STK_OFF;
	h->stack_capacity = SB_STACKS;
	h->stack_stride = SB_STRIDE;
	h->max_frames = SB_FRAMES;
	h->stripes_offset = SB_STR_OFF;
	h->records_offset = SB_REC_OFF;
	h->nstripes = SB_STRIPES;
	h->slots_per_stripe = SB_SLOTS;
	for (uint32_t i = 0; i < SB_STRIPES; i++) {
		sb_stripe(seg, i)->offset = SB_REC_OFF + (uint64_t)i * 2 * SB_SLOTS * sizeof(struct gwmem_shm_record);
		sb_stripe(seg, i)->slots = SB_SLOTS;
	}
	return seg;
}

/* Publish stack id (1-based) with depth frames 0x400000 + 16*(id*8+i) + 1. */
static inline void sb_stack_set(void *seg, uint32_t id, uint32_t depth)
{
	struct gwmem_shm_stack *e = sb_stack(seg, id);

	e->depth = depth;
	for (uint32_t i = 0; i < depth; i++)
		e->frames[i] = 0x400000 + 16u * (id * 8u + i) + 1u;
	e->hash = 0x1000 + id;
	sb_hdr(seg)->counters.stacks_used++;
}

/* Insert a record; returns 0, or -1 when its stripe is full. */
static inline int sb_record(void *seg, uint64_t ptr, uint64_t size, uint32_t stack, uint32_t time_ds)
{
	uint32_t s = (uint32_t)((ptr >> 4) % SB_STRIPES);
	struct gwmem_shm_record *r = sb_slots(seg, s);

	for (uint32_t i = 0; i < SB_SLOTS; i++) {
		uint32_t k = (uint32_t)((ptr >> 6) + i) % SB_SLOTS;
		if (r[k].ptr)
			continue;
		r[k].ptr = ptr;
		r[k].size = size;
		r[k].stack_id = stack;
		r[k].time_ds = time_ds;
		r[k].tid = 1;
		sb_stripe(seg, s)->count++;
		sb_stripe(seg, s)->bytes += size;
		sb_stripe(seg, s)->inserted++;
		return 0;
	}
	return -1;
}

/* The same content in the version 1 layout: stripe arrays back to back, no
 * array offsets in the heads.  (The v1 file was smaller; the tail stays.) */
static inline void sb_to_v1(void *seg)
{
	const size_t len = SB_SLOTS * sizeof(struct gwmem_shm_record);

	for (uint32_t i = 0; i < SB_STRIPES; i++) {
		memmove((char *)seg + SB_REC_OFF + i * len, sb_slots(seg, i), len);
		sb_stripe(seg, i)->offset = 0;
		sb_stripe(seg, i)->slots = 0;
	}
	memset((char *)seg + SB_REC_OFF + SB_STRIPES * len, 0, SB_STRIPES * len);
	sb_hdr(seg)->version = 1;
}

#endif /* GWMEM_TEST_SEGBUILD_H */
