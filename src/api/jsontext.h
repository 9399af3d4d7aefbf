/* JSON written straight into a growing text buffer, byte for byte as jansson's
 * json_dumpb(..., JSON_COMPACT) writes the same values, for answers made in bulk (the device
 * batch writes a few kilobytes a line): no tree of small allocations to build, dump and
 * free per line. */
#ifndef IMP_API_JSONTEXT_H
#define IMP_API_JSONTEXT_H
#include <jansson.h>
#include <stddef.h>

typedef struct imp_jtext_s {
	char *s;
	size_t len, cap;
	size_t max;  /* the buffer never grows past this: the writer fails instead */
	int failed;  /* an allocation failed or max was reached: the text is incomplete */
} imp_jtext;

/* An empty buffer of at most max bytes; imp_jtext_free releases it (zeroing the text, which
 * may hold secrets). */
void imp_jtext_init(imp_jtext *t, size_t max);
void imp_jtext_free(imp_jtext *t);

void imp_jtext_raw(imp_jtext *t, const char *s, size_t n);
/* Room for n more bytes at once (a guess: writing past it still grows the buffer). */
void imp_jtext_reserve(imp_jtext *t, size_t n);
/* A JSON string of s (len bytes of UTF-8). */
void imp_jtext_str(imp_jtext *t, const char *s, size_t len);
/* A JSON string of s, which the server made of characters that need no escape (ids,
 * times, versions, names from fixed lists): copied without looking. */
void imp_jtext_plain(imp_jtext *t, const char *s);
/* ,"key": when comma, else "key": (key as for imp_jtext_plain: a name the code holds) */
void imp_jtext_key(imp_jtext *t, const char *key, int comma);
/* A string, or null when s is NULL. */
void imp_jtext_str_or_null(imp_jtext *t, const char *s);
/* Any value (NULL writes null). */
void imp_jtext_value(imp_jtext *t, const json_t *v);
void imp_jtext_int(imp_jtext *t, long long v);

/* The JSON object of text[0..len) when it is flat and plain: string keys and values of
 * printable ASCII without escapes, values also integers of at most 18 digits, true, false
 * or null, every key once. Anything else (nesting, escapes, other bytes, reals, a repeated
 * key, an error) gives NULL, and the caller parses with jansson, which answers the same
 * for the text taken here: json_loadb(text, len, JSON_REJECT_DUPLICATES, ...). A batch line
 * is nearly always such an object, and this reads it in a fifth of jansson's time. */
json_t *imp_json_load_flat(const char *text, size_t len);
/* A JSON text as the API reads bodies and batch lines: imp_json_load_flat, else jansson
 * (duplicate keys refused; err says where it failed). */
json_t *imp_json_load(const char *text, size_t len, json_error_t *err);

#endif
