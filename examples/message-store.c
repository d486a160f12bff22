/*
 * message-store.c - an MQTT-style store-and-forward buffer in a fixed
 * 256 KiB arena: messages are kept by handle, pinned only while read or
 * written, and the heap compacts itself when free space gets fragmented.
 */
#include <stdio.h>
#include <string.h>

#include <gwmem.h>

#define MAX_MSGS 512

static unsigned char arena[256 * 1024] __attribute__((aligned(16)));

int main(void)
{
	struct gwmem_heap_options o = {.memory = arena, .size = sizeof(arena), .name = "msgstore",
				       .flags = GWMEM_HEAP_CONFIG}; /* [compaction] from /etc/gwmem.toml */
	struct gwmem_heap *heap = gwmem_heap_create(&o);
	gwmem_handle_t queue[MAX_MSGS] = {0};
	struct gwmem_heap_info in;
	unsigned stored = 0, dropped = 0;

	if (!heap)
		return 1;
	for (unsigned i = 0; i < 20000; i++) {
		unsigned slot = (i * 7919u) % MAX_MSGS;
		char text[64];
		size_t len = (size_t)snprintf(text, sizeof(text), "msg %u from node %u", i, i % 13) + 1;
		size_t size = len + (i % 5) * 100; /* payloads of varying size */

		if (queue[slot]) {                 /* forwarded: drop it */
			char *m = gwmem_heap_pin(heap, queue[slot]);
			if (m && i % 5000 == 0)
				printf("forward: %s\n", m);
			gwmem_heap_unpin(heap, queue[slot]);
			gwmem_heap_free(heap, queue[slot]);
			queue[slot] = GWMEM_HANDLE_NULL;
		}
		queue[slot] = gwmem_heap_alloc(heap, size);
		if (!queue[slot]) {
			dropped++;
			continue;
		}
		char *m = gwmem_heap_pin(heap, queue[slot]);
		memcpy(m, text, len);
		gwmem_heap_unpin(heap, queue[slot]); /* may move from now on */
		stored++;
	}
	gwmem_heap_info(heap, &in);
	printf("stored %u, dropped %u, used %zu / %zu bytes, fragmentation %.2f, compactions %llu\n",
	       stored, dropped, in.used_memory, in.total_size, in.fragmentation,
	       (unsigned long long)in.compactions);
	gwmem_heap_destroy(heap);
	return 0;
}
