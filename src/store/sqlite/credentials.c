/* Credentials, the broker's look-up, server-set device state and batch items. */
#include "store/sqlite/internal.h"

#include <string.h>

#include "core/mem.h"
#include "core/timeutil.h"

#define CRED_COLS                                                                            \
	"c.id, c.account, a.id, c.entity_type, c.entity_id, c.method, c.fingerprint, c.not_after, " \
	"c.created, c.created_by, c.certificate, c.key"
#define CRED_FROM " FROM credentials c JOIN accounts a ON a.key = c.account"

void imp_credential_clear(imp_credential *c)
{
	imp_free(c->certificate);
	c->certificate = NULL;
}

static void text_into(char *dst, size_t n, sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);
	snprintf(dst, n, "%s", s ? (const char *)s : "");
}

static imp_err read_cred(sqlite3_stmt *st, imp_credential *c)
{
	memset(c, 0, sizeof *c);
	text_into(c->id.s, sizeof c->id.s, st, 0);
	c->account = sqlite3_column_int64(st, 1);
	text_into(c->account_id.s, sizeof c->account_id.s, st, 2);
	text_into(c->entity_type, sizeof c->entity_type, st, 3);
	text_into(c->entity_id.s, sizeof c->entity_id.s, st, 4);
	text_into(c->method, sizeof c->method, st, 5);
	text_into(c->fingerprint, sizeof c->fingerprint, st, 6);
	c->not_after = (uint64_t)sqlite3_column_int64(st, 7);
	c->created = (uint64_t)sqlite3_column_int64(st, 8);
	text_into(c->created_by.s, sizeof c->created_by.s, st, 9);
	if(sqlite3_column_type(st, 10) != SQLITE_NULL) {
		c->certificate = imp_strdup((const char *)sqlite3_column_text(st, 10));
		if(!c->certificate) return IMP_ERR_NOMEM;
	}
	return IMP_OK;
}

imp_err imp_db_credential_put(imp_db *db, imp_credential *c, const char *secret_hash, int *replaced)
{
	sqlite3_stmt *st;
	int rc;
	if(replaced) {
		/* The previous credential's existence, for activation and the audit's wording. */
		st = store__stmt(db, "SELECT 1 FROM credentials WHERE entity_id = ?");
		if(!st) return IMP_ERR_STORE;
		sqlite3_bind_text(st, 1, c->entity_id.s, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if(rc != SQLITE_ROW && rc != SQLITE_DONE) return store__rc(rc);
		*replaced = rc == SQLITE_ROW;
	}

	st = store__stmt(db,
		"INSERT INTO credentials (id, account, entity_type, entity_id, method, secret, fingerprint, certificate,"
		" not_after, created, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
		" ON CONFLICT (entity_id) DO UPDATE SET id = excluded.id, method = excluded.method,"
		" secret = excluded.secret, fingerprint = excluded.fingerprint, certificate = excluded.certificate,"
		" not_after = excluded.not_after, created = excluded.created, created_by = excluded.created_by"
		" WHERE credentials.account = excluded.account");
	if(!st) return IMP_ERR_STORE;
	c->created = imp_now_ms();
	sqlite3_bind_text(st, 1, c->id.s, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, c->account);
	sqlite3_bind_text(st, 3, c->entity_type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, c->entity_id.s, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, c->method, -1, SQLITE_STATIC);
	if(secret_hash) sqlite3_bind_text(st, 6, secret_hash, -1, SQLITE_STATIC);
	if(c->fingerprint[0]) sqlite3_bind_text(st, 7, c->fingerprint, -1, SQLITE_STATIC);
	if(c->certificate) sqlite3_bind_text(st, 8, c->certificate, -1, SQLITE_STATIC);
	if(c->not_after) sqlite3_bind_int64(st, 9, (int64_t)c->not_after);
	sqlite3_bind_int64(st, 10, (int64_t)c->created);
	sqlite3_bind_text(st, 11, c->created_by.s, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if(rc != SQLITE_DONE) return store__rc(rc);
	/* The WHERE keeps another account's row (ids are global, so this cannot happen with
	 * ids the server made; it guards the invariant anyway). */
	if(sqlite3_changes(db->conn) != 1) return IMP_ERR_CONFLICT;
	/* Only a replaced credential can have a live session to end. */
	return replaced && *replaced ? imp_db_change(db, c->entity_id.s, "credential") : IMP_OK;
}

struct first_creds {
	imp_credential *const *cs;
	const char *const *hashes;
	int64_t now;
};

static int bind_first(sqlite3_stmt *st, int at, size_t i, void *arg)
{
	struct first_creds *f = arg;
	imp_credential *c = f->cs[i];
	c->created = (uint64_t)f->now;
	sqlite3_bind_text(st, at, c->id.s, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, at + 1, c->account);
	sqlite3_bind_text(st, at + 2, c->entity_type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, at + 3, c->entity_id.s, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, at + 4, c->method, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, at + 5, f->hashes[i], -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, at + 6, f->now);
	sqlite3_bind_text(st, at + 7, c->created_by.s, -1, SQLITE_STATIC);
	return 0; /* (binds without a copy of short texts: nothing to fail) */
}

imp_err imp_db_credentials_first(imp_db *db, imp_credential *const *cs, const char *const *hashes, size_t n)
{
	struct first_creds f = {cs, hashes, (int64_t)imp_now_ms()};
	return store__insert_rows(db, "INSERT INTO credentials (id, account, entity_type, entity_id, method, secret,"
	                              " created, created_by)", 8, n, bind_first, &f);
}

static imp_err get_one(imp_db *db, const char *sql, int64_t account, const char *arg, imp_credential *out)
{
	memset(out, 0, sizeof *out);
	sqlite3_stmt *st = store__stmt(db, sql);
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, account);
	int rc = sqlite3_step(st);
	imp_err err = rc == SQLITE_ROW ? read_cred(st, out) : rc == SQLITE_DONE ? IMP_ERR_NOT_FOUND : store__rc(rc);
	sqlite3_reset(st);
	if(err) imp_credential_clear(out);
	return err;
}

imp_err imp_db_credential_get(imp_db *db, int64_t account, const char *id, imp_credential *out)
{
	return get_one(db, "SELECT " CRED_COLS CRED_FROM " WHERE c.id = ? AND c.account = ?", account, id, out);
}

imp_err imp_db_credential_of(imp_db *db, int64_t account, const char *entity_id, imp_credential *out)
{
	return get_one(db, "SELECT " CRED_COLS CRED_FROM " WHERE c.entity_id = ? AND c.account = ?", account, entity_id,
	               out);
}

static json_t *cred_json(const imp_credential *c)
{
	char created[IMP_ISO_LEN + 1];
	imp_iso8601(c->created, created);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", c->id.s, "accountId", c->account_id.s,
	                      "entityId", c->entity_id.s, "entityType", c->entity_type, "method", c->method,
	                      "created", created, "createdById", c->created_by.s, "lastModified", created);
	if(o && c->fingerprint[0]) {
		char na[IMP_ISO_LEN + 1];
		imp_iso8601(c->not_after, na);
		json_object_set_new(o, "fingerprint", json_string(c->fingerprint));
		json_object_set_new(o, "notAfter", json_string(na));
		if(c->certificate) json_object_set_new(o, "certificate", json_string(c->certificate));
	}
	return o;
}

