/* Accounts, login sessions and the audit log. */
#include "store/sqlite/internal.h"

#include <string.h>

#include "core/timeutil.h"

imp_err imp_db_account_create(imp_db *db, const char *name, imp_id *id, int64_t *key)
{
	imp_err err = imp_id_new(id);
	if(err) return err;
	sqlite3_stmt *st = store__stmt(db, "INSERT INTO accounts (id, name, created) VALUES (?, ?, ?)");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, id->s, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)imp_now_ms());
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if(rc != SQLITE_DONE) return store__rc(rc);
	*key = sqlite3_last_insert_rowid(db->conn);
	return IMP_OK;
}

imp_err imp_db_account_key(imp_db *db, const char *id, int64_t *key)
{
	sqlite3_stmt *st = store__stmt(db, "SELECT key FROM accounts WHERE id = ?");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if(rc == SQLITE_ROW) *key = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? IMP_OK : rc == SQLITE_DONE ? IMP_ERR_NOT_FOUND : store__rc(rc);
}

imp_err imp_db_session_create(imp_db *db, int64_t account, const char *user_id, uint64_t expires_ms, imp_id *id)
{
	imp_err err = imp_id_new(id);
	if(err) return err;
	sqlite3_stmt *st = store__stmt(db,
		"INSERT INTO sessions (id, account, user_id, created, expires) VALUES (?, ?, ?, ?, ?)");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, id->s, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, account);
	sqlite3_bind_text(st, 3, user_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (int64_t)imp_now_ms());
	sqlite3_bind_int64(st, 5, (int64_t)expires_ms);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return store__rc(rc);
}

imp_err imp_db_session_check(imp_db *db, const char *id, const char *user_id, uint64_t now_ms)
{
	sqlite3_stmt *st = store__stmt(db,
		"SELECT 1 FROM sessions s WHERE s.id = ?1 AND s.user_id = ?2 AND s.expires > ?3"
		" AND (EXISTS (SELECT 1 FROM account_users u WHERE u.id = ?2 AND u.account = s.account)"
		" OR EXISTS (SELECT 1 FROM end_users e WHERE e.id = ?2 AND e.account = s.account))");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, user_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)now_ms);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? IMP_OK : rc == SQLITE_DONE ? IMP_ERR_NOT_FOUND : store__rc(rc);
}

imp_err imp_db_audit(imp_db *db, const imp_audit *a)
{
	imp_id id;
	imp_err err = imp_id_new(&id);
	if(err) return err;
	sqlite3_stmt *st = store__stmt(db,
		"INSERT INTO audit (id, account, created, actor_id, actor_type, action, entity_type,"
		" entity_id, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
	if(!st) return IMP_ERR_STORE;
	char *details = a->details ? json_dumps(a->details, JSON_COMPACT) : NULL;
	sqlite3_bind_text(st, 1, id.s, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, a->account);
	sqlite3_bind_int64(st, 3, (int64_t)imp_now_ms());
	sqlite3_bind_text(st, 4, a->actor_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, a->actor_type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, a->action, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, a->entity_type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 8, a->entity_id, -1, SQLITE_STATIC);
	if(details) sqlite3_bind_text(st, 9, details, -1, SQLITE_STATIC);
	else sqlite3_bind_null(st, 9);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	free(details);
	return store__rc(rc);
}

static json_t *audit_row(sqlite3_stmt *st, const char *account_id)
{
	char when[IMP_ISO_LEN + 1];
	imp_iso8601((uint64_t)sqlite3_column_int64(st, 2), when);
	json_t *details = NULL;
	if(sqlite3_column_type(st, 8) != SQLITE_NULL) details = json_loads((const char *)sqlite3_column_text(st, 8), 0, NULL);
	const char *actor = (const char *)sqlite3_column_text(st, 3);
	const char *entity = (const char *)sqlite3_column_text(st, 7);
	return json_pack("{s:s, s:s, s:s, s:s?, s:s, s:s, s:s, s:s?, s:o}",
		"id", (const char *)sqlite3_column_text(st, 1), "accountId", account_id, "created", when,
		"actorId", actor, "actorType", (const char *)sqlite3_column_text(st, 4),
		"action", (const char *)sqlite3_column_text(st, 5),
		"entityType", (const char *)sqlite3_column_text(st, 6), "entityId", entity,
		"details", details ? details : json_null());
}

imp_err imp_db_audit_list(imp_db *db, int64_t account, const char *entity_id, const char *action,
                          const imp_query *q, json_t *results, int64_t *count, int64_t *last)
{
	const char *where = " WHERE account = ?1 AND (?2 IS NULL OR entity_id = ?2) AND (?3 IS NULL OR action = ?3)";
	char sql[512];
	*last = -1;
	if(q->want_count) {
		snprintf(sql, sizeof sql, "SELECT count(*) FROM audit%s", where);
		sqlite3_stmt *st = store__stmt(db, sql);
		if(!st) return IMP_ERR_STORE;
		sqlite3_bind_int64(st, 1, account);
		sqlite3_bind_text(st, 2, entity_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, action, -1, SQLITE_STATIC);
		int rc = sqlite3_step(st);
		*count = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
		sqlite3_reset(st);
		if(rc != SQLITE_ROW) return store__rc(rc);
	}
	if(!results) return IMP_OK;
	snprintf(sql, sizeof sql,
		"SELECT key, id, created, actor_id, actor_type, action, entity_type, entity_id, details,"
		" (SELECT id FROM accounts WHERE key = audit.account) FROM audit%s AND (?4 < 0 OR key %s ?4)"
		" ORDER BY key %s LIMIT ?5 OFFSET ?6", where, q->desc ? "<" : ">", q->desc ? "DESC" : "ASC");
	sqlite3_stmt *st = store__stmt(db, sql);
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, account);
	sqlite3_bind_text(st, 2, entity_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, action, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, q->after);
	sqlite3_bind_int64(st, 5, q->page_size);
	sqlite3_bind_int64(st, 6, q->after >= 0 ? 0 : (q->page - 1) * q->page_size);
	int rc;
	imp_err err = IMP_OK;
	while((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *o = audit_row(st, (const char *)sqlite3_column_text(st, 9));
		*last = sqlite3_column_int64(st, 0);
		if(!o || json_array_append_new(results, o)) {
			err = IMP_ERR_NOMEM;
			break;
		}
	}
	sqlite3_reset(st);
	if(err) return err;
	return rc == SQLITE_DONE ? IMP_OK : store__rc(rc);
}
