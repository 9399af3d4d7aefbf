/* End-to-end: device templates, their custom fields and channel templates, against a real
 * `imprint serve` (one per file). Cases are tables of {method, path, body, status, error
 * code, details target, checked value}; paths and bodies name earlier ids as {VAR} and long
 * strings as {c*N}. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "harness.h"



/* ---------------------------------------------------------------- device templates */

static void device_templates_crud(void **state)
{
	json_t *t = create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"Thermostat\"}", "T1");
	assert_uuid7(json_string_value(json_object_get(t, "id")));
	assert_string_equal(json_string_value(json_object_get(t, "name")), "Thermostat");
	assert_string_equal(json_string_value(json_object_get(t, "authenticationMethod")), "password");
	assert_string_equal(json_string_value(json_object_get(t, "accountId")), S.admin.account_id);
	assert_string_equal(json_string_value(json_object_get(t, "version")), "1");
	assert_true(json_is_null(json_object_get(t, "description")));
	assert_timestamp(json_string_value(json_object_get(t, "created")));
	assert_timestamp(json_string_value(json_object_get(t, "lastModified")));
	assert_non_null(json_string_value(json_object_get(t, "createdById")));
	json_decref(t);
	setvar("ACCT", S.admin.account_id);

	t = create("/api/v1/devices/templates", "deviceTemplate",
	           "{\"name\":\"Camera\",\"authenticationMethod\":\"certificate\",\"accountId\":\"{ACCT}\"}", "T2");
	assert_string_equal(json_string_value(json_object_get(t, "authenticationMethod")), "certificate");
	json_decref(t);

	const tcase cases[] = {
		V("GET", "/api/v1/devices/templates/{T1}", NULL, 200, "deviceTemplate.name", "\"Thermostat\""),
		V("GET", "/api/v1/devices/templates/{T2}", NULL, 200, "deviceTemplate.authenticationMethod", "\"certificate\""),
		V("GET", "/api/v1/devices/templates/{T2}", NULL, 200, "deviceTemplate.id", "\"{T2}\""),
		E("GET", "/api/v1/devices/templates/0190a0b0-0000-7000-8000-000000000000", NULL, 404, "not_found", NULL),
		E("GET", "/api/v1/devices/templates/not-an-id", NULL, 404, "not_found", NULL),
		/* rename, and PUT with the same authenticationMethod */
		V("PUT", "/api/v1/devices/templates/{T1}", "{\"name\":\"Thermostat 2\"}", 200, "deviceTemplate.name", "\"Thermostat 2\""),
		V("GET", "/api/v1/devices/templates/{T1}", NULL, 200, "deviceTemplate.version", "\"2\""),
		V("GET", "/api/v1/devices/templates/{T1}", NULL, 200, "deviceTemplate.authenticationMethod", "\"password\""),
		V("PUT", "/api/v1/devices/templates/{T1}", "{\"authenticationMethod\":\"password\",\"description\":\"hvac\"}", 200, "deviceTemplate.description", "\"hvac\""),
		E("PUT", "/api/v1/devices/templates/{T1}", "{\"authenticationMethod\":\"certificate\"}", 422, "immutable_field", "authenticationMethod"),
		E("PUT", "/api/v1/devices/templates/{T2}", "{\"authenticationMethod\":\"password\"}", 422, "immutable_field", "authenticationMethod"),
		V("GET", "/api/v1/devices/templates/{T1}", NULL, 200, "deviceTemplate.authenticationMethod", "\"password\""),
		V("GET", "/api/v1/devices/templates/{T1}", NULL, 200, "deviceTemplate.name", "\"Thermostat 2\""),
		E("PUT", "/api/v1/devices/templates/{T1}", "{\"name\":\"{n*129}\"}", 422, "invalid_field", "name"),
		E("PUT", "/api/v1/devices/templates/{T1}", "{\"name\":\"\"}", 422, "invalid_field", "name"),
		E("PUT", "/api/v1/devices/templates/{T1}", "{\"name\":null}", 400, "invalid_type", "name"),
		E("PUT", "/api/v1/devices/templates/{T1}", "{\"name\":7}", 400, "invalid_type", "name"),
		E("PUT", "/api/v1/devices/templates/{T1}", "{\"colour\":\"red\"}", 400, "unknown_field", "colour"),
		E("PUT", "/api/v1/devices/templates/{T1}", "{\"id\":\"{T2}\"}", 400, "read_only_field", "id"),
		E("PUT", "/api/v1/devices/templates/{T1}", "{\"version\":\"9\"}", 400, "read_only_field", "version"),
		E("PUT", "/api/v1/devices/templates/0190a0b0-0000-7000-8000-000000000000", "{\"name\":\"x\"}", 404, "not_found", NULL),
		V("GET", "/api/v1/devices/templates/{T1}", NULL, 200, "deviceTemplate.version", "\"3\""),
		/* create validation */
		VS("POST", "/api/v1/devices/templates", "{\"name\":\"{n*128}\"}", 201, "deviceTemplate.name", "\"{n*128}\"", "T128"),
		VS("POST", "/api/v1/devices/templates", "{\"name\":\"{\xc3\xa9*128}\"}", 201, "deviceTemplate.name", "\"{\xc3\xa9*128}\"", "TE"),
		E("POST", "/api/v1/devices/templates", "{\"name\":\"{\xc3\xa9*129}\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/devices/templates", "{\"name\":\"{n*129}\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/devices/templates", "{\"name\":\"\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/devices/templates", "{}", 422, "missing_field", "name"),
		E("POST", "/api/v1/devices/templates", "{\"authenticationMethod\":\"password\"}", 422, "missing_field", "name"),
		E("POST", "/api/v1/devices/templates", "{\"name\":\"x\",\"colour\":\"red\"}", 400, "unknown_field", "colour"),
		E("POST", "/api/v1/devices/templates", "{\"name\":42}", 400, "invalid_type", "name"),
		E("POST", "/api/v1/devices/templates", "{\"name\":[\"x\"]}", 400, "invalid_type", "name"),
		E("POST", "/api/v1/devices/templates", "{\"name\":\"x\",\"authenticationMethod\":\"token\"}", 422, "invalid_field", "authenticationMethod"),
		E("POST", "/api/v1/devices/templates", "{\"name\":\"x\",\"authenticationMethod\":1}", 400, "invalid_type", "authenticationMethod"),
		E("POST", "/api/v1/devices/templates", "{\"name\":\"x\",\"id\":\"0190a0b0-0000-7000-8000-000000000000\"}", 400, "read_only_field", "id"),
		E("POST", "/api/v1/devices/templates", "{\"name\":\"x\",\"created\":\"2026-01-01T00:00:00.000Z\"}", 400, "read_only_field", "created"),
		E("POST", "/api/v1/devices/templates", "{\"name\":\"x\",\"accountId\":\"0190a0b0-0000-7000-8000-000000000000\"}", 403, "wrong_account", "accountId"),
		E("POST", "/api/v1/devices/templates", "[\"name\"]", 400, "malformed_json", NULL),
		E("POST", "/api/v1/devices/templates", "{\"name\":", 400, "malformed_json", NULL),
		E("POST", "/api/v1/devices/templates", "{\"name\":\"a\",\"name\":\"b\"}", 400, "malformed_json", NULL),
		E("POST", "/api/v1/devices/templates", "", 400, "malformed_json", NULL),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);

	/* No key: 401. */
	h_resp r = api_as(NULL, "GET", "/api/v1/devices/templates", NULL, NULL);
	check_resp(&r, 401, NULL, NULL, "list without a token");
	h_resp_free(&r);

	/* The list holds exactly the four made above, with the documented meta. */
	r = api("GET", "/api/v1/devices/templates", NULL);
	check_resp(&r, 200, NULL, NULL, "list templates");
	check_at(&r, "deviceTemplates.meta.count", "4", "list templates");
	check_at(&r, "deviceTemplates.meta.page", "1", "list templates");
	check_at(&r, "deviceTemplates.meta.pageSize", "50", "list templates");
	check_at(&r, "deviceTemplates.meta.sortBy", "\"created\"", "list templates");
	check_at(&r, "deviceTemplates.meta.sortOrder", "\"asc\"", "list templates");
	check_at(&r, "deviceTemplates.results.0.id", "\"{T1}\"", "list templates");
	check_at(&r, "deviceTemplates.results.0.name", "\"Thermostat 2\"", "list templates");
	check_at(&r, "deviceTemplates.results.1.id", "\"{T2}\"", "list templates");
	check_at(&r, "deviceTemplates.results.2.id", "\"{T128}\"", "list templates");
	check_at(&r, "deviceTemplates.results.3.id", "\"{TE}\"", "list templates");
	assert_int_equal(json_array_size(h_at(r.json, "deviceTemplates.results")), 4);
	h_resp_free(&r);

	const tcase lists[] = {
		V("GET", "/api/v1/devices/templates?name=Camera", NULL, 200, "deviceTemplates.results.0.id", "\"{T2}\""),
		V("GET", "/api/v1/devices/templates?name=Camera", NULL, 200, "deviceTemplates.meta.count", "1"),
		V("GET", "/api/v1/devices/templates?authenticationMethod=certificate", NULL, 200, "deviceTemplates.meta.count", "1"),
		V("GET", "/api/v1/devices/templates?authenticationMethod=password", NULL, 200, "deviceTemplates.meta.count", "3"),
		E("GET", "/api/v1/devices/templates?authenticationMethod=token", NULL, 400, "invalid_parameter", "authenticationMethod"),
		V("GET", "/api/v1/devices/templates?sortBy=name&sortOrder=asc", NULL, 200, "deviceTemplates.results.0.id", "\"{T2}\""),
		V("GET", "/api/v1/devices/templates?sortBy=name&sortOrder=desc", NULL, 200, "deviceTemplates.results.0.id", "\"{TE}\""),
		V("GET", "/api/v1/devices/templates?sortBy=name&sortOrder=desc", NULL, 200, "deviceTemplates.results.1.id", "\"{T128}\""),
		E("GET", "/api/v1/devices/templates?colour=red", NULL, 400, "unknown_parameter", "colour"),
		E("GET", "/api/v1/devices/templates?sortBy=description", NULL, 400, "invalid_parameter", "sortBy"),
	};
	run_cases(lists, sizeof lists / sizeof lists[0]);
}

