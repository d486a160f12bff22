/* tests/unit/test-os.c: the OS contract of lib/ (os.c): mappings, the
 * environment before libc, clocks, thread ids and bounded file reads */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "os.h"
#include "suite.h"

static char dir[64];

static void dir_setup(void)
{
	strcpy(dir, "/tmp/gwmem-test-os.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void dir_teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static void path_in_dir(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", dir, name);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* Whether the kernel may read p (or write it): a pipe copies from (into)
 * user memory and fails with EFAULT where it cannot, without a signal. */
static bool readable(const void *p)
{
	int fds[2];
	bool ok;

	ck_assert_int_eq(pipe(fds), 0);
	ok = write(fds[1], p, 1) == 1;
	if (!ok)
		ck_assert_int_eq(errno, EFAULT);
	close(fds[0]);
	close(fds[1]);
	return ok;
}

static bool writable(void *p)
{
	int fds[2];
	bool ok;
	char c = (char)0xee;

	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(write(fds[1], &c, 1), 1);
	ok = read(fds[0], p, 1) == 1;
	if (!ok)
		ck_assert_int_eq(errno, EFAULT);
	close(fds[0]);
	close(fds[1]);
	return ok;
}

/* Whether any page of [p, p+len) is mapped: mincore fails with ENOMEM on a hole. */
static bool mapped(const void *p, size_t len)
{
	unsigned char vec[64];

	ck_assert_uint_le(len / (size_t)sysconf(_SC_PAGESIZE), sizeof(vec));
	return mincore((void *)p, len, vec) == 0;
}

/* --- mappings ------------------------------------------------------------- */

START_TEST(test_os_page_size)
{
	size_t page = gw_os_page_size();

	ck_assert_uint_eq(page, (size_t)sysconf(_SC_PAGESIZE));
	ck_assert(page >= 4096 && (page & (page - 1)) == 0);
	ck_assert_uint_eq(gw_os_page_size(), page);
}
END_TEST

START_TEST(test_os_map_unmap)
{
	size_t page = gw_os_page_size(), len = 3 * page;
	unsigned char *p = gw_os_map(len);

	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq((uintptr_t)p % page, 0);
	for (size_t i = 0; i < len; i++)
		ck_assert_uint_eq(p[i], 0);
	memset(p, 0xa5, len);
	ck_assert_uint_eq(p[len - 1], 0xa5);
	ck_assert(mapped(p, len));

	/* unmapping keeps errno: callers report their own error after it */
	errno = EINTR;
	gw_os_unmap(p, len);
	ck_assert_int_eq(errno, EINTR);
	ck_assert(!mapped(p, page));
	ck_assert(!mapped(p + 2 * page, page));
}
END_TEST

START_TEST(test_os_map_failure)
{
	size_t huge = SIZE_MAX & ~(gw_os_page_size() - 1);

	errno = 0;
	ck_assert_ptr_null(gw_os_map(huge));
	ck_assert_int_eq(errno, ENOMEM);
	errno = 0;
	ck_assert_ptr_null(gw_os_reserve(huge));
	ck_assert_int_eq(errno, ENOMEM);
}
END_TEST

START_TEST(test_os_reserve_commit_decommit)
{
	size_t page = gw_os_page_size(), len = 8 * page;
	unsigned char *p = gw_os_reserve(len);

	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(gw_os_commit(p + 2 * page, 2 * page), 0);
	memset(p + 2 * page, 0x5a, 2 * page);
	ck_assert_uint_eq(p[4 * page - 1], 0x5a);
	/* decommitted pages stay mapped and read as zero */
	gw_os_decommit(p + 2 * page, 2 * page);
	ck_assert(mapped(p + 2 * page, 2 * page));
	for (size_t i = 2 * page; i < 4 * page; i++)
		ck_assert_uint_eq(p[i], 0);
	/* a commit of something that is not a mapping fails with -errno */
	gw_os_unmap(p, len);
	ck_assert_int_eq(gw_os_commit(p, page), -ENOMEM);
}
END_TEST

/* a reserved page that was never committed can be neither read nor written */
START_TEST(test_os_reserve_is_not_usable)
{
	size_t page = gw_os_page_size();
	unsigned char *p = gw_os_reserve(4 * page);

	ck_assert_ptr_nonnull(p);
	ck_assert(mapped(p, 4 * page));
	ck_assert(!readable(p + page));
	ck_assert(!writable(p + page));
	ck_assert_int_eq(gw_os_commit(p + page, page), 0);
	ck_assert(readable(p + page) && writable(p + page));
	ck_assert_uint_eq(p[page], 0xee);
	ck_assert(!readable(p + 2 * page));
	gw_os_unmap(p, 4 * page);
}
END_TEST

START_TEST(test_os_map_shared)
{
	size_t page = gw_os_page_size(), len = 2 * page;
	char path[128], back[16];
	int fd;

	path_in_dir(path, sizeof(path), "seg");
	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)len), 0);

	char *w = gw_os_map_shared(fd, len, true, NULL);
	const char *r = gw_os_map_shared(fd, len, false, NULL);
	ck_assert_ptr_nonnull(w);
	ck_assert_ptr_nonnull(r);
	ck_assert_ptr_ne(w, r);
	close(fd);              /* the mappings outlive the descriptor */

	/* writes reach the file and every other mapping of it */
	memcpy(w + page, "shared!", 8);
	ck_assert_str_eq(r + page, "shared!");
	fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, back, 8, (off_t)page), 8);
	ck_assert_str_eq(back, "shared!");

	/* a failure returns NULL with errno: a read-only fd cannot be mapped writable */
	errno = 0;
	ck_assert_ptr_null(gw_os_map_shared(fd, len, true, NULL));
	ck_assert_int_eq(errno, EACCES);
	close(fd);
	gw_os_unmap(w, len);
	gw_os_unmap((void *)r, len);
}
END_TEST

