/* The batch command's HTTP side: the template lookup, and chunks of NDJSON sent over
 * keep-alive connections, a few in flight at once, answered in file order. */
#ifndef IMP_CLI_BATCH_NET_H
#define IMP_CLI_BATCH_NET_H
#include <stdint.h>

#include "cli/batch.h"

/* Requests in flight at most (--parallel). Two let the server parse and answer one while
 * it stores the other. */
#define BATCH_PARALLEL_MAX 2
/* Chunks held at once: one more than the requests in flight, so that once an answer is in,
 * the next chunk goes out before the CLI writes that answer's bundles (the server prepares
 * it meanwhile, instead of waiting on the CLI). */
#define BATCH_SLOTS (BATCH_PARALLEL_MAX + 1)

/* One input line of a chunk as the CLI saw it. */
typedef struct {
	int kind;        /* a batch_line_kind */
	const char *why; /* BATCH_LINE_BAD: the reason, a static string */
	char *key;       /* certificate templates: the private key PEM made for the line's CSR */
} batch_line;

typedef struct {
	batch_buf req, resp;   /* the NDJSON sent and the answer (both capped) */
	long first, count;     /* file line number of the first line, and the number of lines */
	long end_line;         /* the last line of the chunk */
	int64_t end_offset;    /* input bytes consumed after the chunk */
	batch_line *lines;     /* count entries */
	int attempts;
	/* the rest belongs to batch_net.c */
	void *h;
	void *hdr;
	int busy, done, cc;
	long status;
	uint64_t seq;
} batch_slot;

typedef struct batch_net batch_net;

enum { BATCH_NET_OK, BATCH_NET_RETRY, BATCH_NET_FATAL };

/* server: the base URL; parallel: requests in flight (1..BATCH_PARALLEL_MAX); chunk: lines per
 * request at most. Caller frees with batch_net_close(). */
imp_err batch_net_open(const char *server, const char *api_key, int parallel, long chunk, batch_net **out);
/* The batch name, sent as the Idempotency-Key of every chunk, and the number of this run
 * of the batch (see batch_net.c on Idempotency-Generation). */
void batch_net_name(batch_net *n, const char *name, int64_t run);
/* GET the device template: *cert set for certificate templates, and its channels in ch
 * (ch->ok, when they could be read; the chunks then ask for minimal answers). 0, or 2
 * after printing why not (unknown template, refused key, unreachable server). */
int batch_net_template(batch_net *n, const char *id, int *cert, batch_channels *ch);

/* A slot with nothing in it, while fewer than parallel requests are in flight; or NULL. */
batch_slot *batch_net_free_slot(batch_net *n);
/* Sends the chunk in s (filled by the caller) with firstLine = s->first. */
void batch_net_send(batch_net *n, batch_slot *s);
/* Of the slots not released, the one sent first, or NULL. */
batch_slot *batch_net_oldest(batch_net *n);
/* Waits for s's answer: BATCH_NET_OK (200, in s->resp), BATCH_NET_RETRY (network error,
 * 429, 5xx) or BATCH_NET_FATAL (any other status; the reason is printed). */
int batch_net_wait(batch_net *n, batch_slot *s);
/* Waits for the answers of every request in flight but except's (they stay in their
 * slots, for batch_net_wait). */
void batch_net_settle(batch_net *n, const batch_slot *except);
/* Sends s again after a backoff. -1 when it has had its attempts. */
int batch_net_retry(batch_net *n, batch_slot *s);
/* Marks s free, wiping the private keys it held. */
void batch_net_release(batch_net *n, batch_slot *s);
void batch_net_close(batch_net **n);

#endif
