/*
 * shared.c - the common options, the segment-directory scan, segment lookup,
 * error reporting and small parsers shared by the gwmem subcommands.  The
 * segment is untrusted: everything that reads it goes through
 * lib/segment/view.c, and its strings reach stdout through put_escaped().
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "os.h"
#include "shared.h"

/* --- common options ----------------------------------------------------- */

/* getopt_long values of the common options: above every short option letter */
enum {
	OPT_SHM_DIR = 0x100,
	OPT_JSON,
	OPT_NO_SYMBOLS,
};

static const struct option symbolize_options[] = { SYMBOLIZE_LONGOPTS };

static const struct {
	unsigned flag;
	struct option opt;
} common_options[] = {
	{ COMMON_SHM_DIR, { "shm-dir", required_argument, NULL, OPT_SHM_DIR } },
	{ COMMON_JSON, { "json", no_argument, NULL, OPT_JSON } },
	{ COMMON_SYMBOLS, { "no-symbols", no_argument, NULL, OPT_NO_SYMBOLS } },
	{ 0, { "help", no_argument, NULL, 'h' } },
};

#define MAX_OPTIONS 32

int parse_options(const struct cmd *c, int argc, char **argv, unsigned common,
		  const struct option *own, const char *shortopts, option_fn fn, void *args,
		  struct common_opts *co, int *operand)
{
	struct option longopts[MAX_OPTIONS];
	char shorts[64];
	size_t n = 0;
	int ch;

	for (; own && own->name && n < MAX_OPTIONS - 8; own++)
		longopts[n++] = *own;
	for (size_t i = 0; i < sizeof(common_options) / sizeof(common_options[0]); i++)
		if (!common_options[i].flag || (common & common_options[i].flag))
			longopts[n++] = common_options[i].opt;
	if (common & COMMON_SYMBOLS)
		for (size_t i = 0; i < sizeof(symbolize_options) / sizeof(symbolize_options[0]); i++)
			longopts[n++] = symbolize_options[i];
	memset(&longopts[n], 0, sizeof(longopts[n]));
	/* leading ':': a missing argument is told apart from an unknown option */
	snprintf(shorts, sizeof(shorts), ":h%s", shortopts ? shortopts : "");

	co->shm_dir = NULL;
	co->json = false;
	co->symbols = true;
	symbolize_opts_init(&co->sym, c->name);
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, shorts, longopts, NULL)) != -1) {
		int rc = 0;
		switch (ch) {
		case 'h':
			return print_help(c);
		case OPT_SHM_DIR:
			co->shm_dir = optarg;
			break;
		case OPT_JSON:
			co->json = true;
			break;
		case OPT_NO_SYMBOLS:
			co->symbols = false;
			break;
		case ':':
			return usage_error(c, "option '%s' needs an argument", argv[optind - 1]);
		case '?':
			return usage_error(c, "unknown option '%s'", argv[optind - 1]);
		default:
			if (common & COMMON_SYMBOLS) {
				int taken = symbolize_opt(&co->sym, ch, optarg);
				if (taken < 0)
					return GWMEM_EXIT_USAGE;    /* symbolize_opt() said why */
				if (taken)
					break;
			}
			rc = fn ? fn(c, args, ch, optarg) : usage_error(c, "unknown option '%s'", argv[optind - 1]);
			if (rc)
				return rc;
		}
	}
	co->shm_dir = shm_dir(co->shm_dir);
	*operand = optind;
	return PARSE_OK;
}

const char *shm_dir(const char *opt)
{
	const char *e;

	if (opt && *opt)
		return opt;
	e = getenv("GWMEM_SHM_DIR");
	if (e && *e)
		return e;
	/* the preload's own override, so one environment serves both */
	e = getenv("GWMEM_LEAK_DETECTION_SHM_DIR");
	if (e && *e)
		return e;
	return GWMEM_DEFAULT_SHM_DIR;
}

bool parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!s || !*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return true;
}

