/* End-to-end: the mosquitto plugin (src/broker/plugin.c) in a real mosquitto, started here
 * on a free loopback port with the harness server's data directory, against every rule of
 * MQTT.md "Connecting" and "Topics", the change feed (regenerate and disable end a live
 * session within a second) and connection status (connected within a second).
 * libmosquitto clients speak MQTT 3.1.1 and 5; a few checks use mosquitto_pub/_sub.
 * One server and one broker for the file; the tests run in order and share them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cases.h"
#include "broker_util.h"
#include "harness.h"

#define CRED_PATH "/api/v1/access/mqtt-credentials"
#define WAIT_MS 3000

static int PORT;
static h_broker BRK = {.pid = -1};

static int broker_start(void)
{
	if(h_broker_start(&BRK, S.data, "all")) return -1;
	PORT = BRK.port;
	return 0;
}

static int broker_stop(void) { return h_broker_stop(&BRK); }
static h_account B;              /* a second account */
static char SECRET[8][64];       /* by device index */
static char USECRET[64], BSECRET[64];
enum { D1, D2, D3, DP, DB };     /* devices: three of template T, one more, one of account B */
static const char *DEV_VARS[] = {"D1", "D2", "D3", "DP", "DB"};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* ---- the broker ---------------------------------------------------------------------- */






/* ---- MQTT clients ---------------------------------------------------------------------- */

typedef struct {
	struct mosquitto *m;
	pthread_mutex_t lock;
	int connack;          /* -1 until CONNACK */
	int suback;           /* first granted QoS or reason code of the last SUBACK; -1 until */
	int puback;           /* reason code of the last PUBACK (v5); -1 until */
	int gone;             /* disconnected */
	uint64_t gone_at;
	int nmsg;
	char msgs[64][160];
} cl;

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags, const mosquitto_property *p)
{
	cl *c = obj;
	pthread_mutex_lock(&c->lock);
	c->connack = rc;
	pthread_mutex_unlock(&c->lock);
	if(rc) mosquitto_disconnect(m);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *p)
{
	cl *c = obj;
	pthread_mutex_lock(&c->lock);
	if(!c->gone) c->gone_at = now_ms();
	c->gone = 1;
	pthread_mutex_unlock(&c->lock);
	mosquitto_disconnect(m); /* no reconnect */
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted, const mosquitto_property *p)
{
	cl *c = obj;
	pthread_mutex_lock(&c->lock);
	c->suback = n > 0 ? granted[0] : -2;
	pthread_mutex_unlock(&c->lock);
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int reason, const mosquitto_property *p)
{
	cl *c = obj;
	pthread_mutex_lock(&c->lock);
	c->puback = reason;
	pthread_mutex_unlock(&c->lock);
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg, const mosquitto_property *p)
{
	cl *c = obj;
	pthread_mutex_lock(&c->lock);
	if(c->nmsg < 64) snprintf(c->msgs[c->nmsg++], sizeof c->msgs[0], "%s", msg->topic);
	pthread_mutex_unlock(&c->lock);
}

static int get(cl *c, int *field)
{
	pthread_mutex_lock(&c->lock);
	int v = *field;
	pthread_mutex_unlock(&c->lock);
	return v;
}

/* Waits until *field is not -1; its value, or -1 on timeout. */
static int await(cl *c, int *field)
{
	for(uint64_t end = now_ms() + WAIT_MS; now_ms() < end; sleep_ms(5)) {
		int v = get(c, field);
		if(v != -1) return v;
	}
	return -1;
}

/* Connects (proto 4: MQTT 3.1.1, 5: MQTT 5) and waits for the CONNACK; c->connack is 0 on
 * success, 5 (v3) or 0x87 (v5) when refused. */
static cl *cl_connect(const char *id, const char *user, const char *pass, int proto)
{
	cl *c = calloc(1, sizeof *c);
	pthread_mutex_init(&c->lock, NULL);
	c->connack = c->suback = c->puback = -1;
	c->m = mosquitto_new(id, true, c);
	assert_non_null(c->m);
	mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, proto == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
	mosquitto_connect_v5_callback_set(c->m, on_connect);
	mosquitto_disconnect_v5_callback_set(c->m, on_disconnect);
	mosquitto_subscribe_v5_callback_set(c->m, on_subscribe);
	mosquitto_publish_v5_callback_set(c->m, on_publish);
	mosquitto_message_v5_callback_set(c->m, on_message);
	/* MQTT sends a password only after a username: "no username" is the empty one. */
	if(user || pass) mosquitto_username_pw_set(c->m, user ? user : "", pass);
	assert_int_equal(mosquitto_connect(c->m, "127.0.0.1", PORT, 30), MOSQ_ERR_SUCCESS);
	assert_int_equal(mosquitto_loop_start(c->m), MOSQ_ERR_SUCCESS);
	await(c, &c->connack);
	return c;
}

