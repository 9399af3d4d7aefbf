/* Identity end to end: logging in, JWTs (good, tampered, expired, renewed), API keys and
 * their scopes, account users, and that no secret issued here reaches the audit log or the
 * server's log. One server for the whole file; the tests run in order and share it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static h_server S;
static char admin_jwt[2048];   /* a login JWT of the init account's admin */
static char admin_user_id[64]; /* its userId claim */
static char admin_sid[64];     /* its session id claim */
static char template_id[64];   /* a device template for the device tests */

/* Every secret issued during the run; none may show up in audit entries or the log. */
static char secrets[64][512];
static int nsecrets;

static void keep_secret(const char *s)
{
	assert_true(nsecrets < (int)(sizeof secrets / sizeof secrets[0]));
	assert_true(strlen(s) < sizeof secrets[0]);
	snprintf(secrets[nsecrets++], sizeof secrets[0], "%s", s);
}

/* ---- small helpers ------------------------------------------------------------------ */

/* Asserts the standard error shape {"error": {"code", "message", "details"?}} with the given
 * status and code (code NULL: any). */
static void expect_error(const h_resp *r, long status, const char *code)
{
	if(r->status != status) fprintf(stderr, "expected %ld, got %ld: %s\n", status, r->status, r->body);
	assert_int_equal(r->status, status);
	assert_non_null(r->json);
	assert_true(json_is_object(r->json));
	assert_int_equal(json_object_size(r->json), 1);
	json_t *err = json_object_get(r->json, "error");
	assert_true(json_is_object(err));
	const char *c = json_string_value(json_object_get(err, "code"));
	const char *m = json_string_value(json_object_get(err, "message"));
	assert_non_null(c);
	assert_non_null(m);
	assert_true(strlen(m) > 0);
	if(code) assert_string_equal(c, code);
	json_t *details = json_object_get(err, "details");
	if(details) {
		assert_true(json_is_array(details));
		json_t *d0 = json_array_get(details, 0);
		assert_non_null(json_string_value(json_object_get(d0, "target")));
		assert_non_null(json_string_value(json_object_get(d0, "message")));
	}
}

/* expect_error and the details[0].target. */
static void expect_error_target(const h_resp *r, long status, const char *code, const char *target)
{
	expect_error(r, status, code);
	assert_string_equal(h_str(r, "error.details.0.target"), target);
}

/* One call with a JSON body built by the caller (stolen). */
static h_resp call_json(const char *method, const char *path, const char *token, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	assert_non_null(text);
	h_resp r = h_call(&S, method, path, token, text, NULL);
	free(text);
	return r;
}

static h_resp login(const char *email, const char *password)
{
	return call_json("POST", "/api/v1/auth/login-user", NULL,
	                 json_pack("{s:s, s:s}", "emailAddress", email, "password", password));
}

static long status_of(const char *method, const char *path, const char *token, const char *body)
{
	h_resp r = h_call(&S, method, path, token, body, NULL);
	long st = r.status;
	if(st >= 400) {
		/* Every refusal carries the error shape. */
		expect_error(&r, st, NULL);
	}
	h_resp_free(&r);
	return st;
}

static void b64url(const void *in, size_t n, char *out)
{
	int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	while(len > 0 && out[len - 1] == '=') len--;
	out[len] = '\0';
	for(char *p = out; *p; p++) {
		if(*p == '+') *p = '-';
		else if(*p == '/') *p = '_';
	}
}

/* Decodes base64url (no padding) into out; returns the length or -1. */
static int b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
	char tmp[4096];
	if(n + 4 >= sizeof tmp) return -1;
	memcpy(tmp, in, n);
	for(size_t i = 0; i < n; i++) {
		if(tmp[i] == '-') tmp[i] = '+';
		else if(tmp[i] == '_') tmp[i] = '/';
	}
	size_t pad = (4 - n % 4) % 4;
	for(size_t i = 0; i < pad; i++) tmp[n + i] = '=';
	n += pad;
	tmp[n] = '\0';
	if(cap < n / 4 * 3) return -1;
	int len = EVP_DecodeBlock(out, (unsigned char *)tmp, (int)n);
	if(len < 0) return -1;
	return len - (int)pad;
}

/* The claims of a JWT (not verified). */
static json_t *jwt_claims(const char *jwt)
{
	const char *d1 = strchr(jwt, '.');
	const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	if(!d2) return NULL;
	unsigned char buf[2048];
	int n = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf, sizeof buf);
	return n > 0 ? json_loadb((const char *)buf, (size_t)n, 0, NULL) : NULL;
}

/* The server's JWT key from DATA/keys.json (standard base64, field jwtKey). */
static void jwt_key(unsigned char key[32])
{
	char path[400];
	snprintf(path, sizeof path, "%s/keys.json", S.data);
	json_t *o = json_load_file(path, 0, NULL);
	assert_non_null(o);
	const char *k = json_string_value(json_object_get(o, "jwtKey"));
	assert_non_null(k);
	unsigned char raw[64];
	int n = EVP_DecodeBlock(raw, (const unsigned char *)k, (int)strlen(k));
	size_t kl = strlen(k);
	if(kl >= 1 && k[kl - 1] == '=') n--;
	if(kl >= 2 && k[kl - 2] == '=') n--;
	assert_int_equal(n, 32);
	memcpy(key, raw, 32);
	OPENSSL_cleanse(raw, sizeof raw);
	json_decref(o);
}

/* An HS256 JWT over claims (stolen), signed with key. */
static void jwt_sign(json_t *claims, const unsigned char key[32], char *out, size_t cap)
{
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	char *payload = json_dumps(claims, JSON_COMPACT);
	json_decref(claims);
	assert_non_null(payload);
	char buf[2048], sig[64];
	b64url(header, strlen(header), buf);
	size_t n = strlen(buf);
	buf[n++] = '.';
	b64url(payload, strlen(payload), buf + n);
	free(payload);
	unsigned char mac[32];
	unsigned int mlen = sizeof mac;
	assert_non_null(HMAC(EVP_sha256(), key, 32, (const unsigned char *)buf, strlen(buf), mac, &mlen));
	b64url(mac, mlen, sig);
	assert_true(strlen(buf) + 1 + strlen(sig) < cap);
	snprintf(out, cap, "%s.%s", buf, sig);
}