/* a read-only shared mapping (how the CLI maps a segment) cannot be written */
START_TEST(test_os_map_shared_readonly)
{
	char path[128];
	int fd;

	path_in_dir(path, sizeof(path), "ro");
	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)gw_os_page_size()), 0);
	char *r = gw_os_map_shared(fd, gw_os_page_size(), false, NULL);
	close(fd);
	ck_assert_ptr_nonnull(r);
	ck_assert(readable(r));
	ck_assert(!writable(r));
	ck_assert_int_eq(r[0], 0);
	gw_os_unmap(r, gw_os_page_size());
}
END_TEST

START_TEST(test_os_open_regular_and_map_file)
{
	char path[128], fifo[128];
	uint64_t size = 0;
	int fd;

	path_in_dir(path, sizeof(path), "module");
	const char *text = "\177ELF-ish contents";
	write_file(path, text);
	fd = gw_os_open_regular(path, &size);
	ck_assert_int_ge(fd, 0);
	ck_assert_uint_eq(size, strlen(text));
	const char *m = gw_os_map_file(fd, (size_t)size);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(memcmp(m, "\177ELF", 4), 0);
	ck_assert_ptr_null(gw_os_map_file(fd, 0));
	close(fd);
	gw_os_unmap((void *)m, (size_t)size);

	/* a FIFO planted where a file is expected: refused at once, not waited on */
	path_in_dir(fifo, sizeof(fifo), "fifo-module");
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	ck_assert_int_eq(gw_os_open_regular(fifo, &size), -EINVAL);
	ck_assert_int_eq(gw_os_open_regular(dir, &size), -EISDIR);
	path_in_dir(path, sizeof(path), "none");
	ck_assert_int_eq(gw_os_open_regular(path, NULL), -ENOENT);
}
END_TEST

/* what a forked child does with the segment: the file, then a private copy,
 * each time at the same address */
START_TEST(test_os_map_at_and_remap)
{
	size_t page = gw_os_page_size(), len = 2 * page;
	char path[128];
	int fd;

	char *at = gw_os_map(len);
	ck_assert_ptr_nonnull(at);
	memset(at, 'a', len);

	/* a shared file mapping replaces what was at 'at' */
	path_in_dir(path, sizeof(path), "child");
	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, "file", 4, 0), 4);
	ck_assert_int_eq(ftruncate(fd, (off_t)len), 0);
	ck_assert_ptr_eq(gw_os_map_shared(fd, len, true, at), at);
	close(fd);
	ck_assert_int_eq(memcmp(at, "file", 4), 0);
	ck_assert_int_eq(at[len - 1], 0);

	/* fresh private zero pages at the same address: the file is no longer written */
	ck_assert_ptr_eq(gw_os_map_anon_at(at, len), at);
	ck_assert_int_eq(at[0], 0);
	at[0] = 'z';
	fd = open(path, O_RDONLY);
	char c;
	ck_assert_int_eq(pread(fd, &c, 1, 0), 1);
	close(fd);
	ck_assert_int_eq(c, 'f');

	/* move a filled mapping over it: the contents move, the source goes */
	char *q = gw_os_map(len);
	ck_assert_ptr_nonnull(q);
	memset(q, 'q', len);
	ck_assert_int_eq(gw_os_remap_to(q, at, len), 0);
	ck_assert_int_eq(at[0], 'q');
	ck_assert_int_eq(at[len - 1], 'q');
	ck_assert(!mapped(q, page));

	/* a source that is not mapped: -errno, the target untouched */
	ck_assert_int_lt(gw_os_remap_to(q, at, len), 0);
	ck_assert_int_eq(at[0], 'q');
	gw_os_unmap(at, len);
}
END_TEST

