/*
 * options.h - the configuration in force inside the preload library:
 * parsed once, then read-only.
 */
#ifndef GW_OPTIONS_H
#define GW_OPTIONS_H

#include "gwmem.h"
#include "internal.h"

/* Largest configuration file read; a larger one is refused whole. */
#define GW_CONFIG_MAX_BYTES (64 * 1024)

/* Parse the configuration into the process-wide options; idempotent. */
void gw_config_init(void) GW_HIDDEN;
/* The options in force (defaults until gw_config_init ran). */
const struct gwmem_config *gw_opts(void) GW_HIDDEN;

/* Parse a signal spec: "off", "0", "SIGUSR1", "USR2", "12" -> number, or -1. */
int gw_config_parse_signal(const char *s) GW_HIDDEN;

#endif /* GW_OPTIONS_H */
