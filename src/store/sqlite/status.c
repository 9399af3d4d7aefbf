/* The connection-status map: one 64-bit word a device, at the device's row key, in a
 * file beside the store that the broker's status thread maps to write and the server maps
 * to read. See store.h (imp_status_*) for what it holds and why. */
#define _GNU_SOURCE   /* SEEK_DATA, SEEK_HOLE, fallocate */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ids.h"
#include "core/mem.h"
#include "core/timeutil.h"

/* A word: bits 63-21 the time of the device's last connect or disconnect, in milliseconds
 * since EPOCH_MS (43 bits: past the year 2200); bits 20-1 a tag of the device's id, never 0
 * in a used slot (SQLite gives a deleted device's key to the next new one, which must not
 * inherit its status); bit 0 what the store's devices.connected holds for it. Word 0 holds
 * MAGIC: keys start at 1. One word, so a reader never sees half of a change. */
#define EPOCH_MS 1577836800000ull   /* 2020-01-01T00:00:00Z */
#define TAG_BITS 20
#define AT_SHIFT 21
#define STORED 1ull
#define MAGIC 0x31746174737069ull   /* "ipstat1" */
#define FIRST_SLOTS (1u << 20)      /* 8 MiB, sparse: pages appear as devices connect */
#define MAX_SLOTS (1ull << 32)      /* keys past this go to the store alone */
#define RECHECK_MS 100              /* a reader looks for a grown or new file this often */

/* A reader's mapping; replaced, never unmapped while open (other threads may be reading
 * it), when the file grew. */
struct map {
	_Atomic uint64_t *w;
	uint64_t n;          /* slots */
	struct map *older;
};

struct imp_status {
	char *path;
	int writable;
	int fd;
	int grow_failed;               /* writer: no second try, so a key is always or never mapped */
	ino_t ino;
	struct map *_Atomic cur;
	pthread_mutex_t lock;          /* reader: one remap at a time */
	_Atomic uint64_t next_check;   /* reader: monotonic ms of the next look at the file */
};

static uint64_t tag_of(const char *device_id)
{
	return (uint64_t)(imp_id_hash(device_id) % ((1u << TAG_BITS) - 1)) + 1;
}

static uint64_t word_tag(uint64_t w) { return (w >> 1) & ((1u << TAG_BITS) - 1); }

static void unmap_all(struct map *m)
{
	while(m) {
		struct map *older = m->older;
		munmap((void *)m->w, m->n * sizeof *m->w);
		imp_free(m);
		m = older;
	}
}

/* Maps n slots of the open file, in front of the current mapping. */
static int map_slots(imp_status *s, uint64_t n)
{
	int prot = PROT_READ | (s->writable ? PROT_WRITE : 0);
	void *p = mmap(NULL, n * sizeof(uint64_t), prot, MAP_SHARED, s->fd, 0);
	if(p == MAP_FAILED) return -1;
	struct map *m = imp_calloc(1, sizeof *m);
	if(!m) {
		munmap(p, n * sizeof(uint64_t));
		return -1;
	}
	m->w = p;
	m->n = n;
	m->older = atomic_load(&s->cur);
	atomic_store(&s->cur, m);
	return 0;
}

/* The file holds n slots, its blocks reserved: a store into a hole of a shared mapping
 * that the file system cannot back (a full disk) kills the process with SIGBUS, where the
 * store would have answered "disk full". Reserved, unwritten blocks read as zeros, cost no
 * memory, and count as holes for SEEK_DATA. */
static int size_file(int fd, uint64_t n)
{
	off_t len = (off_t)(n * sizeof(uint64_t));
	struct stat sb;
	if(fstat(fd, &sb)) return -1;
	if(sb.st_size < len && ftruncate(fd, len)) return -1;
	return posix_fallocate(fd, 0, len) == 0 ? 0 : -1;
}

