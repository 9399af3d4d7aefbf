/* End-to-end: organization templates and organizations (hierarchy, lists, updates,
 * deletes), against a real `imprint serve` (one per file). Cases are tables of {method,
 * path, body, status, error code, details target, checked value}; paths and bodies name
 * earlier ids as {VAR} and long strings as {c*N}. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* ---- shared helpers (copied in each e2e file of this set; static, one server per file) ---- */
#define UNUSED __attribute__((unused))

static h_server S;

/* Variables that case paths and bodies refer to as {NAME}; {c*N} expands to N copies of c. */
typedef struct {
	char key[32];
	char val[128];
} tvar;
static tvar VARS[64];
static size_t NVARS;

static UNUSED void setvar(const char *key, const char *val)
{
	for(size_t i = 0; i < NVARS; i++) {
		if(strcmp(VARS[i].key, key) == 0) {
			snprintf(VARS[i].val, sizeof VARS[i].val, "%s", val);
			return;
		}
	}
	assert_true(NVARS < sizeof VARS / sizeof VARS[0]);
	snprintf(VARS[NVARS].key, sizeof VARS[NVARS].key, "%s", key);
	snprintf(VARS[NVARS].val, sizeof VARS[NVARS].val, "%s", val);
	NVARS++;
}

static UNUSED const char *getvar(const char *key)
{
	for(size_t i = 0; i < NVARS; i++) {
		if(strcmp(VARS[i].key, key) == 0) return VARS[i].val;
	}
	fail_msg("no variable %s", key);
	return NULL;
}

/* in with its {NAME} and {c*N} tokens expanded; caller frees. NULL stays NULL. */
static char *expand(const char *in)
{
	if(!in) return NULL;
	size_t cap = strlen(in) + 1, n = 0;
	char *out = malloc(cap);
	assert_non_null(out);
	for(const char *p = in; *p;) {
		const char *add = NULL, *unit = p + 1;
		size_t addn = 0, rep = 0;
		/* the repeated character may be one UTF-8 sequence of 1 to 4 bytes */
		size_t ulen = (unsigned char)unit[0] >= 0xf0 ? 4 : (unsigned char)unit[0] >= 0xe0 ? 3 :
		              (unsigned char)unit[0] >= 0xc0 ? 2 : 1;
		if(p[0] == '{' && unit[0] && strnlen(unit, ulen + 1) > ulen && unit[ulen] == '*') {
			char *end;
			long k = strtol(unit + ulen + 1, &end, 10);
			if(end > unit + ulen + 1 && *end == '}' && k >= 0) {
				rep = (size_t)k;
				p = end + 1;
			}
		}
		if(!rep && p[0] == '{') {
			size_t k = 1;
			while((p[k] >= 'A' && p[k] <= 'Z') || (p[k] >= 'a' && p[k] <= 'z') || (p[k] >= '0' && p[k] <= '9') || p[k] == '_') k++;
			if(k > 1 && p[k] == '}') {
				for(size_t i = 0; i < NVARS; i++) {
					if(strlen(VARS[i].key) == k - 1 && strncmp(VARS[i].key, p + 1, k - 1) == 0) {
						add = VARS[i].val;
						addn = strlen(add);
						p += k + 1;
						break;
					}
				}
			}
		}
		if(!add && !rep) {
			add = p++;
			addn = 1;
		}
		size_t need = n + addn + rep * ulen + 1;
		if(need > cap) {
			cap = need * 2;
			out = realloc(out, cap);
			assert_non_null(out);
		}
		if(rep) {
			for(size_t k = 0; k < rep; k++, n += ulen) memcpy(out + n, unit, ulen);
		} else {
			memcpy(out + n, add, addn);
			n += addn;
		}
	}
	out[n] = '\0';
	return out;
}

/* One call with token; path and body are expanded. */
static h_resp api_as(const char *token, const char *method, const char *path, const char *body, const char *extra)
{
	char *p = expand(path), *b = expand(body);
	h_resp r = h_call(&S, method, p, token, b, extra);
	free(p);
	free(b);
	return r;
}

