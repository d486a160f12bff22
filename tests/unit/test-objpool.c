/* tests/unit/test-objpool.c: object pools: callbacks, max_objects, auto_shrink, misuse, threads. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gwmem.h"
#include "suite.h"

struct counts {
	int init, reset, destroy;
	int fail_init;
};

struct obj {
	uint32_t magic;
	uint32_t owner;
	uint64_t seq;
	char payload[40];
};

static int cb_init(void *o, void *arg)
{
	struct counts *c = arg;

	if (c->fail_init)
		return -EPERM;
	__atomic_fetch_add(&c->init, 1, __ATOMIC_RELAXED);
	((struct obj *)o)->magic = 0x1234;
	return 0;
}

static void cb_reset(void *o, void *arg)
{
	struct counts *c = arg;

	__atomic_fetch_add(&c->reset, 1, __ATOMIC_RELAXED);
	memset(((struct obj *)o)->payload, 0, sizeof(((struct obj *)o)->payload));
}

static void cb_destroy(void *o, void *arg)
{
	struct counts *c = arg;

	ck_assert_uint_eq(((struct obj *)o)->magic, 0x1234);
	__atomic_fetch_add(&c->destroy, 1, __ATOMIC_RELAXED);
}

static struct gwmem_objpool *mk(struct counts *c, size_t max_objects, bool reset, bool shrink)
{
	struct gwmem_objpool_options o;
	struct gwmem_config cfg;

	gwmem_config_defaults(&cfg);
	gwmem_objpool_options_init(&o, sizeof(struct obj), &cfg);
	o.max_objects = max_objects;
	o.reset_on_return = reset;
	o.auto_shrink = shrink;
	o.init = cb_init;
	o.reset = cb_reset;
	o.destroy = cb_destroy;
	o.arg = c;
	o.name = "test";
	return gwmem_objpool_create(&o);
}

START_TEST(test_objpool_max_objects)
{
	struct counts c = {0};
	struct gwmem_objpool *p = mk(&c, 4, true, false);
	struct gwmem_objpool_stats st;
	struct obj *o[10];

	ck_assert_ptr_nonnull(p);
	for (int i = 0; i < 10; i++) {
		o[i] = gwmem_objpool_get(p);
		ck_assert_ptr_nonnull(o[i]);
		ck_assert_uint_eq(o[i]->magic, 0x1234);
		ck_assert_uint_eq((uintptr_t)o[i] % 16, 0);
	}
	ck_assert_int_eq(c.init, 10);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(gwmem_objpool_put(p, o[i]), 0);
	ck_assert_uint_eq(gwmem_objpool_size(p), 4);
	ck_assert_int_eq(c.reset, 10);
	ck_assert_int_eq(c.destroy, 6);
	gwmem_objpool_stats(p, &st);
	ck_assert_uint_eq(st.gets, 10);
	ck_assert_uint_eq(st.puts, 10);
	ck_assert_uint_eq(st.hits, 0);
	ck_assert_uint_eq(st.created, 10);
	ck_assert_uint_eq(st.destroyed, 6);
	ck_assert_uint_eq(st.in_use, 0);
	ck_assert_uint_eq(st.idle, 4);
	ck_assert_uint_eq(st.peak_in_use, 10);

	/* Reuse: the last put comes back first, no init. */
	struct obj *a = gwmem_objpool_get(p);
	ck_assert_ptr_eq(a, o[3]);
	ck_assert_int_eq(c.init, 10);
	gwmem_objpool_stats(p, &st);
	ck_assert_uint_eq(st.hits, 1);
	ck_assert_uint_eq(st.idle, 3);
	ck_assert_uint_eq(st.in_use, 1);
	gwmem_objpool_put(p, a);
	gwmem_objpool_destroy(p);
	ck_assert_int_eq(c.destroy, 10);
}
END_TEST

