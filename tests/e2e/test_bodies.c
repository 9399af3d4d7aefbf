/* Hostile request bodies against the endpoints that read JSON: POST /api/v1/devices,
 * POST /api/v1/devices/templates, PUT /api/v1/devices/{id} and POST /api/v1/auth/login-user.
 * Malformed JSON, empty bodies, invalid UTF-8, NULs, duplicate keys, deep nesting, wrong
 * top-level types, numbers too big, wrong types for every field, bodies at and over the
 * 1 MiB limit, lying and huge Content-Lengths, chunked and 10 MB uploads: every answer must
 * be a 4xx with a JSON {"error": {"code", "message"}} body, never a 5xx, and the server must
 * stay up (its pid alive, /healthz answering) and exit cleanly (no sanitizer report). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#if defined(__SANITIZE_ADDRESS__)
#define BODIES_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BODIES_ASAN 1
#endif
#endif

#define MIB (1024 * 1024)

static h_server srv;
static char tid[64];        /* a device template with one custom field of each type */
static char did[64];        /* a device of it */
static char put_path[128];  /* /api/v1/devices/<did> */
static char login_ok[512];  /* the admin's credentials as a login body */
static int failures;

typedef struct {
	const char *method;
	const char *path;
	int auth;               /* send the admin API key */
	const char *valid;      /* a small valid body (NULL: built at run time) */
	long valid_status;      /* what the valid body gets */
} target;

enum { T_DEVICE, T_TEMPLATE, T_PUT, T_LOGIN, NTARGETS };
static target T[NTARGETS];

/* ---- checks ---------------------------------------------------------------------------- */

static int error_body_ok(json_t *j)
{
	json_t *e = json_object_get(j, "error");
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	return json_is_object(e) && code && code[0] && msg && msg[0];
}

/* Records a failure unless status is within [lo, hi] and, for errors, the body is the JSON
 * error object. */
static void expect(const target *t, const char *what, long status, json_t *json, const char *body, long lo, long hi)
{
	int ok = status >= lo && status <= hi;
	if(ok && status >= 400 && !error_body_ok(json)) ok = 0;
	if(!ok) {
		fprintf(stderr, "FAIL %s %s [%s]: got %ld (want %ld..%ld): %.200s\n", t->method, t->path, what, status, lo, hi,
		        body ? body : "");
		failures++;
	}
}

static void expect_resp(const target *t, const char *what, const h_resp *r, long lo, long hi)
{
	expect(t, what, r->status, r->json, r->body, lo, hi);
}

static h_resp send_body(const target *t, const char *body, size_t len)
{
	return h_call_raw(&srv, t->method, t->path, t->auth ? srv.admin.api_key : NULL, body, len, NULL);
}

/* Sends body to every target and expects [lo, hi] from each. */
static void all_targets(const char *what, const char *body, size_t len, long lo, long hi)
{
	for(int i = 0; i < NTARGETS; i++) {
		h_resp r = send_body(&T[i], body, len);
		expect_resp(&T[i], what, &r, lo, hi);
		h_resp_free(&r);
	}
}

