/* Generic entity rows: meta columns, a JSON document, and the kind's indexed columns.
 * Column fields live only in their columns; the document holds the rest. */
#include "store/sqlite/internal.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>

#include "core/mem.h"
#include "core/timeutil.h"

#define SQL_MAX 2048
#define META_COLS "t.key, t.id, t.account, t.version, t.created, t.created_by, t.modified, t.modified_by, t.doc, a.id"
#define META_N 10

typedef struct {
	char s[SQL_MAX];
	size_t n;
	int overflow;
} sqlbuf;

/* Without zeroing the whole buffer: this runs several times a request. */
static void sb_init(sqlbuf *b)
{
	b->n = 0;
	b->overflow = 0;
	b->s[0] = '\0';
}

static void sb_add(sqlbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sqlbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int w = vsnprintf(b->s + b->n, SQL_MAX - b->n, fmt, ap);
	va_end(ap);
	if(w < 0 || (size_t)w >= SQL_MAX - b->n) b->overflow = 1;
	else b->n += (size_t)w;
}

/* The text of a statement whose shape depends only on the kind, built once per kind and
 * kept for the life of the process: a request runs several, and building them with
 * vsnprintf (then hashing the text for the statement cache) showed in profiles. */
#define MEMO_KINDS 16
typedef struct {
	_Atomic(const imp_kind *) kind[MEMO_KINDS];
	char text[MEMO_KINDS][SQL_MAX];
	uint32_t hash[MEMO_KINDS];  /* store__sql_hash of text */
} sql_memo;

static pthread_mutex_t memo_lock = PTHREAD_MUTEX_INITIALIZER;

/* The statement build makes for k, from memo m; NULL if its text does not fit. */
static sqlite3_stmt *memo_stmt(imp_db *db, sql_memo *m, const imp_kind *k, void (*build)(sqlbuf *b, const imp_kind *k))
{
	for(int i = 0; i < MEMO_KINDS; i++) {
		const imp_kind *have = atomic_load_explicit(&m->kind[i], memory_order_acquire);
		if(have == k) return store__stmt_hashed(db, m->text[i], m->hash[i]);
		if(!have) break;
	}
	int found = -1;
	pthread_mutex_lock(&memo_lock);
	for(int i = 0; i < MEMO_KINDS && found < 0; i++) {
		const imp_kind *have = atomic_load_explicit(&m->kind[i], memory_order_relaxed);
		if(have == k) {
			found = i;
		} else if(!have) {
			sqlbuf b;
			sb_init(&b);
			build(&b, k);
			if(b.overflow) break;
			memcpy(m->text[i], b.s, b.n + 1);
			m->hash[i] = store__sql_hash(m->text[i]);
			atomic_store_explicit(&m->kind[i], k, memory_order_release);
			found = i;
		}
	}
	pthread_mutex_unlock(&memo_lock);
	return found < 0 ? NULL : store__stmt_hashed(db, m->text[found], m->hash[found]);
}

void imp_entity_clear(imp_entity *e)
{
	json_decref(e->doc);
	e->doc = NULL;
}

static void add_columns(sqlbuf *b, const imp_kind *k, const char *prefix)
{
	for(const imp_field *f = k->fields; f->name; f++) {
		if(f->column) sb_add(b, ", %s%s", prefix, f->column);
	}
}

/* Binds v without copying it: every caller steps the statement while v's document lives
 * (a copy a string column was a malloc and a memcpy inside the writer, for every row). */
static int bind_json(sqlite3_stmt *st, int i, const imp_field *f, const json_t *v)
{
	if(!v || json_is_null(v)) return sqlite3_bind_null(st, i);
	if(json_is_boolean(v)) return sqlite3_bind_int(st, i, json_is_true(v));
	if(json_is_integer(v)) return sqlite3_bind_int64(st, i, json_integer_value(v));
	if(json_is_string(v))
		return sqlite3_bind_text(st, i, json_string_value(v), (int)json_string_length(v), SQLITE_STATIC);
	if(f->type == IMP_T_BOOL) return sqlite3_bind_int(st, i, 0);
	return sqlite3_bind_null(st, i);
}

