/* Handlers of the routes that are not generic resources. */
#ifndef IMP_API_HANDLERS_H
#define IMP_API_HANDLERS_H
#include "api/http.h"

imp_err imp_h_healthz(imp_req *r);  /* health.c */
imp_err imp_h_openapi(imp_req *r);  /* health.c */
imp_err imp_h_login(imp_req *r);    /* identity.c */
imp_err imp_h_renew(imp_req *r);    /* identity.c */
imp_err imp_h_audit(imp_req *r);    /* audit.c */
imp_err imp_h_cred_create(imp_req *r);          /* credentials.c */
imp_err imp_h_cred_list(imp_req *r);            /* credentials.c */
imp_err imp_h_cred_get(imp_req *r);             /* credentials.c */
imp_err imp_h_cred_delete(imp_req *r);          /* credentials.c */
imp_err imp_h_device_disable(imp_req *r);       /* credentials.c */
imp_err imp_h_device_enable(imp_req *r);        /* credentials.c */
imp_err imp_h_broker_authenticate(imp_req *r);  /* credentials.c */
imp_err imp_h_broker_authorize(imp_req *r);     /* credentials.c */
imp_err imp_h_claim(imp_req *r);                /* claims.c */
imp_err imp_h_assoc_create(imp_req *r);         /* association.c */
imp_err imp_h_assoc_start(imp_req *r);          /* association.c */
imp_err imp_h_assoc_release(imp_req *r);        /* association.c */
extern const imp_stream_ops imp_batch_stream; /* batch.c */

#endif