static void cl_close(cl *c)
{
	if(!c) return;
	mosquitto_disconnect(c->m);
	mosquitto_loop_stop(c->m, false);
	mosquitto_destroy(c->m);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* The CONNACK code a login gets. */
static int connack(const char *id, const char *user, const char *pass, int proto)
{
	cl *c = cl_connect(id, user, pass, proto);
	int rc = get(c, &c->connack);
	cl_close(c);
	return rc;
}

/* The SUBACK code of one subscription (granted QoS, or 0x80 / 0x87 when refused). */
static int sub(cl *c, const char *filter, int qos)
{
	pthread_mutex_lock(&c->lock);
	c->suback = -1;
	pthread_mutex_unlock(&c->lock);
	assert_int_equal(mosquitto_subscribe(c->m, NULL, filter, qos), MOSQ_ERR_SUCCESS);
	return await(c, &c->suback);
}

/* Publishes at QoS 1 from a v5 client; the PUBACK reason (0, or 0x87 when refused). */
static int pub1(cl *c, const char *topic)
{
	pthread_mutex_lock(&c->lock);
	c->puback = -1;
	pthread_mutex_unlock(&c->lock);
	assert_int_equal(mosquitto_publish(c->m, NULL, topic, 1, "x", 1, false), MOSQ_ERR_SUCCESS);
	return await(c, &c->puback);
}

static int received(cl *c, const char *topic)
{
	int n = 0;
	pthread_mutex_lock(&c->lock);
	for(int i = 0; i < c->nmsg; i++) n += strcmp(c->msgs[i], topic) == 0;
	pthread_mutex_unlock(&c->lock);
	return n;
}

static int await_msg(cl *c, const char *topic)
{
	for(uint64_t end = now_ms() + WAIT_MS; now_ms() < end; sleep_ms(5)) {
		if(received(c, topic)) return 1;
	}
	return 0;
}

/* ---- store helpers ----------------------------------------------------------------------- */

static const char *dev(int i) { return getvar(DEV_VARS[i]); }

static void topic(char *out, size_t cap, const char *acct, const char *device, const char *rest)
{
	snprintf(out, cap, "xi/blue/v1/%s/d/%s/%s", acct, device, rest);
}

static void gen_secret(const char *token, const char *entity, const char *type, char *out)
{
	char body[200];
	snprintf(body, sizeof body, "{\"entityId\":\"%s\",\"entityType\":\"%s\"}", entity, type);
	h_resp r = api_as(token, "POST", CRED_PATH, body, NULL);
	check_resp(&r, 200, NULL, NULL, body);
	snprintf(out, 64, "%s", h_str(&r, "mqttCredential.secret"));
	h_resp_free(&r);
}

static json_t *get_device(const char *id)
{
	char path[128];
	snprintf(path, sizeof path, "/api/v1/devices/%s", id);
	h_resp r = api("GET", path, NULL);
	check_resp(&r, 200, NULL, NULL, path);
	json_t *d = json_incref(json_object_get(r.json, "device"));
	h_resp_free(&r);
	return d;
}

/* Milliseconds until the API shows the device's connected as want, or -1. */
static long connected_within(const char *id, int want)
{
	uint64_t t0 = now_ms();
	for(uint64_t end = t0 + WAIT_MS; now_ms() < end; sleep_ms(10)) {
		json_t *d = get_device(id);
		int c = json_is_true(json_object_get(d, "connected"));
		json_decref(d);
		if(c == want) return (long)(now_ms() - t0);
	}
	return -1;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void setup_entities(void **state)
{
	setvar("ACCT", S.admin.account_id);
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"meter\"}", "T"));
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"plain\"}", "T2"));
	static const char *const CH[][2] = {{"both", "publish-subscribe"}, {"up", "publish"}, {"down", "subscribe"}};
	for(int i = 0; i < 3; i++) {
		char body[300];
		snprintf(body, sizeof body,
		         "{\"name\":\"%s\",\"entityType\":\"deviceTemplate\",\"entityId\":\"{T}\",\"permission\":\"%s\"}", CH[i][0],
		         CH[i][1]);
		json_decref(create("/api/v1/channels/templates", "channelTemplate", body, NULL));
	}
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{T}\",\"serialNumber\":\"B-1\"}", "D1"));
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{T}\",\"serialNumber\":\"B-2\"}", "D2"));
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{T}\",\"serialNumber\":\"B-3\"}", "D3"));
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{T2}\",\"serialNumber\":\"B-4\"}", "DP"));
	for(int i = D1; i <= DP; i++) gen_secret(S.admin.api_key, dev(i), "device", SECRET[i]);

	h_resp r = api("POST", "/api/v1/account-users",
	               "{\"emailAddress\":\"mqtt-watch@example.com\",\"password\":\"a-long-password\",\"name\":\"W\"}");
	check_resp(&r, 201, NULL, NULL, "account user");
	setvar("U", h_str(&r, "accountUser.id"));
	h_resp_free(&r);
	gen_secret(S.admin.api_key, getvar("U"), "accountUser", USECRET);

	/* Account B, with a device of its own. */
	assert_int_equal(h_account_create(&S, &B), 0);
	h_resp t = api_as(B.api_key, "POST", "/api/v1/devices/templates", "{\"name\":\"b\"}", NULL);
	check_resp(&t, 201, NULL, NULL, "B template");
	char body[200];
	snprintf(body, sizeof body, "{\"deviceTemplateId\":\"%s\",\"serialNumber\":\"X\"}", h_str(&t, "deviceTemplate.id"));
	h_resp_free(&t);
	h_resp d = api_as(B.api_key, "POST", "/api/v1/devices", body, NULL);
	check_resp(&d, 201, NULL, NULL, "B device");
	setvar("DB", h_str(&d, "device.id"));
	h_resp_free(&d);
	gen_secret(B.api_key, getvar("DB"), "device", BSECRET);

	assert_int_equal(broker_start(), 0);
}

static void connect_rules(void **state)
{
	const char *d1 = dev(D1);
	for(int proto = 4; proto <= 5; proto++) {
		int refused = proto == 5 ? 0x87 : 5;
		assert_int_equal(connack(d1, d1, SECRET[D1], proto), 0);
		assert_int_equal(connack(d1, NULL, SECRET[D1], proto), 0);
		assert_int_equal(connack(d1, "", SECRET[D1], proto), 0);
		assert_int_equal(connack(d1, d1, "wrong", proto), refused);
		assert_int_equal(connack(d1, d1, SECRET[D2], proto), refused);       /* another device's secret */
		assert_int_equal(connack(d1, d1, NULL, proto), refused);             /* no password */
		assert_int_equal(connack(d1, dev(D2), SECRET[D1], proto), refused);  /* client id != username */
		assert_int_equal(connack("0190a0b0-0000-7000-8000-000000000000", NULL, "x", proto), refused);
		assert_int_equal(connack("not-an-id", NULL, "x", proto), refused);
		char upper[64];
		snprintf(upper, sizeof upper, "%s", d1);
		for(char *p = upper; *p; p++) *p = (char)toupper((unsigned char)*p);
		assert_int_equal(connack(upper, NULL, SECRET[D1], proto), refused);   /* ids are exact text */
		assert_int_equal(connack(dev(DB), NULL, BSECRET, proto), 0);          /* account B's device */
		assert_int_equal(connack(getvar("U"), NULL, USECRET, proto), 0);     /* account user */
		assert_int_equal(connack(getvar("U"), NULL, SECRET[D1], proto), refused);
	}
	/* Nothing secret in the broker's log. */
	assert_false(h_broker_log_has(&BRK, SECRET[D1]));
	assert_false(h_broker_log_has(&BRK, USECRET));
	assert_true(h_broker_log_has(&BRK, "imprint: deny"));
	assert_true(h_broker_log_has(&BRK, "wrong_secret"));
}

/* Calls method on the path prefix + id + suffix and expects status. */
static void api_expect(const char *method, const char *prefix, const char *id, const char *suffix, long status)
{
	char path[200];
	snprintf(path, sizeof path, "%s%s%s", prefix, id, suffix);
	h_resp r = api(method, path, NULL);
	check_resp(&r, status, NULL, NULL, path);
	h_resp_free(&r);
}

/* How many times the broker logged that clientid was let in from memory (from: "memory")
 * or by the store ("store"). */