static json_t *column_json(sqlite3_stmt *st, int i, const imp_field *f)
{
	if(sqlite3_column_type(st, i) == SQLITE_NULL) return f->type == IMP_T_BOOL ? json_false() : json_null();
	if(f->type == IMP_T_BOOL) return json_boolean(sqlite3_column_int(st, i));
	/* counters kept in integer columns (a claim token's maxUses and uses) */
	if(f->type == IMP_T_ANY && sqlite3_column_type(st, i) == SQLITE_INTEGER)
		return json_integer(sqlite3_column_int64(st, i));
	return json_stringn((const char *)sqlite3_column_text(st, i), (size_t)sqlite3_column_bytes(st, i));
}

static void copy_id(imp_id *dst, sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);
	snprintf(dst->s, sizeof dst->s, "%s", s ? (const char *)s : "");
}

/* A device's lastConnected: the status map's when it has one (the store's is of the last
 * change of connected, see imp_status_open). */
static imp_err last_connected(imp_db *db, imp_entity *e)
{
	imp_status *map = store__status(db);
	uint64_t at = map ? imp_status_last(map, e->key, e->id.s) : 0;
	if(!at) return IMP_OK;
	char iso[IMP_ISO_LEN + 1];
	imp_iso8601(at, iso);
	return json_object_set_new(e->doc, "lastConnected", json_string(iso)) ? IMP_ERR_NOMEM : IMP_OK;
}

/* Reads a row selected as META_COLS followed by the kind's columns. */
static imp_err read_row(imp_db *db, sqlite3_stmt *st, const imp_kind *k, imp_entity *e)
{
	memset(e, 0, sizeof *e);
	e->key = sqlite3_column_int64(st, 0);
	copy_id(&e->id, st, 1);
	e->account = sqlite3_column_int64(st, 2);
	e->version = sqlite3_column_int64(st, 3);
	e->created = (uint64_t)sqlite3_column_int64(st, 4);
	copy_id(&e->created_by, st, 5);
	e->modified = (uint64_t)sqlite3_column_int64(st, 6);
	copy_id(&e->modified_by, st, 7);
	copy_id(&e->account_id, st, 9);
	const char *doc = (const char *)sqlite3_column_blob(st, 8);
	size_t doc_len = (size_t)sqlite3_column_bytes(st, 8);
	/* most devices store {} (every field in its column): no parse for that */
	if(doc_len == 2 && memcmp(doc, "{}", 2) == 0) e->doc = json_object();
	else e->doc = json_loadb(doc, doc_len, 0, NULL);
	if(!e->doc) return IMP_ERR_STORE;
	int c = META_N;
	for(const imp_field *f = k->fields; f->name; f++) {
		if(!f->column) continue;
		json_t *v = column_json(st, c++, f);
		if(!v || json_object_set_new(e->doc, f->name, v)) {
			imp_entity_clear(e);
			return IMP_ERR_NOMEM;
		}
	}
	if(k == &imp_kind_device && last_connected(db, e)) {
		imp_entity_clear(e);
		return IMP_ERR_NOMEM;
	}
	return IMP_OK;
}

/* The document to store: doc without its column fields. Caller frees. */
static char *doc_text(const imp_kind *k, json_t *doc)
{
	const char *name;
	json_t *v;
	int kept = 0;
	json_object_foreach(doc, name, v) {
		const imp_field *f = imp_kind_field(k, name);
		if(!f || !(f->column || (f->flags & IMP_F_WRITE_ONLY))) kept++;
	}
	if(!kept) return imp_strdup("{}"); /* most devices: every field has its column */
	json_t *copy = json_object();
	if(!copy) return NULL;
	json_object_foreach(doc, name, v) {
		const imp_field *f = imp_kind_field(k, name);
		if(f && (f->column || (f->flags & IMP_F_WRITE_ONLY))) continue;
		json_object_set(copy, name, v);
	}
	char *s = json_dumps(copy, JSON_COMPACT);
	json_decref(copy);
	return s;
}

/* "INSERT INTO table (the meta columns, the kind's columns)": INSERT_META columns first
 * (after the key, with_key). */
#define INSERT_META 9
static void insert_head(sqlbuf *b, const imp_kind *k, int with_key)
{
	sb_add(b, "INSERT INTO %s (%sid, account, version, created, created_by, modified, modified_by, doc, secret", k->table,
	       with_key ? "key, " : "");
	add_columns(b, k, "");
	sb_add(b, ")");
}

/* Stamps e as created now (its version set by the caller) and binds it as a row of
 * insert_head's columns from parameter at on: doc its document's text, secret or NULL.
 * Nonzero when a column's binding failed (too big): the column would otherwise be stored
 * as NULL without a word. */
