/* tests/unit/test-shm.c: segment naming, permissions, symlink refusal, exec replacement, exit, fork copy,
 * giving address space back */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
	/* only the header and stripe heads are backed: the rest when used */
	ck_assert_uint_le((uint64_t)st.st_blocks * 512, 16 * 1024);
	ck_assert_uint_eq(s.allocated, (uint64_t)st.st_blocks * 512);

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
	ck_assert(GW_IS_POW2(h->nstripes));
	ck_assert_uint_eq(h->stack_capacity, 100);
	ck_assert_uint_ge((uint64_t)h->nstripes * h->slots_per_stripe, 1000 * 5 / 4);
	ck_assert_uint_eq(h->records_offset + (uint64_t)h->nstripes * 2 * h->slots_per_stripe * 32, s.size);
	ck_assert_uint_le(h->stripes_offset + h->nstripes * 64u, h->modules_offset);
	ck_assert_uint_le(h->modules_offset + GW_SHM_MODULES * 280u, h->stacks_offset);
	ck_assert_uint_le(h->stacks_offset + (uint64_t)h->stack_capacity * h->stack_stride, h->records_offset);
	ck_assert_uint_eq(h->modules_offset % 64, 0);
	ck_assert_uint_eq(h->stacks_offset % 4096, 0);
	ck_assert_uint_eq(h->records_offset % 4096, 0);
	ck_assert_uint_eq(h->max_segment_bytes, 16u << 20);
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
	/* the planted name does not deny tracking: a suffixed name is used */
	ck_assert_int_eq(gw_shm_create(&s, &cfg, true), 0);
	ck_assert_ptr_nonnull(s.hdr);
	ck_assert_int_eq(strncmp(s.path, want, strlen(want)), 0);
	ck_assert_uint_eq(strlen(s.path), strlen(want) + 17);
	ck_assert_int_eq(s.path[strlen(want)], '.');
	gw_shm_exit(&s, false);
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

	/* the limits size the regions (address space), not the memory */
	cfg.leak_detection.max_tracked_allocations = 393216;
	gw_shm_geometry(&cfg, true, &g);
	ck_assert_uint_eq(g.nstripes, 256);   /* one per 2048 above 262144 */
	ck_assert_uint_ge((uint64_t)g.nstripes * g.slots_per_stripe, 393216 * 5 / 4);   /* dense arrays, x 5/4 for imbalance */
	ck_assert_uint_le(g.initial, 32 * 1024);
	/* no array larger than half of max_segment_bytes */
	cfg.leak_detection.max_tracked_allocations = 100000000;
	gw_shm_geometry(&cfg, true, &g);
	ck_assert_uint_le((uint64_t)g.slots_per_stripe * 32, g.max_bytes / 2);
	ck_assert_uint_le((uint64_t)g.stack_capacity * g.stack_stride, g.max_bytes);
}
END_TEST

static bool child_file_exists(pid_t pid)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "ls %s/gwmem.%d.* >/dev/null 2>&1", dir, (int)pid);
	return system(cmd) == 0;
}

/* Resident pages of [p, p + len) (mincore). */
static size_t resident_pages(const void *p, size_t len)
{
	size_t n = len / 4096, in = 0;
	unsigned char *vec = calloc(n, 1);

	ck_assert_ptr_nonnull(vec);
	ck_assert_int_eq(mincore((void *)p, len, vec), 0);
	for (size_t i = 0; i < n; i++)
		in += vec[i] & 1;
	free(vec);
	return in;
}

/*
 * fork: the child does nothing at fork time (it still maps the parent's
 * file) and adopts the copy the parent made at fork on its first write:
 * what the parent writes after the fork is not in it.  The child writes
 * nothing to the parent's file, makes no file of its own until it
 * materializes, and can grow its copy in between.  The parent keeps no
 * page of the copy once fork has returned.
 */
