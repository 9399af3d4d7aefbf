/* Certificate credentials: device certificates registered as they are (self-signed, or
 * signed by a CA the account registered or by the account's own device CA), CSRs signed
 * with the account's device CA, and the account's certificate authorities. */
#include <stdio.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "api/credentials.h"
#include "api/resource.h"
#include "core/capath.h"
#include "core/devca.h"
#include "core/mem.h"
#include "core/timeutil.h"
#include "core/x509.h"

#define CAS_MAX 64

/* The broker's certificate listener trusts what is in DATA/broker/capath (TLS checks the
 * chain; the plugin then checks the registered fingerprint). A failure here is logged, not
 * fatal: the registration stands, and serve adds device CAs again at every start. */
#define TRUSTED_MEMO 64

/* Certificates this process has put in the trust directory already (a hash of their PEM),
 * so signing a CSR does not read the directory again for every device of a batch. */
static pthread_mutex_t trusted_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t trusted[TRUSTED_MEMO];
static unsigned trusted_next;

static uint64_t pem_hash(const char *pem)
{
	uint64_t h = 14695981039346656037u;
	for(; *pem; pem++) h = (h ^ (uint8_t)*pem) * 1099511628211u;
	return h ? h : 1;
}

static void trust(imp_req *r, const char *pem, const char *what)
{
	if(!r->app->data_dir) return;
	uint64_t h = pem_hash(pem);
	int known = 0;
	pthread_mutex_lock(&trusted_lock);
	for(unsigned i = 0; i < TRUSTED_MEMO && !known; i++) known = trusted[i] == h;
	pthread_mutex_unlock(&trusted_lock);
	if(known) return;
	imp_err rc = imp_broker_capath_add(r->app->data_dir, pem);
	if(rc) {
		fprintf(stderr, "imprint: could not add %s to the broker's trust directory: %s\n", what, imp_err_name(rc));
		return;
	}
	pthread_mutex_lock(&trusted_lock);
	trusted[trusted_next++ % TRUSTED_MEMO] = h;
	pthread_mutex_unlock(&trusted_lock);
}

static json_t *ca_pem(imp_db *db, const imp_kind *k, const imp_entity *e, void *arg)
{
	return json_incref(json_object_get(e->doc, "certificate"));
}

/* The PEMs a device certificate may chain to: the account's device CA and every CA it
 * registered (at most CAS_MAX). Returned as a JSON array of strings. */
static imp_err account_cas(imp_req *r, const char *device_ca, json_t **out)
{
	imp_query q = {.sort = "created", .page = 1, .page_size = CAS_MAX, .after = -1};
	json_t *pems = json_array();
	if(!pems || json_array_append_new(pems, json_string(device_ca))) {
		json_decref(pems);
		return IMP_ERR_NOMEM;
	}
	int64_t count, last;
	imp_err rc = imp_db_list(r->db, &imp_kind_certificate_authority, r->who.account, &q, ca_pem, NULL, pems, &count, &last);
	if(rc) json_decref(pems);
	else *out = pems;
	return rc;
}

