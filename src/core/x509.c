#include "core/x509.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/crypto.h"
#include "core/mem.h"
#include "core/timeutil.h"

#define BACKDATE_S (5 * 60) /* tolerates devices whose clocks run a little behind */
#define DAYS_MAX   36500
#define CN_MAX     64       /* ub-common-name of RFC 5280 */

#define NOT_CHAINED "not self-signed nor signed by a certificate authority of the account"

__attribute__((format(printf, 3, 4))) static imp_err refuse(char *why, size_t whylen, const char *fmt, ...)
{
	if(why && whylen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return IMP_ERR_INVALID;
}

static void why_clear(char *why, size_t whylen)
{
	if(why && whylen) why[0] = '\0';
}

/* A PEM passphrase callback that has none. OpenSSL's default would prompt on the terminal
 * when a PEM block claims to be encrypted. */
static int no_password(char *buf, int size, int rwflag, void *u) { return -1; }

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static int all_space(const char *p, size_t n)
{
	for(size_t i = 0; i < n; i++)
		if(!is_space(p[i])) return 0;
	return 1;
}

/* Reads the one PEM block in text (len bytes), labelled one of labels (NULL-terminated),
 * with nothing but whitespace around it. *der (OPENSSL_free) receives its bytes. what names
 * the thing in reasons ("certificate"). */
static imp_err pem_block(const char *text, size_t len, const char *const *labels, const char *what,
                         unsigned char **der, long *derlen, char *why, size_t whylen)
{
	char *name = NULL, *header = NULL;
	BIO *b = NULL;
	imp_err rc = IMP_OK;
	*der = NULL;
	if(len > IMP_PEM_MAX) return refuse(why, whylen, "the %s is longer than %d bytes", what, IMP_PEM_MAX);
	/* PEM is read line by line as C strings: a NUL would hide what follows it. */
	if(len > 0 && memchr(text, '\0', len)) return refuse(why, whylen, "the %s contains a NUL byte", what);
	while(len > 0 && is_space(*text)) {
		text++;
		len--;
	}
	if(len == 0) return refuse(why, whylen, "the %s is empty", what);
	if(len < 11 || memcmp(text, "-----BEGIN ", 11) != 0)
		return refuse(why, whylen, "the %s is not PEM (it should start with -----BEGIN %s-----)", what, labels[0]);
	if(!(b = BIO_new_mem_buf(text, (int)len))) return IMP_ERR_NOMEM;
	if(PEM_read_bio(b, &name, &header, der, derlen) != 1) {
		rc = refuse(why, whylen, "the %s is not valid PEM (truncated or damaged)", what);
		goto out;
	}
	int known = 0;
	for(size_t i = 0; labels[i]; i++) known |= strcmp(name, labels[i]) == 0;
	if(!known) {
		rc = refuse(why, whylen, "a PEM %s (-----BEGIN %s-----) was expected, not another kind of PEM", what,
		            labels[0]);
		goto out;
	}
	if(header[0]) {
		rc = refuse(why, whylen, "the %s has PEM headers (encrypted PEM is not accepted)", what);
		goto out;
	}
	char *rest;
	long left = BIO_get_mem_data(b, &rest);
	if(left > 0 && !all_space(rest, (size_t)left))
		rc = refuse(why, whylen, "there is more after the %s (a second PEM block or text): send exactly one", what);
out:
	if(rc) {
		OPENSSL_free(*der);
		*der = NULL;
	}
	OPENSSL_free(name);
	OPENSSL_free(header);
	BIO_free(b);
	return rc;
}

/* Reads one PEM certificate into *out (X509_free). Its DER must be canonical, so that the
 * fingerprint taken here is the one anything else (the broker) takes of the same bytes. */
static imp_err cert_read(const char *pem, size_t len, X509 **out, char *why, size_t whylen)
{
	static const char *const labels[] = {"CERTIFICATE", NULL};
	unsigned char *der = NULL, *again = NULL;
	long n = 0;
	*out = NULL;
	imp_err rc = pem_block(pem, len, labels, "certificate", &der, &n, why, whylen);
	if(rc) return rc;
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, n);
	if(!x || p != der + n) {
		rc = refuse(why, whylen, "the certificate is not a valid X.509 certificate");
		goto out;
	}
	int m = i2d_X509(x, &again);
	if(m != n || memcmp(again, der, (size_t)n) != 0) {
		rc = refuse(why, whylen, "the certificate is not DER-encoded");
		goto out;
	}
	if(X509_get_extension_flags(x) & EXFLAG_INVALID) {
		rc = refuse(why, whylen, "the certificate has invalid or duplicated extensions");
		goto out;
	}
	*out = x;
	x = NULL;
out:
	X509_free(x);
	OPENSSL_free(again);
	OPENSSL_free(der);
	return rc;
}

