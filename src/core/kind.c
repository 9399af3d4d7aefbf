#include "core/kind.h"

#include <string.h>

#include "core/limits.h"

static const char *const AUTH_METHODS[] = {"password", "certificate", NULL};
static const char *const ENTITY_TYPES[] = {"deviceTemplate", NULL};
static const char *const PERSISTENCE[] = {"simple", "timeSeries", NULL};
static const char *const PERMISSIONS[] = {"publish-subscribe", "publish", "subscribe", NULL};
static const char *const FIELD_TYPES[] = {"string", "text", "integer", "number", "boolean", "datetime", NULL};
static const char *const STATES[] = {"defined", "activated", "associated", NULL};
const char *const imp_scope_names[] = {"admin", "provisioning", "read", "broker", NULL};

#define NAME_FIELD(flags) {"name", IMP_T_STRING, (flags) | IMP_F_FILTER | IMP_F_SORT, IMP_NAME_MAX, NULL, NULL, NULL, "name"}

static const imp_field DEVICE_TEMPLATE_FIELDS[] = {
	NAME_FIELD(IMP_F_REQUIRED),
	{"authenticationMethod", IMP_T_ENUM, IMP_F_CREATE_ONLY | IMP_F_FILTER, 0, AUTH_METHODS, "password", NULL, "auth_method"},
	{"description", IMP_T_STRING, IMP_F_NULLABLE, IMP_TEXT_MAX, NULL, NULL, NULL, NULL},
	{0}};

const imp_kind imp_kind_device_template = {"deviceTemplate", "deviceTemplates", "device_templates",
                                           DEVICE_TEMPLATE_FIELDS, {NULL, NULL}, NULL};

static const imp_field DEVICE_FIELD_FIELDS[] = {
	{"deviceTemplateId", IMP_T_REF, IMP_F_REQUIRED | IMP_F_CREATE_ONLY | IMP_F_FILTER, 0, NULL, NULL, "deviceTemplate", "template_id"},
	{"name", IMP_T_STRING, IMP_F_REQUIRED | IMP_F_CREATE_ONLY | IMP_F_FILTER | IMP_F_SORT, IMP_FIELD_NAME_MAX, NULL, NULL, NULL, "name"},
	{"fieldType", IMP_T_ENUM, IMP_F_REQUIRED | IMP_F_CREATE_ONLY, 0, FIELD_TYPES, NULL, NULL, NULL},
	{"required", IMP_T_BOOL, 0, 0, NULL, NULL, NULL, NULL},
	{"default", IMP_T_ANY, IMP_F_NULLABLE, 0, NULL, NULL, NULL, NULL},
	{0}};

const imp_kind imp_kind_device_field = {"deviceField", "deviceFields", "device_fields", DEVICE_FIELD_FIELDS, {NULL, NULL}, NULL};

static const imp_field CHANNEL_TEMPLATE_FIELDS[] = {
	{"name", IMP_T_STRING, IMP_F_REQUIRED | IMP_F_CREATE_ONLY | IMP_F_FILTER | IMP_F_SORT, IMP_CHANNEL_MAX, NULL, NULL, NULL, "name"},
	{"entityType", IMP_T_ENUM, IMP_F_REQUIRED | IMP_F_CREATE_ONLY, 0, ENTITY_TYPES, NULL, NULL, NULL},
	{"entityId", IMP_T_REF, IMP_F_REQUIRED | IMP_F_CREATE_ONLY | IMP_F_FILTER, 0, NULL, NULL, "deviceTemplate", "entity_id"},
	{"persistenceType", IMP_T_ENUM, IMP_F_CREATE_ONLY, 0, PERSISTENCE, "simple", NULL, NULL},
	{"permission", IMP_T_ENUM, IMP_F_CREATE_ONLY, 0, PERMISSIONS, "publish-subscribe", NULL, NULL},
	{0}};

const imp_kind imp_kind_channel_template = {"channelTemplate", "channelTemplates", "channel_templates",
                                            CHANNEL_TEMPLATE_FIELDS, {NULL, NULL}, NULL};

static const imp_field ORG_TEMPLATE_FIELDS[] = {
	NAME_FIELD(IMP_F_REQUIRED),
	{"description", IMP_T_STRING, IMP_F_NULLABLE, IMP_TEXT_MAX, NULL, NULL, NULL, NULL},
	{0}};

const imp_kind imp_kind_organization_template = {"organizationTemplate", "organizationTemplates",
                                                 "organization_templates", ORG_TEMPLATE_FIELDS, {NULL, NULL}, NULL};

