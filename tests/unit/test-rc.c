/* tests/unit/test-rc.c: rc objects, weak references, weak cache, rc pools, threads. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gwmem.h"
#include "suite.h"

static int dtor_calls;

static void dtor(void *obj, void *arg)
{
	ck_assert_int_eq(*(int *)obj, 42);
	__atomic_fetch_add(arg ? (int *)arg : &dtor_calls, 1, __ATOMIC_RELAXED);
}

START_TEST(test_rc_counts_and_dtor)
{
	int calls = 0;
	int *o = gwmem_rc_new(sizeof(int) * 4, dtor, &calls);

	ck_assert_ptr_nonnull(o);
	ck_assert_uint_eq((uintptr_t)o % 16, 0);
	ck_assert_int_eq(o[1], 0); /* zeroed */
	*o = 42;
	ck_assert_uint_eq(gwmem_rc_count(o), 1);
	ck_assert_ptr_eq(gwmem_rc_ref(o), o);
	ck_assert_ptr_eq(gwmem_rc_ref(o), o);
	ck_assert_uint_eq(gwmem_rc_count(o), 3);
	ck_assert_int_eq(gwmem_rc_unref(o), 0);
	ck_assert_int_eq(gwmem_rc_unref(o), 0);
	ck_assert_int_eq(calls, 0);
	ck_assert_int_eq(gwmem_rc_unref(o), 1);
	ck_assert_int_eq(calls, 1);

	/* Large objects take the mapped path. */
	char *big = gwmem_rc_new(100000, NULL, NULL);
	ck_assert_ptr_nonnull(big);
	memset(big, 7, 100000);
	ck_assert_int_eq(gwmem_rc_unref(big), 1);
	ck_assert_int_eq(gwmem_rc_unref(NULL), -EINVAL);
	ck_assert_ptr_null(gwmem_rc_ref(NULL));
}
END_TEST

START_TEST(test_rc_weak)
{
	int calls = 0;
	int *o = gwmem_rc_new(sizeof(int), dtor, &calls);
	struct gwmem_rc_weak *w, *w2;
	int *s;

	*o = 42;
	w = gwmem_rc_weak_new(o);
	w2 = gwmem_rc_weak_new(o);
	ck_assert_ptr_nonnull(w);
	ck_assert(gwmem_rc_weak_alive(w));
	s = gwmem_rc_weak_upgrade(w);
	ck_assert_ptr_eq(s, o);
	ck_assert_uint_eq(gwmem_rc_count(o), 2);
	ck_assert_int_eq(gwmem_rc_unref(s), 0);
	ck_assert_int_eq(gwmem_rc_unref(o), 1);
	ck_assert_int_eq(calls, 1);
	/* Dead: upgrade fails cleanly, unref after death is refused, dtor not rerun. */
	ck_assert(!gwmem_rc_weak_alive(w));
	errno = 0;
	ck_assert_ptr_null(gwmem_rc_weak_upgrade(w));
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(gwmem_rc_unref(o), -EINVAL);
	ck_assert_ptr_null(gwmem_rc_ref(o));
	ck_assert_ptr_null(gwmem_rc_weak_new(o));
	ck_assert_uint_eq(gwmem_rc_count(o), 0);
	ck_assert_int_eq(calls, 1);
	gwmem_rc_weak_release(w);
	ck_assert_ptr_null(gwmem_rc_weak_upgrade(w2));
	gwmem_rc_weak_release(w2);
	gwmem_rc_weak_release(NULL);
}
END_TEST

