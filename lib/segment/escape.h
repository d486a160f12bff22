/*
 * escape.h - strings read from a segment (command line, executable, module
 * paths) or from the files it names (function and source file names), made
 * safe for where they are written.  Such a string is attacker-controlled:
 * a process names its own argv and can load a library from any path, so
 * written raw it could move the operator's cursor, retitle the terminal,
 * break a JSON consumer or forge a Prometheus sample.
 *
 * Every mode keeps printable ASCII and valid UTF-8 as they are, and writes
 * control bytes (C0, DEL, the C1 code points U+0080..U+009F) and bytes that
 * are not valid UTF-8 in a visible form:
 *
 *   GW_ESC_TEXT    \xNN for each such byte (a terminal or log file).
 *   GW_ESC_FOLDED  as text, and ';' and ' ' (the separators of folded
 *                  stacks) become '_'.
 *   GW_ESC_JSON    the body of a JSON string, always valid UTF-8: '"' and
 *                  '\' escaped, control code points as \u00NN, a byte that
 *                  is not UTF-8 as the six characters \\xNN (the string then
 *                  reads like the text output).
 *   GW_ESC_PROM    a Prometheus label value: '\', '"' and newline as \\, \"
 *                  and \n (the only escapes the exposition format has),
 *                  other control or invalid bytes as \\xNN.
 *
 * Allocation-free and stdio-free: the preload's SIGUSR1 reporter uses it.
 */
#ifndef GW_ESCAPE_H
#define GW_ESCAPE_H

#include <stddef.h>

#include "internal.h"

enum gw_escape_mode {
	GW_ESC_TEXT,
	GW_ESC_FOLDED,
	GW_ESC_JSON,
	GW_ESC_PROM,
};

/* Receives the escaped output in pieces. */
typedef void (*gw_escape_put)(void *ctx, const char *s, size_t n);

/* Escape the NUL-terminated s for mode, handing the result to put. */
void gw_escape(enum gw_escape_mode mode, const char *s, gw_escape_put put, void *ctx) GW_HIDDEN;

/*
 * Escape s into dst[cap], NUL-terminated; stops before an escape sequence or
 * character that would not fit whole.  Returns the length written.
 */
size_t gw_escape_buf(enum gw_escape_mode mode, const char *s, char *dst, size_t cap) GW_HIDDEN;

#endif /* GW_ESCAPE_H */
