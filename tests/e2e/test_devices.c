/* End-to-end: devices (create, read, partial update, versions, delete) and device lists
 * (every filter, paging, sorting, cursors), against a real `imprint serve` (one per file).
 * Cases are tables of {method, path, body, status, error code, details target, checked
 * value}; paths and bodies name earlier ids as {VAR} and long strings as {c*N}.
 *
 * provisioningState, connected, disabled and firmwareVersion are set only by the server
 * (credentials, the broker, firmware). To list by them before those paths exist, the
 * filter test writes them straight into the store's columns of a separate account. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "harness.h"



/* ---------------------------------------------------------------- create and read */

static const char *const DEVICE_KEYS[] = {
	"id", "accountId", "deviceTemplateId", "organizationId", "serialNumber", "provisioningState", "connected",
	"lastConnected", "firmwareVersion", "disabled", "name", "deviceVersion", "location", "purchaseDate", "channels",
	"created", "createdById", "lastModified", "lastModifiedById", "version", NULL};

static void create_device(void **state)
{
	setvar("ACCT", S.admin.account_id);
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"Meter\"}", "DT"));
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"Valve\"}", "DT2"));
	json_decref(create("/api/v1/channels/templates", "channelTemplate",
	                   "{\"name\":\"status\",\"entityType\":\"deviceTemplate\",\"entityId\":\"{DT2}\",\"permission\":\"publish\"}",
	                   "CH"));
	json_decref(create("/api/v1/organizations", "organization", "{\"name\":\"Factory\"}", "ORG"));

	json_t *d = create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{DT}\",\"serialNumber\":\"SN-1\"}", "D1");
	const char *id = json_string_value(json_object_get(d, "id"));
	assert_uuid7(id);
	assert_string_equal(json_string_value(json_object_get(d, "accountId")), S.admin.account_id);
	assert_string_equal(json_string_value(json_object_get(d, "deviceTemplateId")), getvar("DT"));
	assert_string_equal(json_string_value(json_object_get(d, "serialNumber")), "SN-1");
	assert_string_equal(json_string_value(json_object_get(d, "provisioningState")), "defined");
	assert_true(json_is_false(json_object_get(d, "connected")));
	assert_true(json_is_false(json_object_get(d, "disabled")));
	assert_true(json_is_null(json_object_get(d, "organizationId")));
	assert_true(json_is_null(json_object_get(d, "lastConnected")));
	assert_true(json_is_null(json_object_get(d, "firmwareVersion")));
	assert_true(json_is_null(json_object_get(d, "name")));
	assert_true(json_is_null(json_object_get(d, "deviceVersion")));
	assert_true(json_is_null(json_object_get(d, "location")));
	assert_true(json_is_null(json_object_get(d, "purchaseDate")));
	assert_true(json_is_array(json_object_get(d, "channels")));
	assert_int_equal(json_array_size(json_object_get(d, "channels")), 0);
	assert_string_equal(json_string_value(json_object_get(d, "version")), "1");
	assert_timestamp(json_string_value(json_object_get(d, "created")));
	assert_string_equal(json_string_value(json_object_get(d, "created")), json_string_value(json_object_get(d, "lastModified")));
	assert_non_null(json_string_value(json_object_get(d, "createdById")));
	assert_string_equal(json_string_value(json_object_get(d, "createdById")),
	                    json_string_value(json_object_get(d, "lastModifiedById")));
	/* exactly the documented properties (no custom fields on this template) */
	for(int i = 0; DEVICE_KEYS[i]; i++) {
		if(!json_object_get(d, DEVICE_KEYS[i])) fail_msg("device lacks %s", DEVICE_KEYS[i]);
	}
	const char *key;
	json_t *v;
	json_object_foreach(d, key, v) {
		int known = 0;
		for(int i = 0; DEVICE_KEYS[i]; i++) known |= strcmp(key, DEVICE_KEYS[i]) == 0;
		if(!known) fail_msg("device has an undocumented property %s", key);
	}

	/* Version 7 ids sort by creation; serial numbers need not be unique. */
	json_t *d2 = create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{DT}\",\"serialNumber\":\"SN-1\"}", "D2");
	assert_uuid7(json_string_value(json_object_get(d2, "id")));
	assert_true(strcmp(json_string_value(json_object_get(d2, "id")), id) > 0);
	json_decref(d2);
	json_decref(d);

	/* Every built-in field, and the channels of the template, with full topics. */
	d = create("/api/v1/devices", "device",
	           "{\"deviceTemplateId\":\"{DT2}\",\"serialNumber\":\"V-1\",\"organizationId\":\"{ORG}\",\"name\":\"Valve one\","
	           "\"deviceVersion\":\"rev B\",\"location\":\"Hall 3\",\"purchaseDate\":\"2026-01-02T03:04:05.006Z\",\"accountId\":\"{ACCT}\"}",
	           "D3");
	assert_string_equal(json_string_value(json_object_get(d, "organizationId")), getvar("ORG"));
	assert_string_equal(json_string_value(json_object_get(d, "name")), "Valve one");
	assert_string_equal(json_string_value(json_object_get(d, "deviceVersion")), "rev B");
	assert_string_equal(json_string_value(json_object_get(d, "location")), "Hall 3");
	assert_string_equal(json_string_value(json_object_get(d, "purchaseDate")), "2026-01-02T03:04:05.006Z");
	json_t *chs = json_object_get(d, "channels");
	assert_int_equal(json_array_size(chs), 1);
	char topic[256];
	snprintf(topic, sizeof topic, "xi/blue/v1/%s/d/%s/status", S.admin.account_id, getvar("D3"));
	assert_string_equal(json_string_value(h_at(chs, "0.channel")), topic);
	assert_string_equal(json_string_value(h_at(chs, "0.permission")), "publish");
	assert_string_equal(json_string_value(h_at(chs, "0.persistenceType")), "simple");
	assert_string_equal(json_string_value(h_at(chs, "0.channelTemplateName")), "status");
	assert_string_equal(json_string_value(h_at(chs, "0.channelTemplateId")), getvar("CH"));
	json_decref(d);

	/* GET returns the same object, with the version in the Etag header. */
	h_resp r = api("GET", "/api/v1/devices/{D3}", NULL);
	check_resp(&r, 200, NULL, NULL, "get D3");
	check_at(&r, "device.id", "\"{D3}\"", "get D3");
	assert_string_equal(h_str(&r, "device.channels.0.channel"), topic);
	assert_string_equal(r.etag, "1");
	check_at(&r, "device.version", "\"1\"", "get D3");
	check_at(&r, "device.location", "\"Hall 3\"", "get D3");
	h_resp_free(&r);

	/* A provisioning-scoped key may create; a read key may not. */
	h_resp k = api("POST", "/api/v1/api-keys", "{\"name\":\"rig\",\"scopes\":[\"provisioning\"]}");
	check_resp(&k, 201, NULL, NULL, "provisioning key");
	char prov[128];
	snprintf(prov, sizeof prov, "%s", h_str(&k, "apiKey.key"));
	h_resp_free(&k);
	k = api("POST", "/api/v1/api-keys", "{\"name\":\"ro\",\"scopes\":[\"read\"]}");
	check_resp(&k, 201, NULL, NULL, "read key");
	char ro[128];
	snprintf(ro, sizeof ro, "%s", h_str(&k, "apiKey.key"));
	h_resp_free(&k);
	r = api_as(prov, "POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{DT}\",\"serialNumber\":\"rig-1\"}", NULL);
	check_resp(&r, 201, NULL, NULL, "create with a provisioning key");
	setvar("DRIG", h_str(&r, "device.id"));
	h_resp_free(&r);
	r = api_as(prov, "DELETE", "/api/v1/devices/{DRIG}", NULL, NULL);
	check_resp(&r, 403, "insufficient_scope", NULL, "delete with a provisioning key");
	h_resp_free(&r);
	r = api_as(ro, "POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{DT}\"}", NULL);
	check_resp(&r, 403, "insufficient_scope", NULL, "create with a read key");
	h_resp_free(&r);
	r = api_as(ro, "GET", "/api/v1/devices/{DRIG}", NULL, NULL);
	check_resp(&r, 200, NULL, NULL, "get with a read key");
	h_resp_free(&r);
	r = api_as("not-a-key", "GET", "/api/v1/devices/{DRIG}", NULL, NULL);
	check_resp(&r, 401, NULL, NULL, "get with a bad key");
	h_resp_free(&r);

	/* A list mixing templates gives each device its own template's channels. */
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{DT2}\"}", NULL));
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{DT}\"}", NULL));
	const char *orders[] = {"/api/v1/devices?pageSize=1000", "/api/v1/devices?pageSize=1000&sortOrder=desc",
	                        "/api/v1/devices?pageSize=1000&sortBy=serialNumber"};
	for(size_t o = 0; o < sizeof orders / sizeof orders[0]; o++) {
		r = api("GET", orders[o], NULL);
		check_resp(&r, 200, NULL, NULL, orders[o]);
		json_t *res = h_at(r.json, "devices.results");
		assert_int_equal(json_array_size(res), 6);
		size_t i;
		json_t *dv;
		int with = 0;
		json_array_foreach(res, i, dv) {
			int is2 = strcmp(json_string_value(json_object_get(dv, "deviceTemplateId")), getvar("DT2")) == 0;
			json_t *c = json_object_get(dv, "channels");
			assert_int_equal(json_array_size(c), is2 ? 1 : 0);
			if(is2) {
				snprintf(topic, sizeof topic, "xi/blue/v1/%s/d/%s/status", S.admin.account_id,
				         json_string_value(json_object_get(dv, "id")));
				assert_string_equal(json_string_value(h_at(c, "0.channel")), topic);
				with++;
			}
		}
		assert_int_equal(with, 2);
		h_resp_free(&r);
	}
}

