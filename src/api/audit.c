/* GET /api/v1/audit: who did what to which entity, and when. */
#include <string.h>
#include "api/handlers.h"
#include "api/resource.h"

imp_err imp_h_audit(imp_req *r)
{
	static const char *const allowed[] = {"entityId", "action", NULL};
	imp_query q = {0};
	int want_results;
	imp_err rc = api_query_known(r, allowed);
	if(!rc) rc = imp_list_args(r, &q, &want_results);
	if(rc) return rc;
	if(q.sort && strcmp(q.sort, "created") != 0)
		return api_fail(r, IMP_ERR_BAD_REQUEST, "invalid_parameter", "sortBy", "audit entries sort only by created");
	json_t *results = want_results ? json_array() : NULL;
	int64_t count = 0, last = -1;
	rc = imp_db_audit_list(r->db, r->who.account, api_query(r, "entityId"), api_query(r, "action"), &q, results, &count,
	                       &last);
	if(rc) {
		json_decref(results);
		return api_fail(r, rc, NULL, NULL, "could not read the audit log");
	}
	json_t *body = imp_list_body("auditEntries", results, &q, count, last);
	json_decref(results);
	if(!body) return api_fail(r, IMP_ERR_NOMEM, NULL, NULL, "out of memory");
	return api_reply(r, 200, body);
}