/* The server process is alive and answers /healthz. */
static void assert_server_alive(void)
{
	assert_true(srv.pid > 0);
	assert_int_equal(kill(srv.pid, 0), 0);
	int st;
	assert_int_equal(waitpid(srv.pid, &st, WNOHANG), 0);
	h_resp r = h_call(&srv, "GET", "/healthz", NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(h_str(&r, "status"), "ok");
	h_resp_free(&r);
}

static void finish(void)
{
	assert_server_alive();
	int f = failures;
	failures = 0;
	assert_int_equal(f, 0);
}

/* ---- raw HTTP, for what libcurl will not send ------------------------------------------ */

typedef struct {
	long status;
	char *buf;
	size_t len;
	const char *body;      /* inside buf */
	json_t *json;
	int early;             /* the answer came before the body was sent */
} raw_resp;

static int raw_connect(void)
{
	const char *colon = strrchr(srv.url, ':');
	int port = colon ? atoi(colon + 1) : 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if(fd < 0) return -1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	struct timeval tv = {30, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if(connect(fd, (struct sockaddr *)&a, sizeof a)) {
		close(fd);
		return -1;
	}
	return fd;
}

static int readable(int fd, int ms)
{
	struct pollfd p = {fd, POLLIN, 0};
	return poll(&p, 1, ms) > 0;
}

static int send_all(int fd, const char *p, size_t n)
{
	while(n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if(w <= 0) return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void read_all(int fd, raw_resp *r)
{
	size_t cap = 4096;
	r->buf = malloc(cap);
	assert_non_null(r->buf);
	for(;;) {
		if(r->len + 1 >= cap) {
			cap *= 2;
			r->buf = realloc(r->buf, cap);
			assert_non_null(r->buf);
		}
		ssize_t n = recv(fd, r->buf + r->len, cap - 1 - r->len, 0);
		if(n <= 0) break;
		r->len += (size_t)n;
	}
	r->buf[r->len] = '\0';
	if(sscanf(r->buf, "HTTP/1.%*d %ld", &r->status) != 1) r->status = -1;
	char *end = strstr(r->buf, "\r\n\r\n");
	r->body = end ? end + 4 : "";
	r->json = json_loadb(r->body, r->len - (size_t)(r->body - r->buf), JSON_DISABLE_EOF_CHECK, NULL);
}

static void raw_free(raw_resp *r)
{
	free(r->buf);
	json_decref(r->json);
	memset(r, 0, sizeof *r);
}

/* Sends the head of a request to t (headers: extra lines, each ending in \r\n), then the
 * body in 64 KiB pieces, stopping as soon as the server answers (it may answer and close
 * before reading everything). wait_ms > 0: first waits that long for an answer before
 * sending any body. */
static raw_resp raw_exchange(const target *t, const char *headers, const char *body, size_t len, int wait_ms)
{
	raw_resp r = {0};
	char head[1024];
	char auth[256] = "";
	if(t->auth) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", srv.admin.api_key);
	snprintf(head, sizeof head,
	         "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: application/json\r\n%sConnection: close\r\n\r\n",
	         t->method, t->path, auth, headers);
	int fd = raw_connect();
	assert_true(fd >= 0);
	if(send_all(fd, head, strlen(head)) == 0) {
		if(wait_ms > 0 && readable(fd, wait_ms)) {
			r.early = 1;
		} else {
			for(size_t off = 0; off < len;) {
				if(readable(fd, 0)) break;
				size_t n = len - off < 65536 ? len - off : 65536;
				if(send_all(fd, body + off, n)) break;
				off += n;
			}
		}
	}
	read_all(fd, &r);
	close(fd);
	return r;
}

/* body as HTTP/1.1 chunks of 64 KiB; caller frees. */
static char *chunked(const char *body, size_t len, size_t *out_len)
{
	size_t pieces = len / 65536 + 1;
	char *out = malloc(len + pieces * 16 + 16);
	assert_non_null(out);
	size_t n = 0;
	for(size_t off = 0; off < len; off += 65536) {
		size_t c = len - off < 65536 ? len - off : 65536;
		n += (size_t)sprintf(out + n, "%zx\r\n", c);
		memcpy(out + n, body + off, c);
		n += c;
		memcpy(out + n, "\r\n", 2);
		n += 2;
	}
	memcpy(out + n, "0\r\n\r\n", 5);
	*out_len = n + 5;
	return out;
}

/* A valid small body for t padded with spaces to exactly len bytes; caller frees. */
static char *padded(const target *t, size_t len)
{
	const char *v = t->valid;
	size_t vl = strlen(v);
	assert_true(vl < len);
	char *b = malloc(len + 1);
	assert_non_null(b);
	memcpy(b, v, vl);
	memset(b + vl, ' ', len - vl);
	b[len] = '\0';
	return b;
}

/* ---- setup ----------------------------------------------------------------------------- */

static const char *const CUSTOM[][2] = {
	{"cfString", "string"}, {"cfText", "text"}, {"cfInt", "integer"},
	{"cfNum", "number"}, {"cfBool", "boolean"}, {"cfDate", "datetime"},
};

static int setup(void **state)
{
	static char device_valid[128];
	if(h_server_start(&srv)) return -1;
	const char *key = srv.admin.api_key;
	if(h_create(&srv, key, "/api/v1/devices/templates", "{\"name\":\"bodies\"}", "deviceTemplate.id", tid, sizeof tid))
		return -1;
	for(size_t i = 0; i < sizeof CUSTOM / sizeof CUSTOM[0]; i++) {
		char body[256], id[64];
		snprintf(body, sizeof body, "{\"deviceTemplateId\":\"%s\",\"name\":\"%s\",\"fieldType\":\"%s\"}", tid, CUSTOM[i][0],
		         CUSTOM[i][1]);
		if(h_create(&srv, key, "/api/v1/devices/custom-fields", body, "deviceField.id", id, sizeof id)) return -1;
	}
	snprintf(device_valid, sizeof device_valid, "{\"deviceTemplateId\":\"%s\"}", tid);
	if(h_create(&srv, key, "/api/v1/devices", device_valid, "device.id", did, sizeof did)) return -1;
	snprintf(put_path, sizeof put_path, "/api/v1/devices/%s", did);
	json_t *l = json_pack("{s:s, s:s}", "emailAddress", srv.admin.email, "password", srv.admin.password);
	char *lt = json_dumps(l, JSON_COMPACT);
	snprintf(login_ok, sizeof login_ok, "%s", lt);
	free(lt);
	json_decref(l);

	T[T_DEVICE] = (target){"POST", "/api/v1/devices", 1, device_valid, 201};
	T[T_TEMPLATE] = (target){"POST", "/api/v1/devices/templates", 1, "{\"name\":\"padded\"}", 201};
	T[T_PUT] = (target){"PUT", put_path, 1, "{\"name\":\"padded\"}", 200};
	T[T_LOGIN] = (target){"POST", "/api/v1/auth/login-user", 0, login_ok, 200};
	return 0;
}

static int teardown(void **state)
{
	h_server_destroy(&srv);
	return 0;
}

/* ---- malformed bodies ------------------------------------------------------------------ */

typedef struct {
	const char *what;
	const char *body;
	size_t len;
} raw_case;

#define RC(what, lit) {what, lit, sizeof(lit) - 1}

static const raw_case MALFORMED[] = {
	RC("lone open brace", "{"),
	RC("lone close brace", "}"),
	RC("missing value", "{\"name\":}"),
	RC("missing colon", "{\"name\" \"x\"}"),
	RC("single quotes", "{'name':'x'}"),
	RC("bare key", "{name:\"x\"}"),
	RC("trailing comma", "{\"name\":\"x\",}"),
	RC("trailing garbage", "{\"name\":\"x\"} trailing"),
	RC("two objects", "{} {}"),
	RC("not json", "not json at all"),
	RC("whitespace only", "   \r\n\t "),
	RC("unterminated string", "{\"name\":\"unterminated}"),
	RC("byte order mark", "\xEF\xBB\xBF{}"),
	RC("raw NUL between tokens", "{\"name\":\"x\"\0}"),
	RC("raw NUL first", "\0{}"),
	RC("raw NUL inside a string", "{\"name\":\"a\0b\"}"),
	RC("bad literal", "{\"a\":tru}"),
	RC("NaN", "{\"a\":NaN}"),
	RC("Infinity", "{\"a\":Infinity}"),
	RC("leading zero", "{\"a\":01}"),
	RC("bare fraction", "{\"a\":.5}"),
	RC("plus sign", "{\"a\":+1}"),
	RC("bad escape", "{\"a\":\"\\x41\"}"),
	RC("short unicode escape", "{\"a\":\"\\u12\"}"),
	RC("raw control character", "{\"a\":\"\t\"}"),
	RC("comment", "/* c */ {}"),
	/* Invalid UTF-8. */
	RC("C3 28 in a value", "{\"name\":\"\xC3\x28\"}"),
	RC("C3 28 in a key", "{\"\xC3\x28\":1}"),
	RC("overlong slash C0 AF", "{\"name\":\"\xC0\xAF\"}"),
	RC("overlong NUL C0 80", "{\"name\":\"\xC0\x80\"}"),
	RC("overlong 3-byte E0 80 AF", "{\"name\":\"\xE0\x80\xAF\"}"),
	RC("overlong 4-byte F0 80 80 AF", "{\"name\":\"\xF0\x80\x80\xAF\"}"),
	RC("UTF-8 encoded surrogate ED A0 80", "{\"name\":\"\xED\xA0\x80\"}"),
	RC("beyond U+10FFFF F4 90 80 80", "{\"name\":\"\xF4\x90\x80\x80\"}"),
	RC("lone continuation byte", "{\"name\":\"\x80\"}"),
	RC("truncated sequence", "{\"name\":\"\xE2\x82\"}"),
	RC("byte FF", "{\"name\":\"\xFF\"}"),
	RC("byte FE outside strings", "{\"name\":\"x\"\xFE}"),
	/* Invalid escapes of code points. */
	RC("lone high surrogate", "{\"name\":\"\\ud800\"}"),
	RC("lone low surrogate", "{\"name\":\"\\udc00\"}"),
	RC("high surrogate then letter", "{\"name\":\"\\ud800\\u0041\"}"),
	RC("high surrogate then text", "{\"name\":\"\\udbffx\"}"),
	RC("lone surrogate in a key", "{\"\\ud800\":1}"),
	RC("escaped NUL in a value", "{\"name\":\"a\\u0000b\"}"),
	RC("escaped NUL alone", "{\"name\":\"\\u0000\"}"),
	RC("escaped NUL in a key", "{\"na\\u0000me\":\"x\"}"),
	/* Duplicate keys. */
	RC("duplicate key", "{\"name\":\"a\",\"name\":\"b\"}"),
	RC("duplicate key same value", "{\"name\":\"a\",\"name\":\"a\"}"),
	RC("duplicate key nested", "{\"x\":{\"a\":1,\"a\":2}}"),
	RC("duplicate key by escape", "{\"name\":\"a\",\"n\\u0061me\":\"b\"}"),
	/* Not an object. */
	RC("top-level empty array", "[]"),
	RC("top-level array of object", "[{\"name\":\"x\"}]"),
	RC("top-level string", "\"name\""),
	RC("top-level number", "42"),
	RC("top-level null", "null"),
	RC("top-level true", "true"),
	/* Numbers too big to parse. */
	RC("real overflow", "{\"name\":1e999}"),
	RC("negative real overflow", "{\"name\":-1e999}"),
	RC("integer overflow", "{\"name\":123456789012345678901234567890}"),
	RC("negative integer overflow", "{\"name\":-123456789012345678901234567890}"),
	RC("integer overflow in array", "{\"name\":[99999999999999999999]}"),
};

static void malformed_json(void **state)
{
	for(size_t i = 0; i < sizeof MALFORMED / sizeof MALFORMED[0]; i++)
		all_targets(MALFORMED[i].what, MALFORMED[i].body, MALFORMED[i].len, 400, 400);
	finish();
}

static void empty_bodies(void **state)
{
	all_targets("empty body", "", 0, 400, 400);
	for(int i = 0; i < NTARGETS; i++) {
		h_resp r = h_call(&srv, T[i].method, T[i].path, T[i].auth ? srv.admin.api_key : NULL, NULL, NULL);
		expect_resp(&T[i], "no body", &r, 400, 400);
		h_resp_free(&r);
	}
	/* {} is well-formed: creates miss a required field (422), login its properties (400),
	 * and an update with nothing to change succeeds. */
	static const long empty_object[NTARGETS] = {[T_DEVICE] = 422, [T_TEMPLATE] = 422, [T_PUT] = 200, [T_LOGIN] = 400};
	for(int i = 0; i < NTARGETS; i++) {
		h_resp r = send_body(&T[i], "{}", 2);
		expect_resp(&T[i], "empty object", &r, empty_object[i], empty_object[i]);
		h_resp_free(&r);
	}
	finish();
}

/* open repeated n times, then middle, then close repeated n times; caller frees. */
static char *nest(const char *prefix, const char *open, const char *middle, const char *close, const char *suffix,
                  size_t n, size_t *len)
{
	size_t lo = strlen(open), lc = strlen(close), lp = strlen(prefix), lm = strlen(middle), ls = strlen(suffix);
	size_t total = lp + n * lo + lm + n * lc + ls;
	char *b = malloc(total + 1);
	assert_non_null(b);
	char *p = b;
	memcpy(p, prefix, lp);
	p += lp;
	for(size_t i = 0; i < n; i++, p += lo) memcpy(p, open, lo);
	memcpy(p, middle, lm);
	p += lm;
	for(size_t i = 0; i < n; i++, p += lc) memcpy(p, close, lc);
	memcpy(p, suffix, ls);
	p += ls;
	*p = '\0';
	*len = total;
	return b;
}

static void deep_nesting(void **state)
{
	char custom[128];
	snprintf(custom, sizeof custom, "{\"deviceTemplateId\":\"%s\",\"cfString\":", tid);
	const struct {
		const char *what, *prefix, *open, *middle, *close, *suffix;
		size_t depth;
	} cases[] = {
		{"arrays 10000 deep", "", "[", "", "]", "", 10000},
		{"arrays 10000 deep, unclosed", "", "[", "", "", "", 10000},
		{"objects 10000 deep", "", "{\"a\":", "1", "}", "", 10000},
		{"arrays 10000 deep in a field", "{\"name\":", "[", "", "]", "}", 10000},
		{"objects 10000 deep in a field", "{\"name\":", "{\"a\":", "1", "}", "}", 10000},
		{"arrays 100000 deep in a field", "{\"name\":", "[", "", "]", "}", 100000},
		/* Shallow enough to parse: still no field takes such a value. */
		{"arrays 33 deep in a field", "{\"name\":", "[", "", "]", "}", 33},
		{"arrays 2000 deep in a field", "{\"name\":", "[", "", "]", "}", 2000},
		{"objects 2000 deep in a custom field", custom, "{\"a\":", "1", "}", "}", 2000},
	};
	for(size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t len;
		char *b = nest(cases[i].prefix, cases[i].open, cases[i].middle, cases[i].close, cases[i].suffix, cases[i].depth,
		               &len);
		all_targets(cases[i].what, b, len, 400, 400);
		free(b);
	}
	finish();
}

/* ---- wrong types and broken rules, field by field --------------------------------------- */

typedef enum { K_STRING, K_BOOL, K_INT, K_NUMBER } field_kind;

typedef struct {
	const char *name;
	field_kind kind;
	int nullable;
} body_field;

static const char *const NOT_STRING[] = {"1", "1.5", "-7", "0", "true", "false", "[]", "{}", "[\"a\"]", "{\"a\":\"b\"}", NULL};
static const char *const NOT_BOOL[] = {"\"true\"", "1", "0", "[]", "{}", "[true]", NULL};
static const char *const NOT_INT[] = {"\"1\"", "true", "1.5", "[]", "{}", "[1]", "1e300", "9007199254740993.0", "-1e300", NULL};
static const char *const NOT_NUMBER[] = {"\"1\"", "true", "[]", "{}", "[1.5]", NULL};

/* base with field set to the JSON text value, compact; caller frees. */
static char *with_field(const char *base, const char *name, const char *value)
{
	json_t *b = json_loads(base, 0, NULL);
	json_t *v = json_loads(value, JSON_DECODE_ANY, NULL);
	assert_non_null(b);
	assert_non_null(v);
	json_object_set_new(b, name, v);
	char *text = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	assert_non_null(text);
	return text;
}

static void send_field(const target *t, const char *base, const char *name, const char *value, long lo, long hi)
{
	char *body = with_field(base, name, value);
	char what[160];
	snprintf(what, sizeof what, "%s = %.60s", name, value);
	h_resp r = send_body(t, body, strlen(body));
	expect_resp(t, what, &r, lo, hi);
	h_resp_free(&r);
	free(body);
}

static void wrong_types_of(const target *t, const char *base, const body_field *fields)
{
	for(const body_field *f = fields; f->name; f++) {
		const char *const *bad = f->kind == K_STRING ? NOT_STRING
		                         : f->kind == K_BOOL ? NOT_BOOL
		                         : f->kind == K_INT  ? NOT_INT
		                                             : NOT_NUMBER;
		for(int i = 0; bad[i]; i++) send_field(t, base, f->name, bad[i], 400, 400);
		if(!f->nullable) send_field(t, base, f->name, "null", 400, 400);
	}
}

static const body_field DEVICE_FIELDS[] = {
	{"deviceTemplateId", K_STRING, 0}, {"organizationId", K_STRING, 1}, {"serialNumber", K_STRING, 1},
	{"name", K_STRING, 1}, {"deviceVersion", K_STRING, 1}, {"location", K_STRING, 1},
	{"purchaseDate", K_STRING, 1}, {"accountId", K_STRING, 0},
	{"cfString", K_STRING, 1}, {"cfText", K_STRING, 1}, {"cfDate", K_STRING, 1},
	{"cfInt", K_INT, 1}, {"cfNum", K_NUMBER, 1}, {"cfBool", K_BOOL, 1},
	{NULL, 0, 0}};

static const body_field TEMPLATE_FIELDS[] = {
	{"name", K_STRING, 0}, {"authenticationMethod", K_STRING, 0}, {"description", K_STRING, 1},
	{"accountId", K_STRING, 0}, {NULL, 0, 0}};

static const body_field LOGIN_FIELDS[] = {
	{"emailAddress", K_STRING, 0}, {"password", K_STRING, 0}, {"accountId", K_STRING, 0}, {NULL, 0, 0}};

/* Properties only the server sets: 400 in any body, whatever the value. */
static const char *const DEVICE_READ_ONLY[] = {"id", "provisioningState", "connected", "lastConnected", "firmwareVersion",
                                               "disabled", "channels", "created", "createdById", "lastModified",
                                               "lastModifiedById", "version", NULL};
static const char *const TEMPLATE_READ_ONLY[] = {"id", "created", "createdById", "lastModified", "lastModifiedById",
                                                 "version", NULL};

static void wrong_types(void **state)
{
	wrong_types_of(&T[T_DEVICE], T[T_DEVICE].valid, DEVICE_FIELDS);
	wrong_types_of(&T[T_PUT], "{}", DEVICE_FIELDS);
	wrong_types_of(&T[T_TEMPLATE], "{\"name\":\"t\"}", TEMPLATE_FIELDS);
	wrong_types_of(&T[T_LOGIN], login_ok, LOGIN_FIELDS);
	for(int i = 0; DEVICE_READ_ONLY[i]; i++) {
		send_field(&T[T_DEVICE], T[T_DEVICE].valid, DEVICE_READ_ONLY[i], "\"x\"", 400, 400);
		send_field(&T[T_PUT], "{}", DEVICE_READ_ONLY[i], "null", 400, 400);
	}
	for(int i = 0; TEMPLATE_READ_ONLY[i]; i++) send_field(&T[T_TEMPLATE], "{\"name\":\"t\"}", TEMPLATE_READ_ONLY[i], "\"x\"", 400, 400);
	/* Unknown properties. */
	send_field(&T[T_DEVICE], T[T_DEVICE].valid, "bogus", "1", 400, 400);
	send_field(&T[T_PUT], "{}", "bogus", "\"x\"", 400, 400);
	send_field(&T[T_TEMPLATE], "{\"name\":\"t\"}", "bogus", "true", 400, 400);
	send_field(&T[T_LOGIN], login_ok, "bogus", "\"x\"", 400, 400);
	send_field(&T[T_DEVICE], T[T_DEVICE].valid, "", "1", 400, 400);
	/* Login without its required properties. */
	h_resp r = send_body(&T[T_LOGIN], "{\"emailAddress\":\"a@b.c\"}", 24);
	expect_resp(&T[T_LOGIN], "no password", &r, 400, 400);
	h_resp_free(&r);
	r = send_body(&T[T_LOGIN], "{\"password\":\"12345678\"}", 23);
	expect_resp(&T[T_LOGIN], "no emailAddress", &r, 400, 400);
	h_resp_free(&r);
	finish();
}

/* Valid JSON of the right types that breaks a rule: 422 (another account: 403). */
static void broken_rules(void **state)
{
	char s129[140], s257[270], *s4097 = malloc(4100), other[80];
	assert_non_null(s4097);
	snprintf(s129, sizeof s129, "\"%0129d\"", 0);
	snprintf(s257, sizeof s257, "\"%0257d\"", 0);
	s4097[0] = '"';
	memset(s4097 + 1, 'x', 4097);
	memcpy(s4097 + 4098, "\"", 2);
	snprintf(other, sizeof other, "\"01900000-0000-7000-8000-000000000000\"");
	const struct {
		const char *name, *value;
	} device[] = {
		{"deviceTemplateId", "\"not-a-uuid\""}, {"deviceTemplateId", other}, {"organizationId", "\"x\""},
		{"organizationId", other}, {"serialNumber", s129}, {"name", s129}, {"deviceVersion", s129},
		{"location", s4097}, {"purchaseDate", "\"yesterday\""}, {"cfString", s257}, {"cfText", s4097},
		{"cfDate", "\"2026-13-45T99:00:00Z\""},
	};
	for(size_t i = 0; i < sizeof device / sizeof device[0]; i++) {
		send_field(&T[T_DEVICE], T[T_DEVICE].valid, device[i].name, device[i].value, 422, 422);
		/* On update deviceTemplateId cannot change at all. */
		send_field(&T[T_PUT], "{}", device[i].name, device[i].value, 422, 422);
	}
	send_field(&T[T_TEMPLATE], "{}", "name", "\"\"", 422, 422);
	send_field(&T[T_TEMPLATE], "{}", "name", s129, 422, 422);
	send_field(&T[T_TEMPLATE], "{\"name\":\"t\"}", "authenticationMethod", "\"magic\"", 422, 422);
	send_field(&T[T_TEMPLATE], "{\"name\":\"t\"}", "description", s4097, 422, 422);
	send_field(&T[T_DEVICE], T[T_DEVICE].valid, "accountId", other, 403, 403);
	send_field(&T[T_TEMPLATE], "{\"name\":\"t\"}", "accountId", other, 403, 403);
	send_field(&T[T_PUT], "{}", "accountId", other, 403, 403);
	free(s4097);
	finish();
}

/* ---- sizes ----------------------------------------------------------------------------- */

static void one_mebibyte(void **state)
{
	for(int i = 0; i < NTARGETS; i++) {
		char *b = padded(&T[i], MIB + 1);
		h_resp r = send_body(&T[i], b, MIB);
		expect_resp(&T[i], "valid, padded to exactly 1 MiB", &r, T[i].valid_status, T[i].valid_status);
		h_resp_free(&r);
		r = send_body(&T[i], b, MIB + 1);
		expect_resp(&T[i], "valid, padded to 1 MiB + 1", &r, 413, 413);
		if(r.status == 413 && strcmp(h_str(&r, "error.code") ? h_str(&r, "error.code") : "", "body_too_large") != 0) {
			fprintf(stderr, "FAIL %s %s: 413 without body_too_large: %s\n", T[i].method, T[i].path, r.body);
			failures++;
		}
		h_resp_free(&r);
		/* The same sizes without a Content-Length, in chunks: the server counts as it reads. */
		size_t cl;
		char *c = chunked(b, MIB, &cl);
		raw_resp rr = raw_exchange(&T[i], "Transfer-Encoding: chunked\r\n", c, cl, 0);
		expect(&T[i], "chunked, exactly 1 MiB", rr.status, rr.json, rr.body, T[i].valid_status, T[i].valid_status);
		raw_free(&rr);
		free(c);
		c = chunked(b, MIB + 1, &cl);
		rr = raw_exchange(&T[i], "Transfer-Encoding: chunked\r\n", c, cl, 0);
		expect(&T[i], "chunked, 1 MiB + 1", rr.status, rr.json, rr.body, 413, 413);
		raw_free(&rr);
		free(c);
		/* 1 MiB that is not JSON is a 400, not a 413. */
		memset(b, '[', MIB);
		r = send_body(&T[i], b, MIB);
		expect_resp(&T[i], "1 MiB of [", &r, 400, 400);
		h_resp_free(&r);
		free(b);
	}
	finish();
}

static void content_length_lies(void **state)
{
	/* Sizes the server can represent: its own JSON 413, before reading the body. */
	static const char *const huge[] = {"1048577", "10485760", "4294967296", "1000000000000000000",
	                                   "18446744073709551615", NULL};
	for(int i = 0; i < NTARGETS; i++) {
		for(int j = 0; huge[j]; j++) {
			char h[128], what[96];
			snprintf(h, sizeof h, "Content-Length: %s\r\n", huge[j]);
			snprintf(what, sizeof what, "Content-Length: %s, 2 bytes sent", huge[j]);
			raw_resp r = raw_exchange(&T[i], h, "{}", 2, 5000);
			expect(&T[i], what, r.status, r.json, r.body, 413, 413);
			raw_free(&r);
		}
		/* Past 2^64 - 1: libmicrohttpd refuses it (413) before imprint sees the request, with
		 * its own HTML body, so only the status is checked. */
		raw_resp r = raw_exchange(&T[i], "Content-Length: 99999999999999999999999\r\n", "{}", 2, 5000);
		if(r.status != 413) {
			fprintf(stderr, "FAIL %s %s [Content-Length past 2^64]: got %ld\n", T[i].method, T[i].path, r.status);
			failures++;
		}
		raw_free(&r);
		/* Malformed lengths: libmicrohttpd's own 400. */
		static const char *const bad[] = {"-1", "abc", "1e9", "0x10", NULL};
		for(int j = 0; bad[j]; j++) {
			char h[128];
			snprintf(h, sizeof h, "Content-Length: %s\r\n", bad[j]);
			r = raw_exchange(&T[i], h, "{}", 2, 0);
			if(r.status != 400) {
				fprintf(stderr, "FAIL %s %s [Content-Length: %s]: got %ld\n", T[i].method, T[i].path, bad[j], r.status);
				failures++;
			}
			raw_free(&r);
		}
		/* Shorter than the body: the server reads a truncated object. */
		const char *v = T[i].valid;
		char h[64];
		snprintf(h, sizeof h, "Content-Length: %zu\r\n", strlen(v) / 2);
		r = raw_exchange(&T[i], h, v, strlen(v), 0);
		expect(&T[i], "Content-Length half the body", r.status, r.json, r.body, 400, 400);
		raw_free(&r);
		/* Longer than the body: the server waits for the rest; the client gives up. */
		snprintf(h, sizeof h, "Content-Length: %zu\r\n", strlen(v) + 10);
		int fd = raw_connect();
		assert_true(fd >= 0);
		char head[1024];
		snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%s\r\n%s", T[i].method,
		         T[i].path, srv.admin.api_key, h, v);
		assert_int_equal(send_all(fd, head, strlen(head)), 0);
		usleep(100000);
		close(fd);
	}
	finish();
}

static long status_kb(const char *field)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)srv.pid);
	FILE *f = fopen(path, "r");
	long kb = -1;
	if(!f) return -1;
	while(fgets(line, sizeof line, f)) {
		if(strncmp(line, field, strlen(field)) == 0) kb = strtol(line + strlen(field), NULL, 10);
	}
	fclose(f);
	return kb;
}

