/* GET /openapi.json tells the truth about the router: every route `imprint routes` prints
 * is documented with its method, every documented path and method is a route, the
 * document is OpenAPI 3.1 whose references all resolve, and the auth it documents for
 * each operation is the auth the server asks for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define MAX_ROUTES 256

typedef struct {
	char method[16];
	char path[200];
	int stream;   /* `imprint routes` marks streaming routes */
} route;

static h_server srv;
static route routes[MAX_ROUTES];
static size_t nroutes;
static json_t *doc;

static const char *const HTTP_METHODS[] = {"get", "put", "post", "delete", "options", "head", "patch", "trace", NULL};

static int is_http_method(const char *key)
{
	for(int i = 0; HTTP_METHODS[i]; i++) {
		if(strcmp(key, HTTP_METHODS[i]) == 0) return 1;
	}
	return 0;
}

static void lower(const char *in, char *out, size_t cap)
{
	size_t i = 0;
	for(; in[i] && i + 1 < cap; i++) out[i] = (char)tolower((unsigned char)in[i]);
	out[i] = '\0';
}

/* Reads "METHOD /path" lines from `imprint routes`. */
static int load_routes(void)
{
	static char out[65536];
	const char *const args[] = {IMP_BIN, "routes", NULL};
	if(h_run(out, sizeof out, args) != 0) return -1;
	nroutes = 0;
	for(char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		if(nroutes >= MAX_ROUTES) return -1;
		route *r = &routes[nroutes];
		if(sscanf(line, "%15s %199s", r->method, r->path) != 2 || r->path[0] != '/') {
			fprintf(stderr, "unparsable route line: %s\n", line);
			return -1;
		}
		r->stream = strstr(line, "(streams NDJSON)") != NULL;
		nroutes++;
	}
	return nroutes > 0 ? 0 : -1;
}

static int setup(void **state)
{
	if(load_routes()) return -1;
	if(h_server_start(&srv)) return -1;
	h_resp r = h_call(&srv, "GET", "/openapi.json", NULL, NULL, NULL);
	if(r.status != 200 || !json_is_object(r.json) || strncmp(r.content_type, "application/json", 16) != 0) {
		fprintf(stderr, "GET /openapi.json: %ld %s\n", r.status, r.content_type);
		h_resp_free(&r);
		return -1;
	}
	doc = json_incref(r.json);
	h_resp_free(&r);
	return 0;
}

static int teardown(void **state)
{
	json_decref(doc);
	int rc = h_server_stop(&srv);
	h_server_destroy(&srv);
	return rc == 0 ? 0 : -1;
}

static json_t *operation(const char *path, const char *method)
{
	char m[16];
	lower(method, m, sizeof m);
	return json_object_get(json_object_get(json_object_get(doc, "paths"), path), m);
}

static void every_route_is_documented(void **state)
{
	int missing = 0;
	for(size_t i = 0; i < nroutes; i++) {
		json_t *op = operation(routes[i].path, routes[i].method);
		if(!json_is_object(op)) {
			fprintf(stderr, "route not in openapi.json: %s %s\n", routes[i].method, routes[i].path);
			missing++;
		}
	}
	assert_int_equal(missing, 0);
}

static int is_route(const char *path, const char *method_lower)
{
	for(size_t i = 0; i < nroutes; i++) {
		char m[16];
		lower(routes[i].method, m, sizeof m);
		if(strcmp(routes[i].path, path) == 0 && strcmp(m, method_lower) == 0) return 1;
	}
	return 0;
}

static void every_documented_operation_is_a_route(void **state)
{
	json_t *paths = json_object_get(doc, "paths");
	assert_true(json_is_object(paths));
	const char *path, *key;
	json_t *item, *v;
	int extra = 0;
	size_t ops = 0;
	json_object_foreach(paths, path, item) {
		assert_true(json_is_object(item));
		json_object_foreach(item, key, v) {
			if(!is_http_method(key)) continue; /* summary, parameters, ... */
			ops++;
			if(!is_route(path, key)) {
				fprintf(stderr, "documented but not routed: %s %s\n", key, path);
				extra++;
			}
		}
	}
	assert_int_equal(extra, 0);
	/* Both directions hold and routes are unique, so the counts agree too. */
	assert_int_equal(ops, nroutes);
}

/* Resolves a local reference "#/a/b" (JSON pointer, ~0 and ~1 escapes). */
static json_t *resolve(const char *ref)
{
	if(strncmp(ref, "#/", 2) != 0) return NULL;
	json_t *cur = doc;
	const char *p = ref + 2;
	char key[256];
	while(cur && *p) {
		size_t n = 0;
		while(*p && *p != '/' && n + 1 < sizeof key) {
			if(p[0] == '~' && p[1] == '1') {
				key[n++] = '/';
				p += 2;
			} else if(p[0] == '~' && p[1] == '0') {
				key[n++] = '~';
				p += 2;
			} else {
				key[n++] = *p++;
			}
		}
		key[n] = '\0';
		cur = json_object_get(cur, key);
		if(*p == '/') p++;
	}
	return cur;
}

static int check_refs(json_t *v)
{
	int bad = 0;
	if(json_is_object(v)) {
		const char *k;
		json_t *c;
		json_object_foreach(v, k, c) {
			if(strcmp(k, "$ref") == 0 && json_is_string(c) && !resolve(json_string_value(c))) {
				fprintf(stderr, "unresolved $ref %s\n", json_string_value(c));
				bad++;
			}
			bad += check_refs(c);
		}
	} else if(json_is_array(v)) {
		size_t i;
		json_t *c;
		json_array_foreach(v, i, c) bad += check_refs(c);
	}
	return bad;
}

