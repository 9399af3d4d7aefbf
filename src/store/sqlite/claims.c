/* Field provisioning's rows beside the claim_tokens entities: allow-lists, use counts and
 * claimed serial numbers. */
#include "store/sqlite/internal.h"

#include "core/timeutil.h"

/* Runs st (bound by the caller) to completion and resets it. */
static imp_err step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return store__rc(rc);
}

imp_err imp_db_claim_serial_add(imp_db *db, int64_t token_key, const char *serial)
{
	sqlite3_stmt *st = store__stmt(db, "INSERT INTO claim_serials (token_key, serial) VALUES (?, ?)");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, token_key);
	sqlite3_bind_text(st, 2, serial, -1, SQLITE_STATIC);
	return step_done(st);
}

imp_err imp_db_claim_serials_delete(imp_db *db, int64_t token_key)
{
	sqlite3_stmt *st = store__stmt(db, "DELETE FROM claim_serials WHERE token_key = ?");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, token_key);
	return step_done(st);
}

imp_err imp_db_claim_serial_allowed(imp_db *db, int64_t token_key, const char *serial)
{
	sqlite3_stmt *st = store__stmt(db, "SELECT 1 FROM claim_serials WHERE token_key = ? AND serial = ?");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, token_key);
	sqlite3_bind_text(st, 2, serial, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? IMP_OK : rc == SQLITE_DONE ? IMP_ERR_NOT_FOUND : store__rc(rc);
}

imp_err imp_db_claim_use(imp_db *db, int64_t token_key)
{
	/* The count is checked in the statement that raises it: whatever a caller read
	 * before, a use past maxUses is never counted. The version stays: like a device's
	 * connection status, uses is observed, not edited. */
	sqlite3_stmt *st = store__stmt(db, "UPDATE claim_tokens SET uses = uses + 1 WHERE key = ? AND uses < max_uses");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, token_key);
	imp_err err = step_done(st);
	if(err) return err;
	return sqlite3_changes(db->conn) == 1 ? IMP_OK : IMP_ERR_NOT_FOUND;
}

imp_err imp_db_claimed_serial_put(imp_db *db, int64_t account, const char *serial, const char *device_id,
                                  const char *token_id)
{
	sqlite3_stmt *st = store__stmt(db,
		"INSERT INTO claimed_serials (account, serial, device_id, token_id, created) VALUES (?, ?, ?, ?, ?)");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, account);
	sqlite3_bind_text(st, 2, serial, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, device_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, token_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, (int64_t)imp_now_ms());
	return step_done(st);
}
