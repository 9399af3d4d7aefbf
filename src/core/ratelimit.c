#include "core/ratelimit.h"

#include <pthread.h>

#include "core/mem.h"
#include "core/timeutil.h"

#define SLOTS 4096

struct slot {
	uint64_t hash;
	uint64_t window;   /* index of the window the count belongs to */
	unsigned count;
};

struct imp_ratelimit {
	pthread_mutex_t lock;
	unsigned max, window_s;
	struct slot slots[SLOTS];
};

static uint64_t hash_key(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for(; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h | 1;
}

imp_ratelimit *imp_ratelimit_new(unsigned max, unsigned window_s)
{
	imp_ratelimit *rl = imp_calloc(1, sizeof *rl);
	if(!rl) return NULL;
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

static struct slot *find(imp_ratelimit *rl, const char *key, uint64_t window)
{
	struct slot *s = &rl->slots[hash_key(key) % SLOTS];
	if(s->window != window) {
		s->window = window;
		s->count = 0;
	}
	return s;
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