imp_err imp_db_credential_list(imp_db *db, int64_t account, const char *entity_id, const char *entity_type,
                               const imp_query *q, json_t *results, int64_t *count, int64_t *last)
{
	*last = -1;
	const char *where = " WHERE c.account = ?1 AND (?2 IS NULL OR c.entity_id = ?2) AND (?3 IS NULL OR c.entity_type = ?3)";
	if(q->want_count) {
		sqlite3_stmt *st = store__stmt(db,
			"SELECT count(*) FROM credentials c WHERE c.account = ?1 AND (?2 IS NULL OR c.entity_id = ?2)"
			" AND (?3 IS NULL OR c.entity_type = ?3)");
		if(!st) return IMP_ERR_STORE;
		sqlite3_bind_int64(st, 1, account);
		if(entity_id) sqlite3_bind_text(st, 2, entity_id, -1, SQLITE_STATIC);
		if(entity_type) sqlite3_bind_text(st, 3, entity_type, -1, SQLITE_STATIC);
		int rc = sqlite3_step(st);
		*count = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
		sqlite3_reset(st);
		if(rc != SQLITE_ROW) return store__rc(rc);
	}
	if(!results) return IMP_OK;
	char sql[512];
	snprintf(sql, sizeof sql, "SELECT " CRED_COLS CRED_FROM "%s AND (?4 < 0 OR c.key %s ?4) ORDER BY c.key %s LIMIT ?5 OFFSET ?6",
	         where, q->desc ? "<" : ">", q->desc ? "DESC" : "ASC");
	sqlite3_stmt *st = store__stmt(db, sql);
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, account);
	if(entity_id) sqlite3_bind_text(st, 2, entity_id, -1, SQLITE_STATIC);
	if(entity_type) sqlite3_bind_text(st, 3, entity_type, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, q->after);
	sqlite3_bind_int64(st, 5, q->page_size);
	sqlite3_bind_int64(st, 6, q->after >= 0 ? 0 : (q->page - 1) * q->page_size);
	int rc;
	imp_err err = IMP_OK;
	while((rc = sqlite3_step(st)) == SQLITE_ROW) {
		imp_credential c;
		if((err = read_cred(st, &c))) break;
		*last = sqlite3_column_int64(st, 11);
		json_t *o = cred_json(&c);
		imp_credential_clear(&c);
		if(!o || json_array_append_new(results, o)) {
			err = IMP_ERR_NOMEM;
			break;
		}
	}
	sqlite3_reset(st);
	if(err) return err;
	return rc == SQLITE_DONE ? IMP_OK : store__rc(rc);
}