/* Unix ms of t; dates before 1970 give 0. */
static int time_ms(const ASN1_TIME *t, uint64_t *ms)
{
	struct tm tm;
	if(!t || ASN1_TIME_to_tm(t, &tm) != 1) return -1;
	time_t s = timegm(&tm);
	*ms = s > 0 ? (uint64_t)s * 1000u : 0;
	return 0;
}

/* Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF), as JSON
 * libraries want it. */
static int utf8_valid(const unsigned char *s, size_t n)
{
	for(size_t i = 0; i < n;) {
		unsigned c = s[i], k, cp;
		if(c < 0x80) {
			i++;
			continue;
		}
		if(c >= 0xc2 && c <= 0xdf) k = 1;
		else if((c & 0xf0) == 0xe0) k = 2;
		else if(c >= 0xf0 && c <= 0xf4) k = 3;
		else return 0;
		if(n - i <= k) return 0;
		cp = c & (0x3fu >> k);
		for(unsigned j = 1; j <= k; j++) {
			if((s[i + j] & 0xc0) != 0x80) return 0;
			cp = cp << 6 | (s[i + j] & 0x3fu);
		}
		if(k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) return 0;
		if(k == 3 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
		i += k + 1;
	}
	return 1;
}

/* The subject as RFC 2253 text in out (cap bytes), cut at a character boundary. Printed as
 * UTF-8 when that gives valid UTF-8 (it ends up in JSON), else with bytes escaped. */
static void subject_line(X509 *x, char *out, size_t cap)
{
	static const unsigned long flags[] = {XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB, XN_FLAG_RFC2253};
	out[0] = '\0';
	for(size_t f = 0; f < 2; f++) {
		BIO *b = BIO_new(BIO_s_mem());
		char *p;
		long n;
		if(!b) return;
		if(X509_NAME_print_ex(b, X509_get_subject_name(x), 0, flags[f]) < 0 || (n = BIO_get_mem_data(b, &p)) < 0 ||
		   !utf8_valid((const unsigned char *)p, (size_t)n)) {
			BIO_free(b);
			continue;
		}
		size_t len = (size_t)n;
		if(len >= cap) {
			len = cap - 1;
			while(len > 0 && ((unsigned char)p[len] & 0xc0) == 0x80) len--;
		}
		memcpy(out, p, len);
		out[len] = '\0';
		BIO_free(b);
		return;
	}
}

static imp_err cert_info(X509 *x, imp_cert_info *out, char *why, size_t whylen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	memset(out, 0, sizeof *out);
	if(X509_digest(x, EVP_sha256(), md, &mdlen) != 1 || mdlen != IMP_FINGERPRINT_LEN / 2) return IMP_ERR_CRYPTO;
	imp_hex(md, mdlen, out->fingerprint);
	if(time_ms(X509_get0_notBefore(x), &out->not_before_ms) || time_ms(X509_get0_notAfter(x), &out->not_after_ms))
		return refuse(why, whylen, "the certificate's validity dates cannot be read");
	out->is_ca = (X509_get_extension_flags(x) & EXFLAG_CA) != 0;
	EVP_PKEY *own = X509_get0_pubkey(x);
	out->self_signed = X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(x)) == 0 && own &&
	                   X509_verify(x, own) == 1;
	subject_line(x, out->subject, sizeof out->subject);
	return IMP_OK;
}

static imp_err cert_load(const char *pem, size_t len, X509 **x, imp_cert_info *info, char *why, size_t whylen)
{
	imp_err rc = cert_read(pem, len, x, why, whylen);
	if(!rc && (rc = cert_info(*x, info, why, whylen))) {
		X509_free(*x);
		*x = NULL;
	}
	return rc;
}

