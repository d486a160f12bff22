/*
 * bench-api.c - libgwmem API benchmarks, printed side by side:
 *   fixed-block pool vs glibc malloc/free vs mimalloc (dlopen'ed, not interposed),
 *   and the same loop calling two empty functions of another shared library
 *   (the call cost every one of them pays, through the PLT or a pointer),
 *   object pool get/put vs malloc + init + free,
 *   compacting heap alloc/free at 90 % fill,
 *   rc ref/unref,
 *   producer/consumer: one thread allocates, another frees (the gateway
 *   pattern: a reader thread fills messages a worker thread consumes),
 *   thread-safe fixpool vs glibc vs mimalloc.
 * bench-api links libgwmem.so (calls through the PLT, as firmware linking
 * the shared library pays); bench-api-static is the same source linked with
 * libgwmem.a (direct calls).
 * Usage: bench-api [iterations-scale]   (default 1; 0.1 for a quick run)
 */
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gwmem.h"

#define BATCH 64

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

void *bench_nop_alloc(void *pool);
int bench_nop_free(void *pool, void *p);

static void *(*mi_malloc_fn)(size_t);
static void (*mi_free_fn)(void *);
static void *volatile sink;

/* Each "op" below is one allocation plus its free. */
static double bench_malloc(size_t sz, long rounds)
{
	void *p[BATCH];
	double t0 = now_ns();

	for (long r = 0; r < rounds; r++) {
		for (int i = 0; i < BATCH; i++)
			p[i] = malloc(sz);
		sink = p[r % BATCH];
		for (int i = 0; i < BATCH; i++)
			free(p[i]);
	}
	return (now_ns() - t0) / ((double)rounds * BATCH);
}

static double bench_nop(long rounds)
{
	void *p[BATCH];
	double t0 = now_ns();

	for (long r = 0; r < rounds; r++) {
		for (int i = 0; i < BATCH; i++)
			p[i] = bench_nop_alloc(p);
		sink = p[r % BATCH];
		for (int i = 0; i < BATCH; i++)
			bench_nop_free(p, p[i]);
	}
	return (now_ns() - t0) / ((double)rounds * BATCH);
}

static double bench_mimalloc(size_t sz, long rounds)
{
	void *p[BATCH];
	double t0 = now_ns();

	for (long r = 0; r < rounds; r++) {
		for (int i = 0; i < BATCH; i++)
			p[i] = mi_malloc_fn(sz);
		sink = p[r % BATCH];
		for (int i = 0; i < BATCH; i++)
			mi_free_fn(p[i]);
	}
	return (now_ns() - t0) / ((double)rounds * BATCH);
}

static double bench_fixpool(size_t sz, long rounds, unsigned flags)
{
	struct gwmem_fixpool_options o = {.block_size = sz, .blocks_per_chunk = 256, .max_chunks = 4,
					  .flags = flags};
	struct gwmem_fixpool *fp = gwmem_fixpool_create(&o);
	void *p[BATCH];
	double t0 = now_ns();

	for (long r = 0; r < rounds; r++) {
		for (int i = 0; i < BATCH; i++)
			p[i] = gwmem_fixpool_alloc(fp);
		sink = p[r % BATCH];
		for (int i = 0; i < BATCH; i++)
			gwmem_fixpool_free(fp, p[i]);
	}
	t0 = (now_ns() - t0) / ((double)rounds * BATCH);
	gwmem_fixpool_destroy(fp);
	return t0;
}

/* A sensor message: init is what a constructor would do. */
struct msg {
	uint32_t magic;
	uint32_t len;
	uint64_t ts;
	char topic[64];
	unsigned char body[176];
};

static int msg_init(void *o, void *arg)
{
	struct msg *m = o;

	m->magic = 0x4d534721;
	m->len = 0;
	m->ts = 0;
	m->topic[0] = 0;
	return 0;
}

static void msg_reset(void *o, void *arg)
{
	struct msg *m = o;

	m->len = 0;
	m->topic[0] = 0;
}

static double bench_obj_malloc(long rounds)
{
	struct msg *p[BATCH];
	double t0 = now_ns();

	for (long r = 0; r < rounds; r++) {
		for (int i = 0; i < BATCH; i++) {
			p[i] = malloc(sizeof(struct msg));
			memset(p[i], 0, sizeof(struct msg));
			msg_init(p[i], NULL);
			p[i]->len = (uint32_t)i;
		}
		sink = p[r % BATCH];
		for (int i = 0; i < BATCH; i++)
			free(p[i]);
	}
	return (now_ns() - t0) / ((double)rounds * BATCH);
}

