/* The store interface. Every entity read or write goes through these functions, and every
 * one of them takes the caller's account key, so no handler can forget to scope a query:
 * another account's id is simply not found. The SQLite backend is in sqlite/; a PostgreSQL
 * one is to sit beside it behind the same functions.
 *
 * A store is opened once per process; each thread takes its own connection with
 * imp_store_db(), which it must not share. */
#ifndef IMP_STORE_H
#define IMP_STORE_H
#include <jansson.h>
#include <stdint.h>

#include "core/err.h"
#include "core/ids.h"
#include "core/kind.h"

typedef struct imp_store imp_store;
typedef struct imp_db imp_db;

/* Opens (creating when create is set) the store at path and applies migrations.
 * Caller closes with imp_store_close(). IMP_ERR_NOT_FOUND when it does not exist and
 * create is 0; IMP_ERR_STORE on any SQLite failure. */
imp_err imp_store_open(const char *path, int create, imp_store **out);
void imp_store_close(imp_store **s);

/* This thread's connection, opened on first use; closed when the thread exits or the store
 * closes. NULL when it cannot be opened. */
imp_db *imp_store_db(imp_store *s);

/* imp_store_db, inside a read transaction that sees every commit made before the call, in
 * any process, as one begun now would. Beginning and ending SQLite's read transaction was
 * a seventh of a GET by id's time, so the transaction is kept open after
 * imp_db_read_done and taken again by this thread's next call, so long as the WAL index's
 * header shows that nothing has committed since it began (which is exact: any commit
 * changes the header before its COMMIT returns). A kept transaction ends at the first
 * statement this thread runs outside the pair; and, so that it never holds the WAL back,
 * when the store's checkpointer finds it idle (every 50 ms) or the writer needs the WAL to
 * start over. For requests that read and then answer; every call is paired with
 * imp_db_read_done. Writes inside the pair still go to the writer (imp_db_begin), and the
 * pair's reads after one see it. NULL when the thread's connection cannot be opened, or
 * when its kept transaction would not end (SQLite refused COMMIT and ROLLBACK): the caller
 * answers as when the store is unavailable, rather than read an older snapshot. */
imp_db *imp_store_reader(imp_store *s);
/* Ends imp_store_reader's pair (NULL: nothing to do). */
void imp_db_read_done(imp_db *db);
/* How many connections keep a read transaction (for tests). */
int imp_store_readers_kept(imp_store *s);
/* The WAL lengths (pages) at which the store's checkpointer wakes, and past which the
 * writer checkpoints at commit itself (defaults 4096 and 65536; see db.c). For tests. */
void imp_store_set_checkpoint(imp_store *s, int wake_pages, int inline_pages);
/* Threads queued for the writer right now (tests: to know a group has formed). */
int imp_store_writers_waiting(imp_store *s);

/* Write transactions. begin replaces *db with the process's writer connection, on which
 * the writes of several threads are committed together (group commit, see sqlite/db.c);
 * commit returns once the work is durable (or failed) and puts the caller's connection
 * back in *db; rollback undoes only the caller's work and does the same. Between begin
 * and commit, use *db for every read and write. rollback without begin does nothing. */
imp_err imp_db_begin(imp_db **db);
imp_err imp_db_commit(imp_db **db);
/* commit, but at once, with whatever the open group holds, instead of leaving the
 * transaction open for the writers queued behind: for work big enough on its own (a batch
 * group), whose caller would otherwise wait for the next writer's work before it can
 * answer, and two requests of one batch client could never overlap. */
imp_err imp_db_commit_now(imp_db **db);
/* commit, without waiting for the group: the caller's work joins the open group and
 * l->done(l, rc) is called once that group commits (rc IMP_OK) or fails, on whichever
 * thread ends it, after the store's locks are released (so done must not block on the
 * store) and possibly before this returns. Returns IMP_OK when l was queued; an error
 * when the caller's own work could not be kept, and then l is never called. The group
 * stays open for more work: whoever queues for it next, or imp_store_flush, commits it. */