static int bind_row(sqlite3_stmt *st, int at, const imp_kind *k, imp_entity *e, uint64_t now, const char *doc,
                    const char *secret)
{
	e->created = e->modified = now;
	e->modified_by = e->created_by;
	sqlite3_bind_text(st, at, e->id.s, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, at + 1, e->account);
	sqlite3_bind_int64(st, at + 2, e->version);
	sqlite3_bind_int64(st, at + 3, (int64_t)e->created);
	sqlite3_bind_text(st, at + 4, e->created_by.s, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, at + 5, (int64_t)e->modified);
	sqlite3_bind_text(st, at + 6, e->modified_by.s, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, at + 7, doc, -1, SQLITE_STATIC);
	if(secret) sqlite3_bind_text(st, at + 8, secret, -1, SQLITE_STATIC);
	else sqlite3_bind_null(st, at + 8);
	int i = at + INSERT_META, bad = 0;
	for(const imp_field *f = k->fields; f->name; f++) {
		if(f->column) bad |= bind_json(st, i++, f, json_object_get(e->doc, f->name)) != SQLITE_OK;
	}
	return bad;
}

static void build_insert(sqlbuf *b, const imp_kind *k)
{
	insert_head(b, k, 0);
	sb_add(b, " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?");
	for(const imp_field *f = k->fields; f->name; f++) {
		if(f->column) sb_add(b, ", ?");
	}
	sb_add(b, ")");
}

imp_err imp_db_insert(imp_db *db, const imp_kind *k, imp_entity *e, const char *secret)
{
	return imp_db_insert_at(db, k, e, secret, 1);
}

imp_err imp_db_insert_at(imp_db *db, const imp_kind *k, imp_entity *e, const char *secret, int64_t version)
{
	static sql_memo memo;
	sqlite3_stmt *st = memo_stmt(db, &memo, k, build_insert);
	if(!st) return IMP_ERR_STORE;

	char *doc = doc_text(k, e->doc);
	if(!doc) return IMP_ERR_NOMEM;
	e->version = version;
	if(bind_row(st, 1, k, e, imp_now_ms(), doc, secret)) {
		sqlite3_reset(st);
		imp_free(doc);
		return IMP_ERR_STORE;
	}
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	imp_free(doc);
	if(rc != SQLITE_DONE) return store__rc(rc);
	e->key = sqlite3_last_insert_rowid(db->conn);
	return IMP_OK;
}

/* Multi-row inserts (STORE_ROWS_MAX rows a statement). SQLite keeps its cursors between
 * the rows of one INSERT, and an index whose new entries go at its end (ids, keys, times, a
 * batch's rising serial numbers) takes each without a search from its root: a device row
 * cost 13 us inserted alone and 6-8 us in statements of 100 rows (a program inserting
 * 200,000 rows into a fresh store, checkpoints off); 250 rows did no better. */

/* The rows get their keys from imp_db_insert_many, the next ones after the table's largest
 * (as SQLite gives them, and the writer's transaction holds the table): reading them back
 * with RETURNING cost a quarter more instructions a row. */
static imp_err last_key(imp_db *db, const imp_kind *k, int64_t *key)
{
	sqlbuf b;
	sb_init(&b);
	sb_add(&b, "SELECT max(key) FROM %s", k->table);
	sqlite3_stmt *st = b.overflow ? NULL : store__stmt(db, b.s);
	if(!st) return IMP_ERR_STORE;
	int rc = sqlite3_step(st);
	*key = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? IMP_OK : store__rc(rc);
}

struct entity_rows {
	const imp_kind *k;
	imp_entity *const *es;
	char *const *docs;
	int64_t last;
	uint64_t now;
};

/* Row i: its key (the i-th after last), then as imp_db_insert_at binds it. */
static int bind_entity(sqlite3_stmt *st, int at, size_t i, void *arg)
{
	const struct entity_rows *r = arg;
	imp_entity *e = r->es[i];
	if(e->version <= 0) e->version = 1;
	sqlite3_bind_int64(st, at, r->last + 1 + (int64_t)i);
	return bind_row(st, at + 1, r->k, e, r->now, r->docs[i], NULL);
}

