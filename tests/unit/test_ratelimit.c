/* Unit tests for src/core/ratelimit.c: fixed-window failure counters.
 *
 * Windows are aligned to the wall clock, so a test that runs across a window boundary sees
 * its counts reset. Each scenario therefore runs inside same_window(), which repeats it
 * when the clock crossed a boundary while it ran. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/ratelimit.h"
#include "core/timeutil.h"

static uint64_t window_of(unsigned window_s) { return imp_now_ms() / 1000 / window_s; }

/* Runs fn(arg) until it runs wholly inside one window of window_s seconds (at most three
 * tries); fn returns 0 on success. */
static void same_window(unsigned window_s, int (*fn)(void *), void *arg)
{
	for(int attempt = 0; attempt < 3; attempt++) {
		uint64_t w0 = window_of(window_s);
		int rc = fn(arg);
		if(window_of(window_s) != w0) continue; /* crossed a boundary: the result means nothing */
		if(rc) fail_msg("scenario failed at step %d", rc);
		return;
	}
	fail_msg("could not run inside one window");
}

#define STEP(n, cond) \
	do { \
		if(!(cond)) return (n); \
	} while(0)

static int blocks_after_max(void *arg)
{
	(void)arg;
	imp_ratelimit *rl = imp_ratelimit_new(3, 3600);
	int rc = 0;
	if(!rl) return 99;
	if(imp_ratelimit_blocked(rl, "alice") != 0) rc = 1;
	imp_ratelimit_fail(rl, "alice");
	imp_ratelimit_fail(rl, "alice");
	if(!rc && imp_ratelimit_blocked(rl, "alice") != 0) rc = 2;  /* 2 of 3: may still try */
	imp_ratelimit_fail(rl, "alice");
	unsigned r = imp_ratelimit_blocked(rl, "alice");            /* 3 of 3: blocked */
	if(!rc && (r < 1 || r > 3600)) rc = 3;
	imp_ratelimit_fail(rl, "alice");
	r = imp_ratelimit_blocked(rl, "alice");
	if(!rc && (r < 1 || r > 3600)) rc = 4;
	/* asking does not count as failing */
	for(int i = 0; i < 10; i++) imp_ratelimit_blocked(rl, "carol");
	if(!rc && imp_ratelimit_blocked(rl, "carol") != 0) rc = 5;
	imp_ratelimit_free(&rl);
	return rc;
}

static void test_blocks_after_max(void **state)
{
	(void)state;
	same_window(3600, blocks_after_max, NULL);
}

/* Retry-After is the time left in the current window: at least 1, at most the window. */
static int retry_after_in_window(void *arg)
{
	unsigned window_s = *(const unsigned *)arg;
	imp_ratelimit *rl = imp_ratelimit_new(1, window_s);
	if(!rl) return 99;
	imp_ratelimit_fail(rl, "k");
	uint64_t now_s = imp_now_ms() / 1000;
	unsigned r = imp_ratelimit_blocked(rl, "k");
	uint64_t left = (now_s / window_s + 1) * window_s - now_s;
	imp_ratelimit_free(&rl);
	STEP(1, r >= 1);
	STEP(2, r <= window_s);
	STEP(3, r == left);
	return 0;
}

static void test_retry_after_within_window(void **state)
{
	(void)state;
	unsigned windows[] = {1, 7, 60, 900, 3600, 86400};
	for(size_t i = 0; i < sizeof windows / sizeof windows[0]; i++) same_window(windows[i], retry_after_in_window, &windows[i]);
}

static int other_keys(void *arg)
{
	(void)arg;
	imp_ratelimit *rl = imp_ratelimit_new(2, 3600);
	if(!rl) return 99;
	int rc = 0;
	imp_ratelimit_fail(rl, "login:alice@example.com");
	imp_ratelimit_fail(rl, "login:alice@example.com");
	if(imp_ratelimit_blocked(rl, "login:alice@example.com") == 0) rc = 1;
	const char *others[] = {"login:bob@example.com", "login:alice@example.co", "login:Alice@example.com",
	                        "association:alice@example.com", "", "a", NULL};
	for(int i = 0; !rc && others[i]; i++) {
		if(imp_ratelimit_blocked(rl, others[i]) != 0) rc = 10 + i;
	}
	/* Another key counts on its own: one failure of two leaves it free. */
	imp_ratelimit_fail(rl, "login:bob@example.com");
	if(!rc && imp_ratelimit_blocked(rl, "login:bob@example.com") != 0) rc = 2;
	if(!rc && imp_ratelimit_blocked(rl, "login:alice@example.com") == 0) rc = 3;
	imp_ratelimit_fail(rl, "login:bob@example.com");
	if(!rc && imp_ratelimit_blocked(rl, "login:bob@example.com") == 0) rc = 4;
	/* Separate limiters do not share counts. */
	imp_ratelimit *rl2 = imp_ratelimit_new(2, 3600);
	if(!rl2) rc = 98;
	if(!rc && imp_ratelimit_blocked(rl2, "login:alice@example.com") != 0) rc = 5;
	imp_ratelimit_free(&rl2);
	imp_ratelimit_free(&rl);
	return rc;
}

static void test_other_keys_unaffected(void **state)
{
	(void)state;
	same_window(3600, other_keys, NULL);
}

/* Many keys: each keeps a counter of its own while the table has room, and when a flood
 * fills it, no key that reached the limit is ever let through (stricter, never looser). */
