#include "api/resource.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crypto.h"
#include "core/limits.h"
#include "core/mem.h"
#include "core/rules.h"
#include "core/timeutil.h"

/* Properties every entity has, which only the server writes. */
static const char *const META[] = {"id", "created", "createdById", "lastModified", "lastModifiedById",
                                   "version", NULL};

static int is_meta(const char *name) { return imp_choice_index(META, name) >= 0; }

/* Checks v as a value of f. 0 when good; sets the error and returns its code otherwise. */
static imp_err check_value(imp_req *r, const imp_field *f, const json_t *v)
{
	const char *n = f->name;
	if(json_is_null(v)) {
		if(f->flags & IMP_F_NULLABLE) return IMP_OK;
		return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", n, "%s must not be null", n);
	}
	switch(f->type) {
	case IMP_T_STRING:
		if(!json_is_string(v)) return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", n, "%s must be a string", n);
		if(imp_utf8_len(json_string_value(v)) > f->max)
			return api_fail(r, IMP_ERR_INVALID, "invalid_field", n, "%s must be a string of at most %u characters", n, f->max);
		if((f->flags & IMP_F_REQUIRED) && json_string_length(v) == 0)
			return api_fail(r, IMP_ERR_INVALID, "invalid_field", n, "%s must not be empty", n);
		return IMP_OK;
	case IMP_T_ENUM:
		if(!json_is_string(v)) return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", n, "%s must be a string", n);
		if(imp_choice_index(f->choices, json_string_value(v)) < 0) {
			char list[160] = "";
			for(int i = 0; f->choices[i]; i++) {
				size_t l = strlen(list);
				snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", f->choices[i]);
			}
			return api_fail(r, IMP_ERR_INVALID, "invalid_field", n, "%s must be one of: %s", n, list);
		}
		return IMP_OK;
	case IMP_T_REF:
		if(!json_is_string(v)) return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", n, "%s must be a string", n);
		if(!imp_id_valid(json_string_value(v)))
			return api_fail(r, IMP_ERR_INVALID, "invalid_field", n, "%s must be an id (a UUID)", n);
		return IMP_OK;
	case IMP_T_BOOL:
		if(!json_is_boolean(v)) return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", n, "%s must be a boolean", n);
		return IMP_OK;
	case IMP_T_DATETIME: {
		int64_t ms;
		if(!json_is_string(v)) return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", n, "%s must be a string", n);
		if(imp_iso8601_parse(json_string_value(v), &ms))
			return api_fail(r, IMP_ERR_INVALID, "invalid_field", n, "%s must be an ISO-8601 date-time", n);
		return IMP_OK;
	}
	case IMP_T_SCOPES: {
		size_t i, j;
		json_t *s, *t;
		if(!json_is_array(v)) return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", n, "%s must be an array of strings", n);
		if(json_array_size(v) == 0 || json_array_size(v) > IMP_SCOPES_MAX)
			return api_fail(r, IMP_ERR_INVALID, "invalid_field", n, "%s must hold 1 to %d scopes", n, IMP_SCOPES_MAX);
		json_array_foreach(v, i, s) {
			if(!json_is_string(s)) return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", n, "%s must be an array of strings", n);
			if(imp_choice_index(f->choices, json_string_value(s)) < 0)
				return api_fail(r, IMP_ERR_INVALID, "invalid_field", n, "%s may hold only admin, provisioning, read and broker", n);
			json_array_foreach(v, j, t) {
				if(j < i && json_equal(s, t)) return api_fail(r, IMP_ERR_INVALID, "invalid_field", n, "%s holds a scope twice", n);
			}
		}
		return IMP_OK;
	}
	case IMP_T_ANY: return IMP_OK;
	}
	return IMP_OK;
}

/* Copies body's fields into doc after checking each; refuses unknown and server-set ones.
 * old is NULL on create. */