/* The writer's file: made when missing, started again when it is not a status file. */
static imp_err open_writer(imp_status *s)
{
	s->fd = open(s->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	struct stat sb;
	if(s->fd < 0 || fstat(s->fd, &sb)) return IMP_ERR_STORE;
	uint64_t n = ((uint64_t)sb.st_size + sizeof(uint64_t) - 1) / sizeof(uint64_t);
	if(n < FIRST_SLOTS) n = FIRST_SLOTS;
	if(size_file(s->fd, n) || map_slots(s, n)) return IMP_ERR_STORE;
	struct map *m = atomic_load(&s->cur);
	if(atomic_load(&m->w[0]) != MAGIC) {
		/* Not ours (or torn when it was made): nothing in it can be trusted. Emptied by
		 * punching its blocks out, which keeps it sparse and never shortens it under a
		 * reader's map (a read past the end of a file is SIGBUS too); by writing zeros
		 * where the file system cannot. A new file is all zeros already. */
		off_t len = (off_t)(n * sizeof(uint64_t));
		if(sb.st_size > 0 && fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, len))
			memset((void *)m->w, 0, m->n * sizeof *m->w);
		if(sb.st_size > 0 && posix_fallocate(s->fd, 0, len)) return IMP_ERR_STORE;
		atomic_store(&m->w[0], MAGIC);
	}
	return IMP_OK;
}

imp_err imp_status_open(const char *db_path, int writable, imp_status **out)
{
	*out = NULL;
	imp_status *s = imp_calloc(1, sizeof *s);
	size_t n = strlen(db_path);
	char *path = s ? imp_malloc(n + sizeof "-status") : NULL;
	if(!path) {
		imp_free(s);
		return IMP_ERR_NOMEM;
	}
	memcpy(path, db_path, n);
	memcpy(path + n, "-status", sizeof "-status");
	s->path = path;
	s->writable = writable;
	s->fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	if(writable) {
		imp_err rc = open_writer(s);
		if(rc) {
			imp_status_close(&s);
			return rc;
		}
	}
	/* A reader maps the file when it first needs it (the broker may not have made it yet). */
	*out = s;
	return IMP_OK;
}

void imp_status_close(imp_status **sp)
{
	imp_status *s = *sp;
	if(!s) return;
	unmap_all(atomic_load(&s->cur));
	if(s->fd >= 0) close(s->fd);
	pthread_mutex_destroy(&s->lock);
	imp_free(s->path);
	imp_free(s);
	*sp = NULL;
}

/* Writer: the slot of key, the file grown to hold it if need be; NULL when it has none. */
static _Atomic uint64_t *writer_slot(imp_status *s, int64_t key)
{
	if(!s || key <= 0 || (uint64_t)key >= MAX_SLOTS) return NULL;
	struct map *m = atomic_load(&s->cur);
	if((uint64_t)key < m->n) return &m->w[key];
	if(s->grow_failed) return NULL;
	uint64_t n = m->n;
	while(n <= (uint64_t)key) n *= 2;
	if(size_file(s->fd, n) || map_slots(s, n)) {
		s->grow_failed = 1;
		return NULL;
	}
	/* Only this thread uses the writer's maps: the old one can go. */
	m = atomic_load(&s->cur);
	unmap_all(m->older);
	m->older = NULL;
	return &m->w[key];
}

static uint64_t word_of(const char *device_id, uint64_t at_ms, uint64_t stored)
{
	uint64_t at = at_ms > EPOCH_MS ? at_ms - EPOCH_MS : 0;
	return (at & ((1ull << (64 - AT_SHIFT)) - 1)) << AT_SHIFT | tag_of(device_id) << 1 | stored;
}

int imp_status_note(imp_status *s, int64_t key, const char *device_id, int connected, uint64_t at_ms)
{
	_Atomic uint64_t *slot = writer_slot(s, key);
	if(!slot) return -1;
	uint64_t w = atomic_load(slot);
	/* Another device's word (a deleted device's key given to a new one, and one of the two
	 * is late): neither may take it from the other on a note, which the store has not
	 * confirmed; the store is written, and imp_status_stored hands the slot to the device
	 * the store has at this key. */
	if(w && word_tag(w) != tag_of(device_id)) return 1;
	uint64_t stored = w & STORED;
	atomic_store(slot, word_of(device_id, at_ms, stored));
	return (stored != 0) != (connected != 0);
}

