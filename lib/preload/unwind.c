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

#if GWMEM_WITH_TRACKING
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#endif

/*
 * 32-bit ARM: libunwind 1.6 tries its frame-pointer method there, which
 * faults on armhf code (Thumb-2, no frame records; seen under qemu-arm as a
 * SIGSEGV in _ULarm_step on the first malloc).  glibc's backtrace() walks
 * the EXIDX tables through libgcc's unwinder, which every armhf object
 * carries, so it is used instead.
 */
#if GWMEM_WITH_TRACKING && defined(__arm__) && defined(__GLIBC__)
#include <execinfo.h>
#define USE_GLIBC_BACKTRACE 1
#else
#define USE_GLIBC_BACKTRACE 0
#endif

/*
 * libunwind is loaded with dlopen when a libunwind backtrace is first
 * wanted, not linked: with tracking off (or the frame-pointer unwinder) a
 * process never maps it and liblzma, about 400 KB of RSS; and RTLD_LOCAL
 * keeps libunwind's weak backtrace() from replacing glibc's in the host.
 */
#define USE_LIBUNWIND (GWMEM_WITH_TRACKING && !USE_GLIBC_BACKTRACE)
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

static GW_TLS uintptr_t tls_stack_lo, tls_stack_hi;
static GW_TLS uint8_t tls_stack_state;          /* 0 unknown, 1 known, 2 failed */

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
#if USE_LIBUNWIND
	if (unwinder == GWMEM_UNWIND_LIBUNWIND && !libunwind_load()) {
		gw_log("cannot load libunwind (libunwind.so.8): %s",
		       HAVE_FP_LAYOUT ? "using the frame-pointer unwinder" : "allocations get no backtraces");
		if (HAVE_FP_LAYOUT)
			unwinder = GWMEM_UNWIND_FRAME_POINTER;
	}
#endif
#if USE_GLIBC_BACKTRACE
	/* the first backtrace() loads libgcc_s: do it now, not inside a malloc */
	void *warm[4];
	(void)backtrace(warm, 4);
#endif
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

