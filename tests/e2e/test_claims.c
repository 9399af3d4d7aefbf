/* End-to-end: field provisioning. Claim tokens (create, read, list, revoke, scopes, two
 * accounts, every field's limits one under and one over) and the public claim: the happy
 * path to a device whose secret the broker accepts, a certificate template with a CSR,
 * every refusal (unknown, malformed, expired, used up, revoked, serial off the allow-list),
 * one claim per serial number, two claims racing for a token's last use, both rate limits,
 * the audit trail, and that no token or secret ever reaches a GET, the audit log or the
 * server's log. One server for the file; the tests run in order and share it.
 *
 * Claims are sent from chosen loopback addresses (127.x.y.z, all of them this host), so
 * the per-address limit of failed claims is tested, and kept from spilling between tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cases.h"

#define TOKENS "/api/v1/provisioning/claim-tokens"
#define CLAIM "/api/v1/provisioning/claim"
#define NO_SUCH_ID "0190a0b0-0000-7000-8000-000000000000"
#define REFUSED_MSG "the claim token is unknown, expired, used up or revoked, or does not allow this serial number"

/* Every token and secret issued during the run (checked against GETs and logs at the end). */
static char SECRETS[512][64];
static int NSECRETS;
static char PROV[128], READK[128], BROKER[128];
static h_account B;

static void remember(const char *s)
{
	assert_non_null(s);
	assert_true(NSECRETS < (int)(sizeof SECRETS / sizeof SECRETS[0]));
	snprintf(SECRETS[NSECRETS++], sizeof SECRETS[0], "%s", s);
}

/* ---- helpers -------------------------------------------------------------------------- */

/* ISO-8601 UTC time s seconds from now (may be negative). */
static const char *iso_in(long s, char *out, size_t cap)
{
	time_t t = time(NULL) + s;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
	return out;
}

static void make_key(const char *name, const char *scopes, char *out, size_t cap)
{
	char body[200];
	snprintf(body, sizeof body, "{\"name\":\"%s\",\"scopes\":%s}", name, scopes);
	h_resp r = api("POST", "/api/v1/api-keys", body);
	check_resp(&r, 201, NULL, NULL, name);
	snprintf(out, cap, "%s", h_str(&r, "apiKey.key"));
	h_resp_free(&r);
}

/* A token for template var tmpl_var (maxUses, expires in ttl seconds, serials JSON or NULL);
 * its id into var id_var and its token into var tok_var. */
static void make_token(const char *tmpl_var, long max_uses, long ttl, const char *serials, const char *id_var,
                       const char *tok_var)
{
	char exp[40], body[512];
	snprintf(body, sizeof body, "{\"deviceTemplateId\":\"{%s}\",\"maxUses\":%ld,\"expires\":\"%s\"%s%s}", tmpl_var, max_uses,
	         iso_in(ttl, exp, sizeof exp), serials ? ",\"serialNumbers\":" : "", serials ? serials : "");
	h_resp r = api("POST", TOKENS, body);
	check_resp(&r, 201, NULL, NULL, body);
	setvar(id_var, h_str(&r, "claimToken.id"));
	setvar(tok_var, h_str(&r, "claimToken.token"));
	remember(h_str(&r, "claimToken.token"));
	h_resp_free(&r);
}

struct body_buf {
	char *p;
	size_t n;
};

static size_t on_body(char *d, size_t sz, size_t n, void *arg)
{
	struct body_buf *b = arg;
	char *np = realloc(b->p, b->n + sz * n + 1);
	if(!np) return 0;
	memcpy(np + b->n, d, sz * n);
	b->p = np;
	b->n += sz * n;
	b->p[b->n] = '\0';
	return sz * n;
}

static size_t on_header(char *d, size_t sz, size_t n, void *arg)
{
	h_resp *r = arg;
	if(sz * n > 13 && strncasecmp(d, "Retry-After:", 12) == 0) {
		snprintf(r->retry_after, sizeof r->retry_after, "%.*s", (int)(sz * n - 12), d + 12);
		r->retry_after[strcspn(r->retry_after, "\r\n")] = '\0';
	}
	if(sz * n > 14 && strncasecmp(d, "Content-Type: ", 14) == 0) {
		snprintf(r->content_type, sizeof r->content_type, "%.*s", (int)(sz * n - 14), d + 14);
		r->content_type[strcspn(r->content_type, "\r\n")] = '\0';
	}
	return sz * n;
}

/* POST /claim with body (expanded) from the loopback address addr, without any
 * Authorization header. */
static h_resp claim_from(const char *addr, const char *body)
{
	h_resp r = {0};
	struct body_buf b = {0};
	char url[128], iface[64];
	char *text = expand(body);
	CURL *c = curl_easy_init();
	assert_non_null(c);
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
	snprintf(url, sizeof url, "%s" CLAIM, S.url);
	snprintf(iface, sizeof iface, "host!%s", addr);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_INTERFACE, iface);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	CURLcode cc = curl_easy_perform(c);
	if(cc != CURLE_OK) fail_msg("claim from %s: %s", addr, curl_easy_strerror(cc));
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	free(text);
	r.body = b.p ? b.p : strdup("");
	r.len = b.n;
	r.json = json_loads(r.body, 0, NULL);
	return r;
}