typedef struct imp_db_later imp_db_later;
struct imp_db_later {
	void (*done)(imp_db_later *l, imp_err rc);
	imp_db_later *next;   /* the store's */
};
imp_err imp_db_commit_later(imp_db **db, imp_db_later *l);
/* Commits the open group now if it holds work committed later and no writer is queued
 * (one that is commits it, or leaves it to the next), or whoever is queued when always is
 * set. A thread that committed later calls this before it waits for more work, so no group
 * stays open with nobody to end it. */
void imp_store_flush(imp_store *s, int always);
void imp_db_rollback(imp_db **db);
/* begin, without the savepoint that lets rollback undo this request alone (SQLite copies
 * every page a request writes under it: a fifth of a device create). For a request whose
 * writes are statements that fail whole (SQLite undoes a failed statement itself) and that
 * cannot be refused once it has written. Its rollback undoes nothing when it wrote nothing;
 * after a write it rolls back the whole group, every member of which is then told its work
 * failed (IMP_ERR_STORE), as when the group's COMMIT fails. imp_db_undo is not for it. */
imp_err imp_db_begin_unmarked(imp_db **db);

/* Inside a write transaction: mark a point, then keep (undo 0) or undo (undo 1) what was
 * written since. One mark at a time. */
imp_err imp_db_mark(imp_db *db);
imp_err imp_db_unmark(imp_db *db, int undo);

/* Inside a write transaction: undo all the caller's work since begin, and stay in the
 * transaction. A mark costs a copy of every page written under it, so a long run of small
 * writes goes faster unmarked, undone whole and run again marked in the rare case one of
 * them must be undone alone. */
imp_err imp_db_undo(imp_db *db);

/* Rows inserted, updated or deleted on db since it opened: tells whether a step wrote. */
int64_t imp_db_writes(imp_db *db);

/* Whether db is inside a write transaction (between imp_db_begin and commit, the writer's
 * open group): what it reads may be another request's work that is not committed yet and
 * may still be rolled back, so a cache must not keep it. */
int imp_db_in_write(imp_db *db);

/* One stored entity: the meta fields every entity has, and doc, the JSON object of the
 * kind's fields (including the ones the store keeps in columns). */
typedef struct {
	int64_t key;          /* internal integer key; ordering of creation */
	imp_id id;
	int64_t account;
	imp_id account_id;
	int64_t version;
	uint64_t created, modified;
	imp_id created_by, modified_by;
	json_t *doc;          /* owned; release with imp_entity_clear() */
} imp_entity;

void imp_entity_clear(imp_entity *e);

/* Inserts e (id, account, created_by and doc set by the caller; the rest set here).
 * secret, when not NULL, is kept beside the row and never returned by get or list.
 * IMP_ERR_CONFLICT on a unique constraint. */
imp_err imp_db_insert(imp_db *db, const imp_kind *k, imp_entity *e, const char *secret);

/* imp_db_insert with the version to start at: an entity made and changed by the server in
 * one step (a batch's device, activated with its first credential) is stored as it would
 * be after the two, without writing its row twice. */
imp_err imp_db_insert_at(imp_db *db, const imp_kind *k, imp_entity *e, const char *secret, int64_t version);

/* Inserts the n entities es (each as imp_db_insert would, without a secret, at its
 * es[i]->version, 0 meaning 1) in multi-row statements: a batch's devices. Nothing of one
 * statement stays when it fails, but rows of earlier statements do: the caller undoes its
 * transaction. IMP_ERR_CONFLICT on a unique constraint. */
imp_err imp_db_insert_many(imp_db *db, const imp_kind *k, imp_entity *const *es, size_t n);

/* Reads the entity id of kind k in account into out (caller clears it). NOT_FOUND. */
imp_err imp_db_get(imp_db *db, const imp_kind *k, int64_t account, const char *id, imp_entity *out);

/* IMP_OK when account has an entity id of kind k, else NOT_FOUND: imp_db_get without reading
 * the row (a reference checked inside a write, where every microsecond is the writer's). */
imp_err imp_db_exists(imp_db *db, const imp_kind *k, int64_t account, const char *id);

/* Writes e's doc, bumps its version and modified time. expect_version < 0 skips the check;
 * otherwise IMP_ERR_STALE when the stored version differs. NOT_FOUND. */