static imp_err check_validity(const imp_cert_info *info, uint64_t now_ms, char *why, size_t whylen)
{
	char iso[IMP_ISO_LEN + 1];
	if(now_ms < info->not_before_ms) {
		imp_iso8601(info->not_before_ms, iso);
		return refuse(why, whylen, "the certificate is not valid yet (notBefore %s)", iso);
	}
	if(now_ms > info->not_after_ms) {
		imp_iso8601(info->not_after_ms, iso);
		return refuse(why, whylen, "the certificate has expired (notAfter %s)", iso);
	}
	return IMP_OK;
}

/* IMP_OK when x verifies against the CAs at now_ms, each CA a trust anchor of its own
 * (PARTIAL_CHAIN), so an account can register an intermediate without its root. Only CA
 * certificates are taken: with PARTIAL_CHAIN, a leaf found among the anchors is trusted as
 * it stands. */
static imp_err signed_by(X509 *x, const char *const *cas, size_t n, uint64_t now_ms)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	imp_err rc = IMP_ERR_INVALID;
	size_t added = 0;
	if(!store || !ctx) {
		rc = IMP_ERR_NOMEM;
		goto out;
	}
	for(size_t i = 0; i < n; i++) {
		X509 *ca = NULL;
		if(cas[i] && !cert_read(cas[i], strnlen(cas[i], IMP_PEM_MAX + 1), &ca, NULL, 0) &&
		   (X509_get_extension_flags(ca) & EXFLAG_CA))
			added += X509_STORE_add_cert(store, ca) == 1;
		X509_free(ca);
	}
	if(!added || X509_STORE_CTX_init(ctx, store, x, NULL) != 1) goto out;
	X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
	X509_VERIFY_PARAM_set_time(param, (time_t)(now_ms / 1000));
	if(X509_verify_cert(ctx) == 1) rc = IMP_OK;
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return rc;
}

imp_err imp_cert_parse(const char *pem, size_t len, imp_cert_info *out, char *why, size_t whylen)
{
	X509 *x = NULL;
	ERR_set_mark();
	why_clear(why, whylen);
	imp_err rc = cert_load(pem, len, &x, out, why, whylen);
	X509_free(x);
	ERR_pop_to_mark();
	return rc;
}

imp_err imp_cert_check_device(const char *pem, size_t len, const char *const *cas, size_t n, uint64_t now_ms,
                              imp_cert_info *info, char *why, size_t whylen)
{
	X509 *x = NULL;
	ERR_set_mark();
	why_clear(why, whylen);
	imp_err rc = cert_load(pem, len, &x, info, why, whylen);
	if(rc) goto out;
	if(info->is_ca) {
		rc = refuse(why, whylen, "the certificate is a certificate authority (CA:TRUE), not a device certificate");
		goto out;
	}
	if((rc = check_validity(info, now_ms, why, whylen)) || info->self_signed) goto out;
	if((rc = signed_by(x, cas, n, now_ms)) == IMP_ERR_INVALID) refuse(why, whylen, NOT_CHAINED);
out:
	X509_free(x);
	ERR_pop_to_mark();
	return rc;
}

imp_err imp_cert_check_ca(const char *pem, size_t len, uint64_t now_ms, imp_cert_info *info, char *why, size_t whylen)
{
	X509 *x = NULL;
	ERR_set_mark();
	why_clear(why, whylen);
	imp_err rc = cert_load(pem, len, &x, info, why, whylen);
	if(rc) goto out;
	if(!info->is_ca) {
		rc = refuse(why, whylen, "the certificate is not a certificate authority (basicConstraints CA:TRUE)");
		goto out;
	}
	if((rc = check_validity(info, now_ms, why, whylen))) goto out;
	if((X509_get_extension_flags(x) & EXFLAG_KUSAGE) && !(X509_get_key_usage(x) & KU_KEY_CERT_SIGN))
		rc = refuse(why, whylen, "the certificate authority's keyUsage does not allow signing certificates");
out:
	X509_free(x);
	ERR_pop_to_mark();
	return rc;
}

/* ---- issuing ---- */

static int name_ok(const char *cn) { return cn && cn[0] && strlen(cn) <= CN_MAX; }

