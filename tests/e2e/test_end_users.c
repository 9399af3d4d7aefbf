/* End-to-end: end-user templates and end users (create, list, get, update, delete, the
 * 409s they cause), end users logging in (a JWT with the endUser role), what an end user
 * reaches over HTTP (its organization's devices and those below, GET and PUT only; other
 * devices 404; routes not open to end users 403), end-user MQTT credentials, and the
 * end-user topic rules through POST /api/v1/broker/authorize (the plugin's own code).
 * Two end users in sibling organizations never see nor change each other's devices.
 * One server for the file; the tests run in order and share it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "harness.h"

#define PW "correct horse battery"
#define CRED_PATH "/api/v1/access/mqtt-credentials"

static char UA_JWT[2048], UB_JWT[2048], BROKER[128], PROV[128];
static char SECRETS[16][64];
static int NSECRETS;

static void login_as(const char *email, const char *pw, char *out, size_t cap)
{
	char body[300];
	snprintf(body, sizeof body, "{\"emailAddress\":\"%s\",\"password\":\"%s\"}", email, pw);
	h_resp r = h_call(&S, "POST", "/api/v1/auth/login-user", NULL, body, NULL);
	check_resp(&r, 200, NULL, NULL, email);
	snprintf(out, cap, "%s", h_str(&r, "jwt"));
	h_resp_free(&r);
}

static long status_as(const char *token, const char *method, const char *path, const char *body)
{
	h_resp r = api_as(token, method, path, body, NULL);
	long st = r.status;
	if(st >= 400) check_resp(&r, st, NULL, NULL, path);
	h_resp_free(&r);
	return st;
}

static void make_key(const char *scopes, char *out)
{
	char body[120];
	snprintf(body, sizeof body, "{\"name\":\"k\",\"scopes\":[\"%s\"]}", scopes);
	h_resp r = api("POST", "/api/v1/api-keys", body);
	check_resp(&r, 201, NULL, NULL, scopes);
	snprintf(out, 128, "%s", h_str(&r, "apiKey.key"));
	h_resp_free(&r);
}

/* Organizations P > {A > A1, B}; templates; end users UA (in A) and UB (in B); devices
 * DA (A), DA1 (A1), DB (B), DN (none), of a template with channels up, down, both. */
static void world(void **state)
{
	const tcase cases[] = {
		VS("POST", "/api/v1/organizations", "{\"name\":\"P\"}", 201, NULL, NULL, "P"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"A\",\"parentId\":\"{P}\"}", 201, NULL, NULL, "A"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"A1\",\"parentId\":\"{A}\"}", 201, NULL, NULL, "A1"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"B\",\"parentId\":\"{P}\"}", 201, NULL, NULL, "B"),
		VS("POST", "/api/v1/end-users/templates", "{\"name\":\"owners\"}", 201, "endUserTemplate.name", "\"owners\"", "ET"),
		VS("POST", "/api/v1/end-users", "{\"organizationId\":\"{A}\",\"name\":\"Ann\",\"emailAddress\":\"ann@example.com\","
		   "\"password\":\"" PW "\",\"endUserTemplateId\":\"{ET}\"}", 201, "endUser.password", NULL, "UA"),
		VS("POST", "/api/v1/end-users", "{\"organizationId\":\"{B}\",\"name\":\"Bob\",\"emailAddress\":\"bob@example.com\","
		   "\"password\":\"" PW "\"}", 201, "endUser.organizationId", "\"{B}\"", "UB"),
		VS("POST", "/api/v1/devices/templates", "{\"name\":\"T\"}", 201, NULL, NULL, "T"),
		K("POST", "/api/v1/channels/templates", "{\"name\":\"up\",\"entityType\":\"deviceTemplate\",\"entityId\":\"{T}\",\"permission\":\"publish\"}", 201),
		K("POST", "/api/v1/channels/templates", "{\"name\":\"down\",\"entityType\":\"deviceTemplate\",\"entityId\":\"{T}\",\"permission\":\"subscribe\"}", 201),
		K("POST", "/api/v1/channels/templates", "{\"name\":\"both\",\"entityType\":\"deviceTemplate\",\"entityId\":\"{T}\"}", 201),
		VS("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{T}\",\"organizationId\":\"{A}\",\"serialNumber\":\"da\"}", 201, NULL, NULL, "DA"),
		VS("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{T}\",\"organizationId\":\"{A1}\",\"serialNumber\":\"da1\"}", 201, NULL, NULL, "DA1"),
		VS("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{T}\",\"organizationId\":\"{B}\",\"serialNumber\":\"db\"}", 201, NULL, NULL, "DB"),
		VS("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{T}\",\"serialNumber\":\"dn\"}", 201, NULL, NULL, "DN"),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);
	login_as("ann@example.com", PW, UA_JWT, sizeof UA_JWT);
	login_as("bob@example.com", PW, UB_JWT, sizeof UB_JWT);
	make_key("broker", BROKER);
	make_key("provisioning", PROV);
}

