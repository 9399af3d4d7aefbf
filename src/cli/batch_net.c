/* HTTP for imprint batch, on libcurl's multi interface: each slot keeps its own keep-alive
 * connection, so two chunks can be in flight while answers are still taken in file order.
 * Network errors, 429 and 5xx are retried with a backoff; any other status stops the batch.
 *
 * Every request carries Idempotency-Generation, a number that grows with every request the
 * batch ever sends (the run number from the state file, then a count within the run). A
 * request of a killed run can still be in the server's buffers when the rerun sends the
 * same lines; if the server handled it after the rerun's, it would replace the secrets the
 * rerun wrote. A server that keeps the generation that last issued each line's credential
 * can refuse such a stale request. */
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/batch_net.h"
#include "core/ids.h"
#include "core/mem.h"

#define ATTEMPTS 6             /* per chunk: 0.5 + 1 + 2 + 4 + 8 s of backoff in all */
#define LINE_ANSWER_MAX 65536  /* bytes of answer per request line, at most */
#define CONNECT_TIMEOUT_S 10L
#define STALL_TIMEOUT_S 300L   /* no byte for this long: the server is gone */

struct batch_net {
	CURLM *multi;
	char *server, *auth, *key_header;
	struct curl_slist *hdr;
	int64_t run;
	int minimal;          /* ask for minimal answers: the template's channels are known */
	int parallel;
	int nslots;           /* parallel + 1: the chunks held (batch_net.h, BATCH_SLOTS) */
	long chunk;
	uint64_t seq;
	batch_slot slots[BATCH_SLOTS];
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	batch_buf *b = arg;
	size_t n = size * nmemb;
	return batch_buf_add(b, data, n) ? 0 : n;
}

static CURL *easy(batch_net *n, batch_buf *resp)
{
	CURL *h = curl_easy_init();
	if(!h) return NULL;
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, STALL_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	return h;
}

imp_err batch_net_open(const char *server, const char *api_key, int parallel, long chunk, batch_net **out)
{
	*out = NULL;
	if(curl_global_init(CURL_GLOBAL_DEFAULT)) return IMP_ERR_IO;
	batch_net *n = imp_calloc(1, sizeof *n);
	if(!n) return IMP_ERR_NOMEM;
	*out = n;
	size_t sl = strlen(server);
	while(sl && server[sl - 1] == '/') sl--;
	n->server = imp_strndup(server, sl);
	n->auth = imp_malloc(strlen(api_key) + 32);
	n->multi = curl_multi_init();
	n->parallel = parallel;
	n->nslots = parallel + 1;
	n->chunk = chunk;
	if(!n->server || !n->auth || !n->multi) return IMP_ERR_NOMEM;
	snprintf(n->auth, strlen(api_key) + 32, "Authorization: Bearer %s", api_key);
	for(int i = 0; i < n->nslots; i++) {
		batch_slot *s = &n->slots[i];
		s->req.max = (size_t)1 << 31;
		s->resp.max = (size_t)chunk * LINE_ANSWER_MAX;
		s->lines = imp_calloc((size_t)chunk, sizeof *s->lines);
		s->h = easy(n, &s->resp);
		if(!s->lines || !s->h) return IMP_ERR_NOMEM;
		curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
	}
	return IMP_OK;
}

void batch_net_name(batch_net *n, const char *name, int64_t run)
{
	n->run = run;
	size_t len = strlen(name) + 32;
	n->key_header = imp_malloc(len);
	if(n->key_header) snprintf(n->key_header, len, "Idempotency-Key: %s", name);
	n->hdr = curl_slist_append(n->hdr, n->auth);
	if(n->key_header) n->hdr = curl_slist_append(n->hdr, n->key_header);
	n->hdr = curl_slist_append(n->hdr, "Content-Type: application/x-ndjson");
	n->hdr = curl_slist_append(n->hdr, "Accept: application/x-ndjson");
	/* the answer only starts after the whole body is read: a 100-continue wait is waste */
	n->hdr = curl_slist_append(n->hdr, "Expect:");
	if(n->minimal) n->hdr = curl_slist_append(n->hdr, "Prefer: return=minimal");
}

