/* imprint's mosquitto plugin (plugin API version 5): authentication, topic ACLs and
 * connection status for the devices and users of an imprint store. See MQTT.md and
 * ARCHITECTURE.md ("Broker").
 *
 *   plugin /usr/lib/imprint/imprint_mosquitto.so
 *   plugin_opt_data /var/lib/imprint          (the data directory: imprint.db, keys.json)
 *
 * Everything runs on the broker's one thread and answers from memory or from a read-only
 * connection that never waits on a lock: a verdict is computed, never waited for.
 * Changes made through the API reach the plugin through the store's change feed, read on
 * the broker's tick; connection status goes out through a queue to a thread of its own. */
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#include "broker/plugin.h"
#include "broker/verify.h"
#include "core/crypto.h"
#include "core/keys.h"
#include "core/mem.h"
#include "core/timeutil.h"

#define EXPORT __attribute__((visibility("default")))
#define FEED_EVERY_MS 200   /* how often the change feed is read */
#define FEED_BATCH 1000     /* changes read per tick at most */

static struct {
	mosquitto_plugin_id_t *id;
	imp_db *db;             /* read-only; the broker thread's */
	imp_keys keys;
	int64_t last_seq;
	int feed_ready;         /* last_seq has been read */
	uint64_t next_feed_ms;
	unsigned long failures_logged;
} G;

/* Client ids come from the network: logged only when they are ids imprint could have made. */
static const char *loggable(const char *id) { return id && imp_id_valid(id) ? id : "(not an imprint id)"; }

/* The one place a verdict becomes a mosquitto error. */
static int mosq_err(imp_verdict v) { return v == IMP_ALLOW ? MOSQ_ERR_SUCCESS : MOSQ_ERR_AUTH; }

static imp_verdict check_certificate(struct mosquitto *client, const char *clientid, const char *username,
                                     X509 *cert, imp_auth_row *row)
{
	unsigned char *der = NULL;
	int n = i2d_X509(cert, &der);
	if(n <= 0) return IMP_DENY_CERTIFICATE;
	imp_verdict v = imp_verify_certificate(G.db, clientid, username, der, (size_t)n, imp_now_ms(), row);
	OPENSSL_free(der);
	return v;
}

/* A device's channels come from its template's, kept per template: one query less a
 * connect. */
static imp_err load_principal(const char *clientid, const imp_auth_row *row, imp_mqtt_principal *p)
{
	const imp_acl_channel *ch;
	size_t n;
	if(row->is_device && plugin__templates_get(row->account, row->template_id, &ch, &n))
		return imp_principal_device(clientid, row, ch, n, p);
	imp_err rc = imp_principal_load(G.db, clientid, row, p);
	if(!rc && row->is_device) plugin__templates_put(row->account, row->template_id, p->channels, p->nchannels);
	return rc;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *clientid = mosquitto_client_id(ed->client);
	imp_auth_row row;
	imp_verdict v;
	X509 *cert = mosquitto_client_certificate(ed->client);
	/* A password decides when one is given (a password for a certificate device is
	 * refused there); otherwise the certificate of the TLS handshake. */
	const char *from = "store";
	if(ed->password) {
		/* Most logins are answered from memory; the store decides the others. */
		uint8_t mac[IMP_HMAC_LEN];
		imp_hmac(G.keys.hmac, ed->password, strlen(ed->password), mac);
		if(plugin__logins_check(G.db, G.last_seq, clientid, ed->username, mac, &row)) {
			v = IMP_ALLOW;
			from = "memory";
		} else {
			v = imp_verify_password_mac(G.db, clientid, ed->username, mac, &row);
			if(v == IMP_ALLOW) plugin__logins_put(clientid, mac, &row);
		}
	} else if(!cert) {
		v = imp_verify_password(G.db, &G.keys, clientid, ed->username, NULL, &row);
	} else {
		v = check_certificate(ed->client, clientid, ed->username, cert, &row);
	}
	X509_free(cert);
	if(v == IMP_ALLOW) {
		imp_mqtt_principal p;
		imp_err rc = load_principal(clientid, &row, &p);
		if(!rc) rc = plugin__clients_put(ed->client, row.change_seq, &p);
		if(rc) v = IMP_DENY_STORE;
		else if(row.is_device && plugin__status_push(clientid, row.device_key, 1))
			mosquitto_log_printf(MOSQ_LOG_WARNING, "imprint: status queue full, connect of %s not recorded", clientid);
	}
	mosquitto_log_printf(v == IMP_ALLOW ? MOSQ_LOG_INFO : MOSQ_LOG_NOTICE, "imprint: %s %s %s (%s)",
	                     v == IMP_ALLOW ? "allow" : "deny", loggable(clientid), imp_verdict_name(v), from);
	return mosq_err(v);
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *clientid = mosquitto_client_id(ed->client);
	plugin_client *c = clientid ? plugin__clients_get(clientid) : NULL;
	imp_acl_action action;
	switch(ed->access) {
	case MOSQ_ACL_READ: action = IMP_ACL_READ; break;
	case MOSQ_ACL_WRITE: action = IMP_ACL_WRITE; break;
	case MOSQ_ACL_SUBSCRIBE: action = IMP_ACL_SUBSCRIBE; break;
	case MOSQ_ACL_UNSUBSCRIBE: return MOSQ_ERR_SUCCESS;
	default: return MOSQ_ERR_ACL_DENIED;
	}
	if(c && imp_acl_allowed(&c->p, ed->topic, action, ed->qos)) return MOSQ_ERR_SUCCESS;
	if(action != IMP_ACL_READ)
		mosquitto_log_printf(MOSQ_LOG_DEBUG, "imprint: deny %s %s %s", loggable(clientid),
		                     action == IMP_ACL_WRITE ? "publish" : "subscribe", c ? "topic" : "unknown_client");
	return MOSQ_ERR_ACL_DENIED;
}

