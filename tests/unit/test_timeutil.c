/* Unit tests for src/core/timeutil.c: ISO-8601 formatting and parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/timeutil.h"

/* 2025-11-25T20:41:28.123Z */
#define T0 1764103288123LL

static void test_format_known(void **state)
{
	(void)state;
	char out[IMP_ISO_LEN + 1];
	imp_iso8601(0, out);
	assert_string_equal(out, "1970-01-01T00:00:00.000Z");
	imp_iso8601((uint64_t)T0, out);
	assert_string_equal(out, "2025-11-25T20:41:28.123Z");
	imp_iso8601(951782400000ULL + 5, out); /* leap day of a century leap year */
	assert_string_equal(out, "2000-02-29T00:00:00.005Z");
	imp_iso8601(253402300799999ULL, out);
	assert_string_equal(out, "9999-12-31T23:59:59.999Z");
	assert_int_equal(strlen(out), IMP_ISO_LEN);
}

static void test_round_trip(void **state)
{
	(void)state;
	const uint64_t samples[] = {0, 1, 999, 1000, 86399999, 86400000, 951782400000ULL, (uint64_t)T0,
	                            1767225599999ULL, 4102444800000ULL, 253402300799999ULL};
	for(size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
		char out[IMP_ISO_LEN + 1];
		int64_t back = -1;
		imp_iso8601(samples[i], out);
		if(imp_iso8601_parse(out, &back)) fail_msg("could not parse own output %s", out);
		assert_int_equal(back, (int64_t)samples[i]);
	}
	/* and now, and a spread of times across the years */
	for(uint64_t ms = 3; ms < 4102444800000ULL; ms += 7919ULL * 1000 * 3600 + 17) {
		char out[IMP_ISO_LEN + 1];
		int64_t back;
		imp_iso8601(ms, out);
		assert_int_equal(imp_iso8601_parse(out, &back), 0);
		assert_int_equal(back, (int64_t)ms);
	}
	uint64_t now = imp_now_ms();
	char out[IMP_ISO_LEN + 1];
	int64_t back;
	imp_iso8601(now, out);
	assert_int_equal(imp_iso8601_parse(out, &back), 0);
	assert_int_equal(back, (int64_t)now);
}

/* Against the C library's calendar, every 37 hours and 1 ms from 1970 to 2400 (leap days,
 * century years, 2100 and 2200 not leap, 2000 and 2400 leap). */
static void test_format_matches_gmtime(void **state)
{
	(void)state;
	for(uint64_t ms = 0; ms < 13569465600000ULL; ms += 37ULL * 3600 * 1000 + 1) {
		char out[IMP_ISO_LEN + 1], want[64];
		imp_iso8601(ms, out);
		time_t t = (time_t)(ms / 1000);
		struct tm tm;
		gmtime_r(&t, &tm);
		snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
		         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
		if(strcmp(out, want) != 0) fail_msg("%llu: %s, want %s", (unsigned long long)ms, out, want);
	}
	char out[IMP_ISO_LEN + 1];
	imp_iso8601(UINT64_MAX, out);   /* past year 9999: the last time four digits hold */
	assert_string_equal(out, "9999-12-31T23:59:59.999Z");
}

static void expect_ms(const char *s, int64_t want, int line)
{
	int64_t ms = -42;
	if(imp_iso8601_parse(s, &ms)) fail_msg("line %d: refused '%s'", line, s);
	if(ms != want) fail_msg("line %d: '%s' gave %lld, want %lld", line, s, (long long)ms, (long long)want);
}
#define EXPECT_MS(s, want) expect_ms(s, want, __LINE__)

