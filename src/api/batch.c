/* POST /api/v1/devices/batch: NDJSON in, NDJSON out, one output line per input line, in
 * order. The body is read as it arrives and handled in groups of up to GROUP_LINES lines
 * (or GROUP_BYTES of text), each group in one transaction; the answer is spooled to an
 * unlinked file in the data directory and streamed from it once the body has ended. So
 * memory stays flat whatever the batch size.
 *
 * Resumption: with an Idempotency-Key, every serial number is recorded with its batch
 * name and line number. Sent again at the same line (a client that lost the answer), it
 * maps to the device made before and gets a new credential, which invalidates the one
 * that was never delivered. Sent at another line, it is a duplicate and refused. A batch
 * without a key gets a name of its own, so duplicates inside it are refused the same way. */
#define _GNU_SOURCE /* O_TMPFILE */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/credentials.h"
#include "api/handlers.h"
#include "api/resource.h"
#include "core/mem.h"
#include "core/timeutil.h"

#define GROUP_LINES 1000
#define GROUP_BYTES (4 * 1024 * 1024)
#define BATCH_NAME_MAX 128
/* A group's answers: its lines hold at most GROUP_BYTES of text, and an answer is its line
 * with a few hundred bytes of server-set properties and a channel list added. */
#define TEXT_MAX (256 * 1024 * 1024)

typedef struct {
	size_t off, len;
	int too_long;
} pending;

typedef struct {
	imp_req *r;
	char name[BATCH_NAME_MAX + 3];  /* "k:" or "a:", then the key */
	int64_t generation;      /* Idempotency-Generation, 0 when absent */
	int credentials;
	int64_t line;            /* number of the line being read */
	/* Text of the waiting lines, then the line being read. */
	char *arena;
	size_t alen, acap, cur;  /* cur: where the line being read starts */
	int cur_over;            /* the line being read is past IMP_BODY_MAX: dropped */
	pending p[GROUP_LINES];
	size_t np;
	/* The answers of the group's lines, one after the other, written once it commits. */
	imp_jtext text;
	size_t off[GROUP_LINES + 1]; /* where each line's answer starts in text, and ends */
	unsigned char is_err[GROUP_LINES];
	size_t ran;                  /* lines whose answers are complete */
	FILE *out;
	imp_render_cache cache;
	imp_ref_memo refs;       /* references found in the group's transaction */
	json_t *activated;       /* {"provisioningState": "activated"} */
	char tmpl_id[IMP_UUID_LEN + 1];
	char tmpl_method[IMP_METHOD_LEN];
	int64_t created, renewed, failed;
	uint64_t held_since_us;  /* when the groups in a row without a pause began */
} batch;

static json_t *line_error(imp_req *r, int64_t line, imp_err rc)
{
	const char *code = r->err_code[0] ? r->err_code : imp_err_name(rc);
	const char *msg = r->err_msg[0] ? r->err_msg : "the line could not be handled";
	json_t *err = json_pack("{s:s, s:s}", "code", code, "message", msg);
	if(err && r->err_target[0])
		json_object_set_new(err, "details", json_pack("[{s:s, s:s}]", "target", r->err_target, "message", msg));
	r->err_code[0] = r->err_msg[0] = r->err_target[0] = '\0';
	return json_pack("{s:I, s:o}", "line", (json_int_t)line, "error", err);
}

/* The authentication method of template tid, remembered for the next line. */
static imp_err template_method(batch *b, const char *tid)
{
	if(strcmp(b->tmpl_id, tid) == 0) return IMP_OK;
	imp_entity t;
	imp_err rc = imp_db_get(b->r->db, &imp_kind_device_template, b->r->who.account, tid, &t);
	if(rc) return rc;
	snprintf(b->tmpl_method, sizeof b->tmpl_method, "%s", json_string_value(json_object_get(t.doc, "authenticationMethod")));
	snprintf(b->tmpl_id, sizeof b->tmpl_id, "%s", tid);
	imp_entity_clear(&t);
	return IMP_OK;
}

