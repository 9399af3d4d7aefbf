/* Logging in, sessions, account users and API keys. */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "api/auth.h"
#include "api/handlers.h"
#include "api/resource.h"
#include "core/limits.h"
#include "core/mem.h"
#include "core/ratelimit.h"
#include "core/rules.h"
#include "core/timeutil.h"

struct login_try {
	int seen;          /* users with that email checked */
	const char *password;
	imp_entity user;   /* the match, when found */
	int found;
	int end_user;      /* the match is an end user */
};

static int try_user(const imp_entity *u, const char *pwhash, void *arg)
{
	struct login_try *t = arg;
	if(!pwhash[0]) return 0; /* an end user made without a password cannot log in */
	t->seen++;
	if(!imp_password_check(pwhash, t->password)) return 0;
	t->user = *u;
	t->user.doc = json_incref(u->doc);
	t->found = 1;
	return 1;
}

static char dummy[crypto_pwhash_STRBYTES];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void make_dummy(void)
{
	if(imp_password_hash("imprint-no-such-user", dummy, sizeof dummy)) dummy[0] = '\0';
}

static const char *dummy_hash(void)
{
	pthread_once(&dummy_once, make_dummy);
	return dummy;
}

static imp_err rate_limited(imp_req *r, unsigned wait)
{
	snprintf(r->header_name, sizeof r->header_name, "Retry-After");
	snprintf(r->header_value, sizeof r->header_value, "%u", wait ? wait : 1);
	return api_fail(r, IMP_ERR_RATE_LIMITED, "rate_limited", NULL, "too many failed logins; try again in %u seconds",
	                wait ? wait : 1);
}

imp_err imp_h_login(imp_req *r)
{
	/* A password check takes tens of milliseconds on this (write pool) thread: first end
	 * the group the thread's earlier writes left open, which nobody else may be about to. */
	imp_store_flush(r->app->store, 0);
	json_t *body = api_body_object(r);
	if(!body) return IMP_ERR_BAD_REQUEST;
	imp_err rc = IMP_OK;
	const char *email = NULL, *password = NULL, *account = NULL;
	struct login_try t = {0};
	char *jwt = NULL;
	json_error_t je;
	if(json_unpack_ex(body, &je, JSON_STRICT, "{s:s, s:s, s?s}", "emailAddress", &email, "password", &password,
	                  "accountId", &account)) {
		rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_body", NULL,
		              "the body must be {\"emailAddress\": string, \"password\": string, \"accountId\"?: string}");
		goto out;
	}
	char email_key[IMP_EMAIL_MAX + 8];
	snprintf(email_key, sizeof email_key, "e:%s", email);
	unsigned wait = imp_ratelimit_blocked(r->app->login_by_email, email_key);
	unsigned wait2 = imp_ratelimit_blocked(r->app->login_by_addr, api_client_addr(r));
	if(wait || wait2) {
		rc = rate_limited(r, wait > wait2 ? wait : wait2);
		goto out;
	}
	int64_t account_key = 0;
	if(account && imp_db_account_key(r->db, account, &account_key)) account_key = -1;
	t.password = password;
	int stopped = 0;
	if(account_key >= 0 && strlen(password) <= IMP_PASSWORD_MAX && strlen(email) <= IMP_EMAIL_MAX) {
		rc = imp_db_users_by_email(r->db, email, account_key, try_user, &t, &stopped);
		if(!rc && !t.found) {
			rc = imp_db_end_users_by_email(r->db, email, account_key, try_user, &t, &stopped);
			t.end_user = t.found;
		}
		if(rc) {
			rc = api_fail(r, rc, NULL, NULL, "could not check the login");
			goto out;
		}
	}
	if(!t.found) {
		/* Spend an argon2id check on an unknown email too, so the answer's timing does
		 * not tell which addresses have an account. */
		if(!t.seen) imp_password_check(dummy_hash(), password);
		imp_ratelimit_fail(r->app->login_by_email, email_key);
		imp_ratelimit_fail(r->app->login_by_addr, api_client_addr(r));
		rc = api_fail(r, IMP_ERR_UNAUTHORIZED, "invalid_login", NULL, "wrong email address or password");
		goto out;
	}
	/* The session row goes through the writer like every write: written on this thread's
	 * own connection, it would wait for SQLite's lock behind the writer's open group. */
	imp_id sid;
	if((rc = imp_db_begin(&r->db)) ||
	   (rc = imp_db_session_create(r->db, t.user.account, t.user.id.s, imp_now_ms() + IMP_SESSION_TTL_S * 1000ull, &sid)) ||
	   (rc = imp_jwt_make(&r->app->keys, t.user.id.s, t.user.account_id.s, sid.s,
	                       t.end_user ? IMP_ROLE_END_USER : IMP_ROLE_ADMIN, &jwt))) {
		rc = api_fail(r, rc, NULL, NULL, "could not start a session");
		goto out;
	}
	api_reply(r, 200, json_pack("{s:s}", "jwt", jwt));
	rc = api_commit(r, "could not start a session");
