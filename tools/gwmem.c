/*
 * gwmem.c - the gwmem command: dispatch to the subcommands (cmd-*.c),
 * `gwmem --version`, `gwmem help [CMD]`.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "shared.h"

static const struct cmd *const commands[] = {
	&cmd_ps, &cmd_stats, &cmd_leaks, &cmd_snapshot, &cmd_diff, &cmd_top, &cmd_report, &cmd_clean, &cmd_symbolize,
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gwmem [--version] [--help] COMMAND [ARGS]\n"
		"\n"
		"Inspect the live allocations of processes running with libgwmem-preload.so.\n"
		"\n"
		"Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-9s %s\n", commands[i]->name, commands[i]->summary);
	fprintf(f,
		"  help      show the manual of a command: gwmem help COMMAND\n"
		"\n"
		"PID arguments take a process id (its newest segment in the segment directory)\n"
		"or the path of a segment or snapshot file.  The segment directory is\n"
		"--shm-dir DIR, else $GWMEM_SHM_DIR, else $GWMEM_LEAK_DETECTION_SHM_DIR, else " GWMEM_DEFAULT_SHM_DIR ".\n"
		"\n"
		"Exit status: 0 ok, 1 usage error, 2 no such process or segment,\n"
		"3 permission denied, 4 segment version mismatch, 5 corrupt segment,\n"
		"6 segment busy, 7 other error.\n");
}

static const struct cmd *find(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i]->name, name) == 0)
			return commands[i];
	return NULL;
}

/*
 * A segment that a writer truncates after we validated it raises SIGBUS on
 * access: report it as a corrupt segment instead of dying.
 */
static void on_sigbus(int sig)
{
	static const char msg[] = "gwmem: segment truncated while reading it (corrupt segment)\n";
	(void)sig;
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* nothing more to do */
	}
	_exit(GWMEM_EXIT_CORRUPT);
}

int main(int argc, char **argv)
{
	const struct cmd *c;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigbus;
	sigaction(SIGBUS, &sa, NULL);

	if (argc < 2) {
		usage(stderr);
		return GWMEM_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("gwmem %s (segment layout version %u, symbolizer %s)\n", GWMEM_VERSION_STRING,
		       GWMEM_SHM_VERSION, GWMEM_WITH_SYMBOLIZER ? "libdw" : "none");
		return 0;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "help") == 0) {
		if (argc < 3) {
			usage(stdout);
			return 0;
		}
		c = find(argv[2]);
		if (!c) {
			fprintf(stderr, "gwmem: unknown command '%s'\n", argv[2]);
			return GWMEM_EXIT_USAGE;
		}
		return print_help(c);
	}
	c = find(argv[1]);
	if (!c) {
		fprintf(stderr, "gwmem: unknown command '%s'\n\n", argv[1]);
		usage(stderr);
		return GWMEM_EXIT_USAGE;
	}
	return c->main(argc - 1, argv + 1);
}
