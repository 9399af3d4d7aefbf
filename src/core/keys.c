#include "core/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <unistd.h>

imp_err imp_keys_create(const char *path, imp_keys *out)
{
	if(imp_random(out->hmac, sizeof out->hmac) || imp_random(out->jwt, sizeof out->jwt)) return IMP_ERR_CRYPTO;
	char h[64], j[64];
	imp_b64_encode(out->hmac, sizeof out->hmac, h, 0);
	imp_b64_encode(out->jwt, sizeof out->jwt, j, 0);
	json_t *o = json_pack("{s:i, s:s, s:s}", "version", 1, "hmacKey", h, "jwtKey", j);
	char *text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
	json_decref(o);
	if(!text) return IMP_ERR_NOMEM;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if(fd < 0) {
		free(text);
		return errno == EEXIST ? IMP_ERR_EXISTS : IMP_ERR_IO;
	}
	size_t n = strlen(text);
	int ok = write(fd, text, n) == (ssize_t)n && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	free(text);
	explicit_bzero(h, sizeof h);
	explicit_bzero(j, sizeof j);
	return ok ? IMP_OK : IMP_ERR_IO;
}

static int load_key(json_t *o, const char *name, uint8_t key[IMP_KEY_LEN])
{
	const char *s = json_string_value(json_object_get(o, name));
	return s && imp_b64_decode(s, strlen(s), key, IMP_KEY_LEN, 0) == IMP_KEY_LEN ? 0 : -1;
}

imp_err imp_keys_load(const char *path, imp_keys *out)
{
	if(access(path, F_OK) != 0) return IMP_ERR_NOT_FOUND;
	json_t *o = json_load_file(path, 0, NULL);
	if(!o) return IMP_ERR_IO;
	int bad = load_key(o, "hmacKey", out->hmac) || load_key(o, "jwtKey", out->jwt);
	json_decref(o);
	return bad ? IMP_ERR_IO : IMP_OK;
}