imp_err imp_db_update(imp_db *db, const imp_kind *k, imp_entity *e, int64_t expect_version);

/* Deletes id; expect_version as for update. NOT_FOUND, STALE. */
imp_err imp_db_delete(imp_db *db, const imp_kind *k, int64_t account, const char *id, int64_t expect_version);

/* Number of entities of kind k in account whose field equals value (the field must have a
 * column). Used for "still in use" checks. */
imp_err imp_db_count_where(imp_db *db, const imp_kind *k, int64_t account, const char *field,
                           const char *value, int64_t *n);

/* Deletes every entity of kind k in account whose field equals value. */
imp_err imp_db_delete_where(imp_db *db, const imp_kind *k, int64_t account, const char *field,
                            const char *value);

typedef struct {
	const char *field;   /* a field with IMP_F_FILTER */
	const char *value;   /* as given in the query string; "null" matches null */
} imp_filter;

typedef struct {
	const imp_filter *filters;
	size_t nfilters;
	const char *q;           /* prefix of any of the kind's q_columns, or NULL */
	const char *sort;        /* a field with IMP_F_SORT, "created" or "lastModified" */
	int desc;
	int64_t page;            /* from 1; ignored when after >= 0 */
	int64_t page_size;
	int64_t after;           /* cursor: keys after (before, when desc) this one; -1 none */
	int want_count;
	/* Devices only: just those whose organization is this one or below it (an end user's
	 * reach), or NULL. */
	const char *within_org;
} imp_query;

/* Appends the matching entities to results (a JSON array of entity objects rendered by
 * render(), which returns a new reference or NULL on failure). Sets *count to the total
 * match count when want_count, and *last to the last key returned (-1 when none).
 * IMP_ERR_BAD_REQUEST when a filter value has the wrong type for its field. */
typedef json_t *(*imp_render_fn)(imp_db *db, const imp_kind *k, const imp_entity *e, void *arg);
imp_err imp_db_list(imp_db *db, const imp_kind *k, int64_t account, const imp_query *q,
                    imp_render_fn render, void *arg, json_t *results, int64_t *count, int64_t *last);

/* imp_db_list without the array: calls fn with each matching entity in turn (e is the
 * store's, valid during the call) and stops at the first error fn returns, which it
 * returns. With rows 0 it only counts. */
typedef imp_err (*imp_entity_fn)(imp_db *db, const imp_entity *e, void *arg);
imp_err imp_db_list_each(imp_db *db, const imp_kind *k, int64_t account, const imp_query *q, int rows,
                         imp_entity_fn fn, void *arg, int64_t *count, int64_t *last);

/* Accounts. */
imp_err imp_db_account_create(imp_db *db, const char *name, imp_id *id, int64_t *key);
imp_err imp_db_account_key(imp_db *db, const char *id, int64_t *key);

/* The secret kept with an entity by imp_db_insert/imp_db_set_secret. Caller frees *out. */
imp_err imp_db_get_secret(imp_db *db, const imp_kind *k, int64_t key, char **out);
imp_err imp_db_set_secret(imp_db *db, const imp_kind *k, int64_t key, const char *secret);

/* The entity of kind k whose secret equals secret (API keys, by keyed hash). NOT_FOUND. */
imp_err imp_db_find_by_secret(imp_db *db, const imp_kind *k, const char *secret, imp_entity *out);

/* Calls fn for every account user with this email (in account, when account > 0) with its
 * password hash, until fn returns non-zero, which is then returned. */
typedef int (*imp_user_fn)(const imp_entity *user, const char *pwhash, void *arg);
imp_err imp_db_users_by_email(imp_db *db, const char *email, int64_t account, imp_user_fn fn,
                              void *arg, int *stopped);

/* The same for end users (imp_kind_end_user); users without a password have hash "". */
imp_err imp_db_end_users_by_email(imp_db *db, const char *email, int64_t account, imp_user_fn fn,
                                  void *arg, int *stopped);

