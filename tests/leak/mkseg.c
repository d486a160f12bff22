/*
 * mkseg.c - writes a segment file built with tests/common/segbuild.h, for
 * the CLI tests that need content no real process would give them.
 *
 *     mkseg OUTPUT hostile   command line, executable and module path full of
 *                            terminal escapes, C1 controls, quotes, newlines
 *                            and bytes that are not UTF-8
 *     mkseg OUTPUT full      a plain segment whose table refused 1234567
 *                            allocations (untracked_table_full)
 *
 * The file is created 0600 and not replaced if it exists.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "segbuild.h"

/* ESC ] 0 ; title BEL retitles an xterm; ESC [ 2 J clears it; 0x9b is the 8-bit CSI. */
static const char hostile_cmdline[] =
	"evil\x1b]0;pwned\x07\0--clear=\x1b[2J\0--bad=\xff\xfe\xc3\x28\0--c1=\xc2\x9b" "31m\0q\"b\\s;x y";
static const char hostile_exe[] = "/tmp/\x1b[31mred\xc3\x28\x7f\n.bin";
static const char hostile_module[] = "/lib/\x1b[1mlib\x9b" "31m\xc2\x9b\"q\\b\n;x y.so";

static void build_hostile(void *seg)
{
	struct gwmem_shm_header *h = sb_hdr(seg);
	struct gwmem_shm_module *m = (void *)((char *)seg + SB_MOD_OFF);

	memset(h->cmdline, 0, sizeof(h->cmdline));
	memcpy(h->cmdline, hostile_cmdline, sizeof(hostile_cmdline) - 1);
	memset(h->exe, 0, sizeof(h->exe));
	memcpy(h->exe, hostile_exe, sizeof(hostile_exe) - 1);
	memset(m->path, 0, sizeof(m->path));
	memcpy(m->path, hostile_module, sizeof(hostile_module) - 1);
}

int main(int argc, char **argv)
{
	void *seg;
	int fd;

	if (argc != 3 || (strcmp(argv[2], "hostile") != 0 && strcmp(argv[2], "full") != 0)) {
		fprintf(stderr, "usage: mkseg OUTPUT hostile|full\n");
		return 1;
	}
	seg = sb_new(4242, 100);
	if (!seg)
		return 1;
	sb_stack_set(seg, 1, 3);
	sb_stack_set(seg, 2, 2);
	sb_record(seg, 0x10000, 100, 1, 5);
	sb_record(seg, 0x10010, 50, 1, 7);
	sb_record(seg, 0x10020, 7, 2, 9);
	sb_record(seg, 0x10030, 1, 0, 9);
	if (strcmp(argv[2], "hostile") == 0)
		build_hostile(seg);
	else
		sb_hdr(seg)->counters.untracked_table_full = 1234567;
	fd = open(argv[1], O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
	if (fd < 0 || write(fd, seg, SB_SIZE) != (ssize_t)SB_SIZE || close(fd) < 0) {
		perror(argv[1]);
		return 1;
	}
	free(seg);
	return 0;
}