static double bench_obj_pool(long rounds)
{
	struct gwmem_objpool_options o;
	struct gwmem_config cfg;
	struct msg *p[BATCH];

	gwmem_config_defaults(&cfg);
	gwmem_objpool_options_init(&o, sizeof(struct msg), &cfg);
	o.init = msg_init;
	o.reset = msg_reset;
	struct gwmem_objpool *op = gwmem_objpool_create(&o);
	double t0 = now_ns();

	for (long r = 0; r < rounds; r++) {
		for (int i = 0; i < BATCH; i++) {
			p[i] = gwmem_objpool_get(op);
			p[i]->len = (uint32_t)i;
		}
		sink = p[r % BATCH];
		for (int i = 0; i < BATCH; i++)
			gwmem_objpool_put(op, p[i]);
	}
	t0 = (now_ns() - t0) / ((double)rounds * BATCH);
	gwmem_objpool_destroy(op);
	return t0;
}

/* Heap at 90 % fill: free a random live block, allocate one of a random size. */
static double bench_heap(long ops, double *frag)
{
	struct gwmem_heap_options o = {.size = 4u << 20};
	struct gwmem_heap *hp = gwmem_heap_create(&o);
	struct gwmem_heap_info in;
	static gwmem_handle_t live[65536];
	unsigned s = 12345;
	long n = 0, fails = 0;

	for (;;) {
		gwmem_heap_info(hp, &in);
		if (in.used_memory >= in.total_size / 10 * 9 || n == 65536)
			break;
		live[n++] = gwmem_heap_alloc(hp, 16 + (size_t)rand_r(&s) % 240);
	}
	double t0 = now_ns();
	for (long i = 0; i < ops; i++) {
		long k = rand_r(&s) % n;

		gwmem_heap_free(hp, live[k]);
		live[k] = gwmem_heap_alloc(hp, 16 + (size_t)rand_r(&s) % 240);
		if (!live[k]) {
			fails++;
			live[k] = gwmem_heap_alloc(hp, 16);
		}
	}
	t0 = (now_ns() - t0) / (double)ops;
	gwmem_heap_info(hp, &in);
	*frag = in.fragmentation;
	if (fails)
		fprintf(stderr, "heap: %ld allocations failed\n", fails);
	gwmem_heap_destroy(hp);
	return t0;
}

static double bench_rc(long ops)
{
	void *o = gwmem_rc_new(64, NULL, NULL);
	double t0 = now_ns();

	for (long i = 0; i < ops; i++) {
		gwmem_rc_ref(o);
		gwmem_rc_unref(o);
	}
	t0 = (now_ns() - t0) / (double)ops;
	gwmem_rc_unref(o);
	return t0;
}

/* --- producer/consumer --------------------------------------------------- */

#define PC_RING 256

enum pc_kind { PC_MALLOC, PC_MIMALLOC, PC_FIXPOOL };

/* A single-producer single-consumer ring; head and tail on lines of their own. */
struct pc {
	_Alignas(64) unsigned long head;
	_Alignas(64) unsigned long tail;
	_Alignas(64) void *slot[PC_RING];
	enum pc_kind kind;
	size_t size;
	long items;
	struct gwmem_fixpool *fp;
};

static inline void pc_wait(unsigned *spins)
{
	if (++*spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	} else {
		*spins = 0;
		sched_yield();
	}
}