/* The message of an error body {"error": {"code", "message"}}, or a placeholder. */
static void error_text(const batch_buf *body, char *out, size_t cap)
{
	json_t *o = body->p ? json_loadb(body->p, body->n, 0, NULL) : NULL;
	json_t *e = json_object_get(o, "error");
	const char *msg = json_string_value(json_object_get(e, "message"));
	const char *code = json_string_value(json_object_get(e, "code"));
	if(msg) snprintf(out, cap, "%s (%s)", msg, code ? code : "no code");
	else snprintf(out, cap, "no error message");
	for(char *p = out; *p; p++) {
		if((unsigned char)*p < 0x20) *p = ' ';
	}
	json_decref(o);
}

/* Prints why a status ends the batch. */
static void refused(const char *what, long status, const batch_buf *body)
{
	char msg[400];
	error_text(body, msg, sizeof msg);
	if(status == 401)
		fprintf(stderr, "imprint batch: the server refused the API key (401): %s\n", msg);
	else if(status == 403)
		fprintf(stderr, "imprint batch: the API key may not create devices (403; it needs the admin or provisioning "
		                "scope): %s\n", msg);
	else fprintf(stderr, "imprint batch: the server refused %s (%ld): %s\n", what, status, msg);
}

static int transient(CURLcode cc, long status) { return cc != CURLE_OK || status == 429 || status >= 500; }

static void backoff(int attempt) { usleep((useconds_t)(250000u << (attempt < 6 ? attempt : 6))); }

/* GET url into body (at most ATTEMPTS tries for transient failures): the HTTP status, or
 * 0 when the server could not be reached (cc says why). */
static long get(batch_net *n, const char *url, batch_buf *body, CURLcode *cc)
{
	CURL *h = easy(n, body);
	if(!h) {
		*cc = CURLE_OUT_OF_MEMORY;
		return 0;
	}
	struct curl_slist *hdr = curl_slist_append(NULL, n->auth);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	long code = 0;
	for(int attempt = 1; attempt <= ATTEMPTS; attempt++) {
		body->n = 0;
		*cc = curl_easy_perform(h);
		code = 0;
		if(!*cc) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
		if(!transient(*cc, code) || attempt == ATTEMPTS) break;
		backoff(attempt);
	}
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	return code;
}

/* The template's channels (one page holds every one a template can have: the server
 * builds a device's channels from the first 1,000 too). Leaves ch->ok 0 when anything is
 * off: the answers then carry every device's channels, as without this. */
static void template_channels(batch_net *n, const char *id, const char *account_id, batch_channels *ch)
{
	batch_buf body = {.max = 64 << 20};
	size_t len = strlen(n->server) + strlen(id) + 96;
	char *url = imp_malloc(len);
	if(!url) return;
	snprintf(url, len, "%s/api/v1/channels/templates?entityId=%s&pageSize=1000&sortBy=created", n->server, id);
	CURLcode cc = CURLE_OK;
	long code = get(n, url, &body, &cc);
	imp_free(url);
	json_t *o = code == 200 ? json_loadb(body.p, body.n, 0, NULL) : NULL;
	batch_buf_free(&body);
	json_t *list = json_object_get(o, "channelTemplates");
	json_t *results = json_object_get(list, "results");
	json_t *count = json_object_get(json_object_get(list, "meta"), "count");
	size_t nres = json_array_size(results);
	if(!json_is_array(results) || (count && json_integer_value(count) != (json_int_t)nres) ||
	   !imp_id_valid(account_id) || !imp_id_valid(id)) {
		json_decref(o);
		return;
	}
	ch->names = imp_calloc(nres + 1, sizeof *ch->names);
	ch->permissions = imp_calloc(nres + 1, sizeof *ch->permissions);
	int ok = ch->names && ch->permissions;
	for(size_t i = 0; ok && i < nres; i++) {
		json_t *c = json_array_get(results, i);
		const char *name = json_string_value(json_object_get(c, "name"));
		const char *perm = json_string_value(json_object_get(c, "permission"));
		/* as the server: a channel without a permission is one of an old store */
		if(!name || !perm) ok = 0;
		else {
			ch->names[i] = imp_strdup(name);
			ch->permissions[i] = imp_strdup(perm);
			ch->n = i + 1;
			ok = ch->names[i] && ch->permissions[i];
		}
	}
	json_decref(o);
	if(!ok) {
		batch_channels_free(ch);
		return;
	}
	snprintf(ch->account_id, sizeof ch->account_id, "%s", account_id);
	snprintf(ch->template_id, sizeof ch->template_id, "%s", id);
	ch->ok = 1;
	n->minimal = 1;
}