out:
	imp_free(jwt);
	imp_entity_clear(&t.user);
	json_decref(body);
	return rc;
}

imp_err imp_h_renew(imp_req *r)
{
	const char *h = api_header(r, "Authorization") + 7;
	while(*h == ' ') h++;
	/* The session id is in the token, which imp_auth_resolve already checked. */
	uint8_t payload[2048];
	const char *d1 = strchr(h, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	long n = d2 ? imp_b64_decode(d1 + 1, (size_t)(d2 - d1 - 1), payload, sizeof payload, 1) : -1;
	json_t *c = n > 0 ? json_loadb((const char *)payload, (size_t)n, 0, NULL) : NULL;
	const char *sid = json_string_value(json_object_get(c, "id"));
	char *jwt = NULL;
	imp_err rc = sid ? imp_jwt_make(&r->app->keys, r->who.actor_id.s, r->who.account_id.s, sid,
	                                      r->who.type == IMP_ACTOR_END_USER ? IMP_ROLE_END_USER : IMP_ROLE_ADMIN, &jwt)
	                 : IMP_ERR_UNAUTHORIZED;
	json_decref(c);
	if(rc) return api_fail(r, rc, NULL, NULL, "could not renew the session");
	rc = api_reply(r, 200, json_pack("{s:s}", "jwt", jwt));
	imp_free(jwt);
	return rc;
}

static imp_err user_validate(imp_req *r, json_t *doc, const imp_entity *old)
{
	const char *email = json_string_value(json_object_get(doc, "emailAddress"));
	if(!imp_email_valid(email))
		return api_fail(r, IMP_ERR_INVALID, "invalid_field", "emailAddress", "emailAddress must be an email address");
	const char *pw = json_string_value(json_object_get(doc, "password"));
	if(pw && imp_utf8_len(pw) < IMP_PASSWORD_MIN)
		return api_fail(r, IMP_ERR_INVALID, "invalid_field", "password", "password must be at least %d characters",
		                IMP_PASSWORD_MIN);
	return IMP_OK;
}

static imp_err user_secret(imp_req *r, json_t *doc, char **secret, json_t **reveal)
{
	const char *pw = json_string_value(json_object_get(doc, "password"));
	char hash[crypto_pwhash_STRBYTES];
	imp_err rc = imp_password_hash(pw, hash, sizeof hash);
	json_object_del(doc, "password");
	if(rc) return rc;
	*secret = imp_strdup(hash);
	return *secret ? IMP_OK : IMP_ERR_NOMEM;
}

static imp_err user_before_delete(imp_req *r, const imp_entity *e)
{
	if(strcmp(e->id.s, r->who.actor_id.s) == 0)
		return api_fail(r, IMP_ERR_INVALID, "self_delete", "id", "an account user cannot delete itself");
	/* Its MQTT credential goes with it, and so does its live MQTT session (change feed). */
	imp_err rc = imp_db_credential_delete_of(r->db, e->account, e->id.s);
	return rc ? rc : imp_db_change(r->db, e->id.s, "delete");
}

const imp_resource imp_res_account_user = {
	.kind = &imp_kind_account_user,
	.validate = user_validate,
	.make_secret = user_secret,
	.before_delete = user_before_delete,
};

static imp_err key_secret(imp_req *r, json_t *doc, char **secret, json_t **reveal)
{
	char key[IMP_API_KEY_LEN + 1], hash[65];
	imp_err rc = imp_api_key_new(&r->app->keys, key, hash);
	if(rc) return rc;
	*reveal = json_pack("{s:s}", "key", key);
	*secret = imp_strdup(hash);
	sodium_memzero(key, sizeof key);
	return *reveal && *secret ? IMP_OK : IMP_ERR_NOMEM;
}

const imp_resource imp_res_api_key = {
	.kind = &imp_kind_api_key,
	.make_secret = key_secret,
	.after_write = imp_auth_forget,
};
