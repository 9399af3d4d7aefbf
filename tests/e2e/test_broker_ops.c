/* imprint serve with its broker: mosquitto started with the configuration serve writes
 * (a stub plugin stands in for imprint's), restarted when it dies, stopped with serve and
 * when serve is killed, left out by --no-broker; TLS with DATA/tls/ca.crt, client
 * certificates from the account's device CA; clear refusals for a taken port, a plain
 * listener off loopback and a missing plugin. Clients are mosquitto_pub. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/devca.h"
#include "core/files.h"
#include "core/mem.h"
#include "core/x509.h"
#include "harness.h"

#ifndef STUB_PLUGIN
#define STUB_PLUGIN "" /* no mosquitto-dev: the test is disabled */
#endif

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A port nothing listens on now (bound and released). */

static int listening(unsigned port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
	close(fd);
	return ok;
}

typedef struct {
	h_server s;
	unsigned plain, tls, cert;
	char a_plain[32], a_tls[32], a_cert[32];
} broker_srv;

/* serve with the stub plugin on three free ports, plus extra (NULL-terminated or NULL). */
static int start(broker_srv *b, const char *const *extra)
{
	b->plain = h_free_port();
	b->tls = h_free_port();
	b->cert = h_free_port();
	snprintf(b->a_plain, sizeof b->a_plain, "127.0.0.1:%u", b->plain);
	snprintf(b->a_tls, sizeof b->a_tls, "127.0.0.1:%u", b->tls);
	snprintf(b->a_cert, sizeof b->a_cert, "127.0.0.1:%u", b->cert);
	const char *args[17] = {"--mqtt-listen", b->a_plain, "--mqtts-listen", b->a_tls, "--mqtts-cert-listen",
	                        b->a_cert, "--broker-plugin", STUB_PLUGIN};
	int n = 8;
	for(int i = 0; extra && extra[i] && n < 16; i++) args[n++] = extra[i];
	args[n] = NULL;
	return h_server_start_args(&b->s, args);
}

/* The pid in the last "broker running (mosquitto pid N)" of the log, or 0. */
static pid_t broker_pid(h_server *s)
{
	char *text = NULL;
	pid_t pid = 0;
	if(imp_file_read(s->log, 64 << 20, &text)) return 0;
	const char *key = "broker running (mosquitto pid ", *p = text, *q;
	while((q = strstr(p, key))) {
		pid = (pid_t)strtol(q + strlen(key), NULL, 10);
		p = q + 1;
	}
	imp_free(text);
	return pid;
}

