/* The request and response of one API call, as handlers see them. The HTTP library
 * (libmicrohttpd) stays in server.c; handlers read the request through these helpers and
 * answer with api_reply() or by returning an error set with api_fail(). */
#ifndef IMP_API_HTTP_H
#define IMP_API_HTTP_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/ids.h"
#include "core/keys.h"
#include "store/store.h"

struct MHD_Connection;
typedef struct imp_ratelimit imp_ratelimit;

/* Process-wide state the handlers share. */
typedef struct imp_app {
	const char *data_dir;  /* the data directory (account device CAs live there) */
	imp_store *store;
	imp_keys keys;
	imp_ratelimit *login_by_email;
	imp_ratelimit *login_by_addr;
	imp_ratelimit *claim_by_token;      /* every claim, per claim token */
	imp_ratelimit *claim_fail_by_addr;  /* failed claims, per client address */
	imp_ratelimit *assoc_by_caller;     /* wrong association codes, per caller */
	imp_ratelimit *assoc_by_account;    /* and per account */
} imp_app;

typedef enum {
	IMP_ACTOR_NONE,
	IMP_ACTOR_USER,
	IMP_ACTOR_API_KEY,
	IMP_ACTOR_DEVICE,
	IMP_ACTOR_CLAIM_TOKEN, /* a claim (src/api/claims.c): the token's id, no scopes */
	IMP_ACTOR_END_USER
} imp_actor_type;

/* Who is calling: resolved from the Authorization header before the handler runs. */
typedef struct {
	imp_actor_type type;
	int64_t account;
	imp_id account_id;
	imp_id actor_id;      /* account user, API key, end user, device id (HTTP Basic), or claim token id */
	unsigned scopes;      /* IMP_SCOPE_* bits; none for end users and devices */
	imp_id org_id;        /* end users: their organization (they reach it and those below) */
} imp_principal;

typedef struct imp_route imp_route;

#define IMP_PARAMS_MAX 3

typedef struct imp_req {
	imp_app *app;
	struct MHD_Connection *conn;
	const char *method;
	const char *url;
	const imp_route *route;
	char params[IMP_PARAMS_MAX][IMP_UUID_LEN * 2 + 1]; /* {id} segments of the path */
	const char *body;
	size_t body_len;
	imp_principal who;
	imp_db *db;
	char addr[64];        /* client address, for rate limits: api_client_addr */
	/* Answering after the commit. When the server sets later, a handler may pass it to
	 * imp_db_commit_later, set finish and finish_arg, and return IMP_OK: the server calls
	 * finish(r, rc) once the group's commit ended (rc its outcome), on an HTTP thread with
	 * r->db its connection (NULL if that cannot be opened), and answers with what finish
	 * leaves in r. finish frees finish_arg; it is called exactly once, also when the answer
	 * can no longer be sent (it is then dropped). */
	imp_db_later *later;
	imp_err (*finish)(struct imp_req *r, imp_err rc);
	void *finish_arg;

	/* The answer. */
	unsigned status;
	json_t *out;          /* owned; sent as the body */
	char *out_text;       /* owned (imp_malloc); when set, sent as the body instead of out */
	size_t out_len;
	char header_name[32];
	char header_value[64];

	/* The error, when a handler fails. */
	char err_code[40];
	char err_target[64];
	char err_msg[256];
} imp_req;

typedef imp_err (*imp_handler)(imp_req *r);

/* Access a route requires. */
typedef enum {
	IMP_ACCESS_PUBLIC,     /* no token */
	IMP_ACCESS_READ,       /* admin, provisioning or read scope */
	IMP_ACCESS_PROVISION,  /* admin or provisioning */
	IMP_ACCESS_ADMIN,      /* admin */
	IMP_ACCESS_USER,       /* a logged-in account user's JWT (renew-session) */
	IMP_ACCESS_BROKER,     /* broker scope */
	IMP_ACCESS_READ_OR_SELF /* as READ, or the device {id} itself with HTTP Basic id:secret */
} imp_access;

/* A streaming route's answer: a file to send from its start (fd >= 0), or text in memory
 * (buf), which the server takes: it zeroes the first cap bytes (an answer may hold
 * secrets) and frees it once sent. */
typedef struct {
	int fd;
	char *buf;
	size_t cap;
	uint64_t size;
	const char *content_type;
	const char *preference_applied; /* the Preference-Applied header (RFC 7240), or NULL */
} imp_stream_answer;

/* A route whose request body is consumed as it arrives instead of being buffered whole
 * (the device batch): open runs once the caller is known, feed for every piece of the
 * body, finish at its end (it sets the answer, or fails with a JSON error), close
 * always. */
