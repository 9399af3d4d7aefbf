/* Devices: the registry. Generic fields come from the kind; this file adds the template's
 * custom fields (validated on create and update) and the channels each device gets from
 * its template. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "api/resource.h"
#include "api/template_cache.h"
#include "core/limits.h"
#include "core/mem.h"
#include "core/rules.h"

static json_t *find_named(json_t *docs, const char *name)
{
	size_t i;
	json_t *d;
	json_array_foreach(docs, i, d) {
		if(strcmp(json_string_value(json_object_get(d, "name")), name) == 0) return d;
	}
	return NULL;
}

/* An end user may move a device only within its own organizations. */
static imp_err end_user_move(imp_req *r, json_t *doc, const imp_entity *old)
{
	json_t *to = json_object_get(doc, "organizationId");
	if(json_equal(to, json_object_get(old->doc, "organizationId"))) return IMP_OK;
	int within = 0;
	imp_err rc = json_is_string(to) ? imp_db_org_within(r->db, r->who.account, json_string_value(to), r->who.org_id.s, &within)
	                                : IMP_OK;
	if(rc) return rc;
	if(!within)
		return api_fail(r, IMP_ERR_INVALID, "unknown_reference", "organizationId",
		                "organizationId names no organization of this end user");
	return IMP_OK;
}

static imp_err device_validate(imp_req *r, json_t *doc, const imp_entity *old)
{
	if(old && r->who.type == IMP_ACTOR_END_USER) {
		imp_err rc = end_user_move(r, doc, old);
		if(rc) return rc;
	}
	const char *tid = json_string_value(json_object_get(doc, "deviceTemplateId"));
	json_t *fields;
	imp_err rc = imp_template_cache_get(r->db, r->who.account, tid, NULL, &fields);
	if(rc) return rc;
	const char *name;
	json_t *v;
	char why[160];
	json_object_foreach(doc, name, v) {
		if(imp_kind_field(&imp_kind_device, name)) continue;
		json_t *f = find_named(fields, name);
		/* a value kept from before its custom field was deleted does not block updates */
		if(!f && old && json_equal(v, json_object_get(old->doc, name))) continue;
		if(!f) {
			char safe[IMP_FIELD_NAME_MAX + 1];
			snprintf(safe, sizeof safe, "%s", name);
			for(char *p = safe; *p; p++) {
				if((unsigned char)*p < ' ' || (unsigned char)*p >= 0x7f) *p = '?';
			}
			rc = api_fail(r, IMP_ERR_BAD_REQUEST, "unknown_field", safe,
			              "unknown field %s: not a device field nor a custom field of the template", safe);
			goto out;
		}
		imp_field_type t = imp_field_type_parse(json_string_value(json_object_get(f, "fieldType")));
		int bad = imp_field_value_check(t, v, why, sizeof why);
		if(!bad && json_is_null(v) && json_is_true(json_object_get(f, "required"))) {
			bad = 2;
			snprintf(why, sizeof why, "is required");
		}
		if(bad) {
			rc = api_fail(r, bad == 1 ? IMP_ERR_BAD_REQUEST : IMP_ERR_INVALID, bad == 1 ? "invalid_type" : "invalid_field",
			              json_string_value(json_object_get(f, "name")), "%s %s",
			              json_string_value(json_object_get(f, "name")), why);
			goto out;
		}
	}
	if(!old) {
		size_t i;
		json_t *f;
		json_array_foreach(fields, i, f) {
			const char *fname = json_string_value(json_object_get(f, "name"));
			if(json_object_get(doc, fname)) continue;
			json_t *def = json_object_get(f, "default");
			if(def && !json_is_null(def)) {
				/* a copy: the cache's tree is shared and doc may be changed later */
				if(json_object_set_new(doc, fname, json_deep_copy(def))) {
					rc = api_fail(r, IMP_ERR_NOMEM, NULL, NULL, "out of memory");
					goto out;
				}
			} else if(json_is_true(json_object_get(f, "required"))) {
				rc = api_fail(r, IMP_ERR_INVALID, "missing_field", fname, "%s is required by the device template", fname);
				goto out;
			}
		}
	}
out:
	json_decref(fields);
	return rc;
}

void imp_render_cache_clear(imp_render_cache *c)
{
	json_decref(c->value);
	imp_jtext_free(&c->text);
	imp_free(c->cuts);
	memset(c, 0, sizeof *c);
}

