/* Wall-clock time in milliseconds and its ISO-8601 form (2026-11-25T20:41:28.123Z). */
#ifndef IMP_TIMEUTIL_H
#define IMP_TIMEUTIL_H
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#define IMP_ISO_LEN 24

uint64_t imp_now_ms(void);
uint64_t imp_mono_us(void);

/* A condition variable whose timed waits count on CLOCK_MONOTONIC (a wall clock set back
 * would stretch them), and the time ms milliseconds from now on that clock, for
 * pthread_cond_timedwait on it. */
int imp_cond_init_monotonic(pthread_cond_t *c);
struct timespec imp_deadline(unsigned ms);

/* Formats ms since the epoch into out[IMP_ISO_LEN + 1]. */
void imp_iso8601(uint64_t ms, char out[IMP_ISO_LEN + 1]);

/* Parses an ISO-8601 UTC date-time (Z or +hh:mm offset, optional fraction) or a plain
 * date (YYYY-MM-DD). Returns 0 and sets *ms, or -1 when s is not one. */
int imp_iso8601_parse(const char *s, int64_t *ms);

#endif
