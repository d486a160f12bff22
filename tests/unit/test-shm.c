/* tests/unit/test-shm.c: segment naming, permissions, symlink refusal, exec replacement, exit, fork copy */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gwmem.h"
#include "os.h"
#include "shm.h"
#include "suite.h"

static char dir[64];
static struct gwmem_config cfg;

static void setup_dir(void)
{
	gwmem_config_defaults(&cfg);
	strcpy(dir, "/tmp/gwmem-test-shm.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	strcpy(cfg.leak_detection.shm_dir, dir);
	cfg.leak_detection.max_tracked_allocations = 1000;
	cfg.leak_detection.max_stacks = 100;
}

static void expected_name(char *buf, size_t cap, pid_t pid)
{
	snprintf(buf, cap, "%s/gwmem.%d.%llu", dir, (int)pid,
		 (unsigned long long)gw_os_proc_starttime(pid));
}

START_TEST(test_shm_name_and_mode)
{
	struct gw_shm s;
	struct stat st;
	char want[256];

	setup_dir();
	umask(0);
	ck_assert_int_eq(gw_shm_create(&s, &cfg, true), 0);
	expected_name(want, sizeof(want), getpid());
	ck_assert_str_eq(s.path, want);
	ck_assert_uint_ne(gw_os_proc_starttime(getpid()), 0);
	ck_assert_int_eq(lstat(s.path, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	ck_assert_uint_eq((uint64_t)st.st_size, s.size);
	/* blocks are reserved up front: no SIGBUS later on a full tmpfs */
	ck_assert_uint_ge((uint64_t)st.st_blocks * 512, s.size);

	struct gwmem_shm_header *h = s.hdr;
	ck_assert_uint_eq(h->magic, GWMEM_SHM_MAGIC);
	ck_assert_uint_eq(h->version, GWMEM_SHM_VERSION);
	ck_assert_uint_eq(h->pid, (uint32_t)getpid());
	ck_assert_uint_eq(h->ppid, (uint32_t)getppid());
	ck_assert_uint_eq(h->proc_starttime, gw_os_proc_starttime(getpid()));
	ck_assert_uint_eq(h->segment_size, s.size);
	ck_assert_uint_eq(h->state, GWMEM_SHM_STATE_STARTING);
	ck_assert(h->flags & GWMEM_SHM_FLAG_TRACKING);
	ck_assert(strstr(h->cmdline, "test-shm") != NULL);
	ck_assert(strstr(h->exe, "test-shm") != NULL);
	ck_assert_uint_eq(h->config.max_tracked_allocations, 1000);
	ck_assert(GW_IS_POW2(h->nstripes) && GW_IS_POW2(h->slots_per_stripe) && GW_IS_POW2(h->stack_capacity));
	ck_assert_uint_ge((uint64_t)h->nstripes * h->slots_per_stripe * 3 / 4, 1000);
	ck_assert_uint_le(h->records_offset + (uint64_t)h->nstripes * h->slots_per_stripe * 32, s.size);
	ck_assert_uint_le(h->stripes_offset + h->nstripes * 64u, h->records_offset);
	ck_assert_uint_le(h->stacks_offset + (uint64_t)h->stack_capacity * h->stack_stride, h->stripes_offset);
	ck_assert_uint_eq(h->modules_offset % 64, 0);
	ck_assert_uint_eq(h->records_offset % 64, 0);
	gw_shm_publish(&s);
	ck_assert_uint_eq(h->state, GWMEM_SHM_STATE_RUNNING);

	gw_shm_exit(&s, false);
	ck_assert_int_eq(lstat(want, &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	rmdir(dir);
}
END_TEST

START_TEST(test_shm_refuses_symlink)
{
	struct gw_shm s;
	char want[256], target[256];
	struct stat st;

	setup_dir();
	snprintf(target, sizeof(target), "%s/target", dir);
	int fd = open(target, O_WRONLY | O_CREAT | O_EXCL, 0644);
	ck_assert_int_ge(fd, 0);
	close(fd);
	expected_name(want, sizeof(want), getpid());
	ck_assert_int_eq(symlink(target, want), 0);
	ck_assert_int_eq(gw_shm_create(&s, &cfg, true), -EEXIST);
	ck_assert_ptr_null(s.hdr);
	/* the target was neither written nor truncated, the link is still there */
	ck_assert_int_eq(stat(target, &st), 0);
	ck_assert_int_eq(st.st_size, 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0644);
	ck_assert_int_eq(lstat(want, &st), 0);
	ck_assert(S_ISLNK(st.st_mode));
	unlink(want);
	unlink(target);
	rmdir(dir);
}
END_TEST

START_TEST(test_shm_exec_starts_fresh)
{
	struct gw_shm s;
	char want[256];

	setup_dir();
	/* a segment left by this pid's image before exec */
	expected_name(want, sizeof(want), getpid());
	int fd = open(want, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "stale", 5), 5);
	close(fd);
	ck_assert_int_eq(gw_shm_create(&s, &cfg, true), 0);
	ck_assert_uint_eq(s.hdr->magic, GWMEM_SHM_MAGIC);
	ck_assert_uint_eq(s.hdr->counters.stacks_used, 0);
	gw_shm_exit(&s, true);
	/* kept on request, marked exited */
	ck_assert_int_eq(access(want, F_OK), 0);
	ck_assert_uint_eq(s.hdr->state, GWMEM_SHM_STATE_EXITED);
	unlink(want);
	rmdir(dir);
}
END_TEST

START_TEST(test_shm_no_dir)
{
	struct gw_shm s;

	setup_dir();
	strcpy(cfg.leak_detection.shm_dir, "/nonexistent/gwmem-dir");
	ck_assert_int_eq(gw_shm_create(&s, &cfg, true), -ENOENT);
	ck_assert_ptr_null(s.hdr);
	rmdir(dir);
}
END_TEST

START_TEST(test_shm_untracked_is_small)
{
	struct gw_shm s;
	struct gw_shm_geom g;

	setup_dir();
	ck_assert_int_eq(gw_shm_create(&s, &cfg, false), 0);
	ck_assert_uint_eq(s.hdr->nstripes, 0);
	ck_assert_uint_eq(s.hdr->stack_capacity, 0);
	ck_assert(!(s.hdr->flags & GWMEM_SHM_FLAG_TRACKING));
	ck_assert_uint_lt(s.size, 128 * 1024);
	gw_shm_exit(&s, false);
	rmdir(dir);

	/* table memory per configured allocation at the design load */
	cfg.leak_detection.max_tracked_allocations = 393216;
	gw_shm_geometry(&cfg, true, &g);
	ck_assert_uint_eq(g.nstripes, 1024);
	ck_assert_uint_le((uint64_t)g.nstripes * (g.slots_per_stripe * 32 + 64) / 393216, 48);
}
END_TEST

START_TEST(test_shm_fork_child_copy)
{
	struct gw_shm s;
	char parent_path[256];

	setup_dir();
	ck_assert_int_eq(gw_shm_create(&s, &cfg, true), 0);
	gw_shm_publish(&s);
	strcpy(parent_path, s.path);
	s.hdr->counters.reserved[0] = 7;
	struct gwmem_shm_header *addr = s.hdr;

	int pipefd[2];
	ck_assert_int_eq(pipe(pipefd), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int rc = gw_shm_fork_child(&s);
		int ok = rc == 0 && s.hdr == addr && s.hdr->pid == (uint32_t)getpid() &&
			 s.hdr->ppid == (uint32_t)getppid() && (s.hdr->flags & GWMEM_SHM_FLAG_FORKED) &&
			 s.hdr->counters.reserved[0] == 7 && strcmp(s.path, parent_path) != 0;
		/* writes now go to the child's file only */
		s.hdr->counters.reserved[0] = 99;
		char c = ok ? 'y' : 'n';
		ck_assert_int_eq(write(pipefd[1], &c, 1), 1);
		_exit(ok ? 0 : 1);
	}
	close(pipefd[1]);
	char c = 0;
	ck_assert_int_eq(read(pipefd[0], &c, 1), 1);
	close(pipefd[0]);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(c, 'y');
	ck_assert_uint_eq(s.hdr->counters.reserved[0], 7);
	ck_assert_uint_eq(s.hdr->pid, (uint32_t)getpid());

	/* the child's segment is there (it did _exit: like a crash, left behind) */
	char child_path[256];
	snprintf(child_path, sizeof(child_path), "%s/gwmem.%d.", dir, (int)pid);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "ls %s* >/dev/null 2>&1", child_path);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "rm -f %s*", child_path);
	ck_assert_int_eq(system(cmd), 0);
	gw_shm_exit(&s, false);
	ck_assert_int_eq(access(parent_path, F_OK), -1);
	rmdir(dir);
}
END_TEST

Suite *suite_shm(void)
{
	Suite *s = suite_create("shm");
	TCase *tc = tcase_create("shm");
	tcase_add_test(tc, test_shm_name_and_mode);
	tcase_add_test(tc, test_shm_refuses_symlink);
	tcase_add_test(tc, test_shm_exec_starts_fresh);
	tcase_add_test(tc, test_shm_no_dir);
	tcase_add_test(tc, test_shm_untracked_is_small);
	tcase_add_test(tc, test_shm_fork_child_copy);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_shm)
