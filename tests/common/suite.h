/*
 * suite.h - the main() of every Check suite: GW_TEST_MAIN(suite_pool) at the
 * end of test-pool.c runs the Suite that suite_pool() builds and exits
 * non-zero when a test failed.  Header-only, static.
 *
 * CK_RUN_SUITE / CK_RUN_CASE / CK_FORK from the environment work as Check
 * documents them (CK_FORK=no under a debugger).
 */
#ifndef GWMEM_TEST_SUITE_H
#define GWMEM_TEST_SUITE_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

static inline int gw_test_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#define GW_TEST_MAIN(suite_fn) \
	int main(void) { return gw_test_run(suite_fn()); }

/* A suite whose feature the build left out (cond is a config.h switch):
 * exit 77, which Meson reports as skipped, not failed. */
#define GW_TEST_SKIPPED 77
#define GW_TEST_MAIN_IF(cond, why, suite_fn) \
	int main(void) \
	{ \
		if (!(cond)) { \
			puts("skipped: " why); \
			return GW_TEST_SKIPPED; \
		} \
		return gw_test_run(suite_fn()); \
	}

#endif /* GWMEM_TEST_SUITE_H */
