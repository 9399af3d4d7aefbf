/* Unit tests for src/core/x509.c and src/core/devca.c: device and CA certificates checked
 * for registration, CSR signing, local key pairs, and the per-account device CA files.
 * Every key and certificate is made here with OpenSSL; none is committed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/devca.h"
#include "core/ids.h"
#include "core/mem.h"
#include "core/timeutil.h"
#include "core/x509.h"
#include "unit_util.h"

#define DAY_S     86400L
#define NOT_CHAIN "not self-signed nor signed by a certificate authority of the account"

/* ---- making keys, certificates and CSRs with OpenSSL ---- */

static EVP_PKEY *ec_key(const char *curve)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
	assert_non_null(k);
	return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	assert_non_null(e);
	assert_int_equal(X509_add_ext(x, e, -1), 1);
	X509_EXTENSION_free(e);
}

enum { DEVICE, CA, NO_EXT };

/* A certificate for key with CN cn, valid from now + from_s to now + to_s, signed by
 * issuer/issuer_key, or self-signed when issuer is NULL. */
static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, int kind, long from_s,
                       long to_s)
{
	static long serial = 1;
	X509 *x = X509_new();
	assert_non_null(x);
	assert_int_equal(X509_set_version(x, kind == NO_EXT ? X509_VERSION_1 : X509_VERSION_3), 1);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), from_s));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), to_s));
	assert_int_equal(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
	                                            (const unsigned char *)cn, -1, -1, 0),
	                 1);
	X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
	assert_int_equal(X509_set_pubkey(x, key), 1);
	if(kind != NO_EXT) {
		add_ext(x, issuer, NID_basic_constraints, kind == CA ? "critical,CA:TRUE" : "critical,CA:FALSE");
		if(kind == CA) add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
		add_ext(x, issuer, NID_subject_key_identifier, "hash");
		add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
	}
	assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
	return x;
}

static char *bio_string(BIO *b)
{
	char *p;
	long n = BIO_get_mem_data(b, &p);
	char *s = malloc((size_t)n + 1);
	assert_non_null(s);
	memcpy(s, p, (size_t)n);
	s[n] = '\0';
	BIO_free(b);
	return s;
}

static char *cert_pem(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_X509(b, x), 1);
	return bio_string(b);
}

static char *der_pem(const char *label, const unsigned char *der, long n)
{
	BIO *b = BIO_new(BIO_s_mem());
	assert_true(PEM_write_bio(b, label, "", der, n) > 0);
	return bio_string(b);
}

/* A CSR for key, signed by sign_key, asking for CN=cn, O=Evil Corp and, when ask_ca, for
 * CA:TRUE. */
static char *make_csr(EVP_PKEY *key, EVP_PKEY *sign_key, const char *cn, int ask_ca)
{
	X509_REQ *r = X509_REQ_new();
	assert_non_null(r);
	X509_REQ_set_version(r, X509_REQ_VERSION_1);
	X509_NAME *nm = X509_REQ_get_subject_name(r);
	assert_int_equal(X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0), 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8, (const unsigned char *)"Evil Corp", -1, -1, 0),
	                 1);
	assert_int_equal(X509_REQ_set_pubkey(r, key), 1);
	if(ask_ca) {
		STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
		X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
		assert_non_null(e);
		sk_X509_EXTENSION_push(exts, e);
		assert_int_equal(X509_REQ_add_extensions(r, exts), 1);
		sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	}
	const EVP_MD *md = EVP_PKEY_is_a(sign_key, "ED25519") ? NULL : EVP_sha256();
	assert_true(X509_REQ_sign(r, sign_key, md) > 0);
	BIO *b = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_X509_REQ(b, r), 1);
	X509_REQ_free(r);
	return bio_string(b);
}

static X509 *read_cert(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	assert_non_null(x);
	return x;
}

/* SHA-256 of the DER inside a PEM, hex, computed without x509.c. */
static void fingerprint_of(const char *pem, char out[65])
{
	char *name = NULL, *header = NULL;
	unsigned char *der = NULL, md[32];
	long n = 0;
	BIO *b = BIO_new_mem_buf(pem, -1);
	assert_int_equal(PEM_read_bio(b, &name, &header, &der, &n), 1);
	unsigned int mdlen = 0;
	assert_int_equal(EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL), 1);
	assert_int_equal(mdlen, 32);
	for(int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(der);
	BIO_free(b);
}

static void expect_refusal(imp_err rc, const char *why, const char *want, int line)
{
	if(rc != IMP_ERR_INVALID) fail_msg("line %d: %s, expected invalid", line, imp_err_name(rc));
	if(!why[0] || strcmp(why, "X") == 0) fail_msg("line %d: no reason given", line);
	if(want && !strstr(why, want)) fail_msg("line %d: reason '%s' lacks '%s'", line, why, want);
	if(ERR_peek_error()) fail_msg("line %d: OpenSSL error queue not empty", line);
}

/* Runs a call that must refuse, and checks what comes with a refusal: a reason (containing
 * want unless NULL), and an error queue left empty. */
#define REFUSED(call, why, want)                                                                                       \
	do {                                                                                                               \
		ERR_clear_error();                                                                                             \
		snprintf((why), sizeof(why), "X");                                                                             \
		expect_refusal((call), (why), (want), __LINE__);                                                               \
	} while(0)

/* ---- device certificates ---- */

