/*
 * objpool.c - object pools of the public API (gwmem_objpool_*, gwmem_pooled_*).
 *
 * An object pool keeps built objects for reuse.  Memory comes from a
 * thread-safe fixed-block pool of its own (so it is page-mapped and an object
 * pointer maps to a slot index in O(1)); a per-slot state byte says whether
 * the object is free memory, in use or idle, which makes a double put or a
 * foreign pointer a refused call instead of a corrupted pool.
 *
 * Idle objects sit on a LIFO stack (an array of max_objects pointers), so an
 * idle object's bytes are never touched by the pool: with reset_on_return
 * off, what the caller left in it is what the next get sees.
 *
 * auto_shrink: use is measured in windows of shrink_window gets and puts.
 * At the end of a window the pool keeps at most max(peak in_use of the last
 * two windows) objects alive (in use + idle) and destroys the idle excess.
 *
 * Callbacks (init, reset, destroy) never run under the pool's lock.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "gwmem.h"
#include "fixpool.h"
#include "fmt.h"
#include "hook.h"
#include "internal.h"
#include "objpool.h"
#include "os.h"
#include "tracker.h"
#include "spin.h"

enum slot_state { SLOT_FREE = 0, SLOT_IN_USE = 1, SLOT_IDLE = 2, SLOT_RETURNING = 3 };

struct gwmem_objpool {
	struct gwmem_objpool_options o;
	struct gwmem_fixpool *fp;
	unsigned tag;
	struct gw_spin lock;
	void **idle;              /* max_objects entries */
	size_t idle_bytes;
	size_t nidle;
	uint8_t *state;           /* one per fixpool slot */
	size_t state_bytes;
	size_t in_use;
	size_t peak_cur;          /* peak in_use in the current window */
	size_t peak_prev;         /* ... and in the previous one */
	size_t ops;               /* gets + puts in the current window */
	struct gwmem_objpool_stats st;
	struct gw_track *track;   /* opts.track: records of objects in use */
	char name[32];
};

void gwmem_objpool_options_init(struct gwmem_objpool_options *opts, size_t object_size,
				const struct gwmem_config *cfg)
{
	struct gwmem_config loaded;

	if (!opts)
		return;
	if (!cfg) {
		gwmem_config_load(&loaded, NULL, GWMEM_CONFIG_QUIET);
		cfg = &loaded;
	}
	memset(opts, 0, sizeof(*opts));
	opts->object_size = object_size;
	opts->max_objects = cfg->object_pool.max_objects;
	opts->reset_on_return = cfg->object_pool.reset_on_return;
	opts->auto_shrink = cfg->object_pool.auto_shrink;
}

struct gwmem_objpool *gw_objpool_create(const struct gwmem_objpool_options *opts, bool hooks)
{
	struct gwmem_fixpool_options fo;
	struct gwmem_objpool *op;
	size_t page = gw_os_page_size();
	size_t cap;

	if (!opts || opts->object_size == 0) {
		errno = EINVAL;
		return NULL;
	}
	op = gw_os_map(GW_ALIGN_UP(sizeof(*op), page));
	if (!op) {
		errno = ENOMEM;
		return NULL;
	}
	memset(op, 0, sizeof(*op));
	op->o = *opts;
	if (op->o.capacity == 0)
		op->o.capacity = 65536;
	if (op->o.shrink_window == 0)
		op->o.shrink_window = 1024;
	if (op->o.max_objects > op->o.capacity)
		op->o.max_objects = op->o.capacity;
	if (opts->name)
		gw_snprintf(op->name, sizeof(op->name), "%s", opts->name);
	op->o.name = op->name;

	memset(&fo, 0, sizeof(fo));
	fo.block_size = opts->object_size;
	fo.alignment = opts->alignment ? opts->alignment : (opts->object_size >= 16 ? 16 : 0);
	fo.blocks_per_chunk = op->o.capacity < 64 ? op->o.capacity : 64;
	/* rounded up without capacity + bpc - 1, which wraps for a huge capacity
	 * (then 0 chunks, which the fixpool reads as its default) */
	fo.max_chunks = op->o.capacity / fo.blocks_per_chunk + (op->o.capacity % fo.blocks_per_chunk != 0);
	fo.flags = GWMEM_FIXPOOL_THREADSAFE | GWMEM_FIXPOOL_QUIET | GW_FIXPOOL_NOHOOK;
	fo.name = op->name;
	op->fp = gwmem_fixpool_create(&fo);
	if (!op->fp)
		goto fail;
	cap = gw_fixpool_capacity(op->fp);
	op->state_bytes = GW_ALIGN_UP(cap, page);
	op->state = gw_os_map(op->state_bytes);
	op->idle_bytes = GW_ALIGN_UP((op->o.max_objects + 1) * sizeof(void *), page);
	op->idle = gw_os_map(op->idle_bytes);
	if (!op->state || !op->idle)
		goto fail_nomem;
	if (opts->track) {
		op->track = gw_track_create(op->name, cap, opts->object_size);
		if (!op->track)
			goto fail_nomem;
	}
	if (hooks) {
		char tag[48];

		gw_snprintf(tag, sizeof(tag), "objpool:%s", op->name[0] ? op->name : "anon");
		op->tag = GW_HOOK_TAG(tag);
	}
	return op;

fail_nomem:
	errno = ENOMEM;
fail:
	gwmem_objpool_destroy(op);
	if (errno != EINVAL)
		errno = ENOMEM;
	return NULL;
}