/* Organization reach: *within is 1 when org is ancestor or lies below it (in account),
 * else 0. imp_db_device_within says the same of device_id's organization (0 for a device
 * in no organization, or no such device). Both walk at most IMP_ORG_DEPTH_MAX levels. */
imp_err imp_db_org_within(imp_db *db, int64_t account, const char *org, const char *ancestor, int *within);
imp_err imp_db_device_within(imp_db *db, int64_t account, const char *device_id, const char *ancestor, int *within);

/* Association codes, kept as their keyed hash (see src/api/association.c). put stores the
 * one unused code of device_id, replacing any earlier one. find gives the device of the
 * unexpired code with this hash in account (NOT_FOUND when unknown, expired or used);
 * take deletes it (the code is used). */
imp_err imp_db_assoc_code_put(imp_db *db, int64_t account, const char *device_id, const char *hash,
                              uint64_t expires_ms, const char *created_by);
imp_err imp_db_assoc_code_find(imp_db *db, int64_t account, const char *hash, uint64_t now_ms, imp_id *device_id);
imp_err imp_db_assoc_code_take(imp_db *db, int64_t account, const char *hash);

/* Login sessions. */
imp_err imp_db_session_create(imp_db *db, int64_t account, const char *user_id, uint64_t expires_ms,
                              imp_id *id);
/* IMP_OK when session id exists for user and has not expired; NOT_FOUND otherwise. */
imp_err imp_db_session_check(imp_db *db, const char *id, const char *user_id, uint64_t now_ms);

/* Audit entries. details may be NULL. */
typedef struct {
	int64_t account;
	const char *actor_id;
	const char *actor_type;   /* accountUser, apiKey, system */
	const char *action;       /* create, update, delete, ... */
	const char *entity_type;  /* a kind name */
	const char *entity_id;
	json_t *details;          /* borrowed */
} imp_audit;

imp_err imp_db_audit(imp_db *db, const imp_audit *a);
imp_err imp_db_audit_list(imp_db *db, int64_t account, const char *entity_id, const char *action,
                          const imp_query *q, json_t *results, int64_t *count, int64_t *last);

/* Credentials: at most one live credential per entity (device, account user, end user).
 * Putting one replaces the previous one in the same statement, so the old secret or
 * certificate stops working when the transaction commits. */
#define IMP_METHOD_LEN 12
#define IMP_ENTITY_TYPE_LEN 16
typedef struct {
	imp_id id;
	int64_t account;
	imp_id account_id;
	char entity_type[IMP_ENTITY_TYPE_LEN];  /* device, accountUser, endUser */
	imp_id entity_id;
	char method[IMP_METHOD_LEN];            /* password, certificate */
	char fingerprint[65];                   /* certificates: SHA-256 of the DER, hex */
	uint64_t not_after;                     /* certificates: Unix ms; 0 otherwise */
	uint64_t created;
	imp_id created_by;
	char *certificate;                      /* owned PEM or NULL; imp_credential_clear() */
} imp_credential;

void imp_credential_clear(imp_credential *c);

/* Stores c (id, account, entity, method, created_by set by the caller; created set here)
 * with secret_hash (password) or c->certificate and c->fingerprint, replacing the entity's
 * previous credential; *replaced says whether there was one (replaced NULL: the caller
 * knows there was none, and it is not looked up). IMP_ERR_CONFLICT when the fingerprint is
 * another entity's. */
imp_err imp_db_credential_put(imp_db *db, imp_credential *c, const char *secret_hash, int *replaced);
/* The first password credentials of n entities that have none (a batch's new devices), in
 * multi-row statements: cs[i] as imp_db_credential_put takes it, hashes[i] its secret's
 * hash. Rows of a failed statement do not stay, earlier ones do (the caller undoes its
 * transaction). IMP_ERR_CONFLICT when one of the entities has a credential. */
imp_err imp_db_credentials_first(imp_db *db, imp_credential *const *cs, const char *const *hashes, size_t n);

/* By credential id, or by the entity it belongs to. NOT_FOUND. */
imp_err imp_db_credential_get(imp_db *db, int64_t account, const char *id, imp_credential *out);
imp_err imp_db_credential_of(imp_db *db, int64_t account, const char *entity_id, imp_credential *out);

