/* Unit tests for src/core/rules.c: names, emails, custom field values, provisioning state.
 * Every limit is checked at the boundary: one at the limit, one over. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "core/rules.h"

/* A string of n copies of c (n < sizeof buf). */
static char *repeat(char *buf, size_t cap, char c, size_t n)
{
	assert_true(n < cap);
	memset(buf, c, n);
	buf[n] = '\0';
	return buf;
}

/* A string of n copies of the UTF-8 sequence u. Caller frees. */
static char *repeat_utf8(const char *u, size_t n)
{
	size_t l = strlen(u);
	char *s = malloc(l * n + 1);
	assert_non_null(s);
	for(size_t i = 0; i < n; i++) memcpy(s + i * l, u, l);
	s[l * n] = '\0';
	return s;
}

static void test_utf8_len(void **state)
{
	(void)state;
	assert_int_equal(imp_utf8_len(""), 0);
	assert_int_equal(imp_utf8_len("abc"), 3);
	assert_int_equal(imp_utf8_len("\xc3\xa9"), 1);                 /* é */
	assert_int_equal(imp_utf8_len("\xe6\x97\xa5\xe6\x9c\xac"), 2); /* 日本 */
	assert_int_equal(imp_utf8_len("a\xf0\x9f\x98\x80z"), 3);       /* a😀z */
}

/* ---- channel names ---- */

static void test_channel_name_valid(void **state)
{
	(void)state;
	char why[128];
	char buf[128];
	const char *ok[] = {"a", "temperature", "Temp-1", "a_b", "a/b", "a/b/c", "sensors/temp_1",
	                    "0", "A-Z_0/9", NULL};
	for(int i = 0; ok[i]; i++) {
		why[0] = '\0';
		if(!imp_channel_name_valid(ok[i], why, sizeof why)) fail_msg("refused valid channel name '%s': %s", ok[i], why);
	}
	assert_true(imp_channel_name_valid(repeat(buf, sizeof buf, 'c', IMP_CHANNEL_MAX), why, sizeof why));
	/* levels add up to the same limit */
	memset(buf, 'x', IMP_CHANNEL_MAX);
	buf[10] = '/';
	buf[IMP_CHANNEL_MAX] = '\0';
	assert_true(imp_channel_name_valid(buf, why, sizeof why));
}

static void test_channel_name_invalid(void **state)
{
	(void)state;
	char buf[128];
	const char *bad[] = {"", "_a", "_", "a+", "+", "#", "a/#", "a/+/b", "a//b", "a/", "/", "/a", "a b",
	                     "a.b", "a\\b", "a$", "caf\xc3\xa9", "a\tb", "a/b/", "//", NULL};
	for(int i = 0; bad[i]; i++) {
		char why[128] = "";
		if(imp_channel_name_valid(bad[i], why, sizeof why)) fail_msg("accepted invalid channel name '%s'", bad[i]);
		assert_true(why[0] != '\0');
	}
	char why[128] = "";
	assert_false(imp_channel_name_valid(repeat(buf, sizeof buf, 'c', IMP_CHANNEL_MAX + 1), why, sizeof why));
	assert_true(why[0] != '\0');
}

/* A reason that fits in a tiny buffer is truncated, never overflows. */
static void test_channel_name_small_why(void **state)
{
	(void)state;
	char why[4] = "zzz";
	assert_false(imp_channel_name_valid("a//b", why, sizeof why));
	assert_int_equal(strlen(why), 3);
}

/* ---- custom field names ---- */

static void test_custom_field_name_valid(void **state)
{
	(void)state;
	char why[128];
	char buf[128];
	const char *ok[] = {"a", "Z", "color", "batteryLevel", "a1", "a_b", "A_1_b_", "firmware2",
	                    "serial_number", "Name", NULL};
	for(int i = 0; ok[i]; i++) {
		why[0] = '\0';
		if(!imp_custom_field_name_valid(ok[i], why, sizeof why))
			fail_msg("refused valid field name '%s': %s", ok[i], why);
	}
	assert_true(imp_custom_field_name_valid(repeat(buf, sizeof buf, 'f', IMP_FIELD_NAME_MAX), why, sizeof why));
}