static int many_keys(void *arg)
{
	(void)arg;
	imp_ratelimit *rl = imp_ratelimit_new(2, 3600);
	if(!rl) return 99;
	int rc = 0;
	char k[32];
	for(int i = 0; i < 1000; i++) {
		snprintf(k, sizeof k, "blocked-%d", i);
		imp_ratelimit_fail(rl, k);
		imp_ratelimit_fail(rl, k);
	}
	for(int i = 0; i < 1000; i++) {
		snprintf(k, sizeof k, "once-%d", i);
		imp_ratelimit_fail(rl, k);
	}
	for(int i = 0; !rc && i < 1000; i++) {
		snprintf(k, sizeof k, "blocked-%d", i);
		if(imp_ratelimit_blocked(rl, k) == 0) rc = 1;
		snprintf(k, sizeof k, "once-%d", i);
		if(!rc && imp_ratelimit_blocked(rl, k) != 0) rc = 2; /* one failure of two: free */
		snprintf(k, sizeof k, "fresh-%d", i);
		if(!rc && imp_ratelimit_blocked(rl, k) != 0) rc = 3;
	}
	/* a flood of more keys than the table has slots */
	for(int i = 0; i < 6000; i++) {
		snprintf(k, sizeof k, "flood-%d", i);
		imp_ratelimit_fail(rl, k);
		imp_ratelimit_fail(rl, k);
	}
	for(int i = 0; !rc && i < 6000; i++) {
		snprintf(k, sizeof k, "flood-%d", i);
		if(imp_ratelimit_blocked(rl, k) == 0) rc = 4;
	}
	for(int i = 0; !rc && i < 1000; i++) {
		snprintf(k, sizeof k, "blocked-%d", i);
		if(imp_ratelimit_blocked(rl, k) == 0) rc = 5;
	}
	imp_ratelimit_free(&rl);
	return rc;
}

static void test_many_keys(void **state)
{
	(void)state;
	same_window(3600, many_keys, NULL);
}

/* A window of 1 second: blocked now, free again once the second has passed. */
static void test_unblocks_after_window(void **state)
{
	(void)state;
	imp_ratelimit *rl = imp_ratelimit_new(2, 1);
	assert_non_null(rl);
	unsigned r = 0;
	for(int attempt = 0; attempt < 3 && r == 0; attempt++) {
		imp_ratelimit_fail(rl, "dev");
		imp_ratelimit_fail(rl, "dev");
		r = imp_ratelimit_blocked(rl, "dev");
	}
	assert_int_equal(r, 1);
	uint64_t start = imp_now_ms();
	while(imp_ratelimit_blocked(rl, "dev") != 0) {
		if(imp_now_ms() - start > 2500) fail_msg("still blocked after the window ended");
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	assert_true(imp_now_ms() - start <= 1500);
	imp_ratelimit_free(&rl);
	assert_null(rl);
	imp_ratelimit_free(&rl); /* freeing a NULL limiter is harmless */
}

/* A zero window is taken as one second, not a division by zero. */
static void test_zero_window(void **state)
{
	(void)state;
	imp_ratelimit *rl = imp_ratelimit_new(1, 0);
	assert_non_null(rl);
	imp_ratelimit_fail(rl, "k");
	unsigned r = imp_ratelimit_blocked(rl, "k");
	assert_true(r <= 1);
	imp_ratelimit_free(&rl);
}

#define THREADS 4
#define FAILS 500

struct shared {
	imp_ratelimit *rl;
};

static void *fail_many(void *arg)
{
	struct shared *sh = arg;
	for(int i = 0; i < FAILS; i++) imp_ratelimit_fail(sh->rl, "hammered");
	return NULL;
}

/* Failures counted from many threads at once are all counted. */
static int concurrent(void *arg)
{
	(void)arg;
	struct shared a, b;
	a.rl = imp_ratelimit_new(THREADS * FAILS, 3600);
	b.rl = imp_ratelimit_new(THREADS * FAILS + 1, 3600);
	int rc = 0;
	if(!a.rl || !b.rl) rc = 99;
	pthread_t t[2 * THREADS];
	for(int i = 0; !rc && i < THREADS; i++) {
		if(pthread_create(&t[i], NULL, fail_many, &a) || pthread_create(&t[THREADS + i], NULL, fail_many, &b)) {
			fprintf(stderr, "pthread_create failed\n");
			abort();
		}
	}
	for(int i = 0; !rc && i < 2 * THREADS; i++) pthread_join(t[i], NULL);
	if(!rc && imp_ratelimit_blocked(a.rl, "hammered") == 0) rc = 1; /* reached max exactly */
	if(!rc && imp_ratelimit_blocked(b.rl, "hammered") != 0) rc = 2; /* one short of max */
	imp_ratelimit_free(&a.rl);
	imp_ratelimit_free(&b.rl);
	return rc;
}

static void test_concurrent_failures(void **state)
{
	(void)state;
	same_window(3600, concurrent, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blocks_after_max),
		cmocka_unit_test(test_retry_after_within_window),
		cmocka_unit_test(test_other_keys_unaffected),
		cmocka_unit_test(test_many_keys),
		cmocka_unit_test(test_unblocks_after_window),
		cmocka_unit_test(test_zero_window),
		cmocka_unit_test(test_concurrent_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
