/* End-to-end: the broker as `make run` brings it up. `imprint serve` starts mosquitto with
 * imprint's real plugin on three free loopback ports (plain, TLS, TLS with client
 * certificates), and devices connect with what the API gave them: a password device on
 * the plain and TLS ports (TLS checked against DATA/tls/ca.crt), a certificate device with
 * a certificate signed from its CSR and with a self-signed one registered while the broker
 * runs. Clients are mosquitto_pub, as a firmware developer would try them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/x509.h"
#include "harness.h"

static h_server S;
static unsigned P_PLAIN, P_TLS, P_CERT;
static char A_PLAIN[32], A_TLS[32], A_CERT[32];
static char PW_TPL[64], CT_TPL[64], DEV[64], SECRET[64], CDEV[64], CDEV2[64], ACCOUNT[64];


static void path(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", S.data, name); }

static void write_file(const char *name, const char *text)
{
	char p[512];
	path(p, sizeof p, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* mosquitto_pub with args (NULL-terminated); its exit status (0: connected and published). */
static int pub(const char *const *args)
{
	const char *argv[40] = {"mosquitto_pub", "-h", "127.0.0.1", "-q", "1", "-m", "hello"};
	int n = 7;
	for(int i = 0; args[i] && n < 38; i++) argv[n++] = args[i];
	argv[n] = NULL;
	pid_t pid = fork();
	if(pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		dup2(null, 2);
		execvp("mosquitto_pub", (char *const *)argv);
		_exit(127);
	}
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int broker_up(void)
{
	/* The plugin is up when a wrong login is answered (not refused at TCP). */
	for(int i = 0; i < 100; i++) {
		if(h_log_contains(&S, "broker running")) return 1;
		usleep(100000);
	}
	return 0;
}

static int setup(void **state)
{
	P_PLAIN = h_free_port();
	P_TLS = h_free_port();
	P_CERT = h_free_port();
	snprintf(A_PLAIN, sizeof A_PLAIN, "127.0.0.1:%u", P_PLAIN);
	snprintf(A_TLS, sizeof A_TLS, "127.0.0.1:%u", P_TLS);
	snprintf(A_CERT, sizeof A_CERT, "127.0.0.1:%u", P_CERT);
	const char *args[] = {"--mqtt-listen", A_PLAIN, "--mqtts-listen", A_TLS, "--mqtts-cert-listen", A_CERT,
	                      "--broker-plugin", IMP_PLUGIN, NULL};
	if(h_server_start_args(&S, args) || !broker_up()) return -1;
	snprintf(ACCOUNT, sizeof ACCOUNT, "%s", S.admin.account_id);
	const char *k = S.admin.api_key;
	char body[256];
	if(h_create(&S, k, "/api/v1/devices/templates", "{\"name\":\"pw\"}", "deviceTemplate.id", PW_TPL, sizeof PW_TPL) ||
	   h_create(&S, k, "/api/v1/devices/templates", "{\"name\":\"ct\",\"authenticationMethod\":\"certificate\"}",
	            "deviceTemplate.id", CT_TPL, sizeof CT_TPL))
		return -1;
	snprintf(body, sizeof body, "{\"name\":\"temp\",\"entityType\":\"deviceTemplate\",\"entityId\":\"%s\"}", PW_TPL);
	char ch[64];
	if(h_create(&S, k, "/api/v1/channels/templates", body, "channelTemplate.id", ch, sizeof ch)) return -1;
	snprintf(body, sizeof body, "{\"name\":\"temp\",\"entityType\":\"deviceTemplate\",\"entityId\":\"%s\"}", CT_TPL);
	if(h_create(&S, k, "/api/v1/channels/templates", body, "channelTemplate.id", ch, sizeof ch)) return -1;
	snprintf(body, sizeof body, "{\"deviceTemplateId\":\"%s\"}", PW_TPL);
	if(h_create(&S, k, "/api/v1/devices", body, "device.id", DEV, sizeof DEV)) return -1;
	snprintf(body, sizeof body, "{\"deviceTemplateId\":\"%s\"}", CT_TPL);
	if(h_create(&S, k, "/api/v1/devices", body, "device.id", CDEV, sizeof CDEV) ||
	   h_create(&S, k, "/api/v1/devices", body, "device.id", CDEV2, sizeof CDEV2))
		return -1;
	snprintf(body, sizeof body, "{\"entityId\":\"%s\"}", DEV);
	h_resp r = h_call(&S, "POST", "/api/v1/access/mqtt-credentials", k, body, NULL);
	if(r.status != 200) return -1;
	snprintf(SECRET, sizeof SECRET, "%s", h_str(&r, "mqttCredential.secret"));
	h_resp_free(&r);
	return 0;
}

static int teardown(void **state)
{
	h_server_destroy(&S);
	return 0;
}

static void topic_of(const char *dev, char *out, size_t cap)
{
	snprintf(out, cap, "xi/blue/v1/%s/d/%s/temp", ACCOUNT, dev);
}

static void password_device_plain_and_tls(void **state)
{
	char port[8], tport[8], topic[200], ca[512];
	snprintf(port, sizeof port, "%u", P_PLAIN);
	snprintf(tport, sizeof tport, "%u", P_TLS);
	topic_of(DEV, topic, sizeof topic);
	path(ca, sizeof ca, "tls/ca.crt");
	const char *ok[] = {"-p", port, "-i", DEV, "-u", DEV, "-P", SECRET, "-t", topic, NULL};
	assert_int_equal(pub(ok), 0);
	const char *wrong[] = {"-p", port, "-i", DEV, "-u", DEV, "-P", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "-t", topic, NULL};
	assert_int_not_equal(pub(wrong), 0);
	const char *tls[] = {"-p", tport, "--cafile", ca, "-i", DEV, "-u", DEV, "-P", SECRET, "-t", topic, NULL};
	assert_int_equal(pub(tls), 0);
	/* TLS against another CA: the handshake fails. */
	char *key = NULL, *cert = NULL;
	assert_int_equal(imp_ca_create("not the broker's CA", 2, &cert, &key), IMP_OK);
	write_file("other-ca.crt", cert);
	char other[512];
	path(other, sizeof other, "other-ca.crt");
	const char *bad_ca[] = {"-p", tport, "--cafile", other, "-i", DEV, "-u", DEV, "-P", SECRET, "-t", topic, NULL};
	assert_int_not_equal(pub(bad_ca), 0);
	imp_free(cert);
	imp_key_pem_free(&key);
	/* The secret never reached the log (neither the server's nor mosquitto's, which serve
	 * copies into its own stderr). */
	assert_int_equal(h_log_sync(&S), 0);
	assert_false(h_log_contains(&S, SECRET));
}

static void certificate_device_from_csr(void **state)
{
	char *key = NULL, *csr = NULL, body[4096], port[8], topic[200], ca[512], cf[512], kf[512];
	assert_int_equal(imp_keypair_csr("device", &key, &csr), IMP_OK);
	json_t *j = json_pack("{s:s, s:s}", "entityId", CDEV, "csr", csr);
	char *text = json_dumps(j, 0);
	h_resp r = h_call(&S, "POST", "/api/v1/access/mqtt-credentials", S.admin.api_key, text, NULL);
	assert_int_equal(r.status, 200);
	write_file("c1.crt", h_str(&r, "mqttCredential.certificate"));
	write_file("c1.key", key);
	h_resp_free(&r);
	free(text);
	json_decref(j);
	snprintf(port, sizeof port, "%u", P_CERT);
	topic_of(CDEV, topic, sizeof topic);
	path(ca, sizeof ca, "tls/ca.crt");
	path(cf, sizeof cf, "c1.crt");
	path(kf, sizeof kf, "c1.key");
	const char *ok[] = {"-p", port, "--cafile", ca, "--cert", cf, "--key", kf, "-i", CDEV, "-t", topic, NULL};
	assert_int_equal(pub(ok), 0);
	/* Its certificate under another device's id: refused by the plugin. */
	char topic2[200];
	topic_of(CDEV2, topic2, sizeof topic2);
	const char *other[] = {"-p", port, "--cafile", ca, "--cert", cf, "--key", kf, "-i", CDEV2, "-t", topic2, NULL};
	assert_int_not_equal(pub(other), 0);
	/* No certificate at all on the certificate port: the TLS handshake fails. */
	const char *none[] = {"-p", port, "--cafile", ca, "-i", CDEV, "-t", topic, NULL};
	assert_int_not_equal(pub(none), 0);
	imp_key_pem_free(&key);
	imp_free(csr);
	snprintf(body, sizeof body, "%s", "");
}

/* A certificate for a new key, CN cn, valid from a minute ago for valid_s seconds, signed
 * by issuer (NULL: self-signed). Its PEM and key are written to DATA/<name>.crt and .key. */
typedef struct {
	X509 *x;
	EVP_PKEY *k;
	char cf[512], kf[512];
} made_cert;

static void make_cert(made_cert *m, const char *name, const char *cn, long valid_s, X509 *issuer, EVP_PKEY *issuer_key)
{
	static long serial = 70;
	m->k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	m->x = X509_new();
	X509 *x = m->x;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), valid_s);
	X509_set_pubkey(x, m->k);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(x));
	assert_true(X509_sign(x, issuer_key ? issuer_key : m->k, EVP_sha256()) > 0);
	char f1[64], f2[64];
	snprintf(f1, sizeof f1, "%s.crt", name);
	snprintf(f2, sizeof f2, "%s.key", name);
	path(m->cf, sizeof m->cf, f1);
	path(m->kf, sizeof m->kf, f2);
	FILE *f = fopen(m->cf, "w");
	PEM_write_X509(f, x);
	fclose(f);
	f = fopen(m->kf, "w");
	PEM_write_PrivateKey(f, m->k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
}

