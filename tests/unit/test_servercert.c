/* Unit tests for the broker's TLS material: imp_server_cert_create (src/core/x509.c),
 * DATA/tls (src/core/servertls.c) and the client-certificate capath (src/core/capath.c),
 * checked with OpenSSL's own verification, the way mosquitto uses it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/capath.h"
#include "core/files.h"
#include "core/mem.h"
#include "core/servertls.h"
#include "unit_util.h"
#include "core/x509.h"

static X509 *load(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	assert_non_null(x);
	return x;
}

/* X509_verify_cert of leaf against the trust store st. */
static int verifies(X509_STORE *st, X509 *leaf)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	assert_int_equal(X509_STORE_CTX_init(ctx, st, leaf, NULL), 1);
	int ok = X509_verify_cert(ctx);
	X509_STORE_CTX_free(ctx);
	return ok == 1;
}

static void server_cert_names_and_chain(void **state)
{
	char *ca = NULL, *cakey = NULL, *crt = NULL, *key = NULL;
	assert_int_equal(imp_ca_create("test server CA", 30, &ca, &cakey), IMP_OK);
	const char *names[] = {"localhost", "127.0.0.1", "::1", "broker.example.com"};
	assert_int_equal(imp_server_cert_create(ca, cakey, names, 4, 10, &crt, &key), IMP_OK);
	assert_non_null(strstr(key, "PRIVATE KEY"));

	X509 *cax = load(ca), *x = load(crt);
	assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "broker.example.com", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "other.example.com", 0, 0, NULL), 0);
	assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_ip_asc(x, "::1", 0), 1);
	assert_int_equal(X509_check_ip_asc(x, "127.0.0.2", 0), 0);
	assert_int_equal(X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0), 1);
	assert_int_equal(X509_check_ca(x), 0);

	X509_STORE *st = X509_STORE_new();
	X509_STORE_add_cert(st, cax);
	assert_true(verifies(st, x));
	X509_STORE_free(st);

	/* Not trusted by another CA. */
	char *ca2 = NULL, *ca2key = NULL;
	assert_int_equal(imp_ca_create("test server CA", 30, &ca2, &ca2key), IMP_OK);
	X509 *ca2x = load(ca2);
	st = X509_STORE_new();
	X509_STORE_add_cert(st, ca2x);
	assert_false(verifies(st, x));
	X509_STORE_free(st);

	X509_free(ca2x);
	X509_free(cax);
	X509_free(x);
	imp_free(ca);
	imp_free(ca2);
	imp_free(crt);
	imp_key_pem_free(&cakey);
	imp_key_pem_free(&ca2key);
	imp_key_pem_free(&key);
}

static void server_cert_refusals(void **state)
{
	char *ca = NULL, *cakey = NULL, *ca2 = NULL, *ca2key = NULL, *crt = NULL, *key = NULL;
	assert_int_equal(imp_ca_create("test server CA", 30, &ca, &cakey), IMP_OK);
	assert_int_equal(imp_ca_create("other CA", 30, &ca2, &ca2key), IMP_OK);
	const char *ok[] = {"localhost"};
	const char *comma[] = {"localhost,IP:10.0.0.1"};
	const char *space[] = {"local host"};
	const char *empty[] = {""};
	char long_name[300];
	memset(long_name, 'a', sizeof long_name - 1);
	long_name[sizeof long_name - 1] = '\0';
	const char *too_long[] = {long_name};
	const char *many[17];
	for(int i = 0; i < 17; i++) many[i] = "localhost";

	assert_int_equal(imp_server_cert_create(ca, cakey, ok, 0, 10, &crt, &key), IMP_ERR_INVALID);
	assert_int_equal(imp_server_cert_create(ca, cakey, many, 17, 10, &crt, &key), IMP_ERR_INVALID);
	assert_int_equal(imp_server_cert_create(ca, cakey, comma, 1, 10, &crt, &key), IMP_ERR_INVALID);
	assert_int_equal(imp_server_cert_create(ca, cakey, space, 1, 10, &crt, &key), IMP_ERR_INVALID);
	assert_int_equal(imp_server_cert_create(ca, cakey, empty, 1, 10, &crt, &key), IMP_ERR_INVALID);
	assert_int_equal(imp_server_cert_create(ca, cakey, too_long, 1, 10, &crt, &key), IMP_ERR_INVALID);
	assert_int_equal(imp_server_cert_create(ca, cakey, ok, 1, 0, &crt, &key), IMP_ERR_INVALID);
	assert_int_equal(imp_server_cert_create(ca, cakey, ok, 1, 36501, &crt, &key), IMP_ERR_INVALID);
	/* a CA certificate with another CA's key */
	assert_int_equal(imp_server_cert_create(ca, ca2key, ok, 1, 10, &crt, &key), IMP_ERR_CRYPTO);
	assert_null(crt);
	assert_null(key);
	/* 16 names, the most */
	assert_int_equal(imp_server_cert_create(ca, cakey, many, 16, 10, &crt, &key), IMP_OK);
	imp_free(crt);
	imp_key_pem_free(&key);

	imp_free(ca);
	imp_free(ca2);
	imp_key_pem_free(&cakey);
	imp_key_pem_free(&ca2key);
}

