/*
 * cmd-symbolize.c - `gwmem symbolize FILE`: a saved report made readable
 * on the host.  FILE is a report in text (the SIGUSR1 report, `gwmem
 * report`/`leaks` output) or JSON (`--json`), or a segment or snapshot
 * file (then it is `gwmem report FILE`).  Every frame is named again from
 * the module list the report carries (path, range, build-id), with the
 * symbolizer options; the sites keep their figures.
 *
 * The report is untrusted text: lines that do not parse are skipped, every
 * number is range-checked by its parser, strings are escaped on output.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elffile.h"
#include "growth.h"
#include "os.h"
#include "shared.h"
#include "symbolize.h"

static const char help[] =
"NAME\n"
"    gwmem symbolize - name the frames of a saved report on this host\n"
"\n"
"SYNOPSIS\n"
"    gwmem symbolize FILE [--json] [--sysroot DIR] [--debug-dir DIR]...\n"
"                   [--symbol-timeout SECONDS] [--alloc-wrappers NAMES]\n"
"\n"
"DESCRIPTION\n"
"    FILE is a report copied off a device: the text a process writes on\n"
"    SIGUSR1, the output of `gwmem report` or `gwmem leaks` (text, with its\n"
"    module list, or --json), or a segment or snapshot file.  Each frame is\n"
"    named again from the module list the report records (path on the\n"
"    device, mapped range, build-id), looking the files up under --sysroot\n"
"    and --debug-dir; a file with another build-id is never used.  The\n"
"    sites keep their counts and bytes and are named by their first frame\n"
"    outside the allocation wrappers.\n"
"\n"
"OPTIONS\n"
"    --json          JSON output (the form of `gwmem leaks --json`)\n"
SYMBOLIZE_HELP
"    -h, --help      show this help\n"
"\n"
"EXIT STATUS\n"
"    0 ok, 1 usage error, 2 no such file, 3 permission denied, 5 not a report,\n"
"    7 other error.\n"
"\n"
"EXAMPLES\n"
"    gwmem symbolize gwmem-report.1234.1795800000.txt --sysroot ~/sysroot\n"
"    gwmem symbolize report.json --debug-dir ~/fw/debug --json\n";

#define REPORT_MAX_SIZE (64u << 20)

struct sframe {
	uint64_t address;
	uint64_t offset;
	bool has_offset;
};

struct ssite {
	uint32_t stack_id;
	uint64_t count, bytes;
	char age[32];                 /* "12.3", as written, or "" */
	size_t nframes, cap;
	struct sframe *frames;
};

struct sreport {
	uint32_t pid;
	size_t nsites, cap;
	struct ssite *sites;
	size_t nmods, mcap;
	struct gwmem_shm_module *mods;
};

static struct ssite *add_site(struct sreport *r)
{
	if (r->nsites == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 16;
		struct ssite *n = realloc(r->sites, cap * sizeof(*n));
		if (!n)
			return NULL;
		r->sites = n;
		r->cap = cap;
	}
	struct ssite *s = &r->sites[r->nsites++];
	memset(s, 0, sizeof(*s));
	return s;
}

static bool add_frame(struct ssite *s, uint64_t address, uint64_t offset, bool has_offset)
{
	if (s->nframes == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 8;
		struct sframe *n = realloc(s->frames, cap * sizeof(*n));
		if (!n)
			return false;
		s->frames = n;
		s->cap = cap;
	}
	s->frames[s->nframes++] = (struct sframe){ address, offset, has_offset };
	return true;
}

static struct gwmem_shm_module *add_module(struct sreport *r)
{
	if (r->nmods == r->mcap) {
		size_t cap = r->mcap ? 2 * r->mcap : 16;
		struct gwmem_shm_module *n = realloc(r->mods, cap * sizeof(*n));
		if (!n)
			return NULL;
		r->mods = n;
		r->mcap = cap;
	}
	struct gwmem_shm_module *m = &r->mods[r->nmods++];
	memset(m, 0, sizeof(*m));
	return m;
}

static void report_free(struct sreport *r)
{
	for (size_t i = 0; i < r->nsites; i++)
		free(r->sites[i].frames);
	free(r->sites);
	free(r->mods);
}

static bool set_build_id(struct gwmem_shm_module *m, const char *hex, size_t n)
{
	if (n % 2 || n / 2 > sizeof(m->build_id))
		return false;
	for (size_t i = 0; i < n / 2; i++) {
		char b[3] = { hex[2 * i], hex[2 * i + 1], 0 };
		if (!isxdigit((unsigned char)b[0]) || !isxdigit((unsigned char)b[1]))
			return false;
		m->build_id[i] = (uint8_t)strtoul(b, NULL, 16);
	}
	m->build_id_len = (uint32_t)(n / 2);
	return true;
}

