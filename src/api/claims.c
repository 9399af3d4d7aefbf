/* Field provisioning (API.md, "Field provisioning"; docs/manufacturing.md): claim tokens,
 * which an admin makes, and the public claim, which turns one use of a token and a serial
 * number into an activated device and its credential. It is the weakest way into an
 * account, so a token is scoped to a template, a use count, an expiry and optionally an
 * allow-list of serial numbers; it exists in clear only in the response that makes it (the
 * store keeps its keyed hash); claims are rate limited per token and per client address;
 * each serial number is claimed at most once per account; every claim is audited. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/auth.h"
#include "api/credentials.h"
#include "api/handlers.h"
#include "api/resource.h"
#include "core/crypto.h"
#include "core/limits.h"
#include "core/mem.h"
#include "core/ratelimit.h"
#include "core/rules.h"
#include "core/timeutil.h"

#define CLAIM_TOKEN_PREFIX "imc_"
/* "imc_" and 43 characters of base64url (32 random bytes). */
#define CLAIM_TOKEN_LEN (4 + 43)

/* ---- claim tokens: the generic resource and its rules ---------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* serialNumbers: 1 to IMP_CLAIM_SERIALS_MAX distinct strings of 1 to IMP_SERIAL_MAX
 * characters. Sorted copies find duplicates in n log n: the list may be 100,000 long. */
static imp_err check_serials(imp_req *r, json_t *v)
{
	const char *n = "serialNumbers";
	if(!json_is_array(v)) return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", n, "serialNumbers must be an array of strings");
	size_t count = json_array_size(v), i;
	if(count == 0 || count > IMP_CLAIM_SERIALS_MAX)
		return api_fail(r, IMP_ERR_INVALID, "invalid_field", n, "serialNumbers must hold 1 to %d serial numbers",
		                IMP_CLAIM_SERIALS_MAX);
	const char **sorted = imp_calloc(count, sizeof *sorted);
	if(!sorted) return api_fail(r, IMP_ERR_NOMEM, NULL, NULL, "out of memory");
	imp_err rc = IMP_OK;
	json_t *s;
	json_array_foreach(v, i, s) {
		if(!json_is_string(s)) {
			rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", n, "serialNumbers must be an array of strings");
			break;
		}
		size_t len = imp_utf8_len(json_string_value(s));
		if(len == 0 || len > IMP_SERIAL_MAX) {
			rc = api_fail(r, IMP_ERR_INVALID, "invalid_field", n, "each serial number must be a string of 1 to %d characters",
			              IMP_SERIAL_MAX);
			break;
		}
		sorted[i] = json_string_value(s);
	}
	if(!rc) {
		qsort(sorted, count, sizeof *sorted, cmp_str);
		for(i = 1; i < count && !rc; i++) {
			if(strcmp(sorted[i - 1], sorted[i]) == 0)
				rc = api_fail(r, IMP_ERR_INVALID, "duplicate_serial", n, "serialNumbers holds a serial number twice");
		}
	}
	imp_free(sorted);
	return rc;
}

static imp_err token_validate(imp_req *r, json_t *doc, const imp_entity *old)
{
	(void)old; /* tokens are never updated */
	json_t *max = json_object_get(doc, "maxUses");
	if(!json_is_integer(max)) return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", "maxUses", "maxUses must be an integer");
	if(json_integer_value(max) < 1 || json_integer_value(max) > IMP_CLAIM_USES_MAX)
		return api_fail(r, IMP_ERR_INVALID, "invalid_field", "maxUses", "maxUses must be from 1 to %d", IMP_CLAIM_USES_MAX);
	int64_t expires, now = (int64_t)imp_now_ms();
	if(imp_iso8601_parse(json_string_value(json_object_get(doc, "expires")), &expires))
		return api_fail(r, IMP_ERR_INVALID, "invalid_field", "expires", "expires must be an ISO-8601 date-time");
	if(expires <= now) return api_fail(r, IMP_ERR_INVALID, "invalid_field", "expires", "expires must be in the future");
	if(expires > now + (int64_t)IMP_CLAIM_TTL_MAX_S * 1000)
		return api_fail(r, IMP_ERR_INVALID, "invalid_field", "expires", "expires must be at most 365 days ahead");
	char iso[IMP_ISO_LEN + 1];
	imp_iso8601((uint64_t)expires, iso);
	json_t *serials = json_object_get(doc, "serialNumbers");
	imp_err rc = serials ? check_serials(r, serials) : IMP_OK;
	if(rc) return rc;
	if(json_object_set_new(doc, "expires", json_string(iso)) ||
	   json_object_set_new(doc, "serialNumberCount", serials ? json_integer((json_int_t)json_array_size(serials)) : json_null()) ||
	   json_object_set_new(doc, "uses", json_integer(0)))
		return api_fail(r, IMP_ERR_NOMEM, NULL, NULL, "out of memory");
	return IMP_OK;
}

