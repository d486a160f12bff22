/*
 * options.c - the TOML configuration file and GWMEM_<SECTION>_<KEY>
 * environment overrides, parsed once into one immutable struct gwmem_config.
 *
 * The file format is the TOML subset gwmem uses: [section] headers (blanks
 * inside the brackets allowed, as TOML allows them), key = value lines,
 * '#' comments on their own line or after a value, basic "..." strings with
 * the usual backslash escapes, literal '...' strings, booleans, integers
 * (with '_' separators) and decimals.  The file is read with open/read into
 * a mapped buffer of at most GW_CONFIG_MAX_BYTES; libinih splits it into
 * sections and key = value lines through our line reader, and this file
 * does the rest of TOML (quotes, escapes, comments after values, the
 * stricter syntax): no stdio, no malloc, and every diagnostic carries its
 * line number.  A line may be INI_MAX_LINE - 1 bytes long (4095 with the
 * inih meson.build builds); a value at most GWMEM_CONFIG_PATH_MAX - 1
 * bytes.  Each value is typed and range-checked from one table, and every
 * problem is one diagnostic "FILE:LINE: ..." that keeps the default.
 * Diagnostics go to a caller's callback, or to stderr where the first
 * GW_CONFIG_MAX_LINES are printed and the rest summed up in one line.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "gwmem.h"
#include "fmt.h"
#include "options.h"
#include "os.h"

#define CONFIG_MAX_BYTES GW_CONFIG_MAX_BYTES
/* Diagnostics printed on stderr per load; the rest are counted in one line. */
#define GW_CONFIG_MAX_LINES 20

enum opt_type { OPT_BOOL, OPT_U32, OPT_DOUBLE, OPT_STRING, OPT_UNWINDER, OPT_SIGNAL };

struct opt {
	const char *section;
	const char *key;
	enum opt_type type;
	size_t offset;
	double min, max;
};

#define OFF(f) offsetof(struct gwmem_config, f)

static const struct opt opts[] = {
	{ "memory", "pool_enabled", OPT_BOOL, OFF(memory.pool_enabled), 0, 0 },
	{ "memory", "leak_detection_enabled", OPT_BOOL, OFF(memory.leak_detection_enabled), 0, 0 },
	{ "memory", "compaction_enabled", OPT_BOOL, OFF(memory.compaction_enabled), 0, 0 },
	{ "memory", "stats_on_exit", OPT_BOOL, OFF(memory.stats_on_exit), 0, 0 },
	{ "memory", "abort_on_error", OPT_BOOL, OFF(memory.abort_on_error), 0, 0 },
	{ "memory_pool", "default_block_size", OPT_U32, OFF(memory_pool.default_block_size), 16, 65536 },
	{ "memory_pool", "blocks_per_chunk", OPT_U32, OFF(memory_pool.blocks_per_chunk), 8, 65536 },
	{ "memory_pool", "max_chunks", OPT_U32, OFF(memory_pool.max_chunks), 1, 1000000 },
	{ "object_pool", "max_objects", OPT_U32, OFF(object_pool.max_objects), 0, 100000000 },
	{ "object_pool", "reset_on_return", OPT_BOOL, OFF(object_pool.reset_on_return), 0, 0 },
	{ "object_pool", "auto_shrink", OPT_BOOL, OFF(object_pool.auto_shrink), 0, 0 },
	{ "leak_detection", "tracking_enabled", OPT_BOOL, OFF(leak_detection.tracking_enabled), 0, 0 },
	{ "leak_detection", "threshold_seconds", OPT_U32, OFF(leak_detection.threshold_seconds), 0, 100000000 },
	{ "leak_detection", "max_tracked_allocations", OPT_U32, OFF(leak_detection.max_tracked_allocations), 16, 100000000 },
	{ "leak_detection", "max_stacks", OPT_U32, OFF(leak_detection.max_stacks), 16, 10000000 },
	{ "leak_detection", "max_frames", OPT_U32, OFF(leak_detection.max_frames), 1, 64 },
	{ "leak_detection", "sample_rate", OPT_U32, OFF(leak_detection.sample_rate), 1, 1000000 },
	{ "leak_detection", "unwinder", OPT_UNWINDER, OFF(leak_detection.unwinder), 0, 0 },
	{ "leak_detection", "report_signal", OPT_SIGNAL, OFF(leak_detection.report_signal), 0, 0 },
	{ "leak_detection", "report_dir", OPT_STRING, OFF(leak_detection.report_dir), 0, 0 },
	{ "leak_detection", "shm_dir", OPT_STRING, OFF(leak_detection.shm_dir), 0, 0 },
	{ "leak_detection", "keep_segment_on_exit", OPT_BOOL, OFF(leak_detection.keep_segment_on_exit), 0, 0 },
	{ "leak_detection", "max_segment_bytes", OPT_U32, OFF(leak_detection.max_segment_bytes), 262144, 4294967295.0 },
	{ "compaction", "fragmentation_threshold", OPT_DOUBLE, OFF(compaction.fragmentation_threshold), 0, 1 },
	{ "compaction", "auto_compact", OPT_BOOL, OFF(compaction.auto_compact), 0, 0 },
	{ "compaction", "compact_interval_seconds", OPT_U32, OFF(compaction.compact_interval_seconds), 0, 86400 * 365 },
};

