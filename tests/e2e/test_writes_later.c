/* Writes answered after their commit (server.c's write pool, imp_db_commit_later): the
 * answer of a write must never reach its client before the commit that holds the work, and
 * a client that gives up while its write waits for the commit must cost the server nothing
 * (no crash, no leak: this build runs with ASan's leak checker, which fails the server's
 * exit status at its clean stop). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define THREADS 6
#define ROUNDS 25
#define ABANDONED 64

static h_server srv;
static char tid[64];

typedef struct {
	int n;
	int failures;
	char what[200];   /* the first failure */
} worker;

static void note_fail(worker *w, const char *what, long status)
{
	if(!w->failures++) snprintf(w->what, sizeof w->what, "thread %d: %s (status %ld)", w->n, what, status);
}

/* The next call comes on another connection of another HTTP thread: what a write's answer
 * said is done must be there for it. */
static h_resp read_back(const char *path)
{
	return h_call(&srv, "GET", path, srv.admin.api_key, NULL, NULL);
}

/* Every kind of write that commits later, each read back at once. */
static void *write_and_read(void *arg)
{
	worker *w = arg;
	const char *key = srv.admin.api_key;
	for(int i = 0; i < ROUNDS && !w->failures; i++) {
		char body[256], path[128], id[64], cred[64], extra[128];
		snprintf(body, sizeof body, "{\"deviceTemplateId\":\"%s\",\"serialNumber\":\"L%d-%d\"}", tid, w->n, i);
		h_resp r = h_call(&srv, "POST", "/api/v1/devices", key, body, NULL);
		if(r.status != 201 || !h_str(&r, "device.id")) {
			note_fail(w, "create", r.status);
			h_resp_free(&r);
			break;
		}
		snprintf(id, sizeof id, "%s", h_str(&r, "device.id"));
		h_resp_free(&r);
		snprintf(path, sizeof path, "/api/v1/devices/%s", id);
		r = read_back(path);
		if(r.status != 200) note_fail(w, "created device not readable at once", r.status);
		h_resp_free(&r);

		r = h_call(&srv, "PUT", path, key, "{\"name\":\"renamed\"}", NULL);
		if(r.status != 200) note_fail(w, "update", r.status);
		h_resp_free(&r);
		r = read_back(path);
		const char *name = h_str(&r, "device.name");
		if(r.status != 200 || !name || strcmp(name, "renamed") != 0) note_fail(w, "update not readable at once", r.status);
		h_resp_free(&r);

		snprintf(extra, sizeof extra, "/api/v1/devices/%s/disable", id);
		r = h_call(&srv, "POST", extra, key, NULL, NULL);
		if(r.status != 200 || !json_is_true(h_at(r.json, "device.disabled"))) note_fail(w, "disable", r.status);
		h_resp_free(&r);
		r = read_back(path);
		if(r.status != 200 || !json_is_true(h_at(r.json, "device.disabled"))) note_fail(w, "disable not readable at once", r.status);
		h_resp_free(&r);
		snprintf(extra, sizeof extra, "/api/v1/devices/%s/enable", id);
		r = h_call(&srv, "POST", extra, key, NULL, NULL);
		if(r.status != 200 || !json_is_false(h_at(r.json, "device.disabled"))) note_fail(w, "enable", r.status);
		h_resp_free(&r);

		snprintf(body, sizeof body, "{\"entityType\":\"device\",\"entityId\":\"%s\"}", id);
		r = h_call(&srv, "POST", "/api/v1/access/mqtt-credentials", key, body, NULL);
		const char *cid = h_str(&r, "mqttCredential.id");
		if(r.status != 200 || !cid || !h_str(&r, "mqttCredential.secret")) {
			note_fail(w, "credential", r.status);
			h_resp_free(&r);
			break;
		}
		snprintf(cred, sizeof cred, "%s", cid);
		h_resp_free(&r);
		r = read_back(path);
		const char *state = h_str(&r, "device.provisioningState");
		if(r.status != 200 || !state || strcmp(state, "activated") != 0) note_fail(w, "activation not readable at once", r.status);
		h_resp_free(&r);
		snprintf(extra, sizeof extra, "/api/v1/access/mqtt-credentials/%s", cred);
		r = h_call(&srv, "DELETE", extra, key, NULL, NULL);
		if(r.status != 204) note_fail(w, "revoke", r.status);
		h_resp_free(&r);
		r = read_back(extra);
		if(r.status != 404) note_fail(w, "revoked credential still readable", r.status);
		h_resp_free(&r);

		r = h_call(&srv, "DELETE", path, key, NULL, NULL);
		if(r.status != 204) note_fail(w, "delete", r.status);
		h_resp_free(&r);
		r = read_back(path);
		if(r.status != 404) note_fail(w, "deleted device still readable", r.status);
		h_resp_free(&r);
	}
	h_thread_done();
	return NULL;
}

