/* Credential bundles in the four output formats. Written by hand rather than through
 * jansson so that the key order is fixed and a million bundles cost no allocations each. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "cli/batch.h"
#include "core/mem.h"

/* NVS strings are at most 4000 bytes with their NUL (ESP-IDF's nvs_set_str). */
#define NVS_STRING_MAX 3999

imp_err batch_buf_add(batch_buf *b, const void *s, size_t n)
{
	if(n > b->max - b->n) return IMP_ERR_TOO_LARGE;
	if(b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while(cap < b->n + n + 1) cap *= 2;
		if(cap > b->max + 1) cap = b->max + 1;
		char *p = imp_realloc(b->p, cap);
		if(!p) return IMP_ERR_NOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
	return IMP_OK;
}

imp_err batch_buf_str(batch_buf *b, const char *s) { return batch_buf_add(b, s, strlen(s)); }

/* Nonzero when one of the 8 bytes of w is '"', '\\' or a control character: the zero-byte
 * test of bit tricks, three times. It never misses one, and flags a byte that is not one
 * only above (more significant than) a byte that is. */
static uint64_t special8(uint64_t w)
{
	const uint64_t lo = 0x0101010101010101ULL, hi = 0x8080808080808080ULL;
	uint64_t q = w ^ (lo * '"'), b = w ^ (lo * '\\');
	return (((w - lo * 0x20) & ~w) | ((q - lo) & ~q) | ((b - lo) & ~b)) & hi;
}

/* Sixteen bytes a step with SSE2 (every x86-64 has it), else eight with the bit trick
 * above: strings are most of an answer's and a bundle's bytes (the byte loop this replaced
 * was a quarter of the CLI's time in them). On a little-endian machine the least
 * significant flagged byte of special8 comes first in memory and is a true one, so the
 * step stops there; elsewhere the byte loop finds it. */
size_t batch_plain_run(const char *p, size_t n)
{
	size_t i = 0;
#ifdef __SSE2__
	const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), control = _mm_set1_epi8(0x1f);
	for(; n - i >= 16; i += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
		/* v <= 0x1f (unsigned) exactly when min(v, 0x1f) is v */
		__m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
		                           _mm_cmpeq_epi8(_mm_min_epu8(v, control), v));
		int bits = _mm_movemask_epi8(hit);
		if(bits) return i + (size_t)__builtin_ctz((unsigned)bits);
	}
#endif
	for(uint64_t w, m; n - i >= 8; i += 8) {
		memcpy(&w, p + i, 8);
		if((m = special8(w))) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			return i + (size_t)(__builtin_ctzll(m) >> 3);
#else
			break;
#endif
		}
	}
	while(i < n && p[i] != '"' && p[i] != '\\' && (unsigned char)p[i] >= 0x20) i++;
	return i;
}

imp_err batch_buf_json(batch_buf *b, const char *s)
{
	imp_err rc = IMP_OK;
	const char *run = s, *end = s + strlen(s);
	for(; s < end && !rc; s++) {
		s += batch_plain_run(s, (size_t)(end - s));
		if(s == end) break;
		unsigned char c = (unsigned char)*s;
		char esc[8];
		if(c == '"' || c == '\\') snprintf(esc, sizeof esc, "\\%c", c);
		else if(c == '\n') snprintf(esc, sizeof esc, "\\n");
		else if(c == '\r') snprintf(esc, sizeof esc, "\\r");
		else if(c == '\t') snprintf(esc, sizeof esc, "\\t");
		else snprintf(esc, sizeof esc, "\\u%04x", c);
		rc = batch_buf_add(b, run, (size_t)(s - run));
		if(!rc) rc = batch_buf_str(b, esc);
		run = s + 1;
	}
	return rc ? rc : batch_buf_add(b, run, (size_t)(end - run));
}

void batch_buf_free(batch_buf *b)
{
	imp_free(b->p);
	b->p = NULL;
	b->n = b->cap = 0;
}