/* --- text ---------------------------------------------------------------- */

/*
 * Site lines "#N  B bytes in C allocations, oldest A s  [stack S]...",
 * frame lines "      #I 0xADDR ... (MODULE+0xOFF)...", and after
 * "modules (start-end, build-id, path):" lines "  0xS-0xE ID PATH".
 */
static int parse_text(char *buf, struct sreport *r)
{
	bool in_modules = false;
	struct ssite *site = NULL;

	for (char *line = buf, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		unsigned long long a, b, c;
		unsigned idx, sid;
		char age[32];
		int used = 0;

		if (sscanf(line, "gwmem report: pid %llu", &a) == 1 && a <= UINT32_MAX)
			r->pid = (uint32_t)a;
		if (strcmp(line, "modules (start-end, build-id, path):") == 0) {
			in_modules = true;
			continue;
		}
		if (in_modules) {
			char id[64];
			if (sscanf(line, "  0x%llx-0x%llx %63s %n", &a, &b, id, &used) == 3 && used > 0) {
				struct gwmem_shm_module *m = add_module(r);
				if (!m)
					return -ENOMEM;
				m->start = a;
				m->end = b;
				m->bias = UINT64_MAX;          /* from the frames below */
				if (strcmp(id, "-") != 0)
					set_build_id(m, id, strlen(id));
				snprintf(m->path, sizeof(m->path), "%s", line + used);
			}
			continue;
		}
		if (sscanf(line, "#%u  %llu bytes in %llu allocations, oldest %31s s  [stack %u]",
			   &idx, &b, &c, age, &sid) == 5) {
			site = add_site(r);
			if (!site)
				return -ENOMEM;
			site->bytes = b;
			site->count = c;
			site->stack_id = sid;
			snprintf(site->age, sizeof(site->age), "%s", age);
			continue;
		}
		if (site && sscanf(line, "      #%u 0x%llx", &idx, &a) == 2) {
			/* (MODULE+0xOFF): the last "+0x" followed by hex and ')' */
			uint64_t off = 0;
			bool has = false;
			for (char *p = strstr(line, "+0x"); p; p = strstr(p + 1, "+0x")) {
				char *end;
				unsigned long long v = strtoull(p + 3, &end, 16);
				if (*end == ')') {
					off = v;
					has = true;
				}
			}
			if (!add_frame(site, a, off, has))
				return -ENOMEM;
		}
	}
	return 0;
}

/* --- JSON ---------------------------------------------------------------- */

/* A small reader for the JSON gwmem writes: values are visited, not stored. */
struct json {
	const char *p, *end;
	bool bad;
	int depth;
};

static void ws(struct json *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r'))
		j->p++;
}

static bool eat(struct json *j, char c)
{
	ws(j);
	if (j->p < j->end && *j->p == c) {
		j->p++;
		return true;
	}
	return false;
}

/* A string into dst[cap] (escapes decoded; \u to UTF-8); truncated if long. */
static bool jstring(struct json *j, char *dst, size_t cap)
{
	size_t n = 0;

	if (!eat(j, '"'))
		return j->bad = true, false;
	while (j->p < j->end && *j->p != '"') {
		char c = *j->p++;
		if (c == '\\' && j->p < j->end) {
			c = *j->p++;
			switch (c) {
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'u': {
				unsigned v = 0;
				for (int i = 0; i < 4 && j->p < j->end; i++, j->p++)
					v = v * 16 + (unsigned)(isdigit((unsigned char)*j->p) ? *j->p - '0' :
								 (tolower((unsigned char)*j->p) - 'a' + 10) & 15);
				char u[3];
				size_t k = 0;
				if (v < 0x80) {
					u[k++] = (char)v;
				} else if (v < 0x800) {
					u[k++] = (char)(0xc0 | v >> 6);
					u[k++] = (char)(0x80 | (v & 63));
				} else {
					u[k++] = '?';
				}
				for (size_t i = 0; i < k; i++)
					if (dst && n + 1 < cap)
						dst[n++] = u[i];
				continue;
			}
			default: break;            /* \" \\ \/ */
			}
		}
		if (dst && n + 1 < cap)
			dst[n++] = c;
	}
	if (dst && cap)
		dst[n] = '\0';
	if (!eat(j, '"'))
		return j->bad = true, false;
	return true;
}