static void end_user_crud(void **state)
{
	const tcase cases[] = {
		E("POST", "/api/v1/end-users", "{\"organizationId\":\"{A}\",\"name\":\"x\",\"emailAddress\":\"not-an-email\"}", 422, "invalid_field", "emailAddress"),
		E("POST", "/api/v1/end-users", "{\"organizationId\":\"{A}\",\"name\":\"x\",\"emailAddress\":\"ann@example.com\"}", 409, "conflict", NULL),
		E("POST", "/api/v1/end-users", "{\"organizationId\":\"{T}\",\"name\":\"x\",\"emailAddress\":\"x@example.com\"}", 422, "unknown_reference", "organizationId"),
		E("POST", "/api/v1/end-users", "{\"name\":\"x\",\"emailAddress\":\"x@example.com\"}", 422, "missing_field", "organizationId"),
		E("POST", "/api/v1/end-users", "{\"organizationId\":\"{A}\",\"name\":\"x\",\"emailAddress\":\"x@example.com\",\"password\":\"short\"}", 422, "invalid_field", "password"),
		E("POST", "/api/v1/end-users", "{\"organizationId\":\"{A}\",\"name\":\"x\",\"emailAddress\":\"x@example.com\",\"role\":\"admin\"}", 400, "unknown_field", "role"),
		VS("POST", "/api/v1/end-users", "{\"organizationId\":\"{A1}\",\"name\":\"Cy\",\"emailAddress\":\"cy@example.com\"}", 201, "endUser.emailAddress", "\"cy@example.com\"", "UC"),
		V("GET", "/api/v1/end-users?organizationId={A}", NULL, 200, "endUsers.meta.count", "1"),
		V("GET", "/api/v1/end-users?organizationId={A}", NULL, 200, "endUsers.results.0.id", "\"{UA}\""),
		V("GET", "/api/v1/end-users?organizationId={A1}", NULL, 200, "endUsers.results.0.id", "\"{UC}\""),
		V("GET", "/api/v1/end-users", NULL, 200, "endUsers.meta.count", "3"),
		V("GET", "/api/v1/end-users/{UC}", NULL, 200, "endUser.organizationId", "\"{A1}\""),
		V("PUT", "/api/v1/end-users/{UC}", "{\"name\":\"Cyd\",\"password\":\"a new password\"}", 200, "endUser.name", "\"Cyd\""),
		E("DELETE", "/api/v1/organizations/{A1}", NULL, 409, "in_use", "id"),
		E("DELETE", "/api/v1/end-users/templates/{ET}", NULL, 409, "in_use", "id"),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);
	/* a password set by PUT logs in; the password never shows */
	char jwt[2048];
	login_as("cy@example.com", "a new password", jwt, sizeof jwt);
	h_resp r = api("GET", "/api/v1/end-users/{UC}", NULL);
	check_at(&r, "endUser.password", NULL, "password hidden");
	h_resp_free(&r);
	assert_int_equal(status_as(NULL, "DELETE", "/api/v1/end-users/{UC}", NULL), 401);
	assert_int_equal(status_as(S.admin.api_key, "DELETE", "/api/v1/end-users/{UC}", NULL), 204);
	/* a deleted end user's token ends with it */
	assert_int_equal(status_as(jwt, "GET", "/api/v1/devices", NULL), 401);
	assert_int_equal(status_as(S.admin.api_key, "GET", "/api/v1/end-users/{UC}", NULL), 404);
}