static h_resp claim(const char *addr, const char *tok_var, const char *serial)
{
	char body[512];
	snprintf(body, sizeof body, "{\"claimToken\":\"{%s}\",\"serialNumber\":\"%s\"}", tok_var, serial);
	return claim_from(addr, body);
}

/* A claim that must be refused with the one 403 answer. */
static void refused(const char *addr, const char *tok_var, const char *serial, const char *what)
{
	h_resp r = claim(addr, tok_var, serial);
	check_resp(&r, 403, "claim_refused", NULL, what);
	assert_string_equal(h_str(&r, "error.message"), REFUSED_MSG);
	assert_null(strstr(r.body, "device"));
	h_resp_free(&r);
}

/* A claim that must make a device; its id into var dev_var (may be NULL), its secret
 * into secret (may be NULL). */
static void claimed(const char *addr, const char *tok_var, const char *serial, const char *dev_var, char *secret)
{
	h_resp r = claim(addr, tok_var, serial);
	check_resp(&r, 201, NULL, NULL, serial);
	assert_int_equal(json_object_size(r.json), 2);
	assert_string_equal(h_str(&r, "device.serialNumber"), serial);
	assert_string_equal(h_str(&r, "device.provisioningState"), "activated");
	assert_string_equal(h_str(&r, "mqttCredential.entityId"), h_str(&r, "device.id"));
	const char *s = h_str(&r, "mqttCredential.secret");
	assert_non_null(s);
	assert_int_equal(strlen(s), 44);
	remember(s);
	if(secret) snprintf(secret, 64, "%s", s);
	if(dev_var) setvar(dev_var, h_str(&r, "device.id"));
	h_resp_free(&r);
}

static json_int_t uses_of(const char *id_var)
{
	char path[200];
	snprintf(path, sizeof path, TOKENS "/{%s}", id_var);
	h_resp r = api("GET", path, NULL);
	check_resp(&r, 200, NULL, NULL, path);
	json_t *u = h_at(r.json, "claimToken.uses");
	assert_true(json_is_integer(u));
	json_int_t n = json_integer_value(u);
	h_resp_free(&r);
	return n;
}

/* Fixed one-minute windows: start a run of counted calls early in one, so it ends in it. */
static void fresh_window(void)
{
	time_t t = time(NULL);
	if(t % 60 > 30) sleep((unsigned)(61 - t % 60));
}

static const char *authn(const char *clientid, const char *password)
{
	static char verdict[16];
	char body[400];
	snprintf(body, sizeof body, "{\"clientid\":\"%s\",\"username\":\"%s\",\"password\":\"%s\"}", clientid, clientid,
	         password);
	h_resp r = h_call(&S, "POST", "/api/v1/broker/authenticate", BROKER, body, NULL);
	check_resp(&r, 200, NULL, NULL, "authenticate");
	snprintf(verdict, sizeof verdict, "%s", h_str(&r, "result"));
	h_resp_free(&r);
	return verdict;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void setup_fixtures(void **state)
{
	(void)state;
	make_key("prov", "[\"provisioning\"]", PROV, sizeof PROV);
	make_key("read", "[\"read\"]", READK, sizeof READK);
	make_key("broker", "[\"broker\"]", BROKER, sizeof BROKER);
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"claimable\"}", "TP"));
	json_decref(create("/api/v1/devices/templates", "deviceTemplate",
	                   "{\"name\":\"certs\",\"authenticationMethod\":\"certificate\"}", "TC"));
	assert_int_equal(h_account_create(&S, &B), 0);
	setvar("BACCT", B.account_id);
}

