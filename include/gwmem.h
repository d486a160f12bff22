/*
 * gwmem.h - public API of libgwmem.so.
 *
 * libgwmem gives gateway firmware explicit control over memory: fixed-block
 * pools, object pools, reference-counted objects with weak references and a
 * weak cache, and a handle-based heap that compacts itself.  Linking it does
 * not replace the program's malloc; that is libgwmem-preload.so's job.
 *
 * Conventions:
 *  - types are opaque (struct gwmem_xxx) and come in create/destroy pairs;
 *  - functions returning int return 0 on success or a negative errno value;
 *  - functions returning a pointer return NULL and set errno on failure;
 *  - process-wide state is limited to what the caller can read: the rc
 *    statistics (gwmem_rc_stats()) and the registry of tracked pools
 *    (gwmem_track_totals()).
 *
 * This header compiles alone as C99 and as C++.
 */
#ifndef GWMEM_H
#define GWMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#define GWMEM_EXPORT __attribute__((visibility("default")))
#else
#define GWMEM_EXPORT
#endif

/*
 * The calls made once per block.  GCC on x86-64 then calls them through the
 * GOT (one indirect call) rather than through the PLT (a call to a stub
 * that jumps through the GOT) from position-independent code, as if the
 * caller were built with -fno-plt for these functions alone; a static link
 * turns such calls back into direct ones.
 */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 6 && defined(__x86_64__)
#define GWMEM_HOT_CALL __attribute__((noplt))
#else
#define GWMEM_HOT_CALL
#endif

#define GWMEM_VERSION_MAJOR 0
#define GWMEM_VERSION_MINOR 1
#define GWMEM_VERSION_PATCH 0
/** Version as one integer: major * 10000 + minor * 100 + patch. */
#define GWMEM_VERSION (GWMEM_VERSION_MAJOR * 10000 + GWMEM_VERSION_MINOR * 100 + GWMEM_VERSION_PATCH)

/**
 * Version of the library loaded at run time, encoded like GWMEM_VERSION
 * (compare the two to detect a header/library mismatch).
 */
GWMEM_EXPORT int gwmem_version(void);

/**
 * Version of the library loaded at run time as "MAJOR.MINOR.PATCH" (static storage).
 */
GWMEM_EXPORT const char *gwmem_version_string(void);

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

/** Backtrace method used by the preload library's leak tracking. */
enum gwmem_unwinder {
	GWMEM_UNWIND_LIBUNWIND = 0,      /**< libunwind, works on any code */
	GWMEM_UNWIND_FRAME_POINTER = 1,  /**< bounds-checked frame-pointer walk */
	GWMEM_UNWIND_LIBGCC = 2          /**< _Unwind_Backtrace from libgcc_s, works on any code */
};

#define GWMEM_CONFIG_PATH_MAX 256

/**
 * The configuration file (/etc/gwmem.toml by default), one field per key.
 * Section and key names match the file: memory_pool.max_chunks is the key
 * max_chunks in section [memory_pool].
 */
struct gwmem_config {
	struct {
		bool pool_enabled;             /**< serve small requests from size-class pools */
		bool leak_detection_enabled;   /**< record live allocations (preload) */
		bool compaction_enabled;       /**< allow compaction / release of free memory */
		bool stats_on_exit;            /**< print pool statistics to stderr at exit */
		bool abort_on_error;           /**< abort on misuse (double free...) instead of counting it */
	} memory;
	struct {
		uint32_t default_block_size;   /**< largest size served by the pools */
		uint32_t blocks_per_chunk;     /**< blocks carved from one chunk */
		uint32_t max_chunks;           /**< chunks per size class; past it, the next allocator */
	} memory_pool;
	struct {
		uint32_t max_objects;          /**< idle objects kept at most */
		bool reset_on_return;          /**< call the reset callback when an object is put back */
		bool auto_shrink;              /**< release idle objects above recent use */
	} object_pool;
	struct {
		bool tracking_enabled;         /**< record allocations with backtraces */
		uint32_t threshold_seconds;    /**< allocations older than this are leak suspects */
		uint32_t max_tracked_allocations; /**< allocation table capacity */
		uint32_t max_stacks;           /**< distinct backtraces kept */
		uint32_t max_frames;           /**< frames per backtrace */
		uint32_t sample_rate;          /**< record one allocation in N (1 = all) */
		enum gwmem_unwinder unwinder;  /**< "libunwind", "libgcc" or "frame-pointer" */
		int report_signal;             /**< signal that writes a report; 0 = off */
		char report_dir[GWMEM_CONFIG_PATH_MAX]; /**< where signal reports go */
		char shm_dir[GWMEM_CONFIG_PATH_MAX];    /**< where segments are created */
		bool keep_segment_on_exit;     /**< keep the segment after a normal exit */
		uint32_t max_segment_bytes;    /**< memory one segment may use at most */
	} leak_detection;
	struct {
		double fragmentation_threshold; /**< compact above this (0..1) */
		bool auto_compact;             /**< release / compact without being asked */
		uint32_t compact_interval_seconds; /**< at most this often */
	} compaction;
};