static int allowed_from(const char *clientid, const char *from)
{
	char needle[128], line[4096];
	snprintf(needle, sizeof needle, "imprint: allow %s allow (%s)", clientid, from);
	FILE *f = fopen(BRK.log, "r");
	int n = 0;
	while(f && fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
	if(f) fclose(f);
	return n;
}

/* Password logins answered from the plugin's memory (plugin_logins.c): loaded at start,
 * added at a device's first login, and exact at once after each change, without waiting
 * for the broker's tick. */
static void logins_in_memory(void **state)
{
	for(uint64_t end = now_ms() + WAIT_MS; now_ms() < end && !h_broker_log_has(&BRK, "password logins in memory");)
		sleep_ms(10);
	assert_true(h_broker_log_has(&BRK, "password logins in memory"));
	/* loaded at start: D2's first login here comes from memory */
	const char *d2 = dev(D2);
	assert_false(allowed_from(d2, "memory"));
	assert_int_equal(connack(d2, NULL, SECRET[D2], 5), 0);
	assert_true(allowed_from(d2, "memory"));
	assert_int_equal(connack(d2, NULL, "wrong", 5), 0x87);
	assert_int_equal(connack(d2, NULL, SECRET[D1], 5), 0x87);

	/* a device made after the start: the store first, then memory */
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{T}\",\"serialNumber\":\"B-9\"}", "DN"));
	const char *dn = getvar("DN");
	char s1[64], s2[64];
	gen_secret(S.admin.api_key, dn, "device", s1);
	assert_int_equal(connack(dn, NULL, s1, 4), 0);
	assert_true(allowed_from(dn, "store"));
	assert_false(allowed_from(dn, "memory"));
	assert_int_equal(connack(dn, dn, s1, 4), 0);
	assert_true(allowed_from(dn, "memory"));

	/* each change holds for the very next login */
	gen_secret(S.admin.api_key, dn, "device", s2);
	assert_int_equal(connack(dn, NULL, s1, 4), 5);
	assert_int_equal(connack(dn, NULL, s2, 4), 0);
	api_expect("POST", "/api/v1/devices/", dn, "/disable", 200);
	assert_int_equal(connack(dn, NULL, s2, 4), 5);
	api_expect("POST", "/api/v1/devices/", dn, "/enable", 200);
	assert_int_equal(connack(dn, NULL, s2, 4), 0);
	assert_int_equal(connack(dn, NULL, s2, 4), 0);
	char path[160];
	snprintf(path, sizeof path, CRED_PATH "?entityId=%s", dn);
	h_resp r = api("GET", path, NULL);
	check_resp(&r, 200, NULL, NULL, path);
	api_expect("DELETE", CRED_PATH "/", h_str(&r, "mqttCredentials.results.0.id"), "", 204);
	h_resp_free(&r);
	assert_int_equal(connack(dn, NULL, s2, 4), 5);
	gen_secret(S.admin.api_key, dn, "device", s1);
	assert_int_equal(connack(dn, NULL, s1, 4), 0);
	assert_int_equal(connack(dn, NULL, s1, 4), 0);
	api_expect("DELETE", "/api/v1/devices/", dn, "", 204);
	assert_int_equal(connack(dn, NULL, s1, 4), 5);
	/* none of it wrote a secret into the log */
	assert_false(h_broker_log_has(&BRK, s1));
	assert_false(h_broker_log_has(&BRK, s2));
	/* the changes dropped DN alone: D2 still logs in from memory, nothing was loaded again */
	int before = allowed_from(d2, "memory");
	assert_int_equal(connack(d2, NULL, SECRET[D2], 5), 0);
	assert_int_equal(allowed_from(d2, "memory"), before + 1);
	assert_false(h_broker_log_has(&BRK, "moved past the logins"));
}

static void device_topics(void **state)
{
	char t[256], a[256];
	const char *acct = S.admin.account_id, *d1 = dev(D1);
	cl *w = cl_connect(getvar("U"), NULL, USECRET, 5);   /* watcher: the account's user */
	assert_int_equal(get(w, &w->connack), 0);
	snprintf(a, sizeof a, "xi/blue/v1/%s/#", acct);
	assert_int_equal(sub(w, a, 0), 0);

	cl *c = cl_connect(d1, NULL, SECRET[D1], 5);
	assert_int_equal(get(c, &c->connack), 0);
	/* publish: by permission, and the reserved topics */
	static const struct { const char *rest; int ok; } PUB[] = {
		{"both", 1}, {"up", 1}, {"down", 0}, {"nochannel", 0}, {"_log", 1}, {"_set/fields", 1},
		{"_updates/fields", 0}, {"_rejected", 0},
	};
	for(size_t i = 0; i < sizeof PUB / sizeof PUB[0]; i++) {
		topic(t, sizeof t, acct, d1, PUB[i].rest);
		int rc = pub1(c, t);
		if(rc != (PUB[i].ok ? 0 : 0x87)) fail_msg("publish %s: PUBACK %d", PUB[i].rest, rc);
		if(PUB[i].ok && !await_msg(w, t)) fail_msg("publish %s: the watcher got nothing", PUB[i].rest);
	}
	topic(t, sizeof t, acct, d1, "down");
	assert_int_equal(received(w, t), 0);
	/* subscribe: by permission, and the reserved topics */
	static const struct { const char *rest; int ok; } SUB[] = {
		{"both", 1}, {"up", 0}, {"down", 1}, {"_log", 0}, {"_set/fields", 0}, {"_updates/fields", 1}, {"_rejected", 1},
	};
	for(size_t i = 0; i < sizeof SUB / sizeof SUB[0]; i++) {
		topic(t, sizeof t, acct, d1, SUB[i].rest);
		int rc = sub(c, t, 1);
		if(rc != (SUB[i].ok ? 1 : 0x87)) fail_msg("subscribe %s: SUBACK %d", SUB[i].rest, rc);
	}
	/* control topics: cln subscribe only, svc publish only at QoS 0 */
	snprintf(t, sizeof t, "xi/ctrl/v1/%s/cln", d1);
	assert_int_equal(sub(c, t, 0), 0);
	assert_int_equal(pub1(c, t), 0x87);
	snprintf(t, sizeof t, "xi/ctrl/v1/%s/svc", d1);
	assert_int_equal(sub(c, t, 0), 0x87);
	assert_int_equal(pub1(c, t), 0x87);   /* QoS 1 is refused there */
	assert_int_equal(mosquitto_publish(c->m, NULL, t, 1, "x", 0, false), MOSQ_ERR_SUCCESS);
	snprintf(t, sizeof t, "xi/ctrl/v1/%s/cln", dev(D2));
	assert_int_equal(sub(c, t, 0), 0x87);
	/* other devices, other accounts, wildcards */
	topic(t, sizeof t, acct, dev(D2), "both");
	assert_int_equal(pub1(c, t), 0x87);
	assert_int_equal(sub(c, t, 0), 0x87);
	topic(t, sizeof t, B.account_id, dev(DB), "both");
	assert_int_equal(pub1(c, t), 0x87);
	assert_int_equal(sub(c, "#", 0), 0x87);
	assert_int_equal(sub(c, a, 0), 0x87);
	snprintf(t, sizeof t, "xi/blue/v1/+/d/%s/both", d1);
	assert_int_equal(sub(c, t, 0), 0x87);
	snprintf(t, sizeof t, "xi/blue/v1/%s/d/+/both", acct);
	assert_int_equal(sub(c, t, 0), 0x87);
	assert_int_equal(sub(c, "$SYS/#", 0), 0x87);
	/* the publish-only template: no channels at all */
	cl *p = cl_connect(dev(DP), NULL, SECRET[DP], 5);
	topic(t, sizeof t, acct, dev(DP), "both");
	assert_int_equal(pub1(p, t), 0x87);
	topic(t, sizeof t, acct, dev(DP), "_log");
	assert_int_equal(pub1(p, t), 0);
	cl_close(p);

	/* MQTT 3.1.1: refusals in the SUBACK are 0x80 */
	cl *v3 = cl_connect(dev(D2), NULL, SECRET[D2], 4);
	assert_int_equal(get(v3, &v3->connack), 0);
	topic(t, sizeof t, acct, dev(D2), "up");
	assert_int_equal(sub(v3, t, 0), 0x80);
	topic(t, sizeof t, acct, dev(D2), "down");
	assert_int_equal(sub(v3, t, 0), 0);
	assert_int_equal(sub(v3, "#", 0), 0x80);
	cl_close(v3);
	cl_close(c);
	cl_close(w);
}

