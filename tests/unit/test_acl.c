/* The topic rules (src/broker/acl.c): every row of MQTT.md's topic table, for devices,
 * account users and end users, as a table of principal, topic, action, expected verdict.
 * The end user here reaches device D only (a fake reach with D's channels). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "broker/acl.h"

#define A "0190a0b0-0000-7000-8000-00000000000a"
#define B "0190a0b0-0000-7000-8000-00000000000b"
#define D "0190a0b0-0000-7000-8000-00000000000d"
#define E "0190a0b0-0000-7000-8000-00000000000e"
#define U "0190a0b0-0000-7000-8000-000000000001"
#define DEV "xi/blue/v1/" A "/d/" D "/"

static imp_acl_channel CHANNELS[] = {
	{"both", IMP_CH_PUBLISH | IMP_CH_SUBSCRIBE},
	{"up", IMP_CH_PUBLISH},
	{"down", IMP_CH_SUBSCRIBE},
	{"multi/level", IMP_CH_PUBLISH | IMP_CH_SUBSCRIBE},
};

/* Reaches D only, whose channels are CHANNELS. */
static int reach_d(const imp_mqtt_principal *p, const char *device_id, const char *channel, unsigned *perm)
{
	if(strcmp(device_id, D) != 0) return 0;
	if(!channel) return 1;
	for(size_t i = 0; i < sizeof CHANNELS / sizeof CHANNELS[0]; i++) {
		if(strcmp(CHANNELS[i].name, channel) == 0) {
			*perm = CHANNELS[i].perm;
			return 1;
		}
	}
	return 0;
}

static const imp_mqtt_principal DEVICE = {.type = IMP_PRINCIPAL_DEVICE, .account_id = A, .id = D, .nchannels = 4,
                                          .channels = CHANNELS};
static const imp_mqtt_principal USER = {.type = IMP_PRINCIPAL_ACCOUNT_USER, .account_id = A, .id = U};
static const imp_mqtt_principal END_USER = {.type = IMP_PRINCIPAL_END_USER, .account_id = A, .id = U, .reach = reach_d};
static const imp_mqtt_principal LOST_USER = {.type = IMP_PRINCIPAL_END_USER, .account_id = A, .id = U};

enum { R = IMP_ACL_READ, W = IMP_ACL_WRITE, S = IMP_ACL_SUBSCRIBE };

typedef struct {
	const imp_mqtt_principal *who;
	const char *topic;
	int action, qos, want;
} acase;

