/* The broker benchmark's load generator (bench/broker.sh runs it): MQTT 3.1.1 over raw
 * blocking sockets, packets written by hand, one thread per worker (bounded).
 *
 *   imprint_bench_broker freeport
 *       prints a free loopback TCP port
 *   imprint_bench_broker storm PORT IDS_FILE N THREADS
 *       N connects over THREADS threads, each: a fresh TCP connection, CONNECT as a random
 *       device of IDS_FILE (line i = device i; client id and username = its id, password =
 *       bench_secret(i)), wait for CONNACK, DISCONNECT, wait for the broker to close, close.
 *       Prints connects/s, refused and failed connects, CONNACK latency p50/p99/max.
 *   imprint_bench_broker pub PORT IDS_FILE ACCOUNT CLIENTS MSGS SUB
 *       CLIENTS devices (one thread each) connect, and each publishes MSGS QoS 0 messages of
 *       64 bytes on its own channel xi/blue/v1/ACCOUNT/d/ID/ch0, in bursts of 100 followed by
 *       a PINGREQ whose PINGRESP ends the burst (the broker has handled the burst by then).
 *       SUB=1: each client first subscribes to that same topic, so every message is also
 *       delivered back to its sender and the run ends when all have arrived. Prints msgs/s. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "bench_secret.h"

#define ID_LEN 36
#define MAX_THREADS 256
#define BURST 100
#define PAYLOAD 64

static int PORT;
static char (*IDS)[ID_LEN + 1];
static long NIDS;

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void load_ids(const char *path)
{
	FILE *f = fopen(path, "r");
	if(!f) {
		perror(path);
		exit(1);
	}
	long cap = 1024;
	IDS = malloc((size_t)cap * sizeof *IDS);
	char line[128];
	while(fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		if(strlen(line) != ID_LEN) continue;
		if(NIDS == cap) IDS = realloc(IDS, (size_t)(cap *= 2) * sizeof *IDS);
		memcpy(IDS[NIDS++], line, ID_LEN + 1);
	}
	fclose(f);
	if(!NIDS) {
		fprintf(stderr, "bench: no ids in %s\n", path);
		exit(1);
	}
}

/* ---- packets ---------------------------------------------------------------------------- */

static size_t put_len(uint8_t *p, size_t n)
{
	size_t i = 0;
	do {
		uint8_t b = n % 128;
		n /= 128;
		p[i++] = b | (n ? 0x80 : 0);
	} while(n);
	return i;
}

static size_t put_str(uint8_t *p, const char *s)
{
	size_t n = strlen(s);
	p[0] = (uint8_t)(n >> 8);
	p[1] = (uint8_t)n;
	memcpy(p + 2, s, n);
	return n + 2;
}

/* CONNECT, MQTT 3.1.1, clean session, keepalive 60, username and password. */
static size_t connect_packet(uint8_t *out, const char *id, const char *password)
{
	uint8_t body[256];
	size_t n = 0;
	n += put_str(body + n, "MQTT");
	body[n++] = 4;
	body[n++] = 0xC2;
	body[n++] = 0;
	body[n++] = 60;
	n += put_str(body + n, id);
	n += put_str(body + n, id);
	n += put_str(body + n, password);
	out[0] = 0x10;
	size_t h = 1 + put_len(out + 1, n);
	memcpy(out + h, body, n);
	return h + n;
}

static int open_conn(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if(fd < 0) return -1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)PORT),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct timeval tv = {10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if(connect(fd, (struct sockaddr *)&a, sizeof a)) {
		close(fd);
		return -1;
	}
	return fd;
}

