/* POST /api/v1/devices/batch: NDJSON in, NDJSON out, one output line per input line, in
 * order. The body is read as it arrives and handled in groups of up to GROUP_LINES lines
 * (or GROUP_BYTES of text), each group in one transaction; the answer is held in memory
 * up to ANSWER_MEM (a request of imprint batch, one group, never goes past it), past that
 * spooled to an unlinked file in the data directory, and sent once the body has ended.
 * So memory stays flat whatever the batch size.
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
#include <strings.h>
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
/* Answers held in memory before they go to the spool file. Writing them to a file and
 * sending them from it was 4% of a batch's server time. */
#define ANSWER_MEM (2 * 1024 * 1024)

typedef struct {
	size_t off, len;
	int too_long;
} pending;

/* Where a line stands. A group runs in three passes: prep_line for every line outside
 * the store's writer (parsing, the new device's document and id, the secret and its hash),
 * inside the group's transaction the store's part only (write_guessed for the whole group,
 * or write_line line by line when that cannot be used or failed), and
 * once it committed, the answers, again outside it. Requests of one client (imprint batch
 * keeps two in flight) so overlap: one's parsing and answering with the other's writes. */
enum { LINE_EARLY_ERR = 1, LINE_PREP_ERR, LINE_ERR, LINE_NEW, LINE_RENEWED };

typedef struct {
	unsigned char state;     /* 0 until prepared, then a LINE_* */
	unsigned char fresh;     /* a new device stored activated with its first secret */
	unsigned char has_secret;
	json_t *body;            /* the parsed line (NULL when it failed early) */
	char *csr;
	imp_entity e;            /* the new device prepared, then the device stored */
	imp_credential c;
	imp_id cred_id;
	char secret[IMP_SECRET_LEN + 1];
	char hash[65];
	size_t err_off, err_len; /* the error answer in errs (LINE_*ERR) */
} line_st;