/* A JWT with the real key for user/session with the given exp. */
static void jwt_forge(const char *user, const char *sid, long long iat, long long exp, char *out, size_t cap)
{
	unsigned char key[32];
	jwt_key(key);
	jwt_sign(json_pack("{s:s, s:s, s:s, s:[s], s:I, s:I}", "userId", user, "accountId", S.admin.account_id, "id", sid,
	                   "roles", "admin", "iat", (json_int_t)iat, "exp", (json_int_t)exp),
	         key, out, cap);
	OPENSSL_cleanse(key, sizeof key);
}

/* A new API key with the given scopes (a JSON array text); its id and key. */
static void make_key(const char *name, const char *scopes, char *id, size_t idcap, char *key, size_t keycap)
{
	char body[512];
	snprintf(body, sizeof body, "{\"name\": \"%s\", \"scopes\": %s}", name, scopes);
	h_resp r = h_call(&S, "POST", "/api/v1/api-keys", S.admin.api_key, body, NULL);
	if(r.status != 201) fprintf(stderr, "make_key: %ld %s\n", r.status, r.body);
	assert_int_equal(r.status, 201);
	assert_non_null(h_str(&r, "apiKey.id"));
	assert_non_null(h_str(&r, "apiKey.key"));
	snprintf(id, idcap, "%s", h_str(&r, "apiKey.id"));
	snprintf(key, keycap, "%s", h_str(&r, "apiKey.key"));
	keep_secret(key);
	h_resp_free(&r);
}

/* 1 when the JSON array arr holds an object whose "id" is id. */
static int has_id(json_t *arr, const char *id)
{
	size_t i;
	json_t *o;
	json_array_foreach(arr, i, o) {
		const char *s = json_string_value(json_object_get(o, "id"));
		if(s && strcmp(s, id) == 0) return 1;
	}
	return 0;
}

/* ---- setup ---------------------------------------------------------------------------- */

static int group_setup(void **state)
{
	if(h_server_start(&S)) return -1;
	keep_secret(S.admin.password);
	keep_secret(S.admin.api_key);
	if(h_login(&S, &S.admin, admin_jwt, sizeof admin_jwt)) return -1;
	keep_secret(admin_jwt);
	json_t *c = jwt_claims(admin_jwt);
	const char *u = json_string_value(json_object_get(c, "userId"));
	const char *sid = json_string_value(json_object_get(c, "id"));
	if(!u || !sid) {
		json_decref(c);
		return -1;
	}
	snprintf(admin_user_id, sizeof admin_user_id, "%s", u);
	snprintf(admin_sid, sizeof admin_sid, "%s", sid);
	json_decref(c);
	if(h_create(&S, S.admin.api_key, "/api/v1/devices/templates", "{\"name\": \"identity-tpl\"}", "deviceTemplate.id",
	            template_id, sizeof template_id))
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	int st = h_server_stop(&S);
	if(st != 0) fprintf(stderr, "server exit status %d; log kept at %s\n", st, S.log);
	else h_server_destroy(&S);
	return st == 0 ? 0 : -1;
}

/* ---- login ---------------------------------------------------------------------------- */

static void login_happy_path(void **state)
{
	/* The setup logged in; the JWT's claims are as documented. */
	json_t *c = jwt_claims(admin_jwt);
	assert_non_null(c);
	assert_string_equal(json_string_value(json_object_get(c, "accountId")), S.admin.account_id);
	assert_int_equal(strlen(admin_user_id), 36);
	assert_int_equal(strlen(admin_sid), 36);
	json_t *roles = json_object_get(c, "roles");
	assert_true(json_is_array(roles));
	json_int_t iat = json_integer_value(json_object_get(c, "iat"));
	json_int_t exp = json_integer_value(json_object_get(c, "exp"));
	assert_int_equal(exp - iat, 20 * 60);
	assert_true(llabs((long long)iat - (long long)time(NULL)) < 120);
	json_decref(c);
	/* Header: HS256. */
	unsigned char hb[256];
	int hn = b64url_decode(admin_jwt, strcspn(admin_jwt, "."), hb, sizeof hb);
	assert_true(hn > 0);
	json_t *hdr = json_loadb((const char *)hb, (size_t)hn, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(hdr, "alg")), "HS256");
	json_decref(hdr);

	h_resp r = h_call(&S, "GET", "/api/v1/devices", admin_jwt, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_true(json_is_array(h_at(r.json, "devices.results")));
	assert_true(json_is_object(h_at(r.json, "devices.meta")));
	h_resp_free(&r);

	/* The optional accountId narrows the login to that account. */
	h_resp l = call_json("POST", "/api/v1/auth/login-user", NULL,
	                     json_pack("{s:s, s:s, s:s}", "emailAddress", S.admin.email, "password", S.admin.password,
	                               "accountId", S.admin.account_id));
	assert_int_equal(l.status, 200);
	assert_non_null(h_str(&l, "jwt"));
	assert_string_equal(l.content_type, "application/json");
	keep_secret(h_str(&l, "jwt"));
	h_resp_free(&l);
}