/* The JWT's payload says endUser; a wrong password is 401 as for account users. */
static void login(void **state)
{
	const char *d1 = strchr(UA_JWT, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	assert_non_null(d2);
	char b64[1024], cmd[1200], out[1024];
	snprintf(b64, sizeof b64, "%.*s", (int)(d2 - d1 - 1), d1 + 1);
	for(char *p = b64; *p; p++) {
		if(*p == '-') *p = '+';
		if(*p == '_') *p = '/';
	}
	while(strlen(b64) % 4) strcat(b64, "=");
	snprintf(cmd, sizeof cmd, "echo '%s' | base64 -d", b64);
	FILE *f = popen(cmd, "r");
	size_t n = fread(out, 1, sizeof out - 1, f);
	pclose(f);
	out[n] = '\0';
	json_t *c = json_loads(out, 0, NULL);
	assert_non_null(c);
	assert_string_equal(json_string_value(json_array_get(json_object_get(c, "roles"), 0)), "endUser");
	assert_int_equal(json_array_size(json_object_get(c, "roles")), 1);
	assert_string_equal(json_string_value(json_object_get(c, "userId")), getvar("UA"));
	json_decref(c);
	h_resp r = h_call(&S, "POST", "/api/v1/auth/login-user", NULL,
	                  "{\"emailAddress\":\"ann@example.com\",\"password\":\"wrong password\"}", NULL);
	check_resp(&r, 401, "invalid_login", NULL, "wrong password");
	h_resp_free(&r);
	/* the session renews as an end user's */
	r = api_as(UA_JWT, "POST", "/api/v1/sessions/renew-session", NULL, NULL);
	check_resp(&r, 200, NULL, NULL, "renew");
	assert_int_equal(status_as(h_str(&r, "jwt"), "POST", "/api/v1/devices", "{}"), 403);
	assert_int_equal(status_as(h_str(&r, "jwt"), "GET", "/api/v1/devices/{DA}", NULL), 200);
	h_resp_free(&r);
}

/* The ids of a device list, as a sorted text "id,id". */
static void list_ids(const char *token, const char *path, char *out, size_t cap)
{
	h_resp r = api_as(token, "GET", path, NULL, NULL);
	check_resp(&r, 200, NULL, NULL, path);
	json_t *res = h_at(r.json, "devices.results");
	const char *ids[16];
	size_t n = json_array_size(res);
	assert_true(n < 16);
	for(size_t i = 0; i < n; i++) ids[i] = json_string_value(json_object_get(json_array_get(res, i), "id"));
	for(size_t i = 0; i < n; i++) {
		for(size_t j = i + 1; j < n; j++) {
			if(strcmp(ids[j], ids[i]) < 0) {
				const char *t = ids[i];
				ids[i] = ids[j];
				ids[j] = t;
			}
		}
	}
	out[0] = '\0';
	for(size_t i = 0; i < n; i++) snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "," : "", ids[i]);
	h_resp_free(&r);
}

static void sorted2(const char *a, const char *b, char *out, size_t cap)
{
	if(strcmp(a, b) < 0) snprintf(out, cap, "%s,%s", a, b);
	else snprintf(out, cap, "%s,%s", b, a);
}

