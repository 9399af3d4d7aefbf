/* End-to-end: MQTT credentials (generate, regenerate, list, get, revoke), device disable
 * and enable, the delete cascade, the broker's authenticate hook with every rule of
 * MQTT.md "Connecting", HTTP Basic for devices, scopes, two accounts, the audit trail, and
 * that no secret issued here ever reaches the audit log or the server's log. One server
 * for the file; the tests run in order and share it.
 *
 * Lines marked BUG: assert the documented behaviour that the code does not give yet. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "harness.h"

#define NO_SUCH_ID "0190a0b0-0000-7000-8000-000000000000"
#define CRED_PATH "/api/v1/access/mqtt-credentials"

/* Every secret issued during the run (checked against the logs at the end). */
static char SECRETS[256][64];
static int NSECRETS;

/* Keys of each scope, made in group order by the first test. */
static char PROV[128], READK[128], BROKER[128];
static char ADMIN_JWT[2048];

/* D1's current secret and the audit actions D1 should show, in order. */
static char SECRET1[64];
static const char *D1_ACTIONS[32];
static int ND1;

static h_account B; /* a second account */

/* ---- helpers -------------------------------------------------------------------------- */

static void remember(const char *secret)
{
	assert_true(NSECRETS < (int)(sizeof SECRETS / sizeof SECRETS[0]));
	for(int i = 0; i < NSECRETS; i++) {
		if(strcmp(SECRETS[i], secret) == 0) fail_msg("secret issued twice: %s", secret);
	}
	snprintf(SECRETS[NSECRETS++], sizeof SECRETS[0], "%s", secret);
}

static void make_key(const char *name, const char *scopes, char *out, size_t cap)
{
	char body[200];
	snprintf(body, sizeof body, "{\"name\":\"%s\",\"scopes\":%s}", name, scopes);
	h_resp r = api_as(S.admin.api_key, "POST", "/api/v1/api-keys", body, NULL);
	check_resp(&r, 201, NULL, NULL, name);
	snprintf(out, cap, "%s", h_str(&r, "apiKey.key"));
	remember(out);
	h_resp_free(&r);
}

/* A secret is standard base64 (with padding) of exactly 32 bytes. */
static void assert_secret_shape(const char *s)
{
	static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	assert_non_null(s);
	if(strlen(s) != 44) fail_msg("secret of %zu chars: %s", strlen(s), s);
	for(int i = 0; i < 43; i++) {
		if(!strchr(B64, s[i]) || !s[i]) fail_msg("secret char %d not base64: %s", i, s);
	}
	assert_int_equal(s[43], '=');
	/* the last symbol carries 2 bits of data and 4 of padding: those must be zero */
	assert_non_null(strchr("AEIMQUYcgkosw048", s[42]));
}

static void assert_cred_shape(json_t *c, const char *entity, const char *type, const char *account, int with_secret)
{
	static const char *const KEYS[] = {"id", "accountId", "entityId", "entityType", "method", "created",
	                                   "createdById", "lastModified", NULL};
	assert_true(json_is_object(c));
	for(int i = 0; KEYS[i]; i++) {
		if(!json_string_value(json_object_get(c, KEYS[i]))) fail_msg("credential lacks %s", KEYS[i]);
	}
	assert_uuid7(json_string_value(json_object_get(c, "id")));
	assert_timestamp(json_string_value(json_object_get(c, "created")));
	assert_timestamp(json_string_value(json_object_get(c, "lastModified")));
	assert_string_equal(json_string_value(json_object_get(c, "entityId")), entity);
	assert_string_equal(json_string_value(json_object_get(c, "entityType")), type);
	assert_string_equal(json_string_value(json_object_get(c, "accountId")), account);
	assert_string_equal(json_string_value(json_object_get(c, "method")), "password");
	if(with_secret) assert_secret_shape(json_string_value(json_object_get(c, "secret")));
	else if(json_object_get(c, "secret")) fail_msg("a credential read back shows its secret");
}

/* POST a credential as token for entity (type NULL: default); asserts 200, remembers the
 * secret, copies secret and credential id out. */
static void gen_as(const char *token, const char *entity, const char *type, char *secret, char *cred_id)
{
	char body[300];
	if(type) snprintf(body, sizeof body, "{\"entityId\":\"%s\",\"entityType\":\"%s\"}", entity, type);
	else snprintf(body, sizeof body, "{\"entityId\":\"%s\"}", entity);
	h_resp r = api_as(token, "POST", CRED_PATH, body, NULL);
	check_resp(&r, 200, NULL, NULL, body);
	assert_int_equal(json_object_size(r.json), 1);
	json_t *c = json_object_get(r.json, "mqttCredential");
	const char *acct = token == B.api_key ? B.account_id : S.admin.account_id;
	assert_cred_shape(c, entity, type ? type : "device", acct, 1);
	remember(h_str(&r, "mqttCredential.secret"));
	if(secret) snprintf(secret, 64, "%s", h_str(&r, "mqttCredential.secret"));
	if(cred_id) snprintf(cred_id, 64, "%s", h_str(&r, "mqttCredential.id"));
	h_resp_free(&r);
}

static void gen(const char *entity, char *secret, char *cred_id) { gen_as(S.admin.api_key, entity, NULL, secret, cred_id); }

/* The broker's verdict ("allow" or "deny") for a login; NULL arguments are left out. */
static const char *authn(const char *clientid, const char *username, const char *password)
{
	static char verdict[16];
	json_t *b = json_object();
	if(clientid) json_object_set_new(b, "clientid", json_string(clientid));
	if(username) json_object_set_new(b, "username", json_string(username));
	if(password) json_object_set_new(b, "password", json_string(password));
	char *text = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	h_resp r = h_call(&S, "POST", "/api/v1/broker/authenticate", BROKER, text, NULL);
	free(text);
	check_resp(&r, 200, NULL, NULL, "authenticate");
	const char *res = h_str(&r, "result");
	const char *reason = h_str(&r, "reason");
	if(!res || (strcmp(res, "allow") != 0 && strcmp(res, "deny") != 0)) fail_msg("authenticate: %s", r.body);
	if(!reason || !reason[0]) fail_msg("authenticate without a reason: %s", r.body);
	if(strcmp(res, "allow") == 0 && strcmp(reason, "allow") != 0) fail_msg("allowed with reason %s", reason);
	assert_int_equal(json_object_size(r.json), 2);
	snprintf(verdict, sizeof verdict, "%s", res);
	h_resp_free(&r);
	return verdict;
}

#define ALLOW(c, u, p) assert_string_equal(authn(c, u, p), "allow")
#define DENY(c, u, p) assert_string_equal(authn(c, u, p), "deny")

static void b64(const char *in, char *out)
{
	static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(in), o = 0;
	for(size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned char)in[i] << 16;
		if(i + 1 < n) v |= (unsigned char)in[i + 1] << 8;
		if(i + 2 < n) v |= (unsigned char)in[i + 2];
		out[o++] = T[(v >> 18) & 63];
		out[o++] = T[(v >> 12) & 63];
		out[o++] = i + 1 < n ? T[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? T[v & 63] : '=';
	}
	out[o] = '\0';
}

/* A call with HTTP Basic user:pass (the path expanded). */
static h_resp basic(const char *user, const char *pass, const char *method, const char *path, const char *body)
{
	char raw[300], enc[420], hdr[460];
	snprintf(raw, sizeof raw, "%s:%s", user, pass);
	b64(raw, enc);
	snprintf(hdr, sizeof hdr, "Authorization: Basic %s", enc);
	return api_as(NULL, method, path, body, hdr);
}

static long status_as(const char *token, const char *method, const char *path, const char *body)
{
	h_resp r = api_as(token, method, path, body, NULL);
	long st = r.status;
	if(st >= 400) check_resp(&r, st, NULL, NULL, path); /* every error has the JSON error body */
	h_resp_free(&r);
	return st;
}

static json_t *get_device(const char *id)
{
	char path[128];
	snprintf(path, sizeof path, "/api/v1/devices/%s", id);
	h_resp r = api_as(S.admin.api_key, "GET", path, NULL, NULL);
	check_resp(&r, 200, NULL, NULL, path);
	json_t *d = json_incref(json_object_get(r.json, "device"));
	h_resp_free(&r);
	return d;
}

