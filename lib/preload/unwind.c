/*
 * unwind.c - backtrace capture: libunwind or a checked frame-pointer walk,
 * and the skipping of gwmem's own frames.
 *
 * Frames are skipped by address range, not by count: how many frames
 * malloc -> gw_track_alloc -> capture produce depends on inlining, the
 * range of our own executable segments does not.  The range is found once
 * with dladdr/dl_iterate_phdr.
 *
 * This file is built with frame pointers so that the walk goes through
 * gwmem's own frames to the caller's chain; a frame-less caller simply ends
 * the walk early (each frame is checked against the thread's stack bounds
 * before it is read).
 *
 * What it leaves to others: the cache of repeated call paths that
 * gw_unwind_stack_id consults first (unwind-cache.c, x86_64 only).
 */
#include "config.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-omit-frame-pointer")
#endif

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#if GWMEM_WITH_LIBUNWIND
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#endif

/*
 * libunwind is loaded with dlopen when a libunwind backtrace is first
 * wanted, not linked: with tracking off (or the frame-pointer unwinder) a
 * process never maps it and liblzma, about 400 KB of RSS; and RTLD_LOCAL
 * keeps libunwind's weak backtrace() from replacing glibc's in the host.
 * Where libunwind is not built in (musl, 32-bit ARM, where libunwind 1.6
 * faults on Thumb-2 code), libgcc's _Unwind_Backtrace stands in for it
 * (unwind-libgcc.c).
 */
#define USE_LIBUNWIND (GWMEM_WITH_TRACKING && GWMEM_WITH_LIBUNWIND)
#define USE_LIBGCC (GWMEM_WITH_TRACKING && GWMEM_WITH_LIBGCC_UNWIND)
#if USE_LIBUNWIND
#define GW_STR2(x) #x
#define GW_STR(x) GW_STR2(x)
static int (*unw_backtrace_fn)(void **, int);

static bool libunwind_load(void)
{
	static const char *const names[] = { "libunwind.so.8", "libunwind.so" };
	void *h = NULL;

	if (__atomic_load_n(&unw_backtrace_fn, __ATOMIC_ACQUIRE))
		return true;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !h; i++)
		h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return false;
	int (*set_policy)(unw_addr_space_t, unw_caching_policy_t) =
		(int (*)(unw_addr_space_t, unw_caching_policy_t))dlsym(h, GW_STR(unw_set_caching_policy));
	unw_addr_space_t *local = (unw_addr_space_t *)dlsym(h, GW_STR(unw_local_addr_space));
	int (*bt)(void **, int) = (int (*)(void **, int))dlsym(h, "unw_backtrace");
	if (!bt)
		return false;
	if (set_policy && local)
		set_policy(*local, UNW_CACHE_PER_THREAD);
	__atomic_store_n(&unw_backtrace_fn, bt, __ATOMIC_RELEASE);
	return true;
}
#endif

#include "gwmem/shm_layout.h"
#include "fmt.h"
#include "unwind.h"
#include "spin.h"
#include "unwind-cache.h"

#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
/* [fp] = caller's fp, [fp + 1 word] = return address */
#define HAVE_FP_LAYOUT 1
#else
#define HAVE_FP_LAYOUT 0
#endif

/* frames captured at most: the caller's max, skip and gwmem's own leading ones */
#define CAPTURE_MAX (GWMEM_SHM_MAX_FRAMES + 24u)

static struct gw_range self_range;
static enum gwmem_unwinder unwinder = GWMEM_UNWIND_LIBUNWIND;

GW_TLS struct gw_unwind_stack gw_unwind_tls_stack;

struct find_text {
	uintptr_t addr;
	struct gw_range out;
	bool found;
	bool is_main;
	unsigned index;
};

static int find_text_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct find_text *f = data;
	struct gw_range r = { UINTPTR_MAX, 0 };
	bool hit = false;

	(void)size;
	for (unsigned i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo, hi;

		if (ph->p_type != PT_LOAD)
			continue;
		lo = info->dlpi_addr + ph->p_vaddr;
		hi = lo + ph->p_memsz;
		if (f->addr >= lo && f->addr < hi)
			hit = true;
		if (!(ph->p_flags & PF_X))
			continue;
		if (lo < r.lo)
			r.lo = lo;
		if (hi > r.hi)
			r.hi = hi;
	}
	if (!hit) {
		f->index++;
		return 0;
	}
	f->out = r.hi ? r : (struct gw_range){ 0, 0 };
	f->found = true;
	f->is_main = f->index == 0;
	return 1;
}

bool gw_unwind_object_text(const void *addr, struct gw_range *out, bool *is_main)
{
	struct find_text f = { .addr = (uintptr_t)addr };

	dl_iterate_phdr(find_text_cb, &f);
	if (!f.found)
		return false;
	*out = f.out;
	if (is_main)
		*is_main = f.is_main;
	return true;
}

