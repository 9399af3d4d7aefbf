/* MQTT credentials: random secrets for password templates and account users, certificates
 * for certificate templates (certificates.c), their metadata, revocation; device disable
 * and enable; and the broker's authenticate hook. A secret exists in clear only in the
 * response that creates it: the store keeps its keyed hash. */
#include "api/credentials.h"

#include <sodium.h>
#include <string.h>

#include "api/auth.h"
#include "api/handlers.h"
#include "api/resource.h"
#include "broker/principal.h"
#include "broker/verify.h"
#include "core/crypto.h"
#include "core/mem.h"
#include "core/timeutil.h"

static const char *const ENTITY_TYPES[] = {"device", "accountUser", "endUser", NULL};

json_t *imp_cred_body(const imp_credential *c, const char *secret)
{
	json_t *o = imp_credential_json(c);
	if(o && secret && json_object_set_new(o, "secret", json_string(secret))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

void imp_cred_body_text(imp_jtext *t, const imp_credential *c, const char *secret)
{
	char created[IMP_ISO_LEN + 1];
	imp_iso8601(c->created, created);
	imp_jtext_raw(t, "{\"id\":", 6);
	imp_jtext_plain(t, c->id.s);
	imp_jtext_key(t, "accountId", 1);
	imp_jtext_plain(t, c->account_id.s);
	imp_jtext_key(t, "entityId", 1);
	imp_jtext_plain(t, c->entity_id.s);
	imp_jtext_key(t, "entityType", 1);
	imp_jtext_plain(t, c->entity_type);
	imp_jtext_key(t, "method", 1);
	imp_jtext_plain(t, c->method);
	imp_jtext_key(t, "created", 1);
	imp_jtext_plain(t, created);
	imp_jtext_key(t, "createdById", 1);
	imp_jtext_plain(t, c->created_by.s);
	imp_jtext_key(t, "lastModified", 1);
	imp_jtext_plain(t, created);
	if(c->fingerprint[0]) {
		char na[IMP_ISO_LEN + 1];
		imp_iso8601(c->not_after, na);
		imp_jtext_key(t, "fingerprint", 1);
		imp_jtext_plain(t, c->fingerprint);
		imp_jtext_key(t, "notAfter", 1);
		imp_jtext_plain(t, na);
		if(c->certificate) {
			imp_jtext_key(t, "certificate", 1);
			imp_jtext_str_or_null(t, c->certificate);
		}
	}
	if(secret) {
		imp_jtext_key(t, "secret", 1);
		imp_jtext_plain(t, secret);
	}
	imp_jtext_raw(t, "}", 1);
}

static imp_err activate(imp_req *r, const char *entity_type, const char *entity_id)
{
	if(strcmp(entity_type, "device") != 0) return IMP_OK;
	int changed;
	return imp_db_device_activate(r->db, r->who.account, entity_id, r->who.actor_id.s, &changed);
}

imp_err imp_cred_password_new(imp_req *r, char *secret, char *hash, imp_id *id)
{
	uint8_t raw[IMP_SECRET_BYTES];
	if(imp_random(raw, sizeof raw)) return IMP_ERR_CRYPTO;
	imp_b64_encode(raw, sizeof raw, secret, 0);
	sodium_memzero(raw, sizeof raw);
	imp_secret_hash(&r->app->keys, secret, hash);
	return imp_id_new(id);
}

void imp_cred_password_fill(imp_req *r, const char *entity_type, const char *entity_id, const imp_id *id,
                            imp_credential *c)
{
	memset(c, 0, sizeof *c);
	c->id = *id;
	c->account = r->who.account;
	c->account_id = r->who.account_id;
	snprintf(c->entity_type, sizeof c->entity_type, "%s", entity_type);
	snprintf(c->entity_id.s, sizeof c->entity_id.s, "%s", entity_id);
	snprintf(c->method, sizeof c->method, "password");
	c->created_by = r->who.actor_id;
}

imp_err imp_cred_password_put(imp_req *r, const char *entity_type, const char *entity_id, int fresh, const char *hash,
                              const imp_id *id, imp_credential *c, int *replaced)
{
	imp_cred_password_fill(r, entity_type, entity_id, id, c);
	imp_err rc = imp_db_credential_put(r->db, c, hash, fresh ? NULL : replaced);
	if(fresh) *replaced = 0;
	else if(!rc) rc = activate(r, entity_type, entity_id);
	return rc;
}

imp_err imp_cred_password(imp_req *r, const char *entity_type, const char *entity_id, int fresh, char *secret,
                          imp_credential *c, int *replaced)
{
	char hash[65];
	imp_id id;
	memset(c, 0, sizeof *c);
	imp_err rc = imp_cred_password_new(r, secret, hash, &id);
	if(!rc) rc = imp_cred_password_put(r, entity_type, entity_id, fresh, hash, &id, c, replaced);
	sodium_memzero(hash, sizeof hash);
	return rc;
}

/* The authentication method of a device's template, into method. */
static imp_err device_method(imp_req *r, const char *device_id, char *method, size_t n)
{
	imp_entity d, t;
	imp_err rc = imp_db_get(r->db, &imp_kind_device, r->who.account, device_id, &d);
	if(rc == IMP_ERR_NOT_FOUND) return api_fail(r, rc, "not_found", "entityId", "no such device");
	if(rc) return rc;
	rc = imp_db_get(r->db, &imp_kind_device_template, r->who.account,
	                json_string_value(json_object_get(d.doc, "deviceTemplateId")), &t);
	imp_entity_clear(&d);
	if(rc) return rc;
	snprintf(method, n, "%s", json_string_value(json_object_get(t.doc, "authenticationMethod")));
	imp_entity_clear(&t);
	return IMP_OK;
}

static const char *opt_string(imp_req *r, json_t *body, const char *name, imp_err *rc)
{
	json_t *v = json_object_get(body, name);
	if(!v || json_is_null(v)) return NULL;
	if(!json_is_string(v)) *rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", name, "%s must be a string", name);
	return json_string_value(v);
}

/* A password credential for an account user or end user (kind k) of the caller's account. */
static imp_err user_password(imp_req *r, const imp_kind *k, const char *type, int allowed, int has_cert,
                             const char *entity_id, char *secret, imp_credential *c, int *replaced)
{
	imp_entity u;
	if(!allowed)
		return api_fail(r, IMP_ERR_FORBIDDEN, "insufficient_scope", NULL, "credentials for %ss need the admin scope", type);
	if(has_cert)
		return api_fail(r, IMP_ERR_INVALID, "password_only", "certificate", "%ss connect with a password secret", type);
	imp_err rc = imp_db_get(r->db, k, r->who.account, entity_id, &u);
	if(rc == IMP_ERR_NOT_FOUND) return api_fail(r, rc, "not_found", "entityId", "no such %s", type);
	if(rc) return rc;
	imp_entity_clear(&u);
	return imp_cred_password(r, type, entity_id, 0, secret, c, replaced);
}

/* A credential between its commit and its answer. */
typedef struct {
	imp_credential c;
	char secret[IMP_SECRET_LEN + 1];
	json_t *body;
} cred_st;

/* The rest of a credential's creation once its commit ended with rc: the answer, and the
 * state (its secret wiped) freed. */
static imp_err cred_finish(imp_req *r, imp_err rc)
{
	cred_st *st = r->finish_arg;
	r->finish = NULL;
	r->finish_arg = NULL;
	if(!rc) {
		json_t *o = imp_cred_body(&st->c, st->secret[0] ? st->secret : NULL);
		rc = api_reply(r, 200, api_wrap("mqttCredential", o));
	}
	if(rc && !r->err_msg[0]) {
		if(rc == IMP_ERR_CONFLICT)
			rc = api_fail(r, rc, "certificate_in_use", "certificate", "this certificate is registered to another device");
		else rc = api_fail(r, rc, NULL, NULL, "the credential could not be stored");
	}
	sodium_memzero(st->secret, sizeof st->secret);
	imp_credential_clear(&st->c);
	json_decref(st->body);
	imp_free(st);
	return rc;
}

imp_err imp_h_cred_create(imp_req *r)
{
	static const char *const known[] = {"accountId", "entityId", "entityType", "certificate", "csr", NULL};
	json_t *body = api_body_object(r);
	if(!body) return IMP_ERR_BAD_REQUEST;
	cred_st *st = imp_calloc(1, sizeof *st);
	if(!st) {
		json_decref(body);
		return api_fail(r, IMP_ERR_NOMEM, NULL, NULL, "out of memory");
	}
	st->body = body;
	r->finish_arg = st;
	imp_credential *c = &st->c;
	char *secret = st->secret;
	int replaced = 0;
	imp_err rc = IMP_OK;
	const char *key;
	json_t *v;
	json_object_foreach(body, key, v) {
		if(imp_choice_index(known, key) < 0) {
			rc = api_fail(r, IMP_ERR_BAD_REQUEST, "unknown_field", NULL, "unknown field in the body");
			goto out;
		}
	}
	if((rc = api_check_account(r, json_object_get(body, "accountId")))) goto out;
	const char *entity_id = opt_string(r, body, "entityId", &rc);
	const char *entity_type = opt_string(r, body, "entityType", &rc);
	const char *cert = opt_string(r, body, "certificate", &rc);
	const char *csr = opt_string(r, body, "csr", &rc);
	if(rc) goto out;
	if(!entity_id) {
		rc = api_fail(r, IMP_ERR_INVALID, "missing_field", "entityId", "entityId is required");
		goto out;
	}
	if(!entity_type) entity_type = "device";
	if(imp_choice_index(ENTITY_TYPES, entity_type) < 0) {
		rc = api_fail(r, IMP_ERR_INVALID, "invalid_field", "entityType", "entityType must be device, accountUser or endUser");
		goto out;
	}
	if(!imp_id_valid(entity_id)) {
		rc = api_fail(r, IMP_ERR_NOT_FOUND, "not_found", "entityId", "no such %s", entity_type);
		goto out;
	}
	if(cert && csr) {
		rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_field", "csr", "send either certificate or csr, not both");
		goto out;
	}
	/* End users may make only their own credential; another end user's id is unknown. */
	if(r->who.type == IMP_ACTOR_END_USER) {
		if(strcmp(entity_type, "endUser") != 0) {
			rc = api_fail(r, IMP_ERR_FORBIDDEN, "forbidden", "entityType", "end users may make only their own credential");
			goto out;
		}
		if(strcmp(entity_id, r->who.actor_id.s) != 0) {
			rc = api_fail(r, IMP_ERR_NOT_FOUND, "not_found", "entityId", "no such endUser");
			goto out;
		}
	}
	if((rc = imp_db_begin(&r->db))) goto out;
	if(strcmp(entity_type, "device") == 0) {
		char method[IMP_METHOD_LEN];
		if((rc = device_method(r, entity_id, method, sizeof method))) goto out;
		if(strcmp(method, "certificate") == 0) {
			if(!cert && !csr) {
				rc = api_fail(r, IMP_ERR_INVALID, "certificate_required", "certificate",
				              "the device's template uses certificates: send certificate or csr");
				goto out;
			}
			rc = imp_cred_certificate(r, entity_id, cert, csr, c, &replaced);
		} else if(cert || csr) {
			rc = api_fail(r, IMP_ERR_INVALID, "password_template", cert ? "certificate" : "csr",
			              "the device's template uses passwords; certificates do not apply");
		} else {
			rc = imp_cred_password(r, "device", entity_id, 0, secret, c, &replaced);
		}
	} else {
		/* Account users need an admin; an end user may also make its own. */
		int user = strcmp(entity_type, "accountUser") == 0;
		int allowed = (r->who.scopes & IMP_SCOPE_ADMIN) || (!user && r->who.type == IMP_ACTOR_END_USER);
		rc = user_password(r, user ? &imp_kind_account_user : &imp_kind_end_user, entity_type, allowed, cert || csr,
		                   entity_id, secret, c, &replaced);
	}
	if(rc) goto out;
	json_t *details = json_pack("{s:s, s:s}", "credentialId", c->id.s, "method", c->method);
	rc = api_audit(r, replaced ? "regenerate-credential" : "generate-credential", entity_type, entity_id, details);
	json_decref(details);
	if(rc) goto out;
	return api_commit_then(r, cred_finish);
out:
	return cred_finish(r, rc);
}

imp_err imp_h_cred_list(imp_req *r)
{
	static const char *const allowed[] = {"entityId", "entityType", NULL};
	imp_query q = {0};
	int want_results;
	imp_err rc = api_query_known(r, allowed);
	if(!rc) rc = imp_list_args(r, &q, &want_results);
	if(rc) return rc;
	if(strcmp(q.sort, "created") != 0)
		return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_parameter", "sortBy", "credentials sort only by created");
	const char *type = api_query(r, "entityType");
	if(type && imp_choice_index(ENTITY_TYPES, type) < 0)
		return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_parameter", "entityType", "entityType must be device, accountUser or endUser");
	json_t *results = want_results ? json_array() : NULL;
	int64_t count = 0, last = -1;
	rc = imp_db_credential_list(r->db, r->who.account, api_query(r, "entityId"), type, &q, results, &count, &last);
	if(rc) {
		json_decref(results);
		return api_fail(r, rc, NULL, NULL, "could not read the credentials");
	}
	json_t *body = imp_list_body("mqttCredentials", results, &q, count, last);
	json_decref(results);
	if(!body) return api_fail(r, IMP_ERR_NOMEM, NULL, NULL, "out of memory");
	return api_reply(r, 200, body);
}

imp_err imp_h_cred_get(imp_req *r)
{
	imp_credential c = {0};
	imp_err rc = api_query_known(r, NULL);
	if(rc || (rc = api_check_query_account(r))) return rc;
	if(!imp_id_valid(r->params[0])) return api_fail(r, IMP_ERR_NOT_FOUND, "not_found", "id", "no such credential");
	rc = imp_db_credential_get(r->db, r->who.account, r->params[0], &c);
	if(rc == IMP_ERR_NOT_FOUND) return api_fail(r, rc, "not_found", "id", "no such credential");
	if(rc) return api_fail(r, rc, NULL, NULL, "could not read the credential");
	json_t *o = imp_cred_body(&c, NULL);
	imp_credential_clear(&c);
	return api_reply(r, 200, api_wrap("mqttCredential", o));
}

imp_err imp_h_cred_delete(imp_req *r)
{
	imp_credential c = {0};
	if(!imp_id_valid(r->params[0])) return api_fail(r, IMP_ERR_NOT_FOUND, "not_found", "id", "no such credential");
	imp_err rc = imp_db_begin(&r->db);
	if(!rc) rc = imp_db_credential_get(r->db, r->who.account, r->params[0], &c);
	if(!rc) rc = imp_db_credential_delete(r->db, r->who.account, r->params[0]);
	if(!rc) {
		json_t *details = json_pack("{s:s}", "credentialId", c.id.s);
		rc = api_audit(r, "revoke-credential", c.entity_type, c.entity_id.s, details);
		json_decref(details);
	}
	imp_credential_clear(&c);
	if(rc == IMP_ERR_NOT_FOUND) return api_fail(r, rc, "not_found", "id", "no such credential");
	if(rc) return r->err_msg[0] ? rc : api_fail(r, rc, NULL, NULL, "could not revoke the credential");
	api_reply(r, 204, NULL);
	return api_commit(r, "could not revoke the credential");
}

static imp_err set_disabled(imp_req *r, int disabled)
{
	imp_entity e = {0};
	int changed = 0;
	imp_err rc = api_query_known(r, NULL);
	if(rc || (rc = api_check_query_account(r))) return rc;
	if(!imp_id_valid(r->params[0])) return api_fail(r, IMP_ERR_NOT_FOUND, "not_found", "id", "no such device");
	rc = imp_db_begin(&r->db);
	if(!rc) rc = imp_db_device_set_disabled(r->db, r->who.account, r->params[0], disabled, r->who.actor_id.s, &changed);
	if(!rc && changed) rc = api_audit(r, disabled ? "disable" : "enable", "device", r->params[0], NULL);
	/* the answer is the device as this write leaves it, read before the commit */
	if(!rc) rc = imp_db_get(r->db, &imp_kind_device, r->who.account, r->params[0], &e);
	if(rc == IMP_ERR_NOT_FOUND) return api_fail(r, rc, "not_found", "id", "no such device");
	if(rc) return api_fail(r, rc, NULL, NULL, "could not change the device");
	rc = imp_res_reply(r, &imp_res_device, &e, 200, NULL);
	imp_entity_clear(&e);
	return rc ? rc : api_commit(r, "could not change the device");
}

imp_err imp_h_device_disable(imp_req *r) { return set_disabled(r, 1); }
imp_err imp_h_device_enable(imp_req *r) { return set_disabled(r, 0); }

imp_err imp_h_broker_authenticate(imp_req *r)
{
	static const char *const known[] = {"clientid", "username", "password", NULL};
	json_t *body = api_body_object(r);
	if(!body) return IMP_ERR_BAD_REQUEST;
	imp_err rc = IMP_OK;
	const char *key;
	json_t *v;
	json_object_foreach(body, key, v) {
		if(imp_choice_index(known, key) < 0) {
			rc = api_fail(r, IMP_ERR_BAD_REQUEST, "unknown_field", NULL, "unknown field in the body");
			break;
		}
		if(!json_is_string(v) && !json_is_null(v)) {
			rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", NULL, "clientid, username and password must be strings");
			break;
		}
	}
	const char *clientid = json_string_value(json_object_get(body, "clientid"));
	if(!rc && !clientid) rc = api_fail(r, IMP_ERR_BAD_REQUEST, "missing_field", "clientid", "clientid is required");
	if(!rc) {
		imp_verdict verdict = imp_verify_password(r->db, &r->app->keys, clientid,
		                                          json_string_value(json_object_get(body, "username")),
		                                          json_string_value(json_object_get(body, "password")), NULL);
		if(verdict == IMP_DENY_STORE) rc = api_fail(r, IMP_ERR_STORE, NULL, NULL, "the store did not answer");
		else rc = api_reply(r, 200, json_pack("{s:s, s:s}", "result", verdict == IMP_ALLOW ? "allow" : "deny", "reason",
		                                      imp_verdict_name(verdict)));
	}
	json_decref(body);
	return rc;
}

/* The topic rules of the plugin (broker/acl.c) for brokers that call HTTP. */
imp_err imp_h_broker_authorize(imp_req *r)
{
	static const char *const known[] = {"clientid", "username", "topic", "action", NULL};
	static const char *const actions[] = {"publish", "subscribe", NULL};
	json_t *body = api_body_object(r);
	if(!body) return IMP_ERR_BAD_REQUEST;
	imp_err rc = IMP_OK;
	const char *key;
	json_t *v;
	json_object_foreach(body, key, v) {
		if(imp_choice_index(known, key) < 0) {
			rc = api_fail(r, IMP_ERR_BAD_REQUEST, "unknown_field", NULL, "unknown field in the body");
			break;
		}
		if(!json_is_string(v) && !(json_is_null(v) && strcmp(key, "username") == 0)) {
			rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", key, "%s must be a string", key);
			break;
		}
	}
	const char *clientid = json_string_value(json_object_get(body, "clientid"));
	const char *topic = json_string_value(json_object_get(body, "topic"));
	const char *action = json_string_value(json_object_get(body, "action"));
	if(!rc && !clientid) rc = api_fail(r, IMP_ERR_BAD_REQUEST, "missing_field", "clientid", "clientid is required");
	if(!rc && !topic) rc = api_fail(r, IMP_ERR_BAD_REQUEST, "missing_field", "topic", "topic is required");
	if(!rc && !action) rc = api_fail(r, IMP_ERR_BAD_REQUEST, "missing_field", "action", "action is required");
	if(!rc && imp_choice_index(actions, action) < 0)
		rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_field", "action", "action must be publish or subscribe");
	if(!rc) {
		imp_auth_row row;
		imp_mqtt_principal p = {0};
		const char *reason;
		imp_verdict verdict = imp_verify_identity(r->db, clientid, json_string_value(json_object_get(body, "username")), &row);
		if(verdict == IMP_ALLOW) {
			imp_err lrc = imp_principal_load(r->db, clientid, &row, &p);
			if(lrc == IMP_ERR_NOT_FOUND) verdict = IMP_DENY_UNKNOWN;
			else if(lrc == IMP_ERR_INVALID) verdict = IMP_DENY_METHOD;
			else if(lrc) verdict = IMP_DENY_STORE;
		}
		int allowed = 0;
		if(verdict == IMP_ALLOW) {
			allowed = imp_acl_allowed(&p, topic, strcmp(action, "publish") == 0 ? IMP_ACL_WRITE : IMP_ACL_SUBSCRIBE, 0);
			reason = allowed ? "allow" : "topic";
		} else {
			reason = imp_verdict_name(verdict);
		}
		imp_principal_clear(&p);
		if(verdict == IMP_DENY_STORE) rc = api_fail(r, IMP_ERR_STORE, NULL, NULL, "the store did not answer");
		else rc = api_reply(r, 200, json_pack("{s:s, s:s}", "result", allowed ? "allow" : "deny", "reason", reason));
	}
	json_decref(body);
	return rc;
}
