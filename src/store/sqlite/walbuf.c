/* The store's VFS: SQLite's own (unix) with the WAL's writes gathered. SQLite writes each
 * WAL frame as two pwrite calls, its 24-byte header and then its page: a batch group's
 * commit of 220 pages made 440 system calls, 4.4% of a batch's server time and inside the
 * writer's turn. Here a WAL file's writes that follow each other are kept in a buffer and
 * written in 64 KiB pwrites. The header of a commit frame (it carries the database's size,
 * which no other frame does) is never kept: the buffer goes out before it, and it and the
 * next write (its page) go straight to the file. So a commit is whole in the file before
 * SQLite marks it committed in the WAL index, as without the buffer: readers in this
 * process and in others (the broker plugin) read it from the file, and a kill -9 after
 * COMMIT returned loses nothing. That holds as well when SQLite writes a commit header
 * again with no page after it (it rewrites the checksums of a transaction's frames from a
 * page it wrote twice, the commit frame's last). The buffer is also written before any
 * read, sync, truncation or size query of that file, and before a write anywhere else.
 *
 * Frames still in the buffer when the connection gives up the WAL's write lock belong to
 * a transaction that did not commit: they are dropped then (the database file's xShmLock),
 * never written after another writer (the broker plugin, in its process) may have put its
 * frames at the same place. The database file is otherwise SQLite's own: its xShmMap and
 * xShmUnmap only note where the WAL index's first region is mapped (store__wal_index, for
 * imp_store_reader's check that nothing has committed), and xClose unlinks it. Every other
 * file is SQLite's own, untouched. Not for connections in exclusive locking mode: they
 * take no shared-memory locks, so nothing would drop a rolled-back rest (the store's
 * connections never use it).
 * The WAL format is SQLite's documented file format: https://sqlite.org/fileformat.html */
#include "store/sqlite/internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_HEADER 24
/* One buffer a WAL file, of a fixed size (so memory does not grow with the store): a batch
 * group's commit is about 0.9 MiB; a bigger one is written out as the buffer fills. */
#define BUF_SIZE (1024 * 1024)

typedef struct db_link db_link;

typedef struct {
	sqlite3_file base;      /* pMethods: wal_methods */
	db_link *db;            /* its database file's, while both are open */
	sqlite3_file *real;     /* the unix VFS's file, in the same allocation after this */
	char *buf;
	size_t len, cap;
	sqlite3_int64 at;       /* the file offset of buf[0] */
	int commit_next;        /* the next write is the page of a commit frame: not kept */
} wal_file;

/* After a database file (SQLite's own, at the start of its allocation): its WAL file, found
 * at the WAL's open by the database's name (SQLite passes the same pointer to both). */
struct db_link {
	const char *name;
	wal_file *wal;
	const volatile void *shm;   /* the WAL index's first region, while mapped */
	db_link *next;
};

static sqlite3_vfs vfs;
static sqlite3_vfs *unix_vfs;
static const sqlite3_io_methods *unix_db_methods;
static sqlite3_io_methods db_methods;
static pthread_mutex_t links_lock = PTHREAD_MUTEX_INITIALIZER;
static db_link *links;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int registered = SQLITE_ERROR;

/* sizeof (wal_file) rounded up, where a WAL's real file starts; and where a database
 * file's link starts, after SQLite's file. */
#define ALIGN16(n) (((size_t)(n) + 15) & ~(size_t)15)
#define REAL_AT ALIGN16(sizeof(wal_file))
#define LINK_OF(f) ((db_link *)((char *)(f) + ALIGN16(unix_vfs->szOsFile)))

/* The unix VFS writes at most 128 KiB - 1 a call (it masks the length to 17 bits). */
#define WRITE_MAX (64 * 1024)

/* Writes the buffer out. On an error (a full disk) what was not written stays, to be
 * written by the next flush or dropped with its transaction: SQLite may see the error on a
 * read and go on, taking those frames as in the file, so they must never just vanish. */
static int flush(wal_file *w)
{
	size_t done = 0;
	int rc = SQLITE_OK;
	while(rc == SQLITE_OK && done < w->len) {
		size_t n = w->len - done < WRITE_MAX ? w->len - done : WRITE_MAX;
		rc = w->real->pMethods->xWrite(w->real, w->buf + done, (int)n, w->at + (sqlite3_int64)done);
		if(rc == SQLITE_OK) done += n;
	}
	if(done < w->len) memmove(w->buf, w->buf + done, w->len - done);
	w->at += (sqlite3_int64)done;
	w->len -= done;
	return rc;
}