static void jskip(struct json *j);

/* Walk an object: fn gets each key with the cursor on its value and must consume it. */
typedef void (*member_fn)(struct json *j, const char *key, void *ctx);

static void jobject(struct json *j, member_fn fn, void *ctx)
{
	char key[64];

	if (!eat(j, '{') || ++j->depth > 32) {
		j->bad = true;
		return;
	}
	if (!eat(j, '}')) {
		do {
			if (!jstring(j, key, sizeof(key)) || !eat(j, ':'))
				break;
			fn(j, key, ctx);
		} while (!j->bad && eat(j, ','));
		if (!eat(j, '}'))
			j->bad = true;
	}
	j->depth--;
}

typedef void (*element_fn)(struct json *j, void *ctx);

static void jarray(struct json *j, element_fn fn, void *ctx)
{
	if (!eat(j, '[') || ++j->depth > 32) {
		j->bad = true;
		return;
	}
	if (!eat(j, ']')) {
		do
			fn(j, ctx);
		while (!j->bad && eat(j, ','));
		if (!eat(j, ']'))
			j->bad = true;
	}
	j->depth--;
}

static void skip_member(struct json *j, const char *key, void *ctx)
{
	(void)key; (void)ctx;
	jskip(j);
}

static void skip_element(struct json *j, void *ctx)
{
	(void)ctx;
	jskip(j);
}

static void jskip(struct json *j)
{
	ws(j);
	if (j->p >= j->end) {
		j->bad = true;
		return;
	}
	switch (*j->p) {
	case '{': jobject(j, skip_member, NULL); return;
	case '[': jarray(j, skip_element, NULL); return;
	case '"': jstring(j, NULL, 0); return;
	default:
		while (j->p < j->end && (isalnum((unsigned char)*j->p) || strchr("+-.", *j->p)))
			j->p++;
	}
}

/* A number, or a string holding "0x..." or a decimal. */
static uint64_t jnumber(struct json *j)
{
	char buf[64];
	ws(j);
	if (j->p < j->end && *j->p == '"') {
		jstring(j, buf, sizeof(buf));
	} else {
		size_t n = 0;
		while (j->p < j->end && n + 1 < sizeof(buf) && (isalnum((unsigned char)*j->p) || *j->p == '.'))
			buf[n++] = *j->p++;
		buf[n] = '\0';
	}
	return strtoull(buf, NULL, 0);
}

static void frame_member(struct json *j, const char *key, void *ctx)
{
	struct sframe *f = ctx;
	if (strcmp(key, "address") == 0)
		f->address = jnumber(j);
	else if (strcmp(key, "offset") == 0)
		f->offset = jnumber(j), f->has_offset = true;
	else
		jskip(j);
}

static void frame_element(struct json *j, void *ctx)
{
	struct ssite *s = ctx;
	struct sframe f = { 0 };
	jobject(j, frame_member, &f);
	if (!j->bad && !add_frame(s, f.address, f.offset, f.has_offset))
		j->bad = true;
}

static void site_member(struct json *j, const char *key, void *ctx)
{
	struct ssite *s = ctx;
	if (strcmp(key, "stack_id") == 0) {
		s->stack_id = (uint32_t)jnumber(j);
	} else if (strcmp(key, "count") == 0) {
		s->count = jnumber(j);
	} else if (strcmp(key, "bytes") == 0) {
		s->bytes = jnumber(j);
	} else if (strcmp(key, "oldest_age_s") == 0) {
		size_t n = 0;
		ws(j);
		while (j->p < j->end && n + 1 < sizeof(s->age) && (isdigit((unsigned char)*j->p) || *j->p == '.'))
			s->age[n++] = *j->p++;
		s->age[n] = '\0';
	} else if (strcmp(key, "frames") == 0) {
		jarray(j, frame_element, s);
	} else {
		jskip(j);
	}
}

static void site_element(struct json *j, void *ctx)
{
	struct ssite *s = add_site(ctx);
	if (!s) {
		j->bad = true;
		return;
	}
	jobject(j, site_member, s);
}

static void module_member(struct json *j, const char *key, void *ctx)
{
	struct gwmem_shm_module *m = ctx;
	char id[64];
	if (strcmp(key, "start") == 0)
		m->start = jnumber(j);
	else if (strcmp(key, "end") == 0)
		m->end = jnumber(j);
	else if (strcmp(key, "bias") == 0)
		m->bias = jnumber(j);
	else if (strcmp(key, "path") == 0)
		jstring(j, m->path, sizeof(m->path));
	else if (strcmp(key, "build_id") == 0 && jstring(j, id, sizeof(id)))
		set_build_id(m, id, strlen(id));
	else
		jskip(j);
}