/** gwmem_config_load() flags. */
#define GWMEM_CONFIG_NO_ENV   (1u << 0)  /**< ignore GWMEM_CONFIG and GWMEM_<SECTION>_<KEY> */
#define GWMEM_CONFIG_QUIET    (1u << 1)  /**< do not print diagnostics to stderr */

/** Largest configuration file read (bytes); a larger file is refused whole with one diagnostic. */
#define GWMEM_CONFIG_FILE_MAX (64 * 1024)

/**
 * Receives one configuration diagnostic (see gwmem_config_load_diag()).
 * @param file    the file, or "environment" for GWMEM_<SECTION>_<KEY> overrides
 * @param line    line number in @p file, 0 when the problem is the whole file
 * @param message what is wrong and what was done ("unknown key 'x' in [memory]; ignored")
 * @param arg     the caller's pointer
 */
typedef void (*gwmem_config_diag_fn)(const char *file, unsigned line, const char *message, void *arg);

/**
 * Fill @p cfg with the built-in defaults.
 */
GWMEM_EXPORT void gwmem_config_defaults(struct gwmem_config *cfg);

/**
 * Load the configuration.
 *
 * Starts from the defaults, reads @p path (or, when NULL, $GWMEM_CONFIG, or
 * else /etc/gwmem.toml), then applies GWMEM_<SECTION>_<KEY> environment
 * overrides.  The environment is ignored in set-uid programs and with
 * GWMEM_CONFIG_NO_ENV.  Every unknown key, bad value or unreadable file
 * prints one line "gwmem: FILE:LINE: message" on stderr (unless
 * GWMEM_CONFIG_QUIET; at most 20 lines, then one summary line) and keeps
 * the default: a bad file never fails the call.  See
 * gwmem_config_load_diag() for the file's limits.
 * Does not call malloc.
 *
 * @param cfg   filled in; never left half-initialised
 * @param path  file to read, or NULL for the default search
 * @param flags GWMEM_CONFIG_* flags
 * @return the number of diagnostics (0 for a clean file), or -EINVAL if
 *         @p cfg is NULL.  A missing default file is not a diagnostic.
 */
GWMEM_EXPORT int gwmem_config_load(struct gwmem_config *cfg, const char *path, unsigned flags);

/**
 * gwmem_config_load() with the diagnostics handed to @p fn instead of
 * stderr: every diagnostic, one call each, none rate-limited, whatever
 * GWMEM_CONFIG_QUIET says.  With @p fn NULL it is gwmem_config_load().
 *
 * File format limits: a file larger than GWMEM_CONFIG_FILE_MAX bytes is
 * refused whole; a line holds at most 4095 bytes (a longer one is ignored
 * with a diagnostic, unless it is a comment); a string value holds at most
 * GWMEM_CONFIG_PATH_MAX - 1 bytes.  On stderr, the first 20
 * diagnostics of a load are printed and the rest summed up in one line
 * ("... and K more diagnostics not shown").
 *
 * @return as gwmem_config_load()
 */
GWMEM_EXPORT int gwmem_config_load_diag(struct gwmem_config *cfg, const char *path, unsigned flags,
					gwmem_config_diag_fn fn, void *arg);

/* GWMEM_API_BEGIN: pools, objects, rc and the compacting heap follow. */

/* ------------------------------------------------------------------------ */
/* Fixed-block pool                                                         */
/* ------------------------------------------------------------------------ */

/**
 * A pool of equal-sized blocks carved from chunks.  The pool reserves the
 * address space of max_chunks chunks at creation and commits a chunk when it
 * is first needed, so a block pointer is mapped to its chunk and index by a
 * range check and a division: a free of a pointer that is not a live block
 * (foreign, interior, already free) is detected in O(1), refused and counted.
 * Block memory comes from mmap, never from malloc.
 */
struct gwmem_fixpool;

/** gwmem_fixpool_options.flags */
#define GWMEM_FIXPOOL_THREADSAFE  (1u << 0) /**< safe to use from several threads (a stripe per thread: its owner allocates without a lock) */
#define GWMEM_FIXPOOL_ZERO        (1u << 1) /**< blocks are zeroed when handed out */
#define GWMEM_FIXPOOL_QUIET       (1u << 2) /**< do not log the first misuse on stderr */
#define GWMEM_FIXPOOL_CONFIG      (1u << 3) /**< zero blocks_per_chunk / max_chunks come from gwmem_config_load() */
#define GWMEM_FIXPOOL_TRACK       (1u << 4) /**< record live blocks with their backtrace and age (gwmem_track_leaks()) */

/** Parameters of gwmem_fixpool_create().  Zero fields take the defaults. */
struct gwmem_fixpool_options {
	size_t block_size;        /**< bytes per block (required, > 0) */
	size_t blocks_per_chunk;  /**< blocks per chunk; 0 = 256 (or [memory_pool] blocks_per_chunk) */
	size_t max_chunks;        /**< chunks at most; 0 = 100 (or [memory_pool] max_chunks) */
	size_t alignment;         /**< power of two, raised to at least sizeof(void *); 0 = 16, or less for blocks smaller than 16 */
	unsigned flags;           /**< GWMEM_FIXPOOL_* */
	const char *name;         /**< shown in leak reports ("fixpool:<name>"); may be NULL.  Copied at
				   *   creation (up to 31 bytes): the string need not outlive the call */
};

