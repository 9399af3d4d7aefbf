/* imprint init and imprint account create: a data directory, its keys and store, and an
 * account with its first admin user and admin API key, printed once. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/auth.h"
#include "cli/cli.h"
#include "core/devca.h"
#include "core/mem.h"
#include "core/servertls.h"
#include "store/store.h"

typedef struct {
	const char *data;
	const char *email;
	int json;
} opts;

static int parse(int argc, char **argv, opts *o, const char *verb)
{
	for(int i = 0; i < argc; i++) {
		if(strcmp(argv[i], "--data") == 0 && i + 1 < argc) o->data = argv[++i];
		else if(strcmp(argv[i], "--email") == 0 && i + 1 < argc) o->email = argv[++i];
		else if(strcmp(argv[i], "--json") == 0) o->json = 1;
		else {
			fprintf(stderr, "usage: imprint %s --data DIR [--email ADDRESS] [--json]\n", verb);
			return -1;
		}
	}
	if(!o->data) {
		fprintf(stderr, "imprint %s: --data DIR is required\n", verb);
		return -1;
	}
	return 0;
}

static void path_in(char *out, size_t n, const char *dir, const char *file) { snprintf(out, n, "%s/%s", dir, file); }

/* Creates an account with an admin user and an admin API key in one transaction, then the
 * account's device CA in data, and prints the account and the admin's credentials. */
static int make_account(imp_db *db, const char *data, const imp_keys *keys, const char *email_opt, int json)
{
	imp_id account, user_id, key_id;
	int64_t akey;
	uint8_t raw[18];
	char password[32], email[256], key[IMP_API_KEY_LEN + 1], key_hash[65], pwhash[crypto_pwhash_STRBYTES];
	imp_err rc = imp_random(raw, sizeof raw);
	if(rc) return 1;
	imp_b64_encode(raw, sizeof raw, password, 1);
	if(imp_password_hash(password, pwhash, sizeof pwhash) || imp_api_key_new(keys, key, key_hash)) return 1;
	if(imp_id_new(&user_id) || imp_id_new(&key_id)) return 1;

	if((rc = imp_db_begin(&db))) goto fail;
	if((rc = imp_db_account_create(db, "default", &account, &akey))) goto fail;
	if(email_opt) snprintf(email, sizeof email, "%s", email_opt);
	else if(akey == 1) snprintf(email, sizeof email, "admin@imprint.local");
	else snprintf(email, sizeof email, "admin-%s@imprint.local", account.s + 28);

	imp_entity user = {.id = user_id, .account = akey, .account_id = account};
	user.doc = json_pack("{s:s, s:s}", "emailAddress", email, "name", "Administrator");
	imp_entity apikey = {.id = key_id, .account = akey, .account_id = account, .created_by = user_id};
	apikey.doc = json_pack("{s:s, s:[s]}", "name", "admin", "scopes", "admin");
	if(!user.doc || !apikey.doc) rc = IMP_ERR_NOMEM;
	if(!rc) rc = imp_db_insert(db, &imp_kind_account_user, &user, pwhash);
	if(!rc) rc = imp_db_insert(db, &imp_kind_api_key, &apikey, key_hash);
	imp_audit a = {.account = akey, .actor_id = NULL, .actor_type = "system", .action = "create",
	               .entity_type = "accountUser", .entity_id = user_id.s};
	if(!rc) rc = imp_db_audit(db, &a);
	a.entity_type = "apiKey";
	a.entity_id = key_id.s;
	if(!rc) rc = imp_db_audit(db, &a);
	imp_entity_clear(&user);
	imp_entity_clear(&apikey);
	if(rc) goto fail;
	if((rc = imp_db_commit(&db))) goto fail;
	/* The account exists now, so its credentials are printed whatever happens here; a
	 * missing CA is made when first needed (imp_devca_load). */
	if((rc = imp_devca_ensure(data, account.s)))
		fprintf(stderr, "imprint: could not create the device CA of account %s (%s); it is made when first needed\n",
		        account.s, imp_err_name(rc));

	if(json) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "accountId", account.s, "email", email, "password", password,
		                      "apiKey", key);
		char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
		if(s) printf("%s\n", s);
		free(s);
		json_decref(o);
	} else {
		printf("Account:    %s\n"
		       "Admin user: %s\n"
		       "Password:   %s\n"
		       "API key:    %s\n"
		       "These are shown once and stored only as hashes: keep them now.\n",
		       account.s, email, password, key);
	}
	fflush(stdout);
	sodium_memzero(password, sizeof password);
	sodium_memzero(key, sizeof key);
	return 0;