static void test_self_signed_device(void **state)
{
	(void)state;
	EVP_PKEY *k = ec_key("P-256");
	X509 *x = make_cert("dev1", k, NULL, NULL, DEVICE, -60, 30 * DAY_S);
	char *pem = cert_pem(x), why[256], fp[65];
	imp_cert_info info;
	uint64_t t = imp_now_ms();
	ERR_clear_error();
	assert_int_equal(imp_cert_check_device(pem, strlen(pem), NULL, 0, t, &info, why, sizeof why), IMP_OK);
	assert_int_equal(ERR_peek_error(), 0);
	assert_string_equal(why, "");
	assert_true(info.self_signed);
	assert_false(info.is_ca);
	assert_string_equal(info.subject, "CN=dev1");
	assert_true(info.not_before_ms <= t && info.not_before_ms >= t - 70000);
	assert_true(info.not_after_ms >= t + 30 * DAY_S * 1000 - 10000);
	assert_true(info.not_after_ms <= t + 30 * DAY_S * 1000 + 10000);
	fingerprint_of(pem, fp);
	assert_string_equal(info.fingerprint, fp);
	assert_int_equal(strlen(info.fingerprint), IMP_FINGERPRINT_LEN);

	/* imp_cert_parse agrees, and a version 1 certificate (no extensions) is a device one */
	imp_cert_info parsed;
	assert_int_equal(imp_cert_parse(pem, strlen(pem), &parsed, why, sizeof why), IMP_OK);
	assert_memory_equal(&parsed, &info, sizeof info);
	X509 *v1 = make_cert("old", k, NULL, NULL, NO_EXT, -60, DAY_S);
	char *v1pem = cert_pem(v1);
	assert_int_equal(imp_cert_check_device(v1pem, strlen(v1pem), NULL, 0, t, &info, why, sizeof why), IMP_OK);
	assert_true(info.self_signed);
	assert_false(info.is_ca);

	free(v1pem);
	X509_free(v1);
	free(pem);
	X509_free(x);
	EVP_PKEY_free(k);
}