static void login_failures_share_one_answer(void **state)
{
	char wrong[160];
	snprintf(wrong, sizeof wrong, "%sX", S.admin.password);
	h_resp a = login(S.admin.email, wrong);
	expect_error(&a, 401, "invalid_login");
	h_resp b = login("nobody-here@example.com", "whatever-password");
	expect_error(&b, 401, "invalid_login");
	assert_string_equal(h_str(&a, "error.message"), h_str(&b, "error.message"));
	assert_null(h_at(a.json, "error.details"));
	assert_null(h_at(b.json, "error.details"));
	assert_string_equal(a.retry_after, "");
	/* The answers are byte for byte the same. */
	assert_string_equal(a.body, b.body);
	/* Nothing about the password in the answer. */
	assert_null(strstr(a.body, wrong));
	keep_secret(wrong);
	h_resp_free(&a);
	h_resp_free(&b);

	/* A right password in an account that does not hold the user: also 401. */
	h_account other;
	assert_int_equal(h_account_create(&S, &other), 0);
	keep_secret(other.password);
	keep_secret(other.api_key);
	h_resp c = call_json("POST", "/api/v1/auth/login-user", NULL,
	                     json_pack("{s:s, s:s, s:s}", "emailAddress", S.admin.email, "password", S.admin.password,
	                               "accountId", other.account_id));
	expect_error(&c, 401, "invalid_login");
	h_resp_free(&c);
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for(; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h | 1;
}

/* Another email whose "e:<email>" lands in the same one of 4096 slots as email's. */
static void find_slot_twin(const char *email, char *out, size_t cap)
{
	char key[160];
	snprintf(key, sizeof key, "e:%s", email);
	uint64_t slot = fnv1a(key) % 4096;
	for(int i = 0; i < 1000000; i++) {
		snprintf(out, cap, "twin-%d@example.com", i);
		snprintf(key, sizeof key, "e:%s", out);
		if(fnv1a(key) % 4096 == slot) return;
	}
	fail_msg("no twin found");
}

static void login_rate_limit(void **state)
{
	/* The limiter counts in fixed 5-minute windows; do not start right before one ends. */
	time_t now = time(NULL);
	if(now % 300 > 280) sleep((unsigned)(300 - now % 300 + 1));
	char email[128];
	snprintf(email, sizeof email, "ratelimit-%ld-%d@example.com", (long)time(NULL), (int)getpid());
	for(int i = 0; i < 10; i++) {
		h_resp r = login(email, "not-the-password");
		expect_error(&r, 401, "invalid_login");
		assert_string_equal(r.retry_after, "");
		h_resp_free(&r);
	}
	h_resp r = login(email, "not-the-password");
	expect_error(&r, 429, "rate_limited");
	assert_true(r.retry_after[0] != '\0');
	char *end;
	long wait = strtol(r.retry_after, &end, 10);
	assert_true(*end == '\0');
	assert_in_range(wait, 1, 300);
	h_resp_free(&r);
	/* Still blocked, whatever the password. */
	h_resp again = login(email, S.admin.password);
	expect_error(&again, 429, "rate_limited");
	assert_true(again.retry_after[0] != '\0');
	h_resp_free(&again);
	/* Another email is unaffected. */
	h_resp other = login("another-throwaway@example.com", "not-the-password");
	expect_error(&other, 401, "invalid_login");
	h_resp_free(&other);
	/* Even one that lands in the same slot of the limiter's table under the unkeyed FNV-1a
	 * of "e:<email>" modulo 4096 that the limiter once used: anyone could compute such an
	 * address, and the shared count let a stranger lock a user out with 10 requests. */
	char twin[128];
	find_slot_twin(email, twin, sizeof twin);
	other = login(twin, "not-the-password");
	expect_error(&other, 401, "invalid_login");
	h_resp_free(&other);
}

static void login_bad_bodies(void **state)
{
	static const char *const bodies[] = {
		"{\"emailAddress\": 5, \"password\": \"abcdefgh\"}",
		"{\"emailAddress\": \"a@b.c\", \"password\": 12345678}",
		"{\"emailAddress\": \"a@b.c\", \"password\": null}",
		"{\"emailAddress\": \"a@b.c\"}",
		"{\"password\": \"abcdefgh\"}",
		"{}",
		"{\"emailAddress\": \"a@b.c\", \"password\": \"abcdefgh\", \"accountId\": 7}",
		"{\"emailAddress\": \"a@b.c\", \"password\": \"abcdefgh\", \"extra\": true}",
		"{\"emailAddress\": [\"a@b.c\"], \"password\": \"abcdefgh\"}",
	};
	for(size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
		h_resp r = h_call(&S, "POST", "/api/v1/auth/login-user", NULL, bodies[i], NULL);
		expect_error(&r, 400, "invalid_body");
		h_resp_free(&r);
	}
	static const char *const malformed[] = {"not json", "[1, 2]", "\"a string\"", "{\"emailAddress\": "};
	for(size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
		h_resp r = h_call(&S, "POST", "/api/v1/auth/login-user", NULL, malformed[i], NULL);
		expect_error(&r, 400, "malformed_json");
		h_resp_free(&r);
	}
	h_resp e = h_call(&S, "POST", "/api/v1/auth/login-user", NULL, NULL, NULL);
	expect_error(&e, 400, "malformed_json");
	h_resp_free(&e);
	h_resp g = h_call(&S, "GET", "/api/v1/auth/login-user", NULL, NULL, NULL);
	expect_error(&g, 405, "method_not_allowed");
	h_resp_free(&g);
}

/* ---- tokens ---------------------------------------------------------------------------- */

static void missing_and_malformed_tokens(void **state)
{
	h_resp r = h_call(&S, "GET", "/api/v1/devices", NULL, NULL, NULL);
	expect_error(&r, 401, "missing_token");
	h_resp_free(&r);

	static const char *const headers[] = {
		"Authorization: Basic YWRtaW46cGFzc3dvcmQ=",
		"Authorization: Token abc",
		"Authorization: Bearer",
		"Authorization: Bearer ",
		"Authorization: Bearer garbage",
		"Authorization: Bearer a.b.c",
		"Authorization: Bearer a.b.c.d",
		"Authorization: Bearer ...",
		"Authorization: Bearer imp_short",
		"Authorization: Bearer imp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"Authorization: Bearer eyJhbGciOiJub25lIn0.eyJ1c2VySWQiOiJ4In0.",
	};
	for(size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
		h_resp m = h_call(&S, "GET", "/api/v1/devices", NULL, NULL, headers[i]);
		if(m.status != 401) fprintf(stderr, "header %s\n", headers[i]);
		expect_error(&m, 401, NULL);
		const char *code = h_str(&m, "error.code");
		/* Basic is how devices call their own routes: a user's name and password in it is
		 * simply not a device's credentials. */
		if(strncmp(headers[i], "Authorization: Basic", 20) == 0) assert_string_equal(code, "invalid_credentials");
		else assert_true(strcmp(code, "invalid_token") == 0 || strcmp(code, "missing_token") == 0);
		h_resp_free(&m);
	}
	/* An unsigned ("alg": "none") token built from a real payload is refused. */
	char none[2048];
	const char *d2 = strrchr(admin_jwt, '.');
	char hdr[64];
	b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}", strlen("{\"alg\":\"none\",\"typ\":\"JWT\"}"), hdr);
	const char *d1 = strchr(admin_jwt, '.');
	snprintf(none, sizeof none, "%s%.*s.", hdr, (int)(d2 - d1), d1);
	h_resp n = h_call(&S, "GET", "/api/v1/devices", none, NULL, NULL);
	expect_error(&n, 401, "invalid_token");
	h_resp_free(&n);
}

