/* The route table: method and path to one handler and the access it needs. */
#ifndef IMP_API_ROUTER_H
#define IMP_API_ROUTER_H
#include <stddef.h>

#include "api/http.h"

/* Finds r's route, resolves the caller, checks access and runs the handler. */
imp_err imp_router_dispatch(imp_req *r);

/* Finds r's route, resolves the caller and checks access, without running the handler. */
imp_err imp_router_resolve(imp_req *r);

/* The streaming route method and path name, or NULL. */
const imp_route *imp_router_stream_route(const char *method, const char *path);

/* The table, for the OpenAPI test and `imprint routes`. */
const imp_route *imp_routes(size_t *count);

#endif
