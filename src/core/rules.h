/* The rules of the domain that do not depend on HTTP or SQL: names, field values,
 * provisioning states. Each check returns 1 when valid; on 0 it writes a reason for a
 * person into why (why_len bytes) that never echoes the value back. */
#ifndef IMP_RULES_H
#define IMP_RULES_H
#include <jansson.h>
#include <stddef.h>

/* Number of code points in a valid UTF-8 string. */
size_t imp_utf8_len(const char *s);

/* Channel names: 1-64 chars of [A-Za-z0-9_-/], no leading '_', no empty level. */
int imp_channel_name_valid(const char *name, char *why, size_t why_len);

/* Custom field names: 1-64 chars, a letter then letters, digits or '_', and not a name
 * the device object already uses. */
int imp_custom_field_name_valid(const char *name, char *why, size_t why_len);

/* An email address: 3-254 chars, one '@' with text either side, no spaces or controls. */
int imp_email_valid(const char *email);

typedef enum {
	IMP_FIELD_STRING,
	IMP_FIELD_TEXT,
	IMP_FIELD_INTEGER,
	IMP_FIELD_NUMBER,
	IMP_FIELD_BOOLEAN,
	IMP_FIELD_DATETIME,
	IMP_FIELD_INVALID
} imp_field_type;

imp_field_type imp_field_type_parse(const char *s);

/* Whether v is a value of custom field type t (null is accepted: "no value").
 * Returns 0 when valid, 1 when the JSON type is wrong (400), 2 when it breaks a rule
 * such as a length or a date (422). */
int imp_field_value_check(imp_field_type t, const json_t *v, char *why, size_t why_len);

typedef enum {
	IMP_STATE_DEFINED = 0,
	IMP_STATE_ACTIVATED = 1,
	IMP_STATE_ASSOCIATED = 2
} imp_state;

const char *imp_state_name(imp_state s);
/* -1 when s names no state. */
int imp_state_parse(const char *s);
/* States only move forward: the state after an event that would move cur to next. */
imp_state imp_state_advance(imp_state cur, imp_state next);

#endif
