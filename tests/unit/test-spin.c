/* tests/unit/test-spin.c: the spin/back-off primitive (spin.h): trylock,
 * mutual exclusion of the struct and word forms, the bounded back-off */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <stdint.h>

#include "spin.h"
#include "suite.h"

START_TEST(test_spin_trylock)
{
	struct gw_spin l = GW_SPIN_INIT;

	ck_assert(gw_spin_trylock(&l));
	ck_assert(!gw_spin_trylock(&l));        /* held: not recursive */
	gw_spin_unlock(&l);
	ck_assert(gw_spin_trylock(&l));
	gw_spin_unlock(&l);
	gw_spin_lock(&l);
	ck_assert(!gw_spin_trylock(&l));
	gw_spin_unlock(&l);
	ck_assert_uint_eq(l.word, 0);

	/* the word form: what a stripe head in the segment holds */
	uint32_t w = 0;
	gw_spin_lock_word(&w);
	ck_assert_uint_eq(w, 1);
	ck_assert(!gw_spin_trylock_word(&w));
	gw_spin_unlock_word(&w);
	ck_assert_uint_eq(w, 0);
}
END_TEST

START_TEST(test_spin_backoff_bounded)
{
	struct gw_backoff b = GW_BACKOFF_INIT;

	for (unsigned i = 0; i < GW_BACKOFF_STEPS; i++) {
		ck_assert(!gw_backoff_yielding(&b));
		gw_backoff_wait(&b);
	}
	/* the spinning phase is over: every further wait yields, the state stays put */
	ck_assert(gw_backoff_yielding(&b));
	for (int i = 0; i < 100; i++)
		gw_backoff_wait(&b);
	ck_assert_uint_eq(b.step, GW_BACKOFF_STEPS);
	gw_cpu_relax();
}
END_TEST

#define THREADS 4
#define ROUNDS 200000

static struct gw_spin lock = GW_SPIN_INIT;
static uint32_t word_lock;
static volatile uint64_t counter, word_counter;

static void *hammer(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		gw_spin_lock(&lock);
		/* a read-modify-write that loses updates unless the lock excludes */
		uint64_t v = counter;
		if ((i & 1023) == 0)
			sched_yield();  /* get preempted while holding it, now and then */
		counter = v + 1;
		gw_spin_unlock(&lock);

		gw_spin_lock_word(&word_lock);
		word_counter = word_counter + 1;
		gw_spin_unlock_word(&word_lock);
	}
	return NULL;
}

START_TEST(test_spin_excludes)
{
	pthread_t th[THREADS];

	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	ck_assert_uint_eq(counter, (uint64_t)THREADS * ROUNDS);
	ck_assert_uint_eq(word_counter, (uint64_t)THREADS * ROUNDS);
	ck_assert_uint_eq(lock.word, 0);
	ck_assert_uint_eq(word_lock, 0);
}
END_TEST

static Suite *suite_spin(void)
{
	Suite *s = suite_create("spin");
	TCase *tc = tcase_create("spin");

	tcase_add_test(tc, test_spin_trylock);
	tcase_add_test(tc, test_spin_backoff_bounded);
	tcase_add_test(tc, test_spin_excludes);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_spin)
