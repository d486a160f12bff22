/*
 * fuzz-elffile.c - libFuzzer harness for the module file reader: the input
 * is the content of a file a segment names as a module or debug file (an
 * ELF file of any class, byte order or machine, or not one at all).  It is
 * opened the way the SIGUSR1 reporter opens it (copied into anonymous
 * memory), then its build-id, symbols, debug link and line table are read
 * for a few addresses, some taken from the input itself.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elffile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];

static void remove_file(void)
{
	unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_elffile e;
	char name[256], file[512], hex[2 * GW_ELFFILE_BUILD_ID_MAX + 1];
	uint64_t off, tail = 0;
	uint32_t line;

	if (fd < 0) {
		snprintf(path, sizeof(path), "/tmp/gwmem-fuzz-elffile.XXXXXX");
		fd = mkstemp(path);
		if (fd < 0)
			return 0;
		atexit(remove_file);
	}
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		return 0;
	if (gw_elffile_open(&e, path, GW_ELFFILE_COPY) != 0)
		return 0;
	gw_elffile_build_id_hex(e.build_id, e.build_id_len, hex, sizeof(hex));
	gw_elffile_debuglink(&e, name, sizeof(name));
	if (size >= 8)
		memcpy(&tail, data + size - 8, 8);
	/* sorted, as gw_elffile_lines wants them */
	struct gw_elffile_line_req reqs[4] = {
		{ .vaddr = 0x400 }, { .vaddr = 0x1139 }, { .vaddr = 0x10000 }, { .vaddr = tail | 0x20000 },
	};
	if (reqs[3].vaddr < reqs[2].vaddr)
		reqs[3].vaddr = reqs[2].vaddr;
	for (int i = 0; i < 4; i++) {
		(void)gw_elffile_symbol(&e, reqs[i].vaddr, name, sizeof(name), &off);
		(void)gw_elffile_line(&e, reqs[i].vaddr, file, sizeof(file), &line);
	}
	gw_elffile_lines(&e, reqs, 4);
	for (int i = 0; i < 4; i++)
		(void)gw_elffile_line_file(&e, &reqs[i], file, sizeof(file));
	gw_elffile_close(&e);
	return 0;
}