static void test_custom_field_name_invalid(void **state)
{
	(void)state;
	char buf[128];
	const char *bad[] = {"", "1a", "_a", "-a", "a-b", "a b", "a.b", "a/b", "a$", "caf\xc3\xa9", " a", NULL};
	for(int i = 0; bad[i]; i++) {
		char why[128] = "";
		if(imp_custom_field_name_valid(bad[i], why, sizeof why)) fail_msg("accepted invalid field name '%s'", bad[i]);
		assert_true(why[0] != '\0');
	}
	char why[128] = "";
	assert_false(imp_custom_field_name_valid(repeat(buf, sizeof buf, 'f', IMP_FIELD_NAME_MAX + 1), why, sizeof why));
	assert_true(why[0] != '\0');
}

static void test_custom_field_name_reserved(void **state)
{
	(void)state;
	/* Every name the device object uses itself. */
	const char *reserved[] = {"id", "accountId", "deviceTemplateId", "organizationId", "serialNumber",
	                          "provisioningState", "connected", "lastConnected", "firmwareVersion",
	                          "disabled", "name", "deviceVersion", "location", "purchaseDate", "channels",
	                          "created", "createdById", "lastModified", "lastModifiedById", "version", NULL};
	for(int i = 0; reserved[i]; i++) {
		char why[128] = "";
		if(imp_custom_field_name_valid(reserved[i], why, sizeof why)) fail_msg("accepted reserved name '%s'", reserved[i]);
		assert_non_null(strstr(why, "built-in"));
	}
	/* Near misses are ordinary names. */
	char why[128];
	assert_true(imp_custom_field_name_valid("ids", why, sizeof why));
	assert_true(imp_custom_field_name_valid("name2", why, sizeof why));
	assert_true(imp_custom_field_name_valid("versions", why, sizeof why));
}

/* ---- email ---- */

static void test_email(void **state)
{
	(void)state;
	const char *ok[] = {"a@b", "user@example.com", "first.last+tag@sub.example.org", "x@localhost", NULL};
	for(int i = 0; ok[i]; i++) {
		if(!imp_email_valid(ok[i])) fail_msg("refused valid email '%s'", ok[i]);
	}
	const char *bad[] = {"", "a", "ab", "@b", "@bc", "a@", "abc@", "a@b@c", "a b@c.d", "a@b c", "a@b\t",
	                     "\ta@b", "a@b\n", "a@b\x7f", "abc", NULL};
	for(int i = 0; bad[i]; i++) {
		if(imp_email_valid(bad[i])) fail_msg("accepted invalid email '%s'", bad[i]);
	}
	/* 254 characters in all is the most; 255 is one over. */
	char buf[300];
	memset(buf, 'a', sizeof buf);
	memcpy(buf + IMP_EMAIL_MAX - 12, "@example.com", 12);
	buf[IMP_EMAIL_MAX] = '\0';
	assert_int_equal(strlen(buf), IMP_EMAIL_MAX);
	assert_true(imp_email_valid(buf));
	memset(buf, 'a', sizeof buf);
	memcpy(buf + IMP_EMAIL_MAX + 1 - 12, "@example.com", 12);
	buf[IMP_EMAIL_MAX + 1] = '\0';
	assert_false(imp_email_valid(buf));
}

/* ---- custom field types and values ---- */