static void jwt_bad_signature(void **state)
{
	char tok[2048];
	/* A changed signature (first character, which carries full bits). */
	snprintf(tok, sizeof tok, "%s", admin_jwt);
	char *sig = strrchr(tok, '.') + 1;
	sig[0] = sig[0] == 'A' ? 'B' : 'A';
	h_resp r = h_call(&S, "GET", "/api/v1/devices", tok, NULL, NULL);
	expect_error(&r, 401, "invalid_token");
	h_resp_free(&r);

	/* The real claims signed with another key. */
	unsigned char wrong[32];
	memset(wrong, 0x5a, sizeof wrong);
	time_t now = time(NULL);
	jwt_sign(json_pack("{s:s, s:s, s:s, s:[s], s:I, s:I}", "userId", admin_user_id, "accountId", S.admin.account_id,
	                   "id", admin_sid, "roles", "admin", "iat", (json_int_t)now, "exp", (json_int_t)now + 600),
	         wrong, tok, sizeof tok);
	r = h_call(&S, "GET", "/api/v1/devices", tok, NULL, NULL);
	expect_error(&r, 401, "invalid_token");
	h_resp_free(&r);

	/* A changed payload under the old signature. */
	char payload[64];
	b64url("{\"userId\":\"x\"}", 14, payload);
	const char *d1 = strchr(admin_jwt, '.');
	const char *d2 = strrchr(admin_jwt, '.');
	snprintf(tok, sizeof tok, "%.*s.%s%s", (int)(d1 - admin_jwt), admin_jwt, payload, d2);
	r = h_call(&S, "GET", "/api/v1/devices", tok, NULL, NULL);
	expect_error(&r, 401, "invalid_token");
	h_resp_free(&r);

	/* Sanity: the forger makes tokens the server accepts when the key is right. */
	jwt_forge(admin_user_id, admin_sid, (long long)now, (long long)now + 600, tok, sizeof tok);
	keep_secret(tok);
	r = h_call(&S, "GET", "/api/v1/devices", tok, NULL, NULL);
	assert_int_equal(r.status, 200);
	h_resp_free(&r);

	/* Right key, but a session id that names no session. */
	jwt_forge(admin_user_id, "01890a5d-ac96-774b-bcce-b302099a8057", (long long)now, (long long)now + 600, tok,
	          sizeof tok);
	r = h_call(&S, "GET", "/api/v1/devices", tok, NULL, NULL);
	expect_error(&r, 401, "session_ended");
	h_resp_free(&r);
}

static void jwt_expired(void **state)
{
	char tok[2048];
	time_t now = time(NULL);
	jwt_forge(admin_user_id, admin_sid, (long long)now - 3600, (long long)now - 60, tok, sizeof tok);
	keep_secret(tok);
	h_resp r = h_call(&S, "GET", "/api/v1/devices", tok, NULL, NULL);
	expect_error(&r, 401, "token_expired");
	h_resp_free(&r);
	/* exp == now is already expired. */
	jwt_forge(admin_user_id, admin_sid, (long long)now - 1200, (long long)now - 1, tok, sizeof tok);
	r = h_call(&S, "GET", "/api/v1/api-keys", tok, NULL, NULL);
	expect_error(&r, 401, "token_expired");
	h_resp_free(&r);
}

static void renew_session(void **state)
{
	/* With a valid JWT: a new one for the same session. */
	h_resp r = h_call(&S, "POST", "/api/v1/sessions/renew-session", admin_jwt, NULL, NULL);
	assert_int_equal(r.status, 200);
	const char *jwt = h_str(&r, "jwt");
	assert_non_null(jwt);
	keep_secret(jwt);
	json_t *c = jwt_claims(jwt);
	assert_string_equal(json_string_value(json_object_get(c, "id")), admin_sid);
	assert_string_equal(json_string_value(json_object_get(c, "userId")), admin_user_id);
	assert_string_equal(json_string_value(json_object_get(c, "accountId")), S.admin.account_id);
	assert_true(json_integer_value(json_object_get(c, "exp")) > (json_int_t)time(NULL));
	json_decref(c);
	assert_int_equal(status_of("GET", "/api/v1/devices", jwt, NULL), 200);
	h_resp_free(&r);

	/* With an API key: 403. */
	r = h_call(&S, "POST", "/api/v1/sessions/renew-session", S.admin.api_key, NULL, NULL);
	expect_error(&r, 403, NULL);
	h_resp_free(&r);

	/* Without a token: 401. */
	r = h_call(&S, "POST", "/api/v1/sessions/renew-session", NULL, NULL, NULL);
	expect_error(&r, 401, "missing_token");
	h_resp_free(&r);

	/* Expired but validly signed, for a live session: renewed. */
	char tok[2048];
	time_t now = time(NULL);
	jwt_forge(admin_user_id, admin_sid, (long long)now - 3600, (long long)now - 60, tok, sizeof tok);
	r = h_call(&S, "POST", "/api/v1/sessions/renew-session", tok, NULL, NULL);
	assert_int_equal(r.status, 200);
	jwt = h_str(&r, "jwt");
	assert_non_null(jwt);
	keep_secret(jwt);
	c = jwt_claims(jwt);
	assert_string_equal(json_string_value(json_object_get(c, "id")), admin_sid);
	assert_true(json_integer_value(json_object_get(c, "exp")) > (json_int_t)time(NULL));
	json_decref(c);
	assert_int_equal(status_of("GET", "/api/v1/devices", jwt, NULL), 200);
	h_resp_free(&r);

	/* Expired and badly signed: 401. */
	tok[strrchr(tok, '.') + 1 - tok] ^= 1;
	r = h_call(&S, "POST", "/api/v1/sessions/renew-session", tok, NULL, NULL);
	expect_error(&r, 401, "invalid_token");
	h_resp_free(&r);

	/* Expired, validly signed, but no such session: 401. */
	jwt_forge(admin_user_id, "01890a5d-ac96-774b-bcce-b302099a8057", (long long)now - 3600, (long long)now - 60, tok,
	          sizeof tok);
	r = h_call(&S, "POST", "/api/v1/sessions/renew-session", tok, NULL, NULL);
	expect_error(&r, 401, "session_ended");
	h_resp_free(&r);
}

