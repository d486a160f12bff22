/*
 * fuzz-view.c - libFuzzer harness for the segment reader (lib/segment/
 * view.c) and the report built on it: the input is a segment as it lies
 * in shared memory.  Whatever the bytes, validation must refuse them or
 * every later read stay inside them (ASan checks), with no undefined
 * behaviour (UBSan) and no hang.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-view.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_view v;

	/* a segment is mapped page-aligned: give the reader the same alignment,
	 * and an allocation of exactly 'size' bytes so ASan sees any overrun */
	void *buf = aligned_alloc(64, size ? (size + 63) & ~(size_t)63 : 64);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (gw_view_from_memory(&v, buf, size) == 0) {
		fuzz_exercise(&v);
		gw_view_close(&v);
	}
	free(buf);
	return 0;
}
