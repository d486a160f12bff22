/*
 * objpool.h - object pools as used by rc.c (rc pools build on them).
 */
#ifndef GW_OBJPOOL_H
#define GW_OBJPOOL_H

#include <stdbool.h>

#include "gwmem.h"
#include "internal.h"

/* gwmem_objpool_create(), with the leak-tracking hooks off when !hooks. */
struct gwmem_objpool *gw_objpool_create(const struct gwmem_objpool_options *opts, bool hooks) GW_HIDDEN;

/* The fixed-block pool that holds the objects (for address checks). */
struct gwmem_fixpool *gw_objpool_fixpool(const struct gwmem_objpool *op) GW_HIDDEN;

#endif /* GW_OBJPOOL_H */
