#include "broker/principal.h"

#include <stdio.h>
#include <string.h>

#include "core/ids.h"
#include "core/mem.h"

struct collect {
	imp_mqtt_principal *p;
	size_t cap;
	imp_err rc;
};

static int add_channel(const char *name, const char *permission, void *arg)
{
	struct collect *c = arg;
	imp_mqtt_principal *p = c->p;
	if(p->nchannels == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 8;
		imp_acl_channel *grown = imp_realloc(p->channels, cap * sizeof *grown);
		if(!grown) {
			c->rc = IMP_ERR_NOMEM;
			return 1;
		}
		p->channels = grown;
		c->cap = cap;
	}
	imp_acl_channel *ch = &p->channels[p->nchannels++];
	snprintf(ch->name, sizeof ch->name, "%s", name);
	ch->perm = imp_acl_perm_parse(permission);
	return 0;
}

struct find {
	const char *name;
	unsigned perm;
	int found;
};

static int find_channel(const char *name, const char *permission, void *arg)
{
	struct find *f = arg;
	if(strcmp(name, f->name) != 0) return 0;
	f->perm = imp_acl_perm_parse(permission);
	f->found = 1;
	return 1;
}

/* Two indexed reads per check (three with a channel): an end user's traffic is small, and
 * a claim or a release counts from the next message on. */
static int end_user_reach(const imp_mqtt_principal *p, const char *device_id, const char *channel, unsigned *perm)
{
	imp_db *db = p->reach_arg;
	int within = 0;
	if(!db || !imp_id_valid(device_id) || imp_db_device_within(db, p->account, device_id, p->org_id, &within) || !within)
		return 0;
	if(!channel) return 1;
	struct find f = {channel, 0, 0};
	if(imp_db_device_channels(db, p->account, device_id, find_channel, &f) || !f.found) return 0;
	*perm = f.perm;
	return 1;
}

/* What every principal has: its id, type and account. */
static imp_err principal_base(const char *id, const imp_auth_row *row, imp_mqtt_principal *p)
{
	memset(p, 0, sizeof *p);
	snprintf(p->id, sizeof p->id, "%s", id);
	snprintf(p->account_id, sizeof p->account_id, "%s", row->account_id.s);
	if(row->is_device) p->type = IMP_PRINCIPAL_DEVICE;
	else if(strcmp(row->entity_type, "accountUser") == 0) p->type = IMP_PRINCIPAL_ACCOUNT_USER;
	else if(strcmp(row->entity_type, "endUser") == 0) p->type = IMP_PRINCIPAL_END_USER;
	else return IMP_ERR_INVALID;
	p->account = row->account;
	p->device_key = row->is_device ? row->device_key : 0;
	if(row->is_device) snprintf(p->template_id, sizeof p->template_id, "%s", row->template_id);
	return IMP_OK;
}

imp_err imp_principal_load(imp_db *db, const char *id, const imp_auth_row *row, imp_mqtt_principal *p)
{
	imp_err rc = principal_base(id, row, p);
	if(rc) return rc;
	if(p->type == IMP_PRINCIPAL_END_USER) {
		imp_entity u;
		if((rc = imp_db_get(db, &imp_kind_end_user, row->account, id, &u))) return rc;
		snprintf(p->org_id, sizeof p->org_id, "%s", json_string_value(json_object_get(u.doc, "organizationId")));
		imp_entity_clear(&u);
		p->reach = end_user_reach;
		p->reach_arg = db;
		return IMP_OK;
	}
	if(p->type != IMP_PRINCIPAL_DEVICE) return IMP_OK;
	return imp_principal_template_channels(db, row->account, row->template_id, &p->channels, &p->nchannels);
}

imp_err imp_principal_device(const char *id, const imp_auth_row *row, const imp_acl_channel *ch, size_t n,
                             imp_mqtt_principal *p)
{
	imp_err rc = principal_base(id, row, p);
	return rc ? rc : imp_principal_set_channels(p, ch, n);
}

imp_err imp_principal_template_channels(imp_db *db, int64_t account, const char *template_id, imp_acl_channel **ch,
                                        size_t *n)
{
	imp_mqtt_principal p = {0};
	struct collect c = {&p, 0, IMP_OK};
	imp_err rc = imp_db_template_channels(db, account, template_id, add_channel, &c);
	if(!rc) rc = c.rc;
	if(rc) {
		imp_principal_clear(&p);
		return rc;
	}
	*ch = p.channels;
	*n = p.nchannels;
	return IMP_OK;
}

imp_err imp_principal_set_channels(imp_mqtt_principal *p, const imp_acl_channel *ch, size_t n)
{
	imp_acl_channel *copy = n ? imp_malloc(n * sizeof *ch) : NULL;
	if(n && !copy) return IMP_ERR_NOMEM;
	if(n) memcpy(copy, ch, n * sizeof *ch);
	imp_free(p->channels);
	p->channels = copy;
	p->nchannels = n;
	return IMP_OK;
}

void imp_principal_clear(imp_mqtt_principal *p)
{
	imp_free(p->channels);
	p->channels = NULL;
	p->nchannels = 0;
}
