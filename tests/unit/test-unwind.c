/* tests/unit/test-unwind.c: libunwind and frame-pointer capture, walk safety */
#include "config.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-omit-frame-pointer")
#endif

#include <check.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gwmem/shm_layout.h"
#include "unwind.h"
#include "suite.h"

static uint64_t got[GWMEM_SHM_MAX_FRAMES];
static unsigned ngot;
static uintptr_t ret_c, ret_b;

static GW_NOINLINE void chain_c(void)
{
	ret_c = (uintptr_t)__builtin_return_address(0);
	ngot = gw_unwind_capture(got, 16, 0, NULL);
	__asm__ __volatile__("" ::: "memory");
}

static GW_NOINLINE void chain_b(void)
{
	ret_b = (uintptr_t)__builtin_return_address(0);
	chain_c();
	__asm__ __volatile__("" ::: "memory");
}

static GW_NOINLINE void chain_a(void)
{
	chain_b();
	__asm__ __volatile__("" ::: "memory");
}

/* libunwind reports a caller's return address minus one on some targets
 * (aarch64), which names the same call instruction */
static int index_of(uintptr_t a)
{
	for (unsigned i = 0; i < ngot; i++)
		if (got[i] == a || got[i] == a - 1)
			return (int)i;
	return -1;
}

static void check_chain(enum gwmem_unwinder kind)
{
	gw_unwind_init(kind);
	/* linked into the test program: nothing is skipped by range */
	ck_assert_uint_eq(gw_unwind_self().lo, gw_unwind_self().hi);
	chain_a();
	ck_assert_uint_ge(ngot, 3);
	int ic = index_of(ret_c), ib = index_of(ret_b);
	ck_assert_int_ge(ic, 0);
	ck_assert_int_eq(ib, ic + 1);
	/* the object holding chain_c is found with its text range */
	struct gw_range r = { 0, 0 };
	bool is_main = false;
	ck_assert(gw_unwind_object_text((void *)ret_c, &r, &is_main));
	ck_assert(gw_range_has(&r, ret_c));
	ck_assert(is_main);
	/* 'skip' drops innermost frames (on 32-bit ARM the EXIDX walk may end
	 * right above the test program, in libcheck: then nothing is left) */
	uint64_t first = got[0];
	ngot = gw_unwind_capture(got, 16, 1, NULL);
#if !defined(__arm__)
	ck_assert_uint_ge(ngot, 1);
#endif
	if (ngot)
		ck_assert_uint_ne(got[0], first);
}

static int nstk_probe = 1;

START_TEST(test_unwind_libunwind_chain)
{
	check_chain(GWMEM_UNWIND_LIBUNWIND);
}
END_TEST

START_TEST(test_unwind_fp_chain)
{
	check_chain(GWMEM_UNWIND_FRAME_POINTER);
}
END_TEST

START_TEST(test_unwind_skips_self_range)
{
	gw_unwind_init(GWMEM_UNWIND_LIBUNWIND);
	chain_a();
	int ic = index_of(ret_c);
	ck_assert_int_ge(ic, 0);
	/* pretend everything up to chain_c's return address is gwmem's own */
	struct gw_range self;
	ck_assert(gw_unwind_object_text((void *)ret_c, &self, NULL));
	gw_unwind_set_self(self);
	chain_a();
	/* every frame in the test program is now "ours": the first one kept is outside it */
	ck_assert(ngot == 0 || !gw_range_has(&self, (uintptr_t)got[0]));
	gw_unwind_set_self((struct gw_range){ 0, 0 });
	/* an extra range (hook caller object) works the same way */
	struct gw_range extra = self;
	uint64_t f[16];
	unsigned n = gw_unwind_capture(f, 16, 0, &extra);
	ck_assert(n == 0 || !gw_range_has(&extra, (uintptr_t)f[0]));
}
END_TEST

static GW_NOINLINE unsigned deep_own(int depth, uint64_t *f, unsigned max)
{
	unsigned n;

	if (depth > 0)
		n = deep_own(depth - 1, f, max);
	else
		n = gw_unwind_capture(f, max, 0, NULL);
	__asm__ __volatile__("" ::: "memory");
	return n;
}