static void test_field_type_parse(void **state)
{
	(void)state;
	assert_int_equal(imp_field_type_parse("string"), IMP_FIELD_STRING);
	assert_int_equal(imp_field_type_parse("text"), IMP_FIELD_TEXT);
	assert_int_equal(imp_field_type_parse("integer"), IMP_FIELD_INTEGER);
	assert_int_equal(imp_field_type_parse("number"), IMP_FIELD_NUMBER);
	assert_int_equal(imp_field_type_parse("boolean"), IMP_FIELD_BOOLEAN);
	assert_int_equal(imp_field_type_parse("datetime"), IMP_FIELD_DATETIME);
	const char *bad[] = {"", "String", "TEXT", "int", "float", "bool", "date", "datetime ", "json", NULL};
	for(int i = 0; bad[i]; i++) assert_int_equal(imp_field_type_parse(bad[i]), IMP_FIELD_INVALID);
}

/* Checks v (a JSON text, decoded here) against type t; expects rc. */
static void check_value(imp_field_type t, const char *json, int expect, int line)
{
	json_error_t jerr;
	json_t *v = json_loads(json, JSON_DECODE_ANY, &jerr);
	if(!v) fail_msg("line %d: bad JSON in test: %s", line, json);
	char why[256] = "";
	int rc = imp_field_value_check(t, v, why, sizeof why);
	json_decref(v);
	if(rc != expect) fail_msg("line %d: type %d value %.60s: got %d, want %d (%s)", line, (int)t, json, rc, expect, why);
	if(rc) assert_true(why[0] != '\0');
}
#define CHECK(t, json, expect) check_value(t, json, expect, __LINE__)

/* Checks a string value of n copies of the UTF-8 sequence u. */
static void check_string_len(imp_field_type t, const char *u, size_t n, int expect)
{
	char *s = repeat_utf8(u, n);
	json_t *v = json_string(s);
	assert_non_null(v);
	char why[256] = "";
	int rc = imp_field_value_check(t, v, why, sizeof why);
	if(rc != expect) fail_msg("type %d, %zu x '%s': got %d, want %d", (int)t, n, u, rc, expect);
	json_decref(v);
	free(s);
}

static void test_value_null_always_ok(void **state)
{
	(void)state;
	for(int t = IMP_FIELD_STRING; t < IMP_FIELD_INVALID; t++) CHECK((imp_field_type)t, "null", 0);
}

static void test_value_string(void **state)
{
	(void)state;
	CHECK(IMP_FIELD_STRING, "\"\"", 0);
	CHECK(IMP_FIELD_STRING, "\"blue\"", 0);
	CHECK(IMP_FIELD_STRING, "1", 1);
	CHECK(IMP_FIELD_STRING, "1.5", 1);
	CHECK(IMP_FIELD_STRING, "true", 1);
	CHECK(IMP_FIELD_STRING, "[]", 1);
	CHECK(IMP_FIELD_STRING, "{}", 1);
	check_string_len(IMP_FIELD_STRING, "s", IMP_STRING_MAX, 0);
	check_string_len(IMP_FIELD_STRING, "s", IMP_STRING_MAX + 1, 2);
	/* The limit counts characters, not bytes. */
	check_string_len(IMP_FIELD_STRING, "\xc3\xa9", IMP_STRING_MAX, 0);
	check_string_len(IMP_FIELD_STRING, "\xc3\xa9", IMP_STRING_MAX + 1, 2);
	check_string_len(IMP_FIELD_STRING, "\xf0\x9f\x98\x80", IMP_STRING_MAX, 0);
}

static void test_value_text(void **state)
{
	(void)state;
	CHECK(IMP_FIELD_TEXT, "\"a long story\"", 0);
	CHECK(IMP_FIELD_TEXT, "42", 1);
	CHECK(IMP_FIELD_TEXT, "false", 1);
	check_string_len(IMP_FIELD_TEXT, "t", IMP_STRING_MAX + 1, 0); /* text is not string */
	check_string_len(IMP_FIELD_TEXT, "t", IMP_TEXT_MAX, 0);
	check_string_len(IMP_FIELD_TEXT, "t", IMP_TEXT_MAX + 1, 2);
	check_string_len(IMP_FIELD_TEXT, "\xe6\x97\xa5", IMP_TEXT_MAX, 0);
	check_string_len(IMP_FIELD_TEXT, "\xe6\x97\xa5", IMP_TEXT_MAX + 1, 2);
}

