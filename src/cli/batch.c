/* imprint batch: a file of serial numbers in, a file of credential bundles out, through
 * POST /api/v1/devices/batch. Memory stays flat whatever the file's size: the input is read
 * a chunk at a time, each chunk's answer is written, then made durable and recorded in the
 * state file (by batch_sync.c's thread, while the next answer is read; at most two chunks
 * are written and not yet recorded), and no set of serial numbers is kept (the server
 * refuses duplicates under the batch's Idempotency-Key). See docs/manufacturing.md. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/batch.h"
#include "cli/batch_net.h"
#include "cli/cli.h"
#include "core/crypto.h"
#include "core/mem.h"

/* The server handles a request's lines in transactions of 1,000: a chunk of that size is
 * one transaction, so a request cut short by a crash was either wholly handled or not at
 * all. Larger chunks were no faster (docs/manufacturing.md). */
#define CHUNK_DEFAULT 1000
#define CHUNK_MAX 100000
#define REQ_BYTES_MAX (16 << 20) /* a chunk's request stops growing here */
#define OUT_BYTES_MAX (1u << 30) /* a chunk's bundles */

typedef struct {
	const char *template_id, *serials, *out, *name, *server, *api_key, *broker_host, *input;
	batch_format format;
	int broker_port, cert_port;
	long chunk;
	int parallel;
} opts;

typedef struct {
	opts o;
	int cert;                 /* the template authenticates devices by certificate */
	batch_channels channels;  /* the template's, for minimal answers */
	int csv;                  /* the serials file is a CSV with a header */
	char state_path[4096], host[256];
	batch_broker broker;
	batch_state st;
	batch_reader *in;
	int out_fd;               /* the output file, or the directory for dir */
	batch_buf bundles, errors;
	batch_syncer *sync;       /* makes each written chunk durable, then records it */
	long run_lines, total_lines;
	double started, last_progress;
	int tty, cut_warned;
} batch;

static int usage(void)
{
	fprintf(stderr, "usage: imprint batch --template ID --serials FILE --out FILE [--name NAME]\n"
	                "                     [--format jsonl|csv|nvs|dir] [--server URL] [--api-key KEY]\n"
	                "                     [--broker-host HOST] [--broker-port N] [--broker-cert-port N]\n"
	                "                     [--input lines|csv] [--chunk LINES] [--parallel 1|2]\n"
	                "The API key is better given in IMPRINT_API_KEY: arguments are visible to ps.\n");
	return 2;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if(errno || end == s || *end || v < lo || v > hi) return -1;
	*out = v;
	return 0;
}

static int parse(int argc, char **argv, opts *o)
{
	long port = 8883, cert_port = 8884, parallel = 2;
	int fmt = BATCH_JSONL;
	o->chunk = CHUNK_DEFAULT;
	o->server = "http://127.0.0.1:8080";
	for(int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if(!v) return usage();
		i++;
		if(strcmp(a, "--template") == 0) o->template_id = v;
		else if(strcmp(a, "--serials") == 0) o->serials = v;
		else if(strcmp(a, "--out") == 0) o->out = v;
		else if(strcmp(a, "--name") == 0) o->name = v;
		else if(strcmp(a, "--server") == 0) o->server = v;
		else if(strcmp(a, "--api-key") == 0) o->api_key = v;
		else if(strcmp(a, "--broker-host") == 0) o->broker_host = v;
		else if(strcmp(a, "--input") == 0) o->input = v;
		else if(strcmp(a, "--format") == 0) {
			if((fmt = batch_format_parse(v)) < 0) return usage();
		} else if(strcmp(a, "--broker-port") == 0) {
			if(parse_int(v, 1, 65535, &port)) return usage();
		} else if(strcmp(a, "--broker-cert-port") == 0) {
			if(parse_int(v, 1, 65535, &cert_port)) return usage();
		} else if(strcmp(a, "--chunk") == 0) {
			if(parse_int(v, 1, CHUNK_MAX, &o->chunk)) return usage();
		} else if(strcmp(a, "--parallel") == 0) {
			if(parse_int(v, 1, BATCH_PARALLEL_MAX, &parallel)) return usage();
		} else return usage();
	}
	o->format = (batch_format)fmt;
	o->broker_port = (int)port;
	o->cert_port = (int)cert_port;
	o->parallel = (int)parallel;
	if(!o->api_key) o->api_key = getenv("IMPRINT_API_KEY");
	if(!o->template_id || !o->serials || !o->out) return usage();
	if(!o->api_key || !*o->api_key) {
		fprintf(stderr, "imprint batch: no API key: set IMPRINT_API_KEY (or --api-key)\n");
		return 2;
	}
	if(o->input && strcmp(o->input, "lines") != 0 && strcmp(o->input, "csv") != 0) return usage();
	if(o->name) {
		size_t n = strlen(o->name);
		int ok = n >= 1 && n <= IMP_NAME_MAX && o->name[0] != ' ' && o->name[n - 1] != ' ';
		for(size_t i = 0; ok && i < n; i++) ok = o->name[i] >= 0x20 && o->name[i] < 0x7f;
		if(!ok) {
			fprintf(stderr, "imprint batch: --name must be 1-128 printable ASCII characters\n");
			return 2;
		}
	}
	if(strlen(o->template_id) > IMP_UUID_LEN) {
		fprintf(stderr, "imprint batch: unknown device template %.40s\n", o->template_id);
		return 2;
	}
	return 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The host of a URL like http://user@host:port/path, for the default broker host. */
static void url_host(const char *url, char *out, size_t cap)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	const char *at = strchr(p, '@'), *slash = strchr(p, '/');
	if(at && (!slash || at < slash)) p = at + 1;
	size_t n;
	if(*p == '[') n = strcspn(p, "]") + (strchr(p, ']') ? 1 : 0);
	else n = strcspn(p, ":/?#");
	if(n >= cap) n = cap - 1;
	memcpy(out, p, n);
	out[n] = '\0';
}