void gw_unwind_init(enum gwmem_unwinder kind)
{
	struct find_text f = { .addr = (uintptr_t)&gw_unwind_init };

	unwinder = kind;
	if (!HAVE_FP_LAYOUT || !GWMEM_WITH_TRACKING)
		unwinder = HAVE_FP_LAYOUT ? GWMEM_UNWIND_FRAME_POINTER : GWMEM_UNWIND_LIBUNWIND;
	dl_iterate_phdr(find_text_cb, &f);
	/* linked into the main program: its text is the user's too, skip nothing */
	self_range = f.found && !f.is_main ? f.out : (struct gw_range){ 0, 0 };
	gw_unwind_cache_flush();
	if (unwinder != GWMEM_UNWIND_FRAME_POINTER) {
		/* "libunwind" and "libgcc" both name the table-driven unwinder:
		 * the one this build has */
#if USE_LIBUNWIND
		bool ok = libunwind_load();
		const char *what = "libunwind (libunwind.so.8)";
		unwinder = GWMEM_UNWIND_LIBUNWIND;
#elif USE_LIBGCC
		bool ok = gw_unwind_libgcc_load();
		const char *what = "libgcc's unwinder (libgcc_s.so.1)";
		unwinder = GWMEM_UNWIND_LIBGCC;
#else
		bool ok = false;
		const char *what = "a table-driven unwinder (built with -Dunwinder=frame-pointer)";
#endif
		if (!ok && GWMEM_WITH_TRACKING) {
			gw_log("cannot load %s: %s", what,
			       HAVE_FP_LAYOUT ? "using the frame-pointer unwinder" : "allocations get no backtraces");
			if (HAVE_FP_LAYOUT)
				unwinder = GWMEM_UNWIND_FRAME_POINTER;
		}
	}
}

void gw_unwind_set_self(struct gw_range r)
{
	self_range = r;
	gw_unwind_cache_flush();
}

struct gw_range gw_unwind_self(void)
{
	return self_range;
}

void gw_unwind_thread_stack_find(void)
{
	struct gw_unwind_stack *st = &gw_unwind_tls_stack;
	pthread_attr_t attr;
	void *addr;
	size_t size;

	st->state = 2;
	/* allocates (the main thread's reads /proc/self/maps): caller holds the guard */
	if (pthread_getattr_np(pthread_self(), &attr) == 0) {
		if (pthread_attr_getstack(&attr, &addr, &size) == 0 && size) {
			st->lo = (uintptr_t)addr;
			st->hi = (uintptr_t)addr + size;
			st->state = 1;
		}
		pthread_attr_destroy(&attr);
	}
}

unsigned gw_unwind_fp_walk(uintptr_t fp, uintptr_t lo, uintptr_t hi, uint64_t *frames, unsigned max)
{
	const uintptr_t word = sizeof(uintptr_t);
	unsigned n = 0;

	if (hi < lo + 2 * word)
		return 0;
	while (n < max) {
		uintptr_t next, ret;

		if (fp < lo || fp > hi - 2 * word || (fp & (word - 1)))
			break;
		next = ((const uintptr_t *)fp)[0];
		ret = ((const uintptr_t *)fp)[1];
		if (ret < 4096)
			break;
		frames[n++] = ret;
		if (next <= fp)
			break;
		fp = next;
	}
	return n;
}

/* --- executable segments: what a frame-pointer walk may emit ----------- */

/*
 * A frame-pointer chain that runs into code built without frame pointers
 * reads whatever that code keeps in the frame register: often a stack or
 * heap address, which then passes for a return address (seen on musl with
 * an -O2 program: a stack address reported as libc.so+0x63af863968).  So
 * every return address the walk emits must lie in an executable segment of
 * a loaded object; the first that does not ends the chain.
 *
 * The segments are collected with dl_iterate_phdr into one of two tables
 * and published with a pointer swap, so readers take no lock.  An address
 * outside every segment re-collects, but only when the loader's
 * dlpi_adds/dlpi_subs have moved since the last collection and no other
 * thread is collecting (else it counts as outside: a chain cut short,
 * never a wrong frame).  A collection writes the table that is not
 * published; a reader still scanning it from two collections ago can only
 * misjudge one frame, never fault (nothing is dereferenced).
 */
#define EXEC_MAX 384

struct exec_table {
	unsigned n;
	struct gw_range r[EXEC_MAX];
};

static struct exec_table exec_tables[2];
static struct exec_table *exec_current;
static unsigned long long exec_gen = ~0ull;
static struct gw_spin exec_lock;
static GW_TLS unsigned tls_exec_hint;

