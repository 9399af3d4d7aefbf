/* Connection status, written off the broker thread: the broker thread appends to a queue
 * under a mutex held only for the append; this thread takes the whole queue, records each
 * device's last change in the status map (imp_status_*: lastConnected, a memory store) and
 * writes devices.connected in one transaction, on a read-write connection of its own, for
 * the devices whose connected changed: that one may wait for the store's write lock as the
 * broker thread never may. In a connect storm most sessions end within the window, so most
 * windows write nothing to the store. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "broker/plugin.h"
#include "core/ids.h"
#include "core/limits.h"
#include "core/mem.h"
#include "core/timeutil.h"

#define QUEUE_MAX (1024 * 1024)   /* changes waiting; past this they are dropped */
#define BUSY_MS 5000
/* At most one status transaction per WRITE_EVERY_MS. Every commit in the store empties
 * the page cache of the broker thread's read-only connection (SQLite resets a reader's
 * cache when the WAL changed under it), so in a connect storm a commit per connect made
 * every login read its B-tree pages again; and one transaction of many rows costs less
 * than many of one. Status still shows in the API well within a second. */
#define WRITE_EVERY_MS 100

struct item {
	char id[IMP_UUID_LEN + 1];
	int64_t key;
	int connected;
	uint64_t at;
};

static struct {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct item *q;
	size_t n, cap;
	int stop, started;
	int idle;            /* the thread waits for a first change (a push wakes it) */
	imp_db *db;
	imp_status *map;
	atomic_ulong failures;
} S = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* Records the last change of each device in items: both columns come from it, so the
 * earlier ones (a connect and its disconnect in one batch, as in a reconnect storm) would
 * only be overwritten. seen: 2n slots, scratch; an item to write keeps its slot's mark with
 * bit 31 set. */
#define WRITE (1u << 31)
static void write_all(struct item *items, size_t n, uint32_t *seen)
{
	size_t slots = 2 * n, writes = 0;
	memset(seen, 0, slots * sizeof *seen);
	for(size_t i = n; i-- > 0;) {
		size_t k = imp_id_hash(items[i].id) % slots;
		int dup = 0;
		for(; seen[k]; k = (k + 1) % slots) {
			if((dup = strcmp(items[(seen[k] & ~WRITE) - 1].id, items[i].id) == 0)) break;
		}
		if(dup) continue;
		seen[k] = (uint32_t)i + 1;
		if(imp_status_note(S.map, items[i].key, items[i].id, items[i].connected, items[i].at)) {
			seen[k] |= WRITE;
			writes++;
		}
	}
	if(!writes) return;
	imp_err rc = imp_db_tx_begin(S.db);
	for(size_t k = 0; !rc && k < slots; k++) {
		if(!(seen[k] & WRITE)) continue;
		struct item *it = &items[(seen[k] & ~WRITE) - 1];
		/* Found by id (key 0: a disconnect the broker knew nothing of), the device's key
		 * comes back for its slot. */
		rc = imp_db_device_set_connected(S.db, &it->key, it->id, it->connected, it->at);
		if(rc == IMP_ERR_NOT_FOUND) {   /* deleted meanwhile, or not a device */
			imp_status_forget(S.map, it->key, it->id);
			seen[k] &= ~WRITE;
			rc = IMP_OK;
		}
	}
	if(!rc) rc = imp_db_tx_commit(S.db);
	if(rc) {
		imp_db_tx_rollback(S.db);
		atomic_fetch_add(&S.failures, 1);
		return;
	}
	for(size_t k = 0; k < slots; k++) {
		if(!(seen[k] & WRITE)) continue;
		const struct item *it = &items[(seen[k] & ~WRITE) - 1];
		imp_status_stored(S.map, it->key, it->id, it->connected, it->at);
	}
}

