#include "broker/verify.h"

#include <openssl/evp.h>
#include <string.h>

#include "core/crypto.h"
#include "core/ids.h"

static const char *const NAMES[] = {"allow", "unknown_id", "client_id_mismatch", "no_credential",
                                    "wrong_secret", "disabled", "wrong_method", "store_unavailable",
                                    "wrong_certificate", "expired"};

const char *imp_verdict_name(imp_verdict v)
{
	return (unsigned)v < sizeof NAMES / sizeof NAMES[0] ? NAMES[v] : "deny";
}

imp_verdict imp_verify_password(imp_db *db, const imp_keys *keys, const char *clientid, const char *username,
                                const char *password, imp_auth_row *row)
{
	/* The keyed hash is computed whatever the outcome, so the time taken says little. */
	uint8_t mac[IMP_HMAC_LEN];
	if(password) imp_hmac(keys->hmac, password, strlen(password), mac);
	return imp_verify_password_mac(db, clientid, username, password ? mac : NULL, row);
}

imp_verdict imp_verify_password_mac(imp_db *db, const char *clientid, const char *username, const uint8_t *mac,
                                    imp_auth_row *row)
{
	imp_auth_row local;
	if(!row) row = &local;
	memset(row, 0, sizeof *row);
	if(!clientid || !imp_id_valid(clientid)) return IMP_DENY_UNKNOWN;
	if(username && username[0] && strcmp(username, clientid) != 0) return IMP_DENY_CLIENT_ID;
	char hash[65] = {0};
	if(mac) imp_hex(mac, IMP_HMAC_LEN, hash);
	imp_err rc = imp_db_auth_lookup(db, clientid, row);
	if(rc == IMP_ERR_NOT_FOUND) return IMP_DENY_UNKNOWN;
	if(rc) return IMP_DENY_STORE;
	if(row->is_device && row->disabled) return IMP_DENY_DISABLED;
	if(row->is_device && strcmp(row->auth_method, "password") != 0) return IMP_DENY_METHOD;
	if(!row->method[0]) return IMP_DENY_NO_CREDENTIAL;
	if(strcmp(row->method, "password") != 0) return IMP_DENY_METHOD;
	if(!mac || strlen(row->secret) != 64 || !imp_ct_equal(hash, row->secret, 64)) return IMP_DENY_WRONG_SECRET;
	return IMP_ALLOW;
}

/* The rules every login shares: a known id, the username, the device's state. */
static imp_verdict common(imp_db *db, const char *clientid, const char *username, imp_auth_row *row)
{
	memset(row, 0, sizeof *row);
	if(!clientid || !imp_id_valid(clientid)) return IMP_DENY_UNKNOWN;
	if(username && username[0] && strcmp(username, clientid) != 0) return IMP_DENY_CLIENT_ID;
	imp_err rc = imp_db_auth_lookup(db, clientid, row);
	if(rc == IMP_ERR_NOT_FOUND) return IMP_DENY_UNKNOWN;
	if(rc) return IMP_DENY_STORE;
	if(row->is_device && row->disabled) return IMP_DENY_DISABLED;
	if(!row->method[0]) return IMP_DENY_NO_CREDENTIAL;
	return IMP_ALLOW;
}

imp_verdict imp_verify_certificate(imp_db *db, const char *clientid, const char *username, const unsigned char *der,
                                   size_t der_len, uint64_t now_ms, imp_auth_row *row)
{
	imp_auth_row local;
	if(!row) row = &local;
	imp_verdict v = common(db, clientid, username, row);
	if(v) return v;
	if(!row->is_device || strcmp(row->auth_method, "certificate") != 0 || strcmp(row->method, "certificate") != 0)
		return IMP_DENY_METHOD;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char fp[2 * EVP_MAX_MD_SIZE + 1];
	if(!der || !der_len || !EVP_Digest(der, der_len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		return IMP_DENY_CERTIFICATE;
	imp_hex(md, mdlen, fp);
	if(strlen(row->fingerprint) != 64 || !imp_ct_equal(fp, row->fingerprint, 64)) return IMP_DENY_CERTIFICATE;
	if(row->not_after && now_ms > row->not_after) return IMP_DENY_EXPIRED;
	return IMP_ALLOW;
}

imp_verdict imp_verify_identity(imp_db *db, const char *clientid, const char *username, imp_auth_row *row)
{
	imp_auth_row local;
	return common(db, clientid, username, row ? row : &local);
}
