#include "api/router.h"

#include <pthread.h>
#include <string.h>

#include "api/auth.h"
#include "api/handlers.h"
#include "api/resource.h"

#define R(m, p, h, a, arg) {m, p, h, IMP_ACCESS_##a, arg, NULL, 0}
/* A route end users may call too (handlers keep them to their reach). */
#define RE(m, p, h, a, arg) {m, p, h, IMP_ACCESS_##a, arg, NULL, IMP_ROUTE_END_USER}
#define CRUD(base, res, create_access, write_access, delete_access)         \
	R("POST", base, imp_res_create, create_access, res),                    \
	R("GET", base, imp_res_list, READ, res),                                \
	R("GET", base "/{id}", imp_res_get, READ, res),                         \
	R("PUT", base "/{id}", imp_res_update, write_access, res),              \
	R("DELETE", base "/{id}", imp_res_delete, delete_access, res)

/* Literal paths come before patterns that could also match them (devices/templates
 * before devices/{id}). */
static const imp_route ROUTES[] = {
	R("GET", "/healthz", imp_h_healthz, PUBLIC, NULL),
	R("GET", "/openapi.json", imp_h_openapi, PUBLIC, NULL),
	R("POST", "/api/v1/auth/login-user", imp_h_login, PUBLIC, NULL),
	RE("POST", "/api/v1/sessions/renew-session", imp_h_renew, USER, NULL),
	R("POST", "/api/v1/api-keys", imp_res_create, ADMIN, &imp_res_api_key),
	R("GET", "/api/v1/api-keys", imp_res_list, ADMIN, &imp_res_api_key),
	R("GET", "/api/v1/api-keys/{id}", imp_res_get, ADMIN, &imp_res_api_key),
	R("DELETE", "/api/v1/api-keys/{id}", imp_res_delete, ADMIN, &imp_res_api_key),
	R("POST", "/api/v1/account-users", imp_res_create, ADMIN, &imp_res_account_user),
	R("GET", "/api/v1/account-users", imp_res_list, ADMIN, &imp_res_account_user),
	R("GET", "/api/v1/account-users/{id}", imp_res_get, ADMIN, &imp_res_account_user),
	R("DELETE", "/api/v1/account-users/{id}", imp_res_delete, ADMIN, &imp_res_account_user),
	CRUD("/api/v1/devices/templates", &imp_res_device_template, ADMIN, ADMIN, ADMIN),
	R("POST", "/api/v1/devices/custom-fields", imp_res_create, ADMIN, &imp_res_device_field),
	R("GET", "/api/v1/devices/custom-fields", imp_res_list, READ, &imp_res_device_field),
	R("GET", "/api/v1/devices/custom-fields/{id}", imp_res_get, READ, &imp_res_device_field),
	R("DELETE", "/api/v1/devices/custom-fields/{id}", imp_res_delete, ADMIN, &imp_res_device_field),
	R("POST", "/api/v1/channels/templates", imp_res_create, ADMIN, &imp_res_channel_template),
	R("GET", "/api/v1/channels/templates", imp_res_list, READ, &imp_res_channel_template),
	R("GET", "/api/v1/channels/templates/{id}", imp_res_get, READ, &imp_res_channel_template),
	R("DELETE", "/api/v1/channels/templates/{id}", imp_res_delete, ADMIN, &imp_res_channel_template),
	CRUD("/api/v1/organizations/templates", &imp_res_organization_template, ADMIN, ADMIN, ADMIN),
	CRUD("/api/v1/organizations", &imp_res_organization, ADMIN, ADMIN, ADMIN),
	CRUD("/api/v1/end-users/templates", &imp_res_end_user_template, ADMIN, ADMIN, ADMIN),
	R("POST", "/api/v1/end-users", imp_res_create, ADMIN, &imp_res_end_user),
	R("GET", "/api/v1/end-users", imp_res_list, READ, &imp_res_end_user),
	RE("GET", "/api/v1/end-users/{id}", imp_res_get, READ, &imp_res_end_user),
	R("PUT", "/api/v1/end-users/{id}", imp_res_update, ADMIN, &imp_res_end_user),
	R("DELETE", "/api/v1/end-users/{id}", imp_res_delete, ADMIN, &imp_res_end_user),
	{"POST", "/api/v1/devices/batch", NULL, IMP_ACCESS_PROVISION, NULL, &imp_batch_stream, 0},
	R("POST", "/api/v1/devices", imp_res_create, PROVISION, &imp_res_device),
	RE("GET", "/api/v1/devices", imp_res_list, READ, &imp_res_device),
	RE("GET", "/api/v1/devices/{id}", imp_res_get, READ_OR_SELF, &imp_res_device),
	RE("PUT", "/api/v1/devices/{id}", imp_res_update, PROVISION, &imp_res_device),
	R("DELETE", "/api/v1/devices/{id}", imp_res_delete, ADMIN, &imp_res_device),
	R("POST", "/api/v1/devices/{id}/disable", imp_h_device_disable, ADMIN, NULL),
	R("POST", "/api/v1/devices/{id}/enable", imp_h_device_enable, ADMIN, NULL),
	RE("POST", "/api/v1/access/mqtt-credentials", imp_h_cred_create, PROVISION, NULL),
	R("GET", "/api/v1/access/mqtt-credentials", imp_h_cred_list, READ, NULL),
	R("GET", "/api/v1/access/mqtt-credentials/{id}", imp_h_cred_get, READ, NULL),
	R("DELETE", "/api/v1/access/mqtt-credentials/{id}", imp_h_cred_delete, ADMIN, NULL),
	R("POST", "/api/v1/access/certificate-authorities", imp_res_create, ADMIN, &imp_res_certificate_authority),
	R("GET", "/api/v1/access/certificate-authorities", imp_res_list, READ, &imp_res_certificate_authority),
	R("GET", "/api/v1/access/certificate-authorities/{id}", imp_res_get, READ, &imp_res_certificate_authority),
	R("DELETE", "/api/v1/access/certificate-authorities/{id}", imp_res_delete, ADMIN, &imp_res_certificate_authority),
	{"POST", "/api/v1/association/create-association-code", imp_h_assoc_create, IMP_ACCESS_PROVISION, NULL, NULL,
	 IMP_ROUTE_DEVICE},
	RE("POST", "/api/v1/association/start-association-with-code", imp_h_assoc_start, PROVISION, NULL),
	RE("POST", "/api/v1/association/release", imp_h_assoc_release, ADMIN, NULL),
	R("POST", "/api/v1/broker/authenticate", imp_h_broker_authenticate, BROKER, NULL),
	R("POST", "/api/v1/broker/authorize", imp_h_broker_authorize, BROKER, NULL),
	R("GET", "/api/v1/audit", imp_h_audit, READ, NULL),
	R("POST", "/api/v1/provisioning/claim-tokens", imp_res_create, ADMIN, &imp_res_claim_token),
	R("GET", "/api/v1/provisioning/claim-tokens", imp_res_list, READ, &imp_res_claim_token),
	R("GET", "/api/v1/provisioning/claim-tokens/{id}", imp_res_get, READ, &imp_res_claim_token),
	R("DELETE", "/api/v1/provisioning/claim-tokens/{id}", imp_res_delete, ADMIN, &imp_res_claim_token),
	R("POST", "/api/v1/provisioning/claim", imp_h_claim, PUBLIC, NULL),
};

