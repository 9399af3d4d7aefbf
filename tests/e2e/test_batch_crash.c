/* Crash safety of `imprint batch`: a run over 100,000 serial numbers is killed with SIGKILL
 * at random moments, at least 20 times, then run to completion. Afterwards:
 * - the output holds exactly one bundle per serial number, and the store exactly one
 *   device per serial number;
 * - every bundle's secret is the one the store holds for its device (HMAC-SHA256 under the
 *   server's key, computed here with OpenSSL), and a sample of 1,000 authenticates at the
 *   broker hook;
 * - every device of the batch has a credential, and all of them are in the output: no
 *   device has a secret that is not in the file;
 * - no secret is on the CLI's stderr.
 * IMP_BATCH_CRASH_SERIALS overrides the number of serials (a quicker run by hand). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "batch_util.h"

#define KILLS 20

static h_server srv;
static char tid[64], broker[128], work[64], serials[100], out[100], err[100], state_path[120];
static long nserials = 100000;
static void *bundles; /* freed in teardown, also after a failed assertion */

typedef struct {
	char id[40];
	char secret[48];
} bundle;

static int setup(void **state)
{
	const char *env = getenv("IMP_BATCH_CRASH_SERIALS");
	if(env && atol(env) > 0) nserials = atol(env);
	snprintf(work, sizeof work, "/tmp/imprint-batch-XXXXXX");
	if(!mkdtemp(work)) return -1;
	snprintf(serials, sizeof serials, "%s/serials.txt", work);
	snprintf(out, sizeof out, "%s/bundles.jsonl", work);
	snprintf(err, sizeof err, "%s/stderr.txt", work);
	snprintf(state_path, sizeof state_path, "%s.state", out);
	if(bu_write_serials(serials, "K-", nserials)) return -1;
	if(h_server_start(&srv)) return -1;
	if(bu_template(&srv, "crash", "password", tid)) return -1;
	return bu_broker_key(&srv, broker);
}