static void *run(void *arg)
{
	struct item *batch = NULL;
	size_t batch_cap = 0, seen_cap = 0;
	uint32_t *seen = NULL;
	pthread_mutex_lock(&S.lock);
	for(;;) {
		S.idle = 1;
		while(!S.n && !S.stop) pthread_cond_wait(&S.wake, &S.lock);
		S.idle = 0;
		if(!S.n && S.stop) break;
		/* Swap buffers: the broker thread appends to the other one meanwhile. */
		struct item *q = S.q;
		size_t n = S.n, cap = S.cap;
		S.q = batch;
		S.cap = batch_cap;
		S.n = 0;
		batch = q;
		batch_cap = cap;
		pthread_mutex_unlock(&S.lock);
		if(seen_cap < 2 * batch_cap) {
			imp_free(seen);
			seen_cap = 2 * batch_cap;
			seen = imp_malloc(seen_cap * sizeof *seen);
			if(!seen) seen_cap = 0;
		}
		uint64_t began = imp_mono_us();
		if(seen) write_all(batch, n, seen);
		else atomic_fetch_add(&S.failures, 1);
		pthread_mutex_lock(&S.lock);
		/* Let changes gather until the window is over (stop ends the wait). */
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		uint64_t spent_us = imp_mono_us() - began, left_us = 0;
		if(spent_us < WRITE_EVERY_MS * 1000) left_us = WRITE_EVERY_MS * 1000 - spent_us;
		until.tv_nsec += (long)(left_us % 1000000) * 1000;
		until.tv_sec += (time_t)(left_us / 1000000) + until.tv_nsec / 1000000000;
		until.tv_nsec %= 1000000000;
		while(!S.stop && pthread_cond_timedwait(&S.wake, &S.lock, &until) == 0) {}
	}
	pthread_mutex_unlock(&S.lock);
	imp_free(batch);
	imp_free(seen);
	return arg;
}

imp_err plugin__status_start(const char *path)
{
	imp_err rc = imp_db_open(path, 0, BUSY_MS, &S.db);
	if(rc) return rc;
	/* Without the status file (it cannot be made), every change goes to the store, as
	 * before there was one: slower in a storm, never wrong. */
	if(imp_status_open(path, 1, &S.map)) {
		S.map = NULL;
		atomic_fetch_add(&S.failures, 1);
	}
	/* A batch in the server holds the write lock for long runs of transactions. */
	imp_db_busy_poll(S.db);
	/* A broker starting has no sessions: whatever a crash left marked connected is not.
	 * The map's marks go once the store's have: until then both still agree. */
	if(imp_db_tx_begin(S.db) || imp_db_devices_disconnect_all(S.db) || imp_db_tx_commit(S.db)) {
		imp_db_tx_rollback(S.db);
		atomic_fetch_add(&S.failures, 1);
	} else {
		imp_status_restart(S.map);
	}
	S.stop = 0;
	/* The window's wait on the monotonic clock: a step of the wall clock must not hold the
	 * status writes back. */
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_destroy(&S.wake);
	pthread_cond_init(&S.wake, &attr);
	pthread_condattr_destroy(&attr);
	if(pthread_create(&S.thread, NULL, run, NULL)) {
		imp_db_close(&S.db);
		imp_status_close(&S.map);
		return IMP_ERR_NOMEM;
	}
	S.started = 1;
	return IMP_OK;
}

int plugin__status_push(const char *device_id, int64_t key, int connected)
{
	int rc = 0;
	pthread_mutex_lock(&S.lock);
	if(S.n == S.cap) {
		size_t cap = S.cap ? 2 * S.cap : 256;
		struct item *q = cap <= QUEUE_MAX ? imp_realloc(S.q, cap * sizeof *q) : NULL;
		if(q) {
			S.q = q;
			S.cap = cap;
		}
	}
	if(S.n < S.cap) {
		struct item *it = &S.q[S.n++];
		snprintf(it->id, sizeof it->id, "%s", device_id);
		it->key = key;
		it->connected = connected;
		it->at = imp_now_ms();
		if(S.idle) pthread_cond_signal(&S.wake);
	} else {
		rc = -1;
	}
	pthread_mutex_unlock(&S.lock);
	return rc;
}

void plugin__status_stop(void)
{
	if(!S.started) return;
	pthread_mutex_lock(&S.lock);
	S.stop = 1;
	pthread_cond_signal(&S.wake);
	pthread_mutex_unlock(&S.lock);
	pthread_join(S.thread, NULL);
	S.started = 0;
	imp_free(S.q);
	S.q = NULL;
	S.n = S.cap = 0;
	imp_db_close(&S.db);
	imp_status_close(&S.map);
}

unsigned long plugin__status_failures(void) { return atomic_load(&S.failures); }