START_TEST(test_objpool_reset_on_return)
{
	struct counts c = {0};
	struct gwmem_objpool *p = mk(&c, 8, false, false);
	struct obj *a = gwmem_objpool_get(p);

	strcpy(a->payload, "kept");
	gwmem_objpool_put(p, a);
	ck_assert_int_eq(c.reset, 0);
	a = gwmem_objpool_get(p);
	ck_assert_str_eq(a->payload, "kept");
	gwmem_objpool_put(p, a);
	gwmem_objpool_destroy(p);

	p = mk(&c, 8, true, false);
	a = gwmem_objpool_get(p);
	strcpy(a->payload, "gone");
	gwmem_objpool_put(p, a);
	a = gwmem_objpool_get(p);
	ck_assert_str_eq(a->payload, "");
	ck_assert_int_eq(c.reset, 1);
	gwmem_objpool_put(p, a);
	gwmem_objpool_destroy(p);
}
END_TEST

START_TEST(test_objpool_misuse)
{
	struct counts c = {0};
	struct gwmem_objpool *p = mk(&c, 8, true, false);
	struct gwmem_objpool *q = mk(&c, 8, true, false);
	struct gwmem_objpool_stats st;
	struct obj local;
	void *a = gwmem_objpool_get(p), *b = gwmem_objpool_get(q);

	ck_assert_int_eq(gwmem_objpool_put(p, a), 0);
	ck_assert_int_eq(gwmem_objpool_put(p, a), -EALREADY);
	ck_assert_int_eq(gwmem_objpool_put(p, &local), -EINVAL);
	ck_assert_int_eq(gwmem_objpool_put(p, b), -EINVAL);
	ck_assert_int_eq(gwmem_objpool_put(p, (char *)a + 8), -EINVAL);
	ck_assert_int_eq(gwmem_objpool_put(p, NULL), -EINVAL);
	gwmem_objpool_stats(p, &st);
	ck_assert_uint_eq(st.invalid_puts, 5);
	ck_assert_uint_eq(st.puts, 1);
	ck_assert_uint_eq(st.idle, 1);
	ck_assert_int_eq(c.reset, 1);
	gwmem_objpool_put(q, b);
	gwmem_objpool_destroy(p);
	gwmem_objpool_destroy(q);

	/* init failure propagates; capacity limit gives ENOMEM. */
	c.fail_init = 1;
	p = mk(&c, 8, true, false);
	ck_assert_ptr_null(gwmem_objpool_get(p));
	ck_assert_int_eq(errno, EPERM);
	gwmem_objpool_destroy(p);
	c.fail_init = 0;

	struct gwmem_objpool_options o;
	gwmem_objpool_options_init(&o, 16, NULL);
	o.capacity = 5;
	p = gwmem_objpool_create(&o);
	for (int i = 0; i < 5; i++)
		ck_assert_ptr_nonnull(gwmem_objpool_get(p));
	ck_assert_ptr_null(gwmem_objpool_get(p));
	ck_assert_int_eq(errno, ENOMEM);
	gwmem_objpool_destroy(p);

	/* a capacity too large for any pool is refused, not wrapped to a small one */
	o.capacity = SIZE_MAX;
	o.max_objects = SIZE_MAX / sizeof(void *) - 1;
	errno = 0;
	ck_assert_ptr_null(gwmem_objpool_create(&o));
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(test_objpool_auto_shrink)
{
	struct counts c = {0};
	struct gwmem_objpool_options o;
	struct gwmem_objpool *p;
	struct gwmem_objpool_stats st;
	void *v[20];

	gwmem_objpool_options_init(&o, sizeof(struct obj), NULL);
	o.max_objects = 100;
	o.auto_shrink = true;
	o.shrink_window = 8;
	o.init = cb_init;
	o.destroy = cb_destroy;
	o.arg = &c;
	p = gwmem_objpool_create(&o);

	for (int i = 0; i < 20; i++)
		v[i] = gwmem_objpool_get(p);
	for (int i = 0; i < 20; i++)
		gwmem_objpool_put(p, v[i]);
	gwmem_objpool_stats(p, &st);
	ck_assert_uint_eq(st.peak_in_use, 20);
	/* Use drops to one object at a time: after two quiet windows the idle excess is gone. */
	for (int i = 0; i < 16; i++) {
		void *x = gwmem_objpool_get(p);

		ck_assert_ptr_nonnull(x);
		gwmem_objpool_put(p, x);
	}
	gwmem_objpool_stats(p, &st);
	ck_assert_uint_le(st.idle, 1);
	ck_assert_uint_eq(st.destroyed, st.created - st.idle);
	ck_assert_int_eq(c.destroy, (int)st.destroyed);
	gwmem_objpool_destroy(p);

	/* Without auto_shrink the idle objects stay; shrink() releases on demand. */
	o.auto_shrink = false;
	p = gwmem_objpool_create(&o);
	for (int i = 0; i < 20; i++)
		v[i] = gwmem_objpool_get(p);
	for (int i = 0; i < 20; i++)
		gwmem_objpool_put(p, v[i]);
	for (int i = 0; i < 16; i++)
		gwmem_objpool_put(p, gwmem_objpool_get(p));
	ck_assert_uint_eq(gwmem_objpool_size(p), 20);
	ck_assert_uint_eq(gwmem_objpool_shrink(p, 5), 15);
	ck_assert_uint_eq(gwmem_objpool_size(p), 5);
	gwmem_objpool_destroy(p);
}
END_TEST

START_TEST(test_objpool_pooled_handle)
{
	struct counts c = {0};
	struct gwmem_objpool *p = mk(&c, 8, true, false);
	void *kept;

	{
		GWMEM_POOLED h;

		ck_assert_int_eq(gwmem_pooled_get(p, &h), 0);
		ck_assert_ptr_nonnull(h.obj);
		ck_assert_uint_eq(gwmem_objpool_size(p), 0);
	}
	ck_assert_uint_eq(gwmem_objpool_size(p), 1);
	{
		GWMEM_POOLED h;

		gwmem_pooled_get(p, &h);
		kept = gwmem_pooled_take(&h);
	}
	ck_assert_uint_eq(gwmem_objpool_size(p), 0);
	struct gwmem_pooled h2;
	gwmem_pooled_get(p, &h2);
	gwmem_pooled_release(&h2);
	gwmem_pooled_release(&h2); /* idempotent */
	ck_assert_uint_eq(gwmem_objpool_size(p), 1);
	ck_assert_int_eq(gwmem_objpool_put(p, kept), 0);
	ck_assert_uint_eq(gwmem_objpool_size(p), 2);
	gwmem_objpool_destroy(p);
}
END_TEST

START_TEST(test_objpool_config)
{
	struct gwmem_objpool_options o;

	setenv("GWMEM_CONFIG", "/nonexistent/gwmem.toml", 1);
	gwmem_objpool_options_init(&o, 24, NULL);
	ck_assert_uint_eq(o.object_size, 24);
	ck_assert_uint_eq(o.max_objects, 1000);
	ck_assert(o.reset_on_return);
	ck_assert(o.auto_shrink);
	setenv("GWMEM_OBJECT_POOL_MAX_OBJECTS", "7", 1);
	setenv("GWMEM_OBJECT_POOL_AUTO_SHRINK", "false", 1);
	gwmem_objpool_options_init(&o, 24, NULL);
	ck_assert_uint_eq(o.max_objects, 7);
	ck_assert(!o.auto_shrink);
	unsetenv("GWMEM_OBJECT_POOL_MAX_OBJECTS");
	unsetenv("GWMEM_OBJECT_POOL_AUTO_SHRINK");
}
END_TEST

#define NTHREADS 8
#define NOPS 100000

struct targ {
	struct gwmem_objpool *p;
	uint32_t id;
	uint64_t errors;
};

static void *stress(void *arg)
{
	struct targ *t = arg;
	struct obj *held[8] = {0};
	unsigned seed = t->id + 99;

	for (uint64_t op = 0; op < NOPS; op++) {
		unsigned k = (unsigned)rand_r(&seed) % 8;

		if (held[k]) {
			if (held[k]->magic != 0x1234 || held[k]->owner != t->id ||
			    held[k]->payload[0] != (char)('a' + k))
				t->errors++;
			if (gwmem_objpool_put(t->p, held[k]) != 0)
				t->errors++;
			held[k] = NULL;
		} else {
			held[k] = gwmem_objpool_get(t->p);
			if (!held[k]) {
				t->errors++;
				continue;
			}
			if (held[k]->payload[0] != 0) /* reset ran */
				t->errors++;
			held[k]->owner = t->id;
			held[k]->seq = op;
			held[k]->payload[0] = (char)('a' + k);
		}
	}
	for (int k = 0; k < 8; k++)
		if (held[k])
			gwmem_objpool_put(t->p, held[k]);
	return NULL;
}

START_TEST(test_objpool_threads)
{
	struct counts c = {0};
	struct gwmem_objpool *p = mk(&c, 16, true, true);
	struct gwmem_objpool_stats st;
	pthread_t th[NTHREADS];
	struct targ ta[NTHREADS];

	for (unsigned i = 0; i < NTHREADS; i++) {
		ta[i] = (struct targ){.p = p, .id = i};
		pthread_create(&th[i], NULL, stress, &ta[i]);
	}
	for (unsigned i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_uint_eq(ta[i].errors, 0);
	}
	gwmem_objpool_stats(p, &st);
	ck_assert_uint_eq(st.gets, st.puts);
	ck_assert_uint_eq(st.in_use, 0);
	ck_assert_uint_le(st.idle, 16);
	ck_assert_uint_eq(st.created - st.destroyed, st.idle);
	ck_assert_int_eq(c.init, (int)st.created);
	ck_assert_int_eq(c.destroy, (int)st.destroyed);
	ck_assert_uint_eq(st.invalid_puts, 0);
	gwmem_objpool_destroy(p);
}
END_TEST

/*
 * One thread gets, another puts, at most 12 of 64 objects held: every get
 * succeeds (the pool may say ENOMEM only at capacity).
 */
#define PC_RING 12
struct pc {
	struct gwmem_objpool *p;
	void *slot[PC_RING];
	unsigned long head, tail;
	unsigned long ops, failures;
};

static void *pc_get(void *arg)
{
	struct pc *q = arg;

	for (unsigned long i = 0; i < q->ops;) {
		unsigned long h = q->head;
		void *o;

		if (h - __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE) >= PC_RING) {
			sched_yield();
			continue;
		}
		o = gwmem_objpool_get(q->p);
		if (!o) {
			q->failures++;
			continue;
		}
		q->slot[h % PC_RING] = o;
		__atomic_store_n(&q->head, h + 1, __ATOMIC_RELEASE);
		i++;
	}
	return NULL;
}