static const char *state_of(const char *id, char *buf)
{
	json_t *d = get_device(id);
	snprintf(buf, 32, "%s", json_string_value(json_object_get(d, "provisioningState")));
	json_decref(d);
	return buf;
}

static long version_of(const char *id)
{
	json_t *d = get_device(id);
	long v = strtol(json_string_value(json_object_get(d, "version")), NULL, 10);
	json_decref(d);
	return v;
}

static json_t *make_device(const char *tmpl, const char *serial, const char *save)
{
	char body[200];
	snprintf(body, sizeof body, "{\"deviceTemplateId\":\"{%s}\",\"serialNumber\":\"%s\"}", tmpl, serial);
	return create("/api/v1/devices", "device", body, save);
}

/* ---- tests ---------------------------------------------------------------------------- */

static void generate_and_activate(void **state)
{
	char buf[32], old_id[64], old_secret[64], cid[64];
	setvar("ACCT", S.admin.account_id);
	make_key("prov", "[\"provisioning\"]", PROV, sizeof PROV);
	make_key("ro", "[\"read\"]", READK, sizeof READK);
	make_key("broker", "[\"broker\"]", BROKER, sizeof BROKER);
	assert_int_equal(h_login(&S, &S.admin, ADMIN_JWT, sizeof ADMIN_JWT), 0);

	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"pw\"}", "PW"));
	json_decref(create("/api/v1/devices/templates", "deviceTemplate",
	                   "{\"name\":\"cert\",\"authenticationMethod\":\"certificate\"}", "CT"));
	json_decref(make_device("PW", "D-1", "D1"));
	json_decref(make_device("PW", "D-2", "D2")); /* never gets a credential */
	json_decref(make_device("CT", "C-1", "DC"));
	json_decref(make_device("PW", "D-3", "D3"));
	D1_ACTIONS[ND1++] = "create";

	assert_string_equal(state_of(getvar("D1"), buf), "defined");
	long v0 = version_of(getvar("D1"));

	/* First credential: defined -> activated, the version moves. */
	gen(getvar("D1"), old_secret, old_id);
	D1_ACTIONS[ND1++] = "generate-credential";
	assert_string_equal(state_of(getvar("D1"), buf), "activated");
	long v1 = version_of(getvar("D1"));
	assert_true(v1 > v0);
	ALLOW(getvar("D1"), getvar("D1"), old_secret);

	/* Regenerate: a new id and secret; the old secret stops at once; still activated. */
	gen_as(S.admin.api_key, getvar("D1"), "device", SECRET1, cid);
	D1_ACTIONS[ND1++] = "regenerate-credential";
	setvar("C1", cid);
	setvar("C1OLD", old_id);
	assert_string_not_equal(cid, old_id);
	assert_string_not_equal(SECRET1, old_secret);
	assert_string_equal(state_of(getvar("D1"), buf), "activated");
	DENY(getvar("D1"), getvar("D1"), old_secret);
	ALLOW(getvar("D1"), getvar("D1"), SECRET1);

	/* accountId of the caller's own account is accepted. */
	h_resp r = api("POST", CRED_PATH, "{\"accountId\":\"{ACCT}\",\"entityId\":\"{D3}\",\"entityType\":\"device\"}");
	check_resp(&r, 200, NULL, NULL, "with own accountId");
	assert_cred_shape(json_object_get(r.json, "mqttCredential"), getvar("D3"), "device", S.admin.account_id, 1);
	remember(h_str(&r, "mqttCredential.secret"));
	setvar("C3", h_str(&r, "mqttCredential.id"));
	setvar("S3", h_str(&r, "mqttCredential.secret"));
	h_resp_free(&r);

	/* Read back: metadata only, the live credential only. */
	r = api("GET", CRED_PATH "/{C1}", NULL);
	check_resp(&r, 200, NULL, NULL, "get C1");
	assert_int_equal(json_object_size(r.json), 1);
	assert_cred_shape(json_object_get(r.json, "mqttCredential"), getvar("D1"), "device", S.admin.account_id, 0);
	check_at(&r, "mqttCredential.id", "\"{C1}\"", "get C1");
	assert_null(strstr(r.body, SECRET1));
	h_resp_free(&r);

	r = api("GET", CRED_PATH "?entityId={D1}", NULL);
	check_resp(&r, 200, NULL, NULL, "list D1");
	check_at(&r, "mqttCredentials.meta.count", "1", "list D1");
	assert_int_equal(json_array_size(h_at(r.json, "mqttCredentials.results")), 1);
	check_at(&r, "mqttCredentials.results.0.id", "\"{C1}\"", "list D1");
	assert_cred_shape(h_at(r.json, "mqttCredentials.results.0"), getvar("D1"), "device", S.admin.account_id, 0);
	assert_null(strstr(r.body, "\"secret\""));
	h_resp_free(&r);

	r = api("GET", CRED_PATH, NULL);
	check_resp(&r, 200, NULL, NULL, "list all");
	check_at(&r, "mqttCredentials.meta.count", "2", "list all");
	check_at(&r, "mqttCredentials.meta.page", "1", "list all");
	check_at(&r, "mqttCredentials.meta.sortBy", "\"created\"", "list all");
	check_at(&r, "mqttCredentials.results.0.id", "\"{C1}\"", "list all"); /* created ascending */
	check_at(&r, "mqttCredentials.results.1.id", "\"{C3}\"", "list all");
	assert_null(strstr(r.body, "\"secret\""));
	h_resp_free(&r);
	const tcase lists[] = {
		V("GET", CRED_PATH "?entityId={D2}", NULL, 200, "mqttCredentials.meta.count", "0"),
		V("GET", CRED_PATH "?entityType=device", NULL, 200, "mqttCredentials.meta.count", "2"),
		V("GET", CRED_PATH "?entityType=accountUser", NULL, 200, "mqttCredentials.meta.count", "0"),
		V("GET", CRED_PATH "?entityId={D3}&entityType=device", NULL, 200, "mqttCredentials.results.0.id", "\"{C3}\""),
		V("GET", CRED_PATH "?entityId={D3}&entityType=accountUser", NULL, 200, "mqttCredentials.meta.count", "0"),
		V("GET", CRED_PATH "?sortOrder=desc", NULL, 200, "mqttCredentials.results.0.id", "\"{C3}\""),
		V("GET", CRED_PATH "?pageSize=1&page=2", NULL, 200, "mqttCredentials.results.0.id", "\"{C3}\""),
		V("GET", CRED_PATH "?results=false", NULL, 200, "mqttCredentials.results", NULL),
		E("GET", CRED_PATH "?entityType=robot", NULL, 400, "invalid_parameter", "entityType"),
		E("GET", CRED_PATH "?colour=red", NULL, 400, "unknown_parameter", "colour"),
		E("GET", CRED_PATH "?pageSize=1001", NULL, 400, "invalid_parameter", "pageSize"),
		E("GET", CRED_PATH "?sortBy=name", NULL, 400, "invalid_parameter", "sortBy"),
		E("GET", CRED_PATH "?accountId=" NO_SUCH_ID, NULL, 403, "wrong_account", "accountId"),
		E("GET", CRED_PATH "/{C1}?accountId=" NO_SUCH_ID, NULL, 403, "wrong_account", "accountId"),
		V("GET", CRED_PATH "/{C1}?accountId={ACCT}", NULL, 200, "mqttCredential.id", "\"{C1}\""),
	};
	run_cases(lists, sizeof lists / sizeof lists[0]);
}

