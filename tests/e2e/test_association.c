/* End-to-end: association codes. Their shape and lifetime (ttlSeconds, expiry, single use,
 * a new code replacing the unused one), the one 404 for unknown, expired and used codes,
 * 400 for malformed ones, 422 for disabled and not-yet-activated devices, a device making
 * its own code over HTTP Basic, end users claiming into their own organization only, two
 * end users racing for one code, release and a second claim, the rate limit (10 wrong codes
 * a minute per caller, 100 per account), and that no code reaches the audit or the log.
 * One server for the file; the tests run in order and share it. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cases.h"
#include "harness.h"

#define PW "correct horse battery"
#define CODE_PATH "/api/v1/association/create-association-code"
#define START_PATH "/api/v1/association/start-association-with-code"
#define RELEASE_PATH "/api/v1/association/release"
#define UNKNOWN_CODE "0000-0000-0000"

static char UA_JWT[2048], UB_JWT[2048], UC_JWT[2048], READK[128];
static char CODES[64][16]; /* every code issued, to look for in the audit and the log */
static int NCODES;
static char UNKNOWN_BODY[512]; /* the 404 of an unknown code, to compare the others with */

static void login_as(const char *email, char *out)
{
	char body[300];
	snprintf(body, sizeof body, "{\"emailAddress\":\"%s\",\"password\":\"" PW "\"}", email);
	h_resp r = h_call(&S, "POST", "/api/v1/auth/login-user", NULL, body, NULL);
	check_resp(&r, 200, NULL, NULL, email);
	snprintf(out, 2048, "%s", h_str(&r, "jwt"));
	h_resp_free(&r);
}

static void b64(const char *in, char *out)
{
	static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(in), o = 0;
	for(size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned char)in[i] << 16 | (i + 1 < n ? (unsigned char)in[i + 1] << 8 : 0) |
		             (i + 2 < n ? (unsigned char)in[i + 2] : 0);
		out[o++] = T[v >> 18];
		out[o++] = T[(v >> 12) & 63];
		out[o++] = i + 1 < n ? T[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? T[v & 63] : '=';
	}
	out[o] = '\0';
}

/* A device of template T in no organization; activated (given a credential) when secret
 * is not NULL, which then receives it. Its id into var. */
static void device(const char *var, char *secret)
{
	json_t *d = create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{T}\"}", var);
	json_decref(d);
	if(!secret) return;
	char body[120];
	snprintf(body, sizeof body, "{\"entityId\":\"%s\"}", getvar(var));
	h_resp r = api("POST", "/api/v1/access/mqtt-credentials", body);
	check_resp(&r, 200, NULL, NULL, "activate");
	snprintf(secret, 64, "%s", h_str(&r, "mqttCredential.secret"));
	h_resp_free(&r);
}

/* A new code for the device in var, made by token (NULL: admin key; extra: Basic). */
static void new_code(const char *token, const char *extra, const char *var, char *code)
{
	char body[200];
	snprintf(body, sizeof body, "{\"deviceId\":\"%s\"}", getvar(var));
	h_resp r = h_call(&S, "POST", CODE_PATH, extra ? NULL : token ? token : S.admin.api_key, body, extra);
	check_resp(&r, 201, NULL, NULL, "create code");
	snprintf(code, 16, "%s", h_str(&r, "associationCode"));
	snprintf(CODES[NCODES++], 16, "%s", code);
	h_resp_free(&r);
}

/* Claims code as token for {endUserId|organizationId: target var}; returns the status. */
static long claim(const char *token, const char *code, const char *field, const char *var, h_resp *out)
{
	char body[300];
	snprintf(body, sizeof body, "{\"associationCode\":\"%s\",\"%s\":\"%s\"}", code, field, getvar(var));
	h_resp r = h_call(&S, "POST", START_PATH, token, body, NULL);
	long st = r.status;
	if(st >= 400) check_resp(&r, st, NULL, NULL, "claim");
	if(out) *out = r;
	else h_resp_free(&r);
	return st;
}

/* Asserts r is the one 404 every unknown, expired or used code gets. */
static void assert_one_404(h_resp *r, const char *what)
{
	check_resp(r, 404, "unknown_code", "associationCode", what);
	if(strcmp(r->body, UNKNOWN_BODY) != 0) fail_msg("%s: %s differs from %s", what, r->body, UNKNOWN_BODY);
}

