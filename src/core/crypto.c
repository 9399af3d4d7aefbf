#include "core/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

imp_err imp_random(void *buf, size_t n)
{
	return RAND_bytes(buf, (int)n) == 1 ? IMP_OK : IMP_ERR_CRYPTO;
}

void imp_hmac(const uint8_t key[IMP_KEY_LEN], const void *data, size_t n, uint8_t out[IMP_HMAC_LEN])
{
	unsigned int len = IMP_HMAC_LEN;
	HMAC(EVP_sha256(), key, IMP_KEY_LEN, data, n, out, &len);
}

int imp_ct_equal(const void *a, const void *b, size_t n) { return CRYPTO_memcmp(a, b, n) == 0; }

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t imp_b64_len(size_t n) { return (n + 2) / 3 * 4; }

size_t imp_b64_encode(const void *in, size_t n, char *out, int url)
{
	const uint8_t *p = in;
	const char *tab = url ? B64URL : B64;
	size_t o = 0, i = 0;
	for(; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = tab[(v >> 6) & 63];
		out[o++] = tab[v & 63];
	}
	if(i < n) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		if(i + 1 < n) out[o++] = tab[(v >> 6) & 63];
		else if(!url) out[o++] = '=';
		if(!url) out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

static int b64_value(char c, int url)
{
	if(c >= 'A' && c <= 'Z') return c - 'A';
	if(c >= 'a' && c <= 'z') return c - 'a' + 26;
	if(c >= '0' && c <= '9') return c - '0' + 52;
	if(c == (url ? '-' : '+')) return 62;
	if(c == (url ? '_' : '/')) return 63;
	return -1;
}

long imp_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap, int url)
{
	if(!url) {
		while(n > 0 && in[n - 1] == '=') n--;
	}
	if(n % 4 == 1) return -1;
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for(size_t i = 0; i < n; i++) {
		int v = b64_value(in[i], url);
		if(v < 0) return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if(bits >= 8) {
			bits -= 8;
			if(o >= cap) return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	return (long)o;
}

void imp_hex(const void *in, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	const uint8_t *p = in;
	for(size_t i = 0; i < n; i++) {
		out[2 * i] = hx[p[i] >> 4];
		out[2 * i + 1] = hx[p[i] & 15];
	}
	out[2 * n] = '\0';
}
