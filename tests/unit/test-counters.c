/* tests/unit/test-counters.c: event counters, their move into the segment,
 * and the rate-limited, optionally fatal diagnostics of gw_counters_event */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "counters.h"
#include "options.h"
#include "suite.h"

/* --- stderr capture -------------------------------------------------------- */

struct capture {
	int saved;
	char path[64];
	int fd;
};

static void capture_begin(struct capture *c)
{
	strcpy(c->path, "/tmp/gwmem-test-counters.XXXXXX");
	c->fd = mkstemp(c->path);
	ck_assert_int_ge(c->fd, 0);
	unlink(c->path);
	c->saved = dup(2);
	ck_assert_int_ge(c->saved, 0);
	ck_assert_int_eq(dup2(c->fd, 2), 2);
}

/* Restore stderr; the captured text goes to buf (NUL-terminated). */
static size_t capture_end(struct capture *c, char *buf, size_t cap)
{
	ssize_t n;

	ck_assert_int_eq(dup2(c->saved, 2), 2);
	close(c->saved);
	n = pread(c->fd, buf, cap - 1, 0);
	ck_assert_int_ge(n, 0);
	buf[n] = '\0';
	close(c->fd);
	return (size_t)n;
}

static unsigned count_lines(const char *s)
{
	unsigned n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* --- counters ------------------------------------------------------------- */

START_TEST(test_counters_attach_moves_the_counts)
{
	static struct gwmem_shm_counters area;
	struct gwmem_shm_counters *before = gw_counters;

	/* before the segment exists, counts go to the static block */
	gw_count(invalid_frees);
	gw_count(invalid_frees);
	gw_count_n(sampled_out, 40);
	ck_assert_uint_eq(gw_counters->invalid_frees, 2);
	ck_assert_uint_eq(gw_counters->sampled_out, 40);

	memset(&area, 0xff, sizeof(area));
	gw_counters_attach(&area);
	/* what was counted so far is carried over, nothing else */
	ck_assert_ptr_eq(gw_counters, &area);
	ck_assert_uint_eq(area.invalid_frees, 2);
	ck_assert_uint_eq(area.sampled_out, 40);
	ck_assert_uint_eq(area.double_frees, 0);

	/* later counts land in the new area only */
	gw_count(double_frees);
	ck_assert_uint_eq(area.double_frees, 1);
	ck_assert_uint_eq(before->double_frees, 0);

	/* attaching the same area again must not copy it over itself or reset it */
	gw_counters_attach(&area);
	ck_assert_uint_eq(area.double_frees, 1);
	ck_assert_uint_eq(area.invalid_frees, 2);
}
END_TEST

#define COUNT_THREADS 4
#define COUNT_EACH 100000

static void *count_many(void *arg)
{
	(void)arg;
	for (int i = 0; i < COUNT_EACH; i++)
		gw_count(forwarded_allocs);
	return NULL;
}

START_TEST(test_counters_are_atomic)
{
	pthread_t th[COUNT_THREADS];
	uint64_t start = gw_counters->forwarded_allocs;

	for (int i = 0; i < COUNT_THREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, count_many, NULL), 0);
	for (int i = 0; i < COUNT_THREADS; i++)
		pthread_join(th[i], NULL);
	ck_assert_uint_eq(gw_counters->forwarded_allocs - start, (uint64_t)COUNT_THREADS * COUNT_EACH);
}
END_TEST

/* --- events --------------------------------------------------------------- */

START_TEST(test_event_rate_limited)
{
	struct capture c;
	char out[8192];

	capture_begin(&c);
	for (unsigned i = 1; i <= 100; i++)
		gw_counters_event(GW_EVENT_TABLE_FULL, false, "table full at %u", i);
	capture_end(&c, out, sizeof(out));

	/* reported at 1, 2, 4, 8, 16, 32, 64: log2(n) lines for a storm of n */
	ck_assert_uint_eq(count_lines(out), 7);
	ck_assert_ptr_nonnull(strstr(out, "gwmem: table full at 1 (reported once; counted from now on)\n"));
	ck_assert_ptr_nonnull(strstr(out, "gwmem: table full at 2 (seen 2 times)\n"));
	ck_assert_ptr_nonnull(strstr(out, "gwmem: table full at 64 (seen 64 times)\n"));
	ck_assert_ptr_null(strstr(out, "at 3 "));
	ck_assert_ptr_null(strstr(out, "at 100"));
}
END_TEST

