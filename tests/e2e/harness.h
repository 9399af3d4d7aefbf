/* The end-to-end harness: starts a real `imprint serve` on a free loopback port with a
 * fresh data directory, calls it over HTTP with libcurl, and stops it. The broker,
 * association and firmware tests build on this. */
#ifndef IMP_TEST_HARNESS_H
#define IMP_TEST_HARNESS_H
#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct {
	char account_id[64];
	char email[256];
	char password[128];
	char api_key[128];
} h_account;

typedef struct {
	char data[256];       /* data directory (removed by h_server_stop unless keep) */
	char log[300];        /* the server's stderr */
	char url[64];         /* http://127.0.0.1:PORT */
	pid_t pid;
	h_account admin;      /* the account `imprint init` made */
	char args[16][256];   /* serve's arguments after --data and --listen */
	int nargs;
	int exit_status;      /* when serve ended before listening: its exit status (or -1) */
} h_server;

/* Initialises a fresh data directory and starts the server without the broker
 * (--no-broker). 0 on success. */
int h_server_start(h_server *s);
/* The same with serve's arguments after --data and --listen (at most 16, NULL-terminated;
 * NULL is the default, --no-broker). Pass the broker's options here to have one. They are
 * kept for h_server_restart. On failure s->exit_status and s->log tell why. */
int h_server_start_args(h_server *s, const char *const *args);
/* Starts the server again on the same data directory (after stop or kill). */
int h_server_restart(h_server *s);
/* SIGTERM and wait; returns the exit status (or -1). Does not remove the data. */
int h_server_stop(h_server *s);
/* SIGKILL and wait. */
void h_server_kill(h_server *s);
/* Stops the server if running and removes its data directory. */
void h_server_destroy(h_server *s);
/* `imprint account create --json` on the server's data directory. 0 on success. */
int h_account_create(h_server *s, h_account *out);

/* Runs the imprint binary with args (NULL-terminated), capturing stdout into out (cap
 * bytes) and returning the exit status. */
int h_run(char *out, size_t cap, const char *const *args);

typedef struct {
	long status;
	char *body;            /* NUL-terminated */
	size_t len;
	json_t *json;          /* parsed body or NULL */
	char etag[64];
	char retry_after[32];
	char content_type[64];
} h_resp;

/* One HTTP call. token: Bearer token or NULL. body: NULL for none. extra: one more
 * header line ("If-Match: 3") or NULL. */
h_resp h_call(h_server *s, const char *method, const char *path, const char *token, const char *body,
              const char *extra);
/* Same with a body of len bytes (may hold NULs). */
h_resp h_call_raw(h_server *s, const char *method, const char *path, const char *token, const char *body,
                  size_t len, const char *extra);
void h_resp_free(h_resp *r);
/* Frees the calling thread's curl handle; call at the end of a thread that used h_call. */
void h_thread_done(void);

/* A string at a dotted path in r's JSON ("device.id"), or NULL. */
const char *h_str(const h_resp *r, const char *path);
/* The JSON value at a dotted path, or NULL (borrowed). Numbers in the path index arrays. */
json_t *h_at(json_t *root, const char *path);

/* Convenience: POST body and return the string at path (copied into out); asserts 201. */
int h_create(h_server *s, const char *token, const char *path, const char *body, const char *id_path, char *out,
             size_t cap);

/* Log in as an account's admin; the JWT into out. 0 on success. */
int h_login(h_server *s, const h_account *a, char *out, size_t cap);

/* A loopback TCP port that was free a moment ago (for brokers and other listeners). */
unsigned h_free_port(void);

/* 1 when needle occurs in the server's stderr log. The server writes its request lines in
 * batches (at least every 50 ms): call h_log_sync first to look at the lines of the requests
 * made so far. */
int h_log_contains(h_server *s, const char *needle);
/* Waits until the log holds every request line of the requests that ended so far: asks for
 * /healthz and waits (up to 5 s) for its line, written after all earlier lines. 0 when it
 * came. */
int h_log_sync(h_server *s);

#endif
