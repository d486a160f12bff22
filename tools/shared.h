/*
 * shared.h - what every gwmem subcommand uses: exit codes, finding and
 * opening a target's segment, process liveness, common option parsing.
 */
#ifndef GWMEM_TOOLS_SHARED_H
#define GWMEM_TOOLS_SHARED_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "escape.h"
#include "report.h"
#include "view.h"

/* Exit status of every subcommand (docs/cli.md lists them). */
enum {
	GWMEM_EXIT_OK = 0,
	GWMEM_EXIT_USAGE = 1,
	GWMEM_EXIT_NOENT = 2,       /* no such process, no segment */
	GWMEM_EXIT_ACCESS = 3,      /* permission denied */
	GWMEM_EXIT_VERSION = 4,     /* segment layout version mismatch */
	GWMEM_EXIT_CORRUPT = 5,     /* corrupt segment or snapshot */
	GWMEM_EXIT_BUSY = 6,        /* segment being initialised or never quiet */
	GWMEM_EXIT_ERROR = 7,       /* other failure (I/O, memory) */
};

struct cmd {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv);
	const char *help;
};

extern const struct cmd cmd_ps, cmd_stats, cmd_leaks, cmd_snapshot, cmd_diff, cmd_top,
	cmd_report, cmd_clean;

/* A resolved target: its segment (or snapshot file) opened and validated. */
struct target {
	char path[PATH_MAX];
	struct gw_view view;
	bool live;            /* the process that wrote it runs now (pid + start time match) */
	bool snapshot;        /* a snapshot file written by `gwmem snapshot` */
};

/* Segment directory: --shm-dir, else $GWMEM_SHM_DIR, else the built-in default. */
const char *shm_dir(const char *opt);

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