/* The fingerprint is the SHA-256 of the DER, computed here two ways without x509.c. */
static void test_fingerprint(void **state)
{
	(void)state;
	EVP_PKEY *k = ec_key("P-384");
	X509 *x = make_cert("fp", k, NULL, NULL, DEVICE, -60, DAY_S);
	char *pem = cert_pem(x), why[256], hex[65];
	unsigned char *der = NULL, md[32];
	int n = i2d_X509(x, &der);
	assert_true(n > 0);
	SHA256(der, (size_t)n, md);
	for(int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
	imp_cert_info info;
	assert_int_equal(imp_cert_parse(pem, strlen(pem), &info, why, sizeof why), IMP_OK);
	assert_string_equal(info.fingerprint, hex);
	fingerprint_of(pem, hex);
	assert_string_equal(info.fingerprint, hex);
	for(const char *p = info.fingerprint; *p; p++) assert_non_null(strchr("0123456789abcdef", *p));
	OPENSSL_free(der);
	free(pem);
	X509_free(x);
	EVP_PKEY_free(k);
}

static void test_ca_signed_device(void **state)
{
	(void)state;
	EVP_PKEY *ka = ec_key("P-256"), *kb = ec_key("P-256"), *kd = ec_key("P-256");
	X509 *a = make_cert("CA A", ka, NULL, NULL, CA, -60, 365 * DAY_S);
	X509 *b = make_cert("CA B", kb, NULL, NULL, CA, -60, 365 * DAY_S);
	X509 *d = make_cert("dev", kd, a, ka, DEVICE, -60, 30 * DAY_S);
	char *apem = cert_pem(a), *bpem = cert_pem(b), *dpem = cert_pem(d), why[256];
	imp_cert_info info;
	uint64_t t = imp_now_ms();

	const char *just_a[] = {apem}, *b_then_a[] = {bpem, apem}, *just_b[] = {bpem};
	const char *junk_then_a[] = {"not a certificate", dpem, apem};
	assert_int_equal(imp_cert_check_device(dpem, strlen(dpem), just_a, 1, t, &info, why, sizeof why), IMP_OK);
	assert_false(info.self_signed);
	assert_false(info.is_ca);
	assert_string_equal(info.subject, "CN=dev");
	assert_int_equal(imp_cert_check_device(dpem, strlen(dpem), b_then_a, 2, t, &info, why, sizeof why), IMP_OK);
	/* a CA that does not parse, or that is not a CA, is skipped */
	assert_int_equal(imp_cert_check_device(dpem, strlen(dpem), junk_then_a, 3, t, &info, why, sizeof why), IMP_OK);

	/* signed by a CA the account did not register */
	REFUSED(imp_cert_check_device(dpem, strlen(dpem), just_b, 1, t, &info, why, sizeof why), why, NOT_CHAIN);
	assert_string_equal(why, NOT_CHAIN);
	REFUSED(imp_cert_check_device(dpem, strlen(dpem), NULL, 0, t, &info, why, sizeof why), why, NOT_CHAIN);
	/* the device's own certificate offered as its CA does not make it trusted */
	const char *itself[] = {dpem};
	REFUSED(imp_cert_check_device(dpem, strlen(dpem), itself, 1, t, &info, why, sizeof why), why, NOT_CHAIN);
	free(apem);
	free(bpem);
	free(dpem);
	X509_free(a);
	X509_free(b);
	X509_free(d);
	EVP_PKEY_free(ka);
	EVP_PKEY_free(kb);
	EVP_PKEY_free(kd);
}

/* root -> intermediate (registered) -> device: the intermediate alone is enough. */
static void test_intermediate_chain(void **state)
{
	(void)state;
	EVP_PKEY *kr = ec_key("P-256"), *ki = ec_key("P-256"), *kd = ec_key("P-256");
	X509 *root = make_cert("Root", kr, NULL, NULL, CA, -60, 3650 * DAY_S);
	X509 *inter = make_cert("Intermediate", ki, root, kr, CA, -60, 365 * DAY_S);
	X509 *dev = make_cert("dev", kd, inter, ki, DEVICE, -60, 30 * DAY_S);
	char *rpem = cert_pem(root), *ipem = cert_pem(inter), *dpem = cert_pem(dev), why[256];
	imp_cert_info info;
	uint64_t t = imp_now_ms();

	assert_int_equal(imp_cert_check_ca(ipem, strlen(ipem), t, &info, why, sizeof why), IMP_OK);
	assert_true(info.is_ca);
	assert_false(info.self_signed);
	assert_int_equal(imp_cert_check_ca(rpem, strlen(rpem), t, &info, why, sizeof why), IMP_OK);
	assert_true(info.self_signed);

	const char *i_only[] = {ipem}, *both[] = {rpem, ipem}, *r_only[] = {rpem};
	assert_int_equal(imp_cert_check_device(dpem, strlen(dpem), i_only, 1, t, &info, why, sizeof why), IMP_OK);
	assert_int_equal(imp_cert_check_device(dpem, strlen(dpem), both, 2, t, &info, why, sizeof why), IMP_OK);
	/* the root alone does not know the intermediate, and is not sent one */
	REFUSED(imp_cert_check_device(dpem, strlen(dpem), r_only, 1, t, &info, why, sizeof why), why, NOT_CHAIN);

	free(rpem);
	free(ipem);
	free(dpem);
	X509_free(root);
	X509_free(inter);
	X509_free(dev);
	EVP_PKEY_free(kr);
	EVP_PKEY_free(ki);
	EVP_PKEY_free(kd);
}

static void test_validity(void **state)
{
	(void)state;
	EVP_PKEY *k = ec_key("P-256"), *kca = ec_key("P-256");
	X509 *expired = make_cert("old", k, NULL, NULL, DEVICE, -10 * DAY_S, -DAY_S);
	X509 *future = make_cert("new", k, NULL, NULL, DEVICE, DAY_S, 10 * DAY_S);
	X509 *ok = make_cert("ok", k, NULL, NULL, DEVICE, -60, 30 * DAY_S);
	X509 *ca = make_cert("CA", kca, NULL, NULL, CA, -60, 10 * DAY_S);
	X509 *dev = make_cert("dev", k, ca, kca, DEVICE, -60, 30 * DAY_S); /* outlives its CA */
	X509 *old_ca = make_cert("Old CA", kca, NULL, NULL, CA, -10 * DAY_S, -DAY_S);
	char *epem = cert_pem(expired), *fpem = cert_pem(future), *opem = cert_pem(ok), *capem = cert_pem(ca);
	char *dpem = cert_pem(dev), *ocpem = cert_pem(old_ca), why[256];
	imp_cert_info info;
	uint64_t t = imp_now_ms();

	REFUSED(imp_cert_check_device(epem, strlen(epem), NULL, 0, t, &info, why, sizeof why), why, "expired");
	REFUSED(imp_cert_check_device(fpem, strlen(fpem), NULL, 0, t, &info, why, sizeof why), why, "not valid yet");
	/* the check time is now_ms, not the clock */
	assert_int_equal(imp_cert_check_device(fpem, strlen(fpem), NULL, 0, t + 2 * DAY_S * 1000, &info, why, sizeof why),
	                 IMP_OK);
	assert_int_equal(imp_cert_check_device(epem, strlen(epem), NULL, 0, t - 5 * DAY_S * 1000, &info, why, sizeof why),
	                 IMP_OK);
	REFUSED(imp_cert_check_device(opem, strlen(opem), NULL, 0, t + 31 * DAY_S * 1000, &info, why, sizeof why), why,
	        "expired");

	/* a device of a CA: fine while both are valid, not once the CA has expired */
	const char *cas[] = {capem};
	assert_int_equal(imp_cert_check_device(dpem, strlen(dpem), cas, 1, t, &info, why, sizeof why), IMP_OK);
	REFUSED(imp_cert_check_device(dpem, strlen(dpem), cas, 1, t + 11 * DAY_S * 1000, &info, why, sizeof why), why,
	        NOT_CHAIN);

	/* CAs too */
	REFUSED(imp_cert_check_ca(ocpem, strlen(ocpem), t, &info, why, sizeof why), why, "expired");
	REFUSED(imp_cert_check_ca(capem, strlen(capem), t + 11 * DAY_S * 1000, &info, why, sizeof why), why, "expired");

	free(epem);
	free(fpem);
	free(opem);
	free(capem);
	free(dpem);
	free(ocpem);
	X509_free(expired);
	X509_free(future);
	X509_free(ok);
	X509_free(ca);
	X509_free(dev);
	X509_free(old_ca);
	EVP_PKEY_free(k);
	EVP_PKEY_free(kca);
}

static void test_ca_versus_device(void **state)
{
	(void)state;
	EVP_PKEY *k = ec_key("P-256");
	X509 *ca = make_cert("CA", k, NULL, NULL, CA, -60, DAY_S);
	X509 *dev = make_cert("dev", k, NULL, NULL, DEVICE, -60, DAY_S);
	X509 *v1 = make_cert("v1", k, NULL, NULL, NO_EXT, -60, DAY_S);
	char *capem = cert_pem(ca), *dpem = cert_pem(dev), *v1pem = cert_pem(v1), why[256];
	imp_cert_info info;
	uint64_t t = imp_now_ms();

	REFUSED(imp_cert_check_device(capem, strlen(capem), NULL, 0, t, &info, why, sizeof why), why,
	        "certificate authority");
	const char *cas[] = {capem};
	REFUSED(imp_cert_check_device(capem, strlen(capem), cas, 1, t, &info, why, sizeof why), why,
	        "certificate authority");
	assert_int_equal(imp_cert_check_ca(capem, strlen(capem), t, &info, why, sizeof why), IMP_OK);
	assert_true(info.is_ca);
	assert_true(info.self_signed);
	assert_string_equal(info.subject, "CN=CA");
	REFUSED(imp_cert_check_ca(dpem, strlen(dpem), t, &info, why, sizeof why), why, "not a certificate authority");
	REFUSED(imp_cert_check_ca(v1pem, strlen(v1pem), t, &info, why, sizeof why), why, "not a certificate authority");

	/* a CA whose keyUsage cannot sign certificates could vouch for no device */
	X509 *nosign = X509_new();
	X509_set_version(nosign, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(nosign), 99);
	X509_gmtime_adj(X509_getm_notBefore(nosign), -60);
	X509_gmtime_adj(X509_getm_notAfter(nosign), DAY_S);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(nosign), "CN", MBSTRING_ASC, (const unsigned char *)"ns", -1, -1,
	                           0);
	X509_set_issuer_name(nosign, X509_get_subject_name(nosign));
	X509_set_pubkey(nosign, k);
	add_ext(nosign, NULL, NID_basic_constraints, "critical,CA:TRUE");
	add_ext(nosign, NULL, NID_key_usage, "critical,digitalSignature");
	assert_true(X509_sign(nosign, k, EVP_sha256()) > 0);
	char *nspem = cert_pem(nosign);
	REFUSED(imp_cert_check_ca(nspem, strlen(nspem), t, &info, why, sizeof why), why, "keyUsage");

	free(nspem);
	X509_free(nosign);
	free(capem);
	free(dpem);
	free(v1pem);
	X509_free(ca);
	X509_free(dev);
	X509_free(v1);
	EVP_PKEY_free(k);
}