static void create_rejects(void **state)
{
#define DEV(extra) "{\"deviceTemplateId\":\"{DT}\"" extra "}"
	const tcase cases[] = {
		/* the platform assigns ids and every server-set field */
		E("POST", "/api/v1/devices", DEV(",\"id\":\"0190a0b0-0000-7000-8000-000000000000\""), 400, "read_only_field", "id"),
		E("POST", "/api/v1/devices", DEV(",\"id\":\"mine\""), 400, "read_only_field", "id"),
		E("POST", "/api/v1/devices", DEV(",\"provisioningState\":\"defined\""), 400, "read_only_field", "provisioningState"),
		E("POST", "/api/v1/devices", DEV(",\"provisioningState\":\"activated\""), 400, "read_only_field", "provisioningState"),
		E("POST", "/api/v1/devices", DEV(",\"connected\":false"), 400, "read_only_field", "connected"),
		E("POST", "/api/v1/devices", DEV(",\"connected\":true"), 400, "read_only_field", "connected"),
		E("POST", "/api/v1/devices", DEV(",\"disabled\":true"), 400, "read_only_field", "disabled"),
		E("POST", "/api/v1/devices", DEV(",\"lastConnected\":null"), 400, "read_only_field", "lastConnected"),
		E("POST", "/api/v1/devices", DEV(",\"firmwareVersion\":\"1.0\""), 400, "read_only_field", "firmwareVersion"),
		E("POST", "/api/v1/devices", DEV(",\"version\":\"1\""), 400, "read_only_field", "version"),
		E("POST", "/api/v1/devices", DEV(",\"channels\":[]"), 400, "read_only_field", "channels"),
		E("POST", "/api/v1/devices", DEV(",\"created\":\"2026-01-01T00:00:00.000Z\""), 400, "read_only_field", "created"),
		E("POST", "/api/v1/devices", DEV(",\"createdById\":\"x\""), 400, "read_only_field", "createdById"),
		E("POST", "/api/v1/devices", DEV(",\"lastModified\":\"2026-01-01T00:00:00.000Z\""), 400, "read_only_field", "lastModified"),
		/* serialNumber and name lengths */
		V("POST", "/api/v1/devices", DEV(",\"serialNumber\":\"{9*128}\""), 201, "device.serialNumber", "\"{9*128}\""),
		E("POST", "/api/v1/devices", DEV(",\"serialNumber\":\"{9*129}\""), 422, "invalid_field", "serialNumber"),
		V("POST", "/api/v1/devices", DEV(",\"serialNumber\":\"{\xe2\x82\xac*128}\""), 201, "device.serialNumber", "\"{\xe2\x82\xac*128}\""),
		E("POST", "/api/v1/devices", DEV(",\"serialNumber\":\"{\xe2\x82\xac*129}\""), 422, "invalid_field", "serialNumber"),
		V("POST", "/api/v1/devices", DEV(",\"serialNumber\":null"), 201, "device.serialNumber", "null"),
		E("POST", "/api/v1/devices", DEV(",\"serialNumber\":12345"), 400, "invalid_type", "serialNumber"),
		V("POST", "/api/v1/devices", DEV(",\"name\":\"{n*128}\""), 201, "device.name", "\"{n*128}\""),
		E("POST", "/api/v1/devices", DEV(",\"name\":\"{n*129}\""), 422, "invalid_field", "name"),
		V("POST", "/api/v1/devices", DEV(",\"location\":\"{l*4096}\""), 201, "device.location", "\"{l*4096}\""),
		E("POST", "/api/v1/devices", DEV(",\"location\":\"{l*4097}\""), 422, "invalid_field", "location"),
		E("POST", "/api/v1/devices", DEV(",\"deviceVersion\":\"{v*129}\""), 422, "invalid_field", "deviceVersion"),
		E("POST", "/api/v1/devices", DEV(",\"purchaseDate\":\"last year\""), 422, "invalid_field", "purchaseDate"),
		E("POST", "/api/v1/devices", DEV(",\"purchaseDate\":20260101"), 400, "invalid_type", "purchaseDate"),
		/* references */
		E("POST", "/api/v1/devices", "{\"serialNumber\":\"x\"}", 422, "missing_field", "deviceTemplateId"),
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"0190a0b0-0000-7000-8000-000000000000\"}", 422, "unknown_reference", "deviceTemplateId"),
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{ORG}\"}", 422, "unknown_reference", "deviceTemplateId"),
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"meter\"}", 422, "invalid_field", "deviceTemplateId"),
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":7}", 400, "invalid_type", "deviceTemplateId"),
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":null}", 400, "invalid_type", "deviceTemplateId"),
		E("POST", "/api/v1/devices", DEV(",\"organizationId\":\"0190a0b0-0000-7000-8000-000000000000\""), 422, "unknown_reference", "organizationId"),
		E("POST", "/api/v1/devices", DEV(",\"organizationId\":\"{DT}\""), 422, "unknown_reference", "organizationId"),
		V("POST", "/api/v1/devices", DEV(",\"organizationId\":null"), 201, "device.organizationId", "null"),
		/* unknown fields, accounts, malformed bodies */
		E("POST", "/api/v1/devices", DEV(",\"colour\":\"red\""), 400, "unknown_field", "colour"),
		E("POST", "/api/v1/devices", DEV(",\"accountId\":\"0190a0b0-0000-7000-8000-000000000000\""), 403, "wrong_account", "accountId"),
		E("POST", "/api/v1/devices", DEV(",\"accountId\":5"), 400, "invalid_type", "accountId"),
		E("POST", "/api/v1/devices", "", 400, "malformed_json", NULL),
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":", 400, "malformed_json", NULL),
		E("POST", "/api/v1/devices", "[{\"deviceTemplateId\":\"{DT}\"}]", 400, "malformed_json", NULL),
		E("POST", "/api/v1/devices", "\"device\"", 400, "malformed_json", NULL),
		/* reads */
		E("GET", "/api/v1/devices/0190a0b0-0000-7000-8000-000000000000", NULL, 404, "not_found", NULL),
		E("GET", "/api/v1/devices/not-a-uuid", NULL, 404, "not_found", NULL),
		E("GET", "/api/v1/devices/{DT}", NULL, 404, "not_found", NULL),
		E("GET", "/api/v1/devices/{D1}x", NULL, 404, NULL, NULL),
		E("GET", "/api/v1/devices/{D1}?colour=red", NULL, 400, "unknown_parameter", "colour"),
		E("GET", "/api/v1/devices/{D1}?accountId=0190a0b0-0000-7000-8000-000000000000", NULL, 403, "wrong_account", "accountId"),
		V("GET", "/api/v1/devices/{D1}?accountId={ACCT}", NULL, 200, "device.id", "\"{D1}\""),
		V("GET", "/api/v1/devices/{D1}/", NULL, 200, "device.id", "\"{D1}\""),
		E("DELETE", "/api/v1/devices/0190a0b0-0000-7000-8000-000000000000", NULL, 404, "not_found", NULL),
		E("PUT", "/api/v1/devices/0190a0b0-0000-7000-8000-000000000000", "{\"name\":\"x\"}", 404, "not_found", NULL),
		E("PATCH", "/api/v1/devices/{D1}", "{\"name\":\"x\"}", 405, "method_not_allowed", NULL),
	};
