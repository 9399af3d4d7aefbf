/* One line of POST /api/v1/devices/batch's answer, turned into a credential bundle:
 * {"line": n, "device": {...}, "mqttCredential": {...}} or {"line": n, "error": {...}}.
 *
 * The line is read by a small strict JSON scanner that keeps only the fields a bundle
 * needs, not by jansson: building a whole tree of a 1.5 KB device for six strings cost
 * 30 µs a line, most of the CLI's time at the 50,000 devices/s the batch aims at. */
#include <stdio.h>
#include <string.h>

#include "cli/batch.h"
#include "core/ids.h"
#include "core/mem.h"

/* More channels than any template has; past it the answer is taken as broken. */
#define CHANNELS_MAX 4096
#define DEPTH_MAX 32

typedef struct {
	const char *p, *end;
	char *arena;   /* unescaped strings; never longer than the line itself */
	size_t an;
} scan;

typedef struct {
	long long line;
	int has_line, has_error, has_device, has_cred;
	const char *code, *message;
	const char *id, *serial, *account, *template_id;
	const char *secret, *certificate;
	int has_channels;
	size_t nch, capch;
	const char **ch;  /* name, topic, permission per channel */
} answer;

static void ws(scan *s)
{
	while(s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	for(int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if(c >= '0' && c <= '9') v |= (unsigned)(c - '0');
		else if(c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
		else if(c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
		else return -1;
	}
	*out = v;
	return 0;
}

static void put_utf8(scan *s, unsigned cp)
{
	char *o = s->arena + s->an;
	if(cp < 0x80) o[0] = (char)cp, s->an += 1;
	else if(cp < 0x800) o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3f)), s->an += 2;
	else if(cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[2] = (char)(0x80 | (cp & 0x3f));
		s->an += 3;
	} else {
		o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[3] = (char)(0x80 | (cp & 0x3f));
		s->an += 4;
	}
}

/* A string at s->p; with out, unescaped into the arena (an escape never gets longer once
 * decoded, so the arena, as long as the line, always has room). */
static int string(scan *s, const char **out)
{
	if(s->p >= s->end || *s->p != '"') return -1;
	s->p++;
	size_t start = s->an;
	for(;;) {
		const char *run = s->p;
		s->p += batch_plain_run(s->p, (size_t)(s->end - s->p));
		if(out) {
			memcpy(s->arena + s->an, run, (size_t)(s->p - run));
			s->an += (size_t)(s->p - run);
		}
		if(s->p >= s->end || (unsigned char)*s->p < 0x20) return -1;
		if(*s->p == '"') break;
		if(s->end - s->p < 2) return -1;
		char c = s->p[1], d = 0;
		s->p += 2;
		switch(c) {
		case '"': case '\\': case '/': d = c; break;
		case 'b': d = '\b'; break;
		case 'f': d = '\f'; break;
		case 'n': d = '\n'; break;
		case 'r': d = '\r'; break;
		case 't': d = '\t'; break;
		case 'u': {
			unsigned cp, lo;
			if(s->end - s->p < 4 || hex4(s->p, &cp)) return -1;
			s->p += 4;
			if(cp >= 0xd800 && cp < 0xdc00) {
				if(s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' || hex4(s->p + 2, &lo) || lo < 0xdc00 ||
				   lo > 0xdfff)
					return -1;
				s->p += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			} else if(cp >= 0xdc00 && cp < 0xe000) return -1;
			/* a NUL would cut the C string short: refuse it */
			if(cp == 0) return -1;
			if(out) put_utf8(s, cp);
			continue;
		}
		default: return -1;
		}
		if(out) s->arena[s->an++] = d;
	}
	s->p++;
	if(out) {
		s->arena[s->an++] = '\0';
		*out = s->arena + start;
	}
	return 0;
}

static int value(scan *s, int depth);

/* An object; field is called at each value with its key (raw: the keys wanted never hold
 * escapes) and must consume the value. */
static int object(scan *s, int depth, int (*field)(scan *, const char *, size_t, int, void *), void *ctx)
{
	if(depth > DEPTH_MAX || s->p >= s->end || *s->p != '{') return -1;
	s->p++;
	ws(s);
	if(s->p < s->end && *s->p == '}') {
		s->p++;
		return 0;
	}
	for(;;) {
		ws(s);
		const char *k = s->p + 1;
		if(string(s, NULL)) return -1;
		size_t kn = (size_t)(s->p - 1 - k);
		ws(s);
		if(s->p >= s->end || *s->p != ':') return -1;
		s->p++;
		ws(s);
		if(field ? field(s, k, kn, depth + 1, ctx) : value(s, depth + 1)) return -1;
		ws(s);
		if(s->p < s->end && *s->p == ',') {
			s->p++;
			continue;
		}
		if(s->p < s->end && *s->p == '}') {
			s->p++;
			return 0;
		}
		return -1;
	}
}

static int array(scan *s, int depth, int (*item)(scan *, int, void *), void *ctx)
{
	if(depth > DEPTH_MAX || s->p >= s->end || *s->p != '[') return -1;
	s->p++;
	ws(s);
	if(s->p < s->end && *s->p == ']') {
		s->p++;
		return 0;
	}
	for(;;) {
		ws(s);
		if(item ? item(s, depth + 1, ctx) : value(s, depth + 1)) return -1;
		ws(s);
		if(s->p < s->end && *s->p == ',') {
			s->p++;
			continue;
		}
		if(s->p < s->end && *s->p == ']') {
			s->p++;
			return 0;
		}
		return -1;
	}
}

static int literal(scan *s, const char *word)
{
	size_t n = strlen(word);
	if((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return -1;
	s->p += n;
	return 0;
}

static int number(scan *s, long long *out)
{
	const char *start = s->p;
	int integral = 1;
	if(s->p < s->end && *s->p == '-') s->p++;
	const char *digits = s->p;
	while(s->p < s->end && ((*s->p >= '0' && *s->p <= '9') || *s->p == '.' || *s->p == 'e' || *s->p == 'E' ||
	                        *s->p == '+' || *s->p == '-')) {
		if(*s->p < '0' || *s->p > '9') integral = 0;
		s->p++;
	}
	if(s->p == digits) return -1;
	if(out) {
		if(!integral || s->p - start > 18) return -1;
		long long v = 0;
		for(const char *q = digits; q < s->p; q++) v = v * 10 + (*q - '0');
		*out = *start == '-' ? -v : v;
	}
	return 0;
}

static int value(scan *s, int depth)
{
	if(s->p >= s->end) return -1;
	switch(*s->p) {
	case '{': return object(s, depth, NULL, NULL);
	case '[': return array(s, depth, NULL, NULL);
	case '"': return string(s, NULL);
	case 't': return literal(s, "true");
	case 'f': return literal(s, "false");
	case 'n': return literal(s, "null");
	default: return number(s, NULL);
	}
}

#define KEY(k, lit) (kn == sizeof(lit) - 1 && memcmp(k, lit, kn) == 0)

/* A string field when the value is a string; anything else is skipped and stays NULL. */
static int maybe_string(scan *s, int depth, const char **out)
{
	if(s->p < s->end && *s->p == '"') return string(s, out);
	return value(s, depth);
}

static int error_field(scan *s, const char *k, size_t kn, int depth, void *ctx)
{
	answer *a = ctx;
	if(KEY(k, "code")) return maybe_string(s, depth, &a->code);
	if(KEY(k, "message")) return maybe_string(s, depth, &a->message);
	return value(s, depth);
}

static int channel_field(scan *s, const char *k, size_t kn, int depth, void *ctx)
{
	const char **c = ctx;
	if(KEY(k, "channelTemplateName")) return maybe_string(s, depth, &c[0]);
	if(KEY(k, "channel")) return maybe_string(s, depth, &c[1]);
	if(KEY(k, "permission")) return maybe_string(s, depth, &c[2]);
	return value(s, depth);
}

static int channel_item(scan *s, int depth, void *ctx)
{
	answer *a = ctx;
	if(a->nch == CHANNELS_MAX) return -1;
	if(a->nch == a->capch) {
		size_t cap = a->capch ? a->capch * 2 : 8;
		const char **ch = imp_realloc(a->ch, cap * 3 * sizeof *ch);
		if(!ch) return -1;
		a->ch = ch;
		a->capch = cap;
	}
	const char **c = a->ch + a->nch * 3;
	c[0] = c[1] = c[2] = NULL;
	a->nch++;
	return object(s, depth, channel_field, (void *)c);
}

static int device_field(scan *s, const char *k, size_t kn, int depth, void *ctx)
{
	answer *a = ctx;
	if(KEY(k, "id")) return maybe_string(s, depth, &a->id);
	if(KEY(k, "serialNumber")) return maybe_string(s, depth, &a->serial);
	if(KEY(k, "accountId")) return maybe_string(s, depth, &a->account);
	if(KEY(k, "deviceTemplateId")) return maybe_string(s, depth, &a->template_id);
	if(KEY(k, "channels") && s->p < s->end && *s->p == '[') {
		a->has_channels = 1;
		a->nch = 0;
		return array(s, depth, channel_item, a);
	}
	return value(s, depth);
}

static int cred_field(scan *s, const char *k, size_t kn, int depth, void *ctx)
{
	answer *a = ctx;
	if(KEY(k, "secret")) return maybe_string(s, depth, &a->secret);
	if(KEY(k, "certificate")) return maybe_string(s, depth, &a->certificate);
	return value(s, depth);
}

static int top_field(scan *s, const char *k, size_t kn, int depth, void *ctx)
{
	answer *a = ctx;
	int is_obj = s->p < s->end && *s->p == '{';
	if(KEY(k, "line")) {
		a->has_line = 1;
		return number(s, &a->line);
	}
	if(KEY(k, "error") && is_obj) {
		a->has_error = 1;
		return object(s, depth, error_field, a);
	}
	if(KEY(k, "device") && is_obj) {
		a->has_device = 1;
		return object(s, depth, device_field, a);
	}
	if(KEY(k, "mqttCredential") && is_obj) {
		a->has_cred = 1;
		return object(s, depth, cred_field, a);
	}
	return value(s, depth);
}

/* A reason for a person from the server's error object, without control characters. */
static void refusal(const answer *a, char *why, size_t why_len)
{
	const char *msg = a->message ? a->message : "refused", *code = a->code;
	snprintf(why, why_len, "%s%s%s%s", msg, code ? " (" : "", code ? code : "", code ? ")" : "");
	for(char *p = why; *p; p++) {
		if((unsigned char)*p < 0x20) *p = ' ';
	}
}

void batch_channels_free(batch_channels *c)
{
	for(size_t i = 0; i < c->n; i++) {
		imp_free(c->names[i]);
		imp_free(c->permissions[i]);
	}
	imp_free(c->names);
	imp_free(c->permissions);
	memset(c, 0, sizeof *c);
}

/* A minimal answer's device: the template's channels, with the topics the server gives
 * them (src/api/devices.c), written into one block (*block, the caller frees it). */
static int template_channels(answer *a, const batch_channels *ch, const char ***names, char **block)
{
	size_t room = 1;
	for(size_t i = 0; i < ch->n; i++) room += sizeof "xi/blue/v1//d//" + 2 * IMP_UUID_LEN + strlen(ch->names[i]);
	*names = imp_calloc(ch->n * 3 + 1, sizeof **names);
	*block = imp_malloc(room);
	if(!*names || !*block) return -1;
	char *p = *block;
	for(size_t i = 0; i < ch->n; i++) {
		(*names)[i] = ch->names[i];
		(*names)[ch->n + i] = p;
		(*names)[2 * ch->n + i] = ch->permissions[i];
		p += sprintf(p, "xi/blue/v1/%s/d/%s/%s", ch->account_id, a->id, ch->names[i]) + 1;
	}
	a->account = ch->account_id;
	a->template_id = ch->template_id;
	a->nch = ch->n;
	return 0;
}

batch_answer_kind batch_answer(const char *text, size_t n, long expect_line, batch_format f, const batch_broker *br,
                               const batch_channels *ch, const char *private_key, batch_buf *out, int *cut, char *why,
                               size_t why_len)
{
	batch_answer_kind kind = BATCH_ANSWER_BROKEN;
	answer a = {0};
	scan s = {.p = text, .end = text + n, .arena = imp_malloc(n + 1)};
	const char **names = NULL;
	char *topics = NULL;
	snprintf(why, why_len, "the server's answer for this line is malformed");
	if(!s.arena) goto out;
	ws(&s);
	if(object(&s, 0, top_field, &a)) goto out;
	ws(&s);
	if(s.p != s.end) goto out;
	if(!a.has_line || a.line != expect_line) {
		snprintf(why, why_len, "the server answered for another line");
		goto out;
	}
	if(!out) {
		/* the answer to a placeholder: only its line number matters */
		kind = a.has_error ? BATCH_ANSWER_REFUSED : BATCH_ANSWER_BUNDLE;
		goto out;
	}
	if(a.has_error) {
		refusal(&a, why, why_len);
		kind = BATCH_ANSWER_REFUSED;
		goto out;
	}
	if(!a.has_device || !a.id) goto out;
	if(!a.has_channels) {
		/* a minimal answer: the template's channels */
		if(!ch || !ch->ok || !imp_id_valid(a.id)) goto out;
		if(template_channels(&a, ch, &names, &topics)) {
			snprintf(why, why_len, "out of memory");
			goto out;
		}
	}
	if(!a.serial || !a.account || !a.template_id) goto out;
	/* Ids name files (dir output) and go into firmware: nothing but a UUID is taken. */
	if(!imp_id_valid(a.id) || !imp_id_valid(a.account) || !imp_id_valid(a.template_id)) {
		snprintf(why, why_len, "the server sent an id that is not a UUID");
		goto out;
	}
	if(!a.has_cred) {
		/* The device exists, but without a credential there is nothing to flash. */
		snprintf(why, why_len, "the server made device %.40s but sent no credential for it", a.id);
		kind = BATCH_ANSWER_REFUSED;
		goto out;
	}
	batch_bundle b = {.device_id = a.id, .serial = a.serial, .account_id = a.account, .template_id = a.template_id};
	if(private_key) {
		b.certificate = a.certificate;
		b.private_key = private_key;
		if(!b.certificate) goto out;
	} else {
		b.password = a.secret;
		if(!b.password) goto out;
	}
	b.nchannels = a.nch;
	if(!names) {
		names = imp_calloc(a.nch * 3 + 1, sizeof *names);
		if(!names) goto out;
		for(size_t i = 0; i < a.nch; i++) {
			names[i] = a.ch[3 * i];
			names[a.nch + i] = a.ch[3 * i + 1];
			names[2 * a.nch + i] = a.ch[3 * i + 2];
			if(!names[i] || !names[a.nch + i] || !names[2 * a.nch + i]) goto out;
		}
	}
	b.channel_names = names;
	b.channel_topics = names + a.nch;
	b.channel_permissions = names + 2 * a.nch;
	imp_err rc = IMP_OK;
	size_t mark = out->n;
	if(f == BATCH_DIR) {
		char file[256];
		batch_file_name(b.serial, b.device_id, file);
		rc = batch_buf_add(out, file, strlen(file) + 1);
	}
	if(!rc) rc = batch_bundle_write(f, &b, br, out, cut);
	if(!rc && f == BATCH_DIR) rc = batch_buf_add(out, "", 1);
	if(rc) {
		out->n = mark;
		snprintf(why, why_len, "cannot hold the bundle (%s)", imp_err_name(rc));
		goto out;
	}
	why[0] = '\0';
	kind = BATCH_ANSWER_BUNDLE;
out:
	imp_free(names);
	imp_free(topics);
	imp_free(a.ch);
	if(s.arena) memset(s.arena, 0, s.an); /* the secret was in it */
	imp_free(s.arena);
	return kind;
}