static void create_and_read(void **state)
{
	(void)state;
	char exp[40], body[300];
	snprintf(body, sizeof body, "{\"deviceTemplateId\":\"{TP}\",\"maxUses\":3,\"expires\":\"%s\"}", iso_in(3600, exp, sizeof exp));
	h_resp r = api("POST", TOKENS, body);
	check_resp(&r, 201, NULL, NULL, "create");
	json_t *t = h_at(r.json, "claimToken");
	const char *tok = h_str(&r, "claimToken.token");
	assert_non_null(tok);
	remember(tok);
	assert_int_equal(strlen(tok), 47);
	assert_memory_equal(tok, "imc_", 4);
	for(int i = 4; i < 47; i++) {
		if(!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", tok[i]))
			fail_msg("token char %d not base64url", i);
	}
	assert_uuid7(h_str(&r, "claimToken.id"));
	assert_string_equal(h_str(&r, "claimToken.accountId"), S.admin.account_id);
	assert_string_equal(h_str(&r, "claimToken.deviceTemplateId"), getvar("TP"));
	assert_string_equal(h_str(&r, "claimToken.expires"), exp);
	assert_int_equal(json_integer_value(json_object_get(t, "maxUses")), 3);
	assert_int_equal(json_integer_value(json_object_get(t, "uses")), 0);
	assert_true(json_is_null(json_object_get(t, "serialNumberCount")));
	assert_null(json_object_get(t, "serialNumbers"));
	assert_timestamp(h_str(&r, "claimToken.created"));
	setvar("T0", h_str(&r, "claimToken.id"));
	setvar("T0TOK", tok);
	h_resp_free(&r);

	/* read back: never the token */
	const char *reads[] = {TOKENS "/{T0}", TOKENS, TOKENS "?deviceTemplateId={TP}"};
	for(int i = 0; i < 3; i++) {
		r = api("GET", reads[i], NULL);
		check_resp(&r, 200, NULL, NULL, reads[i]);
		assert_non_null(strstr(r.body, getvar("T0")));
		assert_null(strstr(r.body, getvar("T0TOK")));
		assert_null(strstr(r.body, "\"token\""));
		h_resp_free(&r);
	}
	const tcase cases[] = {
		V("GET", TOKENS "/{T0}", NULL, 200, "claimToken.maxUses", "3"),
		V("GET", TOKENS "?deviceTemplateId={TC}", NULL, 200, "claimTokens.meta.count", "0"),
		V("GET", TOKENS, NULL, 200, "claimTokens.results.0.uses", "0"),
		E("GET", TOKENS "/" NO_SUCH_ID, NULL, 404, "not_found", NULL),
		E("GET", TOKENS "/nonsense", NULL, 404, "not_found", NULL),
		E("PUT", TOKENS "/{T0}", "{}", 405, NULL, NULL),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);
}

static void happy_path(void **state)
{
	(void)state;
	char secret[64];
	claimed("127.0.10.1", "T0TOK", "F-1", "D1", secret);
	assert_string_equal(authn(getvar("D1"), secret), "allow");
	assert_string_equal(authn(getvar("D1"), "wrong-secret-wrong-secret-wrong-secret-wron="), "deny");
	assert_int_equal(uses_of("T0"), 1);
	const tcase cases[] = {
		V("GET", "/api/v1/devices/{D1}", NULL, 200, "device.provisioningState", "\"activated\""),
		V("GET", "/api/v1/devices/{D1}", NULL, 200, "device.deviceTemplateId", "\"{TP}\""),
		V("GET", "/api/v1/devices/{D1}", NULL, 200, "device.createdById", "\"{T0}\""),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);
	h_resp r = api("GET", "/api/v1/audit?entityId={D1}", NULL);
	check_resp(&r, 200, NULL, NULL, "audit");
	check_at(&r, "auditEntries.meta.count", "1", "audit");
	check_at(&r, "auditEntries.results.0.action", "\"claim\"", "audit");
	check_at(&r, "auditEntries.results.0.actorType", "\"claimToken\"", "audit");
	check_at(&r, "auditEntries.results.0.actorId", "\"{T0}\"", "audit");
	check_at(&r, "auditEntries.results.0.details.claimTokenId", "\"{T0}\"", "audit");
	check_at(&r, "auditEntries.results.0.details.serialNumber", "\"F-1\"", "audit");
	check_at(&r, "auditEntries.results.0.details.method", "\"password\"", "audit");
	h_resp_free(&r);
	/* the token's creation is audited, by the admin key */
	r = api("GET", "/api/v1/audit?entityId={T0}", NULL);
	check_at(&r, "auditEntries.results.0.action", "\"create\"", "token audit");
	check_at(&r, "auditEntries.results.0.actorType", "\"apiKey\"", "token audit");
	h_resp_free(&r);
	/* a second device on the same token */
	claimed("127.0.10.1", "T0TOK", "F-2", "D2", NULL);
	assert_int_equal(uses_of("T0"), 2);
}

static void one_claim_per_serial(void **state)
{
	(void)state;
	make_token("TP", 5, 3600, NULL, "T1", "T1TOK");
	h_resp r = claim("127.0.11.1", "T0TOK", "F-1");
	check_resp(&r, 409, "serial_claimed", "serialNumber", "same serial, same token");
	h_resp_free(&r);
	r = claim("127.0.11.1", "T1TOK", "F-1");
	check_resp(&r, 409, "serial_claimed", "serialNumber", "same serial, another token");
	h_resp_free(&r);
	/* a 409 spends no use */
	assert_int_equal(uses_of("T0"), 2);
	assert_int_equal(uses_of("T1"), 0);
	/* the same serial in another account is another device */
	char exp[40], body[300];
	snprintf(body, sizeof body, "{\"deviceTemplateId\":\"%s\",\"maxUses\":1,\"expires\":\"%s\"}", "{BT}", iso_in(600, exp, sizeof exp));
	h_resp t = api_as(B.api_key, "POST", "/api/v1/devices/templates", "{\"name\":\"b\"}", NULL);
	check_resp(&t, 201, NULL, NULL, "B template");
	setvar("BT", h_str(&t, "deviceTemplate.id"));
	h_resp_free(&t);
	t = api_as(B.api_key, "POST", TOKENS, body, NULL);
	check_resp(&t, 201, NULL, NULL, "B token");
	setvar("BTOKID", h_str(&t, "claimToken.id"));
	setvar("BTOK", h_str(&t, "claimToken.token"));
	remember(h_str(&t, "claimToken.token"));
	h_resp_free(&t);
	claimed("127.0.11.2", "BTOK", "F-1", "BD", NULL);
	r = api_as(B.api_key, "GET", "/api/v1/devices/{BD}", NULL, NULL);
	check_at(&r, "device.accountId", "\"{BACCT}\"", "B's claimed device");
	h_resp_free(&r);
}

/* The refusals of token var id_var in its account's audit log: count of them, the latest
 * one's serial number and reason, by the token itself. */
static void refusal_audited(const char *id_var, const char *count, const char *serial, const char *reason)
{
	char path[160], want[80];
	snprintf(path, sizeof path, "/api/v1/audit?entityId={%s}&action=claim-refused&sortOrder=desc", id_var);
	h_resp r = api("GET", path, NULL);
	check_resp(&r, 200, NULL, NULL, "refusals audited");
	check_at(&r, "auditEntries.meta.count", count, "refusals audited");
	snprintf(want, sizeof want, "\"%s\"", serial);
	check_at(&r, "auditEntries.results.0.details.serialNumber", want, "refusal's serial");
	snprintf(want, sizeof want, "\"%s\"", reason);
	check_at(&r, "auditEntries.results.0.details.reason", want, "refusal's reason");
	check_at(&r, "auditEntries.results.0.entityType", "\"claimToken\"", "refusal's entity");
	check_at(&r, "auditEntries.results.0.actorType", "\"claimToken\"", "refusal's actor");
	h_resp_free(&r);
}

static void refusals(void **state)
{
	(void)state;
	/* unknown (well-formed) and malformed tokens */
	setvar("NOTOK", "imc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
	setvar("SHORT", "imc_AAAA");
	setvar("APIKEY", S.admin.api_key);
	refused("127.0.12.1", "NOTOK", "R-1", "unknown token");
	refused("127.0.12.1", "SHORT", "R-1", "malformed token");
	refused("127.0.12.1", "APIKEY", "R-1", "an API key as token");

	/* used up */
	make_token("TP", 1, 3600, NULL, "TX", "TXTOK");
	claimed("127.0.12.2", "TXTOK", "R-2", NULL, NULL);
	refused("127.0.12.2", "TXTOK", "R-3", "used up");
	assert_int_equal(uses_of("TX"), 1);
	refusal_audited("TX", "1", "R-3", "used up");

	/* expired */
	make_token("TP", 5, 2, NULL, "TE", "TETOK");
	claimed("127.0.12.3", "TETOK", "R-4", NULL, NULL);
	sleep(3);
	refused("127.0.12.3", "TETOK", "R-5", "expired");
	assert_int_equal(uses_of("TE"), 1);
	refusal_audited("TE", "1", "R-5", "expired");

	/* revoked */
	make_token("TP", 5, 3600, NULL, "TR", "TRTOK");
	h_resp r = api_as(READK, "DELETE", TOKENS "/{TR}", NULL, NULL);
	check_resp(&r, 403, NULL, NULL, "read key revoking");
	h_resp_free(&r);
	claimed("127.0.12.4", "TRTOK", "R-6", NULL, NULL);
	r = api("DELETE", TOKENS "/{TR}", NULL);
	check_resp(&r, 204, NULL, NULL, "revoke");
	h_resp_free(&r);
	refused("127.0.12.4", "TRTOK", "R-7", "revoked");
	r = api("GET", TOKENS "/{TR}", NULL);
	check_resp(&r, 404, "not_found", NULL, "revoked token read");
	h_resp_free(&r);
	r = api("GET", "/api/v1/audit?entityId={TR}&action=delete", NULL);
	check_at(&r, "auditEntries.meta.count", "1", "revoke audited");
	h_resp_free(&r);

	/* allow-list */
	make_token("TP", 5, 3600, "[\"A-1\",\"A-2\"]", "TA", "TATOK");
	r = api("GET", TOKENS "/{TA}", NULL);
	check_at(&r, "claimToken.serialNumberCount", "2", "allow-list count");
	assert_null(strstr(r.body, "A-1"));
	h_resp_free(&r);
	refused("127.0.12.5", "TATOK", "A-3", "off the allow-list");
	refused("127.0.12.5", "TATOK", "a-1", "off the allow-list (case differs)");
	refusal_audited("TA", "2", "a-1", "serial number not allowed");
	claimed("127.0.12.5", "TATOK", "A-1", NULL, NULL);
	assert_int_equal(uses_of("TA"), 1);

	/* a token's template deleted: the token is of no use */
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"gone\"}", "TG"));
	make_token("TG", 5, 3600, NULL, "TGID", "TGTOK");
	r = api("DELETE", "/api/v1/devices/templates/{TG}", NULL);
	check_resp(&r, 204, NULL, NULL, "template delete");
	h_resp_free(&r);
	refused("127.0.12.6", "TGTOK", "G-1", "template gone");
	assert_int_equal(uses_of("TGID"), 0);
	refusal_audited("TGID", "1", "G-1", "template deleted");
}