#undef DEV
	run_cases(cases, sizeof cases / sizeof cases[0]);
}

/* ---------------------------------------------------------------- update */

static void update_partial(void **state)
{
	json_decref(create("/api/v1/devices", "device",
	                   "{\"deviceTemplateId\":\"{DT}\",\"serialNumber\":\"U-1\",\"name\":\"before\",\"location\":\"lab\","
	                   "\"deviceVersion\":\"1\",\"purchaseDate\":\"2025-05-05T05:05:05.555Z\"}",
	                   "DU"));
	const tcase cases[] = {
		V("PUT", "/api/v1/devices/{DU}", "{\"name\":\"after\"}", 200, "device.name", "\"after\""),
		V("GET", "/api/v1/devices/{DU}", NULL, 200, "device.serialNumber", "\"U-1\""),
		V("GET", "/api/v1/devices/{DU}", NULL, 200, "device.location", "\"lab\""),
		V("GET", "/api/v1/devices/{DU}", NULL, 200, "device.deviceVersion", "\"1\""),
		V("GET", "/api/v1/devices/{DU}", NULL, 200, "device.purchaseDate", "\"2025-05-05T05:05:05.555Z\""),
		V("GET", "/api/v1/devices/{DU}", NULL, 200, "device.name", "\"after\""),
		V("GET", "/api/v1/devices/{DU}", NULL, 200, "device.version", "\"2\""),
		V("GET", "/api/v1/devices/{DU}", NULL, 200, "device.provisioningState", "\"defined\""),
		V("PUT", "/api/v1/devices/{DU}", "{}", 200, "device.version", "\"3\""),
		V("PUT", "/api/v1/devices/{DU}", "{\"organizationId\":\"{ORG}\",\"serialNumber\":\"U-2\"}", 200, "device.organizationId", "\"{ORG}\""),
		V("GET", "/api/v1/devices/{DU}", NULL, 200, "device.serialNumber", "\"U-2\""),
		V("GET", "/api/v1/devices/{DU}", NULL, 200, "device.name", "\"after\""),
		V("PUT", "/api/v1/devices/{DU}", "{\"organizationId\":null,\"location\":null}", 200, "device.organizationId", "null"),
		V("GET", "/api/v1/devices/{DU}", NULL, 200, "device.location", "null"),
		V("PUT", "/api/v1/devices/{DU}", "{\"deviceTemplateId\":\"{DT}\"}", 200, "device.deviceTemplateId", "\"{DT}\""),
		E("PUT", "/api/v1/devices/{DU}", "{\"deviceTemplateId\":\"{DT2}\"}", 422, "immutable_field", "deviceTemplateId"),
		E("PUT", "/api/v1/devices/{DU}", "{\"id\":\"{DU}\"}", 400, "read_only_field", "id"),
		E("PUT", "/api/v1/devices/{DU}", "{\"provisioningState\":\"associated\"}", 400, "read_only_field", "provisioningState"),
		E("PUT", "/api/v1/devices/{DU}", "{\"connected\":true}", 400, "read_only_field", "connected"),
		E("PUT", "/api/v1/devices/{DU}", "{\"disabled\":true}", 400, "read_only_field", "disabled"),
		E("PUT", "/api/v1/devices/{DU}", "{\"firmwareVersion\":\"2\"}", 400, "read_only_field", "firmwareVersion"),
		E("PUT", "/api/v1/devices/{DU}", "{\"version\":\"5\"}", 400, "read_only_field", "version"),
		E("PUT", "/api/v1/devices/{DU}", "{\"channels\":[]}", 400, "read_only_field", "channels"),
		E("PUT", "/api/v1/devices/{DU}", "{\"lastModified\":\"2026-01-01T00:00:00.000Z\"}", 400, "read_only_field", "lastModified"),
		E("PUT", "/api/v1/devices/{DU}", "{\"serialNumber\":\"{9*129}\"}", 422, "invalid_field", "serialNumber"),
		E("PUT", "/api/v1/devices/{DU}", "{\"organizationId\":\"0190a0b0-0000-7000-8000-000000000000\"}", 422, "unknown_reference", "organizationId"),
		E("PUT", "/api/v1/devices/{DU}", "{\"name\":1}", 400, "invalid_type", "name"),
		E("PUT", "/api/v1/devices/{DU}", "{\"colour\":\"red\"}", 400, "unknown_field", "colour"),
		E("PUT", "/api/v1/devices/{DU}", "[]", 400, "malformed_json", NULL),
		E("PUT", "/api/v1/devices/{DU}", "", 400, "malformed_json", NULL),
		/* refused updates changed nothing */
		V("GET", "/api/v1/devices/{DU}", NULL, 200, "device.version", "\"6\""),
		V("GET", "/api/v1/devices/{DU}", NULL, 200, "device.serialNumber", "\"U-2\""),
		V("GET", "/api/v1/devices/{DU}", NULL, 200, "device.name", "\"after\""),
		V("GET", "/api/v1/devices/{DU}", NULL, 200, "device.organizationId", "null"),
		V("PUT", "/api/v1/devices/{DU}", "{\"serialNumber\":\"{9*128}\"}", 200, "device.serialNumber", "\"{9*128}\""),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);

	/* lastModified moves, created stays. */
	h_resp r = api("GET", "/api/v1/devices/{DU}", NULL);
	check_resp(&r, 200, NULL, NULL, "get DU");
	assert_timestamp(h_str(&r, "device.lastModified"));
	assert_true(strcmp(h_str(&r, "device.lastModified"), h_str(&r, "device.created")) >= 0);
	h_resp_free(&r);
}