/* Copies what the memory BIO b holds into a NUL-terminated buffer from imp_malloc. */
static imp_err bio_text(BIO *b, char **out)
{
	char *p;
	long n = BIO_get_mem_data(b, &p);
	if(n <= 0) return IMP_ERR_CRYPTO;
	char *s = imp_malloc((size_t)n + 1);
	if(!s) return IMP_ERR_NOMEM;
	memcpy(s, p, (size_t)n);
	s[n] = '\0';
	*out = s;
	return IMP_OK;
}

/* A private key as PKCS#8 PEM in *out (imp_key_pem_free). The memory BIO clears its buffer
 * when freed. */
static imp_err key_text(EVP_PKEY *key, char **out)
{
	BIO *b = BIO_new(BIO_s_mem());
	if(!b) return IMP_ERR_NOMEM;
	imp_err rc = IMP_ERR_CRYPTO;
	if(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1) rc = bio_text(b, out);
	BIO_free(b);
	return rc;
}

static imp_err cert_text(X509 *x, char **out)
{
	BIO *b = BIO_new(BIO_s_mem());
	if(!b) return IMP_ERR_NOMEM;
	imp_err rc = IMP_ERR_CRYPTO;
	if(PEM_write_bio_X509(b, x) == 1) rc = bio_text(b, out);
	BIO_free(b);
	return rc;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	int ok = ext && X509_add_ext(x, ext, -1) == 1;
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

/* The part every certificate imprint issues shares: v3, a random positive 128-bit serial,
 * days of validity from 5 minutes ago, subject CN=cn, public key pub. */
/* x and key as PEM texts; on failure neither is left (the key scrubbed). */
static imp_err pair_text(X509 *x, EVP_PKEY *key, char **cert_pem, char **key_pem)
{
	imp_err rc = cert_text(x, cert_pem);
	if(!rc && (rc = key_text(key, key_pem))) {
		imp_free(*cert_pem);
		*cert_pem = NULL;
	}
	return rc;
}

static imp_err cert_body(X509 *x, const char *cn, int days, EVP_PKEY *pub)
{
	unsigned char r[16];
	if(imp_random(r, sizeof r)) return IMP_ERR_CRYPTO;
	BIGNUM *serial = BN_bin2bn(r, sizeof r, NULL);
	int ok = serial && !BN_is_zero(serial) && BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x));
	BN_free(serial);
	ok = ok && X509_set_version(x, X509_VERSION_3) == 1 &&
	     X509_gmtime_adj(X509_getm_notBefore(x), -BACKDATE_S) &&
	     X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) &&
	     X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName, MBSTRING_UTF8,
	                                (const unsigned char *)cn, -1, -1, 0) == 1 &&
	     X509_set_pubkey(x, pub) == 1;
	return ok ? IMP_OK : IMP_ERR_CRYPTO;
}

imp_err imp_ca_create(const char *common_name, int days, char **cert_pem, char **key_pem)
{
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	imp_err rc = IMP_OK;
	*cert_pem = *key_pem = NULL;
	if(!name_ok(common_name) || days < 1 || days > DAYS_MAX) return IMP_ERR_INVALID;
	ERR_set_mark();
	if(!(key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) || !(x = X509_new())) {
		rc = IMP_ERR_CRYPTO;
		goto out;
	}
	if((rc = cert_body(x, common_name, days, key))) goto out;
	if(X509_set_issuer_name(x, X509_get_subject_name(x)) != 1 ||
	   add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") ||
	   add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
	   add_ext(x, x, NID_subject_key_identifier, "hash") ||
	   add_ext(x, x, NID_authority_key_identifier, "keyid:always") || X509_sign(x, key, EVP_sha256()) <= 0) {
		rc = IMP_ERR_CRYPTO;
		goto out;
	}
	rc = pair_text(x, key, cert_pem, key_pem);
out:
	X509_free(x);
	EVP_PKEY_free(key);
	ERR_pop_to_mark();
	return rc;
}

static imp_err csr_read(const char *pem, size_t len, X509_REQ **out, char *why, size_t whylen)
{
	static const char *const labels[] = {"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST", NULL};
	unsigned char *der = NULL;
	long n = 0;
	*out = NULL;
	imp_err rc = pem_block(pem, len, labels, "CSR", &der, &n, why, whylen);
	if(rc) return rc;
	const unsigned char *p = der;
	X509_REQ *req = d2i_X509_REQ(NULL, &p, n);
	if(!req || p != der + n) {
		X509_REQ_free(req);
		rc = refuse(why, whylen, "the CSR is not a valid PKCS#10 certificate request");
	} else *out = req;
	OPENSSL_free(der);
	return rc;
}

