#include "api/jsontext.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/mem.h"

void imp_jtext_init(imp_jtext *t, size_t max)
{
	memset(t, 0, sizeof *t);
	t->max = max;
}

void imp_jtext_free(imp_jtext *t)
{
	if(t->s) sodium_memzero(t->s, t->cap);
	imp_free(t->s);
	memset(t, 0, sizeof *t);
}

static int grow(imp_jtext *t, size_t n)
{
	if(t->failed) return -1;
	if(t->len + n <= t->cap) return 0;
	if(t->len + n > t->max) {
		t->failed = 1;
		return -1;
	}
	size_t cap = t->cap ? t->cap : 4096;
	while(cap < t->len + n) cap *= 2;
	if(cap > t->max) cap = t->max;
	/* Not realloc: the old copy may hold secrets and must be zeroed before it is freed. */
	char *s = imp_malloc(cap);
	if(!s) {
		t->failed = 1;
		return -1;
	}
	if(t->s) {
		memcpy(s, t->s, t->len);
		sodium_memzero(t->s, t->cap);
		imp_free(t->s);
	}
	t->s = s;
	t->cap = cap;
	return 0;
}

void imp_jtext_reserve(imp_jtext *t, size_t n)
{
	/* only a guess: failing it leaves the text as it was */
	int failed = t->failed;
	if(t->len + n <= t->max && grow(t, n)) t->failed = failed;
}

void imp_jtext_raw(imp_jtext *t, const char *s, size_t n)
{
	if(grow(t, n)) return;
	memcpy(t->s + t->len, s, n);
	t->len += n;
}

/* 1 for the bytes a JSON string must escape: controls, '"' and '\\'. */
static const unsigned char ESCAPE[256] = {
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	['"'] = 1, ['\\'] = 1};

static inline int needs_escape(unsigned char c) { return ESCAPE[c]; }

/* As jansson's dump_string without JSON_ENSURE_ASCII or JSON_ESCAPE_SLASH: escapes '"',
 * '\\' and control characters (\b \f \n \r \t, else \u00XX in capitals), all else as is. */
void imp_jtext_str(imp_jtext *t, const char *s, size_t len)
{
	if(grow(t, len + 2)) return;
	t->s[t->len++] = '"';
	size_t k = 0;
	while(k < len && !needs_escape((unsigned char)s[k])) k++;
	if(k == len) {
		/* the common case: nothing to escape, and room reserved above */
		memcpy(t->s + t->len, s, len);
		t->len += len;
		t->s[t->len++] = '"';
		return;
	}
	size_t run = 0;
	for(size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if(!needs_escape(c)) continue;
		imp_jtext_raw(t, s + run, i - run);
		run = i + 1;
		char esc[8];
		switch(c) {
		case '"': imp_jtext_raw(t, "\\\"", 2); break;
		case '\\': imp_jtext_raw(t, "\\\\", 2); break;
		case '\b': imp_jtext_raw(t, "\\b", 2); break;
		case '\f': imp_jtext_raw(t, "\\f", 2); break;
		case '\n': imp_jtext_raw(t, "\\n", 2); break;
		case '\r': imp_jtext_raw(t, "\\r", 2); break;
		case '\t': imp_jtext_raw(t, "\\t", 2); break;
		default:
			snprintf(esc, sizeof esc, "\\u%04X", c);
			imp_jtext_raw(t, esc, 6);
		}
	}
	imp_jtext_raw(t, s + run, len - run);
	imp_jtext_raw(t, "\"", 1);
}

void imp_jtext_plain(imp_jtext *t, const char *s)
{
	size_t n = strlen(s);
	if(grow(t, n + 2)) return;
	t->s[t->len++] = '"';
	memcpy(t->s + t->len, s, n);
	t->len += n;
	t->s[t->len++] = '"';
}

void imp_jtext_key(imp_jtext *t, const char *key, int comma)
{
	size_t n = strlen(key);
	if(grow(t, n + 4)) return;
	char *p = t->s + t->len;
	if(comma) *p++ = ',';
	*p++ = '"';
	memcpy(p, key, n);
	p += n;
	*p++ = '"';
	*p++ = ':';
	t->len = (size_t)(p - t->s);
}

void imp_jtext_str_or_null(imp_jtext *t, const char *s)
{
	if(s) imp_jtext_str(t, s, strlen(s));
	else imp_jtext_raw(t, "null", 4);
}

void imp_jtext_int(imp_jtext *t, long long v)
{
	char num[24];
	int n = snprintf(num, sizeof num, "%lld", v);
	imp_jtext_raw(t, num, (size_t)n);
}