imp_err imp_db_insert_many(imp_db *db, const imp_kind *k, imp_entity *const *es, size_t n)
{
	int64_t last = 0;
	imp_err rc = n ? last_key(db, k, &last) : IMP_OK;
	if(rc || n == 0) return rc;
	if(last > INT64_MAX - (int64_t)n) {
		/* keys at the end of int64: SQLite picks them, one row at a time */
		for(size_t i = 0; !rc && i < n; i++) rc = imp_db_insert_at(db, k, es[i], NULL, es[i]->version > 0 ? es[i]->version : 1);
		return rc;
	}
	char **docs = imp_calloc(n, sizeof *docs);
	if(!docs) return IMP_ERR_NOMEM;
	for(size_t i = 0; i < n && !rc; i++) {
		if(!(docs[i] = doc_text(k, es[i]->doc))) rc = IMP_ERR_NOMEM;
	}
	sqlbuf head;
	sb_init(&head);
	insert_head(&head, k, 1);
	if(!rc && head.overflow) rc = IMP_ERR_STORE;
	int ncols = 1 + INSERT_META;
	for(const imp_field *f = k->fields; f->name; f++) ncols += f->column != NULL;
	struct entity_rows rows = {k, es, docs, last, imp_now_ms()};
	if(!rc) rc = store__insert_rows(db, head.s, ncols, n, bind_entity, &rows);
	for(size_t i = 0; !rc && i < n; i++) es[i]->key = last + 1 + (int64_t)i;
	for(size_t i = 0; i < n; i++) imp_free(docs[i]);
	imp_free(docs);
	return rc;
}

/* SELECT of META_COLS, the kind's columns, then extra (", t.secret" or ""). */
static void select_prefix(sqlbuf *b, const imp_kind *k, const char *extra)
{
	sb_add(b, "SELECT " META_COLS);
	add_columns(b, k, "t.");
	sb_add(b, "%s FROM %s t JOIN accounts a ON a.key = t.account", extra, k->table);
}

static void build_get(sqlbuf *b, const imp_kind *k)
{
	select_prefix(b, k, "");
	sb_add(b, " WHERE t.id = ? AND t.account = ?");
}

imp_err imp_db_get(imp_db *db, const imp_kind *k, int64_t account, const char *id, imp_entity *out)
{
	static sql_memo memo;
	sqlite3_stmt *st = memo_stmt(db, &memo, k, build_get);
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, account);
	int rc = sqlite3_step(st);
	imp_err err = rc == SQLITE_ROW ? read_row(db, st, k, out) : rc == SQLITE_DONE ? IMP_ERR_NOT_FOUND : store__rc(rc);
	sqlite3_reset(st);
	return err;
}

static void build_exists(sqlbuf *b, const imp_kind *k)
{
	sb_add(b, "SELECT 1 FROM %s WHERE id = ? AND account = ?", k->table);
}

imp_err imp_db_exists(imp_db *db, const imp_kind *k, int64_t account, const char *id)
{
	static sql_memo memo;
	sqlite3_stmt *st = memo_stmt(db, &memo, k, build_exists);
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, account);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? IMP_OK : rc == SQLITE_DONE ? IMP_ERR_NOT_FOUND : store__rc(rc);
}

imp_err imp_db_update(imp_db *db, const imp_kind *k, imp_entity *e, int64_t expect_version)
{
	sqlbuf b;
	sb_init(&b);
	sb_add(&b, "UPDATE %s SET version = version + 1, modified = ?, modified_by = ?, doc = ?", k->table);
	for(const imp_field *f = k->fields; f->name; f++) {
		if(f->column) sb_add(&b, ", %s = ?", f->column);
	}
	sb_add(&b, " WHERE id = ? AND account = ? AND (? < 0 OR version = ?) RETURNING version, modified");
	sqlite3_stmt *st = store__stmt(db, b.s);
	if(!st) return IMP_ERR_STORE;
	char *doc = doc_text(k, e->doc);
	if(!doc) return IMP_ERR_NOMEM;
	uint64_t now = imp_now_ms();
	sqlite3_bind_int64(st, 1, (int64_t)now);
	sqlite3_bind_text(st, 2, e->modified_by.s, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, doc, -1, SQLITE_STATIC);
	int i = 4, bad = 0;
	for(const imp_field *f = k->fields; f->name; f++) {
		if(f->column) bad |= bind_json(st, i++, f, json_object_get(e->doc, f->name)) != SQLITE_OK;
	}
	if(bad) {
		sqlite3_reset(st);
		imp_free(doc);
		return IMP_ERR_STORE;
	}
	sqlite3_bind_text(st, i++, e->id.s, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, i++, e->account);
	sqlite3_bind_int64(st, i++, expect_version);
	sqlite3_bind_int64(st, i++, expect_version);
	int rc = sqlite3_step(st);
	imp_err err = IMP_OK;
	if(rc == SQLITE_ROW) {
		e->version = sqlite3_column_int64(st, 0);
		e->modified = (uint64_t)sqlite3_column_int64(st, 1);
	} else if(rc == SQLITE_DONE) {
		err = expect_version < 0 ? IMP_ERR_NOT_FOUND : IMP_ERR_STALE;
	} else {
		err = store__rc(rc);
	}
	sqlite3_reset(st);
	imp_free(doc);
	if(err == IMP_ERR_STALE) {
		/* Tell a stale version from a row deleted meanwhile. */
		imp_entity cur;
		if(imp_db_get(db, k, e->account, e->id.s, &cur) == IMP_ERR_NOT_FOUND) return IMP_ERR_NOT_FOUND;
		imp_entity_clear(&cur);
	}
	return err;
}