static void create_rejects(void **state)
{
	const tcase cases[] = {
		/* malformed bodies and wrong types */
		E("POST", CRED_PATH, "", 400, "malformed_json", NULL),
		E("POST", CRED_PATH, "{", 400, "malformed_json", NULL),
		E("POST", CRED_PATH, "[]", 400, "malformed_json", NULL),
		E("POST", CRED_PATH, "null", 400, "malformed_json", NULL),
		E("POST", CRED_PATH, "\"{D1}\"", 400, "malformed_json", NULL),
		E("POST", CRED_PATH, "{\"entityId\":5}", 400, "invalid_type", "entityId"),
		E("POST", CRED_PATH, "{\"entityId\":[\"{D1}\"]}", 400, "invalid_type", "entityId"),
		E("POST", CRED_PATH, "{\"entityId\":\"{D1}\",\"entityType\":1}", 400, "invalid_type", "entityType"),
		E("POST", CRED_PATH, "{\"entityId\":\"{D1}\",\"accountId\":5}", 400, "invalid_type", "accountId"),
		E("POST", CRED_PATH, "{\"entityId\":\"{D1}\",\"certificate\":5}", 400, "invalid_type", "certificate"),
		E("POST", CRED_PATH, "{\"entityId\":\"{D1}\",\"csr\":true}", 400, "invalid_type", "csr"),
		E("POST", CRED_PATH, "{\"entityId\":\"{D1}\",\"secret\":\"mine\"}", 400, "unknown_field", NULL),
		E("POST", CRED_PATH, "{\"entityId\":\"{D1}\",\"colour\":\"red\"}", 400, "unknown_field", NULL),
		E("POST", CRED_PATH, "{\"entityId\":\"{D1}\",\"entityId\":\"{D2}\"}", 400, "malformed_json", NULL),
		/* another account in the body */
		E("POST", CRED_PATH, "{\"entityId\":\"{D1}\",\"accountId\":\"" NO_SUCH_ID "\"}", 403, "wrong_account", "accountId"),
		/* unknown and malformed ids: 404, as any unknown id */
		E("POST", CRED_PATH, "{\"entityId\":\"" NO_SUCH_ID "\"}", 404, "not_found", "entityId"),
		E("POST", CRED_PATH, "{\"entityId\":\"abc\"}", 404, "not_found", "entityId"),
		E("POST", CRED_PATH, "{\"entityId\":\"\"}", 404, "not_found", "entityId"),
		E("POST", CRED_PATH, "{\"entityId\":\"{D1}x\"}", 404, "not_found", "entityId"),
		E("POST", CRED_PATH, "{\"entityId\":\"{c*5000}\"}", 404, "not_found", "entityId"),
		E("POST", CRED_PATH, "{\"entityId\":\"{PW}\"}", 404, "not_found", "entityId"),
		E("POST", CRED_PATH, "{\"entityId\":\"{C1}\"}", 404, "not_found", "entityId"),
		E("POST", CRED_PATH, "{\"entityId\":\"{D1}\",\"entityType\":\"accountUser\"}", 404, "not_found", "entityId"),
		E("POST", CRED_PATH, "{\"entityId\":\"" NO_SUCH_ID "\",\"entityType\":\"accountUser\"}", 404, "not_found", "entityId"),
		/* no end users exist yet */
		E("POST", CRED_PATH, "{\"entityId\":\"" NO_SUCH_ID "\",\"entityType\":\"endUser\"}", 404, "not_found", "entityId"),
		E("POST", CRED_PATH, "{\"entityId\":\"{D1}\",\"entityType\":\"endUser\"}", 404, "not_found", "entityId"),
		/* certificates: not for a password template; required by a certificate template */
		K("POST", CRED_PATH, "{\"entityId\":\"{D1}\",\"certificate\":\"-----BEGIN CERTIFICATE-----\"}", 422),
		K("POST", CRED_PATH, "{\"entityId\":\"{D1}\",\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\"}", 422),
		E("POST", CRED_PATH, "{\"entityId\":\"{DC}\"}", 422, "certificate_required", NULL),
		E("POST", CRED_PATH, "{\"entityId\":\"{DC}\",\"entityType\":\"device\"}", 422, "certificate_required", NULL),
		K("POST", CRED_PATH, "{\"entityId\":\"{DC}\",\"certificate\":\"-----BEGIN CERTIFICATE-----\"}", 422),
		K("POST", CRED_PATH, "{\"entityId\":\"{DC}\",\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\"}", 422),
		/* reads and revocations of unknown ids */
		E("GET", CRED_PATH "/abc", NULL, 404, "not_found", NULL),
		E("DELETE", CRED_PATH "/" NO_SUCH_ID, NULL, 404, "not_found", NULL),
		E("DELETE", CRED_PATH "/abc", NULL, 404, "not_found", NULL),
		E("DELETE", CRED_PATH "/{D1}", NULL, 404, "not_found", NULL),
		E("PUT", CRED_PATH "/{C1}", "{}", 405, "method_not_allowed", NULL),
		E("PATCH", CRED_PATH, "{}", 405, "method_not_allowed", NULL),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);

	/* None of the refused calls touched the devices or made a credential. */
	char buf[32];
	assert_string_equal(state_of(getvar("DC"), buf), "defined");
	assert_string_equal(state_of(getvar("D2"), buf), "defined");
	h_resp r = api("GET", CRED_PATH, NULL);
	check_at(&r, "mqttCredentials.meta.count", "2", "after the refusals");
	h_resp_free(&r);
	ALLOW(getvar("D1"), NULL, SECRET1);
}

/* The rule-breaking bodies the conventions give 422 (as POST /devices without a
 * deviceTemplateId: 422 missing_field; a template with authenticationMethod "token": 422
 * invalid_field).
 * BUG: the credential handler answers 400 for both (credentials.c, imp_h_cred_create: the
 * missing entityId and the entityType outside the list are api_fail(IMP_ERR_BAD_REQUEST)). */
static void rule_errors_are_422(void **state)
{
	const tcase rules[] = {
		E("POST", CRED_PATH, "{}", 422, "missing_field", "entityId"),
		E("POST", CRED_PATH, "{\"entityType\":\"device\"}", 422, "missing_field", "entityId"),
		E("POST", CRED_PATH, "{\"entityId\":\"{D1}\",\"entityType\":\"robot\"}", 422, "invalid_field", "entityType"),
		E("POST", CRED_PATH, "{\"entityId\":\"{D1}\",\"entityType\":\"Device\"}", 422, "invalid_field", "entityType"),
	};
	run_cases(rules, sizeof rules / sizeof rules[0]);
}

static void authenticate_rules(void **state)
{
	char d1[64], d2[64], dc[64], upper[64], secret_nl[80], secret_short[64];
	snprintf(d1, sizeof d1, "%s", getvar("D1"));
	snprintf(d2, sizeof d2, "%s", getvar("D2"));
	snprintf(dc, sizeof dc, "%s", getvar("DC"));
	for(size_t i = 0; i <= strlen(d1); i++) upper[i] = (char)(d1[i] >= 'a' && d1[i] <= 'f' ? d1[i] - 32 : d1[i]);
	snprintf(secret_nl, sizeof secret_nl, "%s\n", SECRET1);
	snprintf(secret_short, sizeof secret_short, "%.43s", SECRET1);

	/* Allowed: client id is the device id; username absent, empty or the client id. */
	ALLOW(d1, NULL, SECRET1);
	ALLOW(d1, "", SECRET1);
	ALLOW(d1, d1, SECRET1);

	/* Denied. */
	DENY(d1, "someone", SECRET1);        /* username neither empty nor the client id */
	DENY(d1, d2, SECRET1);               /* another device's id as username */
	DENY(d1, upper, SECRET1);            /* the id in another case */
	DENY(d1, d1, "wrong");               /* wrong secret */
	DENY(d1, d1, secret_short);          /* a prefix */
	DENY(d1, d1, secret_nl);             /* trailing byte */
	DENY(d1, d1, "");                    /* empty */
	DENY(d1, d1, NULL);                  /* none */
	DENY(d1, d1, getvar("S3"));          /* another device's valid secret */
	DENY(getvar("D3"), NULL, SECRET1);   /* valid secret, another client id */
	DENY(d2, d2, SECRET1);               /* a device without credential */
	DENY(d2, NULL, "");
	DENY(NO_SUCH_ID, NULL, SECRET1);     /* unknown id */
	DENY("abc", NULL, SECRET1);          /* malformed ids */
	DENY("", NULL, SECRET1);
	DENY(upper, NULL, SECRET1);
	DENY(getvar("C1"), NULL, SECRET1);   /* the credential's id is not a client id */
	DENY(getvar("PW"), NULL, SECRET1);   /* nor is a template's */
	DENY(S.admin.account_id, NULL, SECRET1);
	DENY(dc, NULL, SECRET1);             /* a password for a certificate-template device */
	DENY(dc, dc, "anything");
	DENY(dc, NULL, NULL);
	/* and still allowed after all that */
	ALLOW(d1, NULL, SECRET1);
}