/* Appends credential metadata objects (never a secret) to results; entity_id and
 * entity_type may be NULL. */
imp_err imp_db_credential_list(imp_db *db, int64_t account, const char *entity_id, const char *entity_type,
                               const imp_query *q, json_t *results, int64_t *count, int64_t *last);

/* The API's metadata object of c (never a secret). New reference or NULL. */
json_t *imp_credential_json(const imp_credential *c);

/* Revokes the credential id (NOT_FOUND), or every credential of entity_id (no error when
 * there is none). */
imp_err imp_db_credential_delete(imp_db *db, int64_t account, const char *id);
imp_err imp_db_credential_delete_of(imp_db *db, int64_t account, const char *entity_id);

/* What the broker's checks need about an entity id, across accounts: its live credential
 * and, for a device, whether it is disabled and its template's authentication method. */
typedef struct {
	int64_t account;
	imp_id account_id;
	char entity_type[IMP_ENTITY_TYPE_LEN];
	char method[IMP_METHOD_LEN];            /* "" when the entity has no credential */
	char secret[65];                        /* keyed hash of a password secret */
	char fingerprint[65];
	uint64_t not_after;
	int is_device, disabled;
	char auth_method[IMP_METHOD_LEN];       /* device's template: password, certificate */
	int64_t device_key;                     /* a device's row key (its status is written by it) */
	int64_t change_seq;                     /* the change feed's last seq as this read saw it */
	char template_id[IMP_UUID_LEN + 1];     /* a device's template */
} imp_auth_row;

/* NOT_FOUND when id is neither a device nor an entity with a credential. */
imp_err imp_db_auth_lookup(imp_db *db, const char *id, imp_auth_row *out);

/* Calls fn with the name and permission of every channel of device_id's template (in
 * account), until fn returns non-zero. NOT_FOUND when there is no such device. */
typedef int (*imp_channel_fn)(const char *name, const char *permission, void *arg);
imp_err imp_db_device_channels(imp_db *db, int64_t account, const char *device_id, imp_channel_fn fn, void *arg);
/* The same for the channels of device template template_id (none is not an error). */
imp_err imp_db_template_channels(imp_db *db, int64_t account, const char *template_id, imp_channel_fn fn, void *arg);

/* The change feed: one row per change that must end a live MQTT session or refresh what
 * the broker keeps about an entity (a credential replaced or revoked, a device disabled,
 * enabled or deleted, a user deleted), written in the caller's transaction. The broker
 * plugin reads it (imp_db_changes_since); rows older than IMP_CHANGES_KEEP_MS are pruned
 * here, by the writer, now and then. what: credential, revoke, disable, enable, delete (of the
 * entity), channels (entity_id is a device template whose channel templates changed). */
#define IMP_CHANGES_KEEP_MS (10 * 60 * 1000)
imp_err imp_db_change(imp_db *db, const char *entity_id, const char *what);

/* Calls fn for every change after seq *last, in order, advancing *last, until fn
 * returns non-zero or max rows were read. */
typedef int (*imp_change_fn)(int64_t seq, const char *entity_id, const char *what, void *arg);
imp_err imp_db_changes_since(imp_db *db, int64_t *last, int max, imp_change_fn fn, void *arg);
/* The newest change's seq (0 when none) into *seq. */
imp_err imp_db_changes_last(imp_db *db, int64_t *seq);

/* The change feed's generation: a counter in a file beside the store (the database's path
 * with "-feed" appended) that goes up by one after every commit holding a change row.
 * Another process (the broker plugin) tells whether the feed moved since it last read it
 * with one memory read instead of a query; whatever it keeps about credentials stays exact
 * by reading the feed whenever the generation is not the one it saw. Open maps the file,
 * creating it when missing: IMP_ERR_STORE when it cannot. */
typedef struct imp_feed imp_feed;
imp_err imp_feed_open(const char *db_path, imp_feed **out);
uint64_t imp_feed_gen(const imp_feed *f);
void imp_feed_bump(imp_feed *f);
void imp_feed_close(imp_feed **f);

