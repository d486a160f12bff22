/*
 * options.c - the TOML configuration file and GWMEM_<SECTION>_<KEY>
 * environment overrides, parsed once into one immutable struct gwmem_config.
 *
 * The file format is the TOML subset gwmem uses (sections, key = value,
 * comments, quoted strings, booleans, integers, decimals), which libinih
 * parses; this file strips TOML's '#' comments and quotes, types and
 * range-checks each value from one table, and reports problems as one line
 * "gwmem: FILE:LINE: ..." keeping the default.  libinih is driven through
 * ini_parse_stream() with our own line reader over a buffer we read with
 * open/read: no stdio, no malloc, and we know the line number of every key.
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

#define CONFIG_MAX_BYTES (64 * 1024)

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
	cfg->leak_detection.max_tracked_allocations = 196608;   /* 3/4 of 2^18 slots */
	cfg->leak_detection.max_stacks = 14336;        /* 16384 entries at 7/8 */
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
	/* line reader state */
	const char *pos, *end;
	unsigned line;
	bool long_line;
};

static void diag(struct parse_ctx *ctx, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void diag(struct parse_ctx *ctx, unsigned line, const char *fmt, ...)
{
	char mem[512];
	struct gw_buf b = GW_BUF_INIT(mem);
	va_list ap;

	ctx->diagnostics++;
	if (ctx->flags & GWMEM_CONFIG_QUIET)
		return;
	if (line)
		gw_format(&b, "%s:%u: ", ctx->file, line);
	else
		gw_format(&b, "%s: ", ctx->file);
	va_start(ap, fmt);
	gw_vformat(&b, fmt, ap);
	va_end(ap);
	gw_log("%s", gw_buf_cstr(&b));
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

/* Strip a TOML '#' comment outside quotes, surrounding blanks, and quotes. */
static bool clean_value(const char *in, char *out, size_t cap, bool *quoted)
{
	size_t n = 0;
	bool in_str = false;
	char quote = 0;

	*quoted = false;
	for (const char *p = in; *p; p++) {
		if (in_str) {
			if (*p == quote) {
				in_str = false;
				continue;
			}
		} else if (*p == '"' || *p == '\'') {
			in_str = *quoted = true;
			quote = *p;
			continue;
		} else if (*p == '#') {
			break;
		}
		if (n + 1 >= cap)
			return false;
		out[n++] = *p;
	}
	if (in_str)
		return false;
	while (n && isspace((unsigned char)out[n - 1]) && !*quoted)
		n--;
	out[n] = '\0';
	return true;
}

static void apply(struct parse_ctx *ctx, unsigned line, const struct opt *o, const char *raw,
		  const char *what)
{
	char v[GWMEM_CONFIG_PATH_MAX];
	bool quoted;
	void *field = (char *)ctx->cfg + o->offset;

	if (!clean_value(raw, v, sizeof(v), &quoted)) {
		diag(ctx, line, "%s: value too long or unterminated string; using the default", what);
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
		else if (strcmp(v, "frame-pointer") == 0)
			*(enum gwmem_unwinder *)field = GWMEM_UNWIND_FRAME_POINTER;
		else
			diag(ctx, line, "%s: expected \"libunwind\" or \"frame-pointer\", got '%s'; using the default",
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
 * inih's line reader: one line per call (so ctx->line is the line the
 * handler's key is on).  A line longer than inih's buffer is cut and the
 * rest skipped, rather than read as a second line.
 */
static char *read_line(char *str, int num, void *stream)
{
	struct parse_ctx *ctx = stream;
	int n = 0;

	if (ctx->pos >= ctx->end)
		return NULL;
	ctx->line++;
	ctx->long_line = false;
	while (ctx->pos < ctx->end) {
		char c = *ctx->pos++;
		if (c == '\n')
			break;
		if (c == '\0')
			c = ' ';
		if (n < num - 2)
			str[n++] = c;
		else
			ctx->long_line = true;
	}
	str[n++] = '\n';
	str[n] = '\0';
	if (ctx->long_line)
		diag(ctx, ctx->line, "line longer than %d characters, truncated", num - 2);
	return str;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct parse_ctx *ctx = user;
	const struct opt *o = find_opt(section, name);
	char what[128];

	if (!o) {
		if (!section_known(section))
			diag(ctx, ctx->line, "unknown key '%s' in unknown section [%s]; ignored", name, section);
		else
			diag(ctx, ctx->line, "unknown key '%s' in [%s]; ignored", name, section);
		return 1;
	}
	gw_snprintf(what, sizeof(what), "'%s'", name);
	apply(ctx, ctx->line, o, value, what);
	return 1;
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
	ctx->pos = buf;
	ctx->end = buf + len;
	ctx->line = 0;
	int err = ini_parse_stream(read_line, ctx, on_key, ctx);
	if (err > 0)
		diag(ctx, (unsigned)err, "syntax error (expected [section] or key = value); line ignored");
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

int gwmem_config_load(struct gwmem_config *cfg, const char *path, unsigned flags)
{
	struct parse_ctx ctx = { .cfg = cfg, .flags = flags };
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
	if (use_env)
		apply_env(&ctx);
	return ctx.diagnostics;
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