/* The publish PUBACK a fresh session of device i gets on its channel rest: 0 accepted
 * (also when no one subscribes, 0x10), 0x87 refused. */
static int fresh_pub(int i, const char *rest)
{
	char t[256];
	cl *c = cl_connect(dev(i), NULL, SECRET[i], 5);
	assert_int_equal(get(c, &c->connack), 0);
	topic(t, sizeof t, S.admin.account_id, dev(i), rest);
	int rc = pub1(c, t);
	cl_close(c);
	return rc == 0x10 ? 0 : rc;
}

/* Milliseconds until a fresh session of device i gets want on its channel rest, or -1. */
static long fresh_pub_within(int i, const char *rest, int want)
{
	uint64_t t0 = now_ms();
	for(uint64_t end = t0 + WAIT_MS; now_ms() < end; sleep_ms(20)) {
		if(fresh_pub(i, rest) == want) return (long)(now_ms() - t0);
	}
	return -1;
}

/* The plugin keeps each template's channels; a channel template added or deleted (they
 * take no updates) reaches the next session of every device of the template within a
 * second. */
static void channel_changes_reach_new_sessions(void **state)
{
	assert_int_equal(fresh_pub(DP, "late"), 0x87);   /* T2 has no channels; now kept so */
	json_decref(create("/api/v1/channels/templates", "channelTemplate",
	                   "{\"name\":\"late\",\"entityType\":\"deviceTemplate\",\"entityId\":\"{T2}\","
	                   "\"permission\":\"publish\"}", "CH_LATE"));
	long ms = fresh_pub_within(DP, "late", 0);
	if(ms < 0 || ms > 1000) fail_msg("a new channel reached new sessions after %ld ms", ms);
	char path[128];
	snprintf(path, sizeof path, "/api/v1/channels/templates/%s", getvar("CH_LATE"));
	h_resp r = api("DELETE", path, NULL);
	check_resp(&r, 204, NULL, NULL, "channel delete");
	h_resp_free(&r);
	ms = fresh_pub_within(DP, "late", 0x87);
	if(ms < 0 || ms > 1000) fail_msg("a deleted channel stopped at new sessions after %ld ms", ms);
}

/* Milliseconds until publishing on the device's channel rest from the live session c
 * gets want, or -1. */
static long live_pub_within(cl *c, int i, const char *rest, int want)
{
	char t[256];
	topic(t, sizeof t, S.admin.account_id, dev(i), rest);
	uint64_t t0 = now_ms();
	for(uint64_t end = t0 + WAIT_MS; now_ms() < end; sleep_ms(20)) {
		int rc = pub1(c, t);
		if((rc == 0x10 ? 0 : rc) == want) return (long)(now_ms() - t0);
	}
	return -1;
}

/* ... and every live session of those devices within a second, without ending it. */
static void channel_changes_reach_live_sessions(void **state)
{
	cl *c = cl_connect(dev(DP), NULL, SECRET[DP], 5);
	assert_int_equal(get(c, &c->connack), 0);
	assert_true(live_pub_within(c, DP, "live", 0x87) >= 0);   /* not a channel yet */
	json_decref(create("/api/v1/channels/templates", "channelTemplate",
	                   "{\"name\":\"live\",\"entityType\":\"deviceTemplate\",\"entityId\":\"{T2}\","
	                   "\"permission\":\"publish\"}", "CH_LIVE"));
	long ms = live_pub_within(c, DP, "live", 0);
	print_message("a new channel reached a live session after %ld ms\n", ms);
	if(ms < 0 || ms > 1000) fail_msg("a new channel reached a live session after %ld ms", ms);
	char path[128];
	snprintf(path, sizeof path, "/api/v1/channels/templates/%s", getvar("CH_LIVE"));
	h_resp r = api("DELETE", path, NULL);
	check_resp(&r, 204, NULL, NULL, "channel delete");
	h_resp_free(&r);
	ms = live_pub_within(c, DP, "live", 0x87);
	print_message("a deleted channel stopped a live session after %ld ms\n", ms);
	if(ms < 0 || ms > 1000) fail_msg("a deleted channel stopped a live session after %ld ms", ms);
	pthread_mutex_lock(&c->lock);
	int gone = c->gone;
	pthread_mutex_unlock(&c->lock);
	assert_false(gone);   /* the session went on throughout */
	cl_close(c);
}

/* A device's wildcard subscription over its own tree gets only what it may read. */
static void per_message_read_check(void **state)
{
	char t[256], f[256];
	const char *acct = S.admin.account_id, *d1 = dev(D1);
	cl *c = cl_connect(d1, NULL, SECRET[D1], 4);
	topic(f, sizeof f, acct, d1, "#");
	assert_int_equal(sub(c, f, 0), 0);
	cl *u = cl_connect(getvar("U"), NULL, USECRET, 5);
	assert_int_equal(get(u, &u->connack), 0);
	static const char *const SENT[] = {"up", "_log", "_set/fields", "both", "down", "_updates/fields", "_rejected"};
	for(int i = 0; i < 7; i++) {
		topic(t, sizeof t, acct, d1, SENT[i]);
		assert_int_equal(pub1(u, t), 0);
	}
	topic(t, sizeof t, acct, d1, "_rejected");  /* the last one sent */
	assert_true(await_msg(c, t));
	for(int i = 0; i < 7; i++) {
		topic(t, sizeof t, acct, d1, SENT[i]);
		if(received(c, t) != (i >= 3)) fail_msg("%s delivered %d times", SENT[i], received(c, t));
	}
	cl_close(u);
	cl_close(c);
}

