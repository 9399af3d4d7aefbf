/* End-to-end: organization templates and organizations (hierarchy, lists, updates,
 * deletes), against a real `imprint serve` (one per file). Cases are tables of {method,
 * path, body, status, error code, details target, checked value}; paths and bodies name
 * earlier ids as {VAR} and long strings as {c*N}. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "harness.h"



/* ---------------------------------------------------------------- organization templates */

static void org_templates(void **state)
{
	setvar("ACCT", S.admin.account_id);
	json_t *t = create("/api/v1/organizations/templates", "organizationTemplate", "{\"name\":\"Retailer\"}", "OT1");
	assert_uuid7(json_string_value(json_object_get(t, "id")));
	assert_string_equal(json_string_value(json_object_get(t, "name")), "Retailer");
	assert_string_equal(json_string_value(json_object_get(t, "accountId")), S.admin.account_id);
	assert_true(json_is_null(json_object_get(t, "description")));
	assert_string_equal(json_string_value(json_object_get(t, "version")), "1");
	assert_timestamp(json_string_value(json_object_get(t, "created")));
	json_decref(t);

	const tcase cases[] = {
		VS("POST", "/api/v1/organizations/templates", "{\"name\":\"Household\",\"description\":\"homes\"}", 201, "organizationTemplate.description", "\"homes\"", "OT2"),
		VS("POST", "/api/v1/organizations/templates", "{\"name\":\"{o*128}\"}", 201, "organizationTemplate.name", "\"{o*128}\"", "OT3"),
		E("POST", "/api/v1/organizations/templates", "{\"name\":\"{o*129}\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/organizations/templates", "{\"name\":\"\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/organizations/templates", "{}", 422, "missing_field", "name"),
		E("POST", "/api/v1/organizations/templates", "{\"name\":1}", 400, "invalid_type", "name"),
		E("POST", "/api/v1/organizations/templates", "{\"name\":\"x\",\"kind\":\"shop\"}", 400, "unknown_field", "kind"),
		E("POST", "/api/v1/organizations/templates", "{\"name\":\"x\",\"description\":\"{d*4097}\"}", 422, "invalid_field", "description"),
		E("POST", "/api/v1/organizations/templates", "{\"name\":\"x\",\"id\":\"{OT1}\"}", 400, "read_only_field", "id"),
		E("POST", "/api/v1/organizations/templates", "{\"name\":\"x\",\"accountId\":\"0190a0b0-0000-7000-8000-000000000000\"}", 403, "wrong_account", "accountId"),
		E("POST", "/api/v1/organizations/templates", "nope", 400, "malformed_json", NULL),
		/* read, rename, describe */
		V("GET", "/api/v1/organizations/templates/{OT1}", NULL, 200, "organizationTemplate.name", "\"Retailer\""),
		E("GET", "/api/v1/organizations/templates/0190a0b0-0000-7000-8000-000000000000", NULL, 404, "not_found", NULL),
		E("GET", "/api/v1/organizations/templates/bad", NULL, 404, "not_found", NULL),
		V("PUT", "/api/v1/organizations/templates/{OT1}", "{\"name\":\"Reseller\"}", 200, "organizationTemplate.name", "\"Reseller\""),
		V("GET", "/api/v1/organizations/templates/{OT1}", NULL, 200, "organizationTemplate.version", "\"2\""),
		V("PUT", "/api/v1/organizations/templates/{OT1}", "{\"description\":\"shops\"}", 200, "organizationTemplate.name", "\"Reseller\""),
		V("GET", "/api/v1/organizations/templates/{OT1}", NULL, 200, "organizationTemplate.description", "\"shops\""),
		E("PUT", "/api/v1/organizations/templates/{OT1}", "{\"name\":\"\"}", 422, "invalid_field", "name"),
		E("PUT", "/api/v1/organizations/templates/{OT1}", "{\"name\":\"{o*129}\"}", 422, "invalid_field", "name"),
		E("PUT", "/api/v1/organizations/templates/{OT1}", "{\"kind\":1}", 400, "unknown_field", "kind"),
		V("GET", "/api/v1/organizations/templates/{OT1}", NULL, 200, "organizationTemplate.name", "\"Reseller\""),
		/* list */
		V("GET", "/api/v1/organizations/templates", NULL, 200, "organizationTemplates.meta.count", "3"),
		V("GET", "/api/v1/organizations/templates", NULL, 200, "organizationTemplates.results.0.id", "\"{OT1}\""),
		V("GET", "/api/v1/organizations/templates", NULL, 200, "organizationTemplates.results.2.id", "\"{OT3}\""),
		V("GET", "/api/v1/organizations/templates?name=Household", NULL, 200, "organizationTemplates.results.0.id", "\"{OT2}\""),
		V("GET", "/api/v1/organizations/templates?name=Household", NULL, 200, "organizationTemplates.meta.count", "1"),
		V("GET", "/api/v1/organizations/templates?sortBy=name&sortOrder=desc", NULL, 200, "organizationTemplates.results.0.id", "\"{OT3}\""),
		E("GET", "/api/v1/organizations/templates?kind=x", NULL, 400, "unknown_parameter", "kind"),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);

	/* delete (unused): a stale version is refused, the current one goes */
	h_resp r = api_as(S.admin.api_key, "DELETE", "/api/v1/organizations/templates/{OT3}", NULL, "If-Match: 7");
	check_resp(&r, 412, "version_mismatch", "version", "stale delete of OT3");
	h_resp_free(&r);
	const tcase del[] = {
		V("GET", "/api/v1/organizations/templates/{OT3}", NULL, 200, "organizationTemplate.version", "\"1\""),
		K("DELETE", "/api/v1/organizations/templates/{OT3}", NULL, 204),
		E("GET", "/api/v1/organizations/templates/{OT3}", NULL, 404, "not_found", NULL),
		E("DELETE", "/api/v1/organizations/templates/{OT3}", NULL, 404, "not_found", NULL),
		V("GET", "/api/v1/organizations/templates", NULL, 200, "organizationTemplates.meta.count", "2"),
	};
	run_cases(del, sizeof del / sizeof del[0]);
}

