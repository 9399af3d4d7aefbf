/* The request log: one line per request on stderr (method, route, status, microseconds;
 * never a body, header value or token), written in batches. */
#ifndef IMP_API_REQLOG_H
#define IMP_API_REQLOG_H
#include <stdint.h>

#include "core/err.h"

/* Starts batching: lines wait in a buffer written when it fills and at least every
 * IMP_REQLOG_FLUSH_MS by a thread of the log's. Nested opens are counted; only the first
 * starts the thread. IMP_ERR_IO when the thread cannot start (lines are then written one
 * by one, as before any open). */
#define IMP_REQLOG_FLUSH_MS 50
imp_err imp_reqlog_open(void);

/* Logs one request. method and route are copied; route NULL logs "-". */
void imp_reqlog_line(const char *method, const char *route, unsigned status, uint64_t us);

/* Ends one open; the last writes what is buffered and stops the thread. */
void imp_reqlog_close(void);

#endif
