/* What the broker plugin reads and writes: device channels for its ACL, the change feed,
 * connection status. */
#include "store/sqlite/internal.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/limits.h"
#include "core/mem.h"
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
	db->feed_dirty = 1;
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

/* The generation file holds one counter at offset 0; both sides map it shared, so an
 * increment is seen by every process at once. */
struct imp_feed {
	int fd;
	_Atomic uint64_t *gen;
};
#define FEED_FILE_SIZE 4096

imp_err imp_feed_open(const char *db_path, imp_feed **out)
{
	*out = NULL;
	size_t n = strlen(db_path);
	char *path = imp_malloc(n + sizeof "-feed");
	if(!path) return IMP_ERR_NOMEM;
	memcpy(path, db_path, n);
	memcpy(path + n, "-feed", sizeof "-feed");
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	imp_free(path);
	if(fd < 0) return IMP_ERR_STORE;
	struct stat sb;
	/* Growing a file never changes the bytes it had: two processes creating it at once
	 * both leave the counter as it was. */
	if(fstat(fd, &sb) || (sb.st_size < FEED_FILE_SIZE && ftruncate(fd, FEED_FILE_SIZE))) {
		close(fd);
		return IMP_ERR_STORE;
	}
	void *m = mmap(NULL, FEED_FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	imp_feed *f = m != MAP_FAILED ? imp_calloc(1, sizeof *f) : NULL;
	if(!f) {
		if(m != MAP_FAILED) munmap(m, FEED_FILE_SIZE);
		close(fd);
		return m != MAP_FAILED ? IMP_ERR_NOMEM : IMP_ERR_STORE;
	}
	f->fd = fd;
	f->gen = m;
	*out = f;
	return IMP_OK;
}

uint64_t imp_feed_gen(const imp_feed *f) { return atomic_load_explicit(f->gen, memory_order_acquire); }

void imp_feed_bump(imp_feed *f) { atomic_fetch_add_explicit(f->gen, 1, memory_order_release); }

void imp_feed_close(imp_feed **f)
{
	if(!*f) return;
	munmap((void *)(*f)->gen, FEED_FILE_SIZE);
	close((*f)->fd);
	imp_free(*f);
	*f = NULL;
}

void store__feed_done(imp_db *db)
{
	if(!db->feed_dirty) return;
	db->feed_dirty = 0;
	/* A store whose feed file cannot be made (the server checks it can at start) leaves
	 * the broker to find the change on its next tick, which reads the feed regardless. */
	if(!db->feed) imp_feed_open(sqlite3_db_filename(db->conn, "main"), &db->feed);
	if(db->feed) imp_feed_bump(db->feed);
}

imp_err imp_db_password_logins(imp_db *db, int64_t *seq, int64_t *estimate, imp_login_fn fn, void *arg)
{
	imp_err err = store__exec(db, "BEGIN");
	if(err) return err;
	sqlite3_stmt *st = store__stmt(db,
		"SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0),"
		" (SELECT count(*) FROM credentials WHERE method = 'password')");
	int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
	if(rc == SQLITE_ROW) {
		*seq = sqlite3_column_int64(st, 0);
		*estimate = sqlite3_column_int64(st, 1);
		rc = SQLITE_DONE;
	}
	if(st) sqlite3_reset(st);
	if(rc == SQLITE_DONE) {
		st = store__stmt(db,
			"SELECT d.id, d.key, d.account, a.id, d.template_id, c.secret FROM credentials c"
			" JOIN devices d ON d.id = c.entity_id AND d.account = c.account"
			" JOIN device_templates t ON t.id = d.template_id AND t.account = d.account"
			" JOIN accounts a ON a.key = d.account"
			" WHERE c.method = 'password' AND d.disabled = 0 AND t.auth_method = 'password'");
		rc = st ? SQLITE_DONE : SQLITE_ERROR;
	}
	while(rc == SQLITE_DONE && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		imp_login_row r = {
			.id = (const char *)sqlite3_column_text(st, 0),
			.key = sqlite3_column_int64(st, 1),
			.account = sqlite3_column_int64(st, 2),
			.account_id = (const char *)sqlite3_column_text(st, 3),
			.template_id = (const char *)sqlite3_column_text(st, 4),
			.secret = (const char *)sqlite3_column_text(st, 5),
		};
		rc = SQLITE_DONE;
		if(!r.id || !r.account_id || !r.template_id || !r.secret) continue;
		if(fn(&r, arg)) break;
	}
	if(st) sqlite3_reset(st);
	err = store__rc(rc);   /* DONE: every row read, or fn stopped the read */
	store__exec(db, "COMMIT");
	return err;
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

imp_err imp_db_device_set_connected(imp_db *db, int64_t *key, const char *device_id, int connected, uint64_t at_ms)
{
	char at[IMP_ISO_LEN + 1];
	imp_iso8601(at_ms, at);
	sqlite3_stmt *st = store__stmt(db, *key > 0 ? "UPDATE devices SET connected = ?, last_connected = ? WHERE id = ? AND key = ?"
	                                            : "UPDATE devices SET connected = ?, last_connected = ? WHERE id = ? RETURNING key");
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int(st, 1, connected ? 1 : 0);
	sqlite3_bind_text(st, 2, at, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, device_id, -1, SQLITE_STATIC);
	if(*key > 0) sqlite3_bind_int64(st, 4, *key);
	int rc = sqlite3_step(st), found = 0;
	if(rc == SQLITE_ROW) {
		*key = sqlite3_column_int64(st, 0);
		found = 1;
		rc = sqlite3_step(st);
	}
	sqlite3_reset(st);
	if(rc != SQLITE_DONE) return store__rc(rc);
	return found || sqlite3_changes(db->conn) ? IMP_OK : IMP_ERR_NOT_FOUND;
}

imp_err imp_db_devices_disconnect_all(imp_db *db)
{
	sqlite3_stmt *st = store__stmt(db, "UPDATE devices SET connected = 0 WHERE connected = 1");
	if(!st) return IMP_ERR_STORE;
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return store__rc(rc);
}