/* Sends a chunked body (already encoded) to t, pausing every 2 MiB to read the server's
 * resident memory, the highest of which goes to *peak_kb; then reads the answer. */
static raw_resp chunked_upload_sampling(const target *t, const char *body, size_t len, long *peak_kb)
{
	raw_resp r = {0};
	char head[1024];
	snprintf(head, sizeof head,
	         "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
	         "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
	         t->method, t->path, srv.admin.api_key);
	int fd = raw_connect();
	assert_true(fd >= 0);
	*peak_kb = 0;
	if(send_all(fd, head, strlen(head)) == 0) {
		size_t next_sample = 2 * MIB;
		for(size_t off = 0; off < len;) {
			if(readable(fd, 0)) break;
			size_t n = len - off < 65536 ? len - off : 65536;
			if(send_all(fd, body + off, n)) break;
			off += n;
			if(off >= next_sample) {
				usleep(50000); /* let the server take what is in flight */
				long kb = status_kb("VmRSS:");
				if(kb > *peak_kb) *peak_kb = kb;
				next_sample += 2 * MIB;
			}
		}
	}
	read_all(fd, &r);
	close(fd);
	return r;
}

static void ten_megabytes(void **state)
{
	const size_t ten = 10 * MIB;
	char *big = malloc(ten);
	assert_non_null(big);
	memset(big, ' ', ten);
	big[0] = '{';
	big[ten - 1] = '}';
	const target *t = &T[T_DEVICE];

	/* Announced with Expect: 100-continue: 413 at once, no 100 Continue, nothing read. */
	raw_resp r = raw_exchange(t, "Content-Length: 10485760\r\nExpect: 100-continue\r\n", big, ten, 5000);
	assert_true(r.early);
	expect(t, "10 MB, Expect: 100-continue", r.status, r.json, r.body, 413, 413);
	raw_free(&r);
	/* Announced without Expect: the server still answers before the body comes. */
	r = raw_exchange(t, "Content-Length: 10485760\r\n", big, ten, 5000);
	assert_true(r.early);
	expect(t, "10 MB announced", r.status, r.json, r.body, 413, 413);
	raw_free(&r);
	/* Sent all at once without waiting. */
	r = raw_exchange(t, "Content-Length: 10485760\r\n", big, ten, 0);
	expect(t, "10 MB sent", r.status, r.json, r.body, 413, 413);
	raw_free(&r);
	/* Chunked: no length to refuse up front, so the server reads, but keeps at most 1 MiB.
	 * Its resident memory, sampled while the 10 MB go in, must not grow by anything like
	 * that (a server that buffers it all grows by 8 MB and more). The warm-up is a chunked
	 * 1 MiB + 1, what the server may legitimately hold, so that allocator caches and the
	 * sanitizer's quarantine are filled before the baseline is read. */
	size_t cl;
	char *c = chunked(big, MIB + 1, &cl);
	for(int i = 0; i < 3; i++) {
		r = raw_exchange(t, "Transfer-Encoding: chunked\r\n", c, cl, 0);
		expect(t, "1 MiB + 1 chunked (warm-up)", r.status, r.json, r.body, 413, 413);
		raw_free(&r);
	}
	free(c);
	c = chunked(big, ten, &cl);
	long rss0 = status_kb("VmRSS:");
	for(int i = 0; i < 3; i++) {
		long peak = 0;
		r = chunked_upload_sampling(t, c, cl, &peak);
		expect(t, "10 MB chunked", r.status, r.json, r.body, 413, 413);
		raw_free(&r);
		fprintf(stderr, "server resident memory: %ld kB before, at most %ld kB while 10 MB were uploaded\n", rss0, peak);
		assert_true(rss0 > 0 && peak > 0);
		assert_true(peak - rss0 < 6 * 1024);
	}
	free(c);
	free(big);
	finish();
}

