/* Unit tests for src/store: the SQLite backend behind store.h, and the migrations.
 * Each test opens a fresh store in its own temporary directory, with two accounts, so
 * scoping by account can be checked everywhere. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/ids.h"
#include "core/kind.h"
#include "core/limits.h"
#include "core/mem.h"
#include "core/timeutil.h"
#include "store/migrations.h"
#include "store/store.h"
#include "unit_util.h"

typedef struct {
	char dir[64];
	char path[128];
	imp_store *store;
	imp_db *db;
	int64_t acct_a, acct_b;
	imp_id acct_a_id, acct_b_id;
	imp_id actor;
} ctx;

static int setup(void **state)
{
	ctx *c = calloc(1, sizeof *c);
	assert_non_null(c);
	snprintf(c->dir, sizeof c->dir, "/tmp/imp-unit-store-XXXXXX");
	assert_non_null(mkdtemp(c->dir));
	snprintf(c->path, sizeof c->path, "%s/store.db", c->dir);
	assert_int_equal(imp_store_open(c->path, 1, &c->store), IMP_OK);
	c->db = imp_store_db(c->store);
	assert_non_null(c->db);
	assert_int_equal(imp_db_account_create(c->db, "Account A", &c->acct_a_id, &c->acct_a), IMP_OK);
	assert_int_equal(imp_db_account_create(c->db, "Account B", &c->acct_b_id, &c->acct_b), IMP_OK);
	assert_int_equal(imp_id_new(&c->actor), IMP_OK);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	ctx *c = *state;
	imp_store_close(&c->store);
	assert_null(c->store);
	unit_remove_tree(c->dir);
	free(c);
	return 0;
}

/* ---- helpers ---- */

static void new_entity(ctx *c, int64_t account, imp_entity *e, json_t *doc)
{
	memset(e, 0, sizeof *e);
	assert_non_null(doc);
	assert_int_equal(imp_id_new(&e->id), IMP_OK);
	e->account = account;
	e->created_by = c->actor;
	e->doc = doc;
}

static void insert_template(ctx *c, int64_t account, const char *name, imp_entity *e)
{
	new_entity(c, account, e,
	           json_pack("{s:s, s:s, s:s}", "name", name, "authenticationMethod", "password", "description",
	                     "a template"));
	assert_int_equal(imp_db_insert(c->db, &imp_kind_device_template, e, NULL), IMP_OK);
}

/* The devices of the list tests, in creation order. */
struct dev {
	const char *serial, *name;
	int tmpl;           /* index into the two templates */
	int org;            /* 1: in ORG, 0: in none */
	const char *state;
	int connected;
	const char *fw;
	int disabled;
};

#define ORG "0190a000-0000-7000-8000-000000000001"

static const struct dev DEVS[] = {
	{"SN-000", "kitchen-0", 0, 1, "defined", 0, NULL, 0},
	{"SN-001", "garage-1", 1, 0, "defined", 1, "1.0", 0},
	{"SN-002", "kitchen-2", 0, 0, "defined", 0, NULL, 0},
	{"SN-003", "garage-3", 1, 1, "defined", 0, "1.0", 0},
	{"SN-004", "kitchen-4", 0, 0, "activated", 0, NULL, 0},
	{"SN-005", "garage-5", 1, 0, "activated", 1, "1.0", 0},
	{"SN-006", "kitchen-6", 0, 1, "activated", 0, NULL, 0},
	{"SN-007", "garage-7", 1, 0, "activated", 0, "1.0", 1},
	{"SN-008", "kitchen-8", 0, 0, "associated", 0, NULL, 0},
	{"SN-009", "garage-9", 1, 1, "associated", 1, "1.0", 0},
	{NULL, NULL, 0, 0, "defined", 0, "2.0", 0},
};
#define NDEVS ((int)(sizeof DEVS / sizeof DEVS[0]))

static json_t *device_doc(const imp_id *tmpl, const struct dev *d)
{
	json_t *doc = json_pack("{s:s, s:s?, s:s?, s:s?, s:s, s:b, s:s?, s:b, s:s}", "deviceTemplateId", tmpl->s,
	                        "organizationId", d->org ? ORG : NULL, "serialNumber", d->serial, "name", d->name,
	                        "provisioningState", d->state, "connected", d->connected, "firmwareVersion", d->fw,
	                        "disabled", d->disabled, "location", "lab");
	assert_non_null(doc);
	return doc;
}

static void insert_device(ctx *c, int64_t account, const imp_id *tmpl, const struct dev *d, imp_entity *e)
{
	new_entity(c, account, e, device_doc(tmpl, d));
	assert_int_equal(imp_db_insert(c->db, &imp_kind_device, e, NULL), IMP_OK);
}

typedef struct {
	int calls;
	const imp_kind *kind;
} render_ctx;

/* Renders {"id", "key", "doc"} and counts its calls. */
static json_t *render(imp_db *db, const imp_kind *k, const imp_entity *e, void *arg)
{
	render_ctx *rc = arg;
	assert_non_null(db);
	if(rc) {
		rc->calls++;
		if(rc->kind) assert_ptr_equal(k, rc->kind);
	}
	return json_pack("{s:s, s:I, s:O}", "id", e->id.s, "key", (json_int_t)e->key, "doc", e->doc);
}

