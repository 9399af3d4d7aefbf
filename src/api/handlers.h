/* Handlers of the routes that are not generic resources. */
#ifndef IMP_API_HANDLERS_H
#define IMP_API_HANDLERS_H
#include "api/http.h"

imp_err imp_h_healthz(imp_req *r);  /* health.c */
imp_err imp_h_openapi(imp_req *r);  /* health.c */
imp_err imp_h_login(imp_req *r);    /* identity.c */
imp_err imp_h_renew(imp_req *r);    /* identity.c */
imp_err imp_h_audit(imp_req *r);    /* audit.c */

#endif