/* A clean session's entry outlives its disconnect by a moment: mosquitto calls the
 * disconnect event before it publishes the client's will, whose write check needs the
 * entry. The tick drops it after DROP_AFTER_MS unless the client came back. */
#define DROP_MAX 4096
#define DROP_AFTER_MS 2000
static struct {
	char id[IMP_UUID_LEN + 1];
	uint64_t at;
} DROPS[DROP_MAX];
static size_t drop_head, drop_n;

static void drop_later(const char *clientid, uint64_t now)
{
	if(drop_n == DROP_MAX) {
		/* Full (a disconnect storm): the oldest goes now. */
		plugin_client *c = plugin__clients_get(DROPS[drop_head].id);
		if(c && !c->conn) plugin__clients_del(DROPS[drop_head].id);
		drop_head = (drop_head + 1) % DROP_MAX;
		drop_n--;
	}
	size_t i = (drop_head + drop_n++) % DROP_MAX;
	snprintf(DROPS[i].id, sizeof DROPS[i].id, "%s", clientid);
	DROPS[i].at = now + DROP_AFTER_MS;
}

static void drop_due(uint64_t now)
{
	while(drop_n && DROPS[drop_head].at <= now) {
		plugin_client *c = plugin__clients_get(DROPS[drop_head].id);
		if(c && !c->conn) plugin__clients_del(DROPS[drop_head].id);
		drop_head = (drop_head + 1) % DROP_MAX;
		drop_n--;
	}
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	const char *clientid = mosquitto_client_id(ed->client);
	if(!clientid || !imp_id_valid(clientid)) return MOSQ_ERR_SUCCESS;
	plugin_client *c = plugin__clients_get(clientid);
	/* Another connection with this id took the session over: this one's end is not the
	 * device's. */
	if(c && c->conn != ed->client) return MOSQ_ERR_SUCCESS;
	if(!c || c->p.type == IMP_PRINCIPAL_DEVICE) plugin__status_push(clientid, c ? c->p.device_key : 0, 0);
	if(!c) return MOSQ_ERR_SUCCESS;
	/* A persistent session keeps receiving (queued) messages while offline, which the
	 * per-message check must still be able to answer; a clean one goes after its will. */
	c->conn = NULL;
	if(mosquitto_client_clean_session(ed->client)) drop_later(clientid, imp_mono_us() / 1000);
	return MOSQ_ERR_SUCCESS;
}

/* A template's channels changed: every live session of its devices gets the new ones
 * (read once, for the first of them), so a channel added can be used and a channel deleted
 * can no longer be, from the next message on. The feed's changes of one tick are gathered
 * in PENDING, each template once, and applied after them: one pass over the sessions a
 * template, however many of its channels changed. When the store cannot be read (busy), or
 * a session could be neither updated nor ended, the template stays in PENDING and the next
 * tick tries again; a session whose copy cannot be made (no memory) is ended: its device
 * reconnects and reads them afresh. */