static const char *doc_str(const json_t *o, const char *field)
{
	json_t *doc = json_object_get(o, "doc");
	return json_string_value(json_object_get(doc ? doc : o, field));
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* ---- open and migrate ---- */

static int user_version(const char *path)
{
	sqlite3 *conn;
	sqlite3_stmt *st;
	int v = -1;
	assert_int_equal(sqlite3_open_v2(path, &conn, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(conn, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
	if(sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(conn);
	return v;
}

static int schema_objects(const char *path)
{
	sqlite3 *conn;
	sqlite3_stmt *st;
	int n = -1;
	assert_int_equal(sqlite3_open_v2(path, &conn, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(conn, "SELECT count(*) FROM sqlite_master", -1, &st, NULL), SQLITE_OK);
	if(sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(conn);
	return n;
}

static void test_open_and_migrations(void **state)
{
	ctx *c = *state;
	int count;
	const char *const *m = imp_migrations(&count);
	assert_non_null(m);
	assert_true(count >= 1);
	for(int i = 0; i < count; i++) assert_non_null(m[i]);
	assert_int_equal(user_version(c->path), count);
	int objects = schema_objects(c->path);
	assert_true(objects > 10);

	/* A template written before reopening is there after. */
	imp_entity t;
	insert_template(c, c->acct_a, "kept", &t);
	imp_store_close(&c->store);

	/* Migrations applied again change nothing, with and without create. */
	for(int round = 0; round < 2; round++) {
		assert_int_equal(imp_store_open(c->path, round, &c->store), IMP_OK);
		assert_int_equal(user_version(c->path), count);
		assert_int_equal(schema_objects(c->path), objects);
		imp_store_close(&c->store);
	}
	assert_int_equal(imp_store_open(c->path, 0, &c->store), IMP_OK);
	c->db = imp_store_db(c->store);
	assert_non_null(c->db);
	assert_ptr_equal(imp_store_db(c->store), c->db); /* one connection per thread */
	imp_entity got;
	assert_int_equal(imp_db_get(c->db, &imp_kind_device_template, c->acct_a, t.id.s, &got), IMP_OK);
	assert_string_equal(doc_str(got.doc, "name"), "kept");
	imp_entity_clear(&got);
	imp_entity_clear(&t);
	assert_int_equal(imp_db_ping(c->db), IMP_OK);
	assert_int_equal(imp_db_integrity(c->db), IMP_OK);

	/* A store that does not exist is not created unless asked. */
	char missing[256];
	imp_store *s = NULL;
	snprintf(missing, sizeof missing, "%s/other.db", c->dir);
	assert_int_equal(imp_store_open(missing, 0, &s), IMP_ERR_NOT_FOUND);
	assert_null(s);
	assert_int_equal(access(missing, F_OK), -1);
	assert_int_equal(imp_store_open(missing, 1, &s), IMP_OK);
	assert_int_equal(user_version(missing), count);
	imp_store_close(&s);
	assert_null(s);
	imp_store_close(&s); /* closing twice is harmless */

	/* A directory that does not exist cannot hold a store. */
	snprintf(missing, sizeof missing, "%s/no/such/dir.db", c->dir);
	assert_int_not_equal(imp_store_open(missing, 1, &s), IMP_OK);
	assert_null(s);
}

/* Migration 11 on a store of version 10: a batch item gets its device's id, an item
 * marked for a deleted device (device_key 0) gets none, and the device_key index goes. */
static void test_migration_batch_item_ids(void **state)
{
	ctx *c = *state;
	char path[256];
	snprintf(path, sizeof path, "%s/v10.db", c->dir);
	int count;
	const char *const *m = imp_migrations(&count);
	assert_true(count >= 11);
	sqlite3 *conn;
	assert_int_equal(sqlite3_open(path, &conn), SQLITE_OK);
	for(int i = 0; i < 10; i++) assert_int_equal(sqlite3_exec(conn, m[i], NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(conn,
		"PRAGMA user_version=10;"
		"INSERT INTO accounts (key, id, created) VALUES (1, '01900000-0000-7000-8000-000000000001', 0);"
		"INSERT INTO devices (key, id, account, version, created, modified, doc, template_id, serial, state)"
		"  VALUES (7, '01900000-0000-7000-8000-000000000007', 1, 1, 0, 0, '{}', 't', 'S-7', 'defined');"
		"INSERT INTO batch_items (account, batch, serial, line, device_key) VALUES (1, 'k:b', 'S-7', 1, 7);"
		"INSERT INTO batch_items (account, batch, serial, line, device_key) VALUES (1, 'k:b', 'S-8', 2, 0);",
		NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(conn);

	imp_store *s = NULL;
	assert_int_equal(imp_store_open(path, 0, &s), IMP_OK);
	assert_int_equal(user_version(path), count);
	imp_db *db = imp_store_db(s);
	imp_batch_found seen;
	assert_int_equal(imp_db_batch_item_get(db, 1, "k:b", "S-7", &seen), IMP_OK);
	assert_int_equal(seen.device_key, 7);
	assert_string_equal(seen.device_id.s, "01900000-0000-7000-8000-000000000007");
	assert_int_equal(imp_db_batch_item_get(db, 1, "k:b", "S-8", &seen), IMP_OK);
	assert_int_equal(seen.device_key, 0);
	assert_string_equal(seen.device_id.s, "");
	assert_int_equal(imp_db_batch_item_get(db, 1, "k:b", "S-9", &seen), IMP_ERR_NOT_FOUND);
	imp_store_close(&s);

	assert_int_equal(sqlite3_open_v2(path, &conn, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(conn, "SELECT count(*) FROM sqlite_master WHERE name = 'batch_items_device'",
	                                    -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 0);
	sqlite3_finalize(st);
	sqlite3_close(conn);
}

static void test_accounts(void **state)
{
	ctx *c = *state;
	assert_true(imp_id_valid(c->acct_a_id.s));
	assert_true(imp_id_valid(c->acct_b_id.s));
	assert_string_not_equal(c->acct_a_id.s, c->acct_b_id.s);
	assert_true(c->acct_a != c->acct_b);
	int64_t key = 0;
	assert_int_equal(imp_db_account_key(c->db, c->acct_a_id.s, &key), IMP_OK);
	assert_int_equal(key, c->acct_a);
	assert_int_equal(imp_db_account_key(c->db, c->acct_b_id.s, &key), IMP_OK);
	assert_int_equal(key, c->acct_b);
	imp_id other;
	assert_int_equal(imp_id_new(&other), IMP_OK);
	assert_int_equal(imp_db_account_key(c->db, other.s, &key), IMP_ERR_NOT_FOUND);
	assert_int_equal(imp_db_account_key(c->db, "", &key), IMP_ERR_NOT_FOUND);
}

/* ---- create, read, update, delete ---- */

static void test_template_crud(void **state)
{
	ctx *c = *state;
	imp_entity t, got;
	uint64_t before = imp_now_ms();
	insert_template(c, c->acct_a, "thermostat", &t);
	assert_true(t.key > 0);
	assert_int_equal(t.version, 1);
	assert_true(t.created >= before && t.created <= imp_now_ms());
	assert_int_equal(t.created, t.modified);
	assert_string_equal(t.modified_by.s, c->actor.s);

	assert_int_equal(imp_db_get(c->db, &imp_kind_device_template, c->acct_a, t.id.s, &got), IMP_OK);
	assert_int_equal(got.key, t.key);
	assert_string_equal(got.id.s, t.id.s);
	assert_int_equal(got.account, c->acct_a);
	assert_string_equal(got.account_id.s, c->acct_a_id.s);
	assert_int_equal(got.version, 1);
	assert_int_equal(got.created, t.created);
	assert_int_equal(got.modified, t.modified);
	assert_string_equal(got.created_by.s, c->actor.s);
	assert_string_equal(got.modified_by.s, c->actor.s);
	assert_string_equal(doc_str(got.doc, "name"), "thermostat");                 /* column */
	assert_string_equal(doc_str(got.doc, "authenticationMethod"), "password");   /* column */
	assert_string_equal(doc_str(got.doc, "description"), "a template");         /* document */
	assert_int_equal(json_object_size(got.doc), 3);
	imp_entity_clear(&got);
	assert_null(got.doc);

	/* update: version bumps, modified moves, fields change, a removed field is gone */
	sleep_ms(3);
	imp_id editor;
	assert_int_equal(imp_id_new(&editor), IMP_OK);
	t.modified_by = editor;
	json_object_set_new(t.doc, "name", json_string("thermostat v2"));
	json_object_del(t.doc, "description");
	assert_int_equal(imp_db_update(c->db, &imp_kind_device_template, &t, -1), IMP_OK);
	assert_int_equal(t.version, 2);
	assert_true(t.modified > t.created);
	assert_int_equal(imp_db_get(c->db, &imp_kind_device_template, c->acct_a, t.id.s, &got), IMP_OK);
	assert_int_equal(got.version, 2);
	assert_int_equal(got.modified, t.modified);
	assert_int_equal(got.created, t.created);
	assert_string_equal(got.created_by.s, c->actor.s);
	assert_string_equal(got.modified_by.s, editor.s);
	assert_string_equal(doc_str(got.doc, "name"), "thermostat v2");
	assert_null(json_object_get(got.doc, "description"));
	imp_entity_clear(&got);

	/* expect_version: the right one passes, a stale one is refused and changes nothing */
	assert_int_equal(imp_db_update(c->db, &imp_kind_device_template, &t, 2), IMP_OK);
	assert_int_equal(t.version, 3);
	json_object_set_new(t.doc, "name", json_string("lost update"));
	assert_int_equal(imp_db_update(c->db, &imp_kind_device_template, &t, 2), IMP_ERR_STALE);
	assert_int_equal(imp_db_update(c->db, &imp_kind_device_template, &t, 4), IMP_ERR_STALE);
	assert_int_equal(imp_db_get(c->db, &imp_kind_device_template, c->acct_a, t.id.s, &got), IMP_OK);
	assert_int_equal(got.version, 3);
	assert_string_equal(doc_str(got.doc, "name"), "thermostat v2");
	imp_entity_clear(&got);

	/* delete: a stale version is refused, the right one deletes */
	assert_int_equal(imp_db_delete(c->db, &imp_kind_device_template, c->acct_a, t.id.s, 1), IMP_ERR_STALE);
	assert_int_equal(imp_db_get(c->db, &imp_kind_device_template, c->acct_a, t.id.s, &got), IMP_OK);
	imp_entity_clear(&got);
	assert_int_equal(imp_db_delete(c->db, &imp_kind_device_template, c->acct_a, t.id.s, 3), IMP_OK);
	assert_int_equal(imp_db_get(c->db, &imp_kind_device_template, c->acct_a, t.id.s, &got), IMP_ERR_NOT_FOUND);
	assert_int_equal(imp_db_delete(c->db, &imp_kind_device_template, c->acct_a, t.id.s, -1), IMP_ERR_NOT_FOUND);
	assert_int_equal(imp_db_delete(c->db, &imp_kind_device_template, c->acct_a, t.id.s, 3), IMP_ERR_NOT_FOUND);
	/* updating a deleted entity is not found, with or without a version */
	assert_int_equal(imp_db_update(c->db, &imp_kind_device_template, &t, -1), IMP_ERR_NOT_FOUND);
	assert_int_equal(imp_db_update(c->db, &imp_kind_device_template, &t, 3), IMP_ERR_NOT_FOUND);
	imp_entity_clear(&t);

	/* a kind is its own table: a template id is no device */
	insert_template(c, c->acct_a, "again", &t);
	assert_int_equal(imp_db_get(c->db, &imp_kind_device, c->acct_a, t.id.s, &got), IMP_ERR_NOT_FOUND);
	assert_int_equal(imp_db_get(c->db, &imp_kind_device_template, c->acct_a, "not-an-id", &got), IMP_ERR_NOT_FOUND);
	imp_entity_clear(&t);
}

static void test_device_crud(void **state)
{
	ctx *c = *state;
	imp_entity t, d, got;
	insert_template(c, c->acct_a, "sensor", &t);
	insert_device(c, c->acct_a, &t.id, &DEVS[0], &d);
	assert_int_equal(d.version, 1);

	assert_int_equal(imp_db_get(c->db, &imp_kind_device, c->acct_a, d.id.s, &got), IMP_OK);
	assert_string_equal(doc_str(got.doc, "deviceTemplateId"), t.id.s);
	assert_string_equal(doc_str(got.doc, "organizationId"), ORG);
	assert_string_equal(doc_str(got.doc, "serialNumber"), "SN-000");
	assert_string_equal(doc_str(got.doc, "name"), "kitchen-0");
	assert_string_equal(doc_str(got.doc, "provisioningState"), "defined");
	assert_string_equal(doc_str(got.doc, "location"), "lab");
	assert_true(json_is_false(json_object_get(got.doc, "connected")));   /* booleans come back as booleans */
	assert_true(json_is_false(json_object_get(got.doc, "disabled")));
	assert_true(json_is_null(json_object_get(got.doc, "firmwareVersion")));
	assert_true(json_is_null(json_object_get(got.doc, "lastConnected")));
	imp_entity_clear(&got);

	/* server-side changes: connect, activate, report firmware; clear the organization */
	json_object_set_new(d.doc, "connected", json_true());
	json_object_set_new(d.doc, "provisioningState", json_string("activated"));
	json_object_set_new(d.doc, "firmwareVersion", json_string("1.2.3"));
	json_object_set_new(d.doc, "lastConnected", json_string("2026-01-02T03:04:05.006Z"));
	json_object_set_new(d.doc, "organizationId", json_null());
	json_object_set_new(d.doc, "purchaseDate", json_string("2025-12-24"));
	assert_int_equal(imp_db_update(c->db, &imp_kind_device, &d, 1), IMP_OK);
	assert_int_equal(d.version, 2);
	assert_int_equal(imp_db_get(c->db, &imp_kind_device, c->acct_a, d.id.s, &got), IMP_OK);
	assert_int_equal(got.version, 2);
	assert_true(json_is_true(json_object_get(got.doc, "connected")));
	assert_string_equal(doc_str(got.doc, "provisioningState"), "activated");
	assert_string_equal(doc_str(got.doc, "firmwareVersion"), "1.2.3");
	assert_string_equal(doc_str(got.doc, "lastConnected"), "2026-01-02T03:04:05.006Z");
	assert_string_equal(doc_str(got.doc, "purchaseDate"), "2025-12-24");
	assert_true(json_is_null(json_object_get(got.doc, "organizationId")));
	assert_string_equal(doc_str(got.doc, "serialNumber"), "SN-000");
	imp_entity_clear(&got);

	/* a stale writer loses */
	json_object_set_new(d.doc, "disabled", json_true());
	assert_int_equal(imp_db_update(c->db, &imp_kind_device, &d, 1), IMP_ERR_STALE);
	assert_int_equal(imp_db_update(c->db, &imp_kind_device, &d, 2), IMP_OK);
	assert_int_equal(imp_db_get(c->db, &imp_kind_device, c->acct_a, d.id.s, &got), IMP_OK);
	assert_true(json_is_true(json_object_get(got.doc, "disabled")));
	assert_int_equal(got.version, 3);
	imp_entity_clear(&got);

	assert_int_equal(imp_db_delete(c->db, &imp_kind_device, c->acct_a, d.id.s, 2), IMP_ERR_STALE);
	assert_int_equal(imp_db_delete(c->db, &imp_kind_device, c->acct_a, d.id.s, -1), IMP_OK);
	assert_int_equal(imp_db_get(c->db, &imp_kind_device, c->acct_a, d.id.s, &got), IMP_ERR_NOT_FOUND);
	/* the template is untouched */
	assert_int_equal(imp_db_get(c->db, &imp_kind_device_template, c->acct_a, t.id.s, &got), IMP_OK);
	imp_entity_clear(&got);
	imp_entity_clear(&d);
	imp_entity_clear(&t);
}

/* imp_db_insert_many: statements of 100 rows and single rows for the rest, each row as
 * imp_db_insert would store it, at its own version, with its key read back; a statement
 * that fails leaves none of its rows. */
static void test_insert_many(void **state)
{
	ctx *c = *state;
	enum { N = 250 };
	imp_entity t, *es[N], got;
	static imp_entity rows[N];
	insert_template(c, c->acct_a, "sensor", &t);
	for(int i = 0; i < N; i++) {
		char serial[16];
		snprintf(serial, sizeof serial, "M-%03d", i);
		struct dev d = {serial, NULL, 0, i % 2, "defined", 0, NULL, 0};
		new_entity(c, c->acct_a, &rows[i], device_doc(&t.id, &d));
		rows[i].version = i % 3 == 0 ? 2 : 0;
		es[i] = &rows[i];
	}
	assert_int_equal(imp_db_insert_many(c->db, &imp_kind_device, es, N), IMP_OK);
	for(int i = 0; i < N; i++) {
		assert_true(rows[i].key > 0);
		if(i) assert_true(rows[i].key != rows[i - 1].key);
		assert_int_equal(rows[i].version, i % 3 == 0 ? 2 : 1);
		assert_int_equal(imp_db_get(c->db, &imp_kind_device, c->acct_a, rows[i].id.s, &got), IMP_OK);
		assert_int_equal(got.key, rows[i].key);
		assert_int_equal(got.version, rows[i].version);
		assert_string_equal(doc_str(got.doc, "serialNumber"), doc_str(rows[i].doc, "serialNumber"));
		assert_string_equal(doc_str(got.doc, "organizationId") ? doc_str(got.doc, "organizationId") : "-", i % 2 ? ORG : "-");
		imp_entity_clear(&got);
	}

	/* Their batch items and first credentials, the same way; a serial number or an entity
	 * given twice is a conflict. */
	static const char *serials[N], *hashes[N];
	static imp_batch_item items[N];
	static imp_credential creds[N];
	imp_credential *cs[N];
	for(int i = 0; i < N; i++) {
		serials[i] = doc_str(rows[i].doc, "serialNumber");
		items[i] = (imp_batch_item){serials[i], rows[i].id.s, i + 1, rows[i].key};
		hashes[i] = i % 2 ? "hash-odd" : "hash-even";
		memset(&creds[i], 0, sizeof creds[i]);
		assert_int_equal(imp_id_new(&creds[i].id), IMP_OK);
		creds[i].account = c->acct_a;
		snprintf(creds[i].entity_type, sizeof creds[i].entity_type, "device");
		creds[i].entity_id = rows[i].id;
		snprintf(creds[i].method, sizeof creds[i].method, "password");
		creds[i].created_by = c->actor;
		cs[i] = &creds[i];
	}
	assert_int_equal(imp_db_batch_items_put(c->db, c->acct_a, "k:many", items, 3, N), IMP_OK);
	assert_int_equal(imp_db_credentials_first(c->db, cs, hashes, N), IMP_OK);
	for(int i = 0; i < N; i += 13) {
		imp_batch_found seen;
		assert_int_equal(imp_db_batch_item_get(c->db, c->acct_a, "k:many", serials[i], &seen), IMP_OK);
		assert_int_equal(seen.line, i + 1);
		assert_int_equal(seen.device_key, rows[i].key);
		assert_string_equal(seen.device_id.s, rows[i].id.s);
		assert_int_equal(seen.generation, 3);
		imp_credential got_c;
		assert_int_equal(imp_db_credential_of(c->db, c->acct_a, rows[i].id.s, &got_c), IMP_OK);
		assert_string_equal(got_c.id.s, creds[i].id.s);
		assert_string_equal(got_c.method, "password");
		imp_credential_clear(&got_c);
	}
	assert_int_equal(imp_db_batch_items_put(c->db, c->acct_a, "k:many", items + N - 1, 3, 1),
	                 IMP_ERR_CONFLICT);
	assert_int_equal(imp_db_credentials_first(c->db, cs + 5, hashes, 1), IMP_ERR_CONFLICT);
	for(int i = 0; i < N; i++) imp_entity_clear(&rows[i]);

	/* A repeated id in the first statement: that statement fails whole. */
	for(int i = 0; i < 120; i++) {
		struct dev d = {"X", NULL, 0, 0, "defined", 0, NULL, 0};
		new_entity(c, c->acct_a, &rows[i], device_doc(&t.id, &d));
	}
	rows[60].id = rows[7].id;
	assert_int_equal(imp_db_insert_many(c->db, &imp_kind_device, es, 120), IMP_ERR_CONFLICT);
	for(int i = 0; i < 120; i += 7) {
		assert_int_equal(imp_db_get(c->db, &imp_kind_device, c->acct_a, rows[i].id.s, &got), IMP_ERR_NOT_FOUND);
	}
	for(int i = 0; i < 120; i++) imp_entity_clear(&rows[i]);

	/* Keys come after the table's largest at the time: after deleting the newest rows
	 * (their keys are taken again, as SQLite would) and after a single insert, each row
	 * reads back at its own key with its own serial number. */
	imp_entity newest[3];
	for(int i = 0; i < 3; i++) {
		char serial[16];
		snprintf(serial, sizeof serial, "D-%d", i);
		struct dev d = {serial, NULL, 0, 0, "defined", 0, NULL, 0};
		insert_device(c, c->acct_a, &t.id, &d, &newest[i]);
	}
	for(int i = 1; i < 3; i++) {
		assert_int_equal(imp_db_delete(c->db, &imp_kind_device, c->acct_a, newest[i].id.s, -1), IMP_OK);
	}
	for(int i = 0; i < 110; i++) {
		char serial[16];
		snprintf(serial, sizeof serial, "K-%03d", i);
		struct dev d = {serial, NULL, 0, 0, "defined", 0, NULL, 0};
		new_entity(c, c->acct_a, &rows[i], device_doc(&t.id, &d));
	}
	assert_int_equal(imp_db_insert_many(c->db, &imp_kind_device, es, 110), IMP_OK);
	assert_int_equal(rows[0].key, newest[0].key + 1);
	for(int i = 0; i < 110; i++) {
		assert_int_equal(imp_db_get(c->db, &imp_kind_device, c->acct_a, rows[i].id.s, &got), IMP_OK);
		assert_int_equal(got.key, rows[i].key);
		assert_string_equal(doc_str(got.doc, "serialNumber"), doc_str(rows[i].doc, "serialNumber"));
		imp_entity_clear(&got);
		imp_entity_clear(&rows[i]);
	}
	for(int i = 0; i < 3; i++) imp_entity_clear(&newest[i]);
	imp_entity_clear(&t);
}

/* Another account's key finds nothing and changes nothing. */
static void test_other_account(void **state)
{
	ctx *c = *state;
	imp_entity t, d, got;
	insert_template(c, c->acct_a, "mine", &t);
	insert_device(c, c->acct_a, &t.id, &DEVS[1], &d);

	const imp_kind *kinds[] = {&imp_kind_device_template, &imp_kind_device};
	imp_entity *ents[] = {&t, &d};
	for(int i = 0; i < 2; i++) {
		const imp_kind *k = kinds[i];
		imp_entity *e = ents[i];
		assert_int_equal(imp_db_get(c->db, k, c->acct_b, e->id.s, &got), IMP_ERR_NOT_FOUND);
		assert_int_equal(imp_db_get(c->db, k, 0, e->id.s, &got), IMP_ERR_NOT_FOUND);
		imp_entity theirs = *e;
		theirs.account = c->acct_b;
		json_object_set_new(e->doc, "name", json_string("hijacked"));
		assert_int_equal(imp_db_update(c->db, k, &theirs, -1), IMP_ERR_NOT_FOUND);
		assert_int_equal(imp_db_update(c->db, k, &theirs, 1), IMP_ERR_NOT_FOUND);
		assert_int_equal(imp_db_delete(c->db, k, c->acct_b, e->id.s, -1), IMP_ERR_NOT_FOUND);
		assert_int_equal(imp_db_delete(c->db, k, c->acct_b, e->id.s, 1), IMP_ERR_NOT_FOUND);
		/* still there, unchanged, version 1 */
		assert_int_equal(imp_db_get(c->db, k, c->acct_a, e->id.s, &got), IMP_OK);
		assert_int_equal(got.version, 1);
		assert_string_not_equal(doc_str(got.doc, "name"), "hijacked");
		imp_entity_clear(&got);
	}
	/* Account B's count and list see nothing of A's. */
	int64_t n = -1;
	assert_int_equal(imp_db_count_where(c->db, &imp_kind_device, c->acct_b, "deviceTemplateId", t.id.s, &n), IMP_OK);
	assert_int_equal(n, 0);
	assert_int_equal(imp_db_delete_where(c->db, &imp_kind_device, c->acct_b, "deviceTemplateId", t.id.s), IMP_OK);
	assert_int_equal(imp_db_count_where(c->db, &imp_kind_device, c->acct_a, "deviceTemplateId", t.id.s, &n), IMP_OK);
	assert_int_equal(n, 1);
	imp_query q = {.page = 1, .page_size = 50, .after = -1, .want_count = 1};
	json_t *res = json_array();
	int64_t count = -1, last = 0;
	assert_int_equal(imp_db_list(c->db, &imp_kind_device, c->acct_b, &q, render, NULL, res, &count, &last), IMP_OK);
	assert_int_equal(count, 0);
	assert_int_equal(json_array_size(res), 0);
	assert_int_equal(last, -1);
	json_decref(res);
	imp_entity_clear(&d);
	imp_entity_clear(&t);
}

/* ---- lists ---- */

typedef struct {
	imp_entity tmpl[2];
	imp_entity dev[NDEVS];
	imp_entity other; /* account B's device, same serial as DEVS[0] */
} fleet;

static void make_fleet(ctx *c, fleet *f)
{
	insert_template(c, c->acct_a, "template-0", &f->tmpl[0]);
	insert_template(c, c->acct_a, "template-1", &f->tmpl[1]);
	imp_db *own = c->db;
	assert_int_equal(imp_db_begin(&c->db), IMP_OK); /* c->db is the writer until commit */
	for(int i = 0; i < NDEVS; i++) insert_device(c, c->acct_a, &f->tmpl[DEVS[i].tmpl].id, &DEVS[i], &f->dev[i]);
	assert_int_equal(imp_db_commit(&c->db), IMP_OK);
	assert_ptr_equal(c->db, own);
	imp_entity bt;
	insert_template(c, c->acct_b, "theirs", &bt);
	insert_device(c, c->acct_b, &bt.id, &DEVS[0], &f->other);
	imp_entity_clear(&bt);
	for(int i = 1; i < NDEVS; i++) assert_true(f->dev[i].key > f->dev[i - 1].key);
}

static void free_fleet(fleet *f)
{
	for(int i = 0; i < 2; i++) imp_entity_clear(&f->tmpl[i]);
	for(int i = 0; i < NDEVS; i++) imp_entity_clear(&f->dev[i]);
	imp_entity_clear(&f->other);
}

/* Lists with q; returns the indexes into f->dev of the results, in order, in idx[] and
 * their number; -1 - rc when the list fails. */
static int list_devices(ctx *c, fleet *f, const imp_query *q, int idx[NDEVS + 1], int64_t *count, int64_t *last)
{
	json_t *res = json_array();
	render_ctx rc = {0, &imp_kind_device};
	int64_t cnt = -7, lst = -7;
	imp_err err = imp_db_list(c->db, &imp_kind_device, c->acct_a, q, render, &rc, res, &cnt, &lst);
	if(err) {
		json_decref(res);
		return -1 - (int)err;
	}
	int n = (int)json_array_size(res);
	assert_int_equal(rc.calls, n);
	assert_true(n <= NDEVS);
	for(int i = 0; i < n; i++) {
		const char *id = json_string_value(json_object_get(json_array_get(res, (size_t)i), "id"));
		idx[i] = -1;
		for(int j = 0; j < NDEVS; j++) {
			if(strcmp(id, f->dev[j].id.s) == 0) idx[i] = j;
		}
		if(idx[i] < 0) fail_msg("list returned an id not in account A: %s", id);
	}
	if(n) assert_int_equal(lst, f->dev[idx[n - 1]].key);
	else assert_int_equal(lst, -1);
	if(q->want_count) assert_true(cnt >= n);
	if(count) *count = cnt;
	if(last) *last = lst;
	json_decref(res);
	return n;
}

static void expect_list(ctx *c, fleet *f, const imp_query *q, const int *want, int nwant, int line)
{
	int idx[NDEVS + 1];
	int n = list_devices(c, f, q, idx, NULL, NULL);
	if(n != nwant) fail_msg("line %d: %d results, want %d", line, n, nwant);
	for(int i = 0; i < n; i++) {
		if(idx[i] != want[i]) fail_msg("line %d: result %d is device %d, want %d", line, i, idx[i], want[i]);
	}
}
#define EXPECT_LIST(q, ...) \
	do { \
		const int want_[] = {__VA_ARGS__}; \
		expect_list(c, &f, q, want_, (int)(sizeof want_ / sizeof want_[0]), __LINE__); \
	} while(0)

static int64_t list_count(ctx *c, fleet *f, imp_query q)
{
	int idx[NDEVS + 1];
	int64_t count = -1;
	q.want_count = 1;
	int n = list_devices(c, f, &q, idx, &count, NULL);
	assert_true(n >= 0);
	return count;
}

static void test_list_pages_and_cursor(void **state)
{
	ctx *c = *state;
	fleet f;
	make_fleet(c, &f);
	imp_query q = {.page = 1, .page_size = 50, .after = -1};
	EXPECT_LIST(&q, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
	q.sort = "created";
	EXPECT_LIST(&q, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
	q.desc = 1;
	EXPECT_LIST(&q, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);

	/* pages of 3 */
	q.desc = 0;
	q.page_size = 3;
	EXPECT_LIST(&q, 0, 1, 2);
	q.page = 2;
	EXPECT_LIST(&q, 3, 4, 5);
	q.page = 4;
	EXPECT_LIST(&q, 9, 10);
	q.page = 5;
	{
		int idx[NDEVS + 1];
		int64_t last = 0;
		assert_int_equal(list_devices(c, &f, &q, idx, NULL, &last), 0);
		assert_int_equal(last, -1);
	}
	q.desc = 1;
	q.page = 2;
	EXPECT_LIST(&q, 7, 6, 5);

	/* count is of all matches, whatever the page */
	assert_int_equal(list_count(c, &f, q), NDEVS);

	/* cursor: walk the whole list, ascending and descending, three at a time */
	for(int desc = 0; desc <= 1; desc++) {
		imp_query w = {.page = 1, .page_size = 3, .after = -1, .desc = desc};
		int seen = 0, idx[NDEVS + 1];
		for(int pages = 0; pages < 10; pages++) {
			int64_t last;
			int n = list_devices(c, &f, &w, idx, NULL, &last);
			assert_true(n >= 0);
			for(int i = 0; i < n; i++) {
				int want = desc ? NDEVS - 1 - seen : seen;
				assert_int_equal(idx[i], want);
				seen++;
			}
			if(n < 3) break;
			w.after = last;
			w.page = 99; /* ignored with a cursor */
		}
		assert_int_equal(seen, NDEVS);
	}
	/* a cursor after the last key is an empty page */
	q = (imp_query){.page = 1, .page_size = 3, .after = f.dev[NDEVS - 1].key};
	{
		int idx[NDEVS + 1];
		assert_int_equal(list_devices(c, &f, &q, idx, NULL, NULL), 0);
	}

	/* count alone: no results array, no rows rendered */
	q = (imp_query){.page = 1, .page_size = 3, .after = -1, .want_count = 1};
	int64_t count = -1, last = 0;
	render_ctx rc = {0, NULL};
	assert_int_equal(imp_db_list(c->db, &imp_kind_device, c->acct_a, &q, render, &rc, NULL, &count, &last), IMP_OK);
	assert_int_equal(count, NDEVS);
	assert_int_equal(rc.calls, 0);
	assert_int_equal(last, -1);
	free_fleet(&f);
}

static void test_list_filters(void **state)
{
	ctx *c = *state;
	fleet f;
	make_fleet(c, &f);
	imp_query q = {.page = 1, .page_size = 50, .after = -1};
	imp_filter fl[3];
	q.filters = fl;

	fl[0] = (imp_filter){"deviceTemplateId", f.tmpl[1].id.s};
	q.nfilters = 1;
	EXPECT_LIST(&q, 1, 3, 5, 7, 9);
	fl[0] = (imp_filter){"organizationId", ORG};
	EXPECT_LIST(&q, 0, 3, 6, 9);
	fl[0] = (imp_filter){"organizationId", "null"}; /* nullable: "null" is no organization */
	EXPECT_LIST(&q, 1, 2, 4, 5, 7, 8, 10);
	fl[0] = (imp_filter){"serialNumber", "SN-004"};
	EXPECT_LIST(&q, 4);
	fl[0] = (imp_filter){"serialNumber", "null"};
	EXPECT_LIST(&q, 10);
	fl[0] = (imp_filter){"serialNumber", "SN-00"}; /* filters are exact, not prefixes */
	assert_int_equal(list_count(c, &f, q), 0);
	fl[0] = (imp_filter){"provisioningState", "activated"};
	EXPECT_LIST(&q, 4, 5, 6, 7);
	fl[0] = (imp_filter){"provisioningState", "associated"};
	EXPECT_LIST(&q, 8, 9);
	fl[0] = (imp_filter){"connected", "true"};
	EXPECT_LIST(&q, 1, 5, 9);
	fl[0] = (imp_filter){"disabled", "true"};
	EXPECT_LIST(&q, 7);
	fl[0] = (imp_filter){"disabled", "false"};
	assert_int_equal(list_count(c, &f, q), NDEVS - 1);
	fl[0] = (imp_filter){"firmwareVersion", "null"};
	EXPECT_LIST(&q, 0, 2, 4, 6, 8);
	fl[0] = (imp_filter){"firmwareVersion", "2.0"};
	EXPECT_LIST(&q, 10);

	/* filters combine with AND */
	fl[0] = (imp_filter){"deviceTemplateId", f.tmpl[1].id.s};
	fl[1] = (imp_filter){"connected", "true"};
	fl[2] = (imp_filter){"organizationId", ORG};
	q.nfilters = 2;
	EXPECT_LIST(&q, 1, 5, 9);
	q.nfilters = 3;
	EXPECT_LIST(&q, 9);
	q.desc = 1;
	q.nfilters = 1;
	EXPECT_LIST(&q, 9, 7, 5, 3, 1);
	q.desc = 0;
	assert_int_equal(list_count(c, &f, q), 5);

	/* refused: a field that is not a filter, an unknown one, a boolean that is not one */
	int idx[NDEVS + 1];
	q.nfilters = 1;
	fl[0] = (imp_filter){"name", "kitchen-0"};
	assert_int_equal(list_devices(c, &f, &q, idx, NULL, NULL), -1 - IMP_ERR_BAD_REQUEST);
	fl[0] = (imp_filter){"location", "lab"};
	assert_int_equal(list_devices(c, &f, &q, idx, NULL, NULL), -1 - IMP_ERR_BAD_REQUEST);
	fl[0] = (imp_filter){"bogus", "x"};
	assert_int_equal(list_devices(c, &f, &q, idx, NULL, NULL), -1 - IMP_ERR_BAD_REQUEST);
	fl[0] = (imp_filter){"connected", "maybe"};
	assert_int_equal(list_devices(c, &f, &q, idx, NULL, NULL), -1 - IMP_ERR_BAD_REQUEST);
	q.want_count = 1;
	assert_int_equal(list_devices(c, &f, &q, idx, NULL, NULL), -1 - IMP_ERR_BAD_REQUEST);
	q.want_count = 0;
	/* provisioningState is not nullable: "null" is a value like any other, and none has it */
	fl[0] = (imp_filter){"provisioningState", "null"};
	assert_int_equal(list_count(c, &f, q), 0);
	free_fleet(&f);
}

static void test_list_q_prefix(void **state)
{
	ctx *c = *state;
	fleet f;
	make_fleet(c, &f);
	imp_query q = {.page = 1, .page_size = 50, .after = -1};
	q.q = "SN-00";
	EXPECT_LIST(&q, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9);
	q.q = "SN-003";
	EXPECT_LIST(&q, 3);
	q.q = "SN-0035"; /* longer than any serial */
	assert_int_equal(list_count(c, &f, q), 0);
	q.q = "kitchen";  /* names match too */
	EXPECT_LIST(&q, 0, 2, 4, 6, 8);
	q.q = "garage-7";
	EXPECT_LIST(&q, 7);
	q.q = "N-00"; /* a prefix, not a substring */
	assert_int_equal(list_count(c, &f, q), 0);
	q.q = "%"; /* no LIKE wildcards */
	assert_int_equal(list_count(c, &f, q), 0);
	q.q = "_";
	assert_int_equal(list_count(c, &f, q), 0);
	q.q = "SN-00";
	q.desc = 1;
	q.page_size = 2;
	q.page = 2;
	EXPECT_LIST(&q, 7, 6);
	assert_int_equal(list_count(c, &f, q), 10);
	/* q with a filter */
	imp_filter fl = {"connected", "true"};
	q = (imp_query){.page = 1, .page_size = 50, .after = -1, .q = "garage", .filters = &fl, .nfilters = 1};
	EXPECT_LIST(&q, 1, 5, 9);
	/* account B's SN-000 is not A's */
	q = (imp_query){.page = 1, .page_size = 50, .after = -1, .q = "SN-000"};
	EXPECT_LIST(&q, 0);
	/* a prefix longer than any serial or name could be is refused, not overflowed */
	char lng[1024];
	memset(lng, 'S', sizeof lng - 1);
	lng[sizeof lng - 1] = '\0';
	q.q = lng;
	int idx[NDEVS + 1];
	assert_int_equal(list_devices(c, &f, &q, idx, NULL, NULL), -1 - IMP_ERR_BAD_REQUEST);
	/* non-ASCII prefixes are matched byte for byte */
	imp_entity d;
	struct dev u = {"\xc3\xa9t\xc3\xa9-1", "caf\xc3\xa9", 0, 0, "defined", 0, NULL, 0};
	insert_device(c, c->acct_a, &f.tmpl[0].id, &u, &d);
	const char *prefixes[] = {"\xc3\xa9t", "caf\xc3\xa9", "caf\xc3", "\xc3", NULL};
	for(int i = 0; prefixes[i]; i++) {
		int64_t count = -1, last;
		q = (imp_query){.page = 1, .page_size = 50, .after = -1, .q = prefixes[i], .want_count = 1};
		assert_int_equal(imp_db_list(c->db, &imp_kind_device, c->acct_a, &q, render, NULL, NULL, &count, &last), IMP_OK);
		assert_int_equal(count, 1);
	}
	imp_entity_clear(&d);
	free_fleet(&f);
}

static void test_list_sort(void **state)
{
	ctx *c = *state;
	fleet f;
	make_fleet(c, &f);
	imp_query q = {.page = 1, .page_size = 50, .after = -1, .sort = "serialNumber"};
	EXPECT_LIST(&q, 10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9); /* null first */
	q.desc = 1;
	EXPECT_LIST(&q, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 10);
	q.page_size = 4;
	q.page = 2;
	EXPECT_LIST(&q, 5, 4, 3, 2);
	q = (imp_query){.page = 1, .page_size = 50, .after = -1, .sort = "name"};
	EXPECT_LIST(&q, 10, 1, 3, 5, 7, 9, 0, 2, 4, 6, 8);

	/* lastModified: the device changed last comes first, descending */
	sleep_ms(3);
	json_object_set_new(f.dev[3].doc, "connected", json_true());
	assert_int_equal(imp_db_update(c->db, &imp_kind_device, &f.dev[3], -1), IMP_OK);
	sleep_ms(3);
	assert_int_equal(imp_db_update(c->db, &imp_kind_device, &f.dev[8], -1), IMP_OK);
	q = (imp_query){.page = 1, .page_size = 2, .after = -1, .sort = "lastModified", .desc = 1};
	EXPECT_LIST(&q, 8, 3);
	q.desc = 0;
	q.page_size = 3;
	q.page = 4; /* the last two of eleven */
	EXPECT_LIST(&q, 3, 8);

	/* refused: a field that does not sort, an unknown one */
	int idx[NDEVS + 1];
	q.sort = "location";
	assert_int_equal(list_devices(c, &f, &q, idx, NULL, NULL), -1 - IMP_ERR_BAD_REQUEST);
	q.sort = "deviceTemplateId";
	assert_int_equal(list_devices(c, &f, &q, idx, NULL, NULL), -1 - IMP_ERR_BAD_REQUEST);
	q.sort = "bogus";
	assert_int_equal(list_devices(c, &f, &q, idx, NULL, NULL), -1 - IMP_ERR_BAD_REQUEST);
	q.sort = "";
	assert_int_equal(list_devices(c, &f, &q, idx, NULL, NULL), -1 - IMP_ERR_BAD_REQUEST);
	free_fleet(&f);
}

/* Every combination of the device filters, both orders, with and without a cursor:
 * more query shapes than the statement cache holds, each checked against the data. */
static void test_list_many_shapes(void **state)
{
	ctx *c = *state;
	fleet f;
	make_fleet(c, &f);
	const char *fields[] = {"deviceTemplateId", "organizationId", "serialNumber", "provisioningState",
	                        "connected", "firmwareVersion", "disabled"};
	const char *values[] = {f.tmpl[0].id.s, "null", "SN-004", "activated", "false", "null", "false"};
	int shapes = 0;
	for(unsigned mask = 0; mask < 128; mask++) {
		imp_filter fl[7];
		size_t nf = 0;
		for(int b = 0; b < 7; b++) {
			if(mask & (1u << b)) fl[nf++] = (imp_filter){fields[b], values[b]};
		}
		int want[NDEVS], nwant = 0;
		for(int i = 0; i < NDEVS; i++) {
			const struct dev *d = &DEVS[i];
			int ok = 1;
			if(mask & 1) ok &= d->tmpl == 0;
			if(mask & 2) ok &= !d->org;
			if(mask & 4) ok &= d->serial && strcmp(d->serial, "SN-004") == 0;
			if(mask & 8) ok &= strcmp(d->state, "activated") == 0;
			if(mask & 16) ok &= !d->connected;
			if(mask & 32) ok &= !d->fw;
			if(mask & 64) ok &= !d->disabled;
			if(ok) want[nwant++] = i;
		}
		for(int desc = 0; desc <= 1; desc++) {
			for(int cur = 0; cur <= 1; cur++) {
				imp_query q = {.filters = fl, .nfilters = nf, .page = 1, .page_size = 50, .desc = desc,
				               .after = cur ? (desc ? INT64_MAX : 0) : -1, .want_count = 1};
				int idx[NDEVS + 1];
				int64_t count = -1;
				int n = list_devices(c, &f, &q, idx, &count, NULL);
				shapes++;
				if(n != nwant || count != nwant)
					fail_msg("mask %u desc %d cursor %d: %d results, count %lld, want %d", mask, desc, cur, n,
					         (long long)count, nwant);
				for(int i = 0; i < n; i++) assert_int_equal(idx[i], want[desc ? nwant - 1 - i : i]);
			}
		}
	}
	assert_true(shapes > 256);
	assert_int_equal(imp_db_integrity(c->db), IMP_OK);
	free_fleet(&f);
}

static void test_count_and_delete_where(void **state)
{
	ctx *c = *state;
	fleet f;
	make_fleet(c, &f);
	int64_t n = -1;
	assert_int_equal(imp_db_count_where(c->db, &imp_kind_device, c->acct_a, "deviceTemplateId", f.tmpl[0].id.s, &n), IMP_OK);
	assert_int_equal(n, 6);
	assert_int_equal(imp_db_count_where(c->db, &imp_kind_device, c->acct_a, "deviceTemplateId", f.tmpl[1].id.s, &n), IMP_OK);
	assert_int_equal(n, 5);
	assert_int_equal(imp_db_count_where(c->db, &imp_kind_device, c->acct_a, "organizationId", ORG, &n), IMP_OK);
	assert_int_equal(n, 4);
	assert_int_equal(imp_db_count_where(c->db, &imp_kind_device, c->acct_a, "deviceTemplateId", "nope", &n), IMP_OK);
	assert_int_equal(n, 0);
	/* only fields kept in columns can be counted on */
	assert_int_not_equal(imp_db_count_where(c->db, &imp_kind_device, c->acct_a, "location", "lab", &n), IMP_OK);
	assert_int_not_equal(imp_db_count_where(c->db, &imp_kind_device, c->acct_a, "bogus", "x", &n), IMP_OK);
	assert_int_not_equal(imp_db_delete_where(c->db, &imp_kind_device, c->acct_a, "location", "lab"), IMP_OK);

	assert_int_equal(imp_db_delete_where(c->db, &imp_kind_device, c->acct_a, "deviceTemplateId", f.tmpl[1].id.s), IMP_OK);
	assert_int_equal(imp_db_count_where(c->db, &imp_kind_device, c->acct_a, "deviceTemplateId", f.tmpl[1].id.s, &n), IMP_OK);
	assert_int_equal(n, 0);
	imp_query q = {.page = 1, .page_size = 50, .after = -1};
	EXPECT_LIST(&q, 0, 2, 4, 6, 8, 10);
	/* deleting again deletes nothing and is no error */
	assert_int_equal(imp_db_delete_where(c->db, &imp_kind_device, c->acct_a, "deviceTemplateId", f.tmpl[1].id.s), IMP_OK);
	/* account B's device with the same serial is untouched by A's delete */
	assert_int_equal(imp_db_delete_where(c->db, &imp_kind_device, c->acct_a, "serialNumber", "SN-000"), IMP_OK);
	imp_entity got;
	assert_int_equal(imp_db_get(c->db, &imp_kind_device, c->acct_b, f.other.id.s, &got), IMP_OK);
	imp_entity_clear(&got);
	assert_int_equal(imp_db_get(c->db, &imp_kind_device, c->acct_a, f.dev[0].id.s, &got), IMP_ERR_NOT_FOUND);
	free_fleet(&f);
}

/* ---- constraints, secrets ---- */

static imp_err insert_field(ctx *c, int64_t account, const char *tmpl, const char *name, imp_entity *e)
{
	new_entity(c, account, e,
	           json_pack("{s:s, s:s, s:s, s:b}", "deviceTemplateId", tmpl, "name", name, "fieldType", "string",
	                     "required", 0));
	return imp_db_insert(c->db, &imp_kind_device_field, e, NULL);
}

static void test_unique_conflict(void **state)
{
	ctx *c = *state;
	imp_entity t1, t2, e[6];
	insert_template(c, c->acct_a, "one", &t1);
	insert_template(c, c->acct_a, "two", &t2);
	assert_int_equal(insert_field(c, c->acct_a, t1.id.s, "color", &e[0]), IMP_OK);
	assert_int_equal(insert_field(c, c->acct_a, t1.id.s, "color", &e[1]), IMP_ERR_CONFLICT);
	assert_int_equal(insert_field(c, c->acct_a, t1.id.s, "size", &e[2]), IMP_OK);
	assert_int_equal(insert_field(c, c->acct_a, t2.id.s, "color", &e[3]), IMP_OK);
	assert_int_equal(insert_field(c, c->acct_b, t1.id.s, "color", &e[4]), IMP_OK);
	/* the refused insert left nothing behind */
	imp_entity got;
	assert_int_equal(imp_db_get(c->db, &imp_kind_device_field, c->acct_a, e[1].id.s, &got), IMP_ERR_NOT_FOUND);
	int64_t n;
	assert_int_equal(imp_db_count_where(c->db, &imp_kind_device_field, c->acct_a, "deviceTemplateId", t1.id.s, &n), IMP_OK);
	assert_int_equal(n, 2);
	/* renaming into a taken name conflicts too */
	json_object_set_new(e[2].doc, "name", json_string("color"));
	assert_int_equal(imp_db_update(c->db, &imp_kind_device_field, &e[2], -1), IMP_ERR_CONFLICT);
	assert_int_equal(imp_db_get(c->db, &imp_kind_device_field, c->acct_a, e[2].id.s, &got), IMP_OK);
	assert_string_equal(doc_str(got.doc, "name"), "size");
	assert_int_equal(got.version, 1);
	assert_true(json_is_false(json_object_get(got.doc, "required")));
	assert_string_equal(doc_str(got.doc, "fieldType"), "string");
	imp_entity_clear(&got);
	/* the same id twice */
	new_entity(c, c->acct_a, &e[5], json_pack("{s:s, s:s}", "name", "dup", "authenticationMethod", "password"));
	e[5].id = t1.id;
	assert_int_equal(imp_db_insert(c->db, &imp_kind_device_template, &e[5], NULL), IMP_ERR_CONFLICT);
	/* a store still healthy after refusals */
	assert_int_equal(imp_db_integrity(c->db), IMP_OK);
	for(int i = 0; i < 6; i++) imp_entity_clear(&e[i]);
	imp_entity_clear(&t1);
	imp_entity_clear(&t2);
}

static void test_secrets(void **state)
{
	ctx *c = *state;
	imp_entity k1, k2, k3, got;
	new_entity(c, c->acct_a, &k1, json_pack("{s:s, s:[s]}", "name", "factory", "scopes", "provisioning"));
	assert_int_equal(imp_db_insert(c->db, &imp_kind_api_key, &k1, "hash-one"), IMP_OK);
	new_entity(c, c->acct_b, &k2, json_pack("{s:s, s:[s,s]}", "name", "ops", "scopes", "read", "admin"));
	assert_int_equal(imp_db_insert(c->db, &imp_kind_api_key, &k2, "hash-two"), IMP_OK);
	new_entity(c, c->acct_a, &k3, json_pack("{s:s, s:[]}", "name", "none", "scopes"));
	assert_int_equal(imp_db_insert(c->db, &imp_kind_api_key, &k3, NULL), IMP_OK);

	/* found by secret, in whichever account */
	assert_int_equal(imp_db_find_by_secret(c->db, &imp_kind_api_key, "hash-one", &got), IMP_OK);
	assert_string_equal(got.id.s, k1.id.s);
	assert_int_equal(got.account, c->acct_a);
	assert_string_equal(got.account_id.s, c->acct_a_id.s);
	assert_string_equal(doc_str(got.doc, "name"), "factory");
	assert_string_equal(json_string_value(json_array_get(json_object_get(got.doc, "scopes"), 0)), "provisioning");
	imp_entity_clear(&got);
	assert_int_equal(imp_db_find_by_secret(c->db, &imp_kind_api_key, "hash-two", &got), IMP_OK);
	assert_string_equal(got.id.s, k2.id.s);
	assert_int_equal(got.account, c->acct_b);
	imp_entity_clear(&got);
	assert_int_equal(imp_db_find_by_secret(c->db, &imp_kind_api_key, "hash-on", &got), IMP_ERR_NOT_FOUND);
	assert_int_equal(imp_db_find_by_secret(c->db, &imp_kind_api_key, "", &got), IMP_ERR_NOT_FOUND);
	/* a secret of one kind is none of another's */
	assert_int_equal(imp_db_find_by_secret(c->db, &imp_kind_device, "hash-one", &got), IMP_ERR_NOT_FOUND);

	/* the secret is never in the document */
	assert_int_equal(imp_db_get(c->db, &imp_kind_api_key, c->acct_a, k1.id.s, &got), IMP_OK);
	const char *name;
	json_t *v;
	json_object_foreach(got.doc, name, v) {
		if(json_is_string(v)) assert_null(strstr(json_string_value(v), "hash-one"));
	}
	imp_entity_clear(&got);

	char *s = NULL;
	assert_int_equal(imp_db_get_secret(c->db, &imp_kind_api_key, k1.key, &s), IMP_OK);
	assert_string_equal(s, "hash-one");
	imp_free(s);
	s = NULL;
	assert_int_equal(imp_db_get_secret(c->db, &imp_kind_api_key, k3.key, &s), IMP_ERR_NOT_FOUND);
	assert_null(s);
	assert_int_equal(imp_db_get_secret(c->db, &imp_kind_api_key, 999999, &s), IMP_ERR_NOT_FOUND);

	/* a new secret replaces the old */
	assert_int_equal(imp_db_set_secret(c->db, &imp_kind_api_key, k1.key, "hash-three"), IMP_OK);
	assert_int_equal(imp_db_find_by_secret(c->db, &imp_kind_api_key, "hash-one", &got), IMP_ERR_NOT_FOUND);
	assert_int_equal(imp_db_find_by_secret(c->db, &imp_kind_api_key, "hash-three", &got), IMP_OK);
	assert_string_equal(got.id.s, k1.id.s);
	imp_entity_clear(&got);
	assert_int_equal(imp_db_get_secret(c->db, &imp_kind_api_key, k1.key, &s), IMP_OK);
	assert_string_equal(s, "hash-three");
	imp_free(s);
	/* API key secrets are unique */
	assert_int_equal(imp_db_set_secret(c->db, &imp_kind_api_key, k3.key, "hash-two"), IMP_ERR_CONFLICT);
	imp_entity k4;
	new_entity(c, c->acct_a, &k4, json_pack("{s:s, s:[]}", "name", "copy", "scopes"));
	assert_int_equal(imp_db_insert(c->db, &imp_kind_api_key, &k4, "hash-three"), IMP_ERR_CONFLICT);
	imp_entity_clear(&k4);
	imp_entity_clear(&k1);
	imp_entity_clear(&k2);
	imp_entity_clear(&k3);
}

/* ---- users and sessions ---- */

static void insert_user(ctx *c, int64_t account, const char *email, const char *pwhash, imp_entity *u)
{
	new_entity(c, account, u, json_pack("{s:s, s:s, s:s}", "emailAddress", email, "name", "Ada", "password", "clear text"));
	assert_int_equal(imp_db_insert(c->db, &imp_kind_account_user, u, pwhash), IMP_OK);
}

typedef struct {
	int seen;
	int stop_at;
	char ids[4][IMP_UUID_LEN + 1];
	char hashes[4][32];
} user_walk;

static int on_user(const imp_entity *user, const char *pwhash, void *arg)
{
	user_walk *w = arg;
	if(w->seen < 4) {
		snprintf(w->ids[w->seen], sizeof w->ids[0], "%s", user->id.s);
		snprintf(w->hashes[w->seen], sizeof w->hashes[0], "%s", pwhash);
	}
	w->seen++;
	return w->seen == w->stop_at ? 7 : 0;
}

static void test_users_by_email(void **state)
{
	ctx *c = *state;
	imp_entity ua, ub, got;
	insert_user(c, c->acct_a, "ada@example.com", "$argon2id$a", &ua);
	insert_user(c, c->acct_b, "ada@example.com", "$argon2id$b", &ub);
	/* the password is write-only: never stored in the document */
	assert_int_equal(imp_db_get(c->db, &imp_kind_account_user, c->acct_a, ua.id.s, &got), IMP_OK);
	assert_null(json_object_get(got.doc, "password"));
	assert_string_equal(doc_str(got.doc, "emailAddress"), "ada@example.com");
	imp_entity_clear(&got);
	/* one email per account */
	imp_entity dup;
	new_entity(c, c->acct_a, &dup, json_pack("{s:s}", "emailAddress", "ada@example.com"));
	assert_int_equal(imp_db_insert(c->db, &imp_kind_account_user, &dup, "x"), IMP_ERR_CONFLICT);
	imp_entity_clear(&dup);

	user_walk w = {0};
	int stopped = -1;
	assert_int_equal(imp_db_users_by_email(c->db, "ada@example.com", 0, on_user, &w, &stopped), IMP_OK);
	assert_int_equal(w.seen, 2);
	assert_int_equal(stopped, 0);
	memset(&w, 0, sizeof w);
	assert_int_equal(imp_db_users_by_email(c->db, "ada@example.com", c->acct_b, on_user, &w, &stopped), IMP_OK);
	assert_int_equal(w.seen, 1);
	assert_string_equal(w.ids[0], ub.id.s);
	assert_string_equal(w.hashes[0], "$argon2id$b");
	memset(&w, 0, sizeof w);
	w.stop_at = 1;
	assert_int_equal(imp_db_users_by_email(c->db, "ada@example.com", 0, on_user, &w, &stopped), IMP_OK);
	assert_int_equal(w.seen, 1);
	assert_int_equal(stopped, 7);
	memset(&w, 0, sizeof w);
	assert_int_equal(imp_db_users_by_email(c->db, "bob@example.com", 0, on_user, &w, &stopped), IMP_OK);
	assert_int_equal(w.seen, 0);
	assert_int_equal(stopped, 0);
	imp_entity_clear(&ua);
	imp_entity_clear(&ub);
}

static void test_sessions(void **state)
{
	ctx *c = *state;
	imp_entity u, u2;
	insert_user(c, c->acct_a, "ada@example.com", "h", &u);
	insert_user(c, c->acct_a, "bob@example.com", "h", &u2);
	uint64_t now = imp_now_ms();
	imp_id s1, s2;
	assert_int_equal(imp_db_session_create(c->db, c->acct_a, u.id.s, now + 3600 * 1000, &s1), IMP_OK);
	assert_true(imp_id_valid(s1.s));
	assert_int_equal(imp_db_session_check(c->db, s1.s, u.id.s, now), IMP_OK);
	/* only for its user */
	assert_int_equal(imp_db_session_check(c->db, s1.s, u2.id.s, now), IMP_ERR_NOT_FOUND);
	/* unknown session */
	imp_id other;
	assert_int_equal(imp_id_new(&other), IMP_OK);
	assert_int_equal(imp_db_session_check(c->db, other.s, u.id.s, now), IMP_ERR_NOT_FOUND);
	/* expiry: valid up to the millisecond before, not at it */
	assert_int_equal(imp_db_session_check(c->db, s1.s, u.id.s, now + 3600 * 1000 - 1), IMP_OK);
	assert_int_equal(imp_db_session_check(c->db, s1.s, u.id.s, now + 3600 * 1000), IMP_ERR_NOT_FOUND);
	/* a session made already expired */
	assert_int_equal(imp_db_session_create(c->db, c->acct_a, u.id.s, now - 1, &s2), IMP_OK);
	assert_string_not_equal(s1.s, s2.s);
	assert_int_equal(imp_db_session_check(c->db, s2.s, u.id.s, now), IMP_ERR_NOT_FOUND);
	/* a deleted user's sessions end */
	assert_int_equal(imp_db_delete(c->db, &imp_kind_account_user, c->acct_a, u.id.s, -1), IMP_OK);
	assert_int_equal(imp_db_session_check(c->db, s1.s, u.id.s, now), IMP_ERR_NOT_FOUND);
	imp_entity_clear(&u);
	imp_entity_clear(&u2);
}

/* ---- audit ---- */

static void test_audit(void **state)
{
	ctx *c = *state;
	imp_id e1, e2;
	assert_int_equal(imp_id_new(&e1), IMP_OK);
	assert_int_equal(imp_id_new(&e2), IMP_OK);
	json_t *details = json_pack("{s:s, s:i}", "serialNumber", "SN-1", "n", 3);
	const struct {
		int64_t account;
		const char *action, *entity;
		json_t *details;
	} rows[] = {
		{c->acct_a, "create", e1.s, details}, {c->acct_a, "update", e1.s, NULL}, {c->acct_a, "create", e2.s, NULL},
		{c->acct_a, "delete", e1.s, NULL},    {c->acct_b, "create", e1.s, NULL}, {c->acct_a, "login", NULL, NULL},
	};
	for(size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		imp_audit a = {rows[i].account, rows[i].entity ? c->actor.s : NULL, rows[i].entity ? "accountUser" : "system",
		               rows[i].action, "device", rows[i].entity, rows[i].details};
		assert_int_equal(imp_db_audit(c->db, &a), IMP_OK);
	}
	json_decref(details);

	imp_query q = {.page = 1, .page_size = 50, .after = -1, .want_count = 1};
	json_t *res = json_array();
	int64_t count = -1, last = -1;
	assert_int_equal(imp_db_audit_list(c->db, c->acct_a, NULL, NULL, &q, res, &count, &last), IMP_OK);
	assert_int_equal(count, 5);
	assert_int_equal(json_array_size(res), 5);
	assert_true(last > 0);
	json_t *first = json_array_get(res, 0);
	assert_true(imp_id_valid(json_string_value(json_object_get(first, "id"))));
	assert_string_equal(json_string_value(json_object_get(first, "accountId")), c->acct_a_id.s);
	assert_string_equal(json_string_value(json_object_get(first, "action")), "create");
	assert_string_equal(json_string_value(json_object_get(first, "actorId")), c->actor.s);
	assert_string_equal(json_string_value(json_object_get(first, "actorType")), "accountUser");
	assert_string_equal(json_string_value(json_object_get(first, "entityType")), "device");
	assert_string_equal(json_string_value(json_object_get(first, "entityId")), e1.s);
	int64_t when;
	assert_int_equal(imp_iso8601_parse(json_string_value(json_object_get(first, "created")), &when), 0);
	assert_true(when <= (int64_t)imp_now_ms() && when > (int64_t)imp_now_ms() - 60000);
	json_t *d = json_object_get(first, "details");
	assert_string_equal(json_string_value(json_object_get(d, "serialNumber")), "SN-1");
	assert_int_equal(json_integer_value(json_object_get(d, "n")), 3);
	assert_true(json_is_null(json_object_get(json_array_get(res, 1), "details")));
	json_t *login = json_array_get(res, 4);
	assert_string_equal(json_string_value(json_object_get(login, "action")), "login");
	assert_null(json_string_value(json_object_get(login, "entityId")));
	assert_null(json_string_value(json_object_get(login, "actorId")));
	json_array_clear(res);

	/* filters */
	assert_int_equal(imp_db_audit_list(c->db, c->acct_a, e1.s, NULL, &q, res, &count, &last), IMP_OK);
	assert_int_equal(count, 3);
	assert_int_equal(json_array_size(res), 3);
	json_array_clear(res);
	assert_int_equal(imp_db_audit_list(c->db, c->acct_a, NULL, "create", &q, res, &count, &last), IMP_OK);
	assert_int_equal(count, 2);
	json_array_clear(res);
	assert_int_equal(imp_db_audit_list(c->db, c->acct_a, e1.s, "delete", &q, res, &count, &last), IMP_OK);
	assert_int_equal(count, 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "action")), "delete");
	json_array_clear(res);
	assert_int_equal(imp_db_audit_list(c->db, c->acct_b, NULL, NULL, &q, res, &count, &last), IMP_OK);
	assert_int_equal(count, 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "accountId")), c->acct_b_id.s);
	json_array_clear(res);
	assert_int_equal(imp_db_audit_list(c->db, c->acct_a, e2.s, "delete", &q, res, &count, &last), IMP_OK);
	assert_int_equal(count, 0);
	assert_int_equal(json_array_size(res), 0);
	assert_int_equal(last, -1);

	/* newest first, pages and a cursor */
	q = (imp_query){.page = 1, .page_size = 2, .after = -1, .desc = 1};
	assert_int_equal(imp_db_audit_list(c->db, c->acct_a, NULL, NULL, &q, res, &count, &last), IMP_OK);
	assert_int_equal(json_array_size(res), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "action")), "login");
	assert_string_equal(json_string_value(json_object_get(json_array_get(res, 1), "action")), "delete");
	json_array_clear(res);
	q.after = last;
	assert_int_equal(imp_db_audit_list(c->db, c->acct_a, NULL, NULL, &q, res, &count, &last), IMP_OK);
	assert_int_equal(json_array_size(res), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "action")), "create");
	assert_string_equal(json_string_value(json_object_get(json_array_get(res, 1), "action")), "update");
	json_array_clear(res);
	q.after = last;
	assert_int_equal(imp_db_audit_list(c->db, c->acct_a, NULL, NULL, &q, res, &count, &last), IMP_OK);
	assert_int_equal(json_array_size(res), 1);
	json_array_clear(res);
	q = (imp_query){.page = 3, .page_size = 2, .after = -1};
	assert_int_equal(imp_db_audit_list(c->db, c->acct_a, NULL, NULL, &q, res, &count, &last), IMP_OK);
	assert_int_equal(json_array_size(res), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "action")), "login");
	json_decref(res);

	/* count alone */
	q = (imp_query){.page = 1, .page_size = 2, .after = -1, .want_count = 1};
	assert_int_equal(imp_db_audit_list(c->db, c->acct_a, NULL, NULL, &q, NULL, &count, &last), IMP_OK);
	assert_int_equal(count, 5);
}

/* ---- transactions, health ---- */

static void test_transactions_and_integrity(void **state)
{
	ctx *c = *state;
	imp_db *own = c->db;
	imp_entity t, t2, got;

	/* rollback undoes the work and gives the caller its connection back */
	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	insert_template(c, c->acct_a, "rolled back", &t);
	imp_db_rollback(&c->db);
	assert_ptr_equal(c->db, own);
	assert_int_equal(imp_db_get(c->db, &imp_kind_device_template, c->acct_a, t.id.s, &got), IMP_ERR_NOT_FOUND);
	imp_entity_clear(&t);
	imp_db_rollback(&c->db); /* no transaction: harmless */
	assert_ptr_equal(c->db, own);

	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	insert_template(c, c->acct_a, "committed", &t);
	/* inside the transaction, its own writes are visible on *db */
	assert_int_equal(imp_db_get(c->db, &imp_kind_device_template, c->acct_a, t.id.s, &got), IMP_OK);
	imp_entity_clear(&got);
	assert_int_equal(imp_db_commit(&c->db), IMP_OK);
	assert_ptr_equal(c->db, own);
	assert_int_equal(imp_db_get(c->db, &imp_kind_device_template, c->acct_a, t.id.s, &got), IMP_OK);
	imp_entity_clear(&got);

	/* a refused write inside a transaction spoils neither it nor the next one */
	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	insert_template(c, c->acct_a, "second", &t2);
	new_entity(c, c->acct_a, &got, json_pack("{s:s, s:s}", "name", "dup", "authenticationMethod", "password"));
	got.id = t.id;
	assert_int_equal(imp_db_insert(c->db, &imp_kind_device_template, &got, NULL), IMP_ERR_CONFLICT);
	imp_entity_clear(&got);
	assert_int_equal(imp_db_commit(&c->db), IMP_OK);
	assert_int_equal(imp_db_get(c->db, &imp_kind_device_template, c->acct_a, t2.id.s, &got), IMP_OK);
	imp_entity_clear(&got);
	imp_entity_clear(&t2);
	imp_entity_clear(&t);

	/* commit with no transaction is an error, and leaves the connection as it was */
	assert_int_not_equal(imp_db_commit(&c->db), IMP_OK);
	assert_ptr_equal(c->db, own);
	assert_int_equal(imp_db_ping(c->db), IMP_OK);

	/* a second store on the same file sees committed rows (WAL readers) */
	imp_store *s2;
	assert_int_equal(imp_store_open(c->path, 0, &s2), IMP_OK);
	imp_db *db2 = imp_store_db(s2);
	assert_non_null(db2);
	assert_true(db2 != c->db);
	imp_query q = {.page = 1, .page_size = 50, .after = -1, .want_count = 1};
	int64_t count = -1, last;
	assert_int_equal(imp_db_list(db2, &imp_kind_device_template, c->acct_a, &q, render, NULL, NULL, &count, &last), IMP_OK);
	assert_int_equal(count, 2);
	assert_int_equal(imp_db_integrity(db2), IMP_OK);
	imp_store_close(&s2);

	assert_int_equal(imp_db_integrity(c->db), IMP_OK);
	assert_int_equal(imp_db_ping(c->db), IMP_OK);
}

/* ---- the change feed's generation and the broker's logins ---- */

static void put_password(ctx *c, int64_t account, const imp_id *acct_id, const char *entity, const char *hash)
{
	imp_credential cr = {.account = account, .account_id = *acct_id};
	assert_int_equal(imp_id_new(&cr.id), IMP_OK);
	snprintf(cr.entity_type, sizeof cr.entity_type, "device");
	snprintf(cr.entity_id.s, sizeof cr.entity_id.s, "%s", entity);
	snprintf(cr.method, sizeof cr.method, "password");
	cr.created_by = c->actor;
	int replaced = 0;
	assert_int_equal(imp_db_credential_put(c->db, &cr, hash, &replaced), IMP_OK);
	if(replaced) assert_int_equal(imp_db_change(c->db, entity, "credential"), IMP_OK);
}

struct logins_seen {
	int n;
	char ids[8][IMP_UUID_LEN + 1];
	char secrets[8][65];
	int64_t accounts[8];
};

static int on_login(const imp_login_row *r, void *arg)
{
	struct logins_seen *ls = arg;
	assert_true(ls->n < 8);
	snprintf(ls->ids[ls->n], sizeof ls->ids[0], "%s", r->id);
	snprintf(ls->secrets[ls->n], sizeof ls->secrets[0], "%s", r->secret);
	ls->accounts[ls->n++] = r->account;
	return 0;
}

static int seen_index(const struct logins_seen *ls, const char *id)
{
	for(int i = 0; i < ls->n; i++) {
		if(strcmp(ls->ids[i], id) == 0) return i;
	}
	return -1;
}

static void test_feed_generation_and_logins(void **state)
{
	ctx *c = *state;
	imp_feed *f = NULL;
	assert_int_equal(imp_feed_open(c->path, &f), IMP_OK);
	uint64_t g = imp_feed_gen(f);
	imp_entity t, cert_t, d[4];
	static const char *const H[] = {"aa", "bb", "cc", "dd"};
	char hash[4][65];
	for(int i = 0; i < 4; i++) {
		for(int j = 0; j < 32; j++) memcpy(hash[i] + 2 * j, H[i], 2);
		hash[i][64] = 0;
	}

	/* writes without a change row leave the generation as it was */
	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	insert_template(c, c->acct_a, "meters", &t);
	new_entity(c, c->acct_a, &cert_t, json_pack("{s:s, s:s}", "name", "certs", "authenticationMethod", "certificate"));
	assert_int_equal(imp_db_insert(c->db, &imp_kind_device_template, &cert_t, NULL), IMP_OK);
	for(int i = 0; i < 4; i++) insert_device(c, c->acct_a, i == 3 ? &cert_t.id : &t.id, &DEVS[i], &d[i]);
	put_password(c, c->acct_a, &c->acct_a_id, d[0].id.s, hash[0]);
	put_password(c, c->acct_a, &c->acct_a_id, d[1].id.s, hash[1]);
	put_password(c, c->acct_a, &c->acct_a_id, d[3].id.s, hash[3]);   /* a password on a certificate device */
	assert_int_equal(imp_db_commit(&c->db), IMP_OK);
	assert_int_equal(imp_feed_gen(f), g);

	/* a committed change row moves it by one, once the commit is done */
	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	put_password(c, c->acct_a, &c->acct_a_id, d[1].id.s, hash[2]);
	assert_int_equal(imp_feed_gen(f), g);
	assert_int_equal(imp_db_commit(&c->db), IMP_OK);
	assert_int_equal(imp_feed_gen(f), g + 1);

	/* a rolled-back one moves it too (readers then find nothing new: a commit is never
	 * left unannounced), and the next transaction without one does not */
	int64_t before = 0, after = 0;
	assert_int_equal(imp_db_changes_last(c->db, &before), IMP_OK);
	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	assert_int_equal(imp_db_change(c->db, d[0].id.s, "credential"), IMP_OK);
	imp_db_rollback(&c->db);
	assert_int_equal(imp_feed_gen(f), g + 2);
	assert_int_equal(imp_db_changes_last(c->db, &after), IMP_OK);
	assert_int_equal(after, before);
	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	imp_entity spare;
	insert_device(c, c->acct_b, &t.id, &DEVS[5], &spare);
	assert_int_equal(imp_db_commit(&c->db), IMP_OK);
	assert_int_equal(imp_feed_gen(f), g + 2);
	imp_entity_clear(&spare);
	g++;

	/* a disable is a change too */
	int changed = 0;
	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	assert_int_equal(imp_db_device_set_disabled(c->db, c->acct_a, d[0].id.s, 1, c->actor.s, &changed), IMP_OK);
	assert_int_equal(imp_db_commit(&c->db), IMP_OK);
	assert_true(changed);
	assert_int_equal(imp_feed_gen(f), g + 2);
	int64_t last = 0;
	assert_int_equal(imp_db_changes_last(c->db, &last), IMP_OK);

	/* the logins: only d[1] (d[0] disabled, d[2] without a credential, d[3] of a
	 * certificate template), with its current secret, and the feed's last seq */
	imp_db *ro = NULL;
	assert_int_equal(imp_db_open(c->path, 1, 0, &ro), IMP_OK);
	struct logins_seen ls = {0};
	int64_t seq = -1, estimate = -1;
	assert_int_equal(imp_db_password_logins(ro, &seq, &estimate, on_login, &ls), IMP_OK);
	assert_int_equal(ls.n, 1);
	assert_int_equal(seen_index(&ls, d[1].id.s), 0);
	assert_string_equal(ls.secrets[0], hash[2]);
	assert_int_equal(ls.accounts[0], c->acct_a);
	assert_int_equal(seq, last);
	assert_true(estimate >= 1);

	/* enabled again, d[0] logs in; its seq is the newest change's */
	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	assert_int_equal(imp_db_device_set_disabled(c->db, c->acct_a, d[0].id.s, 0, c->actor.s, &changed), IMP_OK);
	assert_int_equal(imp_db_commit(&c->db), IMP_OK);
	assert_int_equal(imp_feed_gen(f), g + 3);
	memset(&ls, 0, sizeof ls);
	assert_int_equal(imp_db_password_logins(ro, &seq, &estimate, on_login, &ls), IMP_OK);
	assert_int_equal(ls.n, 2);
	assert_true(seen_index(&ls, d[0].id.s) >= 0);
	assert_string_equal(ls.secrets[seen_index(&ls, d[0].id.s)], hash[0]);
	assert_int_equal(seq, last + 1);
	imp_db_close(&ro);

	/* a second mapping sees the same counter */
	imp_feed *f2 = NULL;
	assert_int_equal(imp_feed_open(c->path, &f2), IMP_OK);
	assert_int_equal(imp_feed_gen(f2), imp_feed_gen(f));
	imp_feed_bump(f2);
	assert_int_equal(imp_feed_gen(f), g + 4);
	imp_feed_close(&f2);
	imp_feed_close(&f);
	assert_null(f);
	for(int i = 0; i < 4; i++) imp_entity_clear(&d[i]);
	imp_entity_clear(&t);
	imp_entity_clear(&cert_t);
}

/* ---- requests without a savepoint (imp_db_begin_unmarked) ---- */

struct second {
	ctx *c;
	int mode;        /* 0 refused before writing, 1 a write that failed whole, 2 wrote then refused, 3 commits */
	imp_id clash;    /* the first member's row, for mode 1 */
	imp_entity row;
	imp_err rc;
};

static void *second_member(void *p)
{
	struct second *m = p;
	imp_db *db = imp_store_db(m->c->store);
	assert_non_null(db);
	m->rc = imp_db_begin_unmarked(&db);
	if(m->rc) return NULL;
	new_entity(m->c, m->c->acct_a, &m->row, json_pack("{s:s, s:s}", "name", "second", "authenticationMethod", "password"));
	if(m->mode == 1) m->row.id = m->clash;
	if(m->mode >= 1) {
		imp_err rc = imp_db_insert(db, &imp_kind_device_template, &m->row, NULL);
		assert_int_equal(rc, m->mode == 1 ? IMP_ERR_CONFLICT : IMP_OK);
	}
	if(m->mode == 3) m->rc = imp_db_commit(&db);
	else imp_db_rollback(&db);
	return NULL;
}

/* The first member writes A and commits while a second, unmarked, is queued behind it, so
 * both are one group; returns the first member's commit result. */
static imp_err group_of_two(ctx *c, struct second *m, imp_entity *a)
{
	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	insert_template(c, c->acct_a, "first", a);
	m->c = c;
	m->clash = a->id;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, second_member, m), 0);
	for(int i = 0; i < 5000 && imp_store_writers_waiting(c->store) < 1; i++) sleep_ms(1);
	assert_int_equal(imp_store_writers_waiting(c->store), 1);
	imp_err rc = imp_db_commit(&c->db);
	pthread_join(t, NULL);
	return rc;
}

static int template_exists(ctx *c, const imp_id *id)
{
	imp_entity got;
	imp_err rc = imp_db_get(c->db, &imp_kind_device_template, c->acct_a, id->s, &got);
	if(!rc) imp_entity_clear(&got);
	return rc == IMP_OK;
}

static void test_unmarked_requests(void **state)
{
	ctx *c = *state;
	for(int mode = 0; mode <= 3; mode++) {
		struct second m = {.mode = mode};
		imp_entity a;
		imp_err rc = group_of_two(c, &m, &a);
		if(mode == 2) {
			/* it wrote, then was refused: the whole group is undone and both are told */
			assert_int_equal(rc, IMP_ERR_STORE);
			assert_false(template_exists(c, &a.id));
			assert_false(template_exists(c, &m.row.id));
		} else {
			/* nothing of its own to undo (mode 0, 1), or committed (3): the group stands */
			assert_int_equal(rc, IMP_OK);
			assert_true(template_exists(c, &a.id));
			assert_int_equal(m.rc, IMP_OK);
			if(mode == 3) assert_true(template_exists(c, &m.row.id));
		}
		imp_entity_clear(&a);
		imp_entity_clear(&m.row);
		/* and the writer goes on */
		imp_entity after;
		assert_int_equal(imp_db_begin_unmarked(&c->db), IMP_OK);
		insert_template(c, c->acct_a, "after", &after);
		assert_int_equal(imp_db_commit(&c->db), IMP_OK);
		assert_true(template_exists(c, &after.id));
		imp_entity_clear(&after);
	}
	assert_int_equal(imp_db_integrity(c->db), IMP_OK);
}

/* ---- association codes ---- */

static int assoc_codes(ctx *c)
{
	sqlite3 *conn;
	sqlite3_stmt *st;
	int n = -1;
	assert_int_equal(sqlite3_open_v2(c->path, &conn, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(conn, "SELECT count(*) FROM association_codes", -1, &st, NULL), SQLITE_OK);
	if(sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(conn);
	return n;
}

static void put_code(ctx *c, const char *device, const char *hash, int64_t ttl_ms)
{
	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	assert_int_equal(imp_db_assoc_code_put(c->db, c->acct_a, device, hash, (uint64_t)((int64_t)imp_now_ms() + ttl_ms), "t"),
	                 IMP_OK);
	assert_int_equal(imp_db_commit(&c->db), IMP_OK);
}

/* Codes that expired unused go as new ones are made, eight at a time; live ones stay. */
static void test_assoc_codes_pruned(void **state)
{
	ctx *c = *state;
	char dev[32], hash[32];
	for(int i = 0; i < 10; i++) {
		snprintf(dev, sizeof dev, "expired-%d", i);
		snprintf(hash, sizeof hash, "h-expired-%d", i);
		put_code(c, dev, hash, 300);
	}
	assert_int_equal(assoc_codes(c), 10);   /* none had expired yet */
	sleep_ms(400);
	put_code(c, "live", "h-live", 60000);
	assert_int_equal(assoc_codes(c), 3);   /* eight of the ten expired went */
	put_code(c, "another", "h-another", 60000);
	assert_int_equal(assoc_codes(c), 2);   /* the last two expired, and the two live */
	imp_id found;
	assert_int_equal(imp_db_assoc_code_find(c->db, c->acct_a, "h-live", imp_now_ms(), &found), IMP_OK);
	assert_string_equal(found.s, "live");
	assert_int_equal(imp_db_assoc_code_find(c->db, c->acct_a, "h-another", imp_now_ms(), &found), IMP_OK);
}

/* ---- answers after the commit (imp_db_commit_later) ---- */

typedef struct {
	imp_db_later l;
	int calls;
	imp_err rc;
} later_rec;

static void later_seen(imp_db_later *l, imp_err rc)
{
	later_rec *r = (later_rec *)(void *)l;
	r->calls++;
	r->rc = rc;
}

/* Begins, writes a template named name into a, and commits later with r. */
static void write_later(ctx *c, const char *name, imp_entity *a, later_rec *r)
{
	*r = (later_rec){.l.done = later_seen};
	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	insert_template(c, c->acct_a, name, a);
	assert_int_equal(imp_db_commit_later(&c->db, &r->l), IMP_OK);
}

static void test_commit_later(void **state)
{
	ctx *c = *state;
	later_rec r, r2;
	imp_entity a, b;

	/* the group stays open, unseen by readers, until a flush commits it */
	imp_store_flush(c->store, 0);   /* nothing open: nothing happens */
	write_later(c, "later-a", &a, &r);
	assert_int_equal(r.calls, 0);
	assert_false(template_exists(c, &a.id));
	imp_store_flush(c->store, 0);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.rc, IMP_OK);
	assert_true(template_exists(c, &a.id));
	imp_store_flush(c->store, 0);
	assert_int_equal(r.calls, 1);
	imp_entity_clear(&a);

	/* two in one group, ended by a member that waits: each told once, in one commit */
	write_later(c, "later-b", &a, &r);
	write_later(c, "later-c", &b, &r2);
	assert_int_equal(r.calls + r2.calls, 0);
	imp_entity w;
	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	insert_template(c, c->acct_a, "waits", &w);
	assert_int_equal(imp_db_commit(&c->db), IMP_OK);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r2.calls, 1);
	assert_int_equal(r.rc, IMP_OK);
	assert_int_equal(r2.rc, IMP_OK);
	assert_true(template_exists(c, &a.id) && template_exists(c, &b.id) && template_exists(c, &w.id));
	imp_entity_clear(&a);
	imp_entity_clear(&b);
	imp_entity_clear(&w);

	/* a member that wrote unmarked and was refused undoes the group: told it failed */
	write_later(c, "later-d", &a, &r);
	assert_int_equal(imp_db_begin_unmarked(&c->db), IMP_OK);
	insert_template(c, c->acct_a, "refused", &w);
	imp_db_rollback(&c->db);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.rc, IMP_ERR_STORE);
	assert_false(template_exists(c, &a.id));
	assert_false(template_exists(c, &w.id));
	imp_store_flush(c->store, 0);
	assert_int_equal(r.calls, 1);
	imp_entity_clear(&a);
	imp_entity_clear(&w);
	assert_int_equal(imp_db_integrity(c->db), IMP_OK);
}

#define WRITERS 4
#define TXNS 60

typedef struct {
	ctx *c;
	int n;            /* thread number */
	int committed;    /* transactions it committed */
	int failures;     /* anything unexpected */
} writer_arg;

/* Each thread runs TXNS transactions on its own connection, rolling back every fifth;
 * each committed row must be readable on the thread's connection once commit returns. */
static void *writer_thread(void *p)
{
	writer_arg *a = p;
	imp_db *db = imp_store_db(a->c->store);
	if(!db) {
		a->failures++;
		return NULL;
	}
	for(int i = 0; i < TXNS; i++) {
		imp_db *own = db;
		imp_entity e = {0};
		if(imp_id_new(&e.id)) a->failures++;
		e.account = a->c->acct_a;
		e.created_by = a->c->actor;
		char name[32];
		snprintf(name, sizeof name, "w%d-%d", a->n, i);
		e.doc = json_pack("{s:s, s:s}", "name", name, "authenticationMethod", "password");
		if(imp_db_begin(&db)) {
			a->failures++;
			json_decref(e.doc);
			continue;
		}
		if(imp_db_insert(db, &imp_kind_device_template, &e, NULL)) a->failures++;
		if(i % 5 == 4) {
			imp_db_rollback(&db);
		} else if(imp_db_commit(&db) == IMP_OK) {
			a->committed++;
			imp_entity got;
			if(imp_db_get(db, &imp_kind_device_template, a->c->acct_a, e.id.s, &got)) a->failures++;
			else imp_entity_clear(&got);
		} else {
			a->failures++;
		}
		if(db != own) a->failures++;
		imp_entity_clear(&e);
	}
	return NULL;
}

static void test_group_commit_threads(void **state)
{
	ctx *c = *state;
	pthread_t t[WRITERS];
	writer_arg args[WRITERS];
	for(int i = 0; i < WRITERS; i++) {
		args[i] = (writer_arg){c, i, 0, 0};
		assert_int_equal(pthread_create(&t[i], NULL, writer_thread, &args[i]), 0);
	}
	int committed = 0;
	for(int i = 0; i < WRITERS; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(args[i].failures, 0);
		assert_int_equal(args[i].committed, TXNS - TXNS / 5);
		committed += args[i].committed;
	}
	imp_query q = {.page = 1, .page_size = 1000, .after = -1, .want_count = 1};
	int64_t count = -1, last;
	assert_int_equal(imp_db_list(c->db, &imp_kind_device_template, c->acct_a, &q, render, NULL, NULL, &count, &last), IMP_OK);
	assert_int_equal(count, committed);
	assert_int_equal(imp_db_integrity(c->db), IMP_OK);
}

struct reader_arg {
	ctx *c;
	volatile int stop;
	int reads, failures;
	int kept;   /* read as the server's GETs do, in imp_store_reader's pairs */
};

/* Reads all the while, so the WAL always has readers, as a busy server's has. */
static void *reader_thread(void *p)
{
	struct reader_arg *a = p;
	imp_db *db = imp_store_db(a->c->store);
	while(db && !a->stop) {
		imp_query q = {.page = 1, .page_size = 10, .after = -1, .want_count = 1};
		int64_t count, last;
		imp_db *r = a->kept ? imp_store_reader(a->c->store) : db;
		if(r != db || imp_db_list(db, &imp_kind_device_template, a->c->acct_a, &q, render, NULL, NULL, &count, &last))
			a->failures++;
		if(a->kept) imp_db_read_done(r);
		a->reads++;
	}
	return NULL;
}

/* Under a steady stream of writes with readers throughout, the checkpointer keeps the WAL
 * starting over near its wake length, far below the length at which the writer would
 * checkpoint at commit itself (without its last step the WAL grew to that and stayed). */
static void wal_stays_short(ctx *c, int kept)
{
	imp_store_set_checkpoint(c->store, 64, 100000);
	struct reader_arg ra = {c, 0, 0, 0, kept};
	pthread_t rt, t[WRITERS];
	assert_int_equal(pthread_create(&rt, NULL, reader_thread, &ra), 0);
	writer_arg args[WRITERS];
	for(int round = 0; round < 12; round++) {
		for(int i = 0; i < WRITERS; i++) {
			args[i] = (writer_arg){c, round * WRITERS + i, 0, 0};
			assert_int_equal(pthread_create(&t[i], NULL, writer_thread, &args[i]), 0);
		}
		for(int i = 0; i < WRITERS; i++) {
			assert_int_equal(pthread_join(t[i], NULL), 0);
			assert_int_equal(args[i].failures, 0);
		}
	}
	ra.stop = 1;
	assert_int_equal(pthread_join(rt, NULL), 0);
	assert_int_equal(ra.failures, 0);
	assert_true(ra.reads > 0);
	char wal[160];
	snprintf(wal, sizeof wal, "%s-wal", c->path);
	FILE *f = fopen(wal, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long size = ftell(f);
	fclose(f);
	/* Written in all: over 5,000 pages (each transaction a few); without the writer's
	 * last step the WAL held them all (20 MB and more). */
	if(size > 2048L * 4096) fail_msg("the WAL grew to %ld bytes", size);
	assert_int_equal(imp_db_integrity(c->db), IMP_OK);
}

static void test_wal_stays_short(void **state) { wal_stays_short(*state, 0); }

/* The same with the reader keeping its read transaction between reads, as GETs do: the
 * writer still starts the WAL over (without the drain, a reader that is nearly always
 * inside a read held it back, and the WAL grew to the writer's own limit). */
static void test_wal_stays_short_kept_reads(void **state) { wal_stays_short(*state, 1); }

/* ---- kept read transactions (imp_store_reader) ---- */

static int template_found(ctx *c, imp_db *db, const imp_entity *t)
{
	imp_entity got;
	imp_err rc = imp_db_get(db, &imp_kind_device_template, t->account, t->id.s, &got);
	if(rc == IMP_OK) imp_entity_clear(&got);
	else assert_int_equal(rc, IMP_ERR_NOT_FOUND);
	return rc == IMP_OK;
}

/* Each pair sees every commit made before it: through the store's writer, on the thread's
 * own connection, and by another connection (another process's, as the broker's). */
static void test_kept_reads_see_commits(void **state)
{
	ctx *c = *state;
	imp_entity t1, t2, t3, t4;
	insert_template(c, c->acct_a, "one", &t1);

	imp_db *r = imp_store_reader(c->store);
	assert_ptr_equal(r, c->db);
	assert_true(template_found(c, r, &t1));
	imp_db_read_done(r);
	assert_int_equal(imp_store_readers_kept(c->store), 1);
	/* nothing committed: the same transaction serves the next pair */
	r = imp_store_reader(c->store);
	assert_true(template_found(c, r, &t1));
	imp_db_read_done(r);
	assert_int_equal(imp_store_readers_kept(c->store), 1);

	/* a commit through the writer */
	new_entity(c, c->acct_a, &t2, json_pack("{s:s, s:s}", "name", "two", "authenticationMethod", "password"));
	imp_db *w = c->db;
	assert_int_equal(imp_db_begin(&w), IMP_OK);
	assert_int_equal(imp_db_insert(w, &imp_kind_device_template, &t2, NULL), IMP_OK);
	assert_int_equal(imp_db_commit(&w), IMP_OK);
	assert_ptr_equal(w, c->db);
	r = imp_store_reader(c->store);
	assert_true(template_found(c, r, &t2));
	imp_db_read_done(r);

	/* a commit by a connection of its own, outside the store */
	imp_db *other;
	assert_int_equal(imp_db_open(c->path, 0, 1000, &other), IMP_OK);
	new_entity(c, c->acct_a, &t3, json_pack("{s:s, s:s}", "name", "three", "authenticationMethod", "password"));
	assert_int_equal(imp_db_tx_begin(other), IMP_OK);
	assert_int_equal(imp_db_insert(other, &imp_kind_device_template, &t3, NULL), IMP_OK);
	assert_int_equal(imp_db_tx_commit(other), IMP_OK);
	r = imp_store_reader(c->store);
	assert_true(template_found(c, r, &t3));
	imp_db_read_done(r);
	assert_int_equal(imp_store_readers_kept(c->store), 1);

	/* a statement outside a pair ends the kept transaction first: it sees t4 */
	new_entity(c, c->acct_a, &t4, json_pack("{s:s, s:s}", "name", "four", "authenticationMethod", "password"));
	assert_int_equal(imp_db_tx_begin(other), IMP_OK);
	assert_int_equal(imp_db_insert(other, &imp_kind_device_template, &t4, NULL), IMP_OK);
	assert_int_equal(imp_db_tx_commit(other), IMP_OK);
	assert_true(template_found(c, c->db, &t4));
	assert_int_equal(imp_store_readers_kept(c->store), 0);
	/* and a write on the thread's connection, outside a pair, is not caught in one */
	r = imp_store_reader(c->store);
	imp_db_read_done(r);
	assert_int_equal(imp_store_readers_kept(c->store), 1);
	assert_int_equal(imp_db_delete(c->db, &imp_kind_device_template, c->acct_a, t4.id.s, -1), IMP_OK);
	assert_int_equal(imp_store_readers_kept(c->store), 0);
	assert_false(template_found(c, other, &t4));
	/* nor is one made inside a pair: it commits at the pair's end */
	r = imp_store_reader(c->store);
	assert_int_equal(imp_store_readers_kept(c->store), 1);
	assert_int_equal(imp_db_delete(r, &imp_kind_device_template, c->acct_a, t3.id.s, -1), IMP_OK);
	imp_db_read_done(r);
	assert_int_equal(imp_store_readers_kept(c->store), 0);
	assert_false(template_found(c, other, &t3));
	/* a write through the writer inside a pair: the rest of the pair reads it */
	imp_entity t5;
	r = imp_store_reader(c->store);
	assert_true(template_found(c, r, &t1));
	assert_int_equal(imp_store_readers_kept(c->store), 1);
	new_entity(c, c->acct_a, &t5, json_pack("{s:s, s:s}", "name", "five", "authenticationMethod", "password"));
	w = r;
	assert_int_equal(imp_db_begin(&w), IMP_OK);
	assert_int_equal(imp_db_insert(w, &imp_kind_device_template, &t5, NULL), IMP_OK);
	assert_int_equal(imp_db_commit(&w), IMP_OK);
	assert_ptr_equal(w, r);
	assert_true(template_found(c, r, &t5));
	imp_db_read_done(r);
	imp_db_close(&other);
	imp_entity_clear(&t5);
	imp_entity_clear(&t1);
	imp_entity_clear(&t2);
	imp_entity_clear(&t3);
	imp_entity_clear(&t4);
}

static int kept_after(ctx *c, int ms)
{
	struct timespec ts = {0, 10 * 1000000L};
	for(int waited = 0; waited < ms && imp_store_readers_kept(c->store); waited += 10) nanosleep(&ts, NULL);
	return imp_store_readers_kept(c->store);
}

struct pair_arg {
	ctx *c;
	volatile int stop, inside;
};

/* One pair, left open until told (a request still running). */
static void *pair_thread(void *p)
{
	struct pair_arg *a = p;
	imp_db *r = imp_store_reader(a->c->store);
	a->inside = 1;
	while(!a->stop) {
		struct timespec ts = {0, 1000000L};
		nanosleep(&ts, NULL);
	}
	imp_db_read_done(r);
	return NULL;
}

/* A kept transaction whose thread has gone idle ends within the checkpointer's sweep; one
 * inside its pair is left alone. */
static void test_kept_reads_end_when_idle(void **state)
{
	ctx *c = *state;
	imp_db_read_done(imp_store_reader(c->store));
	assert_int_equal(imp_store_readers_kept(c->store), 1);
	assert_int_equal(kept_after(c, 2000), 0);

	struct pair_arg a = {c, 0, 0};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, pair_thread, &a), 0);
	while(!a.inside) {
		struct timespec ts = {0, 1000000L};
		nanosleep(&ts, NULL);
	}
	assert_int_equal(imp_store_readers_kept(c->store), 1);
	struct timespec ts = {0, 300 * 1000000L};
	nanosleep(&ts, NULL);
	assert_int_equal(imp_store_readers_kept(c->store), 1);
	a.stop = 1;
	assert_int_equal(pthread_join(t, NULL), 0);
	/* the thread has exited: its connection closed, and its transaction with it */
	assert_int_equal(imp_store_readers_kept(c->store), 0);
}