static void claim_bodies(void **state)
{
	(void)state;
	static const struct {
		const char *body;
		long status;
		const char *code;
	} cases[] = {
		{"{\"claimToken\":\"{T0TOK}\"}", 400, "invalid_body"},
		{"{\"serialNumber\":\"B-1\"}", 400, "invalid_body"},
		{"{\"claimToken\":\"{T0TOK}\",\"serialNumber\":7}", 400, "invalid_body"},
		{"{\"claimToken\":\"{T0TOK}\",\"serialNumber\":\"B-1\",\"name\":\"x\"}", 400, "invalid_body"},
		{"[1]", 400, NULL},
		{"{\"claimToken\":\"{T0TOK}\",\"serialNumber\":\"\"}", 422, "invalid_field"},
		{"{\"claimToken\":\"{T0TOK}\",\"serialNumber\":\"{x*129}\"}", 422, "invalid_field"},
		{"{\"claimToken\":\"{T0TOK}\",\"serialNumber\":\"B-1\",\"csr\":\"x\"}", 422, "password_template"},
	};
	for(size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		h_resp r = claim_from("127.0.13.1", cases[i].body);
		check_resp(&r, cases[i].status, cases[i].code, NULL, cases[i].body);
		h_resp_free(&r);
	}
	/* 128 characters is a serial number */
	char serial[129];
	memset(serial, 's', 128);
	serial[128] = '\0';
	claimed("127.0.13.2", "T0TOK", serial, NULL, NULL);
	assert_int_equal(uses_of("T0"), 3);
}

