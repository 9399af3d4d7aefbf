/* The server keys, kept in DATA/keys.json (mode 0600) apart from the database: one key
 * for the keyed hashes of secrets and API keys, one for signing JWTs. A copy of the
 * database alone is therefore no use to an attacker who wants to check guessed secrets. */
#ifndef IMP_KEYS_H
#define IMP_KEYS_H
#include <stdint.h>

#include "core/crypto.h"
#include "core/err.h"

typedef struct {
	uint8_t hmac[IMP_KEY_LEN];
	uint8_t jwt[IMP_KEY_LEN];
} imp_keys;

/* Makes fresh keys and writes them to path, which must not exist (IMP_ERR_EXISTS). */
imp_err imp_keys_create(const char *path, imp_keys *out);

/* Reads keys from path. IMP_ERR_NOT_FOUND when missing; IMP_ERR_IO when unreadable or
 * malformed. */
imp_err imp_keys_load(const char *path, imp_keys *out);

#endif
