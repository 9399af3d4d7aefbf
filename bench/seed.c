/* Fills a data directory made by `imprint init` with devices for the benchmarks, straight
 * through the store interface in 1,000-row transactions (the API would take minutes for a
 * million). Prints the ids it made: a template, organizations, and every 100th device.
 *
 *   imprint_seed DATA_DIR DEVICES ORGS OUT_DIR [passwords]
 *
 * Writes OUT_DIR/template (one id), OUT_DIR/orgs (one id a line), OUT_DIR/device_ids.
 * With "passwords" (the broker benchmark) every device also gets a password credential in
 * the same transaction, its secret derived from its index (bench/bench_secret.h: a
 * benchmark-only shortcut), and OUT_DIR/all_ids holds every device id, line i = device i,
 * and OUT_DIR/account the account id (the first segment of the devices' topics). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_secret.h"
#include "core/keys.h"
#include "core/timeutil.h"
#include "store/store.h"

static void die(const char *what, imp_err rc)
{
	fprintf(stderr, "imprint_seed: %s failed (%s)\n", what, imp_err_name(rc));
	exit(1);
}

static void insert(imp_db *db, const imp_kind *k, imp_entity *e, const char *what)
{
	imp_err rc = imp_id_new(&e->id);
	if(!rc) rc = imp_db_insert(db, k, e, NULL);
	if(rc) die(what, rc);
}

/* A password credential for device number i, its secret from bench_secret(); the id to
 * all_ids. */
static void password(imp_db *db, const imp_keys *keys, const imp_entity *d, const imp_entity *t, long i, FILE *all)
{
	char secret[BENCH_SECRET_LEN + 1], hash[65];
	uint8_t mac[IMP_HMAC_LEN];
	bench_secret(i, secret);
	imp_hmac(keys->hmac, secret, strlen(secret), mac);
	imp_hex(mac, sizeof mac, hash);
	imp_credential c = {.account = d->account, .account_id = d->account_id};
	snprintf(c.entity_type, sizeof c.entity_type, "device");
	c.entity_id = d->id;
	snprintf(c.method, sizeof c.method, "password");
	c.created_by = t->id;
	imp_err rc = imp_id_new(&c.id);
	if(!rc) rc = imp_db_credential_put(db, &c, hash, NULL);
	if(rc) die("credential", rc);
	fprintf(all, "%s\n", d->id.s);
}

/* The account's id, as the broker puts it in topics, to OUT_DIR/account. */
static void account_file(imp_db *db, const char *out)
{
	imp_auth_row row;
	char path[4096], id[64];
	snprintf(path, sizeof path, "%s/all_ids", out);
	FILE *f = fopen(path, "r");
	if(!f || !fgets(id, sizeof id, f)) die("all_ids", IMP_ERR_IO);
	fclose(f);
	id[strcspn(id, "\n")] = '\0';
	imp_err rc = imp_db_auth_lookup(db, id, &row);
	if(rc) die("account", rc);
	snprintf(path, sizeof path, "%s/account", out);
	f = fopen(path, "w");
	if(!f) die("account", IMP_ERR_IO);
	fprintf(f, "%s\n", row.account_id.s);
	fclose(f);
}

int main(int argc, char **argv)
{
	if(argc != 5 && !(argc == 6 && strcmp(argv[5], "passwords") == 0)) {
		fprintf(stderr, "usage: imprint_seed DATA_DIR DEVICES ORGS OUT_DIR [passwords]\n");
		return 2;
	}
	int passwords = argc == 6;
	imp_keys keys;
	long devices = atol(argv[2]), orgs = atol(argv[3]);
	char path[4096];
	snprintf(path, sizeof path, "%s/imprint.db", argv[1]);
	imp_store *store;
	imp_err rc = imp_store_open(path, 0, &store);
	if(rc) die("open", rc);
	imp_db *db = imp_store_db(store);
	imp_entity base = {.account = 1};
	snprintf(base.account_id.s, sizeof base.account_id.s, "unused");
	FILE *all = NULL;
	if(passwords) {
		snprintf(path, sizeof path, "%s/keys.json", argv[1]);
		if((rc = imp_keys_load(path, &keys))) die("keys.json", rc);
		snprintf(path, sizeof path, "%s/all_ids", argv[4]);
		if(!(all = fopen(path, "w"))) die("all_ids", IMP_ERR_IO);
	}

	if((rc = imp_db_begin(&db))) die("begin", rc);
	imp_entity t = base;
	t.doc = json_pack("{s:s, s:s}", "name", "bench", "authenticationMethod", "password");
	insert(db, &imp_kind_device_template, &t, "template");
	for(int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof name, "ch%d", i);
		imp_entity c = base;
		c.doc = json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", name, "entityType", "deviceTemplate", "entityId",
		                  t.id.s, "persistenceType", "simple", "permission", "publish-subscribe");
		insert(db, &imp_kind_channel_template, &c, "channel");
		imp_entity_clear(&c);
	}
	snprintf(path, sizeof path, "%s/template", argv[4]);
	FILE *f = fopen(path, "w");
	fprintf(f, "%s\n", t.id.s);
	fclose(f);

	snprintf(path, sizeof path, "%s/orgs", argv[4]);
	f = fopen(path, "w");
	imp_id *org_ids = calloc((size_t)orgs, sizeof *org_ids);
	for(long i = 0; i < orgs; i++) {
		char name[32];
		snprintf(name, sizeof name, "org-%ld", i);
		imp_entity o = base;
		o.doc = json_pack("{s:s}", "name", name);
		insert(db, &imp_kind_organization, &o, "organization");
		org_ids[i] = o.id;
		fprintf(f, "%s\n", o.id.s);
		imp_entity_clear(&o);
	}
	fclose(f);
	if((rc = imp_db_commit(&db))) die("commit", rc);

	static const char *const states[] = {"defined", "activated", "associated"};
	snprintf(path, sizeof path, "%s/device_ids", argv[4]);
	f = fopen(path, "w");
	uint64_t start = imp_mono_us();
	for(long i = 0; i < devices; i++) {
		if(i % 1000 == 0 && (rc = imp_db_begin(&db))) die("begin", rc);
		char serial[32], name[32];
		snprintf(serial, sizeof serial, "SN%09ld", i);
		snprintf(name, sizeof name, "device %ld", i);
		imp_entity d = base;
		d.doc = json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:s}", "deviceTemplateId", t.id.s, "organizationId",
		                  org_ids[i % orgs].s, "serialNumber", serial, "provisioningState", states[i % 3 == 0 ? 0 : i % 3],
		                  "connected", 0, "disabled", 0, "name", name);
		insert(db, &imp_kind_device, &d, "device");
		if(i % 100 == 0) fprintf(f, "%s\n", d.id.s);
		if(passwords) password(db, &keys, &d, &t, i, all);
		imp_entity_clear(&d);
		if((i % 1000 == 999 || i == devices - 1) && (rc = imp_db_commit(&db))) die("commit", rc);
	}
	fclose(f);
	if(all && fclose(all)) die("all_ids", IMP_ERR_IO);
	if(passwords) account_file(db, argv[4]);
	double secs = (double)(imp_mono_us() - start) / 1e6;
	fprintf(stderr, "imprint_seed: %ld devices in %.1f s (%.0f/s)\n", devices, secs, devices / secs);
	imp_entity_clear(&t);
	free(org_ids);
	imp_store_close(&store);
	return 0;
}