START_TEST(test_weakcache_basic)
{
	struct gwmem_weakcache *wc = gwmem_weakcache_create(0);
	int calls = 0;
	int *a = gwmem_rc_new(sizeof(int), dtor, &calls);
	int *b = gwmem_rc_new(sizeof(int), dtor, &calls);
	int *g;

	*a = *b = 42;
	ck_assert_int_eq(gwmem_weakcache_insert(wc, "sensor/1", 8, a), 0);
	ck_assert_int_eq(gwmem_weakcache_insert(wc, "sensor/2", 8, b), 0);
	ck_assert_uint_eq(gwmem_weakcache_size(wc), 2);
	ck_assert_uint_eq(gwmem_rc_count(a), 1); /* the cache holds no strong ref */
	g = gwmem_weakcache_get(wc, "sensor/1", 8);
	ck_assert_ptr_eq(g, a);
	ck_assert_uint_eq(gwmem_rc_count(a), 2);
	gwmem_rc_unref(g);
	ck_assert_ptr_null(gwmem_weakcache_get(wc, "sensor/3", 8));
	ck_assert_int_eq(errno, ENOENT);

	/* a dies: a lookup purges it lazily. */
	gwmem_rc_unref(a);
	ck_assert_int_eq(calls, 1);
	ck_assert_uint_eq(gwmem_weakcache_size(wc), 2);
	ck_assert_ptr_null(gwmem_weakcache_get(wc, "sensor/1", 8));
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_uint_eq(gwmem_weakcache_size(wc), 1);

	/* b dies: purge on demand. */
	gwmem_rc_unref(b);
	ck_assert_uint_eq(gwmem_weakcache_purge(wc), 1);
	ck_assert_uint_eq(gwmem_weakcache_size(wc), 0);

	/* Replace and remove. */
	int *c = gwmem_rc_new(sizeof(int), NULL, NULL), *d = gwmem_rc_new(sizeof(int), NULL, NULL);
	gwmem_weakcache_insert(wc, "k", 1, c);
	gwmem_weakcache_insert(wc, "k", 1, d);
	ck_assert_uint_eq(gwmem_weakcache_size(wc), 1);
	g = gwmem_weakcache_get(wc, "k", 1);
	ck_assert_ptr_eq(g, d);
	gwmem_rc_unref(g);
	ck_assert_int_eq(gwmem_weakcache_remove(wc, "k", 1), 0);
	ck_assert_int_eq(gwmem_weakcache_remove(wc, "k", 1), -ENOENT);
	ck_assert_int_eq(gwmem_weakcache_insert(wc, "x", 1, NULL), -EINVAL);
	/* Destroy drops weak refs; live objects are untouched. */
	gwmem_weakcache_insert(wc, "c", 1, c);
	gwmem_weakcache_destroy(wc);
	ck_assert_uint_eq(gwmem_rc_count(c), 1);
	gwmem_rc_unref(c);
	gwmem_rc_unref(d);
}
END_TEST

struct rp_counts {
	int init, reset, destroy;
};

static int rp_init(void *o, void *arg)
{
	((struct rp_counts *)arg)->init++;
	memset(o, 0, 32);
	return 0;
}

static void rp_reset(void *o, void *arg)
{
	((struct rp_counts *)arg)->reset++;
	memset(o, 0, 32);
}

static void rp_destroy(void *o, void *arg)
{
	((struct rp_counts *)arg)->destroy++;
}

START_TEST(test_rcpool)
{
	struct rp_counts c = {0};
	struct gwmem_objpool_options o;
	struct gwmem_objpool_stats st;
	struct gwmem_rcpool *rp;
	char *a, *b;

	gwmem_objpool_options_init(&o, 32, NULL);
	o.max_objects = 4;
	o.auto_shrink = false;
	o.init = rp_init;
	o.reset = rp_reset;
	o.destroy = rp_destroy;
	o.arg = &c;
	rp = gwmem_rcpool_create(&o);
	ck_assert_ptr_nonnull(rp);

	a = gwmem_rcpool_get(rp);
	ck_assert_ptr_nonnull(a);
	ck_assert_uint_eq((uintptr_t)a % 16, 0);
	strcpy(a, "reading");
	gwmem_rc_ref(a);
	ck_assert_int_eq(gwmem_rc_unref(a), 0);
	ck_assert_int_eq(gwmem_rc_unref(a), 1);
	gwmem_rcpool_stats(rp, &st);
	ck_assert_uint_eq(st.idle, 1);
	ck_assert_int_eq(c.reset, 1);

	b = gwmem_rcpool_get(rp);
	ck_assert_ptr_eq(b, a); /* reused, not freed */
	ck_assert_str_eq(b, "");
	ck_assert_uint_eq(gwmem_rc_count(b), 1);
	gwmem_rcpool_stats(rp, &st);
	ck_assert_uint_eq(st.hits, 1);
	ck_assert_uint_eq(st.created, 1);

	/* A weak ref keeps the slot out of the pool until released. */
	struct gwmem_rc_weak *w = gwmem_rc_weak_new(b);
	ck_assert_int_eq(gwmem_rc_unref(b), 1);
	ck_assert_ptr_null(gwmem_rc_weak_upgrade(w));
	gwmem_rcpool_stats(rp, &st);
	ck_assert_uint_eq(st.idle, 0);
	ck_assert_uint_eq(st.in_use, 1);
	gwmem_rc_weak_release(w);
	gwmem_rcpool_stats(rp, &st);
	ck_assert_uint_eq(st.idle, 1);
	ck_assert_uint_eq(st.in_use, 0);
	gwmem_rcpool_destroy(rp);
	ck_assert_int_eq(c.destroy, 1);
	ck_assert_int_eq(c.init, 1);
}
END_TEST