/* Input that is not exactly one certificate, and the edges of what is. */
static void test_malformed(void **state)
{
	(void)state;
	EVP_PKEY *k = ec_key("P-256");
	X509 *x = make_cert("dev", k, NULL, NULL, DEVICE, -60, DAY_S);
	char *pem = cert_pem(x), why[256];
	size_t len = strlen(pem);
	imp_cert_info info;
	uint64_t t = imp_now_ms();
	static char buf[2 * IMP_PEM_MAX];

	struct {
		const char *name, *text;
	} bad[] = {
		{"empty", ""},
		{"blank", " \r\n\t\n"},
		{"garbage", "SECRET-MARKER this is not a certificate"},
		{"other label", "-----BEGIN SECRET-MARKER-----\nAAAA\n-----END SECRET-MARKER-----\n"},
		{"bad base64", "-----BEGIN CERTIFICATE-----\n!!!SECRET-MARKER!!!\n-----END CERTIFICATE-----\n"},
		{"not DER", "-----BEGIN CERTIFICATE-----\nU0VDUkVULU1BUktFUg==\n-----END CERTIFICATE-----\n"},
		{"no end", "-----BEGIN CERTIFICATE-----\nMIIB\n"},
		{"headers", "-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,"
		            "00112233445566778899AABBCCDDEEFF\n\nMIIB\n-----END CERTIFICATE-----\n"},
	};
	for(size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ERR_clear_error();
		imp_err rc = imp_cert_parse(bad[i].text, strlen(bad[i].text), &info, why, sizeof why);
		if(rc != IMP_ERR_INVALID) fail_msg("%s: %s", bad[i].name, imp_err_name(rc));
		if(!why[0] || strstr(why, "MARKER")) fail_msg("%s: reason '%s'", bad[i].name, why);
		if(ERR_peek_error()) fail_msg("%s: error queue not empty", bad[i].name);
		REFUSED(imp_cert_check_device(bad[i].text, strlen(bad[i].text), NULL, 0, t, &info, why, sizeof why), why,
		        NULL);
		REFUSED(imp_cert_check_ca(bad[i].text, strlen(bad[i].text), t, &info, why, sizeof why), why, NULL);
	}

	/* truncated anywhere */
	for(size_t cut = 1; cut < len - 1; cut += 37)
		REFUSED(imp_cert_parse(pem, cut, &info, why, sizeof why), why, NULL);
	/* two certificates, or anything after one */
	snprintf(buf, sizeof buf, "%s%s", pem, pem);
	REFUSED(imp_cert_parse(buf, strlen(buf), &info, why, sizeof why), why, "exactly one");
	snprintf(buf, sizeof buf, "%sSECRET-MARKER\n", pem);
	REFUSED(imp_cert_parse(buf, strlen(buf), &info, why, sizeof why), why, NULL);
	assert_null(strstr(why, "MARKER"));
	snprintf(buf, sizeof buf, "subject=CN=dev\n%s", pem);
	REFUSED(imp_cert_parse(buf, strlen(buf), &info, why, sizeof why), why, NULL);
	/* a NUL inside */
	memcpy(buf, pem, len);
	buf[len / 2] = '\0';
	REFUSED(imp_cert_parse(buf, len, &info, why, sizeof why), why, NULL);
	/* a CSR is not a certificate */
	char *csr = make_csr(k, k, "dev", 0);
	REFUSED(imp_cert_parse(csr, strlen(csr), &info, why, sizeof why), why, NULL);
	free(csr);

	/* BER where DER is due: the outer length in a longer form than needed */
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);
	assert_true(n > 4 && der[1] == 0x82);
	unsigned char *ber = malloc((size_t)n + 1);
	ber[0] = 0x30;
	ber[1] = 0x83;
	ber[2] = 0x00;
	memcpy(ber + 3, der + 2, (size_t)n - 2);
	char *berpem = der_pem("CERTIFICATE", ber, n + 1);
	REFUSED(imp_cert_parse(berpem, strlen(berpem), &info, why, sizeof why), why, NULL);
	free(berpem);
	free(ber);
	OPENSSL_free(der);

	/* whitespace around is fine; so are CRLF line ends and a text not NUL-terminated */
	snprintf(buf, sizeof buf, "\n  %s\n\n \t", pem);
	assert_int_equal(imp_cert_parse(buf, strlen(buf), &info, why, sizeof why), IMP_OK);
	size_t o = 0;
	for(size_t i = 0; i < len; i++) {
		if(pem[i] == '\n') buf[o++] = '\r';
		buf[o++] = pem[i];
	}
	assert_int_equal(imp_cert_parse(buf, o, &info, why, sizeof why), IMP_OK);
	memcpy(buf, pem, len);
	memset(buf + len, 'Z', 100);
	assert_int_equal(imp_cert_parse(buf, len, &info, why, sizeof why), IMP_OK);

	/* the length cap, one under and one over: padding with whitespace */
	memcpy(buf, pem, len);
	memset(buf + len, ' ', IMP_PEM_MAX + 1 - len);
	assert_int_equal(imp_cert_parse(buf, IMP_PEM_MAX, &info, why, sizeof why), IMP_OK);
	REFUSED(imp_cert_parse(buf, IMP_PEM_MAX + 1, &info, why, sizeof why), why, "longer than");

	/* why may be NULL */
	assert_int_equal(imp_cert_parse("x", 1, &info, NULL, 0), IMP_ERR_INVALID);
	/* a short why is cut, not overrun */
	char tiny[8];
	assert_int_equal(imp_cert_parse("x", 1, &info, tiny, sizeof tiny), IMP_ERR_INVALID);
	assert_int_equal(strlen(tiny), sizeof tiny - 1);

	free(pem);
	X509_free(x);
	EVP_PKEY_free(k);
}

