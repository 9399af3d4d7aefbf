/* Table-driven cases for the end-to-end tests of templates, devices and organizations:
 * one server per test file (group_setup/group_teardown), calls with the admin key, and
 * checks of status, error code, details target and values. Paths and bodies name earlier
 * ids as {VAR} and long strings as {c*N}. */
#ifndef IMP_TEST_CASES_H
#define IMP_TEST_CASES_H
#include <jansson.h>
#include <stddef.h>

#include "harness.h"

typedef struct {
	char key[32];
	char val[128];
} tvar;
typedef struct {
	const char *method, *path, *body;
	long status;
	const char *code;   /* error code, NULL for success */
	const char *target; /* error.details[0].target, or NULL */
	const char *at;     /* a dotted path whose value to check, or NULL */
	const char *want;   /* its value as compact JSON ({VARS} expanded) */
	const char *save;   /* variable to set to the created/updated entity's id, or NULL */
} tcase;
#define K(m, p, b, st) {m, p, b, st, NULL, NULL, NULL, NULL, NULL}
#define V(m, p, b, st, at, want) {m, p, b, st, NULL, NULL, at, want, NULL}
#define VS(m, p, b, st, at, want, save) {m, p, b, st, NULL, NULL, at, want, save}
#define E(m, p, b, st, code, target) {m, p, b, st, code, target, NULL, NULL, NULL}

#define UNUSED __attribute__((unused))

extern h_server S;
extern const char *TOKEN;
extern tvar VARS[64];
extern size_t NVARS;
void setvar(const char *key, const char *val);
const char *getvar(const char *key);
char *expand(const char *in);
h_resp api_as(const char *token, const char *method, const char *path, const char *body, const char *extra);
h_resp api(const char *method, const char *path, const char *body);
void show(char *buf, size_t cap, const char *s);
void check_resp(const h_resp *r, long status, const char *code, const char *target, const char *what);
char *text_at(const h_resp *r, const char *path);
void check_at(const h_resp *r, const char *path, const char *want_json, const char *what);
void run_cases(const tcase *cases, size_t n);
json_t *create(const char *path, const char *wrapper, const char *body, const char *save);
void assert_uuid7(const char *id);
void assert_timestamp(const char *t);
int group_setup(void **state);
int group_teardown(void **state);

#endif
