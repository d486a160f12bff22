/* tests/unit/test-elffile.c: module files: build-ids, the search, symbols, lines, hostile files */
#include "config.h"

#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "elffile.h"
#include "suite.h"

/* A static function: only .symtab names it, and .debug_line knows its line. */
static int __attribute__((noinline)) static_target(int x)
{
	return x * 3 + 1;   /* the line test_line looks for is the one below */
}
static const int static_target_line = __LINE__ - 3;

static uint64_t self_bias(void)
{
	Dl_info info;
	ck_assert(dladdr((void *)static_target, &info));
	/* PIE: the file's vaddr 0 is at dli_fbase; a fixed executable has bias 0 */
	ElfW(Ehdr) *eh = info.dli_fbase;
	return eh->e_type == ET_DYN ? (uint64_t)(uintptr_t)info.dli_fbase : 0;
}

static char tmpdir[] = "/tmp/gwmem-elffile-XXXXXX";

static void copy_file(const char *from, const char *to, size_t flip_at)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	int c;
	size_t i = 0;
	ck_assert(in && out);
	while ((c = fgetc(in)) != EOF) {
		if (i++ == flip_at)
			c ^= 0xff;
		fputc(c, out);
	}
	fclose(in);
	fclose(out);
}

START_TEST(test_self)
{
	struct gw_elffile e;
	char name[256], file[512];
	uint64_t off = 0;
	uint32_t line = 0;

	ck_assert_int_eq(gw_elffile_open(&e, "/proc/self/exe", 0), 0);
	ck_assert_uint_gt(e.build_id_len, 0);
	uint64_t vaddr = (uint64_t)(uintptr_t)static_target - self_bias() + 2;
	ck_assert(gw_elffile_symbol(&e, vaddr, name, sizeof(name), &off));
	ck_assert_str_eq(name, "static_target");
	ck_assert_uint_eq(off, 2);
	ck_assert(gw_elffile_line(&e, vaddr, file, sizeof(file), &line));
	ck_assert_ptr_nonnull(strstr(file, "test-elffile.c"));
	ck_assert_int_ge(line, static_target_line);
	ck_assert_int_le(line, static_target_line + 2);
	ck_assert(!gw_elffile_symbol(&e, 0, name, sizeof(name), &off));
	gw_elffile_close(&e);

	/* many at once, in one pass: the same answers as one by one */
	uintptr_t fns[] = { (uintptr_t)static_target, (uintptr_t)copy_file, (uintptr_t)self_bias,
			    (uintptr_t)gw_elffile_open, (uintptr_t)gw_elffile_lines };
	struct gw_elffile_line_req reqs[5];
	size_t n = 0;
	memset(reqs, 0, sizeof(reqs));
	for (size_t i = 0; i < 5; i++)
		reqs[n++].vaddr = fns[i] - self_bias() + 4;
	for (size_t i = 1; i < n; i++)          /* sorted by vaddr */
		for (size_t j = i; j > 0 && reqs[j - 1].vaddr > reqs[j].vaddr; j--) {
			struct gw_elffile_line_req t = reqs[j];
			reqs[j] = reqs[j - 1];
			reqs[j - 1] = t;
		}
	ck_assert_int_eq(gw_elffile_open(&e, "/proc/self/exe", 0), 0);
	gw_elffile_lines(&e, reqs, n);
	for (size_t i = 0; i < n; i++) {
		char one[512], many[512];
		uint32_t l1 = 0;
		ck_assert(reqs[i].found);
		ck_assert(gw_elffile_line(&e, reqs[i].vaddr, one, sizeof(one), &l1));
		ck_assert(gw_elffile_line_file(&e, &reqs[i], many, sizeof(many)));
		ck_assert_uint_eq(reqs[i].line, l1);
		ck_assert_str_eq(many, one);
	}
	gw_elffile_close(&e);

	/* copied into anonymous memory (the reporter's way): the same answers, no fd kept */
	ck_assert_int_eq(gw_elffile_open(&e, "/proc/self/exe", GW_ELFFILE_COPY), 0);
	ck_assert_int_eq(e.fd, -1);
	ck_assert(gw_elffile_symbol(&e, vaddr, name, sizeof(name), &off));
	ck_assert_str_eq(name, "static_target");
	ck_assert(gw_elffile_line(&e, vaddr, file, sizeof(file), &line));
	ck_assert_ptr_nonnull(strstr(file, "test-elffile.c"));
	gw_elffile_close(&e);
}
END_TEST

