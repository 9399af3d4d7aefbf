/* Failure counters in fixed windows, for the things people can guess at: logins now,
 * association codes and claim tokens later. Bounded memory: keys hash (keyed, so no one can
 * aim at another key's slot) into a fixed table, each key keeps its own counter, and only
 * when the table is full around a key do two keys share one (stricter, never looser). */
#ifndef IMP_RATELIMIT_H
#define IMP_RATELIMIT_H
#include <stdint.h>

typedef struct imp_ratelimit imp_ratelimit;

/* At most max failures per window_s seconds per key. NULL when out of memory. */
imp_ratelimit *imp_ratelimit_new(unsigned max, unsigned window_s);
void imp_ratelimit_free(imp_ratelimit **rl);

/* 0 when key may try now; otherwise the seconds until it may (for Retry-After). */
unsigned imp_ratelimit_blocked(imp_ratelimit *rl, const char *key);

/* Counts one failure for key. */
void imp_ratelimit_fail(imp_ratelimit *rl, const char *key);

#endif