imp_err imp_cred_certificate(imp_req *r, const char *device_id, const char *cert_pem, const char *csr_pem,
                             imp_credential *c, int *replaced)
{
	char why[200] = "";
	char *ca_cert = NULL, *ca_key = NULL, *signed_pem = NULL;
	json_t *cas = NULL;
	imp_cert_info info;
	memset(c, 0, sizeof *c);
	imp_err rc = imp_devca_load(r->app->data_dir, r->who.account_id.s, &ca_cert, &ca_key);
	if(rc) {
		rc = api_fail(r, rc, NULL, NULL, "the account's device CA is not available");
		goto out;
	}
	if(csr_pem) {
		rc = imp_csr_sign(csr_pem, strlen(csr_pem), ca_cert, ca_key, device_id, IMP_CERT_DAYS, &signed_pem, why, sizeof why);
		if(rc) {
			rc = api_fail(r, IMP_ERR_INVALID, "invalid_csr", "csr", "the CSR cannot be signed: %s", why);
			goto out;
		}
		if((rc = imp_cert_parse(signed_pem, strlen(signed_pem), &info, why, sizeof why))) goto out;
		cert_pem = signed_pem;
		trust(r, ca_cert, "the account's device CA");
	} else {
		if((rc = account_cas(r, ca_cert, &cas))) goto out;
		const char *list[CAS_MAX + 1];
		size_t n = 0, i;
		json_t *v;
		json_array_foreach(cas, i, v) {
			if(n < CAS_MAX + 1) list[n++] = json_string_value(v);
		}
		rc = imp_cert_check_device(cert_pem, strlen(cert_pem), list, n, imp_now_ms(), &info, why, sizeof why);
		if(rc) {
			rc = api_fail(r, IMP_ERR_INVALID, "invalid_certificate", "certificate", "the certificate cannot be registered: %s", why);
			goto out;
		}
		/* Its own trust anchor when self-signed; else it chains to the device CA or to a
		 * registered CA, which are trusted already (the device CA: again, for accounts
		 * made while serve runs). */
		if(info.self_signed) trust(r, cert_pem, "a self-signed device certificate");
		else trust(r, ca_cert, "the account's device CA");
	}
	if((rc = imp_id_new(&c->id))) goto out;
	c->account = r->who.account;
	c->account_id = r->who.account_id;
	snprintf(c->entity_type, sizeof c->entity_type, "device");
	snprintf(c->entity_id.s, sizeof c->entity_id.s, "%s", device_id);
	snprintf(c->method, sizeof c->method, "certificate");
	snprintf(c->fingerprint, sizeof c->fingerprint, "%s", info.fingerprint);
	c->not_after = info.not_after_ms;
	c->created_by = r->who.actor_id;
	c->certificate = imp_strdup(cert_pem);
	if(!c->certificate) {
		rc = IMP_ERR_NOMEM;
		goto out;
	}
	rc = imp_db_credential_put(r->db, c, NULL, replaced);
	if(rc == IMP_ERR_CONFLICT) {
		rc = api_fail(r, rc, "certificate_in_use", "certificate", "this certificate is registered to another device");
		goto out;
	}
	int changed;
	if(!rc) rc = imp_db_device_activate(r->db, r->who.account, device_id, r->who.actor_id.s, &changed);
out:
	imp_key_pem_free(&ca_key);
	imp_free(ca_cert);
	imp_free(signed_pem);
	json_decref(cas);
	return rc;
}

/* Account CAs: checked and described on create. */
static imp_err ca_validate(imp_req *r, json_t *doc, const imp_entity *old)
{
	if(old) return IMP_OK;
	/* Device certificates are checked against every CA of the account (CAS_MAX at most). */
	int64_t n = 0, last;
	imp_query q = {.sort = "created", .page = 1, .page_size = 1, .after = -1, .want_count = 1};
	imp_err crc = imp_db_list(r->db, &imp_kind_certificate_authority, r->who.account, &q, NULL, NULL, NULL, &n, &last);
	if(crc) return crc;
	if(n >= CAS_MAX)
		return api_fail(r, IMP_ERR_INVALID, "too_many", "certificate", "an account registers at most %d CAs", CAS_MAX);
	const char *pem = json_string_value(json_object_get(doc, "certificate"));
	imp_cert_info info;
	char why[200] = "";
	if(imp_cert_check_ca(pem, strlen(pem), imp_now_ms(), &info, why, sizeof why))
		return api_fail(r, IMP_ERR_INVALID, "invalid_certificate", "certificate", "not a usable CA certificate: %s", why);
	trust(r, pem, "a registered CA");
	char nb[IMP_ISO_LEN + 1], na[IMP_ISO_LEN + 1];
	imp_iso8601(info.not_before_ms, nb);
	imp_iso8601(info.not_after_ms, na);
	if(json_object_set_new(doc, "fingerprint", json_string(info.fingerprint)) ||
	   json_object_set_new(doc, "subject", json_string(info.subject)) ||
	   json_object_set_new(doc, "notBefore", json_string(nb)) || json_object_set_new(doc, "notAfter", json_string(na)))
		return IMP_ERR_NOMEM;
	return IMP_OK;
}

const imp_resource imp_res_certificate_authority = {
	.kind = &imp_kind_certificate_authority,
	.validate = ca_validate,
};
