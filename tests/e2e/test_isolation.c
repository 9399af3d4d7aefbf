/* Account isolation end to end: account A (the one `imprint init` made) owns one of every
 * kind of entity; account B (from `imprint account create`) must see none of it, reach none
 * of it by id, point nothing at it, and name A's account nowhere. A's data must come out
 * untouched. One server for the whole file; the tests run in order and share it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static h_server S;
static h_account B;
static char b_jwt[2048];

/* A's entities. */
enum { E_DEVICE_TEMPLATE, E_CHANNEL_TEMPLATE, E_CUSTOM_FIELD, E_ORG_TEMPLATE, E_ORGANIZATION, E_DEVICE, E_API_KEY,
       E_ACCOUNT_USER, E_COUNT };

static const struct {
	const char *base;     /* collection path */
	const char *wrap;     /* the name one entity is wrapped in */
	const char *put_body; /* a valid PUT body, or NULL when there is no PUT route */
	int can_delete;
} KINDS[E_COUNT] = {
	[E_DEVICE_TEMPLATE] = {"/api/v1/devices/templates", "deviceTemplate", "{\"name\": \"taken over\"}", 1},
	[E_CHANNEL_TEMPLATE] = {"/api/v1/channels/templates", "channelTemplate", NULL, 1},
	[E_CUSTOM_FIELD] = {"/api/v1/devices/custom-fields", "deviceField", NULL, 1},
	[E_ORG_TEMPLATE] = {"/api/v1/organizations/templates", "organizationTemplate", "{\"name\": \"taken over\"}", 1},
	[E_ORGANIZATION] = {"/api/v1/organizations", "organization", "{\"name\": \"taken over\"}", 1},
	[E_DEVICE] = {"/api/v1/devices", "device", "{\"name\": \"taken over\"}", 1},
	[E_API_KEY] = {"/api/v1/api-keys", "apiKey", NULL, 1},
	[E_ACCOUNT_USER] = {"/api/v1/account-users", "accountUser", NULL, 1},
};

static char a_id[E_COUNT][64];
static char a_version[E_COUNT][32];
static char a_key[128];          /* the API key A made (shown once) */
static char b_template[64];      /* B's own device template */
static char b_device[64];        /* B's own device */

static const char *const NO_SUCH_ID = "01890a5d-ac96-774b-bcce-b302099a8057";

/* ---- helpers -------------------------------------------------------------------------- */

static void expect_error(const h_resp *r, long status, const char *code)
{
	if(r->status != status) fprintf(stderr, "expected %ld, got %ld: %s\n", status, r->status, r->body);
	assert_int_equal(r->status, status);
	assert_true(json_is_object(r->json));
	assert_int_equal(json_object_size(r->json), 1);
	json_t *err = json_object_get(r->json, "error");
	assert_true(json_is_object(err));
	assert_non_null(json_string_value(json_object_get(err, "code")));
	assert_non_null(json_string_value(json_object_get(err, "message")));
	if(code) assert_string_equal(json_string_value(json_object_get(err, "code")), code);
}

static void expect_error_target(const h_resp *r, long status, const char *code, const char *target)
{
	expect_error(r, status, code);
	assert_string_equal(h_str(r, "error.details.0.target"), target);
}

/* Asserts that no id of A's, nor A's account id, nor A's key occurs in text. */
static void assert_none_of_a(const char *what, const char *text)
{
	for(int i = 0; i < E_COUNT; i++) {
		if(strstr(text, a_id[i])) fail_msg("%s shows A's %s %s", what, KINDS[i].wrap, a_id[i]);
	}
	if(strstr(text, S.admin.account_id)) fail_msg("%s shows A's account id", what);
	if(strstr(text, a_key)) fail_msg("%s shows A's API key", what);
	if(strstr(text, "isolation-a")) fail_msg("%s shows a name of A's", what);
}

static void path_of(int kind, const char *id, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", KINDS[kind].base, id);
}

/* ---- setup ---------------------------------------------------------------------------- */