/* A dead object larger than 4 KiB (its mapping is gone) is refused, not read. */
START_TEST(test_rc_dead_large)
{
	char *big = gwmem_rc_new(5000, NULL, NULL);
	struct gwmem_rc_stats st0, st;

	ck_assert_ptr_nonnull(big);
	gwmem_rc_stats(&st0);
	ck_assert_int_eq(gwmem_rc_unref(big), 1);
	ck_assert_uint_eq(gwmem_rc_count(big), 0);
	errno = 0;
	ck_assert_ptr_null(gwmem_rc_ref(big));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(gwmem_rc_unref(big), -EINVAL);
	ck_assert_ptr_null(gwmem_rc_weak_new(big));
	gwmem_rc_stats(&st);
	ck_assert_uint_eq(st.invalid_calls - st0.invalid_calls, 4);
	ck_assert_uint_eq(st.destroyed - st0.destroyed, 1);

	/* kept mapped by a weak reference: dead, still refused */
	big = gwmem_rc_new(70000, NULL, NULL);
	struct gwmem_rc_weak *w = gwmem_rc_weak_new(big);
	ck_assert_int_eq(gwmem_rc_unref(big), 1);
	ck_assert_int_eq(gwmem_rc_unref(big), -EINVAL);
	ck_assert(!gwmem_rc_weak_alive(w));
	gwmem_rc_weak_release(w);
	ck_assert_int_eq(gwmem_rc_unref(big), -EINVAL);
	/* a weak reference released twice is refused, not a wrap-around */
	gwmem_rc_weak_release(w);
}
END_TEST

/* Pointers that are not rc objects: refused before any header is read. */
START_TEST(test_rc_foreign_pointers)
{
	long pg = sysconf(_SC_PAGESIZE);
	char *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char stackbuf[64] __attribute__((aligned(16)));
	int *heap = malloc(64);
	struct gwmem_weakcache *wc = gwmem_weakcache_create(16);

	ck_assert_ptr_ne(m, MAP_FAILED);
	/* the page before m + pg is unmapped: reading a header there faults */
	munmap(m, pg);
	m += pg;
	ck_assert_uint_eq(gwmem_rc_count(m), 0);
	ck_assert_ptr_null(gwmem_rc_ref(m));
	ck_assert_int_eq(gwmem_rc_unref(m), -EINVAL);
	ck_assert_uint_eq(gwmem_rc_weak_count(m), 0);
	ck_assert_ptr_null(gwmem_rc_weak_new(m));
	ck_assert_ptr_null(gwmem_rc_weak_upgrade((struct gwmem_rc_weak *)m));
	ck_assert(!gwmem_rc_weak_alive((struct gwmem_rc_weak *)m));
	gwmem_rc_weak_release((struct gwmem_rc_weak *)m);

	memset(stackbuf, 0, sizeof(stackbuf));
	ck_assert_int_eq(gwmem_weakcache_insert(wc, "k", 1, stackbuf), -EINVAL);
	ck_assert_int_eq(gwmem_weakcache_insert(wc, "k", 1, heap), -EINVAL);
	ck_assert_int_eq(gwmem_weakcache_insert(wc, "k", 1, (char *)heap + 1), -EINVAL);
	ck_assert_int_eq(gwmem_rc_unref((void *)16), -EINVAL);
	ck_assert_uint_eq(gwmem_weakcache_size(wc), 0);

	/* an interior pointer of a real object */
	char *o = gwmem_rc_new(100, NULL, NULL);
	ck_assert_ptr_null(gwmem_rc_ref(o + 16));
	ck_assert_int_eq(gwmem_rc_unref(o + 64), -EINVAL);
	ck_assert_uint_eq(gwmem_rc_count(o), 1);
	ck_assert_int_eq(gwmem_rc_unref(o), 1);

	gwmem_weakcache_destroy(wc);
	free(heap);
	munmap(m, pg);
}
END_TEST

