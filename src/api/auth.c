#include "api/auth.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "broker/verify.h"
#include "core/limits.h"
#include "core/mem.h"
#include "core/timeutil.h"

#define JWT_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define JWT_MAX 2048

void imp_secret_hash(const imp_keys *keys, const char *secret, char hash[65])
{
	uint8_t mac[IMP_HMAC_LEN];
	imp_hmac(keys->hmac, secret, strlen(secret), mac);
	imp_hex(mac, sizeof mac, hash);
}

imp_err imp_api_key_new(const imp_keys *keys, char *key, char *hash)
{
	uint8_t raw[32];
	if(imp_random(raw, sizeof raw)) return IMP_ERR_CRYPTO;
	memcpy(key, IMP_API_KEY_PREFIX, 4);
	imp_b64_encode(raw, sizeof raw, key + 4, 1);
	imp_secret_hash(keys, key, hash);
	sodium_memzero(raw, sizeof raw);
	return IMP_OK;
}

imp_err imp_jwt_make(const imp_keys *keys, const char *user_id, const char *account_id, const char *sid,
                     const char *role, char **out)
{
	uint64_t now = imp_now_ms() / 1000;
	json_t *claims = json_pack("{s:s, s:s, s:s, s:[s], s:I, s:I}", "userId", user_id, "accountId", account_id,
	                           "id", sid, "roles", role, "iat", (json_int_t)now, "exp",
	                           (json_int_t)(now + IMP_JWT_TTL_S));
	char *payload = claims ? json_dumps(claims, JSON_COMPACT) : NULL;
	json_decref(claims);
	if(!payload) return IMP_ERR_NOMEM;
	char buf[JWT_MAX];
	size_t n = imp_b64_encode(JWT_HEADER, strlen(JWT_HEADER), buf, 1);
	buf[n++] = '.';
	n += imp_b64_encode(payload, strlen(payload), buf + n, 1);
	free(payload);
	uint8_t mac[IMP_HMAC_LEN];
	imp_hmac(keys->jwt, buf, n, mac);
	buf[n++] = '.';
	imp_b64_encode(mac, sizeof mac, buf + n, 1);
	*out = imp_strdup(buf);
	return *out ? IMP_OK : IMP_ERR_NOMEM;
}

/* Checks signature and expiry; returns the claims (caller frees) or NULL. */
static json_t *jwt_verify(const imp_keys *keys, const char *tok, int allow_expired, int *expired)
{
	size_t len = strlen(tok);
	const char *dot1 = strchr(tok, '.');
	const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	*expired = 0;
	if(len > JWT_MAX || !dot2 || strchr(dot2 + 1, '.')) return NULL;
	uint8_t mac[IMP_HMAC_LEN], given[IMP_HMAC_LEN + 2];
	imp_hmac(keys->jwt, tok, (size_t)(dot2 - tok), mac);
	if(imp_b64_decode(dot2 + 1, strlen(dot2 + 1), given, sizeof given, 1) != IMP_HMAC_LEN ||
	   !imp_ct_equal(mac, given, IMP_HMAC_LEN))
		return NULL;
	uint8_t payload[JWT_MAX];
	long pn = imp_b64_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), payload, sizeof payload, 1);
	if(pn <= 0) return NULL;
	json_t *c = json_loadb((const char *)payload, (size_t)pn, JSON_REJECT_DUPLICATES, NULL);
	json_t *exp = json_object_get(c, "exp");
	if(!json_is_integer(exp) || !json_is_string(json_object_get(c, "userId")) ||
	   !json_is_string(json_object_get(c, "accountId")) || !json_is_string(json_object_get(c, "id"))) {
		json_decref(c);
		return NULL;
	}
	if((uint64_t)json_integer_value(exp) <= imp_now_ms() / 1000) {
		*expired = 1;
		if(!allow_expired) {
			json_decref(c);
			return NULL;
		}
	}
	return c;
}

/* Callers known by their API key. The cache finds a key by its SipHash-128 tag under a
 * random key of this process's (a keyed function nobody can make a second API key match
 * without that key), computed in tens of nanoseconds: the HMAC the store keeps keys by
 * was a thirtieth of a GET by id, and is now computed only on a miss. Deleting a key
 * empties the cache after the delete commits (imp_auth_forget), so a deleted key is
 * refused from then on. */
#define KEY_SLOTS 256
#define TAG_LEN crypto_shorthash_siphashx24_BYTES

struct key_slot {
	uint8_t tag[TAG_LEN];
	uint64_t gen;
	imp_principal who;
};

static pthread_mutex_t key_lock = PTHREAD_MUTEX_INITIALIZER;
static struct key_slot key_slots[KEY_SLOTS];
static atomic_uint_fast64_t key_gen = 1;
static uint8_t tag_key[crypto_shorthash_siphashx24_KEYBYTES];
static pthread_once_t tag_once = PTHREAD_ONCE_INIT;
static int tag_ok;