/** Counters of a fixed-block pool (gwmem_fixpool_stats()). */
struct gwmem_fixpool_stats {
	uint64_t total_allocated;  /**< successful allocations since creation */
	uint64_t total_freed;      /**< successful frees since creation */
	uint64_t active_blocks;    /**< blocks handed out and not yet freed */
	uint64_t free_blocks;      /**< blocks of committed chunks that are not handed out */
	uint64_t total_chunks;     /**< committed chunks */
	double chunk_utilization;  /**< active_blocks / (total_chunks * blocks_per_chunk); 0 with no chunk */
	uint64_t failed_allocs;    /**< allocations refused because max_chunks was reached */
	uint64_t invalid_frees;    /**< foreign + interior + double frees refused */
	uint64_t foreign_frees;    /**< pointer outside the pool's chunks */
	uint64_t interior_frees;   /**< pointer inside a chunk but not at a block start */
	uint64_t double_frees;     /**< block already free */
	size_t block_size;         /**< requested block size */
	size_t block_stride;       /**< distance between blocks (block size rounded to the alignment) */
	size_t blocks_per_chunk;   /**< as created */
	size_t max_chunks;         /**< as created */
	uint64_t peak_active_blocks; /**< high-water mark of active_blocks since creation, to size max_chunks.
				      *   Exact for single-threaded pools; a thread-safe pool samples it when a
				      *   thread's free list runs dry and at every gwmem_fixpool_stats() call */
};

/**
 * Create a fixed-block pool.
 * @param opts parameters; opts->block_size must be > 0
 * @return the pool, or NULL with errno EINVAL (bad parameter) or ENOMEM
 */
GWMEM_EXPORT struct gwmem_fixpool *gwmem_fixpool_create(const struct gwmem_fixpool_options *opts);

/**
 * Destroy a pool and unmap all its chunks, live blocks included.
 * @param pool the pool, or NULL (no-op)
 */
GWMEM_EXPORT void gwmem_fixpool_destroy(struct gwmem_fixpool *pool);

/**
 * Take one block.
 * @param pool the pool
 * @return a block of block_size bytes aligned to the pool's alignment, or
 *         NULL with errno ENOMEM when max_chunks chunks are all in use
 */
GWMEM_EXPORT GWMEM_HOT_CALL void *gwmem_fixpool_alloc(struct gwmem_fixpool *pool);

/**
 * Give a block back.
 * @param pool the pool the block came from
 * @param p    the block (NULL is accepted and ignored)
 * @return 0; -EINVAL if @p p is not a block of this pool (foreign or
 *         interior pointer); -EALREADY if the block is already free.  A
 *         refused free is counted in the statistics and leaves the pool intact.
 */
GWMEM_EXPORT GWMEM_HOT_CALL int gwmem_fixpool_free(struct gwmem_fixpool *pool, void *p);

/**
 * Tell whether @p p is a block currently handed out by @p pool, in O(1).
 * @return true for a live block start, false otherwise
 */
GWMEM_EXPORT bool gwmem_fixpool_owns(const struct gwmem_fixpool *pool, const void *p);

/**
 * Read the pool's counters.
 * @param pool the pool
 * @param out  filled in
 * @return 0, or -EINVAL if an argument is NULL
 */
GWMEM_EXPORT int gwmem_fixpool_stats(const struct gwmem_fixpool *pool, struct gwmem_fixpool_stats *out);

/* ------------------------------------------------------------------------ */
/* Object pool                                                              */
/* ------------------------------------------------------------------------ */

/**
 * A thread-safe pool of initialised objects.  An object is built once with
 * init(), handed out by get(), optionally reset() when put back, and kept
 * idle for the next get() as long as fewer than max_objects are idle;
 * otherwise (and when the pool shrinks) it is destroy()ed and its memory
 * released.  Objects live in a fixed-block pool of the pool's own.
 */
struct gwmem_objpool;

/** Builds a new object; returns 0, or a negative errno to fail the get. */
typedef int (*gwmem_obj_init_fn)(void *obj, void *arg);
/** Resets or destroys an object. */
typedef void (*gwmem_obj_fn)(void *obj, void *arg);

/** Parameters of gwmem_objpool_create(); fill with gwmem_objpool_options_init(). */
struct gwmem_objpool_options {
	size_t object_size;        /**< bytes per object (required, > 0) */
	size_t alignment;          /**< power of two; 0 = 16 */
	size_t max_objects;        /**< idle objects kept at most ([object_pool] max_objects) */
	size_t capacity;           /**< objects alive at once (in use + idle) at most; 0 = 65536 */
	size_t shrink_window;      /**< get/put operations per auto-shrink window; 0 = 1024 */
	bool reset_on_return;      /**< call reset() when an object is put back ([object_pool] reset_on_return) */
	bool auto_shrink;          /**< release idle objects above recent peak use ([object_pool] auto_shrink) */
	gwmem_obj_init_fn init;    /**< optional constructor; the object is zeroed before it */
	gwmem_obj_fn reset;        /**< optional, called on put when reset_on_return */
	gwmem_obj_fn destroy;      /**< optional destructor, called before the memory is released */
	void *arg;                 /**< passed to the callbacks */
	const char *name;          /**< shown in leak reports ("objpool:<name>"); may be NULL.  Copied at
				    *   creation (up to 31 bytes): the string need not outlive the call */
	bool track;                /**< record objects in use with their backtrace and age (gwmem_track_leaks()) */
};