START_TEST(test_rc_weak_count_and_stats)
{
	struct gwmem_rc_stats st0, st;
	struct gwmem_rc_weak *w1, *w2;
	char *o;

	ck_assert_int_eq(gwmem_rc_stats(NULL), -EINVAL);
	gwmem_rc_stats(&st0);
	o = gwmem_rc_new(40, NULL, NULL);
	ck_assert_uint_eq(gwmem_rc_weak_count(o), 0);
	w1 = gwmem_rc_weak_new(o);
	w2 = gwmem_rc_weak_new(o);
	ck_assert_uint_eq(gwmem_rc_weak_count(o), 2);
	gwmem_rc_weak_release(w1);
	ck_assert_uint_eq(gwmem_rc_weak_count(o), 1);
	gwmem_rc_stats(&st);
	ck_assert_uint_eq(st.created - st0.created, 1);
	ck_assert_uint_eq(st.live - st0.live, 1);
	ck_assert_uint_eq(st.live_bytes - st0.live_bytes, 40);
	ck_assert_int_eq(gwmem_rc_unref(o), 1);
	gwmem_rc_stats(&st);
	ck_assert_uint_eq(st.destroyed - st0.destroyed, 1);
	ck_assert_uint_eq(st.live, st0.live);
	ck_assert_uint_eq(st.retained - st0.retained, 1); /* w2 holds the memory */
	gwmem_rc_weak_release(w2);
	gwmem_rc_stats(&st);
	ck_assert_uint_eq(st.retained, st0.retained);
}
END_TEST

START_TEST(test_rcpool_size_clear_destroy_live)
{
	struct rp_counts c = {0};
	struct gwmem_objpool_options o;
	struct gwmem_rcpool *rp;
	struct gwmem_weakcache *wc = gwmem_weakcache_create(16);
	char *obj[6], *keep;

	gwmem_objpool_options_init(&o, 24, NULL);
	o.max_objects = 8;
	o.auto_shrink = false;
	o.init = rp_init;
	o.destroy = rp_destroy;
	o.arg = &c;
	rp = gwmem_rcpool_create(&o);
	for (int i = 0; i < 6; i++)
		obj[i] = gwmem_rcpool_get(rp);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(gwmem_rc_unref(obj[i]), 1);
	ck_assert_uint_eq(gwmem_rcpool_size(rp), 5);
	ck_assert_uint_eq(gwmem_rcpool_shrink(rp, 3), 2);
	ck_assert_uint_eq(gwmem_rcpool_size(rp), 3);
	ck_assert_uint_eq(gwmem_rcpool_clear(rp), 3);
	ck_assert_uint_eq(gwmem_rcpool_size(rp), 0);
	ck_assert_int_eq(c.destroy, 5);

	/* destroyed with a live object and a weak-cache entry on it */
	keep = obj[5];
	strcpy(keep, "alive");
	ck_assert_int_eq(gwmem_weakcache_insert(wc, "k", 1, keep), 0);
	gwmem_rcpool_destroy(rp);
	gwmem_rcpool_destroy(rp); /* ignored */
	errno = 0;
	ck_assert_ptr_null(gwmem_rcpool_get(rp));
	ck_assert_str_eq(keep, "alive");
	ck_assert_ptr_eq(gwmem_rc_ref(keep), keep);
	ck_assert_int_eq(gwmem_rc_unref(keep), 0);
	char *got = gwmem_weakcache_get(wc, "k", 1);
	ck_assert_ptr_eq(got, keep);
	ck_assert_int_eq(gwmem_rc_unref(got), 0);
	ck_assert_int_eq(gwmem_rc_unref(keep), 1);
	ck_assert_ptr_null(gwmem_weakcache_get(wc, "k", 1));
	/* the pool went with its last object: its memory is no rc object any more */
	ck_assert_int_eq(gwmem_rc_unref(keep), -EINVAL);
	ck_assert_int_eq(c.destroy, 6);
	gwmem_weakcache_destroy(wc);
}
END_TEST

/* --- threads ------------------------------------------------------------ */

#define NTHREADS 8
#define NOPS 100000