static int create(const char *token, const char *path, const char *body, const char *id_path, int kind, char *id_out)
{
	h_resp r = h_call(&S, "POST", path, token, body, NULL);
	int rc = -1;
	const char *id = h_str(&r, id_path);
	if(r.status == 201 && id) {
		snprintf(id_out, 64, "%s", id);
		if(kind >= 0) {
			char vp[96];
			snprintf(vp, sizeof vp, "%s.version", KINDS[kind].wrap);
			snprintf(a_version[kind], sizeof a_version[kind], "%s", h_str(&r, vp) ? h_str(&r, vp) : "");
			if(kind == E_API_KEY && h_str(&r, "apiKey.key")) snprintf(a_key, sizeof a_key, "%s", h_str(&r, "apiKey.key"));
		}
		rc = 0;
	} else {
		fprintf(stderr, "create %s: %ld %s\n", path, r.status, r.body);
	}
	h_resp_free(&r);
	return rc;
}

static int group_setup(void **state)
{
	if(h_server_start(&S)) return -1;
	if(h_account_create(&S, &B)) return -1;
	if(strcmp(B.account_id, S.admin.account_id) == 0) return -1;
	const char *ka = S.admin.api_key;
	char body[512];
	if(create(ka, KINDS[E_DEVICE_TEMPLATE].base, "{\"name\": \"isolation-a template\"}", "deviceTemplate.id",
	          E_DEVICE_TEMPLATE, a_id[E_DEVICE_TEMPLATE]))
		return -1;
	const char *tpl = a_id[E_DEVICE_TEMPLATE];
	snprintf(body, sizeof body,
	         "{\"name\": \"temperature\", \"entityType\": \"deviceTemplate\", \"entityId\": \"%s\","
	         " \"persistenceType\": \"timeSeries\"}", tpl);
	if(create(ka, KINDS[E_CHANNEL_TEMPLATE].base, body, "channelTemplate.id", E_CHANNEL_TEMPLATE,
	          a_id[E_CHANNEL_TEMPLATE]))
		return -1;
	snprintf(body, sizeof body,
	         "{\"deviceTemplateId\": \"%s\", \"name\": \"color\", \"fieldType\": \"string\", \"required\": false,"
	         " \"default\": \"isolation-a red\"}", tpl);
	if(create(ka, KINDS[E_CUSTOM_FIELD].base, body, "deviceField.id", E_CUSTOM_FIELD, a_id[E_CUSTOM_FIELD])) return -1;
	if(create(ka, KINDS[E_ORG_TEMPLATE].base, "{\"name\": \"isolation-a org template\"}", "organizationTemplate.id",
	          E_ORG_TEMPLATE, a_id[E_ORG_TEMPLATE]))
		return -1;
	snprintf(body, sizeof body, "{\"name\": \"isolation-a org\", \"organizationTemplateId\": \"%s\"}",
	         a_id[E_ORG_TEMPLATE]);
	if(create(ka, KINDS[E_ORGANIZATION].base, body, "organization.id", E_ORGANIZATION, a_id[E_ORGANIZATION])) return -1;
	snprintf(body, sizeof body,
	         "{\"deviceTemplateId\": \"%s\", \"organizationId\": \"%s\", \"serialNumber\": \"isolation-a-SN1\","
	         " \"name\": \"isolation-a device\"}", tpl, a_id[E_ORGANIZATION]);
	if(create(ka, KINDS[E_DEVICE].base, body, "device.id", E_DEVICE, a_id[E_DEVICE])) return -1;
	if(create(ka, KINDS[E_API_KEY].base, "{\"name\": \"isolation-a key\", \"scopes\": [\"read\"]}", "apiKey.id",
	          E_API_KEY, a_id[E_API_KEY]))
		return -1;
	if(!a_key[0]) return -1;
	if(create(ka, KINDS[E_ACCOUNT_USER].base,
	          "{\"emailAddress\": \"isolation-a-user@example.com\", \"password\": \"isolation-pw-1\","
	          " \"name\": \"isolation-a user\"}", "accountUser.id", E_ACCOUNT_USER, a_id[E_ACCOUNT_USER]))
		return -1;

	/* B's own template and device, and a logged-in user of B. */
	if(create(B.api_key, KINDS[E_DEVICE_TEMPLATE].base, "{\"name\": \"b template\"}", "deviceTemplate.id", -1, b_template))
		return -1;
	snprintf(body, sizeof body, "{\"deviceTemplateId\": \"%s\", \"serialNumber\": \"b-SN1\"}", b_template);
	if(create(B.api_key, KINDS[E_DEVICE].base, body, "device.id", -1, b_device)) return -1;
	if(h_login(&S, &B, b_jwt, sizeof b_jwt)) return -1;
	return 0;
}

