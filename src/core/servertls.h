/* The broker's TLS server certificate, made by imprint init (or the first serve of a data
 * directory made before it existed): a server CA, DATA/tls/ca.crt (the file devices pin to
 * verify the broker) and ca.key, and the server certificate it signs, DATA/tls/server.crt
 * and server.key, for localhost, 127.0.0.1, ::1 and the host name. DATA/tls is 0700, keys
 * 0600, certificates 0644. An operator's own certificate replaces these with
 * `imprint serve --tls-cert --tls-key`. */
#ifndef IMP_SERVERTLS_H
#define IMP_SERVERTLS_H

#include "core/err.h"

#define IMP_TLS_DIR         "tls"
#define IMP_TLS_CA_CRT      "tls/ca.crt"
#define IMP_TLS_SERVER_CRT  "tls/server.crt"
#define IMP_TLS_SERVER_KEY  "tls/server.key"
#define IMP_TLS_CA_DAYS     3652 /* ten years */
#define IMP_TLS_SERVER_DAYS 825  /* about two years and three months */
#define IMP_TLS_RENEW_DAYS  30   /* a server certificate this close to its end is replaced */

/* Makes whatever of the four files is missing, and a new server certificate when the one
 * there ends within IMP_TLS_RENEW_DAYS (from the same CA, so devices need nothing new).
 * *renewed (may be NULL) is set to 1 when a server certificate was written. Safe beside
 * other processes doing the same (a lock on DATA/tls).
 * IMP_ERR_IO when a file cannot be read or written; IMP_ERR_CRYPTO when the CA there does
 * not load; IMP_ERR_NOMEM. */
imp_err imp_server_tls_ensure(const char *data_dir, int *renewed);

#endif
