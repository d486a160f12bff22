/*
 * hooks.c - the gwmem_hook_* exports through which libgwmem.so's pools
 * report their blocks to leak tracking (common/hook.h is the other side,
 * with weak references): pool names become record tags, and a pool block
 * is recorded like an allocation, with the backtrace of the pool call.
 *
 * The pool library's own frames are dropped from that backtrace like
 * gwmem's: the text range of the object that called the hook is found once
 * (a handful of objects, cached) and passed to the tracker as an extra
 * range to skip.  What it leaves to others: the decision to record and the
 * record itself (track.c), the tag names' storage (the segment's header,
 * or early_tags until the segment exists).
 */
#include "config.h"

#include <string.h>

#include "gwmem.h"
#include "gwmem/shm_layout.h"
#include "fmt.h"
#include "hooks.h"
#include "spin.h"
#include "track.h"
#include "unwind.h"

/* Exported for libgwmem.so (common/hook.h declares them weak on its side). */
GWMEM_EXPORT unsigned gwmem_hook_tag(const char *name);
GWMEM_EXPORT void gwmem_hook_alloc(void *p, size_t size, unsigned tag);
GWMEM_EXPORT void gwmem_hook_free(void *p);

#define HOOK_RANGES 4

static struct {
	struct gw_spin range_lock;
	unsigned nranges;
	struct gw_range ranges[HOOK_RANGES];
	struct gw_spin tag_lock;
} H;

/* tags registered before the segment exists (a pool created by a constructor) */
static char early_tags[GWMEM_SHM_TAG_MAX][32];

void gw_hooks_attach(struct gwmem_shm_header *h)
{
	for (unsigned i = 1; i < GWMEM_SHM_TAG_MAX; i++)
		memcpy(h->tag_names[i], early_tags[i], sizeof(early_tags[i]));
}

/* Text range of the object that called a hook (cached: a handful of objects). */
static const struct gw_range *caller_range(uintptr_t ra)
{
	static const struct gw_range empty;
	unsigned n = __atomic_load_n(&H.nranges, __ATOMIC_ACQUIRE);
	struct gw_range r;
	bool is_main = false, ok;

	for (unsigned i = 0; i < n; i++)
		if (gw_range_has(&H.ranges[i], ra))
			return &H.ranges[i];
	gw_track_guard_enter();
	ok = gw_unwind_object_text((const void *)ra, &r, &is_main);
	gw_track_guard_leave();
	/* pools linked into the main program: their frames cannot be told
	 * apart from the program's, keep them */
	if (!ok || is_main)
		return &empty;
	gw_spin_lock(&H.range_lock);
	n = H.nranges;
	if (n < HOOK_RANGES) {
		H.ranges[n] = r;
		__atomic_store_n(&H.nranges, n + 1, __ATOMIC_RELEASE);
	}
	gw_spin_unlock(&H.range_lock);
	return n < HOOK_RANGES ? &H.ranges[n] : &empty;
}

unsigned gwmem_hook_tag(const char *name)
{
	struct gwmem_shm_header *h = gw_track_segment(NULL);
	char (*tags)[32] = h ? h->tag_names : early_tags;
	unsigned found = GWMEM_SHM_TAG_MAX - 1;

	if (!name || !name[0])
		return found;
	gw_spin_lock(&H.tag_lock);
	for (unsigned i = 1; i < GWMEM_SHM_TAG_MAX; i++) {
		if (!tags[i][0]) {
			gw_snprintf(tags[i], sizeof(tags[i]), "%s", name);
			found = i;
			break;
		}
		if (strncmp(tags[i], name, sizeof(tags[i]) - 1) == 0) {
			found = i;
			break;
		}
	}
	gw_spin_unlock(&H.tag_lock);
	return found;
}

void gwmem_hook_alloc(void *p, size_t size, unsigned tag)
{
	if (!p || !__atomic_load_n(&gw_track_on, __ATOMIC_RELAXED) || !gw_track_admit())
		return;
	gw_track_record_hooked(p, size, tag < GWMEM_SHM_TAG_MAX ? tag : GWMEM_SHM_TAG_MAX - 1,
			       caller_range((uintptr_t)__builtin_return_address(0)));
}

void gwmem_hook_free(void *p)
{
	gw_track_free(p);
}