static void account_user_topics(void **state)
{
	char t[256];
	const char *acct = S.admin.account_id;
	cl *u = cl_connect(getvar("U"), getvar("U"), USECRET, 5);
	assert_int_equal(get(u, &u->connack), 0);
	snprintf(t, sizeof t, "xi/blue/v1/%s/#", acct);
	assert_int_equal(sub(u, t, 0), 0);
	snprintf(t, sizeof t, "xi/blue/v1/%s/d/+/up", acct);
	assert_int_equal(sub(u, t, 0), 0);
	topic(t, sizeof t, acct, dev(D1), "up");
	assert_int_equal(pub1(u, t), 0);
	topic(t, sizeof t, acct, dev(D1), "anything/else");
	assert_int_equal(pub1(u, t), 0);
	/* other accounts, control topics, the whole tree */
	topic(t, sizeof t, B.account_id, dev(DB), "both");
	assert_int_equal(pub1(u, t), 0x87);
	snprintf(t, sizeof t, "xi/blue/v1/%s/#", B.account_id);
	assert_int_equal(sub(u, t, 0), 0x87);
	assert_int_equal(sub(u, "xi/blue/v1/+/d/+/both", 0), 0x87);
	assert_int_equal(sub(u, "#", 0), 0x87);
	snprintf(t, sizeof t, "xi/ctrl/v1/%s/cln", dev(D1));
	assert_int_equal(sub(u, t, 0), 0x87);
	snprintf(t, sizeof t, "xi/ctrl/v1/%s/svc", dev(D1));
	assert_int_equal(pub1(u, t), 0x87);
	cl_close(u);
}

/* Issue 5: two end users in sibling organizations (P > {OA, OB}) each own one device,
 * claimed with an association code; neither sees nor changes the other's, over HTTP and
 * over MQTT. Devices E1 (OA) and E2 (OB) are new, of template T (both, up, down). */
static void end_user_login(const char *email, char *out, size_t cap)
{
	char body[200];
	snprintf(body, sizeof body, "{\"emailAddress\":\"%s\",\"password\":\"a-long-password\"}", email);
	h_resp r = h_call(&S, "POST", "/api/v1/auth/login-user", NULL, body, NULL);
	check_resp(&r, 200, NULL, NULL, email);
	snprintf(out, cap, "%s", h_str(&r, "jwt"));
	h_resp_free(&r);
}

/* An admin-made code for the device in dvar, claimed by the end user in uvar. */
static void claim(const char *dvar, const char *uvar, const char *jwt)
{
	char body[200], code[32];
	snprintf(body, sizeof body, "{\"deviceId\":\"%s\"}", getvar(dvar));
	h_resp r = api("POST", "/api/v1/association/create-association-code", body);
	check_resp(&r, 201, NULL, NULL, "code");
	snprintf(code, sizeof code, "%s", h_str(&r, "associationCode"));
	h_resp_free(&r);
	snprintf(body, sizeof body, "{\"associationCode\":\"%s\",\"endUserId\":\"%s\"}", code, getvar(uvar));
	r = api_as(jwt, "POST", "/api/v1/association/start-association-with-code", body, NULL);
	check_resp(&r, 200, NULL, NULL, "claim");
	assert_string_equal(h_str(&r, "deviceId"), getvar(dvar));
	h_resp_free(&r);
}

static long http_status(const char *jwt, const char *method, const char *path, const char *body)
{
	h_resp r = api_as(jwt, method, path, body, NULL);
	long st = r.status;
	h_resp_free(&r);
	return st;
}

