/* Chunks made durable by a thread of their own. fdatasync of a chunk's bundles (5 ms a
 * chunk of 1,000 on this machine's disk) and the state file's write, fsyncs and rename
 * (2 ms) took 0.75 s of a 4.4 s run of 100,000 serials under strace, on the main thread,
 * which meanwhile neither read the next answer nor sent the next chunk. Now the main
 * thread writes a chunk's bundles and hands its state over; this thread syncs the output,
 * then saves the state. Two chunks at most are written and not yet counted, one being made
 * durable and one waiting its turn (batch.c's commit waits for room before it writes): with
 * one at most, the main thread waited for this thread 13% of a million-serial run, and the
 * server's side of the pipeline with it. A chunk waiting when the one before failed is
 * never counted: Linux reports a failed write-back once, so a later fdatasync may succeed
 * over lost data. A crash in between loses nothing: the state on disk still names the
 * output's durable end, a rerun cuts the output there and sends the lines after it again
 * (their devices get new secrets; the bundles cut off held the old). */
#define _GNU_SOURCE /* syncfs */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/batch.h"
#include "core/mem.h"

struct batch_syncer {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t change;    /* a job came, a job ended, or the stop */
	int out_fd, dir;
	const char *out_path, *state_path;
	batch_state job;
	int has_job, busy, stop, failed;
};

static void *sync_run(void *arg)
{
	batch_syncer *s = arg;
	pthread_mutex_lock(&s->lock);
	for(;;) {
		while(!s->has_job && !s->stop) pthread_cond_wait(&s->change, &s->lock);
		if(!s->has_job) break;
		batch_state st = s->job;
		s->has_job = 0;
		pthread_cond_broadcast(&s->change); /* room for the next */
		if(s->failed) continue;
		s->busy = 1;
		pthread_mutex_unlock(&s->lock);
		int bad = s->dir ? syncfs(s->out_fd) || fsync(s->out_fd) : fdatasync(s->out_fd);
		const char *what = s->out_path;
		int err = errno;
		if(!bad && batch_state_save(s->state_path, &st)) {
			bad = 1;
			what = s->state_path;
			err = errno;
		}
		if(bad) fprintf(stderr, "imprint batch: cannot write %s: %s\n", what, strerror(err));
		pthread_mutex_lock(&s->lock);
		s->busy = 0;
		s->failed |= bad;
		pthread_cond_broadcast(&s->change);
	}
	pthread_mutex_unlock(&s->lock);
	return arg;
}

imp_err batch_syncer_start(int out_fd, int dir, const char *out_path, const char *state_path, batch_syncer **out)
{
	*out = NULL;
	batch_syncer *s = imp_calloc(1, sizeof *s);
	if(!s) return IMP_ERR_NOMEM;
	s->out_fd = out_fd;
	s->dir = dir;
	s->out_path = out_path;
	s->state_path = state_path;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->change, NULL);
	if(pthread_create(&s->thread, NULL, sync_run, s)) {
		pthread_cond_destroy(&s->change);
		pthread_mutex_destroy(&s->lock);
		imp_free(s);
		return IMP_ERR_IO;
	}
	*out = s;
	return IMP_OK;
}

/* Lock held: until the thread has nothing in hand. */
static void wait_idle(batch_syncer *s)
{
	while(s->has_job || s->busy) pthread_cond_wait(&s->change, &s->lock);
}

/* Lock held: until no chunk waits its turn (one may be being made durable). */
static void wait_room(batch_syncer *s)
{
	while(s->has_job) pthread_cond_wait(&s->change, &s->lock);
}

/* Waits for room (or, idle, for nothing in hand): 0, or -1 once a chunk failed. */
static int wait_then_status(batch_syncer *s, int idle)
{
	pthread_mutex_lock(&s->lock);
	if(idle) wait_idle(s);
	else wait_room(s);
	int failed = s->failed;
	pthread_mutex_unlock(&s->lock);
	return failed ? -1 : 0;
}

int batch_syncer_room(batch_syncer *s) { return wait_then_status(s, 0); }

int batch_syncer_push(batch_syncer *s, const batch_state *st)
{
	pthread_mutex_lock(&s->lock);
	wait_room(s);
	int failed = s->failed;
	if(!failed) {
		s->job = *st;
		s->has_job = 1;
		pthread_cond_broadcast(&s->change);
	}
	pthread_mutex_unlock(&s->lock);
	return failed ? -1 : 0;
}

int batch_syncer_wait(batch_syncer *s) { return wait_then_status(s, 1); }

void batch_syncer_stop(batch_syncer **sp)
{
	batch_syncer *s = *sp;
	if(!s) return;
	pthread_mutex_lock(&s->lock);
	wait_idle(s);
	s->stop = 1;
	pthread_cond_broadcast(&s->change);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	pthread_cond_destroy(&s->change);
	pthread_mutex_destroy(&s->lock);
	imp_free(s);
	*sp = NULL;
}