/** Counters of an object pool. */
struct gwmem_objpool_stats {
	uint64_t gets;             /**< successful gets */
	uint64_t puts;             /**< successful puts */
	uint64_t hits;             /**< gets served from an idle object */
	uint64_t created;          /**< objects built (init called) */
	uint64_t destroyed;        /**< objects released (destroy called) */
	uint64_t invalid_puts;     /**< puts refused (foreign pointer, object not in use) */
	uint64_t in_use;           /**< objects handed out now */
	uint64_t idle;             /**< objects kept for reuse now */
	uint64_t peak_in_use;      /**< highest in_use since creation */
};

/**
 * Fill @p opts with defaults for objects of @p object_size bytes, taking
 * max_objects, reset_on_return and auto_shrink from @p cfg.
 * @param opts        filled in (callbacks NULL)
 * @param object_size bytes per object
 * @param cfg         configuration to read, or NULL to load it with
 *                    gwmem_config_load(NULL, NULL, GWMEM_CONFIG_QUIET)
 */
GWMEM_EXPORT void gwmem_objpool_options_init(struct gwmem_objpool_options *opts, size_t object_size,
					     const struct gwmem_config *cfg);

/**
 * Create an object pool.  No object is built until the first get.
 * @param opts parameters (copied)
 * @return the pool, or NULL with errno EINVAL or ENOMEM
 */
GWMEM_EXPORT struct gwmem_objpool *gwmem_objpool_create(const struct gwmem_objpool_options *opts);

/**
 * Destroy the pool: idle objects are destroyed; objects still in use are
 * released without their destroy callback (their memory goes away).
 * @param pool the pool, or NULL
 */
GWMEM_EXPORT void gwmem_objpool_destroy(struct gwmem_objpool *pool);

/**
 * Get an object: an idle one if there is one, else a new one.
 * @return the object, or NULL with errno ENOMEM (capacity reached) or the
 *         error init() returned
 */
GWMEM_EXPORT GWMEM_HOT_CALL void *gwmem_objpool_get(struct gwmem_objpool *pool);

/**
 * Put an object back.
 * @return 0; -EINVAL if @p obj is not an object of this pool; -EALREADY if
 *         it is not in use (put twice).  Refused puts are counted.
 */
GWMEM_EXPORT GWMEM_HOT_CALL int gwmem_objpool_put(struct gwmem_objpool *pool, void *obj);

/**
 * Number of idle objects kept for reuse.
 */
GWMEM_EXPORT size_t gwmem_objpool_size(struct gwmem_objpool *pool);

/**
 * Release idle objects until at most @p keep remain.
 * @return the number of objects released
 */
GWMEM_EXPORT size_t gwmem_objpool_shrink(struct gwmem_objpool *pool, size_t keep);

/**
 * Read the pool's counters.
 * @return 0, or -EINVAL if an argument is NULL
 */
GWMEM_EXPORT int gwmem_objpool_stats(struct gwmem_objpool *pool, struct gwmem_objpool_stats *out);

/**
 * An object held from a pool; gwmem_pooled_release() puts it back.  With
 * GCC or Clang, declare it GWMEM_POOLED to put it back at the end of the
 * enclosing scope.
 */
struct gwmem_pooled {
	struct gwmem_objpool *pool; /**< pool the object came from */
	void *obj;                  /**< the object; NULL once released or taken */
};

/**
 * Get an object into @p h.
 * @return 0, or the negative errno of gwmem_objpool_get()
 */
GWMEM_EXPORT int gwmem_pooled_get(struct gwmem_objpool *pool, struct gwmem_pooled *h);

/**
 * Put the held object back, if any; safe to call twice.
 */
GWMEM_EXPORT void gwmem_pooled_release(struct gwmem_pooled *h);

/**
 * Keep the object: it will not be put back by gwmem_pooled_release().
 * @return the object (the caller now owns the put)
 */
GWMEM_EXPORT void *gwmem_pooled_take(struct gwmem_pooled *h);

#if defined(__GNUC__) && !defined(__cplusplus)
/** Declares a struct gwmem_pooled that puts its object back when it goes out of scope. */
#define GWMEM_POOLED __attribute__((cleanup(gwmem_pooled_release))) struct gwmem_pooled
#endif

/* ------------------------------------------------------------------------ */
/* Reference counting, weak references, weak cache, rc pool                 */
/* ------------------------------------------------------------------------ */

/** Runs once, when the last strong reference of an rc object goes. */
typedef void (*gwmem_rc_dtor_fn)(void *obj, void *arg);

/** A weak reference: does not keep the object alive, can be upgraded. */
struct gwmem_rc_weak;

/**
 * Create a reference-counted object of @p size bytes, zeroed, with one
 * strong reference.  Memory comes from internal mmap-backed size-class pools.
 * @param size bytes of payload
 * @param dtor called exactly once with (obj, arg) when the count reaches zero; may be NULL
 * @param arg  passed to @p dtor
 * @return the object, or NULL with errno ENOMEM
 */
