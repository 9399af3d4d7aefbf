/* Crash durability: while a thread streams POST /api/v1/devices, the server is killed with
 * SIGKILL mid-stream and started again on the same data directory, three times over. Every
 * device the server acknowledged with 201 must still be there (over the API and in the
 * database file), and the database must pass PRAGMA integrity_check after each crash and
 * after the final clean stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define CYCLES 3
#define MAX_ACKED 200000

static h_server srv;
static char tid[64];
static char (*acked)[40];      /* ids that got 201, over all cycles */
static size_t nacked;

typedef struct {
	char body[160];
	atomic_int stop;
	size_t acked;              /* this run's count */
	size_t failed;             /* requests that got no 201 (the crash) */
	long other_status;         /* a status other than 201 that came back, if any */
} stream;

/* Posts devices one after another until told to stop; records every id acknowledged with
 * 201, through the harness (its curl handle is per thread). */
static void *post_stream(void *arg)
{
	stream *st = arg;
	while(!atomic_load(&st->stop)) {
		h_resp r = h_call(&srv, "POST", "/api/v1/devices", srv.admin.api_key, st->body, NULL);
		const char *id = r.status == 201 ? h_str(&r, "device.id") : NULL;
		if(id && nacked < MAX_ACKED) {
			/* Only this thread appends while it runs; the main thread reads after join. */
			snprintf(acked[nacked++], sizeof acked[0], "%s", id);
			st->acked++;
		} else {
			st->failed++;
			if(r.status > 0 && r.status != 201) st->other_status = r.status;
			if(r.status < 0) usleep(1000); /* the server is gone: do not spin */
		}
		h_resp_free(&r);
	}
	h_thread_done();
	return NULL;
}

/* PRAGMA integrity_check on the data directory's database, opened read-only. Also counts
 * the rows of devices into *devices. 0 when it says ok. */
static int integrity(int64_t *devices)
{
	char path[400];
	snprintf(path, sizeof path, "%s/imprint.db", srv.data);
	sqlite3 *db = NULL;
	int rc = -1;
	if(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		fprintf(stderr, "cannot open %s: %s\n", path, db ? sqlite3_errmsg(db) : "?");
		goto out;
	}
	sqlite3_busy_timeout(db, 5000);
	sqlite3_stmt *st = NULL;
	if(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK) goto out;
	int rows = 0, ok = 0;
	while(sqlite3_step(st) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 0);
		rows++;
		if(t && strcmp(t, "ok") == 0) ok = 1;
		else fprintf(stderr, "integrity_check: %s\n", t ? t : "(null)");
	}
	sqlite3_finalize(st);
	if(!(rows == 1 && ok)) goto out;
	if(sqlite3_prepare_v2(db, "SELECT count(*) FROM devices", -1, &st, NULL) != SQLITE_OK) goto out;
	if(sqlite3_step(st) == SQLITE_ROW) *devices = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	rc = 0;
out:
	sqlite3_close(db);
	return rc;
}

/* How many of the acknowledged ids are missing from the database file. */
static size_t missing_in_file(void)
{
	char path[400];
	snprintf(path, sizeof path, "%s/imprint.db", srv.data);
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	size_t missing = nacked;
	if(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	   sqlite3_prepare_v2(db, "SELECT 1 FROM devices WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
		goto out;
	missing = 0;
	for(size_t i = 0; i < nacked; i++) {
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, acked[i], -1, SQLITE_STATIC);
		if(sqlite3_step(st) != SQLITE_ROW) {
			fprintf(stderr, "acknowledged device %s is not in the database file\n", acked[i]);
			missing++;
		}
	}
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return missing;
}

/* How many of the acknowledged ids the running server does not return. */
static size_t missing_over_api(void)
{
	size_t missing = 0;
	for(size_t i = 0; i < nacked; i++) {
		char path[128];
		snprintf(path, sizeof path, "/api/v1/devices/%s", acked[i]);
		h_resp r = h_call(&srv, "GET", path, srv.admin.api_key, NULL, NULL);
		if(r.status != 200 || !h_str(&r, "device.id") || strcmp(h_str(&r, "device.id"), acked[i]) != 0) {
			fprintf(stderr, "acknowledged device %s: GET gave %ld\n", acked[i], r.status);
			missing++;
		}
		h_resp_free(&r);
	}
	return missing;
}

static int setup(void **state)
{
	acked = calloc(MAX_ACKED, sizeof acked[0]);
	if(!acked) return -1;
	if(h_server_start(&srv)) return -1;
	return h_create(&srv, srv.admin.api_key, "/api/v1/devices/templates", "{\"name\":\"durability\"}",
	                "deviceTemplate.id", tid, sizeof tid);
}

static int teardown(void **state)
{
	h_server_destroy(&srv);
	free(acked);
	return 0;
}

static void acknowledged_devices_survive_kill_9(void **state)
{
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	for(int cycle = 1; cycle <= CYCLES; cycle++) {
		stream st = {0};
		snprintf(st.body, sizeof st.body, "{\"deviceTemplateId\":\"%s\",\"serialNumber\":\"cycle-%d\"}", tid, cycle);
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, post_stream, &st), 0);
		/* Between 1 and 2 seconds into the stream, with requests in flight. */
		useconds_t wait = 1000000 + (useconds_t)(rand() % 1000000);
		usleep(wait);
		h_server_kill(&srv);
		atomic_store(&st.stop, 1);
		pthread_join(th, NULL);
		fprintf(stderr, "cycle %d: killed after %u ms; %zu devices acknowledged (%zu in all), %zu requests cut off\n",
		        cycle, (unsigned)(wait / 1000), st.acked, nacked, st.failed);
		assert_true(st.acked > 0);
		assert_int_equal(st.other_status, 0); /* nothing but 201 until the kill */

		/* The crashed database, as the kill left it (WAL and all). */
		int64_t rows = -1;
		assert_int_equal(integrity(&rows), 0);
		assert_true(rows >= (int64_t)nacked);
		assert_int_equal(missing_in_file(), 0);

		assert_int_equal(h_server_restart(&srv), 0);
		assert_int_equal(missing_over_api(), 0);
		h_resp r = h_call(&srv, "GET", "/healthz", NULL, NULL, NULL);
		assert_int_equal(r.status, 200);
		h_resp_free(&r);
	}
	/* A clean stop at the end, and the file checked once more. */
	assert_int_equal(h_server_stop(&srv), 0);
	int64_t rows = -1;
	assert_int_equal(integrity(&rows), 0);
	assert_true(rows >= (int64_t)nacked);
	assert_int_equal(missing_in_file(), 0);
	assert_false(h_log_contains(&srv, "AddressSanitizer"));
	assert_false(h_log_contains(&srv, "runtime error"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(acknowledged_devices_survive_kill_9)};
	return cmocka_run_group_tests(tests, setup, teardown);
}