void gwmem_config_defaults(struct gwmem_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->memory.pool_enabled = true;
	cfg->memory.leak_detection_enabled = true;
	cfg->memory.compaction_enabled = true;
	cfg->memory_pool.default_block_size = 16384;
	cfg->memory_pool.blocks_per_chunk = 256;
	cfg->memory_pool.max_chunks = 100;
	cfg->object_pool.max_objects = 1000;
	cfg->object_pool.reset_on_return = true;
	cfg->object_pool.auto_shrink = true;
	cfg->leak_detection.tracking_enabled = true;
	cfg->leak_detection.threshold_seconds = 300;
	cfg->leak_detection.max_tracked_allocations = 196608;
	cfg->leak_detection.max_stacks = 14336;
	cfg->leak_detection.max_segment_bytes = 16u << 20;
	cfg->leak_detection.max_frames = 16;
	cfg->leak_detection.sample_rate = 1;
	cfg->leak_detection.unwinder = GWMEM_UNWIND_LIBUNWIND;
	cfg->leak_detection.report_signal = SIGUSR1;
	strcpy(cfg->leak_detection.report_dir, "/tmp");
	strcpy(cfg->leak_detection.shm_dir, GWMEM_DEFAULT_SHM_DIR);
	cfg->compaction.fragmentation_threshold = 0.3;
	cfg->compaction.auto_compact = true;
	cfg->compaction.compact_interval_seconds = 60;
}

/* --- value parsing ------------------------------------------------------ */

