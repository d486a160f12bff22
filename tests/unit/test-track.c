/* tests/unit/test-track.c: guard, recording, sampling, reports, hooks, fork, exit */
#include "config.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-omit-frame-pointer")
#endif

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gwmem.h"
#include "gwmem/shm_layout.h"
#include "counters.h"
#include "stacks.h"
#include "table.h"
#include "reporter.h"
#include "track.h"
#include "suite.h"

GWMEM_EXPORT unsigned gwmem_hook_tag(const char *name);
GWMEM_EXPORT void gwmem_hook_alloc(void *p, size_t size, unsigned tag);
GWMEM_EXPORT void gwmem_hook_free(void *p);

static char dir[64];
static struct gwmem_config cfg;

static void config(void)
{
	gwmem_config_defaults(&cfg);
	strcpy(dir, "/tmp/gwmem-test-track.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	strcpy(cfg.leak_detection.shm_dir, dir);
	strcpy(cfg.leak_detection.report_dir, dir);
	cfg.leak_detection.max_tracked_allocations = 10000;
	cfg.leak_detection.max_stacks = 256;
	cfg.leak_detection.report_signal = 0;
}

static void cleanup(void)
{
	char cmd[128];

	gw_track_exit();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static struct gwmem_shm_header *seg(void)
{
	struct gwmem_shm_header *h = gw_track_segment(NULL);
	ck_assert_ptr_nonnull(h);
	return h;
}

/* the record of p, copied, or ptr == 0 */
static struct gwmem_shm_record find(uint64_t p)
{
	struct gwmem_shm_header *h = seg();
	struct gwmem_shm_stripe *s = (void *)((char *)h + h->stripes_offset);
	struct gwmem_shm_record none = { 0 };

	for (uint32_t k = 0; k < h->nstripes; k++) {
		struct gwmem_shm_record *r = (void *)((char *)h + s[k].offset);

		for (uint32_t i = 0; i < s[k].slots; i++)
			if (r[i].ptr == p)
				return r[i];
	}
	return none;
}

static uint64_t live_count(void)
{
	struct gwmem_shm_header *h = seg();
	struct gwmem_shm_stripe *s = (void *)((char *)h + h->stripes_offset);
	uint64_t n = 0;

	for (uint32_t i = 0; i < h->nstripes; i++)
		n += s[i].count;
	return n;
}

static bool stack_has(uint32_t id, uintptr_t addr)
{
	struct gwmem_shm_header *h = seg();
	const struct gwmem_shm_stack *e;

	if (id == 0 || id > h->stack_capacity)
		return false;
	e = (const void *)((char *)h + h->stacks_offset + (uint64_t)(id - 1) * h->stack_stride);
	/* some unwinders (libunwind on aarch64) report return address - 1 */
	for (uint32_t i = 0; i < e->depth; i++)
		if (e->frames[i] == addr || e->frames[i] == addr - 1)
			return true;
	return false;
}

START_TEST(test_track_guard)
{
	ck_assert(!gw_track_guarded());
	gw_track_guard_enter();
	ck_assert(gw_track_guarded());
	gw_track_guard_enter();
	gw_track_guard_leave();
	ck_assert(gw_track_guarded());
	gw_track_guard_leave();
	ck_assert(!gw_track_guarded());
}
END_TEST

static uintptr_t site_ret;

static GW_NOINLINE void alloc_site(void *p, size_t n)
{
	site_ret = (uintptr_t)__builtin_return_address(0);
	gw_track_alloc(p, n);
	__asm__ __volatile__("" ::: "memory");
}

START_TEST(test_track_records)
{
	static char blocks[4][64];

	config();
	ck_assert_int_eq(gw_track_init(&cfg), 0);
	ck_assert(gw_track_on);
	struct gwmem_shm_header *h = seg();
	ck_assert_uint_eq(h->state, GWMEM_SHM_STATE_RUNNING);
	ck_assert_uint_gt(h->modules_count, 1);

	static volatile int two = 2;   /* one call site: no unrolling */
	for (int i = 0; i < two; i++)
		alloc_site(blocks[i], i ? 50 : 100);
	struct gwmem_shm_record r = find((uintptr_t)blocks[0]);
	ck_assert_uint_eq(r.size, 100);
	ck_assert_uint_ne(r.stack_id, 0);
	ck_assert_uint_eq(r.tid, (uint32_t)getpid());
	ck_assert_uint_eq(r.tag, 0);
	ck_assert(stack_has(r.stack_id, site_ret));
	/* same site, same stack */
	ck_assert_uint_eq(find((uintptr_t)blocks[1]).stack_id, r.stack_id);
	ck_assert_uint_eq(live_count(), 2);

	/* inside gwmem: not recorded, counted */
	gw_track_guard_enter();
	gw_track_alloc(blocks[2], 10);
	gw_track_guard_leave();
	ck_assert_uint_eq(find((uintptr_t)blocks[2]).ptr, 0);
	ck_assert_uint_eq(h->counters.untracked_internal, 1);

	/* realloc moves the record */
	gw_track_realloc(blocks[1], blocks[3], 70);
	ck_assert_uint_eq(find((uintptr_t)blocks[1]).ptr, 0);
	ck_assert_uint_eq(find((uintptr_t)blocks[3]).size, 70);
	/* failed realloc keeps the old block; realloc(p, 0) frees it */
	gw_track_realloc(blocks[3], NULL, 80);
	ck_assert_uint_eq(find((uintptr_t)blocks[3]).size, 70);
	gw_track_realloc(blocks[3], NULL, 0);
	ck_assert_uint_eq(find((uintptr_t)blocks[3]).ptr, 0);

	gw_track_free(blocks[0]);
	gw_track_free(blocks[0]);
	gw_track_free(NULL);
	ck_assert_uint_eq(live_count(), 0);

	char path[512];
	strcpy(path, dir);
	cleanup();
	/* the segment is removed at normal exit */
	DIR *d = opendir(path);
	ck_assert_ptr_null(d);
}
END_TEST

START_TEST(test_track_sampling)
{
	static char blocks[400][16];

	config();
	cfg.leak_detection.sample_rate = 4;
	ck_assert_int_eq(gw_track_init(&cfg), 0);
	for (int i = 0; i < 400; i++)
		gw_track_alloc(blocks[i], 16);
	ck_assert_uint_eq(live_count(), 100);
	ck_assert_uint_eq(seg()->counters.sampled_out, 64 * (300 / 64));
	for (int i = 0; i < 400; i++)
		gw_track_free(blocks[i]);
	ck_assert_uint_eq(live_count(), 0);
	cleanup();
}
END_TEST

START_TEST(test_track_disabled_still_has_segment)
{
	static char block[16];

	config();
	cfg.leak_detection.tracking_enabled = false;
	ck_assert_int_eq(gw_track_init(&cfg), 0);
	ck_assert(!gw_track_on);
	ck_assert_uint_eq(seg()->nstripes, 0);
	ck_assert(!(seg()->flags & GWMEM_SHM_FLAG_TRACKING));
	gw_track_alloc(block, 16);
	gw_track_free(block);
	cleanup();
}
END_TEST

START_TEST(test_track_no_segment_dir)
{
	static char block[16];

	config();
	strcpy(cfg.leak_detection.shm_dir, "/nonexistent/gwmem");
	ck_assert_int_lt(gw_track_init(&cfg), 0);
	ck_assert(!gw_track_on);
	ck_assert_ptr_null(gw_track_segment(NULL));
	gw_track_alloc(block, 16);
	gw_track_free(block);
	rmdir(dir);
}
END_TEST

static int count_reports(char *first, size_t cap)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (strncmp(e->d_name, "gwmem-report.", 13) == 0) {
			if (n++ == 0 && first)
				snprintf(first, cap, "%s/%s", dir, e->d_name);
		}
	closedir(d);
	return n;
}

START_TEST(test_track_report_signal)
{
	static char block[16];
	char path[512], now_path[512];
	struct stat st;

	signal(SIGUSR2, SIG_DFL);
	config();
	cfg.leak_detection.report_signal = SIGUSR2;
	ck_assert_int_eq(gw_track_init(&cfg), 0);
	gw_track_alloc(block, 16);
	ck_assert_int_eq(raise(SIGUSR2), 0);
	for (int i = 0; i < 500 && count_reports(path, sizeof(path)) == 0; i++)
		usleep(10000);
	ck_assert_int_eq(count_reports(path, sizeof(path)), 1);
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	for (int i = 0; i < 500 && st.st_size == 0; i++) {
		usleep(10000);
		stat(path, &st);
	}
	ck_assert_int_gt(st.st_size, 0);
	/* same second: a second report gets its own name, never overwrites */
	ck_assert_int_eq(gw_reporter_report_now(now_path, sizeof(now_path)), 0);
	ck_assert_str_ne(now_path, path);
	ck_assert_int_eq(count_reports(NULL, 0), 2);
	for (int i = 0; i < 500 && seg()->counters.reports_written < 2; i++)
		usleep(10000);
	ck_assert_uint_eq(seg()->counters.reports_written, 2);
	cleanup();
}
END_TEST

static void user_handler(int sig)
{
	(void)sig;
}

START_TEST(test_track_program_handler_wins)
{
	struct sigaction sa;

	signal(SIGUSR2, user_handler);
	config();
	cfg.leak_detection.report_signal = SIGUSR2;
	ck_assert_int_eq(gw_track_init(&cfg), 0);
	sigaction(SIGUSR2, NULL, &sa);
	ck_assert_ptr_eq(sa.sa_handler, user_handler);
	cleanup();
}
END_TEST

START_TEST(test_track_hooks)
{
	static char block[32];

	config();
	ck_assert_int_eq(gw_track_init(&cfg), 0);
	unsigned a = gwmem_hook_tag("sessions");
	ck_assert_uint_eq(a, 1);
	ck_assert_uint_eq(gwmem_hook_tag("sessions"), 1);
	ck_assert_uint_eq(gwmem_hook_tag("frames"), 2);
	ck_assert_str_eq(seg()->tag_names[1], "sessions");
	ck_assert_str_eq(seg()->tag_names[0], "malloc");
	for (int i = 0; i < 13; i++) {
		char name[16];
		snprintf(name, sizeof(name), "pool%d", i);
		ck_assert_uint_eq(gwmem_hook_tag(name), 3 + (unsigned)i);
	}
	ck_assert_uint_eq(gwmem_hook_tag("one-too-many"), 15);
	gwmem_hook_alloc(block, 32, a);
	struct gwmem_shm_record r = find((uintptr_t)block);
	ck_assert_uint_eq(r.size, 32);
	ck_assert_uint_eq(r.tag, 1);
	gwmem_hook_free(block);
	ck_assert_uint_eq(find((uintptr_t)block).ptr, 0);
	cleanup();
}
END_TEST

/* A forked child's verdict, one byte through the pipe... */
static void child_says(int fd, int ok)
{
	char c = ok ? 'y' : 'n';

	ck_assert_int_eq(write(fd, &c, 1), 1);
}

/* ...and the parent's check of it and of the child's exit status. */
static void expect_child_ok(int fd, pid_t pid)
{
	char c = 0;
	int status;

	ck_assert_int_eq(read(fd, &c, 1), 1);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(c, 'y');
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

START_TEST(test_track_fork)
{
	static char parent_block[16], child_block[16];
	int pfd[2];

	/* qemu-user 7.2 aborts in a forked child of a threaded guest: the cross
	 * test run sets this to skip what the emulator cannot run */
	if (getenv("GWMEM_TEST_NO_FORK"))
		return;

	config();
	ck_assert_int_eq(gw_track_init(&cfg), 0);
	gw_track_alloc(parent_block, 16);
	ck_assert_int_eq(pipe(pfd), 0);
	gw_track_atfork_prepare();
	pid_t pid = fork();
	if (pid == 0) {
		gw_track_atfork_child();
		close(pfd[0]);
		struct gwmem_shm_header *h = seg();
		/* private until the child lives long enough, or asks */
		int ok = h->pid == (uint32_t)getppid() && find((uintptr_t)parent_block).size == 16;
		gw_track_alloc(child_block, 24);
		ok = ok && gw_track_fork_publish() == 0 && h->pid == (uint32_t)getpid() &&
		     (h->flags & GWMEM_SHM_FLAG_FORKED);
		ok = ok && find((uintptr_t)child_block).size == 24 &&
		     find((uintptr_t)child_block).tid == (uint32_t)getpid();
		child_says(pfd[1], ok);
		gw_track_exit();
		_exit(ok ? 0 : 1);
	}
	gw_track_atfork_parent();
	ck_assert_int_gt(pid, 0);
	close(pfd[1]);
	expect_child_ok(pfd[0], pid);
	/* the parent's table did not see the child's allocation */
	ck_assert_uint_eq(find((uintptr_t)child_block).ptr, 0);
	ck_assert_uint_eq(find((uintptr_t)parent_block).size, 16);
	ck_assert_uint_eq(seg()->pid, (uint32_t)getpid());
	/* the child removed its own segment at exit: only ours is left */
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d)))
		if (strncmp(e->d_name, "gwmem.", 6) == 0)
			n++;
	closedir(d);
	ck_assert_int_eq(n, 1);
	cleanup();
}
END_TEST