/* The device of a serial number made before under this batch name, at this line. */
static imp_err existing_device(batch *b, json_t *body, int64_t key, imp_entity *e)
{
	imp_req *r = b->r;
	imp_err rc = imp_db_get_by_key(r->db, &imp_kind_device, r->who.account, key, e);
	if(rc == IMP_ERR_NOT_FOUND)
		return api_fail(r, IMP_ERR_CONFLICT, "device_deleted", "serialNumber",
		                "the device this batch made for this serial number has been deleted");
	if(rc) return rc;
	/* The same serial number, as a second guard beside forgetting deleted devices' items. */
	const char *serial = json_string_value(json_object_get(body, "serialNumber"));
	const char *stored = json_string_value(json_object_get(e->doc, "serialNumber"));
	if(!serial || !stored || strcmp(serial, stored) != 0)
		return api_fail(r, IMP_ERR_CONFLICT, "device_deleted", "serialNumber",
		                "the device this batch made for this serial number has been deleted");
	const char *tid = json_string_value(json_object_get(body, "deviceTemplateId"));
	if(!tid || strcmp(tid, json_string_value(json_object_get(e->doc, "deviceTemplateId"))) != 0)
		return api_fail(r, IMP_ERR_CONFLICT, "batch_mismatch", "deviceTemplateId",
		                "this serial number was made with another deviceTemplateId in this batch");
	return IMP_OK;
}

/* o (taken) and a newline at the end of t. */
static void put_line(imp_jtext *t, json_t *o)
{
	if(!o) t->failed = 1;
	else imp_jtext_value(t, o);
	imp_jtext_raw(t, "\n", 1);
	json_decref(o);
}

/* One line inside the group's transaction: its answer, or an error object, written at the
 * end of b->text; *is_err says which. Fails only when the answer could not be written. */
