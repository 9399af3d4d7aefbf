/* Memory copies of each device template's channel templates and custom fields, which every
 * device read and write needs. Any committed write to a template, a channel template or a
 * custom field empties the cache (imp_template_cache_forget), so a later request never
 * sees an older copy than the store; a request racing the write may still use the copy
 * from just before it, as if it had run a moment earlier. Only this process writes through
 * the API, so it is the one to know. */
#ifndef IMP_API_TEMPLATE_CACHE_H
#define IMP_API_TEMPLATE_CACHE_H
#include "store/store.h"

/* The channel template and custom field documents of template tid in account, each with
 * its "id": references (the caller decrefs them) to arrays the cache shares between
 * threads, so they are read-only: never change them or anything in them (jansson counts
 * references atomically; reading a tree from several threads is safe). channels may be
 * NULL (fields only). */
imp_err imp_template_cache_get(imp_db *db, int64_t account, const char *tid, json_t **channels, json_t **fields);

void imp_template_cache_forget(void);
/* Moves on at every imp_template_cache_forget: a copy taken from the cache at or after
 * reading generation g is current while this still says g. While the thread has it
 * pinned, the pinned one. */
uint64_t imp_template_cache_generation(void);

/* Pins, for this thread, the generation read now (or unpins with 0): the cache then reads
 * and fills as of it. A request reading a snapshot kept from before it started pins
 * before it takes the snapshot, so what it puts in the cache is tagged with a generation
 * no later than the rows it read (see imp_auth_pin). */
void imp_template_cache_pin(int on);

#endif