static imp_err token_secret(imp_req *r, json_t *doc, char **secret, json_t **reveal)
{
	(void)doc;
	uint8_t raw[32];
	char token[CLAIM_TOKEN_LEN + 1], hash[65];
	if(imp_random(raw, sizeof raw)) return IMP_ERR_CRYPTO;
	memcpy(token, CLAIM_TOKEN_PREFIX, 4);
	imp_b64_encode(raw, sizeof raw, token + 4, 1);
	sodium_memzero(raw, sizeof raw);
	imp_secret_hash(&r->app->keys, token, hash);
	*reveal = json_pack("{s:s}", "token", token);
	*secret = imp_strdup(hash);
	sodium_memzero(token, sizeof token);
	return *reveal && *secret ? IMP_OK : IMP_ERR_NOMEM;
}

static imp_err token_after_insert(imp_req *r, const imp_entity *e)
{
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(e->doc, "serialNumbers"), i, s) {
		imp_err rc = imp_db_claim_serial_add(r->db, e->key, json_string_value(s));
		if(rc) return rc;
	}
	return IMP_OK;
}

static imp_err token_before_delete(imp_req *r, const imp_entity *e) { return imp_db_claim_serials_delete(r->db, e->key); }

const imp_resource imp_res_claim_token = {
	.kind = &imp_kind_claim_token,
	.validate = token_validate,
	.make_secret = token_secret,
	.after_insert = token_after_insert,
	.before_delete = token_before_delete,
};

/* ---- the claim ------------------------------------------------------------------------- */

/* One answer for every reason a token does not allow a claim, so a caller learns nothing
 * about which tokens exist or what they allow. */
static imp_err refuse(imp_req *r)
{
	return api_fail(r, IMP_ERR_FORBIDDEN, "claim_refused", NULL,
	                "the claim token is unknown, expired, used up or revoked, or does not allow this serial number");
}

static imp_err rate_limited(imp_req *r, unsigned wait)
{
	if(!wait) wait = 1;
	snprintf(r->header_name, sizeof r->header_name, "Retry-After");
	snprintf(r->header_value, sizeof r->header_value, "%u", wait);
	return api_fail(r, IMP_ERR_RATE_LIMITED, "rate_limited", NULL, "too many claims; try again in %u seconds", wait);
}

/* The token row as it stands in the write transaction, checked: still there, not expired,
 * one use counted (none left: refused), serial on its allow-list when it has one. A refusal
 * says why in *why, for the audit log. */
static imp_err take_use(imp_req *r, const imp_entity *found, const char *serial, imp_entity *tok, const char **why)
{
	imp_err rc = imp_db_get_by_key(r->db, &imp_kind_claim_token, found->account, found->key, tok);
	if(rc == IMP_ERR_NOT_FOUND) {
		*why = "revoked";
		return refuse(r);
	}
	if(rc) return rc;
	int64_t expires;
	if(imp_iso8601_parse(json_string_value(json_object_get(tok->doc, "expires")), &expires) ||
	   expires <= (int64_t)imp_now_ms()) {
		*why = "expired";
		return refuse(r);
	}
	rc = imp_db_claim_use(r->db, tok->key);
	if(rc == IMP_ERR_NOT_FOUND) *why = "used up";
	if(!rc && json_is_integer(json_object_get(tok->doc, "serialNumberCount"))) {
		rc = imp_db_claim_serial_allowed(r->db, tok->key, serial);
		if(rc == IMP_ERR_NOT_FOUND) *why = "serial number not allowed";
	}
	return rc == IMP_ERR_NOT_FOUND ? refuse(r) : rc;
}