/* more leading frames of "gwmem" than the unwinder first asks for: the
 * capture is redone deeper, the caller's frames are not cut short */
static void check_deep_own(enum gwmem_unwinder kind)
{
	struct gw_range self;
	uint64_t f[GWMEM_SHM_MAX_FRAMES];
	unsigned n;

	gw_unwind_init(kind);
	n = deep_own(0, f, 2);
	ck_assert_uint_eq(n, 2);
	ck_assert(gw_unwind_object_text((void *)&deep_own, &self, NULL));
	gw_unwind_set_self(self);
	/* every test-program frame is now "ours": the first kept is outside it;
	 * the frame-pointer walk may end in a frame-less libc or libcheck */
	n = deep_own(20, f, 2);
#if !defined(__arm__)
	/* 32-bit ARM walks EXIDX tables, which the C libraries above the test
	 * program (libcheck, libc) need not carry: the walk may end there */
	if (kind == GWMEM_UNWIND_LIBUNWIND)
		ck_assert_uint_eq(n, 2);
#endif
	for (unsigned i = 0; i < n; i++)
		ck_assert(!gw_range_has(&self, (uintptr_t)f[i]));
	gw_unwind_set_self((struct gw_range){ 0, 0 });
}

#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
#define HAVE_FP_WALK 1    /* the frame-pointer walk is built for this target */
#else
#define HAVE_FP_WALK 0
#endif

START_TEST(test_unwind_deep_own_frames)
{
	check_deep_own(GWMEM_UNWIND_LIBUNWIND);
	if (HAVE_FP_WALK)
		check_deep_own(GWMEM_UNWIND_FRAME_POINTER);
}
END_TEST

START_TEST(test_unwind_fp_walk_checks)
{
	uintptr_t stack[64] __attribute__((aligned(16)));
	uintptr_t lo = (uintptr_t)stack, hi = (uintptr_t)(stack + 64);
	uint64_t f[16];

	memset(stack, 0, sizeof(stack));
	/* a good chain of three frames: 0 -> 8 -> 16, then a frame pointing down */
	stack[0] = (uintptr_t)&stack[8];
	stack[1] = 0x401000;
	stack[8] = (uintptr_t)&stack[16];
	stack[9] = 0x402000;
	stack[16] = (uintptr_t)&stack[4];
	stack[17] = 0x403000;
	stack[4] = (uintptr_t)&stack[0];
	stack[5] = 0x404000;
	ck_assert_uint_eq(gw_unwind_fp_walk((uintptr_t)&stack[0], lo, hi, f, 16), 3);
	ck_assert_uint_eq(f[0], 0x401000);
	ck_assert_uint_eq(f[2], 0x403000);
	/* a frame pointing to itself stops */
	stack[20] = (uintptr_t)&stack[20];
	stack[21] = 0x405000;
	ck_assert_uint_eq(gw_unwind_fp_walk((uintptr_t)&stack[20], lo, hi, f, 16), 1);
	/* out of bounds, misaligned, null return address */
	stack[24] = (uintptr_t)0x10;
	stack[25] = 0x406000;
	ck_assert_uint_eq(gw_unwind_fp_walk((uintptr_t)&stack[24], lo, hi, f, 16), 1);
	ck_assert_uint_eq(gw_unwind_fp_walk((uintptr_t)&stack[24] + 1, lo, hi, f, 16), 0);
	ck_assert_uint_eq(gw_unwind_fp_walk(0xdead0000, lo, hi, f, 16), 0);
	ck_assert_uint_eq(gw_unwind_fp_walk((uintptr_t)&stack[63], lo, hi, f, 16), 0);
	stack[30] = (uintptr_t)&stack[40];
	stack[31] = 0;
	ck_assert_uint_eq(gw_unwind_fp_walk((uintptr_t)&stack[30], lo, hi, f, 16), 0);
	/* max bounds the walk */
	ck_assert_uint_eq(gw_unwind_fp_walk((uintptr_t)&stack[0], lo, hi, f, 2), 2);
	/* empty bounds */
	ck_assert_uint_eq(gw_unwind_fp_walk((uintptr_t)&stack[0], hi, lo, f, 16), 0);
}
END_TEST

