/* The broker's trust store for client certificates: DATA/broker/capath, a directory of CA
 * certificates in OpenSSL's hashed-name form (<subject-hash>.<n>), which mosquitto's
 * certificate listener names in `capath`. OpenSSL looks a directory up when it verifies a
 * client, so a certificate added here is trusted by a running broker without a restart
 * (one removed stays trusted until the broker restarts: OpenSSL keeps what it has read).
 *
 * What belongs here: every account's device CA (DATA/ca/<accountId>.crt, added by `imprint serve`
 * at each start), every CA an account registers, and every self-signed device certificate
 * registered (its own trust anchor). TLS only checks that a client certificate chains to
 * one of them; the plugin then checks it is the one registered to that device. */
#ifndef IMP_CAPATH_H
#define IMP_CAPATH_H

#include "core/err.h"

#define IMP_CAPATH_DIR "broker/capath"

/* Adds the certificate pem (one PEM certificate, NUL-terminated) to DATA/broker/capath,
 * making the directories (0700) when missing. A certificate already there is left as it
 * is, so this is safe to call again, and from several threads and processes at once (each
 * file appears whole, by link()). IMP_ERR_INVALID when pem is not a certificate;
 * IMP_ERR_IO; IMP_ERR_NOMEM. */
imp_err imp_broker_capath_add(const char *data_dir, const char *pem);

#endif
