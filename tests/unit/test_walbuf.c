/* Unit tests for src/store/sqlite/walbuf.c, the store's VFS that gathers a commit's WAL
 * writes: a commit is in the file when COMMIT returns (another connection, and a process
 * killed right after, see it); a transaction that spilled frames and rolled back never
 * writes them over frames another writer committed meanwhile. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/sqlite/internal.h"

/* n rows of one blob of size bytes each, for INSERT INTO t (v) ... */
#define ROWS(n, size) " WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < " #n ") SELECT randomblob(" #size ") FROM s"

typedef struct {
	char dir[64], path[96];
} ctx;

static int setup(void **state)
{
	ctx *c = calloc(1, sizeof *c);
	assert_non_null(c);
	snprintf(c->dir, sizeof c->dir, "/tmp/imp-unit-walbuf-XXXXXX");
	assert_non_null(mkdtemp(c->dir));
	snprintf(c->path, sizeof c->path, "%s/w.db", c->dir);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	ctx *c = *state;
	static const char *const names[] = {"w.db", "w.db-wal", "w.db-shm", NULL};
	char p[160];
	for(int i = 0; names[i]; i++) {
		snprintf(p, sizeof p, "%s/%s", c->dir, names[i]);
		unlink(p);
	}
	rmdir(c->dir);
	free(c);
	return 0;
}

/* A connection through the store's VFS (vfs 1) or SQLite's default (0). */
static sqlite3 *conn(const ctx *c, int vfs)
{
	sqlite3 *db = NULL;
	const char *name = vfs ? store__vfs() : NULL;
	if(vfs) assert_non_null(name);
	assert_int_equal(sqlite3_open_v2(c->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, name), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", NULL, NULL, NULL), SQLITE_OK);
	return db;
}

static void exec(sqlite3 *db, const char *sql) { assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK); }

static long long one(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	long long v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void assert_intact(sqlite3 *db)
{
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
	sqlite3_finalize(st);
}

/* Each commit, small and past the buffer's 1 MiB, is read at once by another connection. */
static void test_commits_are_visible(void **state)
{
	ctx *c = *state;
	sqlite3 *w = conn(c, 1), *r = conn(c, 0);
	exec(w, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)");
	for(int i = 1; i <= 50; i++) {
		exec(w, "INSERT INTO t (v) VALUES (randomblob(300))");
		assert_int_equal(one(r, "SELECT count(*) FROM t"), i);
	}
	exec(w, "BEGIN; INSERT INTO t (v)" ROWS(12000, 1000) "; COMMIT");
	assert_int_equal(one(r, "SELECT count(*) FROM t"), 12050);
	assert_intact(r);
	sqlite3_close(w);
	sqlite3_close(r);
}

/* A transaction too big for the page cache writes frames before its end; rolled back,
 * those frames stay in the buffer. Another writer then commits at that place in the WAL:
 * the next commit of the first connection must not write the old frames over it. */
static void test_rollback_never_overwrites(void **state)
{
	ctx *c = *state;
	sqlite3 *w = conn(c, 1), *other = conn(c, 0);
	exec(w, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB); PRAGMA cache_size=20");
	exec(w, "INSERT INTO t (v) VALUES (randomblob(100))");
	exec(w, "BEGIN; INSERT INTO t (v)" ROWS(2000, 500) "; ROLLBACK");
	exec(other, "BEGIN; INSERT INTO t (v)" ROWS(300, 500) "; COMMIT");
	exec(w, "INSERT INTO t (v) VALUES (randomblob(100))");
	/* and with the WAL started over first: undoing the transaction then reads its pages
	 * back from the database file, not the WAL, so nothing in between writes the buffer */
	exec(w, "PRAGMA wal_checkpoint(TRUNCATE)");
	exec(w, "BEGIN; INSERT INTO t (v)" ROWS(2000, 500) "; ROLLBACK");
	exec(other, "BEGIN; INSERT INTO t (v)" ROWS(300, 500) "; COMMIT");
	exec(w, "INSERT INTO t (v) VALUES (randomblob(100))");
	/* and once more with a read on the first connection in between */
	exec(w, "BEGIN; INSERT INTO t (v)" ROWS(2000, 500) "; ROLLBACK");
	exec(other, "BEGIN; INSERT INTO t (v)" ROWS(300, 500) "; COMMIT");
	assert_int_equal(one(w, "SELECT count(*) FROM t"), 903);
	exec(w, "INSERT INTO t (v) VALUES (randomblob(100))");
	sqlite3_close(w);
	sqlite3_close(other);
	sqlite3 *fresh = conn(c, 0);
	assert_int_equal(one(fresh, "SELECT count(*) FROM t"), 904);
	assert_intact(fresh);
	exec(fresh, "PRAGMA wal_checkpoint(TRUNCATE)");
	assert_intact(fresh);
	assert_int_equal(one(fresh, "SELECT count(*) FROM t"), 904);
	sqlite3_close(fresh);
}

/* sql run by a child process through the store's VFS, killed (SIGKILL) as soon as it
 * succeeded; then a connection of this process on what it left. */
static sqlite3 *run_then_kill(const ctx *c, const char *sql)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if(pid == 0) {
		sqlite3 *w = conn(c, 1);
		if(sqlite3_exec(w, sql, NULL, NULL, NULL) == SQLITE_OK) raise(SIGKILL);
		_exit(3);
	}
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	return conn(c, 0);
}

