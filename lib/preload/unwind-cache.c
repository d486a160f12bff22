/*
 * unwind-cache.c - the per-thread backtrace cache behind gw_unwind_stack_id
 * (unwind.c), for x86_64 with glibc's _dl_find_object; lib/preload/meson.build
 * builds it there and unwind-cache-none.c elsewhere.
 *
 * A program allocates from a handful of call paths over and over; the
 * cache answers a repeated path with its stack id, without libunwind and
 * without interning.
 *
 * Soundness rests on replaying exactly what libunwind computes, not on
 * guessing.  At a fixed probe point in gw_unwind_stack_id (GW_UNWIND_PROBE,
 * unwind-cache.h) we read rip, rsp and rbp.  Unwinding one frame with DWARF CFI is a function of (pc, rsp,
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

#include "config.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "gwmem/shm_layout.h"
#include "unwind.h"
#include "unwind-cache.h"

#if !defined(__x86_64__) || !defined(DLFO_STRUCT_HAS_EH_DBASE) || !GW_UNWIND_CACHE
#error "unwind-cache.c is for x86_64 with _dl_find_object; the build picks unwind-cache-none.c elsewhere"
#endif

/* --- DWARF and .eh_frame constants (DWARF 5 section 6.4.2 and 7.24; the
 *     pointer encodings of the LSB's .eh_frame; GNU extensions as in
 *     binutils' include/dwarf2.def) ----------------------------------- */

/* Call frame instructions.  The three primary ones keep their operand in
 * the low 6 bits of the opcode byte. */
#define DW_CFA_PRIMARY_MASK     0xc0u
#define DW_CFA_OPERAND_MASK     0x3fu
enum {
	DW_CFA_advance_loc = 0x40,
	DW_CFA_offset = 0x80,
	DW_CFA_restore = 0xc0,

	DW_CFA_nop = 0x00,
	DW_CFA_set_loc = 0x01,
	DW_CFA_advance_loc1 = 0x02,
	DW_CFA_advance_loc2 = 0x03,
	DW_CFA_advance_loc4 = 0x04,
	DW_CFA_offset_extended = 0x05,
	DW_CFA_restore_extended = 0x06,
	DW_CFA_undefined = 0x07,
	DW_CFA_same_value = 0x08,
	DW_CFA_register = 0x09,
	DW_CFA_remember_state = 0x0a,
	DW_CFA_restore_state = 0x0b,
	DW_CFA_def_cfa = 0x0c,
	DW_CFA_def_cfa_register = 0x0d,
	DW_CFA_def_cfa_offset = 0x0e,
	DW_CFA_def_cfa_expression = 0x0f,
	DW_CFA_expression = 0x10,
	DW_CFA_offset_extended_sf = 0x11,
	DW_CFA_def_cfa_sf = 0x12,
	DW_CFA_def_cfa_offset_sf = 0x13,
	DW_CFA_val_offset = 0x14,
	DW_CFA_val_offset_sf = 0x15,
	DW_CFA_val_expression = 0x16,
	DW_CFA_GNU_args_size = 0x2e,
	DW_CFA_GNU_negative_offset_extended = 0x2f,
};

/* Pointer encodings: a value format in the low nibble, how it applies in
 * bits 4-6, and an indirection flag. */
#define DW_EH_PE_FORMAT_MASK    0x0fu
#define DW_EH_PE_APPL_MASK      0x70u
enum {
	DW_EH_PE_absptr = 0x00,
	DW_EH_PE_uleb128 = 0x01,
	DW_EH_PE_udata2 = 0x02,
	DW_EH_PE_udata4 = 0x03,
	DW_EH_PE_udata8 = 0x04,
	DW_EH_PE_sleb128 = 0x09,
	DW_EH_PE_sdata2 = 0x0a,
	DW_EH_PE_sdata4 = 0x0b,
	DW_EH_PE_sdata8 = 0x0c,
	DW_EH_PE_pcrel = 0x10,
	DW_EH_PE_datarel = 0x30,
	DW_EH_PE_indirect = 0x80,
};

/* A CIE/FDE length of this value announces the 64-bit DWARF format, which
 * no x86_64 toolchain writes into .eh_frame: not replayed. */