static void free_cert(made_cert *m)
{
	X509_free(m->x);
	EVP_PKEY_free(m->k);
}

/* Registers m's certificate for device through the API: 200. */
static void register_cert(const char *device, const made_cert *m)
{
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(b, m->x);
	char *pem;
	long n = BIO_get_mem_data(b, &pem);
	char *copy = strndup(pem, (size_t)n);
	json_t *j = json_pack("{s:s, s:s}", "entityId", device, "certificate", copy);
	char *text = json_dumps(j, 0);
	h_resp r = h_call(&S, "POST", "/api/v1/access/mqtt-credentials", S.admin.api_key, text, NULL);
	assert_int_equal(r.status, 200);
	h_resp_free(&r);
	free(text);
	free(copy);
	json_decref(j);
	BIO_free(b);
}

/* mosquitto_pub on the certificate port as device with m's certificate and key. */
static int pub_cert(const char *device, const made_cert *m)
{
	char port[8], topic[200], ca[512];
	snprintf(port, sizeof port, "%u", P_CERT);
	topic_of(device, topic, sizeof topic);
	path(ca, sizeof ca, "tls/ca.crt");
	const char *args[] = {"-p", port, "--cafile", ca, "--cert", m->cf, "--key", m->kf, "-i", device, "-t", topic, NULL};
	return pub(args);
}

