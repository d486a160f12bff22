/*
 * spin.h - the one spin/back-off primitive of gwmem: gw_cpu_relax() for one
 * busy-wait iteration, struct gw_backoff for "spin a bounded number of
 * times, then give the CPU away" (jemalloc's include/jemalloc/internal/
 * spin.h, spin_adaptive), and struct gw_spin, a test-and-test-and-set lock
 * built on both.  Every wait loop in lib/ goes through here.
 *
 * Why spin at all: the critical sections guarded this way are a few dozen
 * instructions, run inside malloc or on a pool's fast path, and some lock
 * words live in the shared-memory segment as a plain uint32_t
 * (gw_spin_lock_word); a pthread mutex is too heavy for the first and
 * cannot be placed in the second.
 * Why bounded: on a one- or two-core gateway the lock holder is often the
 * thread that was preempted; spinning then only burns the holder's time
 * slice.  After GW_BACKOFF_STEPS rounds of doubling (63 relax iterations,
 * a few microseconds) every further wait is a sched_yield().
 *
 * Header only, no state, no allocation: usable by every lib/ folder.
 */
#ifndef GW_SPIN_H
#define GW_SPIN_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

/* One iteration of a busy wait: tells the core that we spin, so that a
 * hyper-thread sibling gets the pipeline (x86 pause) or the core may
 * lower its power (ARM).  On aarch64 isb rather than yield: yield is a
 * no-op on most cores, isb stalls for a comparable time to x86's pause
 * (the choice of jemalloc's and Rust's spin-loop hints). */
static inline void gw_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("isb" ::: "memory");
#elif defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH >= 7
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

/* --- bounded back-off ---------------------------------------------------- */

/* Rounds of doubling spins before a waiter starts yielding: 1+2+...+32. */
#define GW_BACKOFF_STEPS 6u

/* The state of one wait; start at GW_BACKOFF_INIT for every new wait. */
struct gw_backoff {
	unsigned step;
};
#define GW_BACKOFF_INIT { 0u }

/* Wait a little longer than last time: 2^step relax iterations while step
 * is below GW_BACKOFF_STEPS, then one sched_yield() per call. */
static inline void gw_backoff_wait(struct gw_backoff *b)
{
	if (b->step < GW_BACKOFF_STEPS) {
		for (unsigned i = 0; i < (1u << b->step); i++)
			gw_cpu_relax();
		b->step++;
		return;
	}
	sched_yield();
}

/* True once the back-off has stopped spinning and yields on every wait. */
static inline bool gw_backoff_yielding(const struct gw_backoff *b)
{
	return b->step >= GW_BACKOFF_STEPS;
}

/* --- the lock ------------------------------------------------------------ */

/*
 * A lock word: 0 free, 1 held.  The _word functions take a bare uint32_t so
 * that lock words of the shared-memory layout (stripe heads) use the same
 * code; everything else holds a struct gw_spin.  Not recursive, not fair;
 * zero-initialised means unlocked.
 */
struct gw_spin {
	uint32_t word;
};
#define GW_SPIN_INIT { 0u }

static inline bool gw_spin_trylock_word(uint32_t *w)
{
	return !__atomic_load_n(w, __ATOMIC_RELAXED) && !__atomic_exchange_n(w, 1u, __ATOMIC_ACQUIRE);
}

/* Contended path, out of line: keeps the callers' fast paths small. */
static __attribute__((noinline, cold, unused)) void gw_spin_lock_word_slow(uint32_t *w)
{
	struct gw_backoff b = GW_BACKOFF_INIT;

	do
		gw_backoff_wait(&b);
	while (!gw_spin_trylock_word(w));
}

static inline void gw_spin_lock_word(uint32_t *w)
{
	/* uncontended: one exchange; contended: read-only spinning, so the
	 * waiters do not bounce the line away from the holder */
	if (__builtin_expect(!__atomic_exchange_n(w, 1u, __ATOMIC_ACQUIRE), 1))
		return;
	gw_spin_lock_word_slow(w);
}

static inline void gw_spin_unlock_word(uint32_t *w)
{
	__atomic_store_n(w, 0u, __ATOMIC_RELEASE);
}

static inline bool gw_spin_trylock(struct gw_spin *l)
{
	return gw_spin_trylock_word(&l->word);
}

static inline void gw_spin_lock(struct gw_spin *l)
{
	gw_spin_lock_word(&l->word);
}

static inline void gw_spin_unlock(struct gw_spin *l)
{
	gw_spin_unlock_word(&l->word);
}

#endif /* GW_SPIN_H */
