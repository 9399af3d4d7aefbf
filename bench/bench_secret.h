/* Benchmark-only shortcut: the MQTT secret of seeded device number i is derived from i,
 * secret = base64(HMAC-SHA256(BENCH_SECRET_KEY, "bench-device-<i>")), 44 characters like
 * the secrets the API hands out, so the load generator (bench/broker.c) recomputes any
 * device's secret without a file of a million secrets. Real secrets are random
 * (imp_cred_password); never derive them like this outside the benchmarks. */
#ifndef IMP_BENCH_SECRET_H
#define IMP_BENCH_SECRET_H
#include <stdio.h>

#include "core/crypto.h"

#define BENCH_SECRET_LEN 44

static inline void bench_secret(long i, char out[BENCH_SECRET_LEN + 1])
{
	static const uint8_t key[IMP_KEY_LEN] = "imprint benchmark secrets only!";
	char msg[32];
	int n = snprintf(msg, sizeof msg, "bench-device-%ld", i);
	uint8_t mac[IMP_HMAC_LEN];
	imp_hmac(key, msg, (size_t)n, mac);
	imp_b64_encode(mac, sizeof mac, out, 0);
	out[BENCH_SECRET_LEN] = '\0';
}

#endif