/* Subjects come out as UTF-8 for display. */
static void test_subject(void **state)
{
	(void)state;
	EVP_PKEY *k = ec_key("P-256");
	X509 *x = make_cert("J\xc3\xbcrgen, \"the\" device", k, NULL, NULL, DEVICE, -60, DAY_S);
	char *pem = cert_pem(x), why[256];
	imp_cert_info info;
	assert_int_equal(imp_cert_parse(pem, strlen(pem), &info, why, sizeof why), IMP_OK);
	assert_string_equal(info.subject, "CN=J\xc3\xbcrgen\\, \\\"the\\\" device");
	free(pem);
	X509_free(x);
	EVP_PKEY_free(k);
}

/* ---- issuing ---- */

static int has_ext(X509 *x, int nid) { return X509_get_ext_by_NID(x, nid, -1) >= 0; }

static void test_ca_create(void **state)
{
	(void)state;
	char *cert = NULL, *key = NULL, why[256];
	imp_cert_info info;
	uint64_t t = imp_now_ms();
	assert_int_equal(imp_ca_create("Test CA", 30, &cert, &key), IMP_OK);
	assert_non_null(strstr(key, "-----BEGIN PRIVATE KEY-----"));
	assert_int_equal(imp_cert_check_ca(cert, strlen(cert), t, &info, why, sizeof why), IMP_OK);
	assert_true(info.is_ca);
	assert_true(info.self_signed);
	assert_string_equal(info.subject, "CN=Test CA");
	assert_true(info.not_before_ms <= t - 290000 && info.not_before_ms >= t - 302000);
	assert_true(info.not_after_ms >= t + 30 * DAY_S * 1000 - 2000);
	assert_true(info.not_after_ms <= t + 30 * DAY_S * 1000 + 10000);

	X509 *x = read_cert(cert);
	BIO *b = BIO_new_mem_buf(key, -1);
	EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	assert_non_null(k);
	assert_int_equal(X509_check_private_key(x, k), 1);
	assert_true(EVP_PKEY_is_a(k, "EC"));
	assert_int_equal(EVP_PKEY_get_bits(k), 256);
	assert_true(X509_get_key_usage(x) & KU_KEY_CERT_SIGN);
	assert_true(has_ext(x, NID_subject_key_identifier));
	EVP_PKEY_free(k);
	X509_free(x);
	imp_free(cert);
	imp_key_pem_free(&key);
	assert_null(key);

	assert_int_equal(imp_ca_create("", 30, &cert, &key), IMP_ERR_INVALID);
	assert_int_equal(imp_ca_create("CA", 0, &cert, &key), IMP_ERR_INVALID);
	char long_name[66];
	memset(long_name, 'n', 65);
	long_name[65] = '\0';
	assert_int_equal(imp_ca_create(long_name, 30, &cert, &key), IMP_ERR_INVALID);
	assert_null(cert);
	assert_null(key);
	long_name[64] = '\0';
	assert_int_equal(imp_ca_create(long_name, 30, &cert, &key), IMP_OK);
	imp_free(cert);
	imp_key_pem_free(&key);
}

static void test_csr_sign(void **state)
{
	(void)state;
	char *ca = NULL, *cakey = NULL, *cert = NULL, *cert2 = NULL, why[256];
	assert_int_equal(imp_ca_create("Test CA", 30, &ca, &cakey), IMP_OK);
	EVP_PKEY *dk = ec_key("P-256");
	char *csr = make_csr(dk, dk, "evil", 1); /* asks for CN=evil, O=Evil Corp and CA:TRUE */
	uint64_t t = imp_now_ms();
	ERR_clear_error();
	assert_int_equal(imp_csr_sign(csr, strlen(csr), ca, cakey, "dev-123", 365, &cert, why, sizeof why), IMP_OK);
	assert_int_equal(ERR_peek_error(), 0);

	X509 *x = read_cert(cert), *cax = read_cert(ca);
	/* the subject is CN=dev-123 and nothing else */
	X509_NAME *nm = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_entry_count(nm), 1);
	char cn[64];
	assert_int_equal(X509_NAME_get_text_by_NID(nm, NID_commonName, cn, sizeof cn), 7);
	assert_string_equal(cn, "dev-123");
	assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(cax)), 0);
	/* CA:FALSE, digitalSignature, clientAuth only */
	uint32_t flags = X509_get_extension_flags(x);
	assert_true(flags & EXFLAG_BCONS);
	assert_false(flags & EXFLAG_CA);
	assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
	assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
	assert_int_equal(X509_check_purpose(x, X509_PURPOSE_SSL_CLIENT, 0), 1);
	/* the CSR's key, signed by the CA */
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), dk), 1);
	assert_int_equal(X509_verify(x, X509_get0_pubkey(cax)), 1);
	/* a random serial of up to 128 bits, and a fresh one each time */
	BIGNUM *s1 = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	assert_false(BN_is_negative(s1));
	assert_true(BN_num_bits(s1) > 64 && BN_num_bits(s1) <= 128);
	assert_int_equal(imp_csr_sign(csr, strlen(csr), ca, cakey, "dev-123", 365, &cert2, why, sizeof why), IMP_OK);
	X509 *x2 = read_cert(cert2);
	assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(x), X509_get0_serialNumber(x2)), 0);
	BN_free(s1);
	/* days of validity, backdated five minutes */
	imp_cert_info info;
	const char *cas[] = {ca};
	assert_int_equal(imp_cert_check_device(cert, strlen(cert), cas, 1, t, &info, why, sizeof why), IMP_OK);
	assert_false(info.self_signed);
	assert_true(info.not_before_ms <= t - 290000 && info.not_before_ms >= t - 302000);
	assert_true(info.not_after_ms >= t + 365 * DAY_S * 1000 - 2000);
	assert_true(info.not_after_ms <= t + 365 * DAY_S * 1000 + 10000);
	/* and nothing else than its CA vouches for it */
	REFUSED(imp_cert_check_device(cert, strlen(cert), NULL, 0, t, &info, why, sizeof why), why, NOT_CHAIN);

	/* P-384 and RSA-2048 keys are fine too */
	EVP_PKEY *keys[] = {ec_key("P-384"), EVP_RSA_gen(2048)};
	for(size_t i = 0; i < 2; i++) {
		char *c = make_csr(keys[i], keys[i], "x", 0), *out = NULL;
		assert_int_equal(imp_csr_sign(c, strlen(c), ca, cakey, "dev-9", 1, &out, why, sizeof why), IMP_OK);
		assert_int_equal(imp_cert_check_device(out, strlen(out), cas, 1, t, &info, why, sizeof why), IMP_OK);
		imp_free(out);
		free(c);
		EVP_PKEY_free(keys[i]);
	}

	/* cn and days are checked */
	char *none = NULL;
	REFUSED(imp_csr_sign(csr, strlen(csr), ca, cakey, "", 365, &none, why, sizeof why), why, NULL);
	REFUSED(imp_csr_sign(csr, strlen(csr), ca, cakey, "d", 0, &none, why, sizeof why), why, NULL);
	assert_null(none);

	/* a CA key that is not the CA certificate's: our failure, not the caller's */
	char *ca2 = NULL, *ca2key = NULL;
	assert_int_equal(imp_ca_create("Other CA", 30, &ca2, &ca2key), IMP_OK);
	ERR_clear_error();
	assert_int_equal(imp_csr_sign(csr, strlen(csr), ca, ca2key, "d", 1, &none, why, sizeof why), IMP_ERR_CRYPTO);
	assert_int_equal(imp_csr_sign(csr, strlen(csr), ca, "garbage", "d", 1, &none, why, sizeof why), IMP_ERR_CRYPTO);
	assert_null(none);
	assert_int_equal(ERR_peek_error(), 0);

	imp_free(ca2);
	imp_key_pem_free(&ca2key);
	X509_free(x);
	X509_free(x2);
	X509_free(cax);
	EVP_PKEY_free(dk);
	free(csr);
	imp_free(cert);
	imp_free(cert2);
	imp_free(ca);
	imp_key_pem_free(&cakey);
}

