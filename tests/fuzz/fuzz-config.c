/*
 * fuzz-config.c - libFuzzer harness for the configuration parser
 * (lib/common/options.c): the input is a gwmem.toml.  Whatever the bytes,
 * the parser returns with every option in its range and every string
 * NUL-terminated inside its field, and each diagnostic is one line.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gwmem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void count_diag(const char *file, unsigned line, const char *message, void *arg)
{
	(void)file; (void)line;
	/* every diagnostic is one line of text */
	if (!message || strchr(message, '\n'))
		abort();
	(*(unsigned *)arg)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	struct gwmem_config cfg;
	unsigned lines = 0;

	if (fd < 0) {
		fd = memfd_create("gwmem-fuzz-config", MFD_CLOEXEC);
		if (fd < 0)
			return 0;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		return 0;
	gwmem_config_load_diag(&cfg, path, GWMEM_CONFIG_NO_ENV | GWMEM_CONFIG_QUIET, count_diag, &lines);
	if (strnlen(cfg.leak_detection.shm_dir, sizeof(cfg.leak_detection.shm_dir)) ==
		    sizeof(cfg.leak_detection.shm_dir) ||
	    strnlen(cfg.leak_detection.report_dir, sizeof(cfg.leak_detection.report_dir)) ==
		    sizeof(cfg.leak_detection.report_dir))
		abort();
	if (cfg.compaction.fragmentation_threshold < 0 || cfg.compaction.fragmentation_threshold > 1)
		abort();
	/* a diagnostic per line at most, and a few for the file itself */
	if (lines > size + 4)
		abort();
	return 0;
}
