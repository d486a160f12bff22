/* tests/unit/test-config.c: the TOML file, every kind of bad file, and
 * GWMEM_<SECTION>_<KEY> environment overrides. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "gwmem.h"
#include "options.h"
#include "suite.h"

static char path[64];

static const char *write_file(const char *text)
{
	strcpy(path, "/tmp/gwmem-test-config.XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

/* Run gwmem_config_load with stderr captured; returns the diagnostics count. */
static int load_capture(struct gwmem_config *cfg, const char *file, unsigned flags, char *err, size_t cap)
{
	char errpath[] = "/tmp/gwmem-test-stderr.XXXXXX";
	int fd = mkstemp(errpath);
	int saved = dup(2);
	dup2(fd, 2);
	int n = gwmem_config_load(cfg, file, flags);
	dup2(saved, 2);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	ssize_t len = read(fd, err, cap - 1);
	err[len > 0 ? len : 0] = '\0';
	close(fd);
	unlink(errpath);
	return n;
}

START_TEST(test_defaults)
{
	struct gwmem_config c;
	gwmem_config_defaults(&c);
	ck_assert(c.memory.pool_enabled);
	ck_assert(c.memory.leak_detection_enabled);
	ck_assert_uint_eq(c.memory_pool.blocks_per_chunk, 256);
	ck_assert_uint_eq(c.memory_pool.max_chunks, 100);
	ck_assert_uint_eq(c.object_pool.max_objects, 1000);
	ck_assert_uint_eq(c.leak_detection.threshold_seconds, 300);
	ck_assert_uint_eq(c.leak_detection.max_frames, 16);
	ck_assert_int_eq(c.leak_detection.report_signal, SIGUSR1);
	ck_assert(c.compaction.fragmentation_threshold > 0.29 && c.compaction.fragmentation_threshold < 0.31);
	ck_assert_uint_eq(c.compaction.compact_interval_seconds, 60);
}
END_TEST