/* The response for status, following a $ref to components/responses. */
static json_t *response(json_t *op, const char *status)
{
	json_t *r = json_object_get(json_object_get(op, "responses"), status);
	const char *ref = json_string_value(json_object_get(r, "$ref"));
	return ref ? resolve(ref) : r;
}

static void document_is_well_formed(void **state)
{
	const char *ver = json_string_value(json_object_get(doc, "openapi"));
	assert_non_null(ver);
	assert_int_equal(strncmp(ver, "3.1.", 4), 0);
	assert_non_null(json_string_value(h_at(doc, "info.title")));
	assert_non_null(json_string_value(h_at(doc, "info.version")));
	assert_true(json_is_object(h_at(doc, "components.securitySchemes.bearerAuth")));
	assert_string_equal(json_string_value(h_at(doc, "components.securitySchemes.bearerAuth.scheme")), "bearer");
	assert_true(json_is_object(h_at(doc, "components.schemas.Error")));
	assert_int_equal(check_refs(doc), 0);

	int bad = 0;
	for(size_t i = 0; i < nroutes; i++) {
		json_t *op = operation(routes[i].path, routes[i].method);
		if(!op) continue; /* reported by every_route_is_documented */
		const char *what = routes[i].path;
		if(!json_string_value(json_object_get(op, "summary"))) {
			fprintf(stderr, "%s %s: no summary\n", routes[i].method, what);
			bad++;
		}
		json_t *resps = json_object_get(op, "responses");
		const char *code;
		json_t *rv;
		int success = 0;
		json_object_foreach(resps, code, rv) {
			if(code[0] == '2') success++;
			/* Every documented error carries the Error schema. */
			if(code[0] == '4') {
				json_t *r = response(op, code);
				const char *ref = json_string_value(h_at(r, "content.application/json.schema.$ref"));
				if(!ref || strcmp(ref, "#/components/schemas/Error") != 0) {
					fprintf(stderr, "%s %s: %s does not use the Error schema\n", routes[i].method, what, code);
					bad++;
				}
			}
		}
		if(!success) {
			fprintf(stderr, "%s %s: no success response\n", routes[i].method, what);
			bad++;
		}
		/* Path parameters are declared for every {id}. */
		if(strstr(what, "{id}")) {
			json_t *ps = json_object_get(op, "parameters");
			size_t j;
			json_t *p;
			int found = 0;
			json_array_foreach(ps, j, p) {
				const char *ref = json_string_value(json_object_get(p, "$ref"));
				json_t *pp = ref ? resolve(ref) : p;
				if(json_is_string(json_object_get(pp, "in")) && strcmp(json_string_value(json_object_get(pp, "in")), "path") == 0 &&
				   strcmp(json_string_value(json_object_get(pp, "name")), "id") == 0 && json_is_true(json_object_get(pp, "required")))
					found = 1;
			}
			if(!found) {
				fprintf(stderr, "%s %s: no required path parameter id\n", routes[i].method, what);
				bad++;
			}
		}
		/* Operations that read a body document it, with 400 and 413. */
		json_t *rb = json_object_get(op, "requestBody");
		if(rb) {
			/* Streaming routes (the device batch) take NDJSON and have no whole-body limit. */
			int ndjson = json_object_get(json_object_get(rb, "content"), "application/x-ndjson") != NULL;
			if(!json_is_object(h_at(rb, "content")) ||
			   (!ndjson && !json_object_get(json_object_get(rb, "content"), "application/json"))) {
				fprintf(stderr, "%s %s: requestBody without application/json\n", routes[i].method, what);
				bad++;
			}
			if(ndjson != routes[i].stream) {
				fprintf(stderr, "%s %s: NDJSON body documented for a route that does not stream, or the reverse\n",
				        routes[i].method, what);
				bad++;
			}
			if(!response(op, "400") || (!ndjson && !response(op, "413"))) {
				fprintf(stderr, "%s %s: takes a body but documents no 400/413\n", routes[i].method, what);
				bad++;
			}
		}
	}
	assert_int_equal(bad, 0);
}

/* An operation is public when its security is an empty list; otherwise the top-level
 * bearerAuth applies and a call without a token must get 401. */
static int documented_public(json_t *op)
{
	json_t *sec = json_object_get(op, "security");
	if(!sec) sec = json_object_get(doc, "security");
	return json_is_array(sec) && json_array_size(sec) == 0;
}

static void documented_auth_matches_the_server(void **state)
{
	int bad = 0;
	for(size_t i = 0; i < nroutes; i++) {
		json_t *op = operation(routes[i].path, routes[i].method);
		if(!op) continue;
		char path[256];
		const char *id = strstr(routes[i].path, "{id}");
		if(id) {
			snprintf(path, sizeof path, "%.*s%s%s", (int)(id - routes[i].path), routes[i].path,
			         "01900000-0000-7000-8000-000000000000", id + 4);
		} else {
			snprintf(path, sizeof path, "%s", routes[i].path);
		}
		h_resp r = h_call(&srv, routes[i].method, path, NULL, NULL, NULL);
		int pub = documented_public(op);
		if(pub ? (r.status == 401 || r.status >= 500 || r.status < 200) : r.status != 401) {
			fprintf(stderr, "%s %s without a token: %ld, but the document says %s\n", routes[i].method, path, r.status,
			        pub ? "public" : "bearerAuth");
			bad++;
		} else if(!pub && !json_object_get(json_object_get(op, "responses"), "401")) {
			fprintf(stderr, "%s %s: needs a token but documents no 401\n", routes[i].method, routes[i].path);
			bad++;
		}
		h_resp_free(&r);
	}
	assert_int_equal(bad, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_route_is_documented),
		cmocka_unit_test(every_documented_operation_is_a_route),
		cmocka_unit_test(document_is_well_formed),
		cmocka_unit_test(documented_auth_matches_the_server),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
