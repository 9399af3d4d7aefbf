/* Password logins of devices, in memory, so a connect reads nothing from the store.
 *
 * A login query cost the broker thread about 40 us of a connect's 140-170 (SQLite's page
 * lookups, and the preads and file locks of a read that every commit of another connection
 * makes start cold). Here each device that can log in with a password has one slot of 32
 * bytes: its id (128 bits), the first 64 bits of its secret's keyed hash, its row key and
 * the slot of its (account, template). A thread loads them at start; a login the table does
 * not answer with "allowed" (unknown, disabled, other methods, a wrong secret) goes to the
 * store as before, and a device the store allows is added.
 *
 * Exact, not eventually right: every commit holding a change row (a secret replaced or
 * revoked, a device disabled or deleted) moves the feed's generation counter on, in a
 * file both processes map, before anyone is answered. Every login compares it with the
 * generation this table last caught up with, and reads the new changes first when it
 * moved, dropping the devices they name. The table is valid for every change up to seq.
 *
 * 64 bits of the keyed hash: a guess matches with probability 2^-64, and a guess is a TCP
 * connection; the server key that makes the hash never leaves the data directory. */
#include <mosquitto_broker.h>
#include <mosquitto.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <stdatomic.h>
#include <string.h>

#include "broker/plugin.h"
#include "core/crypto.h"
#include "core/ids.h"
#include "core/mem.h"

#define KEY_BITS 40                     /* device row keys up to 2^40 are kept */
#define TMPL_MAX ((1u << 24) - 1)       /* template slots fit the other 24 bits */
#define FEED_BATCH 1000
#define RETRY_MS 1000                   /* a load that failed (store busy) runs again */

struct login {
	uint64_t hi, lo;   /* the device id; 0, 0 is a free slot (a UUIDv7 is never that) */
	uint64_t mac;      /* first 8 bytes of the secret's keyed hash */
	uint64_t ref;      /* device row key | template slot << KEY_BITS */
};

struct tmpl {
	int64_t account;
	char account_id[IMP_UUID_LEN + 1];
	char template_id[IMP_UUID_LEN + 1];
};

struct table {
	struct login *slots;
	size_t cap, n;
	struct tmpl *tmpls;
	uint32_t *tmpl_index;   /* open addressing over tmpls: slot + 1, 0 free */
	size_t ntmpls, tmpl_cap, index_cap;
	int64_t seq;            /* every change up to seq is reflected */
	uint64_t gen;           /* the feed generation read before the read seq came from */
	uint64_t seed;
};

static struct {
	int on;                 /* the feed file is mapped: the table may answer */
	imp_feed *feed;
	struct table t;         /* the broker thread's; slots NULL until the first load */
	char *path;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int started, stop, want_load;
	struct table *ready;    /* a finished load, for the broker thread to take */
	atomic_int has_ready;
	int reload_asked;
} L = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* ---- the table ---------------------------------------------------------------------------- */

static int hexval(char c)
{
	if(c >= '0' && c <= '9') return c - '0';
	if(c >= 'a' && c <= 'f') return c - 'a' + 10;
	return -1;   /* upper case too: the store compares ids as text */
}

/* A canonical lower-case UUID into 128 bits; 0 for anything else. */
static int parse_id(const char *s, uint64_t *hi, uint64_t *lo)
{
	if(!s || strlen(s) != IMP_UUID_LEN) return 0;
	uint64_t v[2] = {0, 0};
	int nib = 0;
	for(int i = 0; i < IMP_UUID_LEN; i++) {
		if(i == 8 || i == 13 || i == 18 || i == 23) {
			if(s[i] != '-') return 0;
			continue;
		}
		int x = hexval(s[i]);
		if(x < 0) return 0;
		v[nib / 16] = v[nib / 16] << 4 | (uint64_t)x;
		nib++;
	}
	*hi = v[0];
	*lo = v[1];
	return (*hi | *lo) != 0;
}

