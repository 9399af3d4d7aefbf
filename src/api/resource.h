/* Generic create, get, update, delete and list for the kinds of src/core/kind.c. A
 * resource adds only its own rules through hooks; everything a field description can say
 * (types, limits, required, read-only, references, filters) is checked here, once. */
#ifndef IMP_API_RESOURCE_H
#define IMP_API_RESOURCE_H
#include "api/http.h"
#include "api/jsontext.h"

typedef struct imp_resource imp_resource;

/* What render_extra may keep between the entities of one list page or batch (devices keep
 * their template's channels, and the text of them with the device id cut out). Zeroed to
 * start; released with imp_render_cache_clear. */
typedef struct {
	int64_t account;                       /* a thread's cache (devices.c): whose, and */
	uint64_t generation;                   /* the template cache's generation it is of */
	char key[IMP_UUID_LEN + 1];
	json_t *value;
	char text_account[IMP_UUID_LEN + 1];   /* the account id text was made for */
	imp_jtext text;
	size_t *cuts;                          /* where the device id goes in text */
	size_t ncuts;
} imp_render_cache;

void imp_render_cache_clear(imp_render_cache *c);

struct imp_resource {
	const imp_kind *kind;
	/* Devices: body keys that are no field of the kind are kept for validate() to judge
	 * (custom fields), instead of being refused. */
	int open_fields;
	/* Create without a savepoint (imp_db_begin_unmarked): validate and make_secret write
	 * nothing, there is no after_insert, so the insert (which fails whole) and the audit
	 * entry are the create's only writes and nothing can refuse it after the first. */
	int create_unmarked;
	/* Kind rules, inside the write transaction. old is NULL on create. */
	imp_err (*validate)(imp_req *r, json_t *doc, const imp_entity *old);
	/* Before insert: the secret to keep beside the row (*secret, freed by the caller with
	 * imp_free) and what to show once in the create response (*reveal, merged in). */
	imp_err (*make_secret)(imp_req *r, json_t *doc, char **secret, json_t **reveal);
	/* Inside the create transaction, after the row went in (e->key set): rows of its own
	 * that hang off the entity (a claim token's allow-list). */
	imp_err (*after_insert)(imp_req *r, const imp_entity *e);
	/* Inside the delete transaction, before the row goes: 409 checks and cascades. */
	imp_err (*before_delete)(imp_req *r, const imp_entity *e);
	/* After a committed create, update or delete: drops what memory caches hold of it. */
	void (*after_write)(void);
	/* Adds derived properties to a rendered entity (device channels). */
	imp_err (*render_extra)(imp_db *db, const imp_entity *e, json_t *obj, imp_render_cache *cache);
	/* The same properties as text, each as ,"name":value (NULL: render_extra's are dumped). */
	imp_err (*render_extra_text)(imp_db *db, const imp_entity *e, imp_jtext *t, imp_render_cache *cache);
	/* End users (on the routes open to them): 1 when the caller may see and update e, 0
	 * when e answers 404 as if unknown. NULL: end users reach nothing of this kind. Lists
	 * of devices keep end users to their organizations in the store (within_org). */
	int (*reach)(imp_req *r, const imp_entity *e);
};

imp_err imp_res_create(imp_req *r);
imp_err imp_res_get(imp_req *r);
imp_err imp_res_update(imp_req *r);
imp_err imp_res_delete(imp_req *r);
imp_err imp_res_list(imp_req *r);

/* The entity as the API shows it: id, accountId, its fields, meta. New reference or NULL. */
json_t *imp_res_render(imp_db *db, const imp_resource *res, const imp_entity *e, imp_render_cache *cache);

/* imp_res_render's object, written as JSON text (what json_dumpb with JSON_COMPACT would
 * write of it) at the end of t, without building it. */
imp_err imp_res_render_text(imp_jtext *t, imp_db *db, const imp_resource *res, const imp_entity *e,
                            imp_render_cache *cache);

/* Answers with e wrapped in its kind's name, reveal (may be NULL) merged in, and its
 * version in the Etag header. */
imp_err imp_res_reply(imp_req *r, const imp_resource *res, const imp_entity *e, unsigned status, json_t *reveal);

/* The references a run of inserts found, by the position of the reference field in its
 * kind: a caller that creates many entities in one write transaction (which no other
 * writer enters meanwhile) reads each referenced entity once. Zero it to start. */
#define IMP_REF_MEMO 4
typedef struct {
	char id[IMP_REF_MEMO][IMP_UUID_LEN + 1];
} imp_ref_memo;

/* What bulk creation may add to imp_res_insert_from; every member optional (zero). */
typedef struct {
	json_t *set;         /* server-set fields to store as given, over the defaults (borrowed) */
	int64_t version;     /* the version to store, 0 for 1 */
	imp_ref_memo *refs;  /* references known to exist in this transaction, updated */
} imp_insert_opts;

/* Bulk creation (the device batch): builds e (caller clears it) from body as create does
 * and, inside the caller's write transaction, checks references and the kind's rules and
 * inserts it. opts may be NULL. The error is set on r. Writes no audit entry and no
 * secret. */
imp_err imp_res_insert_from(imp_req *r, const imp_resource *res, json_t *body, const imp_insert_opts *opts,
                            imp_entity *e);
/* The two halves of imp_res_insert_from: building e from body (its fields, defaults,
 * opts->set, a new id), which needs no store, and then, inside the write transaction, the
 * reference checks, the kind's rules and the insert. */
imp_err imp_res_prepare_from(imp_req *r, const imp_resource *res, json_t *body, const imp_insert_opts *opts,
                             imp_entity *e);
imp_err imp_res_insert_prepared(imp_req *r, const imp_resource *res, const imp_insert_opts *opts, imp_entity *e);
/* The checks of imp_res_insert_prepared without its insert, for a caller that inserts many
 * at once (imp_db_insert_many). */
imp_err imp_res_check_prepared(imp_req *r, const imp_resource *res, const imp_insert_opts *opts, imp_entity *e);

/* Reads page, pageSize, sortBy, sortOrder, meta, results, cursor and accountId into q. */
imp_err imp_list_args(imp_req *r, imp_query *q, int *want_results);

/* {"<plural>": {"results": results, "meta": {...}}}; results borrowed (may be NULL). */
json_t *imp_list_body(const char *plural, json_t *results, const imp_query *q, int64_t count, int64_t last);

/* Resources defined by the resource files. */
extern const imp_resource imp_res_device_template;
extern const imp_resource imp_res_device_field;
extern const imp_resource imp_res_channel_template;
extern const imp_resource imp_res_organization_template;
extern const imp_resource imp_res_organization;
extern const imp_resource imp_res_account_user;
extern const imp_resource imp_res_api_key;
extern const imp_resource imp_res_device;
extern const imp_resource imp_res_certificate_authority;
extern const imp_resource imp_res_claim_token;
extern const imp_resource imp_res_end_user_template;
extern const imp_resource imp_res_end_user;

#endif
