/*
 * cmd-clean.c - `gwmem clean`: remove the segments of processes that are
 * gone.  The scan collects the candidates (regular files of ours whose
 * process is gone); then each is removed and printed.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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
"    files, other users' segments and symbolic links are never touched.  The\n"
"    segment of a process in another PID namespace (a container sharing the\n"
"    directory), whose pid means nothing here, is kept while its writer's\n"
"    heartbeat is less than 10 seconds old.\n"
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

struct clean_args {
	struct common_opts co;
	bool dry_run;
};

/* The segments to remove: regular files of ours whose process is gone. */
struct clean_list {
	char (*name)[256];
	size_t n, cap;
	unsigned kept;                /* segments of ours whose process runs */
};

static int clean_option(const struct cmd *c, void *args, int ch, const char *arg)
{
	struct clean_args *a = args;

	(void)c;
	(void)arg;
	if (ch == 'n')
		a->dry_run = true;
	return 0;
}

static int clean_parse(int argc, char **argv, struct clean_args *a)
{
	static const struct option own[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	int operand, rc = parse_options(&cmd_clean, argc, argv, COMMON_SHM_DIR | COMMON_JSON, own, "n",
					clean_option, a, &a->co, &operand);
	if (rc != PARSE_OK)
		return rc;
	if (operand != argc)
		return usage_error(&cmd_clean, "too many arguments");
	return PARSE_OK;
}

/* Heartbeats younger than this mean a live writer, whatever its pid says here. */
#define LIVE_HEARTBEAT_NS (10ull * 1000000000ull)

/*
 * The segment of a process in another PID namespace (a container sharing
 * shm_dir: the header names the writer's namespace) whose writer still
 * beats: the reporter thread refreshes the heartbeat once a second with
 * CLOCK_MONOTONIC, the same clock in every PID namespace.  Its pid says
 * nothing here (no such process, or another one).
 */
static bool foreign_live(int dfd, const char *name)
{
	struct gwmem_shm_header h;
	struct timespec ts;
	struct stat ns;
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	bool live = false;

	if (fd < 0)
		return false;
	if (pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) && h.magic == GWMEM_SHM_MAGIC &&
	    h.version >= 2 && h.pid_ns && stat("/proc/self/ns/pid", &ns) == 0 &&
	    h.pid_ns != (uint64_t)ns.st_ino &&
	    h.state == GWMEM_SHM_STATE_RUNNING && !(h.flags & GWMEM_SHM_FLAG_SNAPSHOT) &&
	    clock_gettime(CLOCK_MONOTONIC, &ts) == 0) {
		uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
		live = h.heartbeat_monotonic_ns <= now + LIVE_HEARTBEAT_NS &&
		       now - h.heartbeat_monotonic_ns < LIVE_HEARTBEAT_NS;
	}
	close(fd);
	return live;
}

/* Never follows a link, never takes another user's file or a live process's segment. */
static int clean_check(void *ctx, const struct segment_entry *e)
{
	struct clean_list *l = ctx;
	struct stat sb;

	if (fstatat(e->dfd, e->name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(sb.st_mode) ||
	    sb.st_uid != getuid())
		return 0;
	if (proc_alive(e->pid, e->starttime) || foreign_live(e->dfd, e->name)) {
		l->kept++;
		return 0;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		void *nn = realloc(l->name, cap * sizeof(*l->name));
		if (!nn)
			return GWMEM_EXIT_ERROR;
		l->name = nn;
		l->cap = cap;
	}
	snprintf(l->name[l->n++], sizeof(*l->name), "%s", e->name);
	return 0;
}

static int clean_collect(const struct clean_args *a, struct clean_list *l)
{
	return segment_foreach("clean", a->co.shm_dir, clean_check, l);
}

/*
 * Remove (unless --dry-run) and print each.  unlink() on a name that became
 * a symbolic link since the check removes the link, never its target.
 */
static int clean_remove_print(const struct clean_args *a, const struct clean_list *l)
{
	unsigned removed = 0;
	int rc = 0;

	if (a->co.json)
		printf("{\"removed\": [");
	for (size_t i = 0; i < l->n; i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", a->co.shm_dir, l->name[i]);
		if (!a->dry_run && unlink(path) < 0) {
			int err = errno;
			fflush(stdout);
			fprintf(stderr, "gwmem clean: %s: %s\n", path, strerror(err));
			rc = GWMEM_EXIT_ERROR;
			continue;
		}
		if (a->co.json) {
			printf("%s", removed ? ", " : "");
			json_string(stdout, path);
		} else {
			printf("%s %s\n", a->dry_run ? "would remove" : "removed", path);
		}
		removed++;
	}
	if (a->co.json)
		printf("], \"kept\": %u, \"dry_run\": %s}\n", l->kept, a->dry_run ? "true" : "false");
	return rc;
}

static int clean_main(int argc, char **argv)
{
	struct clean_args a = { 0 };
	struct clean_list l = { 0 };
	int rc = clean_parse(argc, argv, &a);

	if (rc != PARSE_OK)
		return rc;
	rc = clean_collect(&a, &l);
	if (!rc)
		rc = clean_remove_print(&a, &l);
	free(l.name);
	return rc;
}

const struct cmd cmd_clean = {
	.name = "clean",
	.summary = "remove segments of processes that are gone",
	.main = clean_main,
	.help = help,
};