/* The channel templates of e's template, into cache (kept for the next device). */
static imp_err channel_templates(imp_db *db, const imp_entity *e, imp_render_cache *cache)
{
	const char *tid = json_string_value(json_object_get(e->doc, "deviceTemplateId"));
	if(cache->value && strcmp(cache->key, tid) == 0) return IMP_OK;
	int64_t account = cache->account;
	uint64_t generation = cache->generation;
	imp_render_cache_clear(cache);
	cache->account = account;
	cache->generation = generation;
	json_t *fields;
	imp_err rc = imp_template_cache_get(db, e->account, tid, &cache->value, &fields);
	if(rc) return rc;
	json_decref(fields);
	snprintf(cache->key, sizeof cache->key, "%s", tid);
	return IMP_OK;
}

/* channels: one per channel template of the device's template, with its full topic. */
static imp_err device_channels(imp_db *db, const imp_entity *e, json_t *obj, imp_render_cache *cache)
{
	imp_render_cache local = {0};
	if(!cache) cache = &local;
	imp_err rc0 = channel_templates(db, e, cache);
	if(rc0) return rc0;
	json_t *channels = json_array();
	size_t i;
	json_t *c;
	imp_err rc = channels ? IMP_OK : IMP_ERR_NOMEM;
	json_array_foreach(cache->value, i, c) {
		if(rc) break;
		char topic[256];
		const char *name = json_string_value(json_object_get(c, "name"));
		snprintf(topic, sizeof topic, "xi/blue/v1/%s/d/%s/%s", e->account_id.s, e->id.s, name);
		json_t *ch = json_pack("{s:O?, s:s, s:O?, s:O?, s:s}", "channelTemplateId", json_object_get(c, "id"),
		                       "channelTemplateName", name, "persistenceType", json_object_get(c, "persistenceType"),
		                       "permission", json_object_get(c, "permission"), "channel", topic);
		if(!ch || json_array_append_new(channels, ch)) rc = IMP_ERR_NOMEM;
	}
	imp_render_cache_clear(&local);
	if(!rc) rc = json_object_set_new(obj, "channels", channels) ? IMP_ERR_NOMEM : IMP_OK;
	else json_decref(channels);
	return rc;
}

/* ,"channels":[...] of the channel templates in list for device device_id of account_id,
 * with the same members in the same order as device_channels. With cuts (names that need
 * no escape only), cuts[i] is where the device id starts in the text of channel i. */
static imp_err channels_text(imp_jtext *t, json_t *list, const char *account_id, const char *device_id,
                             size_t *cuts)
{
	imp_jtext_key(t, "channels", 1);
	imp_jtext_raw(t, "[", 1);
	size_t i;
	json_t *c;
	json_array_foreach(list, i, c) {
		const char *name = json_string_value(json_object_get(c, "name"));
		if(!name) return IMP_ERR_NOMEM; /* as json_pack fails on a missing "s" */
		imp_jtext_raw(t, i ? ",{" : "{", i ? 2 : 1);
		imp_jtext_key(t, "channelTemplateId", 0);
		imp_jtext_value(t, json_object_get(c, "id"));
		imp_jtext_key(t, "channelTemplateName", 1);
		imp_jtext_str_or_null(t, name);
		imp_jtext_key(t, "persistenceType", 1);
		imp_jtext_value(t, json_object_get(c, "persistenceType"));
		imp_jtext_key(t, "permission", 1);
		imp_jtext_value(t, json_object_get(c, "permission"));
		imp_jtext_key(t, "channel", 1);
		if(cuts) {
			/* as imp_jtext_str would write it: nothing in it needs an escape */
			imp_jtext_raw(t, "\"xi/blue/v1/", 12);
			imp_jtext_raw(t, account_id, strlen(account_id));
			imp_jtext_raw(t, "/d/", 3);
			cuts[i] = t->len;
			imp_jtext_raw(t, device_id, strlen(device_id));
			imp_jtext_raw(t, "/", 1);
			imp_jtext_raw(t, name, strlen(name));
			imp_jtext_raw(t, "\"", 1);
		} else {
			char topic[256];
			snprintf(topic, sizeof topic, "xi/blue/v1/%s/d/%s/%s", account_id, device_id, name);
			imp_jtext_str_or_null(t, topic);
		}
		imp_jtext_raw(t, "}", 1);
	}
	imp_jtext_raw(t, "]", 1);
	return t->failed ? IMP_ERR_NOMEM : IMP_OK;
}

/* The cached template's channels as text for a stand-in device id, and where it stands:
 * every device of the account gets the same bytes around its id, so a device's channels
 * are those pieces with its id between (a batch renders thousands). 0 when done, -1 when
 * this template's channels cannot be made so (the caller renders them itself). */