/* The WAL's writes not yet written: dropped (a transaction that did not commit). */
static void drop(wal_file *w)
{
	w->len = 0;
	w->commit_next = 0;
}

static int wal_close(sqlite3_file *f)
{
	wal_file *w = (wal_file *)f;
	drop(w);   /* a commit is written at once: what is left never committed */
	pthread_mutex_lock(&links_lock);
	if(w->db) w->db->wal = NULL;
	pthread_mutex_unlock(&links_lock);
	int rc = w->real->pMethods->xClose(w->real);
	free(w->buf);
	w->buf = NULL;
	w->cap = 0;
	return rc;
}

static int wal_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
	wal_file *w = (wal_file *)f;
	int rc = flush(w);
	return rc != SQLITE_OK ? rc : w->real->pMethods->xRead(w->real, p, n, off);
}

/* Room for n more bytes in the buffer: 0, or -1 (full, or no buffer to be had). */
static int room(wal_file *w, size_t n)
{
	if(!w->buf && (w->buf = malloc(BUF_SIZE)) != NULL) w->cap = BUF_SIZE;
	return w->len + n <= w->cap ? 0 : -1;
}

static int wal_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
	wal_file *w = (wal_file *)f;
	if(!w->db) return w->real->pMethods->xWrite(w->real, p, n, off);
	const unsigned char *c = p;
	int commit_page = w->commit_next;
	/* A frame header's second field is the database's size in pages after a commit, and
	 * 0 in every other frame's; SQLite writes a frame's header, then its page. */
	w->commit_next = n == FRAME_HEADER && (c[4] | c[5] | c[6] | c[7]) != 0;
	int direct = w->commit_next || commit_page; /* a commit frame: straight to the file */
	if(w->len && (direct || off != w->at + (sqlite3_int64)w->len || room(w, (size_t)n) != 0)) {
		int rc = flush(w);
		if(rc != SQLITE_OK) return rc;
	}
	if(direct || room(w, (size_t)n) != 0) return w->real->pMethods->xWrite(w->real, p, n, off);
	if(w->len == 0) w->at = off;
	memcpy(w->buf + w->len, p, (size_t)n);
	w->len += (size_t)n;
	return SQLITE_OK;
}

static int wal_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	wal_file *w = (wal_file *)f;
	int rc = flush(w);
	return rc != SQLITE_OK ? rc : w->real->pMethods->xTruncate(w->real, size);
}

static int wal_sync(sqlite3_file *f, int flags)
{
	wal_file *w = (wal_file *)f;
	int rc = flush(w);
	return rc != SQLITE_OK ? rc : w->real->pMethods->xSync(w->real, flags);
}

static int wal_size(sqlite3_file *f, sqlite3_int64 *size)
{
	wal_file *w = (wal_file *)f;
	int rc = flush(w);
	return rc != SQLITE_OK ? rc : w->real->pMethods->xFileSize(w->real, size);
}

static int wal_lock(sqlite3_file *f, int lock)
{
	wal_file *w = (wal_file *)f;
	return w->real->pMethods->xLock(w->real, lock);
}

static int wal_unlock(sqlite3_file *f, int lock)
{
	wal_file *w = (wal_file *)f;
	return w->real->pMethods->xUnlock(w->real, lock);
}

static int wal_check_lock(sqlite3_file *f, int *out)
{
	wal_file *w = (wal_file *)f;
	return w->real->pMethods->xCheckReservedLock(w->real, out);
}

static int wal_control(sqlite3_file *f, int op, void *arg)
{
	wal_file *w = (wal_file *)f;
	int rc = flush(w);
	return rc != SQLITE_OK ? rc : w->real->pMethods->xFileControl(w->real, op, arg);
}

static int wal_sector(sqlite3_file *f)
{
	wal_file *w = (wal_file *)f;
	return w->real->pMethods->xSectorSize(w->real);
}

static int wal_device(sqlite3_file *f)
{
	wal_file *w = (wal_file *)f;
	return w->real->pMethods->xDeviceCharacteristics(w->real);
}

/* Version 1: SQLite maps shared memory and pages of the database file only. */
static const sqlite3_io_methods wal_methods = {
	1, wal_close, wal_read, wal_write, wal_truncate, wal_sync, wal_size, wal_lock, wal_unlock, wal_check_lock,
	wal_control, wal_sector, wal_device, NULL, NULL, NULL, NULL, NULL, NULL,
};

