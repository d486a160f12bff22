/*
 * nop.c - empty "allocator" in its own shared library: bench-api calls it
 * exactly as it calls malloc and gwmem_fixpool_*, through the PLT, to show
 * what the call alone costs.
 */
#define BENCH_EXPORT __attribute__((visibility("default"))) /* the build hides by default */

BENCH_EXPORT void *bench_nop_alloc(void *pool);
BENCH_EXPORT int bench_nop_free(void *pool, void *p);

void *bench_nop_alloc(void *pool)
{
	return pool;
}

int bench_nop_free(void *pool, void *p)
{
	(void)pool;
	(void)p;
	return 0;
}