imp_err imp_db_delete(imp_db *db, const imp_kind *k, int64_t account, const char *id, int64_t expect_version)
{
	sqlbuf b;
	sb_init(&b);
	sb_add(&b, "DELETE FROM %s WHERE id = ? AND account = ? AND (? < 0 OR version = ?)", k->table);
	sqlite3_stmt *st = store__stmt(db, b.s);
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, account);
	sqlite3_bind_int64(st, 3, expect_version);
	sqlite3_bind_int64(st, 4, expect_version);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if(rc != SQLITE_DONE) return store__rc(rc);
	if(sqlite3_changes(db->conn) == 1) return IMP_OK;
	if(expect_version < 0) return IMP_ERR_NOT_FOUND;
	imp_entity cur;
	imp_err err = imp_db_get(db, k, account, id, &cur);
	if(err) return err;
	imp_entity_clear(&cur);
	return IMP_ERR_STALE;
}

static const char *column_of(const imp_kind *k, const char *field)
{
	const imp_field *f = imp_kind_field(k, field);
	return f ? f->column : NULL;
}

imp_err imp_db_count_where(imp_db *db, const imp_kind *k, int64_t account, const char *field,
                           const char *value, int64_t *n)
{
	const char *col = column_of(k, field);
	if(!col) return IMP_ERR_STORE;
	sqlbuf b;
	sb_init(&b);
	sb_add(&b, "SELECT count(*) FROM %s WHERE account = ? AND %s = ?", k->table, col);
	sqlite3_stmt *st = store__stmt(db, b.s);
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, account);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	*n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? IMP_OK : store__rc(rc);
}

imp_err imp_db_delete_where(imp_db *db, const imp_kind *k, int64_t account, const char *field, const char *value)
{
	const char *col = column_of(k, field);
	if(!col) return IMP_ERR_STORE;
	sqlbuf b;
	sb_init(&b);
	sb_add(&b, "DELETE FROM %s WHERE account = ? AND %s = ?", k->table, col);
	sqlite3_stmt *st = store__stmt(db, b.s);
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, account);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return store__rc(rc);
}

static const char *sort_column(const imp_kind *k, const char *sort)
{
	if(!sort || strcmp(sort, "created") == 0) return "key";
	if(strcmp(sort, "lastModified") == 0) return "modified";
	const imp_field *f = imp_kind_field(k, sort);
	return f && (f->flags & IMP_F_SORT) ? f->column : NULL;
}

/* Adds the WHERE clause for q and binds nothing; bind_where binds in the same order. */
/* The filter whose index a list searches by (see imp_kind.index_order), or NULL. */
static const char *lead_filter(const imp_kind *k, const imp_query *q)
{
	for(int i = 0; k->index_order && k->index_order[i]; i++) {
		const char *name = k->index_order[i];
		if(strcmp(name, "q") == 0 && q->q) return name;
		for(size_t j = 0; j < q->nfilters; j++) {
			if(strcmp(q->filters[j].field, name) == 0) return name;
		}
	}
	return NULL;
}

/* The boolean filter of q that asks for false, when there is exactly one (else -1). */
static int bool_false_filter(const imp_kind *k, const imp_query *q)
{
	int found = -1;
	for(size_t i = 0; i < q->nfilters; i++) {
		const imp_field *f = imp_kind_field(k, q->filters[i].field);
		if(!f || f->type != IMP_T_BOOL || (f->flags & IMP_F_NULLABLE) || strcmp(q->filters[i].value, "false") != 0)
			continue;
		if(found >= 0) return -1;
		found = (int)i;
	}
	return found;
}