static imp_err take_fields(imp_req *r, const imp_resource *res, json_t *body, json_t *doc, const imp_entity *old)
{
	const char *name;
	json_t *v;
	imp_err rc = api_check_account(r, json_object_get(body, "accountId"));
	if(rc) return rc;
	json_object_foreach(body, name, v) {
		if(strcmp(name, "accountId") == 0) continue;
		const imp_field *f = imp_kind_field(res->kind, name);
		char safe[IMP_FIELD_NAME_MAX + 1];
		if(is_meta(name) || (f && (f->flags & IMP_F_SERVER)) ||
		   (res->open_fields && strcmp(name, "channels") == 0)) {
			snprintf(safe, sizeof safe, "%s", name);
			return api_fail(r, IMP_ERR_BAD_REQUEST, "read_only_field", safe, "%s is set by the server", safe);
		}
		if(!f) {
			if(res->open_fields) {
				json_object_set(doc, name, v);
				continue;
			}
			snprintf(safe, sizeof safe, "%s", name);
			for(char *p = safe; *p; p++) {
				if((unsigned char)*p < ' ' || (unsigned char)*p >= 0x7f) *p = '?';
			}
			return api_fail(r, IMP_ERR_BAD_REQUEST, "unknown_field", safe, "unknown field %s", safe);
		}
		if((rc = check_value(r, f, v))) return rc;
		if(old && (f->flags & IMP_F_CREATE_ONLY)) {
			json_t *cur = json_object_get(old->doc, name);
			if(!json_equal(cur ? cur : json_null(), v))
				return api_fail(r, IMP_ERR_INVALID, "immutable_field", name, "%s cannot change after creation", name);
		}
		json_object_set(doc, name, v);
	}
	return IMP_OK;
}

/* Fills defaults and refuses missing required fields (create only). */
static imp_err complete_fields(imp_req *r, const imp_resource *res, json_t *doc)
{
	for(const imp_field *f = res->kind->fields; f->name; f++) {
		/* (a field neither required nor defaulted needs no look) */
		if(!(f->flags & IMP_F_REQUIRED) && !f->def && f->type != IMP_T_BOOL) continue;
		if(json_object_get(doc, f->name)) continue;
		if(f->flags & IMP_F_REQUIRED) return api_fail(r, IMP_ERR_INVALID, "missing_field", f->name, "%s is required", f->name);
		json_t *d = NULL;
		if(f->def) d = json_string(f->def);
		else if(f->type == IMP_T_BOOL) d = json_false();
		if(d) json_object_set_new(doc, f->name, d);
	}
	return IMP_OK;
}

/* Every reference must name an entity of its kind in the caller's account. memo (may be
 * NULL) holds references found before in the same transaction, and gets the new ones. */
static imp_err check_refs(imp_req *r, const imp_resource *res, json_t *doc, imp_ref_memo *memo)
{
	int nref = -1;
	for(const imp_field *f = res->kind->fields; f->name; f++) {
		if(f->type != IMP_T_REF) continue;
		nref++;
		const char *id = json_string_value(json_object_get(doc, f->name));
		if(!id) continue;
		char *known = memo && nref < IMP_REF_MEMO ? memo->id[nref] : NULL;
		if(known && strcmp(known, id) == 0) continue;
		imp_err rc = imp_db_exists(r->db, imp_kind_by_name(f->ref), r->who.account, id);
		if(rc == IMP_ERR_NOT_FOUND)
			return api_fail(r, IMP_ERR_INVALID, "unknown_reference", f->name, "%s names no %s of this account", f->name, f->ref);
		if(rc) return api_fail(r, rc, NULL, NULL, "could not read %s", f->ref);
		if(known) snprintf(known, IMP_UUID_LEN + 1, "%s", id);
	}
	return IMP_OK;
}