static void test_csr_refused(void **state)
{
	(void)state;
	char *ca = NULL, *cakey = NULL, *cert = NULL, why[256];
	assert_int_equal(imp_ca_create("Test CA", 30, &ca, &cakey), IMP_OK);
	EVP_PKEY *k = ec_key("P-256"), *other = ec_key("P-256");

	/* a signature byte flipped */
	X509_REQ *r = NULL;
	char *good = make_csr(k, k, "d", 0);
	BIO *b = BIO_new_mem_buf(good, -1);
	r = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
	BIO_free(b);
	unsigned char *der = NULL;
	int n = i2d_X509_REQ(r, &der);
	der[n - 1] ^= 0x01;
	char *flipped = der_pem("CERTIFICATE REQUEST", der, n);
	REFUSED(imp_csr_sign(flipped, strlen(flipped), ca, cakey, "d", 1, &cert, why, sizeof why), why, "signature");
	OPENSSL_free(der);
	X509_REQ_free(r);
	free(flipped);
	/* signed by another key than the one it carries */
	char *forged = make_csr(k, other, "d", 0);
	REFUSED(imp_csr_sign(forged, strlen(forged), ca, cakey, "d", 1, &cert, why, sizeof why), why, "signature");
	free(forged);

	/* keys: RSA under 2048 bits, other curves, other algorithms */
	EVP_PKEY *rsa1024 = EVP_RSA_gen(1024), *p521 = ec_key("P-521");
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_non_null(rsa1024);
	assert_non_null(ed);
	char *c = make_csr(rsa1024, rsa1024, "d", 0);
	REFUSED(imp_csr_sign(c, strlen(c), ca, cakey, "d", 1, &cert, why, sizeof why), why, "2048");
	free(c);
	c = make_csr(p521, p521, "d", 0);
	REFUSED(imp_csr_sign(c, strlen(c), ca, cakey, "d", 1, &cert, why, sizeof why), why, "P-256");
	free(c);
	c = make_csr(ed, ed, "d", 0);
	REFUSED(imp_csr_sign(c, strlen(c), ca, cakey, "d", 1, &cert, why, sizeof why), why, NULL);
	free(c);

	/* not a CSR */
	REFUSED(imp_csr_sign("SECRET-MARKER", 13, ca, cakey, "d", 1, &cert, why, sizeof why), why, NULL);
	assert_null(strstr(why, "MARKER"));
	REFUSED(imp_csr_sign(ca, strlen(ca), ca, cakey, "d", 1, &cert, why, sizeof why), why, NULL);
	REFUSED(imp_csr_sign(good, strlen(good) / 2, ca, cakey, "d", 1, &cert, why, sizeof why), why, NULL);
	assert_null(cert);

	free(good);
	EVP_PKEY_free(rsa1024);
	EVP_PKEY_free(p521);
	EVP_PKEY_free(ed);
	EVP_PKEY_free(k);
	EVP_PKEY_free(other);
	imp_free(ca);
	imp_key_pem_free(&cakey);
}

static void test_keypair_csr(void **state)
{
	(void)state;
	char *ca = NULL, *cakey = NULL, *key = NULL, *csr = NULL, *cert = NULL, why[256];
	assert_int_equal(imp_ca_create("Test CA", 30, &ca, &cakey), IMP_OK);
	assert_int_equal(imp_keypair_csr("dev-42", &key, &csr), IMP_OK);
	assert_non_null(strstr(key, "-----BEGIN PRIVATE KEY-----"));
	assert_non_null(strstr(csr, "-----BEGIN CERTIFICATE REQUEST-----"));
	assert_int_equal(imp_csr_sign(csr, strlen(csr), ca, cakey, "dev-42", 30, &cert, why, sizeof why), IMP_OK);
	const char *cas[] = {ca};
	imp_cert_info info;
	assert_int_equal(imp_cert_check_device(cert, strlen(cert), cas, 1, imp_now_ms(), &info, why, sizeof why), IMP_OK);
	assert_string_equal(info.subject, "CN=dev-42");
	/* the key is the certificate's */
	X509 *x = read_cert(cert);
	BIO *b = BIO_new_mem_buf(key, -1);
	EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	assert_int_equal(X509_check_private_key(x, k), 1);
	EVP_PKEY_free(k);
	X509_free(x);

	char *key2 = NULL, *csr2 = NULL;
	assert_int_equal(imp_keypair_csr("", &key2, &csr2), IMP_ERR_INVALID);
	assert_null(key2);
	assert_null(csr2);

	imp_free(cert);
	imp_free(csr);
	imp_key_pem_free(&key);
	imp_free(ca);
	imp_key_pem_free(&cakey);
}

