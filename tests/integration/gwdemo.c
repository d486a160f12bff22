/*
 * gwdemo.c - a small gateway-like daemon with a deliberate leak, for the
 * demo (scripts/demo) and the daemon tests.
 *
 *   gwdemo serve PORT [PIDFILE]      listen on 127.0.0.1:PORT until SIGTERM
 *   gwdemo client PORT COUNT [CONNS] send COUNT messages over CONNS connections
 *
 * Protocol, one line per request:  PUB <device> <qos> <payload-bytes>\n
 * answered by "OK <seq>\n".  "STATS\n" answers "STATS <messages> <sessions>\n".
 *
 * Per message the server parses into a struct msg whose payload buffer grows
 * with realloc (1-16 KiB, like a gateway assembling frames), looks up the
 * device session (a bounded cache: reachable, evicted LRU, not a leak), and
 * for QoS 1 creates a retry entry.  The bug: when the ack succeeds the retry
 * entry is dropped without being freed, so retry_entry_new() leaks 96 bytes
 * (plus a copy of the device name) per QoS 1 message.  Everything else is
 * freed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SESSIONS 64

struct msg {
	char device[32];
	int qos;
	size_t len, cap;
	unsigned char *payload;
};

struct session {
	char *device;
	unsigned long messages;
	unsigned long bytes;
	char *last_topic;
	time_t seen;
};

struct retry_entry {
	unsigned long seq;
	char *device;
	unsigned char frame[64];
	struct retry_entry *next;
	int attempts;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct session *sessions[MAX_SESSIONS];
static atomic_ulong total_messages;
static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
	(void)sig;
	stopping = 1;
}

/* --- message handling ---------------------------------------------------- */

static struct msg *parse_message(const char *line)
{
	struct msg *m = calloc(1, sizeof(*m));
	unsigned long want = 0;

	if (!m)
		return NULL;
	if (sscanf(line, "PUB %31s %d %lu", m->device, &m->qos, &want) != 3 || want > 65536) {
		free(m);
		return NULL;
	}
	/* the payload arrives in pieces: grow the buffer as a frame assembler would */
	while (m->len < want) {
		size_t piece = want - m->len < 700 ? want - m->len : 700;
		if (m->len + piece > m->cap) {
			size_t ncap = m->cap ? m->cap * 2 : 256;
			while (ncap < m->len + piece)
				ncap *= 2;
			unsigned char *p = realloc(m->payload, ncap);
			if (!p)
				break;
			m->payload = p;
			m->cap = ncap;
		}
		memset(m->payload + m->len, 'a' + (int)(m->len % 26), piece);
		m->len += piece;
	}
	return m;
}

static void free_message(struct msg *m)
{
	free(m->payload);
	free(m);
}