static int group_teardown(void **state)
{
	int st = h_server_stop(&S);
	if(st != 0) fprintf(stderr, "server exit status %d; log kept at %s\n", st, S.log);
	else h_server_destroy(&S);
	return st == 0 ? 0 : -1;
}

/* ---- tests ---------------------------------------------------------------------------- */

/* A sees its own entities (the baseline for everything below). */
static void a_sees_its_own(void **state)
{
	char path[160];
	for(int i = 0; i < E_COUNT; i++) {
		path_of(i, a_id[i], path, sizeof path);
		h_resp r = h_call(&S, "GET", path, S.admin.api_key, NULL, NULL);
		assert_int_equal(r.status, 200);
		char idp[96], accp[96];
		snprintf(idp, sizeof idp, "%s.id", KINDS[i].wrap);
		snprintf(accp, sizeof accp, "%s.accountId", KINDS[i].wrap);
		assert_string_equal(h_str(&r, idp), a_id[i]);
		assert_string_equal(h_str(&r, accp), S.admin.account_id);
		h_resp_free(&r);
	}
	/* A's key works for A. */
	h_resp r = h_call(&S, "GET", "/api/v1/devices", a_key, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, a_id[E_DEVICE]));
	h_resp_free(&r);
}

/* For every id of A's, B gets the same 404 as for an id that never existed. */
static void b_gets_404_by_id(void **state)
{
	const char *tokens[] = {B.api_key, b_jwt};
	char path[160], ghost[160];
	for(size_t t = 0; t < 2; t++) {
		for(int i = 0; i < E_COUNT; i++) {
			path_of(i, a_id[i], path, sizeof path);
			path_of(i, NO_SUCH_ID, ghost, sizeof ghost);
			h_resp g0 = h_call(&S, "GET", ghost, tokens[t], NULL, NULL);
			expect_error(&g0, 404, "not_found");
			h_resp g = h_call(&S, "GET", path, tokens[t], NULL, NULL);
			expect_error(&g, 404, "not_found");
			assert_string_equal(g.body, g0.body);
			assert_none_of_a("GET", g.body);
			h_resp_free(&g);
			h_resp_free(&g0);
			if(KINDS[i].put_body) {
				h_resp p0 = h_call(&S, "PUT", ghost, tokens[t], KINDS[i].put_body, NULL);
				expect_error(&p0, 404, "not_found");
				h_resp p = h_call(&S, "PUT", path, tokens[t], KINDS[i].put_body, NULL);
				expect_error(&p, 404, "not_found");
				assert_string_equal(p.body, p0.body);
				h_resp_free(&p);
				h_resp_free(&p0);
				/* With A's version as precondition: still 404, not 412. */
				char etag[64];
				snprintf(etag, sizeof etag, "If-Match: %s", a_version[i]);
				p = h_call(&S, "PUT", path, tokens[t], KINDS[i].put_body, etag);
				expect_error(&p, 404, "not_found");
				h_resp_free(&p);
			} else {
				h_resp p = h_call(&S, "PUT", path, tokens[t], "{\"name\": \"taken over\"}", NULL);
				expect_error(&p, 405, "method_not_allowed");
				h_resp_free(&p);
			}
			if(KINDS[i].can_delete) {
				h_resp d0 = h_call(&S, "DELETE", ghost, tokens[t], NULL, NULL);
				expect_error(&d0, 404, "not_found");
				h_resp d = h_call(&S, "DELETE", path, tokens[t], NULL, NULL);
				expect_error(&d, 404, "not_found");
				assert_string_equal(d.body, d0.body);
				h_resp_free(&d);
				h_resp_free(&d0);
				char etag[64];
				snprintf(etag, sizeof etag, "Etag: \"%s\"", a_version[i]);
				d = h_call(&S, "DELETE", path, tokens[t], NULL, etag);
				expect_error(&d, 404, "not_found");
				h_resp_free(&d);
			}
		}
	}
}

