/*
 * sensor-pipeline.c - readings flow from a producer to consumers without
 * malloc: reading buffers come from an object pool, shared readings are rc
 * objects from an rc pool (the last consumer's unref puts them back), and a
 * weak cache maps a sensor id to its latest reading without keeping it alive.
 */
#include <stdio.h>
#include <string.h>

#include <gwmem.h>

struct reading {
	char sensor[16];
	double value;
	unsigned seq;
};

static void reading_reset(void *obj, void *arg)
{
	memset(obj, 0, sizeof(struct reading));
}

int main(void)
{
	struct gwmem_objpool_options o;
	struct gwmem_objpool_stats st;

	/* max_objects, reset_on_return and auto_shrink from /etc/gwmem.toml ([object_pool]). */
	gwmem_objpool_options_init(&o, sizeof(struct reading), NULL);
	o.reset = reading_reset;
	o.name = "readings";
	struct gwmem_rcpool *readings = gwmem_rcpool_create(&o);
	struct gwmem_weakcache *latest = gwmem_weakcache_create(64);

	if (!readings || !latest)
		return 1;
	for (unsigned seq = 0; seq < 1000; seq++) {
		struct reading *r = gwmem_rcpool_get(readings);

		if (!r)
			return 1;
		snprintf(r->sensor, sizeof(r->sensor), "temp%u", seq % 4);
		r->value = 20.0 + (seq % 10) * 0.1;
		r->seq = seq;
		gwmem_weakcache_insert(latest, r->sensor, strlen(r->sensor), r);

		/* Two consumers share the reading: each holds a reference. */
		struct reading *logger = gwmem_rc_ref(r), *uplink = gwmem_rc_ref(r);
		gwmem_rc_unref(r);                 /* producer done */
		gwmem_rc_unref(logger);            /* logger done */

		/* A dashboard asks for the latest temp0 while uplink still holds it. */
		struct reading *l = gwmem_weakcache_get(latest, "temp0", 5);
		if (l) {
			if (seq % 250 == 0)
				printf("latest %s = %.1f (seq %u)\n", l->sensor, l->value, l->seq);
			gwmem_rc_unref(l);
		}
		gwmem_rc_unref(uplink);            /* last reference: back to the pool */
	}
	gwmem_weakcache_purge(latest);
	gwmem_rcpool_stats(readings, &st);
	printf("gets %llu, built %llu, reused %llu, idle %llu, cache entries %zu\n",
	       (unsigned long long)st.gets, (unsigned long long)st.created,
	       (unsigned long long)st.hits, (unsigned long long)st.idle, gwmem_weakcache_size(latest));
	gwmem_weakcache_destroy(latest);
	gwmem_rcpool_destroy(readings);
	/* One slot per sensor stays out of the pool while the cache holds its weak reference. */
	return st.created <= 8 ? 0 : 1;
}