GWMEM_EXPORT void *gwmem_rc_new(size_t size, gwmem_rc_dtor_fn dtor, void *arg);

/**
 * Take one more strong reference.
 * @return @p obj, or NULL with errno EINVAL if it is not a live rc object
 */
GWMEM_EXPORT GWMEM_HOT_CALL void *gwmem_rc_ref(void *obj);

/**
 * Drop one strong reference; the last one runs the destructor.  The memory
 * is released when no weak reference is left either.
 * @return 1 if this call destroyed the object, 0 if it still lives,
 *         -EINVAL if @p obj is not a live rc object (e.g. unref after death)
 */
GWMEM_EXPORT GWMEM_HOT_CALL int gwmem_rc_unref(void *obj);

/**
 * Current number of strong references (0 if @p obj is not a live rc object).
 */
GWMEM_EXPORT uint32_t gwmem_rc_count(const void *obj);

/**
 * Current number of weak references (gwmem_rc_weak_new() not yet released),
 * 0 if @p obj is not a live rc object.
 */
GWMEM_EXPORT uint32_t gwmem_rc_weak_count(const void *obj);

/** Process-wide counters of rc objects (gwmem_rc_stats()). */
struct gwmem_rc_stats {
	uint64_t created;         /**< objects made by gwmem_rc_new() and gwmem_rcpool_get() */
	uint64_t destroyed;       /**< objects whose strong count reached 0 */
	uint64_t live;            /**< created - destroyed: alive now; at exit, the leaked ones */
	uint64_t live_bytes;      /**< payload bytes of the live objects */
	uint64_t retained;        /**< dead objects whose memory weak references still hold */
	uint64_t invalid_calls;   /**< calls refused: not an rc object, dead object, extra weak release */
};

/**
 * Read the process-wide rc counters.  With [memory] stats_on_exit (or
 * GWMEM_STATS=1) the same figures are printed on stderr at exit, so objects
 * never released show up as "leaked at exit".
 * @return 0, or -EINVAL if @p out is NULL
 */
GWMEM_EXPORT int gwmem_rc_stats(struct gwmem_rc_stats *out);

/**
 * Create a weak reference to a live object.
 * @return the weak reference, or NULL with errno EINVAL
 */
GWMEM_EXPORT struct gwmem_rc_weak *gwmem_rc_weak_new(void *obj);

/**
 * Get a strong reference from a weak one.
 * @return the object with one more strong reference (drop it with
 *         gwmem_rc_unref()), or NULL with errno ENOENT once the object died
 */
GWMEM_EXPORT void *gwmem_rc_weak_upgrade(struct gwmem_rc_weak *w);

/**
 * Tell whether the object behind @p w still lives (racy by nature).
 */
GWMEM_EXPORT bool gwmem_rc_weak_alive(const struct gwmem_rc_weak *w);

/**
 * Drop a weak reference.
 * @param w the weak reference, or NULL
 */
GWMEM_EXPORT void gwmem_rc_weak_release(struct gwmem_rc_weak *w);

/**
 * A thread-safe map from byte-string keys to weak references: it never keeps
 * a value alive.  A lookup returns a strong reference or nothing.  Entries
 * whose object died are removed lazily (when a lookup or insert meets them)
 * and by gwmem_weakcache_purge().
 */
struct gwmem_weakcache;

/**
 * Create a weak cache.
 * @param buckets number of hash buckets (rounded up to a power of two; 0 = 256);
 *        the table does not grow, chains do
 * @return the cache, or NULL with errno ENOMEM
 */
GWMEM_EXPORT struct gwmem_weakcache *gwmem_weakcache_create(size_t buckets);

/**
 * Destroy a cache, dropping its weak references (the objects are not touched).
 */
GWMEM_EXPORT void gwmem_weakcache_destroy(struct gwmem_weakcache *wc);

/**
 * Map @p key to a weak reference to the rc object @p obj, replacing any entry.
 * @return 0, -EINVAL (bad key or object) or -ENOMEM
 */
GWMEM_EXPORT int gwmem_weakcache_insert(struct gwmem_weakcache *wc, const void *key, size_t keylen,
					void *obj);

/**
 * Look @p key up.
 * @return a strong reference (drop it with gwmem_rc_unref()), or NULL with
 *         errno ENOENT if there is no entry or its object died (the dead
 *         entry is then removed)
 */
GWMEM_EXPORT void *gwmem_weakcache_get(struct gwmem_weakcache *wc, const void *key, size_t keylen);

/**
 * Remove @p key.
 * @return 0, or -ENOENT
 */
GWMEM_EXPORT int gwmem_weakcache_remove(struct gwmem_weakcache *wc, const void *key, size_t keylen);

/**
 * Remove every entry whose object died.
 * @return the number of entries removed
 */
GWMEM_EXPORT size_t gwmem_weakcache_purge(struct gwmem_weakcache *wc);

/**
 * Number of entries, dead ones not yet purged included.
 */
GWMEM_EXPORT size_t gwmem_weakcache_size(struct gwmem_weakcache *wc);

/**
 * A pool of rc objects: when an object's last reference (strong and weak)
 * goes, it is put back into an object pool (reset() applied) instead of
 * being freed, and the next gwmem_rcpool_get() reuses it.
 */
