/* A stand-in for imprint's broker plugin in the broker operations tests: accepts every
 * client and every topic, except the username "nobody" (so a test can tell it is loaded),
 * and logs its plugin_opt_data. Built in the test directory only; never installed. Built
 * without sanitizers: mosquitto is not. */
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <stddef.h>
#include <string.h>

static mosquitto_plugin_id_t *plugin_id;

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ev = event_data;
	if(ev->username && strcmp(ev->username, "nobody") == 0) return MOSQ_ERR_AUTH;
	return MOSQ_ERR_SUCCESS;
}

static int on_acl(int event, void *event_data, void *userdata) { return MOSQ_ERR_SUCCESS; }

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions) { return 5; }

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options,
                          int option_count)
{
	plugin_id = identifier;
	for(int i = 0; i < option_count; i++)
		if(strcmp(options[i].key, "data") == 0) mosquitto_log_printf(MOSQ_LOG_INFO, "stub plugin: data=%s", options[i].value);
	if(mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL) ||
	   mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl, NULL, NULL))
		return MOSQ_ERR_UNKNOWN;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl, NULL);
	return MOSQ_ERR_SUCCESS;
}