json_t *imp_res_render(imp_db *db, const imp_resource *res, const imp_entity *e, imp_render_cache *cache)
{
	char created[IMP_ISO_LEN + 1], modified[IMP_ISO_LEN + 1], version[24];
	json_t *o = json_object();
	if(!o) return NULL;
	json_object_set_new(o, "id", json_string(e->id.s));
	json_object_set_new(o, "accountId", json_string(e->account_id.s));
	for(const imp_field *f = res->kind->fields; f->name; f++) {
		if(f->flags & IMP_F_WRITE_ONLY) continue;
		json_t *v = json_object_get(e->doc, f->name);
		json_object_set(o, f->name, v ? v : json_null());
	}
	const char *name;
	json_t *v;
	json_object_foreach(e->doc, name, v) {
		if(!imp_kind_field(res->kind, name)) json_object_set(o, name, v);
	}
	if(res->render_extra && res->render_extra(db, e, o, cache)) {
		json_decref(o);
		return NULL;
	}
	imp_iso8601(e->created, created);
	imp_iso8601(e->modified, modified);
	api_version_text(e->version, version);
	json_object_set_new(o, "created", json_string(created));
	json_object_set_new(o, "createdById", e->created_by.s[0] ? json_string(e->created_by.s) : json_null());
	json_object_set_new(o, "lastModified", json_string(modified));
	json_object_set_new(o, "lastModifiedById", e->modified_by.s[0] ? json_string(e->modified_by.s) : json_null());
	json_object_set_new(o, "version", json_string(version));
	return o;
}

imp_err imp_res_render_text(imp_jtext *t, imp_db *db, const imp_resource *res, const imp_entity *e,
                            imp_render_cache *cache)
{
	char created[IMP_ISO_LEN + 1], modified[IMP_ISO_LEN + 1], version[24];
	imp_jtext_raw(t, "{\"id\":", 6);
	imp_jtext_plain(t, e->id.s);
	imp_jtext_key(t, "accountId", 1);
	imp_jtext_plain(t, e->account_id.s);
	size_t found = 0;
	for(const imp_field *f = res->kind->fields; f->name; f++) {
		if(f->flags & IMP_F_WRITE_ONLY) continue;
		imp_jtext_key(t, f->name, 1);
		json_t *fv = json_object_get(e->doc, f->name);
		found += fv != NULL;
		imp_jtext_value(t, fv);
	}
	const char *name;
	json_t *v;
	/* the document's other members (custom fields), when it has more than those */
	if(found < json_object_size(e->doc)) {
		json_object_foreach(e->doc, name, v) {
			if(imp_kind_field(res->kind, name)) continue;
			imp_jtext_raw(t, ",", 1);
			imp_jtext_str(t, name, strlen(name));
			imp_jtext_raw(t, ":", 1);
			imp_jtext_value(t, v);
		}
	}
	if(res->render_extra_text) {
		imp_err rc = res->render_extra_text(db, e, t, cache);
		if(rc) return rc;
	} else if(res->render_extra) {
		json_t *o = json_object();
		imp_err rc = o ? res->render_extra(db, e, o, cache) : IMP_ERR_NOMEM;
		json_object_foreach(o, name, v) {
			imp_jtext_raw(t, ",", 1);
			imp_jtext_str(t, name, strlen(name));
			imp_jtext_raw(t, ":", 1);
			imp_jtext_value(t, v);
		}
		json_decref(o);
		if(rc) return rc;
	}
	imp_iso8601(e->created, created);
	imp_iso8601(e->modified, modified);
	api_version_text(e->version, version);
	imp_jtext_key(t, "created", 1);
	imp_jtext_plain(t, created);
	imp_jtext_key(t, "createdById", 1);
	if(e->created_by.s[0]) imp_jtext_plain(t, e->created_by.s);
	else imp_jtext_raw(t, "null", 4);
	imp_jtext_key(t, "lastModified", 1);
	imp_jtext_plain(t, modified);
	imp_jtext_key(t, "lastModifiedById", 1);
	if(e->modified_by.s[0]) imp_jtext_plain(t, e->modified_by.s);
	else imp_jtext_raw(t, "null", 4);
	imp_jtext_key(t, "version", 1);
	imp_jtext_plain(t, version);
	imp_jtext_raw(t, "}", 1);
	return t->failed ? IMP_ERR_NOMEM : IMP_OK;
}

/* An answer holds one entity: its document (at most a request body, IMP_BODY_MAX, with
 * escapes) and what the server adds. */
#define REPLY_MAX (16 * 1024 * 1024)

/* Answers with the entity, wrapped, and its version in the Etag header. Without reveal
 * the answer is written as text (imp_res_render_text), with no tree to build and dump. */