/* Reports in dir named for pid. */
static int count_reports_of(pid_t pid)
{
	char prefix[64];
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	snprintf(prefix, sizeof(prefix), "gwmem-report.%d.", (int)pid);
	while ((e = readdir(d)))
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
			n++;
	closedir(d);
	return n;
}

/*
 * A forked child writes nothing to its parent's segment before its first
 * allocation (what it counts meanwhile is carried into its own copy), and
 * a report signal that comes before its reporter runs is answered on its
 * first allocation, without waiting for its first second.
 */
START_TEST(test_track_fork_lazy)
{
	static char parent_block[16], child_block[16];
	int pfd[2];

	if (getenv("GWMEM_TEST_NO_FORK"))
		return;
	signal(SIGUSR2, SIG_DFL);
	config();
	cfg.leak_detection.report_signal = SIGUSR2;
	ck_assert_int_eq(gw_track_init(&cfg), 0);
	gw_track_alloc(parent_block, 16);
	struct gwmem_shm_header *h = seg();
	uint64_t fwd = h->counters.forwarded_allocs;
	ck_assert_int_eq(pipe(pfd), 0);
	gw_track_atfork_prepare();
	pid_t pid = fork();
	if (pid == 0) {
		gw_track_atfork_child();
		close(pfd[0]);
		gw_count(forwarded_allocs);
		int ok = h->counters.forwarded_allocs == fwd && h->pid == (uint32_t)getppid();
		ok = ok && raise(SIGUSR2) == 0;
		/* first allocation: the copy is ours, the count came with it, the
		 * reporter starts and answers the signal */
		gw_track_alloc(child_block, 24);
		ok = ok && gw_track_segment(NULL) == h && h->counters.forwarded_allocs == fwd + 1 &&
		     find((uintptr_t)parent_block).size == 16 && find((uintptr_t)child_block).size == 24;
		for (int i = 0; i < 500 && count_reports_of(getpid()) == 0; i++)
			usleep(10000);
		ok = ok && count_reports_of(getpid()) == 1;
		child_says(pfd[1], ok);
		gw_track_exit();
		_exit(ok ? 0 : 1);
	}
	gw_track_atfork_parent();
	ck_assert_int_gt(pid, 0);
	close(pfd[1]);
	expect_child_ok(pfd[0], pid);
	/* nothing of the child's reached our segment */
	ck_assert_uint_eq(seg()->counters.forwarded_allocs, fwd);
	ck_assert_uint_eq(find((uintptr_t)child_block).ptr, 0);
	ck_assert_int_eq(count_reports_of(getpid()), 0);
	cleanup();
}
END_TEST

