/* The one error enum of imprint. Every function that can fail returns one of these;
 * the HTTP edge maps them to statuses in exactly one table (src/api/http.c). */
#ifndef IMP_ERR_H
#define IMP_ERR_H

typedef enum {
	IMP_OK = 0,
	IMP_ERR_NOMEM,        /* allocation failed */
	IMP_ERR_BAD_REQUEST,  /* malformed input, wrong type, unknown field (400) */
	IMP_ERR_UNAUTHORIZED, /* no or bad credentials (401) */
	IMP_ERR_FORBIDDEN,    /* authenticated but not allowed (403) */
	IMP_ERR_NOT_FOUND,    /* unknown id, or another account's (404) */
	IMP_ERR_METHOD,       /* route exists, method does not (405) */
	IMP_ERR_CONFLICT,     /* duplicate or still in use (409) */
	IMP_ERR_STALE,        /* version precondition failed (412) */
	IMP_ERR_TOO_LARGE,    /* body over its cap (413) */
	IMP_ERR_INVALID,      /* well-formed input that breaks a rule (422) */
	IMP_ERR_RATE_LIMITED, /* too many attempts (429) */
	IMP_ERR_STORE,        /* the store failed (500) */
	IMP_ERR_BUSY,         /* the store is locked for too long (503) */
	IMP_ERR_IO,           /* file system or network failure */
	IMP_ERR_CRYPTO,       /* crypto library failure */
	IMP_ERR_EXISTS        /* something to create already exists (init) */
} imp_err;

/* A short stable name for rc, e.g. "not_found". Never NULL. */
const char *imp_err_name(imp_err rc);

#endif
