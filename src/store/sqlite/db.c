/* SQLite connections: one per thread, prepared statements cached per connection, WAL mode.
 * See ARCHITECTURE.md for the settings and the measurements behind them. */
#include "store/sqlite/internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "core/mem.h"
#include "core/timeutil.h"
#include "store/migrations.h"

#define GROUP_MAX 1000
/* Readers map the database file (SQLite caps this at its SQLITE_MAX_MMAP_SIZE): a read of
 * a page is then a memory access, not a pread copy into each connection's page cache.
 * Random reads of single devices spent a fifth of their time in those copies and lookups. */
#define MMAP_READERS "2147418112"
#define RC_RING 64

struct imp_writer {
	pthread_mutex_t lock;
	/* Members of a group wait for its commit on a lock of their own: woken, each had to take
	 * the writer's lock again only to read its outcome, so a commit's whole group queued for
	 * the writer ahead of the next group's requests. */
	pthread_mutex_t done_lock;
	pthread_cond_t done;
	atomic_int waiting;      /* threads queued for the lock */
	atomic_int finish_ckpt;  /* the checkpointer asks for the rest of its copy */
	imp_db *db;              /* the writer connection */
	int open;                /* a transaction is open */
	uint64_t gen;            /* the group being built */
	uint64_t committed;      /* the last group committed or failed */
	unsigned count;          /* members of the open group */
	int unmarked;            /* the request in turn began without its savepoint */
	int64_t writes_at_begin; /* and had written this many rows before it began */
	imp_err rc[RC_RING];     /* outcome of recent groups */
	/* Members that did not wait for the open group's commit (imp_db_commit_later), told
	 * its outcome when it ends, in the order they joined. */
	imp_db_later *later_head, *later_tail;
	atomic_int laters;       /* how many: imp_store_flush's check without the lock */
};

/* Checkpoints off the writer. SQLite's automatic checkpoint runs inside the COMMIT that
 * crosses its threshold, so that one commit (and every request grouped into it, or waiting
 * for the writer) waited for the copy of the WAL into the database and its fsyncs: 170-650 ms
 * at the 99th percentile of device creates. Here the writer's WAL hook wakes a thread of the
 * store, which copies (PASSIVE: it never blocks the writer, nor waits for readers) on a
 * connection of its own while the writer goes on, in passes until little is left. The WAL
 * starts over from its beginning only when a write transaction begins with every frame
 * copied, which a steady stream of writes never leaves room for: so the writer copies that
 * little rest itself (tens of frames, a few ms) before its next BEGIN. Should the thread
 * fall far behind, the writer checkpoints itself at commit as SQLite would, so the WAL
 * stays bounded. bench/README.md has the figures. */
#define CKPT_PAGES 4096           /* 16 MiB of WAL wakes the checkpointer */
#define FINISH_WAIT_MS 20         /* the writer's wait for readers to leave the WAL */
#define WRITER_BUSY_MS 10000
#define CKPT_INLINE_PAGES 65536   /* 256 MiB: the writer checkpoints itself */
#define KEPT_IDLE_MS 50           /* the checkpointer's sweep of idle kept reads */

struct imp_ckpt {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int due, stop, inited, started;
	int next_at, last_pages;   /* the writer's hook: WAL length for the next wake */
	int wake_pages, inline_pages;
	sqlite3 *conn;
};

struct imp_store {
	char *path;
	pthread_key_t key;
	pthread_mutex_t lock;
	imp_db *all;          /* every open connection, to close the stragglers */
	struct imp_writer writer;
	struct imp_ckpt ckpt;
	imp_status *status;   /* the broker's connection-status map, read */
	atomic_int kept;      /* connections keeping a read transaction (imp_store_reader) */
	atomic_int drain;     /* the writer waits for readers to leave the WAL: keep none */
};

/* FNV-1a over the length and the first and last 32 bytes: statements built from parts
 * differ at their ends (filters, ORDER BY), and hashing every byte of a long INSERT on
 * every lookup was over 1% of a batch. Equal hashes are told apart by strcmp. */
