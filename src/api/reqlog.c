/* The request log, written in batches. One write a request cost 3.5% of the server's
 * cycles under a stream of device creates (a syscall, and an ext4 buffered write when
 * stderr is a file), so lines gather in one buffer, written in order when it fills or when
 * it is IMP_REQLOG_FLUSH_MS old, whichever comes first, as nginx's `access_log ...
 * buffer= flush=` does. One buffer for all threads keeps the lines in the order their
 * requests ended. Its lock is held for the copy of a line and, by the thread that finds the
 * buffer full or by the flusher, for the write: a stderr that blocks holds up the requests
 * that end meanwhile, as stdio's lock on stderr did before. Writes go out in pieces of at
 * most PIPE_BUF bytes that end a line, so on a pipe (systemd, a supervisor) the lines that
 * others write at once (the broker's, errors) never land inside one. An idle server's
 * flusher sleeps until a line comes. A process killed outright loses at most the last
 * IMP_REQLOG_FLUSH_MS of lines. */
#include "api/reqlog.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/timeutil.h"

#define LOG_CAP 16384
#define LINE_MAX_LEN 256

static pthread_mutex_t life = PTHREAD_MUTEX_INITIALIZER; /* opens and closes, one at a time */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* the buffer and the flusher's state */
static pthread_cond_t wake;
static pthread_t flusher;
static int opens;    /* nested opens; the flusher runs while > 0 */
static int stopping; /* the flusher is asked to end */
static char buf[LOG_CAP];
static size_t len;

/* Writes all of p (whole lines, each shorter than PIPE_BUF) to stderr, lock held so lines
 * keep their order, in pieces of whole lines of at most PIPE_BUF bytes: a pipe takes each in
 * one piece. A failing stderr drops them: there is nowhere else to say so. */
static void write_out(const char *p, size_t n)
{
	while(n) {
		size_t piece = n;
		if(piece > PIPE_BUF) {
			piece = PIPE_BUF;
			while(piece > 0 && p[piece - 1] != '\n') piece--;
			if(piece == 0) piece = PIPE_BUF;
		}
		ssize_t w = write(STDERR_FILENO, p, piece);
		if(w < 0 && errno == EINTR) continue;
		if(w <= 0) return;
		p += w;
		n -= (size_t)w;
	}
}

static void flush_locked(void)
{
	write_out(buf, len);
	len = 0;
}

static void *flusher_run(void *arg)
{
	pthread_mutex_lock(&lock);
	while(!stopping) {
		if(!len) {
			pthread_cond_wait(&wake, &lock); /* the first line of a batch, or the stop */
			continue;
		}
		struct timespec at = imp_deadline(IMP_REQLOG_FLUSH_MS);
		/* IMP_REQLOG_FLUSH_MS after the first line, whatever wakes it meanwhile */
		while(!stopping && pthread_cond_timedwait(&wake, &lock, &at) != ETIMEDOUT) continue;
		if(len) flush_locked();
	}
	pthread_mutex_unlock(&lock);
	return arg;
}

imp_err imp_reqlog_open(void)
{
	imp_err rc = IMP_OK;
	pthread_mutex_lock(&life);
	pthread_mutex_lock(&lock);
	if(opens == 0) {
		stopping = 0;
		if(imp_cond_init_monotonic(&wake)) {
			rc = IMP_ERR_IO;
		} else if(pthread_create(&flusher, NULL, flusher_run, NULL)) {
			pthread_cond_destroy(&wake);
			rc = IMP_ERR_IO;
		}
	}
	if(!rc) opens++;
	pthread_mutex_unlock(&lock);
	pthread_mutex_unlock(&life);
	return rc;
}

void imp_reqlog_line(const char *method, const char *route, unsigned status, uint64_t us)
{
	char line[LINE_MAX_LEN];
	int n = snprintf(line, sizeof line, "%s %s %u %lluus\n", method, route ? route : "-", status,
	                 (unsigned long long)us);
	if(n <= 0) return;
	size_t m = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
	if(m == sizeof line - 1) line[m - 1] = '\n'; /* cut short: still one line */
	pthread_mutex_lock(&lock);
	if(!opens) {
		write_out(line, m);
	} else {
		if(len + m > sizeof buf) flush_locked();
		if(!len) pthread_cond_signal(&wake); /* the flusher sleeps while there is nothing */
		memcpy(buf + len, line, m);
		len += m;
	}
	pthread_mutex_unlock(&lock);
}

void imp_reqlog_close(void)
{
	pthread_mutex_lock(&life);
	pthread_mutex_lock(&lock);
	if(opens != 1) {
		if(opens > 1) opens--;
		pthread_mutex_unlock(&lock);
		pthread_mutex_unlock(&life);
		return;
	}
	stopping = 1;
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
	pthread_join(flusher, NULL);
	/* Lines logged meanwhile went into the buffer: written here, after the older ones,
	 * before lines go out one by one again. */
	pthread_mutex_lock(&lock);
	flush_locked();
	opens = 0;
	pthread_cond_destroy(&wake);
	pthread_mutex_unlock(&lock);
	pthread_mutex_unlock(&life);
}
