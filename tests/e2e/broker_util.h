/* A real mosquitto with imprint's plugin on a free loopback port, for the end-to-end tests
 * that drive the broker directly (test_broker, test_broker_busy). The plugin reads the
 * data directory of a harness server (h_server_start). */
#ifndef IMP_TEST_BROKER_UTIL_H
#define IMP_TEST_BROKER_UTIL_H
#include <sys/types.h>

typedef struct {
	int port;
	pid_t pid;
	char conf[512];
	char log[512];   /* mosquitto's output */
} h_broker;

/* Writes DATA/mosquitto.conf (log_types: e.g. "all", or "error warning") and starts the
 * broker, waiting until its port answers. IMP_TEST_PLUGIN names another plugin and
 * IMP_TEST_BROKER_WRAP a command to run mosquitto under (valgrind). 0 on success. */
int h_broker_start(h_broker *b, const char *data_dir, const char *log_types);
/* SIGTERM and wait: mosquitto's exit status, or -1. */
int h_broker_stop(h_broker *b);
/* 1 when needle is in the broker's log. */
int h_broker_log_has(const h_broker *b, const char *needle);

#endif
