#include "core/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/mem.h"

/* Small requests are served from a per-thread block of CSPRNG output, each byte handed out
 * once and zeroed as it goes: OpenSSL 3 sets up its AES-CTR generator on every RAND_bytes
 * call, which cost more than the bytes (a batch line asks three times: two ids, a secret).
 * A block drawn before a fork is dropped in the child. */
#define POOL_BYTES 4096
#define POOL_MAX_ASK 64

struct rand_pool {
	unsigned gen;        /* fork_gen when drawn */
	size_t used;
	uint8_t b[POOL_BYTES];
};

static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static int pool_ok;

static void pool_free(void *p)
{
	OPENSSL_cleanse(p, sizeof(struct rand_pool));
	imp_free(p);
}

/* Bumped in a child after fork(): every thread's block (copied from the parent) is then
 * stale. getpid() per call instead was a system call per random ask, 1.6% of a batch. */
static atomic_uint fork_gen = 1;

static void pool_after_fork(void) { atomic_fetch_add(&fork_gen, 1); }

static void pool_init(void)
{
	pool_ok = pthread_key_create(&pool_key, pool_free) == 0 && pthread_atfork(NULL, NULL, pool_after_fork) == 0;
}

imp_err imp_random(void *buf, size_t n)
{
	pthread_once(&pool_once, pool_init);
	struct rand_pool *p = pool_ok && n <= POOL_MAX_ASK ? pthread_getspecific(pool_key) : NULL;
	if(pool_ok && n <= POOL_MAX_ASK && !p && (p = imp_calloc(1, sizeof *p))) {
		p->used = POOL_BYTES;
		if(pthread_setspecific(pool_key, p)) {
			imp_free(p);
			p = NULL;
		}
	}
	if(!p) return RAND_bytes(buf, (int)n) == 1 ? IMP_OK : IMP_ERR_CRYPTO;
	unsigned gen = atomic_load(&fork_gen);
	if(p->gen != gen || p->used + n > POOL_BYTES) {
		if(RAND_bytes(p->b, POOL_BYTES) != 1) {
			OPENSSL_cleanse(p->b, POOL_BYTES);
			p->used = POOL_BYTES;
			return IMP_ERR_CRYPTO;
		}
		p->gen = gen;
		p->used = 0;
	}
	memcpy(buf, p->b + p->used, n);
	OPENSSL_cleanse(p->b + p->used, n);
	p->used += n;
	return IMP_OK;
}

/* One keyed HMAC context per thread, kept for the next call under the same key: OpenSSL 3's
 * one-shot HMAC() looks up the algorithm and builds a context every time, which cost more
 * than the hash itself (a batch hashes one secret per device). */
struct hmac_slot {
	EVP_MAC_CTX *ctx;
	uint8_t key[IMP_KEY_LEN];
};

static pthread_key_t hmac_key;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;
static EVP_MAC *hmac_mac;

static void hmac_slot_free(void *p)
{
	struct hmac_slot *s = p;
	EVP_MAC_CTX_free(s->ctx);
	OPENSSL_cleanse(s->key, sizeof s->key);
	imp_free(s);
}

static void hmac_init(void)
{
	hmac_mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if(pthread_key_create(&hmac_key, hmac_slot_free)) {
		EVP_MAC_free(hmac_mac);
		hmac_mac = NULL;
	}
}

/* The thread's context, keyed with key and ready for data; NULL when OpenSSL fails. */
static EVP_MAC_CTX *hmac_ctx(const uint8_t key[IMP_KEY_LEN])
{
	pthread_once(&hmac_once, hmac_init);
	if(!hmac_mac) return NULL;
	struct hmac_slot *s = pthread_getspecific(hmac_key);
	if(s && CRYPTO_memcmp(s->key, key, IMP_KEY_LEN) == 0 && EVP_MAC_init(s->ctx, NULL, 0, NULL)) return s->ctx;
	if(!s) {
		s = imp_calloc(1, sizeof *s);
		if(!s) return NULL;
		if(pthread_setspecific(hmac_key, s)) {
			imp_free(s);
			return NULL;
		}
	}
	EVP_MAC_CTX_free(s->ctx);
	s->ctx = EVP_MAC_CTX_new(hmac_mac);
	OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0), OSSL_PARAM_construct_end()};
	if(!s->ctx || !EVP_MAC_init(s->ctx, key, IMP_KEY_LEN, params)) {
		memset(s->key, 0, sizeof s->key);
		return NULL;
	}
	memcpy(s->key, key, IMP_KEY_LEN);
	return s->ctx;
}

void imp_hmac(const uint8_t key[IMP_KEY_LEN], const void *data, size_t n, uint8_t out[IMP_HMAC_LEN])
{
	size_t len = 0;
	EVP_MAC_CTX *ctx = hmac_ctx(key);
	if(ctx && EVP_MAC_update(ctx, data, n) && EVP_MAC_final(ctx, out, &len, IMP_HMAC_LEN) && len == IMP_HMAC_LEN) return;
	unsigned int ulen = IMP_HMAC_LEN;
	HMAC(EVP_sha256(), key, IMP_KEY_LEN, data, n, out, &ulen);
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