bool gw_unwind_thread_stack(uintptr_t *lo, uintptr_t *hi)
{
	if (gw_unlikely(tls_stack_state == 0)) {
		pthread_attr_t attr;
		void *addr;
		size_t size;

		tls_stack_state = 2;
		/* allocates (the main thread's reads /proc/self/maps): caller holds the guard */
		if (pthread_getattr_np(pthread_self(), &attr) == 0) {
			if (pthread_attr_getstack(&attr, &addr, &size) == 0 && size) {
				tls_stack_lo = (uintptr_t)addr;
				tls_stack_hi = (uintptr_t)addr + size;
				tls_stack_state = 1;
			}
			pthread_attr_destroy(&attr);
		}
	}
	*lo = tls_stack_lo;
	*hi = tls_stack_hi;
	return tls_stack_state == 1;
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

static GW_NOINLINE unsigned capture_fp(uint64_t *buf, unsigned max)
{
	uintptr_t lo, hi;

	if (!gw_unwind_thread_stack(&lo, &hi))
		return 0;
	return gw_unwind_fp_walk((uintptr_t)__builtin_frame_address(0), lo, hi, buf, max);
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
#if GWMEM_WITH_TRACKING
	void *ips[CAPTURE_MAX + 1];
#if USE_GLIBC_BACKTRACE
	int n = backtrace(ips, (int)want + 1);
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

/* --- backtrace cache (x86_64) ------------------------------------------ */

/*
 * A program allocates from a handful of call paths over and over; the
 * cache answers a repeated path with its stack id, without libunwind and
 * without interning.
 *
 * Soundness rests on replaying exactly what libunwind computes, not on
 * guessing.  At a fixed probe point in gw_unwind_stack_id we read rip, rsp
 * and rbp.  Unwinding one frame with DWARF CFI is a function of (pc, rsp,
 * rbp, memory) when the CFI row at pc says: CFA = rsp + k or rbp + k,
 * return address saved at CFA - 8, rbp saved at CFA + m or left as is, rsp
 * restored to CFA.  An entry holds, for each frame of the chain, that rule
 * (parsed from .eh_frame at fill time, the same table libunwind reads) and
 * the return address found.  A hit needs the same probe state and a replay
 * of every rule, reading the current stack, that finds every return
 * address again: then libunwind, following the same rules from the same
 * registers over the same memory, finds the same chain.  Stale return
 * addresses left in padding, alloca, realigned frames and frames that save
 * rbp at different places cannot fool it, because the locations are
 * recomputed from the current registers and memory, as libunwind does,
 * not remembered.
 *
 * Not cached (full unwind every time): a frame whose row is anything else
 * (CFA expressions as in gcc's DRAP realignment, signal frames with their
 * 'S' augmentation, rules through other registers), a pc without an FDE
 * (libunwind guesses there), a chain that leaves the thread's stack
 * (sigaltstack, coroutine stacks), a chain that libunwind ended for any
 * reason but a DW_CFA_undefined return address, the hook path (extra
 * range), the frame-pointer unwinder, and a fill whose replay does not
 * give libunwind's very frames.  Rules belong to code: the cache is
 * flushed when objects are unloaded (gw_unwind_cache_flush, from the
 * module-map refresh), like libunwind's own per-address caches.
 *
 * An entry is filled only when the same probe state meets the same stack
 * id twice in a row of misses, so that programs with ever-changing paths
 * (deepstack) pay one key compare per way and no parsing.  Signal
 * handlers cannot interleave: the tracker holds the "inside gwmem" guard
 * around all of it, so an allocation in a handler is not recorded.
 */

#if defined(__x86_64__) && GWMEM_WITH_TRACKING && defined(DLFO_STRUCT_HAS_EH_DBASE)
#define HAVE_BT_CACHE 1
#else
#define HAVE_BT_CACHE 0
#endif

static bool cache_enabled = true;
static uint32_t cache_epoch = 1;
static GW_TLS uint64_t tls_cache_hits;

void gw_unwind_cache_flush(void)
{
	__atomic_fetch_add(&cache_epoch, 1, __ATOMIC_RELAXED);
}

void gw_unwind_cache_enable(bool on)
{
	cache_enabled = on;
}

uint64_t gw_unwind_cache_hits(void)
{
	return tls_cache_hits;
}

#if HAVE_BT_CACHE

/* A supported CFI row, packed: bits 0-15 CFA offset, 16 CFA is rbp-based,
 * 17 rbp saved at CFA + (int8)bits 24-31 * 8, 18 last frame (return
 * address undefined), 19 valid.  0: not supported. */
#define RULE_BP         (1u << 16)
#define RULE_BP_SAVED   (1u << 17)
#define RULE_LAST       (1u << 18)
#define RULE_OK         (1u << 19)

static inline uintptr_t rule_cfa(uint32_t r, uintptr_t sp, uintptr_t bp)
{
	return (r & RULE_BP ? bp : sp) + (r & 0xffffu);
}

static inline intptr_t rule_bp_off(uint32_t r)
{
	return (intptr_t)(int8_t)(r >> 24) * 8;
}

enum { REG_BP = 6, REG_SP = 7, REG_RA = 16 };
enum { RULE_SAME, RULE_AT, RULE_UNDEF, RULE_OTHER };

struct cfi_row {
	int64_t cfa_reg;            /* -1: expression */
	int64_t cfa_off;
	uint8_t kind[3];            /* rbp, rsp, return address */
	int64_t off[3];
};

static inline int reg_slot(uint64_t reg)
{
	return reg == REG_BP ? 0 : reg == REG_SP ? 1 : reg == REG_RA ? 2 : -1;
}

/* LEB128; a signed value is sign-extended from its last byte's bit 6 */
static bool leb128(const uint8_t **p, const uint8_t *end, bool is_signed, uint64_t *v)
{
	uint64_t r = 0;
	unsigned shift = 0;

	while (*p < end && shift < 64) {
		uint8_t b = *(*p)++;
		r |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80)) {
			if (is_signed && shift < 64 && (b & 0x40))
				r |= ~UINT64_C(0) << shift;
			*v = r;
			return true;
		}
	}
	return false;
}

static inline bool uleb(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	return leb128(p, end, false, v);
}