/* flip names a boolean filter (bool_false_filter) to write otherwise: OMIT_FILTER leaves it
 * out, TRUE_FILTER asks for true instead. */
enum { AS_GIVEN, OMIT_FILTER, TRUE_FILTER };

static imp_err add_where_as(sqlbuf *b, const imp_kind *k, const imp_query *q, int with_cursor, int flip, int how)
{
	const char *lead = lead_filter(k, q);
	sb_add(b, " WHERE t.account = ?");
	if(q->within_org) sb_add(b, " AND t.org_id IN (" STORE_SUBTREE ")");
	for(size_t i = 0; i < q->nfilters; i++) {
		const imp_field *f = imp_kind_field(k, q->filters[i].field);
		if(!f || !f->column || !(f->flags & IMP_F_FILTER)) return IMP_ERR_BAD_REQUEST;
		if((int)i == flip && how == OMIT_FILTER) continue;
		if((int)i == flip && how == TRUE_FILTER) {
			sb_add(b, " AND t.%s = 1", f->column);
			continue;
		}
		/* A unary + keeps SQLite from searching by any index but the lead's. */
		const char *plus = lead && strcmp(lead, f->name) != 0 ? "+" : "";
		/* Booleans as literals: their indexes are partial (WHERE connected = 1), and SQLite
		 * uses a partial index only for a query whose text implies its WHERE. */
		if(strcmp(q->filters[i].value, "null") == 0 && (f->flags & IMP_F_NULLABLE))
			sb_add(b, " AND %st.%s IS NULL", plus, f->column);
		else if(f->type == IMP_T_BOOL && strcmp(q->filters[i].value, "true") == 0)
			sb_add(b, " AND %st.%s = 1", plus, f->column);
		else if(f->type == IMP_T_BOOL && strcmp(q->filters[i].value, "false") == 0)
			sb_add(b, " AND %st.%s = 0", plus, f->column);
		else
			sb_add(b, " AND %st.%s = ?", plus, f->column);
	}
	if(q->q && k->q_columns[0]) {
		const char *plus = lead && strcmp(lead, "q") != 0 ? "+" : "";
		sb_add(b, " AND (");
		for(int i = 0; i < 2 && k->q_columns[i]; i++) {
			sb_add(b, "%s(%st.%s >= ? AND %st.%s < ?)", i ? " OR " : "", plus, k->q_columns[i], plus, k->q_columns[i]);
		}
		sb_add(b, ")");
	}
	if(with_cursor && q->after >= 0) sb_add(b, " AND t.key %s ?", q->desc ? "<" : ">");
	return b->overflow ? IMP_ERR_STORE : IMP_OK;
}

static imp_err add_where(sqlbuf *b, const imp_kind *k, const imp_query *q, int with_cursor)
{
	return add_where_as(b, k, q, with_cursor, -1, AS_GIVEN);
}

static imp_err bind_where_from(sqlite3_stmt *st, int i, const imp_kind *k, int64_t account, const imp_query *q,
                               int with_cursor, int *next, char *hi)
{
	sqlite3_bind_int64(st, i++, account);
	if(q->within_org) {
		sqlite3_bind_text(st, i++, q->within_org, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, i++, account);
	}
	for(size_t j = 0; j < q->nfilters; j++) {
		const imp_field *f = imp_kind_field(k, q->filters[j].field);
		const char *v = q->filters[j].value;
		if(strcmp(v, "null") == 0 && (f->flags & IMP_F_NULLABLE)) continue;
		if(f->type == IMP_T_BOOL) {
			if(strcmp(v, "true") != 0 && strcmp(v, "false") != 0) return IMP_ERR_BAD_REQUEST;
			/* written as a literal by add_where */
		} else {
			sqlite3_bind_text(st, i++, v, -1, SQLITE_STATIC);
		}
	}
	if(q->q && k->q_columns[0]) {
		for(int c = 0; c < 2 && k->q_columns[c]; c++) {
			sqlite3_bind_text(st, i++, q->q, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, i++, hi, -1, SQLITE_STATIC);
		}
	}
	if(with_cursor && q->after >= 0) sqlite3_bind_int64(st, i++, q->after);
	*next = i;
	return IMP_OK;
}

static imp_err bind_where(sqlite3_stmt *st, const imp_kind *k, int64_t account, const imp_query *q,
                          int with_cursor, int *next, char *hi)
{
	return bind_where_from(st, 1, k, account, q, with_cursor, next, hi);
}