START_TEST(test_unwind_thread_stack)
{
	uintptr_t lo, hi;
	int local;

	ck_assert(gw_unwind_thread_stack(&lo, &hi));
	ck_assert_uint_le(lo, (uintptr_t)&local);
	ck_assert_uint_gt(hi, (uintptr_t)&local);
}
END_TEST

#if defined(__x86_64__)
unsigned fp_thunk(void);
static uint64_t thunk_frames[16];
__attribute__((noinline, optimize("omit-frame-pointer"))) unsigned fp_thunk(void)
{
	return gw_unwind_capture(thunk_frames, 16, 0, NULL);
}

/* call the capture with rbp holding a value that is no frame at all */
static unsigned capture_with_rbp(uintptr_t bogus)
{
	unsigned n;

	__asm__ __volatile__(
		"mov %%rsp, %%r12\n\t"
		"sub $512, %%rsp\n\t"
		"and $-16, %%rsp\n\t"
		"mov %%rbp, %%r13\n\t"
		"mov %1, %%rbp\n\t"
		"call fp_thunk\n\t"
		"mov %%r13, %%rbp\n\t"
		"mov %%r12, %%rsp\n\t"
		: "=a"(n)
		: "r"(bogus)
		: "r12", "r13", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory", "cc",
		  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
		  "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
	return n;
}
#endif

START_TEST(test_unwind_fp_frameless_caller)
{
#if defined(__x86_64__)
	uintptr_t lo, hi;
	int local;

	gw_unwind_init(GWMEM_UNWIND_FRAME_POINTER);
	ck_assert(gw_unwind_thread_stack(&lo, &hi));
	/* garbage, unmapped, misaligned, inside the stack but below us */
	const uintptr_t bogus[] = { 0, 1, 0xdeadbeefcafe, 0x7fffffffe001, (uintptr_t)&local - 4096,
				    (uintptr_t)&local + 3, hi - 8, lo };
	for (unsigned i = 0; i < sizeof(bogus) / sizeof(bogus[0]); i++)
		ck_assert_uint_le(capture_with_rbp(bogus[i]), 16);

	/* a frame-less caller whose rbp points at what looks like a frame
	 * record whose "return address" is a stack address: the walk must not
	 * report it (nor anything outside the loaded objects' text) */
	volatile uintptr_t fake[4];
	fake[0] = 0;
	fake[1] = (uintptr_t)&fake[2];
	fake[2] = 0;
	fake[3] = 0;
	unsigned n = capture_with_rbp((uintptr_t)&fake[0]);
	for (unsigned i = 0; i < n; i++) {
		ck_assert_msg(thunk_frames[i] != (uintptr_t)&fake[2], "frame %u is the stack address", i);
		ck_assert_msg(thunk_frames[i] < lo || thunk_frames[i] >= hi, "frame %u %#llx lies on the stack", i,
			      (unsigned long long)thunk_frames[i]);
		ck_assert(gw_unwind_in_text((uintptr_t)thunk_frames[i]));
	}
#endif
}
END_TEST

START_TEST(test_unwind_in_text)
{
	int local;
	void *heap = malloc(64);

	ck_assert(gw_unwind_in_text((uintptr_t)&gw_unwind_in_text));   /* gwmem's */
	ck_assert(gw_unwind_in_text((uintptr_t)&malloc));              /* libc's */
	ck_assert(!gw_unwind_in_text((uintptr_t)&local));
	ck_assert(!gw_unwind_in_text((uintptr_t)heap));
	ck_assert(!gw_unwind_in_text(0));
	ck_assert(!gw_unwind_in_text((uintptr_t)&nstk_probe));         /* data, not text */
	free(heap);
	/* an object loaded later is found: the loader's count moved */
	void *h = dlopen("libutil.so.1", RTLD_NOW | RTLD_LOCAL);
	if (h) {
		void *f = dlsym(h, "openpty");
		if (f)
			ck_assert(gw_unwind_in_text((uintptr_t)f));
		dlclose(h);
	}
}
END_TEST


/* --- backtrace cache -------------------------------------------------- */

/* a tiny interning table of the test's own: frames -> id (1-based) */
#define TEST_STACKS 4096
static uint64_t stk_frames[TEST_STACKS][GWMEM_SHM_MAX_FRAMES];
static unsigned stk_depth[TEST_STACKS], nstk;

static uint32_t test_intern(void *ctx, const uint64_t *frames, unsigned n)
{
	(void)ctx;
	if (!n)
		return 0;
	for (unsigned i = 0; i < nstk; i++)
		if (stk_depth[i] == n && memcmp(stk_frames[i], frames, n * sizeof(*frames)) == 0)
			return i + 1;
	ck_assert_uint_lt(nstk, TEST_STACKS);
	memcpy(stk_frames[nstk], frames, n * sizeof(*frames));
	stk_depth[nstk] = n;
	return ++nstk;
}

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static unsigned rnd(unsigned n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned)(rng_state % n);
}