#define ID_LEN (sizeof "00000000-0000-0000-0000-000000000000" - 1)
static int channels_pre(imp_render_cache *cache, const char *account_id)
{
	imp_jtext_free(&cache->text);
	imp_free(cache->cuts);
	cache->cuts = NULL;
	cache->ncuts = 0;
	cache->text_account[0] = '\0';
	size_t i, n = json_array_size(cache->value);
	json_t *c;
	char why[160];
	/* The names a channel template may have need no escape in JSON. */
	json_array_foreach(cache->value, i, c) {
		const char *name = json_string_value(json_object_get(c, "name"));
		if(!name || !imp_channel_name_valid(name, why, sizeof why)) return -1;
	}
	if(strlen(account_id) != ID_LEN || (n && !(cache->cuts = imp_malloc(n * sizeof *cache->cuts)))) return -1;
	imp_jtext_init(&cache->text, 16 * 1024 * 1024);
	if(channels_text(&cache->text, cache->value, account_id, "00000000-0000-0000-0000-000000000000", cache->cuts))
		return -1;
	cache->ncuts = n;
	snprintf(cache->text_account, sizeof cache->text_account, "%s", account_id);
	return 0;
}

/* A thread's cache for its single devices (a GET, a create's answer), kept between its
 * requests: a device of the same account and template then gets the pieces with its id
 * put in, as a list page's devices do, instead of its channels rendered afresh (which
 * was a sixth of a GET's own work). Dropped when any template changes. */
static pthread_key_t one_key;
static pthread_once_t one_once = PTHREAD_ONCE_INIT;
static int one_ok;

static void one_free(void *p)
{
	imp_render_cache_clear(p);
	imp_free(p);
}

static void one_init(void) { one_ok = pthread_key_create(&one_key, one_free) == 0; }

/* The thread's cache, for e; NULL when it cannot have one. */
static imp_render_cache *thread_cache(const imp_entity *e)
{
	pthread_once(&one_once, one_init);
	if(!one_ok) return NULL;
	imp_render_cache *c = pthread_getspecific(one_key);
	if(!c) {
		if(!(c = imp_calloc(1, sizeof *c))) return NULL;
		if(pthread_setspecific(one_key, c)) {
			imp_free(c);
			return NULL;
		}
	}
	/* Read before the copy is taken (channel_templates): a change after it moves the
	 * generation on, and the next device finds the copy dropped. */
	uint64_t gen = imp_template_cache_generation();
	if(c->generation != gen || c->account != e->account) {
		imp_render_cache_clear(c);
		c->generation = gen;
		c->account = e->account;
	}
	return c;
}

/* device_channels as text. */
static imp_err device_channels_text(imp_db *db, const imp_entity *e, imp_jtext *t, imp_render_cache *cache)
{
	imp_render_cache local = {0};
	/* Not from inside a write transaction: what it reads there may yet be rolled back
	 * (imp_db_in_write). */
	if(!cache && !imp_db_in_write(db)) cache = thread_cache(e);
	int one = !cache;   /* a single device: no pieces worth making */
	if(one) cache = &local;
	imp_err rc = channel_templates(db, e, cache);
	if(rc) return rc;
	if(one || strlen(e->id.s) != ID_LEN ||
	   (strcmp(cache->text_account, e->account_id.s) != 0 && channels_pre(cache, e->account_id.s))) {
		rc = channels_text(t, cache->value, e->account_id.s, e->id.s, NULL);
		imp_render_cache_clear(&local);
		return rc;
	}
	size_t at = 0;
	for(size_t k = 0; k < cache->ncuts; k++) {
		imp_jtext_raw(t, cache->text.s + at, cache->cuts[k] - at);
		imp_jtext_raw(t, e->id.s, ID_LEN);
		at = cache->cuts[k] + ID_LEN;
	}
	imp_jtext_raw(t, cache->text.s + at, cache->text.len - at);
	imp_render_cache_clear(&local);
	return t->failed ? IMP_ERR_NOMEM : IMP_OK;
}

/* A deleted device's credential goes with it, in the same transaction, and its live MQTT
 * session with it (change feed). Its batch items stay: they name it by id, so a resumed
 * batch answers device_deleted (src/api/batch.c). */
static imp_err device_before_delete(imp_req *r, const imp_entity *e)
{
	imp_err rc = imp_db_credential_delete_of(r->db, e->account, e->id.s);
	return rc ? rc : imp_db_change(r->db, e->id.s, "delete");
}

/* An end user reaches the devices of its organization and of those below it. */
static int device_reach(imp_req *r, const imp_entity *e)
{
	int within = 0;
	const char *org = json_string_value(json_object_get(e->doc, "organizationId"));
	if(!org || imp_db_org_within(r->db, e->account, org, r->who.org_id.s, &within)) return 0;
	return within;
}

const imp_resource imp_res_device = {
	.reach = device_reach,
	.before_delete = device_before_delete,
	.kind = &imp_kind_device,
	.open_fields = 1,
	.create_unmarked = 1,   /* device_validate only reads */
	.validate = device_validate,
	.render_extra = device_channels,
	.render_extra_text = device_channels_text,
};