/* A self-signed certificate registered while the broker runs is trusted without a restart. */
static void self_signed_registered_live(void **state)
{
	made_cert m;
	make_cert(&m, "c2", CDEV2, 86400, NULL, NULL);
	/* Not registered: TLS accepts no unknown self-signed certificate. */
	assert_int_not_equal(pub_cert(CDEV2, &m), 0);
	register_cert(CDEV2, &m);
	assert_int_equal(pub_cert(CDEV2, &m), 0);
	free_cert(&m);
}

/* A registered certificate works until it expires, and not after. */
static void expired_certificate_refused(void **state)
{
	char cap[512], kp[512];
	snprintf(cap, sizeof cap, "%s/ca/%s.crt", S.data, ACCOUNT);
	snprintf(kp, sizeof kp, "%s/ca/%s.key", S.data, ACCOUNT);
	FILE *f = fopen(cap, "r");
	assert_non_null(f);
	X509 *ca = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	f = fopen(kp, "r");
	assert_non_null(f);
	EVP_PKEY *cakey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(ca);
	assert_non_null(cakey);
	made_cert m;
	make_cert(&m, "c3", CDEV, 8, ca, cakey);
	register_cert(CDEV, &m);
	assert_int_equal(pub_cert(CDEV, &m), 0);
	sleep(9);
	assert_int_not_equal(pub_cert(CDEV, &m), 0);
	free_cert(&m);
	X509_free(ca);
	EVP_PKEY_free(cakey);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(password_device_plain_and_tls),
		cmocka_unit_test(certificate_device_from_csr),
		cmocka_unit_test(self_signed_registered_live),
		cmocka_unit_test(expired_certificate_refused),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