/* ---------------------------------------------------------------- versions */

static h_resp call_v(const char *method, const char *path, const char *body, const char *header)
{
	return api_as(S.admin.api_key, method, path, body, header);
}

static void versions(void **state)
{
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{DT}\",\"serialNumber\":\"E-1\"}", "DV"));
	/* GET's Etag equals the body's version */
	h_resp r = call_v("GET", "/api/v1/devices/{DV}", NULL, NULL);
	check_resp(&r, 200, NULL, NULL, "get DV");
	assert_string_equal(r.etag, "1");
	assert_string_equal(h_str(&r, "device.version"), r.etag);
	h_resp_free(&r);

	static const struct {
		const char *header; /* {V} is the current version, {OLD} a past one */
		long status;
		const char *name;
	} puts[] = {
		{"If-Match: {V}", 200, "a"},
		{"If-Match: {OLD}", 412, "b"},
		{"If-Match: \"{V}\"", 200, "c"},
		{"Etag: {V}", 200, "d"},
		{"Etag: {OLD}", 412, "e"},
		{"Etag: \"{V}\"", 200, "f"},
		{"ETag: \"{OLD}\"", 412, "g"},
		{"etag: {V}", 200, "h"},
		{"if-match: {OLD}", 412, "i"},
		{"If-Match: W/\"{V}\"", 200, "j"},
		{"If-Match: 999", 412, "k"},
		{"If-Match: garbage", 412, "l"},
		{"If-Match: 0", 412, "m"},
		{NULL, 200, "o"},         /* no header: the write goes through */
	};
	char cur[64] = "1", old[64] = "1";
	for(size_t i = 0; i < sizeof puts / sizeof puts[0]; i++) {
		char what[128], body[64], hdr[96] = "";
		setvar("V", cur);
		setvar("OLD", old);
		char *h = expand(puts[i].header);
		if(h) snprintf(hdr, sizeof hdr, "%s", h);
		free(h);
		snprintf(what, sizeof what, "PUT %zu with [%s]", i, hdr);
		snprintf(body, sizeof body, "{\"name\":\"%s\"}", puts[i].name);
		r = call_v("PUT", "/api/v1/devices/{DV}", body, puts[i].header ? hdr : NULL);
		if(puts[i].status == 412) {
			check_resp(&r, 412, "version_mismatch", "version", what);
		} else {
			check_resp(&r, 200, NULL, NULL, what);
			if(strcmp(h_str(&r, "device.name"), puts[i].name) != 0) fail_msg("%s: name not written", what);
			if(strcmp(r.etag, h_str(&r, "device.version")) != 0) fail_msg("%s: Etag %s vs %s", what, r.etag, r.body);
			if(strcmp(r.etag, cur) == 0) fail_msg("%s: version did not change", what);
			snprintf(old, sizeof old, "%s", cur);
			snprintf(cur, sizeof cur, "%s", r.etag);
		}
		h_resp_free(&r);
		/* after every attempt the entity holds the last successful write */
		r = call_v("GET", "/api/v1/devices/{DV}", NULL, NULL);
		check_resp(&r, 200, NULL, NULL, what);
		if(strcmp(r.etag, cur) != 0 || strcmp(h_str(&r, "device.version"), cur) != 0)
			fail_msg("%s: GET shows version %s, want %s", what, r.etag, cur);
		h_resp_free(&r);
	}

	/* DELETE: stale 412 (device kept), current 204, then 404. */
	setvar("V", cur);
	setvar("OLD", old);
	const struct {
		const char *header;
		long status;
		const char *code;
	} dels[] = {
		{"If-Match: {OLD}", 412, "version_mismatch"},
		{"Etag: \"{OLD}\"", 412, "version_mismatch"},
		{"If-Match: nope", 412, "version_mismatch"},
		{"Etag: \"{V}\"", 204, NULL},
		{"Etag: \"{V}\"", 404, "not_found"},
		{NULL, 404, "not_found"},
	};
	for(size_t i = 0; i < sizeof dels / sizeof dels[0]; i++) {
		char what[128], hdr[96] = "";
		char *h = expand(dels[i].header);
		if(h) snprintf(hdr, sizeof hdr, "%s", h);
		free(h);
		snprintf(what, sizeof what, "DELETE %zu with [%s]", i, hdr);
		r = call_v("DELETE", "/api/v1/devices/{DV}", NULL, dels[i].header ? hdr : NULL);
		check_resp(&r, dels[i].status, dels[i].code, dels[i].code && dels[i].status == 412 ? "version" : NULL, what);
		h_resp_free(&r);
		r = call_v("GET", "/api/v1/devices/{DV}", NULL, NULL);
		check_resp(&r, dels[i].status == 412 ? 200 : 404, dels[i].status == 412 ? NULL : "not_found", NULL, what);
		h_resp_free(&r);
	}
	r = call_v("PUT", "/api/v1/devices/{DV}", "{\"name\":\"ghost\"}", NULL);
	check_resp(&r, 404, "not_found", NULL, "PUT after delete");
	h_resp_free(&r);
	r = call_v("PUT", "/api/v1/devices/{DV}", "{\"name\":\"ghost\"}", "If-Match: 1");
	check_resp(&r, 404, "not_found", NULL, "PUT with a version after delete");
	h_resp_free(&r);
}

/* ---------------------------------------------------------------- lists: filters */

