/* Who a connected MQTT client is, for the topic rules (acl.h), read from the store once:
 * at connect in the plugin, per request in POST /api/v1/broker/authorize. */
#ifndef IMP_BROKER_PRINCIPAL_H
#define IMP_BROKER_PRINCIPAL_H
#include "broker/acl.h"
#include "store/store.h"

/* Fills p for entity id, described by row (from imp_verify_*): its type, its account's id
 * and, for a device, its template's channels with their permissions (p->channels is
 * allocated here; release with imp_principal_clear()). IMP_ERR_NOT_FOUND when an end user
 * vanished meanwhile, IMP_ERR_INVALID for an entity type with no topic rules,
 * IMP_ERR_NOMEM, or the store's error. */
imp_err imp_principal_load(imp_db *db, const char *id, const imp_auth_row *row, imp_mqtt_principal *p);

/* Fills p for device id (row->is_device) with a copy of the n channels ch of its template,
 * read before (the plugin keeps them per template). IMP_ERR_NOMEM. */
imp_err imp_principal_device(const char *id, const imp_auth_row *row, const imp_acl_channel *ch, size_t n,
                             imp_mqtt_principal *p);

/* The channels of a device template, read now into *ch (allocated; imp_free) and *n. */
imp_err imp_principal_template_channels(imp_db *db, int64_t account, const char *template_id, imp_acl_channel **ch,
                                        size_t *n);
/* Replaces p's channels with a copy of the n channels ch. IMP_ERR_NOMEM leaves p as it was. */
imp_err imp_principal_set_channels(imp_mqtt_principal *p, const imp_acl_channel *ch, size_t n);

/* Frees p's channels; p may then be reused. */
void imp_principal_clear(imp_mqtt_principal *p);

#endif
