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
	IMP_DENY_STORE          /* the store did not answer: refuse rather than guess */
} imp_verdict;

/* A stable word for logs and metrics ("allow", "wrong_secret", ...). */
const char *imp_verdict_name(imp_verdict v);

/* Checks a password login: client id, username (NULL or "" allowed), password. row, when
 * not NULL, receives what the store said (account, entity type). Never logs. */
imp_verdict imp_verify_password(imp_db *db, const imp_keys *keys, const char *clientid, const char *username,
                                const char *password, imp_auth_row *row);

#endif
