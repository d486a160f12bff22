/*
 * shm.h - the shared-memory segment: sizing from the configuration, naming
 * (<shm_dir>/gwmem.<pid>.<starttime>), creation with safe permissions, the
 * memory behind it (backed page by page as the table and stacks grow, never
 * up front), removal at exit, and the child's copy after fork.
 *
 * The layout itself is include/gwmem/shm_layout.h; this module only decides
 * where each part goes, fills the header and backs pages.  The table, stacks
 * and module map are written by their own modules, which call gw_shm_back()
 * before they first write a page.
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
#include "spin.h"

/* Module map entries in every segment (backed as they are used). */
#define GW_SHM_MODULES 256u
/* Stripes (one lock and seqlock each): plenty for the cores of a gateway;
 * more for large limits (see gw_shm_geometry). */
#define GW_SHM_STRIPES 32u
#define GW_SHM_MAX_STRIPES 1024u
/* Under RLIMIT_AS, max_segment_bytes is at most this fraction of the limit. */
#define GW_SHM_RLIMIT_SHARE 32u
/* Smallest max_segment_bytes accepted: header, module map and a page per stripe. */
#define GW_SHM_MIN_BYTES (256u * 1024u)

/* Where each part of a segment goes.  Parts that are absent (tracking off)
 * have capacity 0 and offset 0. */
struct gw_shm_geom {
	uint64_t size;                 /* apparent size of the file, page aligned */
	uint64_t modules_offset;
	uint32_t modules_capacity;
	uint32_t max_frames;
	uint64_t stacks_offset;        /* page aligned */
	uint32_t stack_capacity;       /* entries */
	uint32_t stack_stride;         /* 16 + 8 * max_frames */
	uint64_t stripes_offset;
	uint64_t records_offset;       /* page aligned */
	uint32_t nstripes;             /* a power of two */
	uint32_t slots_per_stripe;     /* records per region (two regions per stripe) */
	uint64_t initial;              /* bytes backed at creation: header and stripe heads */
	uint64_t max_bytes;            /* cap on the backed bytes */
};

enum gw_shm_mode {
	GW_SHM_NONE = 0,
	GW_SHM_SHARED,                 /* the file is mapped: readers see what we write */
	GW_SHM_PRIVATE,                /* forked child: a private copy, no file yet */
	GW_SHM_FORKED,                 /* forked child before its first write: the parent's
					  file is still mapped (read only, by rule) and the
					  copy waits in fork_copy (gw_shm_fork_adopt) */
	GW_SHM_DETACHED,               /* private memory that never becomes a file */
};

/* One mapped segment; hdr == NULL means "no segment". */
struct gw_shm {
	struct gwmem_shm_header *hdr;
	size_t size;                   /* mapped: the apparent size (hdr->segment_size), or
					  less after gw_shm_give_back */
	size_t hole_lo, hole_hi;       /* [lo, hi): unmapped inside the mapping, no longer
					  ours (gw_shm_give_back); lo == hi: none */
	int mode;                      /* enum gw_shm_mode */
	int fd;                        /* kept to back pages; -1 when not ours any more */
	dev_t dev;
	ino_t ino;
	struct gw_spin lock;           /* backing lock; taken under table/stack locks */
	size_t page;
	uint8_t *backed;               /* one bit per page: backed by memory (private) */
	size_t npages;
	uint64_t allocated;            /* bytes backed */
	uint64_t max_bytes;
	uint64_t fork_ns;              /* CLOCK_MONOTONIC of the last fork (parent), of the
					  fork that made us private (child) */
	void *fork_copy;               /* fork: the parent's copy, handed to the child */
	uint8_t *fork_have;            /* pages of fork_copy that hold a copy (parent) */
	bool fork_copied;              /* fork_copy is current (between prepare and parent/child) */
	uint8_t *changed;              /* a byte per page of [changed_lo, changed_hi), set by
					  the writer's every store there (gw_shm_watch: the
					  writer's memory); NULL: none, every page is compared */
	uint64_t changed_lo, changed_hi;
	char path[GWMEM_CONFIG_PATH_MAX + 64]; /* empty when there is no file of ours */
	char dir[GWMEM_CONFIG_PATH_MAX];       /* shm_dir, for a forked child's own file */
};

/* Compute the layout for cfg; tracking == false gives a header + module map only. */
void gw_shm_geometry(const struct gwmem_config *cfg, bool tracking, struct gw_shm_geom *g) GW_HIDDEN;

/* "<dir>/gwmem.<pid>.<starttime>" into buf; returns 0 or -ENAMETOOLONG. */
int gw_shm_name(char *buf, size_t cap, const char *dir, pid_t pid, uint64_t starttime) GW_HIDDEN;

/*
 * Create and map this process's segment and fill its header (state
 * STARTING).  The file gets its full apparent size but only the header and
 * stripe heads are backed.  A stale file of ours with the same name (left
 * by the image before exec) is replaced.  Returns 0 or -errno; on error
 * s->hdr is NULL and nothing is left behind.
 */
int gw_shm_create(struct gw_shm *s, const struct gwmem_config *cfg, bool tracking) GW_HIDDEN;

/* Make the segment visible to readers: state RUNNING (release store). */
void gw_shm_publish(struct gw_shm *s) GW_HIDDEN;