/* Does this process map a file of the test's shm_dir? */
static bool maps_segment_file(void)
{
	char line[1024];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, dir))
			found = true;
	fclose(f);
	return found;
}

/*
 * A child's first allocations and frees wait in a queue: it keeps the
 * parent's file mapped (and never writes it) until the queue is full or
 * the segment is asked for, then they are applied to its copy in order.
 */
START_TEST(test_track_fork_queue)
{
	static char parent_block[16], blocks[40][16];
	int pfd[2];

	if (getenv("GWMEM_TEST_NO_FORK"))
		return;
	config();
	ck_assert_int_eq(gw_track_init(&cfg), 0);
	gw_track_alloc(parent_block, 16);
	ck_assert_int_eq(pipe(pfd), 0);
	gw_track_atfork_prepare();
	pid_t pid = fork();
	if (pid == 0) {
		gw_track_atfork_child();
		close(pfd[0]);
		/* a few: queued */
		gw_track_alloc(blocks[0], 100);
		gw_track_free(parent_block);
		gw_track_alloc(blocks[1], 101);
		gw_track_free(blocks[1]);
		int ok = maps_segment_file();
		/* asked for: applied in order */
		ok = ok && find((uintptr_t)blocks[0]).size == 100 && find((uintptr_t)parent_block).ptr == 0 &&
		     find((uintptr_t)blocks[1]).ptr == 0 && !maps_segment_file();
		child_says(pfd[1], ok);
		_exit(ok ? 0 : 1);
	}
	gw_track_atfork_parent();
	ck_assert_int_gt(pid, 0);
	expect_child_ok(pfd[0], pid);

	/* many: the queue fills and the child adopts by itself */
	gw_track_atfork_prepare();
	pid = fork();
	if (pid == 0) {
		gw_track_atfork_child();
		close(pfd[0]);
		for (int i = 0; i < 40; i++)
			gw_track_alloc(blocks[i], 200 + i);
		int ok = !maps_segment_file();
		for (int i = 0; i < 40; i++)
			ok = ok && find((uintptr_t)blocks[i]).size == (uint64_t)(200 + i);
		ok = ok && find((uintptr_t)parent_block).size == 16;
		child_says(pfd[1], ok);
		_exit(ok ? 0 : 1);
	}
	gw_track_atfork_parent();
	ck_assert_int_gt(pid, 0);
	close(pfd[1]);
	expect_child_ok(pfd[0], pid);
	/* the parent's table saw none of it */
	ck_assert_uint_eq(find((uintptr_t)parent_block).size, 16);
	ck_assert_uint_eq(find((uintptr_t)blocks[0]).ptr, 0);
	ck_assert_uint_eq(live_count(), 1);
	cleanup();
}
END_TEST