static char dir[64];

static int make_dir(void **state)
{
	snprintf(dir, sizeof dir, "/tmp/imprint-unit-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int remove_dir(void **state)
{
	unit_remove_tree(dir);
	return 0;
}

static mode_t mode_of(const char *file)
{
	char path[256];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s", dir, file);
	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 0777;
}

static char *read_in(const char *file)
{
	char path[256], *text = NULL;
	snprintf(path, sizeof path, "%s/%s", dir, file);
	assert_int_equal(imp_file_read(path, 1 << 20, &text), IMP_OK);
	return text;
}

static void tls_files_made_once(void **state)
{
	int renewed = 0;
	assert_int_equal(imp_server_tls_ensure(dir, &renewed), IMP_OK);
	assert_int_equal(renewed, 1);
	assert_int_equal(mode_of("tls"), 0700);
	assert_int_equal(mode_of("tls/ca.key"), 0600);
	assert_int_equal(mode_of("tls/server.key"), 0600);
	assert_int_equal(mode_of("tls/ca.crt"), 0644);
	assert_int_equal(mode_of("tls/server.crt"), 0644);
	char *crt1 = read_in(IMP_TLS_SERVER_CRT);
	/* Again: nothing changes. */
	assert_int_equal(imp_server_tls_ensure(dir, &renewed), IMP_OK);
	assert_int_equal(renewed, 0);
	char *crt2 = read_in(IMP_TLS_SERVER_CRT);
	assert_string_equal(crt1, crt2);

	/* The server certificate chains to ca.crt and names localhost and 127.0.0.1. */
	char *ca = read_in(IMP_TLS_CA_CRT);
	X509 *cax = load(ca), *x = load(crt1);
	X509_STORE *st = X509_STORE_new();
	X509_STORE_add_cert(st, cax);
	assert_true(verifies(st, x));
	assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
	assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
	X509_STORE_free(st);
	X509_free(cax);
	X509_free(x);

	/* A missing server certificate is made again, from the same CA. */
	char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, IMP_TLS_SERVER_CRT);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(imp_server_tls_ensure(dir, &renewed), IMP_OK);
	assert_int_equal(renewed, 1);
	char *ca2 = read_in(IMP_TLS_CA_CRT), *crt3 = read_in(IMP_TLS_SERVER_CRT);
	assert_string_equal(ca, ca2);
	assert_string_not_equal(crt1, crt3);
	imp_free(ca);
	imp_free(ca2);
	imp_free(crt1);
	imp_free(crt2);
	imp_free(crt3);
}

static X509_STORE *capath_store(void)
{
	char capath[256];
	snprintf(capath, sizeof capath, "%s/%s", dir, IMP_CAPATH_DIR);
	X509_STORE *st = X509_STORE_new();
	X509_LOOKUP *lu = X509_STORE_add_lookup(st, X509_LOOKUP_hash_dir());
	assert_int_equal(X509_LOOKUP_add_dir(lu, capath, X509_FILETYPE_PEM), 1);
	return st;
}

/* A CA and a device certificate it signed for device-1. */
static void ca_and_device(const char *ca_cn, char **ca, X509 **dev)
{
	char *k = NULL, *csr = NULL, *dkey = NULL, *crt = NULL;
	assert_int_equal(imp_ca_create(ca_cn, 30, ca, &k), IMP_OK);
	assert_int_equal(imp_keypair_csr("device-1", &dkey, &csr), IMP_OK);
	assert_int_equal(imp_csr_sign(csr, strlen(csr), *ca, k, "device-1", 10, &crt, NULL, 0), IMP_OK);
	*dev = load(crt);
	imp_free(csr);
	imp_free(crt);
	imp_key_pem_free(&k);
	imp_key_pem_free(&dkey);
}

/* A device certificate signed by a CA added to the capath verifies through OpenSSL's hashed
 * directory lookup, also when the CA is added after the store was set up (as in a running
 * broker); adding again changes nothing. */
static void capath_lookup(void **state)
{
	char *ca1 = NULL, *ca2 = NULL;
	X509 *d1 = NULL, *d2 = NULL;
	ca_and_device("imprint device CA one", &ca1, &d1);
	ca_and_device("imprint device CA two", &ca2, &d2);
	assert_int_equal(imp_broker_capath_add(dir, ca1), IMP_OK);
	X509_STORE *st = capath_store();
	assert_true(verifies(st, d1));
	assert_false(verifies(st, d2));
	assert_int_equal(imp_broker_capath_add(dir, ca2), IMP_OK);
	assert_true(verifies(st, d2)); /* the same store: picked up without a restart */
	assert_int_equal(imp_broker_capath_add(dir, ca1), IMP_OK);
	assert_int_equal(mode_of(IMP_CAPATH_DIR), 0700);
	assert_int_equal(imp_broker_capath_add(dir, "not a certificate"), IMP_ERR_INVALID);
	assert_int_equal(imp_broker_capath_add(dir, NULL), IMP_ERR_INVALID);
	X509_STORE_free(st);
	X509_free(d1);
	X509_free(d2);
	imp_free(ca1);
	imp_free(ca2);
}

/* Two CAs with one subject: <hash>.0 and <hash>.1, both trusted by a store set up after
 * both were added. (A store that already holds one does not look for the other: OpenSSL
 * consults the directory only for subjects it has not cached, so such a CA needs a broker
 * restart; docs/broker.md says so.) */
static void capath_same_subject(void **state)
{
	char *ca1 = NULL, *ca2 = NULL, name[300];
	X509 *d1 = NULL, *d2 = NULL;
	ca_and_device("imprint device CA", &ca1, &d1);
	ca_and_device("imprint device CA", &ca2, &d2);
	assert_int_equal(imp_broker_capath_add(dir, ca1), IMP_OK);
	assert_int_equal(imp_broker_capath_add(dir, ca2), IMP_OK);
	assert_int_equal(imp_broker_capath_add(dir, ca1), IMP_OK);
	assert_int_equal(imp_broker_capath_add(dir, ca2), IMP_OK);
	X509 *c1 = load(ca1);
	unsigned long h = X509_subject_name_hash(c1);
	for(int k = 0; k < 3; k++) {
		snprintf(name, sizeof name, "%s/%s/%08lx.%d", dir, IMP_CAPATH_DIR, h, k);
		assert_int_equal(access(name, F_OK) == 0, k < 2);
	}
	X509_STORE *st = capath_store();
	assert_true(verifies(st, d1));
	assert_true(verifies(st, d2));
	X509_STORE_free(st);
	X509_free(c1);
	X509_free(d1);
	X509_free(d2);
	imp_free(ca1);
	imp_free(ca2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(server_cert_names_and_chain),
	    cmocka_unit_test(server_cert_refusals),
	    cmocka_unit_test_setup_teardown(tls_files_made_once, make_dir, remove_dir),
	    cmocka_unit_test_setup_teardown(capath_lookup, make_dir, remove_dir),
	    cmocka_unit_test_setup_teardown(capath_same_subject, make_dir, remove_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
