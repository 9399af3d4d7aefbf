/* One line of POST /api/v1/devices/batch's answer, turned into a credential bundle:
 * {"line": n, "device": {...}, "mqttCredential": {...}} or {"line": n, "error": {...}}. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli/batch.h"
#include "core/mem.h"

/* More channels than any template has; past it the answer is taken as broken. */
#define CHANNELS_MAX 4096

static const char *str(json_t *o, const char *key) { return json_string_value(json_object_get(o, key)); }

/* A reason for a person from the server's error object, without control characters. */
static void refusal(json_t *err, char *why, size_t why_len)
{
	const char *code = str(err, "code"), *msg = str(err, "message");
	snprintf(why, why_len, "%s%s%s%s", msg ? msg : "refused", code ? " (" : "", code ? code : "", code ? ")" : "");
	for(char *p = why; *p; p++) {
		if((unsigned char)*p < 0x20) *p = ' ';
	}
}

batch_answer_kind batch_answer(const char *text, size_t n, long expect_line, batch_format f, const batch_broker *br,
                               const char *private_key, batch_buf *out, int *cut, char *why, size_t why_len)
{
	batch_answer_kind kind = BATCH_ANSWER_BROKEN;
	const char **names = NULL;
	json_t *o = json_loadb(text, n, JSON_REJECT_DUPLICATES, NULL);
	json_t *line = json_object_get(o, "line");
	snprintf(why, why_len, "the server's answer for this line is malformed");
	if(!json_is_integer(line) || json_integer_value(line) != expect_line) {
		snprintf(why, why_len, "the server answered for another line");
		goto out;
	}
	json_t *err = json_object_get(o, "error");
	if(json_is_object(err)) {
		refusal(err, why, why_len);
		kind = BATCH_ANSWER_REFUSED;
		goto out;
	}
	json_t *dev = json_object_get(o, "device"), *cred = json_object_get(o, "mqttCredential");
	json_t *channels = json_object_get(dev, "channels");
	batch_bundle b = {.device_id = str(dev, "id"), .serial = str(dev, "serialNumber"),
	                  .account_id = str(dev, "accountId"), .template_id = str(dev, "deviceTemplateId")};
	if(!b.device_id || !b.serial || !b.account_id || !b.template_id || !json_is_array(channels) ||
	   json_array_size(channels) > CHANNELS_MAX)
		goto out;
	if(!json_is_object(cred)) {
		/* The device exists, but without a credential there is nothing to flash. */
		snprintf(why, why_len, "the server made device %s but sent no credential for it", b.device_id);
		kind = BATCH_ANSWER_REFUSED;
		goto out;
	}
	if(private_key) {
		b.certificate = str(cred, "certificate");
		b.private_key = private_key;
		if(!b.certificate) goto out;
	} else {
		b.password = str(cred, "secret");
		if(!b.password) goto out;
	}
	b.nchannels = json_array_size(channels);
	names = imp_calloc(b.nchannels * 3 + 1, sizeof *names);
	if(!names) goto out;
	b.channel_names = names;
	b.channel_topics = names + b.nchannels;
	b.channel_permissions = names + 2 * b.nchannels;
	for(size_t i = 0; i < b.nchannels; i++) {
		json_t *c = json_array_get(channels, i);
		names[i] = str(c, "channelTemplateName");
		names[b.nchannels + i] = str(c, "channel");
		names[2 * b.nchannels + i] = str(c, "permission");
		if(!names[i] || !names[b.nchannels + i] || !names[2 * b.nchannels + i]) goto out;
	}
	imp_err rc = IMP_OK;
	size_t mark = out->n;
	if(f == BATCH_DIR) {
		char file[256];
		batch_file_name(b.serial, b.device_id, file);
		rc = batch_buf_add(out, file, strlen(file) + 1);
	}
	if(!rc) rc = batch_bundle_write(f, &b, br, out, cut);
	if(!rc && f == BATCH_DIR) rc = batch_buf_add(out, "", 1);
	if(rc) {
		out->n = mark;
		snprintf(why, why_len, "cannot hold the bundle (%s)", imp_err_name(rc));
		goto out;
	}
	why[0] = '\0';
	kind = BATCH_ANSWER_BUNDLE;
out:
	imp_free(names);
	json_decref(o);
	return kind;
}