static void authenticate_bodies_and_scopes(void **state)
{
	const tcase cases[] = {
		E("POST", "/api/v1/broker/authenticate", "{}", 400, "missing_field", "clientid"),
		E("POST", "/api/v1/broker/authenticate", "{\"username\":\"{D1}\",\"password\":\"x\"}", 400, "missing_field", "clientid"),
		E("POST", "/api/v1/broker/authenticate", "{\"clientid\":null,\"password\":\"x\"}", 400, NULL, NULL),
		E("POST", "/api/v1/broker/authenticate", "{\"clientid\":\"{D1}\",\"password\":\"x\",\"colour\":1}", 400, "unknown_field", NULL),
		E("POST", "/api/v1/broker/authenticate", "{\"clientid\":\"{D1}\",\"protocol\":\"mqtt\"}", 400, "unknown_field", NULL),
		E("POST", "/api/v1/broker/authenticate", "{\"clientid\":5,\"password\":\"x\"}", 400, NULL, NULL),
		E("POST", "/api/v1/broker/authenticate", "{\"clientid\":\"{D1}\",\"username\":7}", 400, NULL, NULL),
		E("POST", "/api/v1/broker/authenticate", "{\"clientid\":\"{D1}\",\"password\":[\"x\"]}", 400, NULL, NULL),
		E("POST", "/api/v1/broker/authenticate", "{\"clientid\":\"{D1}\",\"password\":{\"a\":1}}", 400, NULL, NULL),
		E("POST", "/api/v1/broker/authenticate", "{\"clientid\":\"{D1}\",\"password\":true}", 400, NULL, NULL),
		E("POST", "/api/v1/broker/authenticate", "{\"clientid\":{},\"password\":\"x\"}", 400, NULL, NULL),
		E("POST", "/api/v1/broker/authenticate", "", 400, "malformed_json", NULL),
		E("POST", "/api/v1/broker/authenticate", "[]", 400, "malformed_json", NULL),
		E("POST", "/api/v1/broker/authenticate", "{\"clientid\":", 400, "malformed_json", NULL),
		E("GET", "/api/v1/broker/authenticate", NULL, 405, "method_not_allowed", NULL),
	};
	TOKEN = BROKER;
	run_cases(cases, sizeof cases / sizeof cases[0]);
	TOKEN = NULL;

	/* Only a broker-scoped key may call it. */
	char body[400];
	snprintf(body, sizeof body, "{\"clientid\":\"%s\",\"password\":\"%s\"}", getvar("D1"), SECRET1);
	assert_int_equal(status_as(BROKER, "POST", "/api/v1/broker/authenticate", body), 200);
	assert_int_equal(status_as(S.admin.api_key, "POST", "/api/v1/broker/authenticate", body), 403);
	assert_int_equal(status_as(ADMIN_JWT, "POST", "/api/v1/broker/authenticate", body), 403);
	assert_int_equal(status_as(PROV, "POST", "/api/v1/broker/authenticate", body), 403);
	assert_int_equal(status_as(READK, "POST", "/api/v1/broker/authenticate", body), 403);
	assert_int_equal(status_as(NULL, "POST", "/api/v1/broker/authenticate", body), 401);
	assert_int_equal(status_as("imp_notakey", "POST", "/api/v1/broker/authenticate", body), 401);
	h_resp r = basic(getvar("D1"), SECRET1, "POST", "/api/v1/broker/authenticate", body);
	check_resp(&r, 403, NULL, NULL, "authenticate with a device's Basic");
	h_resp_free(&r);
	/* and a broker key can do nothing else */
	assert_int_equal(status_as(BROKER, "GET", "/api/v1/devices", NULL), 403);
	assert_int_equal(status_as(BROKER, "GET", "/api/v1/devices/{D1}", NULL), 403);
	assert_int_equal(status_as(BROKER, "POST", CRED_PATH, "{\"entityId\":\"{D2}\"}"), 403);
	assert_int_equal(status_as(BROKER, "GET", CRED_PATH, NULL), 403);
	assert_int_equal(status_as(BROKER, "GET", CRED_PATH "/{C1}", NULL), 403);
	assert_int_equal(status_as(BROKER, "DELETE", CRED_PATH "/{C1}", NULL), 403);
	assert_int_equal(status_as(BROKER, "POST", "/api/v1/devices/{D1}/disable", NULL), 403);
	ALLOW(getvar("D1"), NULL, SECRET1);
}

static void basic_auth(void **state)
{
	/* Its own device, with its own credentials. */
	h_resp r = basic(getvar("D1"), SECRET1, "GET", "/api/v1/devices/{D1}", NULL);
	check_resp(&r, 200, NULL, NULL, "Basic, own device");
	check_at(&r, "device.id", "\"{D1}\"", "Basic, own device");
	check_at(&r, "device.serialNumber", "\"D-1\"", "Basic, own device");
	check_at(&r, "device.provisioningState", "\"activated\"", "Basic, own device");
	assert_null(strstr(r.body, SECRET1));
	h_resp_free(&r);
	r = basic(getvar("D1"), SECRET1, "GET", "/api/v1/devices/{D1}/", NULL);
	check_resp(&r, 200, NULL, NULL, "Basic, own device, trailing slash");
	h_resp_free(&r);

	struct {
		const char *user, *pass, *method, *path, *body;
		long status;
	} cases[] = {
		/* another device's id with its own valid credentials */
		{"{D1}", "{S1}", "GET", "/api/v1/devices/{D3}", NULL, 403},
		{"{D1}", "{S1}", "GET", "/api/v1/devices/{D2}", NULL, 403},
		{"{D1}", "{S1}", "GET", "/api/v1/devices/" NO_SUCH_ID, NULL, 403},
		/* any other route */
		{"{D1}", "{S1}", "GET", "/api/v1/devices", NULL, 403},
		{"{D1}", "{S1}", "GET", "/api/v1/devices?serialNumber=D-1", NULL, 403},
		{"{D1}", "{S1}", "PUT", "/api/v1/devices/{D1}", "{\"name\":\"mine\"}", 403},
		{"{D1}", "{S1}", "DELETE", "/api/v1/devices/{D1}", NULL, 403},
		{"{D1}", "{S1}", "POST", "/api/v1/devices/{D1}/disable", NULL, 403},
		{"{D1}", "{S1}", "POST", "/api/v1/devices/{D1}/enable", NULL, 403},
		{"{D1}", "{S1}", "POST", CRED_PATH, "{\"entityId\":\"{D1}\"}", 403},
		{"{D1}", "{S1}", "GET", CRED_PATH, NULL, 403},
		{"{D1}", "{S1}", "GET", CRED_PATH "/{C1}", NULL, 403},
		{"{D1}", "{S1}", "DELETE", CRED_PATH "/{C1}", NULL, 403},
		{"{D1}", "{S1}", "GET", "/api/v1/devices/templates/{PW}", NULL, 403},
		{"{D1}", "{S1}", "GET", "/api/v1/audit", NULL, 403},
		{"{D1}", "{S1}", "POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{PW}\"}", 403},
		{"{D1}", "{S1}", "GET", "/api/v1/api-keys", NULL, 403},
		/* wrong or absent credentials */
		{"{D1}", "wrong", "GET", "/api/v1/devices/{D1}", NULL, 401},
		{"{D1}", "", "GET", "/api/v1/devices/{D1}", NULL, 401},
		{"{D1}", "{S3}", "GET", "/api/v1/devices/{D1}", NULL, 401},
		{"{D3}", "{S1}", "GET", "/api/v1/devices/{D3}", NULL, 401},
		{"{D2}", "", "GET", "/api/v1/devices/{D2}", NULL, 401},
		{"{D2}", "{S1}", "GET", "/api/v1/devices/{D2}", NULL, 401},
		{"{DC}", "{S1}", "GET", "/api/v1/devices/{DC}", NULL, 401},
		{NO_SUCH_ID, "{S1}", "GET", "/api/v1/devices/" NO_SUCH_ID, NULL, 401},
		{"abc", "{S1}", "GET", "/api/v1/devices/abc", NULL, 401},
		{"{S1}", "{D1}", "GET", "/api/v1/devices/{D1}", NULL, 401},
	};
	setvar("S1", SECRET1);
	for(size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *u = expand(cases[i].user), *p = expand(cases[i].pass), what[200];
		r = basic(u, p, cases[i].method, cases[i].path, cases[i].body);
		snprintf(what, sizeof what, "Basic case %zu (%s %s)", i, cases[i].method, cases[i].path);
		check_resp(&r, cases[i].status, NULL, NULL, what);
		assert_null(strstr(r.body, SECRET1));
		h_resp_free(&r);
		free(u);
		free(p);
	}
	/* Malformed Basic headers. */
	const char *bad[] = {"Authorization: Basic", "Authorization: Basic !!!!", "Authorization: Basic Zm9v",
	                     "Authorization: Basic OmZvbw==", "Authorization: Basic {x*4000}"};
	for(size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *h = expand(bad[i]);
		r = api_as(NULL, "GET", "/api/v1/devices/{D1}", NULL, h);
		check_resp(&r, 401, NULL, NULL, bad[i]);
		h_resp_free(&r);
		free(h);
	}
	/* Basic with the user id and password of an account's admin is no login. */
	r = basic(S.admin.email, S.admin.password, "GET", "/api/v1/devices/{D1}", NULL);
	check_resp(&r, 401, NULL, NULL, "Basic with a user's email and password");
	h_resp_free(&r);
	/* The device's PUT was refused: nothing changed. */
	json_t *d = get_device(getvar("D1"));
	assert_true(json_is_null(json_object_get(d, "name")));
	json_decref(d);
}

