/* Certificate credentials: registered device certificates, CSRs signed with the account's
 * device CA, and account certificate authorities. */
#include "api/credentials.h"

imp_err imp_cred_certificate(imp_req *r, const char *device_id, const char *cert_pem, const char *csr_pem,
                             imp_credential *c, int *replaced)
{
	(void)device_id; (void)cert_pem; (void)csr_pem; (void)c; (void)replaced;
	return api_fail(r, IMP_ERR_INVALID, "not_supported", "certificate", "certificate registration is not available yet");
}