static inline bool sleb(const uint8_t **p, const uint8_t *end, int64_t *v)
{
	uint64_t u;

	if (!leb128(p, end, true, &u))
		return false;
	*v = (int64_t)u;
	return true;
}

/* A DW_EH_PE-encoded pointer: absolute, pc-relative or relative to 'data'. */
static bool read_enc(const uint8_t **p, const uint8_t *end, uint8_t enc, uintptr_t data, uintptr_t *out)
{
	const uint8_t *at = *p;
	uint64_t v = 0;
	int64_t sv;

	switch (enc & 0x0f) {
	case 0x00: if (end - at < 8) return false; memcpy(&v, at, 8); *p += 8; break;
	case 0x01: if (!uleb(p, end, &v)) return false; break;
	case 0x02: { uint16_t x; if (end - at < 2) return false; memcpy(&x, at, 2); v = x; *p += 2; break; }
	case 0x03: { uint32_t x; if (end - at < 4) return false; memcpy(&x, at, 4); v = x; *p += 4; break; }
	case 0x04: if (end - at < 8) return false; memcpy(&v, at, 8); *p += 8; break;
	case 0x09: if (!sleb(p, end, &sv)) return false; v = (uint64_t)sv; break;
	case 0x0a: { int16_t x; if (end - at < 2) return false; memcpy(&x, at, 2); v = (uint64_t)(int64_t)x; *p += 2; break; }
	case 0x0b: { int32_t x; if (end - at < 4) return false; memcpy(&x, at, 4); v = (uint64_t)(int64_t)x; *p += 4; break; }
	case 0x0c: if (end - at < 8) return false; memcpy(&v, at, 8); *p += 8; break;
	default: return false;
	}
	switch (enc & 0x70) {
	case 0x00: break;
	case 0x10: v += (uintptr_t)at; break;
	case 0x30: if (!data) return false; v += data; break;
	default: return false;
	}
	*out = (uintptr_t)v;
	return true;
}

/* The FDE covering pc, through the object's .eh_frame_hdr search table. */
static const uint8_t *fde_find(uintptr_t pc)
{
	struct dl_find_object dlfo;
	const uint8_t *hdr, *p;
	uintptr_t ehf, count;
	const int32_t *tab;
	size_t lo, hi;

	if (_dl_find_object((void *)pc, &dlfo) != 0 || !dlfo.dlfo_eh_frame)
		return NULL;
	hdr = dlfo.dlfo_eh_frame;
	/* version 1, a table of datarel|sdata4 pairs: what every linker writes */
	if (hdr[0] != 1 || hdr[3] != 0x3b)
		return NULL;
	p = hdr + 4;
	if (!read_enc(&p, p + 16, hdr[1], (uintptr_t)hdr, &ehf) ||
	    !read_enc(&p, p + 16, hdr[2], (uintptr_t)hdr, &count) || !count)
		return NULL;
	tab = (const int32_t *)p;
	if ((uintptr_t)hdr + tab[0] > pc)
		return NULL;
	lo = 0;
	hi = count;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if ((uintptr_t)hdr + tab[2 * mid] <= pc)
			lo = mid;
		else
			hi = mid;
	}
	return hdr + tab[2 * lo + 1];
}

static void row_set(struct cfi_row *r, uint64_t reg, uint8_t kind, int64_t off)
{
	int s = reg_slot(reg);

	if (s >= 0) {
		r->kind[s] = kind;
		r->off[s] = off;
	}
}