static void disable_enable(void **state)
{
	long v0 = version_of(getvar("D1"));
	h_resp r = api("POST", "/api/v1/devices/{D1}/disable", NULL);
	check_resp(&r, 200, NULL, NULL, "disable");
	assert_int_equal(json_object_size(r.json), 1);
	check_at(&r, "device.id", "\"{D1}\"", "disable");
	check_at(&r, "device.disabled", "true", "disable");
	check_at(&r, "device.provisioningState", "\"activated\"", "disable");
	long v1 = strtol(h_str(&r, "device.version"), NULL, 10);
	assert_true(v1 > v0);
	assert_string_equal(r.etag, h_str(&r, "device.version"));
	h_resp_free(&r);
	D1_ACTIONS[ND1++] = "disable";
	json_t *d = get_device(getvar("D1"));
	assert_true(json_is_true(json_object_get(d, "disabled")));
	assert_int_equal(strtol(json_string_value(json_object_get(d, "version")), NULL, 10), v1);
	json_decref(d);

	/* Disabled: the right secret is refused, by the broker and by Basic. */
	DENY(getvar("D1"), NULL, SECRET1);
	DENY(getvar("D1"), getvar("D1"), SECRET1);
	r = basic(getvar("D1"), SECRET1, "GET", "/api/v1/devices/{D1}", NULL);
	check_resp(&r, 401, NULL, NULL, "Basic while disabled");
	h_resp_free(&r);
	/* listed as disabled */
	r = api("GET", "/api/v1/devices?disabled=true", NULL);
	check_resp(&r, 200, NULL, NULL, "list disabled");
	check_at(&r, "devices.meta.count", "1", "list disabled");
	check_at(&r, "devices.results.0.id", "\"{D1}\"", "list disabled");
	h_resp_free(&r);
	/* Regenerating does not enable it: the new secret is refused too. */
	char s2[64], old1[64];
	gen(getvar("D1"), s2, NULL);
	D1_ACTIONS[ND1++] = "regenerate-credential";
	DENY(getvar("D1"), NULL, s2);
	DENY(getvar("D1"), NULL, SECRET1);
	snprintf(old1, sizeof old1, "%s", SECRET1);
	snprintf(SECRET1, sizeof SECRET1, "%s", s2);
	setvar("S1", SECRET1);

	/* Only admin may; unknown and malformed ids are 404. */
	assert_int_equal(status_as(PROV, "POST", "/api/v1/devices/{D1}/enable", NULL), 403);
	assert_int_equal(status_as(READK, "POST", "/api/v1/devices/{D1}/enable", NULL), 403);
	assert_int_equal(status_as(NULL, "POST", "/api/v1/devices/{D1}/enable", NULL), 401);
	assert_int_equal(status_as(PROV, "POST", "/api/v1/devices/{D2}/disable", NULL), 403);
	const tcase cases[] = {
		E("POST", "/api/v1/devices/" NO_SUCH_ID "/disable", NULL, 404, "not_found", NULL),
		E("POST", "/api/v1/devices/" NO_SUCH_ID "/enable", NULL, 404, "not_found", NULL),
		E("POST", "/api/v1/devices/abc/disable", NULL, 404, "not_found", NULL),
		E("POST", "/api/v1/devices/{PW}/disable", NULL, 404, "not_found", NULL),
		E("POST", "/api/v1/devices/{C1}/enable", NULL, 404, "not_found", NULL),
		E("GET", "/api/v1/devices/{D1}/disable", NULL, 405, "method_not_allowed", NULL),
		E("POST", "/api/v1/devices/{D1}/enable?accountId=" NO_SUCH_ID, NULL, 403, "wrong_account", "accountId"),
		E("POST", "/api/v1/devices/{D1}/enable?colour=red", NULL, 400, "unknown_parameter", "colour"),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);
	DENY(getvar("D1"), NULL, SECRET1); /* the refused enables did nothing */

	/* Enable: allowed again; the version moves. */
	long v2 = version_of(getvar("D1"));
	r = api("POST", "/api/v1/devices/{D1}/enable", NULL);
	check_resp(&r, 200, NULL, NULL, "enable");
	check_at(&r, "device.disabled", "false", "enable");
	check_at(&r, "device.provisioningState", "\"activated\"", "enable");
	assert_true(strtol(h_str(&r, "device.version"), NULL, 10) > v2);
	h_resp_free(&r);
	D1_ACTIONS[ND1++] = "enable";
	ALLOW(getvar("D1"), NULL, SECRET1);
	r = basic(getvar("D1"), SECRET1, "GET", "/api/v1/devices/{D1}", NULL);
	check_resp(&r, 200, NULL, NULL, "Basic after enable");
	check_at(&r, "device.disabled", "false", "Basic after enable");
	h_resp_free(&r);
	/* the secret replaced while disabled stays refused */
	r = basic(getvar("D1"), old1, "GET", "/api/v1/devices/{D1}", NULL);
	check_resp(&r, 401, NULL, NULL, "Basic with a replaced secret");
	h_resp_free(&r);
	DENY(getvar("D1"), NULL, old1);
	/* Disabling another device leaves this one alone. */
	r = api("POST", "/api/v1/devices/{D3}/disable", NULL);
	check_resp(&r, 200, NULL, NULL, "disable D3");
	h_resp_free(&r);
	DENY(getvar("D3"), NULL, getvar("S3"));
	ALLOW(getvar("D1"), NULL, SECRET1);
	r = api("POST", "/api/v1/devices/{D3}/enable", NULL);
	check_resp(&r, 200, NULL, NULL, "enable D3");
	h_resp_free(&r);
	ALLOW(getvar("D3"), NULL, getvar("S3"));
	/* A device without credential can be disabled and enabled too. */
	r = api("POST", "/api/v1/devices/{D2}/disable", NULL);
	check_resp(&r, 200, NULL, NULL, "disable D2");
	check_at(&r, "device.provisioningState", "\"defined\"", "disable D2");
	h_resp_free(&r);
	r = api("POST", "/api/v1/devices/{D2}/disable", NULL);
	check_resp(&r, 200, NULL, NULL, "disable D2 again");
	check_at(&r, "device.disabled", "true", "disable D2 again");
	h_resp_free(&r);
	r = api("POST", "/api/v1/devices/{D2}/enable", NULL);
	check_resp(&r, 200, NULL, NULL, "enable D2");
	h_resp_free(&r);
}

