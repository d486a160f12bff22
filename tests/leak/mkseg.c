/*
 * mkseg.c - writes a segment file built with tests/common/segbuild.h, for
 * the CLI tests that need content no real process would give them.
 *
 *     mkseg OUTPUT hostile   command line, executable and module path full of
 *                            terminal escapes, C1 controls, quotes, newlines
 *                            and bytes that are not UTF-8
 *     mkseg OUTPUT full      a plain segment whose table refused 1234567
 *                            allocations (untracked_table_full)
 *     mkseg OUTPUT segfull   the same, 77 refused because the segment could
 *                            not grow, 3 times (untracked_segment_full)
 *
 *     mkseg OUTPUT foreign BITS EXE BIAS END BUILD-ID SIZE:RET[,RET...]...
 *                            the segment of a process of another architecture
 *                            (BITS 32 or 64): its executable EXE mapped at
 *                            [BIAS, END) with BUILD-ID (hex), and for each
 *                            further argument one stack of return addresses
 *                            (hex, innermost first) holding one SIZE-byte
 *                            allocation; for the symbolization tests
 *
 * The file is created 0600 and not replaced if it exists.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
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

/* The foreign mode: argv[3..] as described above.  0, or 1 on a bad argument. */
static int build_foreign(void *seg, int argc, char **argv)
{
	struct gwmem_shm_header *h = sb_hdr(seg);
	struct gwmem_shm_module *m = (void *)((char *)seg + SB_MOD_OFF);
	const char *hex = argv[7];
	size_t n = strlen(hex);

	if (argc < 9 || argc - 8 > (int)SB_STACKS || n % 2 || n / 2 > sizeof(m->build_id))
		return 1;
	h->pointer_bits = (uint32_t)strtoul(argv[3], NULL, 10);
	memset(h->exe, 0, sizeof(h->exe));
	snprintf(h->exe, sizeof(h->exe), "%s", argv[4]);
	memset(m, 0, sizeof(*m));
	snprintf(m->path, sizeof(m->path), "%s", argv[4]);
	m->bias = m->start = strtoull(argv[5], NULL, 16);
	m->end = strtoull(argv[6], NULL, 16);
	for (size_t i = 0; i < n / 2; i++) {
		char b[3] = { hex[2 * i], hex[2 * i + 1], 0 };
		m->build_id[i] = (uint8_t)strtoul(b, NULL, 16);
	}
	m->build_id_len = (uint32_t)(n / 2);
	for (int a = 8; a < argc; a++) {
		uint32_t id = (uint32_t)(a - 7), depth = 0;
		struct gwmem_shm_stack *e = sb_stack(seg, id);
		char *p = argv[a], *end;
		uint64_t size = strtoull(p, &end, 10);
		if (*end != ':')
			return 1;
		for (p = end + 1; *p && depth < SB_FRAMES; p = *end ? end + 1 : end)
			e->frames[depth++] = strtoull(p, &end, 16);
		e->depth = depth;
		e->hash = 0x2000 + id;
		h->counters.stacks_used++;
		if (sb_record(seg, 0x20000 + 0x10 * (uint64_t)id, size, id, 1) != 0)
			return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	void *seg;
	int fd;

	if (argc >= 3 && strcmp(argv[2], "foreign") == 0) {
		seg = sb_new(4343, 100);
		if (!seg || build_foreign(seg, argc, argv)) {
			fprintf(stderr, "usage: mkseg OUTPUT foreign BITS EXE BIAS END BUILD-ID SIZE:RET[,RET...]...\n");
			return 1;
		}
		goto write;
	}
	if (argc != 3 || (strcmp(argv[2], "hostile") != 0 && strcmp(argv[2], "full") != 0 &&
			  strcmp(argv[2], "segfull") != 0)) {
		fprintf(stderr, "usage: mkseg OUTPUT hostile|full|segfull\n");
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
	else if (strcmp(argv[2], "full") == 0)
		sb_hdr(seg)->counters.untracked_table_full = 1234567;
	else {
		sb_hdr(seg)->counters.untracked_table_full = 77;
		sb_hdr(seg)->counters.untracked_segment_full = 3;
	}
write:
	fd = open(argv[1], O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
	if (fd < 0 || write(fd, seg, SB_SIZE) != (ssize_t)SB_SIZE || close(fd) < 0) {
		perror(argv[1]);
		return 1;
	}
	free(seg);
	return 0;
}