const imp_route *imp_routes(size_t *count)
{
	*count = sizeof ROUTES / sizeof ROUTES[0];
	return ROUTES;
}

/* Matches path against pattern, copying {id} segments into params. 1 on a match. */
static int match(const char *pattern, const char *path, imp_req *r)
{
	size_t np = 0;
	while(*pattern && *path) {
		if(*pattern == '{') {
			const char *end = strchr(pattern, '}');
			size_t n = strcspn(path, "/");
			if(n == 0 || np >= IMP_PARAMS_MAX || n >= sizeof r->params[0]) return 0;
			memcpy(r->params[np], path, n);
			r->params[np++][n] = '\0';
			pattern = end + 1;
			path += n;
		} else if(*pattern++ != *path++) {
			return 0;
		}
	}
	return *pattern == '\0' && (*path == '\0' || (path[0] == '/' && path[1] == '\0'));
}

static int allowed(imp_access need, unsigned scopes)
{
	switch(need) {
	case IMP_ACCESS_PUBLIC: return 1;
	case IMP_ACCESS_READ_OR_SELF:
	case IMP_ACCESS_READ: return (scopes & (IMP_SCOPE_ADMIN | IMP_SCOPE_PROVISIONING | IMP_SCOPE_READ)) != 0;
	case IMP_ACCESS_PROVISION: return (scopes & (IMP_SCOPE_ADMIN | IMP_SCOPE_PROVISIONING)) != 0;
	case IMP_ACCESS_ADMIN:
	case IMP_ACCESS_USER: return (scopes & IMP_SCOPE_ADMIN) != 0;
	case IMP_ACCESS_BROKER: return (scopes & IMP_SCOPE_BROKER) != 0;
	}
	return 0;
}