#define RECHANNEL_KICKS 4096
static char (*PENDING)[IMP_UUID_LEN + 1];
static size_t npending, pending_cap;

struct rechannel {
	const char *template_id;
	int read;
	imp_err rc;
	imp_acl_channel *ch;
	size_t n, kicks, updated, missed;
	char (*kick)[IMP_UUID_LEN + 1];
};

static void rechannel_one(plugin_client *c, void *arg)
{
	struct rechannel *t = arg;
	if(c->p.type != IMP_PRINCIPAL_DEVICE || strcmp(c->p.template_id, t->template_id) != 0) return;
	if(!t->read) {
		t->read = 1;
		t->rc = imp_principal_template_channels(G.db, c->p.account, t->template_id, &t->ch, &t->n);
		if(!t->rc) plugin__templates_put(c->p.account, t->template_id, t->ch, t->n);
	}
	if(!t->rc && !imp_principal_set_channels(&c->p, t->ch, t->n)) {
		t->updated++;
		return;
	}
	if(t->rc && t->rc != IMP_ERR_NOMEM) return;   /* the store: all of them again later */
	if(!t->kick) t->kick = mosquitto_malloc(RECHANNEL_KICKS * sizeof *t->kick);
	if(t->kick && t->kicks < RECHANNEL_KICKS) snprintf(t->kick[t->kicks++], IMP_UUID_LEN + 1, "%s", c->p.id);
	else t->missed++;
}

/* 0 when every session of the template has the new channels or was ended; -1 when the
 * template must be tried again (the store could not be read, or a session was missed). */
static int rechannel(const char *template_id)
{
	plugin__templates_forget(template_id);
	struct rechannel t = {.template_id = template_id};
	plugin__clients_each(rechannel_one, &t);
	if(t.rc && t.rc != IMP_ERR_NOMEM) return -1;   /* nothing was changed, nor listed */
	for(size_t i = 0; i < t.kicks; i++) {
		/* An offline persistent session has no connection to end: its entry goes. */
		plugin_client *c = plugin__clients_get(t.kick[i]);
		if(c && c->conn) mosquitto_kick_client_by_clientid(t.kick[i], false);
		plugin__clients_del(t.kick[i]);
	}
	if(t.updated || t.kicks)
		mosquitto_log_printf(MOSQ_LOG_INFO, "imprint: channels of template %s: %zu sessions updated, %zu ended",
		                     template_id, t.updated, t.kicks);
	mosquitto_free(t.kick);
	imp_free(t.ch);
	return t.missed ? -1 : 0;
}

static void rechannel_later(const char *template_id)
{
	for(size_t i = 0; i < npending; i++) {
		if(strcmp(PENDING[i], template_id) == 0) return;
	}
	if(npending == pending_cap) {
		size_t cap = pending_cap ? 2 * pending_cap : 16;
		void *grown = mosquitto_realloc(PENDING, cap * sizeof *PENDING);
		if(!grown) {
			/* No memory to wait: now, once. */
			if(rechannel(template_id))
				mosquitto_log_printf(MOSQ_LOG_WARNING, "imprint: channels of template %s not applied to live sessions",
				                     template_id);
			return;
		}
		PENDING = grown;
		pending_cap = cap;
	}
	snprintf(PENDING[npending++], IMP_UUID_LEN + 1, "%s", template_id);
}

static void rechannel_pending(void)
{
	size_t kept = 0;
	for(size_t i = 0; i < npending; i++) {
		if(rechannel(PENDING[i])) memmove(PENDING[kept++], PENDING[i], IMP_UUID_LEN + 1);
	}
	npending = kept;
}

static int on_change(int64_t seq, const char *entity_id, const char *what, void *arg)
{
	if(strcmp(what, "enable") == 0 || !imp_id_valid(entity_id)) return 0;
	if(strcmp(what, "channels") == 0) {
		rechannel_later(entity_id);
		return 0;
	}
	/* A session that logged in on a store that held this change already (a device that
	 * reconnected with its new secret before this tick) stays. */
	plugin_client *c = plugin__clients_get(entity_id);
	if(c && c->change_seq >= seq) return 0;
	/* The session ends (its disconnect event still finds the cache entry), then what was
	 * kept about it goes: the next connect reads the store afresh. */
	if(mosquitto_kick_client_by_clientid(entity_id, false) == MOSQ_ERR_SUCCESS)
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "imprint: disconnect %s %s", entity_id, what);
	plugin__clients_del(entity_id);
	return 0;
}