/* ---- the connection-status map ---- */

static const char *last_connected_of(ctx *c, const char *id, imp_entity *got)
{
	assert_int_equal(imp_db_get(c->db, &imp_kind_device, c->acct_a, id, got), IMP_OK);
	return json_string_value(json_object_get(got->doc, "lastConnected"));
}

static void set_connected(ctx *c, const imp_entity *d, int connected, uint64_t at)
{
	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	int64_t key = d->key;
	assert_int_equal(imp_db_device_set_connected(c->db, &key, d->id.s, connected, at), IMP_OK);
	assert_int_equal(imp_db_commit(&c->db), IMP_OK);
}

static void test_status_map(void **state)
{
	ctx *c = *state;
	imp_entity t, d[2], got;
	char iso[IMP_ISO_LEN + 1];
	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	insert_template(c, c->acct_a, "meters", &t);
	insert_device(c, c->acct_a, &t.id, &DEVS[0], &d[0]);
	insert_device(c, c->acct_a, &t.id, &DEVS[2], &d[1]);
	assert_int_equal(imp_db_commit(&c->db), IMP_OK);
	const char *id = d[0].id.s;
	int64_t key = d[0].key;

	/* no broker yet: no file, the store's value (none) */
	assert_null(last_connected_of(c, id, &got));
	imp_entity_clear(&got);

	imp_status *w = NULL, *r = NULL;
	assert_int_equal(imp_status_open(c->path, 1, &w), IMP_OK);
	assert_int_equal(imp_status_open(c->path, 0, &r), IMP_OK);
	uint64_t t0 = 1764000000000ull;   /* 2025-11-24T16:00:00Z */

	/* a connect: the store says disconnected, so it must be written; once stored, a second
	 * connect needs no write, and a connect and disconnect in one window need none either */
	assert_int_equal(imp_status_note(w, key, id, 1, t0), 1);
	assert_int_equal(imp_status_note(w, key, id, 1, t0 + 1), 1);   /* not stored yet */
	set_connected(c, &d[0], 1, t0 + 1);
	imp_status_stored(w, key, id, 1, t0 + 1);
	assert_int_equal(imp_status_note(w, key, id, 1, t0 + 2), 0);
	assert_int_equal(imp_status_note(w, key, id, 0, t0 + 3), 1);
	set_connected(c, &d[0], 0, t0 + 3);
	imp_status_stored(w, key, id, 0, t0 + 3);
	assert_int_equal(imp_status_note(w, key, id, 0, t0 + 4), 0);
	assert_int_equal(imp_status_last(r, key, id), t0 + 4);
	/* the device's lastConnected is the map's, newer than the store's, once the store's
	 * reader (which looked before the file existed) has looked again */
	usleep(150 * 1000);
	imp_iso8601(t0 + 4, iso);
	assert_string_equal(last_connected_of(c, id, &got), iso);
	imp_entity_clear(&got);
	/* the other device has nothing in the map: its own (none) */
	assert_null(last_connected_of(c, d[1].id.s, &got));
	imp_entity_clear(&got);

	/* another device at the same key (SQLite reuses a deleted device's key) sees nothing
	 * of it; a note never takes a slot from another device (one of the two may be a
	 * deleted device's late disconnect): the store is written, and the slot goes to the
	 * device the store confirmed at that key */
	assert_int_equal(imp_status_last(r, key, d[1].id.s), 0);
	assert_int_equal(imp_status_note(w, key, d[1].id.s, 1, t0 + 5), 1);
	assert_int_equal(imp_status_last(r, key, id), t0 + 4);          /* untouched */
	imp_status_stored(w, key, d[1].id.s, 1, t0 + 5);
	assert_int_equal(imp_status_last(r, key, d[1].id.s), t0 + 5);
	assert_int_equal(imp_status_last(r, key, id), 0);
	assert_int_equal(imp_status_note(w, key, id, 0, t0 + 6), 1);   /* the old one, late */
	imp_status_forget(w, key, id);                                 /* the store: not found */
	assert_int_equal(imp_status_last(r, key, d[1].id.s), t0 + 5);
	assert_int_equal(imp_status_note(w, key, d[1].id.s, 1, t0 + 7), 0);
	assert_int_equal(imp_status_note(w, key, d[1].id.s, 0, t0 + 8), 1);   /* its disconnect is written */
	imp_status_stored(w, key, d[1].id.s, 0, t0 + 8);
	assert_int_equal(imp_status_note(w, key, d[1].id.s, 0, t0 + 9), 0);
	assert_int_equal(imp_status_last(r, key, d[1].id.s), t0 + 9);
	imp_status_forget(w, key, d[1].id.s);
	assert_int_equal(imp_status_last(r, key, d[1].id.s), 0);

	/* a disconnect the broker could not place is written by id, which gives the key */
	int64_t found = 0;
	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	assert_int_equal(imp_db_device_set_connected(c->db, &found, d[1].id.s, 0, t0 + 9), IMP_OK);
	int64_t none = 0;
	assert_int_equal(imp_db_device_set_connected(c->db, &none, "01234567-0123-7123-8123-0123456789ab", 0, t0), IMP_ERR_NOT_FOUND);
	assert_int_equal(imp_db_commit(&c->db), IMP_OK);
	assert_int_equal(found, d[1].key);
	assert_int_equal(none, 0);

	/* a broker without the file: no slot for anyone */
	assert_int_equal(imp_status_note(NULL, key, id, 1, t0), -1);
	imp_status_stored(NULL, key, id, 1, t0);
	imp_status_forget(NULL, key, id);
	imp_status_restart(NULL);

	/* keys without a slot: always written, never found */
	assert_int_equal(imp_status_note(w, 0, id, 0, t0), -1);
	assert_int_equal(imp_status_note(w, -1, id, 0, t0), -1);
	assert_int_equal(imp_status_note(w, (int64_t)1 << 32, id, 0, t0), -1);
	assert_int_equal(imp_status_last(r, 0, id), 0);

	/* past the first 2^20 slots the file grows; a reader sees it within 100 ms */
	int64_t far = 3 * 1000 * 1000;
	assert_int_equal(imp_status_note(w, far - 1, id, 0, t0 + 7), 0);
	assert_int_equal(imp_status_note(w, far, id, 0, t0 + 8), 0);
	usleep(150 * 1000);
	assert_int_equal(imp_status_last(r, far, id), t0 + 8);
	assert_int_equal(imp_status_last(r, far - 1, id), t0 + 7);
	assert_int_equal(imp_status_last(r, far + 1, id), 0);

	/* the start: the store has nobody connected, and neither has the map, which keeps the
	 * times; near slots and far ones alike */
	set_connected(c, &d[1], 1, t0 + 9);
	assert_int_equal(imp_status_note(w, d[1].key, d[1].id.s, 1, t0 + 9), 1);
	imp_status_stored(w, d[1].key, d[1].id.s, 1, t0 + 9);
	assert_int_equal(imp_status_note(w, far, id, 1, t0 + 9), 1);
	imp_status_stored(w, far, id, 1, t0 + 9);
	assert_int_equal(imp_status_note(w, far, id, 1, t0 + 10), 0);
	imp_status_close(&w);
	assert_int_equal(imp_status_open(c->path, 1, &w), IMP_OK);
	assert_int_equal(imp_status_note(w, far, id, 1, t0 + 11), 0);   /* reopening keeps them */
	assert_int_equal(imp_db_begin(&c->db), IMP_OK);
	assert_int_equal(imp_db_devices_disconnect_all(c->db), IMP_OK);
	assert_int_equal(imp_db_commit(&c->db), IMP_OK);
	imp_status_restart(w);
	assert_int_equal(imp_status_last(r, far, id), t0 + 11);
	assert_int_equal(imp_status_last(r, d[1].key, d[1].id.s), t0 + 9);
	assert_int_equal(imp_status_note(w, far, id, 0, t0 + 12), 0);
	assert_int_equal(imp_status_note(w, d[1].key, d[1].id.s, 1, t0 + 12), 1);
	assert_int_equal(imp_db_get(c->db, &imp_kind_device, c->acct_a, d[1].id.s, &got), IMP_OK);
	assert_true(json_is_false(json_object_get(got.doc, "connected")));
	imp_entity_clear(&got);
	imp_status_close(&w);

	/* a file that is not a status file is started again: nothing in it is believed */
	char path[160];
	snprintf(path, sizeof path, "%s-status", c->path);
	FILE *f = fopen(path, "r+");
	assert_non_null(f);
	assert_int_equal(fwrite("garbage!", 1, 8, f), 8);
	fclose(f);
	assert_int_equal(imp_status_last(r, far, id), 0);   /* a reader does not trust it either */
	assert_int_equal(imp_status_open(c->path, 1, &w), IMP_OK);
	assert_int_equal(imp_status_last(r, far, id), 0);
	assert_int_equal(imp_status_note(w, far, id, 0, t0 + 13), 0);
	assert_int_equal(imp_status_last(r, far, id), t0 + 13);
	imp_status_close(&w);
	assert_null(w);
	imp_status_close(&r);
	imp_entity_clear(&t);
	for(int i = 0; i < 2; i++) imp_entity_clear(&d[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_and_migrations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration_batch_item_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accounts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_template_crud, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device_crud, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_account, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_pages_and_cursor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_q_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_sort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_many_shapes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_count_and_delete_where, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unique_conflict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secrets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_users_by_email, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transactions_and_integrity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_feed_generation_and_logins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_assoc_codes_pruned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_later, setup, teardown),
		cmocka_unit_test_setup_teardown(test_insert_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unmarked_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_map, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal_stays_short, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal_stays_short_kept_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kept_reads_see_commits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kept_reads_end_when_idle, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