/* A process killed right after COMMIT returned: its commit is in the file. */
static void test_kill_after_commit(void **state)
{
	ctx *c = *state;
	sqlite3 *setup_db = conn(c, 0);
	exec(setup_db, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)");
	sqlite3_close(setup_db);
	sqlite3 *r = run_then_kill(c, "BEGIN; INSERT INTO t (v)" ROWS(700, 200) "; COMMIT");
	assert_int_equal(one(r, "SELECT count(*) FROM t"), 700);
	assert_intact(r);
	sqlite3_close(r);
}

/* A transaction too big for the page cache that changes a spilled page again: SQLite
 * writes that page over its frame and, at commit, writes the headers of the frames from
 * there on again (new checksums), the commit frame's last, with no page after it. The
 * commit must be whole in the file when COMMIT returns: a process killed then keeps it. */
static void test_rewritten_headers_kept(void **state)
{
	ctx *c = *state;
	sqlite3 *setup_db = conn(c, 0);
	exec(setup_db, "CREATE TABLE t (k INTEGER PRIMARY KEY, m INTEGER, v BLOB);"
	               "INSERT INTO t (m, v) SELECT 0, randomblob(300) FROM (" ROWS(3000, 1) ")");
	sqlite3_close(setup_db);
	sqlite3 *r = run_then_kill(c, "PRAGMA cache_size=20; BEGIN; UPDATE t SET m = 1; UPDATE t SET m = 2; COMMIT;"
	                              "INSERT INTO t (m, v) VALUES (7, randomblob(10))");
	assert_int_equal(one(r, "SELECT count(*) FROM t WHERE m = 2"), 3000);
	assert_int_equal(one(r, "SELECT count(*) FROM t WHERE m = 7"), 1);
	assert_intact(r);
	sqlite3_close(r);
}

/* SQLite's unix VFS with WAL writes that fail (SQLITE_FULL, a full disk) while fail_wal is
 * set; registered as the default before the store's VFS wraps it (main). */
static sqlite3_vfs fault_vfs, *unix_vfs;
static sqlite3_io_methods fault_methods;
static const sqlite3_io_methods *unix_methods;
static int fail_wal;

static int fault_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
	return fail_wal ? SQLITE_FULL : unix_methods->xWrite(f, p, n, off);
}

static int fault_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out)
{
	(void)v;
	int rc = unix_vfs->xOpen(unix_vfs, name, f, flags, out);
	if(rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL) && f->pMethods) {
		if(!unix_methods) {
			unix_methods = f->pMethods;
			fault_methods = *f->pMethods;
			fault_methods.xWrite = fault_write;
		}
		f->pMethods = &fault_methods;
	}
	return rc;
}

/* A full disk while the buffer is written out for a read: the statement fails, the
 * transaction goes on (ROLLBACK TO, more writes) and commits. Its frames must all be in
 * the file, or the commit must fail: never a database with pages missing. */
static void test_failed_flush_loses_nothing(void **state)
{
	ctx *c = *state;
	sqlite3 *w = conn(c, 1);
	exec(w, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB); CREATE TABLE t2 (x UNIQUE); PRAGMA cache_size=10");
	exec(w, "BEGIN IMMEDIATE; SAVEPOINT r1; INSERT INTO t (v)" ROWS(60, 3000) "; RELEASE r1; SAVEPOINT r2");
	fail_wal = 1;
	int rc = sqlite3_exec(w, "INSERT INTO t2 (x) SELECT k FROM t", NULL, NULL, NULL);
	fail_wal = 0;
	assert_int_not_equal(rc, SQLITE_OK);
	sqlite3_exec(w, "ROLLBACK TO r2; RELEASE r2", NULL, NULL, NULL);
	sqlite3_exec(w, "INSERT INTO t (v) VALUES (randomblob(10))", NULL, NULL, NULL);
	int committed = sqlite3_exec(w, "COMMIT", NULL, NULL, NULL) == SQLITE_OK;
	if(!committed) sqlite3_exec(w, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(w);
	sqlite3 *r = conn(c, 0);
	assert_intact(r);
	assert_int_equal(one(r, "SELECT count(*) FROM t"), committed ? 61 : 0);
	sqlite3_close(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_commits_are_visible, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rollback_never_overwrites, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill_after_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rewritten_headers_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_flush_loses_nothing, setup, teardown),
	};
	unix_vfs = sqlite3_vfs_find(NULL);
	fault_vfs = *unix_vfs;
	fault_vfs.zName = "fault";
	fault_vfs.xOpen = fault_open;
	if(sqlite3_vfs_register(&fault_vfs, 1) != SQLITE_OK) return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