static void end_users_in_sibling_organizations(void **state)
{
	static char ja[2048], jb[2048];
	char sa[64], sb[64], se1[64], se2[64], t[256];
	const char *acct = S.admin.account_id;
	json_decref(create("/api/v1/organizations", "organization", "{\"name\":\"P\"}", "OP"));
	json_decref(create("/api/v1/organizations", "organization", "{\"name\":\"OA\",\"parentId\":\"{OP}\"}", "OA"));
	json_decref(create("/api/v1/organizations", "organization", "{\"name\":\"OB\",\"parentId\":\"{OP}\"}", "OB"));
	json_decref(create("/api/v1/end-users", "endUser",
	                   "{\"organizationId\":\"{OA}\",\"name\":\"Ann\",\"emailAddress\":\"ann@example.com\","
	                   "\"password\":\"a-long-password\"}", "EA"));
	json_decref(create("/api/v1/end-users", "endUser",
	                   "{\"organizationId\":\"{OB}\",\"name\":\"Bob\",\"emailAddress\":\"bob@example.com\","
	                   "\"password\":\"a-long-password\"}", "EB"));
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{T}\",\"serialNumber\":\"E-1\"}", "E1"));
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{T}\",\"serialNumber\":\"E-2\"}", "E2"));
	gen_secret(S.admin.api_key, getvar("E1"), "device", se1);
	gen_secret(S.admin.api_key, getvar("E2"), "device", se2);
	end_user_login("ann@example.com", ja, sizeof ja);
	end_user_login("bob@example.com", jb, sizeof jb);
	claim("E1", "EA", ja);
	claim("E2", "EB", jb);
	json_t *d = get_device(getvar("E1"));
	assert_string_equal(json_string_value(json_object_get(d, "organizationId")), getvar("OA"));
	assert_string_equal(json_string_value(json_object_get(d, "provisioningState")), "associated");
	json_decref(d);
	gen_secret(ja, getvar("EA"), "endUser", sa);
	gen_secret(jb, getvar("EB"), "endUser", sb);

	/* HTTP: each sees and changes its own device only */
	h_resp r = api_as(ja, "GET", "/api/v1/devices", NULL, NULL);
	check_resp(&r, 200, NULL, NULL, "Ann's devices");
	check_at(&r, "devices.meta.count", "1", "Ann sees one device");
	check_at(&r, "devices.results.0.id", "\"{E1}\"", "Ann sees E1");
	h_resp_free(&r);
	assert_int_equal(http_status(ja, "GET", "/api/v1/devices/{E1}", NULL), 200);
	assert_int_equal(http_status(ja, "GET", "/api/v1/devices/{E2}", NULL), 404);
	assert_int_equal(http_status(jb, "GET", "/api/v1/devices/{E1}", NULL), 404);
	assert_int_equal(http_status(ja, "PUT", "/api/v1/devices/{E2}", "{\"name\":\"mine\"}"), 404);
	assert_int_equal(http_status(ja, "PUT", "/api/v1/devices/{E1}", "{\"organizationId\":\"{OB}\"}"), 422);
	assert_int_equal(http_status(ja, "PUT", "/api/v1/devices/{E1}", "{\"name\":\"kitchen\"}"), 200);
	d = get_device(getvar("E2"));
	assert_true(json_is_null(json_object_get(d, "name")));
	assert_string_equal(json_string_value(json_object_get(d, "organizationId")), getvar("OB"));
	json_decref(d);

	/* MQTT: each logs in with its own credential only */
	assert_int_equal(connack(getvar("EA"), getvar("EA"), sb, 5), 0x87);
	cl *ua = cl_connect(getvar("EA"), getvar("EA"), sa, 5);
	cl *ub = cl_connect(getvar("EB"), getvar("EB"), sb, 5);
	cl *e1 = cl_connect(getvar("E1"), NULL, se1, 5);
	cl *e2 = cl_connect(getvar("E2"), NULL, se2, 5);
	assert_int_equal(get(ua, &ua->connack), 0);
	assert_int_equal(get(ub, &ub->connack), 0);
	assert_int_equal(get(e1, &e1->connack), 0);
	assert_int_equal(get(e2, &e2->connack), 0);

	/* device -> cloud: Ann reads her device's "up"; Bob cannot subscribe to it */
	char e1up[256], e2up[256], e1down[256], e2down[256];
	topic(e1up, sizeof e1up, acct, getvar("E1"), "up");
	topic(e2up, sizeof e2up, acct, getvar("E2"), "up");
	topic(e1down, sizeof e1down, acct, getvar("E1"), "down");
	topic(e2down, sizeof e2down, acct, getvar("E2"), "down");
	assert_int_equal(sub(ua, e1up, 0), 0);
	assert_int_equal(sub(ub, e1up, 0), 0x87);
	assert_int_equal(sub(ub, e2up, 0), 0);
	assert_int_equal(pub1(e1, e1up), 0);
	assert_true(await_msg(ua, e1up));
	assert_int_equal(pub1(e2, e2up), 0);
	assert_true(await_msg(ub, e2up));
	assert_int_equal(received(ub, e1up), 0);
	assert_int_equal(received(ua, e2up), 0);

	/* cloud -> device: Ann publishes on E1's "down"; not on "up" (device -> cloud only) */
	assert_int_equal(sub(e1, e1down, 1), 1);
	assert_int_equal(sub(e2, e2down, 1), 1);
	assert_int_equal(pub1(ua, e1down), 0);
	assert_true(await_msg(e1, e1down));
	assert_int_equal(pub1(ua, e1up), 0x87);

	/* Ann on Bob's device: refused, and nothing reaches it; Bob's own publish does */
	assert_int_equal(pub1(ua, e2down), 0x87);
	assert_int_equal(sub(ua, e2up, 0), 0x87);
	topic(t, sizeof t, acct, getvar("E2"), "both");
	assert_int_equal(sub(ua, t, 0), 0x87);
	assert_int_equal(pub1(ua, t), 0x87);
	topic(t, sizeof t, acct, getvar("E2"), "_log");
	assert_int_equal(sub(ua, t, 0), 0x87);
	topic(t, sizeof t, acct, getvar("E2"), "#");
	assert_int_equal(sub(ua, t, 0), 0x87);
	assert_int_equal(pub1(ub, e2down), 0);
	assert_true(await_msg(e2, e2down));
	sleep_ms(200);
	assert_int_equal(received(e2, e2down), 1);

	/* wildcards over devices, the account, everything; control topics */
	snprintf(t, sizeof t, "xi/blue/v1/%s/d/+/up", acct);
	assert_int_equal(sub(ua, t, 0), 0x87);
	snprintf(t, sizeof t, "xi/blue/v1/%s/#", acct);
	assert_int_equal(sub(ua, t, 0), 0x87);
	assert_int_equal(sub(ua, "#", 0), 0x87);
	snprintf(t, sizeof t, "xi/ctrl/v1/%s/cln", getvar("E1"));
	assert_int_equal(sub(ua, t, 0), 0x87);
	snprintf(t, sizeof t, "xi/ctrl/v1/%s/svc", getvar("E1"));
	assert_int_equal(pub1(ua, t), 0x87);
	/* her own device's tree, by wildcard, is hers */
	topic(t, sizeof t, acct, getvar("E1"), "#");
	assert_int_equal(sub(ua, t, 0), 0);
	cl_close(e2);
	cl_close(e1);
	cl_close(ub);
	cl_close(ua);
}

/* A device's will on its own channel reaches a subscriber when the device drops off with a
 * clean session too (mosquitto sends the will after the plugin's disconnect event). */
static void last_will_is_delivered(void **state)
{
	char t[256];
	const char *d2 = dev(D2);
	topic(t, sizeof t, S.admin.account_id, d2, "up");
	cl *u = cl_connect(getvar("U"), getvar("U"), USECRET, 5);
	assert_int_equal(get(u, &u->connack), 0);
	assert_int_equal(sub(u, t, 0), 0);
	for(int clean = 1; clean >= 0; clean--) {
		struct mosquitto *m = mosquitto_new(d2, clean, NULL);
		assert_non_null(m);
		assert_int_equal(mosquitto_will_set(m, t, 4, "gone", 0, false), MOSQ_ERR_SUCCESS);
		assert_int_equal(mosquitto_username_pw_set(m, d2, SECRET[D2]), MOSQ_ERR_SUCCESS);
		assert_int_equal(mosquitto_connect(m, "127.0.0.1", PORT, 30), MOSQ_ERR_SUCCESS);
		/* CONNACK read, then the connection drops without a DISCONNECT. */
		for(int i = 0; i < 20; i++) mosquitto_loop(m, 50, 1);
		int before = received(u, t);
		shutdown(mosquitto_socket(m), SHUT_RDWR);
		mosquitto_destroy(m);
		int got = 0;
		for(uint64_t end = now_ms() + WAIT_MS; now_ms() < end && !got; sleep_ms(5)) got = received(u, t) > before;
		if(!got) fail_msg("the will of a %s session was not delivered", clean ? "clean" : "persistent");
	}
	cl_close(u);
}

/* mosquitto_pub and mosquitto_sub, as a developer would try them. */
static void command_line_clients(void **state)
{
	char cmd[1024], t[256], port[16];
	snprintf(port, sizeof port, "%d", PORT);
	topic(t, sizeof t, S.admin.account_id, dev(D1), "both");
	snprintf(cmd, sizeof cmd, "mosquitto_pub -h 127.0.0.1 -p %s -i %s -u %s -P '%s' -t %s -m hi -q 1 2>/dev/null", port,
	         dev(D1), dev(D1), SECRET[D1], t);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof cmd, "mosquitto_pub -h 127.0.0.1 -p %s -i %s -u %s -P wrong -t %s -m hi -q 1 2>/dev/null", port,
	         dev(D1), dev(D1), t);
	assert_int_not_equal(system(cmd), 0);
	/* a subscriber receives what the device's channel carries */
	char out[256] = {0};
	snprintf(cmd, sizeof cmd,
	         "(sleep 0.5; mosquitto_pub -h 127.0.0.1 -p %s -i %s -u %s -P '%s' -t %s -m hello -q 1) & "
	         "mosquitto_sub -h 127.0.0.1 -p %s -i %s -u '' -P '%s' -t %s -C 1 -W 5 -V mqttv5; wait",
	         port, getvar("U"), getvar("U"), USECRET, t, port, dev(D1), SECRET[D1], t);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	if(!fgets(out, sizeof out, p)) out[0] = '\0';
	assert_int_equal(pclose(p), 0);
	assert_string_equal(out, "hello\n");
}