static __thread uint64_t key_pinned;   /* imp_auth_pin's generation, or 0 */

void imp_auth_forget(void) { atomic_fetch_add(&key_gen, 1); }
void imp_auth_pin(int on) { key_pinned = on ? atomic_load(&key_gen) : 0; }

static void tag_init(void) { tag_ok = imp_random(tag_key, sizeof tag_key) == IMP_OK; }

/* The slot for tok (its tag in tag), or NULL when there is no key to tag with. */
static struct key_slot *key_slot_of(const char *tok, uint8_t tag[TAG_LEN])
{
	pthread_once(&tag_once, tag_init);
	if(!tag_ok) return NULL;
	crypto_shorthash_siphashx24(tag, (const unsigned char *)tok, strlen(tok), tag_key);
	return &key_slots[(tag[0] | (unsigned)tag[1] << 8) % KEY_SLOTS];
}

static imp_err from_api_key(imp_req *r, const char *tok)
{
	uint8_t tag[TAG_LEN];
	struct key_slot *slot = key_slot_of(tok, tag);
	uint64_t gen = key_pinned ? key_pinned : atomic_load(&key_gen);
	int hit = 0;
	pthread_mutex_lock(&key_lock);
	if(slot && slot->gen == gen && imp_ct_equal(slot->tag, tag, TAG_LEN)) {
		r->who = slot->who;
		hit = 1;
	}
	pthread_mutex_unlock(&key_lock);
	if(hit) return IMP_OK;
	char hash[65];
	imp_secret_hash(&r->app->keys, tok, hash);
	imp_entity e;
	imp_err rc = imp_db_find_by_secret(r->db, &imp_kind_api_key, hash, &e);
	if(rc == IMP_ERR_NOT_FOUND) return api_fail(r, IMP_ERR_UNAUTHORIZED, "invalid_token", NULL, "the API key is not valid");
	if(rc) return api_fail(r, rc, NULL, NULL, "could not check the API key");
	r->who.type = IMP_ACTOR_API_KEY;
	r->who.account = e.account;
	r->who.account_id = e.account_id;
	r->who.actor_id = e.id;
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(e.doc, "scopes"), i, s) {
		int bit = imp_choice_index(imp_scope_names, json_string_value(s));
		if(bit >= 0) r->who.scopes |= 1u << bit;
	}
	imp_entity_clear(&e);
	pthread_mutex_lock(&key_lock);
	if(slot && atomic_load(&key_gen) == gen) {
		memcpy(slot->tag, tag, TAG_LEN);
		slot->gen = gen;
		slot->who = r->who;
	}
	pthread_mutex_unlock(&key_lock);
	return IMP_OK;
}

static imp_err from_jwt(imp_req *r, const char *tok, int allow_expired)
{
	int expired;
	json_t *c = jwt_verify(&r->app->keys, tok, allow_expired, &expired);
	if(!c) {
		return api_fail(r, IMP_ERR_UNAUTHORIZED, expired ? "token_expired" : "invalid_token", NULL,
		                expired ? "the token has expired; renew the session or log in again" : "the token is not valid");
	}
	const char *user = json_string_value(json_object_get(c, "userId"));
	const char *account = json_string_value(json_object_get(c, "accountId"));
	const char *sid = json_string_value(json_object_get(c, "id"));
	imp_err rc = IMP_OK;
	if(!imp_id_valid(user) || !imp_id_valid(account) || !imp_id_valid(sid)) {
		rc = api_fail(r, IMP_ERR_UNAUTHORIZED, "invalid_token", NULL, "the token is not valid");
		goto out;
	}
	rc = imp_db_session_check(r->db, sid, user, imp_now_ms());
	if(!rc) rc = imp_db_account_key(r->db, account, &r->who.account);
	if(rc == IMP_ERR_NOT_FOUND) {
		rc = api_fail(r, IMP_ERR_UNAUTHORIZED, "session_ended", NULL, "the session has ended; log in again");
		goto out;
	}
	if(rc) {
		rc = api_fail(r, rc, NULL, NULL, "could not check the session");
		goto out;
	}
	snprintf(r->who.account_id.s, sizeof r->who.account_id.s, "%s", account);
	snprintf(r->who.actor_id.s, sizeof r->who.actor_id.s, "%s", user);
	json_t *roles = json_object_get(c, "roles");
	const char *role = json_array_size(roles) == 1 ? json_string_value(json_array_get(roles, 0)) : NULL;
	if(role && strcmp(role, IMP_ROLE_END_USER) == 0) {
		/* An end user reaches its organization as it is now, not as it was at login. */
		imp_entity u;
		rc = imp_db_get(r->db, &imp_kind_end_user, r->who.account, user, &u);
		if(rc == IMP_ERR_NOT_FOUND) {
			rc = api_fail(r, IMP_ERR_UNAUTHORIZED, "session_ended", NULL, "the session has ended; log in again");
			goto out;
		}
		if(rc) {
			rc = api_fail(r, rc, NULL, NULL, "could not check the session");
			goto out;
		}
		snprintf(r->who.org_id.s, sizeof r->who.org_id.s, "%s", json_string_value(json_object_get(u.doc, "organizationId")));
		imp_entity_clear(&u);
		r->who.type = IMP_ACTOR_END_USER;
		r->who.scopes = 0;
	} else if(role && strcmp(role, IMP_ROLE_ADMIN) == 0) {
		r->who.type = IMP_ACTOR_USER;
		r->who.scopes = IMP_SCOPE_ADMIN;
	} else {
		rc = api_fail(r, IMP_ERR_UNAUTHORIZED, "invalid_token", NULL, "the token is not valid");
	}
out:
	json_decref(c);
	return rc;
}