struct exec_collect {
	struct exec_table *t;
	bool first, same;
};

static int exec_collect_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct exec_collect *c = data;

	if (c->first) {
		unsigned long long gen = info->dlpi_adds + ((unsigned long long)info->dlpi_subs << 32);
		c->first = false;
		if (gen == exec_gen && exec_current) {
			c->same = true;
			return 1;
		}
		exec_gen = gen;
	}
	for (unsigned i = 0; i < info->dlpi_phnum && c->t->n < EXEC_MAX; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && ph->p_memsz)
			c->t->r[c->t->n++] = (struct gw_range){
				info->dlpi_addr + ph->p_vaddr, info->dlpi_addr + ph->p_vaddr + ph->p_memsz };
	}
	(void)size;
	return 0;
}

static bool exec_refresh(void)
{
	if (!gw_spin_trylock(&exec_lock))
		return false;
	struct exec_table *cur = __atomic_load_n(&exec_current, __ATOMIC_ACQUIRE);
	struct exec_table *t = cur == &exec_tables[0] ? &exec_tables[1] : &exec_tables[0];
	struct exec_collect c = { .t = t, .first = true, .same = false };

	t->n = 0;
	dl_iterate_phdr(exec_collect_cb, &c);
	if (!c.same)
		__atomic_store_n(&exec_current, t, __ATOMIC_RELEASE);
	gw_spin_unlock(&exec_lock);
	return !c.same;
}

static bool exec_lookup(const struct exec_table *t, uintptr_t a)
{
	unsigned n = t ? __atomic_load_n(&t->n, __ATOMIC_RELAXED) : 0, h = tls_exec_hint;

	if (h < n && gw_range_has(&t->r[h], a))
		return true;
	for (unsigned i = 0; i < n; i++) {
		if (gw_range_has(&t->r[i], a)) {
			tls_exec_hint = i;
			return true;
		}
	}
	return false;
}

/*
 * The walk asks about the same few return addresses over and over: a
 * per-thread direct-mapped cache of pages known to be text answers most of
 * them with one compare.  It is emptied when a collection publishes a new
 * table (an unloaded object's pages must not stay "text").
 */
#define TEXT_CACHE 64
static GW_TLS uintptr_t tls_text_page[TEXT_CACHE];
static GW_TLS const struct exec_table *tls_text_table;

/* frames[0..n) up to the first that is not text: how many are */
static unsigned text_prefix(const uint64_t *frames, unsigned n)
{
	const struct exec_table *t = __atomic_load_n(&exec_current, __ATOMIC_RELAXED);

	if (gw_unlikely(t != tls_text_table)) {
		memset(tls_text_page, 0, sizeof(tls_text_page));
		tls_text_table = t;
	}
	uintptr_t prev = 0;

	for (unsigned i = 0; i < n; i++) {
		uintptr_t page = (uintptr_t)frames[i] >> 12;
		unsigned slot = (unsigned)(page ^ (page >> 6)) & (TEXT_CACHE - 1);

		/* recursion and nested helpers: the caller's page again */
		if (page == prev)
			continue;
		prev = page;
		if (gw_likely(tls_text_page[slot] == page))
			continue;
		if (!gw_unwind_in_text((uintptr_t)frames[i]))
			return i;
		/* (page 0 is never text, so prev = 0 never skips a frame) */
		/* cached only while the table it came from is still the current one */
		if (page && tls_text_table == __atomic_load_n(&exec_current, __ATOMIC_RELAXED))
			tls_text_page[slot] = page;
	}
	return n;
}

bool gw_unwind_in_text(uintptr_t a)
{
	if (exec_lookup(__atomic_load_n(&exec_current, __ATOMIC_ACQUIRE), a))
		return true;
	return exec_refresh() && exec_lookup(__atomic_load_n(&exec_current, __ATOMIC_ACQUIRE), a);
}

static GW_NOINLINE unsigned capture_fp(uint64_t *buf, unsigned max)
{
	uintptr_t lo, hi;
	unsigned n;

	if (!gw_unwind_thread_stack(&lo, &hi))
		return 0;
	n = gw_unwind_fp_walk((uintptr_t)__builtin_frame_address(0), lo, hi, buf, max);
	return text_prefix(buf, n);
}

/*
 * Leading frames of gwmem's own seen so far (malloc, the interposer's
 * tracking stub, gw_track_alloc, this file).  Asking the unwinder for
 * just max + own frames matters: every frame costs a cache lookup and two
 * loads in libunwind, and the shallow stacks of a churning program are
 * half gwmem.  Only grows; a capture that was cut short by a too small
 * guess is redone with the right depth.
 */
static unsigned own_frames = 4;

/* libunwind's unw_backtrace, called from here so that no extra frame of
 * ours lies between the caller and libunwind.  ips[0] is the return address
 * into the function this is inlined into, which is gwmem's: dropped. */
