/* Association: a device maker (or the device itself, over HTTP Basic) makes a short code
 * for a device; whoever holds the code claims the device into an organization, which is
 * how an end user comes to own a device. Codes are 60 random bits (core/assoc_code.h),
 * single use, kept only as a keyed hash, and failed guesses are rate limited per caller
 * and per account. Neither a code nor its hash ever reaches a log line or the audit. */
#include <stdio.h>
#include <string.h>

#include "api/auth.h"
#include "api/handlers.h"
#include "api/resource.h"
#include "core/assoc_code.h"
#include "core/limits.h"
#include "core/ratelimit.h"
#include "core/timeutil.h"

/* The keyed hash a code is stored under, apart from every other secret's by a prefix. */
static void code_hash(imp_req *r, const char *canon, char hash[65])
{
	char in[8 + IMP_ASSOC_SYMBOLS + 1];
	snprintf(in, sizeof in, "assoc:%s", canon);
	imp_secret_hash(&r->app->keys, in, hash);
}

/* Refuses body keys not in known (400), and accountId other than the caller's (403). */
static imp_err check_keys(imp_req *r, json_t *body, const char *const *known)
{
	const char *key;
	json_t *v;
	json_object_foreach(body, key, v) {
		if(imp_choice_index(known, key) < 0) return api_fail(r, IMP_ERR_BAD_REQUEST, "unknown_field", NULL, "unknown field in the body");
	}
	return api_check_account(r, json_object_get(body, "accountId"));
}

/* A required string member: 400 when not a string, 422 when absent. */
static const char *need_string(imp_req *r, json_t *body, const char *name, imp_err *rc)
{
	json_t *v = json_object_get(body, name);
	if(*rc) return NULL;
	if(!v) *rc = api_fail(r, IMP_ERR_INVALID, "missing_field", name, "%s is required", name);
	else if(!json_is_string(v)) *rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", name, "%s must be a string", name);
	return json_string_value(v);
}

imp_err imp_h_assoc_create(imp_req *r)
{
	static const char *const known[] = {"accountId", "deviceId", "ttlSeconds", NULL};
	json_t *body = api_body_object(r);
	if(!body) return IMP_ERR_BAD_REQUEST;
	char code[IMP_ASSOC_SHOWN + 1] = "", canon[IMP_ASSOC_SYMBOLS + 1] = "", hash[65] = "";
	imp_entity d = {0};
	imp_err rc = check_keys(r, body, known);
	const char *device_id = need_string(r, body, "deviceId", &rc);
	json_t *ttl = json_object_get(body, "ttlSeconds");
	json_int_t ttl_s = IMP_ASSOC_TTL_DEFAULT_S;
	if(rc) goto out;
	if(ttl && !json_is_integer(ttl)) {
		rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", "ttlSeconds", "ttlSeconds must be an integer");
		goto out;
	}
	if(ttl) ttl_s = json_integer_value(ttl);
	if(ttl_s < 1 || ttl_s > IMP_ASSOC_TTL_MAX_S) {
		rc = api_fail(r, IMP_ERR_INVALID, "invalid_field", "ttlSeconds", "ttlSeconds must be from 1 to %d",
		              IMP_ASSOC_TTL_MAX_S);
		goto out;
	}
	if(r->who.type == IMP_ACTOR_DEVICE && strcmp(device_id, r->who.actor_id.s) != 0) {
		rc = api_fail(r, IMP_ERR_FORBIDDEN, "forbidden", "deviceId", "a device may make a code only for itself");
		goto out;
	}
	if(!imp_id_valid(device_id)) {
		rc = api_fail(r, IMP_ERR_NOT_FOUND, "not_found", "deviceId", "no such device");
		goto out;
	}
	uint64_t expires = imp_now_ms() + (uint64_t)ttl_s * 1000;
	char when[IMP_ISO_LEN + 1];
	imp_iso8601(expires, when);
	if((rc = imp_assoc_code_new(code)) || (rc = imp_assoc_code_parse(code, canon))) goto out;
	code_hash(r, canon, hash);
	if((rc = imp_db_begin(&r->db))) goto out;
	rc = imp_db_get(r->db, &imp_kind_device, r->who.account, device_id, &d);
	if(rc == IMP_ERR_NOT_FOUND) rc = api_fail(r, rc, "not_found", "deviceId", "no such device");
	if(rc) goto out;
	if((rc = imp_db_assoc_code_put(r->db, r->who.account, device_id, hash, expires, r->who.actor_id.s))) goto out;
	json_t *details = json_pack("{s:s}", "expires", when);
	rc = api_audit(r, "create-association-code", "device", device_id, details);
	json_decref(details);
	if(rc) goto out;
	api_reply(r, 201, json_pack("{s:s, s:s, s:s}", "associationCode", code, "deviceId", device_id, "expires", when));
	rc = api_commit(r, "the association code could not be made");
out:
	if(rc && !r->err_msg[0]) rc = api_fail(r, rc, NULL, NULL, "the association code could not be made");
	explicit_bzero(code, sizeof code);
	explicit_bzero(canon, sizeof canon);
	imp_entity_clear(&d);
	json_decref(body);
	return rc;
}