/* ---------------------------------------------------------------- organizations */

static void organizations(void **state)
{
	json_t *o = create("/api/v1/organizations", "organization", "{\"name\":\"Acme\",\"organizationTemplateId\":\"{OT1}\"}", "L1");
	assert_uuid7(json_string_value(json_object_get(o, "id")));
	assert_string_equal(json_string_value(json_object_get(o, "name")), "Acme");
	assert_string_equal(json_string_value(json_object_get(o, "organizationTemplateId")), getvar("OT1"));
	assert_true(json_is_null(json_object_get(o, "parentId")));
	assert_true(json_is_null(json_object_get(o, "description")));
	assert_string_equal(json_string_value(json_object_get(o, "accountId")), S.admin.account_id);
	json_decref(o);

	const tcase cases[] = {
		/* five levels nest; the sixth is too deep */
		VS("POST", "/api/v1/organizations", "{\"name\":\"Level 2\",\"parentId\":\"{L1}\"}", 201, "organization.parentId", "\"{L1}\"", "L2"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"Level 3\",\"parentId\":\"{L2}\"}", 201, "organization.parentId", "\"{L2}\"", "L3"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"Level 4\",\"parentId\":\"{L3}\",\"organizationTemplateId\":\"{OT2}\"}", 201, "organization.parentId", "\"{L3}\"", "L4"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"Level 5\",\"parentId\":\"{L4}\"}", 201, "organization.parentId", "\"{L4}\"", "L5"),
		E("POST", "/api/v1/organizations", "{\"name\":\"Level 6\",\"parentId\":\"{L5}\"}", 422, "too_deep", "parentId"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"Level 5b\",\"parentId\":\"{L4}\"}", 201, "organization.name", "\"Level 5b\"", "L5B"),
		E("POST", "/api/v1/organizations", "{\"name\":\"Level 6b\",\"parentId\":\"{L5B}\"}", 422, "too_deep", "parentId"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"Level 2b\",\"parentId\":\"{L1}\"}", 201, "organization.name", "\"Level 2b\"", "L2B"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"Other root\",\"parentId\":null}", 201, "organization.parentId", "null", "R2"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"Level 2\",\"parentId\":\"{R2}\"}", 201, "organization.parentId", "\"{R2}\"", "R2C"),
		/* bad references and fields */
		E("POST", "/api/v1/organizations", "{\"name\":\"x\",\"parentId\":\"0190a0b0-0000-7000-8000-000000000000\"}", 422, "unknown_reference", "parentId"),
		E("POST", "/api/v1/organizations", "{\"name\":\"x\",\"parentId\":\"{OT1}\"}", 422, "unknown_reference", "parentId"),
		E("POST", "/api/v1/organizations", "{\"name\":\"x\",\"parentId\":\"top\"}", 422, "invalid_field", "parentId"),
		E("POST", "/api/v1/organizations", "{\"name\":\"x\",\"parentId\":5}", 400, "invalid_type", "parentId"),
		E("POST", "/api/v1/organizations", "{\"name\":\"x\",\"organizationTemplateId\":\"0190a0b0-0000-7000-8000-000000000000\"}", 422, "unknown_reference", "organizationTemplateId"),
		E("POST", "/api/v1/organizations", "{\"name\":\"x\",\"organizationTemplateId\":\"{L1}\"}", 422, "unknown_reference", "organizationTemplateId"),
		E("POST", "/api/v1/organizations", "{\"parentId\":\"{L1}\"}", 422, "missing_field", "name"),
		E("POST", "/api/v1/organizations", "{\"name\":\"\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/organizations", "{\"name\":\"{o*129}\"}", 422, "invalid_field", "name"),
		V("POST", "/api/v1/organizations", "{\"name\":\"{o*128}\",\"parentId\":\"{R2}\"}", 201, "organization.name", "\"{o*128}\""),
		E("POST", "/api/v1/organizations", "{\"name\":\"x\",\"children\":[]}", 400, "unknown_field", "children"),
		E("POST", "/api/v1/organizations", "{\"name\":\"x\",\"version\":\"1\"}", 400, "read_only_field", "version"),
		/* reads */
		V("GET", "/api/v1/organizations/{L5}", NULL, 200, "organization.name", "\"Level 5\""),
		V("GET", "/api/v1/organizations/{L4}", NULL, 200, "organization.organizationTemplateId", "\"{OT2}\""),
		E("GET", "/api/v1/organizations/0190a0b0-0000-7000-8000-000000000000", NULL, 404, "not_found", NULL),
		E("GET", "/api/v1/organizations/{OT1}", NULL, 404, "not_found", NULL),
		E("GET", "/api/v1/organizations/x", NULL, 404, "not_found", NULL),
		/* lists: ?parentId= and ?name= */
		V("GET", "/api/v1/organizations", NULL, 200, "organizations.meta.count", "10"),
		V("GET", "/api/v1/organizations?parentId={L1}", NULL, 200, "organizations.meta.count", "2"),
		V("GET", "/api/v1/organizations?parentId={L1}", NULL, 200, "organizations.results.0.id", "\"{L2}\""),
		V("GET", "/api/v1/organizations?parentId={L1}", NULL, 200, "organizations.results.1.id", "\"{L2B}\""),
		V("GET", "/api/v1/organizations?parentId={L4}", NULL, 200, "organizations.meta.count", "2"),
		V("GET", "/api/v1/organizations?parentId={L5}", NULL, 200, "organizations.meta.count", "0"),
		V("GET", "/api/v1/organizations?parentId={L5}", NULL, 200, "organizations.results", "[]"),
		V("GET", "/api/v1/organizations?parentId=null", NULL, 200, "organizations.meta.count", "2"),
		V("GET", "/api/v1/organizations?parentId=null", NULL, 200, "organizations.results.1.id", "\"{R2}\""),
		V("GET", "/api/v1/organizations?name=Level%202", NULL, 200, "organizations.meta.count", "2"),
		V("GET", "/api/v1/organizations?name=Level%202", NULL, 200, "organizations.results.1.id", "\"{R2C}\""),
		V("GET", "/api/v1/organizations?name=Level+2", NULL, 200, "organizations.meta.count", "2"),
		V("GET", "/api/v1/organizations?name=Level%202&parentId={R2}", NULL, 200, "organizations.results.0.id", "\"{R2C}\""),
		V("GET", "/api/v1/organizations?name=Level%202&parentId={R2}", NULL, 200, "organizations.meta.count", "1"),
		V("GET", "/api/v1/organizations?name=Level", NULL, 200, "organizations.meta.count", "0"),
		V("GET", "/api/v1/organizations?name=Acme", NULL, 200, "organizations.results.0.id", "\"{L1}\""),
		V("GET", "/api/v1/organizations?organizationTemplateId={OT2}", NULL, 200, "organizations.results.0.id", "\"{L4}\""),
		V("GET", "/api/v1/organizations?organizationTemplateId={OT2}", NULL, 200, "organizations.meta.count", "1"),
		V("GET", "/api/v1/organizations?sortBy=name&pageSize=1", NULL, 200, "organizations.results.0.id", "\"{L1}\""),
		E("GET", "/api/v1/organizations?depth=2", NULL, 400, "unknown_parameter", "depth"),
		E("GET", "/api/v1/organizations?sortBy=parentId", NULL, 400, "invalid_parameter", "sortBy"),
		/* updates: name and template change, parent never does */
		V("PUT", "/api/v1/organizations/{L3}", "{\"name\":\"Level three\"}", 200, "organization.name", "\"Level three\""),
		V("GET", "/api/v1/organizations/{L3}", NULL, 200, "organization.parentId", "\"{L2}\""),
		V("GET", "/api/v1/organizations/{L3}", NULL, 200, "organization.version", "\"2\""),
		V("PUT", "/api/v1/organizations/{L3}", "{\"parentId\":\"{L2}\",\"description\":\"d\"}", 200, "organization.description", "\"d\""),
		E("PUT", "/api/v1/organizations/{L3}", "{\"parentId\":\"{L1}\"}", 422, "immutable_field", "parentId"),
		E("PUT", "/api/v1/organizations/{L3}", "{\"parentId\":null}", 422, "immutable_field", "parentId"),
		E("PUT", "/api/v1/organizations/{R2}", "{\"parentId\":\"{L1}\"}", 422, "immutable_field", "parentId"),
		E("PUT", "/api/v1/organizations/{L3}", "{\"parentId\":\"nope\"}", 422, "invalid_field", "parentId"),
		V("PUT", "/api/v1/organizations/{R2}", "{\"parentId\":null}", 200, "organization.parentId", "null"),
		V("PUT", "/api/v1/organizations/{L3}", "{\"organizationTemplateId\":\"{OT2}\"}", 200, "organization.organizationTemplateId", "\"{OT2}\""),
		E("PUT", "/api/v1/organizations/{L3}", "{\"organizationTemplateId\":\"0190a0b0-0000-7000-8000-000000000000\"}", 422, "unknown_reference", "organizationTemplateId"),
		E("PUT", "/api/v1/organizations/{L3}", "{\"name\":\"\"}", 422, "invalid_field", "name"),
		E("PUT", "/api/v1/organizations/{L3}", "{\"name\":null}", 400, "invalid_type", "name"),
		E("PUT", "/api/v1/organizations/0190a0b0-0000-7000-8000-000000000000", "{\"name\":\"x\"}", 404, "not_found", NULL),
		V("GET", "/api/v1/organizations/{L3}", NULL, 200, "organization.parentId", "\"{L2}\""),
		V("GET", "/api/v1/organizations/{L3}", NULL, 200, "organization.name", "\"Level three\""),
		V("GET", "/api/v1/organizations/{L3}", NULL, 200, "organization.version", "\"4\""),
		V("GET", "/api/v1/organizations?parentId={L2}", NULL, 200, "organizations.results.0.name", "\"Level three\""),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);
}

