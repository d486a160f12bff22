/*
 * symbolize-opts.c - the symbolizer options (--sysroot, --debug-dir,
 * --symbol-timeout) shared by every command that prints frames, whichever
 * symbolizer the build picked.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared.h"
#include "symbolize.h"

void symbolize_opts_init(struct symbolize_opts *o, const char *cmd)
{
	memset(o, 0, sizeof(*o));
	o->timeout_ds = SYMBOLIZE_DEFAULT_TIMEOUT_DS;
	o->cmd = cmd;
	o->wrappers = getenv("GWMEM_ALLOC_WRAPPERS");
}

int symbolize_opt(struct symbolize_opts *o, int ch, const char *arg)
{
	switch (ch) {
	case SYMBOLIZE_OPT_SYSROOT:
		/* "/" is the host itself; a trailing slash would double the device path's */
		o->sysroot = strcmp(arg, "/") == 0 ? NULL : arg;
		return 1;
	case SYMBOLIZE_OPT_DEBUG_DIR:
		if (o->ndebug >= SYMBOLIZE_MAX_DEBUG_DIRS) {
			fprintf(stderr, "gwmem %s: at most %u --debug-dir\n", o->cmd,
				SYMBOLIZE_MAX_DEBUG_DIRS);
			return -1;
		}
		o->debug_dirs[o->ndebug++] = arg;
		return 1;
	case SYMBOLIZE_OPT_TIMEOUT:
		if (!parse_seconds_ds(arg, &o->timeout_ds) || !o->timeout_ds) {
			fprintf(stderr, "gwmem %s: invalid --symbol-timeout '%s'\n", o->cmd, arg);
			return -1;
		}
		return 1;
	case SYMBOLIZE_OPT_WRAPPERS:
		o->wrappers = arg;
		return 1;
	default:
		return 0;
	}
}