static imp_err do_line(batch *b, const char *text, size_t len, int64_t line, int too_long, unsigned char *is_err)
{
	imp_req *r = b->r;
	imp_jtext *t = &b->text;
	size_t start = t->len;
	imp_entity e = {0};
	imp_credential c = {0};
	char secret[IMP_SECRET_LEN + 1] = {0};
	json_t *body = NULL;
	char *csr = NULL;
	int replaced = 0, renewed = 0, fresh = 0;
	imp_err rc;

	if(too_long) {
		rc = api_fail(r, IMP_ERR_TOO_LARGE, "line_too_long", NULL, "a line is limited to %d bytes", IMP_BODY_MAX);
		goto out;
	}
	if(len == 0) {
		rc = api_fail(r, IMP_ERR_BAD_REQUEST, "empty_line", NULL, "the line is empty; it must be a device object");
		goto out;
	}
	json_error_t jerr;
	body = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if(!body || !json_is_object(body)) {
		rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_json", NULL,
		              body ? "the line must be a JSON object" : "the line is not valid JSON (at character %d)",
		              body ? 0 : jerr.position);
		goto out;
	}
	json_t *jcsr = json_object_get(body, "csr");
	if(jcsr) {
		if(!json_is_string(jcsr)) {
			rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", "csr", "csr must be a string");
			goto out;
		}
		if(!b->credentials) {
			rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_field", "csr", "csr is only taken with credentials=true");
			goto out;
		}
		csr = imp_strdup(json_string_value(jcsr));
		json_object_del(body, "csr");
		if(!csr) {
			rc = IMP_ERR_NOMEM;
			goto out;
		}
	}
	json_t *jserial = json_object_get(body, "serialNumber");
	const char *serial = json_is_string(jserial) ? json_string_value(jserial) : NULL;
	if(!serial && b->name[0] == 'k') {
		rc = api_fail(r, IMP_ERR_INVALID, "missing_field", "serialNumber",
		              "serialNumber is required in a batch with an Idempotency-Key");
		goto out;
	}
	int64_t seen_line = 0, key = 0, seen_gen = 0;
	rc = serial && strlen(serial) <= IMP_SERIAL_MAX * 4
	         ? imp_db_batch_item_get(r->db, r->who.account, b->name, serial, &seen_line, &key, &seen_gen)
	         : IMP_ERR_NOT_FOUND;
	if(rc == IMP_OK && seen_line != line) {
		rc = api_fail(r, IMP_ERR_CONFLICT, "duplicate_serial", "serialNumber",
		              "this serialNumber is at line %lld of this batch already", (long long)seen_line);
		goto out;
	}
	if(rc == IMP_OK && seen_gen > b->generation) {
		/* A killed client's request, arriving after its rerun handled the line: the
		 * rerun's credential stands, and this answer goes nowhere. */
		rc = api_fail(r, IMP_ERR_CONFLICT, "superseded", "Idempotency-Generation",
		              "a later request of this batch has handled this line");
		goto out;
	}
	if(rc == IMP_OK) {
		renewed = 1;
		if(b->generation > seen_gen &&
		   (rc = imp_db_batch_item_touch(r->db, r->who.account, b->name, serial, b->generation)))
			goto out;
		if((rc = existing_device(b, body, key, &e))) goto out;
	} else if(rc == IMP_ERR_NOT_FOUND) {
		/* A new device that gets its first secret now is stored activated at once, as the
		 * activation would leave it (version 2), instead of written a second time. */
		const char *tid = json_string_value(json_object_get(body, "deviceTemplateId"));
		imp_insert_opts opts = {.refs = &b->refs};
		fresh = b->credentials && !csr && tid && template_method(b, tid) == IMP_OK &&
		        strcmp(b->tmpl_method, "password") == 0;
		if(fresh) {
			opts.set = b->activated;
			opts.version = 2;
		}
		if((rc = imp_res_insert_from(r, &imp_res_device, body, &opts, &e))) goto out;
		if(serial && (rc = imp_db_batch_item_put(r->db, r->who.account, b->name, serial, line, e.key, b->generation)))
			goto out;
	} else {
		goto out;
	}
	if(b->credentials) {
		const char *tid = json_string_value(json_object_get(e.doc, "deviceTemplateId"));
		if((rc = template_method(b, tid))) goto out;
		if(strcmp(b->tmpl_method, "certificate") == 0) {
			if(!csr) {
				rc = api_fail(r, IMP_ERR_INVALID, "csr_required", "csr",
				              "the device's template uses certificates: each line needs a csr");
				goto out;
			}
			rc = imp_cred_certificate(r, e.id.s, NULL, csr, &c, &replaced);
		} else if(csr) {
			rc = api_fail(r, IMP_ERR_INVALID, "password_template", "csr",
			              "the device's template uses passwords; a csr does not apply");
		} else {
			rc = imp_cred_password(r, "device", e.id.s, fresh, secret, &c, &replaced);
		}
		if(rc) goto out;
		if(strcmp(json_string_value(json_object_get(e.doc, "provisioningState")), "defined") == 0) {
			json_object_set_new(e.doc, "provisioningState", json_string("activated"));
			e.version++;
		}
	}
	/* {"line":n,"device":{...},"mqttCredential":{...}}, as json_dumpb would write it */
	imp_jtext_raw(t, "{\"line\":", 8);
	imp_jtext_int(t, line);
	imp_jtext_raw(t, ",\"device\":", 10);
	if(imp_res_render_text(t, r->db, &imp_res_device, &e, &b->cache)) t->failed = 1;
	if(b->credentials) {
		imp_jtext_raw(t, ",\"mqttCredential\":", 18);
		imp_cred_body_text(t, &c, secret[0] ? secret : NULL);
	}
	imp_jtext_raw(t, "}\n", 2);
	if(t->failed) {
		rc = IMP_ERR_NOMEM;
		t->len = start;
		t->failed = 0;
	}