/* ---- API keys ------------------------------------------------------------------------- */

/* The server remembers keys it has seen in 256 slots: with more keys than slots in use,
 * each key must still be itself, and a key nobody made must still be refused whichever
 * remembered key shares its slot. */
#define MANY_KEYS 300
static void api_keys_beyond_the_cache(void **state)
{
	(void)state;
	static char keys[MANY_KEYS][64];
	for(int i = 0; i < MANY_KEYS; i++) {
		char body[128];
		snprintf(body, sizeof body, "{\"name\": \"many-%d\", \"scopes\": [\"%s\"]}", i, i % 2 ? "read" : "provisioning");
		h_resp r = h_call(&S, "POST", "/api/v1/api-keys", S.admin.api_key, body, NULL);
		assert_int_equal(r.status, 201);
		snprintf(keys[i], sizeof keys[i], "%s", h_str(&r, "apiKey.key"));
		h_resp_free(&r);
	}
	/* Twice round, so every slot has been taken over by another key. Read keys may list
	 * devices but not create one (403 before the body is read: an empty one does). */
	for(int round = 0; round < 2; round++) {
		for(int i = 0; i < MANY_KEYS; i++) {
			assert_int_equal(status_of("GET", "/api/v1/devices?pageSize=1", keys[i], NULL), 200);
			long st = status_of("POST", "/api/v1/devices", keys[i], "{}");
			if(i % 2) assert_int_equal(st, 403);
			else assert_int_not_equal(st, 403);
		}
	}
	/* Keys of the right form that were never made (a real key with one character changed),
	 * most of them in a slot a real key holds. */
	for(int i = 0; i < 64; i++) {
		char fake[64];
		snprintf(fake, sizeof fake, "imp_%s", keys[i] + 4);
		fake[4 + i % 40] = fake[4 + i % 40] == 'A' ? 'B' : 'A';
		assert_int_equal(status_of("GET", "/api/v1/devices?pageSize=1", fake, NULL), 401);
	}
}