static uint64_t mac64(const uint8_t *mac)
{
	uint64_t m;
	memcpy(&m, mac, sizeof m);
	return m;
}

static int mac_from_hex(const char *hex, uint64_t *out)
{
	uint8_t b[8];
	if(!hex || strlen(hex) != 64) return 0;
	for(int i = 0; i < 8; i++) {
		int a = hexval(hex[2 * i]), c = hexval(hex[2 * i + 1]);
		if(a < 0 || c < 0) return 0;
		b[i] = (uint8_t)(a << 4 | c);
	}
	*out = mac64(b);
	return 1;
}

/* The id's home slot: ids are mixed with a seed of this process, so ids chosen by a
 * client cannot be aimed at one run of slots. */
static size_t home(const struct table *t, uint64_t hi, uint64_t lo)
{
	uint64_t h = lo ^ (hi * 0x9e3779b97f4a7c15u) ^ t->seed;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdu;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53u;
	h ^= h >> 33;
	return (size_t)(((unsigned __int128)h * t->cap) >> 64);
}

static size_t find(const struct table *t, uint64_t hi, uint64_t lo)
{
	for(size_t i = home(t, hi, lo);; i = i + 1 == t->cap ? 0 : i + 1) {
		const struct login *s = &t->slots[i];
		if(!s->hi && !s->lo) return SIZE_MAX;
		if(s->hi == hi && s->lo == lo) return i;
	}
}

/* Linear probing, so a slot is freed by moving later members of its run back. */
static void erase(struct table *t, size_t i)
{
	size_t j = i;
	for(;;) {
		j = j + 1 == t->cap ? 0 : j + 1;
		struct login *s = &t->slots[j];
		if(!s->hi && !s->lo) break;
		size_t k = home(t, s->hi, s->lo);
		/* s may fill the hole at i unless its home lies cyclically in (i, j]. */
		if(i <= j ? (i < k && k <= j) : (i < k || k <= j)) continue;
		t->slots[i] = *s;
		i = j;
	}
	memset(&t->slots[i], 0, sizeof t->slots[i]);
	t->n--;
}

/* Room for one more: the table is kept at most 7/8 full so a miss stays a short walk. */
static int full(const struct table *t) { return (t->n + 1) * 8 > t->cap * 7; }

static int put(struct table *t, uint64_t hi, uint64_t lo, uint64_t mac, uint64_t ref)
{
	size_t i = home(t, hi, lo);
	for(;; i = i + 1 == t->cap ? 0 : i + 1) {
		struct login *s = &t->slots[i];
		if(s->hi == hi && s->lo == lo) break;
		if(!s->hi && !s->lo) {
			if(full(t)) return -1;
			t->n++;
			break;
		}
	}
	t->slots[i] = (struct login){hi, lo, mac, ref};
	return 0;
}

static size_t tmpl_home(const struct table *t, int64_t account, const char *template_id)
{
	return (imp_id_hash(template_id) ^ (uint32_t)account * 0x9e3779b9u) & (t->index_cap - 1);
}

static int tmpl_index_grow(struct table *t)
{
	size_t cap = t->index_cap ? 2 * t->index_cap : 64;
	uint32_t *ix = imp_calloc(cap, sizeof *ix);
	if(!ix) return -1;
	imp_free(t->tmpl_index);
	t->tmpl_index = ix;
	t->index_cap = cap;
	for(size_t n = 0; n < t->ntmpls; n++) {
		size_t i = tmpl_home(t, t->tmpls[n].account, t->tmpls[n].template_id);
		while(ix[i]) i = (i + 1) & (cap - 1);
		ix[i] = (uint32_t)n + 1;
	}
	return 0;
}

