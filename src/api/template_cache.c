#include "api/template_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/ids.h"

#define SLOTS 64

struct slot {
	char tid[IMP_UUID_LEN + 1];
	int64_t account;
	uint64_t gen;
	json_t *channels;
	json_t *fields;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot slots[SLOTS];
static atomic_uint_fast64_t generation = 1;
static __thread uint64_t pinned;   /* imp_template_cache_pin's generation, or 0 */

static json_t *take_doc(imp_db *db, const imp_kind *k, const imp_entity *e, void *arg)
{
	json_t *d = json_copy(e->doc);
	if(d && json_object_set_new(d, "id", json_string(e->id.s))) {
		json_decref(d);
		return NULL;
	}
	return d;
}

static imp_err docs_where(imp_db *db, const imp_kind *k, int64_t account, const char *field, const char *id,
                          json_t **out)
{
	imp_filter f = {field, id};
	imp_query q = {.filters = &f, .nfilters = 1, .sort = "created", .page = 1, .page_size = 1000, .after = -1};
	int64_t count, last;
	*out = json_array();
	if(!*out) return IMP_ERR_NOMEM;
	imp_err rc = imp_db_list(db, k, account, &q, take_doc, NULL, *out, &count, &last);
	if(rc) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

static unsigned slot_of(const char *tid) { return imp_id_hash(tid) % SLOTS; }

imp_err imp_template_cache_get(imp_db *db, int64_t account, const char *tid, json_t **channels, json_t **fields)
{
	struct slot *s = &slots[slot_of(tid)];
	uint64_t gen = imp_template_cache_generation();
	json_t *chs = NULL;
	int hit = 0;
	if(channels) *channels = NULL;
	*fields = NULL;
	pthread_mutex_lock(&lock);
	if(s->gen == gen && s->account == account && strcmp(s->tid, tid) == 0) {
		if(channels) chs = json_incref(s->channels);
		*fields = json_incref(s->fields);
		hit = 1;
	}
	pthread_mutex_unlock(&lock);
	if(hit && (chs || !channels) && *fields) {
		if(channels) *channels = chs;
		return IMP_OK;
	}
	json_decref(chs);
	json_decref(*fields);
	*fields = NULL;

	imp_err rc = docs_where(db, &imp_kind_channel_template, account, "entityId", tid, &chs);
	if(!rc) rc = docs_where(db, &imp_kind_device_field, account, "deviceTemplateId", tid, fields);
	if(rc) {
		json_decref(chs);
		return rc;
	}
	json_t *c = json_incref(chs), *f = json_incref(*fields);
	if(channels) *channels = chs;
	else json_decref(chs);
	/* Read inside a write transaction, these may hold another request's changes that its
	 * group could still roll back (no forget would follow): used, not kept. */
	int keep = !imp_db_in_write(db);
	pthread_mutex_lock(&lock);
	if(c && f && keep && atomic_load(&generation) == gen) {
		json_decref(s->channels);
		json_decref(s->fields);
		snprintf(s->tid, sizeof s->tid, "%s", tid);
		s->account = account;
		s->gen = gen;
		s->channels = c;
		s->fields = f;
		c = f = NULL;
	}
	pthread_mutex_unlock(&lock);
	json_decref(c);
	json_decref(f);
	return IMP_OK;
}

void imp_template_cache_forget(void) { atomic_fetch_add(&generation, 1); }
uint64_t imp_template_cache_generation(void) { return pinned ? pinned : atomic_load(&generation); }
void imp_template_cache_pin(int on) { pinned = on ? atomic_load(&generation) : 0; }