bool parse_seconds_ds(const char *s, uint64_t *out)
{
	char whole[32];
	const char *dot = strchr(s, '.');
	uint64_t w, frac = 0;
	size_t n = dot ? (size_t)(dot - s) : strlen(s);

	if (n == 0 || n >= sizeof(whole))
		return false;
	memcpy(whole, s, n);
	whole[n] = '\0';
	if (!parse_u64(whole, &w) || w > UINT32_MAX)
		return false;
	if (dot) {
		if (!(dot[1] >= '0' && dot[1] <= '9'))
			return false;
		frac = (uint64_t)(dot[1] - '0');
		for (const char *p = dot + 2; *p; p++)
			if (*p < '0' || *p > '9')
				return false;
	}
	*out = w * 10 + frac;
	return true;
}

bool parse_segment_name(const char *name, pid_t *pid, uint64_t *starttime)
{
	size_t plen = strlen(GWMEM_SHM_PREFIX);
	char buf[64];
	uint64_t p, st;

	if (strncmp(name, GWMEM_SHM_PREFIX, plen) != 0)
		return false;
	name += plen;
	const char *dot = strchr(name, '.');
	if (!dot || (size_t)(dot - name) >= sizeof(buf))
		return false;
	memcpy(buf, name, (size_t)(dot - name));
	buf[dot - name] = '\0';
	if (!parse_u64(buf, &p) || p == 0 || p > INT32_MAX)
		return false;
	/* <starttime>, or <starttime>.<16 hex digits> when the plain name was
	 * taken by a file that was not the process's own */
	const char *start = dot + 1, *sfx = strchr(start, '.');
	if (sfx) {
		if ((size_t)(sfx - start) >= sizeof(buf) || strlen(sfx + 1) != 16 ||
		    strspn(sfx + 1, "0123456789abcdef") != 16)
			return false;
		memcpy(buf, start, (size_t)(sfx - start));
		buf[sfx - start] = '\0';
		start = buf;
	}
	if (!parse_u64(start, &st))
		return false;
	*pid = (pid_t)p;
	*starttime = st;
	return true;
}

bool proc_alive(pid_t pid, uint64_t starttime)
{
	if (pid <= 0)
		return false;
	if (kill(pid, 0) < 0 && errno != EPERM)
		return false;
	if (!starttime)
		return true;
	return gw_os_proc_starttime(pid) == starttime;
}

/* The writer ran in another PID namespace: its pid means nothing here. */
static bool pid_ns_foreign(const struct gwmem_shm_header *h)
{
	struct stat ns;

	return h->version >= 2 && h->pid_ns && stat("/proc/self/ns/pid", &ns) == 0 &&
	       h->pid_ns != (uint64_t)ns.st_ino;
}

/* Refreshed once a second by a live writer (CLOCK_MONOTONIC: the same in every namespace). */
static bool heartbeat_fresh(const struct gwmem_shm_header *h)
{
	struct timespec ts;
	uint64_t now;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		return false;
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	return h->heartbeat_monotonic_ns <= now + 10000000000ull &&
	       now - h->heartbeat_monotonic_ns < 10000000000ull;
}

const char *segment_state(const struct gw_view *v)
{
	const struct gwmem_shm_header *h = &v->hdr;

	switch (h->state) {
	case GWMEM_SHM_STATE_STARTING:
		return "starting";
	case GWMEM_SHM_STATE_EXITED:
		return "exited";
	default:
		if (pid_ns_foreign(h))
			return heartbeat_fresh(h) ? "running" : "crashed";
		return proc_alive((pid_t)h->pid, h->proc_starttime) ? "running" : "crashed";
	}
}

void stripe_totals(const struct gw_view *v, uint64_t *count, uint64_t *bytes, uint64_t *inserted)
{
	const struct gwmem_shm_header *h = &v->hdr;
	const struct gwmem_shm_stripe *s = (const void *)(v->base + h->stripes_offset);

	*count = *bytes = 0;
	if (inserted)
		*inserted = 0;
	for (uint32_t i = 0; i < h->nstripes; i++) {
		*count += __atomic_load_n(&s[i].count, __ATOMIC_RELAXED);
		*bytes += __atomic_load_n(&s[i].bytes, __ATOMIC_RELAXED);
		if (inserted)
			*inserted += __atomic_load_n(&s[i].inserted, __ATOMIC_RELAXED);
	}
}

