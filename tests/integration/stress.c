/*
 * stress.c - 16 threads allocate, fill with a pattern naming the block, and
 * pass most blocks to the next thread, which verifies the pattern and frees
 * it (cross-thread free).  The rest are realloc'd and freed locally.  Any
 * block handed out twice, or overwritten by an allocator's free list, shows
 * up as a pattern mismatch.
 *
 *   stress [threads] [blocks-per-thread]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QCAP 512

struct block {
	uint32_t owner;
	uint32_t seq;
	uint32_t size;
	uint32_t check;
	/* followed by size - 16 bytes of pattern */
};

struct queue {
	pthread_mutex_t lock;
	unsigned head, tail;
	struct block *items[QCAP];
};

static int nthreads = 16;
static long per_thread = 40000;
static struct queue *queues;
static pthread_barrier_t barrier;
static long corrupt, verified, local_ops;
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;

static uint32_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (uint32_t)(*s >> 11);
}

static unsigned char pat(uint32_t owner, uint32_t seq, size_t i)
{
	return (unsigned char)(owner * 31u + seq * 7u + i * 13u + 5u);
}

static size_t pick_size(uint64_t *s)
{
	uint32_t r = rng(s);
	switch (r & 15) {
	case 0:
		return 16384 + (r >> 8) % 50000;	/* beyond the pools */
	case 1: case 2:
		return 1024 + (r >> 8) % 15000;
	default:
		return 16 + (r >> 8) % 600;
	}
}

static struct block *make(uint32_t owner, uint32_t seq, size_t size)
{
	struct block *b = malloc(size);
	if (!b) {
		fprintf(stderr, "malloc(%zu) failed\n", size);
		exit(1);
	}
	b->owner = owner;
	b->seq = seq;
	b->size = (uint32_t)size;
	b->check = owner ^ seq ^ (uint32_t)size ^ 0xdeadbeefu;
	unsigned char *d = (unsigned char *)(b + 1);
	for (size_t i = 0; i < size - sizeof(*b); i++)
		d[i] = pat(owner, seq, i);
	return b;
}

static long verify(const struct block *b)
{
	if (b->check != (b->owner ^ b->seq ^ b->size ^ 0xdeadbeefu))
		return 1;
	const unsigned char *d = (const unsigned char *)(b + 1);
	for (size_t i = 0; i < b->size - sizeof(*b); i++)
		if (d[i] != pat(b->owner, b->seq, i))
			return 1;
	return 0;
}

static int push(struct queue *q, struct block *b)
{
	int ok = 0;
	pthread_mutex_lock(&q->lock);
	if (q->tail - q->head < QCAP) {
		q->items[q->tail++ % QCAP] = b;
		ok = 1;
	}
	pthread_mutex_unlock(&q->lock);
	return ok;
}

static struct block *pop(struct queue *q)
{
	struct block *b = NULL;
	pthread_mutex_lock(&q->lock);
	if (q->head != q->tail)
		b = q->items[q->head++ % QCAP];
	pthread_mutex_unlock(&q->lock);
	return b;
}

static long drain(struct queue *q, long *n)
{
	long bad = 0;
	struct block *b;
	while ((b = pop(q))) {
		bad += verify(b);
		free(b);
		(*n)++;
	}
	return bad;
}

static void *worker(void *arg)
{
	uint32_t id = (uint32_t)(uintptr_t)arg;
	uint64_t s = 0x9e3779b97f4a7c15ull * (id + 1);
	struct queue *mine = &queues[id], *next = &queues[(id + 1) % (uint32_t)nthreads];
	long bad = 0, n = 0, local = 0;
	struct block *held[64] = { 0 };

	for (uint32_t seq = 0; seq < (uint32_t)per_thread; seq++) {
		struct block *b = make(id, seq, pick_size(&s));
		if ((rng(&s) & 3) != 0 && push(next, b)) {
			/* handed to the next thread */
		} else {
			/* keep it for a while, then grow it with realloc and free it here */
			unsigned slot = rng(&s) % 64;
			if (held[slot]) {
				struct block *o = held[slot];
				bad += verify(o);
				size_t grow = o->size + 1 + rng(&s) % 3000;
				o = realloc(o, grow);
				if (!o) {
					fprintf(stderr, "realloc failed\n");
					exit(1);
				}
				/* the old contents (o->size bytes) survived the move */
				bad += verify(o);
				free(o);
				local++;
			}
			held[slot] = b;
		}
		if ((seq & 31) == 0)
			bad += drain(mine, &n);
	}
	for (int i = 0; i < 64; i++) {
		if (held[i]) {
			bad += verify(held[i]);
			free(held[i]);
		}
	}
	pthread_barrier_wait(&barrier);	/* nobody pushes after this */
	bad += drain(mine, &n);

	pthread_mutex_lock(&stats_lock);
	corrupt += bad;
	verified += n;
	local_ops += local;
	pthread_mutex_unlock(&stats_lock);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		nthreads = atoi(argv[1]);
	if (argc > 2)
		per_thread = atol(argv[2]);
	if (nthreads < 2 || nthreads > 256 || per_thread < 1) {
		fprintf(stderr, "usage: stress [threads 2..256] [blocks-per-thread]\n");
		return 2;
	}
	queues = calloc((size_t)nthreads, sizeof(*queues));
	pthread_t *t = calloc((size_t)nthreads, sizeof(*t));
	if (!queues || !t)
		return 1;
	for (int i = 0; i < nthreads; i++)
		pthread_mutex_init(&queues[i].lock, NULL);
	pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			return 1;
		}
	for (int i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
	printf("stress: %d threads x %ld blocks of 16 B..66 KB: %ld freed by another thread and "
	       "verified, %ld realloc'd and freed locally, %ld corrupted\n",
	       nthreads, per_thread, verified, local_ops, corrupt);
	free(queues);
	free(t);
	return corrupt == 0 && verified > 0 ? 0 : 1;
}
