/*
 * version.c - the version of the library actually loaded, which may differ
 * from the GWMEM_VERSION the caller was compiled against.
 */
#include "config.h"

#include "gwmem.h"

int gwmem_version(void)
{
	return GWMEM_VERSION;
}

const char *gwmem_version_string(void)
{
#define GW_STR2(x) #x
#define GW_STR(x) GW_STR2(x)
	return GW_STR(GWMEM_VERSION_MAJOR) "." GW_STR(GWMEM_VERSION_MINOR) "." GW_STR(GWMEM_VERSION_PATCH);
}