int view_fail(const char *cmd, const char *what, int err, const struct gw_view *v)
{
	const char *why = v && v->why ? v->why : NULL;

	if (err == GW_VIEW_ERR_VERSION && v)
		fprintf(stderr, "gwmem %s: %s: %s (segment has version %u, this gwmem reads version %u)\n",
			cmd, what, gw_view_strerror(err), v->hdr.version, GWMEM_SHM_VERSION);
	else if (why)
		fprintf(stderr, "gwmem %s: %s: %s: %s\n", cmd, what, gw_view_strerror(err), why);
	else
		fprintf(stderr, "gwmem %s: %s: %s\n", cmd, what, gw_view_strerror(err));
	switch (err) {
	case GW_VIEW_ERR_NOENT: return GWMEM_EXIT_NOENT;
	case GW_VIEW_ERR_ACCESS: return GWMEM_EXIT_ACCESS;
	case GW_VIEW_ERR_VERSION: return GWMEM_EXIT_VERSION;
	case GW_VIEW_ERR_CORRUPT: return GWMEM_EXIT_CORRUPT;
	case GW_VIEW_ERR_BUSY: return GWMEM_EXIT_BUSY;
	default: return GWMEM_EXIT_ERROR;
	}
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* --- the segment directory ---------------------------------------------- */

int exit_for_errno(int err)
{
	switch (err) {
	case EACCES:
	case EPERM:
		return GWMEM_EXIT_ACCESS;
	case ENOENT:
	case ENOTDIR:
		return GWMEM_EXIT_NOENT;
	default:
		return GWMEM_EXIT_ERROR;
	}
}

static int dir_error(const char *cmd, const char *dir, int err)
{
	fprintf(stderr, "gwmem %s: cannot read segment directory %s: %s\n", cmd, dir, strerror(err));
	return exit_for_errno(err);
}

int segment_foreach(const char *cmd, const char *dir, segment_fn fn, void *ctx)
{
	struct segment_entry e = { .dir = dir };
	DIR *d = opendir(dir);
	int rc = 0;

	if (!d)
		return dir_error(cmd, dir, errno);
	e.dfd = dirfd(d);
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			int err = errno;    /* 0 at the end of the directory */
			if (err)
				rc = dir_error(cmd, dir, err);
			break;
		}
		if (!parse_segment_name(de->d_name, &e.pid, &e.starttime))
			continue;
		e.name = de->d_name;
		rc = fn(ctx, &e);
		if (rc)
			break;
	}
	closedir(d);
	return rc;
}

/* --- targets ------------------------------------------------------------ */

struct find_ctx {
	pid_t pid;
	uint64_t live_st;      /* start time of the running process, 0 if none */
	uid_t live_uid;        /* its owner (of /proc/<pid>) */
	uint64_t best;
	bool found, exact;
	bool forged;           /* a file with its exact name, owned by someone else */
	uid_t forged_uid;
	char name[256];
	char forged_name[256];
};

