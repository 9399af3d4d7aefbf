/* `imprint batch` over a file of 1,000,000 copies of one serial number: one device, a
 * duplicate_serial error for every other line, exit status 1, and the CLI's peak memory
 * bounded (it keeps no set of serial numbers: the server refuses duplicates under the
 * batch's Idempotency-Key). The secret never reaches stderr. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "batch_util.h"

#define COPIES 1000000L

static h_server srv;
static char tid[64], broker[128], work[64];

static int setup(void **state)
{
	snprintf(work, sizeof work, "/tmp/imprint-batch-XXXXXX");
	if(!mkdtemp(work)) return -1;
	if(h_server_start(&srv)) return -1;
	if(bu_template(&srv, "dups", "password", tid)) return -1;
	return bu_broker_key(&srv, broker);
}

static int teardown(void **state)
{
	h_server_destroy(&srv);
	char cmd[200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
	if(system(cmd) != 0) fprintf(stderr, "could not remove %s\n", work);
	return 0;
}

static void a_million_copies_make_one_device(void **state)
{
	char serials[100], out[100], err[100];
	snprintf(serials, sizeof serials, "%s/dups.txt", work);
	snprintf(out, sizeof out, "%s/dups.jsonl", work);
	snprintf(err, sizeof err, "%s/stderr.txt", work);
	FILE *f = fopen(serials, "w");
	assert_non_null(f);
	for(long i = 0; i < COPIES; i++) fputs("SAME-1\n", f);
	assert_int_equal(fclose(f), 0);

	const char *args[] = {"--server", srv.url, "--template", tid, "--serials", serials, "--out", out,
	                      "--chunk", "5000", NULL};
	time_t t0 = time(NULL);
	bu_result r = bu_run(srv.admin.api_key, err, args);
	fprintf(stderr, "%ld lines in %ld s; CLI peak memory %ld KiB\n", COPIES, (long)(time(NULL) - t0), r.maxrss_kb);
	assert_int_equal(r.status, 1);
	assert_true(r.maxrss_kb < 64 * 1024);
	assert_int_equal(bu_count_lines(err, "line "), COPIES - 1);
	assert_int_equal(bu_count_lines(out, "{"), 1);

	json_t *o = json_load_file(out, 0, NULL);
	assert_non_null(o);
	const char *id = json_string_value(json_object_get(o, "deviceId"));
	const char *secret = json_string_value(h_at(o, "mqtt.password"));
	assert_non_null(secret);
	assert_int_equal(bu_authenticate(&srv, broker, id, secret), 1);
	assert_false(bu_file_contains(err, secret));
	json_decref(o);

	h_resp resp = h_call(&srv, "GET", "/api/v1/devices?serialNumber=SAME-1", srv.admin.api_key, NULL, NULL);
	assert_int_equal(json_integer_value(h_at(resp.json, "devices.meta.count")), 1);
	h_resp_free(&resp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(a_million_copies_make_one_device)};
	return cmocka_run_group_tests(tests, setup, teardown);
}
