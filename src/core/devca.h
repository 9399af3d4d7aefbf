/* Each account's device CA, which signs the CSRs of its certificate devices. Kept in the
 * data directory apart from the database, like the server keys, so a copy of the database
 * alone cannot issue certificates: DATA/ca/<accountId>.crt (0644) and
 * DATA/ca/<accountId>.key (0600), in DATA/ca (0700). Files are replaced only by rename and
 * the certificate is written after the key, so a present certificate always has its key. */
#ifndef IMP_DEVCA_H
#define IMP_DEVCA_H

#include "core/err.h"

#define IMP_DEVCA_DAYS 3652 /* ten years */

/* Creates the account's device CA (CN "imprint device CA <accountId>", IMP_DEVCA_DAYS)
 * unless it exists; safe to call from several threads and processes at once.
 * IMP_ERR_INVALID when account_id is not a UUID; IMP_ERR_IO when the files cannot be
 * written, or the certificate is there without its key; IMP_ERR_NOMEM; IMP_ERR_CRYPTO. */
imp_err imp_devca_ensure(const char *data_dir, const char *account_id);

/* Loads the account's device CA, creating it first when missing (data directories made
 * before device CAs existed). Caller frees *cert_pem with imp_free and *key_pem with
 * imp_key_pem_free (core/x509.h). Errors as imp_devca_ensure. */
imp_err imp_devca_load(const char *data_dir, const char *account_id, char **cert_pem, char **key_pem);

#endif