out:
	*is_err = rc != IMP_OK;
	if(rc) {
		put_line(t, line_error(r, line, rc));
		b->failed++;
	} else if(renewed) {
		b->renewed++;
	} else {
		b->created++;
	}
	sodium_memzero(secret, sizeof secret);
	imp_credential_clear(&c);
	imp_entity_clear(&e);
	imp_free(csr);
	json_decref(body);
	return t->failed ? IMP_ERR_NOMEM : IMP_OK;
}

/* Runs the waiting lines inside the group's transaction. Unmarked, they run without a
 * savepoint each: a savepoint per line costs SQLite a copy of every page each line touches
 * (the device row and its indexes), and nearly every line either succeeds or fails before
 * it writes. When a line fails after writing, run_lines stops and sets *redo: the caller
 * undoes the group and runs it again marked, a savepoint around each line, so that the
 * failed line alone leaves nothing behind. */
static imp_err run_lines(batch *b, int64_t first, int marked, int *redo)
{
	imp_req *r = b->r;
	imp_err rc = IMP_OK;
	*redo = 0;
	memset(&b->refs, 0, sizeof b->refs);
	b->text.len = 0;
	b->ran = 0;
	b->off[0] = 0;
	for(size_t i = 0; i < b->np; i++) {
		if(marked && (rc = imp_db_mark(r->db))) return rc;
		int64_t f = b->failed, w = imp_db_writes(r->db);
		rc = do_line(b, b->arena + b->p[i].off, b->p[i].len, first + (int64_t)i, b->p[i].too_long, &b->is_err[i]);
		if(marked) {
			imp_err urc = imp_db_unmark(r->db, b->failed != f);
			if(!rc) rc = urc;
		} else if(!rc && b->failed != f && imp_db_writes(r->db) != w) {
			*redo = 1;
			return IMP_OK;
		}
		if(rc) return rc;
		b->off[i + 1] = b->text.len;
		b->ran = i + 1;
	}
	return IMP_OK;
}

/* Writers in other processes (the broker plugin's connection status) wait for SQLite's
 * file lock by polling it, and a batch takes it back microseconds after each commit: after
 * YIELD_EVERY_US of groups in a row the batch leaves it free for YIELD_US, so they get in
 * within about that long (tests/e2e/test_broker_busy.c). Costs well under 1% of a batch. */
#define YIELD_EVERY_US 200000
#define YIELD_US 3000
static void give_way(batch *b)
{
	uint64_t now = imp_mono_us();
	if(!b->held_since_us) b->held_since_us = now;
	if(now - b->held_since_us < YIELD_EVERY_US) return;
	struct timespec ts = {0, YIELD_US * 1000L};
	nanosleep(&ts, NULL);
	b->held_since_us = imp_mono_us();
}

