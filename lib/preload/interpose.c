/*
 * interpose.c - the exported malloc family of libgwmem-preload.so, init
 * order, the bootstrap arena and the fork handlers.
 *
 * Every entry point decides who serves the request: the size-class pools
 * (pool.c) for small sizes and alignments they can give, the next
 * allocator (next.c) for everything else, and a bootstrap arena
 * for the few allocations made while gwmem itself is starting (dlsym may
 * allocate before the next allocator is known).  Tracking (track.c) is
 * told about every block handed to or taken back from the program, after
 * the allocator has done its part and outside every gwmem lock.
 *
 * free() decides ownership by address: the pool reservation, then the
 * bootstrap arena, else the next allocator.  No block has a header.
 *
 * The libc contract is kept exactly: NULL with errno = ENOMEM on failure
 * (calloc/reallocarray overflow too), a failed realloc keeps the old
 * block, posix_memalign returns EINVAL/ENOMEM and leaves *memptr alone.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "gwmem.h"
#include "counters.h"
#include "fmt.h"
#include "next.h"
#include "options.h"
#include "os.h"
#include "pool.h"
#include "spin.h"
#include "track.h"

#define EXPORT __attribute__((visibility("default")))
#define MIN_ALIGN 16u

/* --- bootstrap arena ---------------------------------------------------- */

/*
 * Serves allocations made before the pools and the next allocator are
 * usable (the loader, dlsym).  Each block has a 16-byte header with its
 * size; free() of an arena block is a no-op.  Mapped on first use: with
 * the pools on, dlsym's few blocks come from them and the arena is never
 * needed, and like every mapping it would count against RLIMIT_AS whether
 * used or not.
 */
#define BOOT_SIZE (64 * 1024)
static char *boot_arena;        /* NULL until the first boot_alloc */
static size_t boot_used;

static inline bool boot_owns(const void *p)
{
	uintptr_t a = (uintptr_t)__atomic_load_n(&boot_arena, __ATOMIC_ACQUIRE);

	return (uintptr_t)p - a < BOOT_SIZE && a;
}

