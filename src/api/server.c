/* The HTTP server: libmicrohttpd with a pool of epoll threads. It reads bodies up to their
 * cap, resolves the route and the caller, runs the handler and writes one log line per
 * request (method, route, status, microseconds; never a body, header value or token;
 * reqlog.c writes them).
 *
 * Connections are accepted here, by a thread of our own, and handed to the pool with
 * MHD_add_connection, which spreads them over its threads by descriptor. A pool thread runs
 * one handler at a time, and a write handler holds it until its group commits; with the pool
 * accepting for itself, the thread that happened to wake first took most connections of a
 * burst: the two requests `imprint batch` keeps in flight then often ran one after the other
 * on one thread (half the batch rate in about one run of four), and wrk's 32 connections
 * landed on 8 of 16 threads. libmicrohttpd places a connection on the thread its descriptor
 * number names (modulo the pool's size), so the acceptor picks the thread with the fewest
 * connections and moves the descriptor to a number that names it (place_fd): left to the
 * numbers the kernel hands out, the two connections of a batch shared a thread whenever
 * they differed by a multiple of the pool's size (a third of the runs once the writer
 * pool's connections to the store took numbers in between). */
#define _GNU_SOURCE /* accept4 */
#include "api/server.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/reqlog.h"
#include "api/router.h"
#include "core/limits.h"
#include "core/mem.h"
#include "core/timeutil.h"

/* Write requests (every method but GET and HEAD) run on a pool of threads of their own,
 * the connection suspended meanwhile, so reads never queue behind writes on an HTTP
 * thread. Writes do not hold their pool thread until their group commits: a finished write
 * joins the open group (imp_db_commit_later) and its thread takes the next request; whoever
 * ends the group resumes the connections, whose HTTP threads then answer. So the pool only
 * needs to keep the writer busy: one thread per two HTTP threads. Device creates measured
 * 8,334-8,884/s so against 7,928-8,148/s with one per HTTP thread, and 0.8 of that with four
 * (which groups needed while every write held its thread to the commit; the threads queued
 * and woke for the writer's lock). bench/README.md has the figures. */
#define HTTP_THREADS_PER_WRITER 2

typedef struct conn_state conn_state;

struct imp_server {
	struct MHD_Daemon *daemon;
	/* the write pool */
	pthread_t *writers;
	unsigned nwriters;
	pthread_mutex_t wlock;
	pthread_cond_t wwake;
	conn_state *whead, *wtail;
	int wstop;
	imp_app *app;
	atomic_int inflight;
	unsigned port;
	int listen_fd;
	pthread_t acceptor;
	int accepting;         /* the acceptor thread runs */
	unsigned nthreads;     /* libmicrohttpd's pool */
	atomic_int *load;      /* connections on each of its threads */
	unsigned next_pick;    /* the acceptor's start for ties */
	atomic_int stopping;
	int log_batched;       /* imp_reqlog_open succeeded */
};

struct conn_state {
	char *buf;
	size_t len;
	int too_large;
	uint64_t start_us;
	/* Streaming routes: the request, resolved before its body, and the route's state. */
	imp_req *sreq;
	void *sstate;
	imp_err serr;
	/* The request (a read's on the stack while it runs, a write's kept while it waits on
	 * the pool), then its answer. */
	imp_req *wreq;
	struct MHD_Connection *conn;
	conn_state *wnext;
	int answered;
	unsigned status;
	json_t *body;
	char *text;
	size_t text_len;
	/* A write answered after its group's commit (imp_db_commit_later): the store's hook,
	 * the commit's outcome, and which of the pool thread and the commit came last (that
	 * one resumes the connection). */
	imp_db_later later;
	imp_err later_rc;
	atomic_int later_state;
};

enum { LATER_WAITING, LATER_LEFT, LATER_DONE };