static void revoke_and_delete_cascade(void **state)
{
	char buf[32];
	/* Revocation needs admin. */
	assert_int_equal(status_as(PROV, "DELETE", CRED_PATH "/{C3}", NULL), 403);
	assert_int_equal(status_as(READK, "DELETE", CRED_PATH "/{C3}", NULL), 403);
	assert_int_equal(status_as(NULL, "DELETE", CRED_PATH "/{C3}", NULL), 401);
	ALLOW(getvar("D3"), NULL, getvar("S3"));

	/* Revoke D1's credential: 204, denied from then on, the device stays activated. */
	char cid[64];
	h_resp r = api("GET", CRED_PATH "?entityId={D1}", NULL);
	snprintf(cid, sizeof cid, "%s", h_str(&r, "mqttCredentials.results.0.id"));
	h_resp_free(&r);
	setvar("C1", cid);
	r = api("DELETE", CRED_PATH "/{C1}", NULL);
	check_resp(&r, 204, NULL, NULL, "revoke");
	h_resp_free(&r);
	D1_ACTIONS[ND1++] = "revoke-credential";
	DENY(getvar("D1"), NULL, SECRET1);
	r = basic(getvar("D1"), SECRET1, "GET", "/api/v1/devices/{D1}", NULL);
	check_resp(&r, 401, NULL, NULL, "Basic after revoke");
	h_resp_free(&r);
	assert_string_equal(state_of(getvar("D1"), buf), "activated");
	const tcase after[] = {
		E("DELETE", CRED_PATH "/{C1}", NULL, 404, "not_found", NULL),
		V("GET", CRED_PATH "?entityId={D1}", NULL, 200, "mqttCredentials.meta.count", "0"),
		V("GET", CRED_PATH "?entityId={D3}", NULL, 200, "mqttCredentials.meta.count", "1"),
	};
	run_cases(after, sizeof after / sizeof after[0]);
	ALLOW(getvar("D3"), NULL, getvar("S3")); /* others untouched */

	setvar("CREV", getvar("C1"));
	/* A new credential after revocation works; the device is still activated, not redefined. */
	gen(getvar("D1"), SECRET1, cid);
	D1_ACTIONS[ND1++] = NULL; /* generate or regenerate: either word */
	setvar("C1", cid);
	setvar("S1", SECRET1);
	ALLOW(getvar("D1"), NULL, SECRET1);
	assert_string_equal(state_of(getvar("D1"), buf), "activated");

	/* Deleting a device deletes its credential. */
	json_decref(make_device("PW", "D-4", "D4"));
	char s4[64], c4[64];
	gen(getvar("D4"), s4, c4);
	setvar("C4", c4);
	ALLOW(getvar("D4"), NULL, s4);
	r = api("DELETE", "/api/v1/devices/{D4}", NULL);
	check_resp(&r, 204, NULL, NULL, "delete D4");
	h_resp_free(&r);
	DENY(getvar("D4"), NULL, s4);
	DENY(getvar("D4"), getvar("D4"), s4);
	const tcase gone[] = {
		E("DELETE", CRED_PATH "/{C4}", NULL, 404, "not_found", NULL),
		V("GET", CRED_PATH "?entityId={D4}", NULL, 200, "mqttCredentials.meta.count", "0"),
		E("POST", CRED_PATH, "{\"entityId\":\"{D4}\"}", 404, "not_found", "entityId"),
		E("POST", "/api/v1/devices/{D4}/enable", NULL, 404, "not_found", NULL),
	};
	run_cases(gone, sizeof gone / sizeof gone[0]);
	r = basic(getvar("D4"), s4, "GET", "/api/v1/devices/{D4}", NULL);
	check_resp(&r, 401, NULL, NULL, "Basic of a deleted device");
	h_resp_free(&r);
	ALLOW(getvar("D1"), NULL, SECRET1);
	ALLOW(getvar("D3"), NULL, getvar("S3"));
}

static void account_users(void **state)
{
	h_resp r = api("POST", "/api/v1/account-users",
	               "{\"emailAddress\":\"mqtt-user@example.com\",\"password\":\"a-long-password\",\"name\":\"Ops\"}");
	check_resp(&r, 201, NULL, NULL, "account user");
	setvar("U", h_str(&r, "accountUser.id"));
	h_resp_free(&r);
	char u[64], s[64], s2[64], cid[64];
	snprintf(u, sizeof u, "%s", getvar("U"));

	/* Needs the admin scope (key or logged-in user). */
	h_resp p = api_as(PROV, "POST", CRED_PATH, "{\"entityId\":\"{U}\",\"entityType\":\"accountUser\"}", NULL);
	check_resp(&p, 403, NULL, NULL, "accountUser credential with a provisioning key");
	h_resp_free(&p);
	assert_int_equal(status_as(READK, "POST", CRED_PATH, "{\"entityId\":\"{U}\",\"entityType\":\"accountUser\"}"), 403);
	DENY(u, NULL, "");

	gen_as(S.admin.api_key, u, "accountUser", s, cid);
	setvar("CU", cid);
	ALLOW(u, NULL, s);
	ALLOW(u, u, s);
	ALLOW(u, "", s);
	DENY(u, "other", s);
	DENY(u, NULL, "wrong");
	DENY(u, NULL, SECRET1);
	DENY(getvar("D1"), NULL, s); /* a user's secret is not a device's */
	/* a user's credentials are no Basic login for any device route */
	r = basic(u, s, "GET", "/api/v1/devices/{U}", NULL);
	check_resp(&r, 401, NULL, NULL, "Basic with a user's credential");
	h_resp_free(&r);
	r = basic(u, s, "GET", "/api/v1/devices/{D1}", NULL);
	assert_true(r.status == 401 || r.status == 403);
	h_resp_free(&r);

	r = api("GET", CRED_PATH "?entityType=accountUser", NULL);
	check_resp(&r, 200, NULL, NULL, "list user credentials");
	check_at(&r, "mqttCredentials.meta.count", "1", "list user credentials");
	check_at(&r, "mqttCredentials.results.0.entityId", "\"{U}\"", "list user credentials");
	check_at(&r, "mqttCredentials.results.0.entityType", "\"accountUser\"", "list user credentials");
	assert_null(strstr(r.body, "\"secret\""));
	h_resp_free(&r);
	r = api("GET", CRED_PATH "/{CU}", NULL);
	check_resp(&r, 200, NULL, NULL, "get user credential");
	assert_cred_shape(json_object_get(r.json, "mqttCredential"), u, "accountUser", S.admin.account_id, 0);
	h_resp_free(&r);

	/* With a logged-in admin's JWT; regenerating replaces. */
	gen_as(ADMIN_JWT, u, "accountUser", s2, NULL);
	DENY(u, NULL, s);
	ALLOW(u, NULL, s2);
	/* Audit entries name the user. */
	r = api("GET", "/api/v1/audit?entityId={U}", NULL);
	check_resp(&r, 200, NULL, NULL, "user audit");
	check_at(&r, "auditEntries.meta.count", "3", "user audit"); /* create, generate, regenerate */
	check_at(&r, "auditEntries.results.1.action", "\"generate-credential\"", "user audit");
	check_at(&r, "auditEntries.results.1.entityType", "\"accountUser\"", "user audit");
	check_at(&r, "auditEntries.results.2.action", "\"regenerate-credential\"", "user audit");
	check_at(&r, "auditEntries.results.2.actorType", "\"accountUser\"", "user audit");
	h_resp_free(&r);

	/* A revoked user credential is refused. */
	r = api("GET", CRED_PATH "?entityId={U}", NULL);
	setvar("CU", h_str(&r, "mqttCredentials.results.0.id"));
	h_resp_free(&r);
	r = api("DELETE", CRED_PATH "/{CU}", NULL);
	check_resp(&r, 204, NULL, NULL, "revoke user credential");
	h_resp_free(&r);
	DENY(u, NULL, s2);
}

/* A deleted account user can no longer connect (MQTT.md: deleted entities are refused).
 * BUG: deleting an account user leaves its credential (identity.c: imp_res_account_user has
 * no before_delete removing it, unlike devices.c device_before_delete), and
 * imp_db_auth_lookup (store/sqlite/credentials.c) takes any credential row by entity_id
 * without checking that its owner still exists: the deleted user's secret is allowed. */
