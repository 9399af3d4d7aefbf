#include "core/ratelimit.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "core/crypto.h"
#include "core/mem.h"
#include "core/timeutil.h"

/* Room to keep keys apart: with 4,096 slots, a run of full slots sometimes made a fresh key
 * share a blocked key's counter (seen in the unit test with 2,000 keys). */
#define SLOTS 16384
#define PROBE 64   /* slots from a key's home slot where its counter may live */

struct slot {
	uint64_t hash;
	uint64_t window;   /* index of the window the count belongs to */
	unsigned count;
};

struct imp_ratelimit {
	pthread_mutex_t lock;
	unsigned max, window_s;
	uint8_t key[crypto_shorthash_KEYBYTES]; /* keyed hash: no one can pick a key's slot */
	struct slot slots[SLOTS];
};

static uint64_t hash_key(const imp_ratelimit *rl, const char *key)
{
	uint8_t out[crypto_shorthash_BYTES];
	uint64_t h;
	crypto_shorthash(out, (const unsigned char *)key, strlen(key), rl->key);
	memcpy(&h, out, sizeof h);
	return h | 1;
}

imp_ratelimit *imp_ratelimit_new(unsigned max, unsigned window_s)
{
	imp_ratelimit *rl = imp_calloc(1, sizeof *rl);
	if(!rl) return NULL;
	if(imp_random(rl->key, sizeof rl->key)) {
		imp_free(rl);
		return NULL;
	}
	pthread_mutex_init(&rl->lock, NULL);
	rl->max = max;
	rl->window_s = window_s ? window_s : 1;
	return rl;
}

void imp_ratelimit_free(imp_ratelimit **rl)
{
	if(!*rl) return;
	pthread_mutex_destroy(&(*rl)->lock);
	imp_free(*rl);
	*rl = NULL;
}

/* key's counter: the slot near its home that holds its hash in this window, else a free
 * one there (claimed). When all are taken in this window (a flood), the home slot is shared:
 * stricter, never looser, and a counter with failures is never taken over. */
static struct slot *find(imp_ratelimit *rl, const char *key, uint64_t window)
{
	uint64_t h = hash_key(rl, key);
	struct slot *free_slot = NULL;
	for(unsigned i = 0; i < PROBE; i++) {
		struct slot *s = &rl->slots[(h + i) % SLOTS];
		if(s->window == window && s->hash == h) return s;
		if(!free_slot && (s->window != window || s->count == 0)) free_slot = s;
	}
	if(!free_slot) return &rl->slots[h % SLOTS];
	free_slot->hash = h;
	free_slot->window = window;
	free_slot->count = 0;
	return free_slot;
}

unsigned imp_ratelimit_blocked(imp_ratelimit *rl, const char *key)
{
	uint64_t now = imp_now_ms() / 1000;
	uint64_t window = now / rl->window_s;
	pthread_mutex_lock(&rl->lock);
	unsigned count = find(rl, key, window)->count;
	pthread_mutex_unlock(&rl->lock);
	if(count < rl->max) return 0;
	return (unsigned)((window + 1) * rl->window_s - now);
}

void imp_ratelimit_fail(imp_ratelimit *rl, const char *key)
{
	uint64_t window = imp_now_ms() / 1000 / rl->window_s;
	pthread_mutex_lock(&rl->lock);
	find(rl, key, window)->count++;
	pthread_mutex_unlock(&rl->lock);
}