static void test_answers_follow_commits(void **state)
{
	(void)state;
	pthread_t t[THREADS];
	worker w[THREADS];
	for(int i = 0; i < THREADS; i++) {
		w[i] = (worker){.n = i};
		assert_int_equal(pthread_create(&t[i], NULL, write_and_read, &w[i]), 0);
	}
	for(int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
	for(int i = 0; i < THREADS; i++) {
		if(w[i].failures) fail_msg("%s", w[i].what);
	}
}

static size_t drop(char *p, size_t size, size_t n, void *u)
{
	(void)p;
	(void)u;
	return size * n;
}

/* ABANDONED creates at once, each given up by its client after a few milliseconds: some
 * before the server read them, some while their write waited for its group, some after. */
static void test_abandoned_writes(void **state)
{
	(void)state;
	char url[128], auth[200], body[ABANDONED][200];
	snprintf(url, sizeof url, "%s/api/v1/devices", srv.url);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", srv.admin.api_key);
	struct curl_slist *hdr = curl_slist_append(NULL, auth);
	hdr = curl_slist_append(hdr, "Content-Type: application/json");
	for(int round = 0; round < 8; round++) {
		CURLM *m = curl_multi_init();
		CURL *e[ABANDONED];
		for(int i = 0; i < ABANDONED; i++) {
			snprintf(body[i], sizeof body[i], "{\"deviceTemplateId\":\"%s\",\"serialNumber\":\"A%d-%d\"}", tid, round, i);
			e[i] = curl_easy_init();
			curl_easy_setopt(e[i], CURLOPT_URL, url);
			curl_easy_setopt(e[i], CURLOPT_HTTPHEADER, hdr);
			curl_easy_setopt(e[i], CURLOPT_POSTFIELDS, body[i]);
			curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, drop);
			curl_easy_setopt(e[i], CURLOPT_TIMEOUT_MS, 1L + (long)(i % 8));
			curl_multi_add_handle(m, e[i]);
		}
		int running = 1;
		while(running) {
			curl_multi_perform(m, &running);
			if(running) curl_multi_poll(m, NULL, 0, 50, NULL);
		}
		for(int i = 0; i < ABANDONED; i++) {
			curl_multi_remove_handle(m, e[i]);
			curl_easy_cleanup(e[i]);
		}
		curl_multi_cleanup(m);
	}
	curl_slist_free_all(hdr);
	/* The server goes on: a write and a read after the storm are answered. */
	char body1[200], id[64];
	snprintf(body1, sizeof body1, "{\"deviceTemplateId\":\"%s\",\"serialNumber\":\"after\"}", tid);
	assert_int_equal(h_create(&srv, srv.admin.api_key, "/api/v1/devices", body1, "device.id", id, sizeof id), 0);
	char path[128];
	snprintf(path, sizeof path, "/api/v1/devices/%s", id);
	h_resp r = read_back(path);
	assert_int_equal(r.status, 200);
	h_resp_free(&r);
}

static int setup(void **state)
{
	(void)state;
	if(h_server_start(&srv)) return -1;
	return h_create(&srv, srv.admin.api_key, "/api/v1/devices/templates", "{\"name\":\"Later\"}", "deviceTemplate.id",
	                tid, sizeof tid);
}

/* Last: a clean stop. With ASan's leak checker, a write's state never freed fails it. */
static void test_clean_stop(void **state)
{
	(void)state;
	assert_int_equal(h_server_stop(&srv), 0);
}

static int teardown(void **state)
{
	(void)state;
	h_server_destroy(&srv);
	return 0;
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answers_follow_commits),
		cmocka_unit_test(test_abandoned_writes),
		cmocka_unit_test(test_clean_stop),
	};
	int rc = cmocka_run_group_tests(tests, setup, teardown);
	curl_global_cleanup();
	return rc;
}
