/*
 * fuzz-snapshot.c - libFuzzer harness for the snapshot and segment file
 * reader: the input is the content of a file that `gwmem leaks FILE`,
 * `diff` or `report` would open (a `gwmem snapshot` file, a copied or
 * planted segment).  gw_view_open() checks the file type and size, maps it
 * and validates it; then everything a command does with it runs.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz-view.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];

static void remove_file(void)
{
	unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_view v;

	if (fd < 0) {
		/* a real file: the reader opens with O_NOFOLLOW, so no /proc/self/fd
		 * link; removed at exit by the harness's atexit handler */
		snprintf(path, sizeof(path), "/tmp/gwmem-fuzz-snapshot.XXXXXX");
		fd = mkstemp(path);
		if (fd < 0)
			return 0;
		atexit(remove_file);
	}
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		return 0;
	if (gw_view_open(&v, path) == 0) {
		fuzz_exercise(&v);
		gw_view_close(&v);
	}
	return 0;
}
