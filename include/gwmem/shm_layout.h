/*
 * gwmem shared-memory segment layout: the one contract between the preload
 * library (writer) and the gwmem CLI (reader).
 *
 * A segment is a file /dev/shm/gwmem.<pid>.<starttime> (mode 0600) where
 * <starttime> is field 22 of /proc/<pid>/stat, so a reused pid never names the
 * same segment.  It holds, in this order, each part starting at the offset the
 * header gives (64-byte aligned; from the stack table on, page aligned):
 *
 *   struct gwmem_shm_header        fixed size, GWMEM_SHM_HEADER_SIZE bytes
 *   struct gwmem_shm_module[]      module map (seqlocked by modules_seq)
 *   struct gwmem_shm_stripe[]      nstripes stripe heads, one cache line each
 *   stack table                    stack_capacity entries of stack_stride bytes
 *   record area                    nstripes * 2 * slots_per_stripe records
 *                                  (version 3; version 2: per stripe two
 *                                  regions of slots_per_stripe records)
 *
 * Version 2: the file's apparent size (segment_size) is fixed at creation
 * from the configured limits, but it is sparse: the writer backs a page
 * with memory (fallocate) only before it first writes it, so the memory a
 * segment uses (allocated_bytes, what `du` shows) follows the live
 * allocations and stacks, not the limits.  A stripe's records are one
 * array of at most slots_per_stripe records anywhere in the record area
 * (version 3: arrays of all stripes share it, small ones packed); when it
 * fills up the writer builds a larger array elsewhere in the area and
 * releases (punches) the old one.  Readers read only what live counts say:
 * the stripe arrays named by the heads, stacks below counters.stacks_used,
 * modules below modules_count.  Pages outside those may be holes.
 *
 * Version 2 (still read): the same, but stripe s's array was always at one
 * of two fixed regions, records_offset + (2 * s + 0 or 1) *
 * slots_per_stripe * 32.
 *
 * Version 1 (still read): stripe heads came after the stack table, the
 * stack table was an open-addressing hash of stack_capacity (a power of
 * two) entries, and stripe s's records were slots_per_stripe records at
 * records_offset + s * slots_per_stripe * 32, always backed.
 *
 * Definitions used throughout:
 *  - stripe: a slice of the allocation table with its own spinlock and
 *    sequence counter.  A pointer's stripe comes from a hash of its address
 *    (lib/preload/table.h).  Within a stripe the records are an array of
 *    stripe.slots records at stripe.offset; a record with ptr 0 is unused
 *    (its other fields mean nothing).  Where a record sits is the writer's
 *    business: readers scan the whole array.
 *  - seqlock: a writer takes the stripe lock, makes seq odd, writes, makes it
 *    even again, unlocks.  A reader copies the stripe's records between two
 *    reads of an even, equal seq; otherwise it retries.
 *  - stack id: 1 + index of the entry in the stack table; 0 means "no stack"
 *    (stack table full, or backtrace unavailable).  An entry is valid once its
 *    hash is non-zero (published with release ordering after its frames).
 *    Version 2 appends entries in order: ids 1..counters.stacks_used.
 *  - time: records carry time_ds, tenths of a second since start_monotonic_ns
 *    (CLOCK_MONOTONIC, system-wide, so the CLI can compute ages).
 */
#ifndef GWMEM_SHM_LAYOUT_H
#define GWMEM_SHM_LAYOUT_H

#include <stdint.h>

#define GWMEM_SHM_MAGIC         UINT64_C(0x314d48534d454d47) /* "GMEMSHM1" little-endian */
#define GWMEM_SHM_VERSION       3u
#define GWMEM_SHM_VERSION_MIN   1u   /* oldest layout readers still accept */
#define GWMEM_SHM_PREFIX        "gwmem."
#define GWMEM_SHM_HEADER_SIZE   8192u
#define GWMEM_SHM_MAX_CLASSES   64u
#define GWMEM_SHM_MAX_FRAMES    64u
#define GWMEM_SHM_CMDLINE_MAX   256u
#define GWMEM_SHM_PATH_MAX      232u
#define GWMEM_SHM_TAG_MAX       16u

/* header.state */
enum gwmem_shm_state {
	GWMEM_SHM_STATE_STARTING = 0,   /* being initialised: readers must wait */
	GWMEM_SHM_STATE_RUNNING  = 1,   /* live, or crashed if the pid is gone */
	GWMEM_SHM_STATE_EXITED   = 2,   /* exit handler ran (segment kept on purpose) */
};