static void test_value_integer(void **state)
{
	(void)state;
	CHECK(IMP_FIELD_INTEGER, "3", 0);
	CHECK(IMP_FIELD_INTEGER, "0", 0);
	CHECK(IMP_FIELD_INTEGER, "-17", 0);
	CHECK(IMP_FIELD_INTEGER, "9223372036854775807", 0);
	CHECK(IMP_FIELD_INTEGER, "3.0", 0);   /* a whole number written as a real */
	CHECK(IMP_FIELD_INTEGER, "-2.0", 0);
	CHECK(IMP_FIELD_INTEGER, "3e2", 0);
	CHECK(IMP_FIELD_INTEGER, "3.5", 1);
	CHECK(IMP_FIELD_INTEGER, "0.1", 1);
	CHECK(IMP_FIELD_INTEGER, "-0.5", 1);
	CHECK(IMP_FIELD_INTEGER, "1e300", 1); /* whole, but past exact integers */
	CHECK(IMP_FIELD_INTEGER, "\"3\"", 1);
	CHECK(IMP_FIELD_INTEGER, "true", 1);
	CHECK(IMP_FIELD_INTEGER, "[3]", 1);
	CHECK(IMP_FIELD_INTEGER, "{}", 1);
}

static void test_value_number(void **state)
{
	(void)state;
	CHECK(IMP_FIELD_NUMBER, "3", 0);
	CHECK(IMP_FIELD_NUMBER, "3.5", 0);
	CHECK(IMP_FIELD_NUMBER, "-1e-9", 0);
	CHECK(IMP_FIELD_NUMBER, "1e300", 0);
	CHECK(IMP_FIELD_NUMBER, "\"3.5\"", 1);
	CHECK(IMP_FIELD_NUMBER, "false", 1);
	CHECK(IMP_FIELD_NUMBER, "[]", 1);
}

static void test_value_boolean(void **state)
{
	(void)state;
	CHECK(IMP_FIELD_BOOLEAN, "true", 0);
	CHECK(IMP_FIELD_BOOLEAN, "false", 0);
	CHECK(IMP_FIELD_BOOLEAN, "1", 1);
	CHECK(IMP_FIELD_BOOLEAN, "0", 1);
	CHECK(IMP_FIELD_BOOLEAN, "\"true\"", 1);
	CHECK(IMP_FIELD_BOOLEAN, "{}", 1);
}

static void test_value_datetime(void **state)
{
	(void)state;
	CHECK(IMP_FIELD_DATETIME, "\"2026-11-25T20:41:28.123Z\"", 0);
	CHECK(IMP_FIELD_DATETIME, "\"2026-11-25T20:41:28Z\"", 0);
	CHECK(IMP_FIELD_DATETIME, "\"2026-11-25T20:41:28+01:00\"", 0);
	CHECK(IMP_FIELD_DATETIME, "\"2026-11-25T20:41:28.5-05:30\"", 0);
	CHECK(IMP_FIELD_DATETIME, "\"2026-11-25\"", 0);
	CHECK(IMP_FIELD_DATETIME, "\"2024-02-29\"", 0);
	CHECK(IMP_FIELD_DATETIME, "\"2026-02-30\"", 2);
	CHECK(IMP_FIELD_DATETIME, "\"2026-02-29\"", 2);
	CHECK(IMP_FIELD_DATETIME, "\"2026-11-25T25:00:00Z\"", 2);
	CHECK(IMP_FIELD_DATETIME, "\"2026-11-25T20:41:28\"", 2);
	CHECK(IMP_FIELD_DATETIME, "\"yesterday\"", 2);
	CHECK(IMP_FIELD_DATETIME, "\"\"", 2);
	CHECK(IMP_FIELD_DATETIME, "1764103288123", 1);
	CHECK(IMP_FIELD_DATETIME, "true", 1);
	CHECK(IMP_FIELD_DATETIME, "{}", 1);
}

