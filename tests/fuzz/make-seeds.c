/*
 * make-seeds.c - writes the fuzzers' seed corpus: segments built by the
 * test segment builder (tests/common/segbuild.h, the one the reader and CLI
 * tests use), as live segments and as snapshot files, and configuration
 * files covering every section, value type and comment form.
 *
 *   make-seeds DIR     creates DIR/view, DIR/snapshot, DIR/config
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "segbuild.h"

static int put(const char *dir, const char *sub, const char *name, const void *data, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		return -1;
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len) {
		perror(path);
		return -1;
	}
	return fclose(f);
}

/* A segment with n stacks and records spread over them. */
static void *segment(uint32_t nstacks, uint32_t nrec, int snapshot)
{
	void *seg = sb_new(4242, 6000);

	for (uint32_t id = 1; id <= nstacks && id <= SB_STACKS; id++)
		sb_stack_set(seg, id, 1 + id % SB_FRAMES);
	for (uint32_t i = 0; i < nrec; i++)
		sb_record(seg, 0x10000 + (uint64_t)i * 64, 16 + i * 8, nstacks ? 1 + i % nstacks : 0,
			  i * 10);
	if (!snapshot)
		sb_hdr(seg)->flags &= ~GWMEM_SHM_FLAG_SNAPSHOT;
	return seg;
}

static const char *configs[][2] = {
	{ "full.toml",
	  "[memory]\npool_enabled = true\nleak_detection_enabled = true\ncompaction_enabled = true\n\n"
	  "[memory_pool]\ndefault_block_size = 1024\nblocks_per_chunk = 256\nmax_chunks = 100\n\n"
	  "[object_pool]\nmax_objects = 1000\nreset_on_return = true\nauto_shrink = true\n\n"
	  "[leak_detection]\ntracking_enabled = true\nthreshold_seconds = 300\n"
	  "max_tracked_allocations = 10000\nshm_dir = \"/dev/shm\"\nreport_dir = \"/tmp\"\n"
	  "report_signal = \"SIGUSR1\"\nunwinder = \"auto\"\nsample_rate = 1\n\n"
	  "[compaction]\nfragmentation_threshold = 0.3\nauto_compact = true\n"
	  "compact_interval_seconds = 60\n" },
	{ "comments.toml",
	  "# a comment\n[ memory ]   # section with blanks\npool_enabled=false # trailing\n"
	  "[leak_detection]\nreport_dir = \"/var/log\" # comment after a string\n"
	  "threshold_seconds = 1_000\n" },
	{ "bad.toml",
	  "[memory\npool_enabled = maybe\n[nosuch]\nkey = 1\n[memory_pool]\nmax_chunks = -5\n"
	  "blocks_per_chunk = 99999999999999999999\n= value\nnovalue =\n\"quoted\" = 1\n" },
	{ "strings.toml",
	  "[leak_detection]\nshm_dir = \"/dev/shm/\\u00e9\\t\\\"x\\\"\"\nreport_dir = 'literal'\n"
	  "report_signal = 12\nunwinder = \"frame-pointer\"\n" },
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	const char *dir = argv[1];
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		perror(dir);
		return 1;
	}
	static const uint32_t shapes[][2] = { { 0, 0 }, { 1, 1 }, { 4, 12 }, { 16, 28 } };
	for (unsigned i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		char name[64];
		void *seg = segment(shapes[i][0], shapes[i][1], 0);
		snprintf(name, sizeof(name), "segment-%u.bin", i);
		if (put(dir, "view", name, seg, SB_SIZE) != 0)
			return 1;
		free(seg);
		seg = segment(shapes[i][0], shapes[i][1], 1);
		snprintf(name, sizeof(name), "snapshot-%u.snap", i);
		if (put(dir, "snapshot", name, seg, SB_SIZE) != 0 || put(dir, "view", name, seg, SB_SIZE) != 0)
			return 1;
		free(seg);
	}
	for (unsigned i = 0; i < sizeof(configs) / sizeof(configs[0]); i++)
		if (put(dir, "config", configs[i][0], configs[i][1], strlen(configs[i][1])) != 0)
			return 1;
	printf("seeds written to %s\n", dir);
	return 0;
}