/* The slot of (account, template), added when new; -1 when out of room. */
static long tmpl_slot(struct table *t, int64_t account, const char *account_id, const char *template_id)
{
	if(strlen(account_id) > IMP_UUID_LEN || strlen(template_id) > IMP_UUID_LEN) return -1;
	size_t i = t->index_cap ? tmpl_home(t, account, template_id) : 0;
	for(; t->index_cap && t->tmpl_index[i]; i = (i + 1) & (t->index_cap - 1)) {
		const struct tmpl *m = &t->tmpls[t->tmpl_index[i] - 1];
		if(m->account == account && strcmp(m->template_id, template_id) == 0) return (long)t->tmpl_index[i] - 1;
	}
	if(t->ntmpls >= TMPL_MAX) return -1;
	if(t->ntmpls == t->tmpl_cap) {
		size_t cap = t->tmpl_cap ? 2 * t->tmpl_cap : 16;
		struct tmpl *g = imp_realloc(t->tmpls, cap * sizeof *g);
		if(!g) return -1;
		t->tmpls = g;
		t->tmpl_cap = cap;
	}
	struct tmpl *m = &t->tmpls[t->ntmpls++];
	m->account = account;
	snprintf(m->account_id, sizeof m->account_id, "%s", account_id);
	snprintf(m->template_id, sizeof m->template_id, "%s", template_id);
	if(2 * t->ntmpls > t->index_cap) {
		if(tmpl_index_grow(t)) {
			t->ntmpls--;
			return -1;
		}
		return (long)t->ntmpls - 1;
	}
	i = tmpl_home(t, account, template_id);
	while(t->tmpl_index[i]) i = (i + 1) & (t->index_cap - 1);
	t->tmpl_index[i] = (uint32_t)t->ntmpls;
	return (long)t->ntmpls - 1;
}

/* Adds a device as the store described it; 0, or -1 when it cannot be kept. */
static int add(struct table *t, const char *id, uint64_t mac, int64_t key, int64_t account, const char *account_id,
               const char *template_id)
{
	uint64_t hi, lo;
	if(!parse_id(id, &hi, &lo) || key <= 0 || (uint64_t)key >> KEY_BITS) return -1;
	long ts = tmpl_slot(t, account, account_id, template_id);
	if(ts < 0) return -1;
	return put(t, hi, lo, mac, (uint64_t)key | (uint64_t)ts << KEY_BITS);
}

static void table_free(struct table *t)
{
	imp_free(t->slots);
	imp_free(t->tmpls);
	imp_free(t->tmpl_index);
	memset(t, 0, sizeof *t);
}

/* Frees a table of its own allocation (a load's) and clears the pointer. */
static void table_drop(struct table **t)
{
	if(!*t) return;
	table_free(*t);
	imp_free(*t);
	*t = NULL;
}

/* ---- the loader ----------------------------------------------------------------------------- */

struct load {
	struct table *t;
	int64_t *estimate;
	int failed;
};

static int load_row(const imp_login_row *r, void *arg)
{
	struct load *ld = arg;
	struct table *t = ld->t;
	if(!t->slots) {
		/* Room for a quarter more devices than now before a load runs again. */
		size_t est = *ld->estimate > 0 ? (size_t)*ld->estimate : 0;
		t->cap = est + est / 4 + 1024;
		if(!(t->slots = imp_calloc(t->cap, sizeof *t->slots))) return ld->failed = 1;
	}
	uint64_t mac;
	if(mac_from_hex(r->secret, &mac)) add(t, r->id, mac, r->key, r->account, r->account_id, r->template_id);
	return 0;
}