static int write_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while(n) {
		ssize_t w = write(fd, p, n);
		if(w < 0 && errno == EINTR) continue;
		if(w <= 0) return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* A buffered reader of whole packets. */
typedef struct {
	int fd;
	uint8_t buf[65536];
	size_t have, off;
} reader;

static int fill(reader *r)
{
	if(r->off) {
		memmove(r->buf, r->buf + r->off, r->have - r->off);
		r->have -= r->off;
		r->off = 0;
	}
	ssize_t n;
	do n = read(r->fd, r->buf + r->have, sizeof r->buf - r->have);
	while(n < 0 && errno == EINTR);
	if(n <= 0) return -1;
	r->have += (size_t)n;
	return 0;
}

/* The next packet's type (high nibble of its first byte) and its first body byte(s) into
 * body (up to 2); -1 at end of stream or error. */
static int next_packet(reader *r, uint8_t body[2])
{
	for(;;) {
		size_t avail = r->have - r->off, len = 0, i = 1;
		int mult = 1, complete = 0;
		while(i < avail && i <= 4) {
			uint8_t b = r->buf[r->off + i];
			len += (size_t)(b & 0x7f) * (size_t)mult;
			mult *= 128;
			i++;
			if(!(b & 0x80)) {
				complete = 1;
				break;
			}
		}
		if(complete && avail >= i + len) {
			int type = r->buf[r->off] >> 4;
			body[0] = len > 0 ? r->buf[r->off + i] : 0;
			body[1] = len > 1 ? r->buf[r->off + i + 1] : 0;
			r->off += i + len;
			return type;
		}
		if(r->off == 0 && r->have == sizeof r->buf) return -1;
		if(fill(r)) return -1;
	}
}

/* ---- storm ------------------------------------------------------------------------------ */

typedef struct {
	long n;
	uint64_t seed;
	uint32_t *lat_us;
	long done, refused, failed;
} storm_arg;

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *storm_thread(void *p)
{
	storm_arg *a = p;
	reader *r = malloc(sizeof *r);
	for(long k = 0; k < a->n; k++) {
		long i = (long)(rnd(&a->seed) % (uint64_t)NIDS);
		char secret[BENCH_SECRET_LEN + 1];
		bench_secret(i, secret);
		uint8_t pkt[256], body[2];
		size_t n = connect_packet(pkt, IDS[i], secret);
		uint64_t t0 = now_us();
		int fd = open_conn();
		if(fd < 0) {
			a->failed++;
			continue;
		}
		r->fd = fd;
		r->have = r->off = 0;
		int type = write_all(fd, pkt, n) ? -1 : next_packet(r, body);
		if(type != 2) {
			a->failed++;
		} else if(body[1] != 0) {
			a->refused++;
		} else {
			a->lat_us[a->done++] = (uint32_t)(now_us() - t0);
			static const uint8_t disconnect[2] = {0xE0, 0};
			/* The broker closes on DISCONNECT: wait for it, so the TIME_WAIT is its own. */
			if(!write_all(fd, disconnect, 2)) next_packet(r, body);
		}
		close(fd);
	}
	free(r);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int storm(long n, int threads)
{
	storm_arg args[MAX_THREADS];
	pthread_t th[MAX_THREADS];
	uint64_t t0 = now_us();
	for(int t = 0; t < threads; t++) {
		args[t] = (storm_arg){.n = n / threads + (t < n % threads), .seed = 0x9E3779B97F4A7C15ull * (uint64_t)(t + 1)};
		args[t].lat_us = malloc((size_t)args[t].n * sizeof(uint32_t) + 1);
		pthread_create(&th[t], NULL, storm_thread, &args[t]);
	}
	long done = 0, refused = 0, failed = 0;
	for(int t = 0; t < threads; t++) {
		pthread_join(th[t], NULL);
		done += args[t].done;
		refused += args[t].refused;
		failed += args[t].failed;
	}
	double secs = (double)(now_us() - t0) / 1e6;
	uint32_t *all = malloc((size_t)done * sizeof *all + 1);
	long k = 0;
	for(int t = 0; t < threads; t++) {
		memcpy(all + k, args[t].lat_us, (size_t)args[t].done * sizeof *all);
		k += args[t].done;
		free(args[t].lat_us);
	}
	qsort(all, (size_t)done, sizeof *all, cmp_u32);
	double p50 = done ? all[done / 2] / 1000.0 : 0, p99 = done ? all[done * 99 / 100] / 1000.0 : 0;
	double max = done ? all[done - 1] / 1000.0 : 0;
	printf("storm connects=%ld ok=%ld refused=%ld failed=%ld secs=%.2f connects_per_s=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.1f\n",
	       n, done, refused, failed, secs, done / secs, p50, p99, max);
	free(all);
	return failed || refused ? 1 : 0;
}

/* ---- publish ---------------------------------------------------------------------------- */

typedef struct {
	long index, msgs;
	int sub;
	const char *account;
	pthread_barrier_t *ready;
	uint64_t end_us;
	long received, sent;
	int err;
} pub_arg;

static void *pub_thread(void *p)
{
	pub_arg *a = p;
	reader *r = malloc(sizeof *r);
	char secret[BENCH_SECRET_LEN + 1], topic[160];
	bench_secret(a->index, secret);
	snprintf(topic, sizeof topic, "xi/blue/v1/%s/d/%s/ch0", a->account, IDS[a->index]);
	uint8_t pkt[512], body[2];
	size_t n = connect_packet(pkt, IDS[a->index], secret);
	int fd = open_conn();
	r->fd = fd;
	r->have = r->off = 0;
	if(fd < 0 || write_all(fd, pkt, n) || next_packet(r, body) != 2 || body[1] != 0) a->err = 1;
	if(!a->err && a->sub) {
		uint8_t b[256];
		size_t m = 0;
		b[m++] = 0;
		b[m++] = 1; /* packet id */
		m += put_str(b + m, topic);
		b[m++] = 0; /* QoS 0 */
		pkt[0] = 0x82;
		size_t h = 1 + put_len(pkt + 1, m);
		memcpy(pkt + h, b, m);
		if(write_all(fd, pkt, h + m) || next_packet(r, body) != 9) a->err = 1;
		/* SUBACK: packet id (2 bytes) then the granted QoS; 0x80 is a refusal. The reader
		 * keeps only two body bytes: look at the byte after them. */
		else if(r->buf[r->off - 1] == 0x80) a->err = 2;
	}
	/* One burst: BURST publishes then a PINGREQ. */
	size_t tn = strlen(topic), one_len;
	uint8_t one[512];
	{
		size_t m = 2 + tn + PAYLOAD;
		one[0] = 0x30;
		size_t h = 1 + put_len(one + 1, m);
		put_str(one + h, topic);
		memset(one + h + 2 + tn, 'x', PAYLOAD);
		one_len = h + m;
	}
	uint8_t *burst = malloc(BURST * one_len + 2);
	for(int i = 0; i < BURST; i++) memcpy(burst + (size_t)i * one_len, one, one_len);
	pthread_barrier_wait(a->ready);
	for(long sent = 0; !a->err && sent < a->msgs; sent += BURST) {
		long k = a->msgs - sent < BURST ? a->msgs - sent : BURST;
		size_t len = (size_t)k * one_len;
		burst[len] = 0xC0;
		burst[len + 1] = 0;
		if(write_all(fd, burst, len + 2)) {
			a->err = 3;
			break;
		}
		a->sent += k;
		int type;
		while((type = next_packet(r, body)) == 3) a->received++;
		if(type != 13) a->err = 4;
	}
	uint64_t deadline = now_us() + 10000000;
	while(!a->err && a->sub && a->received < a->sent && now_us() < deadline) {
		if(next_packet(r, body) == 3) a->received++;
		else a->err = 5;
	}
	a->end_us = now_us();
	if(fd >= 0) {
		static const uint8_t disconnect[2] = {0xE0, 0};
		if(!write_all(fd, disconnect, 2)) next_packet(r, body);
		close(fd);
	}
	free(burst);
	free(r);
	return NULL;
}

static int pub(const char *account, int clients, long msgs, int sub)
{
	pub_arg args[MAX_THREADS];
	pthread_t th[MAX_THREADS];
	pthread_barrier_t ready;
	pthread_barrier_init(&ready, NULL, (unsigned)clients + 1);
	for(int t = 0; t < clients; t++) {
		args[t] = (pub_arg){.index = (long)t * (NIDS / clients), .msgs = msgs, .sub = sub, .account = account, .ready = &ready};
		pthread_create(&th[t], NULL, pub_thread, &args[t]);
	}
	pthread_barrier_wait(&ready);
	uint64_t t0 = now_us(), end = t0;
	long sent = 0, received = 0;
	int errs = 0;
	for(int t = 0; t < clients; t++) {
		pthread_join(th[t], NULL);
		if(args[t].end_us > end) end = args[t].end_us;
		sent += args[t].sent;
		received += args[t].received;
		if(args[t].err) {
			errs++;
			fprintf(stderr, "bench: client %d failed (step %d)\n", t, args[t].err);
		}
	}
	pthread_barrier_destroy(&ready);
	double secs = (double)(end - t0) / 1e6;
	printf("pub clients=%d sub=%d sent=%ld received=%ld errors=%d secs=%.2f msgs_per_s=%.0f\n", clients, sub, sent,
	       received, errs, secs, sent / secs);
	return errs || (sub && received != sent) ? 1 : 0;
}

int main(int argc, char **argv)
{
	if(argc == 2 && strcmp(argv[1], "freeport") == 0) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		socklen_t n = sizeof a;
		if(bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &n)) return 1;
		printf("%d\n", ntohs(a.sin_port));
		close(fd);
		return 0;
	}
	if(argc == 6 && strcmp(argv[1], "storm") == 0) {
		PORT = atoi(argv[2]);
		load_ids(argv[3]);
		int threads = atoi(argv[5]);
		if(threads < 1 || threads > MAX_THREADS) return 2;
		return storm(atol(argv[4]), threads);
	}
	if(argc == 8 && strcmp(argv[1], "pub") == 0) {
		PORT = atoi(argv[2]);
		load_ids(argv[3]);
		int clients = atoi(argv[5]);
		if(clients < 1 || clients > MAX_THREADS || clients > NIDS) return 2;
		return pub(argv[4], clients, atol(argv[6]), atoi(argv[7]));
	}
	fprintf(stderr, "usage: imprint_bench_broker freeport | storm PORT IDS N THREADS | "
	                "pub PORT IDS ACCOUNT CLIENTS MSGS SUB\n");
	return 2;
}
