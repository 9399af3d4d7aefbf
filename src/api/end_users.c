/* End users (the people who own devices, in an organization) and their templates. An end
 * user logs in like an account user (identity.c) when made with a password, and reaches
 * the devices of its organization and those below it. */
#include <sodium.h>
#include <string.h>

#include "api/auth.h"
#include "api/resource.h"
#include "core/limits.h"
#include "core/mem.h"
#include "core/rules.h"

static imp_err template_before_delete(imp_req *r, const imp_entity *e)
{
	int64_t n = 0;
	imp_err rc = imp_db_count_where(r->db, &imp_kind_end_user, r->who.account, "endUserTemplateId", e->id.s, &n);
	if(rc) return rc;
	if(n > 0) return api_fail(r, IMP_ERR_CONFLICT, "in_use", "id", "the template is used by %lld end users", (long long)n);
	return IMP_OK;
}

const imp_resource imp_res_end_user_template = {
	.kind = &imp_kind_end_user_template,
	.before_delete = template_before_delete,
};

/* The argon2id hash of password, into a new string (*out, freed by the caller). */
static imp_err hash_password(const char *pw, char **out)
{
	char hash[crypto_pwhash_STRBYTES];
	imp_err rc = imp_password_hash(pw, hash, sizeof hash);
	if(rc) return rc;
	*out = imp_strdup(hash);
	return *out ? IMP_OK : IMP_ERR_NOMEM;
}

/* A password given on update replaces the stored hash in the same transaction; it is
 * never kept in the document. */
static imp_err end_user_validate(imp_req *r, json_t *doc, const imp_entity *old)
{
	const char *email = json_string_value(json_object_get(doc, "emailAddress"));
	if(!imp_email_valid(email))
		return api_fail(r, IMP_ERR_INVALID, "invalid_field", "emailAddress", "emailAddress must be an email address");
	const char *pw = json_string_value(json_object_get(doc, "password"));
	if(pw && imp_utf8_len(pw) < IMP_PASSWORD_MIN)
		return api_fail(r, IMP_ERR_INVALID, "invalid_field", "password", "password must be at least %d characters",
		                IMP_PASSWORD_MIN);
	if(!old || !pw) return IMP_OK;
	char *hash = NULL;
	imp_err rc = hash_password(pw, &hash);
	json_object_del(doc, "password");
	if(!rc) rc = imp_db_set_secret(r->db, &imp_kind_end_user, old->key, hash);
	imp_free(hash);
	return rc;
}

static imp_err end_user_secret(imp_req *r, json_t *doc, char **secret, json_t **reveal)
{
	const char *pw = json_string_value(json_object_get(doc, "password"));
	if(!pw) return IMP_OK; /* no login until an account user sets a password */
	imp_err rc = hash_password(pw, secret);
	json_object_del(doc, "password");
	return rc;
}

/* Its MQTT credential goes with it, and so does its live MQTT session (change feed). */
static imp_err end_user_before_delete(imp_req *r, const imp_entity *e)
{
	imp_err rc = imp_db_credential_delete_of(r->db, e->account, e->id.s);
	return rc ? rc : imp_db_change(r->db, e->id.s, "delete");
}

/* An end user sees itself only. */
static int end_user_reach(imp_req *r, const imp_entity *e) { return strcmp(e->id.s, r->who.actor_id.s) == 0; }

const imp_resource imp_res_end_user = {
	.kind = &imp_kind_end_user,
	.validate = end_user_validate,
	.make_secret = end_user_secret,
	.before_delete = end_user_before_delete,
	.reach = end_user_reach,
};