/* Run CFA instructions up to the row for pc (*loc: the current row's start). */
static bool cfi_run(const uint8_t *p, const uint8_t *end, struct cfi_row *r, const struct cfi_row *init,
		    uint64_t caf, int64_t daf, uintptr_t *loc, uintptr_t pc)
{
	struct cfi_row saved[8];
	unsigned nsaved = 0;

	while (p < end) {
		uint8_t op = *p++;
		uint64_t reg, u, delta = 0;
		int64_t s;

		switch (op >> 6) {
		case 1:
			delta = (uint64_t)(op & 0x3f) * caf;
			goto advance;
		case 2:
			if (!uleb(&p, end, &u))
				return false;
			row_set(r, op & 0x3f, RULE_AT, (int64_t)u * daf);
			continue;
		case 3:
			if (reg_slot(op & 0x3f) >= 0)
				row_set(r, op & 0x3f, init->kind[reg_slot(op & 0x3f)], init->off[reg_slot(op & 0x3f)]);
			continue;
		}
		switch (op) {
		case 0x00:              /* nop */
			continue;
		case 0x02:
			if (p >= end)
				return false;
			delta = *p++ * caf;
			goto advance;
		case 0x03: {
			uint16_t x;
			if (end - p < 2)
				return false;
			memcpy(&x, p, 2);
			p += 2;
			delta = x * caf;
			goto advance;
		}
		case 0x04: {
			uint32_t x;
			if (end - p < 4)
				return false;
			memcpy(&x, p, 4);
			p += 4;
			delta = x * caf;
			goto advance;
		}
		case 0x05:              /* offset_extended */
			if (!uleb(&p, end, &reg) || !uleb(&p, end, &u))
				return false;
			row_set(r, reg, RULE_AT, (int64_t)u * daf);
			continue;
		case 0x06:              /* restore_extended */
			if (!uleb(&p, end, &reg))
				return false;
			if (reg_slot(reg) >= 0)
				row_set(r, reg, init->kind[reg_slot(reg)], init->off[reg_slot(reg)]);
			continue;
		case 0x07:              /* undefined */
		case 0x08:              /* same_value */
			if (!uleb(&p, end, &reg))
				return false;
			row_set(r, reg, op == 0x07 ? RULE_UNDEF : RULE_SAME, 0);
			continue;
		case 0x09:              /* register */
		case 0x14:              /* val_offset */
			if (!uleb(&p, end, &reg) || !uleb(&p, end, &u))
				return false;
			row_set(r, reg, RULE_OTHER, 0);
			continue;
		case 0x15:              /* val_offset_sf */
			if (!uleb(&p, end, &reg) || !sleb(&p, end, &s))
				return false;
			row_set(r, reg, RULE_OTHER, 0);
			continue;
		case 0x0a:              /* remember_state: the whole row, as libunwind does */
			if (nsaved == GW_ARRAY_SIZE(saved))
				return false;
			saved[nsaved++] = *r;
			continue;
		case 0x0b:              /* restore_state */
			if (!nsaved)
				return false;
			*r = saved[--nsaved];
			continue;
		case 0x0c:              /* def_cfa */
			if (!uleb(&p, end, &reg) || !uleb(&p, end, &u))
				return false;
			r->cfa_reg = (int64_t)reg;
			r->cfa_off = (int64_t)u;
			continue;
		case 0x0d:              /* def_cfa_register */
			if (!uleb(&p, end, &reg))
				return false;
			if (r->cfa_reg >= 0)
				r->cfa_reg = (int64_t)reg;
			continue;
		case 0x0e:              /* def_cfa_offset */
			if (!uleb(&p, end, &u))
				return false;
			r->cfa_off = (int64_t)u;
			continue;
		case 0x0f:              /* def_cfa_expression */
			if (!uleb(&p, end, &u) || u > (uint64_t)(end - p))
				return false;
			p += u;
			r->cfa_reg = -1;
			continue;
		case 0x10:              /* expression */
		case 0x16:              /* val_expression */
			if (!uleb(&p, end, &reg) || !uleb(&p, end, &u) || u > (uint64_t)(end - p))
				return false;
			p += u;
			row_set(r, reg, RULE_OTHER, 0);
			continue;
		case 0x11:              /* offset_extended_sf */
			if (!uleb(&p, end, &reg) || !sleb(&p, end, &s))
				return false;
			row_set(r, reg, RULE_AT, s * daf);
			continue;
		case 0x12:              /* def_cfa_sf */
			if (!uleb(&p, end, &reg) || !sleb(&p, end, &s))
				return false;
			r->cfa_reg = (int64_t)reg;
			r->cfa_off = s * daf;
			continue;
		case 0x13:              /* def_cfa_offset_sf */
			if (!sleb(&p, end, &s))
				return false;
			r->cfa_off = s * daf;
			continue;
		case 0x2e:              /* GNU_args_size: only for resuming */
			if (!uleb(&p, end, &u))
				return false;
			continue;
		case 0x2f:              /* GNU_negative_offset_extended */
			if (!uleb(&p, end, &reg) || !uleb(&p, end, &u))
				return false;
			row_set(r, reg, RULE_AT, -(int64_t)u * daf);
			continue;
		default:                /* set_loc and anything unknown */
			return false;
		}
advance:
		if (*loc + delta > pc)
			return true;
		*loc += delta;
	}
	return true;
}