START_TEST(test_event_kinds_limited_apart)
{
	struct capture c;
	char out[4096];

	capture_begin(&c);
	gw_counters_event(GW_EVENT_POOL_FULL, false, "pool");
	gw_counters_event(GW_EVENT_POOL_FULL, false, "pool");
	gw_counters_event(GW_EVENT_POOL_FULL, false, "pool");
	/* another kind starts its own count: reported although pool is at 3 */
	gw_counters_event(GW_EVENT_STACKS_FULL, false, "stacks");
	capture_end(&c, out, sizeof(out));

	ck_assert_str_eq(out, "gwmem: pool (reported once; counted from now on)\n"
			      "gwmem: pool (seen 2 times)\n"
			      "gwmem: stacks (reported once; counted from now on)\n");
}
END_TEST

START_TEST(test_event_long_message_bounded)
{
	struct capture c;
	char out[4096], arg[2000];

	memset(arg, 'x', sizeof(arg) - 1);
	arg[sizeof(arg) - 1] = '\0';
	capture_begin(&c);
	gw_counters_event(GW_EVENT_SHM_FAILED, false, "%s", arg);
	size_t n = capture_end(&c, out, sizeof(out));

	/* one line, cut to the event's buffer, never past it */
	ck_assert_uint_eq(count_lines(out), 1);
	ck_assert_uint_gt(n, 100);
	ck_assert_uint_lt(n, 600);
	ck_assert_int_eq(strncmp(out, "gwmem: xxx", 10), 0);
}
END_TEST

/* abort_on_error is off by default: even a "fatal if configured" event returns */
START_TEST(test_event_not_fatal_by_default)
{
	struct capture c;
	char out[1024];

	gw_config_init();
	ck_assert(!gw_opts()->memory.abort_on_error);
	capture_begin(&c);
	gw_counters_event(GW_EVENT_DOUBLE_FREE, true, "double free of %p", (void *)0x1000);
	capture_end(&c, out, sizeof(out));
	ck_assert_ptr_nonnull(strstr(out, "double free of 0x1000"));
}
END_TEST

/* with memory.abort_on_error, an event that asks for it aborts the process */
START_TEST(test_event_fatal_when_configured)
{
	setenv("GWMEM_MEMORY_ABORT_ON_ERROR", "true", 1);
	gw_config_init();
	ck_assert(gw_opts()->memory.abort_on_error);
	/* a repeat of an event that is not fatal-if-configured still returns */
	gw_counters_event(GW_EVENT_POOL_FULL, false, "not fatal");
	gw_counters_event(GW_EVENT_DOUBLE_FREE, true, "double free");
	ck_abort_msg("gw_counters_event returned after a fatal event");
}
END_TEST

/* the abort does not wait for a power of two: the third one aborts too */
START_TEST(test_event_fatal_every_time)
{
	struct capture c;
	char out[1024];

	setenv("GWMEM_MEMORY_ABORT_ON_ERROR", "true", 1);
	gw_config_init();
	capture_begin(&c);
	gw_counters_event(GW_EVENT_INVALID_FREE, false, "one");
	gw_counters_event(GW_EVENT_INVALID_FREE, false, "two");
	capture_end(&c, out, sizeof(out));
	ck_assert_uint_eq(count_lines(out), 2);
	gw_counters_event(GW_EVENT_INVALID_FREE, true, "three");
	ck_abort_msg("gw_counters_event returned after a fatal event");
}
END_TEST

static Suite *suite_counters(void)
{
	Suite *s = suite_create("counters");
	TCase *tc = tcase_create("counters");

	tcase_add_test(tc, test_counters_attach_moves_the_counts);
	tcase_add_test(tc, test_counters_are_atomic);
	suite_add_tcase(s, tc);

	tc = tcase_create("events");
	tcase_add_test(tc, test_event_rate_limited);
	tcase_add_test(tc, test_event_kinds_limited_apart);
	tcase_add_test(tc, test_event_long_message_bounded);
	tcase_add_test(tc, test_event_not_fatal_by_default);
	tcase_add_test_raise_signal(tc, test_event_fatal_when_configured, SIGABRT);
	tcase_add_test_raise_signal(tc, test_event_fatal_every_time, SIGABRT);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_counters)