struct gwmem_rcpool;

/**
 * Create an rc pool; @p opts describes the payload (object_size, callbacks,
 * max_objects...) exactly as for gwmem_objpool_create().
 * @return the pool, or NULL with errno EINVAL or ENOMEM
 */
GWMEM_EXPORT struct gwmem_rcpool *gwmem_rcpool_create(const struct gwmem_objpool_options *opts);

/**
 * Destroy an rc pool: no object can be got from it any more.  Idle objects
 * are destroyed now.  Objects still referenced (strong or weak) stay valid;
 * the pool's memory goes when the last of them is released, so destroying a
 * pool never leaves a dangling reference.
 * @param rp the pool, or NULL (no-op); a second call is ignored
 */
GWMEM_EXPORT void gwmem_rcpool_destroy(struct gwmem_rcpool *rp);

/**
 * Number of idle objects the rc pool keeps for reuse.
 */
GWMEM_EXPORT size_t gwmem_rcpool_size(struct gwmem_rcpool *rp);

/**
 * Release idle objects until at most @p keep remain (destroy callback run).
 * @return the number released
 */
GWMEM_EXPORT size_t gwmem_rcpool_shrink(struct gwmem_rcpool *rp, size_t keep);

/**
 * Release every idle object: gwmem_rcpool_shrink(rp, 0).
 * @return the number released
 */
GWMEM_EXPORT size_t gwmem_rcpool_clear(struct gwmem_rcpool *rp);

/**
 * Get an rc object with one strong reference; use gwmem_rc_ref(),
 * gwmem_rc_unref() and weak references on it like on any rc object.
 * @return the object, or NULL with errno set as gwmem_objpool_get()
 */
GWMEM_EXPORT void *gwmem_rcpool_get(struct gwmem_rcpool *rp);

/**
 * Read the counters of the rc pool's object pool.
 * @return 0, or -EINVAL
 */
GWMEM_EXPORT int gwmem_rcpool_stats(struct gwmem_rcpool *rp, struct gwmem_objpool_stats *out);

/* ------------------------------------------------------------------------ */
/* Byte-buffer pool                                                         */
/* ------------------------------------------------------------------------ */

/**
 * A thread-safe pool of byte buffers in power-of-two size classes from
 * min_size to max_size (each class a fixed-block pool of its own).  A get
 * asks for a minimum capacity and receives the smallest class that holds it
 * (the next larger one if that class is full); a put clears the bytes the
 * buffer held and gives it back.  Foreign and doubly-put buffers are refused
 * and counted.
 */
struct gwmem_bufpool;

/** A buffer from a pool: write data[0..cap), keep len = bytes used. */
struct gwmem_bytebuf {
	unsigned char *data;       /**< the buffer, NULL when not held */
	size_t len;                /**< bytes in use; cleared on put (0 after gwmem_bufpool_get()) */
	size_t cap;                /**< capacity (the size class) */
};

/** gwmem_bufpool_options.flags */
#define GWMEM_BUFPOOL_ZERO_ALL (1u << 0) /**< a put zeroes the whole capacity, not only the first len bytes */
#define GWMEM_BUFPOOL_TRACK    (1u << 1) /**< record buffers in use with backtrace and age (gwmem_track_leaks()) */

/** Parameters of gwmem_bufpool_create().  Zero fields take the defaults. */
struct gwmem_bufpool_options {
	size_t min_size;           /**< smallest class in bytes (rounded up to a power of two, >= 16); 0 = 64 */
	size_t max_size;           /**< largest class (power of two, <= 16 MiB); 0 = 65536 */
	size_t max_buffers;        /**< buffers per class at most; 0 = 1024 */
	unsigned flags;            /**< GWMEM_BUFPOOL_* */
	const char *name;          /**< shown in leak reports; copied (up to 31 bytes); may be NULL */
};

#define GWMEM_BUFPOOL_MAX_CLASSES 21

/** Counters of a buffer pool. */
struct gwmem_bufpool_stats {
	uint64_t gets;             /**< successful gets */
	uint64_t puts;             /**< successful puts */
	uint64_t failed_gets;      /**< gets refused (-ENOMEM, -EMSGSIZE) */
	uint64_t invalid_puts;     /**< puts refused (foreign buffer, put twice) */
	uint64_t in_use;           /**< buffers held now, all classes */
	uint64_t bytes_reserved;   /**< bytes of committed chunks, all classes */
	unsigned nclasses;         /**< entries of cls[] in use */
	struct {
		size_t capacity;       /**< bytes per buffer of this class */
		uint64_t in_use;       /**< buffers held now */
		uint64_t idle;         /**< committed buffers not held */
		uint64_t peak_in_use;  /**< high-water mark of in_use (see gwmem_fixpool_stats) */
	} cls[GWMEM_BUFPOOL_MAX_CLASSES];
};

/**
 * Create a buffer pool.  Address space for max_buffers buffers per class is
 * reserved; memory is committed in chunks of about 64 KiB as buffers are used.
 * @return the pool, or NULL with errno EINVAL (min_size > max_size, too many
 *         classes) or ENOMEM
 */
GWMEM_EXPORT struct gwmem_bufpool *gwmem_bufpool_create(const struct gwmem_bufpool_options *opts);

