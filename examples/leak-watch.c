/*
 * leak-watch.c - in-process leak tracking without the preload library.
 *
 * A gateway's frame handler takes receive buffers from a byte-buffer pool
 * created with GWMEM_BUFPOOL_TRACK.  One error path forgets to give its
 * buffer back.  A housekeeping task asks the library which call sites hold
 * buffers older than a threshold (here 0.2 s; a daemon would use minutes),
 * prints the report and checks the totals, the way firmware would raise an
 * alarm.  Exits 0 when the forgotten buffers, and only they, are found.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gwmem.h>

static struct gwmem_bufpool *rx;

/* Parses one frame; frames starting with '!' take the buggy error path. */
__attribute__((noinline)) static int handle_frame(const char *frame)
{
	struct gwmem_bytebuf b;

	if (gwmem_bufpool_get(rx, strlen(frame) + 1, &b) != 0)
		return -1;
	gwmem_bytebuf_append(&b, frame, strlen(frame) + 1);
	if (frame[0] == '!')
		return -1; /* the bug: the buffer is not put back */
	gwmem_bufpool_put(rx, &b);
	return 0;
}

int main(void)
{
	struct gwmem_bufpool_options o = {.min_size = 64, .max_size = 2048, .max_buffers = 256,
					  .flags = GWMEM_BUFPOOL_TRACK, .name = "rx"};
	struct gwmem_track_site site[4];
	struct gwmem_track_totals t;
	const struct timespec pause = {0, 300 * 1000 * 1000};
	int errors = 0;
	size_t n;

	rx = gwmem_bufpool_create(&o);
	if (!rx)
		return 1;
	for (int i = 0; i < 1000; i++)
		errors += handle_frame(i % 100 == 7 ? "!bad checksum" : "temperature=21.5") != 0;
	nanosleep(&pause, NULL);

	n = gwmem_track_leaks(0.2, site, 4);
	printf("%d frames failed; %zu call site(s) hold buffers older than 0.2 s:\n", errors, n);
	fflush(stdout);
	gwmem_track_report(STDOUT_FILENO, 0.2, 4);
	gwmem_track_totals(&t);
	printf("tracked: %llu live buffers, %llu bytes, %llu gets, %llu puts\n",
	       (unsigned long long)t.live_blocks, (unsigned long long)t.live_bytes,
	       (unsigned long long)t.allocs, (unsigned long long)t.frees);
	gwmem_bufpool_destroy(rx);
	/* ten forgotten 64-byte buffers, from one site */
	return errors == 10 && n == 1 && site[0].blocks == 10 && site[0].bytes == 640 &&
			       t.live_blocks == 10 ? 0 : 1;
}