/* ---------------------------------------------------------------- deletes */

static void org_deletes(void **state)
{
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"Gadget\"}", "DT"));
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{DT}\",\"organizationId\":\"{L5}\"}", "DEV"));
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{DT}\"}", "DEV2"));
	json_decref(create("/api/v1/organizations", "organization", "{\"name\":\"Empty\"}", "EMPTY"));

	const tcase cases[] = {
		/* holds a device */
		E("DELETE", "/api/v1/organizations/{L5}", NULL, 409, "in_use", "id"),
		V("GET", "/api/v1/organizations/{L5}", NULL, 200, "organization.name", "\"Level 5\""),
		V("GET", "/api/v1/devices?organizationId={L5}", NULL, 200, "devices.meta.count", "1"),
		/* holds children */
		E("DELETE", "/api/v1/organizations/{L4}", NULL, 409, "in_use", "id"),
		E("DELETE", "/api/v1/organizations/{L1}", NULL, 409, "in_use", "id"),
		E("DELETE", "/api/v1/organizations/{R2}", NULL, 409, "in_use", "id"),
		/* a template in use */
		E("DELETE", "/api/v1/organizations/templates/{OT2}", NULL, 409, "in_use", "id"),
		E("DELETE", "/api/v1/organizations/templates/{OT1}", NULL, 409, "in_use", "id"),
		V("GET", "/api/v1/organizations/templates/{OT2}", NULL, 200, "organizationTemplate.name", "\"Household\""),
		/* an empty organization goes */
		K("DELETE", "/api/v1/organizations/{EMPTY}", NULL, 204),
		E("GET", "/api/v1/organizations/{EMPTY}", NULL, 404, "not_found", NULL),
		E("DELETE", "/api/v1/organizations/{EMPTY}", NULL, 404, "not_found", NULL),
		/* a device moved in by PUT holds its organization too; moved out, it does not */
		V("PUT", "/api/v1/devices/{DEV2}", "{\"organizationId\":\"{L5B}\"}", 200, "device.organizationId", "\"{L5B}\""),
		E("DELETE", "/api/v1/organizations/{L5B}", NULL, 409, "in_use", "id"),
		V("PUT", "/api/v1/devices/{DEV2}", "{\"organizationId\":null}", 200, "device.organizationId", "null"),
		K("DELETE", "/api/v1/organizations/{L5B}", NULL, 204),
		/* a device in a deleted organization cannot be created or moved there */
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{DT}\",\"organizationId\":\"{L5B}\"}", 422, "unknown_reference", "organizationId"),
		E("PUT", "/api/v1/devices/{DEV2}", "{\"organizationId\":\"{L5B}\"}", 422, "unknown_reference", "organizationId"),
		/* delete the device, then the chain from the bottom up */
		E("DELETE", "/api/v1/organizations/{L5}", NULL, 409, "in_use", "id"),
		K("DELETE", "/api/v1/devices/{DEV}", NULL, 204),
		K("DELETE", "/api/v1/organizations/{L5}", NULL, 204),
		E("DELETE", "/api/v1/organizations/{L3}", NULL, 409, "in_use", "id"),
		K("DELETE", "/api/v1/organizations/{L4}", NULL, 204),
		E("DELETE", "/api/v1/organizations/templates/{OT2}", NULL, 409, "in_use", "id"),
		K("DELETE", "/api/v1/organizations/{L3}", NULL, 204),
		K("DELETE", "/api/v1/organizations/templates/{OT2}", NULL, 204),
		E("GET", "/api/v1/organizations/templates/{OT2}", NULL, 404, "not_found", NULL),
		K("DELETE", "/api/v1/organizations/{L2}", NULL, 204),
		E("DELETE", "/api/v1/organizations/{L1}", NULL, 409, "in_use", "id"),
		K("DELETE", "/api/v1/organizations/{L2B}", NULL, 204),
		K("DELETE", "/api/v1/organizations/{L1}", NULL, 204),
		K("DELETE", "/api/v1/organizations/templates/{OT1}", NULL, 204),
		V("GET", "/api/v1/organizations?parentId=null", NULL, 200, "organizations.meta.count", "1"),
		V("GET", "/api/v1/organizations?parentId=null", NULL, 200, "organizations.results.0.id", "\"{R2}\""),
		/* a new child still nests under what remains */
		V("POST", "/api/v1/organizations", "{\"name\":\"Fresh\",\"parentId\":\"{R2C}\"}", 201, "organization.parentId", "\"{R2C}\""),
		E("POST", "/api/v1/organizations", "{\"name\":\"Orphan\",\"parentId\":\"{L1}\"}", 422, "unknown_reference", "parentId"),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(org_templates),
		cmocka_unit_test(organizations),
		cmocka_unit_test(org_deletes),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
