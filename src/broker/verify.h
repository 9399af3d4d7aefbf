/* The one place device and user credentials are checked against the store: the broker
 * plugin, POST /api/v1/broker/authenticate and HTTP Basic auth on device-facing routes all
 * call these, so the rules of MQTT.md ("Connecting") hold the same everywhere. */
#ifndef IMP_BROKER_VERIFY_H
#define IMP_BROKER_VERIFY_H
#include "core/keys.h"
#include "store/store.h"

typedef enum {
	IMP_ALLOW = 0,
	IMP_DENY_UNKNOWN,       /* no device nor credential with this id */
	IMP_DENY_CLIENT_ID,     /* username is neither empty nor the client id */
	IMP_DENY_NO_CREDENTIAL, /* never given one, or revoked */
	IMP_DENY_WRONG_SECRET,
	IMP_DENY_DISABLED,
	IMP_DENY_METHOD,        /* a password for a certificate device, or the reverse */
	IMP_DENY_STORE,         /* the store did not answer: refuse rather than guess */
	IMP_DENY_CERTIFICATE,   /* not the certificate registered to this device */
	IMP_DENY_EXPIRED        /* the registered certificate is past its notAfter */
} imp_verdict;

/* A stable word for logs and metrics ("allow", "wrong_secret", ...). */
const char *imp_verdict_name(imp_verdict v);

/* Checks a password login: client id, username (NULL or "" allowed), password. row, when
 * not NULL, receives what the store said (account, entity type). Never logs. */
imp_verdict imp_verify_password(imp_db *db, const imp_keys *keys, const char *clientid, const char *username,
                                const char *password, imp_auth_row *row);
/* The same for a password whose keyed hash (imp_hmac under the server key) the caller
 * computed already; mac NULL when no password was given. */
imp_verdict imp_verify_password_mac(imp_db *db, const char *clientid, const char *username, const uint8_t *mac,
                                    imp_auth_row *row);

/* Checks a certificate login: client id, username (NULL, "" or the client id) and the DER
 * of the certificate the client presented in the TLS handshake (der_len bytes; the TLS
 * layer has already checked its chain). Allowed when its SHA-256 is the fingerprint
 * registered to the device, that certificate has not expired at now_ms, the device is
 * not disabled and its template uses certificates. row as for imp_verify_password. */
imp_verdict imp_verify_certificate(imp_db *db, const char *clientid, const char *username, const unsigned char *der,
                                   size_t der_len, uint64_t now_ms, imp_auth_row *row);

/* For a client the broker has already let in (POST /api/v1/broker/authorize): the checks
 * of the two above that do not need its secret, i.e. that its id is known, the username
 * matches, it still has a credential and is not disabled. */
imp_verdict imp_verify_identity(imp_db *db, const char *clientid, const char *username, imp_auth_row *row);

#endif