static unsigned cmp_calls, cmp_max = 16;
static volatile int sink_v;

/* the two "malloc" entry points: same frame size, different call sites;
 * each asks for the id with the cache and then without it, from the same
 * call instruction, and the two must agree */
static volatile int two = 2;     /* a loop the compiler cannot unroll: one call site */

static GW_NOINLINE void entry_same(uint32_t *ids)
{
	for (int k = 0; k < two; k++) {
		gw_unwind_cache_enable(k == 0);
		ids[k] = gw_unwind_stack_id(cmp_max, test_intern, NULL);
	}
	gw_unwind_cache_enable(true);
	__asm__ __volatile__("" ::: "memory");
}

static GW_NOINLINE void entry_other(uint32_t *ids)
{
	for (int k = 0; k < two; k++) {
		gw_unwind_cache_enable(k == 0);
		ids[k] = gw_unwind_stack_id(cmp_max, test_intern, NULL);
	}
	gw_unwind_cache_enable(true);
	__asm__ __volatile__("" ::: "memory");
}

static GW_NOINLINE void walk(unsigned depth, unsigned path, uint32_t *ids);

/* three kinds of frame: two of the same size, one with alloca */
static GW_NOINLINE void rec_a(unsigned depth, unsigned path, uint32_t *ids)
{
	volatile char pad[40];
	pad[0] = (char)depth;
	walk(depth, path, ids);
	sink_v += pad[0];
}

static GW_NOINLINE void rec_b(unsigned depth, unsigned path, uint32_t *ids)
{
	volatile char pad[40];
	pad[1] = (char)depth;
	walk(depth, path, ids);
	sink_v += pad[1];
}

static GW_NOINLINE void rec_v(unsigned depth, unsigned path, uint32_t *ids)
{
	volatile char *pad = __builtin_alloca(16 + 16 * (path & 3));
	pad[0] = (char)depth;
	walk(depth, path >> 2, ids);
	sink_v += pad[0];
}

static GW_NOINLINE void walk(unsigned depth, unsigned path, uint32_t *ids)
{
	if (depth == 0) {
		if (path & 1)
			entry_other(ids);
		else
			entry_same(ids);
	} else {
		switch (path % 3) {
		case 0: rec_a(depth - 1, path / 3, ids); break;
		case 1: rec_b(depth - 1, path / 3, ids); break;
		default: rec_v(depth - 1, path / 3, ids); break;
		}
	}
	__asm__ __volatile__("" ::: "memory");
}

/* paths with many depths and many frame kinds, repeated in random order:
 * whatever the cache answers equals a fresh unwind, every time */
static void check_cache_paths(unsigned rounds, unsigned npaths)
{
	unsigned paths[64][2];

	gw_unwind_init(GWMEM_UNWIND_LIBUNWIND);
	for (unsigned i = 0; i < npaths; i++) {
		paths[i][0] = rnd(24);
		paths[i][1] = rnd(1u << 30);
	}
	for (unsigned r = 0; r < rounds; r++) {
		unsigned *p = paths[rnd(npaths)];
		uint32_t ids[2];

		walk(p[0], p[1], ids);
		ck_assert_uint_ne(ids[1], 0);
		ck_assert_uint_eq(ids[0], ids[1]);
		cmp_calls++;
	}
}

