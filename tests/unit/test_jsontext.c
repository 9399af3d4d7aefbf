/* Unit tests for the flat JSON reader (imp_json_load_flat): what it takes it reads exactly
 * as jansson does, and everything else it leaves to jansson. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/jsontext.h"

/* text is taken: the same object as jansson's, keys in the same order */
static void taken(const char *text)
{
	json_t *f = imp_json_load_flat(text, strlen(text));
	json_t *j = json_loadb(text, strlen(text), JSON_REJECT_DUPLICATES, NULL);
	if(!f) fail_msg("not taken: %s", text);
	assert_non_null(j);
	char *fs = json_dumps(f, JSON_COMPACT), *js = json_dumps(j, JSON_COMPACT);
	if(strcmp(fs, js) != 0) fail_msg("%s: read as %s, jansson %s", text, fs, js);
	free(fs);
	free(js);
	json_decref(f);
	json_decref(j);
}

static void left(const char *text, size_t len)
{
	json_t *f = imp_json_load_flat(text, len);
	if(f) fail_msg("taken: %.*s", (int)len, text);
}

static void flat_objects_taken(void **state)
{
	taken("{}");
	taken(" \t{ }\r\n");
	taken("{\"deviceTemplateId\":\"019abcde-1234-7abc-8def-0123456789ab\",\"serialNumber\":\"SN-0000000001\"}");
	taken("{\"a\":1,\"b\":-25,\"c\":0,\"d\":true,\"e\":false,\"f\":null,\"g\":\"\",\"\":\"empty key\"}");
	taken("{ \"z\" : \"last\" , \"a\" : \"first\" }");
	taken("{\"max\":999999999999999999,\"min\":-999999999999999999}");
	taken("{\"s\":\"printable ~!@#$%^&*()_+{}[]:;'<>,.?/| ascii\"}");
}

static void others_left(void **state)
{
	const char *const texts[] = {
		"", " ", "{", "}", "[]", "\"s\"", "1", "{\"a\":1", "{\"a\":1,}", "{,}", "{\"a\"}", "{\"a\":}",
		"{\"a\" 1}", "{a:1}", "{\"a\":1}x", "{\"a\":1}{}", "{\"a\":{}}", "{\"a\":[]}", "{\"a\":[1]}",
		"{\"a\":\"\\n\"}", "{\"a\\\"\":1}", "{\"a\":\"\xc3\xa9\"}", "{\"\xc3\xa9\":1}", "{\"a\":\"\x01\"}",
		"{\"a\":\"\x7f\"}", "{\"a\":1.5}", "{\"a\":1e3}", "{\"a\":1E3}", "{\"a\":01}", "{\"a\":-0}", "{\"a\":-}",
		"{\"a\":1000000000000000000}", "{\"a\":99999999999999999999}", "{\"a\":truex}", "{\"a\":tru}",
		"{\"a\":nul}", "{\"a\":True}", "{\"a\":1,\"a\":2}", "{\"a\":\"unterminated}", "{\"a\":1 2}",
	};
	for(size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) left(texts[i], strlen(texts[i]));
	/* a NUL inside a string, and text that ends inside the object */
	left("{\"a\":\"x\0y\"}", 11);
	left("{\"a\":\"xy\"}", 8);
}

/* Random texts of JSON's pieces: whenever the reader takes one, jansson reads it to the same
 * object; whenever jansson refuses one, the reader does not take it. */
static void random_texts_agree(void **state)
{
	static const char *const pieces[] = {"{", "}", "\"a\"", "\"b\"", "\"k 1\"", ":", ",", " ", "1", "-", "0",
	                                     "42", "true", "false", "null", "\"\\n\"", "[", "]", ".5", "\xc3\xa9",
	                                     "\"", "tru", "e", "\"\"", "\t"};
	size_t np = sizeof pieces / sizeof pieces[0];
	unsigned seed = 12345;
	size_t took = 0;
	char text[512];
	for(int round = 0; round < 300000; round++) {
		size_t len = 0;
		/* most texts start as an object, so many are taken */
		if(round % 4) {
			memcpy(text, "{\"k\":", 5);
			len = 5;
		}
		int n = 1 + (int)(rand_r(&seed) % 12);
		for(int i = 0; i < n; i++) {
			const char *p = pieces[rand_r(&seed) % np];
			size_t pl = strlen(p);
			memcpy(text + len, p, pl);
			len += pl;
		}
		if(round % 3 == 0) text[len++] = '}';
		json_t *f = imp_json_load_flat(text, len);
		json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
		if(f) {
			took++;
			if(!j) fail_msg("taken, jansson refuses: %.*s", (int)len, text);
			char *fs = json_dumps(f, JSON_COMPACT), *js = json_dumps(j, JSON_COMPACT);
			if(strcmp(fs, js) != 0) fail_msg("%.*s: read as %s, jansson %s", (int)len, text, fs, js);
			free(fs);
			free(js);
		}
		json_decref(f);
		json_decref(j);
	}
	/* the texts reach the reader's acceptance, not only its refusals */
	assert_true(took > 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(flat_objects_taken),
		cmocka_unit_test(others_left),
		cmocka_unit_test(random_texts_agree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