struct gwmem_fixpool *gw_objpool_fixpool(const struct gwmem_objpool *op)
{
	return op->fp;
}

struct gwmem_objpool *gwmem_objpool_create(const struct gwmem_objpool_options *opts)
{
	return gw_objpool_create(opts, true);
}

void gwmem_objpool_destroy(struct gwmem_objpool *op)
{
	if (!op)
		return;
	if (op->idle) {
		for (size_t i = 0; i < op->nidle; i++)
			if (op->o.destroy)
				op->o.destroy(op->idle[i], op->o.arg);
		gw_os_unmap(op->idle, op->idle_bytes);
	}
	if (op->state) {
		/* Objects still in use die with the pool: tell the leak tracker. */
		if (op->tag && gwmem_hook_free) {
			size_t cap = gw_fixpool_capacity(op->fp);

			for (size_t i = 0; i < cap; i++)
				if (op->state[i] == SLOT_IN_USE)
					GW_HOOK_FREE(gw_fixpool_block(op->fp, i));
		}
		gw_os_unmap(op->state, op->state_bytes);
	}
	gw_track_destroy(op->track);
	gwmem_fixpool_destroy(op->fp);
	gw_os_unmap(op, GW_ALIGN_UP(sizeof(*op), gw_os_page_size()));
}

static void note_op(struct gwmem_objpool *op)
{
	if (op->in_use > op->peak_cur)
		op->peak_cur = op->in_use;
	if (op->in_use > op->st.peak_in_use)
		op->st.peak_in_use = op->in_use;
	if (++op->ops >= op->o.shrink_window) {
		op->ops = 0;
		op->peak_prev = op->peak_cur;
		op->peak_cur = op->in_use;
	}
}

/* Idle objects allowed now, under the lock. */
static size_t idle_limit(const struct gwmem_objpool *op)
{
	size_t lim = op->o.max_objects;

	if (op->o.auto_shrink) {
		size_t peak = op->peak_prev > op->peak_cur ? op->peak_prev : op->peak_cur;
		size_t room = peak > op->in_use ? peak - op->in_use : 0;

		if (room < lim)
			lim = room;
	}
	return lim;
}

/* Destroy an object that is no longer in use or idle and release its memory. */
static void release_obj(struct gwmem_objpool *op, void *obj)
{
	long i = gw_fixpool_index(op->fp, obj);

	if (op->o.destroy)
		op->o.destroy(obj, op->o.arg);
	gw_spin_lock(&op->lock);
	op->state[i] = SLOT_FREE;
	op->st.destroyed++;
	gw_spin_unlock(&op->lock);
	gwmem_fixpool_free(op->fp, obj);
}

/* Release idle objects until at most 'keep' (and the auto-shrink limit) remain. */
static size_t trim(struct gwmem_objpool *op, size_t keep, bool use_limit)
{
	size_t n = 0, bound;

	gw_spin_lock(&op->lock);
	bound = op->nidle;
	gw_spin_unlock(&op->lock);
	for (size_t k = 0; k < bound; k++) {
		void *obj = NULL;
		size_t lim;

		gw_spin_lock(&op->lock);
		lim = use_limit ? idle_limit(op) : keep;
		if (op->nidle > lim) {
			obj = op->idle[--op->nidle];
			op->state[gw_fixpool_index(op->fp, obj)] = SLOT_RETURNING;
		}
		gw_spin_unlock(&op->lock);
		if (!obj)
			break;
		release_obj(op, obj);
		n++;
	}
	return n;
}

