/* A device's key pair and certificate signing request, made where the batch runs so that
 * the private key never crosses the network: the server sees only the CSR and signs it
 * with the account's device CA (forcing the CN to the device id). */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string.h>

#include "cli/batch.h"
#include "core/mem.h"

/* The contents of a memory BIO as a NUL-terminated string from imp_malloc, or NULL. */
static char *bio_string(BIO *bio)
{
	char *data;
	long n = BIO_get_mem_data(bio, &data);
	if(n <= 0) return NULL;
	char *s = imp_malloc((size_t)n + 1);
	if(!s) return NULL;
	memcpy(s, data, (size_t)n);
	s[n] = '\0';
	return s;
}

imp_err batch_keypair_csr(const char *cn, char **key_pem, char **csr_pem)
{
	*key_pem = *csr_pem = NULL;
	imp_err rc = IMP_ERR_CRYPTO;
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	BIO *kb = BIO_new(BIO_s_secmem()), *rb = BIO_new(BIO_s_mem());
	if(!key || !req || !name || !kb || !rb) goto out;
	if(!X509_REQ_set_version(req, 0) ||
	   !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) ||
	   !X509_REQ_set_subject_name(req, name) || !X509_REQ_set_pubkey(req, key) || !X509_REQ_sign(req, key, EVP_sha256()))
		goto out;
	if(!PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL) || !PEM_write_bio_X509_REQ(rb, req)) goto out;
	*key_pem = bio_string(kb);
	*csr_pem = bio_string(rb);
	if(*key_pem && *csr_pem) rc = IMP_OK;
	else {
		rc = IMP_ERR_NOMEM;
		if(*key_pem) OPENSSL_cleanse(*key_pem, strlen(*key_pem));
		imp_free(*key_pem);
		imp_free(*csr_pem);
		*key_pem = *csr_pem = NULL;
	}
out:
	BIO_free(kb);
	BIO_free(rb);
	X509_NAME_free(name);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	return rc;
}
