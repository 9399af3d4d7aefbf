/* Organizations (a hierarchy at most IMP_ORG_DEPTH_MAX deep) and their templates. */
#include <string.h>

#include "api/resource.h"
#include "core/limits.h"

static imp_err org_template_before_delete(imp_req *r, const imp_entity *e)
{
	int64_t n = 0;
	imp_err rc = imp_db_count_where(r->db, &imp_kind_organization, r->who.account, "organizationTemplateId", e->id.s, &n);
	if(rc) return rc;
	if(n > 0) return api_fail(r, IMP_ERR_CONFLICT, "in_use", "id", "the template is used by %lld organizations", (long long)n);
	return IMP_OK;
}

const imp_resource imp_res_organization_template = {
	.kind = &imp_kind_organization_template,
	.before_delete = org_template_before_delete,
};

/* The new organization sits one level under its parent; count the parent's ancestors. */
static imp_err org_validate(imp_req *r, json_t *doc, const imp_entity *old)
{
	if(old) return IMP_OK; /* parentId cannot change, so neither can depth */
	const char *parent = json_string_value(json_object_get(doc, "parentId"));
	int depth = 1;
	char id[IMP_UUID_LEN + 1];
	while(parent) {
		imp_entity p;
		if(++depth > IMP_ORG_DEPTH_MAX)
			return api_fail(r, IMP_ERR_INVALID, "too_deep", "parentId", "organizations nest at most %d levels deep",
			                IMP_ORG_DEPTH_MAX);
		imp_err rc = imp_db_get(r->db, &imp_kind_organization, r->who.account, parent, &p);
		if(rc) return rc;
		const char *up = json_string_value(json_object_get(p.doc, "parentId"));
		if(up) {
			memcpy(id, up, sizeof id - 1);
			id[sizeof id - 1] = '\0';
		}
		imp_entity_clear(&p);
		parent = up ? id : NULL;
	}
	return IMP_OK;
}

static imp_err org_before_delete(imp_req *r, const imp_entity *e)
{
	int64_t devices = 0, children = 0, users = 0;
	imp_err rc = imp_db_count_where(r->db, &imp_kind_device, r->who.account, "organizationId", e->id.s, &devices);
	if(!rc) rc = imp_db_count_where(r->db, &imp_kind_organization, r->who.account, "parentId", e->id.s, &children);
	if(!rc) rc = imp_db_count_where(r->db, &imp_kind_end_user, r->who.account, "organizationId", e->id.s, &users);
	if(rc) return rc;
	if(devices || children || users)
		return api_fail(r, IMP_ERR_CONFLICT, "in_use", "id",
		                "the organization holds %lld devices, %lld organizations and %lld end users", (long long)devices,
		                (long long)children, (long long)users);
	return IMP_OK;
}

const imp_resource imp_res_organization = {
	.kind = &imp_kind_organization,
	.validate = org_validate,
	.before_delete = org_before_delete,
};