#define DWARF64_LENGTH          0xffffffffu

/* --- state ---------------------------------------------------------------- */

static bool cache_enabled = true;
static uint32_t cache_epoch = 1;

/*
 * The thread's bookkeeping, together in one aligned block: only a miss
 * writes it, a hit writes nothing at all.  After a fork every page a
 * process writes is a copy-on-write fault, and a program that allocates
 * between forks from paths the cache answers must not pay a fault or two
 * for the cache's own statistics.
 */
static GW_TLS struct {
	uint64_t misses;            /* lookups of an enabled cache not answered */
	uint32_t run;               /* misses in a row, up to 256 */
	uint32_t tick;              /* calls while run is 256: one in 16 looks */
	uint8_t victim[4];          /* per set: the way the next candidate takes */
} __attribute__((aligned(32))) tls_miss;

void gw_unwind_cache_flush(void)
{
	__atomic_fetch_add(&cache_epoch, 1, __ATOMIC_RELAXED);
}

void gw_unwind_cache_enable(bool on)
{
	cache_enabled = on;
}

uint64_t gw_unwind_cache_misses(void)
{
	return tls_miss.misses;
}

/* --- rules from .eh_frame ------------------------------------------------- */


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

/* DWARF register numbers of the x86_64 psABI: rbp, rsp, return address */
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

	switch (enc & DW_EH_PE_FORMAT_MASK) {
	case DW_EH_PE_absptr: if (end - at < 8) return false; memcpy(&v, at, 8); *p += 8; break;
	case DW_EH_PE_uleb128: if (!uleb(p, end, &v)) return false; break;
	case DW_EH_PE_udata2: { uint16_t x; if (end - at < 2) return false; memcpy(&x, at, 2); v = x; *p += 2; break; }
	case DW_EH_PE_udata4: { uint32_t x; if (end - at < 4) return false; memcpy(&x, at, 4); v = x; *p += 4; break; }
	case DW_EH_PE_udata8: if (end - at < 8) return false; memcpy(&v, at, 8); *p += 8; break;
	case DW_EH_PE_sleb128: if (!sleb(p, end, &sv)) return false; v = (uint64_t)sv; break;
	case DW_EH_PE_sdata2: { int16_t x; if (end - at < 2) return false; memcpy(&x, at, 2); v = (uint64_t)(int64_t)x; *p += 2; break; }
	case DW_EH_PE_sdata4: { int32_t x; if (end - at < 4) return false; memcpy(&x, at, 4); v = (uint64_t)(int64_t)x; *p += 4; break; }
	case DW_EH_PE_sdata8: if (end - at < 8) return false; memcpy(&v, at, 8); *p += 8; break;
	default: return false;
	}
	switch (enc & DW_EH_PE_APPL_MASK) {
	case DW_EH_PE_absptr: break;
	case DW_EH_PE_pcrel: v += (uintptr_t)at; break;
	case DW_EH_PE_datarel: if (!data) return false; v += data; break;
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
	if (hdr[0] != 1 || hdr[3] != (DW_EH_PE_datarel | DW_EH_PE_sdata4))
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

		/* the three primary opcodes carry their operand in the low 6 bits */
		switch (op & DW_CFA_PRIMARY_MASK) {
		case DW_CFA_advance_loc:
			delta = (uint64_t)(op & DW_CFA_OPERAND_MASK) * caf;
			goto advance;
		case DW_CFA_offset:
			if (!uleb(&p, end, &u))
				return false;
			row_set(r, op & DW_CFA_OPERAND_MASK, RULE_AT, (int64_t)u * daf);
			continue;
		case DW_CFA_restore:
			reg = op & DW_CFA_OPERAND_MASK;
			if (reg_slot(reg) >= 0)
				row_set(r, reg, init->kind[reg_slot(reg)], init->off[reg_slot(reg)]);
			continue;
		}
		switch (op) {
		case DW_CFA_nop:
			continue;
		case DW_CFA_advance_loc1:
			if (p >= end)
				return false;
			delta = *p++ * caf;
			goto advance;
		case DW_CFA_advance_loc2: {
			uint16_t x;
			if (end - p < 2)
				return false;
			memcpy(&x, p, 2);
			p += 2;
			delta = x * caf;
			goto advance;
		}
		case DW_CFA_advance_loc4: {
			uint32_t x;
			if (end - p < 4)
				return false;
			memcpy(&x, p, 4);
			p += 4;
			delta = x * caf;
			goto advance;
		}
		case DW_CFA_offset_extended:
			if (!uleb(&p, end, &reg) || !uleb(&p, end, &u))
				return false;
			row_set(r, reg, RULE_AT, (int64_t)u * daf);
			continue;
		case DW_CFA_restore_extended:
			if (!uleb(&p, end, &reg))
				return false;
			if (reg_slot(reg) >= 0)
				row_set(r, reg, init->kind[reg_slot(reg)], init->off[reg_slot(reg)]);
			continue;
		case DW_CFA_undefined:
		case DW_CFA_same_value:
			if (!uleb(&p, end, &reg))
				return false;
			row_set(r, reg, op == DW_CFA_undefined ? RULE_UNDEF : RULE_SAME, 0);
			continue;
		case DW_CFA_register:
		case DW_CFA_val_offset:
			if (!uleb(&p, end, &reg) || !uleb(&p, end, &u))
				return false;
			row_set(r, reg, RULE_OTHER, 0);
			continue;
		case DW_CFA_val_offset_sf:
			if (!uleb(&p, end, &reg) || !sleb(&p, end, &s))
				return false;
			row_set(r, reg, RULE_OTHER, 0);
			continue;
		case DW_CFA_remember_state:     /* the whole row, as libunwind does */
			if (nsaved == GW_ARRAY_SIZE(saved))
				return false;
			saved[nsaved++] = *r;
			continue;
		case DW_CFA_restore_state:
			if (!nsaved)
				return false;
			*r = saved[--nsaved];
			continue;
		case DW_CFA_def_cfa:
			if (!uleb(&p, end, &reg) || !uleb(&p, end, &u))
				return false;
			r->cfa_reg = (int64_t)reg;
			r->cfa_off = (int64_t)u;
			continue;
		case DW_CFA_def_cfa_register:
			if (!uleb(&p, end, &reg))
				return false;
			if (r->cfa_reg >= 0)
				r->cfa_reg = (int64_t)reg;
			continue;
		case DW_CFA_def_cfa_offset:
			if (!uleb(&p, end, &u))
				return false;
			r->cfa_off = (int64_t)u;
			continue;
		case DW_CFA_def_cfa_expression:
			if (!uleb(&p, end, &u) || u > (uint64_t)(end - p))
				return false;
			p += u;
			r->cfa_reg = -1;
			continue;
		case DW_CFA_expression:
		case DW_CFA_val_expression:
			if (!uleb(&p, end, &reg) || !uleb(&p, end, &u) || u > (uint64_t)(end - p))
				return false;
			p += u;
			row_set(r, reg, RULE_OTHER, 0);
			continue;
		case DW_CFA_offset_extended_sf:
			if (!uleb(&p, end, &reg) || !sleb(&p, end, &s))
				return false;
			row_set(r, reg, RULE_AT, s * daf);
			continue;
		case DW_CFA_def_cfa_sf:
			if (!uleb(&p, end, &reg) || !sleb(&p, end, &s))
				return false;
			r->cfa_reg = (int64_t)reg;
			r->cfa_off = s * daf;
			continue;
		case DW_CFA_def_cfa_offset_sf:
			if (!sleb(&p, end, &s))
				return false;
			r->cfa_off = s * daf;
			continue;
		case DW_CFA_GNU_args_size:      /* only for resuming */
			if (!uleb(&p, end, &u))
				return false;
			continue;
		case DW_CFA_GNU_negative_offset_extended:
			if (!uleb(&p, end, &reg) || !uleb(&p, end, &u))
				return false;
			row_set(r, reg, RULE_AT, -(int64_t)u * daf);
			continue;
		default:                        /* DW_CFA_set_loc and anything unknown */
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
	if (len == 0 || len == DWARF64_LENGTH)
		return 0;
	end = fde + 4 + len;
	p = fde + 4;
	memcpy(&cie_off, p, 4);
	if (cie_off == 0)
		return 0;
	cie = p - cie_off;
	p += 4;

	memcpy(&len, cie, 4);
	if (len == 0 || len == DWARF64_LENGTH)
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
				if (!read_enc(&q, aend, penc & ~DW_EH_PE_indirect, 0, &dummy))
					return 0;
			} else
				return 0;   /* 'S' (signal frame) and anything unknown */
		}
		q = aend;
	}
	cinit = q;

	if (!read_enc(&p, end, fenc, 0, &begin) || !read_enc(&p, end, fenc & DW_EH_PE_FORMAT_MASK, 0, &range))
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

