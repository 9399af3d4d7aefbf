/* Allocation failure ("torture") tests, after curl's: make the n-th allocation through
 * src/core/mem.c fail, for n = 0, 1, 2, ... until the scenario needs no more, and check
 * that every step either succeeds or returns an error: no crash, no leak (the test build
 * runs under AddressSanitizer and LeakSanitizer), no step that says OK without doing its
 * work, and a store that still works once memory is back. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/ids.h"
#include "core/kind.h"
#include "core/mem.h"
#include "core/ratelimit.h"
#include "core/timeutil.h"
#include "store/store.h"
#include "unit_util.h"

#define N_MAX 500 /* far more allocations than any scenario here makes */

/* ---- the wrappers themselves ---- */

static void test_wrappers_fail_after(void **state)
{
	(void)state;
	imp_mem_fail_after(0);
	assert_null(imp_malloc(8));
	assert_null(imp_calloc(2, 8));
	assert_null(imp_realloc(NULL, 8));
	assert_null(imp_strdup("abc"));
	assert_null(imp_strndup("abc", 2));
	imp_mem_fail_after(-1);

	/* n successes, then every allocation fails */
	imp_mem_fail_after(2);
	void *a = imp_malloc(8);
	char *b = imp_strdup("two");
	void *c = imp_malloc(8);
	char *d = imp_strdup("four");
	imp_mem_fail_after(-1);
	assert_non_null(a);
	assert_non_null(b);
	assert_string_equal(b, "two");
	assert_null(c);
	assert_null(d);
	imp_free(a);
	imp_free(b);

	/* a failed realloc leaves the block as it was */
	char *p = imp_strdup("keep me");
	assert_non_null(p);
	imp_mem_fail_after(0);
	assert_null(imp_realloc(p, 4096));
	imp_mem_fail_after(-1);
	assert_string_equal(p, "keep me");
	char *q = imp_realloc(p, 4096);
	assert_non_null(q);
	assert_string_equal(q, "keep me");
	imp_free(q);

	/* disabled again: everything works, including zero sizes */
	void *z = imp_malloc(0);
	assert_non_null(z);
	imp_free(z);
	z = imp_calloc(0, 0);
	assert_non_null(z);
	imp_free(z);
	imp_free(NULL);
}