/* ---------------------------------------------------------------- custom fields */

typedef struct {
	const char *name, *type;
	const char *extra; /* more JSON members, "" for none */
} field_def;

static void custom_fields(void **state)
{
	json_t *t = create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"Sensor\"}", "CF");
	json_decref(t);
	t = create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"Plain\"}", "CF2");
	json_decref(t);

	const field_def defs[] = {
		{"s", "string", ""},
		{"t", "text", ""},
		{"i", "integer", ""},
		{"n", "number", ""},
		{"b", "boolean", ""},
		{"d", "datetime", ""},
		{"req", "string", ",\"required\":true"},
		{"def", "integer", ",\"default\":42"},
		{"defs", "string", ",\"default\":\"hello\",\"required\":true"},
		{"f{a*63}", "boolean", ",\"required\":false"},
	};
	for(size_t k = 0; k < sizeof defs / sizeof defs[0]; k++) {
		char body[400];
		snprintf(body, sizeof body, "{\"deviceTemplateId\":\"{CF}\",\"name\":\"%s\",\"fieldType\":\"%s\"%s}", defs[k].name,
		         defs[k].type, defs[k].extra);
		json_t *f = create("/api/v1/devices/custom-fields", "deviceField", body, "F");
		char *want = expand(defs[k].name);
		assert_string_equal(json_string_value(json_object_get(f, "name")), want);
		free(want);
		assert_string_equal(json_string_value(json_object_get(f, "fieldType")), defs[k].type);
		assert_string_equal(json_string_value(json_object_get(f, "deviceTemplateId")), getvar("CF"));
		assert_true(json_is_boolean(json_object_get(f, "required")));
		assert_uuid7(json_string_value(json_object_get(f, "id")));
		if(strcmp(defs[k].name, "def") == 0) assert_int_equal(json_integer_value(json_object_get(f, "default")), 42);
		if(strcmp(defs[k].name, "req") == 0) assert_true(json_is_true(json_object_get(f, "required")));
		if(strcmp(defs[k].name, "s") == 0) {
			assert_true(json_is_false(json_object_get(f, "required")));
			assert_true(json_is_null(json_object_get(f, "default")));
			setvar("FS", json_string_value(json_object_get(f, "id")));
		}
		json_decref(f);
	}
	/* One field on the other template, for the list filter. */
	json_decref(create("/api/v1/devices/custom-fields", "deviceField",
	                   "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"other\",\"fieldType\":\"text\"}", "F2"));

	const tcase fields[] = {
		/* names */
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"serialNumber\",\"fieldType\":\"string\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"name\",\"fieldType\":\"string\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"channels\",\"fieldType\":\"string\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"provisioningState\",\"fieldType\":\"string\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"version\",\"fieldType\":\"string\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"1abc\",\"fieldType\":\"string\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"_abc\",\"fieldType\":\"string\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"a-b\",\"fieldType\":\"string\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"a b\",\"fieldType\":\"string\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"\",\"fieldType\":\"string\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"{x*65}\",\"fieldType\":\"string\"}", 422, "invalid_field", "name"),
		V("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"{x*64}\",\"fieldType\":\"string\"}", 201, "deviceField.name", "\"{x*64}\""),
		V("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"Serial_2\",\"fieldType\":\"string\"}", 201, "deviceField.name", "\"Serial_2\""),
		/* duplicates: same template 409, another template fine */
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF}\",\"name\":\"s\",\"fieldType\":\"string\"}", 409, "conflict", NULL),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF}\",\"name\":\"s\",\"fieldType\":\"integer\"}", 409, "conflict", NULL),
		V("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"s\",\"fieldType\":\"integer\"}", 201, "deviceField.fieldType", "\"integer\""),
		/* types, references, defaults */
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"q1\",\"fieldType\":\"blob\"}", 422, "invalid_field", "fieldType"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"q1\",\"fieldType\":3}", 400, "invalid_type", "fieldType"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"q1\"}", 422, "missing_field", "fieldType"),
		E("POST", "/api/v1/devices/custom-fields", "{\"name\":\"q1\",\"fieldType\":\"string\"}", 422, "missing_field", "deviceTemplateId"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"fieldType\":\"string\"}", 422, "missing_field", "name"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"0190a0b0-0000-7000-8000-000000000000\",\"name\":\"q1\",\"fieldType\":\"string\"}", 422, "unknown_reference", "deviceTemplateId"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"nope\",\"name\":\"q1\",\"fieldType\":\"string\"}", 422, "invalid_field", "deviceTemplateId"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"q1\",\"fieldType\":\"integer\",\"default\":\"x\"}", 400, "invalid_type", "default"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"q1\",\"fieldType\":\"datetime\",\"default\":\"soon\"}", 422, "invalid_field", "default"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"q1\",\"fieldType\":\"string\",\"default\":\"{x*257}\"}", 422, "invalid_field", "default"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"q1\",\"fieldType\":\"string\",\"required\":\"yes\"}", 400, "invalid_type", "required"),
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CF2}\",\"name\":\"q1\",\"fieldType\":\"string\",\"size\":3}", 400, "unknown_field", "size"),
		/* get one, and the list filter */
		V("GET", "/api/v1/devices/custom-fields/{FS}", NULL, 200, "deviceField.name", "\"s\""),
		V("GET", "/api/v1/devices/custom-fields?deviceTemplateId={CF}", NULL, 200, "deviceFields.meta.count", "10"),
		V("GET", "/api/v1/devices/custom-fields?deviceTemplateId={CF2}", NULL, 200, "deviceFields.meta.count", "4"),
		V("GET", "/api/v1/devices/custom-fields?deviceTemplateId={CF2}", NULL, 200, "deviceFields.results.0.name", "\"other\""),
		V("GET", "/api/v1/devices/custom-fields?deviceTemplateId={CF2}&name=s", NULL, 200, "deviceFields.results.0.fieldType", "\"integer\""),
		V("GET", "/api/v1/devices/custom-fields?deviceTemplateId={CF2}&name=s", NULL, 200, "deviceFields.meta.count", "1"),
		V("GET", "/api/v1/devices/custom-fields?deviceTemplateId=0190a0b0-0000-7000-8000-000000000000", NULL, 200, "deviceFields.meta.count", "0"),
		V("GET", "/api/v1/devices/custom-fields", NULL, 200, "deviceFields.meta.count", "14"),
		E("GET", "/api/v1/devices/custom-fields?fieldType=string", NULL, 400, "unknown_parameter", "fieldType"),
		E("PUT", "/api/v1/devices/custom-fields/{FS}", "{\"required\":true}", 405, "method_not_allowed", NULL),
	};
	run_cases(fields, sizeof fields / sizeof fields[0]);

	/* Every result of the filtered list belongs to the template asked for. */
	h_resp r = api("GET", "/api/v1/devices/custom-fields?deviceTemplateId={CF}&pageSize=1000", NULL);
	check_resp(&r, 200, NULL, NULL, "fields of CF");
	json_t *res = h_at(r.json, "deviceFields.results");
	assert_int_equal(json_array_size(res), 10);
	size_t i;
	json_t *v;
	json_array_foreach(res, i, v) assert_string_equal(json_string_value(json_object_get(v, "deviceTemplateId")), getvar("CF"));
	h_resp_free(&r);

	/* Devices: values checked on create, defaults applied, required enforced. */