static void deleted_user_denied(void **state)
{
	char s3[64], cid[64], u[64];
	snprintf(u, sizeof u, "%s", getvar("U"));
	h_resp r;
	gen_as(S.admin.api_key, u, "accountUser", s3, cid);
	setvar("CU", cid);
	ALLOW(u, NULL, s3);
	r = api("DELETE", "/api/v1/account-users/{U}", NULL);
	check_resp(&r, 204, NULL, NULL, "delete account user");
	h_resp_free(&r);
	const char *v = authn(u, NULL, s3);
	assert_string_equal(v, "deny");
}

static void scopes(void **state)
{
	char s[64];
	json_decref(make_device("PW", "D-5", "D5"));
	/* provisioning: generate, read; not revoke, not disable */
	gen_as(PROV, getvar("D5"), NULL, s, NULL);
	ALLOW(getvar("D5"), NULL, s);
	h_resp r = api_as(PROV, "GET", CRED_PATH "?entityId={D5}", NULL, NULL);
	check_resp(&r, 200, NULL, NULL, "provisioning lists");
	check_at(&r, "mqttCredentials.meta.count", "1", "provisioning lists");
	assert_null(strstr(r.body, s));
	assert_null(strstr(r.body, "\"secret\""));
	setvar("C5", h_str(&r, "mqttCredentials.results.0.id"));
	h_resp_free(&r);
	r = api_as(PROV, "GET", CRED_PATH "/{C5}", NULL, NULL);
	check_resp(&r, 200, NULL, NULL, "provisioning gets");
	assert_null(strstr(r.body, "\"secret\""));
	h_resp_free(&r);
	assert_int_equal(status_as(PROV, "DELETE", CRED_PATH "/{C5}", NULL), 403);
	assert_int_equal(status_as(PROV, "POST", "/api/v1/devices/{D5}/disable", NULL), 403);
	ALLOW(getvar("D5"), NULL, s);

	/* read: list and get only */
	assert_int_equal(status_as(READK, "POST", CRED_PATH, "{\"entityId\":\"{D5}\"}"), 403);
	assert_int_equal(status_as(READK, "GET", CRED_PATH, NULL), 200);
	assert_int_equal(status_as(READK, "GET", CRED_PATH "/{C5}", NULL), 200);
	assert_int_equal(status_as(READK, "DELETE", CRED_PATH "/{C5}", NULL), 403);
	assert_int_equal(status_as(READK, "POST", "/api/v1/devices/{D5}/disable", NULL), 403);
	ALLOW(getvar("D5"), NULL, s); /* the refused POST did not replace the secret */

	/* no token, a bad token */
	assert_int_equal(status_as(NULL, "POST", CRED_PATH, "{\"entityId\":\"{D5}\"}"), 401);
	assert_int_equal(status_as(NULL, "GET", CRED_PATH, NULL), 401);
	assert_int_equal(status_as(NULL, "GET", CRED_PATH "/{C5}", NULL), 401);
	assert_int_equal(status_as("imp_bogus", "GET", CRED_PATH, NULL), 401);
	assert_int_equal(status_as(NULL, "POST", "/api/v1/devices/{D5}/disable", NULL), 401);
	/* a logged-in admin */
	assert_int_equal(status_as(ADMIN_JWT, "GET", CRED_PATH "/{C5}", NULL), 200);
	assert_int_equal(status_as(ADMIN_JWT, "POST", "/api/v1/devices/{D5}/disable", NULL), 200);
	DENY(getvar("D5"), NULL, s);
	assert_int_equal(status_as(ADMIN_JWT, "POST", "/api/v1/devices/{D5}/enable", NULL), 200);
	ALLOW(getvar("D5"), NULL, s);
	assert_int_equal(status_as(ADMIN_JWT, "DELETE", CRED_PATH "/{C5}", NULL), 204);
	DENY(getvar("D5"), NULL, s);
	ALLOW(getvar("D1"), NULL, SECRET1);
}

static void two_accounts(void **state)
{
	assert_int_equal(h_account_create(&S, &B), 0);
	assert_string_not_equal(B.account_id, S.admin.account_id);
	setvar("BACCT", B.account_id);
	TOKEN = B.api_key;
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"b\"}", "BT"));
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{BT}\",\"serialNumber\":\"D-1\"}", "BD"));
	TOKEN = NULL;
	char bs[64], bc[64];
	gen_as(B.api_key, getvar("BD"), NULL, bs, bc);
	setvar("BC", bc);
	setvar("BS", bs);
	ALLOW(getvar("BD"), NULL, bs);

	/* B reaches nothing of A's: each of A's ids answers as an unknown one. */
	const tcase b_side[] = {
		E("POST", CRED_PATH, "{\"entityId\":\"{D1}\"}", 404, "not_found", "entityId"),
		E("POST", CRED_PATH, "{\"entityId\":\"{D3}\",\"entityType\":\"device\"}", 404, "not_found", "entityId"),
		E("POST", CRED_PATH, "{\"entityId\":\"{DC}\"}", 404, "not_found", "entityId"),
		E("POST", CRED_PATH, "{\"entityId\":\"{BD}\",\"accountId\":\"{ACCT}\"}", 403, "wrong_account", "accountId"),
		E("DELETE", CRED_PATH "/{C3}", NULL, 404, "not_found", NULL),
		E("POST", "/api/v1/devices/{D1}/disable", NULL, 404, "not_found", NULL),
		E("POST", "/api/v1/devices/{D1}/enable", NULL, 404, "not_found", NULL),
		E("DELETE", "/api/v1/devices/{D3}", NULL, 404, "not_found", NULL),
		V("GET", CRED_PATH "?entityId={D1}", NULL, 200, "mqttCredentials.meta.count", "0"),
		V("GET", CRED_PATH "?entityId={D3}", NULL, 200, "mqttCredentials.meta.count", "0"),
		V("GET", CRED_PATH, NULL, 200, "mqttCredentials.meta.count", "1"),
		V("GET", CRED_PATH, NULL, 200, "mqttCredentials.results.0.id", "\"{BC}\""),
		E("GET", CRED_PATH "?accountId={ACCT}", NULL, 403, "wrong_account", "accountId"),
		V("GET", "/api/v1/audit?entityId={D1}", NULL, 200, "auditEntries.meta.count", "0"),
	};
	TOKEN = B.api_key;
	run_cases(b_side, sizeof b_side / sizeof b_side[0]);
	h_resp r = api("GET", CRED_PATH "?pageSize=1000", NULL);
	assert_null(strstr(r.body, S.admin.account_id));
	assert_null(strstr(r.body, getvar("D1")));
	assert_null(strstr(r.body, getvar("C3")));
	h_resp_free(&r);
	TOKEN = NULL;

	/* and A nothing of B's */
	const tcase a_side[] = {
		E("POST", CRED_PATH, "{\"entityId\":\"{BD}\"}", 404, "not_found", "entityId"),
		E("DELETE", CRED_PATH "/{BC}", NULL, 404, "not_found", NULL),
		E("POST", "/api/v1/devices/{BD}/disable", NULL, 404, "not_found", NULL),
		V("GET", CRED_PATH "?entityId={BD}", NULL, 200, "mqttCredentials.meta.count", "0"),
		E("POST", CRED_PATH, "{\"entityId\":\"{D1}\",\"accountId\":\"{BACCT}\"}", 403, "wrong_account", "accountId"),
	};
	run_cases(a_side, sizeof a_side / sizeof a_side[0]);
	r = api("GET", CRED_PATH "?pageSize=1000", NULL);
	check_resp(&r, 200, NULL, NULL, "A's list");
	assert_null(strstr(r.body, B.account_id));
	assert_null(strstr(r.body, getvar("BD")));
	assert_null(strstr(r.body, getvar("BC")));
	h_resp_free(&r);

	/* Basic across accounts: each device reads only itself. */
	r = basic(getvar("BD"), bs, "GET", "/api/v1/devices/{BD}", NULL);
	check_resp(&r, 200, NULL, NULL, "B's device, Basic");
	check_at(&r, "device.accountId", "\"{BACCT}\"", "B's device, Basic");
	h_resp_free(&r);
	r = basic(getvar("BD"), bs, "GET", "/api/v1/devices/{D1}", NULL);
	check_resp(&r, 403, NULL, NULL, "B's device reading A's");
	assert_null(strstr(r.body, "D-1\""));
	h_resp_free(&r);
	r = basic(getvar("D1"), SECRET1, "GET", "/api/v1/devices/{BD}", NULL);
	check_resp(&r, 403, NULL, NULL, "A's device reading B's");
	h_resp_free(&r);

	/* Nothing B tried changed A's credentials. */
	ALLOW(getvar("D1"), NULL, SECRET1);
	ALLOW(getvar("D3"), NULL, getvar("S3"));
	ALLOW(getvar("BD"), NULL, bs);
	DENY(getvar("BD"), NULL, SECRET1);
	DENY(getvar("D1"), NULL, bs);
}

