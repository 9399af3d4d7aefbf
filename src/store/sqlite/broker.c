/* What the broker plugin reads and writes: device channels for its ACL, the change feed,
 * connection status. */
#include "store/sqlite/internal.h"

#include <stdatomic.h>

#include "core/limits.h"
#include "core/timeutil.h"

imp_err imp_db_device_channels(imp_db *db, int64_t account, const char *device_id, imp_channel_fn fn, void *arg)
{
	sqlite3_stmt *st = store__stmt(db,
		"SELECT d.key, c.name, coalesce(json_extract(c.doc, '$.permission'), 'publish-subscribe')"
		" FROM devices d LEFT JOIN channel_templates c ON c.entity_id = d.template_id AND c.account = d.account"
		" WHERE d.id = ? AND d.account = ? ORDER BY c.key");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, device_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, account);
	int rc, found = 0;
	while((rc = sqlite3_step(st)) == SQLITE_ROW) {
		found = 1;
		if(sqlite3_column_type(st, 1) == SQLITE_NULL) continue;
		if(fn((const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2), arg)) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	if(rc != SQLITE_DONE) return store__rc(rc);
	return found ? IMP_OK : IMP_ERR_NOT_FOUND;
}

imp_err imp_db_template_channels(imp_db *db, int64_t account, const char *template_id, imp_channel_fn fn, void *arg)
{
	sqlite3_stmt *st = store__stmt(db,
		"SELECT name, coalesce(json_extract(doc, '$.permission'), 'publish-subscribe') FROM channel_templates"
		" WHERE account = ? AND entity_id = ? ORDER BY key");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, account);
	sqlite3_bind_text(st, 2, template_id, -1, SQLITE_STATIC);
	int rc;
	while((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if(fn((const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1), arg)) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	return store__rc(rc);
}

static atomic_uint_fast64_t last_prune;

imp_err imp_db_change(imp_db *db, const char *entity_id, const char *what)
{
	uint64_t now = imp_now_ms();
	sqlite3_stmt *st = store__stmt(db, "INSERT INTO changes (entity_id, what, at) VALUES (?, ?, ?)");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, entity_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, what, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)now);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if(rc != SQLITE_DONE) return store__rc(rc);
	/* The reader is seconds behind at worst: rows older than the keep time are history. */
	uint64_t prev = atomic_load(&last_prune);
	if(now - prev < 60 * 1000 || !atomic_compare_exchange_strong(&last_prune, &prev, now)) return IMP_OK;
	st = store__stmt(db, "DELETE FROM changes WHERE at < ?");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, (int64_t)(now - IMP_CHANGES_KEEP_MS));
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return store__rc(rc);
}

imp_err imp_db_changes_since(imp_db *db, int64_t *last, int max, imp_change_fn fn, void *arg)
{
	sqlite3_stmt *st = store__stmt(db, "SELECT seq, entity_id, what FROM changes WHERE seq > ? ORDER BY seq LIMIT ?");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, *last);
	sqlite3_bind_int(st, 2, max);
	int rc;
	while((rc = sqlite3_step(st)) == SQLITE_ROW) {
		*last = sqlite3_column_int64(st, 0);
		if(fn(*last, (const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2), arg)) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	return store__rc(rc);
}

imp_err imp_db_changes_last(imp_db *db, int64_t *seq)
{
	sqlite3_stmt *st = store__stmt(db, "SELECT coalesce(max(seq), 0) FROM changes");
	if(!st) return IMP_ERR_STORE;
	int rc = sqlite3_step(st);
	if(rc == SQLITE_ROW) *seq = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return store__rc(rc);
}

imp_err imp_db_device_set_connected(imp_db *db, int64_t key, const char *device_id, int connected, uint64_t at_ms)
{
	char at[IMP_ISO_LEN + 1];
	imp_iso8601(at_ms, at);
	sqlite3_stmt *st = store__stmt(db, key > 0 ? "UPDATE devices SET connected = ?, last_connected = ? WHERE id = ? AND key = ?"
	                                           : "UPDATE devices SET connected = ?, last_connected = ? WHERE id = ?");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int(st, 1, connected ? 1 : 0);
	sqlite3_bind_text(st, 2, at, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, device_id, -1, SQLITE_STATIC);
	if(key > 0) sqlite3_bind_int64(st, 4, key);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if(rc != SQLITE_DONE) return store__rc(rc);
	return sqlite3_changes(db->conn) ? IMP_OK : IMP_ERR_NOT_FOUND;
}

imp_err imp_db_devices_disconnect_all(imp_db *db)
{
	sqlite3_stmt *st = store__stmt(db, "UPDATE devices SET connected = 0 WHERE connected != 0");
	if(!st) return IMP_ERR_STORE;
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return store__rc(rc);
}