static imp_err rate_limited(imp_req *r, unsigned wait)
{
	snprintf(r->header_name, sizeof r->header_name, "Retry-After");
	snprintf(r->header_value, sizeof r->header_value, "%u", wait ? wait : 1);
	return api_fail(r, IMP_ERR_RATE_LIMITED, "rate_limited", NULL,
	                "too many wrong association codes; try again in %u seconds", wait ? wait : 1);
}

/* The organization a claim goes to, from endUserId or organizationId, into org. An end
 * user may name only itself or its own organization. */
static imp_err claim_target(imp_req *r, const char *end_user, const char *org_id, imp_id *org)
{
	imp_entity e;
	imp_err rc;
	if(r->who.type == IMP_ACTOR_END_USER) {
		if(end_user ? strcmp(end_user, r->who.actor_id.s) != 0 : strcmp(org_id, r->who.org_id.s) != 0)
			return api_fail(r, IMP_ERR_FORBIDDEN, "forbidden", end_user ? "endUserId" : "organizationId",
			                "an end user claims devices into its own organization only");
		*org = r->who.org_id;
		return IMP_OK;
	}
	const imp_kind *k = end_user ? &imp_kind_end_user : &imp_kind_organization;
	const char *id = end_user ? end_user : org_id;
	const char *field = end_user ? "endUserId" : "organizationId";
	rc = imp_id_valid(id) ? imp_db_get(r->db, k, r->who.account, id, &e) : IMP_ERR_NOT_FOUND;
	if(rc == IMP_ERR_NOT_FOUND)
		return api_fail(r, IMP_ERR_INVALID, "unknown_reference", field, "%s names no %s of this account", field, k->name);
	if(rc) return rc;
	snprintf(org->s, sizeof org->s, "%s", end_user ? json_string_value(json_object_get(e.doc, "organizationId")) : e.id.s);
	imp_entity_clear(&e);
	return IMP_OK;
}

