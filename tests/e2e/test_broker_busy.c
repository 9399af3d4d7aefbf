/* End-to-end: the broker keeps serving while the store is busy with a large batch.
 * A server, mosquitto with the plugin (started as in test_broker.c), and one
 * POST /api/v1/devices/batch?credentials=true of IMP_BUSY_LINES lines (default 200,000:
 * 50,000 took 1.8-2.0 s under ASan on two shared cores by the eleventh session, too short
 * for the mid-batch checks below; the release build takes 1,000,000 by hand, see
 * bench/README.md "Broker"). Meanwhile a client thread connects, publishes on its own
 * channel and disconnects a known device in a loop (raw MQTT 3.1.1, timed from the TCP
 * connect to the CONNACK), and a second device connects and disconnects mid-batch while
 * its status is read through the API. Every connect must succeed, the worst under
 * MAX_CONNECT_MS, and both status changes must land in the API within STATUS_MS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cases.h"
#include "broker_util.h"
#include "harness.h"

#define MAX_CONNECT_MS 1000
#define STATUS_MS 3000
#define MAX_SAMPLES 200000

static int PORT;
static h_broker BRK = {.pid = -1};

static int broker_start(void)
{
	if(h_broker_start(&BRK, S.data, "error warning")) return -1;
	PORT = BRK.port;
	return 0;
}

static int broker_stop(void) { return h_broker_stop(&BRK); }
static char SECRET1[64], SECRET2[64];

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* ---- the broker (as test_broker.c) -------------------------------------------------------- */

