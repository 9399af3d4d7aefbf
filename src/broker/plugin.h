/* Internal to the mosquitto plugin (plugin*.c): the per-client cache the ACL reads, and the
 * connection-status writer. Everything here but plugin__status_* runs on the broker's one
 * thread only. */
#ifndef IMP_BROKER_PLUGIN_H
#define IMP_BROKER_PLUGIN_H
#include "broker/principal.h"

/* What the ACL needs about one client, loaded at connect. conn is the broker's client
 * object while the session is live, NULL while a persistent session waits offline. */
typedef struct plugin_client {
	const void *conn;
	int64_t change_seq;      /* the change feed's last seq when the client logged in */
	imp_mqtt_principal p;
	struct plugin_client *next;
} plugin_client;

/* Keeps p (taking its channels) for client id p->id, replacing any entry of that id.
 * IMP_ERR_NOMEM (p is then cleared). */
imp_err plugin__clients_put(const void *conn, int64_t change_seq, imp_mqtt_principal *p);
/* The entry of client id, or NULL. */
plugin_client *plugin__clients_get(const char *id);
/* Drops the entry of client id, if any. */
void plugin__clients_del(const char *id);
size_t plugin__clients_count(void);
/* Calls fn with every entry; fn must not add or drop entries. */
void plugin__clients_each(void (*fn)(plugin_client *c, void *arg), void *arg);
void plugin__clients_free(void);

/* A device template's channels, read from the store at the first connect of one of its
 * devices and kept until the change feed says they changed ("channels"). get: 1 and the
 * channels (valid until the next put or forget), or 0 when not kept. put copies them;
 * on failure nothing is kept. */
int plugin__templates_get(int64_t account, const char *template_id, const imp_acl_channel **ch, size_t *n);
void plugin__templates_put(int64_t account, const char *template_id, const imp_acl_channel *ch, size_t n);
void plugin__templates_forget(const char *template_id);
void plugin__templates_free(void);

/* Password logins of devices kept in memory (plugin_logins.c): start maps the feed's
 * generation file beside the store at db_path and loads the table on a thread of its own
 * (-1 when the file cannot be had: every login then asks the store). check: 1 and row
 * filled as imp_verify_password would have, when the table holds clientid with this
 * secret (mac: its keyed hash) and is current with the feed (read through db when it
 * moved, or when feed_seq, the change the broker's tick read last, is newer than what the
 * table has seen); 0 when the store must decide. put: keeps a device the store just allowed. tick:
 * takes a finished load and follows the feed between logins. */
int plugin__logins_start(const char *db_path);
int plugin__logins_check(imp_db *db, int64_t feed_seq, const char *clientid, const char *username,
                         const uint8_t *mac, imp_auth_row *row);
void plugin__logins_put(const char *clientid, const uint8_t *mac, const imp_auth_row *row);
void plugin__logins_tick(imp_db *db);
void plugin__logins_stop(void);

/* Starts the thread that writes connection status through its own read-write connection
 * to path (after marking every device disconnected: a starting broker has no sessions).
 * IMP_ERR_NOT_FOUND, IMP_ERR_STORE, IMP_ERR_NOMEM. */
imp_err plugin__status_start(const char *path);
/* Queues a status change of the device device_id with row key key (0: unknown); never
 * waits for the writer. 0, or -1 when the queue is full and the change was dropped. */
int plugin__status_push(const char *device_id, int64_t key, int connected);
/* Writes what is queued, then stops the thread. */
void plugin__status_stop(void);
/* Number of status writes that failed so far (the broker thread logs them). */
unsigned long plugin__status_failures(void);

#endif