static const char *const FORMATS[] = {"jsonl", "csv", "nvs", "dir"};

int batch_format_parse(const char *s)
{
	for(int i = 0; i < 4; i++) {
		if(strcmp(s, FORMATS[i]) == 0) return i;
	}
	return -1;
}

const char *batch_format_name(batch_format f) { return FORMATS[f]; }

const char *batch_header(batch_format f, int cert)
{
	if(f == BATCH_CSV)
		return "serialNumber,deviceId,accountId,deviceTemplateId,brokerHost,brokerPort,brokerCertificatePort,"
		       "clientId,username,password,certificate,privateKey,topicPrefix,channels\n";
	if(f == BATCH_NVS)
		return cert ? "device_id,serial,account_id,mqtt_host,mqtt_port,cert_port,client_id,username,cert,key,"
		              "topic_prefix,channels\n"
		            : "device_id,serial,account_id,mqtt_host,mqtt_port,cert_port,client_id,username,password,"
		              "topic_prefix,channels\n";
	return "";
}

const char *batch_nvs_config(int cert)
{
	return cert ? "imprint,namespace,\n"
	              "device_id,data,string\nserial,data,string\naccount_id,data,string\nmqtt_host,data,string\n"
	              "mqtt_port,data,u16\ncert_port,data,u16\nclient_id,data,string\nusername,data,string\n"
	              "cert,data,base64\nkey,data,base64\ntopic_prefix,data,string\nchannels,data,string\n"
	            : "imprint,namespace,\n"
	              "device_id,data,string\nserial,data,string\naccount_id,data,string\nmqtt_host,data,string\n"
	              "mqtt_port,data,u16\ncert_port,data,u16\nclient_id,data,string\nusername,data,string\n"
	              "password,data,string\ntopic_prefix,data,string\nchannels,data,string\n";
}

/* A CSV field, quoted (with "" for ") when it holds a separator, a quote, a line break or
 * blanks at either end. */
static imp_err csv_field(batch_buf *o, const char *s, int last)
{
	size_t n = strlen(s);
	int quote = n && (strpbrk(s, ",\"\r\n") || s[0] == ' ' || s[n - 1] == ' ');
	imp_err rc = IMP_OK;
	if(!quote) rc = batch_buf_add(o, s, n);
	else {
		rc = batch_buf_add(o, "\"", 1);
		for(const char *q; !rc && (q = strchr(s, '"')); s = q + 1) {
			rc = batch_buf_add(o, s, (size_t)(q - s) + 1);
			if(!rc) rc = batch_buf_add(o, "\"", 1);
		}
		if(!rc) rc = batch_buf_str(o, s);
		if(!rc) rc = batch_buf_add(o, "\"", 1);
	}
	return rc ? rc : batch_buf_add(o, last ? "\n" : ",", 1);
}

/* The base64 body of a PEM block: the DER it encodes, as ESP-IDF's base64 encoding wants. */
static imp_err pem_body(batch_buf *o, const char *pem)
{
	imp_err rc = IMP_OK;
	const char *p = strchr(pem, '\n');
	while(p && !rc) {
		const char *line = p + 1, *end = strchr(line, '\n');
		if(!end || strncmp(line, "-----", 5) == 0) break;
		size_t n = (size_t)(end - line);
		if(n && line[n - 1] == '\r') n--;
		rc = batch_buf_add(o, line, n);
		p = end;
	}
	return rc;
}

static imp_err json_pair(batch_buf *o, const char *sep_key, const char *value)
{
	imp_err rc = batch_buf_str(o, sep_key);
	if(!rc) rc = batch_buf_json(o, value);
	if(!rc) rc = batch_buf_add(o, "\"", 1);
	return rc;
}