/* header.flags */
#define GWMEM_SHM_FLAG_TRACKING     (1u << 0)  /* allocation table in use */
#define GWMEM_SHM_FLAG_POOLS        (1u << 1)  /* size-class pools in use */
#define GWMEM_SHM_FLAG_FORKED       (1u << 2)  /* segment copied from a parent at fork */
#define GWMEM_SHM_FLAG_FRAME_POINTER (1u << 3) /* frame-pointer unwinder */
#define GWMEM_SHM_FLAG_SNAPSHOT     (1u << 31) /* a `gwmem snapshot` file, never a live segment:
						  heartbeat_monotonic_ns is the snapshot time */

/* record.tag: 0 = malloc family; 1..15 = libgwmem API pools (see pool_tags) */
#define GWMEM_SHM_TAG_MALLOC    0u

/* Per size class pool statistics.  Updated by the owning library under the
 * class lock (thread-local deltas are folded in on refill/flush), so readers
 * see values that lag the truth by at most one thread-cache batch. */
struct gwmem_shm_class {
	uint64_t block_size;
	uint64_t total_allocated;   /* blocks handed out since start */
	uint64_t total_freed;       /* blocks given back since start */
	uint64_t active_blocks;     /* total_allocated - total_freed */
	uint64_t free_blocks;       /* carved blocks on free lists (central + caches) */
	uint64_t total_chunks;      /* chunks currently backed by memory */
	uint64_t released_chunks;   /* empty chunks returned to the OS (madvise) */
	uint64_t overflow;          /* requests sent to the next allocator: max_chunks reached */
};

/* The configuration in force, as fixed-width fields. */
struct gwmem_shm_config {
	uint8_t  pool_enabled;
	uint8_t  leak_detection_enabled;
	uint8_t  compaction_enabled;
	uint8_t  tracking_enabled;
	uint8_t  auto_compact;
	uint8_t  unwinder;                 /* 0 libunwind, 1 frame-pointer */
	uint8_t  reserved[2];
	uint32_t default_block_size;
	uint32_t blocks_per_chunk;
	uint32_t max_chunks;
	uint32_t threshold_seconds;
	uint32_t max_tracked_allocations;
	uint32_t max_stacks;
	uint32_t max_frames;
	uint32_t sample_rate;
	int32_t  report_signal;            /* 0 = off */
	uint32_t compact_interval_seconds;
	double   fragmentation_threshold;
};

/* Tracking counters.  Written with relaxed atomic adds off the fast path,
 * or summed from per-stripe counters by the reader. */
struct gwmem_shm_counters {
	uint64_t untracked_table_full;   /* allocation served, stripe had no free slot */
	uint64_t untracked_internal;     /* allocations made by gwmem itself / libunwind */
	uint64_t sampled_out;            /* skipped by sample_rate */
	uint64_t dropped_stacks;         /* stack table full: record kept with stack id 0 */
	uint64_t invalid_frees;          /* free of a pointer the pools never handed out */
	uint64_t double_frees;           /* free of a pool block that is already free */
	uint64_t forwarded_allocs;       /* served by the next allocator (size/alignment/overflow) */
	uint64_t mmap_failures;          /* chunk or segment mapping failed */
	uint64_t reports_written;        /* signal reports written */
	uint64_t stacks_used;            /* entries in the stack table */
	uint64_t untracked_segment_full; /* allocation served, the segment could not grow (v2) */
	uint64_t address_space_given_back; /* bytes gwmem unmapped when the next allocator ran
					      out of address space (RLIMIT_AS); 0 in older segments */
	uint64_t reserved[4];
};

/* One loaded object, for symbolizing a process that is gone.  Taken from
 * dl_iterate_phdr: an address A inside [start, end) belongs to path at file
 * virtual address A - bias. */
struct gwmem_shm_module {
	uint64_t start;
	uint64_t end;
	uint64_t bias;
	uint8_t  build_id[20];
	uint32_t build_id_len;
	char     path[GWMEM_SHM_PATH_MAX];
};

/* A stripe head: lock, sequence counter and the stripe's own totals, which
 * a consistent snapshot must match exactly (count and bytes of its records). */
struct gwmem_shm_stripe {
	uint32_t seq;          /* odd while a writer is inside */
	uint32_t lock;         /* 0 free, 1 held */
	uint32_t count;        /* live records in this stripe */
	uint32_t slots;        /* v2: slots in the current array (0: none yet) */
	uint64_t bytes;        /* sum of record.size in this stripe */
	uint64_t inserted;     /* records ever inserted */
	uint64_t removed;      /* records ever removed */
	uint64_t full;         /* inserts refused: stripe full */
	uint64_t offset;       /* v2+: file offset of the current array of slots
				  records, inside the record area (v2: one of
				  the stripe's two regions) */
	uint64_t reserved;
};

