/* Giving entities their credentials: shared by POST /api/v1/access/mqtt-credentials and
 * the device batch. */
#ifndef IMP_API_CREDENTIALS_H
#define IMP_API_CREDENTIALS_H
#include "api/http.h"
#include "api/jsontext.h"
#include "core/limits.h"

/* Inside the caller's write transaction: a new random secret for the entity (into
 * secret[IMP_SECRET_LEN + 1]), its keyed hash stored in place of any previous credential,
 * and a device moved from defined to activated. c receives the new credential's metadata
 * (the caller clears it). fresh: the caller made the entity in this transaction, so it has
 * no credential yet, and stored it activated already; neither is looked at again. */
imp_err imp_cred_password(imp_req *r, const char *entity_type, const char *entity_id, int fresh, char *secret,
                          imp_credential *c, int *replaced);
/* Its two halves, for the batch: the new secret (secret[IMP_SECRET_LEN + 1]), its keyed hash
 * (hash[65]) and the credential's id, which need no store and no transaction; then, inside
 * the write transaction, storing them. */
imp_err imp_cred_password_new(imp_req *r, char *secret, char *hash, imp_id *id);
imp_err imp_cred_password_put(imp_req *r, const char *entity_type, const char *entity_id, int fresh, const char *hash,
                              const imp_id *id, imp_credential *c, int *replaced);
/* The credential imp_cred_password_put stores, filled in c without storing it: the batch
 * stores its new devices' first credentials together (imp_db_credentials_first). */
void imp_cred_password_fill(imp_req *r, const char *entity_type, const char *entity_id, const imp_id *id,
                            imp_credential *c);

/* Inside the caller's write transaction: registers a device certificate (cert_pem) or
 * signs a CSR (csr_pem) with the account's device CA, replacing any previous credential,
 * and activates the device. 422 for an unusable certificate, 409 when another device has
 * it. The error is set on r. */
imp_err imp_cred_certificate(imp_req *r, const char *device_id, const char *cert_pem, const char *csr_pem,
                             imp_credential *c, int *replaced);

/* The response object for c: its metadata, plus secret when not NULL. */
json_t *imp_cred_body(const imp_credential *c, const char *secret);

/* imp_cred_body's object written as JSON text at the end of t, without building it. */
void imp_cred_body_text(imp_jtext *t, const imp_credential *c, const char *secret);

#endif