/* B's lists, plain and filtered by A's ids, hold nothing of A's. */
static void b_lists_hold_nothing_of_a(void **state)
{
	const char *tokens[] = {B.api_key, b_jwt};
	char filtered[16][256];
	int nf = 0;
	snprintf(filtered[nf++], 256, "/api/v1/devices?deviceTemplateId=%s", a_id[E_DEVICE_TEMPLATE]);
	snprintf(filtered[nf++], 256, "/api/v1/devices?organizationId=%s", a_id[E_ORGANIZATION]);
	snprintf(filtered[nf++], 256, "/api/v1/devices?serialNumber=isolation-a-SN1");
	snprintf(filtered[nf++], 256, "/api/v1/devices?q=isolation");
	snprintf(filtered[nf++], 256, "/api/v1/devices/custom-fields?deviceTemplateId=%s", a_id[E_DEVICE_TEMPLATE]);
	snprintf(filtered[nf++], 256, "/api/v1/channels/templates?entityId=%s", a_id[E_DEVICE_TEMPLATE]);
	snprintf(filtered[nf++], 256, "/api/v1/organizations?organizationTemplateId=%s", a_id[E_ORG_TEMPLATE]);
	snprintf(filtered[nf++], 256, "/api/v1/organizations?name=isolation-a%%20org");
	snprintf(filtered[nf++], 256, "/api/v1/devices/templates?name=isolation-a%%20template");
	snprintf(filtered[nf++], 256, "/api/v1/api-keys?name=isolation-a%%20key");
	snprintf(filtered[nf++], 256, "/api/v1/account-users?emailAddress=isolation-a-user@example.com");
	snprintf(filtered[nf++], 256, "/api/v1/audit?entityId=%s", a_id[E_DEVICE]);
	snprintf(filtered[nf++], 256, "/api/v1/audit?entityId=%s", a_id[E_API_KEY]);
	static const struct {
		const char *path;
		const char *results;
	} lists[] = {
		{"/api/v1/devices?pageSize=1000", "devices.results"},
		{"/api/v1/devices/templates?pageSize=1000", "deviceTemplates.results"},
		{"/api/v1/devices/custom-fields?pageSize=1000", "deviceFields.results"},
		{"/api/v1/channels/templates?pageSize=1000", "channelTemplates.results"},
		{"/api/v1/organizations/templates?pageSize=1000", "organizationTemplates.results"},
		{"/api/v1/organizations?pageSize=1000", "organizations.results"},
		{"/api/v1/api-keys?pageSize=1000", "apiKeys.results"},
		{"/api/v1/account-users?pageSize=1000", "accountUsers.results"},
		{"/api/v1/audit?pageSize=1000", "auditEntries.results"},
	};
	for(size_t t = 0; t < 2; t++) {
		for(size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
			h_resp r = h_call(&S, "GET", lists[i].path, tokens[t], NULL, NULL);
			if(r.status != 200) fprintf(stderr, "%s: %ld %s\n", lists[i].path, r.status, r.body);
			assert_int_equal(r.status, 200);
			json_t *res = h_at(r.json, lists[i].results);
			assert_true(json_is_array(res));
			assert_none_of_a(lists[i].path, r.body);
			/* Every entry is B's. */
			size_t k;
			json_t *o;
			json_array_foreach(res, k, o) {
				assert_string_equal(json_string_value(json_object_get(o, "accountId")), B.account_id);
			}
			h_resp_free(&r);
		}
		for(int i = 0; i < nf; i++) {
			h_resp r = h_call(&S, "GET", filtered[i], tokens[t], NULL, NULL);
			if(r.status != 200) fprintf(stderr, "%s: %ld %s\n", filtered[i], r.status, r.body);
			assert_int_equal(r.status, 200);
			assert_none_of_a(filtered[i], r.body);
			/* The one list in the answer is empty and counts 0. */
			const char *name;
			json_t *inner;
			json_object_foreach(r.json, name, inner) {
				assert_int_equal(json_array_size(json_object_get(inner, "results")), 0);
				assert_int_equal(json_integer_value(h_at(inner, "meta.count")), 0);
			}
			h_resp_free(&r);
		}
	}
	/* B's own things are in B's lists (so the lists above were real). */
	h_resp r = h_call(&S, "GET", "/api/v1/devices", B.api_key, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(h_at(r.json, "devices.results")), 1);
	assert_string_equal(h_str(&r, "devices.results.0.id"), b_device);
	h_resp_free(&r);
}