static void module_element(struct json *j, void *ctx)
{
	struct gwmem_shm_module *m = add_module(ctx);
	if (!m) {
		j->bad = true;
		return;
	}
	jobject(j, module_member, m);
}

static void report_member(struct json *j, const char *key, void *ctx)
{
	struct sreport *r = ctx;
	if (strcmp(key, "pid") == 0)
		r->pid = (uint32_t)jnumber(j);
	else if (strcmp(key, "sites") == 0)
		jarray(j, site_element, r);
	else if (strcmp(key, "modules") == 0)
		jarray(j, module_element, r);
	else
		jskip(j);
}

static int parse_json(const char *buf, size_t len, struct sreport *r)
{
	struct json j = { buf, buf + len, false, 0 };
	jobject(&j, report_member, r);
	return j.bad ? -EINVAL : 0;
}

/* --- the command ---------------------------------------------------------- */

/* Text reports give no bias: a frame's address - offset does. */
static void fill_bias(struct sreport *r)
{
	for (size_t m = 0; m < r->nmods; m++) {
		struct gwmem_shm_module *mod = &r->mods[m];
		for (size_t i = 0; i < r->nsites && mod->bias == UINT64_MAX; i++)
			for (size_t f = 0; f < r->sites[i].nframes; f++) {
				const struct sframe *fr = &r->sites[i].frames[f];
				if (fr->has_offset && fr->address && fr->address - 1 >= mod->start &&
				    fr->address - 1 < mod->end) {
					mod->bias = fr->address - fr->offset;
					break;
				}
			}
		if (mod->bias == UINT64_MAX)
			mod->bias = mod->start;
	}
}

struct symbolize_args {
	struct common_opts co;
	const char *file;
};

static int symbolize_option(const struct cmd *c, void *args, int ch, const char *arg)
{
	(void)args; (void)arg;
	return usage_error(c, "unknown option");
}

static void print_report(const struct sreport *r, struct symbolizer *sym, const struct symbolize_opts *so,
			 bool json, const char *file)
{
	struct gw_report_opts lopt = { .symbolize = symbolizer_frame, .sym_ctx = sym, .wrappers = so->wrappers };
	char label[600], hex[2 * sizeof(r->mods->build_id) + 1];

	if (json) {
		printf("{\"pid\": %u, \"source\": ", r->pid);
		json_string(stdout, file);
		printf(", \"sites\": [");
	} else {
		printf("gwmem symbolize: ");
		put_escaped(stdout, GW_ESC_TEXT, file);
		printf(" (pid %u), %zu allocation sites\n", r->pid, r->nsites);
	}
	for (size_t i = 0; i < r->nsites; i++) {
		const struct ssite *s = &r->sites[i];
		uint64_t frames[GWMEM_SHM_MAX_FRAMES];
		int depth = 0;
		struct gw_frame_info fi;

		for (size_t f = 0; f < s->nframes && depth < (int)GWMEM_SHM_MAX_FRAMES; f++)
			frames[depth++] = s->frames[f].address;
		label[0] = '\0';
		if (depth) {
			gw_report_site_frame(NULL, &lopt, frames, depth, &fi);
			gw_report_frame_label(&fi, label, sizeof(label));
		}
		if (json) {
			printf("%s\n  {\"stack_id\": %u, \"count\": %llu, \"bytes\": %llu, \"oldest_age_s\": %s, "
			       "\"site\": ", i ? "," : "", s->stack_id, (unsigned long long)s->count,
			       (unsigned long long)s->bytes, s->age[0] ? s->age : "0");
			json_string(stdout, label);
			printf(", \"frames\": [");
		} else {
			printf("\n#%zu  %llu bytes in %llu allocations", i + 1, (unsigned long long)s->bytes,
			       (unsigned long long)s->count);
			if (s->age[0])
				printf(", oldest %s s", s->age);
			printf("  [stack %u]", s->stack_id);
			if (label[0]) {
				printf("  in ");
				put_escaped(stdout, GW_ESC_TEXT, label);
			}
			putchar('\n');
		}
		for (int f = 0; f < depth; f++) {
			symbolizer_frame(sym, frames[f], &fi);
			if (json) {
				printf(f ? ",\n    " : "\n    ");
				print_frame_json(stdout, &fi);
			} else {
				print_frame_text(stdout, (unsigned)f, &fi);
			}
		}
		if (json)
			printf("]}");
	}
	if (json)
		printf(r->nsites ? "\n], \"modules\": [" : "], \"modules\": [");
	else if (r->nmods)
		printf("\nmodules (start-end, build-id, path):\n");
	for (size_t m = 0; m < r->nmods; m++) {
		const struct gwmem_shm_module *mod = &r->mods[m];
		gw_elffile_build_id_hex(mod->build_id, mod->build_id_len, hex, sizeof(hex));
		if (json) {
			printf("%s\n  {\"start\": \"0x%llx\", \"end\": \"0x%llx\", \"bias\": \"0x%llx\", "
			       "\"build_id\": \"%s\", \"path\": ", m ? "," : "", (unsigned long long)mod->start,
			       (unsigned long long)mod->end, (unsigned long long)mod->bias, hex);
			json_string(stdout, mod->path);
			printf("}");
		} else {
			printf("  0x%llx-0x%llx %s ", (unsigned long long)mod->start,
			       (unsigned long long)mod->end, hex[0] ? hex : "-");
			put_escaped(stdout, GW_ESC_TEXT, mod->path);
			putchar('\n');
		}
	}
	if (json)
		printf(r->nmods ? "\n]}\n" : "]}\n");
}