static char *csr_pem(void)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509_REQ *req = X509_REQ_new();
	assert_non_null(key);
	assert_non_null(req);
	X509_NAME *n = X509_REQ_get_subject_name(req);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"claimed", -1, -1, 0);
	X509_REQ_set_pubkey(req, key);
	assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509_REQ(b, req);
	char *data;
	long n2 = BIO_get_mem_data(b, &data);
	char *out = strndup(data, (size_t)n2);
	BIO_free(b);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	return out;
}

static void certificate_template(void **state)
{
	(void)state;
	make_token("TC", 2, 3600, NULL, "TCID", "TCTOK");
	h_resp r = claim("127.0.14.1", "TCTOK", "C-1");
	check_resp(&r, 422, "csr_required", "csr", "certificate template without csr");
	h_resp_free(&r);
	char *csr = csr_pem();
	json_t *b = json_pack("{s:s, s:s, s:s}", "claimToken", getvar("TCTOK"), "serialNumber", "C-1", "csr", csr);
	char *body = json_dumps(b, JSON_COMPACT);
	r = claim_from("127.0.14.1", body);
	check_resp(&r, 201, NULL, NULL, "certificate claim");
	assert_string_equal(h_str(&r, "device.provisioningState"), "activated");
	assert_string_equal(h_str(&r, "mqttCredential.method"), "certificate");
	assert_non_null(strstr(h_str(&r, "mqttCredential.certificate"), "BEGIN CERTIFICATE"));
	assert_int_equal(strlen(h_str(&r, "mqttCredential.fingerprint")), 64);
	assert_null(h_str(&r, "mqttCredential.secret"));
	h_resp_free(&r);
	assert_int_equal(uses_of("TCID"), 1);
	free(body);
	json_decref(b);
	free(csr);
}

struct racer {
	char addr[32], body[256];
	pthread_barrier_t *go;
	long status;
};

static void *race_one(void *arg)
{
	struct racer *x = arg;
	pthread_barrier_wait(x->go);
	h_resp r = claim_from(x->addr, x->body);
	x->status = r.status;
	h_resp_free(&r);
	return NULL;
}

/* Two claims at once; the statuses into st[2]. */
static void race(const char *body1, const char *body2, int round, long st[2])
{
	pthread_barrier_t go;
	struct racer x[2];
	pthread_t th[2];
	pthread_barrier_init(&go, NULL, 2);
	for(int i = 0; i < 2; i++) {
		char *b = expand(i ? body2 : body1);
		snprintf(x[i].body, sizeof x[i].body, "%s", b);
		free(b);
		snprintf(x[i].addr, sizeof x[i].addr, "127.1.%d.%d", i + 1, round + 1);
		x[i].go = &go;
		assert_int_equal(pthread_create(&th[i], NULL, race_one, &x[i]), 0);
	}
	for(int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		st[i] = x[i].status;
	}
	pthread_barrier_destroy(&go);
}