/* The token api() and the case tables use: the init account's admin key unless set. */
static const char *TOKEN;

static UNUSED h_resp api(const char *method, const char *path, const char *body)
{
	return api_as(TOKEN ? TOKEN : S.admin.api_key, method, path, body, NULL);
}

static void show(char *buf, size_t cap, const char *s)
{
	if(!s) s = "(null)";
	size_t n = strlen(s);
	if(n < cap) snprintf(buf, cap, "%s", s);
	else snprintf(buf, cap, "%.*s...(%zu bytes)", (int)(cap - 32), s, n);
}

/* Checks status and, for errors, the error body: code, a message, and details[0].target. */
static void check_resp(const h_resp *r, long status, const char *code, const char *target, const char *what)
{
	char body[600];
	show(body, sizeof body, r->body);
	if(r->status != status) fail_msg("%s: status %ld, want %ld; body %s", what, r->status, status, body);
	if(status == 204) {
		if(r->len != 0) fail_msg("%s: 204 with a body %s", what, body);
		return;
	}
	if(!json_is_object(r->json)) fail_msg("%s: body is not a JSON object: %s", what, body);
	if(strncmp(r->content_type, "application/json", 16) != 0)
		fail_msg("%s: Content-Type %s", what, r->content_type);
	if(status >= 400) {
		json_t *err = json_object_get(r->json, "error");
		const char *got = json_string_value(json_object_get(err, "code"));
		const char *msg = json_string_value(json_object_get(err, "message"));
		if(json_object_size(r->json) != 1 || !got || !msg || !msg[0])
			fail_msg("%s: not an error body: %s", what, body);
		if(code && strcmp(got, code) != 0) fail_msg("%s: error code %s, want %s; body %s", what, got, code, body);
		if(target) {
			const char *t = json_string_value(h_at(r->json, "error.details.0.target"));
			const char *dm = json_string_value(h_at(r->json, "error.details.0.message"));
			if(!t || strcmp(t, target) != 0 || !dm)
				fail_msg("%s: details target %s, want %s; body %s", what, t ? t : "(none)", target, body);
		}
	} else if(code) {
		fail_msg("%s: wanted error %s, got %ld %s", what, code, status, body);
	}
}

/* The JSON value at a dotted path, compact text (caller frees), or NULL when absent. */
static char *text_at(const h_resp *r, const char *path)
{
	json_t *v = h_at(r->json, path);
	return v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
}

static UNUSED void check_at(const h_resp *r, const char *path, const char *want_json, const char *what)
{
	char *want = expand(want_json), *xpath = expand(path);
	char *got = text_at(r, xpath);
	free(xpath);
	char body[600];
	show(body, sizeof body, r->body);
	if(!want_json) {
		if(got) fail_msg("%s: %s present (%s), want absent", what, path, got);
	} else if(!got || strcmp(got, want) != 0) {
		fail_msg("%s: %s is %s, want %s; body %s", what, path, got ? got : "(absent)", want, body);
	}
	free(got);
	free(want);
}

typedef struct {
	const char *method, *path, *body;
	long status;
	const char *code;   /* error code, NULL for success */
	const char *target; /* error.details[0].target, or NULL */
	const char *at;     /* a dotted path whose value to check, or NULL */
	const char *want;   /* its value as compact JSON ({VARS} expanded) */
	const char *save;   /* variable to set to the created/updated entity's id, or NULL */
} tcase;

/* Case constructors: K success, V success with a checked value, VS the same saving the
 * entity's id as a variable, E an error with its code and details target. */
#define K(m, p, b, st) {m, p, b, st, NULL, NULL, NULL, NULL, NULL}
#define V(m, p, b, st, at, want) {m, p, b, st, NULL, NULL, at, want, NULL}
#define VS(m, p, b, st, at, want, save) {m, p, b, st, NULL, NULL, at, want, save}
#define E(m, p, b, st, code, target) {m, p, b, st, code, target, NULL, NULL, NULL}