/* Not a body, but the same promise: a request line the router cannot serve still gets a
 * JSON error, even when its method is not UTF-8 (it used to come back with no body). */
static void hostile_methods(void **state)
{
	static const char *const methods[] = {"G\xC3\x28T", "\xFF", "P\xC0\xAFST", "PATCH", "AAAAAAAAAAAAAAAAAAAA", NULL};
	for(int i = 0; methods[i]; i++) {
		target t = {methods[i], "/api/v1/devices", 1, NULL, 0};
		raw_resp r = raw_exchange(&t, "Content-Length: 2\r\n", "{}", 2, 0);
		expect(&t, "method", r.status, r.json, r.body, 405, 405);
		raw_free(&r);
	}
	finish();
}

/* ---- the server afterwards ------------------------------------------------------------- */

static void server_still_works(void **state)
{
	assert_server_alive();
	/* And still does its job. */
	char id[64];
	assert_int_equal(h_create(&srv, srv.admin.api_key, "/api/v1/devices", T[T_DEVICE].valid, "device.id", id, sizeof id), 0);
	h_resp r = h_call(&srv, "PUT", put_path, srv.admin.api_key, "{\"name\":\"after\",\"cfInt\":5}", NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(h_str(&r, "device.name"), "after");
	h_resp_free(&r);
	char jwt[2048];
	assert_int_equal(h_login(&srv, &srv.admin, jwt, sizeof jwt), 0);
}

/* Stops the server: a clean exit (LeakSanitizer runs at exit under IMP_SANITIZE), no
 * sanitizer report and no 5xx in its log. */
static void server_exits_clean(void **state)
{
	assert_int_equal(h_server_stop(&srv), 0);
	assert_false(h_log_contains(&srv, "AddressSanitizer"));
	assert_false(h_log_contains(&srv, "LeakSanitizer"));
	assert_false(h_log_contains(&srv, "runtime error"));
	FILE *f = fopen(srv.log, "r");
	assert_non_null(f);
	char line[512];
	int fivexx = 0;
	while(fgets(line, sizeof line, f)) {
		char method[32], route[256];
		unsigned status;
		if(sscanf(line, "%31s %255s %u ", method, route, &status) == 3 && status >= 500 && status < 600) {
			fprintf(stderr, "5xx in the server log: %s", line);
			fivexx++;
		}
	}
	fclose(f);
	assert_int_equal(fivexx, 0);
}

int main(void)
{
#ifdef BODIES_ASAN
	/* A small quarantine, so that the server's resident memory follows what it holds (the
	 * 10 MB test measures it); every other sanitizer check stays on. */
	const char *o = getenv("ASAN_OPTIONS");
	char opts[512];
	snprintf(opts, sizeof opts, "%s%squarantine_size_mb=8", o ? o : "", o && *o ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
#endif
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(malformed_json),
		cmocka_unit_test(empty_bodies),
		cmocka_unit_test(deep_nesting),
		cmocka_unit_test(wrong_types),
		cmocka_unit_test(broken_rules),
		cmocka_unit_test(one_mebibyte),
		cmocka_unit_test(content_length_lies),
		cmocka_unit_test(ten_megabytes),
		cmocka_unit_test(hostile_methods),
		cmocka_unit_test(server_still_works),
		cmocka_unit_test(server_exits_clean),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