/* 1 while pid is a live process (a zombie counts as gone). */
static int alive(pid_t pid)
{
	char path[64], stat[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if(!f) return 0;
	size_t n = fread(stat, 1, sizeof stat - 1, f);
	fclose(f);
	stat[n] = '\0';
	const char *close_paren = strrchr(stat, ')');
	return close_paren && close_paren[1] == ' ' && close_paren[2] != 'Z' && close_paren[2] != 'X';
}

static int gone_within(pid_t pid, double seconds)
{
	for(double end = now_s() + seconds; now_s() < end; usleep(20000))
		if(!alive(pid)) return 1;
	return 0;
}

/* mosquitto_pub with args (NULL-terminated) after its program name; its exit status. Its
 * output goes to the server's log, to read when a test fails. */
static int pub(h_server *s, const char *const *args)
{
	const char *argv[32] = {"mosquitto_pub"};
	int n = 1;
	while(args[n - 1] && n < 31) {
		argv[n] = args[n - 1];
		n++;
	}
	argv[n] = NULL;
	pid_t pid = fork();
	if(pid == 0) {
		int fd = open(s->log, O_WRONLY | O_APPEND);
		if(fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		alarm(20); /* survives exec: a client that hangs is killed */
		execvp("mosquitto_pub", (char *const *)argv);
		_exit(127);
	}
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int pub_plain(broker_srv *b, const char *user)
{
	char port[16];
	snprintf(port, sizeof port, "%u", b->plain);
	const char *args[] = {"-h", "127.0.0.1", "-p", port, "-i", "dev-1", "-u", user, "-P", "secret",
	                      "-t", "t", "-m", "m", NULL};
	return pub(&b->s, args);
}

static void stop_and_destroy(broker_srv *b)
{
	pid_t mq = broker_pid(&b->s);
	assert_int_equal(h_server_stop(&b->s), 0);
	if(mq) assert_false(alive(mq));
	h_server_destroy(&b->s);
}

/* Starts with the plugin; kill -9 of mosquitto is followed by a new one within seconds
 * that clients reach; SIGTERM of serve ends mosquitto too. */
static void supervised(void **state)
{
	broker_srv b;
	assert_int_equal(start(&b, NULL), 0);
	assert_true(h_log_contains(&b.s, "stub plugin: data="));
	assert_true(h_log_contains(&b.s, "imprint: MQTT on mqtt://127.0.0.1:"));
	assert_int_equal(pub_plain(&b, "dev-1"), 0);
	assert_int_not_equal(pub_plain(&b, "nobody"), 0); /* the plugin decides */

	pid_t first = broker_pid(&b.s);
	assert_true(first > 0);
	double t0 = now_s();
	assert_int_equal(kill(first, SIGKILL), 0);
	pid_t second = 0;
	while(now_s() - t0 < 10 && ((second = broker_pid(&b.s)) == first || second == 0)) usleep(20000);
	double took = now_s() - t0;
	fprintf(stderr, "# mosquitto back %.2f s after kill -9\n", took);
	assert_true(second != first && second > 0);
	assert_true(took < 5);
	assert_true(h_log_contains(&b.s, "was killed by signal 9"));
	assert_int_equal(pub_plain(&b, "dev-1"), 0);

	/* SIGTERM to serve: mosquitto is stopped and waited for before serve exits 0. */
	assert_int_equal(h_server_stop(&b.s), 0);
	assert_false(alive(second));
	assert_false(listening(b.plain));
	assert_true(h_log_contains(&b.s, "mosquitto: mosquitto version 2"));
	h_server_destroy(&b.s);
}

/* A broker left running with this data directory's configuration (serve gone without it)
 * is stopped by the next serve instead of holding the ports. */
static void stale_broker_stopped(void **state)
{
	broker_srv b;
	assert_int_equal(start(&b, NULL), 0);
	assert_int_equal(h_server_stop(&b.s), 0);
	char conf[512], pidf[512];
	snprintf(conf, sizeof conf, "%s/broker/mosquitto.conf", b.s.data);
	snprintf(pidf, sizeof pidf, "%s/broker/mosquitto.pid", b.s.data);
	pid_t stale = fork();
	if(stale == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		dup2(null, 2);
		setpgid(0, 0);
		execlp("mosquitto", "mosquitto", "-c", conf, (char *)NULL);
		execl("/usr/sbin/mosquitto", "mosquitto", "-c", conf, (char *)NULL);
		_exit(127);
	}
	for(double end = now_s() + 10; !listening(b.plain) && now_s() < end;) usleep(20000);
	assert_true(listening(b.plain));
	FILE *f = fopen(pidf, "w");
	assert_non_null(f);
	fprintf(f, "%d\n", (int)stale);
	fclose(f);
	assert_int_equal(h_server_restart(&b.s), 0);
	assert_true(h_log_contains(&b.s, "left running by an earlier serve"));
	int st;
	assert_int_equal(waitpid(stale, &st, 0), stale);
	assert_int_equal(pub_plain(&b, "dev-1"), 0);
	h_server_destroy(&b.s);
}

/* kill -9 of serve: mosquitto gets its parent-death signal and exits. */
static void dies_with_serve(void **state)
{
	broker_srv b;
	assert_int_equal(start(&b, NULL), 0);
	pid_t mq = broker_pid(&b.s);
	assert_true(mq > 0 && alive(mq));
	h_server_kill(&b.s);
	assert_true(gone_within(mq, 5));
	for(double end = now_s() + 5; listening(b.plain) && now_s() < end;) usleep(20000);
	assert_false(listening(b.plain));
	h_server_destroy(&b.s);
}

static void no_broker(void **state)
{
	h_server s;
	unsigned port = h_free_port();
	char addr[32];
	snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
	const char *args[] = {"--no-broker", "--mqtt-listen", addr, "--broker-plugin", STUB_PLUGIN, NULL};
	assert_int_equal(h_server_start_args(&s, args), 0);
	h_resp r = h_call(&s, "GET", "/healthz", NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	h_resp_free(&r);
	assert_false(listening(port));
	assert_false(h_log_contains(&s, "mosquitto"));
	assert_int_equal(h_server_stop(&s), 0);
	h_server_destroy(&s);
}

/* A file in the data directory's parent with text in it; its path into out. */
static void write_beside(h_server *s, const char *name, const char *text, char *out, size_t cap)
{
	snprintf(out, cap, "%s.%s", s->data, name);
	FILE *f = fopen(out, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* 8883: verified with DATA/tls/ca.crt, refused with another CA. 8884: a certificate from
 * the account's device CA gets in, no certificate does not. */
static void tls_listeners(void **state)
{
	broker_srv b;
	assert_int_equal(start(&b, NULL), 0);
	char port[16], cport[16], ca[300], wrong[400], crt[400], key[400];
	snprintf(port, sizeof port, "%u", b.tls);
	snprintf(cport, sizeof cport, "%u", b.cert);
	snprintf(ca, sizeof ca, "%s/tls/ca.crt", b.s.data);

	const char *good[] = {"-h", "localhost", "-p", port, "--cafile", ca, "-i", "dev-1", "-u", "dev-1", "-P", "x",
	                      "-t", "t", "-m", "m", NULL};
	assert_int_equal(pub(&b.s, good), 0);
	const char *by_ip[] = {"-h", "127.0.0.1", "-p", port, "--cafile", ca, "-i", "dev-1", "-u", "dev-1", "-P", "x",
	                       "-t", "t", "-m", "m", NULL};
	assert_int_equal(pub(&b.s, by_ip), 0);

	char *other = NULL, *other_key = NULL;
	assert_int_equal(imp_ca_create("imprint server CA", 30, &other, &other_key), IMP_OK);
	write_beside(&b.s, "wrong-ca.crt", other, wrong, sizeof wrong);
	const char *bad[] = {"-h", "localhost", "-p", port, "--cafile", wrong, "-i", "dev-1", "-u", "dev-1", "-P", "x",
	                     "-t", "t", "-m", "m", NULL};
	assert_int_not_equal(pub(&b.s, bad), 0);

	/* A device certificate from the account's device CA, which serve put in the capath. */
	char *ca_pem = NULL, *ca_key = NULL, *dkey = NULL, *csr = NULL, *dcrt = NULL;
	assert_int_equal(imp_devca_load(b.s.data, b.s.admin.account_id, &ca_pem, &ca_key), IMP_OK);
	assert_int_equal(imp_keypair_csr("dev-1", &dkey, &csr), IMP_OK);
	assert_int_equal(imp_csr_sign(csr, strlen(csr), ca_pem, ca_key, "dev-1", 10, &dcrt, NULL, 0), IMP_OK);
	write_beside(&b.s, "dev.crt", dcrt, crt, sizeof crt);
	write_beside(&b.s, "dev.key", dkey, key, sizeof key);
	const char *with_cert[] = {"-h", "localhost", "-p", cport, "--cafile", ca, "--cert", crt, "--key", key,
	                           "-i", "dev-1", "-t", "t", "-m", "m", NULL};
	assert_int_equal(pub(&b.s, with_cert), 0);
	const char *no_cert[] = {"-h", "localhost", "-p", cport, "--cafile", ca, "-i", "dev-1", "-t", "t", "-m", "m",
	                         NULL};
	assert_int_not_equal(pub(&b.s, no_cert), 0);

	unlink(wrong);
	unlink(crt);
	unlink(key);
	imp_free(other);
	imp_free(ca_pem);
	imp_free(csr);
	imp_free(dcrt);
	imp_key_pem_free(&other_key);
	imp_key_pem_free(&ca_key);
	imp_key_pem_free(&dkey);
	stop_and_destroy(&b);
}

/* Another process holds the plain port: serve says so and exits 2, leaving nothing. */
static void port_in_use(void **state)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t n = sizeof a;
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &n), 0);
	char addr[32];
	snprintf(addr, sizeof addr, "127.0.0.1:%u", ntohs(a.sin_port));
	broker_srv b;
	const char *extra[] = {"--mqtt-listen", addr, NULL}; /* the later one wins */
	double t0 = now_s();
	assert_int_not_equal(start(&b, extra), 0);
	fprintf(stderr, "# refused in %.2f s\n", now_s() - t0);
	assert_int_equal(b.s.exit_status, 2);
	assert_true(h_log_contains(&b.s, "Address already in use"));
	assert_true(h_log_contains(&b.s, "an MQTT port is taken"));
	assert_false(listening(b.tls));
	close(fd);
	h_server_destroy(&b.s);
}

/* Refused before anything starts: plain MQTT off loopback, a plugin that is not there. */
static void refusals(void **state)
{
	static const struct {
		const char *args[8];
		const char *says;
	} cases[] = {
	    {{"--mqtt-listen", "0.0.0.0:1", NULL}, "listens only on loopback"},
	    {{"--mqtt-listen", "nonsense", NULL}, "expected HOST:PORT"},
	    {{"--mqtt-listen", "127.0.0.1:70000", NULL}, "expected HOST:PORT"},
	    {{"--broker-plugin", "/nonexistent/imprint_mosquitto.so", NULL}, "is not there"},
	    {{"--broker-plugin", "/nonexistent/p.so", "--broker-insecure-no-plugin", "--mqtts-listen", "0.0.0.0:1", NULL},
	     "must be on loopback"},
	    {{"--mqtt-listen", "off", "--mqtts-listen", "off", "--mqtts-cert-listen", "off", NULL}, "every MQTT listener is off"},
	    {{"--tls-cert", "/nonexistent.crt", NULL}, "go together"},
	    {{"--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key", NULL}, "cannot read /nonexistent.crt"},
	    {{"--mosquitto", "/nonexistent/mosquitto", NULL}, "not an executable file"},
	};
	for(size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		broker_srv b;
		assert_int_not_equal(start(&b, cases[i].args), 0);
		if(b.s.exit_status != 2 || !h_log_contains(&b.s, cases[i].says)) {
			fprintf(stderr, "case %zu: exit %d, log lacks \"%s\"\n", i, b.s.exit_status, cases[i].says);
			fail();
		}
		h_server_destroy(&b.s);
	}
}

/* Without the plugin, only when asked: every client gets in on loopback. */
static void insecure_no_plugin(void **state)
{
	broker_srv b;
	const char *extra[] = {"--broker-plugin", "/nonexistent/p.so", "--broker-insecure-no-plugin", NULL};
	assert_int_equal(start(&b, extra), 0);
	assert_true(h_log_contains(&b.s, "WARNING: the broker runs without its plugin"));
	assert_int_equal(pub_plain(&b, "nobody"), 0);
	stop_and_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(supervised),      cmocka_unit_test(dies_with_serve), cmocka_unit_test(no_broker),
	    cmocka_unit_test(tls_listeners),   cmocka_unit_test(port_in_use),     cmocka_unit_test(refusals),
	    cmocka_unit_test(insecure_no_plugin), cmocka_unit_test(stale_broker_stopped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