/* Inside the write transaction: the device (activated, with its credential) for serial
 * under the token's template, into *e and *c; the secret, for password templates, into
 * secret. */
static imp_err make_device(imp_req *r, const imp_entity *tok, const char *serial, const char *csr, imp_entity *e,
                           imp_credential *c, char *secret, const char **why)
{
	const char *tid = json_string_value(json_object_get(tok->doc, "deviceTemplateId"));
	imp_entity t = {0};
	imp_err rc = imp_db_get(r->db, &imp_kind_device_template, r->who.account, tid, &t);
	if(rc == IMP_ERR_NOT_FOUND) {
		*why = "template deleted"; /* the token is of no use */
		return refuse(r);
	}
	if(rc) return rc;
	int password = strcmp(json_string_value(json_object_get(t.doc, "authenticationMethod")), "password") == 0;
	imp_entity_clear(&t);
	if(password && csr)
		return api_fail(r, IMP_ERR_INVALID, "password_template", "csr", "the token's template uses passwords; a csr does not apply");
	if(!password && !csr)
		return api_fail(r, IMP_ERR_INVALID, "csr_required", "csr", "the token's template uses certificates: send a csr");
	json_t *body = json_pack("{s:s, s:s}", "deviceTemplateId", tid, "serialNumber", serial);
	json_t *activated = json_pack("{s:s}", "provisioningState", "activated");
	/* A password device is stored activated at once (version 2), as the batch does. */
	imp_insert_opts opts = {.set = password ? activated : NULL, .version = password ? 2 : 0};
	int replaced = 0;
	rc = body && activated ? imp_res_insert_from(r, &imp_res_device, body, &opts, e) : IMP_ERR_NOMEM;
	json_decref(body);
	json_decref(activated);
	if(rc) return rc;
	rc = imp_db_claimed_serial_put(r->db, r->who.account, serial, e->id.s, tok->id.s);
	if(rc == IMP_ERR_CONFLICT)
		return api_fail(r, rc, "serial_claimed", "serialNumber", "a device was claimed with this serial number already");
	if(rc) return rc;
	if(password) return imp_cred_password(r, "device", e->id.s, 1, secret, c, &replaced);
	if((rc = imp_cred_certificate(r, e->id.s, NULL, csr, c, &replaced))) return rc;
	/* read it back activated */
	char id[IMP_UUID_LEN + 1];
	snprintf(id, sizeof id, "%s", e->id.s);
	imp_entity_clear(e);
	return imp_db_get(r->db, &imp_kind_device, r->who.account, id, e);
}

static imp_err refused_finish(imp_req *r, imp_err rc)
{
	(void)rc; /* the refusal stands whether or not its audit entry was kept */
	r->finish = NULL;
	r->finish_arg = NULL;
	return IMP_ERR_FORBIDDEN;
}

/* A refusal of a token the store knows (used up, expired, off its allow-list, its template
 * deleted), inside the claim's transaction: what the claim wrote is undone (the use it
 * counted), the refusal goes to the token's account's audit log with its reason, and the
 * caller gets the one 403 answer, once that entry is committed. Counted here against the
 * caller's address, as its answer may come after this returns. */
static imp_err refuse_audited(imp_req *r, const imp_entity *found, const char *serial, const char *why, int *counted)
{
	imp_ratelimit_fail(r->app->claim_fail_by_addr, api_client_addr(r));
	*counted = 0;
	imp_err rc = imp_db_undo(r->db);
	json_t *d = rc ? NULL : json_pack("{s:s, s:s}", "serialNumber", serial, "reason", why);
	if(!rc) rc = d ? api_audit(r, "claim-refused", "claimToken", found->id.s, d) : IMP_ERR_NOMEM;
	json_decref(d);
	refuse(r);
	if(rc) return IMP_ERR_FORBIDDEN; /* the entry could not be written: refused all the same */
	return api_commit_then(r, refused_finish);
}

/* The claim of a parsed body; *counted says whether the failure is one a rate limit of
 * failures should count (a 429 is not). */
