/*
 * blockmap.c - building the block map of table.c (see blockmap.h): its
 * geometry from the pools', and its one private mapping.
 *
 * Lookups are inline (blockmap.h); entries are read and written by
 * table.c under the stripe locks.  Nothing here runs after init except
 * gw_blockmap_fini.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "blockmap.h"
#include "counters.h"
#include "fmt.h"
#include "os.h"
#include "pool.h"

bool gw_blockmap_init(struct gw_blockmap *m, uintptr_t base, unsigned shift, unsigned nclasses,
		      const uint32_t *sizes, const uint32_t *caps)
{
	const size_t line = GW_CACHELINE / sizeof(uint32_t);
	size_t total = 0, at = 0;
	uint32_t *mem;

	memset(m, 0, sizeof(*m));
	if (nclasses == 0 || nclasses > GW_BLOCKMAP_MAX_CLASSES || shift > 31)
		return false;
	for (unsigned i = 0; i < nclasses; i++)
		total += ((size_t)caps[i] + line - 1) / line * line;
	if (total == 0)
		return false;
	m->bytes = GW_ALIGN_UP(total * sizeof(uint32_t), gw_os_page_size());
	mem = gw_os_map(m->bytes);
	if (!mem) {
		m->bytes = 0;
		return false;
	}
	m->mem = mem;
	for (unsigned i = 0; i < nclasses; i++) {
		struct gw_blockmap_class *c = &m->cls[i];
		uint32_t size = sizes[i], odd, inv, cap = caps[i];

		if (!size || !cap)
			continue;
		c->tz = (uint32_t)__builtin_ctz(size);
		odd = size >> c->tz;
		inv = odd;
		/* Newton's iteration: inv * odd == 1 (mod 2^32) */
		for (int k = 0; k < 5; k++)
			inv *= 2 - odd * inv;
		c->inv = inv;
		/* blocks past the region, or past UINT32_MAX / size (where the
		 * divisibility test of gw_blockmap_slot stops being exact), get
		 * no entry */
		if ((uint64_t)cap * size > (UINT64_C(1) << shift))
			cap = (uint32_t)((UINT64_C(1) << shift) / size);
		if (cap > UINT32_MAX / size)
			cap = UINT32_MAX / size;
		c->cap = cap;
		c->ent = mem + at;
		at += ((size_t)caps[i] + line - 1) / line * line;
	}
	m->base = base;
	m->shift = shift;
	m->rmask = ((uintptr_t)1 << shift) - 1;
	m->nclasses = nclasses;
	m->span = (uintptr_t)nclasses << shift;
	return true;
}

enum gw_blockmap_state gw_blockmap_init_pools(struct gw_blockmap *m)
{
	uint32_t sizes[GW_BLOCKMAP_MAX_CLASSES], caps[GW_BLOCKMAP_MAX_CLASSES];
	unsigned n = gw_pool_g.nclasses;
	struct rlimit rl;

	memset(m, 0, sizeof(*m));
	if (!gw_pool_ready() || !__atomic_load_n(&gw_pool_g.span, __ATOMIC_ACQUIRE) || n == 0 ||
	    n > GW_BLOCKMAP_MAX_CLASSES)
		return GW_BLOCKMAP_NO_POOLS;
	/* under an address-space limit every mapping counts against the
	 * program (the pools shrink their own chunks there): keep the hash
	 * index, whose memory follows the live records */
	if (sizeof(void *) < 8 || (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY))
		return GW_BLOCKMAP_TIGHT;
	for (unsigned i = 0; i < n; i++) {
		sizes[i] = gw_pool_ro[i].size;
		caps[i] = gw_pool_class_blocks(i);
	}
	if (!gw_blockmap_init(m, gw_pool_g.base, gw_pool_g.region_shift, n, sizes, caps)) {
		gw_count(mmap_failures);
		/* once: init runs once per process (a child inherits the map) */
		gw_log("cannot map the block map of the allocation table (%s): pooled blocks "
		       "are indexed by hash, which is slower", gw_strerror(errno));
		return GW_BLOCKMAP_MAP_FAILED;
	}
	return GW_BLOCKMAP_ON;
}

void gw_blockmap_fini(struct gw_blockmap *m)
{
	if (m->mem)
		gw_os_unmap(m->mem, m->bytes);
	memset(m, 0, sizeof(*m));
}