imp_err imp_res_reply(imp_req *r, const imp_resource *res, const imp_entity *e, unsigned status, json_t *reveal)
{
	if(!reveal) {
		imp_jtext t;
		imp_jtext_init(&t, REPLY_MAX);
		imp_jtext_raw(&t, "{", 1);
		imp_jtext_key(&t, res->kind->name, 0);
		if(imp_res_render_text(&t, r->db, res, e, NULL)) t.failed = 1;
		imp_jtext_raw(&t, "}", 1);
		imp_err rc = api_reply_text(r, status, &t);
		if(rc) return rc;
		snprintf(r->header_name, sizeof r->header_name, "Etag");
		api_version_text(e->version, r->header_value);
		return IMP_OK;
	}
	json_t *o = imp_res_render(r->db, res, e, NULL);
	if(o && reveal) json_object_update(o, reveal);
	json_t *body = api_wrap(res->kind->name, o);
	if(!body) return api_fail(r, IMP_ERR_NOMEM, NULL, NULL, "out of memory");
	snprintf(r->header_name, sizeof r->header_name, "Etag");
	api_version_text(e->version, r->header_value);
	return api_reply(r, status, body);
}

/* 1 when the caller may see e: always, but for end users, whom the kind's reach decides. */
static int reachable(imp_req *r, const imp_resource *res, const imp_entity *e)
{
	if(r->who.type != IMP_ACTOR_END_USER) return 1;
	return res->reach && res->reach(r, e);
}

static imp_err check_path_id(imp_req *r)
{
	if(!imp_id_valid(r->params[0])) return api_fail(r, IMP_ERR_NOT_FOUND, "not_found", "id", "no such entity");
	return IMP_OK;
}

static imp_err fail_store(imp_req *r, imp_err rc, const char *kind)
{
	if(r->err_msg[0]) return rc; /* already described (a hook's 409 in_use, a 422) */
	if(rc == IMP_ERR_NOT_FOUND) return api_fail(r, rc, "not_found", "id", "no such %s", kind);
	if(rc == IMP_ERR_STALE)
		return api_fail(r, rc, "version_mismatch", "version", "the %s changed since that version; read it again", kind);
	if(rc == IMP_ERR_CONFLICT) return api_fail(r, rc, "conflict", NULL, "a %s with these values exists already", kind);
	if(rc == IMP_ERR_BUSY) return api_fail(r, rc, "busy", NULL, "the store is busy; try again");
	return api_fail(r, rc, NULL, NULL, "the %s could not be stored", kind);
}

static const imp_insert_opts NO_OPTS;

imp_err imp_res_prepare_from(imp_req *r, const imp_resource *res, json_t *body, const imp_insert_opts *opts,
                             imp_entity *e)
{
	imp_err rc;
	if(!opts) opts = &NO_OPTS;
	memset(e, 0, sizeof *e);
	e->doc = json_object();
	if(!e->doc) return api_fail(r, IMP_ERR_NOMEM, NULL, NULL, "out of memory");
	if((rc = take_fields(r, res, body, e->doc, NULL)) || (rc = complete_fields(r, res, e->doc))) return rc;
	if(opts->set && json_object_update(e->doc, opts->set)) return api_fail(r, IMP_ERR_NOMEM, NULL, NULL, "out of memory");
	if((rc = imp_id_new(&e->id))) return rc;
	e->account = r->who.account;
	e->account_id = r->who.account_id;
	e->created_by = r->who.actor_id;
	return IMP_OK;
}

imp_err imp_res_check_prepared(imp_req *r, const imp_resource *res, const imp_insert_opts *opts, imp_entity *e)
{
	imp_err rc;
	if(!opts) opts = &NO_OPTS;
	if((rc = check_refs(r, res, e->doc, opts->refs))) return rc;
	return res->validate ? res->validate(r, e->doc, NULL) : IMP_OK;
}

