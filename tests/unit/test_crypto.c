/* Unit tests for src/core/crypto.c: base64 and base64url, HMAC-SHA256, hex, constant-time
 * compare, randomness. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/crypto.h"

/* ---- base64 ---- */

static void test_b64_rfc4648_vectors(void **state)
{
	(void)state;
	static const struct {
		const char *in, *std, *url;
	} v[] = {
		{"", "", ""},
		{"f", "Zg==", "Zg"},
		{"fo", "Zm8=", "Zm8"},
		{"foo", "Zm9v", "Zm9v"},
		{"foob", "Zm9vYg==", "Zm9vYg"},
		{"fooba", "Zm9vYmE=", "Zm9vYmE"},
		{"foobar", "Zm9vYmFy", "Zm9vYmFy"},
	};
	for(size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		char out[32];
		uint8_t back[32];
		size_t n = strlen(v[i].in);
		assert_int_equal(imp_b64_encode(v[i].in, n, out, 0), strlen(v[i].std));
		assert_string_equal(out, v[i].std);
		assert_int_equal(imp_b64_encode(v[i].in, n, out, 1), strlen(v[i].url));
		assert_string_equal(out, v[i].url);
		assert_int_equal(imp_b64_decode(v[i].std, strlen(v[i].std), back, sizeof back, 0), (long)n);
		assert_memory_equal(back, v[i].in, n);
		assert_int_equal(imp_b64_decode(v[i].url, strlen(v[i].url), back, sizeof back, 1), (long)n);
		assert_memory_equal(back, v[i].in, n);
	}
}

/* The two alphabets differ only in the last two letters. */
static void test_b64_alphabets(void **state)
{
	(void)state;
	const uint8_t in[] = {0xfb, 0xff, 0xbf, 0xfe};
	char out[16];
	uint8_t back[8];
	imp_b64_encode(in, 3, out, 0);
	assert_string_equal(out, "+/+/");
	imp_b64_encode(in, 3, out, 1);
	assert_string_equal(out, "-_-_");
	assert_int_equal(imp_b64_decode("+/+/", 4, back, sizeof back, 0), 3);
	assert_memory_equal(back, in, 3);
	assert_int_equal(imp_b64_decode("-_-_", 4, back, sizeof back, 1), 3);
	assert_memory_equal(back, in, 3);
	/* each refuses the other's letters */
	assert_int_equal(imp_b64_decode("-_-_", 4, back, sizeof back, 0), -1);
	assert_int_equal(imp_b64_decode("+/+/", 4, back, sizeof back, 1), -1);
}

static void test_b64_round_trip_0_to_70(void **state)
{
	(void)state;
	uint8_t in[70];
	for(size_t i = 0; i < sizeof in; i++) in[i] = (uint8_t)(i * 37 + 11) ^ (uint8_t)(i >> 1);
	in[0] = 0xff;
	in[1] = 0x00;
	for(size_t n = 0; n <= sizeof in; n++) {
		for(int url = 0; url <= 1; url++) {
			char out[128];
			uint8_t back[80];
			memset(out, 'X', sizeof out);
			size_t len = imp_b64_encode(in, n, out, url);
			size_t want = url ? (n * 4 + 2) / 3 : imp_b64_len(n);
			if(len != want) fail_msg("n=%zu url=%d: length %zu, want %zu", n, url, len, want);
			assert_int_equal(strlen(out), len);
			assert_true(len <= imp_b64_len(n));
			if(url) assert_null(strpbrk(out, "+/="));
			else assert_null(strpbrk(out, "-_"));
			/* Standard base64 matches OpenSSL's encoder. */
			if(!url) {
				unsigned char ref[128];
				int rl = EVP_EncodeBlock(ref, in, (int)n);
				assert_int_equal(rl, (int)len);
				assert_string_equal(out, (const char *)ref);
			}
			long got = imp_b64_decode(out, len, back, sizeof back, url);
			if(got != (long)n) fail_msg("n=%zu url=%d: decoded %ld bytes", n, url, got);
			assert_memory_equal(back, in, n);
			/* exactly enough room works; one byte less is an overflow */
			assert_int_equal(imp_b64_decode(out, len, back, n, url), (long)n);
			if(n > 0) assert_int_equal(imp_b64_decode(out, len, back, n - 1, url), -1);
		}
	}
}