/**
 * Destroy a buffer pool; buffers still held die with it.
 */
GWMEM_EXPORT void gwmem_bufpool_destroy(struct gwmem_bufpool *bp);

/**
 * Get a buffer of at least @p min_capacity bytes into @p out (len = 0).
 * A buffer is zeroed when first used; a reused one holds zeros where the
 * previous holder's len covered (all of it with GWMEM_BUFPOOL_ZERO_ALL).
 * @return 0; -EINVAL; -EMSGSIZE if @p min_capacity exceeds max_size;
 *         -ENOMEM if that class and every larger one are full
 */
GWMEM_EXPORT GWMEM_HOT_CALL int gwmem_bufpool_get(struct gwmem_bufpool *bp, size_t min_capacity, struct gwmem_bytebuf *out);

/**
 * Clear and give back a buffer; @p b is reset to {NULL, 0, 0}.
 * @return 0; -EINVAL if b->data is not a buffer of @p bp; -EALREADY if it
 *         was already put back.  Refused puts are counted and leave @p b alone.
 */
GWMEM_EXPORT GWMEM_HOT_CALL int gwmem_bufpool_put(struct gwmem_bufpool *bp, struct gwmem_bytebuf *b);

/**
 * Read the pool's counters.
 * @return 0, or -EINVAL
 */
GWMEM_EXPORT int gwmem_bufpool_stats(struct gwmem_bufpool *bp, struct gwmem_bufpool_stats *out);

/**
 * Append @p n bytes to a held buffer.
 * @return 0; -ENOSPC if they do not fit (nothing written); -EINVAL
 */
GWMEM_EXPORT int gwmem_bytebuf_append(struct gwmem_bytebuf *b, const void *p, size_t n);

/* ------------------------------------------------------------------------ */
/* In-process leak tracking                                                 */
/* ------------------------------------------------------------------------ */

/*
 * Pools created with GWMEM_FIXPOOL_TRACK, GWMEM_BUFPOOL_TRACK or the object
 * pool's 'track' option record each block they hand out with the time and
 * the caller's backtrace (glibc backtrace(), i.e. the unwind tables; the
 * frame-pointer walk where there is none), until it is given back.  The
 * program asks, for all tracked pools together, which call sites hold
 * blocks older than some age, and the totals; no preload library is needed.
 * Cost: one backtrace per allocation from a tracked pool (about a
 * microsecond), 16 bytes per block of address space (touched as used).
 */

/** Frames kept per call site. */
#define GWMEM_TRACK_FRAMES 16

/** One call site holding live blocks of tracked pools (gwmem_track_leaks()). */
struct gwmem_track_site {
	uint64_t blocks;           /**< live blocks allocated here, older than the asked age */
	uint64_t bytes;            /**< their bytes (block / object size each) */
	double oldest_age;         /**< seconds since the oldest of them was allocated */
	unsigned nframes;          /**< frames[] in use; 0 when the stack table was full */
	void *frames[GWMEM_TRACK_FRAMES]; /**< return addresses, innermost (the pool call's caller) first */
	char pool[32];             /**< name of a pool the blocks come from */
};

/** Totals over all tracked pools (gwmem_track_totals()). */
struct gwmem_track_totals {
	uint64_t pools;            /**< tracked pools alive */
	uint64_t live_blocks;      /**< blocks handed out and not given back */
	uint64_t live_bytes;       /**< their bytes */
	uint64_t allocs;           /**< blocks handed out since the pools were created */
	uint64_t frees;            /**< blocks given back */
	uint64_t stacks;           /**< distinct call stacks recorded */
	uint64_t stacks_dropped;   /**< stacks not recorded because the table (16384) was full */
};

/**
 * Find the call sites that hold blocks allocated more than
 * @p older_than_seconds ago (0: every live block), largest bytes first.
 * @param sites     filled with up to @p max_sites sites; may be NULL to count only
 * @return the number of such sites (may exceed @p max_sites)
 */
GWMEM_EXPORT size_t gwmem_track_leaks(double older_than_seconds, struct gwmem_track_site *sites,
				      size_t max_sites);

/**
 * Read the totals of all tracked pools.
 * @return 0, or -EINVAL
 */
GWMEM_EXPORT int gwmem_track_totals(struct gwmem_track_totals *out);

/**
 * Write gwmem_track_leaks() as text to @p fd, one paragraph per site with its
 * frames named by dladdr() (exported symbols; module+offset otherwise).
 * @param max_sites sites shown at most (0 or above 32: 32)
 * @return the number of sites found, or a negative errno
 */
GWMEM_EXPORT int gwmem_track_report(int fd, double older_than_seconds, size_t max_sites);

/* ------------------------------------------------------------------------ */
/* Compacting heap                                                          */
/* ------------------------------------------------------------------------ */

/**
 * A heap over one fixed arena that hands out handles instead of addresses,
 * so it can move blocks to merge free space.  gwmem_heap_pin() turns a
 * handle into a pointer that stays valid until gwmem_heap_unpin(); only
 * unpinned blocks move.  A handle carries a generation: a freed or stale
 * handle is detected and refused, never dereferenced.  Thread-safe (one
 * lock per heap).
 */
struct gwmem_heap;