/*
 * Back [off, off + len) with memory before it is first written: fallocate
 * on the file (a full filesystem gives an error here, never SIGBUS on a
 * later store), nothing for a private copy.  Returns 0, -ENOSPC when
 * max_segment_bytes would be exceeded, or -errno.  Thread-safe.
 */
int gw_shm_back(struct gw_shm *s, uint64_t off, uint64_t len) GW_HIDDEN;
/* True when every page of [off, off + len) is backed (lock-free hint). */
bool gw_shm_is_backed(const struct gw_shm *s, uint64_t off, uint64_t len) GW_HIDDEN;
/* Give [off, off + len) (page aligned) back: punch a hole / drop the pages. */
void gw_shm_release(struct gw_shm *s, uint64_t off, uint64_t len) GW_HIDDEN;
/*
 * Address space is short: drop the fork buffer kept between forks, and
 * unmap what nothing may use any more (the callers made sure:
 * gw_stacks_trim, gw_table_trim): the stack table from stacks_end to the
 * record area (page-aligned inward; 0 = keep it), which leaves a hole in
 * the mapping, and the segment from offset end (page-aligned up; 0 = keep
 * it all) to its end.  The file keeps its size.
 * Returns the bytes of address space given back.
 */
uint64_t gw_shm_give_back(struct gw_shm *s, uint64_t stacks_end, uint64_t end) GW_HIDDEN;

/* The backing lock alone (fork, exit: no page is being backed meanwhile). */
void gw_shm_lock(struct gw_shm *s) GW_HIDDEN;
void gw_shm_unlock(struct gw_shm *s) GW_HIDDEN;

/*
 * Normal exit: remove the file, or mark it EXITED when keep.  When the
 * file cannot be removed (a daemon that dropped the privileges it was
 * created with), it is truncated to zero so its memory goes back anyway,
 * and the mapping is replaced by private memory so that a late store from
 * another thread cannot fault.  The caller holds every writer lock for
 * that: gw_shm_exit_unlink() returns true when gw_shm_exit_truncate() is
 * needed.
 */
bool gw_shm_exit_unlink(struct gw_shm *s, bool keep) GW_HIDDEN;
/* Both, for a single-threaded caller (tests). */
void gw_shm_exit(struct gw_shm *s, bool keep) GW_HIDDEN;
void gw_shm_exit_truncate(struct gw_shm *s) GW_HIDDEN;

/*
 * [lo, hi) (page-aligned file offsets) is written only by a writer that
 * sets marks[(off - lo) / page] for every page it stores to, under locks
 * that gw_shm_fork_prepare's caller holds: the fork copy then takes only
 * the marked pages of that range instead of comparing each one.  marks is
 * the writer's own private memory, zero, a byte per whole page of the
 * range, kept for the segment's life: the writer puts it beside what it
 * writes anyway, so that marking costs no page of its own after a fork
 * (each private page written then is a copy-on-write fault).  The fork
 * copy clears the marks it took.  Returns 0, or -EINVAL (the range is
 * compared as before).
 */
int gw_shm_watch(struct gw_shm *s, uint64_t lo, uint64_t hi, uint8_t *marks) GW_HIDDEN;

/*
 * fork, with every writer lock held from prepare until parent/child: the
 * parent brings its copy of the segment's backed pages up to date in
 * private memory (prepare: only the pages that changed since its last
 * fork are written); the fork gives the child that copy, copy-on-write.
 * The parent drops the copy once it has not forked for
 * GW_SHM_FORK_IDLE_NS (gw_shm_fork_idle).  The child does nothing at fork
 * time but note that it is FORKED (child): it keeps the parent's file
 * mapped, and its first write to the segment must be preceded by
 * gw_shm_fork_adopt(), which moves the copy over the segment's address
 * (every pointer into it stays valid) and lets go of the parent's file.  So
 * a child that execs or exits without allocating costs one copy of the
 * live data in the parent and nothing in itself.  Nothing is written to
 * disk: gw_shm_materialize() does that later, if the child lives long
 * enough to be worth showing.  A segment that is already a private copy
 * needs no copy at all.  gw_shm_fork_child returns 0 or -errno (no copy:
 * the segment is then private zeroes, so the parent's file is never
 * written by the child); so does gw_shm_fork_adopt (same fallback).
 */
void gw_shm_fork_prepare(struct gw_shm *s) GW_HIDDEN;
void gw_shm_fork_parent(struct gw_shm *s) GW_HIDDEN;
int gw_shm_fork_child(struct gw_shm *s) GW_HIDDEN;
/* FORKED -> PRIVATE; single-threaded or under the caller's own lock. */
int gw_shm_fork_adopt(struct gw_shm *s) GW_HIDDEN;
/* Give the parent's copy buffer back when no fork came for GW_SHM_FORK_IDLE_NS. */
void gw_shm_fork_idle(struct gw_shm *s, uint64_t now_ns) GW_HIDDEN;
#define GW_SHM_FORK_IDLE_NS UINT64_C(200000000)

/*
 * Private copy -> a file of our own named for this process, mapped at the
 * same address; pid, ppid, start time and flags fixed.  The caller holds
 * every writer lock.  On failure the copy stays private (mode DETACHED).
 */
int gw_shm_materialize(struct gw_shm *s) GW_HIDDEN;

/* Round up to a power of two (v >= 1, result <= 2^31). */
uint32_t gw_shm_pow2(uint64_t v) GW_HIDDEN;

#endif /* GW_SHM_H */