static imp_err claim(imp_req *r, json_t *body, int *counted)
{
	const char *token = NULL, *serial = NULL, *csr = NULL;
	json_error_t je;
	*counted = 1;
	if(json_unpack_ex(body, &je, JSON_STRICT, "{s:s, s:s, s?s}", "claimToken", &token, "serialNumber", &serial, "csr", &csr))
		return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_body", NULL,
		                "the body must be {\"claimToken\": string, \"serialNumber\": string, \"csr\"?: string}");
	size_t len = imp_utf8_len(serial);
	if(len == 0 || len > IMP_SERIAL_MAX)
		return api_fail(r, IMP_ERR_INVALID, "invalid_field", "serialNumber", "serialNumber must be a string of 1 to %d characters",
		                IMP_SERIAL_MAX);
	if(strlen(token) != CLAIM_TOKEN_LEN || strncmp(token, CLAIM_TOKEN_PREFIX, 4) != 0) return refuse(r);

	char hash[65], limit_key[IMP_UUID_LEN + 3];
	imp_entity found = {0}, tok = {0}, e = {0};
	imp_credential c = {0};
	char secret[IMP_SECRET_LEN + 1] = {0};
	json_t *details = NULL, *device = NULL, *cred = NULL, *answer = NULL;
	imp_secret_hash(&r->app->keys, token, hash);
	/* Unknown tokens are refused off a read connection, without queueing for the writer. */
	imp_err rc = imp_db_find_by_secret(r->db, &imp_kind_claim_token, hash, &found);
	sodium_memzero(hash, sizeof hash);
	if(rc == IMP_ERR_NOT_FOUND) return refuse(r);
	if(rc) return api_fail(r, rc, NULL, NULL, "could not check the claim token");
	snprintf(limit_key, sizeof limit_key, "t:%s", found.id.s);
	unsigned wait = imp_ratelimit_blocked(r->app->claim_by_token, limit_key);
	if(wait) {
		*counted = 0;
		rc = rate_limited(r, wait);
		goto out;
	}
	imp_ratelimit_fail(r->app->claim_by_token, limit_key); /* counts every claim, not only failures */

	r->who.type = IMP_ACTOR_CLAIM_TOKEN;
	r->who.account = found.account;
	r->who.account_id = found.account_id;
	r->who.actor_id = found.id;
	r->who.scopes = 0;
	if((rc = imp_db_begin(&r->db))) goto out;
	const char *why = NULL;
	if((rc = take_use(r, &found, serial, &tok, &why)) || (rc = make_device(r, &tok, serial, csr, &e, &c, secret, &why))) {
		if(why) rc = refuse_audited(r, &found, serial, why, counted);
		goto out;
	}
	details = json_pack("{s:s, s:s, s:s, s:s}", "claimTokenId", tok.id.s, "serialNumber", serial, "credentialId", c.id.s,
	                    "method", c.method);
	rc = details ? api_audit(r, "claim", "device", e.id.s, details) : IMP_ERR_NOMEM;
	if(rc) goto out;
	device = imp_res_render(r->db, &imp_res_device, &e, NULL);
	cred = imp_cred_body(&c, secret[0] ? secret : NULL);
	answer = device && cred ? json_pack("{s:O, s:O}", "device", device, "mqttCredential", cred) : NULL;
	rc = answer ? api_reply(r, 201, answer) : api_fail(r, IMP_ERR_NOMEM, NULL, NULL, "out of memory");
	if(!rc) rc = api_commit(r, "the claim could not be stored");
out:
	if(rc && !r->err_msg[0]) rc = api_fail(r, rc, NULL, NULL, "the claim could not be stored");
	json_decref(details);
	json_decref(device);
	json_decref(cred); /* the secret's copy in answer goes with the reply */
	sodium_memzero(secret, sizeof secret);
	imp_credential_clear(&c);
	imp_entity_clear(&e);
	imp_entity_clear(&tok);
	imp_entity_clear(&found);
	return rc;
}

imp_err imp_h_claim(imp_req *r)
{
	unsigned wait = imp_ratelimit_blocked(r->app->claim_fail_by_addr, api_client_addr(r));
	if(wait) return rate_limited(r, wait);
	int counted = 1;
	imp_err rc = IMP_ERR_BAD_REQUEST;
	json_t *body = api_body_object(r);
	if(body) rc = claim(r, body, &counted);
	json_decref(body);
	if(rc && counted) imp_ratelimit_fail(r->app->claim_fail_by_addr, api_client_addr(r));
	return rc;
}