typedef struct {
	imp_req *r;
	char name[BATCH_NAME_MAX + 3];  /* "k:" or "a:", then the key */
	int64_t generation;      /* Idempotency-Generation, 0 when absent */
	int credentials;
	int minimal;             /* Prefer: return=minimal (see answer_line) */
	int64_t line;            /* number of the line being read */
	/* Text of the waiting lines, then the line being read. */
	char *arena;
	size_t alen, acap, cur;  /* cur: where the line being read starts */
	int cur_over;            /* the line being read is past IMP_BODY_MAX: dropped */
	pending p[GROUP_LINES];
	size_t np;
	line_st st[GROUP_LINES];
	imp_jtext errs;          /* the error answers of the group's lines */
	imp_jtext text;          /* the answers not spooled yet */
	FILE *out;               /* the spool file, written once the answers outgrow ANSWER_MEM */
	int spilled;             /* it has been */
	imp_render_cache cache;
	imp_ref_memo refs;       /* references found in the group's transaction */
	json_t *activated;       /* {"provisioningState": "activated"} */
	char tmpl_id[IMP_UUID_LEN + 1];
	char tmpl_method[IMP_METHOD_LEN];
	int64_t created, renewed, failed;
	size_t answered, answer_bytes; /* lines answered so far, and their bytes */
	uint64_t held_since_us;  /* when the groups in a row without a pause began */
	/* Pass two takes each serial number for new to this batch without looking it up (a
	 * lookup was 4% of a batch's server time), which lets it insert the group's devices
	 * together (write_guessed): a serial seen before fails its batch item's insert after
	 * its device was written, and the group is run again marked, looking each up. After
	 * one such group, this request looks them all up. */
	int guess_new;
	/* write_guessed's rows, stored together */
	imp_entity *new_devices[GROUP_LINES];
	imp_batch_item items[GROUP_LINES];
	imp_credential *creds[GROUP_LINES];
	const char *cred_hashes[GROUP_LINES];
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

/* The device of a serial number made before under this batch name, at this line: the
 * device of that key, if it is still the one made then (the same id: a device made later
 * takes the key of a deleted one that had the largest). */
static imp_err existing_device(batch *b, json_t *body, const imp_batch_found *seen, imp_entity *e)
{
	imp_req *r = b->r;
	imp_err rc = imp_db_get_by_key(r->db, &imp_kind_device, r->who.account, seen->device_key, e);
	if(rc == IMP_OK && strcmp(e->id.s, seen->device_id.s) != 0) {
		imp_entity_clear(e);
		rc = IMP_ERR_NOT_FOUND;
	}
	if(rc == IMP_ERR_NOT_FOUND)
		return api_fail(r, IMP_ERR_CONFLICT, "device_deleted", "serialNumber",
		                "the device this batch made for this serial number has been deleted");
	if(rc) return rc;
	/* The same serial number, as a second guard. */
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

/* Line i's error answer (r's error) into errs, as its answer. */
static void error_line(batch *b, size_t i, int64_t line, imp_err rc, unsigned char state)
{
	line_st *s = &b->st[i];
	s->state = state;
	s->err_off = b->errs.len;
	put_line(&b->errs, line_error(b->r, line, rc));
	s->err_len = b->errs.len - s->err_off;
}

static void clear_line(line_st *s)
{
	json_decref(s->body);
	imp_free(s->csr);
	imp_entity_clear(&s->e);
	imp_credential_clear(&s->c);
	sodium_memzero(s->secret, sizeof s->secret);
	sodium_memzero(s->hash, sizeof s->hash);
	memset(s, 0, sizeof *s);
}

/* Pass one, outside the writer: what line i needs no store for. A failure here is the
 * line's answer (LINE_EARLY_ERR), except one in building the new device, which counts only
 * if the line turns out to make one (LINE_PREP_ERR: a line of a resumed batch uses the
 * device made before, as it did before this pass existed). */
static void prep_line(batch *b, size_t i, int64_t line)
{
	imp_req *r = b->r;
	line_st *s = &b->st[i];
	const char *text = b->arena + b->p[i].off;
	size_t len = b->p[i].len;
	imp_err rc;
	if(b->p[i].too_long) {
		rc = api_fail(r, IMP_ERR_TOO_LARGE, "line_too_long", NULL, "a line is limited to %d bytes", IMP_BODY_MAX);
		goto early;
	}
	if(len == 0) {
		rc = api_fail(r, IMP_ERR_BAD_REQUEST, "empty_line", NULL, "the line is empty; it must be a device object");
		goto early;
	}
	json_error_t jerr;
	s->body = imp_json_load(text, len, &jerr);
	if(!s->body || !json_is_object(s->body)) {
		rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_json", NULL,
		              s->body ? "the line must be a JSON object" : "the line is not valid JSON (at character %d)",
		              s->body ? 0 : jerr.position);
		goto early;
	}
	json_t *jcsr = json_object_get(s->body, "csr");
	if(jcsr) {
		if(!json_is_string(jcsr)) {
			rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", "csr", "csr must be a string");
			goto early;
		}
		if(!b->credentials) {
			rc = api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_field", "csr", "csr is only taken with credentials=true");
			goto early;
		}
		s->csr = imp_strdup(json_string_value(jcsr));
		json_object_del(s->body, "csr");
		if(!s->csr) {
			rc = IMP_ERR_NOMEM;
			goto early;
		}
	}
	if(!json_is_string(json_object_get(s->body, "serialNumber")) && b->name[0] == 'k') {
		rc = api_fail(r, IMP_ERR_INVALID, "missing_field", "serialNumber",
		              "serialNumber is required in a batch with an Idempotency-Key");
		goto early;
	}
	if(b->credentials && !s->csr) {
		if((rc = imp_cred_password_new(r, s->secret, s->hash, &s->cred_id))) goto early;
		s->has_secret = 1;
	}
	/* A new device that gets its first secret now is stored activated at once, as the
	 * activation would leave it (version 2), instead of written a second time. */
	const char *tid = json_string_value(json_object_get(s->body, "deviceTemplateId"));
	s->fresh = b->credentials && !s->csr && tid && template_method(b, tid) == IMP_OK &&
	           strcmp(b->tmpl_method, "password") == 0;
	imp_insert_opts opts = {.set = s->fresh ? b->activated : NULL};
	if((rc = imp_res_prepare_from(r, &imp_res_device, s->body, &opts, &s->e))) {
		error_line(b, i, line, rc, LINE_PREP_ERR);
		return;
	}
	/* its first credential, ready for write_guessed (outside the writer's turn) */
	if(s->fresh) imp_cred_password_fill(r, "device", s->e.id.s, &s->cred_id, &s->c);
	s->state = LINE_NEW;
	return;
early:
	error_line(b, i, line, rc, LINE_EARLY_ERR);
}

/* The credential of line s, whose device is stored (made now or before): pass two's last
 * step. */
static imp_err line_credential(batch *b, line_st *s)
{
	imp_req *r = b->r;
	int replaced = 0;
	imp_err rc;
	const char *tid = json_string_value(json_object_get(s->e.doc, "deviceTemplateId"));
	if((rc = template_method(b, tid))) return rc;
	if(strcmp(b->tmpl_method, "certificate") == 0) {
		if(!s->csr)
			return api_fail(r, IMP_ERR_INVALID, "csr_required", "csr",
			                "the device's template uses certificates: each line needs a csr");
		rc = imp_cred_certificate(r, s->e.id.s, NULL, s->csr, &s->c, &replaced);
		sodium_memzero(s->secret, sizeof s->secret);
		s->has_secret = 0;
	} else if(s->csr) {
		rc = api_fail(r, IMP_ERR_INVALID, "password_template", "csr",
		              "the device's template uses passwords; a csr does not apply");
	} else {
		rc = imp_cred_password_put(r, "device", s->e.id.s, s->fresh, s->hash, &s->cred_id, &s->c, &replaced);
	}
	if(rc) return rc;
	if(strcmp(json_string_value(json_object_get(s->e.doc, "provisioningState")), "defined") == 0) {
		json_object_set_new(s->e.doc, "provisioningState", json_string("activated"));
		s->e.version++;
	}
	return IMP_OK;
}

/* Pass two, inside the group's transaction, looking the serial number up: line i's
 * device (made now, or made before by this batch) and its credential. A failure is the
 * line's answer. */
static imp_err write_line(batch *b, size_t i, int64_t line)
{
	imp_req *r = b->r;
	line_st *s = &b->st[i];
	int renewed = 0;
	imp_err rc;
	if(s->state == LINE_EARLY_ERR) return IMP_OK;
	const char *serial = json_string_value(json_object_get(s->body, "serialNumber"));
	imp_batch_found seen = {0};
	rc = serial && strlen(serial) <= IMP_SERIAL_MAX * 4
	         ? imp_db_batch_item_get(r->db, r->who.account, b->name, serial, &seen)
	         : IMP_ERR_NOT_FOUND;
	if(rc == IMP_OK && seen.line != line) {
		rc = api_fail(r, IMP_ERR_CONFLICT, "duplicate_serial", "serialNumber",
		              "this serialNumber is at line %lld of this batch already", (long long)seen.line);
		goto fail;
	}
	if(rc == IMP_OK && seen.generation > b->generation) {
		/* A killed client's request, arriving after its rerun handled the line: the
		 * rerun's credential stands, and this answer goes nowhere. */
		rc = api_fail(r, IMP_ERR_CONFLICT, "superseded", "Idempotency-Generation",
		              "a later request of this batch has handled this line");
		goto fail;
	}
	if(rc == IMP_OK) {
		renewed = 1;
		s->fresh = 0;
		imp_entity_clear(&s->e);
		if(b->generation > seen.generation &&
		   (rc = imp_db_batch_item_touch(r->db, r->who.account, b->name, serial, b->generation)))
			goto fail;
		if((rc = existing_device(b, s->body, &seen, &s->e))) goto fail;
	} else if(rc == IMP_ERR_NOT_FOUND) {
		if(s->state == LINE_PREP_ERR) {
			/* the new device's own fault, found in pass one: that is the answer */
			s->state = LINE_ERR;
			b->failed++;
			return IMP_OK;
		}
		imp_insert_opts opts = {.refs = &b->refs, .version = s->fresh ? 2 : 0};
		if((rc = imp_res_insert_prepared(r, &imp_res_device, &opts, &s->e))) goto fail;
		imp_batch_item item = {serial, s->e.id.s, line, s->e.key};
		if(serial && (rc = imp_db_batch_items_put(r->db, r->who.account, b->name, &item, b->generation, 1)))
			goto fail;
	} else {
		goto fail;
	}
	if(b->credentials && (rc = line_credential(b, s))) goto fail;
	s->state = renewed ? LINE_RENEWED : LINE_NEW;
	if(renewed) b->renewed++;
	else b->created++;
	return IMP_OK;
fail:
	if(rc == IMP_ERR_NOMEM) return rc;
	error_line(b, i, line, rc, LINE_ERR);
	b->failed++;
	return IMP_OK;
}

/* A device's id, serial number, state and version: the device of a minimal answer. */
static void device_minimal(imp_jtext *t, const imp_entity *e)
{
	imp_jtext_raw(t, "{\"id\":\"", 7);
	imp_jtext_raw(t, e->id.s, strlen(e->id.s));
	imp_jtext_raw(t, "\"", 1);
	imp_jtext_key(t, "serialNumber", 1);
	imp_jtext_value(t, json_object_get(e->doc, "serialNumber"));
	imp_jtext_key(t, "provisioningState", 1);
	imp_jtext_value(t, json_object_get(e->doc, "provisioningState"));
	imp_jtext_key(t, "version", 1);
	imp_jtext_raw(t, "\"", 1);
	imp_jtext_int(t, e->version);
	imp_jtext_raw(t, "\"}", 2);
}

/* Pass three, after the commit: line i's answer at the end of b->text. A device the group
 * stored is answered {"line":n,"device":{...},"mqttCredential":{...}}, as json_dumpb would
 * write it; with Prefer: return=minimal, the device is only its id, serialNumber,
 * provisioningState and version (a factory's client has the template's channels already:
 * the full device was two thirds of the answer's bytes, and of the time spent writing and
 * reading them). */
static void answer_line(batch *b, size_t i, int64_t line)
{
	line_st *s = &b->st[i];
	imp_jtext *t = &b->text;
	if(s->state != LINE_NEW && s->state != LINE_RENEWED) {
		imp_jtext_raw(t, b->errs.s + s->err_off, s->err_len);
		return;
	}
	size_t start = t->len;
	imp_jtext_raw(t, "{\"line\":", 8);
	imp_jtext_int(t, line);
	imp_jtext_raw(t, ",\"device\":", 10);
	if(b->minimal) device_minimal(t, &s->e);
	else if(imp_res_render_text(t, b->r->db, &imp_res_device, &s->e, &b->cache)) t->failed = 1;
	if(b->credentials) {
		imp_jtext_raw(t, ",\"mqttCredential\":", 18);
		imp_cred_body_text(t, &s->c, s->has_secret ? s->secret : NULL);
	}
	imp_jtext_raw(t, "}\n", 2);
	if(t->failed && t->len + 4096 < t->max) {
		/* Out of memory for this answer alone: the line is stored, and sent again at this
		 * line (a resumed batch) it gets its device with a new secret. */
		t->len = start;
		t->failed = 0;
		api_fail(b->r, IMP_ERR_NOMEM, "not_answered", NULL,
		         "the device was stored but its answer could not be made; send the line again");
		put_line(t, line_error(b->r, line, IMP_ERR_NOMEM));
	}
}

/* Pass two over the group's lines, inside its transaction. Unmarked, they run without a
 * savepoint each: a savepoint per line costs SQLite a copy of every page each line touches
 * (the device row and its indexes), and nearly every line either succeeds or fails before
 * it writes. When a line fails after writing, write_lines stops and sets *redo: the caller
 * undoes the group and runs it again marked, a savepoint around each line, so that the
 * failed line alone leaves nothing behind. */
static imp_err write_lines(batch *b, int64_t first, int marked, int *redo)
{
	imp_req *r = b->r;
	imp_err rc = IMP_OK;
	*redo = 0;
	memset(&b->refs, 0, sizeof b->refs);
	for(size_t i = 0; i < b->np; i++) {
		if(marked && (rc = imp_db_mark(r->db))) return rc;
		int64_t f = b->failed, w = imp_db_writes(r->db);
		rc = write_line(b, i, first + (int64_t)i);
		if(marked) {
			imp_err urc = imp_db_unmark(r->db, b->failed != f);
			if(!rc) rc = urc;
		} else if(!rc && b->failed != f && imp_db_writes(r->db) != w) {
			/* A line that failed after writing undoes the group. */
			*redo = 1;
			return IMP_OK;
		}
		if(rc) return rc;
	}
	return IMP_OK;
}

/* Pass two unmarked while guess_new holds: every line's checks, then the group's devices,
 * batch items and first passwords, each in multi-row inserts (imp_db_insert_many: device
 * rows cost half as much so), then the credentials that take more (certificates). A
 * failed line sets *redo, whatever failed: it may have failed only for being taken for new
 * unlooked (a device made before, whose line now fails the checks of a new one), so the
 * group runs again marked, looking each up. */
static imp_err write_guessed(batch *b, int64_t first, int *redo)
{
	imp_req *r = b->r;
	imp_entity **es = b->new_devices;
	size_t n = 0, ni = 0, nc = 0;
	imp_err rc = IMP_OK;
	*redo = 0;
	memset(&b->refs, 0, sizeof b->refs);
	for(size_t i = 0; i < b->np; i++) {
		line_st *s = &b->st[i];
		if(s->state == LINE_EARLY_ERR) continue;
		if(s->state == LINE_PREP_ERR) goto redo;
		imp_insert_opts opts = {.refs = &b->refs};
		s->e.version = s->fresh ? 2 : 1;
		if((rc = imp_res_check_prepared(r, &imp_res_device, &opts, &s->e))) goto failed;
		es[n++] = &s->e;
	}
	if((rc = imp_db_insert_many(r->db, &imp_kind_device, es, n))) goto failed;
	for(size_t i = 0; i < b->np; i++) {
		line_st *s = &b->st[i];
		if(s->state == LINE_EARLY_ERR) continue;
		const char *serial = json_string_value(json_object_get(s->body, "serialNumber"));
		if(serial) {
			b->items[ni++] = (imp_batch_item){serial, s->e.id.s, first + (int64_t)i, s->e.key};
		}
		if(b->credentials && s->fresh) {
			b->creds[nc] = &s->c;
			b->cred_hashes[nc++] = s->hash;
		}
	}
	if((rc = imp_db_batch_items_put(r->db, r->who.account, b->name, b->items, b->generation, ni)) ||
	   (rc = imp_db_credentials_first(r->db, b->creds, b->cred_hashes, nc)))
		goto failed;
	for(size_t i = 0; i < b->np; i++) {
		line_st *s = &b->st[i];
		if(s->state == LINE_EARLY_ERR) continue;
		if(b->credentials && !s->fresh && (rc = line_credential(b, s))) goto failed;
		s->state = LINE_NEW;
		b->created++;
	}
	return IMP_OK;
failed:
	if(rc == IMP_ERR_NOMEM) return rc;
redo:
	r->err_code[0] = r->err_msg[0] = r->err_target[0] = '\0';
	*redo = 1;
	return IMP_OK;
}

/* Every line back to unprepared, and pass one again. */
static void prep_lines(batch *b, int64_t first)
{
	b->errs.len = 0;
	for(size_t i = 0; i < b->np; i++) {
		clear_line(&b->st[i]);
		prep_line(b, i, first + (int64_t)i);
		if(b->st[i].state == LINE_EARLY_ERR) b->failed++;
	}
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

/* The answers held in memory to the end of the spool file (made by batch_open, before any
 * line is stored, so that a directory without room for it fails the request cleanly). */
static imp_err spill(batch *b)
{
	b->spilled = 1;
	imp_err rc = fwrite(b->text.s, 1, b->text.len, b->out) == b->text.len ? IMP_OK : IMP_ERR_IO;
	if(b->text.s) sodium_memzero(b->text.s, b->text.len);
	b->text.len = 0;
	return rc;
}

/* Runs the waiting lines: prepared, stored in one transaction, answered once it committed. */
static imp_err run_group(batch *b)
{
	imp_req *r = b->r;
	if(b->np == 0) return IMP_OK;
	int64_t first = b->line - (int64_t)b->np;
	int64_t created = b->created, renewed = b->renewed, failed = b->failed;
	prep_lines(b, first);
	imp_err rc = b->errs.failed ? IMP_ERR_NOMEM : imp_db_begin(&r->db);
	int redo = 0;
	if(!rc) rc = b->guess_new ? write_guessed(b, first, &redo) : write_lines(b, first, 0, &redo);
	if(!rc && redo) {
		b->guess_new = 0;
		b->created = created;
		b->renewed = renewed;
		b->failed = failed;
		if(!(rc = imp_db_undo(r->db))) {
			prep_lines(b, first);
			rc = b->errs.failed ? IMP_ERR_NOMEM : write_lines(b, first, 1, &redo);
		}
	}
	if(!rc) {
		json_t *d = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "batch", b->name + 2, "firstLine", (json_int_t)first,
		                      "lastLine", (json_int_t)(b->line - 1), "created", (json_int_t)(b->created - created),
		                      "renewed", (json_int_t)(b->renewed - renewed), "failed", (json_int_t)(b->failed - failed));
		rc = api_audit(r, "batch", "device", NULL, d);
		json_decref(d);
	}
	if(!rc) rc = imp_db_commit_now(&r->db);
	else imp_db_rollback(&r->db);
	give_way(b);
	if(!rc) {
		/* Room for the answers at once, guessed from the ones before (2 kB for a device
		 * with four channels): growing a buffer of secrets copies and zeroes it each time.
		 * Never more than ANSWER_MEM: past that the answers go to the spool file. */
		size_t at = b->text.len, guess = b->answered ? b->answer_bytes / b->answered + 64 : 2048;
		imp_jtext_reserve(&b->text, b->np * guess < ANSWER_MEM ? b->np * guess : ANSWER_MEM);
		for(size_t j = 0; j < b->np; j++) answer_line(b, j, first + (int64_t)j);
		b->answered += b->np;
		b->answer_bytes += b->text.len - at;
	} else {
		/* Nothing of this group was kept: say so on every line but those that failed on
		 * their own (a line whose new device failed in pass one but that pass two never
		 * reached is undecided: it might have been a line seen before). */
		for(size_t j = 0; j < b->np; j++) {
			line_st *s = &b->st[j];
			if(s->state == LINE_EARLY_ERR || s->state == LINE_ERR) {
				imp_jtext_raw(&b->text, b->errs.s + s->err_off, s->err_len);
				continue;
			}
			api_fail(r, rc, "not_stored", NULL, "the group of lines this one was in could not be stored; send it again");
			put_line(&b->text, line_error(r, first + (int64_t)j, rc));
		}
	}
	imp_err wrc = b->text.failed ? IMP_ERR_NOMEM : IMP_OK;
	if(!wrc && (b->spilled || b->text.len > ANSWER_MEM)) wrc = spill(b);
	for(size_t j = 0; j < b->np; j++) clear_line(&b->st[j]);
	b->errs.len = 0;
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

/* Whether a Prefer header (RFC 7240: preferences separated by commas, each with
 * parameters after semicolons) asks for return=minimal. Other preferences are ignored. */
static int prefers_minimal(const char *h)
{
	static const char want[] = "return=minimal";
	for(const char *p = h; p && *p;) {
		while(*p == ' ' || *p == '\t' || *p == ',') p++;
		size_t n = strcspn(p, ",;");
		size_t m = n;
		while(m && (p[m - 1] == ' ' || p[m - 1] == '\t')) m--;
		if(m == sizeof want - 1 && strncasecmp(p, want, m) == 0) return 1;
		p += n;
		p += strcspn(p, ",");
	}
	return 0;
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
	b->guess_new = 1;
	imp_jtext_init(&b->text, TEXT_MAX);
	imp_jtext_init(&b->errs, TEXT_MAX);
	b->credentials = cred && strcmp(cred, "true") == 0;
	b->minimal = prefers_minimal(api_header(r, "Prefer"));
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
	/* Answers past ANSWER_MEM hold secrets until sent: an unlinked file in the data
	 * directory (mode 0700), never a named one. */
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

static imp_err batch_finish(void *state, imp_stream_answer *a)
{
	batch *b = state;
	imp_err rc = IMP_OK;
	if(b->alen > b->cur || b->cur_over) rc = end_line(b);
	if(!rc) rc = run_group(b);
	if(!rc && b->spilled && b->text.len) rc = spill(b);
	if(rc) return api_fail(b->r, rc, NULL, NULL, "the batch could not be finished");
	a->content_type = "application/x-ndjson";
	if(b->minimal) a->preference_applied = "return=minimal";
	if(!b->spilled) {
		/* the server takes the text, and zeroes it once sent */
		a->buf = b->text.s;
		a->cap = b->text.cap;
		a->size = b->text.len;
		memset(&b->text, 0, sizeof b->text);
		if(!a->buf) a->buf = imp_calloc(1, 1); /* an empty body: no lines */
		return a->buf ? IMP_OK : api_fail(b->r, IMP_ERR_NOMEM, NULL, NULL, "out of memory");
	}
	long end = fflush(b->out) == 0 ? ftell(b->out) : -1;
	int dfd = end >= 0 ? dup(fileno(b->out)) : -1;
	if(dfd < 0 || lseek(dfd, 0, SEEK_SET) != 0) {
		if(dfd >= 0) close(dfd);
		return api_fail(b->r, IMP_ERR_IO, NULL, NULL, "could not send the answer");
	}
	a->fd = dfd;
	a->size = (uint64_t)end;
	return IMP_OK;
}

static void batch_close(void *state)
{
	batch *b = state;
	for(size_t i = 0; i < GROUP_LINES; i++) clear_line(&b->st[i]);
	imp_jtext_free(&b->text);
	imp_jtext_free(&b->errs);
	imp_render_cache_clear(&b->cache);
	json_decref(b->activated);
	if(b->out) fclose(b->out);
	if(b->arena) sodium_memzero(b->arena, b->acap);
	imp_free(b->arena);
	imp_free(b);
}

const imp_stream_ops imp_batch_stream = {batch_open, batch_feed, batch_finish, batch_close};