static void *boot_alloc(size_t n, size_t align)
{
	char *arena = __atomic_load_n(&boot_arena, __ATOMIC_ACQUIRE);
	size_t cur, start, end;

	if (!arena) {
		char *m = gw_os_map(BOOT_SIZE);
		if (!m) {
			errno = ENOMEM;
			return NULL;
		}
		if (__atomic_compare_exchange_n(&boot_arena, &arena, m, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			arena = m;
		else
			gw_os_unmap(m, BOOT_SIZE);   /* another thread's is there */
	}
	if (align < MIN_ALIGN)
		align = MIN_ALIGN;
	do {
		cur = __atomic_load_n(&boot_used, __ATOMIC_RELAXED);
		start = GW_ALIGN_UP(cur + 16, align);
		end = start + GW_ALIGN_UP(n, 16);
		if (n > BOOT_SIZE || end > BOOT_SIZE) {
			errno = ENOMEM;
			return NULL;
		}
	} while (!__atomic_compare_exchange_n(&boot_used, &cur, end, false, __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	*(size_t *)(arena + start - 16) = n;
	return arena + start;
}

static inline size_t boot_size(const void *p)
{
	return *(const size_t *)((const char *)p - 16);
}

/* --- init --------------------------------------------------------------- */

enum { INIT_NONE, INIT_RUNNING, INIT_DONE };
static int init_state;
static uint32_t init_tid;
static bool pools_on;           /* pools serve requests */
static size_t pool_max;         /* largest pooled size, 0 when off */
static bool constructed;        /* our constructor ran: tracking may start */
static GW_TLS bool tls_first_thread;    /* the thread that ran it (alloc_internal) */
static int stats_fd = -1;       /* a copy of stderr: programs close fd 2 before exit */

static void atfork_prepare(void);
static void atfork_parent(void);
static void atfork_child(void);

static GW_NOINLINE void init_slow(void)
{
	int expected = INIT_NONE;

	if (!__atomic_compare_exchange_n(&init_state, &expected, INIT_RUNNING, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		if (expected == INIT_DONE)
			return;
		/* another thread initialises; reentrant calls of that thread pass */
		if (__atomic_load_n(&init_tid, __ATOMIC_RELAXED) == gw_os_gettid())
			return;
		struct gw_backoff b = GW_BACKOFF_INIT;

		for (int i = 0; __atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != INIT_DONE && i < 1000000; i++)
			gw_backoff_wait(&b);
		return;
	}
	__atomic_store_n(&init_tid, gw_os_gettid(), __ATOMIC_RELAXED);

	gw_config_init();
	const struct gwmem_config *cfg = gw_opts();
	if (cfg->memory.pool_enabled && gw_pool_init(cfg) == 0) {
		pool_max = gw_pool_max_size();
		__atomic_store_n(&pools_on, true, __ATOMIC_RELEASE);
	}
	gw_next_init();
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	__atomic_store_n(&init_state, INIT_DONE, __ATOMIC_RELEASE);
}

static inline void ensure_init(void)
{
	if (gw_unlikely(__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != INIT_DONE))
		init_slow();
}

/* Tracking starts in our constructor: by then libc and the loader are ready. */
__attribute__((constructor)) static void gwmem_preload_init(void)
{
	ensure_init();
	constructed = true;
	if (gw_opts()->memory.stats_on_exit)
		stats_fd = fcntl(2, F_DUPFD_CLOEXEC, 64);
	if (gw_cfg_tracking) {
		tls_first_thread = true;
		gw_track_init(gw_opts());
	}
}

__attribute__((destructor)) static void gwmem_preload_fini(void)
{
	if (!constructed)
		return;
	if (gw_opts()->memory.stats_on_exit)
		gw_pool_print_stats(stats_fd >= 0 ? stats_fd : 2);
	if (gw_cfg_tracking)
		gw_track_exit();
}

/*
 * _exit and _Exit run no exit handlers, so the destructor above never
 * sees a process that ends through them; without this its segment would
 * stay behind as if it had crashed.  The real calls end the process with
 * the exit_group system call, as glibc's and musl's do, so nothing has to
 * be looked up (dlsym is not safe in a signal handler or a vfork child).
 * Calls from inside libc itself (daemon(3)'s parent) do not come here.
 */
static __attribute__((noreturn)) void exit_group_now(int status)
{
	if (constructed && gw_cfg_tracking)
		gw_track_exit_now();
	/*
	 * The system call instruction itself where we know it: libc's
	 * syscall() lies on a page of its text that a forked child which
	 * _exits at once would touch for this alone (glibc's own _exit
	 * shares _Fork's page), one page fault more in every such child.
	 */
#if defined(__x86_64__)
	__asm__ __volatile__("syscall" : : "a"((long)SYS_exit_group), "D"((long)status) : "rcx", "r11", "memory");
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = SYS_exit_group;
	register long x0 __asm__("x0") = status;
	__asm__ __volatile__("svc 0" : : "r"(x8), "r"(x0) : "memory");
#endif
	for (;;)
		syscall(SYS_exit_group, status);
}

EXPORT void _exit(int status)
{
	exit_group_now(status);
}

EXPORT void _Exit(int status)
{
	exit_group_now(status);
}

/* --- allocation without tracking ---------------------------------------- */

/*
 * The address space that bounds the process: its RLIMIT_AS, or 4 GiB on a
 * 32-bit target; 0 when nothing does (then a failure of the next allocator
 * is not for want of address space, and giving some back cannot help).
 */
static uint64_t as_bound(void)
{
	uint64_t lim = sizeof(void *) < 8 ? UINT64_C(1) << 32 : 0;
	struct rlimit rl;

	if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (!lim || (uint64_t)rl.rlim_cur < lim))
		lim = (uint64_t)rl.rlim_cur;
	return lim;
}

/*
 * The next allocator failed.  Where address space is what it lacks and the
 * limit allows such a request at all (not a terabyte), gwmem gives back,
 * once, what it holds but does not need, and says whether a retry is
 * worth it:
 *  - the pools' unused reservation and empty chunks (gw_pool_trim);
 *  - the segment's unused tail and the fork buffer (gw_track_give_back);
 *  - the next allocator's own free heap top: with the pools serving the
 *    small blocks, glibc's brk heap is nearly all free (malloc_trim).
 * errno is restored for the retry, so a request that then succeeds leaves
 * it as it was.
 */
static GW_NOINLINE GW_COLD bool next_failed_retry(size_t n, int saved_errno)
{
	static int done;
	uint64_t lim = as_bound();

	if (!lim || n > lim || __atomic_exchange_n(&done, 1, __ATOMIC_ACQ_REL))
		return false;
	uint64_t pools = pools_on ? gw_pool_trim() : 0;
	uint64_t segment = gw_cfg_tracking ? gw_track_give_back() : 0;
	uint64_t heap = 0;
	if (gw_next.trim) {
		uintptr_t before = (uintptr_t)sbrk(0);
		gw_next.trim(0);
		uintptr_t after = (uintptr_t)sbrk(0);
		if (before != (uintptr_t)-1 && after < before)
			heap = before - after;
	}
	uint64_t given = pools + segment + heap;
	gw_count_n(address_space_given_back, given);
	gw_counters_event(GW_EVENT_GIVE_BACK, false,
			  "the next allocator is out of memory under an address-space limit: gwmem gave "
			  "back %llu KiB (pools %llu, segment %llu, the next allocator's heap %llu); the "
			  "pools grow no more, tracking goes on in the space it has",
			  (unsigned long long)(given >> 10), (unsigned long long)(pools >> 10),
			  (unsigned long long)(segment >> 10), (unsigned long long)(heap >> 10));
	errno = saved_errno;
	return given > 0;
}

#define NEXT_CALL(n, expr)                                                    \
	({                                                                    \
		int saved_ = errno;                                           \
		void *r_ = (expr);                                            \
		if (gw_unlikely(r_ == NULL) && next_failed_retry((n), saved_)) \
			r_ = (expr);                                          \
		r_;                                                           \
	})

static GW_NOINLINE void *alloc_next(size_t n)
{
	if (gw_unlikely(!gw_next_ready())) {
		if (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != INIT_DONE)
			return boot_alloc(n, MIN_ALIGN);
		errno = ENOMEM;
		return NULL;
	}
	gw_count(forwarded_allocs);
	return NEXT_CALL(n, gw_next.malloc(n));
}

static GW_NOINLINE void *alloc_slow(size_t n)
{
	ensure_init();
	if (gw_unlikely(n > PTRDIFF_MAX)) {
		errno = ENOMEM;
		return NULL;
	}
	if (pools_on && n <= pool_max) {
		void *p = gw_pool_alloc_inline(n);
		if (p)
			return p;
	}
	return alloc_next(n);
}

static GW_ALWAYS_INLINE void *alloc_impl(size_t n)
{
	if (gw_likely(n <= pool_max)) {
		void *p = gw_pool_alloc_inline(n);
		if (gw_likely(p != NULL))
			return p;
	}
	return alloc_slow(n);
}

static GW_ALWAYS_INLINE void free_impl(void *p);

static void *aligned_impl(size_t align, size_t n)
{
	ensure_init();
	if (align <= MIN_ALIGN) {
		/* pool blocks are 16-aligned, but the next allocator only promises
		 * alignof(max_align_t): 8 on armhf */
		void *p = alloc_impl(n);
		if (gw_likely(((uintptr_t)p & (align - 1)) == 0))
			return p;
		free_impl(p);
	}
	if (gw_unlikely(n > PTRDIFF_MAX || align > PTRDIFF_MAX / 2)) {
		errno = ENOMEM;
		return NULL;
	}
	if (pools_on) {
		void *p = gw_pool_alloc_aligned(n, align);
		if (p)
			return p;
	}
	if (!gw_next_ready())
		return boot_alloc(n, align);
	gw_count(forwarded_allocs);
	return NEXT_CALL(n, gw_next.memalign(align, n));
}

static GW_ALWAYS_INLINE void free_impl(void *p)
{
	if (gw_likely(gw_pool_owns_exact(p))) {
		gw_pool_free_inline(p);
		return;
	}
	if (gw_unlikely(p == NULL || boot_owns(p)))
		return;
	if (gw_likely(gw_next_ready()))
		gw_next.free(p);
}

static size_t usable_size(void *p)
{
	if (!p)
		return 0;
	if (gw_pool_owns_exact(p))
		return gw_pool_usable_size(p);
	if (boot_owns(p))
		return boot_size(p);
	if (gw_next_ready() && gw_next.usable_size)
		return gw_next.usable_size(p);
	return 0;
}

/*
 * gwmem's own allocations in the thread that started it, while tracking
 * (made inside the guard: the loader bringing libunwind in, libunwind
 * itself, the reporter's start) go to the next allocator, whose heap the
 * process has anyway.  From the pools they would open a class region each
 * for a handful of blocks of a dozen sizes the program itself may never
 * use: two mappings and a page table each, which every fork copies and
 * every child frees again.  Other threads' stay in the pools: glibc would
 * give each of them an arena of its own (64 MiB of address space).  free()
 * finds them by address like any block of the next allocator.
 */
static inline bool internal_to_next(void)
{
	return gw_unlikely(tls_first_thread) && gw_unlikely(gw_track_guarded());
}

static GW_NOINLINE GW_COLD void *alloc_internal(size_t n, bool zero)
{
	void *p;

	gw_count(untracked_internal);
	if (gw_unlikely(!gw_next_ready() || n > PTRDIFF_MAX)) {
		p = alloc_slow(n);
		if (p && zero)
			memset(p, 0, n);
		return p;
	}
	p = zero ? NEXT_CALL(n, gw_next.calloc(1, n)) : NEXT_CALL(n, gw_next.malloc(n));
	return p;
}

/* --- the exported malloc family ----------------------------------------- */

/* Tracking paths out of line, so the untracked fast paths need no frame;
 * allocations tail-call gw_track_alloc_ret, which keeps errno. */
static GW_NOINLINE void free_tracked(void *p)
{
	int *e = gw_track_errno();
	int saved = *e;
	if (p)
		gw_track_free(p);
	free_impl(p);
	*e = saved;
}

EXPORT void *malloc(size_t n)
{
	if (gw_unlikely(gw_track_on)) {
		if (internal_to_next())
			return alloc_internal(n, false);
		return gw_track_alloc_ret(alloc_impl(n), n);
	}
	return alloc_impl(n);
}

EXPORT void free(void *p)
{
	if (gw_unlikely(gw_track_on)) {
		free_tracked(p);
		return;
	}
	free_impl(p);
}

void cfree(void *p);
EXPORT void cfree(void *p)
{
	free(p);
}

EXPORT void *calloc(size_t nmemb, size_t size)
{
	size_t n;
	void *p;

	if (gw_unlikely(__builtin_mul_overflow(nmemb, size, &n))) {
		errno = ENOMEM;
		return NULL;
	}
	if (gw_unlikely(gw_track_on) && internal_to_next())
		return alloc_internal(n, true);
	if (gw_likely(n <= pool_max)) {
		p = gw_pool_alloc_inline(n);
		if (gw_likely(p != NULL)) {
			memset(p, 0, n);
			goto out;
		}
	}
	ensure_init();
	if (n > PTRDIFF_MAX) {
		errno = ENOMEM;
		return NULL;
	}
	if (pools_on && n <= pool_max && (p = gw_pool_alloc_inline(n)) != NULL) {
		memset(p, 0, n);
	} else if (gw_next_ready()) {
		gw_count(forwarded_allocs);
		p = NEXT_CALL(n, gw_next.calloc(nmemb, size));
	} else {
		p = boot_alloc(n, MIN_ALIGN);   /* fresh mapping: zero already */
	}
out:
	if (gw_unlikely(gw_track_on))
		return gw_track_alloc_ret(p, n);
	return p;
}

/*
 * A pool pointer that is not a live block (an interior or stray address, a
 * block already freed) is refused before anything changes: reported and
 * counted once, NULL with EINVAL, the block and its record untouched.
 * Going on would hand a free block out as live, or copy from the middle
 * of another one.
 */
static inline bool realloc_refused(void *old)
{
	if (gw_pool_owns_exact(old) && gw_unlikely(gw_pool_check_realloc(old) != 0)) {
		errno = EINVAL;
		return true;
	}
	return false;
}

/* old is not NULL and, when pooled, a live block (realloc_refused said so). */
static void *realloc_impl(void *old, size_t n)
{
	void *p;

	if (gw_pool_owns_exact(old)) {
		size_t have = gw_pool_usable_size(old);
		/* stay in place while the block fits and is not too large for n */
		if (n <= have && (n > have / 2 || have <= 32))
			return old;
		p = alloc_impl(n);
		if (!p)
			return NULL;
		memcpy(p, old, n < have ? n : have);
		gw_pool_free_inline(old);
		return p;
	}
	if (boot_owns(old)) {
		size_t have = boot_size(old);
		p = alloc_impl(n);
		if (!p)
			return NULL;
		memcpy(p, old, n < have ? n : have);
		return p;
	}
	ensure_init();
	if (!gw_next_ready()) {
		errno = ENOMEM;
		return NULL;
	}
	return NEXT_CALL(n, gw_next.realloc(old, n));
}

/*
 * The old block's record goes before the old block can be freed: once it
 * is, another thread may get the same address and record it, and removing
 * "old" afterwards would remove that thread's record.
 */
static GW_NOINLINE void *realloc_tracked(void *old, size_t n)
{
	int saved = errno;
	size_t have = usable_size(old);

	if (realloc_refused(old))
		return NULL;
	gw_track_free(old);
	errno = saved;
	void *p = realloc_impl(old, n);
	saved = errno;
	if (p)
		gw_track_alloc(p, n);
	else
		gw_track_alloc(old, have);   /* a failed realloc keeps the old block */
	errno = saved;
	return p;
}

EXPORT void *realloc(void *old, size_t n)
{
	if (!old)
		return malloc(n);
#ifdef __GLIBC__
	if (n == 0) {
		/* glibc frees and returns NULL; musl returns a block of size 0,
		 * which realloc_impl gives like any other size */
		free(old);
		return NULL;
	}
#endif
	if (gw_unlikely(n > PTRDIFF_MAX)) {
		errno = ENOMEM;
		return NULL;
	}
	if (gw_unlikely(gw_track_on))
		return realloc_tracked(old, n);
	if (realloc_refused(old))
		return NULL;
	return realloc_impl(old, n);
}

EXPORT void *reallocarray(void *old, size_t nmemb, size_t size)
{
	size_t n;

	if (__builtin_mul_overflow(nmemb, size, &n)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(old, n);
}

static void *aligned_tracked(size_t align, size_t n)
{
	void *p = aligned_impl(align, n);
	if (gw_unlikely(gw_track_on))
		return gw_track_alloc_ret(p, n);
	return p;
}

EXPORT int posix_memalign(void **memptr, size_t align, size_t n)
{
	int saved = errno;
	void *p;

	if (align < sizeof(void *) || (align & (align - 1)) != 0)
		return EINVAL;
	p = aligned_tracked(align, n);
	if (!p) {
		errno = saved;
		return ENOMEM;
	}
	*memptr = p;
	errno = saved;
	return 0;
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
	if (align == 0 || (align & (align - 1)) != 0) {
		errno = EINVAL;
		return NULL;
	}
	return aligned_tracked(align, n);
}

EXPORT void *memalign(size_t align, size_t n)
{
	/* glibc rounds a non-power-of-two alignment up */
	if (align & (align - 1)) {
		if (align > (SIZE_MAX >> 1) + 1) {
			errno = EINVAL;
			return NULL;
		}
		align = (size_t)1 << (sizeof(size_t) * 8 - (size_t)__builtin_clzl(align));
	}
	return aligned_tracked(align, n);
}

EXPORT void *valloc(size_t n)
{
	return aligned_tracked(gw_os_page_size(), n);
}

EXPORT void *pvalloc(size_t n)
{
	size_t page = gw_os_page_size();
	size_t rounded;

	if (__builtin_add_overflow(n, page - 1, &rounded)) {
		errno = ENOMEM;
		return NULL;
	}
	rounded &= ~(page - 1);
	return aligned_tracked(page, rounded ? rounded : page);
}

EXPORT size_t malloc_usable_size(void *p)
{
	return usable_size(p);
}

/* --- fork --------------------------------------------------------------- */

static void atfork_prepare(void)
{
	gw_pool_atfork_prepare();
	if (gw_cfg_tracking && constructed)
		gw_track_atfork_prepare();
}

static void atfork_parent(void)
{
	if (gw_cfg_tracking && constructed)
		gw_track_atfork_parent();
	gw_pool_atfork_parent();
}

static void atfork_child(void)
{
	if (gw_cfg_tracking && constructed)
		gw_track_atfork_child();
	gw_pool_atfork_child();
}