/* 1 when the request's method may be echoed in an error message: short, printable ASCII
 * (libmicrohttpd passes any bytes, and a message that is not UTF-8 cannot become JSON). */
static int method_printable(const char *m)
{
	size_t n = 0;
	for(; m[n]; n++) {
		if((unsigned char)m[n] <= ' ' || (unsigned char)m[n] >= 0x7f) return 0;
	}
	return n < 16;
}

/* The prefix of every route but two: a path's is checked once, and the patterns that have
 * it matched from after it (the prefix, compared again for each route a request passed
 * before its own, was most of the router's time). */
#define API_PREFIX "/api/v1/"
#define API_PREFIX_LEN (sizeof API_PREFIX - 1)
#define NROUTES (sizeof ROUTES / sizeof ROUTES[0])

static unsigned char prefixed[NROUTES];   /* 1: ROUTES[i].pattern starts with API_PREFIX */
static pthread_once_t prefixed_once = PTHREAD_ONCE_INIT;

static void find_prefixed(void)
{
	for(size_t i = 0; i < NROUTES; i++) prefixed[i] = strncmp(ROUTES[i].pattern, API_PREFIX, API_PREFIX_LEN) == 0;
}

imp_err imp_router_resolve(imp_req *r)
{
	int path_known = 0;
	pthread_once(&prefixed_once, find_prefixed);
	const char *rest = strncmp(r->url, API_PREFIX, API_PREFIX_LEN) == 0 ? r->url + API_PREFIX_LEN : NULL;
	for(size_t i = 0; i < NROUTES; i++) {
		if(prefixed[i] ? !rest || !match(ROUTES[i].pattern + API_PREFIX_LEN, rest, r) : !match(ROUTES[i].pattern, r->url, r))
			continue;
		path_known = 1;
		if(strcmp(ROUTES[i].method, r->method) == 0) {
			r->route = &ROUTES[i];
			break;
		}
	}
	if(!r->route) {
		if(path_known) return api_fail(r, IMP_ERR_METHOD, "method_not_allowed", NULL, "this path does not take %s",
		                               method_printable(r->method) ? r->method : "that method");
		return api_fail(r, IMP_ERR_NOT_FOUND, "route_not_found", NULL, "no such path");
	}
	r->db = imp_store_db(r->app->store);
	if(!r->db) return api_fail(r, IMP_ERR_STORE, NULL, NULL, "the store is not available");
	if(r->route->access != IMP_ACCESS_PUBLIC) {
		imp_err rc = imp_auth_resolve(r, r->route->access == IMP_ACCESS_USER);
		if(rc) return rc;
		/* End users call only the routes marked for them, whose handlers keep them to
		 * their organizations: every other route is 403, whatever the id. */
		if(r->who.type == IMP_ACTOR_END_USER) {
			if(!(r->route->also & IMP_ROUTE_END_USER))
				return api_fail(r, IMP_ERR_FORBIDDEN, "forbidden", NULL, "end users may not make this call");
			return IMP_OK;
		}
		if(r->route->access == IMP_ACCESS_USER && r->who.type != IMP_ACTOR_USER)
			return api_fail(r, IMP_ERR_FORBIDDEN, "forbidden", NULL, "this call needs a logged-in user's token");
		int self = r->who.type == IMP_ACTOR_DEVICE &&
		           ((r->route->access == IMP_ACCESS_READ_OR_SELF && strcmp(r->who.actor_id.s, r->params[0]) == 0) ||
		            (r->route->also & IMP_ROUTE_DEVICE));
		if(r->who.type == IMP_ACTOR_DEVICE && !self)
			return api_fail(r, IMP_ERR_FORBIDDEN, "forbidden", NULL, "a device may call only its own device routes");
		if(!self && !allowed(r->route->access, r->who.scopes))
			return api_fail(r, IMP_ERR_FORBIDDEN, "insufficient_scope", NULL, "the caller's scopes do not allow this call");
	}
	return IMP_OK;
}

imp_err imp_router_dispatch(imp_req *r)
{
	imp_err rc = imp_router_resolve(r);
	if(rc) return rc;
	if(!r->route->handler) return api_fail(r, IMP_ERR_STORE, NULL, NULL, "this route streams its body");
	return r->route->handler(r);
}

const imp_route *imp_router_stream_route(const char *method, const char *path)
{
	imp_req r;
	for(size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++) {
		if(ROUTES[i].stream && strcmp(ROUTES[i].method, method) == 0 && match(ROUTES[i].pattern, path, &r))
			return &ROUTES[i];
	}
	return NULL;
}