static void *pc_producer(void *arg)
{
	struct pc *q = arg;

	for (long i = 0; i < q->items; i++) {
		unsigned long h = q->head;
		unsigned spins = 0;
		void *b;

		while (h - __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE) >= PC_RING)
			pc_wait(&spins);
		b = q->kind == PC_MALLOC ? malloc(q->size) :
		    q->kind == PC_MIMALLOC ? mi_malloc_fn(q->size) : gwmem_fixpool_alloc(q->fp);
		if (!b)
			abort();
		*(long *)b = i; /* a message is written by the producer... */
		q->slot[h % PC_RING] = b;
		__atomic_store_n(&q->head, h + 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void *pc_consumer(void *arg)
{
	struct pc *q = arg;
	long sum = 0;

	for (long i = 0; i < q->items; i++) {
		unsigned long t = q->tail;
		unsigned spins = 0;
		void *b;

		while (t == __atomic_load_n(&q->head, __ATOMIC_ACQUIRE))
			pc_wait(&spins);
		b = q->slot[t % PC_RING];
		sum += *(long *)b; /* ...and read by the consumer */
		__atomic_store_n(&q->tail, t + 1, __ATOMIC_RELEASE);
		if (q->kind == PC_MALLOC)
			free(b);
		else if (q->kind == PC_MIMALLOC)
			mi_free_fn(b);
		else
			gwmem_fixpool_free(q->fp, b);
	}
	sink = (void *)sum;
	return NULL;
}

/* ns per item (one allocation in the producer + its free in the consumer) */
static double bench_pc(enum pc_kind kind, size_t size, long items)
{
	static struct pc q;
	struct gwmem_fixpool_options o = {.block_size = size, .blocks_per_chunk = 256, .max_chunks = 64,
					  .flags = GWMEM_FIXPOOL_THREADSAFE};
	pthread_t a, b;
	double t0;

	memset(&q, 0, sizeof(q));
	q.kind = kind;
	q.size = size;
	q.items = items;
	if (kind == PC_FIXPOOL)
		q.fp = gwmem_fixpool_create(&o);
	t0 = now_ns();
	pthread_create(&a, NULL, pc_producer, &q);
	pthread_create(&b, NULL, pc_consumer, &q);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	t0 = (now_ns() - t0) / (double)items;
	if (kind == PC_FIXPOOL) {
		struct gwmem_fixpool_stats st;

		gwmem_fixpool_stats(q.fp, &st);
		if (st.failed_allocs || st.active_blocks)
			fprintf(stderr, "producer/consumer: %llu failed allocations, %llu blocks left\n",
				(unsigned long long)st.failed_allocs, (unsigned long long)st.active_blocks);
		gwmem_fixpool_destroy(q.fp);
	}
	return t0;
}

static double best(double a, double b)
{
	return a < b ? a : b;
}

int main(int argc, char **argv)
{
	double scale = argc > 1 ? atof(argv[1]) : 1.0;
	long rounds = (long)(200000 * scale), ops = (long)(5000000 * scale);
	void *mi = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL);
	static const size_t sizes[] = {32, 64, 256};

	if (rounds < 10)
		rounds = 10;
	if (ops < 1000)
		ops = 1000;
	if (mi) {
		mi_malloc_fn = (void *(*)(size_t))dlsym(mi, "mi_malloc");
		mi_free_fn = (void (*)(void *))dlsym(mi, "mi_free");
	}
	printf("%-44s %10s %12s\n", "benchmark (one op = alloc + free)", "ns/op", "vs malloc");
	double nop = 1e30;
	for (int rep = 0; rep < 3; rep++)
		nop = best(nop, bench_nop(rounds));
	printf("%-44s %10.2f %12s\n", "two empty calls into a shared library", nop, "-");
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t sz = sizes[k];
		double m = 1e30, mim = 0, fp = 1e30, fpts = 1e30;

		for (int rep = 0; rep < 3; rep++) {
			m = best(m, bench_malloc(sz, rounds));
			fp = best(fp, bench_fixpool(sz, rounds, 0));
			fpts = best(fpts, bench_fixpool(sz, rounds, GWMEM_FIXPOOL_THREADSAFE));
		}
		printf("%-44s %10.2f %11.2fx\n", sz == 32 ? "glibc malloc/free 32 B" :
		       sz == 64 ? "glibc malloc/free 64 B" : "glibc malloc/free 256 B", m, 1.0);
		if (mi_malloc_fn) {
			mim = 1e30;
			for (int rep = 0; rep < 3; rep++)
				mim = best(mim, bench_mimalloc(sz, rounds));
			printf("  %-42s %10.2f %11.2fx\n", "mimalloc mi_malloc/mi_free", mim, m / mim);
		}
		printf("  %-42s %10.2f %11.2fx\n", "gwmem_fixpool (single-threaded)", fp, m / fp);
		printf("  %-42s %10.2f %11.2fx\n", "gwmem_fixpool (GWMEM_FIXPOOL_THREADSAFE)", fpts, m / fpts);
	}
	double om = bench_obj_malloc(rounds), op = bench_obj_pool(rounds);
	printf("%-44s %10.2f %11.2fx\n", "malloc + init + free (256 B object)", om, 1.0);
	printf("  %-42s %10.2f %11.2fx\n", "gwmem_objpool get/put", op, om / op);
	double frag, hp = bench_heap(ops / 5, &frag);
	printf("%-44s %10.2f %12s  (fragmentation %.2f)\n", "gwmem_heap free+alloc at 90% fill (4 MiB)", hp, "-", frag);
	double rc = bench_rc(ops);
	printf("%-44s %10.2f %12s\n", "gwmem_rc_ref + gwmem_rc_unref", rc, "-");

	/* Rounds alternate between the allocators so that load from other
	 * processes hits them alike; best of 5. */
	long items = (long)(2000000 * scale);
	double pm = 1e30, pmi = 1e30, pfp = 1e30;

	if (items < 10000)
		items = 10000;
	for (int rep = 0; rep < 5; rep++) {
		pm = best(pm, bench_pc(PC_MALLOC, 64, items));
		if (mi_malloc_fn)
			pmi = best(pmi, bench_pc(PC_MIMALLOC, 64, items));
		pfp = best(pfp, bench_pc(PC_FIXPOOL, 64, items));
	}
	printf("%-44s %10s %12s\n", "producer/consumer, 2 threads, 64 B", "ns/item", "vs malloc");
	printf("  %-42s %10.2f %11.2fx\n", "glibc malloc / free", pm, 1.0);
	if (mi_malloc_fn)
		printf("  %-42s %10.2f %11.2fx\n", "mimalloc mi_malloc / mi_free", pmi, pm / pmi);
	printf("  %-42s %10.2f %11.2fx\n", "gwmem_fixpool (GWMEM_FIXPOOL_THREADSAFE)", pfp, pm / pfp);
	if (mi_malloc_fn)
		printf("  %-42s %10s %11.2fx\n", "  gwmem_fixpool vs mimalloc", "", pmi / pfp);
	return 0;
}