/* ---- the output and its state: refuse to overwrite what another batch wrote ---- */

static int is_empty_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if(fd < 0) return 0;
	DIR *d = fdopendir(fd);
	if(!d) {
		close(fd);
		return 0;
	}
	struct dirent *e;
	int empty = 1;
	while(empty && (e = readdir(d))) {
		if(strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = 0;
	}
	closedir(d);
	return empty;
}

/* Loads or starts the state, checks the output against it and opens the output at the
 * recorded size. Returns 0, or 2 after printing why it refuses. */
static int open_output(batch *b)
{
	const opts *o = &b->o;
	char out[4000];
	if(strlen(o->out) >= sizeof out) {
		fprintf(stderr, "imprint batch: --out is too long a path\n");
		return 2;
	}
	snprintf(out, sizeof out, "%s", o->out);
	for(size_t n = strlen(out); n > 1 && out[n - 1] == '/'; n--) out[n - 1] = '\0';
	snprintf(b->state_path, sizeof b->state_path, "%s.state", out);
	struct stat sb;
	int exists = stat(out, &sb) == 0;
	int is_dir = exists && S_ISDIR(sb.st_mode);
	if(exists && is_dir != (o->format == BATCH_DIR)) {
		fprintf(stderr, "imprint batch: %s is %s; --format %s writes %s\n", out, is_dir ? "a directory" : "a file",
		        batch_format_name(o->format), o->format == BATCH_DIR ? "a directory" : "a file");
		return 2;
	}
	imp_err rc = batch_state_load(b->state_path, &b->st);
	if(rc == IMP_ERR_NOT_FOUND) {
		if(exists && (is_dir ? !is_empty_dir(out) : sb.st_size > 0)) {
			fprintf(stderr,
			        "imprint batch: %s exists and no batch state (%s) says what it holds; refusing to overwrite "
			        "it: choose another --out, or move it away\n",
			        out, b->state_path);
			return 2;
		}
		if(o->name) snprintf(b->st.name, sizeof b->st.name, "%s", o->name);
		else {
			/* Random, so two outputs never share a name; kept in the state for reruns. */
			uint8_t raw[12];
			char hex[25];
			if(imp_random(raw, sizeof raw)) return 2;
			imp_hex(raw, sizeof raw, hex);
			snprintf(b->st.name, sizeof b->st.name, "batch-%s", hex);
		}
		snprintf(b->st.template_id, sizeof b->st.template_id, "%s", o->template_id);
		snprintf(b->st.format, sizeof b->st.format, "%s", batch_format_name(o->format));
		/* The state goes first: an output without one would be refused on the rerun. */
		if(batch_state_save(b->state_path, &b->st)) {
			fprintf(stderr, "imprint batch: cannot write %s: %s\n", b->state_path, strerror(errno));
			return 2;
		}
	} else if(rc) {
		fprintf(stderr, "imprint batch: %s is not a batch state file imprint can read; refusing to continue\n",
		        b->state_path);
		return 2;
	} else {
		const char *diff = o->name && strcmp(o->name, b->st.name) != 0           ? "name"
		                   : strcmp(o->template_id, b->st.template_id) != 0       ? "template"
		                   : strcmp(batch_format_name(o->format), b->st.format) != 0 ? "format"
		                                                                           : NULL;
		if(diff) {
			fprintf(stderr,
			        "imprint batch: %s belongs to batch %s (template %s, format %s); this run has another %s. "
			        "Rerun with the same options to continue it, or choose another --out\n",
			        out, b->st.name, b->st.template_id, b->st.format, diff);
			return 2;
		}
		int64_t have = exists && !is_dir ? (int64_t)sb.st_size : 0;
		if((!exists && (b->st.ok > 0 || b->st.output_bytes > 0)) || have < b->st.output_bytes) {
			fprintf(stderr,
			        "imprint batch: %s says %ld bundles were written to %s, but %s; the secrets in them cannot be "
			        "read back. To issue new ones to every device of the batch, remove %s and run again with "
			        "--name %s\n",
			        b->state_path, b->st.ok, out, exists ? "it is shorter now" : "it is gone", b->state_path,
			        b->st.name);
			return 2;
		}
	}
	if(o->format == BATCH_DIR) {
		if(!exists && mkdir(out, 0700) && errno != EEXIST) {
			fprintf(stderr, "imprint batch: cannot create %s: %s\n", out, strerror(errno));
			return 2;
		}
		b->out_fd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else {
		b->out_fd = open(out, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		/* Secrets go in: an existing file (made by touch, say) is narrowed to its owner. */
		if(b->out_fd >= 0 && fchmod(b->out_fd, 0600)) {
			close(b->out_fd);
			b->out_fd = -1;
		}
		/* What a crashed run wrote after its last recorded chunk is cut off; those lines
		 * run again and get fresh secrets (the cut ones stop working). */
		if(b->out_fd >= 0 && (ftruncate(b->out_fd, b->st.output_bytes) || lseek(b->out_fd, 0, SEEK_END) < 0)) {
			close(b->out_fd);
			b->out_fd = -1;
		}
	}
	if(b->out_fd < 0) {
		fprintf(stderr, "imprint batch: cannot open %s: %s\n", out, strerror(errno));
		return 2;
	}
	return 0;
}

/* The config CSV mfg_gen.py reads beside the values: OUT with ".csv" replaced by
 * "-config.csv" (or that appended). Rewritten each run; it never holds a secret. */
static int write_nvs_config(batch *b)
{
	char path[4200];
	size_t n = strlen(b->o.out);
	if(n > 4 && strcmp(b->o.out + n - 4, ".csv") == 0) n -= 4;
	snprintf(path, sizeof path, "%.*s-config.csv", (int)n, b->o.out);
	const char *text = batch_nvs_config(b->cert);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text) && fsync(fd) == 0;
	if(fd >= 0 && close(fd)) ok = 0;
	if(!ok) fprintf(stderr, "imprint batch: cannot write %s: %s\n", path, strerror(errno));
	return ok ? 0 : 2;
}

static int write_all(int fd, const char *p, size_t n)
{
	while(n) {
		ssize_t w = write(fd, p, n);
		if(w < 0 && errno == EINTR) continue;
		if(w <= 0) return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ---- chunks ---- */

/* Reads up to o.chunk lines into slot s as NDJSON. Locally refused lines go as "{}" so
 * that the server's line numbers stay the file's. Returns the number of lines (0 at the
 * end of the input), or -1 after printing a fatal error. */
static long fill_chunk(batch *b, batch_slot *s)
{
	s->req.n = 0;
	s->count = 0;
	s->first = batch_reader_line(b->in) + 1;
	char serial[BATCH_SERIAL_BUF];
	while(s->count < b->o.chunk && s->req.n < REQ_BYTES_MAX) {
		const char *line, *why = NULL;
		size_t n;
		int trunc;
		int got = batch_reader_next(b->in, &line, &n, &trunc);
		if(got < 0) {
			fprintf(stderr, "imprint batch: cannot read %s: %s\n", b->o.serials, strerror(errno));
			return -1;
		}
		if(got == 0) break;
		batch_line *l = &s->lines[s->count];
		memset(l, 0, sizeof *l);
		long num = batch_reader_line(b->in);
		batch_line_kind kind = num == 1 && b->csv ? BATCH_LINE_SKIP : batch_line_parse(line, n, trunc, b->csv, serial, &why);
		l->kind = (int)kind;
		l->why = why;
		imp_err rc = IMP_OK;
		if(kind != BATCH_LINE_SERIAL) {
			rc = batch_buf_add(&s->req, "{}\n", 3);
		} else {
			char *csr = NULL;
			/* The server sets the certificate's CN to the device id; a CN is at most 64
			 * characters and a serial number may be 128, so the CSR asks for a fixed one. */
			if(b->cert && (rc = batch_keypair_csr("imprint device", &l->key, &csr))) {
				fprintf(stderr, "imprint batch: cannot make a key pair (%s)\n", imp_err_name(rc));
				return -1;
			}
			rc = batch_buf_str(&s->req, "{\"deviceTemplateId\":\"");
			if(!rc) rc = batch_buf_json(&s->req, b->o.template_id);
			if(!rc) rc = batch_buf_str(&s->req, "\",\"serialNumber\":\"");
			if(!rc) rc = batch_buf_json(&s->req, serial);
			if(!rc && csr) rc = batch_buf_str(&s->req, "\",\"csr\":\"");
			if(!rc && csr) rc = batch_buf_json(&s->req, csr);
			if(!rc) rc = batch_buf_str(&s->req, "\"}\n");
			imp_free(csr);
		}
		if(rc) {
			fprintf(stderr, "imprint batch: out of memory (%s)\n", imp_err_name(rc));
			return -1;
		}
		s->count++;
	}
	s->end_line = batch_reader_line(b->in);
	s->end_offset = batch_reader_offset(b->in);
	return s->count;
}

/* "line N: why" for stderr once the chunk is committed. */
static void note(batch *b, long line, const char *why)
{
	char text[600];
	int n = snprintf(text, sizeof text, "line %ld: %s\n", line, why);
	if(n > 0) batch_buf_add(&b->errors, text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
}

/* Turns slot s's answer into bundles and messages in b->bundles and b->errors, all or
 * nothing. Returns 0, or -1 when the answer is broken (the chunk is sent again). */
static int read_answer(batch *b, batch_slot *s, long *ok, long *failed)
{
	b->bundles.n = b->errors.n = 0;
	*ok = *failed = 0;
	const char *p = s->resp.p ? s->resp.p : "", *end = p + s->resp.n;
	char why[400];
	for(long i = 0; i < s->count; i++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if(!nl) return -1;
		batch_line *l = &s->lines[i];
		long num = s->first + i;
		int cut = 0;
		batch_answer_kind k = batch_answer(p, (size_t)(nl - p), num, b->o.format, &b->broker, &b->channels,
		                                   l->kind == BATCH_LINE_SERIAL ? l->key : NULL, l->kind == BATCH_LINE_SERIAL
		                                                                                  ? &b->bundles : NULL,
		                                   &cut, why, sizeof why);
		p = nl + 1;
		if(l->kind == BATCH_LINE_SKIP) continue;
		if(l->kind == BATCH_LINE_BAD) {
			/* the server's answer to the placeholder is of no interest */
			note(b, num, l->why);
			++*failed;
			continue;
		}
		if(k == BATCH_ANSWER_BROKEN) {
			fprintf(stderr, "imprint batch: line %ld: %s\n", num, why);
			return -1;
		}
		if(k == BATCH_ANSWER_REFUSED) {
			note(b, num, why);
			++*failed;
			continue;
		}
		if(cut && !b->cut_warned) {
			b->cut_warned = 1;
			note(b, num, "warning: the channel list passes 4000 bytes, so channels is cut in the NVS values; "
			             "topic_prefix is whole");
		}
		++*ok;
	}
	while(p < end && (*p == '\n' || *p == '\r')) p++;
	return p == end ? 0 : -1;
}

/* Writes the chunk's bundles, once no chunk before waits to be made durable, and hands the
 * state that counts this one to the syncer, which makes them durable, then records it.
 * b->st is then the state of what is written. */
static int commit(batch *b, batch_slot *s, long ok, long failed)
{
	if(batch_syncer_room(b->sync)) return -1; /* it said why */
	int bad = 0;
	if(b->o.format == BATCH_DIR) {
		for(const char *p = b->bundles.p, *end = p + b->bundles.n; p && p < end && !bad;) {
			const char *name = p, *json = name + strlen(name) + 1;
			size_t n = strlen(json);
			int fd = openat(b->out_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
			bad = fd < 0 || write_all(fd, json, n);
			if(fd >= 0 && close(fd)) bad = 1;
			p = json + n + 1;
		}
		/* the syncer flushes the file system once for the whole chunk, not a file at a time */
	} else {
		bad = write_all(b->out_fd, b->bundles.p ? b->bundles.p : "", b->bundles.n);
	}
	off_t size = b->o.format == BATCH_DIR ? 0 : lseek(b->out_fd, 0, SEEK_CUR);
	if(bad || size < 0) {
		fprintf(stderr, "imprint batch: cannot write %s: %s\n", b->o.out, strerror(errno));
		return -1;
	}
	batch_state next = b->st;
	next.lines = s->end_line;
	next.input_offset = s->end_offset;
	next.output_bytes = size;
	next.ok += ok;
	next.failed += failed;
	if(batch_syncer_push(b->sync, &next)) return -1; /* it said why */
	b->st = next;
	b->run_lines += s->count;
	if(b->errors.n) {
		if(b->tty) fputs("\r\033[K", stderr);
		fwrite(b->errors.p, 1, b->errors.n, stderr);
	}
	return 0;
}

static void progress(batch *b, int force)
{
	double t = now();
	if(!b->tty || (!force && t - b->last_progress < 0.2)) return;
	b->last_progress = t;
	double rate = t > b->started ? (double)b->run_lines / (t - b->started) : 0;
	long done = b->st.lines, total = b->total_lines > done ? b->total_lines : done;
	int pct = total ? (int)(100.0 * (double)done / (double)total) : 100;
	char bar[31];
	for(int i = 0; i < 30; i++) bar[i] = i < pct * 30 / 100 ? '#' : ' ';
	bar[30] = '\0';
	long eta = rate > 0 ? (long)((double)(total - done) / rate) : 0;
	fprintf(stderr, "\r\033[K%3d%% [%s] %ld/%ld lines  %.0f/s  ETA %ldm%02lds", pct, bar, done, total, rate, eta / 60,
	        eta % 60);
}

/* Sends chunks while fewer than o.parallel requests are in flight. */
static int send_more(batch *b, batch_net *net, int *eof)
{
	batch_slot *s;
	while(!*eof && (s = batch_net_free_slot(net))) {
		long got = fill_chunk(b, s);
		if(got < 0) return -1;
		if(got == 0) {
			*eof = 1;
			break;
		}
		batch_net_send(net, s);
	}
	return 0;
}

/* Sends the chunks, at most o.parallel at once, and commits their answers in file order.
 * An answer in, the next chunk goes out before the answer's bundles are written. */
static int run(batch *b, batch_net *net)
{
	int eof = 0;
	for(;;) {
		if(send_more(b, net, &eof)) return 2;
		batch_slot *s = batch_net_oldest(net);
		if(!s) return 0;
		int rc = batch_net_wait(net, s);
		if(rc == BATCH_NET_FATAL) return 2;
		if(rc == BATCH_NET_OK && send_more(b, net, &eof)) return 2;
		long ok = 0, failed = 0;
		if(rc == BATCH_NET_OK && read_answer(b, s, &ok, &failed) != 0) {
			/* a broken answer, sent again: only once the chunk sent meanwhile is answered,
			 * so that no more than o.parallel requests are ever in flight */
			batch_net_settle(net, s);
			rc = BATCH_NET_RETRY;
		}
		if(rc == BATCH_NET_RETRY) {
			if(batch_net_retry(net, s)) {
				fprintf(stderr, "imprint batch: giving up on lines %ld-%ld after %d attempts; rerun to continue\n",
				        s->first, s->end_line, s->attempts);
				return 2;
			}
			continue;
		}
		if(commit(b, s, ok, failed)) return 2;
		batch_net_release(net, s);
		progress(b, 0);
	}
}

int imp_cmd_batch(int argc, char **argv)
{
	batch b = {.out_fd = -1};
	int status = parse(argc, argv, &b.o);
	if(status) return status;
	b.bundles.max = OUT_BYTES_MAX;
	b.errors.max = 64u << 20;
	url_host(b.o.server, b.host, sizeof b.host);
	b.broker = (batch_broker){b.o.broker_host ? b.o.broker_host : b.host, b.o.broker_port, b.o.cert_port};
	const char *dot = strrchr(b.o.serials, '.');
	b.csv = b.o.input ? strcmp(b.o.input, "csv") == 0 : dot && strcasecmp(dot, ".csv") == 0;
	b.tty = isatty(2);
	/* a server that closes a connection mid-upload must not kill the batch */
	signal(SIGPIPE, SIG_IGN);

	batch_net *net = NULL;
	imp_err rc = batch_net_open(b.o.server, b.o.api_key, b.o.parallel, b.o.chunk, &net);
	if(rc) {
		fprintf(stderr, "imprint batch: cannot start HTTP (%s)\n", imp_err_name(rc));
		return 2;
	}
	if((status = batch_net_template(net, b.o.template_id, &b.cert, &b.channels))) goto out;
	if((rc = batch_reader_open(b.o.serials, &b.in))) {
		fprintf(stderr, "imprint batch: cannot read %s: %s\n", b.o.serials,
		        rc == IMP_ERR_NOT_FOUND ? "no such file" : "not a readable file");
		status = 2;
		goto out;
	}
	if((status = open_output(&b))) goto out;
	/* the run number goes to disk before any request carries it */
	b.st.run++;
	if(batch_state_save(b.state_path, &b.st)) {
		fprintf(stderr, "imprint batch: cannot write %s: %s\n", b.state_path, strerror(errno));
		status = 2;
		goto out;
	}
	batch_net_name(net, b.st.name, b.st.run);
	if(b.o.format == BATCH_NVS && (status = write_nvs_config(&b))) goto out;
	if(batch_reader_seek(b.in, b.st.input_offset, b.st.lines)) {
		fprintf(stderr, "imprint batch: %s no longer matches %s (it has changed before line %ld); refusing to "
		                "continue\n", b.o.serials, b.state_path, b.st.lines);
		status = 2;
		goto out;
	}
	if(b.st.output_bytes == 0 && *batch_header(b.o.format, b.cert) &&
	   write_all(b.out_fd, batch_header(b.o.format, b.cert), strlen(batch_header(b.o.format, b.cert)))) {
		fprintf(stderr, "imprint batch: cannot write %s: %s\n", b.o.out, strerror(errno));
		status = 2;
		goto out;
	}
	if(b.tty) b.total_lines = b.st.lines + batch_reader_count_rest(b.in);
	if(b.st.lines > 0) fprintf(stderr, "imprint batch: continuing batch %s after line %ld\n", b.st.name, b.st.lines);
	if(batch_syncer_start(b.out_fd, b.o.format == BATCH_DIR, b.o.out, b.state_path, &b.sync)) {
		fprintf(stderr, "imprint batch: cannot start a thread\n");
		status = 2;
		goto out;
	}
	b.started = now();
	status = run(&b, net);
	/* What is written counts once it is on disk. When a chunk could not be made so, the
	 * summary says what the state file holds, which is where a rerun starts. */
	long written = b.st.lines;
	if(batch_syncer_wait(b.sync)) {
		status = 2;
		if(batch_state_load(b.state_path, &b.st) == IMP_OK) b.run_lines -= written - b.st.lines;
	}
	progress(&b, 1);
	if(b.tty) fputs("\r\033[K", stderr);
	double secs = now() - b.started;
	if(b.st.ok + b.st.failed == 0 && status == 0) {
		fprintf(stderr, "imprint batch: %s holds no serial numbers; nothing to do\n", b.o.serials);
	} else {
		fprintf(stderr, "imprint batch: %s: %ld devices in %s, %ld lines failed; %ld lines this run in %.1f s (%.0f/s)%s\n",
		        b.st.name, b.st.ok, b.o.out, b.st.failed, b.run_lines, secs, secs > 0 ? (double)b.run_lines / secs : 0.0,
		        status ? "; stopped early: rerun the same command to continue" : "");
	}
	if(!status && b.st.failed) status = 1;
out:
	batch_syncer_stop(&b.sync);
	batch_net_close(&net);
	batch_channels_free(&b.channels);
	batch_reader_free(&b.in);
	if(b.out_fd >= 0) close(b.out_fd);
	if(b.bundles.p) explicit_bzero(b.bundles.p, b.bundles.cap);
	batch_buf_free(&b.bundles);
	batch_buf_free(&b.errors);
	return status;
}