/* The devices that can log in with a password now (enabled, of a password template, with a
 * password credential), in one read: before the first call of fn, *seq holds the change
 * feed's last seq as of that read (every change after it is newer than the rows: the
 * highest ever given, so the next change is *seq + 1) and *estimate an upper bound of the
 * number of rows. fn returns non-zero to stop. */
typedef struct {
	const char *id, *account_id, *template_id, *secret;   /* secret: the keyed hash, hex */
	int64_t key, account;
} imp_login_row;
typedef int (*imp_login_fn)(const imp_login_row *r, void *arg);
imp_err imp_db_password_logins(imp_db *db, int64_t *seq, int64_t *estimate, imp_login_fn fn, void *arg);

/* Standalone connections, for a process that shares the store but not its schema (the
 * broker plugin): no migrations; IMP_ERR_STORE when the schema is older than this build
 * expects, IMP_ERR_NOT_FOUND when the file does not exist. readonly: a read-only
 * connection with no busy timeout, so a read never waits on another process's lock
 * (WAL readers do not wait on writers; the rare IMP_ERR_BUSY means "try again later").
 * Otherwise read-write, waiting up to busy_ms for the write lock. Caller closes with
 * imp_db_close(). Use only from one thread at a time. */
imp_err imp_db_open(const char *path, int readonly, int busy_ms, imp_db **out);

/* A read-write connection from imp_db_open waits for the write lock by trying again every
 * millisecond (up to its busy_ms) instead of SQLite's backing off to 100 ms between tries,
 * which never catches the short gaps a long batch leaves between its transactions. */
void imp_db_busy_poll(imp_db *db);
void imp_db_close(imp_db **db);
/* Transactions on such a read-write connection (BEGIN IMMEDIATE ... COMMIT). */
imp_err imp_db_tx_begin(imp_db *db);
imp_err imp_db_tx_commit(imp_db *db);
void imp_db_tx_rollback(imp_db *db);

/* Connection status, as the broker sees it: sets devices.connected and lastConnected
 * (at_ms, which is the connect or disconnect time). Neither the version nor the modified
 * time change: status is observed, not edited, and must not make a client's If-Match
 * stale. The device is found by its row key (one B-tree descent, where its id would take two)
 * and must still have device_id there (SQLite may give a deleted device's key to a new
 * one); *key 0 finds it by id and sets *key to its row key. NOT_FOUND when there is no
 * such device. */
imp_err imp_db_device_set_connected(imp_db *db, int64_t *key, const char *device_id, int connected, uint64_t at_ms);
/* Marks every device disconnected (a broker starting has no sessions yet). */
imp_err imp_db_devices_disconnect_all(imp_db *db);

/* The connection-status map: a file beside the store (the database's path with "-status"
 * appended) holding one 64-bit word a device at its row key: the time of its last connect
 * or disconnect, and whether the store's devices.connected says connected. The broker's
 * status thread is its one writer; the server reads it to show lastConnected.
 *
 * Why: in a connect storm nearly every session is over before the status thread's next
 * write, so a device's connected goes 0 -> 0 and only lastConnected moves; writing that
 * into devices cost a random 4 KiB page of the table a connect (read, WAL, checkpoint,
 * fsync: a quarter of the broker's CPU a connect). The word costs a memory store. The
 * store is written only when connected changes, and it stays what lists filter on; the
 * time in the store is the one of that write, the map's the latest.
 *
 * A word is tagged with a hash of the device's id: a deleted device's key given to a new
 * device shows nothing of the old one. The file grows as keys do, its blocks reserved (a
 * store into a mapped page the disk cannot back is SIGBUS), its pages in memory only as
 * devices connect; nothing in it is needed for recovery: lost, lastConnected falls back to
 * the store's. */
typedef struct imp_status imp_status;
/* writable: the writer's map, the file made (or started again when it is not a status
 * file) now; IMP_ERR_STORE when it cannot be. A reader maps the file when it exists and
 * looks again every 100 ms for a grown or replaced one. */