/** A heap block handle: table index and generation; 0 is never a valid handle. */
typedef uint64_t gwmem_handle_t;
#define GWMEM_HANDLE_NULL ((gwmem_handle_t)0)

/** gwmem_heap_options.flags */
#define GWMEM_HEAP_CONFIG       (1u << 0) /**< fragmentation_threshold and auto_compact from gwmem_config_load() */
#define GWMEM_HEAP_NO_AUTO_COMPACT (1u << 1) /**< never compact inside gwmem_heap_alloc() */

/** Parameters of gwmem_heap_create(). */
struct gwmem_heap_options {
	void *memory;                   /**< arena provided by the caller, or NULL to map one */
	size_t size;                    /**< arena bytes (required) */
	size_t max_handles;             /**< live blocks at most; 0 = size / 64 */
	double fragmentation_threshold; /**< compact on a failed alloc above this fragmentation (0..1);
					 *   0 = always (whenever the free space would fit the request);
					 *   negative = the default, 0.3 */
	unsigned flags;                 /**< GWMEM_HEAP_* */
	const char *name;               /**< shown in leak reports ("heap:<name>"); may be NULL; only
					 *   read during gwmem_heap_create() */
};

/** State of a heap (gwmem_heap_info()).  Sizes include block headers. */
struct gwmem_heap_info {
	size_t total_size;        /**< arena bytes managed */
	size_t used_memory;       /**< bytes in allocated blocks */
	size_t free_memory;       /**< bytes in free blocks */
	double fragmentation;     /**< 1 - largest free block / free_memory (0 when nothing is free) */
	size_t used_regions;      /**< allocated blocks */
	size_t free_blocks;       /**< free blocks */
	size_t largest_free;      /**< bytes of the largest free block */
	size_t pinned;            /**< blocks pinned now */
	uint64_t compactions;     /**< compactions run */
	uint64_t bytes_moved;     /**< bytes moved by compaction */
	uint64_t stale_handles;   /**< calls refused for a stale, freed or foreign handle */
	size_t peak_used_memory;  /**< high-water mark of used_memory since creation, to size the arena */
	size_t peak_used_regions; /**< high-water mark of used_regions since creation */
};

/**
 * Create a heap.
 * @return the heap, or NULL with errno EINVAL or ENOMEM
 */
GWMEM_EXPORT struct gwmem_heap *gwmem_heap_create(const struct gwmem_heap_options *opts);

/**
 * Destroy a heap; a caller-provided arena is left to the caller.
 */
GWMEM_EXPORT void gwmem_heap_destroy(struct gwmem_heap *heap);

/**
 * Allocate @p size bytes.  When no free block fits and fragmentation is
 * above the threshold, compacts and retries.
 * @return a handle, or GWMEM_HANDLE_NULL with errno ENOMEM (or EINVAL for size 0)
 */
GWMEM_EXPORT GWMEM_HOT_CALL gwmem_handle_t gwmem_heap_alloc(struct gwmem_heap *heap, size_t size);

/**
 * Resize a block, keeping its handle and its contents (up to the smaller
 * size).  Shrinks in place; grows in place when the next block is free and
 * large enough, else moves the block (compacting first if the heap's policy
 * says so).  A pinned block never moves: growing it needs the room after it.
 * @return 0; -EINVAL (size 0 or no heap); -ESTALE for a freed or invalid
 *         handle; -EBUSY if the block is pinned and cannot grow in place;
 *         -ENOMEM if no room was found (the block is then unchanged)
 */
GWMEM_EXPORT int gwmem_heap_realloc(struct gwmem_heap *heap, gwmem_handle_t h, size_t size);

/**
 * Free a block.
 * @return 0; -ESTALE for a freed or invalid handle; -EBUSY if the block is pinned
 */
GWMEM_EXPORT GWMEM_HOT_CALL int gwmem_heap_free(struct gwmem_heap *heap, gwmem_handle_t h);

/**
 * Pin a block and get its address, valid until the matching unpin.  Pins nest.
 * @return the block's first byte (aligned to 16), or NULL with errno ESTALE
 */
GWMEM_EXPORT void *gwmem_heap_pin(struct gwmem_heap *heap, gwmem_handle_t h);

/**
 * Undo one gwmem_heap_pin().
 * @return 0; -ESTALE for a bad handle; -EINVAL if the block is not pinned
 */
GWMEM_EXPORT int gwmem_heap_unpin(struct gwmem_heap *heap, gwmem_handle_t h);

/**
 * Size requested for a block.
 * @return the size, or 0 with errno ESTALE
 */
GWMEM_EXPORT size_t gwmem_heap_size(struct gwmem_heap *heap, gwmem_handle_t h);

/**
 * Compact now: slide unpinned blocks towards the start of the arena so free
 * space merges; pinned blocks stay where they are.
 * @return the number of blocks moved, or -EINVAL
 */
GWMEM_EXPORT int gwmem_heap_compact(struct gwmem_heap *heap);

/**
 * Read the heap's state.
 * @return 0, or -EINVAL
 */
GWMEM_EXPORT int gwmem_heap_info(struct gwmem_heap *heap, struct gwmem_heap_info *out);

#ifdef __cplusplus
}
#endif

#endif /* GWMEM_H */
