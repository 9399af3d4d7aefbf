/* The harness itself: a server starts, answers /healthz, and stops cleanly on SIGTERM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "harness.h"

static void health_and_clean_stop(void **state)
{
	h_server s;
	assert_int_equal(h_server_start(&s), 0);
	h_resp r = h_call(&s, "GET", "/healthz", NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(h_str(&r, "status"), "ok");
	h_resp_free(&r);
	assert_int_equal(h_server_stop(&s), 0);
	assert_true(h_log_contains(&s, "GET /healthz 200 "));
	h_server_destroy(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(health_and_clean_stop)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
