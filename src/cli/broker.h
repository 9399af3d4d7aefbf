/* The broker `imprint serve` runs beside the API: mosquitto with imprint's plugin, on a
 * configuration written into the data directory at each start (DATA/broker/mosquitto.conf),
 * supervised by a thread that restarts it when it dies and stops it when serve stops.
 * docs/broker.md is the operator's side of this. */
#ifndef IMP_CLI_BROKER_H
#define IMP_CLI_BROKER_H

#include "core/err.h"

#define IMP_BROKER_CONF     "broker/mosquitto.conf"
#define IMP_BROKER_PLUGIN   "imprint_mosquitto.so" /* looked for beside the imprint binary */
#define IMP_MQTT_LISTEN     "127.0.0.1:1883"
#define IMP_MQTTS_LISTEN    "127.0.0.1:8883"
#define IMP_MQTTS_CERT_LISTEN "127.0.0.1:8884"

typedef struct {
	const char *data_dir;
	const char *mqtt_listen;       /* plain MQTT, HOST:PORT or "off"; loopback only unless mqtt_insecure */
	const char *mqtts_listen;      /* TLS, HOST:PORT or "off" */
	const char *mqtts_cert_listen; /* TLS with client certificates, HOST:PORT or "off" */
	int mqtt_insecure;             /* allow the plain listener off loopback */
	const char *tls_cert, *tls_key; /* the operator's; NULL: DATA/tls/server.crt and .key */
	const char *plugin;            /* NULL: IMP_BROKER_PLUGIN beside the imprint binary */
	int insecure_no_plugin;        /* no plugin: every client accepted (loopback listeners only) */
	const char *mosquitto;         /* NULL: mosquitto on PATH, then /usr/sbin/mosquitto */
} imp_broker_opts;

typedef struct imp_broker imp_broker;

/* Writes the configuration, fills DATA/broker/capath with the accounts' device CAs, starts
 * mosquitto and returns once it reports that it runs; from then on restarts it when it dies
 * (1 s, doubling to 30 s; back to 1 s after a minute up). Its output goes to stderr, each
 * line prefixed "mosquitto: ". Call with SIGINT and SIGTERM blocked (the supervisor thread
 * inherits the mask). *out is freed by imp_broker_stop.
 * IMP_ERR_INVALID for refused options, IMP_ERR_IO when files cannot be written or
 * mosquitto does not start (each with a message on stderr); IMP_ERR_NOMEM. */
imp_err imp_broker_start(const imp_broker_opts *o, imp_broker **out);

/* The pid of the running mosquitto, 0 between restarts. */
int imp_broker_pid(imp_broker *b);

/* Stops mosquitto (SIGTERM, SIGKILL after 5 s), ends the supervisor and frees *b; sets it
 * to NULL. Accepts NULL. */
void imp_broker_stop(imp_broker **b);

/* ---- between broker_conf.c and broker.c ---- */

/* What broker_conf.c resolved: the programs and files the supervisor runs. */
typedef struct {
	char mosquitto[4096];
	char conf[4096 + 64];
	char ports[512]; /* "mqtt://127.0.0.1:1883, ..." for the log */
} broker__plan;

/* Checks the options, finds mosquitto and the plugin, prepares TLS and the capath, writes
 * the configuration. Messages for the operator go to stderr. Errors as imp_broker_start. */
imp_err broker__prepare(const imp_broker_opts *o, broker__plan *plan);

#endif