static long version_of(const char *id)
{
	json_t *d = get_device(id);
	long v = atol(json_string_value(json_object_get(d, "version")));
	json_decref(d);
	return v;
}

static void connection_status(void **state)
{
	const char *d2 = dev(D2);
	long v0 = version_of(d2);
	assert_true(connected_within(d2, 0) >= 0);
	cl *c = cl_connect(d2, NULL, SECRET[D2], 4);
	assert_int_equal(get(c, &c->connack), 0);
	long up = connected_within(d2, 1);
	print_message("connected visible after %ld ms\n", up);
	assert_true(up >= 0 && up < 1000);
	json_t *d = get_device(d2);
	const char *last = json_string_value(json_object_get(d, "lastConnected"));
	assert_non_null(last);
	assert_timestamp(last);
	json_decref(d);
	assert_int_equal(version_of(d2), v0);   /* status is not an edit */
	cl_close(c);
	long down = connected_within(d2, 0);
	print_message("disconnected visible after %ld ms\n", down);
	assert_true(down >= 0 && down < 1000);
}

/* A session over before the status thread's next write (most, in a connect storm) moves
 * lastConnected alone: it comes from the status map, and connected, which lists filter on,
 * never shows true. */
static char *last_connected(const char *id)
{
	json_t *d = get_device(id);
	const char *s = json_string_value(json_object_get(d, "lastConnected"));
	char *out = s ? strdup(s) : NULL;
	assert_false(json_is_true(json_object_get(d, "connected")));
	json_decref(d);
	return out;
}

static void short_session_status(void **state)
{
	const char *d2 = dev(D2);
	long v0 = version_of(d2);
	for(int round = 0; round < 2; round++) {
		assert_true(connected_within(d2, 0) >= 0);
		char *before = last_connected(d2);
		sleep_ms(5);   /* the times are in milliseconds */
		assert_int_equal(connack(d2, NULL, SECRET[D2], 4), 0);
		uint64_t t0 = now_ms();
		long ms = -1;
		for(uint64_t end = t0 + WAIT_MS; ms < 0 && now_ms() < end; sleep_ms(10)) {
			char *now = last_connected(d2);
			if(now && (!before || strcmp(now, before) > 0)) ms = (long)(now_ms() - t0);
			free(now);
		}
		print_message("short session %d: lastConnected visible after %ld ms\n", round, ms);
		assert_true(ms >= 0 && ms < 1000);
		free(before);
	}
	assert_int_equal(version_of(d2), v0);
}

/* A live session ends within a second of the change that invalidates it. */
static long kicked_within(cl *c, uint64_t t0)
{
	for(uint64_t end = t0 + WAIT_MS; now_ms() < end; sleep_ms(5)) {
		pthread_mutex_lock(&c->lock);
		long ms = c->gone ? (long)(c->gone_at - t0) : -1;
		pthread_mutex_unlock(&c->lock);
		if(ms >= 0) return ms;
	}
	return -1;
}

static void regenerate_disconnects(void **state)
{
	const char *d1 = dev(D1);
	char old[64];
	snprintf(old, sizeof old, "%s", SECRET[D1]);
	cl *c = cl_connect(d1, NULL, old, 5);
	assert_int_equal(get(c, &c->connack), 0);
	uint64_t t0 = now_ms();
	gen_secret(S.admin.api_key, d1, "device", SECRET[D1]);
	long ms = kicked_within(c, t0);
	print_message("regenerate: disconnected after %ld ms\n", ms);
	assert_true(ms >= 0 && ms < 1000);
	cl_close(c);
	assert_int_equal(connack(d1, NULL, old, 5), 0x87);
	assert_int_equal(connack(d1, NULL, SECRET[D1], 5), 0);
	/* A device that reconnects with its new secret before the broker has read the change
	 * (it reads the feed every 200 ms) keeps that new session. */
	gen_secret(S.admin.api_key, d1, "device", SECRET[D1]);
	cl *n = cl_connect(d1, NULL, SECRET[D1], 5);
	assert_int_equal(get(n, &n->connack), 0);
	sleep_ms(700);
	assert_int_equal(get(n, &n->gone), 0);
	cl_close(n);
}

static void disable_disconnects(void **state)
{
	const char *d3 = dev(D3);
	char path[128];
	cl *c = cl_connect(d3, NULL, SECRET[D3], 4);
	assert_int_equal(get(c, &c->connack), 0);
	snprintf(path, sizeof path, "/api/v1/devices/%s/disable", d3);
	uint64_t t0 = now_ms();
	h_resp r = api("POST", path, NULL);
	check_resp(&r, 200, NULL, NULL, path);
	h_resp_free(&r);
	long ms = kicked_within(c, t0);
	print_message("disable: disconnected after %ld ms\n", ms);
	assert_true(ms >= 0 && ms < 1000);
	cl_close(c);
	assert_int_equal(connack(d3, NULL, SECRET[D3], 4), 5);
	assert_int_equal(connected_within(d3, 0) >= 0, 1);
	snprintf(path, sizeof path, "/api/v1/devices/%s/enable", d3);
	r = api("POST", path, NULL);
	check_resp(&r, 200, NULL, NULL, path);
	h_resp_free(&r);
	assert_int_equal(connack(d3, NULL, SECRET[D3], 4), 0);
}

static void revoke_and_delete_disconnect(void **state)
{
	char path[160];
	/* revoke the account user's credential */
	cl *u = cl_connect(getvar("U"), NULL, USECRET, 5);
	assert_int_equal(get(u, &u->connack), 0);
	h_resp r = api("GET", CRED_PATH "?entityType=accountUser", NULL);
	snprintf(path, sizeof path, CRED_PATH "/%s", h_str(&r, "mqttCredentials.results.0.id"));
	h_resp_free(&r);
	uint64_t t0 = now_ms();
	r = api("DELETE", path, NULL);
	check_resp(&r, 204, NULL, NULL, path);
	h_resp_free(&r);
	long ms = kicked_within(u, t0);
	print_message("revoke: disconnected after %ld ms\n", ms);
	assert_true(ms >= 0 && ms < 1000);
	cl_close(u);
	/* delete a device */
	cl *c = cl_connect(dev(DP), NULL, SECRET[DP], 4);
	assert_int_equal(get(c, &c->connack), 0);
	snprintf(path, sizeof path, "/api/v1/devices/%s", dev(DP));
	t0 = now_ms();
	r = api("DELETE", path, NULL);
	check_resp(&r, 204, NULL, NULL, path);
	h_resp_free(&r);
	ms = kicked_within(c, t0);
	print_message("delete: disconnected after %ld ms\n", ms);
	assert_true(ms >= 0 && ms < 1000);
	cl_close(c);
	assert_int_equal(connack(dev(DP), NULL, SECRET[DP], 4), 5);
}