imp_err imp_status_open(const char *db_path, int writable, imp_status **out);
/* Every writer function takes s NULL as a map that has no slot for anyone. */
void imp_status_close(imp_status **s);
/* Writer: records a connect or disconnect at at_ms. 1 when the store's connected must be
 * written (the device's store row says otherwise, or the slot holds another device's
 * word), 0 when not, -1 when the device has no slot (key 0, past the map's limit, the file
 * could not grow, or s is NULL: a broker without the file): write the store, always. */
int imp_status_note(imp_status *s, int64_t key, const char *device_id, int connected, uint64_t at_ms);
/* Writer: the store now holds connected for the device at key (after the commit that wrote
 * it, which found the device there): the slot is the device's, whoever had it. */
void imp_status_stored(imp_status *s, int64_t key, const char *device_id, int connected, uint64_t at_ms);
/* Writer: the device is gone from the store: its slot is emptied. */
void imp_status_forget(imp_status *s, int64_t key, const char *device_id);
/* Writer: the store now has no device marked connected (after imp_db_devices_disconnect_all
 * committed). Reads only the parts of the file that hold data. */
void imp_status_restart(imp_status *s);
/* Reader: the device's last connect or disconnect in milliseconds since the epoch, 0 when
 * the map has nothing for it. Safe from any number of threads. */
uint64_t imp_status_last(imp_status *s, int64_t key, const char *device_id);

/* Devices: server-set state. activate moves defined -> activated (no change otherwise;
 * *changed says whether it moved). set_disabled sets the flag; NOT_FOUND. Both bump the
 * device's version and modified time when they change it. */
imp_err imp_db_device_activate(imp_db *db, int64_t account, const char *id, const char *actor, int *changed);
imp_err imp_db_device_set_disabled(imp_db *db, int64_t account, const char *id, int disabled, const char *actor,
                                   int *changed);

/* Batches: what a serial number made under a batch name: the device (its key, and its id,
 * which tells a device that took the key of a deleted one apart), at which line, and the
 * generation of the request that last gave it a credential (see src/api/batch.c). */
typedef struct {
	const char *serial;
	const char *device_id;
	int64_t line, device_key;
} imp_batch_item;

typedef struct {
	imp_id device_id;      /* empty for an item of a device deleted before migration 11 */
	int64_t line, device_key, generation;
} imp_batch_found;

imp_err imp_db_batch_item_get(imp_db *db, int64_t account, const char *batch, const char *serial,
                              imp_batch_found *out);
/* n batch items at once (multi-row statements, as imp_db_credentials_first).
 * IMP_ERR_CONFLICT when a serial is there already. */
imp_err imp_db_batch_items_put(imp_db *db, int64_t account, const char *batch, const imp_batch_item *items,
                               int64_t generation, size_t n);
imp_err imp_db_batch_item_touch(imp_db *db, int64_t account, const char *batch, const char *serial,
                                int64_t generation);
/* The entity of kind k with internal key key, in account. NOT_FOUND. */
imp_err imp_db_get_by_key(imp_db *db, const imp_kind *k, int64_t account, int64_t key, imp_entity *out);

/* Field provisioning: a claim token's allow-list, its use count, and the serial numbers
 * claims made devices for. All inside the caller's write transaction. */
imp_err imp_db_claim_serial_add(imp_db *db, int64_t token_key, const char *serial);
imp_err imp_db_claim_serials_delete(imp_db *db, int64_t token_key);
/* IMP_OK when serial is on token_key's allow-list; NOT_FOUND otherwise. */
imp_err imp_db_claim_serial_allowed(imp_db *db, int64_t token_key, const char *serial);
/* Counts one use of token_key; NOT_FOUND when it has none left (or is gone). */
imp_err imp_db_claim_use(imp_db *db, int64_t token_key);
/* Records that a claim made device_id for serial in account; IMP_ERR_CONFLICT when a claim
 * made one for that serial before. */
imp_err imp_db_claimed_serial_put(imp_db *db, int64_t account, const char *serial, const char *device_id,
                                  const char *token_id);

/* Store health: IMP_OK when a trivial query answers. */
imp_err imp_db_ping(imp_db *db);

/* Runs PRAGMA integrity_check; IMP_OK when it says ok. */
imp_err imp_db_integrity(imp_db *db);

#endif