static int teardown(void **state)
{
	free(bundles);
	h_server_destroy(&srv);
	char cmd[200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
	if(system(cmd) != 0) fprintf(stderr, "could not remove %s\n", work);
	return 0;
}

static long state_lines(void)
{
	json_t *o = json_load_file(state_path, 0, NULL);
	long n = o ? (long)json_integer_value(json_object_get(o, "lines")) : 0;
	json_decref(o);
	return n;
}

/* Reads the output: one bundle per serial K-1..K-n, in any order. */
static bundle *read_bundles(void)
{
	bundle *b = calloc((size_t)nserials + 1, sizeof *b);
	assert_non_null(b);
	bundles = b;
	FILE *f = fopen(out, "r");
	assert_non_null(f);
	char *line = NULL;
	size_t cap = 0;
	long count = 0;
	while(getline(&line, &cap, f) > 0) {
		json_t *o = json_loads(line, 0, NULL);
		assert_non_null(o);
		const char *serial = json_string_value(json_object_get(o, "serialNumber"));
		const char *id = json_string_value(json_object_get(o, "deviceId"));
		const char *secret = json_string_value(h_at(o, "mqtt.password"));
		assert_non_null(serial);
		assert_non_null(id);
		assert_non_null(secret);
		assert_true(strncmp(serial, "K-", 2) == 0);
		long i = atol(serial + 2);
		assert_true(i >= 1 && i <= nserials);
		if(b[i].id[0]) fail_msg("serial %s is twice in the output", serial);
		snprintf(b[i].id, sizeof b[i].id, "%s", id);
		snprintf(b[i].secret, sizeof b[i].secret, "%s", secret);
		count++;
		json_decref(o);
	}
	free(line);
	fclose(f);
	assert_int_equal(count, nserials);
	return b;
}

static int64_t query_count(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t n = -1;
	if(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, tid, -1, SQLITE_STATIC);
		if(sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	return n;
}

/* The store: one device per serial, and each bundle's secret is its device's credential. */
static void check_store(const bundle *b)
{
	uint8_t key[32];
	assert_int_equal(bu_hmac_key(&srv, key), 0);
	char path[400];
	snprintf(path, sizeof path, "%s/imprint.db", srv.data);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(query_count(db, "SELECT count(*) FROM devices WHERE template_id = ?1"), nserials);
	assert_int_equal(query_count(db, "SELECT count(DISTINCT serial) FROM devices WHERE template_id = ?1"), nserials);
	assert_int_equal(query_count(db, "SELECT count(*) FROM (SELECT serial FROM devices WHERE template_id = ?1 "
	                                 "GROUP BY serial HAVING count(*) > 1)"),
	                 0);
	/* every device of the batch has exactly one credential... */
	assert_int_equal(query_count(db, "SELECT count(*) FROM credentials c JOIN devices d ON d.id = c.entity_id "
	                                 "WHERE d.template_id = ?1 AND c.entity_type = 'device'"),
	                 nserials);
	/* ...and it is the one in the output (the output's device ids are distinct: n bundles
	 * matching n devices leaves no device out) */
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db,
	                                    "SELECT c.secret, d.serial FROM devices d JOIN credentials c ON c.entity_id = d.id "
	                                    "WHERE d.id = ?1 AND d.template_id = ?2",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	long mismatched = 0;
	for(long i = 1; i <= nserials; i++) {
		char hash[65], serial[32];
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, b[i].id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, tid, -1, SQLITE_STATIC);
		snprintf(serial, sizeof serial, "K-%ld", i);
		if(sqlite3_step(st) != SQLITE_ROW) fail_msg("device %s of %s is not in the store", b[i].id, serial);
		bu_secret_hash(key, b[i].secret, hash);
		const char *stored = (const char *)sqlite3_column_text(st, 0);
		const char *dserial = (const char *)sqlite3_column_text(st, 1);
		if(!stored || strcmp(stored, hash) != 0 || !dserial || strcmp(dserial, serial) != 0) {
			if(mismatched++ < 5) fprintf(stderr, "%s: the secret in the output is not the device's\n", serial);
		}
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	assert_int_equal(mismatched, 0);
}

static void killed_batches_complete_exactly_once(void **state)
{
	const char *args[] = {"--server", srv.url, "--template", tid, "--serials", serials,
	                      "--out", out, "--chunk", "1000", NULL};
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	int kills = 0;
	time_t t0 = time(NULL);
	while(kills < KILLS) {
		/* anywhere from startup to a few chunks in: up to 1.5 s, less as the lines left
		 * shrink (a fast build would otherwise finish before the kills are done) */
		long left = nserials - state_lines();
		long window = 1500000L * (left > 0 ? left : 0) / nserials * (KILLS - kills) / KILLS;
		if(window < 20000) window = 20000;
		pid_t pid = bu_spawn(srv.admin.api_key, err, args);
		assert_true(pid > 0);
		usleep((useconds_t)(rand() % window));
		kill(pid, SIGKILL);
		bu_result r = bu_wait(pid);
		if(r.status != -1) {
			/* it finished before the kill: the batch is shorter than the kills need */
			fprintf(stderr, "the run ended (status %d) before kill %d\n", r.status, kills + 1);
			break;
		}
		kills++;
	}
	fprintf(stderr, "%d kills in %ld s; %ld of %ld lines done before the last run\n", kills, (long)(time(NULL) - t0),
	        state_lines(), nserials);
	assert_true(kills >= KILLS || nserials < 100000);
	bu_result r = bu_run(srv.admin.api_key, err, args);
	assert_int_equal(r.status, 0);
	fprintf(stderr, "completed after %ld s; last run peak memory %ld KiB\n", (long)(time(NULL) - t0), r.maxrss_kb);
	assert_int_equal(state_lines(), nserials);

	bundle *b = read_bundles();
	check_store(b);
	/* a sample of 1,000 secrets at the broker hook */
	for(int k = 0; k < 1000; k++) {
		long i = 1 + rand() % nserials;
		if(bu_authenticate(&srv, broker, b[i].id, b[i].secret) != 1)
			fail_msg("K-%ld: its secret does not authenticate", i);
	}
	char *text = bu_slurp(err, NULL);
	assert_non_null(text);
	for(long i = 1; i <= nserials; i++) {
		if(strstr(text, b[i].secret)) fail_msg("a secret is on the CLI's stderr");
	}
	assert_null(strstr(text, "AddressSanitizer"));
	assert_null(strstr(text, "runtime error"));
	free(text);
	assert_false(h_log_contains(&srv, "AddressSanitizer"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(killed_batches_complete_exactly_once)};
	return cmocka_run_group_tests(tests, setup, teardown);
}