static imp_err key_allowed(EVP_PKEY *key, char *why, size_t whylen)
{
	if(EVP_PKEY_is_a(key, "EC")) {
		char group[64];
		size_t n = 0;
		if(EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &n) == 1 &&
		   (strcmp(group, "prime256v1") == 0 || strcmp(group, "secp384r1") == 0))
			return IMP_OK;
		return refuse(why, whylen, "the CSR's EC key is not on P-256 or P-384");
	}
	if(EVP_PKEY_is_a(key, "RSA")) {
		if(EVP_PKEY_get_bits(key) >= 2048) return IMP_OK;
		return refuse(why, whylen, "the CSR's RSA key is shorter than 2048 bits");
	}
	return refuse(why, whylen, "the CSR's key is neither EC (P-256, P-384) nor RSA (2048 bits or more)");
}

/* The account's CA from its PEMs; IMP_ERR_CRYPTO when either does not load or they do not
 * belong together (those are ours, not the caller's input). */
static imp_err ca_read(const char *cert_pem, const char *key_pem, X509 **ca, EVP_PKEY **key)
{
	BIO *b = BIO_new_mem_buf(cert_pem, -1);
	*ca = b ? PEM_read_bio_X509(b, NULL, no_password, NULL) : NULL;
	BIO_free(b);
	b = BIO_new_mem_buf(key_pem, -1);
	*key = b ? PEM_read_bio_PrivateKey(b, NULL, no_password, NULL) : NULL;
	BIO_free(b);
	return *ca && *key && X509_check_private_key(*ca, *key) == 1 ? IMP_OK : IMP_ERR_CRYPTO;
}

imp_err imp_csr_sign(const char *csr_pem, size_t len, const char *ca_cert_pem, const char *ca_key_pem, const char *cn,
                     int days, char **cert_pem, char *why, size_t whylen)
{
	X509_REQ *req = NULL;
	X509 *ca = NULL, *x = NULL;
	EVP_PKEY *ca_key = NULL;
	imp_err rc;
	*cert_pem = NULL;
	why_clear(why, whylen);
	if(!name_ok(cn)) return refuse(why, whylen, "the common name must be 1 to %d bytes", CN_MAX);
	if(days < 1 || days > DAYS_MAX) return refuse(why, whylen, "the validity must be 1 to %d days", DAYS_MAX);
	ERR_set_mark();
	if((rc = csr_read(csr_pem, len, &req, why, whylen))) goto out;
	EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
	if(!pub || X509_REQ_verify(req, pub) != 1) {
		rc = refuse(why, whylen, "the CSR's signature does not verify with its own key");
		goto out;
	}
	if((rc = key_allowed(pub, why, whylen)) || (rc = ca_read(ca_cert_pem, ca_key_pem, &ca, &ca_key))) goto out;
	if(!(x = X509_new())) {
		rc = IMP_ERR_NOMEM;
		goto out;
	}
	if((rc = cert_body(x, cn, days, pub))) goto out;
	if(X509_set_issuer_name(x, X509_get_subject_name(ca)) != 1 ||
	   add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") ||
	   add_ext(x, ca, NID_key_usage, "critical,digitalSignature") ||
	   add_ext(x, ca, NID_ext_key_usage, "clientAuth") || add_ext(x, ca, NID_subject_key_identifier, "hash") ||
	   add_ext(x, ca, NID_authority_key_identifier, "keyid") || X509_sign(x, ca_key, EVP_sha256()) <= 0) {
		rc = IMP_ERR_CRYPTO;
		goto out;
	}
	rc = cert_text(x, cert_pem);
out:
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	X509_REQ_free(req);
	ERR_pop_to_mark();
	return rc;
}

#define SAN_NAMES_MAX 16
#define SAN_NAME_MAX  253 /* longest DNS name */

/* "DNS:name" or "IP:address" for each name, comma-separated, into out. A name with a
 * character that would change the meaning of the list (a comma, a colon outside an address,
 * whitespace or a control character) is refused. */