struct render_ctx {
	const imp_kind *k;
	imp_render_fn render;
	void *arg;
	json_t *results;
};

static imp_err render_one(imp_db *db, const imp_entity *e, void *arg)
{
	struct render_ctx *c = arg;
	json_t *o = c->render(db, c->k, e, c->arg);
	return !o || json_array_append_new(c->results, o) ? IMP_ERR_NOMEM : IMP_OK;
}

imp_err imp_db_list(imp_db *db, const imp_kind *k, int64_t account, const imp_query *q,
                    imp_render_fn render, void *arg, json_t *results, int64_t *count, int64_t *last)
{
	struct render_ctx c = {k, render, arg, results};
	return imp_db_list_each(db, k, account, q, results != NULL, render_one, &c, count, last);
}

imp_err imp_db_list_each(imp_db *db, const imp_kind *k, int64_t account, const imp_query *q, int rows,
                         imp_entity_fn fn, void *arg, int64_t *count, int64_t *last)
{
	const char *sort = sort_column(k, q->sort);
	if(!sort) return IMP_ERR_BAD_REQUEST;
	/* Upper bound of the prefix range: the prefix followed by a byte no UTF-8 string has. */
	char hi[IMP_SERIAL_MAX * 4 + 8] = "";
	if(q->q) {
		if(strlen(q->q) > sizeof hi - 2) return IMP_ERR_BAD_REQUEST;
		snprintf(hi, sizeof hi, "%s\xf5", q->q);
	}
	int next;
	imp_err err;
	*last = -1;
	if(q->want_count) {
		sqlbuf b;
		sb_init(&b);
		/* A boolean asked false (connected=false: most devices) has no index of its own: its
		 * indexes are partial, WHERE col = 1. The count is the count without it less the
		 * count of true, both from indexes (the columns are NOT NULL 0 or 1): 0.08 s instead
		 * of 0.4 s for a million devices. */
		int flip = bool_false_filter(k, q);
		if(flip >= 0) {
			sb_add(&b, "SELECT (SELECT count(*) FROM %s t", k->table);
			if((err = add_where_as(&b, k, q, 0, flip, OMIT_FILTER))) return err;
			sb_add(&b, ") - (SELECT count(*) FROM %s t", k->table);
			if((err = add_where_as(&b, k, q, 0, flip, TRUE_FILTER))) return err;
			sb_add(&b, ")");
		} else {
			sb_add(&b, "SELECT count(*) FROM %s t", k->table);
			if((err = add_where(&b, k, q, 0))) return err;
		}
		if(b.overflow) return IMP_ERR_STORE;
		sqlite3_stmt *st = store__stmt(db, b.s);
		if(!st) return IMP_ERR_STORE;
		err = bind_where(st, k, account, q, 0, &next, hi);
		if(!err && flip >= 0) err = bind_where_from(st, next, k, account, q, 0, &next, hi);
		if(err) {
			sqlite3_reset(st);
			return err;
		}
		int rc = sqlite3_step(st);
		*count = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
		sqlite3_reset(st);
		if(rc != SQLITE_ROW) return store__rc(rc);
	}
	if(!rows) return IMP_OK;

	sqlbuf b;
	sb_init(&b);
	select_prefix(&b, k, "");
	if((err = add_where(&b, k, q, 1))) return err;
	const char *dir = q->desc ? "DESC" : "ASC";
	if(strcmp(sort, "key") == 0) sb_add(&b, " ORDER BY t.key %s LIMIT ? OFFSET ?", dir);
	else sb_add(&b, " ORDER BY t.%s %s, t.key %s LIMIT ? OFFSET ?", sort, dir, dir);
	if(b.overflow) return IMP_ERR_STORE;
	sqlite3_stmt *st = store__stmt(db, b.s);
	if(!st) return IMP_ERR_STORE;
	if((err = bind_where(st, k, account, q, 1, &next, hi))) {
		sqlite3_reset(st);
		return err;
	}
	sqlite3_bind_int64(st, next++, q->page_size);
	sqlite3_bind_int64(st, next, q->after >= 0 ? 0 : (q->page - 1) * q->page_size);
	int rc;
	while((rc = sqlite3_step(st)) == SQLITE_ROW) {
		imp_entity e;
		if((err = read_row(db, st, k, &e))) break;
		err = fn(db, &e, arg);
		*last = e.key;
		imp_entity_clear(&e);
		if(err) break;
	}
	sqlite3_reset(st);
	if(err) return err;
	return rc == SQLITE_DONE ? IMP_OK : store__rc(rc);
}