/* Writes the server-set columns of a device straight into the store. */
static void set_server_fields(const char *id, const char *state, int connected, int disabled, const char *firmware)
{
	char path[400];
	sqlite3 *db;
	sqlite3_stmt *st;
	snprintf(path, sizeof path, "%s/imprint.db", S.data);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 10000);
	assert_int_equal(sqlite3_prepare_v2(db,
	                                    "UPDATE devices SET state = ?, connected = ?, disabled = ?, firmware_version = ?,"
	                                    " version = version + 1 WHERE id = ?",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, connected);
	sqlite3_bind_int(st, 3, disabled);
	if(firmware) sqlite3_bind_text(st, 4, firmware, -1, SQLITE_STATIC);
	else sqlite3_bind_null(st, 4);
	sqlite3_bind_text(st, 5, id, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	assert_int_equal(sqlite3_changes(db), 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* The ids of a list answer's results, in order, as one comma-separated string. */
static void result_ids(const h_resp *r, const char *plural, char *out, size_t cap)
{
	char path[64];
	snprintf(path, sizeof path, "%s.results", plural);
	json_t *res = h_at(r->json, path);
	size_t i, n = 0;
	json_t *v;
	out[0] = '\0';
	assert_true(json_is_array(res));
	json_array_foreach(res, i, v) {
		const char *id = json_string_value(json_object_get(v, "id"));
		assert_non_null(id);
		n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "," : "", id);
		assert_true(n < cap);
	}
}

typedef struct {
	const char *tpl, *org, *serial, *name, *state;
	int connected, disabled;
	const char *firmware;
} fdev;

static const fdev FDEVS[] = {
	/* 0 */ {"FA", "O1", "SN-100", "kitchen", "defined", 0, 0, NULL},
	/* 1 */ {"FA", "O1", "SN-101", "hall", "activated", 1, 0, "1.0.0"},
	/* 2 */ {"FA", NULL, "SN-200", "kitchen-2", "associated", 0, 1, "1.0.0"},
	/* 3 */ {"FB", "O2", "SN-201", "garage", "activated", 1, 1, "2.0.0"},
	/* 4 */ {"FB", NULL, "XY-1", "SN-shadow", "defined", 0, 0, NULL},
	/* 5 */ {"FB", "O2", "SN-100", NULL, "activated", 0, 0, "2.0.0"},
	/* 6 */ {"FA", NULL, NULL, "attic", "defined", 0, 0, NULL},
	/* 7 */ {"FB", "O1", "sn-100", "Kitchen", "associated", 1, 0, "1.0.0-rc1"},
};
#define NFDEV (sizeof FDEVS / sizeof FDEVS[0])

static void list_filters(void **state)
{
	/* A fresh account, so its lists hold exactly these devices. */
	h_account acct;
	assert_int_equal(h_account_create(&S, &acct), 0);
	TOKEN = acct.api_key;
	setvar("ACCT2", acct.account_id);
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"A\"}", "FA"));
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"B\"}", "FB"));
	json_decref(create("/api/v1/organizations", "organization", "{\"name\":\"One\"}", "O1"));
	json_decref(create("/api/v1/organizations", "organization", "{\"name\":\"Two\"}", "O2"));
	char ids[NFDEV][40];
	for(size_t i = 0; i < NFDEV; i++) {
		const fdev *f = &FDEVS[i];
		json_t *b = json_pack("{s:s}", "deviceTemplateId", getvar(f->tpl));
		if(f->org) json_object_set_new(b, "organizationId", json_string(getvar(f->org)));
		if(f->serial) json_object_set_new(b, "serialNumber", json_string(f->serial));
		if(f->name) json_object_set_new(b, "name", json_string(f->name));
		char *text = json_dumps(b, JSON_COMPACT);
		json_t *d = create("/api/v1/devices", "device", text, NULL);
		snprintf(ids[i], sizeof ids[i], "%s", json_string_value(json_object_get(d, "id")));
		json_decref(d);
		free(text);
		json_decref(b);
		set_server_fields(ids[i], f->state, f->connected, f->disabled, f->firmware);
	}

	/* Each query and the devices (indexes into FDEVS, in creation order) it must return. */
	static const struct {
		const char *query;
		const char *want; /* e.g. "0,1,6"; "" for none */
	} cases[] = {
		{"", "0,1,2,3,4,5,6,7"},
		{"deviceTemplateId={FA}", "0,1,2,6"},
		{"deviceTemplateId={FB}", "3,4,5,7"},
		{"deviceTemplateId=0190a0b0-0000-7000-8000-000000000000", ""},
		{"organizationId={O1}", "0,1,7"},
		{"organizationId={O2}", "3,5"},
		{"organizationId=null", "2,4,6"},
		{"provisioningState=defined", "0,4,6"},
		{"provisioningState=activated", "1,3,5"},
		{"provisioningState=associated", "2,7"},
		{"serialNumber=SN-100", "0,5"},
		{"serialNumber=sn-100", "7"},
		{"serialNumber=SN-10", ""},
		{"serialNumber=XY-1", "4"},
		{"connected=true", "1,3,7"},
		{"connected=false", "0,2,4,5,6"},
		{"disabled=true", "2,3"},
		{"disabled=false", "0,1,4,5,6,7"},
		{"firmwareVersion=1.0.0", "1,2"},
		{"firmwareVersion=2.0.0", "3,5"},
		{"firmwareVersion=1.0.0-rc1", "7"},
		{"firmwareVersion=3.0.0", ""},
		/* q: a prefix of serialNumber or of name, case-sensitive */
		{"q=SN-1", "0,1,5"},
		{"q=SN", "0,1,2,3,4,5"},
		{"q=SN-100", "0,5"},
		{"q=kitchen", "0,2"},
		{"q=Kitchen", "7"},
		{"q=itchen", ""},
		{"q=att", "6"},
		{"q=XY", "4"},
		{"q=sn-", "7"},
		{"q=zzz", ""},
		/* filters combine with AND */
		{"deviceTemplateId={FA}&provisioningState=activated", "1"},
		{"deviceTemplateId={FA}&organizationId={O1}", "0,1"},
		{"organizationId={O2}&firmwareVersion=2.0.0&connected=false", "5"},
		{"q=SN-1&deviceTemplateId={FB}", "5"},
		{"q=SN&disabled=true", "2,3"},
		{"q=kitchen&connected=true", ""},
		{"deviceTemplateId={FA}&disabled=true&connected=true", ""},
		{"connected=true&disabled=false&provisioningState=associated", "7"},
		{"serialNumber=SN-100&organizationId={O1}", "0"},
		{"organizationId=null&provisioningState=defined&deviceTemplateId={FB}", "4"},
		{"deviceTemplateId={FB}&organizationId={O1}&serialNumber=sn-100&provisioningState=associated&connected=true&disabled=false&firmwareVersion=1.0.0-rc1&q=sn", "7"},
		{"accountId={ACCT2}&deviceTemplateId={FB}", "3,4,5,7"},
	};
	for(size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		char want[NFDEV * 40] = "", got[NFDEV * 40 + 64], path[512], what[600];
		size_t n = 0;
		int count = 0;
		for(const char *p = cases[c].want; *p;) {
			char *end;
			long k = strtol(p, &end, 10);
			n += (size_t)snprintf(want + n, sizeof want - n, "%s%s", n ? "," : "", ids[k]);
			count++;
			p = *end ? end + 1 : end;
		}
		snprintf(path, sizeof path, "/api/v1/devices?%s", cases[c].query);
		char *xp = expand(path);
		snprintf(what, sizeof what, "list %s", xp);
		free(xp);
		h_resp r = api("GET", path, NULL);
		check_resp(&r, 200, NULL, NULL, what);
		result_ids(&r, "devices", got, sizeof got);
		if(strcmp(got, want) != 0) fail_msg("%s: got [%s], want devices %s [%s]", what, got, cases[c].want, want);
		if(json_integer_value(h_at(r.json, "devices.meta.count")) != count)
			fail_msg("%s: meta.count %s, want %d", what, r.body, count);
		/* the listed objects carry the server-set values */
		json_t *d = h_at(r.json, "devices.results.0");
		if(d) {
			size_t k = 0;
			while(k < NFDEV && strcmp(ids[k], json_string_value(json_object_get(d, "id"))) != 0) k++;
			assert_true(k < NFDEV);
			assert_string_equal(json_string_value(json_object_get(d, "provisioningState")), FDEVS[k].state);
			assert_int_equal(json_is_true(json_object_get(d, "connected")), FDEVS[k].connected);
			assert_int_equal(json_is_true(json_object_get(d, "disabled")), FDEVS[k].disabled);
			if(FDEVS[k].firmware) assert_string_equal(json_string_value(json_object_get(d, "firmwareVersion")), FDEVS[k].firmware);
			else assert_true(json_is_null(json_object_get(d, "firmwareVersion")));
		}
		h_resp_free(&r);
	}

	const tcase bad[] = {
		E("GET", "/api/v1/devices?provisioningState=bogus", NULL, 400, "invalid_parameter", "provisioningState"),
		E("GET", "/api/v1/devices?provisioningState=", NULL, 400, "invalid_parameter", "provisioningState"),
		E("GET", "/api/v1/devices?provisioningState=Defined", NULL, 400, "invalid_parameter", "provisioningState"),
		E("GET", "/api/v1/devices?connected=yes", NULL, 400, "invalid_parameter", "connected"),
		E("GET", "/api/v1/devices?connected=1", NULL, 400, "invalid_parameter", "connected"),
		E("GET", "/api/v1/devices?disabled=TRUE", NULL, 400, "invalid_parameter", "disabled"),
		E("GET", "/api/v1/devices?disabled=", NULL, 400, "invalid_parameter", "disabled"),
		E("GET", "/api/v1/devices?colour=red", NULL, 400, "unknown_parameter", "colour"),
		E("GET", "/api/v1/devices?name=kitchen", NULL, 400, "unknown_parameter", "name"),
		E("GET", "/api/v1/devices?deviceTemplateId={FA}&Connected=true", NULL, 400, "unknown_parameter", "Connected"),
		E("GET", "/api/v1/devices?accountId={ACCT}", NULL, 403, "wrong_account", "accountId"),
		V("GET", "/api/v1/devices?q=", NULL, 200, "devices.meta.count", "8"),
		V("GET", "/api/v1/devices?q={x*512}", NULL, 200, "devices.meta.count", "0"),
		E("GET", "/api/v1/devices?q={x*513}", NULL, 400, "invalid_parameter", "q"),
		V("GET", "/api/v1/devices?serialNumber={x*1000}", NULL, 200, "devices.meta.count", "0"),
		/* another account's templates and organizations are unknown here */
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{DT}\"}", 422, "unknown_reference", "deviceTemplateId"),
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{FA}\",\"organizationId\":\"{ORG}\"}", 422, "unknown_reference", "organizationId"),
		E("PUT", "/api/v1/devices/{D1}", "{\"name\":\"mine now\"}", 404, "not_found", NULL),
		E("DELETE", "/api/v1/devices/{D1}", NULL, 404, "not_found", NULL),
		E("GET", "/api/v1/devices/{D1}", NULL, 404, "not_found", NULL),
		E("POST", "/api/v1/channels/templates", "{\"name\":\"x\",\"entityType\":\"deviceTemplate\",\"entityId\":\"{DT}\"}", 422, "unknown_reference", "entityId"),
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{FA}\",\"accountId\":\"{ACCT}\"}", 403, "wrong_account", "accountId"),
	};
	run_cases(bad, sizeof bad / sizeof bad[0]);

	/* Another account's devices are neither listed nor readable. */
	h_resp r = api_as(S.admin.api_key, "GET", "/api/v1/devices?deviceTemplateId={FA}", NULL, NULL);
	check_resp(&r, 200, NULL, NULL, "other account's list");
	check_at(&r, "devices.meta.count", "0", "other account's list");
	h_resp_free(&r);
	setvar("FD0", ids[0]);
	r = api_as(S.admin.api_key, "GET", "/api/v1/devices/{FD0}", NULL, NULL);
	check_resp(&r, 404, "not_found", NULL, "other account's device");
	h_resp_free(&r);
	TOKEN = NULL;
}