static void race_for_last_use(void **state)
{
	(void)state;
	int won[2] = {0, 0};
	for(int round = 0; round < 30; round++) {
		char a[64], b[64];
		long st[2];
		make_token("TP", 1, 3600, NULL, "TRACE", "TRACETOK");
		snprintf(a, sizeof a, "{\"claimToken\":\"{TRACETOK}\",\"serialNumber\":\"RA-%d\"}", round);
		snprintf(b, sizeof b, "{\"claimToken\":\"{TRACETOK}\",\"serialNumber\":\"RB-%d\"}", round);
		race(a, b, round, st);
		if(!((st[0] == 201 && st[1] == 403) || (st[0] == 403 && st[1] == 201)))
			fail_msg("round %d: statuses %ld and %ld, want one 201 and one 403", round, st[0], st[1]);
		won[st[1] == 201]++;
		assert_int_equal(uses_of("TRACE"), 1);
	}
	fprintf(stderr, "race: first racer won %d, second %d\n", won[0], won[1]);
	/* one serial, two tokens, at once: one device */
	make_token("TP", 10, 3600, NULL, "TS1", "TS1TOK");
	make_token("TP", 10, 3600, NULL, "TS2", "TS2TOK");
	for(int round = 0; round < 10; round++) {
		char a[64], b[64];
		long st[2];
		snprintf(a, sizeof a, "{\"claimToken\":\"{TS1TOK}\",\"serialNumber\":\"RS-%d\"}", round);
		snprintf(b, sizeof b, "{\"claimToken\":\"{TS2TOK}\",\"serialNumber\":\"RS-%d\"}", round);
		race(a, b, 100 + round, st);
		if(!((st[0] == 201 && st[1] == 409) || (st[0] == 409 && st[1] == 201)))
			fail_msg("serial round %d: statuses %ld and %ld, want one 201 and one 409", round, st[0], st[1]);
	}
	assert_int_equal(uses_of("TS1") + uses_of("TS2"), 10);
	h_resp r = api("GET", "/api/v1/devices?serialNumber=RS-3", NULL);
	check_at(&r, "devices.meta.count", "1", "one device per raced serial");
	h_resp_free(&r);
}

static void rate_limits(void **state)
{
	(void)state;
	/* twenty failed claims a minute per client address */
	fresh_window();
	for(int i = 0; i < 20; i++) refused("127.0.15.1", "NOTOK", "L-1", "failure under the limit");
	h_resp r = claim("127.0.15.1", "NOTOK", "L-1");
	check_resp(&r, 429, "rate_limited", NULL, "21st failure");
	long wait = atol(r.retry_after);
	if(wait < 1 || wait > 60) fail_msg("Retry-After %s", r.retry_after);
	h_resp_free(&r);
	/* blocked for a good token too; another address is not */
	make_token("TP", 1000, 3600, NULL, "TL", "TLTOK");
	r = claim("127.0.15.1", "TLTOK", "L-2");
	check_resp(&r, 429, "rate_limited", NULL, "blocked address, good token");
	h_resp_free(&r);
	claimed("127.0.15.2", "TLTOK", "L-2", NULL, NULL);

	/* sixty claims a minute per token, successful or not */
	fresh_window();
	make_token("TP", 1000, 3600, NULL, "TM", "TMTOK");
	for(int i = 0; i < 60; i++) {
		char serial[32];
		snprintf(serial, sizeof serial, "M-%d", i);
		claimed(i % 2 ? "127.0.16.1" : "127.0.16.2", "TMTOK", serial, NULL, NULL);
	}
	r = claim("127.0.16.3", "TMTOK", "M-60");
	check_resp(&r, 429, "rate_limited", NULL, "61st claim on one token");
	wait = atol(r.retry_after);
	if(wait < 1 || wait > 60) fail_msg("Retry-After %s", r.retry_after);
	h_resp_free(&r);
	assert_int_equal(uses_of("TM"), 60);
	/* another token is not limited */
	claimed("127.0.16.3", "TLTOK", "M-60", NULL, NULL);
}