static const acase CASES[] = {
	/* channels, by permission */
	{&DEVICE, DEV "both", W, 0, 1}, {&DEVICE, DEV "both", S, 0, 1}, {&DEVICE, DEV "both", R, 0, 1},
	{&DEVICE, DEV "up", W, 1, 1}, {&DEVICE, DEV "up", S, 0, 0}, {&DEVICE, DEV "up", R, 0, 0},
	{&DEVICE, DEV "down", W, 0, 0}, {&DEVICE, DEV "down", S, 0, 1}, {&DEVICE, DEV "down", R, 0, 1},
	{&DEVICE, DEV "multi/level", W, 0, 1}, {&DEVICE, DEV "multi", W, 0, 0},
	{&DEVICE, DEV "nochannel", W, 0, 0}, {&DEVICE, DEV "nochannel", S, 0, 0},
	{&DEVICE, DEV "both/x", W, 0, 0}, {&DEVICE, DEV, W, 0, 0},
	/* reserved topics */
	{&DEVICE, DEV "_log", W, 0, 1}, {&DEVICE, DEV "_log", S, 0, 0}, {&DEVICE, DEV "_log", R, 0, 0},
	{&DEVICE, DEV "_set/fields", W, 0, 1}, {&DEVICE, DEV "_set/fields", S, 0, 0},
	{&DEVICE, DEV "_updates/fields", S, 0, 1}, {&DEVICE, DEV "_updates/fields", R, 0, 1},
	{&DEVICE, DEV "_updates/fields", W, 0, 0},
	{&DEVICE, DEV "_rejected", S, 0, 1}, {&DEVICE, DEV "_rejected", W, 0, 0},
	/* control topics */
	{&DEVICE, "xi/ctrl/v1/" D "/cln", S, 0, 1}, {&DEVICE, "xi/ctrl/v1/" D "/cln", R, 0, 1},
	{&DEVICE, "xi/ctrl/v1/" D "/cln", W, 0, 0},
	{&DEVICE, "xi/ctrl/v1/" D "/svc", W, 0, 1}, {&DEVICE, "xi/ctrl/v1/" D "/svc", W, 1, 0},
	{&DEVICE, "xi/ctrl/v1/" D "/svc", S, 0, 0}, {&DEVICE, "xi/ctrl/v1/" D "/svc", R, 0, 0},
	{&DEVICE, "xi/ctrl/v1/" E "/cln", S, 0, 0}, {&DEVICE, "xi/ctrl/v1/" E "/svc", W, 0, 0},
	{&DEVICE, "xi/ctrl/v1/" D "/+", S, 0, 0},
	/* other devices, other accounts, anything else */
	{&DEVICE, "xi/blue/v1/" A "/d/" E "/both", W, 0, 0}, {&DEVICE, "xi/blue/v1/" A "/d/" E "/both", S, 0, 0},
	{&DEVICE, "xi/blue/v1/" B "/d/" D "/both", W, 0, 0}, {&DEVICE, "other", W, 0, 0},
	{&DEVICE, "$SYS/broker/uptime", S, 0, 0}, {&DEVICE, "", W, 0, 0},
	/* wildcards */
	{&DEVICE, DEV "#", S, 0, 1}, {&DEVICE, DEV "+", S, 0, 1}, {&DEVICE, DEV "_updates/+", S, 0, 1},
	{&DEVICE, "#", S, 0, 0}, {&DEVICE, "+/#", S, 0, 0}, {&DEVICE, "xi/blue/v1/" A "/#", S, 0, 0},
	{&DEVICE, "xi/blue/v1/+/d/" D "/both", S, 0, 0}, {&DEVICE, "xi/blue/v1/" A "/d/+/both", S, 0, 0},
	{&DEVICE, "xi/blue/v1/" A "/d/" D "#", S, 0, 0}, {&DEVICE, DEV "both#", S, 0, 0},
	{&DEVICE, DEV "#/x", S, 0, 0}, {&DEVICE, DEV "a+", S, 0, 0},
	{&DEVICE, DEV "#", W, 0, 0}, {&DEVICE, DEV "+", R, 0, 0},
	/* account users: their own account's tree, both ways */
	{&USER, DEV "both", W, 0, 1}, {&USER, DEV "up", S, 0, 1}, {&USER, DEV "down", W, 0, 1},
	{&USER, DEV "_log", S, 0, 1}, {&USER, DEV "_updates/fields", W, 0, 1}, {&USER, DEV "anything", R, 0, 1},
	{&USER, "xi/blue/v1/" A "/#", S, 0, 1}, {&USER, "xi/blue/v1/" A "/d/+/both", S, 0, 1},
	{&USER, "xi/blue/v1/" A, W, 0, 1},
	{&USER, "xi/blue/v1/" B "/d/" D "/both", W, 0, 0}, {&USER, "xi/blue/v1/" B "/#", S, 0, 0},
	{&USER, "xi/blue/v1/+/d/" D "/both", S, 0, 0}, {&USER, "xi/blue/v1/#", S, 0, 0}, {&USER, "#", S, 0, 0},
	{&USER, "xi/blue/v1/" A "x/d", W, 0, 0},
	{&USER, "xi/ctrl/v1/" D "/cln", S, 0, 0}, {&USER, "xi/ctrl/v1/" D "/svc", W, 0, 0},
	{&USER, "other", W, 0, 0},
	/* end users: subscribe to every channel of their devices; publish where the channel lets
	 * the cloud talk to the device */
	{&END_USER, DEV "both", S, 0, 1}, {&END_USER, DEV "both", R, 0, 1}, {&END_USER, DEV "both", W, 0, 1},
	{&END_USER, DEV "up", S, 0, 1}, {&END_USER, DEV "up", R, 0, 1}, {&END_USER, DEV "up", W, 0, 0},
	{&END_USER, DEV "down", S, 0, 1}, {&END_USER, DEV "down", W, 0, 1},
	{&END_USER, DEV "multi/level", W, 0, 1}, {&END_USER, DEV "nochannel", S, 0, 0},
	{&END_USER, DEV "nochannel", W, 0, 0}, {&END_USER, DEV, S, 0, 0},
	{&END_USER, DEV "_log", S, 0, 1}, {&END_USER, DEV "_log", W, 0, 0},
	{&END_USER, DEV "_set/fields", S, 0, 1}, {&END_USER, DEV "_set/fields", W, 0, 0},
	{&END_USER, DEV "_updates/fields", R, 0, 1}, {&END_USER, DEV "_updates/fields", W, 0, 0},
	{&END_USER, DEV "_rejected", S, 0, 1}, {&END_USER, DEV "_rejected", W, 0, 0},
	{&END_USER, DEV "#", S, 0, 1}, {&END_USER, DEV "+", S, 0, 1}, {&END_USER, DEV "#", W, 0, 0},
	/* not their devices, not other accounts, not the control topics */
	{&END_USER, "xi/blue/v1/" A "/d/" E "/both", S, 0, 0}, {&END_USER, "xi/blue/v1/" A "/d/" E "/both", W, 0, 0},
	{&END_USER, "xi/blue/v1/" A "/d/" E "/#", S, 0, 0}, {&END_USER, "xi/blue/v1/" A "/d/+/both", S, 0, 0},
	{&END_USER, "xi/blue/v1/" A "/d/#", S, 0, 0}, {&END_USER, "xi/blue/v1/" A "/#", S, 0, 0},
	{&END_USER, "xi/blue/v1/" B "/d/" D "/both", S, 0, 0}, {&END_USER, "#", S, 0, 0},
	{&END_USER, "xi/ctrl/v1/" D "/cln", S, 0, 0}, {&END_USER, "xi/ctrl/v1/" D "/svc", W, 0, 0},
	{&END_USER, "other", S, 0, 0},
	{&LOST_USER, DEV "both", S, 0, 0}, {&LOST_USER, DEV "_log", S, 0, 0},
};