void imp_jtext_value(imp_jtext *t, const json_t *v)
{
	if(!v || json_is_null(v)) {
		imp_jtext_raw(t, "null", 4);
	} else if(json_is_string(v)) {
		imp_jtext_str(t, json_string_value(v), json_string_length(v));
	} else if(json_is_true(v)) {
		imp_jtext_raw(t, "true", 4);
	} else if(json_is_false(v)) {
		imp_jtext_raw(t, "false", 5);
	} else if(json_is_integer(v)) {
		imp_jtext_int(t, (long long)json_integer_value(v));
	} else {
		/* Reals, objects and arrays (custom fields): rare, and jansson's own format. */
		size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
		if(n == 0 || grow(t, n)) {
			t->failed = 1;
			return;
		}
		json_dumpb(v, t->s + t->len, n, JSON_COMPACT | JSON_ENCODE_ANY);
		t->len += n;
	}
}

static const char *skip_ws(const char *p, const char *end)
{
	while(p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
	return p;
}

/* A string of printable ASCII without escapes at *pp (its opening quote): its text and
 * length, *pp past the closing quote; NULL when it is not one. */
static const char *plain_string(const char **pp, const char *end, size_t *n)
{
	const char *p = *pp + 1, *s = p;
	while(p < end && *p != '"') {
		unsigned char c = (unsigned char)*p;
		if(c < 0x20 || c > 0x7e || c == '\\') return NULL;
		p++;
	}
	if(p >= end) return NULL;
	*n = (size_t)(p - s);
	*pp = p + 1;
	return s;
}

static json_t *flat_value(const char **pp, const char *end)
{
	const char *p = *pp;
	if(p >= end) return NULL;
	if(*p == '"') {
		size_t n;
		const char *s = plain_string(&p, end, &n);
		if(!s) return NULL;
		*pp = p;
		return json_stringn_nocheck(s, n);
	}
	static const struct {
		const char *word;
		size_t n;
	} WORDS[] = {{"true", 4}, {"false", 5}, {"null", 4}};
	for(int i = 0; i < 3; i++) {
		if((size_t)(end - p) >= WORDS[i].n && memcmp(p, WORDS[i].word, WORDS[i].n) == 0) {
			p += WORDS[i].n;
			/* "truex" is jansson's error to report */
			if(p < end && ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) return NULL;
			*pp = p;
			return i == 0 ? json_true() : i == 1 ? json_false() : json_null();
		}
	}
	int neg = *p == '-';
	if(neg) p++;
	const char *d = p;
	long long v = 0;
	while(p < end && *p >= '0' && *p <= '9' && p - d < 18) v = v * 10 + (*p++ - '0');
	size_t nd = (size_t)(p - d);
	/* no digits, a leading zero, -0, more than 18 digits, or a real: jansson's */
	if(nd == 0 || (*d == '0' && (nd > 1 || neg)) ||
	   (p < end && (*p == '.' || *p == 'e' || *p == 'E' || (*p >= '0' && *p <= '9'))))
		return NULL;
	*pp = p;
	return json_integer(neg ? -v : v);
}

json_t *imp_json_load_flat(const char *text, size_t len)
{
	const char *p = text, *end = text + len;
	p = skip_ws(p, end);
	if(p >= end || *p != '{') return NULL;
	json_t *o = json_object();
	if(!o) return NULL;
	p = skip_ws(p + 1, end);
	if(p < end && *p == '}') goto close;
	for(;;) {
		if(p >= end || *p != '"') goto other;
		size_t kn;
		const char *k = plain_string(&p, end, &kn);
		if(!k || json_object_getn(o, k, kn)) goto other;
		p = skip_ws(p, end);
		if(p >= end || *p != ':') goto other;
		p = skip_ws(p + 1, end);
		json_t *v = flat_value(&p, end);
		if(!v || json_object_setn_new_nocheck(o, k, kn, v)) goto other;
		p = skip_ws(p, end);
		if(p < end && *p == ',') {
			p = skip_ws(p + 1, end);
			continue;
		}
		if(p < end && *p == '}') break;
		goto other;
	}
close:
	if(skip_ws(p + 1, end) == end) return o;
other:
	json_decref(o);
	return NULL;
}

json_t *imp_json_load(const char *text, size_t len, json_error_t *err)
{
	json_t *o = imp_json_load_flat(text, len);
	return o ? o : json_loadb(text, len, JSON_REJECT_DUPLICATES, err);
}