static imp_err bundle_json(const batch_bundle *b, const batch_broker *br, batch_buf *o)
{
	char ports[96];
	snprintf(ports, sizeof ports, "\",\"port\":%d,\"certificatePort\":%d}", br->port, br->cert_port);
	imp_err rc = json_pair(o, "{\"deviceId\":\"", b->device_id);
	if(!rc) rc = json_pair(o, ",\"serialNumber\":\"", b->serial);
	if(!rc) rc = json_pair(o, ",\"accountId\":\"", b->account_id);
	if(!rc) rc = json_pair(o, ",\"deviceTemplateId\":\"", b->template_id);
	if(!rc) rc = batch_buf_str(o, ",\"broker\":{\"host\":\"");
	if(!rc) rc = batch_buf_json(o, br->host);
	if(!rc) rc = batch_buf_str(o, ports);
	if(!rc) rc = json_pair(o, ",\"mqtt\":{\"clientId\":\"", b->device_id);
	if(!rc) rc = json_pair(o, ",\"username\":\"", b->device_id);
	if(!rc && b->password) rc = json_pair(o, ",\"password\":\"", b->password);
	if(!rc) rc = batch_buf_add(o, "}", 1);
	if(!rc && b->certificate) rc = json_pair(o, ",\"certificate\":\"", b->certificate);
	if(!rc && b->private_key) rc = json_pair(o, ",\"privateKey\":\"", b->private_key);
	if(!rc) rc = batch_buf_str(o, ",\"topicPrefix\":\"xi/blue/v1/");
	if(!rc) rc = batch_buf_json(o, b->account_id);
	if(!rc) rc = batch_buf_str(o, "/d/");
	if(!rc) rc = batch_buf_json(o, b->device_id);
	if(!rc) rc = batch_buf_str(o, "/\",\"channels\":[");
	for(size_t i = 0; i < b->nchannels && !rc; i++) {
		rc = json_pair(o, i ? ",{\"name\":\"" : "{\"name\":\"", b->channel_names[i]);
		if(!rc) rc = json_pair(o, ",\"topic\":\"", b->channel_topics[i]);
		if(!rc) rc = json_pair(o, ",\"permission\":\"", b->channel_permissions[i]);
		if(!rc) rc = batch_buf_add(o, "}", 1);
	}
	if(!rc) rc = batch_buf_str(o, "]}\n");
	return rc;
}

/* channels as JSON, for the csv column */
static imp_err channels_json(const batch_bundle *b, batch_buf *o)
{
	imp_err rc = batch_buf_add(o, "[", 1);
	for(size_t i = 0; i < b->nchannels && !rc; i++) {
		rc = json_pair(o, i ? ",{\"name\":\"" : "{\"name\":\"", b->channel_names[i]);
		if(!rc) rc = json_pair(o, ",\"topic\":\"", b->channel_topics[i]);
		if(!rc) rc = json_pair(o, ",\"permission\":\"", b->channel_permissions[i]);
		if(!rc) rc = batch_buf_add(o, "}", 1);
	}
	return rc ? rc : batch_buf_add(o, "]", 1);
}

/* channels for NVS: "name=permission;..." (the topic is topic_prefix + name), at most
 * NVS_STRING_MAX bytes. */
static imp_err channels_nvs(const batch_bundle *b, batch_buf *o, int *cut)
{
	imp_err rc = IMP_OK;
	size_t used = 0;
	for(size_t i = 0; i < b->nchannels && !rc; i++) {
		size_t need = (i ? 1 : 0) + strlen(b->channel_names[i]) + 1 + strlen(b->channel_permissions[i]);
		if(used + need > NVS_STRING_MAX) {
			*cut = 1;
			break;
		}
		if(i) rc = batch_buf_add(o, ";", 1);
		if(!rc) rc = batch_buf_str(o, b->channel_names[i]);
		if(!rc) rc = batch_buf_add(o, "=", 1);
		if(!rc) rc = batch_buf_str(o, b->channel_permissions[i]);
		used += need;
	}
	return rc;
}