fail:
	imp_db_rollback(&db);
	fprintf(stderr, "imprint: could not create the account (%s)\n", imp_err_name(rc));
	return 1;
}

int imp_cmd_init(int argc, char **argv)
{
	opts o = {0};
	char db_path[4096], key_path[4096];
	if(parse(argc, argv, &o, "init")) return 2;
	path_in(db_path, sizeof db_path, o.data, IMP_DB_FILE);
	path_in(key_path, sizeof key_path, o.data, IMP_KEYS_FILE);
	if(access(db_path, F_OK) == 0 || access(key_path, F_OK) == 0) {
		fprintf(stderr, "imprint init: %s is already initialised; nothing changed\n", o.data);
		return 2;
	}
	if(mkdir(o.data, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "imprint init: cannot create %s: %s\n", o.data, strerror(errno));
		return 1;
	}
	if(chmod(o.data, 0700) != 0) {
		fprintf(stderr, "imprint init: cannot set the mode of %s: %s\n", o.data, strerror(errno));
		return 1;
	}
	imp_keys keys;
	imp_err rc = imp_keys_create(key_path, &keys);
	if(rc) {
		fprintf(stderr, "imprint init: cannot write %s (%s)\n", key_path, imp_err_name(rc));
		return rc == IMP_ERR_EXISTS ? 2 : 1;
	}
	imp_store *store = NULL;
	if((rc = imp_store_open(db_path, 1, &store))) {
		fprintf(stderr, "imprint init: cannot create the store %s (%s)\n", db_path, imp_err_name(rc));
		return 1;
	}
	chmod(db_path, 0600);
	imp_db *db = imp_store_db(store);
	int status = db ? make_account(db, o.data, &keys, o.email, o.json) : 1;
	imp_store_close(&store);
	sodium_memzero(&keys, sizeof keys);
	/* The broker's TLS certificate; serve makes it too when it is missing. */
	if(status == 0 && (rc = imp_server_tls_ensure(o.data, NULL)))
		fprintf(stderr, "imprint init: could not create the TLS certificate in %s/%s (%s); serve makes it\n", o.data,
		        IMP_TLS_DIR, imp_err_name(rc));
	return status;
}

int imp_cmd_account(int argc, char **argv)
{
	opts o = {0};
	char db_path[4096], key_path[4096];
	if(argc < 1 || strcmp(argv[0], "create") != 0) {
		fprintf(stderr, "usage: imprint account create --data DIR [--email ADDRESS] [--json]\n");
		return 2;
	}
	if(parse(argc - 1, argv + 1, &o, "account create")) return 2;
	path_in(db_path, sizeof db_path, o.data, IMP_DB_FILE);
	path_in(key_path, sizeof key_path, o.data, IMP_KEYS_FILE);
	imp_keys keys;
	imp_store *store = NULL;
	if(imp_keys_load(key_path, &keys) || imp_store_open(db_path, 0, &store)) {
		fprintf(stderr, "imprint account create: %s is not an initialised data directory (run imprint init)\n", o.data);
		return 2;
	}
	imp_db *db = imp_store_db(store);
	int status = db ? make_account(db, o.data, &keys, o.email, o.json) : 1;
	imp_store_close(&store);
	sodium_memzero(&keys, sizeof keys);
	return status;
}