static void scopes_and_accounts(void **state)
{
	(void)state;
	char exp[40], body[300];
	snprintf(body, sizeof body, "{\"deviceTemplateId\":\"{TP}\",\"maxUses\":1,\"expires\":\"%s\"}", iso_in(600, exp, sizeof exp));
	const char *const keys[] = {PROV, READK, BROKER};
	for(int i = 0; i < 3; i++) {
		h_resp r = api_as(keys[i], "POST", TOKENS, body, NULL);
		check_resp(&r, 403, "insufficient_scope", NULL, "create without admin");
		h_resp_free(&r);
		r = api_as(keys[i], "DELETE", TOKENS "/{T1}", NULL, NULL);
		check_resp(&r, 403, "insufficient_scope", NULL, "delete without admin");
		h_resp_free(&r);
		r = api_as(keys[i], "GET", TOKENS "/{T1}", NULL, NULL);
		check_resp(&r, i < 2 ? 200 : 403, NULL, NULL, "read");
		if(i < 2) assert_null(strstr(r.body, getvar("T1TOK")));
		h_resp_free(&r);
	}
	h_resp r = h_call(&S, "GET", TOKENS, NULL, NULL, NULL);
	check_resp(&r, 401, NULL, NULL, "no token");
	h_resp_free(&r);
	/* the claim takes no other auth, and a claim token is no API token */
	r = api_as(getvar("T1TOK"), "GET", TOKENS, NULL, NULL);
	check_resp(&r, 401, NULL, NULL, "claim token as Bearer");
	h_resp_free(&r);
	/* another account's token is not found */
	const tcase cases[] = {
		E("GET", TOKENS "/{BTOKID}", NULL, 404, "not_found", NULL),
		E("DELETE", TOKENS "/{BTOKID}", NULL, 404, "not_found", NULL),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);
	r = api("GET", TOKENS "?pageSize=1000", NULL);
	assert_null(strstr(r.body, getvar("BTOKID")));
	h_resp_free(&r);
	r = api_as(B.api_key, "GET", TOKENS "/{BTOKID}", NULL, NULL);
	check_resp(&r, 200, NULL, NULL, "B reads its own");
	h_resp_free(&r);
	/* B's device of template TP's account: B's token cannot name A's template */
	r = api_as(B.api_key, "POST", TOKENS, body, NULL);
	check_resp(&r, 422, "unknown_reference", "deviceTemplateId", "B naming A's template");
	h_resp_free(&r);
}

static void boundaries(void **state)
{
	(void)state;
	char soon[40], past[40], year[40], over[40];
	setvar("SOON", iso_in(3600, soon, sizeof soon));
	setvar("PAST", iso_in(-5, past, sizeof past));
	setvar("YEAR", iso_in(364L * 86400, year, sizeof year));
	setvar("OVER", iso_in(366L * 86400, over, sizeof over));
#define TB(extra) "{\"deviceTemplateId\":\"{TP}\",\"maxUses\":1,\"expires\":\"{SOON}\"" extra "}"
#define TM(max) "{\"deviceTemplateId\":\"{TP}\",\"maxUses\":" max ",\"expires\":\"{SOON}\"}"
#define TX(exp) "{\"deviceTemplateId\":\"{TP}\",\"maxUses\":1,\"expires\":" exp "}"
	const tcase cases[] = {
		E("POST", TOKENS, TM("0"), 422, "invalid_field", "maxUses"),
		V("POST", TOKENS, TM("1"), 201, "claimToken.maxUses", "1"),
		V("POST", TOKENS, TM("1000000"), 201, "claimToken.maxUses", "1000000"),
		E("POST", TOKENS, TM("1000001"), 422, "invalid_field", "maxUses"),
		E("POST", TOKENS, TM("-1"), 422, "invalid_field", "maxUses"),
		E("POST", TOKENS, TM("\"5\""), 400, "invalid_type", "maxUses"),
		E("POST", TOKENS, TM("1.5"), 400, "invalid_type", "maxUses"),
		E("POST", TOKENS, TM("null"), 400, "invalid_type", "maxUses"),
		E("POST", TOKENS, TX("\"{PAST}\""), 422, "invalid_field", "expires"),
		V("POST", TOKENS, TX("\"{YEAR}\""), 201, "claimToken.expires", "\"{YEAR}\""),
		E("POST", TOKENS, TX("\"{OVER}\""), 422, "invalid_field", "expires"),
		E("POST", TOKENS, TX("\"tomorrow\""), 422, "invalid_field", "expires"),
		E("POST", TOKENS, TX("12"), 400, "invalid_type", "expires"),
		E("POST", TOKENS, "{\"deviceTemplateId\":\"{TP}\",\"maxUses\":1}", 422, "missing_field", "expires"),
		E("POST", TOKENS, "{\"deviceTemplateId\":\"{TP}\",\"expires\":\"{SOON}\"}", 422, "missing_field", "maxUses"),
		E("POST", TOKENS, "{\"maxUses\":1,\"expires\":\"{SOON}\"}", 422, "missing_field", "deviceTemplateId"),
		E("POST", TOKENS, "{\"deviceTemplateId\":\"" NO_SUCH_ID "\",\"maxUses\":1,\"expires\":\"{SOON}\"}", 422,
		  "unknown_reference", "deviceTemplateId"),
		E("POST", TOKENS, TB(",\"serialNumbers\":[]"), 422, "invalid_field", "serialNumbers"),
		E("POST", TOKENS, TB(",\"serialNumbers\":[\"\"]"), 422, "invalid_field", "serialNumbers"),
		V("POST", TOKENS, TB(",\"serialNumbers\":[\"{x*128}\"]"), 201, "claimToken.serialNumberCount", "1"),
		E("POST", TOKENS, TB(",\"serialNumbers\":[\"{x*129}\"]"), 422, "invalid_field", "serialNumbers"),
		E("POST", TOKENS, TB(",\"serialNumbers\":[\"a\",\"b\",\"a\"]"), 422, "duplicate_serial", "serialNumbers"),
		E("POST", TOKENS, TB(",\"serialNumbers\":[1]"), 400, "invalid_type", "serialNumbers"),
		E("POST", TOKENS, TB(",\"serialNumbers\":\"a\""), 400, "invalid_type", "serialNumbers"),
		E("POST", TOKENS, TB(",\"serialNumbers\":null"), 400, "invalid_type", "serialNumbers"),
		E("POST", TOKENS, TB(",\"uses\":0"), 400, "read_only_field", "uses"),
		E("POST", TOKENS, TB(",\"serialNumberCount\":1"), 400, "read_only_field", "serialNumberCount"),
		E("POST", TOKENS, TB(",\"token\":\"imc_x\""), 400, "unknown_field", "token"),
		E("POST", TOKENS, TB(",\"accountId\":\"{BACCT}\""), 403, "wrong_account", "accountId"),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);

	/* the allow-list at its limit and one over: serials of up to 4 base-36 symbols */
	for(int n = 100000; n <= 100001; n++) {
		size_t cap = (size_t)n * 8 + 256, len = 0;
		char *body = malloc(cap);
		assert_non_null(body);
		len += (size_t)snprintf(body, cap, "{\"deviceTemplateId\":\"%s\",\"maxUses\":1,\"expires\":\"%s\",\"serialNumbers\":[",
		                        getvar("TP"), soon);
		for(int i = 0; i < n; i++) {
			char s[8];
			int v = i, k = 0;
			do {
				s[k++] = "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
				v /= 36;
			} while(v);
			s[k] = '\0';
			len += (size_t)snprintf(body + len, cap - len, "%s\"%s\"", i ? "," : "", s);
		}
		snprintf(body + len, cap - len, "]}");
		h_resp r = h_call(&S, "POST", TOKENS, S.admin.api_key, body, NULL);
		if(n == 100000) {
			check_resp(&r, 201, NULL, NULL, "100,000 serials");
			check_at(&r, "claimToken.serialNumberCount", "100000", "100,000 serials");
			assert_true(r.len < 2000); /* the list is not echoed */
			setvar("TBIG", h_str(&r, "claimToken.token"));
			setvar("TBIGID", h_str(&r, "claimToken.id"));
			remember(h_str(&r, "claimToken.token"));
		} else {
			check_resp(&r, 422, "invalid_field", "serialNumbers", "100,001 serials");
		}
		h_resp_free(&r);
		free(body);
	}
	/* serials are base 36 written least significant symbol first: "r552" is 99,999, the
	 * last on the list, and "s552" (100,000) is not on it */
	refused("127.0.17.1", "TBIG", "s552", "past the big allow-list");
	claimed("127.0.17.1", "TBIG", "r552", NULL, NULL);
	h_resp r = api("GET", TOKENS "/{TBIGID}", NULL);
	check_resp(&r, 200, NULL, NULL, "big token read");
	assert_true(r.len < 2000);
	h_resp_free(&r);
	/* revoking a token with a big allow-list */
	r = api("DELETE", TOKENS "/{TBIGID}", NULL);
	check_resp(&r, 204, NULL, NULL, "big token revoked");
	h_resp_free(&r);
}