/* B cannot point anything of its own at A's entities. */
static void b_cannot_reference_a(void **state)
{
	char body[512];
	h_resp r;
	/* A device of A's template. */
	snprintf(body, sizeof body, "{\"deviceTemplateId\": \"%s\", \"serialNumber\": \"b-steal\"}", a_id[E_DEVICE_TEMPLATE]);
	r = h_call(&S, "POST", "/api/v1/devices", B.api_key, body, NULL);
	expect_error_target(&r, 422, "unknown_reference", "deviceTemplateId");
	assert_none_of_a("POST device", r.body);
	h_resp_free(&r);
	/* The same answer as for a template that never existed. */
	snprintf(body, sizeof body, "{\"deviceTemplateId\": \"%s\", \"serialNumber\": \"b-steal\"}", NO_SUCH_ID);
	h_resp r0 = h_call(&S, "POST", "/api/v1/devices", B.api_key, body, NULL);
	expect_error_target(&r0, 422, "unknown_reference", "deviceTemplateId");
	h_resp_free(&r0);
	/* A device of B's template in A's organization. */
	snprintf(body, sizeof body, "{\"deviceTemplateId\": \"%s\", \"organizationId\": \"%s\"}", b_template,
	         a_id[E_ORGANIZATION]);
	r = h_call(&S, "POST", "/api/v1/devices", B.api_key, body, NULL);
	expect_error_target(&r, 422, "unknown_reference", "organizationId");
	h_resp_free(&r);
	/* B's device moved into A's organization. */
	char path[160];
	path_of(E_DEVICE, b_device, path, sizeof path);
	snprintf(body, sizeof body, "{\"organizationId\": \"%s\"}", a_id[E_ORGANIZATION]);
	r = h_call(&S, "PUT", path, B.api_key, body, NULL);
	expect_error_target(&r, 422, "unknown_reference", "organizationId");
	h_resp_free(&r);
	/* A custom field and a channel template on A's template. */
	snprintf(body, sizeof body, "{\"deviceTemplateId\": \"%s\", \"name\": \"b_field\", \"fieldType\": \"string\"}",
	         a_id[E_DEVICE_TEMPLATE]);
	r = h_call(&S, "POST", "/api/v1/devices/custom-fields", B.api_key, body, NULL);
	expect_error_target(&r, 422, "unknown_reference", "deviceTemplateId");
	h_resp_free(&r);
	snprintf(body, sizeof body, "{\"name\": \"b-channel\", \"entityType\": \"deviceTemplate\", \"entityId\": \"%s\"}",
	         a_id[E_DEVICE_TEMPLATE]);
	r = h_call(&S, "POST", "/api/v1/channels/templates", B.api_key, body, NULL);
	expect_error_target(&r, 422, "unknown_reference", "entityId");
	h_resp_free(&r);
	/* An organization under A's, or of A's organization template. */
	snprintf(body, sizeof body, "{\"name\": \"b org\", \"parentId\": \"%s\"}", a_id[E_ORGANIZATION]);
	r = h_call(&S, "POST", "/api/v1/organizations", B.api_key, body, NULL);
	expect_error_target(&r, 422, "unknown_reference", "parentId");
	h_resp_free(&r);
	snprintf(body, sizeof body, "{\"name\": \"b org\", \"organizationTemplateId\": \"%s\"}", a_id[E_ORG_TEMPLATE]);
	r = h_call(&S, "POST", "/api/v1/organizations", B.api_key, body, NULL);
	expect_error_target(&r, 422, "unknown_reference", "organizationTemplateId");
	h_resp_free(&r);
	/* A's custom field name is not a field of B's devices. */
	snprintf(body, sizeof body, "{\"deviceTemplateId\": \"%s\", \"color\": \"blue\"}", b_template);
	r = h_call(&S, "POST", "/api/v1/devices", B.api_key, body, NULL);
	expect_error_target(&r, 400, "unknown_field", "color");
	h_resp_free(&r);
	/* B made nothing in the attempts: still one device, one template, no organization. */
	r = h_call(&S, "GET", "/api/v1/devices", B.api_key, NULL, NULL);
	assert_int_equal(json_integer_value(h_at(r.json, "devices.meta.count")), 1);
	h_resp_free(&r);
	r = h_call(&S, "GET", "/api/v1/organizations", B.api_key, NULL, NULL);
	assert_int_equal(json_integer_value(h_at(r.json, "organizations.meta.count")), 0);
	h_resp_free(&r);
	r = h_call(&S, "GET", "/api/v1/devices/custom-fields", B.api_key, NULL, NULL);
	assert_int_equal(json_integer_value(h_at(r.json, "deviceFields.meta.count")), 0);
	h_resp_free(&r);
	r = h_call(&S, "GET", "/api/v1/channels/templates", B.api_key, NULL, NULL);
	assert_int_equal(json_integer_value(h_at(r.json, "channelTemplates.meta.count")), 0);
	h_resp_free(&r);
}