imp_err batch_bundle_write(batch_format f, const batch_bundle *b, const batch_broker *br, batch_buf *o, int *cut)
{
	if(f == BATCH_JSONL || f == BATCH_DIR) return bundle_json(b, br, o);
	char port[16], cert_port[16], prefix[160];
	snprintf(port, sizeof port, "%d", br->port);
	snprintf(cert_port, sizeof cert_port, "%d", br->cert_port);
	snprintf(prefix, sizeof prefix, "xi/blue/v1/%s/d/%s/", b->account_id, b->device_id);
	size_t mark = o->n;
	batch_buf tmp = {.max = 1 << 20};
	imp_err rc;
	if(f == BATCH_CSV) {
		rc = csv_field(o, b->serial, 0);
		if(!rc) rc = csv_field(o, b->device_id, 0);
		if(!rc) rc = csv_field(o, b->account_id, 0);
		if(!rc) rc = csv_field(o, b->template_id, 0);
		if(!rc) rc = csv_field(o, br->host, 0);
		if(!rc) rc = csv_field(o, port, 0);
		if(!rc) rc = csv_field(o, cert_port, 0);
		if(!rc) rc = csv_field(o, b->device_id, 0);
		if(!rc) rc = csv_field(o, b->device_id, 0);
		if(!rc) rc = csv_field(o, b->password ? b->password : "", 0);
		if(!rc) rc = csv_field(o, b->certificate ? b->certificate : "", 0);
		if(!rc) rc = csv_field(o, b->private_key ? b->private_key : "", 0);
		if(!rc) rc = csv_field(o, prefix, 0);
		if(!rc) rc = channels_json(b, &tmp);
		if(!rc) rc = csv_field(o, tmp.p, 1);
	} else {
		rc = csv_field(o, b->device_id, 0);
		if(!rc) rc = csv_field(o, b->serial, 0);
		if(!rc) rc = csv_field(o, b->account_id, 0);
		if(!rc) rc = csv_field(o, br->host, 0);
		if(!rc) rc = csv_field(o, port, 0);
		if(!rc) rc = csv_field(o, cert_port, 0);
		if(!rc) rc = csv_field(o, b->device_id, 0);
		if(!rc) rc = csv_field(o, b->device_id, 0);
		if(!rc && b->certificate) {
			rc = batch_buf_add(&tmp, "", 0);
			if(!rc) rc = pem_body(&tmp, b->certificate);
			if(!rc) rc = csv_field(o, tmp.p, 0);
			tmp.n = 0;
			if(!rc) rc = batch_buf_add(&tmp, "", 0);
			if(!rc) rc = pem_body(&tmp, b->private_key ? b->private_key : "");
			if(!rc) rc = csv_field(o, tmp.p, 0);
			tmp.n = 0;
		} else if(!rc) {
			rc = csv_field(o, b->password ? b->password : "", 0);
		}
		if(!rc) rc = csv_field(o, prefix, 0);
		if(!rc) rc = batch_buf_add(&tmp, "", 0); /* "" when there are no channels */
		if(!rc) rc = channels_nvs(b, &tmp, cut);
		if(!rc) rc = csv_field(o, tmp.p, 1);
	}
	batch_buf_free(&tmp);
	if(rc) o->n = mark; /* no half record */
	return rc;
}

void batch_file_name(const char *serial, const char *device_id, char out[256])
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for(const unsigned char *s = (const unsigned char *)serial; *s; s++) {
		int plain = (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' ||
		            *s == '-' || (*s == '.' && s != (const unsigned char *)serial);
		if(o + 3 > 200) {
			snprintf(out, 256, "%s.json", device_id);
			return;
		}
		if(plain) out[o++] = (char)*s;
		else {
			out[o++] = '%';
			out[o++] = hex[*s >> 4];
			out[o++] = hex[*s & 15];
		}
	}
	snprintf(out + o, 256 - o, ".json");
}
