/* Helpers for the tests of `imprint batch`: running the CLI as a child (its exit status and
 * peak memory), templates with channels, a broker key to check secrets with, and the
 * server's HMAC key to check them against the store. */
#ifndef IMP_TEST_BATCH_UTIL_H
#define IMP_TEST_BATCH_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"

typedef struct {
	int status;     /* exit status, or -1 when killed by a signal */
	long maxrss_kb; /* the child's peak resident memory */
} bu_result;

/* Starts `imprint batch` with args (NULL-terminated, without "imprint batch"), the API key
 * in IMPRINT_API_KEY (NULL: unset), stderr appended to err_path. Returns the pid. */
pid_t bu_spawn(const char *api_key, const char *err_path, const char *const *args);
/* Waits for a child from bu_spawn. */
bu_result bu_wait(pid_t pid);
/* bu_spawn and bu_wait. */
bu_result bu_run(const char *api_key, const char *err_path, const char *const *args);

/* A template (method "password" or "certificate") with channels temp (publish) and cmd
 * (subscribe); its id into out (64 bytes). 0 on success. */
int bu_template(h_server *s, const char *name, const char *method, char *out);
/* A broker-scoped API key into out (128 bytes). 0 on success. */
int bu_broker_key(h_server *s, char *out);
/* POST /api/v1/broker/authenticate for a device id and secret: 1 allow, 0 deny, -1 error. */
int bu_authenticate(h_server *s, const char *broker_key, const char *device_id, const char *secret);
/* The server's HMAC key from DATA/keys.json. 0 on success. */
int bu_hmac_key(h_server *s, uint8_t key[32]);
/* Lowercase hex HMAC-SHA256 of secret under key (65 bytes out), as the store keeps it. */
void bu_secret_hash(const uint8_t key[32], const char *secret, char out[65]);

/* Writes n lines "<prefix><i>" (i from 1) to path. 0 on success. */
int bu_write_serials(const char *path, const char *prefix, long n);
/* A whole small file, NUL-terminated (free()), or NULL. */
char *bu_slurp(const char *path, size_t *len);
/* Lines of a file that start with prefix. */
long bu_count_lines(const char *path, const char *prefix);
/* 1 when a line of the file (of any size) holds needle. */
int bu_file_contains(const char *path, const char *needle);

#endif