/* accountId naming another account, in a query or a body: 403. */
static void other_account_id_is_forbidden(void **state)
{
	const char *a = S.admin.account_id;
	char path[256], body[512];
	h_resp r;
	static const char *const lists[] = {"/api/v1/devices", "/api/v1/devices/templates", "/api/v1/organizations",
	                                    "/api/v1/devices/custom-fields", "/api/v1/channels/templates",
	                                    "/api/v1/api-keys", "/api/v1/account-users", "/api/v1/audit"};
	for(size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
		snprintf(path, sizeof path, "%s?accountId=%s", lists[i], a);
		r = h_call(&S, "GET", path, B.api_key, NULL, NULL);
		expect_error_target(&r, 403, "wrong_account", "accountId");
		assert_none_of_a(path, r.body);
		h_resp_free(&r);
	}
	/* GET one of B's own with A's accountId. */
	snprintf(path, sizeof path, "/api/v1/devices/%s?accountId=%s", b_device, a);
	r = h_call(&S, "GET", path, B.api_key, NULL, NULL);
	expect_error_target(&r, 403, "wrong_account", "accountId");
	h_resp_free(&r);
	/* Creating in A's account. */
	snprintf(body, sizeof body, "{\"accountId\": \"%s\", \"deviceTemplateId\": \"%s\"}", a, b_template);
	r = h_call(&S, "POST", "/api/v1/devices", B.api_key, body, NULL);
	expect_error_target(&r, 403, "wrong_account", "accountId");
	h_resp_free(&r);
	snprintf(body, sizeof body, "{\"accountId\": \"%s\", \"deviceTemplateId\": \"%s\"}", a, a_id[E_DEVICE_TEMPLATE]);
	r = h_call(&S, "POST", "/api/v1/devices", b_jwt, body, NULL);
	expect_error(&r, 403, "wrong_account");
	h_resp_free(&r);
	snprintf(body, sizeof body, "{\"accountId\": \"%s\", \"name\": \"b into a\"}", a);
	r = h_call(&S, "POST", "/api/v1/devices/templates", B.api_key, body, NULL);
	expect_error(&r, 403, "wrong_account");
	h_resp_free(&r);
	snprintf(body, sizeof body, "{\"accountId\": \"%s\", \"name\": \"b into a\", \"scopes\": [\"admin\"]}", a);
	r = h_call(&S, "POST", "/api/v1/api-keys", B.api_key, body, NULL);
	expect_error(&r, 403, "wrong_account");
	h_resp_free(&r);
	snprintf(body, sizeof body,
	         "{\"accountId\": \"%s\", \"emailAddress\": \"b-into-a@example.com\", \"password\": \"b-into-a-pw\"}", a);
	r = h_call(&S, "POST", "/api/v1/account-users", B.api_key, body, NULL);
	expect_error(&r, 403, "wrong_account");
	h_resp_free(&r);
	/* Moving B's device into A's account. */
	snprintf(path, sizeof path, "/api/v1/devices/%s", b_device);
	snprintf(body, sizeof body, "{\"accountId\": \"%s\"}", a);
	r = h_call(&S, "PUT", path, B.api_key, body, NULL);
	expect_error(&r, 403, "wrong_account");
	h_resp_free(&r);
	/* Updating A's device naming A's account: 403 (or 404), never 200. */
	path_of(E_DEVICE, a_id[E_DEVICE], path, sizeof path);
	snprintf(body, sizeof body, "{\"accountId\": \"%s\", \"name\": \"taken over\"}", a);
	r = h_call(&S, "PUT", path, B.api_key, body, NULL);
	assert_true(r.status == 403 || r.status == 404);
	expect_error(&r, r.status, NULL);
	h_resp_free(&r);
	/* accountId of the wrong type: 400. */
	snprintf(body, sizeof body, "{\"accountId\": 1, \"deviceTemplateId\": \"%s\"}", b_template);
	r = h_call(&S, "POST", "/api/v1/devices", B.api_key, body, NULL);
	expect_error(&r, 400, "invalid_type");
	h_resp_free(&r);
	/* Logging in to A's account with B's credentials. */
	json_t *lb = json_pack("{s:s, s:s, s:s}", "emailAddress", B.email, "password", B.password, "accountId", a);
	char *text = json_dumps(lb, JSON_COMPACT);
	json_decref(lb);
	r = h_call(&S, "POST", "/api/v1/auth/login-user", NULL, text, NULL);
	free(text);
	expect_error(&r, 401, "invalid_login");
	h_resp_free(&r);

	/* Naming one's own account is fine. */
	snprintf(path, sizeof path, "/api/v1/devices?accountId=%s", B.account_id);
	r = h_call(&S, "GET", path, B.api_key, NULL, NULL);
	assert_int_equal(r.status, 200);
	h_resp_free(&r);
	snprintf(path, sizeof path, "/api/v1/devices?accountId=%s", a);
	r = h_call(&S, "GET", path, S.admin.api_key, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, a_id[E_DEVICE]));
	h_resp_free(&r);
}