/* Runs the waiting lines in one transaction and writes their answers once it committed. */
static imp_err run_group(batch *b)
{
	imp_req *r = b->r;
	if(b->np == 0) return IMP_OK;
	int64_t first = b->line - (int64_t)b->np;
	int64_t created = b->created, renewed = b->renewed, failed = b->failed;
	imp_err rc = imp_db_begin(&r->db);
	int redo = 0;
	if(!rc) rc = run_lines(b, first, 0, &redo);
	if(!rc && redo) {
		b->created = created;
		b->renewed = renewed;
		b->failed = failed;
		if(!(rc = imp_db_undo(r->db))) rc = run_lines(b, first, 1, &redo);
	}
	if(!rc) {
		json_t *d = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "batch", b->name + 2, "firstLine", (json_int_t)first,
		                      "lastLine", (json_int_t)(b->line - 1), "created", (json_int_t)(b->created - created),
		                      "renewed", (json_int_t)(b->renewed - renewed), "failed", (json_int_t)(b->failed - failed));
		rc = api_audit(r, "batch", "device", NULL, d);
		json_decref(d);
	}
	if(!rc) rc = imp_db_commit(&r->db);
	else imp_db_rollback(&r->db);
	give_way(b);
	imp_err wrc = IMP_OK;
	if(!rc) {
		if(fwrite(b->text.s, 1, b->text.len, b->out) != b->text.len) wrc = IMP_ERR_IO;
	} else {
		/* Nothing of this group was kept: say so on every line but those that failed on
		 * their own (whose answers, when the group stopped early, may not exist). */
		for(size_t j = 0; j < b->np && !wrc; j++) {
			if(j < b->ran && b->is_err[j]) {
				size_t n = b->off[j + 1] - b->off[j];
				if(fwrite(b->text.s + b->off[j], 1, n, b->out) != n) wrc = IMP_ERR_IO;
				continue;
			}
			api_fail(r, rc, "not_stored", NULL, "the group of lines this one was in could not be stored; send it again");
			json_t *o = line_error(r, first + (int64_t)j, rc);
			if(!o || json_dumpf(o, b->out, JSON_COMPACT) || fputc('\n', b->out) == EOF) wrc = o ? IMP_ERR_IO : IMP_ERR_NOMEM;
			json_decref(o);
		}
	}
	if(b->text.s) sodium_memzero(b->text.s, b->text.len);
	b->text.len = 0;
	if(rc) {
		b->failed += b->created - created + b->renewed - renewed;
		b->created = created;
		b->renewed = renewed;
	}
	b->np = 0;
	b->alen = b->cur = 0;
	return wrc;
}

/* The line being read is complete (or the body ended). */
static imp_err end_line(batch *b)
{
	size_t len = b->alen - b->cur;
	if(!b->cur_over && len && b->arena[b->cur + len - 1] == '\r') len--;
	b->p[b->np].off = b->cur;
	b->p[b->np].len = b->cur_over ? 0 : len;
	b->p[b->np].too_long = b->cur_over;
	b->np++;
	b->line++;
	b->cur_over = 0;
	b->cur = b->alen;
	if(b->np == GROUP_LINES || b->alen >= GROUP_BYTES) return run_group(b);
	return IMP_OK;
}

static imp_err append(batch *b, const char *data, size_t n)
{
	if(b->cur_over || n == 0) return IMP_OK;
	if(b->alen - b->cur + n > IMP_BODY_MAX) {
		b->cur_over = 1;
		b->alen = b->cur;
		return IMP_OK;
	}
	if(b->alen + n > b->acap) {
		size_t cap = b->acap ? b->acap : 64 * 1024;
		while(cap < b->alen + n) cap *= 2;
		char *na = imp_realloc(b->arena, cap);
		if(!na) return IMP_ERR_NOMEM;
		b->arena = na;
		b->acap = cap;
	}
	memcpy(b->arena + b->alen, data, n);
	b->alen += n;
	return IMP_OK;
}

static imp_err batch_feed(void *state, const char *data, size_t len)
{
	batch *b = state;
	while(len) {
		const char *nl = memchr(data, '\n', len);
		size_t n = nl ? (size_t)(nl - data) : len;
		imp_err rc = append(b, data, n);
		if(!rc && nl) rc = end_line(b);
		if(rc) return api_fail(b->r, rc, NULL, NULL, "the batch could not be read");
		n += nl ? 1 : 0;
		data += n;
		len -= n;
	}
	return IMP_OK;
}