/* ---------------------------------------------------------------- lists: paging, sorting, cursors */

#define NPAGE 25

static char PIDS[NPAGE][40];   /* in creation order */
static char PSERIAL[NPAGE][16];

static int cmp_str(const void *a, const void *b) { return strcmp(a, b); }

/* Walks a list by nextCursor from base (a query without cursor); the ids in order into out.
 * Returns the number of pages. */
static int walk(const char *base, size_t page_size, char *out, size_t cap, int expect_count)
{
	char cursor[128] = "", path[512];
	size_t n = 0;
	int pages = 0;
	out[0] = '\0';
	for(;;) {
		if(cursor[0]) snprintf(path, sizeof path, "%s&cursor=%s", base, cursor);
		else snprintf(path, sizeof path, "%s", base);
		h_resp r = api("GET", path, NULL);
		check_resp(&r, 200, NULL, NULL, path);
		pages++;
		assert_true(pages < 100);
		json_t *res = h_at(r.json, "devices.results");
		if(json_array_size(res) > page_size) fail_msg("%s: page of %zu", path, json_array_size(res));
		if(json_integer_value(h_at(r.json, "devices.meta.count")) != expect_count) fail_msg("%s: count: %s", path, r.body);
		size_t i;
		json_t *v;
		json_array_foreach(res, i, v) {
			n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? "," : "", json_string_value(json_object_get(v, "id")));
			assert_true(n < cap);
		}
		const char *next = h_str(&r, "devices.meta.nextCursor");
		if(next && json_array_size(res) < page_size) fail_msg("%s: nextCursor on a short page", path);
		if(!next && json_array_size(res) == page_size) fail_msg("%s: no nextCursor on a full page", path);
		if(next) {
			assert_true(strlen(next) < sizeof cursor);
			for(const char *c = next; *c; c++) assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *c));
			snprintf(cursor, sizeof cursor, "%s", next);
		}
		h_resp_free(&r);
		if(!next) break;
	}
	return pages;
}

/* The ids of the devices at indexes order[0..n) joined by commas. */
static void join_ids(const int *order, size_t n, char *out, size_t cap)
{
	size_t w = 0;
	out[0] = '\0';
	for(size_t i = 0; i < n; i++) w += (size_t)snprintf(out + w, cap - w, "%s%s", i ? "," : "", PIDS[order[i]]);
}