#define DEV(extra) "{\"deviceTemplateId\":\"{CF}\",\"req\":\"r\"" extra "}"
	const tcase devices[] = {
		VS("POST", "/api/v1/devices", DEV(",\"serialNumber\":\"cf-1\",\"s\":\"str\",\"t\":\"txt\",\"i\":7,\"n\":2.5,\"b\":true,\"d\":\"2026-11-25T20:41:28.123Z\""), 201, "device.def", "42", "CD"),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.s", "\"str\""),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.t", "\"txt\""),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.i", "7"),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.n", "2.5"),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.b", "true"),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.d", "\"2026-11-25T20:41:28.123Z\""),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.req", "\"r\""),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.def", "42"),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.defs", "\"hello\""),
		V("POST", "/api/v1/devices", DEV(",\"def\":7,\"defs\":\"mine\""), 201, "device.def", "7"),
		V("POST", "/api/v1/devices", DEV(",\"defs\":\"mine\""), 201, "device.defs", "\"mine\""),
		V("POST", "/api/v1/devices", DEV(""), 201, "device.s", NULL),
		V("POST", "/api/v1/devices", DEV(",\"i\":-3,\"n\":1e3,\"b\":false,\"s\":null"), 201, "device.n", "1000.0"),
		V("POST", "/api/v1/devices", DEV(",\"i\":4.0"), 201, NULL, NULL),
		V("POST", "/api/v1/devices", DEV(",\"n\":3"), 201, "device.n", "3"),
		V("POST", "/api/v1/devices", DEV(",\"d\":\"2026-11-25T20:41:28Z\""), 201, NULL, NULL),
		V("POST", "/api/v1/devices", DEV(",\"s\":\"{s*256}\",\"t\":\"{t*4096}\""), 201, "device.s", "\"{s*256}\""),
		V("POST", "/api/v1/devices", DEV(",\"f{a*63}\":true"), 201, "device.f{a*63}", "true"),
		/* required */
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{CF}\"}", 422, "missing_field", "req"),
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{CF}\",\"req\":null}", 422, "invalid_field", "req"),
		E("POST", "/api/v1/devices", DEV(",\"defs\":null"), 422, "invalid_field", "defs"),
		/* wrong JSON types: 400 */
		E("POST", "/api/v1/devices", DEV(",\"s\":5"), 400, "invalid_type", "s"),
		E("POST", "/api/v1/devices", DEV(",\"s\":true"), 400, "invalid_type", "s"),
		E("POST", "/api/v1/devices", DEV(",\"t\":[\"x\"]"), 400, "invalid_type", "t"),
		E("POST", "/api/v1/devices", DEV(",\"i\":1.5"), 400, "invalid_type", "i"),
		E("POST", "/api/v1/devices", DEV(",\"i\":\"3\""), 400, "invalid_type", "i"),
		E("POST", "/api/v1/devices", DEV(",\"i\":true"), 400, "invalid_type", "i"),
		E("POST", "/api/v1/devices", DEV(",\"n\":\"2.5\""), 400, "invalid_type", "n"),
		E("POST", "/api/v1/devices", DEV(",\"n\":{}"), 400, "invalid_type", "n"),
		E("POST", "/api/v1/devices", DEV(",\"b\":\"true\""), 400, "invalid_type", "b"),
		E("POST", "/api/v1/devices", DEV(",\"b\":1"), 400, "invalid_type", "b"),
		E("POST", "/api/v1/devices", DEV(",\"d\":1764103288"), 400, "invalid_type", "d"),
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{CF}\",\"req\":1}", 400, "invalid_type", "req"),
		/* values that break a rule: 422 */
		E("POST", "/api/v1/devices", DEV(",\"s\":\"{s*257}\""), 422, "invalid_field", "s"),
		E("POST", "/api/v1/devices", DEV(",\"t\":\"{t*4097}\""), 422, "invalid_field", "t"),
		E("POST", "/api/v1/devices", DEV(",\"d\":\"yesterday\""), 422, "invalid_field", "d"),
		E("POST", "/api/v1/devices", DEV(",\"d\":\"2026-13-45T00:00:00.000Z\""), 422, "invalid_field", "d"),
		E("POST", "/api/v1/devices", DEV(",\"d\":\"\""), 422, "invalid_field", "d"),
		/* not a field of this template */
		E("POST", "/api/v1/devices", DEV(",\"zzz\":1"), 400, "unknown_field", "zzz"),
		E("POST", "/api/v1/devices", DEV(",\"other\":\"x\""), 400, "unknown_field", "other"),
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{CF2}\",\"req\":\"r\"}", 400, "unknown_field", "req"),
		/* PUT: partial, checked the same way, failed PUTs change nothing */
		V("PUT", "/api/v1/devices/{CD}", "{\"s\":\"new\",\"i\":-1,\"n\":0.25,\"b\":false,\"d\":\"2027-01-02T03:04:05.678Z\",\"t\":\"{t*4096}\"}", 200, "device.s", "\"new\""),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.i", "-1"),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.n", "0.25"),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.b", "false"),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.d", "\"2027-01-02T03:04:05.678Z\""),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.req", "\"r\""),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.serialNumber", "\"cf-1\""),
		V("PUT", "/api/v1/devices/{CD}", "{\"s\":\"{s*256}\"}", 200, "device.s", "\"{s*256}\""),
		E("PUT", "/api/v1/devices/{CD}", "{\"s\":\"{s*257}\"}", 422, "invalid_field", "s"),
		E("PUT", "/api/v1/devices/{CD}", "{\"s\":3}", 400, "invalid_type", "s"),
		E("PUT", "/api/v1/devices/{CD}", "{\"t\":\"{t*4097}\"}", 422, "invalid_field", "t"),
		E("PUT", "/api/v1/devices/{CD}", "{\"t\":false}", 400, "invalid_type", "t"),
		E("PUT", "/api/v1/devices/{CD}", "{\"i\":2.5}", 400, "invalid_type", "i"),
		E("PUT", "/api/v1/devices/{CD}", "{\"i\":\"2\"}", 400, "invalid_type", "i"),
		E("PUT", "/api/v1/devices/{CD}", "{\"n\":\"x\"}", 400, "invalid_type", "n"),
		E("PUT", "/api/v1/devices/{CD}", "{\"b\":0}", 400, "invalid_type", "b"),
		E("PUT", "/api/v1/devices/{CD}", "{\"d\":\"31/12/2026\"}", 422, "invalid_field", "d"),
		E("PUT", "/api/v1/devices/{CD}", "{\"d\":12}", 400, "invalid_type", "d"),
		E("PUT", "/api/v1/devices/{CD}", "{\"req\":null}", 422, "invalid_field", "req"),
		E("PUT", "/api/v1/devices/{CD}", "{\"zzz\":1}", 400, "unknown_field", "zzz"),
		E("PUT", "/api/v1/devices/{CD}", "{\"i\":1,\"b\":\"no\"}", 400, "invalid_type", "b"),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.i", "-1"),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.s", "\"{s*256}\""),
		V("PUT", "/api/v1/devices/{CD}", "{\"i\":9,\"s\":null,\"req\":\"r2\"}", 200, "device.i", "9"),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.s", "null"),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.req", "\"r2\""),
		V("GET", "/api/v1/devices/{CD}", NULL, 200, "device.def", "42"),
	};
