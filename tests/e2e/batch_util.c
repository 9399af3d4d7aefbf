#include "batch_util.h"

#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/crypto.h"

pid_t bu_spawn(const char *api_key, const char *err_path, const char *const *args)
{
	const char *argv[64] = {IMP_BIN, "batch"};
	size_t n = 2;
	for(size_t i = 0; args[i] && n < 63; i++) argv[n++] = args[i];
	argv[n] = NULL;
	pid_t pid = fork();
	if(pid != 0) return pid;
	int fd = open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	int devnull = open("/dev/null", O_RDWR);
	if(fd >= 0) dup2(fd, 2);
	if(devnull >= 0) {
		dup2(devnull, 0);
		dup2(devnull, 1);
	}
	if(api_key) setenv("IMPRINT_API_KEY", api_key, 1);
	else unsetenv("IMPRINT_API_KEY");
	/* A small quarantine, so that the peak memory the tests measure is the CLI's own and
	 * not AddressSanitizer's store of freed blocks (256 MB by default). */
	setenv("ASAN_OPTIONS", "detect_leaks=1:quarantine_size_mb=4", 1);
	execv(IMP_BIN, (char *const *)argv);
	_exit(127);
}

bu_result bu_wait(pid_t pid)
{
	bu_result r = {-1, 0};
	int st = 0;
	struct rusage ru;
	if(wait4(pid, &st, 0, &ru) != pid) return r;
	r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	r.maxrss_kb = ru.ru_maxrss;
	return r;
}

bu_result bu_run(const char *api_key, const char *err_path, const char *const *args)
{
	return bu_wait(bu_spawn(api_key, err_path, args));
}

int bu_template(h_server *s, const char *name, const char *method, char *out)
{
	char body[256], id[64];
	snprintf(body, sizeof body, "{\"name\":\"%s\",\"authenticationMethod\":\"%s\"}", name, method);
	if(h_create(s, s->admin.api_key, "/api/v1/devices/templates", body, "deviceTemplate.id", id, sizeof id)) return -1;
	static const char *const ch[][2] = {{"temp", "publish"}, {"cmd", "subscribe"}};
	for(int i = 0; i < 2; i++) {
		char cbody[300], cid[64];
		snprintf(cbody, sizeof cbody,
		         "{\"name\":\"%s\",\"entityType\":\"deviceTemplate\",\"entityId\":\"%s\",\"permission\":\"%s\"}", ch[i][0],
		         id, ch[i][1]);
		if(h_create(s, s->admin.api_key, "/api/v1/channels/templates", cbody, "channelTemplate.id", cid, sizeof cid))
			return -1;
	}
	snprintf(out, 64, "%s", id);
	return 0;
}

int bu_broker_key(h_server *s, char *out)
{
	h_resp r = h_call(s, "POST", "/api/v1/api-keys", s->admin.api_key, "{\"name\":\"b\",\"scopes\":[\"broker\"]}", NULL);
	const char *k = h_str(&r, "apiKey.key");
	int rc = -1;
	if(r.status == 201 && k) {
		snprintf(out, 128, "%s", k);
		rc = 0;
	} else {
		fprintf(stderr, "broker key: %ld %s\n", r.status, r.body);
	}
	h_resp_free(&r);
	return rc;
}

int bu_authenticate(h_server *s, const char *broker_key, const char *device_id, const char *secret)
{
	json_t *b = json_pack("{s:s, s:s, s:s}", "clientid", device_id, "username", device_id, "password", secret);
	char *text = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	h_resp r = h_call(s, "POST", "/api/v1/broker/authenticate", broker_key, text, NULL);
	free(text);
	const char *res = h_str(&r, "result");
	int rc = r.status == 200 && res ? strcmp(res, "allow") == 0 : -1;
	h_resp_free(&r);
	return rc;
}

int bu_hmac_key(h_server *s, uint8_t key[32])
{
	char path[400];
	snprintf(path, sizeof path, "%s/keys.json", s->data);
	json_t *o = json_load_file(path, 0, NULL);
	const char *b64 = json_string_value(json_object_get(o, "hmacKey"));
	long n = b64 ? imp_b64_decode(b64, strlen(b64), key, 32, 0) : -1;
	json_decref(o);
	return n == 32 ? 0 : -1;
}

void bu_secret_hash(const uint8_t key[32], const char *secret, char out[65])
{
	uint8_t mac[32];
	unsigned len = 0;
	HMAC(EVP_sha256(), key, 32, (const unsigned char *)secret, strlen(secret), mac, &len);
	for(int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

int bu_write_serials(const char *path, const char *prefix, long n)
{
	FILE *f = fopen(path, "w");
	if(!f) return -1;
	for(long i = 1; i <= n; i++) fprintf(f, "%s%ld\n", prefix, i);
	return fclose(f) ? -1 : 0;
}

char *bu_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if(!f) return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *p = n >= 0 ? malloc((size_t)n + 1) : NULL;
	size_t got = p ? fread(p, 1, (size_t)n, f) : 0;
	fclose(f);
	if(!p) return NULL;
	p[got] = '\0';
	if(len) *len = got;
	return p;
}

long bu_count_lines(const char *path, const char *prefix)
{
	FILE *f = fopen(path, "r");
	if(!f) return -1;
	char *line = NULL;
	size_t cap = 0;
	long n = 0;
	while(getline(&line, &cap, f) > 0) {
		if(strncmp(line, prefix, strlen(prefix)) == 0) n++;
	}
	free(line);
	fclose(f);
	return n;
}

int bu_file_contains(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	if(!f) return 0;
	char *line = NULL;
	size_t cap = 0;
	int found = 0;
	while(!found && getline(&line, &cap, f) > 0) found = strstr(line, needle) != NULL;
	free(line);
	fclose(f);
	return found;
}