START_TEST(test_shm_fork_child_copy)
{
	struct gw_shm s;
	char parent_path[256];

	setup_dir();
	ck_assert_int_eq(gw_shm_create(&s, &cfg, true), 0);
	gw_shm_publish(&s);
	strcpy(parent_path, s.path);
	s.hdr->counters.reserved[0] = 7;
	/* a page of the stack table, backed and written before the fork */
	ck_assert_int_eq(gw_shm_back(&s, s.hdr->stacks_offset, 4096), 0);
	memset((char *)s.hdr + s.hdr->stacks_offset, 0x33, 4096);
	/* and a page of records, given back between the two forks */
	ck_assert_int_eq(gw_shm_back(&s, s.hdr->records_offset, 4096), 0);
	memset((char *)s.hdr + s.hdr->records_offset, 0x44, 4096);
	struct gwmem_shm_header *addr = s.hdr;

	/* a child that exits at once leaves nothing behind */
	gw_shm_fork_prepare(&s);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int ok = gw_shm_fork_child(&s) == 0 && s.mode == GW_SHM_FORKED && s.hdr == addr &&
			 s.hdr->counters.reserved[0] == 7 && !strcmp(s.path, parent_path);
		_exit(ok ? 0 : 1);
	}
	gw_shm_fork_parent(&s);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert(!child_file_exists(pid));
	/* the parent's buffer holds the live pages until it stops forking */
	ck_assert_ptr_nonnull(s.fork_copy);
	ck_assert_uint_ge(resident_pages(s.fork_copy, s.size), 2);
	gw_shm_fork_idle(&s, s.fork_ns + 1);
	ck_assert_ptr_nonnull(s.fork_copy);
	/* changed and given-back pages between two forks reach the next child */
	memset((char *)s.hdr + s.hdr->stacks_offset, 0x5a, 4096);
	gw_shm_release(&s, s.hdr->records_offset, 4096);

	int pipefd[2], gofd[2];
	ck_assert_int_eq(pipe(pipefd), 0);
	ck_assert_int_eq(pipe(gofd), 0);
	gw_shm_fork_prepare(&s);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int rc = gw_shm_fork_child(&s);
		char go;
		/* the parent writes its segment after the fork: not in our copy */
		close(gofd[1]);
		rc = rc || read(gofd[0], &go, 1) != 1 || s.mode != GW_SHM_FORKED;
		rc = rc || gw_shm_fork_adopt(&s) != 0 || s.fork_copy != NULL;
		const char *p = (const char *)s.hdr + s.hdr->stacks_offset;
		const char *rec = (const char *)s.hdr + s.hdr->records_offset;
		int ok = rc == 0 && s.hdr == addr && s.mode == GW_SHM_PRIVATE && !s.path[0] &&
			 s.hdr->counters.reserved[0] == 7 && p[0] == 0x5a && p[4095] == 0x5a &&
			 rec[0] == 0 && rec[4095] == 0;
		/* writes go to the private copy only; it can grow */
		s.hdr->counters.reserved[0] = 99;
		ok = ok && gw_shm_back(&s, s.hdr->records_offset, 8192) == 0;
		memset((char *)s.hdr + s.hdr->records_offset, 0x77, 8192);
		ok = ok && !child_file_exists(getpid());
		/* a file of its own, with what it wrote, named for it */
		ok = ok && gw_shm_materialize(&s) == 0 && s.mode == GW_SHM_SHARED && s.hdr == addr &&
		     s.hdr->pid == (uint32_t)getpid() && s.hdr->ppid == (uint32_t)getppid() &&
		     (s.hdr->flags & GWMEM_SHM_FLAG_FORKED) && strcmp(s.path, parent_path) != 0 &&
		     child_file_exists(getpid());
		struct stat st;
		ok = ok && stat(s.path, &st) == 0 && (uint64_t)st.st_blocks * 512 == s.allocated;
		int fd = open(s.path, O_RDONLY);
		uint64_t v = 0;
		char r = 0;
		ok = ok && fd >= 0 &&
		     pread(fd, &v, 8, (off_t)offsetof(struct gwmem_shm_header, counters.reserved)) == 8 &&
		     v == 99 && pread(fd, &r, 1, (off_t)s.hdr->records_offset + 8191) == 1 && r == 0x77;
		if (fd >= 0)
			close(fd);
		char c = ok ? 'y' : 'n';
		ck_assert_int_eq(write(pipefd[1], &c, 1), 1);
		_exit(ok ? 0 : 1);
	}
	gw_shm_fork_parent(&s);
	close(gofd[0]);
	s.hdr->counters.reserved[0] = 8;
	memset((char *)s.hdr + s.hdr->stacks_offset, 0x11, 4096);
	ck_assert_int_eq(write(gofd[1], "g", 1), 1);
	close(gofd[1]);
	close(pipefd[1]);
	char c = 0;
	ck_assert_int_eq(read(pipefd[0], &c, 1), 1);
	close(pipefd[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(c, 'y');
	ck_assert_uint_eq(s.hdr->counters.reserved[0], 8);
	ck_assert_uint_eq(s.hdr->pid, (uint32_t)getpid());
	/* no fork for a while: the buffer is given back */
	gw_shm_fork_idle(&s, s.fork_ns + GW_SHM_FORK_IDLE_NS);
	ck_assert_ptr_null(s.fork_copy);

	/* the child's segment is there (it did _exit: like a crash, left behind) */
	ck_assert(child_file_exists(pid));
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -f %s/gwmem.%d.*", dir, (int)pid);
	ck_assert_int_eq(system(cmd), 0);
	gw_shm_exit(&s, false);
	ck_assert_int_eq(access(parent_path, F_OK), -1);
	rmdir(dir);
}
END_TEST

/*
 * Address space is short: the mapping past the used part of the record
 * area goes, and the fork buffer; the file keeps its size and contents,
 * nothing is backed past the new end, and a forked child's own file
 * still has the header's size.
 */
START_TEST(test_shm_give_back)
{
	struct gw_shm s;

	setup_dir();
	ck_assert_int_eq(gw_shm_create(&s, &cfg, true), 0);
	gw_shm_publish(&s);
	const uint64_t apparent = s.hdr->segment_size, roff = s.hdr->records_offset;
	ck_assert_uint_eq(s.size, apparent);
	ck_assert_uint_gt(apparent, roff + 4 * 4096);
	ck_assert_int_eq(gw_shm_back(&s, roff, 8192), 0);
	memset((char *)s.hdr + roff, 0x44, 8192);
	const uint64_t soff = s.hdr->stacks_offset;
	ck_assert_uint_ge(roff, soff + 3 * 4096);   /* a stack table of 3 pages at least */
	ck_assert_int_eq(gw_shm_back(&s, soff, 4096), 0);
	memset((char *)s.hdr + soff, 0x33, 4096);
	/* a fork leaves its buffer behind for the next one */
	gw_shm_fork_prepare(&s);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	gw_shm_fork_parent(&s);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_ptr_nonnull(s.fork_copy);

	/* the stack table's entries end inside its first page */
	uint64_t given = gw_shm_give_back(&s, soff + 100, roff + 8192 - 100);
	const uint64_t hole = (roff & ~(uint64_t)4095) - (soff + 4096);
	ck_assert_uint_eq(given, apparent + hole + (apparent - roff - 8192));
	ck_assert_uint_eq(s.size, roff + 8192);
	ck_assert_uint_eq(s.hole_lo, soff + 4096);
	ck_assert_uint_eq(s.hole_hi, soff + 4096 + hole);
	/* the hole is no longer ours and is never backed again */
	unsigned char hv;
	ck_assert_int_eq(mincore((char *)s.hdr + soff + 4096, 4096, &hv), -1);
	ck_assert_int_lt(gw_shm_back(&s, soff, 8192), 0);
	ck_assert_int_eq(gw_shm_back(&s, soff, 4096), 0);
	ck_assert_ptr_null(s.fork_copy);
	ck_assert_uint_eq(s.hdr->segment_size, apparent);
	struct stat st;
	ck_assert_int_eq(stat(s.path, &st), 0);
	ck_assert_uint_eq((uint64_t)st.st_size, apparent);
	/* past the end nothing is backed any more; before it, as before */
	ck_assert_int_lt(gw_shm_back(&s, roff + 8192, 4096), 0);
	ck_assert_int_eq(gw_shm_back(&s, roff, 8192), 0);
	ck_assert_uint_eq(((unsigned char *)s.hdr)[roff + 8191], 0x44);
	/* the tail is no longer ours: mincore says so */
	unsigned char vec;
	ck_assert_int_eq(mincore((char *)s.hdr + roff + 8192, 4096, &vec), -1);
	/* a second call has nothing more to give */
	ck_assert_uint_eq(gw_shm_give_back(&s, soff + 100, roff + 8192), 0);

	/* a child adopts the shorter copy and makes a file of full size */
	gw_shm_fork_prepare(&s);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int ok = gw_shm_fork_child(&s) == 0 && gw_shm_fork_adopt(&s) == 0 &&
			 s.size == roff + 8192 && gw_shm_materialize(&s) == 0;
		struct stat cst;
		ok = ok && stat(s.path, &cst) == 0 && (uint64_t)cst.st_size == apparent;
		int fd = open(s.path, O_RDONLY);
		char r = 0;
		ok = ok && fd >= 0 && pread(fd, &r, 1, (off_t)(roff + 8191)) == 1 && r == 0x44 &&
		     pread(fd, &r, 1, (off_t)(soff + 4095)) == 1 && r == 0x33 &&
		     ((unsigned char *)s.hdr)[soff + 4095] == 0x33 &&
		     ((unsigned char *)s.hdr)[roff] == 0x44;
		/* the hole stays a hole in the child too */
		unsigned char cv;
		ok = ok && mincore((char *)s.hdr + s.hole_lo, 4096, &cv) == -1;
		if (fd >= 0)
			close(fd);
		_exit(ok ? 0 : 1);
	}
	gw_shm_fork_parent(&s);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -f %s/gwmem.%d.*", dir, (int)pid);
	ck_assert_int_eq(system(cmd), 0);
	gw_shm_exit(&s, false);
	rmdir(dir);
}
END_TEST

/* A file that cannot be removed gives its memory back; later stores do not fault. */
START_TEST(test_shm_exit_truncate)
{
	struct gw_shm s;
	struct stat st;
	char path[256];

	setup_dir();
	ck_assert_int_eq(gw_shm_create(&s, &cfg, true), 0);
	gw_shm_publish(&s);
	strcpy(path, s.path);
	const uint64_t rec = s.hdr->records_offset;
	ck_assert_int_eq(gw_shm_back(&s, rec, 65536), 0);
	memset((char *)s.hdr + rec, 1, 65536);
	gw_shm_exit_truncate(&s);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, 0);
	ck_assert_int_eq(st.st_blocks, 0);
	ck_assert_int_eq(s.mode, GW_SHM_DETACHED);
	/* a late writer: private zeroes, no SIGBUS; no further growth */
	s.hdr->counters.reserved[0] = 1;
	memset((char *)s.hdr + rec, 2, 65536);
	ck_assert_int_eq(gw_shm_back(&s, rec + 65536, 4096), -ENOSPC);
	unlink(path);
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
	tcase_add_test(tc, test_shm_exit_truncate);
	tcase_add_test(tc, test_shm_give_back);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_shm)