static void world(void **state)
{
	const tcase cases[] = {
		VS("POST", "/api/v1/organizations", "{\"name\":\"maker\"}", 201, NULL, NULL, "M"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"A\",\"parentId\":\"{M}\"}", 201, NULL, NULL, "A"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"B\",\"parentId\":\"{M}\"}", 201, NULL, NULL, "B"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"C\"}", 201, NULL, NULL, "C"),
		VS("POST", "/api/v1/end-users", "{\"organizationId\":\"{A}\",\"name\":\"Ann\",\"emailAddress\":\"ann@example.com\",\"password\":\"" PW "\"}", 201, NULL, NULL, "UA"),
		VS("POST", "/api/v1/end-users", "{\"organizationId\":\"{B}\",\"name\":\"Bob\",\"emailAddress\":\"bob@example.com\",\"password\":\"" PW "\"}", 201, NULL, NULL, "UB"),
		VS("POST", "/api/v1/end-users", "{\"organizationId\":\"{C}\",\"name\":\"Cy\",\"emailAddress\":\"cy@example.com\",\"password\":\"" PW "\"}", 201, NULL, NULL, "UC"),
		VS("POST", "/api/v1/devices/templates", "{\"name\":\"T\"}", 201, NULL, NULL, "T"),
		VS("POST", "/api/v1/api-keys", "{\"name\":\"r\",\"scopes\":[\"read\"]}", 201, NULL, NULL, "RK"),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);
	login_as("ann@example.com", UA_JWT);
	login_as("bob@example.com", UB_JWT);
	login_as("cy@example.com", UC_JWT);
	h_resp r = api("POST", "/api/v1/api-keys", "{\"name\":\"r2\",\"scopes\":[\"read\"]}");
	snprintf(READK, sizeof READK, "%s", h_str(&r, "apiKey.key"));
	h_resp_free(&r);
	/* the reference 404 */
	h_resp u;
	assert_int_equal(claim(S.admin.api_key, UNKNOWN_CODE, "organizationId", "A", &u), 404);
	check_resp(&u, 404, "unknown_code", "associationCode", "unknown");
	snprintf(UNKNOWN_BODY, sizeof UNKNOWN_BODY, "%s", u.body);
	h_resp_free(&u);
}