static const imp_field ORG_FIELDS[] = {
	NAME_FIELD(IMP_F_REQUIRED),
	{"organizationTemplateId", IMP_T_REF, IMP_F_NULLABLE | IMP_F_FILTER, 0, NULL, NULL, "organizationTemplate", "template_id"},
	{"parentId", IMP_T_REF, IMP_F_NULLABLE | IMP_F_CREATE_ONLY | IMP_F_FILTER, 0, NULL, NULL, "organization", "parent_id"},
	{"description", IMP_T_STRING, IMP_F_NULLABLE, IMP_TEXT_MAX, NULL, NULL, NULL, NULL},
	{0}};

const imp_kind imp_kind_organization = {"organization", "organizations", "organizations", ORG_FIELDS, {NULL, NULL}, NULL};

static const imp_field ACCOUNT_USER_FIELDS[] = {
	{"emailAddress", IMP_T_STRING, IMP_F_REQUIRED | IMP_F_CREATE_ONLY | IMP_F_FILTER | IMP_F_SORT, IMP_EMAIL_MAX, NULL, NULL, NULL, "email"},
	{"name", IMP_T_STRING, IMP_F_NULLABLE | IMP_F_SORT, IMP_NAME_MAX, NULL, NULL, NULL, "name"},
	{"password", IMP_T_STRING, IMP_F_REQUIRED | IMP_F_WRITE_ONLY, IMP_PASSWORD_MAX, NULL, NULL, NULL, NULL},
	{0}};

const imp_kind imp_kind_account_user = {"accountUser", "accountUsers", "account_users", ACCOUNT_USER_FIELDS, {NULL, NULL}, NULL};

static const imp_field API_KEY_FIELDS[] = {
	NAME_FIELD(IMP_F_REQUIRED),
	{"scopes", IMP_T_SCOPES, IMP_F_REQUIRED | IMP_F_CREATE_ONLY, 0, imp_scope_names, NULL, NULL, NULL},
	{0}};

const imp_kind imp_kind_api_key = {"apiKey", "apiKeys", "api_keys", API_KEY_FIELDS, {NULL, NULL}, NULL};

static const imp_field DEVICE_FIELDS[] = {
	{"deviceTemplateId", IMP_T_REF, IMP_F_REQUIRED | IMP_F_CREATE_ONLY | IMP_F_FILTER, 0, NULL, NULL, "deviceTemplate", "template_id"},
	{"organizationId", IMP_T_REF, IMP_F_NULLABLE | IMP_F_FILTER, 0, NULL, NULL, "organization", "org_id"},
	{"serialNumber", IMP_T_STRING, IMP_F_NULLABLE | IMP_F_FILTER | IMP_F_SORT, IMP_SERIAL_MAX, NULL, NULL, NULL, "serial"},
	{"provisioningState", IMP_T_ENUM, IMP_F_SERVER | IMP_F_FILTER, 0, STATES, "defined", NULL, "state"},
	{"connected", IMP_T_BOOL, IMP_F_SERVER | IMP_F_FILTER, 0, NULL, NULL, NULL, "connected"},
	{"lastConnected", IMP_T_DATETIME, IMP_F_SERVER | IMP_F_NULLABLE, 0, NULL, NULL, NULL, "last_connected"},
	{"firmwareVersion", IMP_T_STRING, IMP_F_SERVER | IMP_F_NULLABLE | IMP_F_FILTER, IMP_NAME_MAX, NULL, NULL, NULL, "firmware_version"},
	{"disabled", IMP_T_BOOL, IMP_F_SERVER | IMP_F_FILTER, 0, NULL, NULL, NULL, "disabled"},
	{"name", IMP_T_STRING, IMP_F_NULLABLE | IMP_F_SORT, IMP_NAME_MAX, NULL, NULL, NULL, "name"},
	{"deviceVersion", IMP_T_STRING, IMP_F_NULLABLE, IMP_NAME_MAX, NULL, NULL, NULL, NULL},
	{"location", IMP_T_STRING, IMP_F_NULLABLE, IMP_TEXT_MAX, NULL, NULL, NULL, NULL},
	{"purchaseDate", IMP_T_DATETIME, IMP_F_NULLABLE, 0, NULL, NULL, NULL, NULL},
	{0}};

static const char *const DEVICE_INDEX_ORDER[] = {"serialNumber", "q", "organizationId", "firmwareVersion",
                                                 "deviceTemplateId", "provisioningState", "connected", "disabled",
                                                 NULL};

const imp_kind imp_kind_device = {"device", "devices", "devices", DEVICE_FIELDS, {"serial", "name"}, DEVICE_INDEX_ORDER};

static const imp_field CA_FIELDS[] = {
	{"certificate", IMP_T_STRING, IMP_F_REQUIRED | IMP_F_CREATE_ONLY, IMP_PEM_TEXT_MAX, NULL, NULL, NULL, NULL},
	{"fingerprint", IMP_T_STRING, IMP_F_SERVER | IMP_F_FILTER, 64, NULL, NULL, NULL, "fingerprint"},
	{"subject", IMP_T_STRING, IMP_F_SERVER, 256, NULL, NULL, NULL, NULL},
	{"notBefore", IMP_T_DATETIME, IMP_F_SERVER, 0, NULL, NULL, NULL, NULL},
	{"notAfter", IMP_T_DATETIME, IMP_F_SERVER, 0, NULL, NULL, NULL, NULL},
	{0}};

