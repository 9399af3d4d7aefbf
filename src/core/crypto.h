/* Randomness, keyed hashes and encodings, on OpenSSL 3. */
#ifndef IMP_CRYPTO_H
#define IMP_CRYPTO_H
#include <stddef.h>
#include <stdint.h>
#include "core/err.h"

#define IMP_HMAC_LEN 32
#define IMP_KEY_LEN  32

/* Fills buf with n bytes from the CSPRNG. IMP_ERR_CRYPTO if it cannot. */
imp_err imp_random(void *buf, size_t n);

/* HMAC-SHA256 of data under key into out[IMP_HMAC_LEN]. */
void imp_hmac(const uint8_t key[IMP_KEY_LEN], const void *data, size_t n, uint8_t out[IMP_HMAC_LEN]);

/* Constant-time equality of two n-byte buffers: 1 when equal. */
int imp_ct_equal(const void *a, const void *b, size_t n);

/* Encodes n bytes as standard base64 (url=0) or unpadded base64url (url=1) into out,
 * which must hold imp_b64_len(n)+1 bytes. Returns the length written. */
size_t imp_b64_encode(const void *in, size_t n, char *out, int url);
size_t imp_b64_len(size_t n);

/* Decodes base64url (unpadded; url=1) or standard base64 (url=0) into out (cap bytes).
 * Returns the decoded length, or -1 on bad input or overflow. */
long imp_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap, int url);

/* Lowercase hex of n bytes into out (2n+1 bytes). */
void imp_hex(const void *in, size_t n, char *out);

#endif
