/* Versioned schema migrations, applied in order at init and at every start-up. The
 * database's PRAGMA user_version records how many have been applied. Never edit a
 * migration that has shipped: add the next one. */
#include "store/migrations.h"

#define ENTITY_COLUMNS                                                                    \
	"key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, account INTEGER NOT NULL, "        \
	"version INTEGER NOT NULL, created INTEGER NOT NULL, created_by TEXT, "               \
	"modified INTEGER NOT NULL, modified_by TEXT, doc TEXT NOT NULL, secret TEXT"

static const char *const MIGRATIONS[] = {
	/* 1: accounts, identity, templates, organizations, devices, audit */
	"CREATE TABLE accounts (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT,"
	"  created INTEGER NOT NULL);"
	"CREATE TABLE account_users (" ENTITY_COLUMNS ", email TEXT NOT NULL, name TEXT,"
	"  UNIQUE (account, email));"
	"CREATE INDEX account_users_email ON account_users (email);"
	"CREATE TABLE api_keys (" ENTITY_COLUMNS ", name TEXT NOT NULL);"
	"CREATE UNIQUE INDEX api_keys_secret ON api_keys (secret);"
	"CREATE INDEX api_keys_account ON api_keys (account, name);"
	"CREATE TABLE sessions (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
	"  account INTEGER NOT NULL, user_id TEXT NOT NULL, created INTEGER NOT NULL,"
	"  expires INTEGER NOT NULL);"
	"CREATE TABLE device_templates (" ENTITY_COLUMNS ", name TEXT NOT NULL, auth_method TEXT NOT NULL);"
	"CREATE INDEX device_templates_name ON device_templates (account, name);"
	"CREATE TABLE device_fields (" ENTITY_COLUMNS ", template_id TEXT NOT NULL, name TEXT NOT NULL,"
	"  UNIQUE (account, template_id, name));"
	"CREATE TABLE channel_templates (" ENTITY_COLUMNS ", entity_id TEXT NOT NULL, name TEXT NOT NULL,"
	"  UNIQUE (account, entity_id, name));"
	"CREATE TABLE organization_templates (" ENTITY_COLUMNS ", name TEXT NOT NULL);"
	"CREATE INDEX organization_templates_name ON organization_templates (account, name);"
	"CREATE TABLE organizations (" ENTITY_COLUMNS ", name TEXT NOT NULL, template_id TEXT,"
	"  parent_id TEXT);"
	"CREATE INDEX organizations_name ON organizations (account, name);"
	"CREATE INDEX organizations_parent ON organizations (account, parent_id);"
	"CREATE INDEX organizations_template ON organizations (account, template_id);"
	"CREATE TABLE devices (" ENTITY_COLUMNS ", template_id TEXT NOT NULL, org_id TEXT,"
	"  serial TEXT, state TEXT NOT NULL, connected INTEGER NOT NULL DEFAULT 0,"
	"  last_connected TEXT, firmware_version TEXT, disabled INTEGER NOT NULL DEFAULT 0,"
	"  name TEXT);"
	"CREATE INDEX devices_account ON devices (account);"
	"CREATE INDEX devices_modified ON devices (account, modified);"
	/* Template and organization lists page in creation order straight off these, and
	 * filter and count by the trailing columns without reading rows. */
	"CREATE INDEX devices_template ON devices (account, template_id, key, state, connected, disabled);"
	"CREATE INDEX devices_org ON devices (account, org_id, key, state, connected, disabled);"
	"CREATE INDEX devices_serial ON devices (account, serial);"
	"CREATE INDEX devices_name ON devices (account, name);"
	"CREATE INDEX devices_state ON devices (account, state);"
	"CREATE INDEX devices_connected ON devices (account, connected);"
	"CREATE INDEX devices_disabled ON devices (account, disabled);"
	"CREATE INDEX devices_firmware ON devices (account, firmware_version);"
	"CREATE TABLE audit (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, account INTEGER NOT NULL,"
	"  created INTEGER NOT NULL, actor_id TEXT, actor_type TEXT NOT NULL, action TEXT NOT NULL,"
	"  entity_type TEXT NOT NULL, entity_id TEXT, details TEXT);"
	"CREATE INDEX audit_entity ON audit (account, entity_id);"
	"CREATE INDEX audit_action ON audit (account, action);",

	/* 2: credentials, account certificate authorities, batch items */
	/* One live credential per entity (device, account user, end user): regenerating
	 * replaces the row, so the old secret stops working in the same commit. secret is the
	 * HMAC-SHA256 (hex) of a password secret under the server key; certificates keep their
	 * SHA-256 fingerprint, unique across the store, and their PEM. */
	"CREATE TABLE credentials (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
	"  account INTEGER NOT NULL, entity_type TEXT NOT NULL, entity_id TEXT NOT NULL UNIQUE,"
	"  method TEXT NOT NULL, secret TEXT, fingerprint TEXT, certificate TEXT, not_after INTEGER,"
	"  created INTEGER NOT NULL, created_by TEXT);"
	"CREATE INDEX credentials_account ON credentials (account, entity_type);"
	"CREATE UNIQUE INDEX credentials_fingerprint ON credentials (fingerprint) WHERE fingerprint IS NOT NULL;"
	"CREATE TABLE certificate_authorities (" ENTITY_COLUMNS ", fingerprint TEXT NOT NULL,"
	"  UNIQUE (account, fingerprint));"
	/* What each batch made, by serial number: a resumed batch maps a serial to the device it
	 * made before, and a serial repeated at another line of the same batch is refused. */
	"CREATE TABLE batch_items (account INTEGER NOT NULL, batch TEXT NOT NULL, serial TEXT NOT NULL,"
	"  line INTEGER NOT NULL, device_key INTEGER NOT NULL, PRIMARY KEY (account, batch, serial))"
	"  WITHOUT ROWID;",

	/* 3: fewer device indexes to write. A new device is neither connected, nor disabled,
	 * nor reports firmware, so those three indexes hold only the devices that are (lists
	 * filter them with a literal, which SQLite needs to pick a partial index); the other
	 * filters (connected=false, ...) match most devices: lists read them in key order off
	 * devices_account (account, then the key), and stop at the page's end. */
	"DROP INDEX devices_connected;"
	"DROP INDEX devices_disabled;"
	"DROP INDEX devices_firmware;"
	"CREATE INDEX devices_connected ON devices (account, connected) WHERE connected = 1;"
	"CREATE INDEX devices_disabled ON devices (account, disabled) WHERE disabled = 1;"
	"CREATE INDEX devices_firmware ON devices (account, firmware_version) WHERE firmware_version IS NOT NULL;",

	/* 4: the request generation that last gave a batch item its credential, so a request
	 * of a killed client that arrives after its rerun's cannot replace the rerun's secrets. */
	"ALTER TABLE batch_items ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;",

	/* 5: the change feed the broker plugin reads on its tick (see imp_db_change). seq is
	 * AUTOINCREMENT so a pruned seq is never reused and the reader's "seq > last" never
	 * misses a row. */
	"CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, entity_id TEXT NOT NULL,"
	"  what TEXT NOT NULL, at INTEGER NOT NULL);"
	"CREATE INDEX changes_at ON changes (at);",

	/* 6: a deleted device's batch items are marked (device keys can be reused by SQLite), so
	 * a resumed batch never maps a serial number to another device. */
	"CREATE INDEX batch_items_device ON batch_items (device_key);",

	/* 7: field provisioning. A claim token's secret is the keyed hash of the token; its
	 * allow-list (claim_serials) is kept apart from the row, so reading a token never reads
	 * 100,000 serial numbers. claimed_serials holds every serial number a claim made a
	 * device for: one claim per serial number per account, whichever token it came with. */
	"CREATE TABLE claim_tokens (" ENTITY_COLUMNS ", template_id TEXT NOT NULL,"
	"  max_uses INTEGER NOT NULL, uses INTEGER NOT NULL DEFAULT 0, expires TEXT NOT NULL);"
	"CREATE UNIQUE INDEX claim_tokens_secret ON claim_tokens (secret);"
	"CREATE INDEX claim_tokens_template ON claim_tokens (account, template_id);"
	"CREATE TABLE claim_serials (token_key INTEGER NOT NULL, serial TEXT NOT NULL,"
	"  PRIMARY KEY (token_key, serial)) WITHOUT ROWID;"
	"CREATE TABLE claimed_serials (account INTEGER NOT NULL, serial TEXT NOT NULL,"
	"  device_id TEXT NOT NULL, token_id TEXT NOT NULL, created INTEGER NOT NULL,"
	"  PRIMARY KEY (account, serial)) WITHOUT ROWID;",

	/* 8: end users, their templates, association codes. An end user belongs to one
	 * organization; its email is unique within the account (it logs in with it). An
	 * association code is kept only as its keyed hash, one unused code per device (a new
	 * one replaces it), and is deleted when used. */
	"CREATE TABLE end_user_templates (" ENTITY_COLUMNS ", name TEXT NOT NULL);"
	"CREATE INDEX end_user_templates_name ON end_user_templates (account, name);"
	"CREATE TABLE end_users (" ENTITY_COLUMNS ", org_id TEXT NOT NULL, name TEXT NOT NULL,"
	"  email TEXT NOT NULL, template_id TEXT, UNIQUE (account, email));"
	"CREATE INDEX end_users_email ON end_users (email);"
	"CREATE INDEX end_users_org ON end_users (account, org_id);"
	"CREATE INDEX end_users_name ON end_users (account, name);"
	"CREATE INDEX end_users_template ON end_users (account, template_id);"
	"CREATE TABLE association_codes (key INTEGER PRIMARY KEY, account INTEGER NOT NULL,"
	"  device_id TEXT NOT NULL UNIQUE, code_hash TEXT NOT NULL UNIQUE, expires INTEGER NOT NULL,"
	"  created INTEGER NOT NULL, created_by TEXT);",

	/* 9: connected out of the template and organization indexes. The broker writes a
	 * device's connection status at every connect and disconnect; with connected in them
	 * each write moved an entry in both (two more random pages read and written). Lists
	 * filtering by connected read it from the row (true: the partial devices_connected). */
	"DROP INDEX devices_template;"
	"DROP INDEX devices_org;"
	"CREATE INDEX devices_template ON devices (account, template_id, key, state, disabled);"
	"CREATE INDEX devices_org ON devices (account, org_id, key, state, disabled);",

	/* 10: expired association codes are pruned a few at a time as new ones are made
	 * (imp_db_assoc_code_put); this finds them without reading the table. */
	"CREATE INDEX association_codes_expires ON association_codes (expires);",

	/* 11: a batch item names its device by id as well as by key. A device whose key was
	 * taken by a later one (SQLite reuses the largest key once it is deleted) no longer
	 * matches, so deleting a device need not find and mark its items, and the index that
	 * found them goes: one b-tree fewer to write for every device a batch makes, 5% of a
	 * batch's time (bench/README.md). Items marked before (device_key 0) keep no id. */
	"ALTER TABLE batch_items ADD COLUMN device_id TEXT;"
	"UPDATE batch_items SET device_id = (SELECT id FROM devices WHERE devices.key = batch_items.device_key)"
	"  WHERE device_key != 0;"
	"DROP INDEX batch_items_device;",
};

const char *const *imp_migrations(int *count)
{
	*count = (int)(sizeof MIGRATIONS / sizeof MIGRATIONS[0]);
	return MIGRATIONS;
}