static const struct {
	const char *name;
	int sig;
} signals[] = {
	{ "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "HUP", SIGHUP }, { "PWR", SIGPWR },
	{ "URG", SIGURG }, { "WINCH", SIGWINCH }, { "TTIN", SIGTTIN }, { "TTOU", SIGTTOU },
};

int gw_config_parse_signal(const char *s)
{
	char *end;

	if (strcmp(s, "off") == 0 || strcmp(s, "none") == 0 || strcmp(s, "0") == 0)
		return 0;
	if (strncmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < GW_ARRAY_SIZE(signals); i++) {
		if (strcmp(s, signals[i].name) == 0)
			return signals[i].sig;
	}
	if (strncmp(s, "RTMIN+", 6) == 0) {
		long v = strtol(s + 6, &end, 10);
		if (*end == '\0' && v >= 0 && SIGRTMIN + v <= SIGRTMAX)
			return SIGRTMIN + (int)v;
		return -1;
	}
	long v = strtol(s, &end, 10);
	if (*s && *end == '\0' && v > 0 && v < NSIG && v != SIGKILL && v != SIGSTOP &&
	    v != SIGSEGV && v != SIGBUS && v != SIGILL && v != SIGFPE && v != SIGABRT)
		return (int)v;
	return -1;
}

static bool parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "true", "1", "yes", "on" };
	static const char *const no[] = { "false", "0", "no", "off" };

	for (size_t i = 0; i < GW_ARRAY_SIZE(yes); i++) {
		if (strcmp(v, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcmp(v, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

/* TOML integers may use '_' separators: 1_000_000. */
static bool parse_u64(const char *v, unsigned long long *out)
{
	char digits[32];
	size_t n = 0;
	char *end;

	if (*v == '+')
		v++;
	if (!isdigit((unsigned char)*v))
		return false;
	for (; *v; v++) {
		if (*v == '_')
			continue;
		if (n + 1 >= sizeof(digits))
			return false;
		digits[n++] = *v;
	}
	digits[n] = '\0';
	errno = 0;
	*out = strtoull(digits, &end, 10);
	return errno == 0 && *end == '\0';
}

/* Decimals by hand: strtod may allocate for some locales and inputs. */
static bool parse_double(const char *v, double *out)
{
	double r = 0, scale = 1;
	bool any = false, neg = false;

	if (*v == '-' || *v == '+')
		neg = *v++ == '-';
	for (; isdigit((unsigned char)*v); v++, any = true)
		r = r * 10 + (*v - '0');
	if (*v == '.') {
		for (v++; isdigit((unsigned char)*v); v++, any = true) {
			scale /= 10;
			r += (*v - '0') * scale;
		}
	}
	if (!any || *v != '\0')
		return false;
	*out = neg ? -r : r;
	return true;
}

/* --- diagnostics -------------------------------------------------------- */

struct parse_ctx {
	struct gwmem_config *cfg;
	const char *file;
	unsigned flags;
	int diagnostics;
	int printed;              /* lines written to stderr */
	int suppressed;           /* diagnostics past GW_CONFIG_MAX_LINES */
	gwmem_config_diag_fn fn;  /* the caller's sink, or NULL for stderr */
	void *fn_arg;
	char section[64];         /* current [section] */
	enum { SECTION_NONE, SECTION_OK, SECTION_BAD } section_state;
	/* read_line's state: the rest of the buffer and the line read last */
	const char *pos, *end;
	const char *raw, *raw_end;
	unsigned line;
	bool handled;             /* inih called on_ini() for that line */
};

static void diag(struct parse_ctx *ctx, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void diag(struct parse_ctx *ctx, unsigned line, const char *fmt, ...)
{
	char mem[512];
	struct gw_buf b = GW_BUF_INIT(mem);
	va_list ap;

	ctx->diagnostics++;
	if (!ctx->fn && (ctx->flags & GWMEM_CONFIG_QUIET))
		return;
	if (!ctx->fn && ctx->printed >= GW_CONFIG_MAX_LINES) {
		ctx->suppressed++;
		return;
	}
	va_start(ap, fmt);
	gw_vformat(&b, fmt, ap);
	va_end(ap);
	/* values from the file may hold escapes (\n, \t...) or raw control
	 * bytes: a diagnostic stays one line of printable text */
	for (char *q = (char *)gw_buf_cstr(&b); *q; q++)
		if ((unsigned char)*q < 0x20 || *q == 0x7f)
			*q = '?';
	if (ctx->fn) {
		ctx->fn(ctx->file, line, gw_buf_cstr(&b), ctx->fn_arg);
		return;
	}
	ctx->printed++;
	if (line)
		gw_log("%s:%u: %s", ctx->file, line, gw_buf_cstr(&b));
	else
		gw_log("%s: %s", ctx->file, gw_buf_cstr(&b));
}

/* One line for everything not printed, so a flood stays one screen. */
static void diag_flush(struct parse_ctx *ctx)
{
	if (ctx->suppressed)
		gw_log("%s: ... and %d more diagnostics not shown", ctx->file, ctx->suppressed);
	ctx->suppressed = 0;
}

/* --- applying one key --------------------------------------------------- */

static const struct opt *find_opt(const char *section, const char *key)
{
	for (size_t i = 0; i < GW_ARRAY_SIZE(opts); i++) {
		if (strcmp(opts[i].section, section) == 0 && strcmp(opts[i].key, key) == 0)
			return &opts[i];
	}
	return NULL;
}

static bool section_known(const char *section)
{
	for (size_t i = 0; i < GW_ARRAY_SIZE(opts); i++) {
		if (strcmp(opts[i].section, section) == 0)
			return true;
	}
	return false;
}

/*
 * The value of one key: a basic "..." string (escapes \\ \" \t \n \r
 * \b \f), a literal '...' string, or a bare word, each optionally followed
 * by blanks and a '#' comment.  Returns NULL on success, or what is wrong.
 */
static const char *clean_value(const char *in, char *out, size_t cap, bool *quoted)
{
	size_t n = 0;
	const char *p = in;

	*quoted = false;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '"' || *p == '\'') {
		char q = *p++;

		*quoted = true;
		for (;; p++) {
			char c = *p;

			if (c == '\0')
				return "unterminated string";
			if (c == q)
				break;
			if (c == '\\' && q == '"') {
				switch (*++p) {
				case '\\': c = '\\'; break;
				case '"': c = '"'; break;
				case 't': c = '\t'; break;
				case 'n': c = '\n'; break;
				case 'r': c = '\r'; break;
				case 'b': c = '\b'; break;
				case 'f': c = '\f'; break;
				default: return "unsupported escape in string";
				}
			}
			if (n + 1 >= cap)
				return "value too long";
			out[n++] = c;
		}
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p && *p != '#')
			return "unexpected text after the string";
	} else {
		for (; *p && *p != '#'; p++) {
			if (n + 1 >= cap)
				return "value too long";
			out[n++] = *p;
		}
		while (n && (out[n - 1] == ' ' || out[n - 1] == '\t'))
			n--;
	}
	out[n] = '\0';
	return NULL;
}

static void apply(struct parse_ctx *ctx, unsigned line, const struct opt *o, const char *raw,
		  const char *what)
{
	char v[GWMEM_CONFIG_PATH_MAX];
	bool quoted;
	void *field = (char *)ctx->cfg + o->offset;

	const char *bad = clean_value(raw, v, sizeof(v), &quoted);

	if (bad) {
		if (strcmp(bad, "value too long") == 0)
			diag(ctx, line, "%s: value longer than %d bytes; using the default", what,
			     GWMEM_CONFIG_PATH_MAX - 1);
		else
			diag(ctx, line, "%s: %s; using the default", what, bad);
		return;
	}
	switch (o->type) {
	case OPT_BOOL: {
		bool b;
		if (quoted || !parse_bool(v, &b)) {
			diag(ctx, line, "%s: expected true or false, got '%s'; using the default", what, v);
			return;
		}
		*(bool *)field = b;
		return;
	}
	case OPT_U32: {
		unsigned long long u;
		if (quoted || !parse_u64(v, &u)) {
			diag(ctx, line, "%s: expected an integer, got '%s'; using the default", what, v);
			return;
		}
		if (u < (unsigned long long)o->min || u > (unsigned long long)o->max) {
			diag(ctx, line, "%s: %llu is out of range [%llu, %llu]; using the default", what, u,
			     (unsigned long long)o->min, (unsigned long long)o->max);
			return;
		}
		*(uint32_t *)field = (uint32_t)u;
		return;
	}
	case OPT_DOUBLE: {
		double d;
		if (quoted || !parse_double(v, &d)) {
			diag(ctx, line, "%s: expected a number, got '%s'; using the default", what, v);
			return;
		}
		if (d < o->min || d > o->max) {
			diag(ctx, line, "%s: %.3f is out of range [%.3f, %.3f]; using the default", what, d,
			     o->min, o->max);
			return;
		}
		*(double *)field = d;
		return;
	}
	case OPT_STRING:
		if (v[0] != '/') {
			diag(ctx, line, "%s: expected an absolute path, got '%s'; using the default", what, v);
			return;
		}
		memcpy(field, v, strlen(v) + 1);
		return;
	case OPT_UNWINDER:
		if (strcmp(v, "libunwind") == 0)
			*(enum gwmem_unwinder *)field = GWMEM_UNWIND_LIBUNWIND;
		else if (strcmp(v, "libgcc") == 0)
			*(enum gwmem_unwinder *)field = GWMEM_UNWIND_LIBGCC;
		else if (strcmp(v, "frame-pointer") == 0)
			*(enum gwmem_unwinder *)field = GWMEM_UNWIND_FRAME_POINTER;
		else
			diag(ctx, line, "%s: expected \"libunwind\", \"libgcc\" or \"frame-pointer\", got '%s'; using the default",
			     what, v);
		return;
	case OPT_SIGNAL: {
		int sig = gw_config_parse_signal(v);
		if (sig < 0) {
			diag(ctx, line, "%s: '%s' is not a usable signal (name, number or \"off\"); using the default",
			     what, v);
			return;
		}
		*(int *)field = sig;
		return;
	}
	}
}

/* --- the file ----------------------------------------------------------- */

/*
 * libinih splits the file: ini_parse_stream() calls read_line() once per
 * line, finds [section] headers and the '=' of key = value lines, and calls
 * on_ini() with each new section, and with each key and the rest of its
 * line.  meson.build builds inih from subprojects/ for exactly this use (the
 * #if below refuses any other build): the line buffer is an array of
 * INI_MAX_LINE bytes on the parsing thread's stack (no malloc; 4 KiB, small
 * enough for the thread whose first malloc loads the configuration), '#'
 * and ';' start a comment only at the start of a line, no inline comments
 * (a '#' after a value is stripped by clean_value, outside quotes), no
 * multi-line values, and a call for each new section.
 *
 * What inih leaves to this file: the line numbers (read_line counts), the
 * TOML rules inih does not know (bare keys, '=' and not ':', blanks inside
 * the brackets of a section, nothing but a comment after ']', no ';'
 * comments), and one diagnostic for every line inih could not split, where
 * inih only returns the first: before reading the next line, read_line
 * checks that the last one was a blank or a comment or reached on_ini().
 */
#if !INI_USE_STACK || INI_MAX_LINE < 4096 || INI_ALLOW_MULTILINE || INI_ALLOW_INLINE_COMMENTS || \
	!INI_CALL_HANDLER_ON_NEW_SECTION || INI_ALLOW_NO_VALUE || INI_HANDLER_LINENO || INI_STOP_ON_FIRST_ERROR
#error "options.c needs libinih built by meson.build from subprojects/inih"
#endif

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_bare(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '-';
}

/* The first non-blank byte of the line read last, or its end. */
static const char *raw_start(const struct parse_ctx *ctx)
{
	const char *p = ctx->raw;

	/* inih's own test (isspace), so that this is where its line starts */
	while (p < ctx->raw_end && isspace((unsigned char)*p))
		p++;
	return p;
}

/* A line inih did not hand to on_ini(): a comment, a blank, or not TOML. */
static void line_done(struct parse_ctx *ctx)
{
	const char *p = raw_start(ctx);

	if (ctx->handled)
		return;
	ctx->handled = true;
	if (p == ctx->raw_end || *p == '#')
		return;
	if (*p == '[') {
		/* no ']': inih keeps the previous section, we ignore its keys */
		ctx->section[0] = '\0';
		ctx->section_state = SECTION_BAD;
		diag(ctx, ctx->line,
		     "syntax error in section header (expected [name]); keys up to the next section ignored");
		return;
	}
	diag(ctx, ctx->line, "syntax error (expected [section] or key = value); line ignored");
}

/*
 * inih's ini_reader: the next line of the buffer, without its '\n' (and a
 * '\r' before it), NUL bytes read as blanks.  A line that does not fit
 * inih's buffer (num - 1 bytes) is handed over empty, with a diagnostic
 * unless it is a comment: cutting it could change a value.
 */
static char *read_line(char *str, int num, void *stream)
{
	struct parse_ctx *ctx = stream;
	const char *p = ctx->pos, *nl, *le;
	size_t len;

	line_done(ctx);
	if (p >= ctx->end)
		return NULL;
	nl = memchr(p, '\n', (size_t)(ctx->end - p));
	le = nl ? nl : ctx->end;
	ctx->pos = nl ? nl + 1 : ctx->end;
	ctx->line++;
	/* a UTF-8 byte order mark is allowed at the start */
	if (ctx->line == 1 && le - p >= 3 && (unsigned char)p[0] == 0xef && (unsigned char)p[1] == 0xbb &&
	    (unsigned char)p[2] == 0xbf)
		p += 3;
	if (le > p && le[-1] == '\r')
		le--;
	ctx->raw = p;
	ctx->raw_end = le;
	ctx->handled = false;
	len = (size_t)(le - p);
	if (len > (size_t)num - 1) {
		const char *s = raw_start(ctx);

		ctx->handled = true;
		if (s < ctx->raw_end && *s != '#')
			diag(ctx, ctx->line, "line longer than %d bytes; ignored", num - 1);
		str[0] = '\0';
		return str;
	}
	for (size_t i = 0; i < len; i++)
		str[i] = p[i] ? p[i] : ' ';
	str[len] = '\0';
	return str;
}

/* "[ name ]": inih gives what is between '[' and the first ']'. */
static void on_section(struct parse_ctx *ctx, const char *section)
{
	const char *open = raw_start(ctx);
	const char *close = memchr(open, ']', (size_t)(ctx->raw_end - open));
	const char *name = section, *name_end;
	size_t len;

	ctx->section[0] = '\0';
	ctx->section_state = SECTION_BAD;
	/* inih keeps at most 49 bytes of a name: a longer one is refused, not cut */
	if (!close || (size_t)(close - open - 1) != strlen(section))
		goto bad;
	for (const char *q = close + 1; q < ctx->raw_end && *q != '#'; q++)
		if (!is_blank(*q))
			goto bad;
	while (is_blank(*name))
		name++;
	for (name_end = name + strlen(name); name_end > name && is_blank(name_end[-1]); name_end--)
		;
	len = (size_t)(name_end - name);
	if (len == 0 || len >= sizeof(ctx->section))
		goto bad;
	for (size_t i = 0; i < len; i++)
		if (!is_bare(name[i]))
			goto bad;
	memcpy(ctx->section, name, len);
	ctx->section[len] = '\0';
	ctx->section_state = SECTION_OK;
	return;
bad:
	diag(ctx, ctx->line, "syntax error in section header (expected [name]); keys up to the next section ignored");
}

/* "key = value": inih gives the key and the value, blanks around them stripped. */
static void on_key(struct parse_ctx *ctx, const char *key, const char *value)
{
	size_t len = strlen(key);
	const char *sep = raw_start(ctx) + len;
	const struct opt *o;
	char what[96];

	if (len == 0)
		goto syntax;
	for (size_t i = 0; i < len; i++)
		if (!is_bare(key[i]))
			goto syntax;
	/* inih also splits at ':' (Python's configparser); TOML has only '=' */
	while (sep < ctx->raw_end && isspace((unsigned char)*sep))
		sep++;
	if (sep == ctx->raw_end || *sep != '=')
		goto syntax;
	if (len >= 64) {
		diag(ctx, ctx->line, "unknown key '%.40s...'; ignored", key);
		return;
	}
	if (ctx->section_state != SECTION_OK) {
		if (ctx->section_state == SECTION_NONE)
			diag(ctx, ctx->line, "key '%s' before any [section]; ignored", key);
		return;
	}
	o = find_opt(ctx->section, key);
	if (!o) {
		if (!section_known(ctx->section))
			diag(ctx, ctx->line, "unknown key '%s' in unknown section [%s]; ignored", key, ctx->section);
		else
			diag(ctx, ctx->line, "unknown key '%s' in [%s]; ignored", key, ctx->section);
		return;
	}
	gw_snprintf(what, sizeof(what), "'%s'", key);
	apply(ctx, ctx->line, o, value, what);
	return;
syntax:
	diag(ctx, ctx->line, "syntax error (expected [section] or key = value); line ignored");
}

/* inih's ini_handler: always 1, since every problem is diagnosed here. */
static int on_ini(void *user, const char *section, const char *name, const char *value)
{
	struct parse_ctx *ctx = user;

	ctx->handled = true;
	if (name)
		on_key(ctx, name, value);
	else
		on_section(ctx, section);
	return 1;
}

static void parse_buffer(struct parse_ctx *ctx, const char *buf, size_t len)
{
	ctx->pos = buf;
	ctx->end = buf + len;
	ctx->raw = ctx->raw_end = buf;
	ctx->handled = true;
	ctx->line = 0;
	ctx->section[0] = '\0';
	ctx->section_state = SECTION_NONE;
	/* inih returns the first line it could not split: read_line has
	 * diagnosed that one and every other */
	(void)ini_parse_stream(read_line, ctx, on_ini, ctx);
}

static const char *errno_name(int e)
{
	switch (e) {
	case EACCES: return "permission denied";
	case ELOOP: return "too many symbolic links";
	case EINVAL: return "not a regular file";
	case ENAMETOOLONG: return "name too long";
	case ENOENT: return "no such file";
	case ENOTDIR: return "a path component is not a directory";
	case EIO: return "I/O error";
	default: return "error";
	}
}

static void parse_file(struct parse_ctx *ctx, const char *path, bool must_exist)
{
	char *buf = gw_os_map(CONFIG_MAX_BYTES + 1);
	ssize_t len;

	ctx->file = path;
	if (!buf) {
		diag(ctx, 0, "cannot map a buffer to read the configuration; using the defaults");
		return;
	}
	ctx->file = path;
	len = gw_os_read_file(path, buf, CONFIG_MAX_BYTES + 1, false);
	if (len < 0) {
		if (len == -ENOENT && !must_exist)
			goto out;
		if (len == -EFBIG)
			diag(ctx, 0, "larger than %d bytes; ignored, using the defaults", CONFIG_MAX_BYTES);
		else if (len == -EISDIR)
			diag(ctx, 0, "is a directory; using the defaults");
		else
			diag(ctx, 0, "cannot read (%s); using the defaults", errno_name((int)-len));
		goto out;
	}
	parse_buffer(ctx, buf, (size_t)len);
out:
	gw_os_unmap(buf, CONFIG_MAX_BYTES + 1);
}

/* --- the environment ---------------------------------------------------- */

static void apply_env(struct parse_ctx *ctx)
{
	const char *v;

	ctx->file = "environment";
	for (size_t i = 0; i < GW_ARRAY_SIZE(opts); i++) {
		char name[96];
		size_t n = gw_snprintf(name, sizeof(name), "GWMEM_%s_%s", opts[i].section, opts[i].key);
		for (size_t k = 0; k < n && k < sizeof(name); k++)
			name[k] = (char)toupper((unsigned char)name[k]);
		v = gw_os_getenv(name);
		if (v)
			apply(ctx, 0, &opts[i], v, name);
	}
	/* GWMEM_STATS=1: the short form of GWMEM_MEMORY_STATS_ON_EXIT */
	v = gw_os_getenv("GWMEM_STATS");
	if (v)
		apply(ctx, 0, find_opt("memory", "stats_on_exit"), v, "GWMEM_STATS");
}

int gwmem_config_load_diag(struct gwmem_config *cfg, const char *path, unsigned flags,
			   gwmem_config_diag_fn fn, void *arg)
{
	struct parse_ctx ctx = { .cfg = cfg, .flags = flags, .fn = fn, .fn_arg = arg };
	bool use_env = !(flags & GWMEM_CONFIG_NO_ENV) && !gw_os_secure();

	if (!cfg)
		return -EINVAL;
	gwmem_config_defaults(cfg);
	if (path) {
		parse_file(&ctx, path, true);
	} else {
		const char *env = use_env ? gw_os_getenv("GWMEM_CONFIG") : NULL;
		if (env && *env)
			parse_file(&ctx, env, true);
		else
			parse_file(&ctx, GWMEM_DEFAULT_CONFIG, false);
	}
	diag_flush(&ctx);
	if (use_env) {
		apply_env(&ctx);
		diag_flush(&ctx);
	}
	return ctx.diagnostics;
}

int gwmem_config_load(struct gwmem_config *cfg, const char *path, unsigned flags)
{
	return gwmem_config_load_diag(cfg, path, flags, NULL, NULL);
}

/* --- the process-wide options (preload) --------------------------------- */

static struct gwmem_config options;
static bool options_ready;

void gw_config_init(void)
{
	if (options_ready)
		return;
	gwmem_config_load(&options, NULL, 0);
	options_ready = true;
}

const struct gwmem_config *gw_opts(void)
{
	if (gw_unlikely(!options_ready))
		gwmem_config_defaults(&options);
	return &options;
}
