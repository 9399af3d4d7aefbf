/* Unit tests for what the memory caches may keep. A GET reads a snapshot kept from before
 * a change (api_read_begin: the caches' pins, then imp_store_reader) and must never leave
 * a cache a copy from that snapshot tagged as current after it: each such test makes the
 * change from another connection while the snapshot is held, then checks that a later
 * request, outside any snapshot, sees the change. And what a write transaction reads
 * before it commits is never kept. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/auth.h"
#include "api/template_cache.h"
#include "core/ids.h"
#include "core/kind.h"
#include "store/store.h"
#include "unit_util.h"

typedef struct {
	char dir[64];
	char path[128];
	imp_app app;
	imp_db *db;       /* the thread's connection */
	imp_db *other;    /* another connection, for the changes */
	int64_t account;
	imp_id account_id;
} ctx;

static int setup(void **state)
{
	ctx *c = calloc(1, sizeof *c);
	assert_non_null(c);
	snprintf(c->dir, sizeof c->dir, "/tmp/imp-unit-pins-XXXXXX");
	assert_non_null(mkdtemp(c->dir));
	char keys[128];
	snprintf(keys, sizeof keys, "%s/keys.json", c->dir);
	assert_int_equal(imp_keys_create(keys, &c->app.keys), IMP_OK);
	snprintf(c->path, sizeof c->path, "%s/store.db", c->dir);
	assert_int_equal(imp_store_open(c->path, 1, &c->app.store), IMP_OK);
	c->db = imp_store_db(c->app.store);
	assert_non_null(c->db);
	assert_int_equal(imp_db_account_create(c->db, "A", &c->account_id, &c->account), IMP_OK);
	assert_int_equal(imp_db_open(c->path, 0, 1000, &c->other), IMP_OK);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	ctx *c = *state;
	imp_db_close(&c->other);
	imp_store_close(&c->app.store);
	unit_remove_tree(c->dir);
	free(c);
	return 0;
}

static void insert(ctx *c, imp_db *db, const imp_kind *k, json_t *doc, const char *secret, imp_id *id)
{
	assert_non_null(doc);
	imp_entity e = {.account = c->account, .account_id = c->account_id, .doc = doc};
	assert_int_equal(imp_id_new(&e.id), IMP_OK);
	e.created_by = e.id;
	assert_int_equal(imp_db_insert(db, k, &e, secret), IMP_OK);
	if(id) *id = e.id;
	imp_entity_clear(&e);
}

/* Begins a GET as the server does (api_read_begin: the pins, then the kept snapshot). */
static imp_db *get_begins(ctx *c)
{
	imp_db *r = api_read_begin(&c->app);
	assert_ptr_equal(r, c->db);
	assert_int_equal(imp_store_readers_kept(c->app.store), 1);
	return r;
}

static void get_ends(imp_db *r) { api_read_end(r); }

static imp_err resolve(ctx *c, imp_db *db, const char *key)
{
	char h[IMP_API_KEY_LEN + 8];
	snprintf(h, sizeof h, "Bearer %s", key);
	imp_req r = {.app = &c->app, .db = db, .method = "GET", .url = "/api/v1/devices"};
	return imp_auth_resolve_header(&r, h, 0);
}

/* A stored API key with scope; its text in key. */
static void new_api_key(ctx *c, const char *scope, char key[IMP_API_KEY_LEN + 1], imp_id *id)
{
	char hash[65];
	assert_int_equal(imp_api_key_new(&c->app.keys, key, hash), IMP_OK);
	insert(c, c->db, &imp_kind_api_key, json_pack("{s:s, s:[s]}", "name", "k", "scopes", scope), hash, id);
}

/* An API key deleted while a GET holds a snapshot from before: that GET may still take the
 * key (it runs as if a moment earlier), but the key is not remembered as valid after. */
static void test_deleted_api_key_not_remembered(void **state)
{
	ctx *c = *state;
	char key[IMP_API_KEY_LEN + 1];
	imp_id key_id;
	new_api_key(c, "admin", key, &key_id);

	imp_db *r = get_begins(c);
	assert_int_equal(imp_db_delete(c->other, &imp_kind_api_key, c->account, key_id.s, -1), IMP_OK);
	imp_auth_forget();
	assert_int_equal(resolve(c, r, key), IMP_OK);
	get_ends(r);

	assert_int_equal(resolve(c, c->db, key), IMP_ERR_UNAUTHORIZED);
	r = get_begins(c);
	assert_int_equal(resolve(c, r, key), IMP_ERR_UNAUTHORIZED);
	get_ends(r);
}