const imp_kind imp_kind_certificate_authority = {"certificateAuthority", "certificateAuthorities",
                                                 "certificate_authorities", CA_FIELDS, {NULL, NULL}, NULL};

/* Field provisioning (src/api/claims.c): the token itself is kept only as a keyed hash in
 * the row's secret; serialNumbers (the allow-list) live in their own table, so a GET shows
 * only how many there are. */
static const imp_field CLAIM_TOKEN_FIELDS[] = {
	{"deviceTemplateId", IMP_T_REF, IMP_F_REQUIRED | IMP_F_CREATE_ONLY | IMP_F_FILTER, 0, NULL, NULL, "deviceTemplate", "template_id"},
	{"maxUses", IMP_T_ANY, IMP_F_REQUIRED | IMP_F_CREATE_ONLY, 0, NULL, NULL, NULL, "max_uses"},
	{"uses", IMP_T_ANY, IMP_F_SERVER, 0, NULL, NULL, NULL, "uses"},
	{"expires", IMP_T_DATETIME, IMP_F_REQUIRED | IMP_F_CREATE_ONLY, 0, NULL, NULL, NULL, "expires"},
	{"serialNumbers", IMP_T_ANY, IMP_F_CREATE_ONLY | IMP_F_WRITE_ONLY, 0, NULL, NULL, NULL, NULL},
	{"serialNumberCount", IMP_T_ANY, IMP_F_SERVER | IMP_F_NULLABLE, 0, NULL, NULL, NULL, NULL},
	{0}};

const imp_kind imp_kind_claim_token = {"claimToken", "claimTokens", "claim_tokens", CLAIM_TOKEN_FIELDS, {NULL, NULL}, NULL};

static const imp_field END_USER_TEMPLATE_FIELDS[] = {
	NAME_FIELD(IMP_F_REQUIRED),
	{"description", IMP_T_STRING, IMP_F_NULLABLE, IMP_TEXT_MAX, NULL, NULL, NULL, NULL},
	{0}};

const imp_kind imp_kind_end_user_template = {"endUserTemplate", "endUserTemplates", "end_user_templates",
                                             END_USER_TEMPLATE_FIELDS, {NULL, NULL}, NULL};

static const imp_field END_USER_FIELDS[] = {
	{"organizationId", IMP_T_REF, IMP_F_REQUIRED | IMP_F_FILTER, 0, NULL, NULL, "organization", "org_id"},
	{"name", IMP_T_STRING, IMP_F_REQUIRED | IMP_F_FILTER | IMP_F_SORT, IMP_NAME_MAX, NULL, NULL, NULL, "name"},
	{"emailAddress", IMP_T_STRING, IMP_F_REQUIRED | IMP_F_FILTER | IMP_F_SORT, IMP_EMAIL_MAX, NULL, NULL, NULL, "email"},
	{"password", IMP_T_STRING, IMP_F_WRITE_ONLY, IMP_PASSWORD_MAX, NULL, NULL, NULL, NULL},
	{"endUserTemplateId", IMP_T_REF, IMP_F_NULLABLE | IMP_F_FILTER, 0, NULL, NULL, "endUserTemplate", "template_id"},
	{0}};

const imp_kind imp_kind_end_user = {"endUser", "endUsers", "end_users", END_USER_FIELDS, {NULL, NULL}, NULL};

static const imp_kind *const ALL[] = {
	&imp_kind_device_template, &imp_kind_device_field, &imp_kind_channel_template,
	&imp_kind_organization_template, &imp_kind_organization, &imp_kind_account_user,
	&imp_kind_api_key, &imp_kind_device, &imp_kind_certificate_authority, &imp_kind_claim_token,
	&imp_kind_end_user_template, &imp_kind_end_user, NULL};

const imp_kind *imp_kind_by_name(const char *name)
{
	for(int i = 0; ALL[i]; i++) {
		if(strcmp(ALL[i]->name, name) == 0) return ALL[i];
	}
	return NULL;
}

const imp_field *imp_kind_field(const imp_kind *k, const char *name)
{
	/* the first two letters differ for most fields: one strcmp a lookup, not one a field */
	for(const imp_field *f = k->fields; f->name; f++) {
		if(f->name[0] == name[0] && (!name[0] || f->name[1] == name[1]) && strcmp(f->name, name) == 0) return f;
	}
	return NULL;
}

int imp_choice_index(const char *const *choices, const char *s)
{
	for(int i = 0; choices[i]; i++) {
		if(strcmp(choices[i], s) == 0) return i;
	}
	return -1;
}
