/*
 * cmd-clean.c - `gwmem clean`: remove the segments of processes that are gone.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared.h"

static const char help[] =
"NAME\n"
"    gwmem clean - remove the segments of processes that are gone\n"
"\n"
"SYNOPSIS\n"
"    gwmem clean [--dry-run] [--json] [--shm-dir DIR]\n"
"\n"
"DESCRIPTION\n"
"    Removes every segment gwmem.<pid>.<starttime> in the segment directory\n"
"    that is a regular file owned by the calling user and whose process is no\n"
"    longer running (no process with that pid, or one with another start\n"
"    time).  Segments of crashed and exited processes are kept until then on\n"
"    purpose, so take a `gwmem snapshot` first if you still need one.  Other\n"
"    files, other users' segments and symbolic links are never touched.\n"
"\n"
"OPTIONS\n"
"    -n, --dry-run   print what would be removed, remove nothing\n"
"    --json          {\"removed\": [paths], \"kept\": N}\n"
"    --shm-dir DIR   segment directory (default $GWMEM_SHM_DIR or " GWMEM_DEFAULT_SHM_DIR ")\n"
"    -h, --help      show this help\n"
"\n"
"EXIT STATUS\n"
"    0 ok, 1 usage error, 2 the directory is missing, 3 not readable,\n"
"    7 a removal failed.\n"
"\n"
"EXAMPLES\n"
"    gwmem clean --dry-run\n"
"    gwmem clean\n";

static int run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "shm-dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	bool dry = false, json = false;
	int ch, rc = 0;
	unsigned kept = 0, removed = 0;

	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "hn", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n': dry = true; break;
		case 'j': json = true; break;
		case 'd': dir = optarg; break;
		case 'h': return print_help(&cmd_clean);
		default: return usage_error(&cmd_clean, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc)
		return usage_error(&cmd_clean, "too many arguments");
	dir = shm_dir(dir);

	DIR *d = opendir(dir);
	if (!d) {
		int e = errno;
		fprintf(stderr, "gwmem clean: %s: %s\n", dir, strerror(e));
		return e == EACCES ? GWMEM_EXIT_ACCESS : GWMEM_EXIT_NOENT;
	}
	int dfd = dirfd(d);
	if (json)
		printf("{\"removed\": [");
	for (struct dirent *e; (e = readdir(d));) {
		struct stat st;
		pid_t pid;
		uint64_t starttime;

		if (!parse_segment_name(e->d_name, &pid, &starttime))
			continue;
		if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
		    st.st_uid != getuid())
			continue;
		if (proc_alive(pid, starttime)) {
			kept++;
			continue;
		}
		if (!dry && unlinkat(dfd, e->d_name, 0) < 0) {
			fprintf(stderr, "gwmem clean: %s/%s: %s\n", dir, e->d_name, strerror(errno));
			rc = GWMEM_EXIT_ERROR;
			continue;
		}
		if (json) {
			char path[PATH_MAX];
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			printf("%s", removed ? ", " : "");
			json_string(stdout, path);
		} else {
			printf("%s %s/%s\n", dry ? "would remove" : "removed", dir, e->d_name);
		}
		removed++;
	}
	closedir(d);
	if (json)
		printf("], \"kept\": %u, \"dry_run\": %s}\n", kept, dry ? "true" : "false");
	return rc;
}

const struct cmd cmd_clean = {
	.name = "clean",
	.summary = "remove segments of processes that are gone",
	.run = run,
	.help = help,
};