static UNUSED void run_cases(const tcase *cases, size_t n)
{
	for(size_t i = 0; i < n; i++) {
		const tcase *c = &cases[i];
		char what[400], body[200];
		show(body, sizeof body, c->body);
		snprintf(what, sizeof what, "case %zu (%s %s %s)", i, c->method, c->path, body);
		h_resp r = api(c->method, c->path, c->body);
		check_resp(&r, c->status, c->code, c->target, what);
		if(c->at) check_at(&r, c->at, c->want, what);
		if(c->save) {
			void *it = json_object_iter(r.json);
			const char *id = it ? json_string_value(json_object_get(json_object_iter_value(it), "id")) : NULL;
			if(!id) fail_msg("%s: no id to save", what);
			setvar(c->save, id);
		}
		h_resp_free(&r);
	}
}

/* POST body to path, assert 201 and return the entity (the wrapper's value, a new reference). */
static UNUSED json_t *create(const char *path, const char *wrapper, const char *body, const char *save)
{
	char what[300];
	snprintf(what, sizeof what, "create %s", path);
	h_resp r = api("POST", path, body);
	check_resp(&r, 201, NULL, NULL, what);
	json_t *e = json_object_get(r.json, wrapper);
	if(!json_is_object(e) || json_object_size(r.json) != 1) fail_msg("%s: no %s wrapper: %s", what, wrapper, r.body);
	const char *id = json_string_value(json_object_get(e, "id"));
	const char *ver = json_string_value(json_object_get(e, "version"));
	if(!id || !ver || strcmp(r.etag, ver) != 0) fail_msg("%s: id/version/Etag wrong: Etag %s, %s", what, r.etag, r.body);
	if(save) setvar(save, id);
	json_incref(e);
	h_resp_free(&r);
	return e;
}

/* An id that is a well-formed UUID of version 7 (RFC 9562 variant). */
static UNUSED void assert_uuid7(const char *id)
{
	assert_non_null(id);
	assert_int_equal(strlen(id), 36);
	for(int i = 0; i < 36; i++) {
		if(i == 8 || i == 13 || i == 18 || i == 23) assert_int_equal(id[i], '-');
		else assert_true(strchr("0123456789abcdef", id[i]) != NULL);
	}
	assert_int_equal(id[14], '7');
	assert_non_null(strchr("89ab", id[19]));
}

/* An ISO-8601 UTC timestamp with milliseconds: 2026-11-25T20:41:28.123Z. */
static UNUSED void assert_timestamp(const char *t)
{
	assert_non_null(t);
	assert_int_equal(strlen(t), 24);
	const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ";
	for(int i = 0; i < 24; i++) {
		if(shape[i] == 'd') assert_true(t[i] >= '0' && t[i] <= '9');
		else assert_int_equal(t[i], shape[i]);
	}
}

static int group_setup(void **state)
{
	if(h_server_start(&S)) {
		fprintf(stderr, "could not start the server (log %s)\n", S.log);
		return -1;
	}
	return 0;
}

/* Stops the server: it must exit 0 (no leaks under ASan) and log no sanitizer report. */
static int group_teardown(void **state)
{
	int st = h_server_stop(&S);
	int bad = st != 0 || h_log_contains(&S, "AddressSanitizer") || h_log_contains(&S, "runtime error") ||
	          h_log_contains(&S, "LeakSanitizer");
	if(bad) {
		fprintf(stderr, "server exit status %d; log kept at %s\n", st, S.log);
		return -1;
	}
	h_server_destroy(&S);
	return 0;
}
/* ---- end of shared helpers ---- */

/* ---------------------------------------------------------------- organization templates */