int batch_net_template(batch_net *n, const char *id, int *cert, batch_channels *ch)
{
	batch_buf body = {.max = 1 << 20};
	CURL *h = curl_easy_init();
	char *esc = h ? curl_easy_escape(h, id, 0) : NULL;
	size_t len = strlen(n->server) + (esc ? strlen(esc) : 0) + 64;
	char *url = esc ? imp_malloc(len) : NULL;
	int status = 2;
	if(url) snprintf(url, len, "%s/api/v1/devices/templates/%s", n->server, esc);
	curl_free(esc);
	if(!url) goto out;
	CURLcode cc = CURLE_OK;
	long code = get(n, url, &body, &cc);
	if(cc) {
		fprintf(stderr, "imprint batch: cannot reach %s: %s\n", n->server, curl_easy_strerror(cc));
	} else if(code == 404) {
		fprintf(stderr, "imprint batch: unknown device template %s (none with that id in this account)\n", id);
	} else if(code != 200) {
		refused("the template lookup", code, &body);
	} else {
		json_t *o = json_loadb(body.p, body.n, 0, NULL);
		const char *m = json_string_value(json_object_get(json_object_get(o, "deviceTemplate"), "authenticationMethod"));
		if(m && (strcmp(m, "password") == 0 || strcmp(m, "certificate") == 0)) {
			*cert = strcmp(m, "certificate") == 0;
			status = 0;
			const char *account = json_string_value(json_object_get(json_object_get(o, "deviceTemplate"), "accountId"));
			if(account) template_channels(n, id, account, ch);
		} else {
			fprintf(stderr, "imprint batch: the server's answer for template %s has no authenticationMethod\n", id);
		}
		json_decref(o);
	}
out:
	imp_free(url);
	batch_buf_free(&body);
	if(h) curl_easy_cleanup(h);
	return status;
}

batch_slot *batch_net_free_slot(batch_net *n)
{
	int in_flight = 0;
	batch_slot *free_slot = NULL;
	for(int i = 0; i < n->nslots; i++) {
		batch_slot *s = &n->slots[i];
		if(s->busy && !s->done) in_flight++;
		if(!s->busy && !free_slot) free_slot = s;
	}
	return in_flight < n->parallel ? free_slot : NULL;
}

static void start(batch_net *n, batch_slot *s)
{
	char url[4200];
	snprintf(url, sizeof url, "%s/api/v1/devices/batch?credentials=true&firstLine=%ld", n->server, s->first);
	char gen[64];
	snprintf(gen, sizeof gen, "Idempotency-Generation: %lld", (long long)((n->run << 32) + (int64_t)++n->seq));
	curl_slist_free_all(s->hdr);
	s->hdr = NULL;
	for(struct curl_slist *h = n->hdr; h; h = h->next) s->hdr = curl_slist_append(s->hdr, h->data);
	s->hdr = curl_slist_append(s->hdr, gen);
	s->resp.n = 0;
	s->done = 0;
	curl_easy_setopt(s->h, CURLOPT_URL, url);
	curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, s->hdr);
	curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, s->req.p);
	curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->req.n);
	curl_multi_add_handle(n->multi, s->h);
}