static void test_parse_forms(void **state)
{
	(void)state;
	EXPECT_MS("2025-11-25T20:41:28.123Z", T0);
	EXPECT_MS("2025-11-25t20:41:28.123z", T0);
	EXPECT_MS("2025-11-25T20:41:28Z", T0 - 123);
	/* fractions: 1 to 9 digits, milliseconds kept */
	EXPECT_MS("2025-11-25T20:41:28.1Z", T0 - 23);
	EXPECT_MS("2025-11-25T20:41:28.12Z", T0 - 3);
	EXPECT_MS("2025-11-25T20:41:28.1234Z", T0);
	EXPECT_MS("2025-11-25T20:41:28.123999999Z", T0);
	EXPECT_MS("2025-11-25T20:41:28.000Z", T0 - 123);
	/* offsets: local time ahead of UTC by the offset */
	EXPECT_MS("2025-11-25T21:41:28.123+01:00", T0);
	EXPECT_MS("2025-11-25T15:11:28.123-05:30", T0);
	EXPECT_MS("2025-11-26T05:41:28.123+09:00", T0);
	EXPECT_MS("2025-11-25T20:41:28.123+00:00", T0);
	EXPECT_MS("2025-11-25T20:41:28.123-00:00", T0);
	EXPECT_MS("2025-11-25T20:41:28+23:59", T0 - 123 - (23 * 60 + 59) * 60000LL);
	/* plain dates are midnight UTC */
	EXPECT_MS("1970-01-01", 0);
	EXPECT_MS("2025-11-25", T0 - (20 * 3600 + 41 * 60 + 28) * 1000LL - 123);
	EXPECT_MS("2024-02-29", 1709164800000LL);
	EXPECT_MS("2000-02-29", 951782400000LL);
	/* before the epoch */
	EXPECT_MS("1969-12-31T23:59:59.999Z", -1);
	EXPECT_MS("1969-12-31", -86400000LL);
	/* the edges of a day */
	EXPECT_MS("2026-01-01T00:00:00Z", 1767225600000LL);
	EXPECT_MS("2025-12-31T23:59:59.999Z", 1767225599999LL);
	/* a leap second is read as the next second */
	EXPECT_MS("2016-12-31T23:59:60Z", 1483228800000LL);
}

static void test_parse_invalid(void **state)
{
	(void)state;
	const char *bad[] = {
		"", "garbage", "2026", "2026-11", "2026-1-01", "2026-01-1", "26-01-01", "2026/01/01",
		"20260101", "2026-01-01T", "2026-01-01Z", "2026-01-01x",
		/* dates that do not exist */
		"2026-02-30", "2026-02-29", "1900-02-29", "2026-04-31", "2026-13-01", "2026-00-10",
		"2026-01-00", "2026-01-32", "0000-01-01",
		/* times that do not exist */
		"2026-01-01T25:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z",
		"2026-01-01T23:59:61Z", "2026-01-01T1:00:00Z", "2026-01-01T01:00Z", "2026-01-01T01:00:0Z",
		/* zones */
		"2026-01-01T00:00:00", "2026-01-01T00:00:00+01", "2026-01-01T00:00:00+0100",
		"2026-01-01T00:00:00+01:0", "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00+01:60",
		"2026-01-01T00:00:00+01:00Z", "2026-01-01T00:00:00ZZ", "2026-01-01T00:00:00Z ",
		"2026-01-01T00:00:00 Z", "2026-01-01T00:00:00UTC", "2026-01-01T00:00:00+aa:bb",
		/* fractions */
		"2026-01-01T00:00:00.Z", "2026-01-01T00:00:00.1234567890Z", "2026-01-01T00:00:00.12a Z",
		"2026-01-01T00:00:00,123Z",
		/* signs and spaces inside numbers */
		"+2026-01-01", "-2026-01-01", "2026-+1-01", "2026- 1-01", " 2026-01-01", "2026-01-01 ",
		"2026-01-01T-1:00:00Z", NULL};
	for(int i = 0; bad[i]; i++) {
		int64_t ms = 77;
		if(imp_iso8601_parse(bad[i], &ms) == 0) fail_msg("accepted '%s' as %lld", bad[i], (long long)ms);
	}
}

static void test_clocks(void **state)
{
	(void)state;
	uint64_t a = imp_now_ms();
	assert_true(a > 1700000000000ULL); /* after 2023 */
	uint64_t m1 = imp_mono_us();
	uint64_t m2 = imp_mono_us();
	assert_true(m2 >= m1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_known),
		cmocka_unit_test(test_format_matches_gmtime),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_parse_forms),
		cmocka_unit_test(test_parse_invalid),
		cmocka_unit_test(test_clocks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