void imp_status_stored(imp_status *s, int64_t key, const char *device_id, int connected, uint64_t at_ms)
{
	_Atomic uint64_t *slot = writer_slot(s, key);
	if(slot) atomic_store(slot, word_of(device_id, at_ms, connected ? STORED : 0));
}

void imp_status_forget(imp_status *s, int64_t key, const char *device_id)
{
	_Atomic uint64_t *slot = writer_slot(s, key);
	if(slot && word_tag(atomic_load(slot)) == tag_of(device_id)) atomic_store(slot, 0);
}

void imp_status_restart(imp_status *s)
{
	if(!s) return;
	struct map *m = atomic_load(&s->cur);
	uint64_t buf[8192];
	off_t end = (off_t)(m->n * sizeof(uint64_t)), at = 0;
	/* Read through the descriptor, holes skipped: through the map, every page of a sparse
	 * file would become memory. */
	while(at < end) {
		off_t data = lseek(s->fd, at, SEEK_DATA);
		if(data < 0 || data >= end) break;
		off_t hole = lseek(s->fd, data, SEEK_HOLE);
		if(hole < 0 || hole > end) hole = end;
		data -= data % (off_t)sizeof(uint64_t);
		for(at = data; at < hole;) {
			size_t want = (size_t)(hole - at) < sizeof buf ? (size_t)(hole - at) : sizeof buf;
			ssize_t got = pread(s->fd, buf, want, at);
			if(got < 0 && errno == EINTR) continue;
			if(got < (ssize_t)sizeof(uint64_t)) return;
			uint64_t first = (uint64_t)at / sizeof(uint64_t);
			for(size_t i = 0; i < (size_t)got / sizeof(uint64_t); i++) {
				if(first + i == 0 || !(buf[i] & STORED)) continue;
				atomic_fetch_and(&m->w[first + i], ~STORED);
			}
			at += got - got % (ssize_t)sizeof(uint64_t);
		}
	}
}

/* Reader: maps the file anew when it grew or was replaced since the last look. */
static void reader_refresh(imp_status *s)
{
	pthread_mutex_lock(&s->lock);
	struct stat sb;
	struct map *m = atomic_load(&s->cur);
	if(stat(s->path, &sb) == 0 && (uint64_t)sb.st_size >= 2 * sizeof(uint64_t) &&
	   (sb.st_ino != s->ino || !m || (uint64_t)sb.st_size / sizeof(uint64_t) > m->n)) {
		int fd = open(s->path, O_RDONLY | O_CLOEXEC);
		if(fd >= 0) {
			int old = s->fd;
			s->fd = fd;
			/* The size of the file this descriptor opened, which a writer may have grown
			 * since: a map never reaches past the end of its file. */
			if(fstat(fd, &sb) == 0 && map_slots(s, (uint64_t)sb.st_size / sizeof(uint64_t)) == 0) {
				s->ino = sb.st_ino;
				if(old >= 0) close(old);
			} else {
				s->fd = old;
				close(fd);
			}
		}
	}
	pthread_mutex_unlock(&s->lock);
}

uint64_t imp_status_last(imp_status *s, int64_t key, const char *device_id)
{
	if(key <= 0) return 0;
	uint64_t now = imp_mono_us() / 1000, due = atomic_load(&s->next_check);
	if(now >= due && atomic_compare_exchange_strong(&s->next_check, &due, now + RECHECK_MS)) reader_refresh(s);
	struct map *m = atomic_load(&s->cur);
	if(!m || (uint64_t)key >= m->n || atomic_load(&m->w[0]) != MAGIC) return 0;
	uint64_t w = atomic_load(&m->w[key]);
	if(!w || word_tag(w) != tag_of(device_id)) return 0;
	return (w >> AT_SHIFT) + EPOCH_MS;
}