/* --- entries and replay -------------------------------------------------- */

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
_Static_assert(sizeof(tls_miss.victim) == CACHE_SETS, "one victim per set");

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

/* --- the interface for gw_unwind_stack_id --------------------------------- */

uint32_t gw_unwind_cache_lookup(struct gw_unwind_probe *pr)
{
	struct cache_entry *set;
	uintptr_t lo, hi;

	pr->hi = 0;
	pr->cand = NULL;
	/* a thread whose paths never repeat (long run of misses) tries the
	 * cache on one call in 16 only: the probe and the candidates cost it */
	if (gw_unlikely(!cache_enabled))
		return 0;
	if (gw_unlikely(tls_miss.run >= 256) && (++tls_miss.tick & 15) != 0) {
		tls_miss.misses++;
		return 0;
	}
	pr->epoch = __atomic_load_n(&cache_epoch, __ATOMIC_RELAXED);
	if (!gw_unwind_thread_stack(&lo, &hi) || pr->sp < lo || pr->sp >= hi)
		return 0;
	pr->hi = hi;
	set = tls_cache[cache_set(pr->sp)];
	for (unsigned w = 0; w < CACHE_WAYS; w++) {
		struct cache_entry *e = &set[w];

		if (e->sp != pr->sp || e->ip != pr->ip || e->bp != pr->bp || e->epoch != pr->epoch || !e->id)
			continue;
		if (!e->n) {
			pr->cand = e;
			continue;
		}
		if (replay_matches(e, pr->sp, pr->bp, hi)) {
			/* nothing written on a hit (see tls_miss) */
			if (gw_unlikely(tls_miss.run))
				tls_miss.run = 0;
			return e->id;
		}
	}
	if (tls_miss.run < 256)
		tls_miss.run++;
	tls_miss.misses++;
	return 0;
}