imp_err imp_res_insert_prepared(imp_req *r, const imp_resource *res, const imp_insert_opts *opts, imp_entity *e)
{
	if(!opts) opts = &NO_OPTS;
	imp_err rc = imp_res_check_prepared(r, res, opts, e);
	if(rc) return rc;
	rc = imp_db_insert_at(r->db, res->kind, e, NULL, opts->version > 0 ? opts->version : 1);
	if(rc) return fail_store(r, rc, res->kind->name);
	return IMP_OK;
}

imp_err imp_res_insert_from(imp_req *r, const imp_resource *res, json_t *body, const imp_insert_opts *opts,
                            imp_entity *e)
{
	imp_err rc = imp_res_prepare_from(r, res, body, opts, e);
	return rc ? rc : imp_res_insert_prepared(r, res, opts, e);
}

/* A create, update or delete between its commit and its answer. */
typedef struct {
	const imp_resource *res;
	unsigned status;   /* of the answer: 201, 200 or 204 (no body) */
	imp_entity e, old;
	char *secret;
	json_t *reveal;
	json_t *body;
} write_st;

/* The rest of a write once its commit ended with rc: the answer, and the state freed. */
static imp_err write_finish(imp_req *r, imp_err rc)
{
	write_st *w = r->finish_arg;
	r->finish = NULL;
	r->finish_arg = NULL;
	if(!rc) {
		if(w->res->after_write) w->res->after_write();
		if(w->status == 204) rc = api_reply(r, 204, NULL);
		else if(!r->db) rc = api_fail(r, IMP_ERR_STORE, NULL, NULL, "the %s was stored but cannot be shown", w->res->kind->name);
		else rc = imp_res_reply(r, w->res, &w->e, w->status, w->reveal);
	}
	if(rc) rc = fail_store(r, rc, w->res->kind->name);
	if(w->secret) {
		explicit_bzero(w->secret, strlen(w->secret));
		imp_free(w->secret);
	}
	json_decref(w->reveal);
	json_decref(w->body);
	imp_entity_clear(&w->old);
	imp_entity_clear(&w->e);
	imp_free(w);
	return rc;
}

/* The state of a write answered by write_finish, or NULL (the failure answered). */
static write_st *write_state(imp_req *r, const imp_resource *res, unsigned status, json_t *body)
{
	write_st *w = imp_calloc(1, sizeof *w);
	if(!w) {
		json_decref(body);
		api_fail(r, IMP_ERR_NOMEM, NULL, NULL, "out of memory");
		return NULL;
	}
	w->res = res;
	w->status = status;
	w->body = body;
	r->finish_arg = w;
	return w;
}

imp_err imp_res_create(imp_req *r)
{
	const imp_resource *res = r->route->arg;
	imp_err rc;
	json_t *body = api_body_object(r);
	if(!body) return IMP_ERR_BAD_REQUEST;
	write_st *c = write_state(r, res, 201, body);
	if(!c) return IMP_ERR_NOMEM;
	imp_entity *e = &c->e;
	e->doc = json_object();
	if(!e->doc) {
		rc = api_fail(r, IMP_ERR_NOMEM, NULL, NULL, "out of memory");
		goto out;
	}
	if((rc = take_fields(r, res, body, e->doc, NULL)) || (rc = complete_fields(r, res, e->doc))) goto out;
	if((rc = imp_id_new(&e->id))) goto out;
	e->account = r->who.account;
	e->account_id = r->who.account_id;
	e->created_by = r->who.actor_id;
	if((rc = res->create_unmarked ? imp_db_begin_unmarked(&r->db) : imp_db_begin(&r->db))) goto out;
	if((rc = check_refs(r, res, e->doc, NULL))) goto out;
	if(res->validate && (rc = res->validate(r, e->doc, NULL))) goto out;
	if(res->make_secret && (rc = res->make_secret(r, e->doc, &c->secret, &c->reveal))) goto out;
	if((rc = imp_db_insert(r->db, res->kind, e, c->secret))) goto out;
	if(res->after_insert && (rc = res->after_insert(r, e))) goto out;
	if((rc = api_audit(r, "create", res->kind->name, e->id.s, NULL))) goto out;
	return api_commit_then(r, write_finish);
out:
	return write_finish(r, rc);
}