static void test_value_unknown_type(void **state)
{
	(void)state;
	CHECK(IMP_FIELD_INVALID, "\"x\"", 2);
	CHECK(IMP_FIELD_INVALID, "1", 2);
}

/* ---- provisioning state ---- */

static void test_state_names(void **state)
{
	(void)state;
	assert_string_equal(imp_state_name(IMP_STATE_DEFINED), "defined");
	assert_string_equal(imp_state_name(IMP_STATE_ACTIVATED), "activated");
	assert_string_equal(imp_state_name(IMP_STATE_ASSOCIATED), "associated");
	assert_int_equal(imp_state_parse("defined"), IMP_STATE_DEFINED);
	assert_int_equal(imp_state_parse("activated"), IMP_STATE_ACTIVATED);
	assert_int_equal(imp_state_parse("associated"), IMP_STATE_ASSOCIATED);
	for(int s = IMP_STATE_DEFINED; s <= IMP_STATE_ASSOCIATED; s++)
		assert_int_equal(imp_state_parse(imp_state_name((imp_state)s)), s);
	const char *bad[] = {"", "Defined", "ACTIVATED", "disabled", "registered", "associated ", "define", NULL};
	for(int i = 0; bad[i]; i++) assert_int_equal(imp_state_parse(bad[i]), -1);
}

static void test_state_advance_only_forward(void **state)
{
	(void)state;
	const imp_state all[] = {IMP_STATE_DEFINED, IMP_STATE_ACTIVATED, IMP_STATE_ASSOCIATED};
	for(int i = 0; i < 3; i++) {
		for(int j = 0; j < 3; j++) {
			imp_state got = imp_state_advance(all[i], all[j]);
			assert_int_equal(got, j > i ? all[j] : all[i]);
		}
	}
	/* The lifecycle of ARCHITECTURE.md, and a regeneration that must not move it back. */
	imp_state s = IMP_STATE_DEFINED;
	s = imp_state_advance(s, IMP_STATE_ACTIVATED);
	assert_int_equal(s, IMP_STATE_ACTIVATED);
	s = imp_state_advance(s, IMP_STATE_DEFINED);
	assert_int_equal(s, IMP_STATE_ACTIVATED);
	s = imp_state_advance(s, IMP_STATE_ASSOCIATED);
	assert_int_equal(s, IMP_STATE_ASSOCIATED);
	s = imp_state_advance(s, IMP_STATE_ACTIVATED);
	assert_int_equal(s, IMP_STATE_ASSOCIATED);
	/* Association straight from defined skips activated. */
	assert_int_equal(imp_state_advance(IMP_STATE_DEFINED, IMP_STATE_ASSOCIATED), IMP_STATE_ASSOCIATED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_len),
		cmocka_unit_test(test_channel_name_valid),
		cmocka_unit_test(test_channel_name_invalid),
		cmocka_unit_test(test_channel_name_small_why),
		cmocka_unit_test(test_custom_field_name_valid),
		cmocka_unit_test(test_custom_field_name_invalid),
		cmocka_unit_test(test_custom_field_name_reserved),
		cmocka_unit_test(test_email),
		cmocka_unit_test(test_field_type_parse),
		cmocka_unit_test(test_value_null_always_ok),
		cmocka_unit_test(test_value_string),
		cmocka_unit_test(test_value_text),
		cmocka_unit_test(test_value_integer),
		cmocka_unit_test(test_value_number),
		cmocka_unit_test(test_value_boolean),
		cmocka_unit_test(test_value_datetime),
		cmocka_unit_test(test_value_unknown_type),
		cmocka_unit_test(test_state_names),
		cmocka_unit_test(test_state_advance_only_forward),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