static void *pc_put(void *arg)
{
	struct pc *q = arg;

	for (unsigned long i = 0; i < q->ops;) {
		unsigned long t = q->tail;

		if (t == __atomic_load_n(&q->head, __ATOMIC_ACQUIRE)) {
			sched_yield();
			continue;
		}
		ck_assert_int_eq(gwmem_objpool_put(q->p, q->slot[t % PC_RING]), 0);
		__atomic_store_n(&q->tail, t + 1, __ATOMIC_RELEASE);
		i++;
	}
	return NULL;
}

START_TEST(test_objpool_producer_consumer)
{
	struct gwmem_objpool_options o;
	struct gwmem_objpool_stats st;
	struct pc q = {.ops = 100000};
	pthread_t a, b;

	/* no idle objects kept: every object goes back to the block pool */
	gwmem_objpool_options_init(&o, 48, NULL);
	o.capacity = 64;
	o.max_objects = 0;
	q.p = gwmem_objpool_create(&o);
	ck_assert_ptr_nonnull(q.p);
	pthread_create(&a, NULL, pc_get, &q);
	pthread_create(&b, NULL, pc_put, &q);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	ck_assert_uint_eq(q.failures, 0);
	gwmem_objpool_stats(q.p, &st);
	ck_assert_uint_eq(st.gets, q.ops);
	ck_assert_uint_eq(st.in_use, 0);
	ck_assert_uint_le(st.peak_in_use, PC_RING + 1);
	gwmem_objpool_destroy(q.p);
}
END_TEST

static Suite *suite_objpool(void)
{
	Suite *s = suite_create("objpool");
	TCase *tc = tcase_create("single");

	tcase_add_test(tc, test_objpool_max_objects);
	tcase_add_test(tc, test_objpool_reset_on_return);
	tcase_add_test(tc, test_objpool_misuse);
	tcase_add_test(tc, test_objpool_auto_shrink);
	tcase_add_test(tc, test_objpool_pooled_handle);
	tcase_add_test(tc, test_objpool_config);
	suite_add_tcase(s, tc);
	tc = tcase_create("threads");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_objpool_threads);
	tcase_add_test(tc, test_objpool_producer_consumer);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_objpool)