/* POST /api/v1/broker/authorize: the same rules over HTTP, for a broker-scoped key. */
static const char *authz(const char *key, const char *clientid, const char *username, const char *topic_,
                         const char *action, long *status)
{
	static char result[16];
	json_t *b = json_pack("{s:s, s:s, s:s}", "clientid", clientid, "topic", topic_, "action", action);
	if(username) json_object_set_new(b, "username", json_string(username));
	char *body = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	h_resp r = api_as(key, "POST", "/api/v1/broker/authorize", body, NULL);
	free(body);
	*status = r.status;
	snprintf(result, sizeof result, "%s", r.status == 200 && h_str(&r, "result") ? h_str(&r, "result") : "-");
	h_resp_free(&r);
	return result;
}

static void authorize_hook(void **state)
{
	char key[128], t[256], body[200];
	long st;
	h_resp r = api("POST", "/api/v1/api-keys", "{\"name\":\"mqtt-broker\",\"scopes\":[\"broker\"]}");
	check_resp(&r, 201, NULL, NULL, "broker key");
	snprintf(key, sizeof key, "%s", h_str(&r, "apiKey.key"));
	h_resp_free(&r);
	const char *acct = S.admin.account_id, *d1 = dev(D1);
	static const struct { const char *rest, *action, *want; } CASES[] = {
		{"both", "publish", "allow"}, {"both", "subscribe", "allow"}, {"up", "publish", "allow"},
		{"up", "subscribe", "deny"}, {"down", "publish", "deny"}, {"down", "subscribe", "allow"},
		{"_log", "publish", "allow"}, {"_log", "subscribe", "deny"}, {"_set/fields", "publish", "allow"},
		{"_updates/fields", "subscribe", "allow"}, {"_updates/fields", "publish", "deny"},
		{"_rejected", "subscribe", "allow"}, {"#", "subscribe", "allow"}, {"#", "publish", "deny"},
	};
	for(size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
		topic(t, sizeof t, acct, d1, CASES[i].rest);
		const char *got = authz(key, d1, NULL, t, CASES[i].action, &st);
		if(st != 200 || strcmp(got, CASES[i].want) != 0)
			fail_msg("%s %s: %ld %s, want %s", CASES[i].action, CASES[i].rest, st, got, CASES[i].want);
	}
	snprintf(t, sizeof t, "xi/ctrl/v1/%s/cln", d1);
	assert_string_equal(authz(key, d1, d1, t, "subscribe", &st), "allow");
	assert_string_equal(authz(key, d1, "", t, "publish", &st), "deny");
	snprintf(t, sizeof t, "xi/ctrl/v1/%s/svc", d1);
	assert_string_equal(authz(key, d1, NULL, t, "publish", &st), "allow");
	assert_string_equal(authz(key, d1, NULL, "#", "subscribe", &st), "deny");
	snprintf(t, sizeof t, "xi/blue/v1/%s/#", acct);
	assert_string_equal(authz(key, d1, NULL, t, "subscribe", &st), "deny");
	topic(t, sizeof t, acct, d1, "both");
	assert_string_equal(authz(key, d1, dev(D2), t, "publish", &st), "deny");          /* username mismatch */
	assert_string_equal(authz(key, dev(D2), NULL, t, "publish", &st), "deny");        /* another device */
	assert_string_equal(authz(key, "0190a0b0-0000-7000-8000-000000000000", NULL, t, "publish", &st), "deny");
	assert_string_equal(authz(key, dev(DP), NULL, t, "publish", &st), "deny");        /* deleted */
	topic(t, sizeof t, B.account_id, dev(DB), "both");
	assert_string_equal(authz(key, dev(DB), NULL, t, "publish", &st), "deny");        /* B's template has no channels */
	topic(t, sizeof t, B.account_id, dev(DB), "_log");
	assert_string_equal(authz(key, dev(DB), NULL, t, "publish", &st), "allow");
	/* bodies and scopes */
	topic(t, sizeof t, acct, d1, "both");
	authz(S.admin.api_key, d1, NULL, t, "publish", &st);
	assert_int_equal(st, 403);
	authz("nope", d1, NULL, t, "publish", &st);
	assert_int_equal(st, 401);
	authz(key, d1, NULL, t, "read", &st);
	assert_int_equal(st, 400);
	snprintf(body, sizeof body, "{\"clientid\":\"%s\",\"topic\":\"x\"}", d1);
	r = api_as(key, "POST", "/api/v1/broker/authorize", body, NULL);
	check_resp(&r, 400, "missing_field", "action", "no action");
	h_resp_free(&r);
	r = api_as(key, "POST", "/api/v1/broker/authorize", "{\"clientid\":\"x\",\"topic\":\"x\",\"action\":\"publish\",\"extra\":1}", NULL);
	check_resp(&r, 400, "unknown_field", NULL, "unknown field");
	h_resp_free(&r);
	r = api_as(key, "POST", "/api/v1/broker/authorize", "{\"clientid\":1,\"topic\":\"x\",\"action\":\"publish\"}", NULL);
	check_resp(&r, 400, "invalid_type", NULL, "clientid type");
	h_resp_free(&r);
}

static int teardown(void **state)
{
	int st = broker_stop();
	int bad = st != 0 || h_broker_log_has(&BRK, "AddressSanitizer") || h_broker_log_has(&BRK, "runtime error");
	if(bad) fprintf(stderr, "mosquitto exit status %d; log %s\n", st, BRK.log);
	if(getenv("IMP_SHOW_BROKER_LOG")) {
		char cmd[600];
		snprintf(cmd, sizeof cmd, "grep imprint %s >&2", BRK.log);
		if(system(cmd)) {}
	}
	mosquitto_lib_cleanup();
	return group_teardown(state) || bad ? -1 : 0;
}

static int setup(void **state)
{
	mosquitto_lib_init();
	return group_setup(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(setup_entities),
		cmocka_unit_test(logins_in_memory),
		cmocka_unit_test(connect_rules),
		cmocka_unit_test(device_topics),
		cmocka_unit_test(channel_changes_reach_new_sessions),
		cmocka_unit_test(channel_changes_reach_live_sessions),
		cmocka_unit_test(per_message_read_check),
		cmocka_unit_test(account_user_topics),
		cmocka_unit_test(end_users_in_sibling_organizations),
		cmocka_unit_test(last_will_is_delivered),
		cmocka_unit_test(command_line_clients),
		cmocka_unit_test(connection_status),
		cmocka_unit_test(short_session_status),
		cmocka_unit_test(regenerate_disconnects),
		cmocka_unit_test(disable_disconnects),
		cmocka_unit_test(revoke_and_delete_disconnect),
		cmocka_unit_test(authorize_hook),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