/*
 * A process that forks again and again, changing a few records in between
 * (removed, added, updated in place, on pages an earlier fork copied
 * already): each child finds exactly the records its parent had when it
 * forked, whatever the parent does after.
 */
START_TEST(test_track_fork_changes)
{
	enum { N = 3000, ROUNDS = 6 };
	static char blocks[N][16];
	static uint32_t size[N];        /* 0: not tracked */
	uint64_t rng = 0x5eedf0c4ull;
	int pfd[2];

	if (getenv("GWMEM_TEST_NO_FORK"))
		return;
	config();
	ck_assert_int_eq(gw_track_init(&cfg), 0);
	for (int i = 0; i < N; i++) {
		size[i] = 16 + (uint32_t)(i % 500);
		gw_track_alloc(blocks[i], size[i]);
	}
	ck_assert_int_eq(pipe(pfd), 0);
	for (int round = 0; round < ROUNDS; round++) {
		/* none before the first fork, a few more before each next one */
		for (int k = 0; round > 0 && k < 3 + 5 * round; k++) {
			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			int i = (int)((rng >> 33) % N);
			if (size[i] && (rng >> 20) % 3 == 0) {
				gw_track_free(blocks[i]);
				size[i] = 0;
			} else {
				/* a new record, or the same pointer's record updated */
				size[i] = 600 + (uint32_t)(round * 16 + k);
				gw_track_alloc(blocks[i], size[i]);
			}
		}
		gw_track_atfork_prepare();
		pid_t pid = fork();
		if (pid == 0) {
			gw_track_atfork_child();
			close(pfd[0]);
			/* give the parent time to change its file after the fork */
			usleep(20000);
			uint64_t live = 0;
			int ok = 1;
			for (int i = 0; i < N; i++) {
				struct gwmem_shm_record r = find((uintptr_t)blocks[i]);
				ok = ok && (size[i] ? r.size == size[i] : r.ptr == 0);
				live += size[i] != 0;
			}
			ok = ok && live_count() == live;
			child_says(pfd[1], ok);
			_exit(ok ? 0 : 1);
		}
		gw_track_atfork_parent();
		ck_assert_int_gt(pid, 0);
		/* after the fork: none of it may reach the child's copy */
		gw_track_free(blocks[round]);
		gw_track_alloc(blocks[round], 999);
		gw_track_free(blocks[round]);
		expect_child_ok(pfd[0], pid);
		if (size[round])
			gw_track_alloc(blocks[round], size[round]);
	}
	close(pfd[0]);
	close(pfd[1]);
	cleanup();
}
END_TEST

Suite *suite_track(void)
{
	Suite *s = suite_create("track");
	TCase *tc = tcase_create("track");
	tcase_add_test(tc, test_track_guard);
	tcase_add_test(tc, test_track_records);
	tcase_add_test(tc, test_track_fork_changes);
	tcase_add_test(tc, test_track_sampling);
	tcase_add_test(tc, test_track_disabled_still_has_segment);
	tcase_add_test(tc, test_track_no_segment_dir);
	tcase_add_test(tc, test_track_report_signal);
	tcase_add_test(tc, test_track_program_handler_wins);
	tcase_add_test(tc, test_track_hooks);
	tcase_add_test(tc, test_track_fork);
	tcase_add_test(tc, test_track_fork_lazy);
	tcase_add_test(tc, test_track_fork_queue);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN_IF(GWMEM_WITH_TRACKING, "the build has no tracking (-Dtracking=false)", suite_track)
