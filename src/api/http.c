/* Helpers handlers use to read requests and shape answers, and the one table that maps
 * errors to HTTP statuses. */
#include "api/http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/auth.h"
#include "api/jsontext.h"
#include "api/router.h"
#include "api/template_cache.h"
#include "core/mem.h"
#include "core/limits.h"

unsigned api_status(imp_err rc)
{
	switch(rc) {
	case IMP_OK: return 200;
	case IMP_ERR_BAD_REQUEST: return 400;
	case IMP_ERR_UNAUTHORIZED: return 401;
	case IMP_ERR_FORBIDDEN: return 403;
	case IMP_ERR_NOT_FOUND: return 404;
	case IMP_ERR_METHOD: return 405;
	case IMP_ERR_CONFLICT:
	case IMP_ERR_EXISTS: return 409;
	case IMP_ERR_STALE: return 412;
	case IMP_ERR_TOO_LARGE: return 413;
	case IMP_ERR_INVALID: return 422;
	case IMP_ERR_RATE_LIMITED: return 429;
	case IMP_ERR_BUSY: return 503;
	case IMP_ERR_NOMEM:
	case IMP_ERR_STORE:
	case IMP_ERR_IO:
	case IMP_ERR_CRYPTO: return 500;
	}
	return 500;
}

imp_err api_fail(imp_req *r, imp_err rc, const char *code, const char *target, const char *fmt, ...)
{
	snprintf(r->err_code, sizeof r->err_code, "%s", code ? code : imp_err_name(rc));
	snprintf(r->err_target, sizeof r->err_target, "%s", target ? target : "");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->err_msg, sizeof r->err_msg, fmt, ap);
	va_end(ap);
	return rc;
}

imp_err api_reply(imp_req *r, unsigned status, json_t *body)
{
	r->status = status;
	json_decref(r->out);
	imp_free(r->out_text);
	r->out_text = NULL;
	r->out = body;
	return IMP_OK;
}

/* api_commit's end: the answer stands, or the commit's failure replaces it. */
static imp_err commit_finish(imp_req *r, imp_err rc)
{
	const char *msg = r->finish_arg;
	r->finish = NULL;
	r->finish_arg = NULL;
	if(!rc) return IMP_OK;
	r->header_name[0] = '\0';
	return r->err_msg[0] ? rc : api_fail(r, rc, NULL, NULL, "%s", msg);
}

imp_err api_commit_then(imp_req *r, imp_err (*finish)(imp_req *r, imp_err rc))
{
	if(!r->later) return finish(r, imp_db_commit(&r->db));
	/* finish first: the commit may end before imp_db_commit_later returns */
	r->finish = finish;
	imp_err rc = imp_db_commit_later(&r->db, r->later);
	return rc ? finish(r, rc) : IMP_OK;
}

imp_err api_commit(imp_req *r, const char *fail_msg)
{
	r->finish_arg = (void *)(uintptr_t)fail_msg;
	return api_commit_then(r, commit_finish);
}

imp_err api_reply_text(imp_req *r, unsigned status, imp_jtext *t)
{
	if(t->failed || !t->s) {
		imp_jtext_free(t);
		return api_fail(r, IMP_ERR_NOMEM, NULL, NULL, "out of memory");
	}
	json_decref(r->out);
	r->out = NULL;
	imp_free(r->out_text);
	r->status = status;
	r->out_text = t->s;
	r->out_len = t->len;
	memset(t, 0, sizeof *t);
	return IMP_OK;
}

json_t *api_wrap(const char *name, json_t *e)
{
	if(!e) return NULL;
	json_t *o = json_object();
	if(!o || json_object_set_new(o, name, e)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *api_body_object(imp_req *r)
{
	json_error_t je;
	if(r->body_len == 0) {
		api_fail(r, IMP_ERR_BAD_REQUEST, "malformed_json", NULL, "the request needs a JSON object body");
		return NULL;
	}
	json_t *o = imp_json_load(r->body, r->body_len, &je);
	if(!o) {
		/* jansson's text names the problem and position, never more than a few bytes of
		 * input; keep only the position, as bodies may carry secrets. */
		api_fail(r, IMP_ERR_BAD_REQUEST, "malformed_json", NULL, "the body is not valid JSON (line %d, column %d)",
		         je.line, je.column);
		return NULL;
	}
	if(!json_is_object(o)) {
		json_decref(o);
		api_fail(r, IMP_ERR_BAD_REQUEST, "malformed_json", NULL, "the body must be a JSON object");
		return NULL;
	}
	return o;
}

const char *api_query(imp_req *r, const char *name)
{
	return r->conn ? MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name) : NULL;
}

const char *api_client_addr(imp_req *r)
{
	if(r->addr[0] || !r->conn) return r->addr;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if(!ci || !ci->client_addr) return r->addr;
	const struct sockaddr *sa = ci->client_addr;
	if(sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->addr, (socklen_t)sizeof r->addr);
	else if(sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->addr, (socklen_t)sizeof r->addr);
	return r->addr;
}

const char *api_header(imp_req *r, const char *name)
{
	return r->conn ? MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name) : NULL;
}