static void list_paging(void **state)
{
	h_account acct;
	assert_int_equal(h_account_create(&S, &acct), 0);
	TOKEN = acct.api_key;
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"P\"}", "PT"));
	for(int i = 0; i < NPAGE; i++) {
		char body[200];
		/* serials in an order unlike creation order */
		snprintf(PSERIAL[i], sizeof PSERIAL[i], "P-%02d", (i * 7) % NPAGE);
		snprintf(body, sizeof body, "{\"deviceTemplateId\":\"{PT}\",\"serialNumber\":\"%s\",\"name\":\"n%02d\"}", PSERIAL[i], NPAGE - i);
		json_t *d = create("/api/v1/devices", "device", body, NULL);
		snprintf(PIDS[i], sizeof PIDS[i], "%s", json_string_value(json_object_get(d, "id")));
		json_decref(d);
	}
	int asc[NPAGE], desc[NPAGE], by_serial_desc[NPAGE], by_serial_asc[NPAGE];
	for(int i = 0; i < NPAGE; i++) {
		asc[i] = i;
		desc[i] = NPAGE - 1 - i;
		/* the device with serial P-k is the one with (i * 7) % 25 == k */
		for(int j = 0; j < NPAGE; j++) {
			if((j * 7) % NPAGE == i) by_serial_asc[i] = j;
			if((j * 7) % NPAGE == NPAGE - 1 - i) by_serial_desc[i] = j;
		}
	}
	char all_asc[NPAGE * 40], all_desc[NPAGE * 40], serial_desc[NPAGE * 40], serial_asc[NPAGE * 40], got[NPAGE * 40 + 64];
	join_ids(asc, NPAGE, all_asc, sizeof all_asc);
	join_ids(desc, NPAGE, all_desc, sizeof all_desc);
	join_ids(by_serial_desc, NPAGE, serial_desc, sizeof serial_desc);
	join_ids(by_serial_asc, NPAGE, serial_asc, sizeof serial_asc);

	/* Default: page 1 of 50, created ascending, count, no cursor on a short page. */
	h_resp r = api("GET", "/api/v1/devices", NULL);
	check_resp(&r, 200, NULL, NULL, "default list");
	check_at(&r, "devices.meta", "{\"page\":1,\"pageSize\":50,\"sortBy\":\"created\",\"sortOrder\":\"asc\",\"count\":25}", "default list");
	assert_int_equal(json_object_size(r.json), 1);
	assert_int_equal(json_object_size(json_object_get(r.json, "devices")), 2);
	result_ids(&r, "devices", got, sizeof got);
	assert_string_equal(got, all_asc);
	h_resp_free(&r);

	/* Pages of 7: 7, 7, 7, 4, then empty; together every device once, in order. */
	char joined[NPAGE * 40 + 64] = "";
	size_t jn = 0;
	for(int page = 1; page <= 5; page++) {
		char path[128];
		snprintf(path, sizeof path, "/api/v1/devices?pageSize=7&page=%d", page);
		r = api("GET", path, NULL);
		check_resp(&r, 200, NULL, NULL, path);
		assert_int_equal(json_array_size(h_at(r.json, "devices.results")), page < 4 ? 7 : page == 4 ? 4 : 0);
		assert_int_equal(json_integer_value(h_at(r.json, "devices.meta.count")), NPAGE);
		assert_int_equal(json_integer_value(h_at(r.json, "devices.meta.page")), page);
		assert_int_equal(json_integer_value(h_at(r.json, "devices.meta.pageSize")), 7);
		result_ids(&r, "devices", got, sizeof got);
		if(got[0]) jn += (size_t)snprintf(joined + jn, sizeof joined - jn, "%s%s", jn ? "," : "", got);
		h_resp_free(&r);
	}
	assert_string_equal(joined, all_asc);

	/* Sorting. */
	static const struct {
		const char *query;
		int which; /* 0 asc, 1 desc, 2 serial desc, 3 serial asc */
	} sorts[] = {
		{"sortOrder=asc", 0},
		{"sortOrder=desc", 1},
		{"sortBy=created&sortOrder=desc", 1},
		{"sortBy=serialNumber&sortOrder=desc", 2},
		{"sortBy=serialNumber", 3},
		{"sortBy=serialNumber&sortOrder=asc&pageSize=1000", 3},
		{"sortBy=name&sortOrder=desc", 0}, /* names count down as devices are made */
		{"sortBy=name", 1},
		{"sortBy=lastModified", 0},
	};
	const char *lists[] = {all_asc, all_desc, serial_desc, serial_asc};
	for(size_t i = 0; i < sizeof sorts / sizeof sorts[0]; i++) {
		char path[200];
		snprintf(path, sizeof path, "/api/v1/devices?%s", sorts[i].query);
		r = api("GET", path, NULL);
		check_resp(&r, 200, NULL, NULL, path);
		result_ids(&r, "devices", got, sizeof got);
		if(strcmp(got, lists[sorts[i].which]) != 0) fail_msg("%s: wrong order", path);
		if(strstr(sorts[i].query, "sortOrder=desc")) check_at(&r, "devices.meta.sortOrder", "\"desc\"", path);
		if(strstr(sorts[i].query, "sortBy=serialNumber")) check_at(&r, "devices.meta.sortBy", "\"serialNumber\"", path);
		h_resp_free(&r);
	}
	/* sortBy=serialNumber desc really is descending serials */
	r = api("GET", "/api/v1/devices?sortBy=serialNumber&sortOrder=desc", NULL);
	char sorted[NPAGE][16];
	memcpy(sorted, PSERIAL, sizeof sorted);
	qsort(sorted, NPAGE, sizeof sorted[0], cmp_str);
	for(int i = 0; i < NPAGE; i++) {
		char p[64];
		snprintf(p, sizeof p, "devices.results.%d.serialNumber", i);
		assert_string_equal(json_string_value(h_at(r.json, p)), sorted[NPAGE - 1 - i]);
	}
	h_resp_free(&r);

	const tcase cases[] = {
		V("GET", "/api/v1/devices?pageSize=1000", NULL, 200, "devices.meta.pageSize", "1000"),
		V("GET", "/api/v1/devices?pageSize=1", NULL, 200, "devices.results.1", NULL),
		E("GET", "/api/v1/devices?pageSize=1001", NULL, 400, "invalid_parameter", "pageSize"),
		E("GET", "/api/v1/devices?pageSize=0", NULL, 400, "invalid_parameter", "pageSize"),
		E("GET", "/api/v1/devices?pageSize=-5", NULL, 400, "invalid_parameter", "pageSize"),
		E("GET", "/api/v1/devices?pageSize=ten", NULL, 400, "invalid_parameter", "pageSize"),
		E("GET", "/api/v1/devices?pageSize=7x", NULL, 400, "invalid_parameter", "pageSize"),
		E("GET", "/api/v1/devices?pageSize=", NULL, 400, "invalid_parameter", "pageSize"),
		E("GET", "/api/v1/devices?page=0", NULL, 400, "invalid_parameter", "page"),
		E("GET", "/api/v1/devices?page=-1", NULL, 400, "invalid_parameter", "page"),
		E("GET", "/api/v1/devices?page=1.5", NULL, 400, "invalid_parameter", "page"),
		V("GET", "/api/v1/devices?page=99", NULL, 200, "devices.results", "[]"),
		/* meta and results switches */
		V("GET", "/api/v1/devices?meta=false", NULL, 200, "devices.meta.count", NULL),
		V("GET", "/api/v1/devices?meta=false", NULL, 200, "devices.results.24.id", "\"{P24}\""),
		V("GET", "/api/v1/devices?meta=true", NULL, 200, "devices.meta.count", "25"),
		V("GET", "/api/v1/devices?results=false", NULL, 200, "devices.results", NULL),
		V("GET", "/api/v1/devices?results=false", NULL, 200, "devices.meta.count", "25"),
		V("GET", "/api/v1/devices?results=false&meta=false", NULL, 200, "devices.meta.count", NULL),
		V("GET", "/api/v1/devices?results=false&meta=false", NULL, 200, "devices.results", NULL),
		V("GET", "/api/v1/devices?results=true&q=P-1", NULL, 200, "devices.meta.count", "10"),
		E("GET", "/api/v1/devices?meta=no", NULL, 400, "invalid_parameter", "meta"),
		E("GET", "/api/v1/devices?results=0", NULL, 400, "invalid_parameter", "results"),
		/* sorting errors */
		E("GET", "/api/v1/devices?sortBy=colour", NULL, 400, "invalid_parameter", "sortBy"),
		E("GET", "/api/v1/devices?sortBy=connected", NULL, 400, "invalid_parameter", "sortBy"),
		E("GET", "/api/v1/devices?sortBy=", NULL, 400, "invalid_parameter", "sortBy"),
		E("GET", "/api/v1/devices?sortOrder=DESC", NULL, 400, "invalid_parameter", "sortOrder"),
		E("GET", "/api/v1/devices?sortOrder=down", NULL, 400, "invalid_parameter", "sortOrder"),
		/* cursors */
		E("GET", "/api/v1/devices?cursor=!!!", NULL, 400, "invalid_parameter", "cursor"),
		E("GET", "/api/v1/devices?cursor=", NULL, 400, "invalid_parameter", "cursor"),
		E("GET", "/api/v1/devices?cursor=Zm9v", NULL, 400, "invalid_parameter", "cursor"),
		E("GET", "/api/v1/devices?cursor=LTE", NULL, 400, "invalid_parameter", "cursor"),
		E("GET", "/api/v1/devices?cursor={x*300}", NULL, 400, "invalid_parameter", "cursor"),
		E("GET", "/api/v1/devices?cursor=MQ&sortBy=serialNumber", NULL, 400, "invalid_parameter", "cursor"),
		/* a cursor is offered only where one is accepted (sortBy=created) */
		V("GET", "/api/v1/devices?pageSize=7&sortBy=serialNumber", NULL, 200, "devices.meta.nextCursor", NULL),
		V("GET", "/api/v1/devices?pageSize=7&sortBy=lastModified&sortOrder=desc", NULL, 200, "devices.meta.nextCursor", NULL),
		V("GET", "/api/v1/devices?pageSize=7&sortBy=name", NULL, 200, "devices.results.6.name", "\"n07\""),
		V("GET", "/api/v1/devices?pageSize=7&sortBy=name", NULL, 200, "devices.meta.nextCursor", NULL),
	};
	setvar("P24", PIDS[24]);
	run_cases(cases, sizeof cases / sizeof cases[0]);

	/* Cursor walks: every device exactly once, in order, 7 per page. */
	assert_int_equal(walk("/api/v1/devices?pageSize=7", 7, got, sizeof got, NPAGE), 4);
	assert_string_equal(got, all_asc);
	assert_int_equal(walk("/api/v1/devices?pageSize=7&sortOrder=desc", 7, got, sizeof got, NPAGE), 4);
	assert_string_equal(got, all_desc);
	/* a page size that divides the total ends with an empty page and no cursor */
	assert_int_equal(walk("/api/v1/devices?pageSize=5", 5, got, sizeof got, NPAGE), 6);
	assert_string_equal(got, all_asc);
	assert_int_equal(walk("/api/v1/devices?pageSize=1000", 1000, got, sizeof got, NPAGE), 1);
	assert_string_equal(got, all_asc);
	/* with a filter: serials P-10 .. P-19 */
	assert_int_equal(walk("/api/v1/devices?pageSize=3&q=P-1&deviceTemplateId={PT}", 3, got, sizeof got, 10), 4);
	char want[NPAGE * 40] = "";
	size_t wn = 0;
	for(int i = 0; i < NPAGE; i++) {
		if(strncmp(PSERIAL[i], "P-1", 3) == 0) wn += (size_t)snprintf(want + wn, sizeof want - wn, "%s%s", wn ? "," : "", PIDS[i]);
	}
	assert_string_equal(got, want);
	/* no duplicates in a walk, and every device made is in it */
	walk("/api/v1/devices?pageSize=7", 7, got, sizeof got, NPAGE);
	char seen[NPAGE + 1][40];
	int nseen = 0;
	for(char *tok = strtok(got, ","); tok; tok = strtok(NULL, ",")) {
		assert_true(nseen <= NPAGE);
		snprintf(seen[nseen++], sizeof seen[0], "%s", tok);
	}
	assert_int_equal(nseen, NPAGE);
	qsort(seen, (size_t)nseen, sizeof seen[0], cmp_str);
	for(int i = 1; i < nseen; i++) assert_true(strcmp(seen[i - 1], seen[i]) < 0);
	for(int i = 0; i < NPAGE; i++) assert_non_null(bsearch(PIDS[i], seen, (size_t)nseen, sizeof seen[0], cmp_str));
	/* a device made during a walk is reached by it (it sorts last) */
	r = api("GET", "/api/v1/devices?pageSize=20", NULL);
	check_resp(&r, 200, NULL, NULL, "first page of 20");
	char cur[128];
	snprintf(cur, sizeof cur, "%s", h_str(&r, "devices.meta.nextCursor"));
	h_resp_free(&r);
	json_t *late = create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{PT}\",\"serialNumber\":\"late\"}", "PLATE");
	json_decref(late);
	char path[256];
	snprintf(path, sizeof path, "/api/v1/devices?pageSize=20&cursor=%s", cur);
	r = api("GET", path, NULL);
	check_resp(&r, 200, NULL, NULL, path);
	assert_int_equal(json_array_size(h_at(r.json, "devices.results")), 6);
	assert_string_equal(h_str(&r, "devices.results.0.id"), PIDS[20]);
	check_at(&r, "devices.results.5.id", "\"{PLATE}\"", path);
	check_at(&r, "devices.meta.count", "26", path);
	check_at(&r, "devices.meta.nextCursor", NULL, path);
	h_resp_free(&r);
	TOKEN = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(create_device),
		cmocka_unit_test(create_rejects),
		cmocka_unit_test(update_partial),
		cmocka_unit_test(versions),
		cmocka_unit_test(list_filters),
		cmocka_unit_test(list_paging),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
