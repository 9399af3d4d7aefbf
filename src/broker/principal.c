#include "broker/principal.h"

#include <stdio.h>
#include <string.h>

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

imp_err imp_principal_load(imp_db *db, const char *id, const imp_auth_row *row, imp_mqtt_principal *p)
{
	memset(p, 0, sizeof *p);
	snprintf(p->id, sizeof p->id, "%s", id);
	snprintf(p->account_id, sizeof p->account_id, "%s", row->account_id.s);
	if(row->is_device) p->type = IMP_PRINCIPAL_DEVICE;
	else if(strcmp(row->entity_type, "accountUser") == 0) p->type = IMP_PRINCIPAL_ACCOUNT_USER;
	else if(strcmp(row->entity_type, "endUser") == 0) p->type = IMP_PRINCIPAL_END_USER;
	else return IMP_ERR_INVALID;
	if(p->type != IMP_PRINCIPAL_DEVICE) return IMP_OK;
	struct collect c = {p, 0, IMP_OK};
	imp_err rc = imp_db_device_channels(db, row->account, id, add_channel, &c);
	if(!rc) rc = c.rc;
	if(rc) imp_principal_clear(p);
	return rc;
}

void imp_principal_clear(imp_mqtt_principal *p)
{
	imp_free(p->channels);
	p->channels = NULL;
	p->nchannels = 0;
}