static int symbolize_main(int argc, char **argv)
{
	struct symbolize_args a = { 0 };
	struct sreport r = { 0 };
	int operand, rc, fd;
	uint64_t size = 0;

	rc = parse_options(&cmd_symbolize, argc, argv, COMMON_JSON | COMMON_SYMBOLS, NULL, "",
			   symbolize_option, &a, &a.co, &operand);
	if (rc != PARSE_OK)
		return rc;
	if (operand != argc - 1)
		return usage_error(&cmd_symbolize, operand >= argc ? "missing FILE" : "too many arguments");
	a.file = argv[operand];

	fd = gw_os_open_regular(a.file, &size);
	if (fd < 0) {
		fprintf(stderr, "gwmem symbolize: %s: %s\n", a.file, strerror(-fd));
		return fd == -ENOENT ? GWMEM_EXIT_NOENT : fd == -EACCES ? GWMEM_EXIT_ACCESS : GWMEM_EXIT_ERROR;
	}
	if (size > REPORT_MAX_SIZE) {
		close(fd);
		fprintf(stderr, "gwmem symbolize: %s: larger than a report\n", a.file);
		return GWMEM_EXIT_CORRUPT;
	}
	char *buf = malloc(size + 1);
	ssize_t n = buf ? read(fd, buf, size) : -1;
	close(fd);
	if (n < 0 || (uint64_t)n != size) {
		free(buf);
		fprintf(stderr, "gwmem symbolize: %s: cannot read\n", a.file);
		return GWMEM_EXIT_ERROR;
	}
	buf[size] = '\0';

	/* a segment or snapshot: the report of it */
	uint64_t magic = GWMEM_SHM_MAGIC;
	if (size >= sizeof(magic) && memcmp(buf, &magic, sizeof(magic)) == 0) {
		free(buf);
		argv[0] = (char *)"report";
		return cmd_report.main(argc, argv);
	}
	const char *p = buf;
	while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
		p++;
	int err = *p == '{' ? parse_json(p, size - (size_t)(p - buf), &r) : parse_text(buf, &r);
	free(buf);
	if (err == -ENOMEM) {
		fprintf(stderr, "gwmem symbolize: out of memory\n");
		report_free(&r);
		return GWMEM_EXIT_ERROR;
	}
	if (err || !r.nsites) {
		fprintf(stderr, "gwmem symbolize: %s: not a gwmem report (no allocation sites found)\n", a.file);
		report_free(&r);
		return GWMEM_EXIT_CORRUPT;
	}
	fill_bias(&r);
	if (!r.nmods)
		fprintf(stderr, "gwmem symbolize: warning: %s lists no modules; frames keep their addresses\n",
			a.file);

	struct symbolizer *sym = symbolizer_new_modules(r.mods, (int)r.nmods, NULL, &a.co.sym);
	if (!sym) {
		report_free(&r);
		return GWMEM_EXIT_ERROR;
	}
	print_report(&r, sym, &a.co.sym, a.co.json, a.file);
	symbolizer_free(sym);
	report_free(&r);
	return fflush(stdout) == 0 ? 0 : GWMEM_EXIT_ERROR;
}

const struct cmd cmd_symbolize = {
	.name = "symbolize",
	.summary = "name the frames of a saved report (text or JSON) on this host",
	.main = symbolize_main,
	.help = help,
};