/* A key resolved in a GET is remembered for the next (the cache still works pinned). */
static void test_api_key_remembered_when_current(void **state)
{
	ctx *c = *state;
	char key[IMP_API_KEY_LEN + 1];
	imp_id key_id;
	new_api_key(c, "read", key, &key_id);
	imp_db *r = get_begins(c);
	assert_int_equal(resolve(c, r, key), IMP_OK);
	get_ends(r);
	/* deleted behind the cache's back (no imp_auth_forget): the copy answers */
	assert_int_equal(imp_db_delete(c->other, &imp_kind_api_key, c->account, key_id.s, -1), IMP_OK);
	assert_int_equal(resolve(c, c->db, key), IMP_OK);
	imp_auth_forget();
	assert_int_equal(resolve(c, c->db, key), IMP_ERR_UNAUTHORIZED);
}

static json_t *channel(const char *tid, const char *name)
{
	return json_pack("{s:s, s:s, s:s}", "name", name, "entityType", "deviceTemplate", "entityId", tid);
}

static size_t channels_now(ctx *c, imp_db *db, const char *tid)
{
	json_t *ch, *f;
	assert_int_equal(imp_template_cache_get(db, c->account, tid, &ch, &f), IMP_OK);
	size_t n = json_array_size(ch);
	json_decref(ch);
	json_decref(f);
	return n;
}

/* A channel template added while a GET holds a snapshot from before: the template's
 * channels that GET read are not kept as current. */
static void test_template_change_not_hidden(void **state)
{
	ctx *c = *state;
	imp_id tid;
	insert(c, c->db, &imp_kind_device_template,
	       json_pack("{s:s, s:s}", "name", "t", "authenticationMethod", "password"), NULL, &tid);
	insert(c, c->db, &imp_kind_channel_template, channel(tid.s, "one"), NULL, NULL);

	imp_db *r = get_begins(c);
	insert(c, c->other, &imp_kind_channel_template, channel(tid.s, "two"), NULL, NULL);
	imp_template_cache_forget();
	assert_int_equal(channels_now(c, r, tid.s), 1);
	get_ends(r);

	assert_int_equal(channels_now(c, c->db, tid.s), 2);
	r = get_begins(c);
	assert_int_equal(channels_now(c, r, tid.s), 2);
	get_ends(r);
	/* and the copy that GET made is the cache's: a change behind its back stays unseen */
	insert(c, c->other, &imp_kind_channel_template, channel(tid.s, "three"), NULL, NULL);
	assert_int_equal(channels_now(c, c->db, tid.s), 2);
	imp_template_cache_forget();
	assert_int_equal(channels_now(c, c->db, tid.s), 3);
}

/* Read inside a write transaction, a template's channels include work that may still be
 * rolled back: they are used but not kept. */
static void test_uncommitted_not_kept(void **state)
{
	ctx *c = *state;
	imp_id tid;
	insert(c, c->db, &imp_kind_device_template,
	       json_pack("{s:s, s:s}", "name", "t", "authenticationMethod", "password"), NULL, &tid);
	insert(c, c->db, &imp_kind_channel_template, channel(tid.s, "one"), NULL, NULL);
	imp_db *w = c->db;
	assert_int_equal(imp_db_begin(&w), IMP_OK);
	assert_true(imp_db_in_write(w));
	insert(c, w, &imp_kind_channel_template, channel(tid.s, "two"), NULL, NULL);
	assert_int_equal(channels_now(c, w, tid.s), 2);
	imp_db_rollback(&w);
	assert_ptr_equal(w, c->db);
	assert_false(imp_db_in_write(w));
	assert_int_equal(channels_now(c, c->db, tid.s), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_deleted_api_key_not_remembered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_api_key_remembered_when_current, setup, teardown),
		cmocka_unit_test_setup_teardown(test_template_change_not_hidden, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uncommitted_not_kept, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