/* One live allocation.  ptr == 0 marks an empty slot. */
struct gwmem_shm_record {
	uint64_t ptr;
	uint64_t size;
	uint32_t stack_id;
	uint32_t time_ds;
	uint32_t tid;
	uint32_t tag;
};

/* A stack table entry; stack_stride = 16 + 8 * max_frames bytes.  frames[0]
 * is the caller of malloc (a return address), deepest frame last. */
struct gwmem_shm_stack {
	uint64_t hash;         /* 0 = empty slot */
	uint32_t depth;        /* <= max_frames */
	uint32_t reserved;
	uint64_t frames[];
};

struct gwmem_shm_header {
	uint64_t magic;
	uint32_t version;
	uint32_t header_size;          /* GWMEM_SHM_HEADER_SIZE */
	uint64_t segment_size;         /* bytes in the file */
	uint32_t pid;
	uint32_t ppid;
	uint64_t proc_starttime;       /* /proc/<pid>/stat field 22 (clock ticks) */
	uint64_t start_realtime_ns;    /* CLOCK_REALTIME at segment creation */
	uint64_t start_monotonic_ns;   /* CLOCK_MONOTONIC at segment creation */
	uint64_t heartbeat_monotonic_ns; /* refreshed by the reporter thread */
	uint32_t state;                /* enum gwmem_shm_state */
	uint32_t flags;                /* GWMEM_SHM_FLAG_* */
	uint32_t pointer_bits;         /* 32 or 64: the writer's */
	uint32_t page_size;
	char     cmdline[GWMEM_SHM_CMDLINE_MAX];   /* NUL-separated argv, NUL padded */
	char     exe[GWMEM_SHM_PATH_MAX];

	struct gwmem_shm_config config;
	struct gwmem_shm_counters counters;

	uint32_t nclasses;
	uint32_t reserved_c;
	struct gwmem_shm_class classes[GWMEM_SHM_MAX_CLASSES];

	/* pool tag names for record.tag 1..15 (libgwmem API pools) */
	char     tag_names[GWMEM_SHM_TAG_MAX][32];

	uint64_t modules_offset;
	uint32_t modules_capacity;
	uint32_t modules_count;
	uint32_t modules_seq;          /* seqlock around the module array */
	uint32_t reserved_m;

	uint64_t stacks_offset;
	uint32_t stack_capacity;       /* entries (v1: a power of two) */
	uint32_t stack_stride;         /* bytes per entry */
	uint32_t max_frames;           /* frames per entry */
	uint32_t reserved_s;

	uint64_t stripes_offset;
	uint64_t records_offset;
	uint32_t nstripes;             /* a power of two */
	uint32_t slots_per_stripe;     /* v1: slots per stripe, a power of two;
					  v2: records per region, page aligned */

	/* version 2 */
	uint64_t allocated_bytes;      /* bytes of the file backed by memory */
	uint64_t max_segment_bytes;    /* allocated_bytes never exceeds this */
	uint64_t pid_ns;               /* inode of the writer's /proc/self/ns/pid (0: unknown):
					  pid means something only in that namespace */
};

#ifdef __cplusplus
#define GWMEM_SHM_STATIC_ASSERT static_assert
#else
#define GWMEM_SHM_STATIC_ASSERT _Static_assert
#endif
GWMEM_SHM_STATIC_ASSERT(sizeof(struct gwmem_shm_header) <= GWMEM_SHM_HEADER_SIZE, "header too large");
GWMEM_SHM_STATIC_ASSERT(sizeof(struct gwmem_shm_record) == 32, "record must stay 32 bytes");
GWMEM_SHM_STATIC_ASSERT(sizeof(struct gwmem_shm_stripe) == 64, "stripe head is one cache line");
GWMEM_SHM_STATIC_ASSERT(sizeof(struct gwmem_shm_module) == 280, "module entry size");
GWMEM_SHM_STATIC_ASSERT(sizeof(struct gwmem_shm_class) == 64, "class stats size");
GWMEM_SHM_STATIC_ASSERT(sizeof(struct gwmem_shm_stack) == 16, "stack entry head size");

#endif /* GWMEM_SHM_LAYOUT_H */
