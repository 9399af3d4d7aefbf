/* Unit tests for src/core/ids.c: UUIDv7 layout (RFC 9562), uniqueness and order. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/ids.h"
#include "core/timeutil.h"

#define MANY 100000

static int hexval(char c)
{
	if(c >= '0' && c <= '9') return c - '0';
	if(c >= 'a' && c <= 'f') return c - 'a' + 10;
	return -1;
}

/* Checks the canonical lowercase form of a v7 id; returns its 48-bit millisecond time. */
static uint64_t check_v7(const char *s)
{
	assert_int_equal(strlen(s), IMP_UUID_LEN);
	uint64_t ms = 0;
	int nhex = 0;
	for(int i = 0; i < IMP_UUID_LEN; i++) {
		if(i == 8 || i == 13 || i == 18 || i == 23) {
			assert_int_equal(s[i], '-');
			continue;
		}
		int v = hexval(s[i]);
		if(v < 0) fail_msg("id %s: character %d is not lowercase hex", s, i);
		if(nhex < 12) ms = ms << 4 | (uint64_t)v;
		nhex++;
	}
	assert_int_equal(nhex, 32);
	assert_int_equal(s[14], '7');                  /* version 7 */
	assert_non_null(strchr("89ab", s[19]));         /* variant 10xx */
	assert_true(imp_id_valid(s));
	return ms;
}

static void test_format(void **state)
{
	(void)state;
	uint64_t before = imp_now_ms();
	imp_id id;
	assert_int_equal(imp_id_new(&id), IMP_OK);
	uint64_t after = imp_now_ms();
	uint64_t ms = check_v7(id.s);
	/* The time field is the creation time (the per-millisecond counter may run it a
	 * little ahead when many ids are made at once). */
	assert_true(ms >= before);
	assert_true(ms <= after + 1000);
}

static void test_variant_bits_over_many(void **state)
{
	(void)state;
	/* The random bits under the version and variant must never leak into them. */
	for(int i = 0; i < 2000; i++) {
		imp_id id;
		assert_int_equal(imp_id_new(&id), IMP_OK);
		check_v7(id.s);
	}
}

static void test_unique_and_increasing(void **state)
{
	(void)state;
	imp_id prev, cur;
	assert_int_equal(imp_id_new(&prev), IMP_OK);
	for(int i = 0; i < MANY; i++) {
		assert_int_equal(imp_id_new(&cur), IMP_OK);
		if(strcmp(prev.s, cur.s) >= 0) fail_msg("id %d not after the one before: %s then %s", i, prev.s, cur.s);
		/* Sorted as strings, so check a sample of them in full too. */
		if(i % 997 == 0) check_v7(cur.s);
		prev = cur;
	}
	/* Time in the ids stays near the clock even after many in a burst. */
	uint64_t now = imp_now_ms();
	uint64_t ms = check_v7(prev.s);
	assert_true(ms <= now + 60000);
}

#define THREADS 4
#define PER_THREAD 20000

static void *make_ids(void *arg)
{
	imp_id *out = arg;
	for(int i = 0; i < PER_THREAD; i++) {
		if(imp_id_new(&out[i])) return (void *)1;
		if(i && strcmp(out[i - 1].s, out[i].s) >= 0) return (void *)2;
	}
	return NULL;
}

static int cmp_id(const void *a, const void *b) { return strcmp(((const imp_id *)a)->s, ((const imp_id *)b)->s); }

static void test_unique_across_threads(void **state)
{
	(void)state;
	imp_id *all = calloc(THREADS * PER_THREAD, sizeof *all);
	assert_non_null(all);
	pthread_t t[THREADS];
	for(int i = 0; i < THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, make_ids, all + i * PER_THREAD), 0);
	for(int i = 0; i < THREADS; i++) {
		void *rv;
		assert_int_equal(pthread_join(t[i], &rv), 0);
		assert_null(rv); /* each thread saw its own ids increase */
	}
	qsort(all, THREADS * PER_THREAD, sizeof *all, cmp_id);
	for(int i = 1; i < THREADS * PER_THREAD; i++) {
		if(strcmp(all[i - 1].s, all[i].s) == 0) fail_msg("duplicate id %s", all[i].s);
	}
	free(all);
}

static void test_valid(void **state)
{
	(void)state;
	const char *ok[] = {
		"01890a5d-ac96-774b-bcce-b302099a8057",
		"01890A5D-AC96-774B-BCCE-B302099A8057", /* either case */
		"01890a5d-AC96-774b-bcCE-b302099a8057",
		"f47ac10b-58cc-4372-a567-0e02b2c3d479", /* version 4 too */
		"00000000-0000-0000-0000-000000000000",
		"ffffffff-ffff-ffff-ffff-ffffffffffff",
		NULL};
	for(int i = 0; ok[i]; i++) {
		if(!imp_id_valid(ok[i])) fail_msg("refused %s", ok[i]);
	}
	const char *bad[] = {
		"",
		"not-a-uuid",
		"01890a5d-ac96-774b-bcce-b302099a805",   /* 35 */
		"01890a5d-ac96-774b-bcce-b302099a80577", /* 37 */
		"01890a5dac96774bbcceb302099a8057",      /* no hyphens */
		"01890a5d-ac96-774b-bcce_b302099a8057",
		"01890a5-dac96-774b-bcce-b302099a8057",  /* hyphen out of place */
		"01890a5d-ac96-774b-bcceb-302099a8057",
		"g1890a5d-ac96-774b-bcce-b302099a8057",  /* not hex */
		"01890a5d-ac96-774b-bcce-b302099a805z",
		"{1890a5d-ac96-774b-bcce-b302099a805}",
		" 1890a5d-ac96-774b-bcce-b302099a8057",
		"01890a5d-ac96-774b-bcce-b302099a805 ",
		"01890a5d-ac96-774b-bcce-b302099a8057\n",
		"01890a5d-+c96-774b-bcce-b302099a8057",
		"--------------------------------",
		"------------------------------------",
		NULL};
	for(int i = 0; bad[i]; i++) {
		if(imp_id_valid(bad[i])) fail_msg("accepted '%s'", bad[i]);
	}
	assert_false(imp_id_valid(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_variant_bits_over_many),
		cmocka_unit_test(test_unique_and_increasing),
		cmocka_unit_test(test_unique_across_threads),
		cmocka_unit_test(test_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