/* --- environment ---------------------------------------------------------- */

START_TEST(test_os_getenv)
{
	ck_assert_int_eq(setenv("GWMEM_TEST_OS_KEY", "value=with=equals", 1), 0);
	ck_assert_int_eq(setenv("GWMEM_TEST_OS", "short", 1), 0);
	ck_assert_str_eq(gw_os_getenv("GWMEM_TEST_OS_KEY"), "value=with=equals");
	/* a name is matched whole, not as a prefix of a longer one */
	ck_assert_str_eq(gw_os_getenv("GWMEM_TEST_OS"), "short");
	ck_assert_ptr_null(gw_os_getenv("GWMEM_TEST_O"));
	ck_assert_int_eq(unsetenv("GWMEM_TEST_OS"), 0);
	ck_assert_ptr_null(gw_os_getenv("GWMEM_TEST_OS"));
	ck_assert_int_eq(setenv("GWMEM_TEST_OS_EMPTY", "", 1), 0);
	ck_assert_str_eq(gw_os_getenv("GWMEM_TEST_OS_EMPTY"), "");
	/* the test does not run set-uid: the environment is trusted */
	ck_assert(!gw_os_secure());
}
END_TEST

/* --- clocks and ids ------------------------------------------------------- */

START_TEST(test_os_clocks)
{
	uint64_t a = gw_os_monotonic_ns();
	struct timespec ts = { 0, 20 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	uint64_t b = gw_os_monotonic_ns();
	ck_assert_uint_ge(b - a, 20u * 1000 * 1000);
	ck_assert_uint_lt(b - a, 10ull * 1000 * 1000 * 1000);

	uint64_t rt = gw_os_realtime_ns();
	time_t now = time(NULL);
	uint64_t secs = rt / 1000000000u;
	ck_assert(secs + 2 >= (uint64_t)now && secs <= (uint64_t)now + 2);
}
END_TEST

static void *tid_thread(void *arg)
{
	uint32_t *out = arg;

	out[0] = gw_os_gettid();
	out[1] = (uint32_t)syscall(SYS_gettid);
	return NULL;
}

START_TEST(test_os_gettid)
{
	uint32_t t[2];
	pthread_t th;

	ck_assert_uint_eq(gw_os_gettid(), (uint32_t)getpid());
	ck_assert_int_eq(pthread_create(&th, NULL, tid_thread, t), 0);
	pthread_join(th, NULL);
	ck_assert_uint_eq(t[0], t[1]);
	ck_assert_uint_ne(t[0], gw_os_gettid());
}
END_TEST

/* field 22 of /proc/<pid>/stat, read independently */
static uint64_t starttime_of(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	ck_assert_ptr_nonnull(p);
	/* after ") " come fields 3.. : skip 19 of them to reach 22 */
	p += 2;
	for (int i = 3; i < 22; i++) {
		p = strchr(p, ' ');
		ck_assert_ptr_nonnull(p);
		p++;
	}
	ck_assert_int_eq(sscanf(p, "%llu", &v), 1);
	return v;
}

START_TEST(test_os_proc_starttime)
{
	int pfd[2];
	pid_t child;
	char c;

	ck_assert_uint_gt(gw_os_proc_starttime(getpid()), 0);
	ck_assert_uint_eq(gw_os_proc_starttime(getpid()), starttime_of(getpid()));

	/* another process: a child that waits until we have looked */
	ck_assert_int_eq(pipe(pfd), 0);
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		close(pfd[1]);
		ssize_t r = read(pfd[0], &c, 1);
		_exit(r == 1 ? 0 : 1);
	}
	close(pfd[0]);
	uint64_t st = gw_os_proc_starttime(child);
	ck_assert_uint_eq(st, starttime_of(child));
	ck_assert_uint_ge(st, gw_os_proc_starttime(getpid()));
	ck_assert_int_eq(write(pfd[1], "x", 1), 1);
	close(pfd[1]);
	int status;
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	/* a process that is gone has no start time */
	ck_assert_uint_eq(gw_os_proc_starttime(child), 0);
	ck_assert_uint_eq(gw_os_proc_starttime((pid_t)0x7ffffff0), 0);
}
END_TEST