static void test_b64_decode_garbage(void **state)
{
	(void)state;
	uint8_t out[64];
	static const struct {
		const char *in;
		int url;
	} bad[] = {
		{"Zm9v!", 0}, {"Zm9v!", 1},     /* not in the alphabet */
		{"Zm 9v", 0}, {"Zm9v\n", 1},    /* whitespace */
		{"Z", 0}, {"Z", 1},             /* one letter is no byte */
		{"Zm9vY", 0}, {"Zm9vY", 1},     /* 4k+1 letters */
		{"Zg==", 1},                    /* base64url is unpadded */
		{"Zg==Zg==", 0},                /* padding inside */
		{"=Zg", 0},
		{"Zm9v\xc3\xa9", 0},            /* non-ASCII */
		{"Zm.v", 1}, {"Zm*v", 0},
	};
	for(size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		long got = imp_b64_decode(bad[i].in, strlen(bad[i].in), out, sizeof out, bad[i].url);
		if(got != -1) fail_msg("decoded '%s' (url=%d) to %ld bytes", bad[i].in, bad[i].url, got);
	}
	/* an embedded NUL counts as input, and is not base64 */
	assert_int_equal(imp_b64_decode("Zm\0v", 4, out, sizeof out, 0), -1);
	/* overflow: 6 bytes into 5, or anything into 0 */
	assert_int_equal(imp_b64_decode("Zm9vYmFy", 8, out, 5, 0), -1);
	assert_int_equal(imp_b64_decode("Zm9vYmFy", 8, out, 6, 0), 6);
	assert_int_equal(imp_b64_decode("Zg", 2, out, 0, 1), -1);
	/* empty input is zero bytes */
	assert_int_equal(imp_b64_decode("", 0, out, 0, 0), 0);
	assert_int_equal(imp_b64_decode("", 0, out, 0, 1), 0);
}

/* Decoding never writes past cap, even when it refuses. */
static void test_b64_decode_respects_cap(void **state)
{
	(void)state;
	uint8_t out[16];
	memset(out, 0xaa, sizeof out);
	assert_int_equal(imp_b64_decode("QUFBQUFBQUFBQUFB", 16, out, 4, 0), -1);
	for(size_t i = 4; i < sizeof out; i++) assert_int_equal(out[i], 0xaa);
}

/* ---- HMAC-SHA256 ---- */