static int on_tick(int event, void *event_data, void *userdata)
{
	uint64_t now = imp_mono_us() / 1000;
	drop_due(now);
	if(now < G.next_feed_ms) return MOSQ_ERR_SUCCESS;
	G.next_feed_ms = now + FEED_EVERY_MS;
	plugin__logins_tick(G.db);
	/* A busy store (a checkpoint, a recovery) skips this tick rather than wait. */
	if(!G.feed_ready) G.feed_ready = imp_db_changes_last(G.db, &G.last_seq) == IMP_OK;
	else imp_db_changes_since(G.db, &G.last_seq, FEED_BATCH, on_change, NULL);
	rechannel_pending();
	unsigned long f = plugin__status_failures();
	if(f != G.failures_logged) {
		mosquitto_log_printf(MOSQ_LOG_WARNING, "imprint: %lu connection status writes failed", f - G.failures_logged);
		G.failures_logged = f;
	}
	return MOSQ_ERR_SUCCESS;
}

EXPORT int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++) {
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

static const struct {
	int event;
	MOSQ_FUNC_generic_callback cb;
} CALLBACKS[] = {
	{MOSQ_EVT_BASIC_AUTH, on_basic_auth},
	{MOSQ_EVT_ACL_CHECK, on_acl_check},
	{MOSQ_EVT_DISCONNECT, on_disconnect},
	{MOSQ_EVT_TICK, on_tick},
};
#define NCALLBACKS (sizeof CALLBACKS / sizeof CALLBACKS[0])

static void release(void)
{
	for(size_t i = 0; G.id && i < NCALLBACKS; i++) mosquitto_callback_unregister(G.id, CALLBACKS[i].event, CALLBACKS[i].cb, NULL);
	plugin__status_stop();
	plugin__logins_stop();
	plugin__clients_free();
	plugin__templates_free();
	mosquitto_free(PENDING);
	PENDING = NULL;
	npending = pending_cap = 0;
	drop_head = drop_n = 0;
	imp_db_close(&G.db);
	memset(&G, 0, sizeof G);
}

EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options,
                                 int option_count)
{
	const char *data = NULL;
	for(int i = 0; i < option_count; i++) {
		if(strcmp(options[i].key, "data") == 0) data = options[i].value;
	}
	if(!data || !data[0]) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "imprint: plugin_opt_data (the imprint data directory) is required");
		return MOSQ_ERR_INVAL;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/keys.json", data);
	if(imp_keys_load(path, &G.keys)) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "imprint: cannot read %s", path);
		return MOSQ_ERR_INVAL;
	}
	snprintf(path, sizeof path, "%s/imprint.db", data);
	imp_err rc = imp_db_open(path, 1, 0, &G.db);
	if(!rc) rc = plugin__status_start(path);
	if(!rc && plugin__logins_start(path))
		mosquitto_log_printf(MOSQ_LOG_WARNING, "imprint: cannot map %s-feed; every login reads the store", path);
	if(rc) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "imprint: cannot open the store %s (%s)", path,
		                     rc == IMP_ERR_NOT_FOUND ? "missing" : "older schema or unreadable; run imprint serve first");
		release();
		return MOSQ_ERR_INVAL;
	}
	G.id = identifier;
	G.feed_ready = imp_db_changes_last(G.db, &G.last_seq) == IMP_OK;
	for(size_t i = 0; i < NCALLBACKS; i++) {
		if(mosquitto_callback_register(identifier, CALLBACKS[i].event, CALLBACKS[i].cb, NULL, NULL)) {
			mosquitto_log_printf(MOSQ_LOG_ERR, "imprint: cannot register callback %d", CALLBACKS[i].event);
			release();
			return MOSQ_ERR_UNKNOWN;
		}
	}
	*userdata = NULL;
	mosquitto_log_printf(MOSQ_LOG_INFO, "imprint: plugin ready, store %s", path);
	return MOSQ_ERR_SUCCESS;
}

EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	release();
	return MOSQ_ERR_SUCCESS;
}