#undef DEV
	run_cases(devices, sizeof devices / sizeof devices[0]);

	/* Deleting a custom field: gone from GET and from the template's list. */
	const tcase del[] = {
		K("DELETE", "/api/v1/devices/custom-fields/{F2}", NULL, 204),
		E("GET", "/api/v1/devices/custom-fields/{F2}", NULL, 404, "not_found", NULL),
		E("DELETE", "/api/v1/devices/custom-fields/{F2}", NULL, 404, "not_found", NULL),
		V("GET", "/api/v1/devices/custom-fields?deviceTemplateId={CF2}", NULL, 200, "deviceFields.meta.count", "3"),
	};
	run_cases(del, sizeof del / sizeof del[0]);
}

/* A device keeps working after a custom field it holds is deleted from its template, and
 * a required field added later binds new devices only. */
static void custom_field_changes(void **state)
{
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"Evolving\"}", "EV"));
	json_decref(create("/api/v1/devices/custom-fields", "deviceField",
	                   "{\"deviceTemplateId\":\"{EV}\",\"name\":\"gone\",\"fieldType\":\"string\"}", "EVG"));
	json_decref(create("/api/v1/devices/custom-fields", "deviceField",
	                   "{\"deviceTemplateId\":\"{EV}\",\"name\":\"keep\",\"fieldType\":\"integer\"}", "EVK"));
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{EV}\",\"gone\":\"x\",\"keep\":1}", "EVD"));
	const tcase cases[] = {
		K("DELETE", "/api/v1/devices/custom-fields/{EVG}", NULL, 204),
		V("GET", "/api/v1/devices/{EVD}", NULL, 200, "device.keep", "1"),
		V("PUT", "/api/v1/devices/{EVD}", "{\"keep\":2}", 200, "device.keep", "2"),
		V("PUT", "/api/v1/devices/{EVD}", "{\"name\":\"still editable\"}", 200, "device.name", "\"still editable\""),
		E("PUT", "/api/v1/devices/{EVD}", "{\"gone\":\"y\"}", 400, "unknown_field", "gone"),
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{EV}\",\"gone\":\"x\"}", 400, "unknown_field", "gone"),
		/* a required field added now: new devices need it, the old one stays editable */
		V("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{EV}\",\"name\":\"must\",\"fieldType\":\"boolean\",\"required\":true}", 201, "deviceField.required", "true"),
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{EV}\"}", 422, "missing_field", "must"),
		V("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{EV}\",\"must\":false}", 201, "device.must", "false"),
		V("PUT", "/api/v1/devices/{EVD}", "{\"keep\":3}", 200, "device.keep", "3"),
		E("PUT", "/api/v1/devices/{EVD}", "{\"must\":null}", 422, "invalid_field", "must"),
		V("PUT", "/api/v1/devices/{EVD}", "{\"must\":true}", 200, "device.must", "true"),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);

	/* At most 100 custom fields per template. */
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"Crowded\"}", "CR"));
	for(int i = 0; i < 100; i++) {
		char body[160];
		snprintf(body, sizeof body, "{\"deviceTemplateId\":\"{CR}\",\"name\":\"f%d\",\"fieldType\":\"number\"}", i);
		json_decref(create("/api/v1/devices/custom-fields", "deviceField", body, NULL));
	}
	const tcase full[] = {
		E("POST", "/api/v1/devices/custom-fields", "{\"deviceTemplateId\":\"{CR}\",\"name\":\"f100\",\"fieldType\":\"number\"}", 422, "too_many_fields", "deviceTemplateId"),
		V("GET", "/api/v1/devices/custom-fields?deviceTemplateId={CR}&results=false", NULL, 200, "deviceFields.meta.count", "100"),
		V("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{CR}\",\"f0\":1,\"f99\":-2.5}", 201, "device.f99", "-2.5"),
	};
	run_cases(full, sizeof full / sizeof full[0]);
}

