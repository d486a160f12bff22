/*
 * counters.c - event counters and rate-limited diagnostics.
 */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "fmt.h"
#include "options.h"

static struct gwmem_shm_counters static_counters;
/* a forked child points it elsewhere at once (gw_counters_detach) */
struct gwmem_shm_counters *gw_counters GW_FORK_DATA = &static_counters;

void gw_counters_attach(struct gwmem_shm_counters *area)
{
	if (area == gw_counters)
		return;
	memcpy(area, gw_counters, sizeof(*area));
	__atomic_store_n(&gw_counters, area, __ATOMIC_RELEASE);
}

/* A forked child's counts until it adopts its copy: from zero, added in then. */
static struct gwmem_shm_counters fork_counters;

void gw_counters_detach(void)
{
	/* nothing is read or copied here: the child's fork stays cheap */
	__atomic_store_n(&gw_counters, &fork_counters, __ATOMIC_RELEASE);
}

void gw_counters_reattach(struct gwmem_shm_counters *area)
{
	uint64_t *to = (uint64_t *)area, *from = (uint64_t *)&fork_counters;

	if (gw_counters != &fork_counters)
		return;
	for (size_t i = 0; i < sizeof(*area) / sizeof(uint64_t); i++) {
		__atomic_fetch_add(&to[i], __atomic_exchange_n(&from[i], 0, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
	}
	__atomic_store_n(&gw_counters, area, __ATOMIC_RELEASE);
	/* what was counted between the exchange and the switch */
	for (size_t i = 0; i < sizeof(*area) / sizeof(uint64_t); i++)
		__atomic_fetch_add(&to[i], __atomic_exchange_n(&from[i], 0, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
}

static uint64_t event_seen[GW_EVENT_MAX];

void gw_counters_event(enum gw_event ev, bool fatal_if_configured, const char *fmt, ...)
{
	char mem[384];
	struct gw_buf b = GW_BUF_INIT(mem);
	uint64_t n = __atomic_add_fetch(&event_seen[ev], 1, __ATOMIC_RELAXED);
	bool fatal = fatal_if_configured && gw_opts()->memory.abort_on_error;
	va_list ap;

	/* first time, then at 2, 4, 8, ... so a storm costs log2(n) lines */
	if (!fatal && (n & (n - 1)) != 0)
		return;
	va_start(ap, fmt);
	gw_vformat(&b, fmt, ap);
	va_end(ap);
	if (n > 1)
		gw_format(&b, " (seen %llu times)", (unsigned long long)n);
	else if (!fatal)
		gw_buf_puts(&b, " (reported once; counted from now on)");
	gw_log("%s", gw_buf_cstr(&b));
	if (fatal)
		abort();
}