imp_err imp_res_get(imp_req *r)
{
	const imp_resource *res = r->route->arg;
	imp_entity e;
	imp_err rc = check_path_id(r);
	if(rc) return rc;
	if((rc = api_query_known(r, NULL))) return rc;
	if((rc = api_check_query_account(r))) return rc;
	rc = imp_db_get(r->db, res->kind, r->who.account, r->params[0], &e);
	if(!rc && !reachable(r, res, &e)) {
		imp_entity_clear(&e);
		rc = IMP_ERR_NOT_FOUND;
	}
	if(rc) return fail_store(r, rc, res->kind->name);
	rc = imp_res_reply(r, res, &e, 200, NULL);
	imp_entity_clear(&e);
	return rc;
}

imp_err imp_res_update(imp_req *r)
{
	const imp_resource *res = r->route->arg;
	int64_t expect;
	imp_err rc = check_path_id(r);
	if(rc) return rc;
	if((rc = api_expected_version(r, &expect))) return rc;
	json_t *body = api_body_object(r);
	if(!body) return IMP_ERR_BAD_REQUEST;
	write_st *w = write_state(r, res, 200, body);
	if(!w) return IMP_ERR_NOMEM;
	imp_entity *old = &w->old, *e = &w->e;
	if((rc = imp_db_begin(&r->db))) goto out;
	if((rc = imp_db_get(r->db, res->kind, r->who.account, r->params[0], old))) goto out;
	if(!reachable(r, res, old)) {
		rc = IMP_ERR_NOT_FOUND;
		goto out;
	}
	*e = *old;
	e->doc = json_deep_copy(old->doc);
	if(!e->doc) {
		rc = IMP_ERR_NOMEM;
		goto out;
	}
	if((rc = take_fields(r, res, body, e->doc, old))) goto out;
	if((rc = check_refs(r, res, e->doc, NULL))) goto out;
	if(res->validate && (rc = res->validate(r, e->doc, old))) goto out;
	e->modified_by = r->who.actor_id;
	if((rc = imp_db_update(r->db, res->kind, e, expect))) goto out;
	if((rc = api_audit(r, "update", res->kind->name, e->id.s, NULL))) goto out;
	return api_commit_then(r, write_finish);
out:
	return write_finish(r, rc);
}

imp_err imp_res_delete(imp_req *r)
{
	const imp_resource *res = r->route->arg;
	int64_t expect;
	imp_err rc = check_path_id(r);
	if(rc) return rc;
	if((rc = api_expected_version(r, &expect))) return rc;
	write_st *w = write_state(r, res, 204, NULL);
	if(!w) return IMP_ERR_NOMEM;
	imp_entity *e = &w->e;
	if((rc = imp_db_begin(&r->db))) goto out;
	if((rc = imp_db_get(r->db, res->kind, r->who.account, r->params[0], e))) goto out;
	if(!reachable(r, res, e)) {
		rc = IMP_ERR_NOT_FOUND;
		goto out;
	}
	if(expect >= 0 && expect != e->version) {
		rc = IMP_ERR_STALE;
		goto out;
	}
	if(res->before_delete && (rc = res->before_delete(r, e))) goto out;
	if((rc = imp_db_delete(r->db, res->kind, r->who.account, e->id.s, expect))) goto out;
	if((rc = api_audit(r, "delete", res->kind->name, e->id.s, NULL))) goto out;
	return api_commit_then(r, write_finish);
out:
	return write_finish(r, rc);
}

/* Parses a positive integer argument within [min, max]; def when absent. */
static imp_err int_arg(imp_req *r, const char *name, int64_t def, int64_t min, int64_t max, int64_t *out)
{
	const char *s = api_query(r, name);
	*out = def;
	if(!s) return IMP_OK;
	char *end;
	long long v = strtoll(s, &end, 10);
	if(!*s || *end || v < min || v > max)
		return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_parameter", name, "%s must be an integer from %lld to %lld", name,
		                (long long)min, (long long)max);
	*out = v;
	return IMP_OK;
}