/* The database file's: its connection gives up the WAL's write lock (lock 0) at the end
 * of every write transaction, committed or not. */
static int db_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	db_link *l = LINK_OF(f);
	if(offset == 0 && flags == (SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE) && l->wal) drop(l->wal);
	return unix_db_methods->xShmLock(f, offset, n, flags);
}

static int db_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **pp)
{
	int rc = unix_db_methods->xShmMap(f, region, size, extend, pp);
	if(rc == SQLITE_OK && region == 0 && *pp) LINK_OF(f)->shm = *pp;
	return rc;
}

static int db_shm_unmap(sqlite3_file *f, int delete_flag)
{
	LINK_OF(f)->shm = NULL;
	return unix_db_methods->xShmUnmap(f, delete_flag);
}

static int db_close(sqlite3_file *f)
{
	db_link *l = LINK_OF(f);
	pthread_mutex_lock(&links_lock);
	for(db_link **p = &links; *p; p = &(*p)->next) {
		if(*p == l) {
			*p = l->next;
			break;
		}
	}
	if(l->wal) {
		drop(l->wal);
		l->wal->db = NULL;
	}
	pthread_mutex_unlock(&links_lock);
	return unix_db_methods->xClose(f);
}

static int open_db(const char *name, sqlite3_file *f, int flags, int *out_flags)
{
	int rc = unix_vfs->xOpen(unix_vfs, name, f, flags, out_flags);
	if(rc != SQLITE_OK || !f->pMethods || f->pMethods->iVersion < 2) return rc;
	pthread_mutex_lock(&links_lock);
	if(!unix_db_methods) {
		unix_db_methods = f->pMethods;
		db_methods = *f->pMethods;
		db_methods.xShmLock = db_shm_lock;
		db_methods.xShmMap = db_shm_map;
		db_methods.xShmUnmap = db_shm_unmap;
		db_methods.xClose = db_close;
	}
	if(f->pMethods == unix_db_methods) {
		db_link *l = LINK_OF(f);
		*l = (db_link){name, NULL, NULL, links};
		links = l;
		f->pMethods = &db_methods;
	}
	pthread_mutex_unlock(&links_lock);
	return rc;
}

static int vfs_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
	(void)v;
	if(flags & SQLITE_OPEN_MAIN_DB) return open_db(name, f, flags, out_flags);
	if(!(flags & SQLITE_OPEN_WAL)) return unix_vfs->xOpen(unix_vfs, name, f, flags, out_flags);
	wal_file *w = (wal_file *)f;
	memset(w, 0, sizeof *w);
	w->real = (sqlite3_file *)((char *)f + REAL_AT);
	int rc = unix_vfs->xOpen(unix_vfs, name, w->real, flags, out_flags);
	/* SQLite closes a file whose pMethods is set, whatever xOpen said. */
	w->base.pMethods = w->real->pMethods ? &wal_methods : NULL;
	if(!w->base.pMethods) return rc;
	const char *db = sqlite3_filename_database(name);
	pthread_mutex_lock(&links_lock);
	for(db_link *l = links; l; l = l->next) {
		if(l->name == db) {
			l->wal = w;
			w->db = l;
			break;
		}
	}
	pthread_mutex_unlock(&links_lock);
	/* Without its database file's link (not found, or closed first) nothing would drop an
	 * uncommitted rest: its writes then go straight to the file (wal_write). */
	return rc;
}

static void init(void)
{
	unix_vfs = sqlite3_vfs_find(NULL);
	if(!unix_vfs) return;
	vfs = *unix_vfs;
	vfs.zName = "imprint";
	/* A WAL file, then its real file; or a database file, then its link. */
	size_t wal = REAL_AT + (size_t)unix_vfs->szOsFile, db = ALIGN16(unix_vfs->szOsFile) + sizeof(db_link);
	vfs.szOsFile = (int)(wal > db ? wal : db);
	vfs.pNext = NULL;
	vfs.xOpen = vfs_open;
	registered = sqlite3_vfs_register(&vfs, 0);
}

const char *store__vfs(void)
{
	pthread_once(&once, init);
	return registered == SQLITE_OK ? vfs.zName : NULL;
}

const volatile void *store__wal_index(sqlite3 *conn)
{
	sqlite3_file *f = NULL;
	if(sqlite3_file_control(conn, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK || !f ||
	   f->pMethods != &db_methods)
		return NULL;
	return LINK_OF(f)->shm;
}