START_TEST(test_find)
{
	struct gw_elffile self, e;
	char where[PATH_MAX], path[PATH_MAX], dev[PATH_MAX], exe[PATH_MAX];

	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	ck_assert_int_gt(n, 0);
	exe[n] = '\0';
	ck_assert_int_eq(gw_elffile_open(&self, exe, 0), 0);

	/* sysroot + device path, build-id checked */
	snprintf(dev, sizeof(dev), "/usr/bin/prog");
	snprintf(path, sizeof(path), "%s/usr", tmpdir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/usr/bin", tmpdir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/usr/bin/prog", tmpdir);
	copy_file(exe, path, SIZE_MAX);
	ck_assert_int_eq(gw_elffile_find_module(&e, dev, tmpdir, self.build_id, self.build_id_len,
						where, sizeof(where), 0), GW_ELFFILE_FOUND);
	ck_assert_str_eq(where, path);
	gw_elffile_close(&e);
	uint8_t other[GW_ELFFILE_BUILD_ID_MAX];
	memcpy(other, self.build_id, self.build_id_len);
	other[0] ^= 1;
	ck_assert_int_eq(gw_elffile_find_module(&e, dev, tmpdir, other, self.build_id_len,
						where, sizeof(where), 0), GW_ELFFILE_MISMATCH);
	ck_assert_str_eq(where, path);
	ck_assert_int_eq(gw_elffile_find_module(&e, "/usr/bin/none", tmpdir, other, self.build_id_len,
						where, sizeof(where), 0), GW_ELFFILE_MISSING);

	/* debug directories: .build-id layout, then <name>.debug */
	char hex[2 * GW_ELFFILE_BUILD_ID_MAX + 1], bid[PATH_MAX];
	gw_elffile_build_id_hex(self.build_id, self.build_id_len, hex, sizeof(hex));
	snprintf(bid, sizeof(bid), "%s/.build-id", tmpdir);
	mkdir(bid, 0700);
	snprintf(bid, sizeof(bid), "%s/.build-id/%c%c", tmpdir, hex[0], hex[1]);
	mkdir(bid, 0700);
	snprintf(bid, sizeof(bid), "%s/.build-id/%c%c/%s.debug", tmpdir, hex[0], hex[1], hex + 2);
	rename(path, bid);
	const char *dirs[] = { "/nonexistent", tmpdir };
	ck_assert_int_eq(gw_elffile_find_debug(&e, dev, NULL, dirs, 2, self.build_id, self.build_id_len,
					       where, sizeof(where), 0), GW_ELFFILE_FOUND);
	ck_assert_str_eq(where, bid);
	gw_elffile_close(&e);
	snprintf(path, sizeof(path), "%s/prog.debug", tmpdir);
	rename(bid, path);
	ck_assert_int_eq(gw_elffile_find_debug(&e, dev, NULL, dirs, 2, self.build_id, self.build_id_len,
					       where, sizeof(where), 0), GW_ELFFILE_FOUND);
	ck_assert_str_eq(where, path);
	gw_elffile_close(&e);
	unlink(path);
	gw_elffile_close(&self);
	const char *subdirs[] = { "/usr/bin", "/usr", "/.build-id/xx", "/.build-id", "" };
	for (unsigned i = 0; i < 5; i++) {
		snprintf(path, sizeof(path), "%s%s", tmpdir, subdirs[i]);
		if (i == 2)
			snprintf(path, sizeof(path), "%s/.build-id/%c%c", tmpdir, hex[0], hex[1]);
		rmdir(path);
	}
}
END_TEST

START_TEST(test_fifo_never_blocks)
{
	struct gw_elffile e;
	char fifo[PATH_MAX];
	uint8_t id[4] = { 1, 2, 3, 4 };
	char where[PATH_MAX];

	snprintf(fifo, sizeof(fifo), "/tmp/gwmem-elffile-fifo-%d", (int)getpid());
	unlink(fifo);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	time_t t0 = time(NULL);
	ck_assert_int_eq(gw_elffile_open(&e, fifo, 0), -EINVAL);
	ck_assert_int_eq(gw_elffile_find_module(&e, fifo, NULL, id, 4, where, sizeof(where), GW_ELFFILE_COPY),
			 GW_ELFFILE_MISSING);
	ck_assert_int_le(time(NULL) - t0, 2);
	unlink(fifo);
	ck_assert_int_eq(gw_elffile_open(&e, "/tmp", 0), -EISDIR);
	ck_assert_int_eq(gw_elffile_open(&e, "/dev/null", 0), -EINVAL);
}
END_TEST

/* Mutated copies of a real ELF file: lookups may fail, never crash or hang. */
START_TEST(test_fuzz)
{
	struct gw_elffile self;
	char path[64], name[256], file[512];
	uint64_t off;
	uint32_t line;

	ck_assert_int_eq(gw_elffile_open(&self, "/proc/self/exe", 0), 0);
	size_t size = self.size;
	unsigned char *buf = malloc(size);
	ck_assert_ptr_nonnull(buf);
	uint64_t vaddr = (uint64_t)(uintptr_t)static_target - self_bias() + 2;
	snprintf(path, sizeof(path), "/tmp/gwmem-elffile-fuzz-%d", (int)getpid());
	srand(1234);
	for (int round = 0; round < 200; round++) {
		memcpy(buf, self.base, size);
		int flips = 1 + rand() % 32;
		for (int i = 0; i < flips; i++) {
			/* mostly the headers and the tables the readers walk */
			size_t at = rand() % 4 ? (size_t)rand() % 4096 : (size_t)rand() % size;
			if (at < size)
				buf[at] = (unsigned char)rand();
		}
		size_t len = round % 10 == 9 ? (size_t)rand() % size : size;
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
		close(fd);
		struct gw_elffile e;
		if (gw_elffile_open(&e, path, round % 2 ? GW_ELFFILE_COPY : 0) == 0) {
			(void)gw_elffile_symbol(&e, vaddr, name, sizeof(name), &off);
			(void)gw_elffile_line(&e, vaddr, file, sizeof(file), &line);
			gw_elffile_close(&e);
		}
	}
	unlink(path);
	free(buf);
	gw_elffile_close(&self);
}
END_TEST

static Suite *suite_elffile(void)
{
	Suite *s = suite_create("elffile");
	TCase *tc = tcase_create("files");
	tcase_add_test(tc, test_self);
	tcase_add_test(tc, test_find);
	tcase_add_test(tc, test_fifo_never_blocks);
	suite_add_tcase(s, tc);
	tc = tcase_create("fuzz");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_fuzz);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_elffile)