/* The packed rule of the CFI row for pc, 0 when it is not one we replay. */
static uint32_t rule_at(uintptr_t pc)
{
	const uint8_t *fde = fde_find(pc), *p, *end, *cie, *q, *cend, *cinit;
	const char *aug;
	uint32_t len, rule;
	int32_t cie_off;
	uint64_t caf, rareg, alen;
	int64_t daf;
	uint8_t ver, fenc = 0;
	uintptr_t begin, range, loc;
	struct cfi_row init = { .cfa_reg = -1 }, row;

	if (!fde)
		return 0;
	memcpy(&len, fde, 4);
	if (len == 0 || len == 0xffffffffu)
		return 0;
	end = fde + 4 + len;
	p = fde + 4;
	memcpy(&cie_off, p, 4);
	if (cie_off == 0)
		return 0;
	cie = p - cie_off;
	p += 4;

	memcpy(&len, cie, 4);
	if (len == 0 || len == 0xffffffffu)
		return 0;
	cend = cie + 4 + len;
	q = cie + 8;
	ver = *q++;
	if (ver != 1 && ver != 3)
		return 0;
	aug = (const char *)q;
	q += strnlen(aug, (size_t)(cend - q)) + 1;
	if (q > cend || (aug[0] && aug[0] != 'z'))
		return 0;
	if (!uleb(&q, cend, &caf) || !sleb(&q, cend, &daf))
		return 0;
	if (ver == 1)
		rareg = q < cend ? *q++ : 0;
	else if (!uleb(&q, cend, &rareg))
		return 0;
	if (rareg != REG_RA)
		return 0;
	if (aug[0] == 'z') {
		const uint8_t *aend;

		if (!uleb(&q, cend, &alen) || alen > (uint64_t)(cend - q))
			return 0;
		aend = q + alen;
		for (const char *a = aug + 1; *a; a++) {
			uintptr_t dummy;

			if (*a == 'R' && q < aend)
				fenc = *q++;
			else if (*a == 'L' && q < aend)
				q++;
			else if (*a == 'P' && q < aend) {
				uint8_t penc = *q++;
				if (!read_enc(&q, aend, penc & 0x7f, 0, &dummy))
					return 0;
			} else
				return 0;   /* 'S' (signal frame) and anything unknown */
		}
		q = aend;
	}
	cinit = q;

	if (!read_enc(&p, end, fenc, 0, &begin) || !read_enc(&p, end, fenc & 0x0f, 0, &range))
		return 0;
	if (pc < begin || pc - begin >= range)
		return 0;
	if (aug[0] == 'z') {
		if (!uleb(&p, end, &alen) || alen > (uint64_t)(end - p))
			return 0;
		p += alen;
	}
	loc = begin;
	if (!cfi_run(cinit, cend, &init, &init, caf, daf, &loc, UINTPTR_MAX))
		return 0;
	row = init;
	loc = begin;
	if (!cfi_run(p, end, &row, &init, caf, daf, &loc, pc))
		return 0;

	if ((row.cfa_reg != REG_SP && row.cfa_reg != REG_BP) || row.cfa_off < 0 || row.cfa_off > 0xffff)
		return 0;
	if (row.kind[1] != RULE_SAME)
		return 0;
	rule = (uint32_t)row.cfa_off | RULE_OK | (row.cfa_reg == REG_BP ? RULE_BP : 0);
	if (row.kind[2] == RULE_UNDEF)
		rule |= RULE_LAST;
	else if (row.kind[2] != RULE_AT || row.off[2] != -8)
		return 0;
	if (row.kind[0] == RULE_AT) {
		if (row.off[0] % 8 || row.off[0] < -1024 || row.off[0] >= 1024)
			return 0;
		rule |= RULE_BP_SAVED | (uint32_t)(uint8_t)(int8_t)(row.off[0] / 8) << 24;
	} else if (row.kind[0] != RULE_SAME) {
		return 0;
	}
	return rule;
}