static int find_one(void *ctx, const struct segment_entry *e)
{
	struct find_ctx *f = ctx;
	struct stat sb;

	if (e->pid != f->pid || f->exact)
		return 0;
	if (f->live_st && e->starttime == f->live_st) {
		/* a running process's segment is its own file (or root's: made
		 * before it dropped privileges); another user can plant
		 * gwmem.<pid>.<starttime>, both are public in /proc */
		if (fstatat(e->dfd, e->name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
		    (sb.st_uid != f->live_uid && sb.st_uid != 0)) {
			f->forged = true;
			f->forged_uid = fstatat(e->dfd, e->name, &sb, AT_SYMLINK_NOFOLLOW) == 0 ? sb.st_uid : (uid_t)-1;
			snprintf(f->forged_name, sizeof(f->forged_name), "%s", e->name);
			return 0;
		}
		f->exact = true;
	} else if (f->found && e->starttime < f->best) {
		return 0;
	}
	f->best = e->starttime;
	f->found = true;
	snprintf(f->name, sizeof(f->name), "%s", e->name);
	return 0;
}

/* Newest gwmem.<pid>.* in dir, preferring the one of the running process. */
static int find_segment(const char *cmd, const char *dir, pid_t pid, char *path, size_t cap)
{
	struct find_ctx f = { .pid = pid };
	int rc;

	struct stat ps;
	char proc[32];
	snprintf(proc, sizeof(proc), "/proc/%d", (int)pid);
	f.live_st = proc_alive(pid, 0) ? gw_os_proc_starttime(pid) : 0;
	if (f.live_st && stat(proc, &ps) == 0)
		f.live_uid = ps.st_uid;
	else
		f.live_st = 0;
	rc = segment_foreach(cmd, dir, find_one, &f);
	if (rc)
		return rc;
	if (f.forged && !f.exact) {
		fprintf(stderr, "gwmem %s: %s/%s is owned by uid %d, but process %d runs as uid %d: "
			"not its segment (planted?); refusing to read it\n", cmd, dir, f.forged_name,
			(int)f.forged_uid, (int)pid, (int)f.live_uid);
		return GWMEM_EXIT_ACCESS;
	}
	if (f.live_st && f.found && !f.exact)
		fprintf(stderr, "gwmem %s: warning: process %d has no segment of its own in %s; "
			"%s is of an earlier process with that pid\n", cmd, (int)pid, dir, f.name);
	if (!f.found) {
		if (proc_alive(pid, 0))
			fprintf(stderr, "gwmem %s: process %d has no gwmem segment in %s "
				"(was it started with LD_PRELOAD=libgwmem-preload.so?)\n", cmd, (int)pid, dir);
		else
			fprintf(stderr, "gwmem %s: no such process %d and no segment for it in %s\n",
				cmd, (int)pid, dir);
		return GWMEM_EXIT_NOENT;
	}
	snprintf(path, cap, "%s/%s", dir, f.name);
	return 0;
}

int target_open(const char *cmd, const char *arg, const char *dir, struct target *t)
{
	int err;

	memset(t, 0, sizeof(*t));
	if (all_digits(arg)) {
		uint64_t pid;
		if (!parse_u64(arg, &pid) || pid == 0 || pid > INT32_MAX) {
			fprintf(stderr, "gwmem %s: invalid pid '%s'\n", cmd, arg);
			return GWMEM_EXIT_USAGE;
		}
		err = find_segment(cmd, dir, (pid_t)pid, t->path, sizeof(t->path));
		if (err)
			return err;
	} else {
		snprintf(t->path, sizeof(t->path), "%s", arg);
	}
	err = gw_view_open(&t->view, t->path);
	if (err)
		return view_fail(cmd, t->path, err, &t->view);
	t->snapshot = (t->view.hdr.flags & GW_VIEW_FLAG_SNAPSHOT) != 0;
	t->live = !t->snapshot && t->view.hdr.state != GWMEM_SHM_STATE_EXITED &&
		  proc_alive((pid_t)t->view.hdr.pid, t->view.hdr.proc_starttime);
	return 0;
}

void target_close(struct target *t)
{
	gw_view_close(&t->view);
}

int print_help(const struct cmd *c)
{
	fputs(c->help, stdout);
	return 0;
}

int usage_error(const struct cmd *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "gwmem %s: ", c->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'gwmem %s --help'.\n", c->name);
	return GWMEM_EXIT_USAGE;
}

static void file_put(void *ctx, const char *s, size_t n)
{
	fwrite(s, 1, n, ctx);
}

void put_escaped(FILE *f, enum gw_escape_mode mode, const char *s)
{
	gw_escape(mode, s, file_put, f);
}

void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	put_escaped(f, GW_ESC_JSON, s);
	fputc('"', f);
}

void command_name(const struct gw_view *v, char *dst, size_t cap)
{
	const char *argv0 = v->hdr.cmdline;   /* NUL-terminated: validated */
	const char *slash = strrchr(argv0, '/');
	const char *name = slash ? slash + 1 : argv0;

	if (!*name) {
		slash = strrchr(v->hdr.exe, '/');
		name = slash ? slash + 1 : v->hdr.exe;
	}
	snprintf(dst, cap, "%s", name);
}