/* After everything B tried, A's entities are exactly as A left them. */
static void a_data_intact(void **state)
{
	char path[160];
	for(int i = 0; i < E_COUNT; i++) {
		path_of(i, a_id[i], path, sizeof path);
		h_resp r = h_call(&S, "GET", path, S.admin.api_key, NULL, NULL);
		assert_int_equal(r.status, 200);
		char p[96];
		snprintf(p, sizeof p, "%s.version", KINDS[i].wrap);
		assert_string_equal(h_str(&r, p), a_version[i]);
		snprintf(p, sizeof p, "%s.accountId", KINDS[i].wrap);
		assert_string_equal(h_str(&r, p), S.admin.account_id);
		assert_null(strstr(r.body, "taken over"));
		assert_null(strstr(r.body, B.account_id));
		h_resp_free(&r);
	}
	/* The device still has its organization, its custom field default and its channel. */
	path_of(E_DEVICE, a_id[E_DEVICE], path, sizeof path);
	h_resp r = h_call(&S, "GET", path, S.admin.api_key, NULL, NULL);
	assert_string_equal(h_str(&r, "device.organizationId"), a_id[E_ORGANIZATION]);
	assert_string_equal(h_str(&r, "device.deviceTemplateId"), a_id[E_DEVICE_TEMPLATE]);
	assert_string_equal(h_str(&r, "device.name"), "isolation-a device");
	assert_string_equal(h_str(&r, "device.color"), "isolation-a red");
	assert_int_equal(json_array_size(h_at(r.json, "device.channels")), 1);
	assert_string_equal(h_str(&r, "device.channels.0.channelTemplateId"), a_id[E_CHANNEL_TEMPLATE]);
	h_resp_free(&r);
	/* A's key still works. */
	r = h_call(&S, "GET", "/api/v1/devices/templates", a_key, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, a_id[E_DEVICE_TEMPLATE]));
	h_resp_free(&r);
	/* A's audit shows only A's creates for each entity: nothing B tried left a trace. */
	for(int i = 0; i < E_COUNT; i++) {
		snprintf(path, sizeof path, "/api/v1/audit?entityId=%s", a_id[i]);
		r = h_call(&S, "GET", path, S.admin.api_key, NULL, NULL);
		assert_int_equal(r.status, 200);
		json_t *res = h_at(r.json, "auditEntries.results");
		assert_int_equal(json_array_size(res), 1);
		assert_string_equal(h_str(&r, "auditEntries.results.0.action"), "create");
		assert_string_equal(h_str(&r, "auditEntries.results.0.accountId"), S.admin.account_id);
		h_resp_free(&r);
	}
	/* A's lists still hold everything, and none of B's. */
	static const struct {
		const char *path;
		int kind;
	} lists[] = {
		{"/api/v1/devices", E_DEVICE},
		{"/api/v1/devices/templates", E_DEVICE_TEMPLATE},
		{"/api/v1/devices/custom-fields", E_CUSTOM_FIELD},
		{"/api/v1/channels/templates", E_CHANNEL_TEMPLATE},
		{"/api/v1/organizations/templates", E_ORG_TEMPLATE},
		{"/api/v1/organizations", E_ORGANIZATION},
		{"/api/v1/api-keys", E_API_KEY},
		{"/api/v1/account-users", E_ACCOUNT_USER},
	};
	for(size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
		r = h_call(&S, "GET", lists[i].path, S.admin.api_key, NULL, NULL);
		assert_int_equal(r.status, 200);
		assert_non_null(strstr(r.body, a_id[lists[i].kind]));
		assert_null(strstr(r.body, B.account_id));
		assert_null(strstr(r.body, b_device));
		assert_null(strstr(r.body, b_template));
		h_resp_free(&r);
	}
	/* And A can still delete its own (the 404s B got were not because the ids were odd). */
	path_of(E_API_KEY, a_id[E_API_KEY], path, sizeof path);
	r = h_call(&S, "DELETE", path, S.admin.api_key, NULL, NULL);
	assert_int_equal(r.status, 204);
	h_resp_free(&r);
	r = h_call(&S, "GET", "/api/v1/devices", a_key, NULL, NULL);
	expect_error(&r, 401, "invalid_token");
	h_resp_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_sees_its_own),
		cmocka_unit_test(b_gets_404_by_id),
		cmocka_unit_test(b_lists_hold_nothing_of_a),
		cmocka_unit_test(b_cannot_reference_a),
		cmocka_unit_test(other_account_id_is_forbidden),
		cmocka_unit_test(a_data_intact),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