/* Rules by pc, per thread (parsing is the slow part of a fill). */
#define MEMO_SIZE 128
static GW_TLS struct { uintptr_t pc; uint32_t rule, epoch; } tls_memo[MEMO_SIZE];

static uint32_t rule_cached(uintptr_t pc, uint32_t epoch)
{
	unsigned h = (unsigned)((pc * UINT64_C(0x9e3779b97f4a7c15)) >> 57) & (MEMO_SIZE - 1);

	if (tls_memo[h].pc != pc || tls_memo[h].epoch != epoch) {
		tls_memo[h].pc = pc;
		tls_memo[h].rule = rule_at(pc);
		tls_memo[h].epoch = epoch;
	}
	return tls_memo[h].rule;
}

/*
 * An entry: the probe state (key), then for each frame j the rule that
 * unwinds it and the return address ret[j] that rule finds; frame 0 is
 * gw_unwind_stack_id's own at the probe, ret[n - 1] the stack's last
 * frame.  n == 0: a candidate, seen once with stack id 'id'; id 0: free.
 */
#define ENTRY_FRAMES 24
#define CACHE_WAYS 4
#define CACHE_SETS 4

struct cache_entry {
	uintptr_t ip, sp, bp;
	uint32_t id, epoch;
	uint8_t n;
	uint32_t rule[ENTRY_FRAMES];
	uint64_t ret[ENTRY_FRAMES];
};

static GW_TLS struct cache_entry tls_cache[CACHE_SETS][CACHE_WAYS];
static GW_TLS uint32_t tls_miss_run, tls_miss_tick;
static GW_TLS uint8_t tls_cache_victim[CACHE_SETS];

static inline unsigned cache_set(uintptr_t sp)
{
	return (unsigned)((sp >> 4) ^ (sp >> 9)) & (CACHE_SETS - 1);
}

/* Replay e's rules over the current stack: true when every return address is found again. */
static inline bool replay_matches(const struct cache_entry *e, uintptr_t sp, uintptr_t bp, uintptr_t hi)
{
	for (unsigned j = 0; j < e->n; j++) {
		uint32_t r = e->rule[j];
		uintptr_t cfa = rule_cfa(r, sp, bp);

		if (cfa < sp + 8 || cfa > hi)
			return false;
		if (((const uint64_t *)cfa)[-1] != e->ret[j])
			return false;
		if (r & RULE_BP_SAVED) {
			uintptr_t at = cfa + (uintptr_t)rule_bp_off(r);

			if (at < sp || at > hi - 8)
				return false;
			bp = *(const uintptr_t *)at;
		}
		sp = cfa;
	}
	return true;
}

/*
 * Build e from the probe state and libunwind's frames buf[0..nraw), of
 * which the stack is buf[first..first + out).  Where the probe's caller
 * lies in buf (index 0 or 1: whether libunwind lists this function's own
 * frame) is found, not assumed.  Fails unless the replay gives exactly
 * libunwind's frames up to the stack's last, and the chain's end, if
 * before max, is one the rules explain.
 */
