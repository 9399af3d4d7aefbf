#include "core/rules.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/limits.h"
#include "core/timeutil.h"

size_t imp_utf8_len(const char *s)
{
	size_t n = 0;
	for(; *s; s++) {
		if(((unsigned char)*s & 0xc0) != 0x80) n++;
	}
	return n;
}

int imp_channel_name_valid(const char *name, char *why, size_t why_len)
{
	size_t n = strlen(name);
	if(n < 1 || n > IMP_CHANNEL_MAX) {
		snprintf(why, why_len, "name must be 1 to %d characters", IMP_CHANNEL_MAX);
		return 0;
	}
	if(name[0] == '_') {
		snprintf(why, why_len, "name must not start with '_' (reserved for control topics)");
		return 0;
	}
	char prev = '/';
	for(size_t i = 0; i < n; i++) {
		char c = name[i];
		int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		         c == '_' || c == '-' || c == '/';
		if(!ok) {
			snprintf(why, why_len, "name may hold only letters, digits, '_', '-' and '/'");
			return 0;
		}
		if(c == '/' && prev == '/') {
			snprintf(why, why_len, "name must not have an empty level");
			return 0;
		}
		prev = c;
	}
	if(prev == '/') {
		snprintf(why, why_len, "name must not have an empty level");
		return 0;
	}
	return 1;
}

static const char *const RESERVED_FIELDS[] = {
	"id", "accountId", "deviceTemplateId", "organizationId", "serialNumber", "provisioningState",
	"connected", "lastConnected", "firmwareVersion", "disabled", "name", "deviceVersion",
	"location", "purchaseDate", "channels", "created", "createdById", "lastModified",
	"lastModifiedById", "version", NULL};

int imp_custom_field_name_valid(const char *name, char *why, size_t why_len)
{
	size_t n = strlen(name);
	int ok = n >= 1 && n <= IMP_FIELD_NAME_MAX &&
	         ((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z'));
	for(size_t i = 1; ok && i < n; i++) {
		char c = name[i];
		ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
	}
	if(!ok) {
		snprintf(why, why_len, "name must be 1 to %d characters: a letter, then letters, digits or '_'",
		         IMP_FIELD_NAME_MAX);
		return 0;
	}
	for(int i = 0; RESERVED_FIELDS[i]; i++) {
		if(strcmp(name, RESERVED_FIELDS[i]) == 0) {
			snprintf(why, why_len, "name is a built-in device field");
			return 0;
		}
	}
	return 1;
}

int imp_email_valid(const char *email)
{
	size_t n = strlen(email);
	if(n < 3 || n > IMP_EMAIL_MAX) return 0;
	const char *at = strchr(email, '@');
	if(!at || at == email || !at[1] || strchr(at + 1, '@')) return 0;
	for(const char *p = email; *p; p++) {
		if((unsigned char)*p <= ' ' || *p == 0x7f) return 0;
	}
	return 1;
}

static const char *const FIELD_TYPES[] = {"string", "text", "integer", "number", "boolean", "datetime"};

imp_field_type imp_field_type_parse(const char *s)
{
	for(int i = 0; i < IMP_FIELD_INVALID; i++) {
		if(strcmp(s, FIELD_TYPES[i]) == 0) return (imp_field_type)i;
	}
	return IMP_FIELD_INVALID;
}

int imp_field_value_check(imp_field_type t, const json_t *v, char *why, size_t why_len)
{
	if(json_is_null(v)) return 0;
	switch(t) {
	case IMP_FIELD_STRING:
	case IMP_FIELD_TEXT: {
		size_t max = t == IMP_FIELD_STRING ? IMP_STRING_MAX : IMP_TEXT_MAX;
		if(!json_is_string(v)) {
			snprintf(why, why_len, "must be a string");
			return 1;
		}
		if(imp_utf8_len(json_string_value(v)) > max) {
			snprintf(why, why_len, "must be at most %zu characters", max);
			return 2;
		}
		return 0;
	}
	case IMP_FIELD_INTEGER:
		if(json_is_integer(v)) return 0;
		if(json_is_real(v) && floor(json_real_value(v)) == json_real_value(v) &&
		   fabs(json_real_value(v)) < 9007199254740992.0)
			return 0;
		snprintf(why, why_len, "must be an integer");
		return 1;
	case IMP_FIELD_NUMBER:
		if(json_is_number(v)) return 0;
		snprintf(why, why_len, "must be a number");
		return 1;
	case IMP_FIELD_BOOLEAN:
		if(json_is_boolean(v)) return 0;
		snprintf(why, why_len, "must be a boolean");
		return 1;
	case IMP_FIELD_DATETIME: {
		int64_t ms;
		if(!json_is_string(v)) {
			snprintf(why, why_len, "must be an ISO-8601 date-time string");
			return 1;
		}
		if(imp_iso8601_parse(json_string_value(v), &ms)) {
			snprintf(why, why_len, "must be an ISO-8601 date-time such as 2026-11-25T20:41:28.123Z");
			return 2;
		}
		return 0;
	}
	case IMP_FIELD_INVALID: break;
	}
	snprintf(why, why_len, "has an unknown field type");
	return 2;
}

static const char *const STATES[] = {"defined", "activated", "associated"};

const char *imp_state_name(imp_state s) { return STATES[s]; }

int imp_state_parse(const char *s)
{
	for(int i = 0; i < 3; i++) {
		if(strcmp(s, STATES[i]) == 0) return i;
	}
	return -1;
}

imp_state imp_state_advance(imp_state cur, imp_state next) { return next > cur ? next : cur; }