imp_err imp_db_get_secret(imp_db *db, const imp_kind *k, int64_t key, char **out)
{
	sqlbuf b;
	sb_init(&b);
	sb_add(&b, "SELECT secret FROM %s WHERE key = ?", k->table);
	sqlite3_stmt *st = store__stmt(db, b.s);
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, key);
	int rc = sqlite3_step(st);
	imp_err err = IMP_OK;
	if(rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
		*out = imp_strdup((const char *)sqlite3_column_text(st, 0));
		if(!*out) err = IMP_ERR_NOMEM;
	} else {
		err = rc == SQLITE_ROW || rc == SQLITE_DONE ? IMP_ERR_NOT_FOUND : store__rc(rc);
	}
	sqlite3_reset(st);
	return err;
}

imp_err imp_db_set_secret(imp_db *db, const imp_kind *k, int64_t key, const char *secret)
{
	sqlbuf b;
	sb_init(&b);
	sb_add(&b, "UPDATE %s SET secret = ? WHERE key = ?", k->table);
	sqlite3_stmt *st = store__stmt(db, b.s);
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, secret, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, key);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return store__rc(rc);
}

imp_err imp_db_find_by_secret(imp_db *db, const imp_kind *k, const char *secret, imp_entity *out)
{
	sqlbuf b;
	sb_init(&b);
	select_prefix(&b, k, "");
	sb_add(&b, " WHERE t.secret = ?");
	sqlite3_stmt *st = store__stmt(db, b.s);
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, secret, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	imp_err err = rc == SQLITE_ROW ? read_row(db, st, k, out) : rc == SQLITE_DONE ? IMP_ERR_NOT_FOUND : store__rc(rc);
	sqlite3_reset(st);
	return err;
}

static imp_err users_by_email(imp_db *db, const imp_kind *k, const char *email, int64_t account, imp_user_fn fn,
                              void *arg, int *stopped)
{
	sqlbuf b;
	sb_init(&b);
	select_prefix(&b, k, ", t.secret");
	sb_add(&b, " WHERE t.email = ? AND (? = 0 OR t.account = ?)");
	sqlite3_stmt *st = store__stmt(db, b.s);
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_text(st, 1, email, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, account);
	sqlite3_bind_int64(st, 3, account);
	int rc, ncol = sqlite3_column_count(st);
	imp_err err = IMP_OK;
	*stopped = 0;
	while((rc = sqlite3_step(st)) == SQLITE_ROW) {
		imp_entity e;
		if((err = read_row(db, st, k, &e))) break;
		const char *hash = (const char *)sqlite3_column_text(st, ncol - 1);
		int stop = fn(&e, hash ? hash : "", arg);
		imp_entity_clear(&e);
		if(stop) {
			*stopped = stop;
			break;
		}
	}
	sqlite3_reset(st);
	if(err) return err;
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? IMP_OK : store__rc(rc);
}

imp_err imp_db_users_by_email(imp_db *db, const char *email, int64_t account, imp_user_fn fn, void *arg,
                              int *stopped)
{
	return users_by_email(db, &imp_kind_account_user, email, account, fn, arg, stopped);
}

imp_err imp_db_end_users_by_email(imp_db *db, const char *email, int64_t account, imp_user_fn fn, void *arg,
                                  int *stopped)
{
	return users_by_email(db, &imp_kind_end_user, email, account, fn, arg, stopped);
}

static void build_get_by_key(sqlbuf *b, const imp_kind *k)
{
	select_prefix(b, k, "");
	sb_add(b, " WHERE t.key = ? AND t.account = ?");
}

imp_err imp_db_get_by_key(imp_db *db, const imp_kind *k, int64_t account, int64_t key, imp_entity *out)
{
	static sql_memo memo;
	sqlite3_stmt *st = memo_stmt(db, &memo, k, build_get_by_key);
	if(!st) return IMP_ERR_STORE;
	sqlite3_bind_int64(st, 1, key);
	sqlite3_bind_int64(st, 2, account);
	int rc = sqlite3_step(st);
	imp_err err = rc == SQLITE_ROW ? read_row(db, st, k, out) : rc == SQLITE_DONE ? IMP_ERR_NOT_FOUND : store__rc(rc);
	sqlite3_reset(st);
	return err;
}
