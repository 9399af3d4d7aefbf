#include "broker/acl.h"

#include <string.h>

unsigned imp_acl_perm_parse(const char *permission)
{
	if(!permission) return 0;
	if(strcmp(permission, "publish-subscribe") == 0) return IMP_CH_PUBLISH | IMP_CH_SUBSCRIBE;
	if(strcmp(permission, "publish") == 0) return IMP_CH_PUBLISH;
	if(strcmp(permission, "subscribe") == 0) return IMP_CH_SUBSCRIBE;
	return 0;
}

/* A filter's wildcards stand alone in their level, and '#' only as the last level. */
static int filter_valid(const char *f)
{
	for(size_t i = 0; f[i]; i++) {
		if(f[i] != '+' && f[i] != '#') continue;
		if(i > 0 && f[i - 1] != '/') return 0;
		if(f[i + 1] && (f[i] == '#' || f[i + 1] != '/')) return 0;
	}
	return 1;
}

/* The rest of topic after prefix, or NULL when topic is NULL or does not start with it.
 * Chained, it matches a topic's levels one part at a time: the check runs for every
 * message a client publishes, where formatting the whole prefix (snprintf) cost more than
 * the rest of the check. */
static const char *after(const char *topic, const char *prefix)
{
	size_t n = strlen(prefix);
	return topic && strncmp(topic, prefix, n) == 0 ? topic + n : NULL;
}

static const imp_acl_channel *channel(const imp_mqtt_principal *p, const char *name)
{
	for(size_t i = 0; i < p->nchannels; i++) {
		if(strcmp(p->channels[i].name, name) == 0) return &p->channels[i];
	}
	return NULL;
}

/* A device: its own topics only. reading covers READ and exact SUBSCRIBE. */
static int device_allowed(const imp_mqtt_principal *p, const char *topic, int wildcard, imp_acl_action action, int qos)
{
	/* xi/blue/v1/{accountId}/d/{deviceId}/ */
	const char *rest = after(after(after(after(after(topic, "xi/blue/v1/"), p->account_id), "/d/"), p->id), "/");
	/* A wildcard filter within the device's own tree can match only its topics; what it
	 * may not read there is held back by the per-message check. */
	if(wildcard) return rest != NULL;
	int writing = action == IMP_ACL_WRITE;
	if(rest) {
		if(strcmp(rest, "_log") == 0 || strcmp(rest, "_set/fields") == 0) return writing;
		if(strcmp(rest, "_updates/fields") == 0 || strcmp(rest, "_rejected") == 0) return !writing;
		const imp_acl_channel *c = channel(p, rest);
		if(!c) return 0;
		return (c->perm & (writing ? IMP_CH_PUBLISH : IMP_CH_SUBSCRIBE)) != 0;
	}
	if((rest = after(after(after(topic, "xi/ctrl/v1/"), p->id), "/"))) {
		if(strcmp(rest, "cln") == 0) return !writing;
		if(strcmp(rest, "svc") == 0) return writing && qos == 0;
	}
	return 0;
}

/* An account user: anything in its own account's tree, nothing else. */
static int account_user_allowed(const imp_mqtt_principal *p, const char *topic)
{
	/* xi/blue/v1/{accountId}/ and below, or xi/blue/v1/{accountId} itself */
	const char *rest = after(after(topic, "xi/blue/v1/"), p->account_id);
	return rest && (rest[0] == '\0' || rest[0] == '/');
}

/* An end user: the devices reach admits, and on them: every channel, _log, _set/fields,
 * _updates/fields and _rejected to read or subscribe; publishing only on channels that let
 * the cloud talk to the device (permission subscribe or publish-subscribe). A wildcard
 * filter must name the device. */
static int end_user_allowed(const imp_mqtt_principal *p, const char *topic, int wildcard, imp_acl_action action)
{
	char dev[IMP_UUID_LEN + 1];
	const char *rest = after(after(after(topic, "xi/blue/v1/"), p->account_id), "/d/");
	const char *slash = rest ? strchr(rest, '/') : NULL;
	if(!slash || slash - rest != IMP_UUID_LEN || !p->reach) return 0;
	memcpy(dev, rest, IMP_UUID_LEN);
	dev[IMP_UUID_LEN] = '\0';
	if(strpbrk(dev, "+#")) return 0;
	const char *sub = slash + 1;
	int writing = action == IMP_ACL_WRITE;
	if(wildcard) return p->reach(p, dev, NULL, NULL);
	if(strcmp(sub, "_log") == 0 || strcmp(sub, "_set/fields") == 0 || strcmp(sub, "_updates/fields") == 0 ||
	   strcmp(sub, "_rejected") == 0)
		return !writing && p->reach(p, dev, NULL, NULL);
	unsigned perm = 0;
	if(!sub[0] || !p->reach(p, dev, sub, &perm)) return 0;
	return writing ? (perm & IMP_CH_SUBSCRIBE) != 0 : 1;
}

int imp_acl_allowed(const imp_mqtt_principal *p, const char *topic, imp_acl_action action, int qos)
{
	if(!p || !topic || !topic[0] || topic[0] == '$') return 0;
	if(strlen(p->account_id) != IMP_UUID_LEN || strlen(p->id) != IMP_UUID_LEN) return 0;
	int wildcard = strpbrk(topic, "+#") != NULL;
	if(wildcard && (action != IMP_ACL_SUBSCRIBE || !filter_valid(topic))) return 0;
	switch(p->type) {
	case IMP_PRINCIPAL_DEVICE: return device_allowed(p, topic, wildcard, action, qos);
	case IMP_PRINCIPAL_ACCOUNT_USER: return account_user_allowed(p, topic);
	case IMP_PRINCIPAL_END_USER: return end_user_allowed(p, topic, wildcard, action);
	}
	return 0;
}