static void table(void **state)
{
	for(size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
		const acase *c = &CASES[i];
		int got = imp_acl_allowed(c->who, c->topic, (imp_acl_action)c->action, c->qos);
		if(got != c->want)
			fail_msg("case %zu: %s %s action %d qos %d: got %d, want %d", i,
			         c->who == &DEVICE ? "device" : c->who == &USER ? "user" : "end user", c->topic, c->action, c->qos, got, c->want);
	}
}

static void perm_parse(void **state)
{
	assert_int_equal(imp_acl_perm_parse("publish-subscribe"), IMP_CH_PUBLISH | IMP_CH_SUBSCRIBE);
	assert_int_equal(imp_acl_perm_parse("publish"), IMP_CH_PUBLISH);
	assert_int_equal(imp_acl_perm_parse("subscribe"), IMP_CH_SUBSCRIBE);
	assert_int_equal(imp_acl_perm_parse("Publish"), 0);
	assert_int_equal(imp_acl_perm_parse(NULL), 0);
}

static void empty_principal(void **state)
{
	imp_mqtt_principal p = {0};
	assert_false(imp_acl_allowed(&p, "xi/blue/v1//d//_log", IMP_ACL_WRITE, 0));
	assert_false(imp_acl_allowed(NULL, DEV "both", IMP_ACL_WRITE, 0));
	assert_false(imp_acl_allowed(&DEVICE, NULL, IMP_ACL_WRITE, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(table),
		cmocka_unit_test(perm_parse),
		cmocka_unit_test(empty_principal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
