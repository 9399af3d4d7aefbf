/* The topic rules of MQTT.md ("Topics and who may use them") as one pure function: who
 * (a principal and, for a device, its channels), which topic, what action -> allow or deny.
 * No store, no mosquitto types: the plugin's ACL callback and POST
 * /api/v1/broker/authorize both call imp_acl_allowed, so the rules hold the same in both. */
#ifndef IMP_BROKER_ACL_H
#define IMP_BROKER_ACL_H
#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"

typedef enum {
	IMP_ACL_READ,       /* a message about to be delivered (per-message check) */
	IMP_ACL_WRITE,      /* a message published by the client */
	IMP_ACL_SUBSCRIBE   /* a subscription filter, wildcards allowed */
} imp_acl_action;

typedef enum {
	IMP_PRINCIPAL_DEVICE,
	IMP_PRINCIPAL_ACCOUNT_USER,
	/* Reaches the devices of its organization and of those below it, through reach. */
	IMP_PRINCIPAL_END_USER
} imp_principal_type;

#define IMP_CH_PUBLISH   1u
#define IMP_CH_SUBSCRIBE 2u

typedef struct {
	char name[IMP_CHANNEL_MAX + 1];
	unsigned perm;                     /* IMP_CH_PUBLISH | IMP_CH_SUBSCRIBE */
} imp_acl_channel;

typedef struct imp_mqtt_principal imp_mqtt_principal;

/* End users: 1 when device_id is a device in p's organizations and, when channel is not
 * NULL, that device has a channel of that name (its IMP_CH_* bits into *perm); else 0,
 * also when it cannot tell. It may read a store (the plugin's read-only connection, which
 * never waits on a lock): which devices an end user reaches changes with every claim and
 * release, so it is asked per topic instead of loaded once. */
typedef int (*imp_acl_reach_fn)(const imp_mqtt_principal *p, const char *device_id, const char *channel,
                                unsigned *perm);

struct imp_mqtt_principal {
	imp_principal_type type;
	char account_id[IMP_UUID_LEN + 1];
	char id[IMP_UUID_LEN + 1];         /* the device's or user's id (the MQTT client id) */
	size_t nchannels;
	imp_acl_channel *channels;         /* a device's channels; owned by whoever filled it */
	int64_t account;                   /* the account's store key */
	int64_t device_key;                /* a device's row key */
	char org_id[IMP_UUID_LEN + 1];     /* end users: their organization */
	char template_id[IMP_UUID_LEN + 1];   /* devices: their template */
	imp_acl_reach_fn reach;            /* end users; NULL reaches nothing */
	void *reach_arg;                   /* what reach reads (the store connection) */
};

/* The channel permission bits of a channel template's "permission" value
 * (publish-subscribe, publish, subscribe); 0 for anything else. */
unsigned imp_acl_perm_parse(const char *permission);

/* 1 when p may do action on topic (a topic name for READ and WRITE, a filter for
 * SUBSCRIBE), else 0. qos is the message's QoS for WRITE (the control topic takes QoS 0
 * only); ignored otherwise. Malformed topics (empty levels are fine, misplaced wildcards,
 * wildcards in a topic name, '$' topics) are refused. */
int imp_acl_allowed(const imp_mqtt_principal *p, const char *topic, imp_acl_action action, int qos);

#endif