static int *shared_obj;
static struct gwmem_rc_weak *shared_weak;

static void *rc_stress(void *arg)
{
	uint64_t *errors = arg;

	for (int i = 0; i < NOPS; i++) {
		int *s = (i & 1) ? gwmem_rc_ref(shared_obj) : gwmem_rc_weak_upgrade(shared_weak);

		if (s != shared_obj || *s != 42)
			(*errors)++;
		if (gwmem_rc_unref(s) != 0)
			(*errors)++;
	}
	return NULL;
}

START_TEST(test_rc_threads)
{
	int calls = 0;
	pthread_t th[NTHREADS];
	uint64_t errors[NTHREADS] = {0};

	shared_obj = gwmem_rc_new(sizeof(int), dtor, &calls);
	*shared_obj = 42;
	shared_weak = gwmem_rc_weak_new(shared_obj);
	for (int i = 0; i < NTHREADS; i++)
		pthread_create(&th[i], NULL, rc_stress, &errors[i]);
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_uint_eq(errors[i], 0);
	}
	ck_assert_uint_eq(gwmem_rc_count(shared_obj), 1);
	ck_assert_int_eq(calls, 0);
	ck_assert_int_eq(gwmem_rc_unref(shared_obj), 1);
	ck_assert_int_eq(calls, 1);
	ck_assert_ptr_null(gwmem_rc_weak_upgrade(shared_weak));
	gwmem_rc_weak_release(shared_weak);
}
END_TEST

#define NKEYS 64
static struct gwmem_weakcache *shared_wc;

struct cval {
	int key;
	int magic;
};

static void *wc_stress(void *arg)
{
	uint64_t *errors = arg;
	unsigned seed = (unsigned)(uintptr_t)arg;
	struct cval *mine[4] = {0};

	for (int i = 0; i < NOPS; i++) {
		int k = rand_r(&seed) % NKEYS;
		char key[16];
		int len = snprintf(key, sizeof(key), "dev/%d", k);
		struct cval *v = gwmem_weakcache_get(shared_wc, key, (size_t)len);

		if (!v) {
			v = gwmem_rc_new(sizeof(*v), NULL, NULL);
			v->key = k;
			v->magic = 42;
			if (gwmem_weakcache_insert(shared_wc, key, (size_t)len, v) != 0)
				(*errors)++;
		} else if (v->key != k || v->magic != 42) {
			(*errors)++;
		}
		/* Keep a few alive for a while, drop the rest at once. */
		int slot = rand_r(&seed) % 4;
		if (mine[slot])
			gwmem_rc_unref(mine[slot]);
		mine[slot] = v;
		if (i % 1000 == 0)
			gwmem_weakcache_purge(shared_wc);
	}
	for (int s = 0; s < 4; s++)
		if (mine[s])
			gwmem_rc_unref(mine[s]);
	return NULL;
}

START_TEST(test_weakcache_threads)
{
	pthread_t th[NTHREADS];
	uint64_t errors[NTHREADS] = {0};

	shared_wc = gwmem_weakcache_create(32);
	for (int i = 0; i < NTHREADS; i++)
		pthread_create(&th[i], NULL, wc_stress, &errors[i]);
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_uint_eq(errors[i], 0);
	}
	ck_assert_uint_le(gwmem_weakcache_size(shared_wc), NKEYS);
	gwmem_weakcache_purge(shared_wc);
	ck_assert_uint_eq(gwmem_weakcache_size(shared_wc), 0); /* every object died */
	gwmem_weakcache_destroy(shared_wc);
}
END_TEST

static Suite *suite_rc(void)
{
	Suite *s = suite_create("rc");
	TCase *tc = tcase_create("single");

	tcase_add_test(tc, test_rc_counts_and_dtor);
	tcase_add_test(tc, test_rc_weak);
	tcase_add_test(tc, test_weakcache_basic);
	tcase_add_test(tc, test_rcpool);
	tcase_add_test(tc, test_rc_dead_large);
	tcase_add_test(tc, test_rc_foreign_pointers);
	tcase_add_test(tc, test_rc_weak_count_and_stats);
	tcase_add_test(tc, test_rcpool_size_clear_destroy_live);
	suite_add_tcase(s, tc);
	tc = tcase_create("threads");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_rc_threads);
	tcase_add_test(tc, test_weakcache_threads);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_rc)
