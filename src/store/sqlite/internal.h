/* Shared by the SQLite backend's files; nothing outside src/store/sqlite includes this. */
#ifndef IMP_STORE_SQLITE_INTERNAL_H
#define IMP_STORE_SQLITE_INTERNAL_H
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "store/store.h"

#define IMP_STMT_CACHE 256

/* The ids of an organization (first parameter) and every organization below it in an
 * account (second parameter), as a subquery. Depth is bounded by IMP_ORG_DEPTH_MAX. */
#define STORE_SUBTREE                                                                     \
	"WITH RECURSIVE sub(id, depth) AS (SELECT ?, 0 UNION ALL SELECT o.id, sub.depth + 1"   \
	" FROM organizations o JOIN sub ON o.parent_id = sub.id WHERE o.account = ? AND sub.depth < 8)" \
	" SELECT id FROM sub"

struct stmt_slot {
	char *sql;
	uint32_t hash;
	sqlite3_stmt *stmt;
};

struct imp_db {
	sqlite3 *conn;
	struct imp_store *store;
	struct imp_db *next;
	struct stmt_slot cache[IMP_STMT_CACHE];
	int busy_ms;             /* imp_db_open's, for imp_db_busy_poll */
	int feed_dirty;          /* the open transaction wrote a change row */
	imp_feed *feed;          /* the feed's generation counter, mapped at the first bump */
	/* A read transaction kept between requests (imp_store_reader). held: it is open, set
	 * by the connection's thread, cleared by whoever ends it, with use locked; reading:
	 * the thread is inside imp_store_reader .. imp_db_read_done, use locked. */
	pthread_mutex_t use;
	atomic_int held;
	int reading;
	unsigned char snapshot[48];   /* the WAL index header the transaction began at */
};

/* At the end of db's transaction, however it ended: one that wrote a change row moves the
 * feed's generation on (see imp_feed_open). Also after a rollback or a failed commit: a
 * reader then finds nothing new, which costs it one read, while a commit SQLite made
 * despite an error, or a rollback SQLite did on its own, can never go unannounced. */
void store__feed_done(imp_db *db);

/* The store's connection-status map (read), NULL on a standalone connection. */
imp_status *store__status(imp_db *db);

/* The name of the store's VFS (walbuf.c: SQLite's own, with each commit's WAL writes
 * gathered into one), or NULL for SQLite's default should it fail to register. */
const char *store__vfs(void);
/* The first region of conn's WAL index (the -shm file, as SQLite maps it), whose first
 * 96 bytes are the two copies of its header (https://sqlite.org/walformat.html); NULL
 * before the connection's first read, or on a connection not opened with store__vfs. */
const volatile void *store__wal_index(sqlite3 *conn);

/* The cached prepared statement for sql, reset and unbound; NULL on failure. The
 * connection owns it: callers reset it after use and never finalize it. */
sqlite3_stmt *store__stmt(imp_db *db, const char *sql);
/* store__stmt still bound from its last use, for statements whose every parameter the
 * caller binds again (multi-row inserts: unbinding their 2,300 parameters was 1% of a
 * batch). Never for a statement with a parameter left unbound on purpose. */
sqlite3_stmt *store__stmt_rebound(imp_db *db, const char *sql);
/* store__stmt for a text whose store__sql_hash the caller kept. */
sqlite3_stmt *store__stmt_hashed(imp_db *db, const char *sql, uint32_t hash);
uint32_t store__sql_hash(const char *sql);
imp_err store__rc(int sqlite_rc);
imp_err store__exec(imp_db *db, const char *sql);

/* Rows a multi-row INSERT takes (entity.c says why there are such, above
 * imp_db_insert_many). */
#define STORE_ROWS_MAX 100
/* Inserts n rows with head (an "INSERT INTO t (a, b)" of ncols columns), STORE_ROWS_MAX a
 * statement and the rest a row at a time: bind(st, at, i, arg) binds every one of row i's
 * ncols values from parameter at on (the statement keeps its last bindings), nonzero when
 * a bind failed. */
imp_err store__insert_rows(imp_db *db, const char *head, int ncols, size_t n,
                           int (*bind)(sqlite3_stmt *st, int at, size_t i, void *arg), void *arg);

#endif