static int printable_name(const char *s)
{
	size_t n = strlen(s);
	if(n == 0 || n > BATCH_NAME_MAX) return 0;
	for(; *s; s++) {
		if((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) return 0;
	}
	return 1;
}

static imp_err batch_open(imp_req *r, void **state)
{
	static const char *const allowed[] = {"credentials", "firstLine", NULL};
	imp_err rc = api_query_known(r, allowed);
	if(rc || (rc = api_check_query_account(r))) return rc;
	const char *cred = api_query(r, "credentials");
	if(cred && strcmp(cred, "true") != 0 && strcmp(cred, "false") != 0)
		return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_parameter", "credentials", "credentials must be true or false");
	const char *fl = api_query(r, "firstLine");
	long long first = 1;
	if(fl) {
		char *end;
		first = strtoll(fl, &end, 10);
		if(!*fl || *end || first < 1 || first > 1000000000000LL)
			return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_parameter", "firstLine", "firstLine must be a positive integer");
	}
	const char *key = api_header(r, "Idempotency-Key");
	if(key && !printable_name(key))
		return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_header", "Idempotency-Key",
		                "Idempotency-Key must be 1 to %d printable ASCII characters", BATCH_NAME_MAX);
	const char *gen = api_header(r, "Idempotency-Generation");
	long long generation = 0;
	if(gen) {
		char *end;
		errno = 0;
		generation = strtoll(gen, &end, 10);
		if(!key || !*gen || *end || generation < 0 || errno == ERANGE)
			return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_header", "Idempotency-Generation",
			                "Idempotency-Generation must be a non-negative integer, sent with an Idempotency-Key");
	}
	batch *b = imp_calloc(1, sizeof *b);
	if(!b) return api_fail(r, IMP_ERR_NOMEM, NULL, NULL, "out of memory");
	b->r = r;
	b->generation = generation;
	imp_jtext_init(&b->text, TEXT_MAX);
	b->credentials = cred && strcmp(cred, "true") == 0;
	b->line = first;
	/* Keyed names and the names of unkeyed batches live apart: "k:" and "a:". */
	if(key) {
		snprintf(b->name, sizeof b->name, "k:%s", key);
	} else {
		imp_id id;
		if(imp_id_new(&id)) {
			imp_free(b);
			return api_fail(r, IMP_ERR_CRYPTO, NULL, NULL, "could not name the batch");
		}
		snprintf(b->name, sizeof b->name, "a:%s", id.s);
	}
	/* The answer holds secrets until it is sent: an unlinked file in the data directory
	 * (mode 0700), never a named one. */
	int fd = open(r->app->data_dir ? r->app->data_dir : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	b->out = fd >= 0 ? fdopen(fd, "w+") : NULL;
	if(!b->out) {
		if(fd >= 0) close(fd);
		imp_free(b);
		return api_fail(r, IMP_ERR_IO, NULL, NULL, "could not make room for the answer");
	}
	b->activated = json_pack("{s:s}", "provisioningState", "activated");
	if(!b->activated) {
		fclose(b->out);
		imp_free(b);
		return api_fail(r, IMP_ERR_NOMEM, NULL, NULL, "out of memory");
	}
	*state = b;
	return IMP_OK;
}

static imp_err batch_finish(void *state, int *fd, uint64_t *size, const char **content_type)
{
	batch *b = state;
	imp_err rc = IMP_OK;
	if(b->alen > b->cur || b->cur_over) rc = end_line(b);
	if(!rc) rc = run_group(b);
	if(rc) return api_fail(b->r, rc, NULL, NULL, "the batch could not be finished");
	long end = fflush(b->out) == 0 ? ftell(b->out) : -1;
	int dfd = end >= 0 ? dup(fileno(b->out)) : -1;
	if(dfd < 0 || lseek(dfd, 0, SEEK_SET) != 0) {
		if(dfd >= 0) close(dfd);
		return api_fail(b->r, IMP_ERR_IO, NULL, NULL, "could not send the answer");
	}
	*fd = dfd;
	*size = (uint64_t)end;
	*content_type = "application/x-ndjson";
	return IMP_OK;
}

static void batch_close(void *state)
{
	batch *b = state;
	imp_jtext_free(&b->text);
	imp_render_cache_clear(&b->cache);
	json_decref(b->activated);
	if(b->out) fclose(b->out);
	if(b->arena) sodium_memzero(b->arena, b->acap);
	imp_free(b->arena);
	imp_free(b);
}

const imp_stream_ops imp_batch_stream = {batch_open, batch_feed, batch_finish, batch_close};