static const char *const LIST_ARGS[] = {"page", "pageSize", "sortBy", "sortOrder", "meta", "results", "cursor",
                                        "accountId", NULL};

struct known_ctx {
	const char *const *allowed;
	const char *bad;
};

static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct known_ctx *k = cls;
	for(int i = 0; LIST_ARGS[i]; i++) {
		if(strcmp(key, LIST_ARGS[i]) == 0) return MHD_YES;
	}
	for(int i = 0; k->allowed && k->allowed[i]; i++) {
		if(strcmp(key, k->allowed[i]) == 0) return MHD_YES;
	}
	k->bad = key;
	return MHD_NO;
}

imp_err api_query_known(imp_req *r, const char *const *allowed)
{
	struct known_ctx k = {allowed, NULL};
	if(r->conn) MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, check_arg, &k);
	if(k.bad) {
		char name[48];
		snprintf(name, sizeof name, "%s", k.bad);
		for(char *p = name; *p; p++) {
			if((unsigned char)*p < ' ' || (unsigned char)*p > '~') *p = '?';
		}
		return api_fail(r, IMP_ERR_BAD_REQUEST, "unknown_parameter", name, "unknown query parameter %s", name);
	}
	return IMP_OK;
}

void api_version_text(int64_t v, char out[24]) { snprintf(out, 24, "%lld", (long long)v); }

imp_err api_expected_version(imp_req *r, int64_t *out)
{
	const char *h = api_header(r, "Etag");
	if(!h) h = api_header(r, "If-Match");
	*out = -1;
	if(!h) return IMP_OK;
	while(*h == ' ') h++;
	if(strncmp(h, "W/", 2) == 0) h += 2;
	size_t n = strlen(h);
	while(n && h[n - 1] == ' ') n--;
	if(n >= 2 && h[0] == '"' && h[n - 1] == '"') {
		h++;
		n -= 2;
	}
	char buf[24];
	if(n == 0 || n >= sizeof buf) goto stale;
	memcpy(buf, h, n);
	buf[n] = '\0';
	char *end;
	long long v = strtoll(buf, &end, 10);
	if(*end || v < 1) goto stale;
	*out = v;
	return IMP_OK;
stale:
	return api_fail(r, IMP_ERR_STALE, "version_mismatch", "version", "the version given does not match the entity's");
}

imp_err api_check_account(imp_req *r, const json_t *account_id)
{
	if(!account_id) return IMP_OK;
	if(!json_is_string(account_id))
		return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_type", "accountId", "accountId must be a string");
	if(strcmp(json_string_value(account_id), r->who.account_id.s) != 0)
		return api_fail(r, IMP_ERR_FORBIDDEN, "wrong_account", "accountId", "accountId is not the caller's account");
	return IMP_OK;
}

imp_err api_check_query_account(imp_req *r)
{
	const char *a = api_query(r, "accountId");
	if(a && strcmp(a, r->who.account_id.s) != 0)
		return api_fail(r, IMP_ERR_FORBIDDEN, "wrong_account", "accountId", "accountId is not the caller's account");
	return IMP_OK;
}

imp_err api_audit(imp_req *r, const char *action, const char *entity_type, const char *entity_id, json_t *details)
{
	imp_audit a = {
		.account = r->who.account,
		.actor_id = r->who.actor_id.s,
		.actor_type = r->who.type == IMP_ACTOR_API_KEY       ? "apiKey"
		              : r->who.type == IMP_ACTOR_DEVICE      ? "device"
		              : r->who.type == IMP_ACTOR_CLAIM_TOKEN ? "claimToken"
		              : r->who.type == IMP_ACTOR_END_USER    ? "endUser"
		                                                     : "accountUser",
		.action = action,
		.entity_type = entity_type,
		.entity_id = entity_id,
		.details = details,
	};
	imp_err rc = imp_db_audit(r->db, &a);
	return rc ? api_fail(r, rc, NULL, NULL, "could not write the audit entry") : IMP_OK;
}

imp_db *api_read_begin(imp_app *app)
{
	imp_auth_pin(1);
	imp_template_cache_pin(1);
	imp_db *db = imp_store_reader(app->store);
	if(!db) api_read_end(NULL);
	return db;
}

void api_read_end(imp_db *db)
{
	imp_db_read_done(db);
	imp_template_cache_pin(0);
	imp_auth_pin(0);
}
