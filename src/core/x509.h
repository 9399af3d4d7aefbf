/* X.509 for device credentials, on OpenSSL 3: reading the certificates devices and
 * accounts register, checking them, and what each account's device CA issues. No global
 * state, so the broker plugin can link this as well as the server.
 *
 * Every function leaves OpenSSL's error queue as it found it, and never copies the text it
 * was given into why (a reason meant for people: it goes into 422 responses). */
#ifndef IMP_X509_H
#define IMP_X509_H
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define IMP_FINGERPRINT_LEN 64
#define IMP_PEM_MAX         (16 * 1024) /* longest certificate/CSR PEM accepted */

typedef struct {
	char fingerprint[IMP_FINGERPRINT_LEN + 1]; /* SHA-256 of the DER, lowercase hex */
	uint64_t not_before_ms, not_after_ms;      /* Unix ms (0 for dates before 1970) */
	int is_ca;                                 /* basicConstraints CA:TRUE */
	int self_signed;                           /* issuer == subject and its own key verifies it */
	char subject[256];                         /* one-line subject, e.g. "CN=abc" (for display) */
} imp_cert_info;

/* Parses exactly one PEM certificate: pem is len bytes, need not be NUL-terminated;
 * whitespace around the block is fine, anything else (a second certificate, text, PEM
 * headers, a NUL byte, DER that is not canonical) is refused. Fills out.
 * IMP_ERR_INVALID with a reason in why (whylen bytes; why may be NULL) when it is not one
 * certificate, including when len > IMP_PEM_MAX. IMP_ERR_NOMEM. */
imp_err imp_cert_parse(const char *pem, size_t len, imp_cert_info *out, char *why, size_t whylen);

/* Checks a device certificate for registration at time now_ms: one PEM as for
 * imp_cert_parse, not a CA, valid at now_ms, and self-signed or signed by one of the n CA
 * PEMs cas (NUL-terminated; NULL when n == 0; ones that do not parse or are not CAs are skipped). Each CA
 * is trusted on its own, so an intermediate works without its root. Fills info on success.
 * IMP_ERR_INVALID + why when refused; when it does not chain, why is "not self-signed nor
 * signed by a certificate authority of the account". IMP_ERR_NOMEM. */
imp_err imp_cert_check_device(const char *pem, size_t len, const char *const *cas, size_t n, uint64_t now_ms,
                              imp_cert_info *info, char *why, size_t whylen);

/* Checks an account CA certificate for registration at now_ms: one PEM, CA:TRUE, valid at
 * now_ms, and, when it has a keyUsage, keyCertSign in it (else nothing it signs would
 * verify). Self-signed or not (an intermediate is fine). Fills info on success.
 * IMP_ERR_INVALID + why; IMP_ERR_NOMEM. */
imp_err imp_cert_check_ca(const char *pem, size_t len, uint64_t now_ms, imp_cert_info *info, char *why, size_t whylen);

/* Creates a CA: EC P-256 key, self-signed certificate with CN common_name (1-64 bytes),
 * CA:TRUE, keyUsage keyCertSign and cRLSign, valid days days (1-36500) from now, backdated
 * 5 minutes. Caller frees *cert_pem with imp_free and *key_pem with imp_key_pem_free.
 * IMP_ERR_INVALID for a bad name or days; IMP_ERR_NOMEM; IMP_ERR_CRYPTO. */
imp_err imp_ca_create(const char *common_name, int days, char **cert_pem, char **key_pem);

/* Signs a CSR (PEM, len bytes) with the CA (ca_cert_pem, ca_key_pem: NUL-terminated).
 * Verifies the CSR's own signature first, accepts only EC P-256/P-384 and RSA >= 2048 keys,
 * and ignores everything else the CSR asks for: the certificate gets CN=cn (the device id),
 * CA:FALSE, keyUsage digitalSignature, extendedKeyUsage clientAuth, a random 128-bit serial,
 * days days of validity (1-36500), backdated 5 minutes. Caller frees *cert_pem with imp_free.
 * IMP_ERR_INVALID + why for a CSR that is unparsable, badly signed or of a refused key (and
 * for a bad cn or days); IMP_ERR_CRYPTO when the CA does not load or its key does not match
 * its certificate; IMP_ERR_NOMEM. */
imp_err imp_csr_sign(const char *csr_pem, size_t len, const char *ca_cert_pem, const char *ca_key_pem, const char *cn,
                     int days, char **cert_pem, char *why, size_t whylen);

/* Issues a TLS server certificate signed by the CA (ca_cert_pem, ca_key_pem:
 * NUL-terminated) for the n names (1-16, each 1-253 bytes): IPv4 and IPv6 addresses become
 * IP subjectAltNames, anything else a DNS one; the first name is also the CN (when it fits
 * in 64 bytes). EC P-256 key, CA:FALSE, keyUsage digitalSignature, extendedKeyUsage
 * serverAuth, a random serial, days days (1-36500), backdated 5 minutes. Caller frees
 * *cert_pem with imp_free and *key_pem with imp_key_pem_free.
 * IMP_ERR_INVALID for bad names or days; IMP_ERR_CRYPTO when the CA does not load or its
 * key does not match; IMP_ERR_NOMEM. */
imp_err imp_server_cert_create(const char *ca_cert_pem, const char *ca_key_pem, const char *const *names, size_t n,
                               int days, char **cert_pem, char **key_pem);

/* Makes a device key pair (EC P-256) and a CSR for it with CN=cn (1-64 bytes), so a
 * certificate device can be prepared locally and its private key never crosses the
 * network. Caller frees *key_pem with imp_key_pem_free and *csr_pem with imp_free.
 * IMP_ERR_INVALID for a bad cn; IMP_ERR_NOMEM; IMP_ERR_CRYPTO. */
imp_err imp_keypair_csr(const char *cn, char **key_pem, char **csr_pem);

/* Scrubs and frees a private key PEM from the functions above; sets *key_pem to NULL.
 * Accepts NULL and a NULL *key_pem. */
void imp_key_pem_free(char **key_pem);

#endif