static void reach_over_http(void **state)
{
	char got[1024], want[1024];
	/* lists: own organization and below, never a sibling's or an unowned device */
	list_ids(UA_JWT, "/api/v1/devices", got, sizeof got);
	sorted2(getvar("DA"), getvar("DA1"), want, sizeof want);
	assert_string_equal(got, want);
	list_ids(UB_JWT, "/api/v1/devices", got, sizeof got);
	assert_string_equal(got, getvar("DB"));
	list_ids(UA_JWT, "/api/v1/devices?organizationId={B}", got, sizeof got);
	assert_string_equal(got, "");
	list_ids(UA_JWT, "/api/v1/devices?serialNumber=db", got, sizeof got);
	assert_string_equal(got, "");
	h_resp r = api_as(UA_JWT, "GET", "/api/v1/devices", NULL, NULL);
	check_at(&r, "devices.meta.count", "2", "count");
	h_resp_free(&r);

	const struct {
		const char *token, *method, *path, *body;
		long status;
	} T[] = {
		{UA_JWT, "GET", "/api/v1/devices/{DA}", NULL, 200},
		{UA_JWT, "GET", "/api/v1/devices/{DA1}", NULL, 200},
		{UA_JWT, "GET", "/api/v1/devices/{DB}", NULL, 404},
		{UA_JWT, "GET", "/api/v1/devices/{DN}", NULL, 404},
		{UB_JWT, "GET", "/api/v1/devices/{DA}", NULL, 404},
		{UB_JWT, "PUT", "/api/v1/devices/{DA}", "{\"name\":\"mine now\"}", 404},
		{UA_JWT, "PUT", "/api/v1/devices/{DB}", "{\"name\":\"mine now\"}", 404},
		{UA_JWT, "PUT", "/api/v1/devices/{DA}", "{\"name\":\"kitchen\"}", 200},
		{UA_JWT, "PUT", "/api/v1/devices/{DA}", "{\"organizationId\":\"{B}\"}", 422},
		{UA_JWT, "PUT", "/api/v1/devices/{DA}", "{\"organizationId\":null}", 422},
		{UA_JWT, "PUT", "/api/v1/devices/{DA}", "{\"provisioningState\":\"associated\"}", 400},
		{UA_JWT, "DELETE", "/api/v1/devices/{DA}", NULL, 403},
		{UA_JWT, "POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{T}\"}", 403},
		{UA_JWT, "POST", "/api/v1/devices/{DA}/disable", NULL, 403},
		{UA_JWT, "GET", "/api/v1/devices/templates", NULL, 403},
		{UA_JWT, "GET", "/api/v1/organizations", NULL, 403},
		{UA_JWT, "GET", "/api/v1/organizations/{A}", NULL, 403},
		{UA_JWT, "GET", "/api/v1/end-users", NULL, 403},
		{UA_JWT, "GET", "/api/v1/end-users/{UA}", NULL, 200},
		{UA_JWT, "GET", "/api/v1/end-users/{UB}", NULL, 404},
		{UA_JWT, "PUT", "/api/v1/end-users/{UA}", "{\"organizationId\":\"{B}\"}", 403},
		{UA_JWT, "GET", "/api/v1/api-keys", NULL, 403},
		{UA_JWT, "GET", "/api/v1/account-users", NULL, 403},
		{UA_JWT, "GET", "/api/v1/audit", NULL, 403},
		{UA_JWT, "GET", CRED_PATH, NULL, 403},
		{UA_JWT, "POST", "/api/v1/devices/batch", "{}", 403},
		{UA_JWT, "POST", "/api/v1/association/create-association-code", "{\"deviceId\":\"{DA}\"}", 403},
	};
	for(size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
		long st = status_as(T[i].token, T[i].method, T[i].path, T[i].body);
		if(st != T[i].status)
			fail_msg("case %zu: %s %s as %s: %ld, want %ld", i, T[i].method, T[i].path, T[i].token == UA_JWT ? "UA" : "UB", st,
			         T[i].status);
	}
	/* a move within its own organizations is allowed; B's device stayed B's */
	assert_int_equal(status_as(UA_JWT, "PUT", "/api/v1/devices/{DA}", "{\"organizationId\":\"{A1}\"}"), 200);
	r = api("GET", "/api/v1/devices/{DB}", NULL);
	check_at(&r, "device.name", "null", "B's device untouched");
	check_at(&r, "device.organizationId", "\"{B}\"", "B's device untouched");
	h_resp_free(&r);
	r = api("GET", "/api/v1/devices/{DA}", NULL);
	check_at(&r, "device.name", "\"kitchen\"", "A's device renamed");
	check_at(&r, "device.organizationId", "\"{A1}\"", "A's device moved");
	h_resp_free(&r);
}

static void mqtt_credentials(void **state)
{
	char body[200];
	snprintf(body, sizeof body, "{\"entityId\":\"%s\",\"entityType\":\"endUser\"}", getvar("UA"));
	h_resp r = api_as(UA_JWT, "POST", CRED_PATH, body, NULL);
	check_resp(&r, 200, NULL, NULL, "own credential");
	check_at(&r, "mqttCredential.entityType", "\"endUser\"", "type");
	snprintf(SECRETS[NSECRETS++], 64, "%s", h_str(&r, "mqttCredential.secret"));
	h_resp_free(&r);
	snprintf(body, sizeof body, "{\"entityId\":\"%s\",\"entityType\":\"endUser\"}", getvar("UB"));
	assert_int_equal(status_as(UA_JWT, "POST", CRED_PATH, body), 404);
	assert_int_equal(status_as(PROV, "POST", CRED_PATH, body), 403);
	r = api_as(S.admin.api_key, "POST", CRED_PATH, body, NULL);
	check_resp(&r, 200, NULL, NULL, "admin makes B's");
	snprintf(SECRETS[NSECRETS++], 64, "%s", h_str(&r, "mqttCredential.secret"));
	h_resp_free(&r);
	snprintf(body, sizeof body, "{\"entityId\":\"%s\"}", getvar("DA"));
	assert_int_equal(status_as(UA_JWT, "POST", CRED_PATH, body), 403);
	assert_int_equal(status_as(S.admin.api_key, "POST", CRED_PATH,
	                           "{\"entityId\":\"0190a0b0-0000-7000-8000-000000000000\",\"entityType\":\"endUser\"}"),
	                 404);
	/* the broker lets the end user in with it */
	json_t *b = json_pack("{s:s, s:s, s:s}", "clientid", getvar("UA"), "username", getvar("UA"), "password", SECRETS[0]);
	char *text = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	r = api_as(BROKER, "POST", "/api/v1/broker/authenticate", text, NULL);
	free(text);
	check_resp(&r, 200, NULL, NULL, "authenticate");
	check_at(&r, "result", "\"allow\"", "end user connects");
	h_resp_free(&r);
}