json_t *imp_credential_json(const imp_credential *c) { return cred_json(c); }

imp_err imp_db_credential_delete(imp_db *db, int64_t account, const char *id)
{
	sqlite3_stmt *st = store__stmt(db, "DELETE FROM credentials WHERE id = ? AND account = ? RETURNING entity_id");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, account);
	char entity[IMP_UUID_LEN + 1] = {0};
	int rc = sqlite3_step(st);
	if(rc == SQLITE_ROW) {
		text_into(entity, sizeof entity, st, 0);
		rc = sqlite3_step(st);
	}
	sqlite3_reset(st);
	if(rc != SQLITE_DONE) return store__rc(rc);
	return entity[0] ? imp_db_change(db, entity, "revoke") : IMP_ERR_NOT_FOUND;
}

imp_err imp_db_credential_delete_of(imp_db *db, int64_t account, const char *entity_id)
{
	sqlite3_stmt *st = store__stmt(db, "DELETE FROM credentials WHERE entity_id = ? AND account = ?");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, entity_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, account);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if(rc != SQLITE_DONE) return store__rc(rc);
	return sqlite3_changes(db->conn) ? imp_db_change(db, entity_id, "revoke") : IMP_OK;
}

imp_err imp_db_auth_lookup(imp_db *db, const char *id, imp_auth_row *out)
{
	memset(out, 0, sizeof *out);
	/* A device first (it may have no credential yet), then any other entity's credential. */
	sqlite3_stmt *st = store__stmt(db,
		"SELECT d.account, d.disabled, t.auth_method, c.method, c.secret, c.fingerprint, c.not_after, a.id,"
		" d.key, d.template_id, (SELECT coalesce(max(seq), 0) FROM changes) FROM devices d JOIN device_templates t ON t.id = d.template_id AND t.account = d.account"
		" JOIN accounts a ON a.key = d.account"
		" LEFT JOIN credentials c ON c.entity_id = d.id AND c.account = d.account WHERE d.id = ?");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if(rc == SQLITE_ROW) {
		out->is_device = 1;
		out->account = sqlite3_column_int64(st, 0);
		out->disabled = sqlite3_column_int(st, 1);
		snprintf(out->entity_type, sizeof out->entity_type, "device");
		text_into(out->auth_method, sizeof out->auth_method, st, 2);
		text_into(out->method, sizeof out->method, st, 3);
		text_into(out->secret, sizeof out->secret, st, 4);
		text_into(out->fingerprint, sizeof out->fingerprint, st, 5);
		out->not_after = (uint64_t)sqlite3_column_int64(st, 6);
		text_into(out->account_id.s, sizeof out->account_id.s, st, 7);
		out->device_key = sqlite3_column_int64(st, 8);
		text_into(out->template_id, sizeof out->template_id, st, 9);
		out->change_seq = sqlite3_column_int64(st, 10);
		sqlite3_reset(st);
		return IMP_OK;
	}
	sqlite3_reset(st);
	if(rc != SQLITE_DONE) return store__rc(rc);
	/* A user's credential counts only while the user exists (deletes also revoke it). */
	st = store__stmt(db, "SELECT c.account, c.entity_type, c.method, c.secret, c.fingerprint, c.not_after, a.id,"
	                     " (SELECT coalesce(max(seq), 0) FROM changes) FROM credentials c JOIN accounts a ON a.key = c.account WHERE c.entity_id = ?1 AND (c.entity_type != 'accountUser'"
	                     " OR EXISTS (SELECT 1 FROM account_users u WHERE u.id = ?1 AND u.account = c.account))"
	                     " AND (c.entity_type != 'endUser' OR EXISTS (SELECT 1 FROM end_users e WHERE e.id = ?1 AND e.account = c.account))");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	imp_err err = IMP_OK;
	if(rc == SQLITE_ROW) {
		out->account = sqlite3_column_int64(st, 0);
		text_into(out->entity_type, sizeof out->entity_type, st, 1);
		text_into(out->method, sizeof out->method, st, 2);
		text_into(out->secret, sizeof out->secret, st, 3);
		text_into(out->fingerprint, sizeof out->fingerprint, st, 4);
		out->not_after = (uint64_t)sqlite3_column_int64(st, 5);
		text_into(out->account_id.s, sizeof out->account_id.s, st, 6);
		out->change_seq = sqlite3_column_int64(st, 7);
	} else {
		err = rc == SQLITE_DONE ? IMP_ERR_NOT_FOUND : store__rc(rc);
	}
	sqlite3_reset(st);
	return err;
}