/* ---------------------------------------------------------------- channel templates */

static void channel_templates(void **state)
{
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"Lamp\"}", "CT"));
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"Lamp 2\"}", "CT2"));
	/* A device made before the channels exist still shows them later: channels follow the template. */
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{CT}\",\"serialNumber\":\"lamp-1\"}", "LD"));

#define CH(name, extra) "{\"name\":\"" name "\",\"entityType\":\"deviceTemplate\",\"entityId\":\"{CT}\"" extra "}"
	const tcase cases[] = {
		/* valid names and defaults */
		VS("POST", "/api/v1/channels/templates", CH("a/b-c_d", ""), 201, "channelTemplate.permission", "\"publish-subscribe\"", "C1"),
		V("GET", "/api/v1/channels/templates/{C1}", NULL, 200, "channelTemplate.persistenceType", "\"simple\""),
		V("GET", "/api/v1/channels/templates/{C1}", NULL, 200, "channelTemplate.entityId", "\"{CT}\""),
		V("GET", "/api/v1/channels/templates/{C1}", NULL, 200, "channelTemplate.entityType", "\"deviceTemplate\""),
		V("GET", "/api/v1/channels/templates/{C1}", NULL, 200, "channelTemplate.name", "\"a/b-c_d\""),
		VS("POST", "/api/v1/channels/templates", CH("{c*64}", ",\"persistenceType\":\"timeSeries\""), 201, "channelTemplate.persistenceType", "\"timeSeries\"", "C2"),
		VS("POST", "/api/v1/channels/templates", CH("up", ",\"permission\":\"publish\""), 201, "channelTemplate.permission", "\"publish\"", "C3"),
		VS("POST", "/api/v1/channels/templates", CH("down", ",\"permission\":\"subscribe\""), 201, "channelTemplate.permission", "\"subscribe\"", "C4"),
		VS("POST", "/api/v1/channels/templates", CH("Both/Ways9", ",\"permission\":\"publish-subscribe\""), 201, "channelTemplate.permission", "\"publish-subscribe\"", "C5"),
		VS("POST", "/api/v1/channels/templates", CH("a_/-b", ""), 201, "channelTemplate.name", "\"a_/-b\"", "C6"),
		/* invalid names */
		E("POST", "/api/v1/channels/templates", CH("_control", ""), 422, "invalid_field", "name"),
		E("POST", "/api/v1/channels/templates", CH("a+b", ""), 422, "invalid_field", "name"),
		E("POST", "/api/v1/channels/templates", CH("a/+", ""), 422, "invalid_field", "name"),
		E("POST", "/api/v1/channels/templates", CH("a#", ""), 422, "invalid_field", "name"),
		E("POST", "/api/v1/channels/templates", CH("#", ""), 422, "invalid_field", "name"),
		E("POST", "/api/v1/channels/templates", CH("a//b", ""), 422, "invalid_field", "name"),
		E("POST", "/api/v1/channels/templates", CH("a/", ""), 422, "invalid_field", "name"),
		E("POST", "/api/v1/channels/templates", CH("/a", ""), 422, "invalid_field", "name"),
		E("POST", "/api/v1/channels/templates", CH("/", ""), 422, "invalid_field", "name"),
		E("POST", "/api/v1/channels/templates", CH("", ""), 422, "invalid_field", "name"),
		E("POST", "/api/v1/channels/templates", CH("{c*65}", ""), 422, "invalid_field", "name"),
		E("POST", "/api/v1/channels/templates", CH("a b", ""), 422, "invalid_field", "name"),
		E("POST", "/api/v1/channels/templates", CH("a.b", ""), 422, "invalid_field", "name"),
		E("POST", "/api/v1/channels/templates", CH("caf\xc3\xa9", ""), 422, "invalid_field", "name"),
		E("POST", "/api/v1/channels/templates", "{\"name\":7,\"entityType\":\"deviceTemplate\",\"entityId\":\"{CT}\"}", 400, "invalid_type", "name"),
		E("POST", "/api/v1/channels/templates", "{\"entityType\":\"deviceTemplate\",\"entityId\":\"{CT}\"}", 422, "missing_field", "name"),
		/* permission and persistence values */
		E("POST", "/api/v1/channels/templates", CH("p1", ",\"permission\":\"both\""), 422, "invalid_field", "permission"),
		E("POST", "/api/v1/channels/templates", CH("p1", ",\"permission\":\"\""), 422, "invalid_field", "permission"),
		E("POST", "/api/v1/channels/templates", CH("p1", ",\"permission\":1"), 400, "invalid_type", "permission"),
		E("POST", "/api/v1/channels/templates", CH("p1", ",\"persistenceType\":\"forever\""), 422, "invalid_field", "persistenceType"),
		/* entity */
		E("POST", "/api/v1/channels/templates", "{\"name\":\"p1\",\"entityType\":\"device\",\"entityId\":\"{CT}\"}", 422, "invalid_field", "entityType"),
		E("POST", "/api/v1/channels/templates", "{\"name\":\"p1\",\"entityId\":\"{CT}\"}", 422, "missing_field", "entityType"),
		E("POST", "/api/v1/channels/templates", "{\"name\":\"p1\",\"entityType\":\"deviceTemplate\"}", 422, "missing_field", "entityId"),
		E("POST", "/api/v1/channels/templates", "{\"name\":\"p1\",\"entityType\":\"deviceTemplate\",\"entityId\":\"0190a0b0-0000-7000-8000-000000000000\"}", 422, "unknown_reference", "entityId"),
		E("POST", "/api/v1/channels/templates", "{\"name\":\"p1\",\"entityType\":\"deviceTemplate\",\"entityId\":\"{LD}\"}", 422, "unknown_reference", "entityId"),
		E("POST", "/api/v1/channels/templates", "{\"name\":\"p1\",\"entityType\":\"deviceTemplate\",\"entityId\":\"x\"}", 422, "invalid_field", "entityId"),
		E("POST", "/api/v1/channels/templates", CH("p1", ",\"color\":\"red\""), 400, "unknown_field", "color"),
		/* duplicates: 409 on the same template only */
		E("POST", "/api/v1/channels/templates", CH("up", ""), 409, "conflict", NULL),
		E("POST", "/api/v1/channels/templates", CH("a/b-c_d", ",\"permission\":\"subscribe\""), 409, "conflict", NULL),
		VS("POST", "/api/v1/channels/templates", "{\"name\":\"up\",\"entityType\":\"deviceTemplate\",\"entityId\":\"{CT2}\"}", 201, "channelTemplate.entityId", "\"{CT2}\"", "C7"),
		/* lists */
		V("GET", "/api/v1/channels/templates?entityId={CT}", NULL, 200, "channelTemplates.meta.count", "6"),
		V("GET", "/api/v1/channels/templates?entityId={CT2}", NULL, 200, "channelTemplates.meta.count", "1"),
		V("GET", "/api/v1/channels/templates?entityId={CT2}", NULL, 200, "channelTemplates.results.0.id", "\"{C7}\""),
		V("GET", "/api/v1/channels/templates?entityId={CT}&name=up", NULL, 200, "channelTemplates.results.0.id", "\"{C3}\""),
		V("GET", "/api/v1/channels/templates?name=up", NULL, 200, "channelTemplates.meta.count", "2"),
		E("GET", "/api/v1/channels/templates?permission=publish", NULL, 400, "unknown_parameter", "permission"),
		E("PUT", "/api/v1/channels/templates/{C1}", "{\"permission\":\"publish\"}", 405, "method_not_allowed", NULL),
	};
