/* End-to-end: certificate credentials and account CAs against a real `imprint serve`.
 * Every key and certificate is made here at run time (none is committed): self-signed
 * device certificates, certificates signed by a CA the account registers, by a CA it does
 * not, expired and not yet valid ones, CA certificates posing as device certificates, and
 * CSRs signed by the account's device CA. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/x509.h"
#include "harness.h"

static h_server S;
static h_account B;
static char tpl[64], pw_tpl[64], d1[64], d2[64], d3[64], d4[64], pw_dev[64], b_dev[64];

/* ------------------------------------------------------------- certificate making */

static EVP_PKEY *new_key(void) { return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"); }

static char *pem_of(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(b, x);
	char *p;
	long n = BIO_get_mem_data(b, &p);
	char *out = malloc((size_t)n + 1);
	memcpy(out, p, (size_t)n);
	out[n] = '\0';
	BIO_free(b);
	return out;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	assert_non_null(e);
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
}

/* A certificate for key with CN cn, valid from now+from_s for days, signed by issuer
 * (NULL: self-signed with key). is_ca makes a CA. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, long from_s, long days,
                       int is_ca)
{
	static long serial = 1;
	X509 *x = X509_new();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), from_s);
	X509_gmtime_adj(X509_getm_notAfter(x), from_s + days * 86400);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	add_ext(x, issuer ? issuer : x, NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "CA:FALSE");
	if(is_ca) add_ext(x, issuer ? issuer : x, NID_key_usage, "critical,keyCertSign,cRLSign");
	assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
	return x;
}

static void fingerprint_of(X509 *x, char out[65])
{
	unsigned char md[32];
	unsigned int n = 0;
	X509_digest(x, EVP_sha256(), md, &n);
	for(unsigned i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* ------------------------------------------------------------------- API helpers */

static char *json_str(const char *s)
{
	json_t *j = json_string(s);
	char *out = json_dumps(j, JSON_ENCODE_ANY);
	json_decref(j);
	return out;
}

/* POST /access/mqtt-credentials for device with field ("certificate" or "csr") = pem. */
static h_resp register_pem(const char *token, const char *device, const char *field, const char *pem)
{
	char *q = json_str(pem);
	size_t n = strlen(q) + 256;
	char *body = malloc(n);
	snprintf(body, n, "{\"entityId\":\"%s\",\"%s\":%s}", device, field, q);
	h_resp r = h_call(&S, "POST", "/api/v1/access/mqtt-credentials", token, body, NULL);
	free(body);
	free(q);
	return r;
}

static void expect(h_resp *r, long status, const char *code)
{
	if(r->status != status) fprintf(stderr, "expected %ld, got %ld: %s\n", status, r->status, r->body);
	assert_int_equal(r->status, status);
	if(code) assert_string_equal(h_str(r, "error.code"), code);
}

static const char *state_of(const char *device, char *buf, size_t n)
{
	char path[128];
	snprintf(path, sizeof path, "/api/v1/devices/%s", device);
	h_resp r = h_call(&S, "GET", path, S.admin.api_key, NULL, NULL);
	assert_int_equal(r.status, 200);
	snprintf(buf, n, "%s", h_str(&r, "device.provisioningState"));
	h_resp_free(&r);
	return buf;
}

static int setup(void **state)
{
	if(h_server_start(&S) || h_account_create(&S, &B)) return -1;
	const char *k = S.admin.api_key;
	char body[256];
	if(h_create(&S, k, "/api/v1/devices/templates", "{\"name\":\"cert\",\"authenticationMethod\":\"certificate\"}",
	            "deviceTemplate.id", tpl, sizeof tpl) ||
	   h_create(&S, k, "/api/v1/devices/templates", "{\"name\":\"pw\"}", "deviceTemplate.id", pw_tpl, sizeof pw_tpl))
		return -1;
	char *ids[] = {d1, d2, d3, d4};
	for(int i = 0; i < 4; i++) {
		snprintf(body, sizeof body, "{\"deviceTemplateId\":\"%s\",\"serialNumber\":\"C-%d\"}", tpl, i);
		if(h_create(&S, k, "/api/v1/devices", body, "device.id", ids[i], 64)) return -1;
	}
	snprintf(body, sizeof body, "{\"deviceTemplateId\":\"%s\"}", pw_tpl);
	if(h_create(&S, k, "/api/v1/devices", body, "device.id", pw_dev, sizeof pw_dev)) return -1;
	char btpl[64];
	if(h_create(&S, B.api_key, "/api/v1/devices/templates", "{\"name\":\"b\",\"authenticationMethod\":\"certificate\"}",
	            "deviceTemplate.id", btpl, sizeof btpl))
		return -1;
	snprintf(body, sizeof body, "{\"deviceTemplateId\":\"%s\"}", btpl);
	return h_create(&S, B.api_key, "/api/v1/devices", body, "device.id", b_dev, sizeof b_dev);
}

static int teardown(void **state)
{
	h_server_destroy(&S);
	return 0;
}

/* ------------------------------------------------------------------------ tests */

static void self_signed_registers_once(void **state)
{
	char buf[32];
	EVP_PKEY *key = new_key();
	X509 *x = make_cert(key, "device-1", NULL, NULL, -60, 365, 0);
	char *pem = pem_of(x);
	char fp[65];
	fingerprint_of(x, fp);

	/* Nothing to register: 422, and the device stays defined. */
	char body[128];
	snprintf(body, sizeof body, "{\"entityId\":\"%s\"}", d1);
	h_resp r = h_call(&S, "POST", "/api/v1/access/mqtt-credentials", S.admin.api_key, body, NULL);
	expect(&r, 422, "certificate_required");
	h_resp_free(&r);
	assert_string_equal(state_of(d1, buf, sizeof buf), "defined");

	r = register_pem(S.admin.api_key, d1, "certificate", pem);
	expect(&r, 200, NULL);
	assert_string_equal(h_str(&r, "mqttCredential.method"), "certificate");
	assert_string_equal(h_str(&r, "mqttCredential.fingerprint"), fp);
	assert_string_equal(h_str(&r, "mqttCredential.entityId"), d1);
	assert_non_null(h_str(&r, "mqttCredential.notAfter"));
	assert_null(h_at(r.json, "mqttCredential.secret"));
	assert_null(strstr(r.body, "PRIVATE KEY"));
	h_resp_free(&r);
	assert_string_equal(state_of(d1, buf, sizeof buf), "activated");

	/* The same certificate for another device: 409, and that device stays defined. */
	r = register_pem(S.admin.api_key, d2, "certificate", pem);
	expect(&r, 409, "certificate_in_use");
	h_resp_free(&r);
	assert_string_equal(state_of(d2, buf, sizeof buf), "defined");

	/* Registering it again for its own device replaces it (same fingerprint, new id). */
	r = register_pem(S.admin.api_key, d1, "certificate", pem);
	expect(&r, 200, NULL);
	h_resp_free(&r);

	/* A second certificate replaces the first: the list shows only the new fingerprint. */
	EVP_PKEY *key2 = new_key();
	X509 *x2 = make_cert(key2, "device-1b", NULL, NULL, -60, 365, 0);
	char *pem2 = pem_of(x2);
	char fp2[65];
	fingerprint_of(x2, fp2);
	r = register_pem(S.admin.api_key, d1, "certificate", pem2);
	expect(&r, 200, NULL);
	h_resp_free(&r);
	char path[160];
	snprintf(path, sizeof path, "/api/v1/access/mqtt-credentials?entityId=%s", d1);
	r = h_call(&S, "GET", path, S.admin.api_key, NULL, NULL);
	expect(&r, 200, NULL);
	assert_int_equal(json_array_size(h_at(r.json, "mqttCredentials.results")), 1);
	assert_string_equal(json_string_value(h_at(r.json, "mqttCredentials.results.0.fingerprint")), fp2);
	h_resp_free(&r);
	/* The old one is free again: another device may take it. */
	r = register_pem(S.admin.api_key, d2, "certificate", pem);
	expect(&r, 200, NULL);
	h_resp_free(&r);

	free(pem);
	free(pem2);
	X509_free(x);
	X509_free(x2);
	EVP_PKEY_free(key);
	EVP_PKEY_free(key2);
}

static void unusable_certificates_are_422(void **state)
{
	EVP_PKEY *key = new_key();
	X509 *expired = make_cert(key, "old", NULL, NULL, -400 * 86400L, 30, 0);
	X509 *future = make_cert(key, "future", NULL, NULL, 86400L * 10, 30, 0);
	X509 *ca = make_cert(key, "a CA", NULL, NULL, -60, 365, 1);
	EVP_PKEY *other = new_key();
	X509 *foreign_ca = make_cert(other, "foreign CA", NULL, NULL, -60, 365, 1);
	X509 *foreign = make_cert(key, "signed by a stranger", foreign_ca, other, -60, 365, 0);
	X509 *list[] = {expired, future, ca, foreign};
	for(size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
		char *pem = pem_of(list[i]);
		h_resp r = register_pem(S.admin.api_key, d3, "certificate", pem);
		expect(&r, 422, "invalid_certificate");
		h_resp_free(&r);
		free(pem);
	}
	static const char *const garbage[] = {"", "not a certificate",
	                                      "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"};
	for(size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
		h_resp r = register_pem(S.admin.api_key, d3, "certificate", garbage[i]);
		expect(&r, 422, NULL);
		h_resp_free(&r);
		r = register_pem(S.admin.api_key, d3, "csr", garbage[i]);
		expect(&r, 422, "invalid_csr");
		h_resp_free(&r);
	}
	/* A certificate for a password device, and a certificate and a CSR at once. */
	char *pem = pem_of(future);
	h_resp r = register_pem(S.admin.api_key, pw_dev, "certificate", pem);
	expect(&r, 422, "password_template");
	h_resp_free(&r);
	char *q = json_str(pem);
	char body[4096];
	snprintf(body, sizeof body, "{\"entityId\":\"%s\",\"certificate\":%s,\"csr\":%s}", d3, q, q);
	r = h_call(&S, "POST", "/api/v1/access/mqtt-credentials", S.admin.api_key, body, NULL);
	expect(&r, 400, NULL);
	h_resp_free(&r);
	free(q);
	free(pem);
	char buf[32];
	assert_string_equal(state_of(d3, buf, sizeof buf), "defined");
	for(size_t i = 0; i < sizeof list / sizeof list[0]; i++) X509_free(list[i]);
	X509_free(foreign_ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(other);
}

static void account_ca_lets_its_certificates_in(void **state)
{
	EVP_PKEY *cakey = new_key(), *key = new_key();
	X509 *ca = make_cert(cakey, "Factory CA", NULL, NULL, -60, 3650, 1);
	X509 *dev = make_cert(key, "device-3", ca, cakey, -60, 365, 0);
	char *ca_pem = pem_of(ca), *dev_pem = pem_of(dev);

	/* Not registered yet: refused. */
	h_resp r = register_pem(S.admin.api_key, d3, "certificate", dev_pem);
	expect(&r, 422, "invalid_certificate");
	h_resp_free(&r);

	/* A device certificate is no CA. */
	char *q = json_str(dev_pem);
	char body[4096];
	snprintf(body, sizeof body, "{\"certificate\":%s}", q);
	free(q);
	r = h_call(&S, "POST", "/api/v1/access/certificate-authorities", S.admin.api_key, body, NULL);
	expect(&r, 422, "invalid_certificate");
	h_resp_free(&r);

	q = json_str(ca_pem);
	snprintf(body, sizeof body, "{\"certificate\":%s}", q);
	free(q);
	/* provisioning may not register CAs */
	char pkey[128];
	assert_int_equal(h_create(&S, S.admin.api_key, "/api/v1/api-keys", "{\"name\":\"rig\",\"scopes\":[\"provisioning\"]}",
	                          "apiKey.key", pkey, sizeof pkey), 0);
	r = h_call(&S, "POST", "/api/v1/access/certificate-authorities", pkey, body, NULL);
	expect(&r, 403, NULL);
	h_resp_free(&r);
	r = h_call(&S, "POST", "/api/v1/access/certificate-authorities", S.admin.api_key, body, NULL);
	expect(&r, 201, NULL);
	char fp[65], ca_id[64];
	fingerprint_of(ca, fp);
	assert_string_equal(h_str(&r, "certificateAuthority.fingerprint"), fp);
	assert_non_null(strstr(h_str(&r, "certificateAuthority.subject"), "Factory CA"));
	snprintf(ca_id, sizeof ca_id, "%s", h_str(&r, "certificateAuthority.id"));
	h_resp_free(&r);
	r = h_call(&S, "POST", "/api/v1/access/certificate-authorities", S.admin.api_key, body, NULL);
	expect(&r, 409, NULL);
	h_resp_free(&r);

	/* Registered: a provisioning key registers the device certificate. */
	r = register_pem(pkey, d3, "certificate", dev_pem);
	expect(&r, 200, NULL);
	h_resp_free(&r);

	/* The other account sees nothing of it. */
	char path[160];
	snprintf(path, sizeof path, "/api/v1/access/certificate-authorities/%s", ca_id);
	r = h_call(&S, "GET", path, B.api_key, NULL, NULL);
	expect(&r, 404, NULL);
	h_resp_free(&r);
	r = h_call(&S, "GET", "/api/v1/access/certificate-authorities", B.api_key, NULL, NULL);
	expect(&r, 200, NULL);
	assert_int_equal(json_array_size(h_at(r.json, "certificateAuthorities.results")), 0);
	h_resp_free(&r);
	r = h_call(&S, "DELETE", path, B.api_key, NULL, NULL);
	expect(&r, 404, NULL);
	h_resp_free(&r);
	/* Nor can it register a certificate of that CA for its device. */
	EVP_PKEY *key4 = new_key();
	X509 *dev4 = make_cert(key4, "device-b", ca, cakey, -60, 365, 0);
	char *dev4_pem = pem_of(dev4);
	r = register_pem(B.api_key, b_dev, "certificate", dev4_pem);
	expect(&r, 422, "invalid_certificate");
	h_resp_free(&r);
	/* And account A's device ids are unknown to B. */
	r = register_pem(B.api_key, d4, "certificate", dev4_pem);
	expect(&r, 404, NULL);
	h_resp_free(&r);

	/* Once the CA is removed, its certificates no longer register. */
	r = h_call(&S, "DELETE", path, S.admin.api_key, NULL, NULL);
	expect(&r, 204, NULL);
	h_resp_free(&r);
	r = register_pem(S.admin.api_key, d4, "certificate", dev4_pem);
	expect(&r, 422, "invalid_certificate");
	h_resp_free(&r);

	free(ca_pem);
	free(dev_pem);
	free(dev4_pem);
	X509_free(ca);
	X509_free(dev);
	X509_free(dev4);
	EVP_PKEY_free(cakey);
	EVP_PKEY_free(key);
	EVP_PKEY_free(key4);
}

static void csr_is_signed_by_the_device_ca(void **state)
{
	char *key_pem = NULL, *csr_pem = NULL;
	assert_int_equal(imp_keypair_csr("whatever-the-device-asks", &key_pem, &csr_pem), IMP_OK);
	h_resp r = register_pem(S.admin.api_key, d4, "csr", csr_pem);
	expect(&r, 200, NULL);
	const char *cert = h_str(&r, "mqttCredential.certificate");
	assert_non_null(cert);
	assert_null(strstr(r.body, "PRIVATE KEY"));

	/* CN is the device id, whatever the CSR asked; it chains to the account's device CA,
	 * which a device certificate registered later may also be signed by. */
	imp_cert_info info;
	char why[200];
	assert_int_equal(imp_cert_parse(cert, strlen(cert), &info, why, sizeof why), IMP_OK);
	assert_string_equal(h_str(&r, "mqttCredential.fingerprint"), info.fingerprint);
	char cn[128];
	snprintf(cn, sizeof cn, "CN=%s", d4);
	assert_non_null(strstr(info.subject, cn));
	assert_false(info.is_ca);
	char ca_path[512];
	snprintf(ca_path, sizeof ca_path, "%s/ca/%s.crt", S.data, S.admin.account_id);
	FILE *f = fopen(ca_path, "r");
	assert_non_null(f);
	static char ca[16384];
	size_t n = fread(ca, 1, sizeof ca - 1, f);
	ca[n] = '\0';
	fclose(f);
	const char *cas[] = {ca};
	assert_int_equal(imp_cert_check_device(cert, strlen(cert), cas, 1, (uint64_t)time(NULL) * 1000, &info, why, sizeof why),
	                 IMP_OK);
	h_resp_free(&r);

	/* A CSR for a password device: 422. */
	r = register_pem(S.admin.api_key, pw_dev, "csr", csr_pem);
	expect(&r, 422, "password_template");
	h_resp_free(&r);
	/* The private key never reached the server's log. */
	char marker[40];
	const char *body = strstr(key_pem, "\n");
	snprintf(marker, sizeof marker, "%.32s", body ? body + 1 : key_pem);
	assert_int_equal(h_log_sync(&S), 0);
	assert_false(h_log_contains(&S, marker));
	imp_key_pem_free(&key_pem);
	imp_free(csr_pem);
}

static void batch_signs_csrs(void **state)
{
	char *k1 = NULL, *c1 = NULL;
	assert_int_equal(imp_keypair_csr("x", &k1, &c1), IMP_OK);
	char *q = json_str(c1);
	size_t n = 3 * strlen(q) + 1024;
	char *body = malloc(n);
	snprintf(body, n,
	         "{\"deviceTemplateId\":\"%s\",\"serialNumber\":\"CB-1\",\"csr\":%s}\n"
	         "{\"deviceTemplateId\":\"%s\",\"serialNumber\":\"CB-2\"}\n",
	         tpl, q, tpl);
	h_resp r = h_call_raw(&S, "POST", "/api/v1/devices/batch?credentials=true", S.admin.api_key, body, strlen(body),
	                      "Idempotency-Key: certs");
	expect(&r, 200, NULL);
	char *nl = strchr(r.body, '\n');
	assert_non_null(nl);
	*nl = '\0';
	json_t *l1 = json_loads(r.body, 0, NULL), *l2 = json_loads(nl + 1, 0, NULL);
	assert_non_null(l1);
	assert_non_null(l2);
	assert_string_equal(json_string_value(h_at(l1, "device.provisioningState")), "activated");
	assert_non_null(json_string_value(h_at(l1, "mqttCredential.certificate")));
	assert_null(h_at(l1, "mqttCredential.secret"));
	assert_string_equal(json_string_value(h_at(l2, "error.code")), "csr_required");
	json_decref(l1);
	json_decref(l2);
	h_resp_free(&r);
	free(body);
	free(q);
	imp_key_pem_free(&k1);
	imp_free(c1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(self_signed_registers_once),
		cmocka_unit_test(unusable_certificates_are_422),
		cmocka_unit_test(account_ca_lets_its_certificates_in),
		cmocka_unit_test(csr_is_signed_by_the_device_ca),
		cmocka_unit_test(batch_signs_csrs),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