static const char *authz(const char *user, const char *topic, const char *action)
{
	static char out[16];
	json_t *b = json_pack("{s:s, s:s, s:s}", "clientid", user, "topic", topic, "action", action);
	char *text = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	h_resp r = api_as(BROKER, "POST", "/api/v1/broker/authorize", text, NULL);
	free(text);
	check_resp(&r, 200, NULL, NULL, topic);
	snprintf(out, sizeof out, "%s", h_str(&r, "result"));
	h_resp_free(&r);
	return out;
}

/* MQTT.md's end-user column, through the plugin's rules and principal loader. */
static void topics(void **state)
{
	const char *acct = S.admin.account_id;
	const struct {
		const char *user, *dev, *rest, *action, *want;
	} T[] = {
		{"UA", "DA", "both", "subscribe", "allow"}, {"UA", "DA", "up", "subscribe", "allow"},
		{"UA", "DA", "down", "publish", "allow"}, {"UA", "DA", "both", "publish", "allow"},
		{"UA", "DA", "up", "publish", "deny"}, {"UA", "DA", "_log", "subscribe", "allow"},
		{"UA", "DA", "_log", "publish", "deny"}, {"UA", "DA", "_set/fields", "subscribe", "allow"},
		{"UA", "DA", "_updates/fields", "subscribe", "allow"}, {"UA", "DA", "_rejected", "publish", "deny"},
		{"UA", "DA", "#", "subscribe", "allow"}, {"UA", "DA", "nochannel", "subscribe", "deny"},
		{"UA", "DA1", "both", "subscribe", "allow"},
		{"UA", "DB", "both", "subscribe", "deny"}, {"UA", "DB", "down", "publish", "deny"},
		{"UA", "DB", "#", "subscribe", "deny"}, {"UA", "DN", "both", "subscribe", "deny"},
		{"UB", "DB", "both", "subscribe", "allow"}, {"UB", "DB", "down", "publish", "allow"},
		{"UB", "DA", "both", "subscribe", "deny"}, {"UB", "DA1", "_log", "subscribe", "deny"},
	};
	for(size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
		char topic[200];
		snprintf(topic, sizeof topic, "xi/blue/v1/%s/d/%s/%s", acct, getvar(T[i].dev), T[i].rest);
		const char *got = authz(getvar(T[i].user), topic, T[i].action);
		if(strcmp(got, T[i].want) != 0)
			fail_msg("case %zu: %s %s %s/%s: %s, want %s", i, T[i].user, T[i].action, T[i].dev, T[i].rest, got, T[i].want);
	}
	char topic[200];
	snprintf(topic, sizeof topic, "xi/blue/v1/%s/#", acct);
	assert_string_equal(authz(getvar("UA"), topic, "subscribe"), "deny");
	snprintf(topic, sizeof topic, "xi/ctrl/v1/%s/cln", getvar("DA"));
	assert_string_equal(authz(getvar("UA"), topic, "subscribe"), "deny");
	/* a device moved out of the end user's organizations is out of reach at once */
	snprintf(topic, sizeof topic, "xi/blue/v1/%s/d/%s/both", acct, getvar("DB"));
	assert_string_equal(authz(getvar("UB"), topic, "subscribe"), "allow");
	assert_int_equal(status_as(S.admin.api_key, "PUT", "/api/v1/devices/{DB}", "{\"organizationId\":\"{A}\"}"), 200);
	assert_string_equal(authz(getvar("UB"), topic, "subscribe"), "deny");
	assert_string_equal(authz(getvar("UA"), topic, "subscribe"), "allow");
	assert_int_equal(status_as(S.admin.api_key, "PUT", "/api/v1/devices/{DB}", "{\"organizationId\":\"{B}\"}"), 200);
}

/* No secret nor password in the server's log. */
static void nothing_leaks(void **state)
{
	assert_int_equal(h_log_sync(&S), 0);
	for(int i = 0; i < NSECRETS; i++) assert_false(h_log_contains(&S, SECRETS[i]));
	assert_false(h_log_contains(&S, PW));
	assert_false(h_log_contains(&S, "a new password"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(world),
		cmocka_unit_test(end_user_crud),
		cmocka_unit_test(login),
		cmocka_unit_test(reach_over_http),
		cmocka_unit_test(mqtt_credentials),
		cmocka_unit_test(topics),
		cmocka_unit_test(nothing_leaks),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