static void org_templates(void **state)
{
	setvar("ACCT", S.admin.account_id);
	json_t *t = create("/api/v1/organizations/templates", "organizationTemplate", "{\"name\":\"Retailer\"}", "OT1");
	assert_uuid7(json_string_value(json_object_get(t, "id")));
	assert_string_equal(json_string_value(json_object_get(t, "name")), "Retailer");
	assert_string_equal(json_string_value(json_object_get(t, "accountId")), S.admin.account_id);
	assert_true(json_is_null(json_object_get(t, "description")));
	assert_string_equal(json_string_value(json_object_get(t, "version")), "1");
	assert_timestamp(json_string_value(json_object_get(t, "created")));
	json_decref(t);

	const tcase cases[] = {
		VS("POST", "/api/v1/organizations/templates", "{\"name\":\"Household\",\"description\":\"homes\"}", 201, "organizationTemplate.description", "\"homes\"", "OT2"),
		VS("POST", "/api/v1/organizations/templates", "{\"name\":\"{o*128}\"}", 201, "organizationTemplate.name", "\"{o*128}\"", "OT3"),
		E("POST", "/api/v1/organizations/templates", "{\"name\":\"{o*129}\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/organizations/templates", "{\"name\":\"\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/organizations/templates", "{}", 422, "missing_field", "name"),
		E("POST", "/api/v1/organizations/templates", "{\"name\":1}", 400, "invalid_type", "name"),
		E("POST", "/api/v1/organizations/templates", "{\"name\":\"x\",\"kind\":\"shop\"}", 400, "unknown_field", "kind"),
		E("POST", "/api/v1/organizations/templates", "{\"name\":\"x\",\"description\":\"{d*4097}\"}", 422, "invalid_field", "description"),
		E("POST", "/api/v1/organizations/templates", "{\"name\":\"x\",\"id\":\"{OT1}\"}", 400, "read_only_field", "id"),
		E("POST", "/api/v1/organizations/templates", "{\"name\":\"x\",\"accountId\":\"0190a0b0-0000-7000-8000-000000000000\"}", 403, "wrong_account", "accountId"),
		E("POST", "/api/v1/organizations/templates", "nope", 400, "malformed_json", NULL),
		/* read, rename, describe */
		V("GET", "/api/v1/organizations/templates/{OT1}", NULL, 200, "organizationTemplate.name", "\"Retailer\""),
		E("GET", "/api/v1/organizations/templates/0190a0b0-0000-7000-8000-000000000000", NULL, 404, "not_found", NULL),
		E("GET", "/api/v1/organizations/templates/bad", NULL, 404, "not_found", NULL),
		V("PUT", "/api/v1/organizations/templates/{OT1}", "{\"name\":\"Reseller\"}", 200, "organizationTemplate.name", "\"Reseller\""),
		V("GET", "/api/v1/organizations/templates/{OT1}", NULL, 200, "organizationTemplate.version", "\"2\""),
		V("PUT", "/api/v1/organizations/templates/{OT1}", "{\"description\":\"shops\"}", 200, "organizationTemplate.name", "\"Reseller\""),
		V("GET", "/api/v1/organizations/templates/{OT1}", NULL, 200, "organizationTemplate.description", "\"shops\""),
		E("PUT", "/api/v1/organizations/templates/{OT1}", "{\"name\":\"\"}", 422, "invalid_field", "name"),
		E("PUT", "/api/v1/organizations/templates/{OT1}", "{\"name\":\"{o*129}\"}", 422, "invalid_field", "name"),
		E("PUT", "/api/v1/organizations/templates/{OT1}", "{\"kind\":1}", 400, "unknown_field", "kind"),
		V("GET", "/api/v1/organizations/templates/{OT1}", NULL, 200, "organizationTemplate.name", "\"Reseller\""),
		/* list */
		V("GET", "/api/v1/organizations/templates", NULL, 200, "organizationTemplates.meta.count", "3"),
		V("GET", "/api/v1/organizations/templates", NULL, 200, "organizationTemplates.results.0.id", "\"{OT1}\""),
		V("GET", "/api/v1/organizations/templates", NULL, 200, "organizationTemplates.results.2.id", "\"{OT3}\""),
		V("GET", "/api/v1/organizations/templates?name=Household", NULL, 200, "organizationTemplates.results.0.id", "\"{OT2}\""),
		V("GET", "/api/v1/organizations/templates?name=Household", NULL, 200, "organizationTemplates.meta.count", "1"),
		V("GET", "/api/v1/organizations/templates?sortBy=name&sortOrder=desc", NULL, 200, "organizationTemplates.results.0.id", "\"{OT3}\""),
		E("GET", "/api/v1/organizations/templates?kind=x", NULL, 400, "unknown_parameter", "kind"),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);

	/* delete (unused): a stale version is refused, the current one goes */
	h_resp r = api_as(S.admin.api_key, "DELETE", "/api/v1/organizations/templates/{OT3}", NULL, "If-Match: 7");
	check_resp(&r, 412, "version_mismatch", "version", "stale delete of OT3");
	h_resp_free(&r);
	const tcase del[] = {
		V("GET", "/api/v1/organizations/templates/{OT3}", NULL, 200, "organizationTemplate.version", "\"1\""),
		K("DELETE", "/api/v1/organizations/templates/{OT3}", NULL, 204),
		E("GET", "/api/v1/organizations/templates/{OT3}", NULL, 404, "not_found", NULL),
		E("DELETE", "/api/v1/organizations/templates/{OT3}", NULL, 404, "not_found", NULL),
		V("GET", "/api/v1/organizations/templates", NULL, 200, "organizationTemplates.meta.count", "2"),
	};
	run_cases(del, sizeof del / sizeof del[0]);
}