static void api_key_lifecycle(void **state)
{
	h_resp r = h_call(&S, "POST", "/api/v1/api-keys", S.admin.api_key, "{\"name\": \"factory rig\", \"scopes\": [\"read\"]}",
	                  NULL);
	assert_int_equal(r.status, 201);
	const char *key = h_str(&r, "apiKey.key");
	assert_non_null(key);
	keep_secret(key);
	assert_int_equal(strlen(key), 47);
	assert_memory_equal(key, "imp_", 4);
	char id[64], k[128];
	snprintf(id, sizeof id, "%s", h_str(&r, "apiKey.id"));
	snprintf(k, sizeof k, "%s", key);
	assert_int_equal(strlen(id), 36);
	assert_string_equal(h_str(&r, "apiKey.name"), "factory rig");
	assert_string_equal(h_str(&r, "apiKey.accountId"), S.admin.account_id);
	assert_string_equal(h_str(&r, "apiKey.scopes.0"), "read");
	assert_int_equal(json_array_size(h_at(r.json, "apiKey.scopes")), 1);
	assert_non_null(h_str(&r, "apiKey.created"));
	assert_non_null(h_str(&r, "apiKey.version"));
	assert_null(h_at(r.json, "apiKey.secret"));
	assert_true(r.etag[0] != '\0');
	h_resp_free(&r);

	/* GET one: no key. */
	char path[128];
	snprintf(path, sizeof path, "/api/v1/api-keys/%s", id);
	r = h_call(&S, "GET", path, S.admin.api_key, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(h_str(&r, "apiKey.id"), id);
	assert_null(h_at(r.json, "apiKey.key"));
	assert_null(h_at(r.json, "apiKey.secret"));
	assert_null(strstr(r.body, k));
	assert_null(strstr(r.body, k + 4));
	h_resp_free(&r);

	/* The list: the key is there, no secret of any key is. */
	r = h_call(&S, "GET", "/api/v1/api-keys?pageSize=1000", S.admin.api_key, NULL, NULL);
	assert_int_equal(r.status, 200);
	json_t *results = h_at(r.json, "apiKeys.results");
	assert_true(has_id(results, id));
	size_t i;
	json_t *o;
	json_array_foreach(results, i, o) {
		assert_null(json_object_get(o, "key"));
		assert_null(json_object_get(o, "secret"));
	}
	for(int s = 0; s < nsecrets; s++) assert_null(strstr(r.body, secrets[s]));
	h_resp_free(&r);

	/* The key works. */
	assert_int_equal(status_of("GET", "/api/v1/devices", k, NULL), 200);

	/* Keys cannot be updated (no PUT route). */
	r = h_call(&S, "PUT", path, S.admin.api_key, "{\"scopes\": [\"admin\"]}", NULL);
	expect_error(&r, 405, "method_not_allowed");
	h_resp_free(&r);

	/* Delete: 204, then the key is refused and gone. */
	r = h_call(&S, "DELETE", path, S.admin.api_key, NULL, NULL);
	assert_int_equal(r.status, 204);
	assert_int_equal(r.len, 0);
	h_resp_free(&r);
	r = h_call(&S, "GET", "/api/v1/devices", k, NULL, NULL);
	expect_error(&r, 401, "invalid_token");
	h_resp_free(&r);
	r = h_call(&S, "GET", path, S.admin.api_key, NULL, NULL);
	expect_error(&r, 404, "not_found");
	h_resp_free(&r);
	r = h_call(&S, "DELETE", path, S.admin.api_key, NULL, NULL);
	expect_error(&r, 404, "not_found");
	h_resp_free(&r);
}

static void api_key_scope_validation(void **state)
{
	static const struct {
		const char *body;
		long status;
		const char *code;
		const char *target;
	} cases[] = {
		{"{\"name\": \"k\", \"scopes\": []}", 422, "invalid_field", "scopes"},
		{"{\"name\": \"k\", \"scopes\": [\"superuser\"]}", 422, "invalid_field", "scopes"},
		{"{\"name\": \"k\", \"scopes\": [\"Admin\"]}", 422, "invalid_field", "scopes"},
		{"{\"name\": \"k\", \"scopes\": [\"read\", \"read\"]}", 422, "invalid_field", "scopes"},
		{"{\"name\": \"k\", \"scopes\": [\"read\", \"broker\", \"read\"]}", 422, "invalid_field", "scopes"},
		{"{\"name\": \"k\", \"scopes\": [\"admin\", \"provisioning\", \"read\", \"broker\", \"admin\"]}", 422,
		 "invalid_field", "scopes"},
		{"{\"name\": \"k\", \"scopes\": \"read\"}", 400, "invalid_type", "scopes"},
		{"{\"name\": \"k\", \"scopes\": [1]}", 400, "invalid_type", "scopes"},
		{"{\"name\": \"k\", \"scopes\": [\"read\", null]}", 400, "invalid_type", "scopes"},
		{"{\"name\": \"k\", \"scopes\": {\"read\": true}}", 400, "invalid_type", "scopes"},
		{"{\"name\": \"k\", \"scopes\": null}", 400, "invalid_type", "scopes"},
		{"{\"name\": \"k\"}", 422, "missing_field", "scopes"},
		{"{\"scopes\": [\"read\"]}", 422, "missing_field", "name"},
		{"{\"name\": \"\", \"scopes\": [\"read\"]}", 422, "invalid_field", "name"},
		{"{\"name\": 3, \"scopes\": [\"read\"]}", 400, "invalid_type", "name"},
		{"{\"name\": \"k\", \"scopes\": [\"read\"], \"key\": \"imp_x\"}", 400, "unknown_field", "key"},
		{"{\"name\": \"k\", \"scopes\": [\"read\"], \"id\": \"01890a5d-ac96-774b-bcce-b302099a8057\"}", 400,
		 "read_only_field", "id"},
	};
	for(size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		h_resp r = h_call(&S, "POST", "/api/v1/api-keys", S.admin.api_key, cases[i].body, NULL);
		if(r.status != cases[i].status) fprintf(stderr, "case %zu: %s\n", i, cases[i].body);
		expect_error_target(&r, cases[i].status, cases[i].code, cases[i].target);
		h_resp_free(&r);
	}
	/* Nothing was made by the refused calls. */
	h_resp l = h_call(&S, "GET", "/api/v1/api-keys?name=k", S.admin.api_key, NULL, NULL);
	assert_int_equal(l.status, 200);
	assert_int_equal(json_array_size(h_at(l.json, "apiKeys.results")), 0);
	h_resp_free(&l);
	/* Four distinct scopes are the most, and fine. */
	char id[64], key[128], path[128];
	make_key("four", "[\"admin\", \"provisioning\", \"read\", \"broker\"]", id, sizeof id, key, sizeof key);
	snprintf(path, sizeof path, "/api/v1/api-keys/%s", id);
	assert_int_equal(status_of("DELETE", path, S.admin.api_key, NULL), 204);
}

static void scope_limits(void **state)
{
	char rid[64], rkey[128], pid[64], pkey[128], bid[64], bkey[128];
	make_key("reader", "[\"read\"]", rid, sizeof rid, rkey, sizeof rkey);
	make_key("provisioner", "[\"provisioning\"]", pid, sizeof pid, pkey, sizeof pkey);
	make_key("broker", "[\"broker\"]", bid, sizeof bid, bkey, sizeof bkey);

	char dev_body[256], dev_path[128], dev_id[64];
	snprintf(dev_body, sizeof dev_body, "{\"deviceTemplateId\": \"%s\", \"serialNumber\": \"SN-SCOPE-1\"}", template_id);

	/* read: GET only. */
	assert_int_equal(status_of("GET", "/api/v1/devices", rkey, NULL), 200);
	assert_int_equal(status_of("GET", "/api/v1/devices/templates", rkey, NULL), 200);
	h_resp r = h_call(&S, "POST", "/api/v1/devices", rkey, dev_body, NULL);
	expect_error(&r, 403, "insufficient_scope");
	h_resp_free(&r);
	r = h_call(&S, "POST", "/api/v1/devices/templates", rkey, "{\"name\": \"nope\"}", NULL);
	expect_error(&r, 403, "insufficient_scope");
	h_resp_free(&r);
	assert_int_equal(status_of("GET", "/api/v1/api-keys", rkey, NULL), 403);
	assert_int_equal(status_of("POST", "/api/v1/api-keys", rkey, "{\"name\": \"x\", \"scopes\": [\"admin\"]}"), 403);

	/* provisioning: create and update devices; no delete, no templates, no keys. */
	r = h_call(&S, "POST", "/api/v1/devices", pkey, dev_body, NULL);
	assert_int_equal(r.status, 201);
	snprintf(dev_id, sizeof dev_id, "%s", h_str(&r, "device.id"));
	assert_string_equal(h_str(&r, "device.provisioningState"), "defined");
	assert_string_equal(h_str(&r, "device.createdById"), pid);
	h_resp_free(&r);
	snprintf(dev_path, sizeof dev_path, "/api/v1/devices/%s", dev_id);
	r = h_call(&S, "PUT", dev_path, pkey, "{\"name\": \"renamed by rig\"}", NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(h_str(&r, "device.name"), "renamed by rig");
	assert_string_equal(h_str(&r, "device.lastModifiedById"), pid);
	h_resp_free(&r);
	assert_int_equal(status_of("GET", dev_path, pkey, NULL), 200);
	r = h_call(&S, "DELETE", dev_path, pkey, NULL, NULL);
	expect_error(&r, 403, "insufficient_scope");
	h_resp_free(&r);
	r = h_call(&S, "POST", "/api/v1/devices/templates", pkey, "{\"name\": \"nope\"}", NULL);
	expect_error(&r, 403, "insufficient_scope");
	h_resp_free(&r);
	r = h_call(&S, "POST", "/api/v1/api-keys", pkey, "{\"name\": \"escalate\", \"scopes\": [\"admin\"]}", NULL);
	expect_error(&r, 403, "insufficient_scope");
	h_resp_free(&r);
	assert_int_equal(status_of("GET", "/api/v1/api-keys", pkey, NULL), 403);
	char kpath[128];
	snprintf(kpath, sizeof kpath, "/api/v1/api-keys/%s", rid);
	assert_int_equal(status_of("GET", kpath, pkey, NULL), 403);
	assert_int_equal(status_of("DELETE", kpath, pkey, NULL), 403);
	assert_int_equal(status_of("GET", "/api/v1/account-users", pkey, NULL), 403);

	/* read cannot update or delete the device either. */
	assert_int_equal(status_of("PUT", dev_path, rkey, "{\"name\": \"x\"}"), 403);
	assert_int_equal(status_of("DELETE", dev_path, rkey, NULL), 403);

	/* broker: none of the management API. */
	r = h_call(&S, "GET", "/api/v1/devices", bkey, NULL, NULL);
	expect_error(&r, 403, "insufficient_scope");
	h_resp_free(&r);
	assert_int_equal(status_of("GET", dev_path, bkey, NULL), 403);
	assert_int_equal(status_of("POST", "/api/v1/devices", bkey, dev_body), 403);

	/* The device is untouched by the refused calls; the admin deletes it. */
	r = h_call(&S, "GET", dev_path, S.admin.api_key, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(h_str(&r, "device.name"), "renamed by rig");
	h_resp_free(&r);
	assert_int_equal(status_of("DELETE", dev_path, S.admin.api_key, NULL), 204);
	assert_int_equal(status_of("GET", dev_path, S.admin.api_key, NULL), 404);
}

/* ---- account users -------------------------------------------------------------------- */

static void account_users(void **state)
{
	const char *pw = "correct horse battery staple";
	keep_secret(pw);
	h_resp r = call_json("POST", "/api/v1/account-users", S.admin.api_key,
	                     json_pack("{s:s, s:s, s:s}", "emailAddress", "operator@example.com", "password", pw, "name",
	                               "Operator"));
	assert_int_equal(r.status, 201);
	assert_null(h_at(r.json, "accountUser.password"));
	assert_null(strstr(r.body, pw));
	assert_null(strstr(r.body, "argon2"));
	assert_string_equal(h_str(&r, "accountUser.emailAddress"), "operator@example.com");
	assert_string_equal(h_str(&r, "accountUser.name"), "Operator");
	assert_string_equal(h_str(&r, "accountUser.accountId"), S.admin.account_id);
	char uid[64], upath[128];
	snprintf(uid, sizeof uid, "%s", h_str(&r, "accountUser.id"));
	snprintf(upath, sizeof upath, "/api/v1/account-users/%s", uid);
	h_resp_free(&r);

	r = h_call(&S, "GET", upath, S.admin.api_key, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_null(h_at(r.json, "accountUser.password"));
	assert_null(strstr(r.body, "argon2"));
	h_resp_free(&r);
	r = h_call(&S, "GET", "/api/v1/account-users", admin_jwt, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_true(has_id(h_at(r.json, "accountUsers.results"), uid));
	assert_true(has_id(h_at(r.json, "accountUsers.results"), admin_user_id));
	assert_null(strstr(r.body, "password"));
	assert_null(strstr(r.body, "argon2"));
	h_resp_free(&r);

	/* The new user logs in, and its token works. */
	r = login("operator@example.com", pw);
	assert_int_equal(r.status, 200);
	char ujwt[2048];
	snprintf(ujwt, sizeof ujwt, "%s", h_str(&r, "jwt"));
	keep_secret(ujwt);
	h_resp_free(&r);
	json_t *c = jwt_claims(ujwt);
	assert_string_equal(json_string_value(json_object_get(c, "userId")), uid);
	assert_string_equal(json_string_value(json_object_get(c, "accountId")), S.admin.account_id);
	json_decref(c);
	assert_int_equal(status_of("GET", "/api/v1/devices", ujwt, NULL), 200);

	/* Validation. */
	r = call_json("POST", "/api/v1/account-users", S.admin.api_key,
	              json_pack("{s:s, s:s, s:s}", "emailAddress", "not-an-email", "password", "long-enough-1", "name", "X"));
	expect_error_target(&r, 422, "invalid_field", "emailAddress");
	h_resp_free(&r);
	r = call_json("POST", "/api/v1/account-users", S.admin.api_key,
	              json_pack("{s:s, s:s, s:s}", "emailAddress", "a@b@c", "password", "long-enough-1", "name", "X"));
	expect_error_target(&r, 422, "invalid_field", "emailAddress");
	h_resp_free(&r);
	r = call_json("POST", "/api/v1/account-users", S.admin.api_key,
	              json_pack("{s:s, s:s, s:s}", "emailAddress", "seven@example.com", "password", "1234567", "name", "X"));
	expect_error_target(&r, 422, "invalid_field", "password");
	h_resp_free(&r);
	char longpw[258];
	memset(longpw, 'p', 257);
	longpw[257] = '\0';
	r = call_json("POST", "/api/v1/account-users", S.admin.api_key,
	              json_pack("{s:s, s:s, s:s}", "emailAddress", "long@example.com", "password", longpw, "name", "X"));
	expect_error_target(&r, 422, "invalid_field", "password");
	h_resp_free(&r);
	r = call_json("POST", "/api/v1/account-users", S.admin.api_key,
	              json_pack("{s:s, s:i, s:s}", "emailAddress", "int@example.com", "password", 12345678, "name", "X"));
	expect_error_target(&r, 400, "invalid_type", "password");
	h_resp_free(&r);
	r = call_json("POST", "/api/v1/account-users", S.admin.api_key,
	              json_pack("{s:s, s:s}", "emailAddress", "nopw@example.com", "name", "X"));
	expect_error_target(&r, 422, "missing_field", "password");
	h_resp_free(&r);
	r = call_json("POST", "/api/v1/account-users", S.admin.api_key,
	              json_pack("{s:s, s:s, s:s}", "emailAddress", "eight@example.com", "password", "Ei8ht-ch", "name", "X"));
	assert_int_equal(r.status, 201);
	keep_secret("Ei8ht-ch");
	char eight_path[128];
	snprintf(eight_path, sizeof eight_path, "/api/v1/account-users/%s", h_str(&r, "accountUser.id"));
	h_resp_free(&r);
	/* None of the refused users exists. */
	r = h_call(&S, "GET", "/api/v1/account-users?pageSize=1000", S.admin.api_key, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_null(strstr(r.body, "seven@example.com"));
	assert_null(strstr(r.body, "long@example.com"));
	assert_null(strstr(r.body, "not-an-email"));
	assert_non_null(strstr(r.body, "eight@example.com"));
	h_resp_free(&r);

	/* A duplicate email in the account. */
	r = call_json("POST", "/api/v1/account-users", S.admin.api_key,
	              json_pack("{s:s, s:s, s:s}", "emailAddress", "operator@example.com", "password", "another-password",
	                        "name", "Twin"));
	expect_error(&r, 409, NULL);
	h_resp_free(&r);
	keep_secret("another-password");

	/* A user cannot delete itself. */
	char self[128];
	snprintf(self, sizeof self, "/api/v1/account-users/%s", admin_user_id);
	r = h_call(&S, "DELETE", self, admin_jwt, NULL, NULL);
	expect_error(&r, 422, "self_delete");
	h_resp_free(&r);
	r = h_call(&S, "DELETE", upath, ujwt, NULL, NULL);
	expect_error(&r, 422, "self_delete");
	h_resp_free(&r);
	assert_int_equal(status_of("GET", upath, S.admin.api_key, NULL), 200);

	/* Delete: 204; the user's session ends and it cannot log in. */
	r = h_call(&S, "DELETE", upath, admin_jwt, NULL, NULL);
	assert_int_equal(r.status, 204);
	assert_int_equal(r.len, 0);
	h_resp_free(&r);
	assert_int_equal(status_of("GET", upath, S.admin.api_key, NULL), 404);
	r = login("operator@example.com", pw);
	expect_error(&r, 401, "invalid_login");
	h_resp_free(&r);
	r = h_call(&S, "GET", "/api/v1/devices", ujwt, NULL, NULL);
	expect_error(&r, 401, NULL);
	h_resp_free(&r);
	r = h_call(&S, "POST", "/api/v1/sessions/renew-session", ujwt, NULL, NULL);
	expect_error(&r, 401, NULL);
	h_resp_free(&r);

	assert_int_equal(status_of("DELETE", eight_path, S.admin.api_key, NULL), 204);
	/* The admin is still fine. */
	assert_int_equal(status_of("GET", self, admin_jwt, NULL), 200);
}

/* ---- audit and secrets ------------------------------------------------------------------ */

static void audit_and_no_secret_leaks(void **state)
{
	char id[64], key[128], path[160];
	make_key("audited", "[\"read\"]", id, sizeof id, key, sizeof key);
	snprintf(path, sizeof path, "/api/v1/api-keys/%s", id);
	assert_int_equal(status_of("DELETE", path, S.admin.api_key, NULL), 204);

	snprintf(path, sizeof path, "/api/v1/audit?entityId=%s", id);
	h_resp r = h_call(&S, "GET", path, S.admin.api_key, NULL, NULL);
	assert_int_equal(r.status, 200);
	json_t *results = h_at(r.json, "auditEntries.results");
	assert_int_equal(json_array_size(results), 2);
	assert_int_equal(json_integer_value(h_at(r.json, "auditEntries.meta.count")), 2);
	json_t *first = json_array_get(results, 0), *second = json_array_get(results, 1);
	assert_string_equal(json_string_value(json_object_get(first, "action")), "create");
	assert_string_equal(json_string_value(json_object_get(first, "entityType")), "apiKey");
	assert_string_equal(json_string_value(json_object_get(first, "entityId")), id);
	assert_string_equal(json_string_value(json_object_get(first, "accountId")), S.admin.account_id);
	assert_string_equal(json_string_value(json_object_get(first, "actorType")), "apiKey");
	assert_non_null(json_string_value(json_object_get(first, "actorId")));
	assert_non_null(json_string_value(json_object_get(first, "created")));
	assert_string_equal(json_string_value(json_object_get(second, "action")), "delete");
	assert_null(strstr(r.body, key));
	h_resp_free(&r);

	snprintf(path, sizeof path, "/api/v1/audit?entityId=%s&action=create", id);
	r = h_call(&S, "GET", path, S.admin.api_key, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(h_at(r.json, "auditEntries.results")), 1);
	h_resp_free(&r);

	/* No secret anywhere in the audit log or the server's log. */
	r = h_call(&S, "GET", "/api/v1/audit?pageSize=1000", S.admin.api_key, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_true(json_array_size(h_at(r.json, "auditEntries.results")) >= 10);
	assert_true(nsecrets >= 10);
	assert_int_equal(h_log_sync(&S), 0);
	for(int i = 0; i < nsecrets; i++) {
		if(strstr(r.body, secrets[i])) fail_msg("secret %d found in the audit log", i);
		if(h_log_contains(&S, secrets[i])) fail_msg("secret %d found in the server log", i);
	}
	/* Not even the key material after its prefix, nor a password hash. */
	for(int i = 0; i < nsecrets; i++) {
		if(strncmp(secrets[i], "imp_", 4) == 0 && (strstr(r.body, secrets[i] + 4) || h_log_contains(&S, secrets[i] + 4)))
			fail_msg("key material of secret %d found", i);
	}
	assert_null(strstr(r.body, "argon2"));
	assert_false(h_log_contains(&S, "argon2"));
	assert_false(h_log_contains(&S, "Bearer"));
	h_resp_free(&r);
	/* The log does record the requests (so the checks above looked at something). */
	assert_true(h_log_contains(&S, "POST /api/v1/auth/login-user 200 "));
	assert_true(h_log_contains(&S, "POST /api/v1/auth/login-user 429 "));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(login_happy_path),
		cmocka_unit_test(login_failures_share_one_answer),
		cmocka_unit_test(login_rate_limit),
		cmocka_unit_test(login_bad_bodies),
		cmocka_unit_test(missing_and_malformed_tokens),
		cmocka_unit_test(jwt_bad_signature),
		cmocka_unit_test(jwt_expired),
		cmocka_unit_test(renew_session),
		cmocka_unit_test(api_key_lifecycle),
		cmocka_unit_test(api_keys_beyond_the_cache),
		cmocka_unit_test(api_key_scope_validation),
		cmocka_unit_test(scope_limits),
		cmocka_unit_test(account_users),
		cmocka_unit_test(audit_and_no_secret_leaks),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