static imp_err bool_arg(imp_req *r, const char *name, int *out)
{
	const char *s = api_query(r, name);
	*out = 1;
	if(!s || strcmp(s, "true") == 0) return IMP_OK;
	if(strcmp(s, "false") == 0) {
		*out = 0;
		return IMP_OK;
	}
	return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_parameter", name, "%s must be true or false", name);
}

imp_err imp_list_args(imp_req *r, imp_query *q, int *want_results)
{
	imp_err rc;
	int want_meta;
	if((rc = int_arg(r, "page", 1, 1, 1000000000, &q->page))) return rc;
	if((rc = int_arg(r, "pageSize", IMP_PAGE_SIZE_DEFAULT, 1, IMP_PAGE_SIZE_MAX, &q->page_size))) return rc;
	if((rc = bool_arg(r, "meta", &want_meta)) || (rc = bool_arg(r, "results", want_results))) return rc;
	q->want_count = want_meta;
	const char *order = api_query(r, "sortOrder");
	if(order && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0)
		return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_parameter", "sortOrder", "sortOrder must be asc or desc");
	q->desc = order && strcmp(order, "desc") == 0;
	q->sort = api_query(r, "sortBy");
	if(!q->sort) q->sort = "created";
	q->after = -1;
	const char *cursor = api_query(r, "cursor");
	if(cursor) {
		uint8_t raw[24];
		long n = imp_b64_decode(cursor, strlen(cursor), raw, sizeof raw - 1, 1);
		char *end;
		if(n > 0) raw[n] = '\0';
		long long v = n > 0 ? strtoll((const char *)raw, &end, 10) : -1;
		if(n <= 0 || *end || v < 0)
			return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_parameter", "cursor", "cursor is not one this server gave");
		if(strcmp(q->sort, "created") != 0)
			return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_parameter", "cursor", "cursor works only with sortBy=created");
		q->after = v;
	}
	return api_check_query_account(r);
}

json_t *imp_list_body(const char *plural, json_t *results, const imp_query *q, int64_t count, int64_t last)
{
	json_t *meta = json_pack("{s:I, s:I, s:s, s:s}", "page", (json_int_t)q->page, "pageSize",
	                         (json_int_t)q->page_size, "sortBy", q->sort, "sortOrder", q->desc ? "desc" : "asc");
	if(!meta) return NULL;
	if(q->want_count) json_object_set_new(meta, "count", json_integer(count));
	if(results && last >= 0 && (int64_t)json_array_size(results) == q->page_size && strcmp(q->sort, "created") == 0) {
		char num[24], cur[40];
		snprintf(num, sizeof num, "%lld", (long long)last);
		imp_b64_encode(num, strlen(num), cur, 1);
		json_object_set_new(meta, "nextCursor", json_string(cur));
	}
	json_t *inner = json_object();
	if(!inner) {
		json_decref(meta);
		return NULL;
	}
	if(results) json_object_set(inner, "results", results);
	json_object_set_new(inner, "meta", meta);
	return api_wrap(plural, inner);
}

/* A page: at most IMP_PAGE_SIZE_MAX entities of up to a request body each, rendered. */
#define LIST_TEXT_MAX (256 * 1024 * 1024)

/* The meta object imp_list_body makes, as text; rows is the number of results given. */
static void list_meta_text(imp_jtext *t, const imp_query *q, int want_results, int64_t rows, int64_t count,
                           int64_t last)
{
	imp_jtext_raw(t, "{\"page\":", 8);
	imp_jtext_int(t, q->page);
	imp_jtext_key(t, "pageSize", 1);
	imp_jtext_int(t, q->page_size);
	imp_jtext_key(t, "sortBy", 1);
	imp_jtext_str(t, q->sort, strlen(q->sort));
	imp_jtext_key(t, "sortOrder", 1);
	imp_jtext_plain(t, q->desc ? "desc" : "asc");
	if(q->want_count) {
		imp_jtext_key(t, "count", 1);
		imp_jtext_int(t, count);
	}
	if(want_results && last >= 0 && rows == q->page_size && strcmp(q->sort, "created") == 0) {
		char num[24], cur[40];
		snprintf(num, sizeof num, "%lld", (long long)last);
		imp_b64_encode(num, strlen(num), cur, 1);
		imp_jtext_key(t, "nextCursor", 1);
		imp_jtext_str(t, cur, strlen(cur));
	}
	imp_jtext_raw(t, "}", 1);
}