static struct table *load(void)
{
	imp_db *db = NULL;
	struct table *t = imp_calloc(1, sizeof *t);
	if(!t || imp_db_open(L.path, 1, 0, &db) || imp_random(&t->seed, sizeof t->seed)) {
		imp_free(t);
		imp_db_close(&db);
		return NULL;
	}
	/* The generation first: a change committed after it (even one the read below sees)
	 * makes the broker thread read the feed from seq on. */
	t->gen = imp_feed_gen(L.feed);
	int64_t estimate = 0;
	struct load ld = {t, &estimate, 0};
	imp_err rc = imp_db_password_logins(db, &t->seq, &estimate, load_row, &ld);
	imp_db_close(&db);
	if(!rc && !ld.failed && !t->slots) {
		t->cap = 1024;
		if(!(t->slots = imp_calloc(t->cap, sizeof *t->slots))) ld.failed = 1;
	}
	if(rc || ld.failed) table_drop(&t);
	return t;
}

static void *run(void *arg)
{
	pthread_mutex_lock(&L.lock);
	while(!L.stop) {
		if(!L.want_load) {
			pthread_cond_wait(&L.wake, &L.lock);
			continue;
		}
		pthread_mutex_unlock(&L.lock);
		struct table *t = load();
		pthread_mutex_lock(&L.lock);
		if(!t) {
			/* Busy or short of memory: the store answers logins meanwhile. */
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += RETRY_MS / 1000;
			while(!L.stop && pthread_cond_timedwait(&L.wake, &L.lock, &until) == 0) {}
			continue;
		}
		L.want_load = 0;
		table_drop(&L.ready);
		L.ready = t;
		atomic_store(&L.has_ready, 1);
	}
	pthread_mutex_unlock(&L.lock);
	return arg;
}

static void ask_load(void)
{
	pthread_mutex_lock(&L.lock);
	L.want_load = 1;
	pthread_cond_signal(&L.wake);
	pthread_mutex_unlock(&L.lock);
}

/* ---- the broker thread ---------------------------------------------------------------------- */

static void adopt(void)
{
	if(!atomic_load(&L.has_ready)) return;
	pthread_mutex_lock(&L.lock);
	struct table *t = L.ready;
	L.ready = NULL;
	atomic_store(&L.has_ready, 0);
	pthread_mutex_unlock(&L.lock);
	if(!t) return;
	table_free(&L.t);
	L.t = *t;
	imp_free(t);
	L.reload_asked = 0;
	mosquitto_log_printf(MOSQ_LOG_INFO, "imprint: %zu password logins in memory (%zu KiB)", L.t.n,
	                     L.t.cap * sizeof *L.t.slots / 1024);
}

struct catch_up {
	struct table *t;
	int64_t prev;   /* the seq of the row before */
	int rows;
};

/* Nothing kept: the store answers until a new load is in. */
static void forget_all(struct table *t)
{
	memset(t->slots, 0, t->cap * sizeof *t->slots);
	t->n = 0;
	mosquitto_log_printf(MOSQ_LOG_WARNING, "imprint: the change feed moved past the logins in memory; loading them again");
	if(!L.reload_asked) ask_load();
	L.reload_asked = 1;
}

static int drop_changed(int64_t seq, const char *entity_id, const char *what, void *arg)
{
	struct catch_up *c = arg;
	c->rows++;
	/* The feed has no holes but where old rows were pruned: a hole means changes this
	 * table never saw, so it forgets everything at once (not after the read: a read that
	 * fails after the hole must not leave it forgotten). */
	if(seq != c->prev + 1 && c->t->n) forget_all(c->t);
	c->prev = seq;
	uint64_t hi, lo;
	size_t i;
	if(parse_id(entity_id, &hi, &lo) && (i = find(c->t, hi, lo)) != SIZE_MAX) erase(c->t, i);
	return 0;
}

/* Brings the table up to the feed: 1 when it is current; 0 when it must not answer now
 * (the store did not answer, or more changes wait than one read takes: the next login or
 * tick reads on, so a burst of changes never holds one login up for long). Reads when the
 * generation moved, or always with force. */
static int catch_up(imp_db *db, int force)
{
	struct table *t = &L.t;
	uint64_t gen = imp_feed_gen(L.feed);
	if(gen == t->gen && !force) return 1;
	struct catch_up c = {t, t->seq, 0};
	if(imp_db_changes_since(db, &t->seq, FEED_BATCH, drop_changed, &c) || c.rows == FEED_BATCH) return 0;
	t->gen = gen;
	return 1;
}

