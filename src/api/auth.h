/* Who is calling: JWTs for logged-in users, API keys for machines, argon2id for human
 * passwords. */
#ifndef IMP_API_AUTH_H
#define IMP_API_AUTH_H
#include "api/http.h"

#define IMP_API_KEY_PREFIX "imp_"
/* "imp_" and 43 characters of base64url (32 random bytes). */
#define IMP_API_KEY_LEN (4 + 43)

/* Resolves r->who from the Authorization header. allow_expired accepts a JWT past its
 * exp (renew-session only). 401 with a reason when missing, malformed, unknown or expired. */
imp_err imp_auth_resolve(imp_req *r, int allow_expired);
/* The same from h, the Authorization header's value (NULL when absent). */
imp_err imp_auth_resolve_header(imp_req *r, const char *h, int allow_expired);

/* Forgets every API key remembered by imp_auth_resolve; call after a key is deleted. */
void imp_auth_forget(void);

/* Pins, for this thread, the generation imp_auth_forget moves on (or unpins with 0). A
 * request that reads a snapshot kept from before it started pins first, then takes the
 * snapshot: a key it remembers is then tagged with a generation no later than what it
 * read, and a deletion committed since is never remembered as valid. */
void imp_auth_pin(int on);

/* The JWT role of account users and of end users. */
#define IMP_ROLE_ADMIN "admin"
#define IMP_ROLE_END_USER "endUser"

/* A signed JWT for user in account with session sid and role (IMP_ROLE_*). Caller frees
 * *out. */
imp_err imp_jwt_make(const imp_keys *keys, const char *user_id, const char *account_id, const char *sid,
                     const char *role, char **out);

/* A new API key into key[IMP_API_KEY_LEN + 1] and its keyed hash (hex) into hash[65]. */
imp_err imp_api_key_new(const imp_keys *keys, char *key, char *hash);

/* The keyed hash (hex) under which a secret is stored. */
void imp_secret_hash(const imp_keys *keys, const char *secret, char hash[65]);

/* argon2id hash of a password, into out (crypto_pwhash_STRBYTES). */
imp_err imp_password_hash(const char *password, char *out, size_t out_len);
/* 1 when password matches hash. */
int imp_password_check(const char *hash, const char *password);

#endif
