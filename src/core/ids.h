/* UUID version 7 ids (RFC 9562): 48-bit millisecond time, then random bits, so ids sort
 * by creation time and index inserts append. */
#ifndef IMP_IDS_H
#define IMP_IDS_H
#include <stdint.h>
#include "core/err.h"
#include "core/limits.h"

typedef struct {
	char s[IMP_UUID_LEN + 1];
} imp_id;

/* A fresh UUIDv7, lowercase canonical text. Monotonic within the process. */
imp_err imp_id_new(imp_id *out);

/* 1 when s is a canonical UUID (any version, either case), else 0. */
int imp_id_valid(const char *s);

/* FNV-1a of an id's text (any string), for the hash tables keyed by ids. */
uint32_t imp_id_hash(const char *s);

#endif
