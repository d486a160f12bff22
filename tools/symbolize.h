/*
 * symbolize.h - function and file:line for the return addresses of a
 * segment's stacks.  Modules come from the module map the segment recorded
 * (path, load bias, build-id); their files are looked up on this host
 * under --sysroot, separate debug files under each --debug-dir, and a file
 * whose build-id differs from the recorded one is never used.  Falls back
 * to module+offset.
 *
 * Two implementations, picked by the build (-Dsymbolizer): symbolize.c
 * with elfutils libdwfl, symbolize-none.c (module+offset only) for the
 * light on-device CLI.
 */
#ifndef GWMEM_TOOLS_SYMBOLIZE_H
#define GWMEM_TOOLS_SYMBOLIZE_H

#include <getopt.h>
#include <stdbool.h>

#include "report.h"
#include "view.h"

#define SYMBOLIZE_MAX_DEBUG_DIRS 16

/* Where to find the files, and how long to spend on them. */
struct symbolize_opts {
	const char *sysroot;                          /* NULL: the device paths as they are */
	const char *debug_dirs[SYMBOLIZE_MAX_DEBUG_DIRS];
	unsigned ndebug;
	uint64_t timeout_ds;                          /* bound on symbolization time, tenths of s */
	const char *wrappers;                         /* --alloc-wrappers / $GWMEM_ALLOC_WRAPPERS */
	const char *cmd;                              /* "leaks", for messages */
};

#define SYMBOLIZE_DEFAULT_TIMEOUT_DS 300u

/* getopt_long codes of the symbolizer options (above any short option). */
enum {
	SYMBOLIZE_OPT_SYSROOT = 0x300,
	SYMBOLIZE_OPT_DEBUG_DIR,
	SYMBOLIZE_OPT_TIMEOUT,
	SYMBOLIZE_OPT_WRAPPERS,
};

/* The long options every frame-printing command accepts, for its option table. */
#define SYMBOLIZE_LONGOPTS \
	{ "sysroot", required_argument, NULL, SYMBOLIZE_OPT_SYSROOT }, \
	{ "debug-dir", required_argument, NULL, SYMBOLIZE_OPT_DEBUG_DIR }, \
	{ "symbol-timeout", required_argument, NULL, SYMBOLIZE_OPT_TIMEOUT }, \
	{ "alloc-wrappers", required_argument, NULL, SYMBOLIZE_OPT_WRAPPERS }

/* Their help text, for the OPTIONS section. */
#define SYMBOLIZE_HELP \
"    --sysroot DIR\n" \
"        Look for module files as DIR + their path on the device (an\n" \
"        unstripped image or Yocto/Buildroot sysroot on the build host).\n" \
"    --debug-dir DIR\n" \
"        Look for separate debug files in DIR (repeatable): DIR/.build-id/xx/\n" \
"        rest.debug, DIR/<path>.debug, DIR/<debuglink> and DIR/<name>.debug.\n" \
"        A module or debug file whose build-id differs from the one recorded\n" \
"        is never used: its frames keep module+offset, with one warning.\n" \
"    --symbol-timeout SECONDS\n" \
"        Stop symbolizing after this long (default 30); later frames show\n" \
"        module+offset.\n" \
"    --alloc-wrappers NAMES\n" \
"        More allocation wrappers, comma-separated (\"name*\" is a prefix;\n" \
"        default $GWMEM_ALLOC_WRAPPERS).  A site is named by its first frame\n" \
"        outside them and outside strdup, asprintf, getline, operator new,\n" \
"        g_malloc, xmalloc and the like.\n"

void symbolize_opts_init(struct symbolize_opts *o, const char *cmd);
/*
 * Handle one of the SYMBOLIZE_OPT_* codes: 1 if taken, 0 if ch is not
 * one, -1 if the argument is invalid (a message was printed).
 */
int symbolize_opt(struct symbolize_opts *o, int ch, const char *arg);

struct symbolizer;

/* Never NULL unless out of memory; without debug information it still gives module+offset. */
struct symbolizer *symbolizer_new(const struct gw_view *v, const struct symbolize_opts *o);
/* The same from a module list (a saved report's): exe names a module whose path is "". */
struct symbolizer *symbolizer_new_modules(const struct gwmem_shm_module *mods, int n, const char *exe,
					  const struct symbolize_opts *o);
void symbolizer_free(struct symbolizer *s);
/* A gw_symbolize_fn: ctx is the struct symbolizer. */
void symbolizer_frame(void *ctx, uint64_t address, struct gw_frame_info *out);

#endif /* GWMEM_TOOLS_SYMBOLIZE_H */