static void hex_to_bytes(const char *hex, uint8_t *out)
{
	for(size_t i = 0; hex[2 * i]; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

/* RFC 4231 test cases 1 and 2. HMAC pads a short key with zeros to the block size, so a
 * 32-byte key made of the RFC's key and zeros gives the RFC's result. */
static void test_hmac_rfc4231(void **state)
{
	(void)state;
	uint8_t key[IMP_KEY_LEN], mac[IMP_HMAC_LEN], want[IMP_HMAC_LEN];
	char hex[2 * IMP_HMAC_LEN + 1];

	memset(key, 0, sizeof key);
	memcpy(key, "Jefe", 4);
	const char *msg2 = "what do ya want for nothing?";
	imp_hmac(key, msg2, strlen(msg2), mac);
	imp_hex(mac, sizeof mac, hex);
	assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

	memset(key, 0, sizeof key);
	memset(key, 0x0b, 20);
	imp_hmac(key, "Hi There", 8, mac);
	hex_to_bytes("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", want);
	assert_memory_equal(mac, want, sizeof want);
}

/* Against OpenSSL's own HMAC with full 32-byte keys and many message lengths. */
static void test_hmac_matches_openssl(void **state)
{
	(void)state;
	uint8_t key[IMP_KEY_LEN], data[300];
	assert_int_equal(imp_random(key, sizeof key), IMP_OK);
	assert_int_equal(imp_random(data, sizeof data), IMP_OK);
	for(size_t n = 0; n <= sizeof data; n += 13) {
		uint8_t mac[IMP_HMAC_LEN], ref[EVP_MAX_MD_SIZE];
		unsigned rl = 0;
		imp_hmac(key, data, n, mac);
		assert_non_null(HMAC(EVP_sha256(), key, sizeof key, data, n, ref, &rl));
		assert_int_equal(rl, IMP_HMAC_LEN);
		assert_memory_equal(mac, ref, IMP_HMAC_LEN);
	}
	/* A different key or message gives a different result. */
	uint8_t a[IMP_HMAC_LEN], b[IMP_HMAC_LEN];
	imp_hmac(key, "secret", 6, a);
	key[31] ^= 1;
	imp_hmac(key, "secret", 6, b);
	assert_memory_not_equal(a, b, sizeof a);
	imp_hmac(key, "secreu", 6, a);
	assert_memory_not_equal(a, b, sizeof a);
}

/* ---- hex, compare, random ---- */

static void test_hex(void **state)
{
	(void)state;
	char out[64];
	memset(out, 'X', sizeof out);
	imp_hex("", 0, out);
	assert_string_equal(out, "");
	const uint8_t b[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff};
	imp_hex(b, sizeof b, out);
	assert_string_equal(out, "00017f80abcdefff");
	imp_hex("Jefe", 4, out);
	assert_string_equal(out, "4a656665");
}

static void test_ct_equal(void **state)
{
	(void)state;
	uint8_t a[32], b[32];
	for(int i = 0; i < 32; i++) a[i] = b[i] = (uint8_t)i;
	assert_true(imp_ct_equal(a, b, sizeof a));
	assert_true(imp_ct_equal(a, b, 0));
	b[0] ^= 0x80;
	assert_false(imp_ct_equal(a, b, sizeof a));
	assert_true(imp_ct_equal(a + 1, b + 1, sizeof a - 1));
	b[0] = a[0];
	b[31] ^= 1;
	assert_false(imp_ct_equal(a, b, sizeof a));
	assert_true(imp_ct_equal(a, b, 31));
	assert_int_equal(imp_ct_equal("abc", "abc", 3), 1);
	assert_int_equal(imp_ct_equal("abc", "abd", 3), 0);
}

static void test_random(void **state)
{
	(void)state;
	uint8_t a[32], b[32], zero[32] = {0};
	assert_int_equal(imp_random(a, sizeof a), IMP_OK);
	assert_int_equal(imp_random(b, sizeof b), IMP_OK);
	assert_memory_not_equal(a, b, sizeof a);
	assert_memory_not_equal(a, zero, sizeof a);
	assert_int_equal(imp_random(a, 0), IMP_OK);
}

/* A child of fork() never hands out the bytes its parent's block still holds. */
static void test_random_after_fork(void **state)
{
	(void)state;
	uint8_t warm[16], parent[32], child[32];
	assert_int_equal(imp_random(warm, sizeof warm), IMP_OK);   /* the block is drawn */
	int fd[2];
	assert_int_equal(pipe(fd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if(pid == 0) {
		uint8_t b[32];
		int ok = imp_random(b, sizeof b) == IMP_OK && write(fd[1], b, sizeof b) == (ssize_t)sizeof b;
		_exit(ok ? 0 : 1);
	}
	close(fd[1]);
	assert_int_equal(read(fd[0], child, sizeof child), (ssize_t)sizeof child);
	close(fd[0]);
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(imp_random(parent, sizeof parent), IMP_OK);
	assert_memory_not_equal(parent, child, sizeof parent);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64_rfc4648_vectors),
		cmocka_unit_test(test_b64_alphabets),
		cmocka_unit_test(test_b64_round_trip_0_to_70),
		cmocka_unit_test(test_b64_decode_garbage),
		cmocka_unit_test(test_b64_decode_respects_cap),
		cmocka_unit_test(test_hmac_rfc4231),
		cmocka_unit_test(test_hmac_matches_openssl),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_ct_equal),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_random_after_fork),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