/* HTTP Basic deviceId:secret, checked by the same code as the broker's logins. */
static imp_err from_basic(imp_req *r, const char *b64)
{
	char raw[IMP_UUID_LEN + 1 + IMP_SECRET_LEN + 8];
	while(*b64 == ' ') b64++;
	size_t n = strlen(b64);
	long len = n < 4 * sizeof raw / 3 ? imp_b64_decode(b64, n, (uint8_t *)raw, sizeof raw - 1, 0) : -1;
	char *colon = len > 0 ? memchr(raw, ':', (size_t)len) : NULL;
	imp_err rc = IMP_OK;
	if(!colon) {
		rc = api_fail(r, IMP_ERR_UNAUTHORIZED, "invalid_token", NULL, "Basic credentials must be deviceId:secret");
		goto out;
	}
	raw[len] = '\0';
	*colon = '\0';
	imp_auth_row row;
	imp_verdict v = imp_verify_password(r->db, &r->app->keys, raw, raw, colon + 1, &row);
	if(v == IMP_DENY_STORE) {
		rc = api_fail(r, IMP_ERR_STORE, NULL, NULL, "could not check the credentials");
		goto out;
	}
	if(v != IMP_ALLOW || !row.is_device) {
		rc = api_fail(r, IMP_ERR_UNAUTHORIZED, "invalid_credentials", NULL, "the device id or secret is not valid");
		goto out;
	}
	imp_entity d;
	rc = imp_db_get(r->db, &imp_kind_device, row.account, raw, &d);
	if(rc) {
		rc = api_fail(r, IMP_ERR_UNAUTHORIZED, "invalid_credentials", NULL, "the device id or secret is not valid");
		goto out;
	}
	r->who.type = IMP_ACTOR_DEVICE;
	r->who.account = d.account;
	r->who.account_id = d.account_id;
	r->who.actor_id = d.id;
	r->who.scopes = 0;
	imp_entity_clear(&d);
out:
	sodium_memzero(raw, sizeof raw);
	return rc;
}

imp_err imp_auth_resolve(imp_req *r, int allow_expired)
{
	return imp_auth_resolve_header(r, api_header(r, "Authorization"), allow_expired);
}

imp_err imp_auth_resolve_header(imp_req *r, const char *h, int allow_expired)
{
	if(!h) return api_fail(r, IMP_ERR_UNAUTHORIZED, "missing_token", NULL, "an Authorization: Bearer token is required");
	if(strncasecmp(h, "Basic ", 6) == 0) return from_basic(r, h + 6);
	if(strncasecmp(h, "Bearer ", 7) != 0)
		return api_fail(r, IMP_ERR_UNAUTHORIZED, "invalid_token", NULL, "the Authorization header must be Bearer <token>");
	const char *tok = h + 7;
	while(*tok == ' ') tok++;
	if(strncmp(tok, IMP_API_KEY_PREFIX, 4) == 0) {
		if(strlen(tok) != IMP_API_KEY_LEN) return api_fail(r, IMP_ERR_UNAUTHORIZED, "invalid_token", NULL, "the API key is not valid");
		return from_api_key(r, tok);
	}
	return from_jwt(r, tok, allow_expired);
}

imp_err imp_password_hash(const char *password, char *out, size_t out_len)
{
	if(out_len < crypto_pwhash_STRBYTES) return IMP_ERR_NOMEM;
	if(crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
	                     crypto_pwhash_MEMLIMIT_INTERACTIVE / 2) != 0)
		return IMP_ERR_NOMEM;
	return IMP_OK;
}

int imp_password_check(const char *hash, const char *password)
{
	return crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
}
