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
 *  - nothing here keeps global state the caller cannot see.
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

#define GWMEM_VERSION_MAJOR 0
#define GWMEM_VERSION_MINOR 1
#define GWMEM_VERSION_PATCH 0
/** Version as one integer: major * 10000 + minor * 100 + patch. */
#define GWMEM_VERSION (GWMEM_VERSION_MAJOR * 10000 + GWMEM_VERSION_MINOR * 100 + GWMEM_VERSION_PATCH)

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

/** Backtrace method used by the preload library's leak tracking. */
enum gwmem_unwinder {
	GWMEM_UNWIND_LIBUNWIND = 0,      /**< libunwind, works on any code */
	GWMEM_UNWIND_FRAME_POINTER = 1,  /**< bounds-checked frame-pointer walk */
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
		enum gwmem_unwinder unwinder;  /**< "libunwind" or "frame-pointer" */
		int report_signal;             /**< signal that writes a report; 0 = off */
		char report_dir[GWMEM_CONFIG_PATH_MAX]; /**< where signal reports go */
		char shm_dir[GWMEM_CONFIG_PATH_MAX];    /**< where segments are created */
		bool keep_segment_on_exit;     /**< keep the segment after a normal exit */
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
 * GWMEM_CONFIG_QUIET) and keeps the default: a bad file never fails the call.
 * Does not call malloc.
 *
 * @param cfg   filled in; never left half-initialised
 * @param path  file to read, or NULL for the default search
 * @param flags GWMEM_CONFIG_* flags
 * @return the number of diagnostics (0 for a clean file), or -EINVAL if
 *         @p cfg is NULL.  A missing default file is not a diagnostic.
 */
GWMEM_EXPORT int gwmem_config_load(struct gwmem_config *cfg, const char *path, unsigned flags);

/* GWMEM_API_BEGIN: pools, objects, rc and the compacting heap follow. */

#ifdef __cplusplus
}
#endif

#endif /* GWMEM_H */