imp_err imp_h_assoc_start(imp_req *r)
{
	static const char *const known[] = {"accountId", "associationCode", "endUserId", "organizationId", NULL};
	json_t *body = api_body_object(r);
	if(!body) return IMP_ERR_BAD_REQUEST;
	char canon[IMP_ASSOC_SYMBOLS + 1] = "", hash[65] = "";
	char caller_key[8 + IMP_UUID_LEN], account_key[8 + IMP_UUID_LEN];
	imp_entity d = {0};
	imp_id device_id, org;
	imp_err rc = check_keys(r, body, known);
	const char *text = need_string(r, body, "associationCode", &rc);
	json_t *ju = json_object_get(body, "endUserId"), *jo = json_object_get(body, "organizationId");
	if(rc) goto out;
	if(!ju == !jo) {
		rc = api_fail(r, IMP_ERR_INVALID, "missing_field", "endUserId", "send either endUserId or organizationId");
		goto out;
	}
	if(!json_is_string(ju ? ju : jo)) {
		rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", ju ? "endUserId" : "organizationId", "%s must be a string",
		              ju ? "endUserId" : "organizationId");
		goto out;
	}
	if(imp_assoc_code_parse(text, canon)) {
		rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_code", "associationCode",
		              "associationCode must be 12 symbols of Crockford base32, as XXXX-XXXX-XXXX");
		goto out;
	}
	/* A caller or account that guessed wrong too often is not even checked. */
	snprintf(caller_key, sizeof caller_key, "c:%s", r->who.actor_id.s);
	snprintf(account_key, sizeof account_key, "a:%s", r->who.account_id.s);
	unsigned wait = imp_ratelimit_blocked(r->app->assoc_by_caller, caller_key);
	unsigned wait2 = imp_ratelimit_blocked(r->app->assoc_by_account, account_key);
	if(wait || wait2) {
		rc = rate_limited(r, wait > wait2 ? wait : wait2);
		goto out;
	}
	if((rc = claim_target(r, json_string_value(ju), json_string_value(jo), &org))) goto out;
	code_hash(r, canon, hash);
	if((rc = imp_db_begin(&r->db))) goto out;
	rc = imp_db_assoc_code_find(r->db, r->who.account, hash, imp_now_ms(), &device_id);
	if(!rc) rc = imp_db_get(r->db, &imp_kind_device, r->who.account, device_id.s, &d);
	if(rc == IMP_ERR_NOT_FOUND) {
		imp_db_rollback(&r->db);
		imp_ratelimit_fail(r->app->assoc_by_caller, caller_key);
		imp_ratelimit_fail(r->app->assoc_by_account, account_key);
		rc = api_fail(r, rc, "unknown_code", "associationCode", "the association code is unknown, expired or used");
		goto out;
	}
	if(rc) goto out;
	if(json_is_true(json_object_get(d.doc, "disabled"))) {
		rc = api_fail(r, IMP_ERR_INVALID, "device_disabled", "associationCode", "the device is disabled");
		goto out;
	}
	const char *state = json_string_value(json_object_get(d.doc, "provisioningState"));
	if(!state || strcmp(state, "defined") == 0) {
		rc = api_fail(r, IMP_ERR_INVALID, "not_activated", "associationCode",
		              "the device has no credential yet; it can be claimed once activated");
		goto out;
	}
	const char *from = json_string_value(json_object_get(d.doc, "organizationId"));
	json_t *details = json_pack("{s:s, s:s?, s:s?}", "organizationId", org.s, "previousOrganizationId", from,
	                            "endUserId", json_string_value(ju));
	json_object_set_new(d.doc, "organizationId", json_string(org.s));
	json_object_set_new(d.doc, "provisioningState", json_string("associated"));
	d.modified_by = r->who.actor_id;
	if(!(rc = imp_db_assoc_code_take(r->db, r->who.account, hash)) && !(rc = imp_db_update(r->db, &imp_kind_device, &d, -1)))
		rc = api_audit(r, "associate", "device", d.id.s, details);
	json_decref(details);
	if(rc) goto out;
	api_reply(r, 200, json_pack("{s:s}", "deviceId", d.id.s));
	rc = api_commit(r, "the device could not be associated");
out:
	if(rc && !r->err_msg[0]) rc = api_fail(r, rc, NULL, NULL, "the device could not be associated");
	explicit_bzero(canon, sizeof canon);
	explicit_bzero(hash, sizeof hash);
	imp_entity_clear(&d);
	json_decref(body);
	return rc;
}

imp_err imp_h_assoc_release(imp_req *r)
{
	static const char *const known[] = {"accountId", "deviceId", NULL};
	json_t *body = api_body_object(r);
	if(!body) return IMP_ERR_BAD_REQUEST;
	imp_entity d = {0};
	imp_err rc = check_keys(r, body, known);
	const char *device_id = need_string(r, body, "deviceId", &rc);
	if(rc) goto out;
	rc = imp_id_valid(device_id) ? imp_db_begin(&r->db) : IMP_ERR_NOT_FOUND;
	if(!rc) rc = imp_db_get(r->db, &imp_kind_device, r->who.account, device_id, &d);
	if(!rc && r->who.type == IMP_ACTOR_END_USER) {
		int within = 0;
		const char *org = json_string_value(json_object_get(d.doc, "organizationId"));
		rc = org ? imp_db_org_within(r->db, r->who.account, org, r->who.org_id.s, &within) : IMP_OK;
		if(!rc && !within) rc = IMP_ERR_NOT_FOUND;
	}
	if(rc == IMP_ERR_NOT_FOUND) rc = api_fail(r, rc, "not_found", "deviceId", "no such device");
	if(rc) goto out;
	const char *from = json_string_value(json_object_get(d.doc, "organizationId"));
	json_t *details = json_pack("{s:s?}", "previousOrganizationId", from);
	json_object_set_new(d.doc, "organizationId", json_null());
	d.modified_by = r->who.actor_id;
	if(!(rc = imp_db_update(r->db, &imp_kind_device, &d, -1))) rc = api_audit(r, "release", "device", d.id.s, details);
	json_decref(details);
	if(rc || (rc = imp_res_reply(r, &imp_res_device, &d, 200, NULL))) goto out;
	rc = api_commit(r, "the device could not be released");
out:
	if(rc && !r->err_msg[0]) rc = api_fail(r, rc, NULL, NULL, "the device could not be released");
	imp_entity_clear(&d);
	json_decref(body);
	return rc;
}
