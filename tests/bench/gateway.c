/*
 * gateway.c - a gateway-like mix: per request, a header struct, a few small
 * strings (topic, client id, properties), a payload buffer grown with
 * realloc in 512 B pieces to 1-16 KiB, a response buffer; a bounded session
 * cache (allocated and evicted) and a retained-message table keep a live
 * set of a few MB.  Everything is freed in a different order than it was
 * allocated.
 */
#include <string.h>

#include "bench.h"

struct req {
	char *topic, *client, *props;
	unsigned char *payload;
	size_t len, cap;
	char *response;
};

#define SESSIONS 2048
#define RETAINED 1024

int main(int argc, char **argv)
{
	static char *sessions[SESSIONS];
	static unsigned char *retained[RETAINED];
	long n = (long)(6e5 * bench_scale(argc, argv));
	uint64_t s = 0xabcdef0123456789ull;
	long bytes = 0;

	double t0 = bench_now();
	for (long i = 0; i < n; i++) {
		uint64_t r = bench_rng(&s);
		struct req *q = calloc(1, sizeof(*q));
		q->topic = malloc(24 + (r & 63));
		memcpy(q->topic, "gw/site/device/telemetry", 24);
		q->client = malloc(16 + ((r >> 6) & 31));
		q->client[0] = 'c';
		q->props = calloc(1, 48 + ((r >> 11) & 127));
		size_t want = 1024 + (size_t)((r >> 18) % 15361);	/* 1-16 KiB */
		while (q->len < want) {
			size_t piece = want - q->len < 512 ? want - q->len : 512;
			if (q->len + piece > q->cap) {
				q->cap = q->cap ? q->cap + q->cap / 2 + 512 : 512;
				q->payload = realloc(q->payload, q->cap);
			}
			memset(q->payload + q->len, (int)i, piece < 16 ? piece : 16);
			q->len += piece;
		}
		bytes += (long)q->len;
		q->response = malloc(64 + ((r >> 30) & 255));
		q->response[0] = 'O';
		/* session cache: one in eight requests opens or replaces a session */
		if ((r & 7) == 0) {
			unsigned k = (unsigned)((r >> 40) % SESSIONS);
			free(sessions[k]);
			sessions[k] = malloc(200 + ((r >> 50) & 511));
			sessions[k][0] = 's';
		}
		/* retained messages: one in 32 keeps a copy of the payload */
		if ((r & 31) == 1) {
			unsigned k = (unsigned)((r >> 45) % RETAINED);
			free(retained[k]);
			retained[k] = malloc(q->len);
			memcpy(retained[k], q->payload, q->len);
		}
		free(q->props);
		free(q->payload);
		free(q->topic);
		free(q->response);
		free(q->client);
		free(q);
	}
	for (int k = 0; k < SESSIONS; k++)
		free(sessions[k]);
	for (int k = 0; k < RETAINED; k++)
		free(retained[k]);
	char extra[64];
	snprintf(extra, sizeof(extra), "payload_mb=%ld", bytes >> 20);
	bench_result("gateway", bench_now() - t0, n, extra);
	return 0;
}