/* Every allocation through imp_malloc fails in turn: each call either works or says
 * NOMEM, with nothing leaked (LeakSanitizer) and nothing handed out. */
static void test_allocation_failures(void **state)
{
	(void)state;
	char *ca = NULL, *cakey = NULL, *key = NULL, *csr = NULL, *cert = NULL, why[256];
	assert_int_equal(imp_ca_create("Test CA", 30, &ca, &cakey), IMP_OK);
	assert_int_equal(imp_keypair_csr("d", &key, &csr), IMP_OK);
	for(long n = 0;; n++) {
		char *c = NULL, *k = NULL;
		imp_mem_fail_after(n);
		imp_err r1 = imp_ca_create("CA", 1, &c, &k);
		imp_mem_fail_after(-1);
		if(r1 == IMP_OK) {
			imp_free(c);
			imp_key_pem_free(&k);
			break;
		}
		assert_int_equal(r1, IMP_ERR_NOMEM);
		assert_null(c);
		assert_null(k);
	}
	for(long n = 0;; n++) {
		char *k = NULL, *r = NULL;
		imp_mem_fail_after(n);
		imp_err rc = imp_keypair_csr("d", &k, &r);
		imp_mem_fail_after(-1);
		if(rc == IMP_OK) {
			imp_free(r);
			imp_key_pem_free(&k);
			break;
		}
		assert_int_equal(rc, IMP_ERR_NOMEM);
		assert_null(k);
		assert_null(r);
	}
	for(long n = 0;; n++) {
		imp_mem_fail_after(n);
		imp_err rc = imp_csr_sign(csr, strlen(csr), ca, cakey, "d", 1, &cert, why, sizeof why);
		imp_mem_fail_after(-1);
		if(rc == IMP_OK) break;
		assert_int_equal(rc, IMP_ERR_NOMEM);
		assert_null(cert);
	}
	imp_free(cert);
	imp_free(csr);
	imp_key_pem_free(&key);
	imp_free(ca);
	imp_key_pem_free(&cakey);
}

/* ---- the account's device CA ---- */

static char data_dir[64];

static int make_data_dir(void **state)
{
	(void)state;
	snprintf(data_dir, sizeof data_dir, "/tmp/imp-unit-x509-XXXXXX");
	return mkdtemp(data_dir) ? 0 : -1;
}

static int remove_data_dir(void **state)
{
	(void)state;
	imp_mem_fail_after(-1);
	unit_remove_tree(data_dir);
	return 0;
}