#undef CH
	run_cases(cases, sizeof cases / sizeof cases[0]);

	/* The device shows one channel per channel template of its template, with full topics. */
	static const struct {
		const char *var, *name, *permission, *persistence;
	} want[] = {
		{"C1", "a/b-c_d", "publish-subscribe", "simple"},
		{"C2", NULL, "publish-subscribe", "timeSeries"},
		{"C3", "up", "publish", "simple"},
		{"C4", "down", "subscribe", "simple"},
		{"C5", "Both/Ways9", "publish-subscribe", "simple"},
		{"C6", "a_/-b", "publish-subscribe", "simple"},
	};
	char c64[65];
	memset(c64, 'c', 64);
	c64[64] = '\0';
	const char *paths[] = {"/api/v1/devices/{LD}", "/api/v1/devices?deviceTemplateId={CT}"};
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{CT}\",\"serialNumber\":\"lamp-2\"}", "LD2"));
	for(int p = 0; p < 2; p++) {
		h_resp r = api("GET", paths[p], NULL);
		check_resp(&r, 200, NULL, NULL, paths[p]);
		json_t *devs = p == 0 ? json_pack("[O]", json_object_get(r.json, "device")) : json_incref(h_at(r.json, "devices.results"));
		assert_int_equal(json_array_size(devs), p == 0 ? 1 : 2);
		size_t di;
		json_t *dev;
		json_array_foreach(devs, di, dev) {
			const char *did = json_string_value(json_object_get(dev, "id"));
			json_t *chs = json_object_get(dev, "channels");
			assert_true(json_is_array(chs));
			assert_int_equal(json_array_size(chs), sizeof want / sizeof want[0]);
			for(size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
				json_t *ch = json_array_get(chs, k);
				const char *name = want[k].name ? want[k].name : c64;
				char topic[300];
				snprintf(topic, sizeof topic, "xi/blue/v1/%s/d/%s/%s", S.admin.account_id, did, name);
				assert_string_equal(json_string_value(json_object_get(ch, "channelTemplateId")), getvar(want[k].var));
				assert_string_equal(json_string_value(json_object_get(ch, "channelTemplateName")), name);
				assert_string_equal(json_string_value(json_object_get(ch, "permission")), want[k].permission);
				assert_string_equal(json_string_value(json_object_get(ch, "persistenceType")), want[k].persistence);
				assert_string_equal(json_string_value(json_object_get(ch, "channel")), topic);
			}
		}
		json_decref(devs);
		h_resp_free(&r);
	}

	/* Deleting a channel template removes the channel from its devices; other templates keep theirs. */
	const tcase after[] = {
		K("DELETE", "/api/v1/channels/templates/{C3}", NULL, 204),
		E("GET", "/api/v1/channels/templates/{C3}", NULL, 404, "not_found", NULL),
		V("GET", "/api/v1/devices/{LD}", NULL, 200, "device.channels.2.channelTemplateName", "\"down\""),
		V("GET", "/api/v1/devices/{LD}", NULL, 200, "device.channels.5", NULL),
		V("GET", "/api/v1/channels/templates/{C7}", NULL, 200, "channelTemplate.name", "\"up\""),
		V("GET", "/api/v1/channels/templates?entityId={CT}", NULL, 200, "channelTemplates.meta.count", "5"),
		V("POST", "/api/v1/channels/templates", "{\"name\":\"up\",\"entityType\":\"deviceTemplate\",\"entityId\":\"{CT}\"}", 201, NULL, NULL),
	};
	run_cases(after, sizeof after / sizeof after[0]);
}