static int tcp_open(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if(fd < 0) return -1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
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

/* ---- a raw MQTT 3.1.1 client ----------------------------------------------------------- */

static size_t put_str(uint8_t *p, const char *s)
{
	size_t n = strlen(s);
	p[0] = (uint8_t)(n >> 8);
	p[1] = (uint8_t)n;
	memcpy(p + 2, s, n);
	return n + 2;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while(n) {
		ssize_t w = write(fd, p, n);
		if(w < 0 && errno == EINTR) continue;
		if(w <= 0) return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_n(int fd, uint8_t *p, size_t n)
{
	while(n) {
		ssize_t r = read(fd, p, n);
		if(r < 0 && errno == EINTR) continue;
		if(r <= 0) return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Connects as id with secret: the open socket after a CONNACK accepting it, else -1. */
static int mqtt_connect(const char *id, const char *secret)
{
	uint8_t pkt[256];
	size_t n = 3;   /* a remaining length of two bytes (128 to 16,383) */
	n += put_str(pkt + n, "MQTT");
	pkt[n++] = 4;
	pkt[n++] = 0xC2;
	pkt[n++] = 0;
	pkt[n++] = 60;
	n += put_str(pkt + n, id);
	n += put_str(pkt + n, id);
	n += put_str(pkt + n, secret);
	pkt[0] = 0x10;
	pkt[1] = (uint8_t)(0x80 | ((n - 3) & 0x7f));
	pkt[2] = (uint8_t)((n - 3) >> 7);
	if(n - 3 < 128) return -1;
	int fd = tcp_open(PORT);
	if(fd < 0) return -1;
	uint8_t ack[4] = {0};
	if(write_all(fd, pkt, n) || read_n(fd, ack, 4) || ack[0] != 0x20 || ack[3] != 0) {
		if(getenv("IMP_BUSY_DEBUG")) fprintf(stderr, "connect %s: %s, ack %02x %02x\n", id, strerror(errno), ack[0], ack[3]);
		close(fd);
		return -1;
	}
	return fd;
}

/* DISCONNECT, then waits for the broker to close. */
static void mqtt_disconnect(int fd)
{
	static const uint8_t d[2] = {0xE0, 0};
	uint8_t b;
	if(!write_all(fd, d, 2)) while(read(fd, &b, 1) > 0) {}
	close(fd);
}

static int mqtt_publish(int fd, const char *topic)
{
	uint8_t pkt[256];
	size_t n = 2;
	n += put_str(pkt + n, topic);
	memcpy(pkt + n, "busy", 4);
	n += 4;
	pkt[0] = 0x30;
	pkt[1] = (uint8_t)(n - 2);
	return write_all(fd, pkt, n);
}

/* ---- the looping client ----------------------------------------------------------------- */

static struct {
	atomic_int stop;
	long ok, failed;
	uint32_t *lat_us;
	long n;
	char topic[200];
} L;

static void *loop_client(void *arg)
{
	const char *id = getvar("D1");
	while(!atomic_load(&L.stop)) {
		uint64_t t0 = now_us();
		int fd = mqtt_connect(id, SECRET1);
		uint64_t t = now_us() - t0;
		if(L.n < MAX_SAMPLES) L.lat_us[L.n++] = (uint32_t)t;
		if(fd < 0) {
			L.failed++;
			sleep_ms(10);
			continue;
		}
		L.ok++;
		if(mqtt_publish(fd, L.topic)) L.failed++;
		mqtt_disconnect(fd);
		sleep_ms(10);
	}
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* ---- the batch, on a thread of its own --------------------------------------------------- */

static struct {
	long lines;
	char *body;
	size_t len;
	long status, answered, errors;
	double secs;
	atomic_int done;
	char partial[16];
} BT;

static size_t count_answers(char *p, size_t size, size_t n, void *arg)
{
	size_t len = size * n;
	for(size_t i = 0; i < len; i++) BT.answered += p[i] == '\n';
	/* An error line holds "error":; it may straddle two calls only if split there. */
	char *q = p;
	while((q = memchr(q, '"', len - (size_t)(q - p)))) {
		if((size_t)(p + len - q) >= 8 && memcmp(q, "\"error\":", 8) == 0) BT.errors++;
		q++;
	}
	return len;
}

static void *batch_thread(void *arg)
{
	CURL *c = curl_easy_init();
	char url[300], auth[300];
	snprintf(url, sizeof url, "%s/api/v1/devices/batch?credentials=true", S.url);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", S.admin.api_key);
	struct curl_slist *h = curl_slist_append(NULL, auth);
	h = curl_slist_append(h, "Content-Type: application/x-ndjson");
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, BT.body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)BT.len);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, count_answers);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 1800L);
	uint64_t t0 = now_us();
	if(curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &BT.status);
	BT.secs = (double)(now_us() - t0) / 1e6;
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	atomic_store(&BT.done, 1);
	return NULL;
}

/* ---- the test ----------------------------------------------------------------------------- */

static void gen_secret(const char *device, char *out)
{
	char body[200];
	snprintf(body, sizeof body, "{\"entityId\":\"%s\",\"entityType\":\"device\"}", device);
	h_resp r = api("POST", "/api/v1/access/mqtt-credentials", body);
	check_resp(&r, 200, NULL, NULL, body);
	snprintf(out, 64, "%s", h_str(&r, "mqttCredential.secret"));
	h_resp_free(&r);
}

static int connected(const char *id)
{
	char path[128];
	snprintf(path, sizeof path, "/api/v1/devices/%s", id);
	h_resp r = api("GET", path, NULL);
	check_resp(&r, 200, NULL, NULL, path);
	int c = json_is_true(json_object_get(json_object_get(r.json, "device"), "connected"));
	h_resp_free(&r);
	return c;
}

/* Milliseconds until the API shows want, or -1 after STATUS_MS. */
static long status_within(const char *id, int want)
{
	uint64_t t0 = now_us();
	while(now_us() - t0 < STATUS_MS * 1000ull) {
		if(connected(id) == want) return (long)((now_us() - t0) / 1000);
		sleep_ms(10);
	}
	return -1;
}

static void busy_batch(void **state)
{
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"busy\"}", "T"));
	json_decref(create("/api/v1/channels/templates", "channelTemplate",
	                   "{\"name\":\"both\",\"entityType\":\"deviceTemplate\",\"entityId\":\"{T}\",\"permission\":\"publish-subscribe\"}",
	                   NULL));
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{T}\",\"serialNumber\":\"busy-1\"}", "D1"));
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{T}\",\"serialNumber\":\"busy-2\"}", "D2"));
	gen_secret(getvar("D1"), SECRET1);
	gen_secret(getvar("D2"), SECRET2);
	assert_int_equal(broker_start(), 0);

	const char *env = getenv("IMP_BUSY_LINES");
	BT.lines = env ? atol(env) : 200000;
	size_t cap = (size_t)BT.lines * 96 + 1;
	BT.body = malloc(cap);
	assert_non_null(BT.body);
	for(long i = 0; i < BT.lines; i++)
		BT.len += (size_t)snprintf(BT.body + BT.len, cap - BT.len,
		                           "{\"deviceTemplateId\":\"%s\",\"serialNumber\":\"bulk-%09ld\"}\n", getvar("T"), i);

	snprintf(L.topic, sizeof L.topic, "xi/blue/v1/%s/d/%s/both", S.admin.account_id, getvar("D1"));
	L.lat_us = calloc(MAX_SAMPLES, sizeof *L.lat_us);
	pthread_t loop, batch;
	assert_int_equal(pthread_create(&loop, NULL, loop_client, NULL), 0);
	sleep_ms(300);
	long before = L.ok;
	assert_int_equal(pthread_create(&batch, NULL, batch_thread, NULL), 0);

	/* Mid-batch, a second device's connect and disconnect reach the API. */
	sleep_ms(1000);
	assert_false(atomic_load(&BT.done));
	int fd = mqtt_connect(getvar("D2"), SECRET2);
	assert_true(fd >= 0);
	long up = status_within(getvar("D2"), 1);
	mqtt_disconnect(fd);
	long down = status_within(getvar("D2"), 0);
	int mid = !atomic_load(&BT.done);

	pthread_join(batch, NULL);
	long during = L.ok - before;
	atomic_store(&L.stop, 1);
	pthread_join(loop, NULL);
	free(BT.body);

	qsort(L.lat_us, (size_t)L.n, sizeof *L.lat_us, cmp_u32);
	double p50 = L.n ? L.lat_us[L.n / 2] / 1000.0 : 0, p99 = L.n ? L.lat_us[L.n * 99 / 100] / 1000.0 : 0;
	double worst = L.n ? L.lat_us[L.n - 1] / 1000.0 : 0;
	print_message("batch: %ld lines in %.1f s (%.0f/s), status %ld, %ld answers, %ld errors\n", BT.lines, BT.secs,
	              BT.lines / BT.secs, BT.status, BT.answered, BT.errors);
	print_message("connects: %ld ok (%ld during the batch), %ld failed; CONNACK p50 %.2f ms, p99 %.2f ms, worst %.1f ms\n",
	              L.ok, during, L.failed, p50, p99, worst);
	print_message("status mid-batch: connected visible after %ld ms, disconnected after %ld ms%s\n", up, down,
	              mid ? "" : " (the batch had ended)");
	free(L.lat_us);

	assert_int_equal(BT.status, 200);
	assert_int_equal(BT.answered, BT.lines);
	assert_int_equal(BT.errors, 0);
	assert_int_equal(L.failed, 0);
	assert_true(during > 10);
	assert_true(worst < MAX_CONNECT_MS);
	assert_true(up >= 0);
	assert_true(down >= 0);
	assert_false(h_broker_log_has(&BRK, "status writes failed"));
	assert_false(h_broker_log_has(&BRK, "status queue full"));
}

static int teardown(void **state)
{
	int st = broker_stop();
	int bad = st != 0 || h_broker_log_has(&BRK, "AddressSanitizer") || h_broker_log_has(&BRK, "runtime error");
	if(bad) fprintf(stderr, "mosquitto exit status %d; log %s\n", st, BRK.log);
	h_thread_done();
	return group_teardown(state) || bad ? -1 : 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(busy_batch),
	};
	return cmocka_run_group_tests(tests, group_setup, teardown);
}
