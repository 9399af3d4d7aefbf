/* See cases.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"

h_server S;

/* Variables that case paths and bodies refer to as {NAME}; {c*N} expands to N copies of c. */
tvar VARS[64];
size_t NVARS;

void setvar(const char *key, const char *val)
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

const char *getvar(const char *key)
{
	for(size_t i = 0; i < NVARS; i++) {
		if(strcmp(VARS[i].key, key) == 0) return VARS[i].val;
	}
	fail_msg("no variable %s", key);
	return NULL;
}

/* in with its {NAME} and {c*N} tokens expanded; caller frees. NULL stays NULL. */
char *expand(const char *in)
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
h_resp api_as(const char *token, const char *method, const char *path, const char *body, const char *extra)
{
	char *p = expand(path), *b = expand(body);
	h_resp r = h_call(&S, method, p, token, b, extra);
	free(p);
	free(b);
	return r;
}

/* The token api() and the case tables use: the init account's admin key unless set. */
const char *TOKEN;

h_resp api(const char *method, const char *path, const char *body)
{
	return api_as(TOKEN ? TOKEN : S.admin.api_key, method, path, body, NULL);
}

void show(char *buf, size_t cap, const char *s)
{
	if(!s) s = "(null)";
	size_t n = strlen(s);
	if(n < cap) snprintf(buf, cap, "%s", s);
	else snprintf(buf, cap, "%.*s...(%zu bytes)", (int)(cap - 32), s, n);
}

/* Checks status and, for errors, the error body: code, a message, and details[0].target. */
void check_resp(const h_resp *r, long status, const char *code, const char *target, const char *what)
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
char *text_at(const h_resp *r, const char *path)
{
	json_t *v = h_at(r->json, path);
	return v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
}

void check_at(const h_resp *r, const char *path, const char *want_json, const char *what)
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


/* Case constructors: K success, V success with a checked value, VS the same saving the
 * entity's id as a variable, E an error with its code and details target. */

void run_cases(const tcase *cases, size_t n)
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
json_t *create(const char *path, const char *wrapper, const char *body, const char *save)
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
void assert_uuid7(const char *id)
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
void assert_timestamp(const char *t)
{
	assert_non_null(t);
	assert_int_equal(strlen(t), 24);
	const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ";
	for(int i = 0; i < 24; i++) {
		if(shape[i] == 'd') assert_true(t[i] >= '0' && t[i] <= '9');
		else assert_int_equal(t[i], shape[i]);
	}
}

int group_setup(void **state)
{
	if(h_server_start(&S)) {
		fprintf(stderr, "could not start the server (log %s)\n", S.log);
		return -1;
	}
	return 0;
}

/* Stops the server: it must exit 0 (no leaks under ASan) and log no sanitizer report. */
int group_teardown(void **state)
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
