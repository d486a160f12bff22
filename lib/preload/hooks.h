/*
 * hooks.h - what track.c calls of hooks.c (the gwmem_hook_* exports for
 * libgwmem.so's pools).
 */
#ifndef GW_HOOKS_H
#define GW_HOOKS_H

#include "gwmem/shm_layout.h"
#include "internal.h"

/* The segment h now exists: copy the pool tags registered before it. */
void gw_hooks_attach(struct gwmem_shm_header *h) GW_HIDDEN;

#endif /* GW_HOOKS_H */
