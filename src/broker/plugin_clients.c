/* The per-client cache: a hash table of client ids (UUIDs), chained, doubling when it
 * holds as many entries as buckets. In mosquitto's allocator, so its accounting sees it. */
#include <mosquitto_broker.h>
#include <stdint.h>
#include <string.h>

#include "broker/plugin.h"
#include "core/ids.h"

static plugin_client **buckets;
static size_t nbuckets, count;

static size_t hash(const char *id) { return imp_id_hash(id); }

static int grow(void)
{
	size_t n = nbuckets ? 2 * nbuckets : 1024;
	plugin_client **b = mosquitto_calloc(n, sizeof *b);
	if(!b) return -1;
	for(size_t i = 0; i < nbuckets; i++) {
		while(buckets[i]) {
			plugin_client *c = buckets[i];
			buckets[i] = c->next;
			size_t j = hash(c->p.id) % n;
			c->next = b[j];
			b[j] = c;
		}
	}
	mosquitto_free(buckets);
	buckets = b;
	nbuckets = n;
	return 0;
}

plugin_client *plugin__clients_get(const char *id)
{
	if(!nbuckets) return NULL;
	for(plugin_client *c = buckets[hash(id) % nbuckets]; c; c = c->next) {
		if(strcmp(c->p.id, id) == 0) return c;
	}
	return NULL;
}

void plugin__clients_del(const char *id)
{
	if(!nbuckets) return;
	for(plugin_client **pc = &buckets[hash(id) % nbuckets]; *pc; pc = &(*pc)->next) {
		plugin_client *c = *pc;
		if(strcmp(c->p.id, id) == 0) {
			*pc = c->next;
			imp_principal_clear(&c->p);
			mosquitto_free(c);
			count--;
			return;
		}
	}
}

imp_err plugin__clients_put(const void *conn, int64_t change_seq, imp_mqtt_principal *p)
{
	plugin__clients_del(p->id);
	if(count >= nbuckets && grow() && !nbuckets) {
		imp_principal_clear(p);
		return IMP_ERR_NOMEM;
	}
	plugin_client *c = mosquitto_calloc(1, sizeof *c);
	if(!c) {
		imp_principal_clear(p);
		return IMP_ERR_NOMEM;
	}
	c->conn = conn;
	c->change_seq = change_seq;
	c->p = *p;
	p->channels = NULL;
	p->nchannels = 0;
	size_t i = hash(c->p.id) % nbuckets;
	c->next = buckets[i];
	buckets[i] = c;
	count++;
	return IMP_OK;
}

size_t plugin__clients_count(void) { return count; }

void plugin__clients_each(void (*fn)(plugin_client *c, void *arg), void *arg)
{
	for(size_t i = 0; i < nbuckets; i++) {
		for(plugin_client *c = buckets[i]; c; c = c->next) fn(c, arg);
	}
}

void plugin__clients_free(void)
{
	for(size_t i = 0; i < nbuckets; i++) {
		while(buckets[i]) {
			plugin_client *c = buckets[i];
			buckets[i] = c->next;
			imp_principal_clear(&c->p);
			mosquitto_free(c);
		}
	}
	mosquitto_free(buckets);
	buckets = NULL;
	nbuckets = count = 0;
}