/* ---------------------------------------------------------------- organizations */

static void organizations(void **state)
{
	json_t *o = create("/api/v1/organizations", "organization", "{\"name\":\"Acme\",\"organizationTemplateId\":\"{OT1}\"}", "L1");
	assert_uuid7(json_string_value(json_object_get(o, "id")));
	assert_string_equal(json_string_value(json_object_get(o, "name")), "Acme");
	assert_string_equal(json_string_value(json_object_get(o, "organizationTemplateId")), getvar("OT1"));
	assert_true(json_is_null(json_object_get(o, "parentId")));
	assert_true(json_is_null(json_object_get(o, "description")));
	assert_string_equal(json_string_value(json_object_get(o, "accountId")), S.admin.account_id);
	json_decref(o);

	const tcase cases[] = {
		/* five levels nest; the sixth is too deep */
		VS("POST", "/api/v1/organizations", "{\"name\":\"Level 2\",\"parentId\":\"{L1}\"}", 201, "organization.parentId", "\"{L1}\"", "L2"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"Level 3\",\"parentId\":\"{L2}\"}", 201, "organization.parentId", "\"{L2}\"", "L3"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"Level 4\",\"parentId\":\"{L3}\",\"organizationTemplateId\":\"{OT2}\"}", 201, "organization.parentId", "\"{L3}\"", "L4"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"Level 5\",\"parentId\":\"{L4}\"}", 201, "organization.parentId", "\"{L4}\"", "L5"),
		E("POST", "/api/v1/organizations", "{\"name\":\"Level 6\",\"parentId\":\"{L5}\"}", 422, "too_deep", "parentId"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"Level 5b\",\"parentId\":\"{L4}\"}", 201, "organization.name", "\"Level 5b\"", "L5B"),
		E("POST", "/api/v1/organizations", "{\"name\":\"Level 6b\",\"parentId\":\"{L5B}\"}", 422, "too_deep", "parentId"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"Level 2b\",\"parentId\":\"{L1}\"}", 201, "organization.name", "\"Level 2b\"", "L2B"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"Other root\",\"parentId\":null}", 201, "organization.parentId", "null", "R2"),
		VS("POST", "/api/v1/organizations", "{\"name\":\"Level 2\",\"parentId\":\"{R2}\"}", 201, "organization.parentId", "\"{R2}\"", "R2C"),
		/* bad references and fields */
		E("POST", "/api/v1/organizations", "{\"name\":\"x\",\"parentId\":\"0190a0b0-0000-7000-8000-000000000000\"}", 422, "unknown_reference", "parentId"),
		E("POST", "/api/v1/organizations", "{\"name\":\"x\",\"parentId\":\"{OT1}\"}", 422, "unknown_reference", "parentId"),
		E("POST", "/api/v1/organizations", "{\"name\":\"x\",\"parentId\":\"top\"}", 422, "invalid_field", "parentId"),
		E("POST", "/api/v1/organizations", "{\"name\":\"x\",\"parentId\":5}", 400, "invalid_type", "parentId"),
		E("POST", "/api/v1/organizations", "{\"name\":\"x\",\"organizationTemplateId\":\"0190a0b0-0000-7000-8000-000000000000\"}", 422, "unknown_reference", "organizationTemplateId"),
		E("POST", "/api/v1/organizations", "{\"name\":\"x\",\"organizationTemplateId\":\"{L1}\"}", 422, "unknown_reference", "organizationTemplateId"),
		E("POST", "/api/v1/organizations", "{\"parentId\":\"{L1}\"}", 422, "missing_field", "name"),
		E("POST", "/api/v1/organizations", "{\"name\":\"\"}", 422, "invalid_field", "name"),
		E("POST", "/api/v1/organizations", "{\"name\":\"{o*129}\"}", 422, "invalid_field", "name"),
		V("POST", "/api/v1/organizations", "{\"name\":\"{o*128}\",\"parentId\":\"{R2}\"}", 201, "organization.name", "\"{o*128}\""),
		E("POST", "/api/v1/organizations", "{\"name\":\"x\",\"children\":[]}", 400, "unknown_field", "children"),
		E("POST", "/api/v1/organizations", "{\"name\":\"x\",\"version\":\"1\"}", 400, "read_only_field", "version"),
		/* reads */
		V("GET", "/api/v1/organizations/{L5}", NULL, 200, "organization.name", "\"Level 5\""),
		V("GET", "/api/v1/organizations/{L4}", NULL, 200, "organization.organizationTemplateId", "\"{OT2}\""),
		E("GET", "/api/v1/organizations/0190a0b0-0000-7000-8000-000000000000", NULL, 404, "not_found", NULL),
		E("GET", "/api/v1/organizations/{OT1}", NULL, 404, "not_found", NULL),
		E("GET", "/api/v1/organizations/x", NULL, 404, "not_found", NULL),
		/* lists: ?parentId= and ?name= */
		V("GET", "/api/v1/organizations", NULL, 200, "organizations.meta.count", "10"),
		V("GET", "/api/v1/organizations?parentId={L1}", NULL, 200, "organizations.meta.count", "2"),
		V("GET", "/api/v1/organizations?parentId={L1}", NULL, 200, "organizations.results.0.id", "\"{L2}\""),
		V("GET", "/api/v1/organizations?parentId={L1}", NULL, 200, "organizations.results.1.id", "\"{L2B}\""),
		V("GET", "/api/v1/organizations?parentId={L4}", NULL, 200, "organizations.meta.count", "2"),
		V("GET", "/api/v1/organizations?parentId={L5}", NULL, 200, "organizations.meta.count", "0"),
		V("GET", "/api/v1/organizations?parentId={L5}", NULL, 200, "organizations.results", "[]"),
		V("GET", "/api/v1/organizations?parentId=null", NULL, 200, "organizations.meta.count", "2"),
		V("GET", "/api/v1/organizations?parentId=null", NULL, 200, "organizations.results.1.id", "\"{R2}\""),
		V("GET", "/api/v1/organizations?name=Level%202", NULL, 200, "organizations.meta.count", "2"),
		V("GET", "/api/v1/organizations?name=Level%202", NULL, 200, "organizations.results.1.id", "\"{R2C}\""),
		V("GET", "/api/v1/organizations?name=Level+2", NULL, 200, "organizations.meta.count", "2"),
		V("GET", "/api/v1/organizations?name=Level%202&parentId={R2}", NULL, 200, "organizations.results.0.id", "\"{R2C}\""),
		V("GET", "/api/v1/organizations?name=Level%202&parentId={R2}", NULL, 200, "organizations.meta.count", "1"),
		V("GET", "/api/v1/organizations?name=Level", NULL, 200, "organizations.meta.count", "0"),
		V("GET", "/api/v1/organizations?name=Acme", NULL, 200, "organizations.results.0.id", "\"{L1}\""),
		V("GET", "/api/v1/organizations?organizationTemplateId={OT2}", NULL, 200, "organizations.results.0.id", "\"{L4}\""),
		V("GET", "/api/v1/organizations?organizationTemplateId={OT2}", NULL, 200, "organizations.meta.count", "1"),
		V("GET", "/api/v1/organizations?sortBy=name&pageSize=1", NULL, 200, "organizations.results.0.id", "\"{L1}\""),
		E("GET", "/api/v1/organizations?depth=2", NULL, 400, "unknown_parameter", "depth"),
		E("GET", "/api/v1/organizations?sortBy=parentId", NULL, 400, "invalid_parameter", "sortBy"),
		/* updates: name and template change, parent never does */
		V("PUT", "/api/v1/organizations/{L3}", "{\"name\":\"Level three\"}", 200, "organization.name", "\"Level three\""),
		V("GET", "/api/v1/organizations/{L3}", NULL, 200, "organization.parentId", "\"{L2}\""),
		V("GET", "/api/v1/organizations/{L3}", NULL, 200, "organization.version", "\"2\""),
		V("PUT", "/api/v1/organizations/{L3}", "{\"parentId\":\"{L2}\",\"description\":\"d\"}", 200, "organization.description", "\"d\""),
		E("PUT", "/api/v1/organizations/{L3}", "{\"parentId\":\"{L1}\"}", 422, "immutable_field", "parentId"),
		E("PUT", "/api/v1/organizations/{L3}", "{\"parentId\":null}", 422, "immutable_field", "parentId"),
		E("PUT", "/api/v1/organizations/{R2}", "{\"parentId\":\"{L1}\"}", 422, "immutable_field", "parentId"),
		E("PUT", "/api/v1/organizations/{L3}", "{\"parentId\":\"nope\"}", 422, "invalid_field", "parentId"),
		V("PUT", "/api/v1/organizations/{R2}", "{\"parentId\":null}", 200, "organization.parentId", "null"),
		V("PUT", "/api/v1/organizations/{L3}", "{\"organizationTemplateId\":\"{OT2}\"}", 200, "organization.organizationTemplateId", "\"{OT2}\""),
		E("PUT", "/api/v1/organizations/{L3}", "{\"organizationTemplateId\":\"0190a0b0-0000-7000-8000-000000000000\"}", 422, "unknown_reference", "organizationTemplateId"),
		E("PUT", "/api/v1/organizations/{L3}", "{\"name\":\"\"}", 422, "invalid_field", "name"),
		E("PUT", "/api/v1/organizations/{L3}", "{\"name\":null}", 400, "invalid_type", "name"),
		E("PUT", "/api/v1/organizations/0190a0b0-0000-7000-8000-000000000000", "{\"name\":\"x\"}", 404, "not_found", NULL),
		V("GET", "/api/v1/organizations/{L3}", NULL, 200, "organization.parentId", "\"{L2}\""),
		V("GET", "/api/v1/organizations/{L3}", NULL, 200, "organization.name", "\"Level three\""),
		V("GET", "/api/v1/organizations/{L3}", NULL, 200, "organization.version", "\"4\""),
		V("GET", "/api/v1/organizations?parentId={L2}", NULL, 200, "organizations.results.0.name", "\"Level three\""),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);
}

