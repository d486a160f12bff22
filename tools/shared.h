/*
 * shared.h - what every gwmem subcommand uses: exit codes, the common
 * options (--shm-dir, --json, --no-symbols, --help), the scan of the segment
 * directory, finding and opening a target's segment, process liveness, and
 * escaped output of strings that come from a segment.  The symbolizer's own
 * options (--sysroot, --debug-dir, --symbol-timeout) are in symbolize.h and
 * come with COMMON_SYMBOLS.
 *
 * Each cmd-<name>.c has one entry point, <name>_main, split into a parse
 * step (options into a struct of arguments), a collect step (read the
 * segments) and a print step (text, JSON, ...).
 */
#ifndef GWMEM_TOOLS_SHARED_H
#define GWMEM_TOOLS_SHARED_H

#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "escape.h"
#include "report.h"
#include "symbolize.h"
#include "view.h"

/* Exit status of every subcommand (docs/cli.md lists them). */
enum {
	GWMEM_EXIT_OK = 0,
	GWMEM_EXIT_USAGE = 1,
	GWMEM_EXIT_NOENT = 2,     /* no such process, no segment */
	GWMEM_EXIT_ACCESS = 3,    /* permission denied */
	GWMEM_EXIT_VERSION = 4,   /* segment layout version mismatch */
	GWMEM_EXIT_CORRUPT = 5,   /* corrupt segment or snapshot */
	GWMEM_EXIT_BUSY = 6,      /* segment being initialised or never quiet */
	GWMEM_EXIT_ERROR = 7,     /* other failure (I/O, memory) */
};

struct cmd {
	const char *name;
	const char *summary;
	int (*main)(int argc, char **argv);   /* argv[0] is the command's name */
	const char *help;
};

extern const struct cmd cmd_ps, cmd_stats, cmd_leaks, cmd_snapshot, cmd_diff, cmd_top,
	cmd_report, cmd_clean, cmd_symbolize;

/* A resolved target: its segment (or snapshot file) opened and validated. */
struct target {
	char path[PATH_MAX];
	struct gw_view view;
	bool live;            /* the process that wrote it runs now (pid + start time match) */
	bool snapshot;        /* a snapshot file written by `gwmem snapshot` */
};

/* --- common options (libinput's tools/shared.h) ------------------------- */

/* The common options a command takes; -h/--help is always taken. */
enum {
	COMMON_SHM_DIR = 1 << 0,      /* --shm-dir DIR */
	COMMON_JSON = 1 << 1,         /* --json */
	COMMON_SYMBOLS = 1 << 2,      /* --no-symbols, --sysroot, --debug-dir, --symbol-timeout */
};

struct common_opts {
	const char *shm_dir;          /* resolved: --shm-dir, else the environment, else the default */
	bool json;
	bool symbols;                 /* cleared by --no-symbols */
	struct symbolize_opts sym;    /* where to find module and debug files (symbolize.h) */
};

/*
 * A command's own option: ch is getopt_long's value (a short option letter
 * or the 'val' of a long one), arg its argument or NULL.  Returns 0, or an
 * exit status (usage_error() for a bad value).
 */
typedef int (*option_fn)(const struct cmd *c, void *args, int ch, const char *arg);

/* parse_options() went through argv and the command goes on. */
#define PARSE_OK (-1)

/*
 * getopt_long over argv with the command's own options (own: a list ended by
 * a zero entry, or NULL; shortopts: its short letters) and the common ones
 * named in 'common'.  Fills *co, calls fn for the command's own options and
 * sets *operand to the index of the first operand.  Returns PARSE_OK, 0
 * after printing --help, or GWMEM_EXIT_USAGE after a usage error.
 */
int parse_options(const struct cmd *c, int argc, char **argv, unsigned common,
		  const struct option *own, const char *shortopts, option_fn fn, void *args,
		  struct common_opts *co, int *operand);

/* Segment directory: opt, else $GWMEM_SHM_DIR, else the built-in default. */
const char *shm_dir(const char *opt);

/* --- the segment directory ---------------------------------------------- */

/* A name gwmem.<pid>.<starttime> in the segment directory. */
struct segment_entry {
	const char *dir;
	int dfd;                      /* the open directory, for the *at() calls */
	const char *name;
	pid_t pid;
	uint64_t starttime;
};

/* Returns 0 to go on, anything else to stop the scan with that value. */
typedef int (*segment_fn)(void *ctx, const struct segment_entry *e);

/*
 * Call fn for each segment name in dir, in directory order.  Returns 0,
 * what fn stopped with, or, when the directory cannot be opened or read,
 * the exit status for that error after printing "gwmem CMD: cannot read
 * segment directory DIR: REASON".
 */
int segment_foreach(const char *cmd, const char *dir, segment_fn fn, void *ctx);

/*
 * The exit status for a failed system call: errno is saved by the caller
 * right after the call that failed, before anything else (stdio included)
 * can change it.  EACCES, EPERM: GWMEM_EXIT_ACCESS; ENOENT, ENOTDIR:
 * GWMEM_EXIT_NOENT; anything else: GWMEM_EXIT_ERROR.
 */
int exit_for_errno(int err);

/* --- targets ------------------------------------------------------------ */

/*
 * Resolve "PID" (newest gwmem.<pid>.* whose start time matches the running
 * process, else the newest) or a path, open and validate it.  On failure
 * prints "gwmem <cmd>: ..." and returns the exit code; 0 on success.
 */
int target_open(const char *cmd, const char *arg, const char *dir, struct target *t);
void target_close(struct target *t);

/* Print an error for a gw_view_error and return the matching exit code. */
int view_fail(const char *cmd, const char *what, int err, const struct gw_view *v);

/* True if pid runs and (when starttime != 0) started at starttime. */
bool proc_alive(pid_t pid, uint64_t starttime);
/* "running", "exited", "crashed" or "starting". */
const char *segment_state(const struct gw_view *v);

/* Parse "gwmem.<pid>.<starttime>"; false for any other name. */
bool parse_segment_name(const char *name, pid_t *pid, uint64_t *starttime);

/* Totals from the stripe heads (cheap, not a snapshot). */
void stripe_totals(const struct gw_view *v, uint64_t *count, uint64_t *bytes, uint64_t *inserted);

bool parse_u64(const char *s, uint64_t *out);
/* Seconds with up to one decimal ("2", "0.5") into tenths. */
bool parse_seconds_ds(const char *s, uint64_t *out);

/* --- output ------------------------------------------------------------- */

/* Print the help text of cmd (to stdout) and return 0. */
int print_help(const struct cmd *c);
/* "gwmem <cmd>: <msg>. Try 'gwmem <cmd> --help'." and GWMEM_EXIT_USAGE. */
int usage_error(const struct cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Strings from a segment (command line, executable, module paths) and from
 * the files it names (symbols, source files) are attacker-controlled: they
 * reach stdout only through these, escaped for the output (escape.h).
 */
void put_escaped(FILE *f, enum gw_escape_mode mode, const char *s);
/* s as a quoted JSON string, valid UTF-8 whatever s holds. */
void json_string(FILE *f, const char *s);
/* The executable name of argv[0] in the command line. */
void command_name(const struct gw_view *v, char *dst, size_t cap);

#endif /* GWMEM_TOOLS_SHARED_H */