/* --- file reads ----------------------------------------------------------- */

START_TEST(test_os_read_file)
{
	char path[128], link[128], fifo[128], buf[16];

	path_in_dir(path, sizeof(path), "small");
	write_file(path, "hello\n");
	memset(buf, 'x', sizeof(buf));
	ck_assert_int_eq(gw_os_read_file(path, buf, sizeof(buf), true), 6);
	ck_assert_str_eq(buf, "hello\n");

	/* exactly cap-1 bytes fit; one more is -EFBIG, never an overrun */
	write_file(path, "0123456789abcde");
	ck_assert_int_eq(gw_os_read_file(path, buf, sizeof(buf), true), 15);
	ck_assert_str_eq(buf, "0123456789abcde");
	write_file(path, "0123456789abcdef");
	ck_assert_int_eq(gw_os_read_file(path, buf, sizeof(buf), true), -EFBIG);
	ck_assert_uint_eq(strnlen(buf, sizeof(buf)), 15);

	/* errno survives, failures are -errno */
	errno = EINTR;
	path_in_dir(link, sizeof(link), "missing");
	ck_assert_int_eq(gw_os_read_file(link, buf, sizeof(buf), false), -ENOENT);
	ck_assert_int_eq(errno, EINTR);
	ck_assert_int_eq(gw_os_read_file(dir, buf, sizeof(buf), false), -EISDIR);

	/* a symlink is followed only when asked */
	path_in_dir(link, sizeof(link), "link");
	ck_assert_int_eq(symlink(path, link), 0);
	ck_assert_int_eq(gw_os_read_file(link, buf, sizeof(buf), false), -EFBIG);
	ck_assert_int_eq(gw_os_read_file(link, buf, sizeof(buf), true), -ELOOP);

	/* a FIFO neither blocks (no writer) nor is read */
	path_in_dir(fifo, sizeof(fifo), "fifo");
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	ck_assert_int_eq(gw_os_read_file(fifo, buf, sizeof(buf), false), -EINVAL);
}
END_TEST

START_TEST(test_os_read_file_proc)
{
	char buf[4096];

	/* /proc files report size 0 yet have contents */
	ssize_t n = gw_os_read_file("/proc/self/stat", buf, sizeof(buf), false);
	ck_assert_int_gt(n, 0);
	ck_assert_uint_eq(strlen(buf), (size_t)n);
	ck_assert_int_eq(atoi(buf), (int)getpid());
}
END_TEST

static Suite *suite_os(void)
{
	Suite *s = suite_create("os");
	TCase *tc = tcase_create("map");

	tcase_add_unchecked_fixture(tc, dir_setup, dir_teardown);
	tcase_add_test(tc, test_os_page_size);
	tcase_add_test(tc, test_os_map_unmap);
	tcase_add_test(tc, test_os_map_failure);
	tcase_add_test(tc, test_os_reserve_commit_decommit);
	tcase_add_test(tc, test_os_reserve_is_not_usable);
	tcase_add_test(tc, test_os_map_shared);
	tcase_add_test(tc, test_os_map_shared_readonly);
	tcase_add_test(tc, test_os_open_regular_and_map_file);
	tcase_add_test(tc, test_os_map_at_and_remap);
	suite_add_tcase(s, tc);

	tc = tcase_create("process");
	tcase_add_test(tc, test_os_getenv);
	tcase_add_test(tc, test_os_clocks);
	tcase_add_test(tc, test_os_gettid);
	tcase_add_test(tc, test_os_proc_starttime);
	suite_add_tcase(s, tc);

	tc = tcase_create("files");
	tcase_add_unchecked_fixture(tc, dir_setup, dir_teardown);
	tcase_add_test(tc, test_os_read_file);
	tcase_add_test(tc, test_os_read_file_proc);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_os)