int plugin__logins_check(imp_db *db, int64_t feed_seq, const char *clientid, const char *username,
                         const uint8_t *mac, imp_auth_row *row)
{
	if(!L.on) return 0;
	adopt();
	uint64_t hi, lo;
	if(!L.t.slots || !parse_id(clientid, &hi, &lo)) return 0;
	if(username && username[0] && strcmp(username, clientid) != 0) return 0;
	/* The generation moves just after a commit, so the tick may have read a change before
	 * it moved: then this reads the feed too, whatever the generation says. */
	if(!catch_up(db, feed_seq > L.t.seq)) return 0;
	size_t i = find(&L.t, hi, lo);
	if(i == SIZE_MAX) return 0;
	const struct login *s = &L.t.slots[i];
	/* Not equal: perhaps a guess, perhaps the store knows better; it decides. */
	if(!imp_ct_equal(&s->mac, mac, sizeof s->mac)) return 0;
	const struct tmpl *m = &L.t.tmpls[s->ref >> KEY_BITS];
	memset(row, 0, sizeof *row);
	row->is_device = 1;
	row->account = m->account;
	snprintf(row->account_id.s, sizeof row->account_id.s, "%s", m->account_id);
	snprintf(row->template_id, sizeof row->template_id, "%s", m->template_id);
	snprintf(row->entity_type, sizeof row->entity_type, "device");
	snprintf(row->method, sizeof row->method, "password");
	snprintf(row->auth_method, sizeof row->auth_method, "password");
	row->device_key = (int64_t)(s->ref & ((1ull << KEY_BITS) - 1));
	row->change_seq = L.t.seq;
	return 1;
}

void plugin__logins_put(const char *clientid, const uint8_t *mac, const imp_auth_row *row)
{
	if(!L.on || !L.t.slots || !row->is_device || row->disabled || strcmp(row->auth_method, "password") != 0 ||
	   strcmp(row->method, "password") != 0)
		return;
	if(add(&L.t, clientid, mac64(mac), row->device_key, row->account, row->account_id.s, row->template_id) && full(&L.t) &&
	   !L.reload_asked) {
		/* The fleet outgrew the table: a new load sizes it for what is there now. */
		ask_load();
		L.reload_asked = 1;
	}
}

void plugin__logins_tick(imp_db *db)
{
	if(!L.on) return;
	adopt();
	/* The feed is read every tick, moved or not: a generation that did not move (a server
	 * that died between its commit and the increment) delays a change by a tick at most,
	 * and the rows are read long before they are old enough to be pruned. */
	if(L.t.slots) catch_up(db, 1);
}

int plugin__logins_start(const char *db_path)
{
	if(imp_feed_open(db_path, &L.feed) || !(L.path = imp_strdup(db_path))) {
		imp_feed_close(&L.feed);
		return -1;
	}
	L.stop = 0;
	L.want_load = 1;
	if(pthread_create(&L.thread, NULL, run, NULL)) {
		imp_free(L.path);
		L.path = NULL;
		imp_feed_close(&L.feed);
		return -1;
	}
	L.started = 1;
	L.on = 1;
	return 0;
}

void plugin__logins_stop(void)
{
	if(L.started) {
		pthread_mutex_lock(&L.lock);
		L.stop = 1;
		pthread_cond_signal(&L.wake);
		pthread_mutex_unlock(&L.lock);
		pthread_join(L.thread, NULL);
		L.started = 0;
	}
	table_drop(&L.ready);
	atomic_store(&L.has_ready, 0);
	table_free(&L.t);
	imp_free(L.path);
	L.path = NULL;
	imp_feed_close(&L.feed);
	L.on = L.reload_asked = L.want_load = 0;
}