static void no_token_leaks(void **state)
{
	(void)state;
	assert_true(NSECRETS >= 60);
	h_account *accts[] = {&S.admin, &B};
	const char *reads[] = {"/api/v1/audit?pageSize=1000", TOKENS "?pageSize=1000", "/api/v1/devices?pageSize=1000",
	                       "/api/v1/access/mqtt-credentials?pageSize=1000"};
	for(int a = 0; a < 2; a++) {
		for(int k = 0; k < 4; k++) {
			h_resp r = api_as(accts[a]->api_key, "GET", reads[k], NULL, NULL);
			check_resp(&r, 200, NULL, NULL, reads[k]);
			assert_true(r.len > 100);
			for(int i = 0; i < NSECRETS; i++) {
				if(strstr(r.body, SECRETS[i])) fail_msg("secret %d (%s) in %s", i, SECRETS[i], reads[k]);
			}
			h_resp_free(&r);
		}
	}
	assert_int_equal(h_log_sync(&S), 0);
	for(int i = 0; i < NSECRETS; i++) {
		if(h_log_contains(&S, SECRETS[i])) fail_msg("secret %d in the server's log", i);
	}
	/* the log does record claims, so the search looked at something */
	assert_true(h_log_contains(&S, "POST /api/v1/provisioning/claim 201 "));
	assert_true(h_log_contains(&S, "POST /api/v1/provisioning/claim 403 "));
	assert_true(h_log_contains(&S, "POST /api/v1/provisioning/claim-tokens 201 "));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(setup_fixtures),
		cmocka_unit_test(create_and_read),
		cmocka_unit_test(happy_path),
		cmocka_unit_test(one_claim_per_serial),
		cmocka_unit_test(refusals),
		cmocka_unit_test(claim_bodies),
		cmocka_unit_test(certificate_template),
		cmocka_unit_test(race_for_last_use),
		cmocka_unit_test(rate_limits),
		cmocka_unit_test(scopes_and_accounts),
		cmocka_unit_test(boundaries),
		cmocka_unit_test(no_token_leaks),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