/* ---------------------------------------------------------------- deletes */

static void org_deletes(void **state)
{
	json_decref(create("/api/v1/devices/templates", "deviceTemplate", "{\"name\":\"Gadget\"}", "DT"));
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{DT}\",\"organizationId\":\"{L5}\"}", "DEV"));
	json_decref(create("/api/v1/devices", "device", "{\"deviceTemplateId\":\"{DT}\"}", "DEV2"));
	json_decref(create("/api/v1/organizations", "organization", "{\"name\":\"Empty\"}", "EMPTY"));

	const tcase cases[] = {
		/* holds a device */
		E("DELETE", "/api/v1/organizations/{L5}", NULL, 409, "in_use", "id"),
		V("GET", "/api/v1/organizations/{L5}", NULL, 200, "organization.name", "\"Level 5\""),
		V("GET", "/api/v1/devices?organizationId={L5}", NULL, 200, "devices.meta.count", "1"),
		/* holds children */
		E("DELETE", "/api/v1/organizations/{L4}", NULL, 409, "in_use", "id"),
		E("DELETE", "/api/v1/organizations/{L1}", NULL, 409, "in_use", "id"),
		E("DELETE", "/api/v1/organizations/{R2}", NULL, 409, "in_use", "id"),
		/* a template in use */
		E("DELETE", "/api/v1/organizations/templates/{OT2}", NULL, 409, "in_use", "id"),
		E("DELETE", "/api/v1/organizations/templates/{OT1}", NULL, 409, "in_use", "id"),
		V("GET", "/api/v1/organizations/templates/{OT2}", NULL, 200, "organizationTemplate.name", "\"Household\""),
		/* an empty organization goes */
		K("DELETE", "/api/v1/organizations/{EMPTY}", NULL, 204),
		E("GET", "/api/v1/organizations/{EMPTY}", NULL, 404, "not_found", NULL),
		E("DELETE", "/api/v1/organizations/{EMPTY}", NULL, 404, "not_found", NULL),
		/* a device moved in by PUT holds its organization too; moved out, it does not */
		V("PUT", "/api/v1/devices/{DEV2}", "{\"organizationId\":\"{L5B}\"}", 200, "device.organizationId", "\"{L5B}\""),
		E("DELETE", "/api/v1/organizations/{L5B}", NULL, 409, "in_use", "id"),
		V("PUT", "/api/v1/devices/{DEV2}", "{\"organizationId\":null}", 200, "device.organizationId", "null"),
		K("DELETE", "/api/v1/organizations/{L5B}", NULL, 204),
		/* a device in a deleted organization cannot be created or moved there */
		E("POST", "/api/v1/devices", "{\"deviceTemplateId\":\"{DT}\",\"organizationId\":\"{L5B}\"}", 422, "unknown_reference", "organizationId"),
		E("PUT", "/api/v1/devices/{DEV2}", "{\"organizationId\":\"{L5B}\"}", 422, "unknown_reference", "organizationId"),
		/* delete the device, then the chain from the bottom up */
		E("DELETE", "/api/v1/organizations/{L5}", NULL, 409, "in_use", "id"),
		K("DELETE", "/api/v1/devices/{DEV}", NULL, 204),
		K("DELETE", "/api/v1/organizations/{L5}", NULL, 204),
		E("DELETE", "/api/v1/organizations/{L3}", NULL, 409, "in_use", "id"),
		K("DELETE", "/api/v1/organizations/{L4}", NULL, 204),
		E("DELETE", "/api/v1/organizations/templates/{OT2}", NULL, 409, "in_use", "id"),
		K("DELETE", "/api/v1/organizations/{L3}", NULL, 204),
		K("DELETE", "/api/v1/organizations/templates/{OT2}", NULL, 204),
		E("GET", "/api/v1/organizations/templates/{OT2}", NULL, 404, "not_found", NULL),
		K("DELETE", "/api/v1/organizations/{L2}", NULL, 204),
		E("DELETE", "/api/v1/organizations/{L1}", NULL, 409, "in_use", "id"),
		K("DELETE", "/api/v1/organizations/{L2B}", NULL, 204),
		K("DELETE", "/api/v1/organizations/{L1}", NULL, 204),
		K("DELETE", "/api/v1/organizations/templates/{OT1}", NULL, 204),
		V("GET", "/api/v1/organizations?parentId=null", NULL, 200, "organizations.meta.count", "1"),
		V("GET", "/api/v1/organizations?parentId=null", NULL, 200, "organizations.results.0.id", "\"{R2}\""),
		/* a new child still nests under what remains */
		V("POST", "/api/v1/organizations", "{\"name\":\"Fresh\",\"parentId\":\"{R2C}\"}", 201, "organization.parentId", "\"{R2C}\""),
		E("POST", "/api/v1/organizations", "{\"name\":\"Orphan\",\"parentId\":\"{L1}\"}", 422, "unknown_reference", "parentId"),
	};
	run_cases(cases, sizeof cases / sizeof cases[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(org_templates),
		cmocka_unit_test(organizations),
		cmocka_unit_test(org_deletes),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