uint32_t store__sql_hash(const char *s)
{
	size_t n = strlen(s);
	uint32_t h = (2166136261u ^ (uint32_t)n) * 16777619u;
	size_t head = n < 64 ? n : 32;
	for(size_t i = 0; i < head; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
	for(size_t i = n < 64 ? n : n - 32; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h;
}

static sqlite3_stmt *fill_slot(imp_db *db, struct stmt_slot *s, uint32_t h, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if(sqlite3_prepare_v3(db->conn, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) return NULL;
	char *copy = imp_strdup(sql);
	if(!copy) {
		sqlite3_finalize(st);
		return NULL;
	}
	if(s->sql) {
		sqlite3_finalize(s->stmt);
		imp_free(s->sql);
	}
	s->sql = copy;
	s->hash = h;
	s->stmt = st;
	return st;
}

sqlite3_stmt *store__stmt(imp_db *db, const char *sql) { return store__stmt_hashed(db, sql, store__sql_hash(sql)); }

static sqlite3_stmt *cached_stmt(imp_db *db, const char *sql, uint32_t h, int unbind);

sqlite3_stmt *store__stmt_hashed(imp_db *db, const char *sql, uint32_t h) { return cached_stmt(db, sql, h, 1); }

sqlite3_stmt *store__stmt_rebound(imp_db *db, const char *sql)
{
	return cached_stmt(db, sql, store__sql_hash(sql), 0);
}

static sqlite3_stmt *lookup_stmt(imp_db *db, const char *sql, uint32_t h, int unbind);
static int leave_kept(imp_db *db);

static sqlite3_stmt *cached_stmt(imp_db *db, const char *sql, uint32_t h, int unbind)
{
	if(leave_kept(db)) return NULL;
	return lookup_stmt(db, sql, h, unbind);
}

static sqlite3_stmt *lookup_stmt(imp_db *db, const char *sql, uint32_t h, int unbind)
{
	struct stmt_slot *idle = NULL;
	for(unsigned i = 0; i < IMP_STMT_CACHE; i++) {
		struct stmt_slot *s = &db->cache[(h + i) % IMP_STMT_CACHE];
		if(!s->sql) return fill_slot(db, s, h, sql);
		if(s->hash == h && strcmp(s->sql, sql) == 0) {
			sqlite3_reset(s->stmt);
			if(unbind) sqlite3_clear_bindings(s->stmt);
			return s->stmt;
		}
		if(!idle && !sqlite3_stmt_busy(s->stmt)) idle = s;
	}
	/* Full: replace a statement that is not being stepped (list queries vary with their
	 * filters, so a long-lived process can meet more shapes than the cache holds). */
	return idle ? fill_slot(db, idle, h, sql) : NULL;
}

/* head (an "INSERT INTO t (a, b)") then " VALUES " and rows groups of ncols parameters:
 * caller frees with imp_free(); NULL when out of memory. */
static char *values_sql(const char *head, int ncols, size_t rows)
{
	size_t hl = strlen(head);
	char *sql = imp_malloc(hl + sizeof " VALUES " + rows * (size_t)(2 * ncols + 2) + 1);
	if(!sql) return NULL;
	memcpy(sql, head, hl);
	size_t len = hl;
	memcpy(sql + len, " VALUES ", 8);
	len += 8;
	for(size_t j = 0; j < rows; j++) {
		if(j) sql[len++] = ',';
		sql[len++] = '(';
		for(int c = 0; c < ncols; c++) {
			if(c) sql[len++] = ',';
			sql[len++] = '?';
		}
		sql[len++] = ')';
	}
	sql[len] = '\0';
	return sql;
}

imp_err store__insert_rows(imp_db *db, const char *head, int ncols, size_t n,
                           int (*bind)(sqlite3_stmt *st, int at, size_t i, void *arg), void *arg)
{
	/* Full statements, then the rest a row at a time: a statement for every size of rest
	 * would fill the connection's statement cache with shapes seen once. */
	imp_err rc = IMP_OK;
	char *sql[2] = {NULL, NULL}; /* STORE_ROWS_MAX rows, one row */
	for(size_t done = 0; !rc && done < n;) {
		size_t m = n - done >= STORE_ROWS_MAX ? STORE_ROWS_MAX : 1;
		char **text = &sql[m == 1];
		if(!*text) *text = values_sql(head, ncols, m);
		sqlite3_stmt *st = *text ? store__stmt_rebound(db, *text) : NULL;
		if(!st) rc = *text ? IMP_ERR_STORE : IMP_ERR_NOMEM;
		for(size_t j = 0; !rc && j < m; j++) {
			if(bind(st, (int)j * ncols + 1, done + j, arg)) rc = IMP_ERR_STORE;
		}
		if(!rc) rc = store__rc(sqlite3_step(st));
		if(st) sqlite3_reset(st);
		done += m;
	}
	imp_free(sql[0]);
	imp_free(sql[1]);
	return rc;
}

imp_err store__rc(int rc)
{
	switch(rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW: return IMP_OK;
	case SQLITE_CONSTRAINT: return IMP_ERR_CONFLICT;
	case SQLITE_BUSY:
	case SQLITE_LOCKED: return IMP_ERR_BUSY;
	case SQLITE_NOMEM: return IMP_ERR_NOMEM;
	default: return IMP_ERR_STORE;
	}
}

imp_err store__exec(imp_db *db, const char *sql)
{
	if(leave_kept(db)) return IMP_ERR_STORE;
	return store__rc(sqlite3_exec(db->conn, sql, NULL, NULL, NULL));
}

/* SQLite's memory statistics take a process-wide mutex around every allocation it makes
 * (tens a device create); nothing here reads them. Set once, before SQLite initialises;
 * in a process where it already has (the broker's, when another plugin uses SQLite), the
 * call is refused and nothing changes. */
static pthread_once_t config_once = PTHREAD_ONCE_INIT;
static void config_sqlite(void) { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }

static imp_err db_open(const char *path, int flags, imp_db **out)
{
	pthread_once(&config_once, config_sqlite);
	imp_db *db = imp_calloc(1, sizeof *db);
	if(!db) return IMP_ERR_NOMEM;
	pthread_mutex_init(&db->use, NULL);
	if(sqlite3_open_v2(path, &db->conn, flags | SQLITE_OPEN_NOMUTEX, store__vfs()) != SQLITE_OK) {
		sqlite3_close(db->conn);
		pthread_mutex_destroy(&db->use);
		imp_free(db);
		return IMP_ERR_STORE;
	}
	sqlite3_busy_timeout(db->conn, WRITER_BUSY_MS);
	imp_err rc = store__exec(db,
		"PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;"
		"PRAGMA cache_size=-16384; PRAGMA mmap_size=" MMAP_READERS "; PRAGMA temp_store=MEMORY;");
	if(rc) {
		sqlite3_close(db->conn);
		pthread_mutex_destroy(&db->use);
		imp_free(db);
		return rc;
	}
	*out = db;
	return IMP_OK;
}

static int end_kept(imp_db *db);
static void unhold(imp_db *db);

static void db_close(imp_db *db)
{
	/* One that would not end is rolled back by closing the connection. */
	if(atomic_load(&db->held) && end_kept(db)) unhold(db);
	imp_feed_close(&db->feed);
	for(unsigned i = 0; i < IMP_STMT_CACHE; i++) {
		if(db->cache[i].sql) {
			sqlite3_finalize(db->cache[i].stmt);
			imp_free(db->cache[i].sql);
		}
	}
	sqlite3_close(db->conn);
	pthread_mutex_destroy(&db->use);
	imp_free(db);
}

static void unlink_db(imp_store *s, imp_db *db)
{
	pthread_mutex_lock(&s->lock);
	for(imp_db **p = &s->all; *p; p = &(*p)->next) {
		if(*p == db) {
			*p = db->next;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
}

static void thread_exit(void *arg)
{
	imp_db *db = arg;
	unlink_db(db->store, db);
	db_close(db);
}

static imp_err migrate(imp_db *db)
{
	int count, have = 0;
	const char *const *m = imp_migrations(&count);
	sqlite3_stmt *st;
	if(sqlite3_prepare_v2(db->conn, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) return IMP_ERR_STORE;
	if(sqlite3_step(st) == SQLITE_ROW) have = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	for(int i = have; i < count; i++) {
		char ver[64];
		imp_err rc = store__exec(db, "BEGIN IMMEDIATE");
		if(rc) return rc;
		rc = store__exec(db, m[i]);
		snprintf(ver, sizeof ver, "PRAGMA user_version=%d", i + 1);
		if(!rc) rc = store__exec(db, ver);
		if(!rc) rc = store__exec(db, "COMMIT");
		if(rc) {
			store__exec(db, "ROLLBACK");
			return rc;
		}
	}
	return IMP_OK;
}

static void readers_out(imp_store *s);

static void *ckpt_run(void *arg)
{
	imp_store *s = arg;
	struct imp_ckpt *c = &s->ckpt;
	pthread_mutex_lock(&c->lock);
	for(;;) {
		while(!c->due && !c->stop) {
			if(!atomic_load(&s->kept)) {
				pthread_cond_wait(&c->wake, &c->lock);
				continue;
			}
			/* Read transactions kept by threads that have gone idle end within
			 * KEPT_IDLE_MS: a kept snapshot holds back the WAL's copy past it. */
			struct timespec t = imp_deadline(KEPT_IDLE_MS);
			if(pthread_cond_timedwait(&c->wake, &c->lock, &t) == ETIMEDOUT) {
				pthread_mutex_unlock(&c->lock);
				readers_out(s);
				pthread_mutex_lock(&c->lock);
			}
		}
		if(c->stop) break;
		c->due = 0;
		pthread_mutex_unlock(&c->lock);
		readers_out(s);
		/* While writers go on: the bulk of the copy and its fsyncs. BUSY (another
		 * checkpoint is running) leaves it to the next wake. */
		int log = 0, done = 0, prev = 0;
		for(int pass = 0; pass < 4 && (pass == 0 || log - prev > 256); pass++) {
			prev = log;
			if(sqlite3_wal_checkpoint_v2(c->conn, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done) != SQLITE_OK) break;
		}
		/* The WAL starts over from its beginning only when a write transaction begins
		 * with every frame copied; under a steady stream of writes that never happens by
		 * itself and the WAL only grows. The writer copies the rest (what came in
		 * meanwhile: a few ms) before it begins its next transaction. */
		if(log > 0) atomic_store(&s->writer.finish_ckpt, 1);
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return arg;
}

/* The writer connection's WAL hook, after each commit; pages: the WAL's length. */
static int wal_hook(void *arg, sqlite3 *conn, const char *name, int pages)
{
	struct imp_ckpt *c = arg;
	if(pages < c->last_pages || c->next_at == 0) c->next_at = c->wake_pages;   /* the WAL started over */
	c->last_pages = pages;
	if(pages >= c->inline_pages) {
		sqlite3_wal_checkpoint_v2(conn, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	} else if(pages >= c->next_at) {
		/* Once per wake_pages / 2 of growth: a pass, then the writer's rest of it. */
		c->next_at = pages + c->wake_pages / 2;
		pthread_mutex_lock(&c->lock);
		c->due = 1;
		pthread_cond_signal(&c->wake);
		pthread_mutex_unlock(&c->lock);
	}
	return SQLITE_OK;
}

static int ckpt_start(imp_store *s)
{
	struct imp_ckpt *c = &s->ckpt;
	if(imp_cond_init_monotonic(&c->wake)) return -1;
	pthread_mutex_init(&c->lock, NULL);
	c->inited = 1;
	c->wake_pages = CKPT_PAGES;
	c->inline_pages = CKPT_INLINE_PAGES;
	if(sqlite3_open_v2(s->path, &c->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) return -1;
	/* A connection opens the WAL at its first read; a checkpoint before that does nothing. */
	if(sqlite3_exec(c->conn, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) != SQLITE_OK) return -1;
	if(pthread_create(&c->thread, NULL, ckpt_run, s)) return -1;
	c->started = 1;
	/* Replaces SQLite's automatic checkpoint on this connection. */
	sqlite3_wal_hook(s->writer.db->conn, wal_hook, c);
	return 0;
}

int imp_store_writers_waiting(imp_store *s) { return atomic_load(&s->writer.waiting); }

void imp_store_set_checkpoint(imp_store *s, int wake_pages, int inline_pages)
{
	/* Read by the writer's hook, under the writer's lock. */
	pthread_mutex_lock(&s->writer.lock);
	s->ckpt.wake_pages = wake_pages > 0 ? wake_pages : CKPT_PAGES;
	s->ckpt.inline_pages = inline_pages > 0 ? inline_pages : CKPT_INLINE_PAGES;
	s->ckpt.next_at = 0;
	pthread_mutex_unlock(&s->writer.lock);
}

static void ckpt_stop(imp_store *s)
{
	struct imp_ckpt *c = &s->ckpt;
	if(!c->inited) return;
	if(c->started) {
		pthread_mutex_lock(&c->lock);
		c->stop = 1;
		pthread_cond_signal(&c->wake);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->thread, NULL);
		c->started = 0;
	}
	if(s->writer.db) sqlite3_wal_hook(s->writer.db->conn, NULL, NULL);
	if(c->conn) sqlite3_close(c->conn);
	c->conn = NULL;
	pthread_cond_destroy(&c->wake);
	pthread_mutex_destroy(&c->lock);
	c->inited = 0;
}

imp_err imp_store_open(const char *path, int create, imp_store **out)
{
	imp_db *db = NULL;
	int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
	imp_err rc = db_open(path, flags, &db);
	if(rc) return create ? rc : IMP_ERR_NOT_FOUND;
	rc = migrate(db);
	db_close(db);
	if(rc) return rc;

	imp_store *s = imp_calloc(1, sizeof *s);
	if(!s) return IMP_ERR_NOMEM;
	s->path = imp_strdup(path);
	if(!s->path || pthread_key_create(&s->key, thread_exit)) {
		imp_free(s->path);
		imp_free(s);
		return IMP_ERR_NOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->writer.lock, NULL);
	pthread_mutex_init(&s->writer.done_lock, NULL);
	pthread_cond_init(&s->writer.done, NULL);
	if(db_open(path, SQLITE_OPEN_READWRITE, &s->writer.db)) {
		imp_store_close(&s);
		return IMP_ERR_STORE;
	}
	s->writer.db->store = s;
	if(imp_feed_open(path, &s->writer.db->feed) || imp_status_open(path, 0, &s->status)) {
		imp_store_close(&s);
		return IMP_ERR_STORE;
	}
	/* The writer grows the file; a memory map would be remapped as it does. */
	store__exec(s->writer.db, "PRAGMA mmap_size=0");
	if(ckpt_start(s)) {
		imp_store_close(&s);
		return IMP_ERR_STORE;
	}
	*out = s;
	return IMP_OK;
}

/* One try a millisecond: count is the number of tries so far. */
static int busy_poll(void *arg, int count)
{
	const imp_db *db = arg;
	if(count >= db->busy_ms) return 0;
	struct timespec ts = {0, 1000000};
	nanosleep(&ts, NULL);
	return 1;
}

void imp_db_busy_poll(imp_db *db)
{
	if(db->busy_ms > 0) sqlite3_busy_handler(db->conn, busy_poll, db);
}

imp_err imp_db_open(const char *path, int readonly, int busy_ms, imp_db **out)
{
	pthread_once(&config_once, config_sqlite);
	imp_db *db = imp_calloc(1, sizeof *db);
	if(!db) return IMP_ERR_NOMEM;
	int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX;
	pthread_mutex_init(&db->use, NULL);
	if(sqlite3_open_v2(path, &db->conn, flags, NULL) != SQLITE_OK) {
		sqlite3_close(db->conn);
		pthread_mutex_destroy(&db->use);
		imp_free(db);
		return IMP_ERR_NOT_FOUND;
	}
	sqlite3_busy_timeout(db->conn, readonly ? 0 : busy_ms);
	db->busy_ms = readonly ? 0 : busy_ms;
	/* The schema belongs to the process that migrates it; this one only checks that it
	 * knows every table it will touch. */
	int count, have = -1;
	imp_migrations(&count);
	sqlite3_stmt *st;
	imp_err rc = IMP_ERR_STORE;
	if(sqlite3_prepare_v2(db->conn, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
		if(sqlite3_step(st) == SQLITE_ROW) have = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	if(have >= count) rc = store__exec(db, "PRAGMA foreign_keys=OFF; PRAGMA cache_size=-4096; PRAGMA temp_store=MEMORY;");
	if(!rc && !readonly) rc = store__exec(db, "PRAGMA synchronous=NORMAL");
	if(rc) {
		imp_db_close(&db);
		return rc;
	}
	*out = db;
	return IMP_OK;
}

void imp_db_close(imp_db **db)
{
	if(!*db) return;
	db_close(*db);
	*db = NULL;
}

imp_err imp_db_tx_begin(imp_db *db) { return store__exec(db, "BEGIN IMMEDIATE"); }
imp_err imp_db_tx_commit(imp_db *db)
{
	imp_err rc = store__exec(db, "COMMIT");
	store__feed_done(db);
	return rc;
}

void imp_db_tx_rollback(imp_db *db)
{
	store__exec(db, "ROLLBACK");
	store__feed_done(db);
}

imp_status *store__status(imp_db *db) { return db->store ? db->store->status : NULL; }

imp_db *imp_store_db(imp_store *s)
{
	imp_db *db = pthread_getspecific(s->key);
	if(db) return db;
	if(db_open(s->path, SQLITE_OPEN_READWRITE, &db)) return NULL;
	db->store = s;
	pthread_mutex_lock(&s->lock);
	db->next = s->all;
	s->all = db;
	pthread_mutex_unlock(&s->lock);
	pthread_setspecific(s->key, db);
	return db;
}

/* Kept read transactions (imp_store_reader). */
#define WAL_HEADER 48          /* bytes of the WAL index header; a copy follows it */
#define WAL_HEADER_INIT 12     /* its isInit byte */

/* The WAL index header now, in out; 0 when its two copies differ: SQLite writes the second
 * and then the first, so a commit in the middle of that shows them apart (its readers
 * compare them the same way). */
static int wal_header(const volatile unsigned char *w, unsigned char out[WAL_HEADER])
{
	unsigned char second[WAL_HEADER];
	if(!w) return 0;
	for(int i = 0; i < WAL_HEADER; i++) out[i] = w[i];
	atomic_thread_fence(memory_order_seq_cst);
	for(int i = 0; i < WAL_HEADER; i++) second[i] = w[WAL_HEADER + i];
	return out[WAL_HEADER_INIT] && memcmp(out, second, WAL_HEADER) == 0;
}

/* One statement of the kept transaction's own (BEGIN, COMMIT, its first read), past
 * leave_kept. */
static int kept_step(imp_db *db, const char *sql)
{
	sqlite3_stmt *st = lookup_stmt(db, sql, store__sql_hash(sql), 0);
	if(!st) return SQLITE_ERROR;
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Ends db's kept transaction; db->use locked, db->held set. A COMMIT that fails (a write
 * made inside the pair that cannot commit is lost with it, as a failed autocommit
 * statement's would be) is rolled back; the cached ROLLBACK needs a statement slot, so
 * sqlite3_exec follows when that cannot run. Only a connection seen back in autocommit is
 * no longer held: one still in its transaction is tried again at the next end. Nonzero
 * when it would not end (db->held still set). */
static int end_kept(imp_db *db)
{
	if(kept_step(db, "COMMIT") != SQLITE_OK && !sqlite3_get_autocommit(db->conn) &&
	   kept_step(db, "ROLLBACK") != SQLITE_OK && !sqlite3_get_autocommit(db->conn))
		sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
	if(!sqlite3_get_autocommit(db->conn)) return 1;
	unhold(db);
	return 0;
}

static void unhold(imp_db *db)
{
	atomic_store(&db->held, 0);
	if(db->store) atomic_fetch_sub(&db->store->kept, 1);
}

/* Begins a transaction to keep, on db (db->use locked, none held), when it can tell the
 * snapshot SQLite gives it: the header is the same before and after the transaction takes
 * it, so it is that header's. Otherwise (a commit in between, or the WAL index not mapped
 * before the connection's first read) this request reads as every statement would alone.
 * 1 when it keeps one; on 0, db->held is still set only when the transaction it began
 * would not end (end_kept), and its snapshot then matches no header. */
static int start_kept(imp_db *db)
{
	unsigned char before[WAL_HEADER], after[WAL_HEADER];
	const volatile unsigned char *w = store__wal_index(db->conn);
	if(!wal_header(w, before) || kept_step(db, "BEGIN") != SQLITE_OK) return 0;
	int exact = kept_step(db, "SELECT 1 FROM sqlite_schema LIMIT 1") == SQLITE_OK && wal_header(w, after) &&
	            memcmp(before, after, WAL_HEADER) == 0;
	if(exact) memcpy(db->snapshot, before, WAL_HEADER);
	else memset(db->snapshot, 0, WAL_HEADER);   /* no header has isInit 0 */
	/* Held from BEGIN on, so that one which will not end is counted and retried. */
	atomic_store(&db->held, 1);
	imp_store *s = db->store;
	if(atomic_fetch_add(&s->kept, 1) == 0 && s->ckpt.started) {
		/* The checkpointer's timed sweep starts (ckpt_run). */
		pthread_mutex_lock(&s->ckpt.lock);
		pthread_cond_signal(&s->ckpt.wake);
		pthread_mutex_unlock(&s->ckpt.lock);
	}
	if(!exact) end_kept(db);
	return exact;
}

/* Whether db's kept transaction still sees every commit: the header is its own. */
static int kept_current(imp_db *db)
{
	unsigned char now[WAL_HEADER];
	return wal_header(store__wal_index(db->conn), now) && memcmp(now, db->snapshot, WAL_HEADER) == 0;
}

/* Before a statement outside imp_store_reader's pair: that may be a write, or a read that
 * must see this thread's own commit since. Nonzero when a kept transaction would not end
 * (end_kept): the statement must not run in its older snapshot. */
static int leave_kept(imp_db *db)
{
	if(!atomic_load_explicit(&db->held, memory_order_acquire) || db->reading) return 0;
	pthread_mutex_lock(&db->use);
	int stuck = atomic_load(&db->held) && end_kept(db);
	pthread_mutex_unlock(&db->use);
	return stuck;
}

/* Ends every kept transaction whose thread is not inside a request. */
static void readers_out(imp_store *s)
{
	if(!atomic_load(&s->kept)) return;
	pthread_mutex_lock(&s->lock);
	for(imp_db *db = s->all; db; db = db->next) {
		if(!atomic_load(&db->held) || pthread_mutex_trylock(&db->use)) continue;
		if(atomic_load(&db->held)) end_kept(db);
		pthread_mutex_unlock(&db->use);
	}
	pthread_mutex_unlock(&s->lock);
}

imp_db *imp_store_reader(imp_store *s)
{
	imp_db *db = imp_store_db(s);
	if(!db) return NULL;
	pthread_mutex_lock(&db->use);
	int drain = atomic_load(&s->drain), current = 0;
	if(atomic_load(&db->held)) {
		if(!drain && kept_current(db)) current = 1;
		else end_kept(db);
	}
	if(!atomic_load(&db->held) && !drain) current = start_kept(db);
	if(atomic_load(&db->held) && !current) {
		/* A transaction that would not end: its snapshot may be older than a fresh one. */
		pthread_mutex_unlock(&db->use);
		return NULL;
	}
	db->reading = 1;
	return db;
}

void imp_db_read_done(imp_db *db)
{
	if(!db || !db->reading) return;
	/* A write made inside the pair on this connection (none is: writes go to the writer)
	 * would otherwise wait in the kept transaction; it commits before the answer. */
	if(atomic_load(&db->held) && (atomic_load(&db->store->drain) || imp_db_in_write(db))) end_kept(db);
	db->reading = 0;
	pthread_mutex_unlock(&db->use);
}

int imp_store_readers_kept(imp_store *s) { return atomic_load(&s->kept); }

void imp_store_close(imp_store **sp)
{
	imp_store *s = *sp;
	if(!s) return;
	/* First the checkpointer, which also ends idle kept read transactions (s->all). */
	ckpt_stop(s);
	pthread_setspecific(s->key, NULL);
	pthread_key_delete(s->key);
	while(s->all) {
		imp_db *db = s->all;
		s->all = db->next;
		db_close(db);
	}
	pthread_mutex_destroy(&s->lock);
	if(s->writer.db) db_close(s->writer.db);
	pthread_cond_destroy(&s->writer.done);
	pthread_mutex_destroy(&s->writer.done_lock);
	pthread_mutex_destroy(&s->writer.lock);
	imp_status_close(&s->status);
	imp_free(s->path);
	imp_free(s);
	*sp = NULL;
}

/* Group commit. Every write transaction of the process runs on one writer connection, in
 * turn, each inside a savepoint of a shared transaction. A writer that finishes while others
 * wait for their turn leaves the transaction open for them and sleeps until it commits;
 * the last in line (or the 1,000th) commits for all. One COMMIT then writes the pages a
 * whole group touched once, instead of once per request: the difference between about
 * 1,300 and over 10,000 device creates a second here (see bench/README.md). Nobody is
 * answered before the commit that holds their work. A member may also leave without waiting
 * (imp_db_commit_later), told the outcome by a callback: the group then stays open until a
 * member that waits ends it, or imp_store_flush when its caller has nothing more to add. */

static __thread imp_db *own_db;   /* the caller's connection while it writes */

/* A statement of the writer's transactions, prepared once: sqlite3_exec parsed each
 * SAVEPOINT and RELEASE again, a few percent of a create. */
static imp_err writer_exec(imp_db *db, const char *sql)
{
	sqlite3_stmt *st = store__stmt(db, sql);
	if(!st) return store__exec(db, sql);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return store__rc(rc);
}

/* The open group ended (committed, or rolled back with rc): its members are told rc, and
 * the writer is free. Called with the lock held; releases it. */
static void group_done(struct imp_writer *w, imp_err rc)
{
	/* Before anyone is answered: a device told its new secret finds the broker already
	 * knowing the old one is gone. */
	store__feed_done(w->db);
	w->open = 0;
	w->count = 0;
	imp_db_later *l = w->later_head;
	w->later_head = w->later_tail = NULL;
	atomic_store(&w->laters, 0);
	pthread_mutex_lock(&w->done_lock);
	w->rc[w->gen % RC_RING] = rc;
	w->committed = w->gen;
	pthread_cond_broadcast(&w->done);
	pthread_mutex_unlock(&w->done_lock);
	pthread_mutex_unlock(&w->lock);
	while(l) {
		imp_db_later *next = l->next;   /* done may reuse l */
		l->done(l, rc);
		l = next;
	}
}

static imp_err group_commit(struct imp_writer *w)
{
	imp_err rc = writer_exec(w->db, "COMMIT");
	if(rc) writer_exec(w->db, "ROLLBACK");
	group_done(w, rc);
	return rc;
}

static imp_err writer_finish(struct imp_writer *w, int failed_self, int now)
{
	uint64_t mine = w->gen;
	w->count++;
	if(now || atomic_load(&w->waiting) == 0 || w->count >= GROUP_MAX) {
		imp_err rc = group_commit(w);
		return failed_self ? IMP_OK : rc;
	}
	/* The next request may write while this one waits; one whose work is already undone
	 * has nothing in the group to wait for. */
	pthread_mutex_unlock(&w->lock);
	if(failed_self) return IMP_OK;
	pthread_mutex_lock(&w->done_lock);
	while(w->committed < mine) pthread_cond_wait(&w->done, &w->done_lock);
	imp_err rc = w->rc[mine % RC_RING];
	pthread_mutex_unlock(&w->done_lock);
	return failed_self ? IMP_OK : rc;
}

static imp_err begin(imp_db **dbp, int mark)
{
	/* A kept read transaction would not see this write once committed: the rest of the
	 * request reads fresh (or, when it would not end, the write is refused). The thread
	 * holds db->use while inside its reader pair. */
	if((*dbp)->reading && atomic_load(&(*dbp)->held) && end_kept(*dbp)) return IMP_ERR_STORE;
	imp_store *s = (*dbp)->store;
	struct imp_writer *w = &s->writer;
	atomic_fetch_add(&w->waiting, 1);
	pthread_mutex_lock(&w->lock);
	atomic_fetch_sub(&w->waiting, 1);
	imp_err rc = IMP_OK;
	if(!w->open) {
		if(atomic_exchange(&w->finish_ckpt, 0)) {
			/* RESTART: the rest of the copy, then a wait (FINISH_WAIT_MS at most) for the
			 * readers still on the WAL's frames to end their reads, so this transaction
			 * starts the WAL over. PASSIVE left that to chance, which a loaded machine
			 * with readers throughout lost every time. */
			atomic_store(&s->drain, 1);   /* no read transaction is kept meanwhile */
			readers_out(s);
			sqlite3_busy_timeout(w->db->conn, FINISH_WAIT_MS);
			int crc = sqlite3_wal_checkpoint_v2(w->db->conn, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
			sqlite3_busy_timeout(w->db->conn, WRITER_BUSY_MS);
			atomic_store(&s->drain, 0);
			if(crc == SQLITE_BUSY) atomic_store(&w->finish_ckpt, 1);   /* try again at the next */
		}
		if((rc = writer_exec(w->db, "BEGIN IMMEDIATE"))) {
			pthread_mutex_unlock(&w->lock);
			return rc;
		}
		w->open = 1;
		w->gen = w->committed + 1;
	}
	w->unmarked = !mark;
	w->writes_at_begin = sqlite3_total_changes64(w->db->conn);
	if(mark && (rc = writer_exec(w->db, "SAVEPOINT request"))) {
		writer_finish(w, 1, 0);
		return rc;
	}
	own_db = *dbp;
	*dbp = w->db;
	return IMP_OK;
}

imp_err imp_db_begin(imp_db **dbp) { return begin(dbp, 1); }
imp_err imp_db_begin_unmarked(imp_db **dbp) { return begin(dbp, 0); }

/* The caller's part of commit before the group's: its savepoint released (on failure,
 * undone and the writer finished for it). */
static imp_err release_own(imp_db **dbp, struct imp_writer **wp)
{
	if(!own_db) return IMP_ERR_STORE;
	struct imp_writer *w = *wp = &own_db->store->writer;
	*dbp = own_db;
	own_db = NULL;
	if(w->unmarked) return IMP_OK;
	imp_err rc = writer_exec(w->db, "RELEASE request");
	if(rc) {
		writer_exec(w->db, "ROLLBACK TO request");
		writer_exec(w->db, "RELEASE request");
		writer_finish(w, 1, 0);
	}
	return rc;
}

static imp_err commit(imp_db **dbp, int now)
{
	struct imp_writer *w;
	imp_err rc = release_own(dbp, &w);
	return rc ? rc : writer_finish(w, 0, now);
}

imp_err imp_db_commit_later(imp_db **dbp, imp_db_later *l)
{
	struct imp_writer *w;
	imp_err rc = release_own(dbp, &w);
	if(rc) return rc;
	l->next = NULL;
	if(w->later_tail) w->later_tail->next = l;
	else w->later_head = l;
	w->later_tail = l;
	atomic_fetch_add(&w->laters, 1);
	if(++w->count >= GROUP_MAX) group_commit(w);
	else pthread_mutex_unlock(&w->lock);
	return IMP_OK;
}

void imp_store_flush(imp_store *s, int always)
{
	struct imp_writer *w = &s->writer;
	if(!atomic_load(&w->laters)) return;
	pthread_mutex_lock(&w->lock);
	/* Someone queued for the writer commits the group, or leaves it open for the next. */
	if(w->later_head && (always || atomic_load(&w->waiting) == 0)) group_commit(w);
	else pthread_mutex_unlock(&w->lock);
}

imp_err imp_db_commit(imp_db **dbp) { return commit(dbp, 0); }
imp_err imp_db_commit_now(imp_db **dbp) { return commit(dbp, 1); }

void imp_db_rollback(imp_db **dbp)
{
	if(!own_db) return;
	struct imp_writer *w = &own_db->store->writer;
	*dbp = own_db;
	own_db = NULL;
	if(w->unmarked) {
		/* Nothing written (a refusal before the first write, or a statement that failed
		 * whole): nothing to undo. */
		if(sqlite3_total_changes64(w->db->conn) == w->writes_at_begin) {
			writer_finish(w, 1, 0);
		} else {
			/* It must undo what it wrote: its whole group goes, every member told its
			 * work failed, as when a COMMIT fails. */
			writer_exec(w->db, "ROLLBACK");
			group_done(w, IMP_ERR_STORE);
		}
		return;
	}
	writer_exec(w->db, "ROLLBACK TO request");
	writer_exec(w->db, "RELEASE request");
	writer_finish(w, 1, 0);
}

/* ROLLBACK TO leaves the savepoint open: the caller stays in its transaction. */
imp_err imp_db_undo(imp_db *db) { return writer_exec(db, "ROLLBACK TO request"); }

int64_t imp_db_writes(imp_db *db) { return sqlite3_total_changes64(db->conn); }
int imp_db_in_write(imp_db *db) { return sqlite3_txn_state(db->conn, NULL) == SQLITE_TXN_WRITE; }

imp_err imp_db_ping(imp_db *db)
{
	sqlite3_stmt *st = store__stmt(db, "SELECT 1");
	if(!st) return IMP_ERR_STORE;
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? IMP_OK : store__rc(rc);
}

imp_err imp_db_integrity(imp_db *db)
{
	sqlite3_stmt *st = store__stmt(db, "PRAGMA integrity_check");
	if(!st) return IMP_ERR_STORE;
	imp_err rc = IMP_ERR_STORE;
	if(sqlite3_step(st) == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0) rc = IMP_OK;
	sqlite3_reset(st);
	return rc;
}