/* ---------------------------------------------------------------- template delete */

static void template_delete(void **state)
{
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"Doomed\"}", "TD"));
	json_decref(create("/api/v1/devices/custom-fields", "deviceField",
	                   "{\"deviceTemplateId\":\"{TD}\",\"name\":\"colour\",\"fieldType\":\"string\"}", "TDF"));
	json_decref(create("/api/v1/devices/custom-fields", "deviceField",
	                   "{\"deviceTemplateId\":\"{TD}\",\"name\":\"size\",\"fieldType\":\"integer\"}", "TDF2"));
	json_decref(create("/api/v1/channels/templates", "channelTemplate",
	                   "{\"name\":\"telemetry\",\"entityType\":\"deviceTemplate\",\"entityId\":\"{TD}\"}", "TDC"));
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{TD}\",\"colour\":\"red\"}", "TDD"));
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{TD}\"}", "TDD2"));

	const tcase cases[] = {
		E("DELETE", "/api/v1/devices/templates/{TD}", NULL, 409, "in_use", "id"),
		K("DELETE", "/api/v1/devices/{TDD}", NULL, 204),
		E("DELETE", "/api/v1/devices/templates/{TD}", NULL, 409, "in_use", "id"),
		/* the refused deletes kept everything */
		V("GET", "/api/v1/devices/templates/{TD}", NULL, 200, "deviceTemplate.name", "\"Doomed\""),
		V("GET", "/api/v1/devices/custom-fields/{TDF}", NULL, 200, "deviceField.name", "\"colour\""),
		V("GET", "/api/v1/channels/templates/{TDC}", NULL, 200, "channelTemplate.name", "\"telemetry\""),
		K("DELETE", "/api/v1/devices/{TDD2}", NULL, 204),
		K("DELETE", "/api/v1/devices/templates/{TD}", NULL, 204),
		E("GET", "/api/v1/devices/templates/{TD}", NULL, 404, "not_found", NULL),
		E("DELETE", "/api/v1/devices/templates/{TD}", NULL, 404, "not_found", NULL),
		E("GET", "/api/v1/devices/custom-fields/{TDF}", NULL, 404, "not_found", NULL),
		E("GET", "/api/v1/devices/custom-fields/{TDF2}", NULL, 404, "not_found", NULL),
		E("GET", "/api/v1/channels/templates/{TDC}", NULL, 404, "not_found", NULL),
		V("GET", "/api/v1/devices/custom-fields?deviceTemplateId={TD}", NULL, 200, "deviceFields.meta.count", "0"),
		V("GET", "/api/v1/channels/templates?entityId={TD}", NULL, 200, "channelTemplates.meta.count", "0"),
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{TD}\"}", 422, "unknown_reference", "deviceTemplateId"),
		/* other templates' fields and channels are untouched */
		V("GET", "/api/v1/devices/custom-fields/{FS}", NULL, 200, "deviceField.name", "\"s\""),
		V("GET", "/api/v1/channels/templates/{C1}", NULL, 200, "channelTemplate.name", "\"a/b-c_d\""),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);

	/* Versions on template writes: stale 412, current 204. */
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"Versioned\"}", "TV"));
	h_resp r = api("PUT", "/api/v1/devices/templates/{TV}", "{\"name\":\"Versioned 2\"}");
	check_resp(&r, 200, NULL, NULL, "rename TV");
	assert_string_equal(r.etag, "2");
	h_resp_free(&r);
	r = api_as(S.admin.api_key, "DELETE", "/api/v1/devices/templates/{TV}", NULL, "If-Match: 1");
	check_resp(&r, 412, "version_mismatch", "version", "delete TV stale");
	h_resp_free(&r);
	r = api_as(S.admin.api_key, "PUT", "/api/v1/devices/templates/{TV}", "{\"name\":\"x\"}", "Etag: 1");
	check_resp(&r, 412, "version_mismatch", "version", "put TV stale");
	h_resp_free(&r);
	r = api_as(S.admin.api_key, "DELETE", "/api/v1/devices/templates/{TV}", NULL, "If-Match: 2");
	check_resp(&r, 204, NULL, NULL, "delete TV current");
	h_resp_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(device_templates_crud),
		cmocka_unit_test(custom_fields),
		cmocka_unit_test(custom_field_changes),
		cmocka_unit_test(channel_templates),
		cmocka_unit_test(template_delete),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
