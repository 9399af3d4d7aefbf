/* Device templates, their custom fields and their channel templates. */
#include <stdio.h>
#include <string.h>

#include "api/resource.h"
#include "api/template_cache.h"
#include "core/limits.h"
#include "core/rules.h"

static imp_err template_before_delete(imp_req *r, const imp_entity *e)
{
	int64_t n = 0;
	imp_err rc = imp_db_count_where(r->db, &imp_kind_device, r->who.account, "deviceTemplateId", e->id.s, &n);
	if(rc) return rc;
	if(n > 0)
		return api_fail(r, IMP_ERR_CONFLICT, "in_use", "id", "the template is used by %lld devices; delete them first",
		                (long long)n);
	if((rc = imp_db_delete_where(r->db, &imp_kind_device_field, r->who.account, "deviceTemplateId", e->id.s))) return rc;
	return imp_db_delete_where(r->db, &imp_kind_channel_template, r->who.account, "entityId", e->id.s);
}

const imp_resource imp_res_device_template = {
	.kind = &imp_kind_device_template,
	.before_delete = template_before_delete,
	.after_write = imp_template_cache_forget,
};

static imp_err field_validate(imp_req *r, json_t *doc, const imp_entity *old)
{
	char why[160];
	const char *name = json_string_value(json_object_get(doc, "name"));
	if(!imp_custom_field_name_valid(name, why, sizeof why))
		return api_fail(r, IMP_ERR_INVALID, "invalid_field", "name", "%s", why);
	imp_field_type t = imp_field_type_parse(json_string_value(json_object_get(doc, "fieldType")));
	json_t *def = json_object_get(doc, "default");
	if(def) {
		int bad = imp_field_value_check(t, def, why, sizeof why);
		if(bad) return api_fail(r, bad == 1 ? IMP_ERR_BAD_REQUEST : IMP_ERR_INVALID, bad == 1 ? "invalid_type" : "invalid_field",
		                        "default", "default %s", why);
	}
	int64_t n = 0;
	const char *tid = json_string_value(json_object_get(doc, "deviceTemplateId"));
	imp_err rc = imp_db_count_where(r->db, &imp_kind_device_field, r->who.account, "deviceTemplateId", tid, &n);
	if(rc) return rc;
	if(n >= IMP_CUSTOM_FIELDS_MAX)
		return api_fail(r, IMP_ERR_INVALID, "too_many_fields", "deviceTemplateId",
		                "a device template holds at most %d custom fields", IMP_CUSTOM_FIELDS_MAX);
	return IMP_OK;
}

const imp_resource imp_res_device_field = {
	.kind = &imp_kind_device_field,
	.validate = field_validate,
	.after_write = imp_template_cache_forget,
};

/* The broker keeps a template's channels (src/broker/plugin_templates.c): every change
 * of them goes on the change feed, in the write's transaction. */
static imp_err channel_validate(imp_req *r, json_t *doc, const imp_entity *old)
{
	char why[160];
	if(!imp_channel_name_valid(json_string_value(json_object_get(doc, "name")), why, sizeof why))
		return api_fail(r, IMP_ERR_INVALID, "invalid_field", "name", "%s", why);
	const char *template_id = json_string_value(json_object_get(doc, "entityId"));
	return template_id ? imp_db_change(r->db, template_id, "channels") : IMP_OK;
}

static imp_err channel_before_delete(imp_req *r, const imp_entity *e)
{
	const char *template_id = json_string_value(json_object_get(e->doc, "entityId"));
	return template_id ? imp_db_change(r->db, template_id, "channels") : IMP_OK;
}

const imp_resource imp_res_channel_template = {
	.kind = &imp_kind_channel_template,
	.validate = channel_validate,
	.before_delete = channel_before_delete,
	.after_write = imp_template_cache_forget,
};
