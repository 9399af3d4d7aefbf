/* Fills a data directory made by `imprint init` with devices for the benchmarks, straight
 * through the store interface in 1,000-row transactions (the API would take minutes for a
 * million). Prints the ids it made: a template, organizations, and every 100th device.
 *
 *   imprint_seed DATA_DIR DEVICES ORGS OUT_DIR
 *
 * Writes OUT_DIR/template (one id), OUT_DIR/orgs (one id a line), OUT_DIR/device_ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(int argc, char **argv)
{
	if(argc != 5) {
		fprintf(stderr, "usage: imprint_seed DATA_DIR DEVICES ORGS OUT_DIR\n");
		return 2;
	}
	long devices = atol(argv[2]), orgs = atol(argv[3]);
	char path[4096];
	snprintf(path, sizeof path, "%s/imprint.db", argv[1]);
	imp_store *store;
	imp_err rc = imp_store_open(path, 0, &store);
	if(rc) die("open", rc);
	imp_db *db = imp_store_db(store);
	imp_entity base = {.account = 1};
	snprintf(base.account_id.s, sizeof base.account_id.s, "unused");

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
		imp_entity_clear(&d);
		if((i % 1000 == 999 || i == devices - 1) && (rc = imp_db_commit(&db))) die("commit", rc);
	}
	fclose(f);
	double secs = (double)(imp_mono_us() - start) / 1e6;
	fprintf(stderr, "imprint_seed: %ld devices in %.1f s (%.0f/s)\n", devices, secs, devices / secs);
	imp_entity_clear(&t);
	free(org_ids);
	imp_store_close(&store);
	return 0;
}