void batch_net_send(batch_net *n, batch_slot *s)
{
	s->busy = 1;
	s->attempts = 1;
	start(n, s);
	s->seq = n->seq;
}

batch_slot *batch_net_oldest(batch_net *n)
{
	batch_slot *best = NULL;
	for(int i = 0; i < n->nslots; i++) {
		batch_slot *s = &n->slots[i];
		if(s->busy && (!best || s->seq < best->seq)) best = s;
	}
	return best;
}

/* Runs the transfers until s's has ended. */
static void run_until_done(batch_net *n, batch_slot *s)
{
	while(!s->done) {
		int running = 0, left;
		curl_multi_perform(n->multi, &running);
		CURLMsg *m;
		while((m = curl_multi_info_read(n->multi, &left))) {
			if(m->msg != CURLMSG_DONE) continue;
			batch_slot *d = NULL;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&d);
			d->done = 1;
			d->cc = m->data.result;
			d->status = 0;
			if(d->cc == CURLE_OK) curl_easy_getinfo(d->h, CURLINFO_RESPONSE_CODE, &d->status);
		}
		if(!s->done) curl_multi_poll(n->multi, NULL, 0, 1000, NULL);
	}
}

void batch_net_settle(batch_net *n, const batch_slot *except)
{
	for(int i = 0; i < n->nslots; i++) {
		batch_slot *s = &n->slots[i];
		if(s != except && s->busy) run_until_done(n, s);
	}
}

int batch_net_wait(batch_net *n, batch_slot *s)
{
	run_until_done(n, s);
	curl_multi_remove_handle(n->multi, s->h);
	if(transient((CURLcode)s->cc, s->status)) {
		if(s->cc) fprintf(stderr, "imprint batch: lines %ld-%ld: %s\n", s->first, s->end_line,
		                  curl_easy_strerror((CURLcode)s->cc));
		else fprintf(stderr, "imprint batch: lines %ld-%ld: the server answered %ld\n", s->first, s->end_line,
		             s->status);
		return BATCH_NET_RETRY;
	}
	if(s->status != 200) {
		refused("the batch", s->status, &s->resp);
		return BATCH_NET_FATAL;
	}
	return BATCH_NET_OK;
}

int batch_net_retry(batch_net *n, batch_slot *s)
{
	if(s->attempts >= ATTEMPTS) return -1;
	backoff(s->attempts++);
	start(n, s);
	return 0;
}

void batch_net_release(batch_net *n, batch_slot *s)
{
	for(long i = 0; i < s->count; i++) {
		char *key = s->lines[i].key;
		if(key) OPENSSL_cleanse(key, strlen(key));
		imp_free(key);
		s->lines[i].key = NULL;
	}
	/* (explicit_bzero: as fast as memset, where OPENSSL_cleanse went a byte at a time,
	 * 3% of the CLI's time on a chunk's 2 MB of answers) */
	if(s->resp.p) explicit_bzero(s->resp.p, s->resp.n);
	s->busy = 0;
	s->count = 0;
}

void batch_net_close(batch_net **np)
{
	batch_net *n = *np;
	if(!n) return;
	for(int i = 0; i < BATCH_SLOTS; i++) {
		batch_slot *s = &n->slots[i];
		if(s->h) {
			if(s->busy && !s->done) curl_multi_remove_handle(n->multi, s->h);
			curl_easy_cleanup(s->h);
		}
		if(s->lines) batch_net_release(n, s);
		curl_slist_free_all(s->hdr);
		imp_free(s->lines);
		batch_buf_free(&s->req);
		batch_buf_free(&s->resp);
	}
	if(n->multi) curl_multi_cleanup(n->multi);
	curl_slist_free_all(n->hdr);
	if(n->auth) OPENSSL_cleanse(n->auth, strlen(n->auth));
	imp_free(n->auth);
	imp_free(n->key_header);
	imp_free(n->server);
	imp_free(n);
	*np = NULL;
	curl_global_cleanup();
}