static int code_shape(const char *c)
{
	static const char ALPHA[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	if(strlen(c) != 14 || c[4] != '-' || c[9] != '-') return 0;
	for(int i = 0; i < 14; i++) {
		if(i == 4 || i == 9) continue;
		if(!strchr(ALPHA, c[i])) return 0;
	}
	return 1;
}

/* A code as people type it: lower case, no hyphens, O for 0 and l for 1. */
static void sloppy(const char *code, char *out)
{
	size_t o = 0;
	for(const char *p = code; *p; p++) {
		if(*p == '-') continue;
		out[o++] = *p == '0' ? 'O' : *p == '1' ? 'l' : (char)tolower((unsigned char)*p);
	}
	out[o] = '\0';
}

static void claim_and_use(void **state)
{
	char code[16], typed[16];
	device("D1", (char[64]){0});
	char body[200];
	snprintf(body, sizeof body, "{\"deviceId\":\"%s\"}", getvar("D1"));
	time_t before = time(NULL);
	h_resp r = api("POST", CODE_PATH, body);
	check_resp(&r, 201, NULL, NULL, "code");
	snprintf(code, sizeof code, "%s", h_str(&r, "associationCode"));
	snprintf(CODES[NCODES++], 16, "%s", code);
	if(!code_shape(code)) fail_msg("code shape: %s", code);
	check_at(&r, "deviceId", "\"{D1}\"", "deviceId");
	assert_int_equal(json_object_size(r.json), 3);
	assert_timestamp(h_str(&r, "expires"));
	struct tm tm = {0};
	assert_non_null(strptime(h_str(&r, "expires"), "%Y-%m-%dT%H:%M:%S", &tm));
	long ttl = (long)(timegm(&tm) - before);
	if(ttl < 898 || ttl > 901) fail_msg("default lifetime %ld s", ttl);
	h_resp_free(&r);

	sloppy(code, typed);
	h_resp c;
	assert_int_equal(claim(UA_JWT, typed, "endUserId", "UA", &c), 200);
	check_at(&c, "deviceId", "\"{D1}\"", "claimed");
	assert_int_equal(json_object_size(c.json), 1);
	h_resp_free(&c);
	r = api("GET", "/api/v1/devices/{D1}", NULL);
	check_at(&r, "device.organizationId", "\"{A}\"", "moved");
	check_at(&r, "device.provisioningState", "\"associated\"", "associated");
	h_resp_free(&r);
	/* used: the one 404 */
	assert_int_equal(claim(UB_JWT, code, "endUserId", "UB", &c), 404);
	assert_one_404(&c, "used");
	h_resp_free(&c);
	/* ann sees it now */
	r = api_as(UA_JWT, "GET", "/api/v1/devices/{D1}", NULL, NULL);
	assert_int_equal(r.status, 200);
	h_resp_free(&r);
}

static void lifetimes_and_bodies(void **state)
{
	device("D2", (char[64]){0});
	const tcase cases[] = {
		K("POST", CODE_PATH, "{\"deviceId\":\"{D2}\",\"ttlSeconds\":31536000}", 201),
		E("POST", CODE_PATH, "{\"deviceId\":\"{D2}\",\"ttlSeconds\":31536001}", 422, "invalid_field", "ttlSeconds"),
		E("POST", CODE_PATH, "{\"deviceId\":\"{D2}\",\"ttlSeconds\":0}", 422, "invalid_field", "ttlSeconds"),
		E("POST", CODE_PATH, "{\"deviceId\":\"{D2}\",\"ttlSeconds\":-5}", 422, "invalid_field", "ttlSeconds"),
		E("POST", CODE_PATH, "{\"deviceId\":\"{D2}\",\"ttlSeconds\":\"900\"}", 400, "invalid_type", "ttlSeconds"),
		E("POST", CODE_PATH, "{\"deviceId\":\"{D2}\",\"ttlSeconds\":1.5}", 400, "invalid_type", "ttlSeconds"),
		E("POST", CODE_PATH, "{\"deviceId\":\"{D2}\",\"code\":\"7KQ2-M9XD-4RTA\"}", 400, "unknown_field", NULL),
		E("POST", CODE_PATH, "{}", 422, "missing_field", "deviceId"),
		E("POST", CODE_PATH, "{\"deviceId\":7}", 400, "invalid_type", "deviceId"),
		E("POST", CODE_PATH, "{\"deviceId\":\"0190a0b0-0000-7000-8000-000000000000\"}", 404, "not_found", "deviceId"),
		E("POST", CODE_PATH, "[", 400, NULL, NULL),
		E("POST", START_PATH, "{\"associationCode\":\"ABC\",\"organizationId\":\"{A}\"}", 400, "invalid_code", "associationCode"),
		E("POST", START_PATH, "{\"associationCode\":\"7KQ2-M9XD-4RTU\",\"organizationId\":\"{A}\"}", 400, "invalid_code", "associationCode"),
		E("POST", START_PATH, "{\"associationCode\":\"7KQ2-M9XD-4RTA-7\",\"organizationId\":\"{A}\"}", 400, "invalid_code", "associationCode"),
		E("POST", START_PATH, "{\"associationCode\":12,\"organizationId\":\"{A}\"}", 400, "invalid_type", "associationCode"),
		E("POST", START_PATH, "{\"associationCode\":\"7KQ2-M9XD-4RTA\"}", 422, "missing_field", "endUserId"),
		E("POST", START_PATH, "{\"associationCode\":\"7KQ2-M9XD-4RTA\",\"organizationId\":\"{A}\",\"endUserId\":\"{UA}\"}", 422, "missing_field", "endUserId"),
		E("POST", START_PATH, "{\"associationCode\":\"7KQ2-M9XD-4RTA\",\"organizationId\":\"{T}\"}", 422, "unknown_reference", "organizationId"),
		E("POST", START_PATH, "{\"associationCode\":\"7KQ2-M9XD-4RTA\",\"endUserId\":\"{A}\"}", 422, "unknown_reference", "endUserId"),
		E("POST", RELEASE_PATH, "{}", 422, "missing_field", "deviceId"),
		E("POST", RELEASE_PATH, "{\"deviceId\":\"0190a0b0-0000-7000-8000-000000000000\"}", 404, "not_found", "deviceId"),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);
	char body[120];
	snprintf(body, sizeof body, "{\"deviceId\":\"%s\"}", getvar("D2"));
	h_resp r = api_as(READK, "POST", CODE_PATH, body, NULL);
	check_resp(&r, 403, NULL, NULL, "read key");
	h_resp_free(&r);
}

static void expired_replaced(void **state)
{
	char old[16], fresh[16], shortlived[16];
	h_resp c;
	device("D3", (char[64]){0});
	new_code(NULL, NULL, "D3", old);
	new_code(NULL, NULL, "D3", fresh);
	assert_string_not_equal(old, fresh);
	assert_int_equal(claim(S.admin.api_key, old, "organizationId", "B", &c), 404);
	assert_one_404(&c, "replaced");
	h_resp_free(&c);
	/* expired */
	char body[200];
	snprintf(body, sizeof body, "{\"deviceId\":\"%s\",\"ttlSeconds\":1}", getvar("D3"));
	h_resp r = api("POST", CODE_PATH, body);
	check_resp(&r, 201, NULL, NULL, "short code");
	snprintf(shortlived, sizeof shortlived, "%s", h_str(&r, "associationCode"));
	snprintf(CODES[NCODES++], 16, "%s", shortlived);
	h_resp_free(&r);
	usleep(1200 * 1000);
	assert_int_equal(claim(S.admin.api_key, shortlived, "organizationId", "B", &c), 404);
	assert_one_404(&c, "expired");
	h_resp_free(&c);
	/* the short code replaced fresh too */
	assert_int_equal(claim(S.admin.api_key, fresh, "organizationId", "B", &c), 404);
	h_resp_free(&c);
	new_code(NULL, NULL, "D3", fresh);
	assert_int_equal(claim(S.admin.api_key, fresh, "organizationId", "B", NULL), 200);
}

static void device_makes_its_own(void **state)
{
	char secret[64], raw[200], enc[300], hdr[340], code[16];
	device("D4", secret);
	device("D5", (char[64]){0});
	snprintf(raw, sizeof raw, "%s:%s", getvar("D4"), secret);
	b64(raw, enc);
	snprintf(hdr, sizeof hdr, "Authorization: Basic %s", enc);
	new_code(NULL, hdr, "D4", code);
	if(!code_shape(code)) fail_msg("code shape: %s", code);
	/* only for itself */
	char body[200];
	snprintf(body, sizeof body, "{\"deviceId\":\"%s\"}", getvar("D5"));
	h_resp r = h_call(&S, "POST", CODE_PATH, NULL, body, hdr);
	check_resp(&r, 403, "forbidden", "deviceId", "other device");
	h_resp_free(&r);
	/* nor may it claim or release */
	snprintf(body, sizeof body, "{\"associationCode\":\"%s\",\"organizationId\":\"%s\"}", code, getvar("A"));
	r = h_call(&S, "POST", START_PATH, NULL, body, hdr);
	check_resp(&r, 403, NULL, NULL, "device claims");
	h_resp_free(&r);
	assert_int_equal(claim(UC_JWT, code, "organizationId", "C", NULL), 200);
	r = api("GET", "/api/v1/devices/{D4}", NULL);
	check_at(&r, "device.organizationId", "\"{C}\"", "device's own code");
	h_resp_free(&r);
}

static void not_claimable(void **state)
{
	char code[16];
	h_resp c;
	/* defined, not yet activated */
	device("D6", NULL);
	new_code(NULL, NULL, "D6", code);
	assert_int_equal(claim(UA_JWT, code, "endUserId", "UA", &c), 422);
	check_resp(&c, 422, "not_activated", NULL, "defined device");
	h_resp_free(&c);
	/* disabled; the code is not used up by the refusal */
	device("D7", (char[64]){0});
	new_code(NULL, NULL, "D7", code);
	h_resp t = api("POST", "/api/v1/devices/{D7}/disable", NULL);
	check_resp(&t, 200, NULL, NULL, "disable");
	h_resp_free(&t);
	assert_int_equal(claim(UA_JWT, code, "endUserId", "UA", &c), 422);
	check_resp(&c, 422, "device_disabled", NULL, "disabled device");
	h_resp_free(&c);
	t = api("POST", "/api/v1/devices/{D7}/enable", NULL);
	check_resp(&t, 200, NULL, NULL, "enable");
	h_resp_free(&t);
	assert_int_equal(claim(UA_JWT, code, "endUserId", "UA", NULL), 200);
	/* an end user claims into its own organization only */
	device("D8", (char[64]){0});
	new_code(NULL, NULL, "D8", code);
	assert_int_equal(claim(UA_JWT, code, "endUserId", "UB", NULL), 403);
	assert_int_equal(claim(UA_JWT, code, "organizationId", "B", NULL), 403);
	assert_int_equal(claim(UA_JWT, code, "organizationId", "M", NULL), 403);
	assert_int_equal(claim(UB_JWT, code, "organizationId", "B", NULL), 200);
}

static void release_and_claim_again(void **state)
{
	char code[16], body[200];
	h_resp r;
	/* D1 is Ann's: Bob cannot release it, Ann can */
	snprintf(body, sizeof body, "{\"deviceId\":\"%s\"}", getvar("D1"));
	r = api_as(UB_JWT, "POST", RELEASE_PATH, body, NULL);
	check_resp(&r, 404, "not_found", "deviceId", "not Bob's");
	h_resp_free(&r);
	r = api_as(READK, "POST", RELEASE_PATH, body, NULL);
	check_resp(&r, 403, NULL, NULL, "read key");
	h_resp_free(&r);
	r = api_as(UA_JWT, "POST", RELEASE_PATH, body, NULL);
	check_resp(&r, 200, NULL, NULL, "Ann releases");
	check_at(&r, "device.organizationId", "null", "released");
	check_at(&r, "device.provisioningState", "\"associated\"", "state stays");
	h_resp_free(&r);
	r = api_as(UA_JWT, "GET", "/api/v1/devices/{D1}", NULL, NULL);
	assert_int_equal(r.status, 404);
	h_resp_free(&r);
	/* claimed again, by Bob */
	new_code(NULL, NULL, "D1", code);
	assert_int_equal(claim(UB_JWT, code, "endUserId", "UB", NULL), 200);
	r = api_as(UB_JWT, "GET", "/api/v1/devices/{D1}", NULL, NULL);
	check_at(&r, "device.organizationId", "\"{B}\"", "Bob's now");
	check_at(&r, "device.provisioningState", "\"associated\"", "state");
	h_resp_free(&r);
	/* and released by the maker */
	r = api("POST", RELEASE_PATH, body);
	check_resp(&r, 200, NULL, NULL, "maker releases");
	h_resp_free(&r);
}

struct racer {
	const char *jwt, *user, *code;
	long status;
};

static void *race(void *arg)
{
	struct racer *x = arg;
	x->status = claim(x->jwt, x->code, "endUserId", x->user, NULL);
	h_thread_done();
	return NULL;
}

static void two_end_users_race(void **state)
{
	for(int round = 0; round < 8; round++) {
		char code[16];
		device("DR", (char[64]){0});
		new_code(NULL, NULL, "DR", code);
		struct racer a = {UA_JWT, "UA", code, 0}, b = {UB_JWT, "UB", code, 0};
		pthread_t ta, tb;
		pthread_create(&ta, NULL, race, &a);
		pthread_create(&tb, NULL, race, &b);
		pthread_join(ta, NULL);
		pthread_join(tb, NULL);
		if(!((a.status == 200 && b.status == 404) || (a.status == 404 && b.status == 200)))
			fail_msg("round %d: %ld and %ld", round, a.status, b.status);
		h_resp r = api("GET", "/api/v1/devices/{DR}", NULL);
		check_at(&r, "device.organizationId", a.status == 200 ? "\"{A}\"" : "\"{B}\"", "winner's");
		h_resp_free(&r);
	}
}

/* Every association and release is audited; no audit entry and no log line holds a code,
 * in any of the forms it was typed in. */
static void audit_without_codes(void **state)
{
	h_resp r = api("GET", "/api/v1/audit?entityId={D1}&pageSize=100", NULL);
	check_resp(&r, 200, NULL, NULL, "audit");
	int made = 0, assoc = 0, rel = 0;
	json_t *e;
	size_t i;
	json_array_foreach(h_at(r.json, "auditEntries.results"), i, e) {
		const char *a = json_string_value(json_object_get(e, "action"));
		made += strcmp(a, "create-association-code") == 0;
		assoc += strcmp(a, "associate") == 0;
		rel += strcmp(a, "release") == 0;
	}
	if(made != 2 || assoc != 2 || rel != 2) fail_msg("audit of D1: %d codes, %d associations, %d releases: %s", made, assoc, rel, r.body);
	h_resp_free(&r);
	r = api("GET", "/api/v1/audit?pageSize=1000", NULL);
	check_resp(&r, 200, NULL, NULL, "audit");
	assert_true(NCODES > 10);
	assert_int_equal(h_log_sync(&S), 0);
	for(int k = 0; k < NCODES; k++) {
		char bare[16], typed[16];
		snprintf(bare, sizeof bare, "%.4s%.4s%.4s", CODES[k], CODES[k] + 5, CODES[k] + 10);
		sloppy(CODES[k], typed);
		if(strstr(r.body, CODES[k]) || strstr(r.body, bare)) fail_msg("audit holds code %s", CODES[k]);
		if(h_log_contains(&S, CODES[k]) || h_log_contains(&S, bare) || h_log_contains(&S, typed))
			fail_msg("log holds code %s", CODES[k]);
	}
	h_resp_free(&r);
}

/* 10,000 wrong codes from one caller: 10 are checked, the rest are 429 with Retry-After,
 * and so is a right code from that caller; the code is still good for someone else. */
static void wrong_codes_rate_limited(void **state)
{
	char code[16], wrong[16];
	device("D9", (char[64]){0});
	new_code(NULL, NULL, "D9", code);
	int checked = 0, limited = 0, first_429 = -1;
	for(int i = 0; i < 10000; i++) {
		snprintf(wrong, sizeof wrong, "1%03d-%04d-0000", i / 10000, i % 10000);
		h_resp r;
		long st = claim(UC_JWT, wrong, "endUserId", "UC", &r);
		if(st == 404) {
			checked++;
		} else if(st == 429) {
			long after = atol(r.retry_after);
			if(after < 1 || after > 60) fail_msg("Retry-After %s", r.retry_after);
			check_resp(&r, 429, "rate_limited", NULL, "limited");
			if(first_429 < 0) first_429 = i;
			limited++;
		} else {
			fail_msg("wrong code %s: %ld", wrong, st);
		}
		h_resp_free(&r);
	}
	/* fixed one-minute windows: a run that spans a window's end may check 10 more */
	assert_int_equal(first_429, 10);
	if(checked > 20) fail_msg("%d wrong codes checked", checked);
	assert_int_equal(checked + limited, 10000);
	assert_int_equal(claim(UC_JWT, code, "endUserId", "UC", NULL), 429);
	assert_int_equal(claim(UA_JWT, code, "endUserId", "UA", NULL), 200);
}

/* 100 wrong codes a minute per account, whoever the callers are: twelve callers that
 * never reach their own limit of 10 are stopped by the account's. */
static int account_round(void)
{
	char keys[12][128], wrong[16];
	for(int k = 0; k < 12; k++) {
		h_resp r = api("POST", "/api/v1/api-keys", "{\"name\":\"p\",\"scopes\":[\"provisioning\"]}");
		check_resp(&r, 201, NULL, NULL, "key");
		snprintf(keys[k], sizeof keys[k], "%s", h_str(&r, "apiKey.key"));
		h_resp_free(&r);
	}
	int n404 = 0, n429 = 0;
	for(int i = 0; i < 120; i++) {
		snprintf(wrong, sizeof wrong, "2%03d-0000-0000", i);
		long st = claim(keys[i % 12], wrong, "organizationId", "A", NULL);
		n404 += st == 404;
		n429 += st == 429;
	}
	if(n404 > 100) fail_msg("account checked %d wrong codes in a minute", n404);
	assert_int_equal(n404 + n429, 120);
	return n429;
}

static void account_limit(void **state)
{
	/* a round that spans the end of a one-minute window may see none limited: once more */
	if(account_round() == 0) assert_true(account_round() > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(world),
		cmocka_unit_test(claim_and_use),
		cmocka_unit_test(lifetimes_and_bodies),
		cmocka_unit_test(expired_replaced),
		cmocka_unit_test(device_makes_its_own),
		cmocka_unit_test(not_claimable),
		cmocka_unit_test(release_and_claim_again),
		cmocka_unit_test(two_end_users_race),
		cmocka_unit_test(audit_without_codes),
		cmocka_unit_test(wrong_codes_rate_limited),
		cmocka_unit_test(account_limit),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
