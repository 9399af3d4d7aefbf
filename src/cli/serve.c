/* imprint serve: the API and the broker until SIGINT or SIGTERM. The signals are blocked
 * before any thread starts, so only sigwait() here sees them, and requests in flight
 * finish; then the broker is stopped. */
#include <malloc.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api/router.h"
#include "api/server.h"
#include "cli/broker.h"
#include "cli/cli.h"
#include "core/limits.h"
#include "core/ratelimit.h"

static int usage(void)
{
	fprintf(stderr,
	        "usage: imprint serve --data DIR [--listen HOST:PORT] [--no-broker]\n"
	        "         [--mqtt-listen HOST:PORT|off] [--mqtt-insecure] [--mqtts-listen HOST:PORT|off]\n"
	        "         [--mqtts-cert-listen HOST:PORT|off] [--tls-cert FILE --tls-key FILE]\n"
	        "         [--broker-plugin FILE] [--broker-insecure-no-plugin] [--mosquitto FILE]\n");
	return 2;
}

int imp_cmd_serve(int argc, char **argv)
{
	const char *data = NULL, *listen = "127.0.0.1:8080";
	int no_broker = 0;
	imp_broker_opts bo = {.mqtt_listen = IMP_MQTT_LISTEN,
	                      .mqtts_listen = IMP_MQTTS_LISTEN,
	                      .mqtts_cert_listen = IMP_MQTTS_CERT_LISTEN};
	for(int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		const char **slot = NULL;
		if(strcmp(a, "--data") == 0) slot = &data;
		else if(strcmp(a, "--listen") == 0) slot = &listen;
		else if(strcmp(a, "--mqtt-listen") == 0) slot = &bo.mqtt_listen;
		else if(strcmp(a, "--mqtts-listen") == 0) slot = &bo.mqtts_listen;
		else if(strcmp(a, "--mqtts-cert-listen") == 0) slot = &bo.mqtts_cert_listen;
		else if(strcmp(a, "--tls-cert") == 0) slot = &bo.tls_cert;
		else if(strcmp(a, "--tls-key") == 0) slot = &bo.tls_key;
		else if(strcmp(a, "--broker-plugin") == 0) slot = &bo.plugin;
		else if(strcmp(a, "--mosquitto") == 0) slot = &bo.mosquitto;
		else if(strcmp(a, "--no-broker") == 0) no_broker = 1;
		else if(strcmp(a, "--mqtt-insecure") == 0) bo.mqtt_insecure = 1;
		else if(strcmp(a, "--broker-insecure-no-plugin") == 0) bo.insecure_no_plugin = 1;
		else return usage();
		if(slot) {
			if(!v) return usage();
			*slot = v;
			i++;
		}
	}
	if(!data) {
		fprintf(stderr, "imprint serve: --data DIR is required\n");
		return 2;
	}
	bo.data_dir = data;
	char db_path[4096], key_path[4096];
	snprintf(db_path, sizeof db_path, "%s/%s", data, IMP_DB_FILE);
	snprintf(key_path, sizeof key_path, "%s/%s", data, IMP_KEYS_FILE);

	imp_app app = {0};
	app.data_dir = data;
	if(imp_keys_load(key_path, &app.keys) || imp_store_open(db_path, 0, &app.store)) {
		fprintf(stderr, "imprint serve: %s is not an initialised data directory (run imprint init --data %s)\n", data, data);
		return 2;
	}
	/* Ten failed logins per email address in five minutes, fifty per client address per minute. */
	app.login_by_email = imp_ratelimit_new(10, 300);
	app.login_by_addr = imp_ratelimit_new(50, 60);
	/* Claims (docs/manufacturing.md, "Field provisioning"): sixty a minute per claim token,
	 * twenty failed ones a minute per client address. */
	app.claim_by_token = imp_ratelimit_new(60, 60);
	app.claim_fail_by_addr = imp_ratelimit_new(20, 60);
	app.assoc_by_caller = imp_ratelimit_new(IMP_ASSOC_FAILS_CALLER, 60);
	app.assoc_by_account = imp_ratelimit_new(IMP_ASSOC_FAILS_ACCOUNT, 60);

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* HTTP threads: 4 a core. Writes run on the server's own pool and never hold an HTTP
	 * thread to their commit, so the count is for reads: with connections spread evenly
	 * (server.c), 4 a core measured GET by id 18,365-19,345/s and the filtered page's p99
	 * 3.5-4.1 ms, 8 a core 16,137-17,127/s and 5.1 ms; device creates measured the same
	 * with 2 a core as with 4 (bench/README.md). */
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	/* SQLite's page caches come and go in blocks over glibc's default mmap threshold;
	 * keep them in the heap instead of a munmap and mmap per request. (glibc's allocator:
	 * the sanitized build, or one with IMP_MIMALLOC off. The release binary allocates with
	 * mimalloc, for which these do nothing.) */
	mallopt(M_MMAP_THRESHOLD, 8 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	unsigned threads = cores > 0 ? (unsigned)cores * 4 : 8;
	imp_server *srv = NULL;
	imp_broker *broker = NULL;
	int status = 0;
	/* The broker first: the API's "listening" line then means both are up. */
	if(!no_broker && imp_broker_start(&bo, &broker)) {
		status = 2;
		goto out;
	}
	imp_err rc = app.login_by_email && app.login_by_addr && app.claim_by_token && app.claim_fail_by_addr &&
	                     app.assoc_by_caller && app.assoc_by_account
	                 ? imp_server_start(&app, listen, threads, &srv)
	                 : IMP_ERR_NOMEM;
	if(rc) {
		fprintf(stderr, "imprint serve: cannot listen on %s (%s)\n", listen, imp_err_name(rc));
		status = 1;
	} else {
		char host[256];
		snprintf(host, sizeof host, "%s", listen);
		char *colon = strrchr(host, ':');
		if(colon) *colon = '\0';
		fprintf(stderr, "imprint: listening on http://%s:%u\n", host, imp_server_port(srv));
		int sig = 0;
		sigwait(&set, &sig);
		fprintf(stderr, "imprint: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
		imp_server_stop(&srv, 10000);
	}
	imp_broker_stop(&broker);
out:
	imp_ratelimit_free(&app.login_by_email);
	imp_ratelimit_free(&app.login_by_addr);
	imp_ratelimit_free(&app.claim_by_token);
	imp_ratelimit_free(&app.claim_fail_by_addr);
	imp_ratelimit_free(&app.assoc_by_caller);
	imp_ratelimit_free(&app.assoc_by_account);
	imp_store_close(&app.store);
	sodium_memzero(&app.keys, sizeof app.keys);
	return status;
}

int imp_cmd_routes(int argc, char **argv)
{
	size_t n;
	const imp_route *r = imp_routes(&n);
	for(size_t i = 0; i < n; i++) printf("%s %s%s\n", r[i].method, r[i].pattern, r[i].stream ? " (streams NDJSON)" : "");
	return 0;
}