static void test_strdup_paths(void **state)
{
	(void)state;
	char big[5000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	const char *inputs[] = {"", "a", "hello world", big, NULL};
	for(int i = 0; inputs[i]; i++) {
		for(long n = 0; n < 3; n++) {
			imp_mem_fail_after(n);
			char *s[3];
			for(int k = 0; k < 3; k++) s[k] = imp_strdup(inputs[i]);
			imp_mem_fail_after(-1);
			for(int k = 0; k < 3; k++) {
				if(k < n) {
					assert_non_null(s[k]);
					assert_string_equal(s[k], inputs[i]);
				} else {
					assert_null(s[k]);
				}
				imp_free(s[k]);
			}
			imp_mem_fail_after(n);
			char *t = imp_strndup(inputs[i], 3);
			imp_mem_fail_after(-1);
			if(n == 0) {
				assert_null(t);
			} else {
				assert_non_null(t);
				assert_int_equal(strlen(t), strlen(inputs[i]) < 3 ? strlen(inputs[i]) : 3);
				assert_memory_equal(t, inputs[i], strlen(t));
			}
			imp_free(t);
		}
	}
}

static void test_ratelimit_new(void **state)
{
	(void)state;
	imp_mem_fail_after(0);
	imp_ratelimit *rl = imp_ratelimit_new(3, 60);
	imp_mem_fail_after(-1);
	assert_null(rl);
	rl = imp_ratelimit_new(3, 60);
	assert_non_null(rl);
	imp_ratelimit_free(&rl);
}

/* ---- the store ---- */

static char dir[64];

static int make_dir(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/imp-unit-alloc-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
	(void)state;
	imp_mem_fail_after(-1);
	unit_remove_tree(dir);
	return 0;
}

/* An error from a failed allocation must be one that says so: never not-found, conflict or
 * stale, which would send a client the wrong answer. */
static void expect_alloc_error(imp_err rc, long n, int step)
{
	if(rc == IMP_OK) fail_msg("n=%ld step %d: expected an error", n, step);
	if(rc != IMP_ERR_NOMEM && rc != IMP_ERR_STORE)
		fail_msg("n=%ld step %d: an allocation failure reported as %s", n, step, imp_err_name(rc));
}

/* What a run of the scenario did, so that it can be checked with memory back. */
typedef struct {
	int failed_step;        /* 0 when every step succeeded */
	imp_err rc;
	imp_id account_id;
	int64_t account;
	imp_id tmpl, device, key, user;
	int tmpl_ok, tmpl_updated, device_ok, key_ok, user_ok, tmpl_deleted, audit_ok;
	char secret[64];        /* API key secrets are unique: one per run */
} run;

static json_t *render(imp_db *db, const imp_kind *k, const imp_entity *e, void *arg)
{
	(void)db;
	(void)k;
	(void)arg;
	return json_pack("{s:s}", "id", e->id.s);
}

static imp_err new_entity(imp_entity *e, int64_t account, json_t *doc)
{
	memset(e, 0, sizeof *e);
	imp_err rc = imp_id_new(&e->id);
	e->account = account;
	e->doc = doc;
	if(!rc && !doc) rc = IMP_ERR_NOMEM;
	return rc;
}

#define STEP(n, expr) \
	do { \
		imp_err rc_ = (expr); \
		if(rc_) { \
			r->failed_step = (n); \
			r->rc = rc_; \
			goto out; \
		} \
	} while(0)

/* The scenario: the calls a request makes, in the order a server makes them. Stops at the
 * first failure. Leaves nothing allocated. */
static void scenario(imp_store *s, run *r)
{
	imp_entity t = {0}, d = {0}, k = {0}, u = {0}, got = {0};
	json_t *res = NULL;
	char *secret = NULL;
	memset(r, 0, sizeof *r);

	imp_db *db = imp_store_db(s);
	STEP(1, db ? IMP_OK : IMP_ERR_NOMEM);
	STEP(2, imp_db_account_create(db, "acme", &r->account_id, &r->account));

	STEP(3, new_entity(&t, r->account, json_pack("{s:s, s:s}", "name", "tmpl", "authenticationMethod", "password")));
	r->tmpl = t.id;
	STEP(4, imp_db_insert(db, &imp_kind_device_template, &t, NULL));
	r->tmpl_ok = 1;
	STEP(5, imp_db_get(db, &imp_kind_device_template, r->account, t.id.s, &got));
	imp_entity_clear(&got);

	/* a write transaction through the shared writer */
	STEP(6, new_entity(&d, r->account,
	                   json_pack("{s:s, s:s, s:s, s:s, s:b, s:b}", "deviceTemplateId", t.id.s, "serialNumber", "SN-1",
	                             "name", "dev", "provisioningState", "defined", "connected", 0, "disabled", 0)));
	r->device = d.id;
	STEP(7, imp_db_begin(&db));
	imp_err rc = imp_db_insert(db, &imp_kind_device, &d, NULL);
	if(rc) {
		imp_db_rollback(&db);
		STEP(8, rc);
	}
	STEP(9, imp_db_commit(&db));
	r->device_ok = 1;

	/* lists: count, filter, q, results */
	res = json_array();
	STEP(10, res ? IMP_OK : IMP_ERR_NOMEM);
	imp_filter f = {"deviceTemplateId", t.id.s};
	imp_query q = {.filters = &f, .nfilters = 1, .q = "SN", .page = 1, .page_size = 10, .after = -1, .want_count = 1};
	int64_t count = -1, last = -1;
	STEP(11, imp_db_list(db, &imp_kind_device, r->account, &q, render, NULL, res, &count, &last));
	if(count != 1 || json_array_size(res) != 1) fail_msg("list under a failing allocator returned wrong results");

	json_object_set_new(t.doc, "name", json_string("tmpl v2"));
	STEP(12, imp_db_update(db, &imp_kind_device_template, &t, 1));
	r->tmpl_updated = 1;

	/* secrets */
	STEP(13, new_entity(&k, r->account, json_pack("{s:s, s:[s]}", "name", "key", "scopes", "read")));
	r->key = k.id;
	snprintf(r->secret, sizeof r->secret, "hash-%s", k.id.s);
	STEP(14, imp_db_insert(db, &imp_kind_api_key, &k, r->secret));
	r->key_ok = 1;
	STEP(15, imp_db_get_secret(db, &imp_kind_api_key, k.key, &secret));
	if(strcmp(secret, r->secret) != 0) fail_msg("wrong secret");
	STEP(16, imp_db_find_by_secret(db, &imp_kind_api_key, r->secret, &got));
	imp_entity_clear(&got);

	/* users, sessions, audit */
	STEP(17, new_entity(&u, r->account, json_pack("{s:s, s:s}", "emailAddress", "a@b.c", "password", "x")));
	r->user = u.id;
	STEP(18, imp_db_insert(db, &imp_kind_account_user, &u, "pwhash"));
	r->user_ok = 1;
	imp_id session;
	STEP(19, imp_db_session_create(db, r->account, u.id.s, imp_now_ms() + 60000, &session));
	STEP(20, imp_db_session_check(db, session.s, u.id.s, imp_now_ms()));
	imp_audit a = {r->account, u.id.s, "accountUser", "create", "device", d.id.s, NULL};
	STEP(21, imp_db_audit(db, &a));
	r->audit_ok = 1;
	json_array_clear(res);
	STEP(22, imp_db_audit_list(db, r->account, d.id.s, NULL, &q, res, &count, &last));

	/* in-use checks and deletes */
	STEP(23, imp_db_count_where(db, &imp_kind_device, r->account, "deviceTemplateId", t.id.s, &count));
	STEP(24, imp_db_delete_where(db, &imp_kind_device, r->account, "deviceTemplateId", t.id.s));
	STEP(25, imp_db_delete(db, &imp_kind_device_template, r->account, t.id.s, 2));
	r->tmpl_deleted = 1;
	STEP(26, imp_db_ping(db));
	STEP(27, imp_db_integrity(db));
out:
	imp_free(secret);
	json_decref(res);
	imp_entity_clear(&t);
	imp_entity_clear(&d);
	imp_entity_clear(&k);
	imp_entity_clear(&u);
}

/* With memory back: everything a run said it did is there, what failed left no trace where
 * it must not, and the store still works end to end. */
static void verify(imp_store *s, const run *r, long n)
{
	imp_db *db = imp_store_db(s);
	if(!db) fail_msg("n=%ld: no connection once memory is back", n);
	imp_entity got;
	if(r->failed_step == 0 || r->failed_step > 2) {
		int64_t key;
		assert_int_equal(imp_db_account_key(db, r->account_id.s, &key), IMP_OK);
		assert_int_equal(key, r->account);
	}
	if(r->tmpl_ok && !r->tmpl_deleted) {
		if(imp_db_get(db, &imp_kind_device_template, r->account, r->tmpl.s, &got))
			fail_msg("n=%ld: the template inserted is missing", n);
		assert_int_equal(got.version, r->tmpl_updated ? 2 : 1);
		imp_entity_clear(&got);
	}
	if(r->tmpl_deleted)
		assert_int_equal(imp_db_get(db, &imp_kind_device_template, r->account, r->tmpl.s, &got), IMP_ERR_NOT_FOUND);
	if(r->failed_step >= 7 && r->failed_step <= 9) {
		/* the transaction failed: its device must not exist */
		if(imp_db_get(db, &imp_kind_device, r->account, r->device.s, &got) != IMP_ERR_NOT_FOUND)
			fail_msg("n=%ld: a failed transaction left its device behind", n);
	}
	if(r->device_ok && r->failed_step && r->failed_step < 24) {
		if(imp_db_get(db, &imp_kind_device, r->account, r->device.s, &got))
			fail_msg("n=%ld: the device committed is missing", n);
		imp_entity_clear(&got);
	}
	if(r->key_ok) {
		char *secret = NULL;
		imp_entity k;
		assert_int_equal(imp_db_get(db, &imp_kind_api_key, r->account, r->key.s, &k), IMP_OK);
		assert_int_equal(imp_db_get_secret(db, &imp_kind_api_key, k.key, &secret), IMP_OK);
		assert_string_equal(secret, r->secret);
		imp_free(secret);
		imp_entity_clear(&k);
	}
	if(r->user_ok) {
		assert_int_equal(imp_db_get(db, &imp_kind_account_user, r->account, r->user.s, &got), IMP_OK);
		imp_entity_clear(&got);
	}
	/* and the whole scenario runs again on this store */
	run again;
	scenario(s, &again);
	if(again.failed_step)
		fail_msg("n=%ld: once memory is back, step %d still fails (%s)", n, again.failed_step, imp_err_name(again.rc));
}

static void test_store_open_fails_cleanly(void **state)
{
	(void)state;
	long n;
	int successes = 0, failures = 0;
	for(n = 0; n < N_MAX && successes < 3; n++) {
		char path[128];
		snprintf(path, sizeof path, "%s/open-%ld.db", dir, n);
		imp_store *s = NULL;
		imp_mem_fail_after(n);
		imp_err rc = imp_store_open(path, 1, &s);
		imp_mem_fail_after(-1);
		if(rc) {
			failures++;
			expect_alloc_error(rc, n, 0);
			assert_null(s);
			/* the failed open left a file a later open can use */
			assert_int_equal(imp_store_open(path, 1, &s), IMP_OK);
		} else {
			successes++;
		}
		run r;
		scenario(s, &r);
		assert_int_equal(r.failed_step, 0);
		imp_store_close(&s);
		assert_null(s);
	}
	assert_true(n < N_MAX);
	assert_true(failures >= 3); /* the store, its path, its writer connection */

	/* opening an existing store without create */
	char path[128];
	snprintf(path, sizeof path, "%s/open-0.db", dir);
	successes = 0;
	for(n = 0; n < N_MAX && successes < 3; n++) {
		imp_store *s = NULL;
		imp_mem_fail_after(n);
		imp_err rc = imp_store_open(path, 0, &s);
		imp_mem_fail_after(-1);
		if(rc) {
			assert_null(s);
			/* NOMEM or STORE would be the precise answer; callers treat any error alike */
			assert_int_not_equal(rc, IMP_OK);
		} else {
			successes++;
			imp_store_close(&s);
		}
	}
	assert_true(n < N_MAX);
}

static void test_store_calls_fail_cleanly(void **state)
{
	(void)state;
	long n;
	int successes = 0, failures = 0;
	for(n = 0; n < N_MAX && successes < 3; n++) {
		char path[128];
		snprintf(path, sizeof path, "%s/calls-%ld.db", dir, n);
		imp_store *s = NULL;
		assert_int_equal(imp_store_open(path, 1, &s), IMP_OK);
		run r;
		imp_mem_fail_after(n);
		scenario(s, &r);
		imp_mem_fail_after(-1);
		if(getenv("IMP_ALLOC_VERBOSE")) fprintf(stderr, "n=%ld: step %d %s\n", n, r.failed_step, imp_err_name(r.rc));
		if(r.failed_step) {
			failures++;
			expect_alloc_error(r.rc, n, r.failed_step);
		} else {
			successes++;
		}
		verify(s, &r, n);
		imp_store_close(&s);
	}
	assert_true(n < N_MAX);
	assert_true(failures > 5); /* the scenario allocates at many steps */
}

/* The same scenario run again on a store whose connection is already warm (statements
 * cached): failures now fall on the statements the first run did not need. */
static void test_store_warm_calls_fail_cleanly(void **state)
{
	(void)state;
	char path[128];
	snprintf(path, sizeof path, "%s/warm.db", dir);
	imp_store *s = NULL;
	assert_int_equal(imp_store_open(path, 1, &s), IMP_OK);
	run r;
	scenario(s, &r);
	assert_int_equal(r.failed_step, 0);
	for(long n = 0; n < 20; n++) {
		imp_mem_fail_after(n);
		scenario(s, &r);
		imp_mem_fail_after(-1);
		if(r.failed_step) expect_alloc_error(r.rc, n, r.failed_step);
		verify(s, &r, n);
	}
	imp_store_close(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wrappers_fail_after),
		cmocka_unit_test(test_strdup_paths),
		cmocka_unit_test(test_ratelimit_new),
		cmocka_unit_test(test_store_open_fails_cleanly),
		cmocka_unit_test(test_store_calls_fail_cleanly),
		cmocka_unit_test(test_store_warm_calls_fail_cleanly),
	};
	return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