typedef struct {
	const imp_resource *res;
	imp_render_cache cache;
	imp_jtext *t;
	int64_t rows;
} list_ctx;

/* One result of a page, written after the ones before it. */
static imp_err list_row(imp_db *db, const imp_entity *e, void *arg)
{
	list_ctx *c = arg;
	if(c->rows++) imp_jtext_raw(c->t, ",", 1);
	/* as imp_res_render's NULL made it: any failure to render is out of memory */
	if(imp_res_render_text(c->t, db, c->res, e, &c->cache) || c->t->failed) return IMP_ERR_NOMEM;
	return IMP_OK;
}

imp_err imp_res_list(imp_req *r)
{
	const imp_resource *res = r->route->arg;
	const imp_kind *k = res->kind;
	const char *allowed[24];
	imp_filter filters[16];
	size_t na = 0, nf = 0;
	imp_query q = {0};
	int want_results;
	imp_err rc;

	for(const imp_field *f = k->fields; f->name && na < 22; f++) {
		if(!(f->flags & IMP_F_FILTER)) continue;
		allowed[na++] = f->name;
		const char *v = api_query(r, f->name);
		if(!v) continue;
		if(f->type == IMP_T_ENUM && imp_choice_index(f->choices, v) < 0)
			return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_parameter", f->name, "%s is not one of its values", f->name);
		if(f->type == IMP_T_BOOL && strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
			return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_parameter", f->name, "%s must be true or false", f->name);
		filters[nf].field = f->name;
		filters[nf++].value = v;
	}
	if(k->q_columns[0]) allowed[na++] = "q";
	allowed[na] = NULL;
	if((rc = api_query_known(r, allowed)) || (rc = imp_list_args(r, &q, &want_results))) return rc;
	q.filters = filters;
	q.nfilters = nf;
	if(r->who.type == IMP_ACTOR_END_USER) {
		if(k != &imp_kind_device) return api_fail(r, IMP_ERR_FORBIDDEN, "forbidden", NULL, "end users may not make this call");
		q.within_org = r->who.org_id.s;
	}
	q.q = k->q_columns[0] ? api_query(r, "q") : NULL;
	const imp_field *sf = imp_kind_field(k, q.sort);
	if(strcmp(q.sort, "created") != 0 && strcmp(q.sort, "lastModified") != 0 && !(sf && (sf->flags & IMP_F_SORT)))
		return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_parameter", "sortBy", "%s cannot be sorted by that field", k->plural);
	if(q.q && strlen(q.q) > IMP_SERIAL_MAX * 4)
		return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_parameter", "q", "q is too long");

	/* {"<plural>":{"results":[...],"meta":{...}}}, as imp_list_body makes it, written as
	 * the rows come: no tree per entity to build, dump and free. */
	imp_jtext t;
	imp_jtext_init(&t, LIST_TEXT_MAX);
	imp_jtext_raw(&t, "{", 1);
	imp_jtext_key(&t, k->plural, 0);
	imp_jtext_raw(&t, want_results ? "{\"results\":[" : "{", want_results ? 12 : 1);
	int64_t count = 0, last = -1;
	list_ctx c = {.res = res, .t = &t};
	rc = imp_db_list_each(r->db, k, r->who.account, &q, want_results, list_row, &c, &count, &last);
	imp_render_cache_clear(&c.cache);
	if(rc) {
		imp_jtext_free(&t);
		if(rc == IMP_ERR_BAD_REQUEST) return api_fail(r, rc, "invalid_parameter", NULL, "a filter value has the wrong type");
		return fail_store(r, rc, k->name);
	}
	imp_jtext_raw(&t, want_results ? "],\"meta\":" : "\"meta\":", want_results ? 9 : 7);
	list_meta_text(&t, &q, want_results, c.rows, count, last);
	imp_jtext_raw(&t, "}}", 2);
	return api_reply_text(r, 200, &t);
}
