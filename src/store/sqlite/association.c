/* Organization reach (an end user's devices) and association codes. */
#include "store/sqlite/internal.h"

#include "core/timeutil.h"

/* Walks up from org through its parents; 1 when ancestor is on the way. */
#define WALK_UP                                                                            \
	"WITH RECURSIVE up(id, depth) AS (SELECT ?1, 0 UNION ALL SELECT o.parent_id, up.depth + 1" \
	" FROM organizations o JOIN up ON o.id = up.id WHERE o.account = ?2 AND o.parent_id IS NOT NULL" \
	" AND up.depth < 8) SELECT 1 FROM up WHERE id = ?3 LIMIT 1"

imp_err imp_db_org_within(imp_db *db, int64_t account, const char *org, const char *ancestor, int *within)
{
	*within = 0;
	if(!org || !ancestor) return IMP_OK;
	sqlite3_stmt *st = store__stmt(db, WALK_UP);
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, org, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, account);
	sqlite3_bind_text(st, 3, ancestor, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	*within = rc == SQLITE_ROW;
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? IMP_OK : store__rc(rc);
}

imp_err imp_db_device_within(imp_db *db, int64_t account, const char *device_id, const char *ancestor, int *within)
{
	*within = 0;
	sqlite3_stmt *st = store__stmt(db, "SELECT org_id FROM devices WHERE id = ? AND account = ?");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, device_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, account);
	int rc = sqlite3_step(st);
	char org[IMP_UUID_LEN + 1] = "";
	if(rc == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT)
		snprintf(org, sizeof org, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	if(rc != SQLITE_ROW && rc != SQLITE_DONE) return store__rc(rc);
	return org[0] ? imp_db_org_within(db, account, org, ancestor, within) : IMP_OK;
}

/* Expired codes removed with every code made: more than are made, so they never pile up
 * (a code is deleted when used, and replaced by the device's next one, but a device whose
 * code expires unused and never gets another kept it). */
#define PRUNE_PER_PUT 8

imp_err imp_db_assoc_code_put(imp_db *db, int64_t account, const char *device_id, const char *hash,
                              uint64_t expires_ms, const char *created_by)
{
	uint64_t now = imp_now_ms();
	sqlite3_stmt *st = store__stmt(db, "DELETE FROM association_codes WHERE key IN (SELECT key FROM association_codes"
	                                   " WHERE expires <= ? ORDER BY expires LIMIT ?)");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, (int64_t)now);
	sqlite3_bind_int(st, 2, PRUNE_PER_PUT);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if(rc != SQLITE_DONE) return store__rc(rc);
	st = store__stmt(db,
		"INSERT OR REPLACE INTO association_codes (account, device_id, code_hash, expires, created, created_by)"
		" VALUES (?, ?, ?, ?, ?, ?)");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, account);
	sqlite3_bind_text(st, 2, device_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (int64_t)expires_ms);
	sqlite3_bind_int64(st, 5, (int64_t)now);
	sqlite3_bind_text(st, 6, created_by, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return store__rc(rc);
}

imp_err imp_db_assoc_code_find(imp_db *db, int64_t account, const char *hash, uint64_t now_ms, imp_id *device_id)
{
	sqlite3_stmt *st = store__stmt(db,
		"SELECT device_id FROM association_codes WHERE code_hash = ? AND account = ? AND expires > ?");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, account);
	sqlite3_bind_int64(st, 3, (int64_t)now_ms);
	int rc = sqlite3_step(st);
	if(rc == SQLITE_ROW) snprintf(device_id->s, sizeof device_id->s, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? IMP_OK : rc == SQLITE_DONE ? IMP_ERR_NOT_FOUND : store__rc(rc);
}

imp_err imp_db_assoc_code_take(imp_db *db, int64_t account, const char *hash)
{
	sqlite3_stmt *st = store__stmt(db, "DELETE FROM association_codes WHERE code_hash = ? AND account = ?");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, account);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if(rc != SQLITE_DONE) return store__rc(rc);
	return sqlite3_changes(db->conn) == 1 ? IMP_OK : IMP_ERR_NOT_FOUND;
}