typedef struct imp_stream_ops {
	imp_err (*open)(imp_req *r, void **state);
	imp_err (*feed)(void *state, const char *data, size_t len);
	imp_err (*finish)(void *state, imp_stream_answer *a);
	void (*close)(void *state);
} imp_stream_ops;

/* Who else may call a route, beside the callers its access admits. */
enum {
	IMP_ROUTE_END_USER = 1, /* end users (JWT); the handler limits them to their reach */
	IMP_ROUTE_DEVICE = 2    /* devices (HTTP Basic); the handler limits them to themselves */
};

struct imp_route {
	const char *method;
	const char *pattern;   /* "/api/v1/devices/{id}" */
	imp_handler handler;
	imp_access access;
	const void *arg;       /* handler data: the kind of a generic resource */
	const imp_stream_ops *stream; /* streaming body, or NULL */
	unsigned also;         /* IMP_ROUTE_* */
};

/* Records the error rc with a stable code (NULL: the generic one for rc), the field it
 * concerns (may be NULL) and a message for people; returns rc. The message must never
 * hold a secret or echo input that may be one. */
imp_err api_fail(imp_req *r, imp_err rc, const char *code, const char *target, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Sets the answer: status and body (reference stolen; NULL for none). Returns IMP_OK, or
 * IMP_ERR_NOMEM when body is NULL though one was expected (pass expect_body). */
imp_err api_reply(imp_req *r, unsigned status, json_t *body);

/* Sets the answer to the JSON text in t (see api/jsontext.h), whose buffer it takes
 * (t is left empty). IMP_ERR_NOMEM, set on r, when t is incomplete. The text is freed
 * without being zeroed: never for answers that hold secrets. */
struct imp_jtext_s;
imp_err api_reply_text(imp_req *r, unsigned status, struct imp_jtext_s *t);

/* Wraps e in {"<name>": e}. Steals e; NULL on allocation failure. */
json_t *api_wrap(const char *name, json_t *e);

/* Parses the body as one JSON object (duplicate keys, invalid UTF-8, bad nesting refused).
 * On failure sets a 400 error and returns NULL. Caller owns the result. */
json_t *api_body_object(imp_req *r);

/* A query-string argument, or NULL. */
const char *api_query(imp_req *r, const char *name);

/* Checks that every query argument is one of allowed (NULL-terminated) or the list
 * arguments every list takes; 400 naming the first that is not. */
imp_err api_query_known(imp_req *r, const char *const *allowed);

/* The version precondition from an Etag or If-Match header: -1 when absent, or the
 * version number. 412 set when the header is present but not a version. */
imp_err api_expected_version(imp_req *r, int64_t *out);

/* A request header, or NULL. */
const char *api_header(imp_req *r, const char *name);

/* The client's address as text (r->addr, made at the first call: most requests never
 * need it), or "" when unknown. */
const char *api_client_addr(imp_req *r);

/* A GET's view of the store and of the memory caches, as of now: the caches' generations
 * pinned first (imp_auth_pin, imp_template_cache_pin), then the thread's kept read
 * transaction (imp_store_reader), so a copy a cache makes from the snapshot is tagged with a
 * generation no later than its rows. NULL when the store is not available (the pins are
 * then already undone). Ended by api_read_end, which takes NULL too. */
imp_db *api_read_begin(imp_app *app);
void api_read_end(imp_db *db);

/* Version numbers to and from their opaque text. */
void api_version_text(int64_t v, char out[24]);

/* Checks an accountId in a body or query (any JSON value, or NULL when absent): it must
 * be the caller's; 403 otherwise (400 when it is not a string). */
imp_err api_check_account(imp_req *r, const json_t *account_id);

/* The same check for an accountId query argument. */
imp_err api_check_query_account(imp_req *r);

/* Writes an audit entry for the caller. */
/* Ends a write whose answer is already in r: commits it, later when the server allows (see
 * imp_req.later: then it returns IMP_OK with r->finish set), else at once. Should the commit
 * fail, the answer is dropped and the failure answered with fail_msg (a static string). */
imp_err api_commit(imp_req *r, const char *fail_msg);
/* Commits the write in turn and ends it with finish(r, rc), rc the commit's outcome: later,
 * on an HTTP thread, when the server allows (then this returns IMP_OK with r->finish set;
 * see imp_req.later), else here, returning what finish returns. finish clears r->finish
 * and r->finish_arg, and frees what finish_arg holds. */
imp_err api_commit_then(imp_req *r, imp_err (*finish)(imp_req *r, imp_err rc));

imp_err api_audit(imp_req *r, const char *action, const char *entity_type, const char *entity_id,
                  json_t *details);

/* Status for an error. */
unsigned api_status(imp_err rc);

#endif