static void audit_trail(void **state)
{
	h_resp r = api("GET", "/api/v1/audit?entityId={D1}&pageSize=1000", NULL);
	check_resp(&r, 200, NULL, NULL, "D1's audit");
	json_t *res = h_at(r.json, "auditEntries.results");
	if((int)json_array_size(res) != ND1) fail_msg("D1 has %zu audit entries, want %d: %s", json_array_size(res), ND1, r.body);
	for(int i = 0; i < ND1; i++) {
		json_t *e = json_array_get(res, (size_t)i);
		const char *action = json_string_value(json_object_get(e, "action"));
		if(D1_ACTIONS[i] && strcmp(action, D1_ACTIONS[i]) != 0) fail_msg("entry %d is %s, want %s", i, action, D1_ACTIONS[i]);
		if(!D1_ACTIONS[i] && strcmp(action, "generate-credential") != 0 && strcmp(action, "regenerate-credential") != 0)
			fail_msg("entry %d is %s, want a credential generation", i, action);
		assert_string_equal(json_string_value(json_object_get(e, "entityId")), getvar("D1"));
		assert_string_equal(json_string_value(json_object_get(e, "entityType")), "device");
		assert_string_equal(json_string_value(json_object_get(e, "actorType")), "apiKey");
		assert_timestamp(json_string_value(json_object_get(e, "created")));
		if(strstr(action, "credential")) {
			const char *cid = json_string_value(h_at(e, "details.credentialId"));
			assert_non_null(cid);
			assert_uuid7(cid);
		}
	}
	/* the first generation names the credential id it made */
	check_at(&r, "auditEntries.results.1.details.credentialId", "\"{C1OLD}\"", "D1's audit");
	h_resp_free(&r);
	const tcase filters[] = {
		V("GET", "/api/v1/audit?entityId={D1}&action=disable", NULL, 200, "auditEntries.meta.count", "1"),
		V("GET", "/api/v1/audit?entityId={D1}&action=enable", NULL, 200, "auditEntries.meta.count", "1"),
		V("GET", "/api/v1/audit?entityId={D1}&action=revoke-credential", NULL, 200, "auditEntries.meta.count", "1"),
		V("GET", "/api/v1/audit?entityId={D1}&action=revoke-credential", NULL, 200,
		  "auditEntries.results.0.details.credentialId", "\"{CREV}\""),
		V("GET", "/api/v1/audit?entityId={D4}&action=delete", NULL, 200, "auditEntries.meta.count", "1"),
		V("GET", "/api/v1/audit?entityId={D2}&action=generate-credential", NULL, 200, "auditEntries.meta.count", "0"),
		V("GET", "/api/v1/audit?entityId={D2}&action=enable", NULL, 200, "auditEntries.meta.count", "1"),
	};
	run_cases(filters, sizeof filters / sizeof filters[0]);
	/* the provisioning key shows as the actor of what it did */
	r = api("GET", "/api/v1/audit?entityId={D5}&action=generate-credential", NULL);
	check_resp(&r, 200, NULL, NULL, "D5's audit");
	check_at(&r, "auditEntries.meta.count", "1", "D5's audit");
	check_at(&r, "auditEntries.results.0.actorType", "\"apiKey\"", "D5's audit");
	h_resp_free(&r);
}

static void no_secret_leaks(void **state)
{
	assert_true(NSECRETS >= 12);
	h_account *accts[] = {&S.admin, &B};
	for(int a = 0; a < 2; a++) {
		h_resp r = api_as(accts[a]->api_key, "GET", "/api/v1/audit?pageSize=1000", NULL, NULL);
		check_resp(&r, 200, NULL, NULL, "audit");
		assert_true(json_array_size(h_at(r.json, "auditEntries.results")) >= (a ? 3 : 20));
		for(int i = 0; i < NSECRETS; i++) {
			if(strstr(r.body, SECRETS[i])) fail_msg("secret %d in the audit log", i);
		}
		h_resp_free(&r);
		r = api_as(accts[a]->api_key, "GET", CRED_PATH "?pageSize=1000", NULL, NULL);
		check_resp(&r, 200, NULL, NULL, "credentials");
		for(int i = 0; i < NSECRETS; i++) {
			if(strstr(r.body, SECRETS[i])) fail_msg("secret %d in a credential list", i);
		}
		h_resp_free(&r);
	}
	assert_int_equal(h_log_sync(&S), 0);
	for(int i = 0; i < NSECRETS; i++) {
		if(h_log_contains(&S, SECRETS[i])) fail_msg("secret %d in the server's log", i);
	}
	/* the log does record these requests, so the search looked at something */
	assert_true(h_log_contains(&S, "POST /api/v1/access/mqtt-credentials 200 "));
	assert_true(h_log_contains(&S, "POST /api/v1/broker/authenticate 200 "));
}

/* GET of a well-formed credential id that the caller's account does not hold: 404.
 * Run last, as it takes the server down.
 * BUG: the server crashes (ASan: bad-free of a stack address). imp_h_cred_get
 * (src/api/credentials.c, `imp_credential c;` uninitialised) calls imp_db_credential_get,
 * whose get_one (src/store/sqlite/credentials.c) calls imp_credential_clear(out) when no
 * row matched: it frees the uninitialised c.certificate. Any read-scoped caller can kill
 * the server with GET /api/v1/access/mqtt-credentials/<any uuid>. */
static void get_unknown_credential_is_404(void **state)
{
	const tcase cases[] = {
		E("GET", CRED_PATH "/" NO_SUCH_ID, NULL, 404, "not_found", NULL), /* never existed */
		E("GET", CRED_PATH "/{C1OLD}", NULL, 404, "not_found", NULL),     /* replaced by a regeneration */
		E("GET", CRED_PATH "/{CREV}", NULL, 404, "not_found", NULL),      /* revoked */
		E("GET", CRED_PATH "/{C4}", NULL, 404, "not_found", NULL),        /* its device deleted */
		E("GET", CRED_PATH "/{D1}", NULL, 404, "not_found", NULL),        /* a device's id */
		E("GET", CRED_PATH "/{BC}", NULL, 404, "not_found", NULL),        /* another account's */
		V("GET", CRED_PATH "/{C3}", NULL, 200, "mqttCredential.id", "\"{C3}\""),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);
	h_resp r = api_as(B.api_key, "GET", CRED_PATH "/{C3}", NULL, NULL);
	check_resp(&r, 404, "not_found", NULL, "A's credential read by B");
	h_resp_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(generate_and_activate),
		cmocka_unit_test(create_rejects),
		cmocka_unit_test(rule_errors_are_422),
		cmocka_unit_test(authenticate_rules),
		cmocka_unit_test(authenticate_bodies_and_scopes),
		cmocka_unit_test(basic_auth),
		cmocka_unit_test(disable_enable),
		cmocka_unit_test(revoke_and_delete_cascade),
		cmocka_unit_test(account_users),
		cmocka_unit_test(deleted_user_denied),
		cmocka_unit_test(scopes),
		cmocka_unit_test(two_accounts),
		cmocka_unit_test(audit_trail),
		cmocka_unit_test(no_secret_leaks),
		cmocka_unit_test(get_unknown_credential_is_404),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
