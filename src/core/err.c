#include "core/err.h"

const char *imp_err_name(imp_err rc)
{
	switch(rc) {
	case IMP_OK: return "ok";
	case IMP_ERR_NOMEM: return "out_of_memory";
	case IMP_ERR_BAD_REQUEST: return "bad_request";
	case IMP_ERR_UNAUTHORIZED: return "unauthorized";
	case IMP_ERR_FORBIDDEN: return "forbidden";
	case IMP_ERR_NOT_FOUND: return "not_found";
	case IMP_ERR_METHOD: return "method_not_allowed";
	case IMP_ERR_CONFLICT: return "conflict";
	case IMP_ERR_STALE: return "version_mismatch";
	case IMP_ERR_TOO_LARGE: return "too_large";
	case IMP_ERR_INVALID: return "invalid_field";
	case IMP_ERR_RATE_LIMITED: return "rate_limited";
	case IMP_ERR_STORE: return "store_error";
	case IMP_ERR_BUSY: return "busy";
	case IMP_ERR_IO: return "io_error";
	case IMP_ERR_CRYPTO: return "crypto_error";
	case IMP_ERR_EXISTS: return "exists";
	}
	return "unknown";
}
