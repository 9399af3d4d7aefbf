/* The channels of device templates, kept by the plugin (see plugin.h): a direct-mapped
 * table of TEMPLATE_SLOTS slots by template id; a template that collides with another
 * replaces it and is read again at its next connect. An account holds few templates, and
 * a store of a million devices typically a handful. In mosquitto's allocator. */
#include <mosquitto_broker.h>
#include <stdio.h>
#include <string.h>

#include "broker/plugin.h"
#include "core/ids.h"

#define TEMPLATE_SLOTS 512

static struct slot {
	char id[IMP_UUID_LEN + 1];   /* "" when free */
	int64_t account;
	imp_acl_channel *ch;
	size_t n;
} T[TEMPLATE_SLOTS];

static struct slot *slot_of(const char *template_id) { return &T[imp_id_hash(template_id) % TEMPLATE_SLOTS]; }

static void empty(struct slot *s)
{
	mosquitto_free(s->ch);
	memset(s, 0, sizeof *s);
}

int plugin__templates_get(int64_t account, const char *template_id, const imp_acl_channel **ch, size_t *n)
{
	struct slot *s = slot_of(template_id);
	if(!s->id[0] || s->account != account || strcmp(s->id, template_id) != 0) return 0;
	*ch = s->ch;
	*n = s->n;
	return 1;
}

void plugin__templates_put(int64_t account, const char *template_id, const imp_acl_channel *ch, size_t n)
{
	struct slot *s = slot_of(template_id);
	empty(s);
	if(strlen(template_id) > IMP_UUID_LEN) return;
	if(n && !(s->ch = mosquitto_malloc(n * sizeof *ch))) return;
	if(n) memcpy(s->ch, ch, n * sizeof *ch);
	s->n = n;
	s->account = account;
	snprintf(s->id, sizeof s->id, "%s", template_id);
}

void plugin__templates_forget(const char *template_id)
{
	struct slot *s = slot_of(template_id);
	if(strcmp(s->id, template_id) == 0) empty(s);
}

void plugin__templates_free(void)
{
	for(size_t i = 0; i < TEMPLATE_SLOTS; i++) empty(&T[i]);
}