void gw_unwind_cache_store(const struct gw_unwind_probe *pr, uint32_t id, const uint64_t *buf,
			   unsigned nraw, unsigned first, unsigned out, unsigned max, bool cut)
{
	struct cache_entry *cand = pr->cand;

	if (!pr->hi || !id)
		return;
	if (cand && cand->id == id) {
		/* second miss of the same path: fill */
		if (!cache_build(cand, pr->ip, pr->sp, pr->bp, pr->hi, buf, nraw, first, out, max, cut,
				 pr->epoch))
			cand->id = 0;
	} else if (!cand) {
		uint8_t *victim = &tls_miss.victim[cache_set(pr->sp)];
		struct cache_entry *e = &tls_cache[cache_set(pr->sp)][*victim % CACHE_WAYS];

		*victim = (uint8_t)(*victim + 1);
		e->ip = pr->ip;
		e->sp = pr->sp;
		e->bp = pr->bp;
		e->epoch = pr->epoch;
		e->id = id;
		e->n = 0;
	} else {
		cand->id = id;
	}
}

void gw_unwind_cache_thread_memory(uintptr_t *lo, uintptr_t *hi)
{
	uintptr_t a[3][2] = {
		{ (uintptr_t)&tls_miss, (uintptr_t)(&tls_miss + 1) },
		{ (uintptr_t)tls_cache, (uintptr_t)(tls_cache + CACHE_SETS) },
		{ (uintptr_t)tls_memo, (uintptr_t)(tls_memo + MEMO_SIZE) },
	};

	*lo = a[0][0];
	*hi = a[0][1];
	for (unsigned i = 1; i < 3; i++) {
		if (a[i][0] < *lo)
			*lo = a[i][0];
		if (a[i][1] > *hi)
			*hi = a[i][1];
	}
}