/* Hand out the most recently returned idle object, or NULL when none is idle. */
static void *take_idle(struct gwmem_objpool *op)
{
	void *obj = NULL;

	gw_spin_lock(&op->lock);
	if (op->nidle) {
		obj = op->idle[--op->nidle];
		op->state[gw_fixpool_index(op->fp, obj)] = SLOT_IN_USE;
		op->in_use++;
		op->st.gets++;
		op->st.hits++;
		note_op(op);
	}
	gw_spin_unlock(&op->lock);
	return obj;
}

void *gwmem_objpool_get(struct gwmem_objpool *op)
{
	void *obj = NULL;
	long i;
	int rc;

	if (gw_unlikely(!op)) {
		errno = EINVAL;
		return NULL;
	}
	obj = take_idle(op);
	if (obj)
		goto out;

	obj = gwmem_fixpool_alloc(op->fp);
	if (!obj) {
		/* The fixpool is full only of objects in use or idle: a put may
		 * have made one idle since we looked. */
		obj = take_idle(op);
		if (obj)
			goto out;
		errno = ENOMEM;
		return NULL;
	}
	memset(obj, 0, op->o.object_size);
	if (op->o.init && (rc = op->o.init(obj, op->o.arg)) != 0) {
		gwmem_fixpool_free(op->fp, obj);
		errno = rc < 0 ? -rc : rc;
		return NULL;
	}
	i = gw_fixpool_index(op->fp, obj);
	gw_spin_lock(&op->lock);
	op->state[i] = SLOT_IN_USE;
	op->in_use++;
	op->st.gets++;
	op->st.created++;
	note_op(op);
	gw_spin_unlock(&op->lock);
out:
	if (op->track)
		gw_track_alloc(op->track, (size_t)gw_fixpool_index(op->fp, obj), __builtin_return_address(0));
	if (op->tag)
		GW_HOOK_ALLOC(obj, op->o.object_size, op->tag);
	return obj;
}

int gwmem_objpool_put(struct gwmem_objpool *op, void *obj)
{
	bool keep = false, window_end;
	long i;

	if (gw_unlikely(!op))
		return -EINVAL;
	i = obj ? gw_fixpool_index(op->fp, obj) : -1;
	gw_spin_lock(&op->lock);
	if (gw_unlikely(i < 0 || op->state[i] != SLOT_IN_USE)) {
		int ret = i < 0 ? -EINVAL : -EALREADY;

		op->st.invalid_puts++;
		gw_spin_unlock(&op->lock);
		return ret;
	}
	op->state[i] = SLOT_RETURNING;
	op->in_use--;
	op->st.puts++;
	note_op(op);
	gw_spin_unlock(&op->lock);

	if (op->track)
		gw_track_free(op->track, (size_t)i);
	if (op->tag)
		GW_HOOK_FREE(obj);
	if (op->o.reset_on_return && op->o.reset)
		op->o.reset(obj, op->o.arg);

	gw_spin_lock(&op->lock);
	if (op->nidle < idle_limit(op)) {
		op->idle[op->nidle++] = obj;
		op->state[i] = SLOT_IDLE;
		keep = true;
	}
	window_end = op->o.auto_shrink && op->ops == 0;
	gw_spin_unlock(&op->lock);
	if (!keep)
		release_obj(op, obj);
	if (window_end)
		trim(op, 0, true);
	return 0;
}

size_t gwmem_objpool_size(struct gwmem_objpool *op)
{
	size_t n;

	if (!op)
		return 0;
	gw_spin_lock(&op->lock);
	n = op->nidle;
	gw_spin_unlock(&op->lock);
	return n;
}

size_t gwmem_objpool_shrink(struct gwmem_objpool *op, size_t keep)
{
	return op ? trim(op, keep, false) : 0;
}

int gwmem_objpool_stats(struct gwmem_objpool *op, struct gwmem_objpool_stats *out)
{
	if (!op || !out)
		return -EINVAL;
	gw_spin_lock(&op->lock);
	*out = op->st;
	out->in_use = op->in_use;
	out->idle = op->nidle;
	gw_spin_unlock(&op->lock);
	return 0;
}

/* --- pooled handles ----------------------------------------------------- */

int gwmem_pooled_get(struct gwmem_objpool *op, struct gwmem_pooled *h)
{
	if (!h)
		return -EINVAL;
	h->pool = op;
	h->obj = gwmem_objpool_get(op);
	return h->obj ? 0 : -errno;
}

void gwmem_pooled_release(struct gwmem_pooled *h)
{
	if (!h || !h->obj)
		return;
	gwmem_objpool_put(h->pool, h->obj);
	h->obj = NULL;
}

void *gwmem_pooled_take(struct gwmem_pooled *h)
{
	void *obj;

	if (!h)
		return NULL;
	obj = h->obj;
	h->obj = NULL;
	return obj;
}
