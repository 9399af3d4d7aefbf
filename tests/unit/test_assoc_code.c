/* Association codes (src/core/assoc_code.c): the hyphenated form, the forgiving reading
 * (case, hyphens, I/L/O), what is refused, and the randomness of new codes: 100,000 of
 * them without a duplicate, every symbol at every position about equally often. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/assoc_code.h"

static void format_known(void **state)
{
	char out[IMP_ASSOC_SHOWN + 1];
	imp_assoc_code_format(0, out);
	assert_string_equal(out, "0000-0000-0000");
	imp_assoc_code_format(1, out);
	assert_string_equal(out, "0000-0000-0001");
	imp_assoc_code_format((UINT64_C(1) << 60) - 1, out);
	assert_string_equal(out, "ZZZZ-ZZZZ-ZZZZ");
	imp_assoc_code_format(UINT64_C(31) << 50, out);
	assert_string_equal(out, "0Z00-0000-0000");
	/* bits above the 60th are not part of the code */
	imp_assoc_code_format(UINT64_C(0xF) << 60, out);
	assert_string_equal(out, "0000-0000-0000");
}

typedef struct {
	const char *in;
	const char *canon; /* NULL: refused */
} pcase;

static const pcase PARSE[] = {
	{"7KQ2-M9XD-4RTA", "7KQ2M9XD4RTA"},
	{"7kq2-m9xd-4rta", "7KQ2M9XD4RTA"},
	{"7KQ2M9XD4RTA", "7KQ2M9XD4RTA"},
	{"7KQ2 M9XD 4RTA", "7KQ2M9XD4RTA"},
	{"7-K-Q-2-M-9-X-D-4-R-T-A", "7KQ2M9XD4RTA"},
	{"iIlL-oO00-1111", "111100001111"},
	{"7KQ2-M9XD-4RT", NULL},          /* 11 symbols */
	{"7KQ2-M9XD-4RTAA", NULL},        /* 13 */
	{"7KQ2-M9XD-4RTU", NULL},         /* U is not Crockford */
	{"7KQ2-M9XD-4RT*", NULL},
	{"7KQ2_M9XD_4RTA", NULL},
	{"", NULL},
	{"------------", NULL},
	{"7KQ2-M9XD-4RT\xc3\xa9", NULL},
	{"7KQ2-M9XD-4RTA---------------------------------------------------------------", NULL}, /* over 64 */
};

static void parse_table(void **state)
{
	for(size_t i = 0; i < sizeof PARSE / sizeof PARSE[0]; i++) {
		char canon[IMP_ASSOC_SYMBOLS + 1] = "x";
		imp_err rc = imp_assoc_code_parse(PARSE[i].in, canon);
		if(PARSE[i].canon) {
			if(rc) fail_msg("case %zu (%s) refused", i, PARSE[i].in);
			assert_string_equal(canon, PARSE[i].canon);
		} else {
			if(rc != IMP_ERR_BAD_REQUEST) fail_msg("case %zu (%s) accepted as %s", i, PARSE[i].in, canon);
			assert_string_equal(canon, "");
		}
	}
	char canon[IMP_ASSOC_SYMBOLS + 1];
	assert_int_equal(imp_assoc_code_parse(NULL, canon), IMP_ERR_BAD_REQUEST);
}

static int cmp(const void *a, const void *b) { return memcmp(a, b, IMP_ASSOC_SHOWN + 1); }

#define N 100000

/* Chi-square over 12 positions x 32 symbols (371 + 1 = 372 degrees of freedom as 12
 * independent tests of 31): 462.05 is the value a uniform source exceeds with
 * probability 0.001. */
static void random_codes(void **state)
{
	char (*codes)[IMP_ASSOC_SHOWN + 1] = malloc((size_t)N * sizeof *codes);
	static unsigned counts[IMP_ASSOC_SYMBOLS][32];
	assert_non_null(codes);
	for(int i = 0; i < N; i++) {
		char canon[IMP_ASSOC_SYMBOLS + 1];
		assert_int_equal(imp_assoc_code_new(codes[i]), IMP_OK);
		assert_int_equal(strlen(codes[i]), IMP_ASSOC_SHOWN);
		assert_int_equal(codes[i][4], '-');
		assert_int_equal(codes[i][9], '-');
		assert_int_equal(imp_assoc_code_parse(codes[i], canon), IMP_OK);
		for(int p = 0; p < IMP_ASSOC_SYMBOLS; p++) {
			const char *at = strchr(imp_assoc_alphabet, canon[p]);
			assert_non_null(at);
			counts[p][at - imp_assoc_alphabet]++;
		}
	}
	qsort(codes, N, sizeof *codes, cmp);
	for(int i = 1; i < N; i++) {
		if(strcmp(codes[i - 1], codes[i]) == 0) fail_msg("duplicate code %s", codes[i]);
	}
	free(codes);
	double chi = 0, expect = N / 32.0;
	for(int p = 0; p < IMP_ASSOC_SYMBOLS; p++) {
		for(int s = 0; s < 32; s++) chi += (counts[p][s] - expect) * (counts[p][s] - expect) / expect;
	}
	if(chi > 462.05) fail_msg("symbols unevenly spread: chi-square %.1f over 372 degrees of freedom", chi);
	/* and the test can fail: a source that never draws one symbol */
	counts[0][0] = 0;
	counts[0][1] += (unsigned)expect;
	chi = 0;
	for(int p = 0; p < IMP_ASSOC_SYMBOLS; p++) {
		for(int s = 0; s < 32; s++) chi += (counts[p][s] - expect) * (counts[p][s] - expect) / expect;
	}
	assert_true(chi > 462.05);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(format_known),
		cmocka_unit_test(parse_table),
		cmocka_unit_test(random_codes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