START_TEST(test_good_file)
{
	struct gwmem_config c;
	char err[1024];
	const char *f = write_file(
		"# gwmem configuration\n"
		"[memory]\n"
		"pool_enabled = false\n"
		"compaction_enabled = true   # inline comment\n"
		"\n"
		"[memory_pool]\n"
		"default_block_size = 4096\n"
		"blocks_per_chunk = 128\n"
		"max_chunks = 1_000\n"
		"[object_pool]\n"
		"max_objects = 50\n"
		"auto_shrink = false\n"
		"[leak_detection]\n"
		"threshold_seconds = 60\n"
		"unwinder = \"frame-pointer\"\n"
		"report_signal = \"SIGUSR2\"\n"
		"report_dir = \"/var/tmp # not a comment\"\n"
		"[compaction]\n"
		"fragmentation_threshold = 0.45\n"
		"compact_interval_seconds = 5\n");
	ck_assert_int_eq(load_capture(&c, f, GWMEM_CONFIG_NO_ENV, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	ck_assert(!c.memory.pool_enabled);
	ck_assert_uint_eq(c.memory_pool.default_block_size, 4096);
	ck_assert_uint_eq(c.memory_pool.blocks_per_chunk, 128);
	ck_assert_uint_eq(c.memory_pool.max_chunks, 1000);
	ck_assert_uint_eq(c.object_pool.max_objects, 50);
	ck_assert(!c.object_pool.auto_shrink);
	ck_assert_uint_eq(c.leak_detection.threshold_seconds, 60);
	ck_assert_int_eq(c.leak_detection.unwinder, GWMEM_UNWIND_FRAME_POINTER);
	ck_assert_int_eq(c.leak_detection.report_signal, SIGUSR2);
	ck_assert_str_eq(c.leak_detection.report_dir, "/var/tmp # not a comment");
	ck_assert(c.compaction.fragmentation_threshold > 0.449 && c.compaction.fragmentation_threshold < 0.451);
	ck_assert_uint_eq(c.compaction.compact_interval_seconds, 5);
	unlink(f);
}
END_TEST

START_TEST(test_bad_keys_keep_defaults)
{
	struct gwmem_config c;
	char err[4096];
	const char *f = write_file(
		"[memory_pool]\n"                /* 1 */
		"max_chunk = 5\n"                /* 2: unknown key */
		"max_chunks = -3\n"              /* 3: not an integer */
		"blocks_per_chunk = 100000000\n" /* 4: out of range */
		"[memory]\n"                     /* 5 */
		"pool_enabled = maybe\n"         /* 6: not a boolean */
		"[nonsense]\n"                   /* 7 */
		"x = 1\n"                        /* 8: unknown section */
		"this line is garbage\n"         /* 9: syntax */
		"[compaction]\n"                 /* 10 */
		"fragmentation_threshold = 1.5\n"/* 11: out of range */
		"[leak_detection]\n"             /* 12 */
		"unwinder = \"magic\"\n"         /* 13 */
		"report_signal = SIGKILL\n"      /* 14 */
		"report_dir = relative/path\n"); /* 15 */
	int n = load_capture(&c, f, GWMEM_CONFIG_NO_ENV, err, sizeof(err));
	ck_assert_int_eq(n, 10);
	struct gwmem_config d;
	gwmem_config_defaults(&d);
	ck_assert_int_eq(memcmp(&c, &d, sizeof(c)), 0);
	/* one line each, naming file, line and key */
	char want[256];
	snprintf(want, sizeof(want), "gwmem: %s:2: unknown key 'max_chunk' in [memory_pool]", f);
	ck_assert_msg(strstr(err, want), "missing '%s' in:\n%s", want, err);
	snprintf(want, sizeof(want), "gwmem: %s:3: 'max_chunks': expected an integer", f);
	ck_assert_msg(strstr(err, want), "missing '%s' in:\n%s", want, err);
	snprintf(want, sizeof(want), "gwmem: %s:4: 'blocks_per_chunk': 100000000 is out of range", f);
	ck_assert_msg(strstr(err, want), "missing '%s' in:\n%s", want, err);
	snprintf(want, sizeof(want), "gwmem: %s:6: 'pool_enabled': expected true or false", f);
	ck_assert_msg(strstr(err, want), "missing '%s' in:\n%s", want, err);
	snprintf(want, sizeof(want), "gwmem: %s:8: unknown key 'x' in unknown section [nonsense]", f);
	ck_assert_msg(strstr(err, want), "missing '%s' in:\n%s", want, err);
	snprintf(want, sizeof(want), "gwmem: %s:9: syntax error", f);
	ck_assert_msg(strstr(err, want), "missing '%s' in:\n%s", want, err);
	snprintf(want, sizeof(want), "gwmem: %s:11: 'fragmentation_threshold'", f);
	ck_assert_msg(strstr(err, want), "missing '%s' in:\n%s", want, err);
	snprintf(want, sizeof(want), "gwmem: %s:14: 'report_signal'", f);
	ck_assert_msg(strstr(err, want), "missing '%s' in:\n%s", want, err);
	int lines = 0;
	for (const char *p = err; *p; p++)
		lines += *p == '\n';
	ck_assert_int_eq(lines, 10);
	unlink(f);
}
END_TEST

START_TEST(test_unreadable_files)
{
	struct gwmem_config c, d;
	char err[1024];
	gwmem_config_defaults(&d);

	/* a directory */
	ck_assert_int_eq(load_capture(&c, "/tmp", GWMEM_CONFIG_NO_ENV, err, sizeof(err)), 1);
	ck_assert_ptr_nonnull(strstr(err, "gwmem: /tmp: is a directory"));
	ck_assert_int_eq(memcmp(&c, &d, sizeof(c)), 0);

	/* a missing file that was asked for */
	ck_assert_int_eq(load_capture(&c, "/nonexistent/gwmem.toml", GWMEM_CONFIG_NO_ENV, err, sizeof(err)), 1);
	ck_assert_ptr_nonnull(strstr(err, "no such file"));

	/* a huge file */
	strcpy(path, "/tmp/gwmem-test-config.XXXXXX");
	int fd = mkstemp(path);
	char block[4096];
	memset(block, '#', sizeof(block));
	for (int i = 0; i < 40; i++)
		ck_assert_int_eq(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
	close(fd);
	ck_assert_int_eq(load_capture(&c, path, GWMEM_CONFIG_NO_ENV, err, sizeof(err)), 1);
	ck_assert_ptr_nonnull(strstr(err, "larger than"));
	ck_assert_int_eq(memcmp(&c, &d, sizeof(c)), 0);
	unlink(path);

	/* binary garbage and an over-long line never crash */
	strcpy(path, "/tmp/gwmem-test-config.XXXXXX");
	fd = mkstemp(path);
	for (int i = 0; i < (int)sizeof(block); i++)
		block[i] = (char)(i * 7 + 3);
	ck_assert_int_eq(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
	close(fd);
	ck_assert_int_ge(load_capture(&c, path, GWMEM_CONFIG_NO_ENV | GWMEM_CONFIG_QUIET, err, sizeof(err)), 1);
	ck_assert_str_eq(err, "");
	unlink(path);
}
END_TEST

START_TEST(test_env_overrides)
{
	struct gwmem_config c;
	char err[1024];
	const char *f = write_file("[memory_pool]\nmax_chunks = 7\n");
	setenv("GWMEM_CONFIG", f, 1);
	setenv("GWMEM_MEMORY_POOL_MAX_CHUNKS", "50", 1);
	setenv("GWMEM_LEAK_DETECTION_THRESHOLD_SECONDS", "60", 1);
	setenv("GWMEM_MEMORY_LEAK_DETECTION_ENABLED", "false", 1);
	setenv("GWMEM_COMPACTION_AUTO_COMPACT", "bogus", 1);
	setenv("GWMEM_STATS", "1", 1);
	int n = load_capture(&c, NULL, 0, err, sizeof(err));
	ck_assert_int_eq(n, 1);
	ck_assert_ptr_nonnull(strstr(err, "gwmem: environment: GWMEM_COMPACTION_AUTO_COMPACT: expected true or false"));
	ck_assert_uint_eq(c.memory_pool.max_chunks, 50);
	ck_assert_uint_eq(c.leak_detection.threshold_seconds, 60);
	ck_assert(!c.memory.leak_detection_enabled);
	ck_assert(c.compaction.auto_compact);
	ck_assert(c.memory.stats_on_exit);
	/* with NO_ENV the file named by the caller is read and the environment ignored */
	ck_assert_int_eq(load_capture(&c, f, GWMEM_CONFIG_NO_ENV, err, sizeof(err)), 0);
	ck_assert_uint_eq(c.memory_pool.max_chunks, 7);
	ck_assert(c.memory.leak_detection_enabled);
	unlink(f);
}
END_TEST

START_TEST(test_signal_names)
{
	ck_assert_int_eq(gw_config_parse_signal("off"), 0);
	ck_assert_int_eq(gw_config_parse_signal("SIGUSR1"), SIGUSR1);
	ck_assert_int_eq(gw_config_parse_signal("USR2"), SIGUSR2);
	ck_assert_int_eq(gw_config_parse_signal("12"), 12);
	ck_assert_int_eq(gw_config_parse_signal("SIGSEGV"), -1);
	ck_assert_int_eq(gw_config_parse_signal("9"), -1);
	ck_assert_int_eq(gw_config_parse_signal("RTMIN+2"), SIGRTMIN + 2);
}
END_TEST

/* A comment after a quoted value is not part of it. */
START_TEST(test_value_then_comment)
{
	struct gwmem_config c;
	char err[1024];
	const char *f = write_file(
		"[leak_detection]\n"
		"report_dir = \"/var/log\" # where reports go\n"
		"shm_dir = '/dev/shm/x'\t# literal string\n"
		"unwinder = \"frame-pointer\"#no blank before it\n"
		"threshold_seconds = 42 # seconds\n");

	ck_assert_int_eq(load_capture(&c, f, GWMEM_CONFIG_NO_ENV, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	ck_assert_str_eq(c.leak_detection.report_dir, "/var/log");
	ck_assert_str_eq(c.leak_detection.shm_dir, "/dev/shm/x");
	ck_assert_int_eq(c.leak_detection.unwinder, GWMEM_UNWIND_FRAME_POINTER);
	ck_assert_uint_eq(c.leak_detection.threshold_seconds, 42);
	unlink(f);

	/* text after the closing quote is refused, with the line named */
	f = write_file("[leak_detection]\nreport_dir = \"/var/log\" junk\nshm_dir = \"/a\\\"b\\\\c\"\n");
	ck_assert_int_eq(load_capture(&c, f, GWMEM_CONFIG_NO_ENV, err, sizeof(err)), 1);
	ck_assert_ptr_nonnull(strstr(err, ":2: 'report_dir': unexpected text after the string"));
	ck_assert_str_eq(c.leak_detection.report_dir, "/tmp");
	ck_assert_str_eq(c.leak_detection.shm_dir, "/a\"b\\c");
	unlink(f);
}
END_TEST

/* Long lines: a 250-character path is read whole; a longer value is refused once. */
START_TEST(test_long_lines)
{
	struct gwmem_config c;
	char text[2048], dir[300], err[1024];
	const char *f;

	memset(dir, 'd', sizeof(dir));
	dir[0] = '/';
	dir[250] = '\0';
	snprintf(text, sizeof(text), "[leak_detection]\nreport_dir = \"%s\"   # a comment after a long value\n"
		 "threshold_seconds = 7\n", dir);
	f = write_file(text);
	ck_assert_int_eq(load_capture(&c, f, GWMEM_CONFIG_NO_ENV, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	ck_assert_str_eq(c.leak_detection.report_dir, dir);
	ck_assert_uint_eq(c.leak_detection.threshold_seconds, 7);
	unlink(f);

	dir[250] = 'd';
	dir[299] = '\0';
	snprintf(text, sizeof(text), "[leak_detection]\nreport_dir = \"%s\"\nthreshold_seconds = 7\n", dir);
	f = write_file(text);
	ck_assert_int_eq(load_capture(&c, f, GWMEM_CONFIG_NO_ENV, err, sizeof(err)), 1);
	ck_assert_ptr_nonnull(strstr(err, ":2: 'report_dir': value longer than 255 bytes"));
	ck_assert_str_eq(c.leak_detection.report_dir, "/tmp");
	ck_assert_uint_eq(c.leak_detection.threshold_seconds, 7);
	unlink(f);
}
END_TEST

START_TEST(test_section_with_blanks)
{
	struct gwmem_config c;
	char err[1024];
	const char *f = write_file(
		"[ memory ]\n"
		"pool_enabled = false\n"
		"[\tmemory_pool ]   # trailing comment\n"
		"max_chunks = 9\n"
		"[mem ory]\n"
		"pool_enabled = true\n"
		"[leak_detection] x\n"
		"threshold_seconds = 1\n");

	ck_assert_int_eq(load_capture(&c, f, GWMEM_CONFIG_NO_ENV, err, sizeof(err)), 2);
	ck_assert(!c.memory.pool_enabled);
	ck_assert_uint_eq(c.memory_pool.max_chunks, 9);
	ck_assert_uint_eq(c.leak_detection.threshold_seconds, 300);
	ck_assert_ptr_nonnull(strstr(err, ":5: syntax error in section header"));
	ck_assert_ptr_nonnull(strstr(err, ":7: syntax error in section header"));
	unlink(f);
}
END_TEST

/* A flood of bad keys prints a bounded number of lines, then one summary. */
START_TEST(test_diagnostics_rate_limited)
{
	static char text[3000 * 16 + 32];
	static char err[65536];
	struct gwmem_config c;
	size_t n = 0;
	int lines = 0;
	const char *f;

	n += (size_t)sprintf(text + n, "[memory]\n");
	for (int i = 0; i < 3000; i++)
		n += (size_t)sprintf(text + n, "bad_%d = 1\n", i);
	f = write_file(text);
	ck_assert_int_eq(load_capture(&c, f, GWMEM_CONFIG_NO_ENV, err, sizeof(err)), 3000);
	for (const char *p = err; *p; p++)
		lines += *p == '\n';
	ck_assert_int_eq(lines, 21);
	ck_assert_ptr_nonnull(strstr(err, ":2: unknown key 'bad_0' in [memory]"));
	ck_assert_ptr_nonnull(strstr(err, "... and 2980 more diagnostics not shown"));
	unlink(f);
}
END_TEST

struct diag_rec {
	int n;
	unsigned lines[8];
	char last[256];
};

static void on_diag(const char *file, unsigned line, const char *msg, void *arg)
{
	struct diag_rec *r = arg;

	ck_assert_ptr_nonnull(file);
	if (r->n < 8)
		r->lines[r->n] = line;
	r->n++;
	snprintf(r->last, sizeof(r->last), "%s", msg);
}

START_TEST(test_diagnostics_callback)
{
	struct gwmem_config c;
	struct diag_rec r = {0};
	char err[256];
	const char *f = write_file("[memory]\nnope = 1\npool_enabled = maybe\n[compaction]\nauto_compact = no\n");
	char errpath[] = "/tmp/gwmem-test-stderr.XXXXXX";
	int fd = mkstemp(errpath), saved = dup(2);

	dup2(fd, 2);
	ck_assert_int_eq(gwmem_config_load_diag(&c, f, GWMEM_CONFIG_NO_ENV, on_diag, &r), 2);
	dup2(saved, 2);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	ck_assert_int_le(read(fd, err, sizeof(err)), 0); /* nothing on stderr */
	close(fd);
	unlink(errpath);
	ck_assert_int_eq(r.n, 2);
	ck_assert_uint_eq(r.lines[0], 2);
	ck_assert_uint_eq(r.lines[1], 3);
	ck_assert_str_eq(r.last, "'pool_enabled': expected true or false, got 'maybe'; using the default");
	ck_assert(!c.compaction.auto_compact);
	ck_assert_int_eq(gwmem_config_load_diag(NULL, f, 0, on_diag, &r), -EINVAL);
	unlink(f);

	/* an escaped newline in a bad value does not split the diagnostic */
	f = write_file("[memory]\npool_enabled = \"a\\nb\\u\"\nstats_on_exit = \"x\\ty\"\n");
	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(gwmem_config_load_diag(&c, f, GWMEM_CONFIG_NO_ENV, on_diag, &r), 2);
	ck_assert_str_eq(r.last, "'stats_on_exit': expected true or false, got 'x?y'; using the default");
	unlink(f);
}
END_TEST

/*
 * libinih's line buffer holds INI_MAX_LINE - 1 bytes (4095 as meson.build
 * builds it): a longer key line is ignored with a diagnostic naming the
 * limit, a longer comment is no problem, and a line at the limit is read.
 */
START_TEST(test_line_limit)
{
	static char text[3 * INI_MAX_LINE + 256];
	char err[1024], want[256];
	struct gwmem_config c;
	const char *f;
	size_t n = 0;
	int len;

	n += (size_t)sprintf(text + n, "[leak_detection]\n");
	/* line 2: exactly INI_MAX_LINE - 1 bytes, a key and a long comment */
	len = sprintf(text + n, "threshold_seconds = 9 #");
	memset(text + n + len, 'c', (size_t)(INI_MAX_LINE - 1 - len));
	n += INI_MAX_LINE - 1;
	text[n++] = '\n';
	/* line 3: one byte more: ignored, with the limit named */
	len = sprintf(text + n, "max_frames = 3 #");
	memset(text + n + len, 'c', (size_t)(INI_MAX_LINE - len));
	n += INI_MAX_LINE;
	text[n++] = '\n';
	/* line 4: a comment far over the limit */
	text[n++] = '#';
	memset(text + n, 'c', INI_MAX_LINE + 10);
	n += INI_MAX_LINE + 10;
	n += (size_t)sprintf(text + n, "\nsample_rate = 5\n");  /* line 5 */
	text[n] = '\0';
	f = write_file(text);
	ck_assert_int_eq(load_capture(&c, f, GWMEM_CONFIG_NO_ENV, err, sizeof(err)), 1);
	snprintf(want, sizeof(want), "gwmem: %s:3: line longer than %d bytes; ignored\n", f, INI_MAX_LINE - 1);
	ck_assert_str_eq(err, want);
	ck_assert_uint_eq(c.leak_detection.threshold_seconds, 9);
	ck_assert_uint_eq(c.leak_detection.max_frames, 16);
	ck_assert_uint_eq(c.leak_detection.sample_rate, 5);
	unlink(f);
}
END_TEST

/*
 * What libinih would accept and TOML does not, and lines it cannot split:
 * every one gets its own diagnostic with its line number (inih itself only
 * returns the first), and the keys after a broken header are ignored.
 */
START_TEST(test_not_toml)
{
	struct diag_rec r = {0};
	struct gwmem_config c;
	const char *f = write_file(
		"\xef\xbb\xbf[memory]\n"           /* 1: a byte order mark */
		"pool_enabled: false\n"            /* 2: ':' is not TOML */
		"; a semicolon comment\n"          /* 3 */
		"garbage\n"                        /* 4 */
		"  stats_on_exit = true\n"         /* 5: indented: a key, not a continuation */
		"[memory_pool\n"                   /* 6: no ']' */
		"max_chunks = 9\n"                 /* 7: ignored */
		"[memory_pool_with_a_name_much_longer_than_inih_keeps_xx]\n" /* 8 */
		"max_chunks = 8\n"                 /* 9: ignored */
		"[compaction]\n"                   /* 10 */
		"auto_compact = false\n"           /* 11 */
		"more garbage\n");                 /* 12 */

	ck_assert_int_eq(gwmem_config_load_diag(&c, f, GWMEM_CONFIG_NO_ENV, on_diag, &r), 6);
	ck_assert_uint_eq(r.lines[0], 2);
	ck_assert_uint_eq(r.lines[1], 3);
	ck_assert_uint_eq(r.lines[2], 4);
	ck_assert_uint_eq(r.lines[3], 6);
	ck_assert_uint_eq(r.lines[4], 8);
	ck_assert_uint_eq(r.lines[5], 12);
	ck_assert_str_eq(r.last, "syntax error (expected [section] or key = value); line ignored");
	ck_assert(c.memory.pool_enabled);
	ck_assert(c.memory.stats_on_exit);
	ck_assert_uint_eq(c.memory_pool.max_chunks, 100);
	ck_assert(!c.compaction.auto_compact);
	unlink(f);
}
END_TEST

/*
 * The preload loads the configuration in the first thread that calls
 * malloc, whatever its stack: inih's 4 KiB line buffer is on that stack.
 * 64 KiB is half of musl's default thread stack.
 */
static void *load_on_thread(void *arg)
{
	struct gwmem_config *c = arg;

	return (void *)(intptr_t)gwmem_config_load(c, path, GWMEM_CONFIG_NO_ENV);
}

START_TEST(test_small_thread_stack)
{
	static char text[INI_MAX_LINE + 256];
	struct gwmem_config c;
	pthread_attr_t attr;
	pthread_t t;
	void *ret;
	size_t n = 0;

	n += (size_t)sprintf(text + n, "[memory_pool]\nmax_chunks = 12 #");
	memset(text + n, 'c', INI_MAX_LINE - 40);
	n += INI_MAX_LINE - 40;
	sprintf(text + n, "\n[leak_detection]\nreport_dir = \"/var/log/gw\"\n");
	write_file(text);
	pthread_attr_init(&attr);
	ck_assert_int_eq(pthread_attr_setstacksize(&attr, 64 * 1024), 0);
	ck_assert_int_eq(pthread_create(&t, &attr, load_on_thread, &c), 0);
	ck_assert_int_eq(pthread_join(t, &ret), 0);
	pthread_attr_destroy(&attr);
	ck_assert_int_eq((int)(intptr_t)ret, 0);
	ck_assert_uint_eq(c.memory_pool.max_chunks, 12);
	ck_assert_str_eq(c.leak_detection.report_dir, "/var/log/gw");
	unlink(path);
}
END_TEST

static Suite *suite_config(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("file");
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_good_file);
	tcase_add_test(tc, test_bad_keys_keep_defaults);
	tcase_add_test(tc, test_unreadable_files);
	tcase_add_test(tc, test_signal_names);
	tcase_add_test(tc, test_value_then_comment);
	tcase_add_test(tc, test_long_lines);
	tcase_add_test(tc, test_section_with_blanks);
	tcase_add_test(tc, test_diagnostics_rate_limited);
	tcase_add_test(tc, test_diagnostics_callback);
	tcase_add_test(tc, test_line_limit);
	tcase_add_test(tc, test_not_toml);
	tcase_add_test(tc, test_small_thread_stack);
	suite_add_tcase(s, tc);
	tc = tcase_create("env");
	tcase_add_test(tc, test_env_overrides);
	suite_add_tcase(s, tc);
	return s;
}

GW_TEST_MAIN(suite_config)
