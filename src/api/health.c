/* GET /healthz and GET /openapi.json. */
#include <stddef.h>

#include "api/handlers.h"

extern const unsigned char imp_openapi_doc[];
extern const size_t imp_openapi_len;

imp_err imp_h_healthz(imp_req *r)
{
	if(imp_db_ping(r->db)) return api_fail(r, IMP_ERR_BUSY, "store_unavailable", NULL, "the store does not answer");
	return api_reply(r, 200, json_pack("{s:s}", "status", "ok"));
}

imp_err imp_h_openapi(imp_req *r)
{
	json_t *doc = json_loadb((const char *)imp_openapi_doc, imp_openapi_len, 0, NULL);
	if(!doc) return api_fail(r, IMP_ERR_STORE, NULL, NULL, "the OpenAPI document is damaged");
	return api_reply(r, 200, doc);
}
