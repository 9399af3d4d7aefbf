/* The resumption state of a batch, one small JSON file next to the output. It only ever
 * describes output that is already on disk: a crash leaves either the old state or the
 * new one, and both are true. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/batch.h"
#include "core/mem.h"

#define STATE_VERSION 1

static int copy_str(json_t *o, const char *key, char *out, size_t cap)
{
	const char *s = json_string_value(json_object_get(o, key));
	if(!s || strlen(s) >= cap) return -1;
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

static int get_int(json_t *o, const char *key, int64_t *out)
{
	json_t *v = json_object_get(o, key);
	if(!json_is_integer(v) || json_integer_value(v) < 0) return -1;
	*out = json_integer_value(v);
	return 0;
}

imp_err batch_state_load(const char *path, batch_state *st)
{
	memset(st, 0, sizeof *st);
	if(access(path, F_OK) != 0) return errno == ENOENT ? IMP_ERR_NOT_FOUND : IMP_ERR_IO;
	json_t *o = json_load_file(path, 0, NULL);
	if(!o) return IMP_ERR_IO;
	int64_t version = 0, lines = 0, ok = 0, failed = 0;
	int bad = get_int(o, "version", &version) || version != STATE_VERSION ||
	          copy_str(o, "name", st->name, sizeof st->name) ||
	          copy_str(o, "template", st->template_id, sizeof st->template_id) ||
	          copy_str(o, "format", st->format, sizeof st->format) || get_int(o, "lines", &lines) ||
	          get_int(o, "inputOffset", &st->input_offset) || get_int(o, "outputBytes", &st->output_bytes) ||
	          get_int(o, "ok", &ok) || get_int(o, "failed", &failed);
	/* absent in the states of the first version of this file */
	if(!bad && json_object_get(o, "run")) bad = get_int(o, "run", &st->run);
	json_decref(o);
	if(bad) return IMP_ERR_IO;
	st->lines = (long)lines;
	st->ok = (long)ok;
	st->failed = (long)failed;
	return IMP_OK;
}

/* fsync of the directory holding path, so that a rename in it is durable. */
static int sync_dir_of(const char *path)
{
	char copy[4096];
	if(snprintf(copy, sizeof copy, "%s", path) >= (int)sizeof copy) return -1;
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if(fd < 0) return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

imp_err batch_state_save(const char *path, const batch_state *st)
{
	char tmp[4096];
	if(snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return IMP_ERR_IO;
	json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "version", STATE_VERSION, "name",
	                      st->name, "template", st->template_id, "format", st->format, "lines",
	                      (json_int_t)st->lines, "inputOffset", (json_int_t)st->input_offset, "outputBytes",
	                      (json_int_t)st->output_bytes, "ok", (json_int_t)st->ok, "failed", (json_int_t)st->failed,
	                      "run", (json_int_t)st->run);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if(!text) return IMP_ERR_NOMEM;
	imp_err rc = IMP_ERR_IO;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if(fd >= 0) {
		size_t n = strlen(text);
		text[n] = '\n';
		ssize_t w = write(fd, text, n + 1);
		if(w == (ssize_t)(n + 1) && fsync(fd) == 0) rc = IMP_OK;
		if(close(fd)) rc = IMP_ERR_IO;
	}
	free(text);
	if(!rc && rename(tmp, path)) rc = IMP_ERR_IO;
	if(!rc && sync_dir_of(path)) rc = IMP_ERR_IO;
	if(rc) {
		int err = errno; /* the failure's, for the caller's message, not unlink's */
		unlink(tmp);
		errno = err;
	}
	return rc;
}