static imp_err san_list(const char *const *names, size_t n, char *out, size_t cap)
{
	size_t used = 0;
	out[0] = '\0';
	if(n < 1 || n > SAN_NAMES_MAX) return IMP_ERR_INVALID;
	for(size_t i = 0; i < n; i++) {
		const char *name = names[i];
		size_t len = name ? strlen(name) : 0;
		if(len < 1 || len > SAN_NAME_MAX) return IMP_ERR_INVALID;
		unsigned char addr[16];
		int ip = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
		for(size_t j = 0; !ip && j < len; j++) {
			unsigned char c = (unsigned char)name[j];
			if(!(isalnum(c) || c == '-' || c == '.' || c == '_' || c == '*')) return IMP_ERR_INVALID;
		}
		int w = snprintf(out + used, cap - used, "%s%s:%s", i ? "," : "", ip ? "IP" : "DNS", name);
		if(w < 0 || (size_t)w >= cap - used) return IMP_ERR_INVALID;
		used += (size_t)w;
	}
	return IMP_OK;
}

imp_err imp_server_cert_create(const char *ca_cert_pem, const char *ca_key_pem, const char *const *names, size_t n,
                               int days, char **cert_pem, char **key_pem)
{
	X509 *ca = NULL, *x = NULL;
	EVP_PKEY *ca_key = NULL, *key = NULL;
	char san[SAN_NAMES_MAX * (SAN_NAME_MAX + 6)];
	imp_err rc;
	*cert_pem = *key_pem = NULL;
	if(days < 1 || days > DAYS_MAX || (rc = san_list(names, n, san, sizeof san))) return IMP_ERR_INVALID;
	const char *cn = name_ok(names[0]) ? names[0] : "imprint server";
	ERR_set_mark();
	if((rc = ca_read(ca_cert_pem, ca_key_pem, &ca, &ca_key))) goto out;
	if(!(key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) || !(x = X509_new())) {
		rc = IMP_ERR_CRYPTO;
		goto out;
	}
	if((rc = cert_body(x, cn, days, key))) goto out;
	if(X509_set_issuer_name(x, X509_get_subject_name(ca)) != 1 ||
	   add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") ||
	   add_ext(x, ca, NID_key_usage, "critical,digitalSignature") ||
	   add_ext(x, ca, NID_ext_key_usage, "serverAuth") || add_ext(x, ca, NID_subject_alt_name, san) ||
	   add_ext(x, ca, NID_subject_key_identifier, "hash") || add_ext(x, ca, NID_authority_key_identifier, "keyid") ||
	   X509_sign(x, ca_key, EVP_sha256()) <= 0) {
		rc = IMP_ERR_CRYPTO;
		goto out;
	}
	rc = pair_text(x, key, cert_pem, key_pem);
out:
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(key);
	ERR_pop_to_mark();
	return rc;
}

imp_err imp_keypair_csr(const char *cn, char **key_pem, char **csr_pem)
{
	EVP_PKEY *key = NULL;
	X509_REQ *req = NULL;
	BIO *b = NULL;
	imp_err rc = IMP_OK;
	*key_pem = *csr_pem = NULL;
	if(!name_ok(cn)) return IMP_ERR_INVALID;
	ERR_set_mark();
	if(!(key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) || !(req = X509_REQ_new()) ||
	   !(b = BIO_new(BIO_s_mem()))) {
		rc = IMP_ERR_CRYPTO;
		goto out;
	}
	if(X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 ||
	   X509_NAME_add_entry_by_NID(X509_REQ_get_subject_name(req), NID_commonName, MBSTRING_UTF8,
	                              (const unsigned char *)cn, -1, -1, 0) != 1 ||
	   X509_REQ_set_pubkey(req, key) != 1 || X509_REQ_sign(req, key, EVP_sha256()) <= 0 ||
	   PEM_write_bio_X509_REQ(b, req) != 1) {
		rc = IMP_ERR_CRYPTO;
		goto out;
	}
	if((rc = bio_text(b, csr_pem)) || (rc = key_text(key, key_pem))) goto out;
out:
	if(rc) {
		imp_free(*csr_pem);
		*csr_pem = NULL;
		imp_key_pem_free(key_pem);
	}
	BIO_free(b);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	ERR_pop_to_mark();
	return rc;
}

void imp_key_pem_free(char **key_pem)
{
	if(!key_pem || !*key_pem) return;
	OPENSSL_cleanse(*key_pem, strlen(*key_pem));
	imp_free(*key_pem);
	*key_pem = NULL;
}