static struct session *session_lookup(const char *device)
{
	int oldest = 0;
	for (int i = 0; i < MAX_SESSIONS; i++) {
		if (sessions[i] && strcmp(sessions[i]->device, device) == 0)
			return sessions[i];
		if (!sessions[i] || (sessions[oldest] && sessions[i]->seen < sessions[oldest]->seen))
			oldest = i;
	}
	/* evict the least recently seen session: the cache is bounded */
	struct session *s = sessions[oldest];
	if (s) {
		free(s->device);
		free(s->last_topic);
		free(s);
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->device = strdup(device);
	sessions[oldest] = s;
	return s;
}

static void session_note(struct session *s, const struct msg *m)
{
	char topic[96];
	snprintf(topic, sizeof(topic), "gw/%s/telemetry/%zu", m->device, m->len);
	free(s->last_topic);
	s->last_topic = strdup(topic);
	s->messages++;
	s->bytes += m->len;
	s->seen = time(NULL);
}

__attribute__((noinline)) static struct retry_entry *retry_entry_new(unsigned long seq,
								    const struct msg *m)
{
	struct retry_entry *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->seq = seq;
	r->device = strdup(m->device);
	memcpy(r->frame, m->payload, m->len < sizeof(r->frame) ? m->len : sizeof(r->frame));
	return r;
}

__attribute__((noinline)) static int deliver_ack(int fd, unsigned long seq,
						 struct retry_entry *r)
{
	char ack[48];
	int n = snprintf(ack, sizeof(ack), "OK %lu\n", seq);
	if (r)
		r->attempts++;
	/* BUG (deliberate): on success the retry entry should be freed here. */
	return send(fd, ack, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -1;
}

__attribute__((noinline)) static int handle_line(int fd, const char *line)
{
	if (strncmp(line, "STATS", 5) == 0) {
		char out[64];
		int live = 0;
		pthread_mutex_lock(&lock);
		for (int i = 0; i < MAX_SESSIONS; i++)
			live += sessions[i] != NULL;
		pthread_mutex_unlock(&lock);
		int n = snprintf(out, sizeof(out), "STATS %lu %d\n", atomic_load(&total_messages), live);
		return send(fd, out, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -1;
	}
	struct msg *m = parse_message(line);
	if (!m)
		return send(fd, "ERR\n", 4, MSG_NOSIGNAL) == 4 ? 0 : -1;
	unsigned long seq = atomic_fetch_add(&total_messages, 1) + 1;
	pthread_mutex_lock(&lock);
	struct session *s = session_lookup(m->device);
	if (s)
		session_note(s, m);
	pthread_mutex_unlock(&lock);
	struct retry_entry *r = m->qos >= 1 ? retry_entry_new(seq, m) : NULL;
	int rc = deliver_ack(fd, seq, r);
	if (rc != 0 && r) {
		free(r->device);
		free(r);
	}
	free_message(m);
	return rc;
}

static void *connection(void *arg)
{
	int fd = (int)(intptr_t)arg;
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);

	while (buf && !stopping) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = poll(&p, 1, 200);
		if (pr < 0 && errno != EINTR)
			break;
		if (pr <= 0)
			continue;
		if (len + 1024 > cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = 0;
		char *start = buf, *nl;
		int err = 0;
		while ((nl = strchr(start, '\n'))) {
			*nl = 0;
			if (handle_line(fd, start) != 0) {
				err = 1;
				break;
			}
			start = nl + 1;
		}
		if (err)
			break;
		len -= (size_t)(start - buf);
		memmove(buf, start, len);
	}
	free(buf);
	close(fd);
	return NULL;
}

static int serve(int port, const char *pidfile)
{
	struct sigaction sa = { .sa_handler = on_term };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	int ls = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 64) < 0) {
		perror("gwdemo: listen on 127.0.0.1");
		return 1;
	}
	if (pidfile) {
		FILE *f = fopen(pidfile, "w");
		if (f) {
			fprintf(f, "%d\n", (int)getpid());
			fclose(f);
		}
	}
	fprintf(stderr, "gwdemo: pid %d listening on 127.0.0.1:%d\n", (int)getpid(), port);
	while (!stopping) {
		struct pollfd p = { .fd = ls, .events = POLLIN };
		if (poll(&p, 1, 200) <= 0)
			continue;
		int fd = accept(ls, NULL, NULL);
		if (fd < 0)
			continue;
		pthread_t t;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &at, connection, (void *)(intptr_t)fd) != 0)
			close(fd);
		pthread_attr_destroy(&at);
	}
	close(ls);
	usleep(300000);	/* let connection threads notice */
	pthread_mutex_lock(&lock);
	for (int i = 0; i < MAX_SESSIONS; i++) {
		if (sessions[i]) {
			free(sessions[i]->device);
			free(sessions[i]->last_topic);
			free(sessions[i]);
			sessions[i] = NULL;
		}
	}
	pthread_mutex_unlock(&lock);
	fprintf(stderr, "gwdemo: stopped after %lu messages\n", atomic_load(&total_messages));
	if (pidfile)
		unlink(pidfile);
	return 0;
}

/* --- client -------------------------------------------------------------- */

struct client_arg {
	int port, id;
	long count;
	long acked;
};

static void *client_thread(void *arg)
{
	struct client_arg *c = arg;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)c->port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("gwdemo client: connect");
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	char line[96], rbuf[4096];
	size_t rlen = 0;
	for (long i = 0; i < c->count; i++) {
		int qos = i % 4 == 0;	/* one message in four asks for an ack entry */
		unsigned len = 1000 + (unsigned)((i * 7919 + c->id * 31) % 15000);
		int n = snprintf(line, sizeof(line), "PUB sensor-%02ld %d %u\n",
				 (i * 13 + c->id) % 40, qos, len);
		if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n)
			break;
		/* one request in flight: wait for its answer line */
		for (;;) {
			char *nl = memchr(rbuf, '\n', rlen);
			if (nl) {
				size_t used = (size_t)(nl - rbuf) + 1;
				if (strncmp(rbuf, "OK ", 3) == 0)
					c->acked++;
				memmove(rbuf, rbuf + used, rlen - used);
				rlen -= used;
				break;
			}
			ssize_t r = recv(fd, rbuf + rlen, sizeof(rbuf) - rlen, 0);
			if (r <= 0)
				goto out;
			rlen += (size_t)r;
		}
	}
out:
	close(fd);
	return NULL;
}

static int client(int port, long count, int conns)
{
	pthread_t t[64];
	struct client_arg args[64];
	long acked = 0;

	if (conns < 1 || conns > 64)
		conns = 4;
	for (int i = 0; i < conns; i++) {
		args[i] = (struct client_arg){ .port = port, .id = i,
					       .count = count / conns + (i < count % conns) };
		pthread_create(&t[i], NULL, client_thread, &args[i]);
	}
	for (int i = 0; i < conns; i++) {
		pthread_join(t[i], NULL);
		acked += args[i].acked;
	}
	printf("gwdemo client: %ld of %ld messages acknowledged over %d connections\n", acked,
	       count, conns);
	return acked == count ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "serve") == 0)
		return serve(atoi(argv[2]), argc > 3 ? argv[3] : NULL);
	if (argc >= 4 && strcmp(argv[1], "client") == 0)
		return client(atoi(argv[2]), atol(argv[3]), argc > 4 ? atoi(argv[4]) : 4);
	fprintf(stderr, "usage: gwdemo serve PORT [PIDFILE]\n"
			"       gwdemo client PORT COUNT [CONNECTIONS]\n");
	return 2;
}