START_TEST(test_unwind_cache_equals_full)
{
	/* every round asks once with the cache enabled: the lookups not
	 * counted as misses were answered from it */
	uint64_t m0 = gw_unwind_cache_misses();

	check_cache_paths(20000, 48);
#if defined(__x86_64__)
	/* repeated paths are answered from the cache most of the time */
	ck_assert_uint_lt(gw_unwind_cache_misses() - m0, 20000 - 20000 / 20);
#endif
	/* few paths, so that same-depth paths meet in one set all the time */
	m0 = gw_unwind_cache_misses();
	check_cache_paths(20000, 6);
#if defined(__x86_64__)
	ck_assert_uint_lt(gw_unwind_cache_misses() - m0, 20000 - 20000 / 2);
#endif
	/* short stacks: the chain's end is inside max */
	cmp_max = 16;
}
END_TEST

/* one call site for every call of the test below */
static GW_NOINLINE uint32_t id_here(void)
{
	uint32_t id = gw_unwind_stack_id(16, test_intern, NULL);

	__asm__ __volatile__("" ::: "memory");
	return id;
}

static volatile int protect_at = 7;
static uintptr_t cache_lo, cache_hi;
static int protect_failed;

/* around the call of round i: at protect_at, the pages of the thread's
 * cache memory are read-only during the call (nothing else may write
 * them meanwhile: Check's asserts write thread state, so none here) */
static GW_NOINLINE void cache_protect(int i, int prot)
{
	const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t lo = cache_lo & ~(page - 1), hi = (cache_hi + page - 1) & ~(page - 1);

	if (i == protect_at && mprotect((void *)lo, hi - lo, prot) != 0)
		protect_failed = 1;
}

/*
 * After a fork every private page written is a copy-on-write fault, so a
 * cache hit writes none of the cache's pages (no statistics, no LRU
 * state): a program that allocates between forks does not pay for the
 * cache.  Here the pages are read-only during a hit; a store would be
 * SIGSEGV.
 */
START_TEST(test_unwind_cache_hit_writes_nothing)
{
	static volatile int rounds = 8;
	uint32_t ids[8];
	uint64_t m0;

	gw_unwind_init(GWMEM_UNWIND_LIBUNWIND);
	gw_unwind_cache_thread_memory(&cache_lo, &cache_hi);
	if (cache_lo == cache_hi)
		return;      /* no cache in this build */
	m0 = gw_unwind_cache_misses();
	/* one loop without branches: one call site of id_here; the path is
	 * filled on its second call, answered from the third */
	for (int i = 0; i < rounds; i++) {
		cache_protect(i, PROT_READ);
		ids[i] = id_here();
		cache_protect(i, PROT_READ | PROT_WRITE);
	}
	ck_assert_int_eq(protect_failed, 0);
	for (int i = 1; i < 8; i++)
		ck_assert_uint_eq(ids[i], ids[0]);
#if defined(__x86_64__)
	ck_assert_uint_le(gw_unwind_cache_misses() - m0, 2);
#endif
}
END_TEST

Suite *suite_unwind(void)
{
	Suite *s = suite_create("unwind");
	TCase *tc = tcase_create("unwind");
	tcase_add_test(tc, test_unwind_libunwind_chain);
	tcase_add_test(tc, test_unwind_skips_self_range);
	tcase_add_test(tc, test_unwind_deep_own_frames);
	tcase_add_test(tc, test_unwind_thread_stack);
	if (HAVE_FP_WALK) {
		tcase_add_test(tc, test_unwind_fp_chain);
		tcase_add_test(tc, test_unwind_fp_walk_checks);
		tcase_add_test(tc, test_unwind_fp_frameless_caller);
	}
	tcase_add_test(tc, test_unwind_in_text);
	tcase_add_test(tc, test_unwind_cache_equals_full);
	tcase_add_test(tc, test_unwind_cache_hit_writes_nothing);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN_IF(GWMEM_WITH_TRACKING, "the build has no tracking (-Dtracking=false)", suite_unwind)