static GW_ALWAYS_INLINE unsigned capture(uint64_t *buf, unsigned want)
{
	if (unwinder == GWMEM_UNWIND_FRAME_POINTER)
		return capture_fp(buf, want);
#if USE_LIBUNWIND || USE_LIBGCC
	void *ips[CAPTURE_MAX + 1];
#if USE_LIBGCC
	int n = (int)gw_unwind_libgcc_backtrace(ips, want + 1);
#else
	int (*bt)(void **, int) = __atomic_load_n(&unw_backtrace_fn, __ATOMIC_RELAXED);
	int n = bt ? bt(ips, (int)want + 1) : 0;
#endif

	for (int i = 1; i < n; i++)
		buf[i - 1] = (uint64_t)(uintptr_t)ips[i];
	return n > 1 ? (unsigned)n - 1 : 0;
#else
	return 0;
#endif
}

static inline unsigned skip_own(const uint64_t *buf, unsigned i, unsigned n, const struct gw_range *extra)
{
	while (i < n && (gw_range_has(&self_range, (uintptr_t)buf[i]) ||
			 (extra && gw_range_has(extra, (uintptr_t)buf[i]))))
		i++;
	return i;
}

/*
 * The capture proper, inlined into both callers so that libunwind is
 * called from the caller's own frame: buf[0] is then that frame.  Drops
 * 'skip' frames, then gwmem's leading ones; *first is where the caller's
 * frames start in buf, *nraw how many buf holds, *cut whether the chain
 * went on beyond them.
 */
static GW_ALWAYS_INLINE unsigned capture_frames(uint64_t *buf, uint64_t *frames, unsigned max, unsigned skip,
						const struct gw_range *extra, unsigned *first, unsigned *nraw,
						bool *cut)
{
	unsigned own = __atomic_load_n(&own_frames, __ATOMIC_RELAXED);
	unsigned want, n, i, out = 0;

	if (max > GWMEM_SHM_MAX_FRAMES)
		max = GWMEM_SHM_MAX_FRAMES;
	if (skip > 8)
		skip = 8;
	want = max + skip + own;
	if (want > CAPTURE_MAX)
		want = CAPTURE_MAX;
	n = capture(buf, want);
	i = skip_own(buf, skip < n ? skip : n, n, extra);
	if (gw_unlikely(n == want && n - i < max && want < CAPTURE_MAX)) {
		/* the buffer filled up before max frames of the caller were in:
		 * more of our own frames than guessed; capture again, deeper
		 * (as deep as allowed when all of them were ours) */
		want = i < n && max + i < CAPTURE_MAX ? max + i : CAPTURE_MAX;
		n = capture(buf, want);
		i = skip_own(buf, i < n ? i : n, n, extra);
	}
	if (gw_unlikely(i - (skip < i ? skip : i) > own))
		__atomic_store_n(&own_frames, i - (skip < i ? skip : i), __ATOMIC_RELAXED);
	*first = i;
	for (; i < n && out < max; i++)
		frames[out++] = buf[i];
	*nraw = n;
	*cut = n == want;
	return out;
}

unsigned gw_unwind_capture(uint64_t *frames, unsigned max, unsigned skip, const struct gw_range *extra)
{
	uint64_t buf[CAPTURE_MAX];
	unsigned first, nraw;
	bool cut;

	return capture_frames(buf, frames, max, skip, extra, &first, &nraw, &cut);
}

/* --- stack ids -------------------------------------------------------- */

uint32_t gw_unwind_stack_id(unsigned max, gw_unwind_intern_fn intern, void *ctx)
{
	uint64_t buf[CAPTURE_MAX], frames[GWMEM_SHM_MAX_FRAMES];
	struct gw_unwind_probe pr = { .hi = 0 };
	unsigned first, nraw, out;
	bool cut;
	uint32_t id;

	if (unwinder != GWMEM_UNWIND_LIBUNWIND) {
		out = gw_unwind_capture(frames, max, 0, NULL);
		return intern(ctx, frames, out);
	}
	if (max > GWMEM_SHM_MAX_FRAMES)
		max = GWMEM_SHM_MAX_FRAMES;
	if (gw_unwind_cache_built) {
		/* the probe, in the frame that calls libunwind below */
		GW_UNWIND_PROBE(pr);
		id = gw_unwind_cache_lookup(&pr);
		if (id)
			return id;
	}
	out = capture_frames(buf, frames, max, 0, NULL, &first, &nraw, &cut);
	id = intern(ctx, frames, out);
	if (gw_unwind_cache_built && pr.hi)
		gw_unwind_cache_store(&pr, id, buf, nraw, first, out, max, cut);
	return id;
}