static imp_err device_change(imp_db *db, const char *sql, int64_t account, const char *id, const char *actor,
                             int value, int *changed)
{
	sqlite3_stmt *st = store__stmt(db, sql);
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, (int64_t)imp_now_ms());
	sqlite3_bind_text(st, 2, actor, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, account);
	sqlite3_bind_int(st, 5, value);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if(rc != SQLITE_DONE) return store__rc(rc);
	*changed = sqlite3_changes(db->conn) > 0;
	return IMP_OK;
}

imp_err imp_db_device_activate(imp_db *db, int64_t account, const char *id, const char *actor, int *changed)
{
	return device_change(db,
		"UPDATE devices SET state = 'activated', version = version + 1, modified = ?1, modified_by = ?2"
		" WHERE id = ?3 AND account = ?4 AND state = 'defined' AND ?5 = 1",
		account, id, actor, 1, changed);
}

imp_err imp_db_device_set_disabled(imp_db *db, int64_t account, const char *id, int disabled, const char *actor,
                                   int *changed)
{
	imp_err rc = device_change(db,
		"UPDATE devices SET disabled = ?5, version = version + 1, modified = ?1, modified_by = ?2"
		" WHERE id = ?3 AND account = ?4 AND disabled != ?5",
		account, id, actor, disabled ? 1 : 0, changed);
	if(!rc && *changed) return imp_db_change(db, id, disabled ? "disable" : "enable");
	if(rc) return rc;
	/* Unchanged: already so, or no such device. */
	sqlite3_stmt *st = store__stmt(db, "SELECT 1 FROM devices WHERE id = ? AND account = ?");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, account);
	int r = sqlite3_step(st);
	sqlite3_reset(st);
	return r == SQLITE_ROW ? IMP_OK : r == SQLITE_DONE ? IMP_ERR_NOT_FOUND : store__rc(r);
}

imp_err imp_db_batch_item_get(imp_db *db, int64_t account, const char *batch, const char *serial,
                              imp_batch_found *out)
{
	sqlite3_stmt *st = store__stmt(db, "SELECT line, device_key, generation, device_id FROM batch_items"
	                                   " WHERE account = ? AND batch = ? AND serial = ?");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, account);
	sqlite3_bind_text(st, 2, batch, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, serial, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if(rc == SQLITE_ROW) {
		out->line = sqlite3_column_int64(st, 0);
		out->device_key = sqlite3_column_int64(st, 1);
		out->generation = sqlite3_column_int64(st, 2);
		text_into(out->device_id.s, sizeof out->device_id.s, st, 3);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? IMP_OK : rc == SQLITE_DONE ? IMP_ERR_NOT_FOUND : store__rc(rc);
}

struct items {
	int64_t account;
	const char *batch;
	const imp_batch_item *items;
	int64_t generation;
};

static int bind_item(sqlite3_stmt *st, int at, size_t i, void *arg)
{
	struct items *b = arg;
	const imp_batch_item *it = &b->items[i];
	sqlite3_bind_int64(st, at, b->account);
	sqlite3_bind_text(st, at + 1, b->batch, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, at + 2, it->serial, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, at + 3, it->line);
	sqlite3_bind_int64(st, at + 4, it->device_key);
	sqlite3_bind_int64(st, at + 5, b->generation);
	return sqlite3_bind_text(st, at + 6, it->device_id, -1, SQLITE_STATIC) != SQLITE_OK;
}

imp_err imp_db_batch_items_put(imp_db *db, int64_t account, const char *batch, const imp_batch_item *items,
                               int64_t generation, size_t n)
{
	struct items b = {account, batch, items, generation};
	return store__insert_rows(db, "INSERT INTO batch_items (account, batch, serial, line, device_key, generation, device_id)",
	                          7, n, bind_item, &b);
}

imp_err imp_db_batch_item_touch(imp_db *db, int64_t account, const char *batch, const char *serial,
                                int64_t generation)
{
	sqlite3_stmt *st = store__stmt(db, "UPDATE batch_items SET generation = ? WHERE account = ? AND batch = ? AND serial = ?");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, generation);
	sqlite3_bind_int64(st, 2, account);
	sqlite3_bind_text(st, 3, batch, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, serial, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return store__rc(rc);
}

static imp_err run(imp_db *db, const char *sql)
{
	sqlite3_stmt *st = store__stmt(db, sql);
	if(!st) return IMP_ERR_STORE;
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return store__rc(rc);
}

imp_err imp_db_mark(imp_db *db) { return run(db, "SAVEPOINT mark"); }

imp_err imp_db_unmark(imp_db *db, int undo)
{
	if(undo) run(db, "ROLLBACK TO mark");
	return run(db, "RELEASE mark");
}