static mode_t mode_of(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

static void ca_path(char *out, size_t n, const char *id, const char *ext)
{
	snprintf(out, n, "%s/ca/%s%s", data_dir, id, ext);
}

static char *fingerprint_file(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char text[IMP_PEM_MAX + 1];
	size_t n = fread(text, 1, IMP_PEM_MAX, f);
	fclose(f);
	imp_cert_info info;
	char why[256];
	assert_int_equal(imp_cert_parse(text, n, &info, why, sizeof why), IMP_OK);
	return strdup(info.fingerprint);
}

static void test_devca_ensure(void **state)
{
	(void)state;
	imp_id acct;
	char crt[256], key[256], dir[256], why[256];
	assert_int_equal(imp_id_new(&acct), IMP_OK);
	ca_path(crt, sizeof crt, acct.s, ".crt");
	ca_path(key, sizeof key, acct.s, ".key");
	snprintf(dir, sizeof dir, "%s/ca", data_dir);

	mode_t old = umask(077); /* the modes are set, not left to the umask */
	assert_int_equal(imp_devca_ensure(data_dir, acct.s), IMP_OK);
	umask(old);
	assert_int_equal(mode_of(dir), 0700);
	assert_int_equal(mode_of(key), 0600);
	assert_int_equal(mode_of(crt), 0644);
	char *fp = fingerprint_file(crt);

	/* idempotent */
	assert_int_equal(imp_devca_ensure(data_dir, acct.s), IMP_OK);
	char *fp2 = fingerprint_file(crt);
	assert_string_equal(fp, fp2);

	/* what load returns is those files, a CA named after the account, with its key */
	char *cert = NULL, *cakey = NULL, *dkey = NULL, *csr = NULL, *dcert = NULL, want[128];
	assert_int_equal(imp_devca_load(data_dir, acct.s, &cert, &cakey), IMP_OK);
	imp_cert_info info;
	uint64_t t = imp_now_ms();
	assert_int_equal(imp_cert_check_ca(cert, strlen(cert), t, &info, why, sizeof why), IMP_OK);
	assert_string_equal(info.fingerprint, fp);
	snprintf(want, sizeof want, "CN=imprint device CA %s", acct.s);
	assert_string_equal(info.subject, want);
	assert_true(info.not_after_ms > t + (uint64_t)3651 * DAY_S * 1000);
	assert_int_equal(imp_keypair_csr("dev", &dkey, &csr), IMP_OK);
	assert_int_equal(imp_csr_sign(csr, strlen(csr), cert, cakey, "dev", 1, &dcert, why, sizeof why), IMP_OK);

	/* the same account in capitals is the same CA */
	char upper[IMP_UUID_LEN + 1], *cert_u = NULL, *key_u = NULL;
	for(int i = 0; i <= IMP_UUID_LEN; i++) upper[i] = (char)toupper((unsigned char)acct.s[i]);
	assert_int_equal(imp_devca_load(data_dir, upper, &cert_u, &key_u), IMP_OK);
	assert_string_equal(cert_u, cert);

	/* what is not an account id is refused */
	char *c = NULL, *k = NULL;
	assert_int_equal(imp_devca_ensure(data_dir, "../../etc/passwd"), IMP_ERR_INVALID);
	assert_int_equal(imp_devca_load(data_dir, "", &c, &k), IMP_ERR_INVALID);
	assert_null(c);
	assert_null(k);

	imp_free(cert_u);
	imp_key_pem_free(&key_u);
	imp_free(dcert);
	imp_free(csr);
	imp_key_pem_free(&dkey);
	imp_free(cert);
	imp_key_pem_free(&cakey);
	free(fp);
	free(fp2);
}

static void test_devca_load_creates(void **state)
{
	(void)state;
	char fresh[256], crt[512], why[256], *cert = NULL, *key = NULL;
	imp_id acct;
	assert_int_equal(imp_id_new(&acct), IMP_OK);
	snprintf(fresh, sizeof fresh, "%s/fresh", data_dir);
	assert_int_equal(mkdir(fresh, 0700), 0);
	assert_int_equal(imp_devca_load(fresh, acct.s, &cert, &key), IMP_OK);
	imp_cert_info info;
	assert_int_equal(imp_cert_check_ca(cert, strlen(cert), imp_now_ms(), &info, why, sizeof why), IMP_OK);
	snprintf(crt, sizeof crt, "%s/ca/%s.crt", fresh, acct.s);
	assert_int_equal(mode_of(crt), 0644);
	char *fp = fingerprint_file(crt);
	assert_string_equal(fp, info.fingerprint);
	free(fp);
	imp_free(cert);
	imp_key_pem_free(&key);
	/* a data directory that does not exist */
	snprintf(fresh, sizeof fresh, "%s/missing/deeper", data_dir);
	assert_int_equal(imp_devca_load(fresh, acct.s, &cert, &key), IMP_ERR_IO);
	assert_null(cert);
}

/* What a crash can leave behind: a temporary file, or a new key whose certificate never
 * got renamed into place. Neither stops the next call. A certificate without its key is
 * damage, not absence, and is not papered over with a new CA. */
static void test_devca_crash_remains(void **state)
{
	(void)state;
	imp_id acct;
	char crt[256], key[256], tmp[256], *cert = NULL, *k = NULL;
	assert_int_equal(imp_id_new(&acct), IMP_OK);
	ca_path(crt, sizeof crt, acct.s, ".crt");
	ca_path(key, sizeof key, acct.s, ".key");
	ca_path(tmp, sizeof tmp, acct.s, ".key.tmp");
	assert_int_equal(imp_devca_ensure(data_dir, acct.s), IMP_OK); /* makes DATA/ca */
	assert_int_equal(unlink(crt), 0);
	FILE *f = fopen(tmp, "w");
	fputs("half a key", f);
	fclose(f);
	assert_int_equal(imp_devca_load(data_dir, acct.s, &cert, &k), IMP_OK);
	assert_int_equal(access(tmp, F_OK), -1);
	imp_free(cert);
	imp_key_pem_free(&k);

	assert_int_equal(unlink(key), 0);
	assert_int_equal(imp_devca_ensure(data_dir, acct.s), IMP_ERR_IO);
	assert_int_equal(imp_devca_load(data_dir, acct.s, &cert, &k), IMP_ERR_IO);
	assert_null(cert);
	assert_null(k);
}

#define RACERS 8

typedef struct {
	pthread_barrier_t *start;
	const char *dir, *account;
	char *cert, *key;
	imp_err rc;
} racer;

static void *race_load(void *arg)
{
	racer *r = arg;
	pthread_barrier_wait(r->start);
	r->rc = imp_devca_load(r->dir, r->account, &r->cert, &r->key);
	return NULL;
}

/* Threads that find the CA missing at once end up with one CA between them. */
static void test_devca_race(void **state)
{
	(void)state;
	for(int round = 0; round < 4; round++) {
		imp_id acct;
		char dir[256];
		assert_int_equal(imp_id_new(&acct), IMP_OK);
		snprintf(dir, sizeof dir, "%s/race%d", data_dir, round);
		assert_int_equal(mkdir(dir, 0700), 0);
		pthread_barrier_t start;
		pthread_barrier_init(&start, NULL, RACERS);
		pthread_t th[RACERS];
		racer r[RACERS];
		for(int i = 0; i < RACERS; i++) {
			r[i] = (racer){.start = &start, .dir = dir, .account = acct.s};
			assert_int_equal(pthread_create(&th[i], NULL, race_load, &r[i]), 0);
		}
		for(int i = 0; i < RACERS; i++) pthread_join(th[i], NULL);
		pthread_barrier_destroy(&start);
		for(int i = 0; i < RACERS; i++) {
			assert_int_equal(r[i].rc, IMP_OK);
			assert_string_equal(r[i].cert, r[0].cert);
			assert_string_equal(r[i].key, r[0].key);
		}
		/* and on disk, that CA and no temporary files */
		char crt[512], cadir[300];
		snprintf(crt, sizeof crt, "%s/ca/%s.crt", dir, acct.s);
		char *fp = fingerprint_file(crt);
		imp_cert_info info;
		char why[256];
		assert_int_equal(imp_cert_parse(r[0].cert, strlen(r[0].cert), &info, why, sizeof why), IMP_OK);
		assert_string_equal(fp, info.fingerprint);
		free(fp);
		snprintf(cadir, sizeof cadir, "%s/ca", dir);
		DIR *d = opendir(cadir);
		struct dirent *de;
		int files = 0;
		while((de = readdir(d)))
			if(de->d_name[0] != '.') files++;
		closedir(d);
		assert_int_equal(files, 2);
		for(int i = 0; i < RACERS; i++) {
			imp_free(r[i].cert);
			imp_key_pem_free(&r[i].key);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_self_signed_device),
		cmocka_unit_test(test_fingerprint),
		cmocka_unit_test(test_ca_signed_device),
		cmocka_unit_test(test_intermediate_chain),
		cmocka_unit_test(test_validity),
		cmocka_unit_test(test_ca_versus_device),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_subject),
		cmocka_unit_test(test_ca_create),
		cmocka_unit_test(test_csr_sign),
		cmocka_unit_test(test_csr_refused),
		cmocka_unit_test(test_keypair_csr),
		cmocka_unit_test(test_allocation_failures),
		cmocka_unit_test(test_devca_ensure),
		cmocka_unit_test(test_devca_load_creates),
		cmocka_unit_test(test_devca_crash_remains),
		cmocka_unit_test(test_devca_race),
	};
	return cmocka_run_group_tests(tests, make_data_dir, remove_data_dir);
}