/* Lingering close. A body over the limit is refused before it is read (its client may be
 * waiting on 100-continue), and libmicrohttpd then closes the connection; a client that
 * did not wait is still sending, and a close with its bytes unread makes the kernel answer
 * with a reset, which can reach the client before it has read the 413 (curl: "failed
 * sending data", about one oversized request in seventy under load). So the answer's
 * connection is kept open on a duplicate of its descriptor by a thread that reads and drops
 * what still comes, until the client closes, LINGER_MS pass or LINGER_MAX bytes were
 * dropped. At most LINGER_CONNS at once: past that, a connection closes as before. */
#define LINGER_MS 2000
#define LINGER_MAX (64u << 20)
#define LINGER_CONNS 32
static atomic_int lingering;

static void *linger_run(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[16384];
	size_t dropped = 0;
	uint64_t end = imp_mono_us() / 1000 + LINGER_MS;
	for(;;) {
		uint64_t now = imp_mono_us() / 1000;
		if(now >= end || dropped >= LINGER_MAX) break;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if(poll(&p, 1, (int)(end - now)) <= 0) break;
		ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if(n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;
		if(n > 0) dropped += (size_t)n;
	}
	close(fd);
	atomic_fetch_sub(&lingering, 1);
	return NULL;
}

static void linger(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if(!ci || atomic_fetch_add(&lingering, 1) >= LINGER_CONNS) {
		if(ci) atomic_fetch_sub(&lingering, 1);
		return;
	}
	int fd = fcntl(ci->connect_fd, F_DUPFD_CLOEXEC, 0);
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if(fd < 0 || pthread_create(&t, &attr, linger_run, (void *)(intptr_t)fd)) {
		if(fd >= 0) close(fd);
		atomic_fetch_sub(&lingering, 1);
	}
	pthread_attr_destroy(&attr);
}

/* Sends body, or the text when body is NULL (text and body taken; either may be NULL). */
static enum MHD_Result send_json_text(struct MHD_Connection *c, unsigned status, json_t *body, char *text, size_t len,
                                      const imp_req *r)
{
	if(body) {
		imp_free(text);
		text = json_dumps(body, JSON_COMPACT);
		len = text ? strlen(text) : 0;
	}
	json_decref(body);
	struct MHD_Response *resp;
	if(text) resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	else resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if(!resp) {
		free(text);
		return MHD_NO;
	}
	if(text) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if(r && r->header_name[0]) MHD_add_response_header(resp, r->header_name, r->header_value);
	enum MHD_Result ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* body borrowed. */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *body, const imp_req *r)
{
	return send_json_text(c, status, json_incref(body), NULL, 0, r);
}

static json_t *error_body(const imp_req *r, imp_err rc)
{
	const char *code = r->err_code[0] ? r->err_code : imp_err_name(rc);
	const char *msg = r->err_msg[0] ? r->err_msg : "request failed";
	json_t *err = json_pack("{s:s, s:s}", "code", code, "message", msg);
	if(err && r->err_target[0]) {
		json_object_set_new(err, "details",
			json_pack("[{s:s, s:s}]", "target", r->err_target, "message", msg));
	}
	return api_wrap("error", err);
}

static enum MHD_Result send_error(struct MHD_Connection *c, imp_req *r, imp_err rc, const char *method, uint64_t start)
{
	unsigned status = api_status(rc);
	json_t *b = error_body(r, rc);
	enum MHD_Result ret = send_json(c, status, b, NULL);
	json_decref(b);
	imp_reqlog_line(method, r->route ? r->route->pattern : "-", status, imp_mono_us() - start);
	return ret;
}

/* A streaming route: the caller is resolved and the route opened before any of the body
 * is read, so a refused call is answered at once. */
static enum MHD_Result stream_begin(imp_server *srv, conn_state *cs, struct MHD_Connection *c, const char *url,
                                    const char *method)
{
	imp_req *r = imp_calloc(1, sizeof *r);
	if(!r) return MHD_NO;
	cs->sreq = r;
	r->app = srv->app;
	r->conn = c;
	r->method = method;
	r->url = url;
	r->body = "";
	imp_err rc = imp_router_resolve(r);
	if(!rc) rc = r->route->stream->open(r, &cs->sstate);
	if(!rc) return MHD_YES;
	cs->too_large = 2;
	return send_error(c, r, rc, method, cs->start_us);
}

/* A streaming answer held in memory, until MHD has sent it. */
typedef struct {
	char *s;
	size_t cap;
} stream_text;

static void free_stream_text(void *cls)
{
	stream_text *t = cls;
	sodium_memzero(t->s, t->cap);
	imp_free(t->s);
	imp_free(t);
}

static enum MHD_Result stream_step(conn_state *cs, struct MHD_Connection *c, const char *method, const char *upload,
                                   size_t *upload_size)
{
	imp_req *r = cs->sreq;
	if(*upload_size) {
		if(cs->sstate && !cs->serr) cs->serr = r->route->stream->feed(cs->sstate, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if(cs->too_large == 2) return MHD_YES;
	imp_stream_answer a = {.fd = -1, .content_type = "application/json"};
	imp_err rc = cs->serr ? cs->serr : r->route->stream->finish(cs->sstate, &a);
	if(rc) return send_error(c, r, rc, method, cs->start_us);
	struct MHD_Response *resp;
	if(a.buf) {
		stream_text *held = imp_malloc(sizeof *held);
		resp = NULL;
		if(held) {
			*held = (stream_text){a.buf, a.cap};
			resp = MHD_create_response_from_buffer_with_free_callback_cls((size_t)a.size, a.buf, free_stream_text, held);
		}
		if(!resp) {
			sodium_memzero(a.buf, a.cap);
			imp_free(a.buf);
			imp_free(held);
		}
	} else {
		resp = MHD_create_response_from_fd64(a.size, a.fd);
		if(!resp) close(a.fd);
	}
	if(!resp) return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a.content_type);
	if(a.preference_applied) MHD_add_response_header(resp, "Preference-Applied", a.preference_applied);
	enum MHD_Result ret = MHD_queue_response(c, 200, resp);
	MHD_destroy_response(resp);
	imp_reqlog_line(method, r->route->pattern, 200, imp_mono_us() - cs->start_us);
	return ret;
}

/* Keeps the answer of cs->wreq, whose handler returned rc, in cs. */
static void keep_answer(conn_state *cs, imp_err rc)
{
	imp_req *r = cs->wreq;
	if(rc) {
		cs->status = api_status(rc);
		json_decref(r->out);
		r->out = NULL;
		imp_free(r->out_text);
		r->out_text = NULL;
		cs->body = error_body(r, rc);
	} else {
		cs->status = r->status ? r->status : 200;
		cs->body = r->out;
		cs->text = r->out_text;
		cs->text_len = r->out_len;
		r->out = NULL;
		r->out_text = NULL;
	}
	if(r->db) imp_db_rollback(&r->db); /* a handler that failed mid-transaction */
	cs->answered = 1;
}

static void later_done(imp_db_later *l, imp_err rc)
{
	conn_state *cs = (conn_state *)(void *)((char *)l - offsetof(conn_state, later));
	cs->later_rc = rc;
	if(atomic_exchange(&cs->later_state, LATER_DONE) == LATER_LEFT) MHD_resume_connection(cs->conn);
}

/* Runs the request in cs->wreq and keeps its answer in cs, or (pooled) leaves it to
 * finish_request once its commit ends. */
static void run_request(conn_state *cs, int pooled)
{
	imp_req *r = cs->wreq;
	imp_err rc;
	if(pooled) {
		cs->later.done = later_done;
		r->later = &cs->later;
	}
	if(cs->too_large) {
		rc = api_fail(r, IMP_ERR_TOO_LARGE, "body_too_large", NULL, "request bodies are limited to %d bytes",
		              IMP_BODY_MAX);
	} else {
		rc = imp_router_dispatch(r);
	}
	r->later = NULL;
	if(!rc && r->finish) return;
	keep_answer(cs, rc);
}

/* A GET or HEAD, on the thread's kept read transaction with the caches' generations
 * pinned before it (api_read_begin): a cache filled from the snapshot is never tagged with
 * a generation moved on by a commit the snapshot misses (an API key deleted since, kept
 * valid). */
static void run_read(imp_server *srv, conn_state *cs)
{
	imp_db *reader = api_read_begin(srv->app);
	if(reader) run_request(cs, 0);
	else keep_answer(cs, api_fail(cs->wreq, IMP_ERR_STORE, NULL, NULL, "the store is not available"));
	api_read_end(reader);
}

/* A request that committed later: the rest of its handler, on this (HTTP) thread. */
static void finish_request(imp_server *srv, conn_state *cs)
{
	imp_req *r = cs->wreq;
	r->db = imp_store_db(srv->app->store);
	keep_answer(cs, r->finish(r, cs->later_rc));
}

/* Sends the answer run_request kept in cs (r: the request, for its header). */
static enum MHD_Result send_answer(struct MHD_Connection *c, conn_state *cs, const imp_req *r, const char *method)
{
	enum MHD_Result ret = send_json_text(c, cs->status, cs->body, cs->text, cs->text_len, r);
	cs->body = NULL;
	cs->text = NULL;
	imp_reqlog_line(method, r->route ? r->route->pattern : "-", cs->status, imp_mono_us() - cs->start_us);
	return ret;
}

static void *writer_run(void *arg)
{
	imp_server *srv = arg;
	pthread_mutex_lock(&srv->wlock);
	for(;;) {
		if(!srv->whead) {
			/* Nothing more to add to the open group: commit it, unless a writer queued
			 * for the store will. */
			pthread_mutex_unlock(&srv->wlock);
			imp_store_flush(srv->app->store, 0);
			pthread_mutex_lock(&srv->wlock);
		}
		while(!srv->whead && !srv->wstop) pthread_cond_wait(&srv->wwake, &srv->wlock);
		conn_state *cs = srv->whead;
		if(!cs) break;   /* stopping, and nothing is left */
		srv->whead = cs->wnext;
		if(!srv->whead) srv->wtail = NULL;
		pthread_mutex_unlock(&srv->wlock);
		run_request(cs, 1);
		if(cs->answered || atomic_exchange(&cs->later_state, LATER_LEFT) == LATER_DONE)
			MHD_resume_connection(cs->conn);
		pthread_mutex_lock(&srv->wlock);
	}
	pthread_mutex_unlock(&srv->wlock);
	return arg;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	imp_server *srv = cls;
	conn_state *cs = *con_cls;
	if(!cs) {
		cs = imp_calloc(1, sizeof *cs);
		if(!cs) return MHD_NO;
		cs->start_us = imp_mono_us();
		atomic_fetch_add(&srv->inflight, 1);
		*con_cls = cs;
		const imp_route *sr = imp_router_stream_route(method, url);
		if(sr) return stream_begin(srv, cs, c, url, method);
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if(cl && strtoull(cl, NULL, 10) > IMP_BODY_MAX) {
			/* Answer before reading: the client may be waiting on 100-continue. */
			imp_req r = {0};
			api_fail(&r, IMP_ERR_TOO_LARGE, "body_too_large", NULL, "request bodies are limited to %d bytes",
			         IMP_BODY_MAX);
			json_t *b = error_body(&r, IMP_ERR_TOO_LARGE);
			enum MHD_Result ret = send_json(c, 413, b, NULL);
			json_decref(b);
			/* libmicrohttpd stops reading a request answered early only for POST and PUT;
			 * it reads the others' bodies itself, and a drain beside it would take bytes
			 * it waits for. */
			const char *expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
			int early_close = strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;
			if(ret == MHD_YES && early_close && !(expect && strcasecmp(expect, "100-continue") == 0)) linger(c);
			imp_reqlog_line(method, "-", 413, imp_mono_us() - cs->start_us);
			cs->too_large = 2;
			return ret;
		}
		return MHD_YES;
	}
	if(cs->sreq) return stream_step(cs, c, method, upload, upload_size);
	if(*upload_size) {
		if(cs->too_large) {
			*upload_size = 0;
			return MHD_YES;
		}
		if(cs->len + *upload_size > IMP_BODY_MAX) {
			cs->too_large = 1;
			imp_free(cs->buf);
			cs->buf = NULL;
		} else {
			char *nb = imp_realloc(cs->buf, cs->len + *upload_size + 1);
			if(!nb) return MHD_NO;
			memcpy(nb + cs->len, upload, *upload_size);
			cs->buf = nb;
			cs->len += *upload_size;
			cs->buf[cs->len] = '\0';
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if(cs->too_large == 2) return MHD_YES;

	if(cs->wreq && cs->wreq->finish) finish_request(srv, cs);   /* committed later */
	if(cs->answered) return send_answer(c, cs, cs->wreq, method);   /* a write, back from the pool */
	/* A read runs here, its request on the stack; a write on the pool, its request kept. */
	int write = strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
	imp_req local = {0}, *r = write ? imp_calloc(1, sizeof *r) : &local;
	if(!r) return MHD_NO;
	r->app = srv->app;
	r->conn = c;
	r->method = method;
	r->url = url;
	r->body = cs->buf ? cs->buf : "";
	r->body_len = cs->len;
	cs->wreq = r;
	if(write) {
		/* Once the pool stops (the server is stopping), a write still arriving on a kept-alive
		 * connection runs here: suspended, it would never be resumed, and libmicrohttpd
		 * must not stop with a connection suspended. */
		pthread_mutex_lock(&srv->wlock);
		int queued = !srv->wstop;
		if(queued) {
			cs->conn = c;
			MHD_suspend_connection(c);
			if(srv->wtail) srv->wtail->wnext = cs;
			else srv->whead = cs;
			srv->wtail = cs;
			pthread_cond_signal(&srv->wwake);
		}
		pthread_mutex_unlock(&srv->wlock);
		if(queued) return MHD_YES;
	}
	if(write) run_request(cs, 0);
	else run_read(srv, cs);
	if(!write) cs->wreq = NULL;   /* on the stack */
	return send_answer(c, cs, r, method);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	imp_server *srv = cls;
	conn_state *cs = *con_cls;
	if(!cs) return;
	if(cs->sstate) cs->sreq->route->stream->close(cs->sstate);
	if(cs->sreq && cs->sreq->db) imp_db_rollback(&cs->sreq->db);
	if(cs->wreq && cs->wreq->finish) {
		/* Committed later, and never answered: the rest of the handler still runs (a
		 * committed write's cache invalidation), its answer dropped. */
		cs->wreq->db = imp_store_db(srv->app->store);
		cs->wreq->finish(cs->wreq, cs->later_rc);
		json_decref(cs->wreq->out);
		imp_free(cs->wreq->out_text);
	}
	imp_free(cs->sreq);
	json_decref(cs->body);
	imp_free(cs->text);
	imp_free(cs->wreq);
	imp_free(cs->buf);
	imp_free(cs);
	*con_cls = NULL;
	atomic_fetch_sub(&srv->inflight, 1);
}

static imp_err parse_listen(const char *listen, struct sockaddr_storage *ss)
{
	char host[256];
	const char *colon = strrchr(listen, ':');
	if(!colon || colon == listen || (size_t)(colon - listen) >= sizeof host) return IMP_ERR_BAD_REQUEST;
	const char *h = listen;
	size_t hl = (size_t)(colon - listen);
	if(h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if(*end || port < 0 || port > 65535 || colon[1] == '\0') return IMP_ERR_BAD_REQUEST;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char ps[8];
	snprintf(ps, sizeof ps, "%ld", port);
	if(getaddrinfo(host, ps, &hints, &res) || !res) return IMP_ERR_BAD_REQUEST;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return IMP_OK;
}

/* A connection's thread: counted by the acceptor when it adds one, uncounted here when
 * libmicrohttpd closes it (socket_context holds the thread, plus one). */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
	imp_server *srv = cls;
	if(toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		*socket_context = ci ? (void *)(intptr_t)((unsigned)ci->connect_fd % srv->nthreads + 1) : NULL;
	} else if(toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
		atomic_fetch_sub(&srv->load[(intptr_t)*socket_context - 1], 1);
	}
}

/* fd, or a duplicate of it numbered for the pool thread with the fewest connections (fd
 * then closed); that thread counted. */
static int place_fd(imp_server *srv, int fd)
{
	unsigned n = srv->nthreads, w = srv->next_pick++ % n;
	for(unsigned i = 0; i < n; i++) {
		unsigned j = (srv->next_pick + i) % n;
		if(atomic_load(&srv->load[j]) < atomic_load(&srv->load[w])) w = j;
	}
	int got = fd;
	for(int cand = (int)w, tries = 0; (unsigned)got % n != w && tries < 64; tries++) {
		if(cand < 3) cand += (int)n;
		int r = fcntl(fd, F_DUPFD_CLOEXEC, cand);
		if(r < 0) break;
		if((unsigned)r % n == w) {
			close(fd);
			got = r;
			break;
		}
		close(r);
		/* every number from cand to r is taken: the next one for w past r */
		cand = r + (int)((w + n - (unsigned)r % n) % n);
	}
	atomic_fetch_add(&srv->load[(unsigned)got % n], 1);
	return got;
}

/* Connections at once; past it a new one is closed at once. Counted here, by the acceptor:
 * libmicrohttpd's own limit (set twice as high, so it never applies) refuses a connection
 * only after queueing it for a thread, without a notification, which would leave a count
 * here that never goes. */
#define CONN_LIMIT 4096

static int full(const imp_server *srv)
{
	int total = 0;
	for(unsigned i = 0; i < srv->nthreads; i++) total += atomic_load(&srv->load[i]);
	return total >= CONN_LIMIT;
}

static void *accept_loop(void *arg)
{
	imp_server *srv = arg;
	for(;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;
		int fd = accept4(srv->listen_fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if(fd >= 0 && full(srv)) {
			close(fd);
			continue;
		}
		if(fd >= 0) {
			fd = place_fd(srv, fd);
			/* Refused (the pool full): libmicrohttpd closed it. */
			if(MHD_add_connection(srv->daemon, fd, (struct sockaddr *)&ss, len) != MHD_YES)
				atomic_fetch_sub(&srv->load[(unsigned)fd % srv->nthreads], 1);
			continue;
		}
		if(atomic_load(&srv->stopping)) break;
		if(errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* Out of descriptors or memory: let the connections we have finish first. */
			struct timespec ts = {0, 10 * 1000000};
			nanosleep(&ts, NULL);
		} else if(errno != EINTR && errno != ECONNABORTED && errno != EAGAIN && errno != EPROTO &&
		          errno != EPERM && errno != ENETDOWN && errno != EHOSTUNREACH && errno != ENETUNREACH) {
			break;   /* the socket itself failed */
		}
	}
	return arg;
}

static int open_listener(const struct sockaddr_storage *ss, unsigned *port)
{
	socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if(fd < 0) return -1;
	int on = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	struct sockaddr_storage bound;
	socklen_t blen = sizeof bound;
	if(bind(fd, (const struct sockaddr *)ss, len) || listen(fd, 1024) ||
	   getsockname(fd, (struct sockaddr *)&bound, &blen)) {
		close(fd);
		return -1;
	}
	*port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
	                                          : ((struct sockaddr_in *)&bound)->sin_port);
	return fd;
}

/* Lets the pool finish what it was given, then ends it: every suspended connection has
 * been resumed when this returns (libmicrohttpd must not stop with one suspended), and
 * writes arriving from now on run on the HTTP threads. The lock stays for them until the
 * daemon has stopped (free_writers). */
static void stop_writers(imp_server *srv)
{
	pthread_mutex_lock(&srv->wlock);
	srv->wstop = 1;
	pthread_cond_broadcast(&srv->wwake);
	pthread_mutex_unlock(&srv->wlock);
	for(unsigned i = 0; i < srv->nwriters; i++) pthread_join(srv->writers[i], NULL);
	/* Answers committed later, all sent before libmicrohttpd stops: a write queued for the
	 * writer now can only be an HTTP thread's, which must not keep the group open. */
	imp_store_flush(srv->app->store, 1);
	imp_free(srv->writers);
	srv->writers = NULL;
	srv->nwriters = 0;
}

static void free_writers(imp_server *srv)
{
	pthread_cond_destroy(&srv->wwake);
	pthread_mutex_destroy(&srv->wlock);
}

imp_err imp_server_start(imp_app *app, const char *listen, unsigned threads, imp_server **out)
{
	struct sockaddr_storage ss = {0};
	if(parse_listen(listen, &ss)) return IMP_ERR_BAD_REQUEST;
	imp_server *srv = imp_calloc(1, sizeof *srv);
	if(!srv) return IMP_ERR_NOMEM;
	srv->app = app;
	if((srv->listen_fd = open_listener(&ss, &srv->port)) < 0) {
		imp_free(srv);
		return IMP_ERR_IO;
	}
	srv->nthreads = threads ? threads : 1;
	srv->load = imp_calloc(srv->nthreads, sizeof *srv->load);
	if(!srv->load) {
		close(srv->listen_fd);
		imp_free(srv);
		return IMP_ERR_NOMEM;
	}
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_NO_LISTEN_SOCKET |
	                 MHD_ALLOW_SUSPEND_RESUME;
	if(ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
	srv->daemon = MHD_start_daemon(flags, 0, NULL, NULL, &on_request, srv,
		MHD_OPTION_THREAD_POOL_SIZE, threads,
		MHD_OPTION_NOTIFY_COMPLETED, &on_done, srv,
		MHD_OPTION_NOTIFY_CONNECTION, &on_connection, srv,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)(2 * CONN_LIMIT),
		MHD_OPTION_END);
	pthread_mutex_init(&srv->wlock, NULL);
	pthread_cond_init(&srv->wwake, NULL);
	unsigned want = threads > HTTP_THREADS_PER_WRITER ? threads / HTTP_THREADS_PER_WRITER : 1;
	srv->writers = srv->daemon ? imp_calloc(want, sizeof *srv->writers) : NULL;
	for(; srv->writers && srv->nwriters < want; srv->nwriters++) {
		if(pthread_create(&srv->writers[srv->nwriters], NULL, writer_run, srv)) break;
	}
	if(!srv->daemon || !srv->nwriters || pthread_create(&srv->acceptor, NULL, accept_loop, srv)) {
		stop_writers(srv);
		if(srv->daemon) MHD_stop_daemon(srv->daemon);
		free_writers(srv);
		close(srv->listen_fd);
		imp_free(srv->load);
		imp_free(srv);
		return IMP_ERR_IO;
	}
	srv->accepting = 1;
	srv->log_batched = imp_reqlog_open() == IMP_OK;
	*out = srv;
	return IMP_OK;
}

unsigned imp_server_port(const imp_server *srv) { return srv->port; }

void imp_server_stop(imp_server **sp, unsigned grace_ms)
{
	imp_server *srv = *sp;
	if(!srv) return;
	/* No new connections (shutdown wakes the acceptor), then the requests in flight finish. */
	atomic_store(&srv->stopping, 1);
	shutdown(srv->listen_fd, SHUT_RDWR);
	if(srv->accepting) pthread_join(srv->acceptor, NULL);
	close(srv->listen_fd);
	for(unsigned waited = 0; atomic_load(&srv->inflight) > 0 && waited < grace_ms; waited += 10) usleep(10000);
	stop_writers(srv);
	MHD_stop_daemon(srv->daemon);
	if(srv->log_batched) imp_reqlog_close();
	free_writers(srv);
	imp_free(srv->load);
	imp_free(srv);
	*sp = NULL;
}