static bool cache_build(struct cache_entry *e, uintptr_t ip, uintptr_t sp, uintptr_t bp, uintptr_t hi,
			const uint64_t *buf, unsigned nraw, unsigned first, unsigned out, unsigned max,
			bool cut, uint32_t epoch)
{
	uintptr_t pc = ip;
	unsigned off, n;

	if (!out || nraw < 2 || first + out > nraw)
		return false;
	/* cut short by the capture's own limit, not by the chain's end or max */
	if (out < max && cut)
		return false;
	off = 1;
	for (unsigned j = 0;; j++) {
		/* the first row is the probe's own pc; the others are return addresses */
		uint32_t r = rule_cached(j ? pc - 1 : pc, epoch);
		uintptr_t cfa, ret;

		if (!r || (r & RULE_LAST))
			return false;
		cfa = rule_cfa(r, sp, bp);
		if (cfa < sp + 8 || cfa > hi)
			return false;
		ret = ((const uint64_t *)cfa)[-1];
		if (j == 0) {
			if (ret == buf[0])
				off = 0;
			else if (ret != buf[1])
				return false;
			/* the frames from buf[off] on are replayed: the stack's must be among them */
			n = first + out - off;
			if (first < off || n > ENTRY_FRAMES)
				return false;
		} else if (ret != buf[j + off]) {
			return false;
		}
		if (r & RULE_BP_SAVED) {
			uintptr_t at = cfa + (uintptr_t)rule_bp_off(r);

			if (at < sp || at > hi - 8)
				return false;
			bp = *(const uintptr_t *)at;
		}
		sp = cfa;
		pc = ret;
		e->rule[j] = r;
		e->ret[j] = ret;
		if (j + 1 == n)
			break;
	}
	/* libunwind stopped before max: the last frame must say it has no caller */
	if (out < max && !(rule_cached(pc - 1, epoch) & RULE_LAST))
		return false;
	e->n = (uint8_t)n;
	return true;
}

#endif /* HAVE_BT_CACHE */

uint32_t gw_unwind_stack_id(unsigned max, gw_unwind_intern_fn intern, void *ctx)
{
	uint64_t buf[CAPTURE_MAX], frames[GWMEM_SHM_MAX_FRAMES];
	unsigned first, nraw, out;
	bool cut;
	uint32_t id;

	if (unwinder != GWMEM_UNWIND_LIBUNWIND) {
		out = gw_unwind_capture(frames, max, 0, NULL);
		return intern(ctx, frames, out);
	}
#if HAVE_BT_CACHE
	/* a thread whose paths never repeat (long run of misses) tries the
	 * cache on one call in 16 only: the probe and the candidates cost it */
	if (gw_likely(cache_enabled) &&
	    (gw_likely(tls_miss_run < 256) || (++tls_miss_tick & 15) == 0)) {
		uintptr_t ip, sp, bp, lo, hi;
		uint32_t epoch = __atomic_load_n(&cache_epoch, __ATOMIC_RELAXED);
		struct cache_entry *set, *cand = NULL;

		/* the probe: the state the replay starts from */
		__asm__ __volatile__("lea 0(%%rip), %0\n\t"
				     "mov %%rsp, %1\n\t"
				     "mov %%rbp, %2"
				     : "=r"(ip), "=r"(sp), "=r"(bp));
		if (!gw_unwind_thread_stack(&lo, &hi) || sp < lo || sp >= hi)
			goto full;
		if (max > GWMEM_SHM_MAX_FRAMES)
			max = GWMEM_SHM_MAX_FRAMES;
		set = tls_cache[cache_set(sp)];
		for (unsigned w = 0; w < CACHE_WAYS; w++) {
			struct cache_entry *e = &set[w];

			if (e->sp != sp || e->ip != ip || e->bp != bp || e->epoch != epoch || !e->id)
				continue;
			if (!e->n) {
				cand = e;
				continue;
			}
			if (replay_matches(e, sp, bp, hi)) {
				tls_cache_hits++;
				tls_miss_run = 0;
				return e->id;
			}
		}
		if (tls_miss_run < 256)
			tls_miss_run++;
		out = capture_frames(buf, frames, max, 0, NULL, &first, &nraw, &cut);
		id = intern(ctx, frames, out);
		if (!id)
			return 0;
		if (cand && cand->id == id) {
			/* second miss of the same path: fill */
			if (!cache_build(cand, ip, sp, bp, hi, buf, nraw, first, out, max, cut, epoch))
				cand->id = 0;
		} else if (!cand) {
			uint8_t *victim = &tls_cache_victim[cache_set(sp)];
			struct cache_entry *e = &set[*victim % CACHE_WAYS];

			*victim = (uint8_t)(*victim + 1);
			e->ip = ip;
			e->sp = sp;
			e->bp = bp;
			e->epoch = epoch;
			e->id = id;
			e->n = 0;
		} else {
			cand->id = id;
		}
		return id;
	}
full:
#endif
	out = capture_frames(buf, frames, max, 0, NULL, &first, &nraw, &cut);
	return intern(ctx, frames, out);
}
