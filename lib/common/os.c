/*
 * os.c - mmap, environment, clocks and file reads for lib/, without malloc.
 * The one file of lib/ that calls mmap, mremap, mprotect, madvise or
 * munmap: the pools, the segment, the readers and the API all map through
 * here, so that a port or a change of policy (huge pages, MAP_NORESERVE,
 * accounting) has one place to go.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "os.h"

extern char **environ;

size_t gw_os_page_size(void)
{
	static size_t page;

	if (gw_unlikely(!page)) {
		long v = sysconf(_SC_PAGESIZE);
		page = v > 0 ? (size_t)v : 4096;
	}
	return page;
}

void *gw_os_map(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void *gw_os_reserve(size_t size)
{
	void *p = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

int gw_os_commit(void *p, size_t size)
{
	return mprotect(p, size, PROT_READ | PROT_WRITE) == 0 ? 0 : -errno;
}

void gw_os_decommit(void *p, size_t size)
{
	int saved = errno;
	(void)madvise(p, size, MADV_DONTNEED);
	errno = saved;
}

void gw_os_unmap(void *p, size_t size)
{
	int saved = errno;
	(void)munmap(p, size);
	errno = saved;
}

void *gw_os_map_shared(int fd, size_t size, bool writable, void *at)
{
	int prot = PROT_READ | (writable ? PROT_WRITE : 0);
	void *p = mmap(at, size, prot, MAP_SHARED | (at ? MAP_FIXED : 0), fd, 0);

	return p == MAP_FAILED ? NULL : p;
}

void *gw_os_map_shared_range(int fd, uint64_t off, size_t size, void *at)
{
	void *p = mmap(at, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, (off_t)off);

	return p == MAP_FAILED ? NULL : p;
}

void *gw_os_map_anon_at(void *at, size_t size)
{
	void *p = mmap(at, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int gw_os_remap_to(void *from, void *to, size_t size)
{
	return mremap(from, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, to) == MAP_FAILED ? -errno : 0;
}

bool gw_os_secure(void)
{
	return getauxval(AT_SECURE) != 0;
}

const char *gw_os_getenv(const char *name)
{
	size_t n = strlen(name);

	if (!environ || gw_os_secure())
		return NULL;
	for (char **e = environ; *e; e++) {
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			return *e + n + 1;
	}
	return NULL;
}

uint64_t gw_os_monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t gw_os_realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint32_t gw_os_gettid(void)
{
	return (uint32_t)syscall(SYS_gettid);
}

ssize_t gw_os_read_file(const char *path, char *buf, size_t cap, bool nofollow)
{
	struct stat st;
	ssize_t len = 0;
	int saved = errno;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (nofollow ? O_NOFOLLOW : 0));

	if (fd < 0) {
		len = -errno;
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		len = -errno;
		goto out_close;
	}
	if (S_ISDIR(st.st_mode)) {
		len = -EISDIR;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) {
		len = -EINVAL;
		goto out_close;
	}
	while ((size_t)len < cap - 1) {
		ssize_t n = read(fd, buf + len, cap - 1 - (size_t)len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			len = -errno;
			goto out_close;
		}
		if (n == 0)
			break;
		len += n;
	}
	buf[len] = '\0';
	if ((size_t)len == cap - 1) {
		char extra;
		ssize_t n = read(fd, &extra, 1);
		if (n > 0)
			len = -EFBIG;
	}
out_close:
	close(fd);
out:
	errno = saved;
	return len;
}

uint64_t gw_os_proc_starttime(pid_t pid)
{
	char path[64], stat[1024];
	uint64_t v = 0;

	if (pid == getpid())
		strcpy(path, "/proc/self/stat");
	else {
		char *p = path + 6;
		memcpy(path, "/proc/", 6);
		char tmp[16];
		int n = 0;
		for (unsigned long x = (unsigned long)pid; x || !n; x /= 10)
			tmp[n++] = (char)('0' + x % 10);
		while (n)
			*p++ = tmp[--n];
		strcpy(p, "/stat");
	}
	ssize_t len = gw_os_read_file(path, stat, sizeof(stat), false);
	if (len <= 0 && len != -EFBIG)
		return 0;
	/* comm (field 2) may hold spaces and ')': fields count from the last ')' */
	char *p = strrchr(stat, ')');
	if (!p)
		return 0;
	int field = 2;
	for (p++; *p && field < 22; p++) {
		if (*p == ' ')
			field++;
	}
	for (; *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (uint64_t)(*p - '0');
	return v;
}

int gw_os_open_regular(const char *path, uint64_t *size)
{
	struct stat st;
	int saved = errno;
	/* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	int err;

	if (fd < 0) {
		err = -errno;
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		err = -errno;
		close(fd);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		err = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		goto out;
	}
	/* back to blocking reads: a regular file never waits, and callers may read() */
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	if (size)
		*size = (uint64_t)st.st_size;
	err = fd;
out:
	errno = saved;
	return err;
}

const void *gw_os_map_file(int fd, size_t size)
{
	void *p;

	if (!size)
		return NULL;
	p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	return p == MAP_FAILED ? NULL : p;
}
