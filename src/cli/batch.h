/* imprint batch, the manufacturing command, in parts: reading serial numbers
 * (batch_input.c), writing credential bundles (batch_output.c), the resumption state
 * (batch_state.c), making chunks durable (batch_sync.c), key pairs and CSRs (batch_csr.c) and
 * the command itself (batch.c).
 * Only the batch command and its unit tests use this header. */
#ifndef IMP_CLI_BATCH_H
#define IMP_CLI_BATCH_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/err.h"
#include "core/limits.h"

/* ---- byte buffers (batch_output.c) ---- */

/* A growing buffer that refuses to grow past max bytes (IMP_ERR_TOO_LARGE): every buffer
 * the network or the input file fills gets its cap where it is made. */
typedef struct {
	char *p;
	size_t n, cap, max;
} batch_buf;

imp_err batch_buf_add(batch_buf *b, const void *s, size_t n);
imp_err batch_buf_str(batch_buf *b, const char *s);
/* Appends s as the inside of a JSON string (no quotes). */
imp_err batch_buf_json(batch_buf *b, const char *s);
/* How many of the n bytes at p come before the first '"', '\\' or control character
 * (below 0x20): what JSON strings carry as they are, in either direction. */
size_t batch_plain_run(const char *p, size_t n);
void batch_buf_free(batch_buf *b);

/* ---- input (batch_input.c) ---- */

/* The most of one input line kept in memory. A serial number is at most 128 characters
 * (512 bytes of UTF-8); the rest of a longer line is read and dropped, so a 10 MB line
 * costs no more memory than a short one. The margin lets a CSV line's first column be
 * found behind quoting and spaces. */
#define BATCH_LINE_KEEP 4096
#define BATCH_SERIAL_BUF (IMP_SERIAL_MAX * 4 + 1)

typedef struct batch_reader batch_reader;

/* Opens path for reading line by line from its start. Caller frees with
 * batch_reader_free(). IMP_ERR_NOT_FOUND when missing, IMP_ERR_IO when unreadable. */
imp_err batch_reader_open(const char *path, batch_reader **out);
/* Continues at byte offset, which must be the start of line number line + 1 (a resumed
 * batch). IMP_ERR_INVALID when offset is past the end or not just after a newline. */
imp_err batch_reader_seek(batch_reader *r, int64_t offset, long line);
/* The next line, without its "\n" or "\r\n": at most BATCH_LINE_KEEP bytes of it in
 * *line (valid until the next call) and *truncated set when there was more. Returns 1
 * for a line, 0 at the end of the file, IMP_ERR_IO (as a negative number) on a read error. */
int batch_reader_next(batch_reader *r, const char **line, size_t *n, int *truncated);
/* The number of the line last returned (1 for the first line of the file). */
long batch_reader_line(const batch_reader *r);
/* The byte offset just after the line last returned. */
int64_t batch_reader_offset(const batch_reader *r);
/* Counts the lines from the current position to the end, then returns to it (for the
 * progress bar's ETA; reads the file once more with the same bounded buffer). */
long batch_reader_count_rest(batch_reader *r);
void batch_reader_free(batch_reader **r);

typedef enum {
	BATCH_LINE_SERIAL,  /* a serial number, in out */
	BATCH_LINE_SKIP,    /* blank, or a CSV header: not an error */
	BATCH_LINE_BAD      /* refused: *why says why, for a person, without echoing the line */
} batch_line_kind;

/* Finds the serial number on one line: the whole line, or the first column of a CSV
 * line (csv set; quoted fields with "" escapes, no line breaks inside quotes). Spaces and
 * tabs around it are dropped. A serial number is 1-128 characters of UTF-8 with no
 * control characters. out holds BATCH_SERIAL_BUF bytes. */
batch_line_kind batch_line_parse(const char *line, size_t n, int truncated, int csv, char *out, const char **why);

/* ---- bundles and output formats (batch_output.c) ---- */

typedef enum { BATCH_JSONL, BATCH_CSV, BATCH_NVS, BATCH_DIR } batch_format;

/* -1 when s names no format. */
int batch_format_parse(const char *s);
const char *batch_format_name(batch_format f);

typedef struct {
	const char *host;
	int port;       /* MQTT over TLS with a password (8883) */
	int cert_port;  /* MQTT over TLS with a client certificate (8884) */
} batch_broker;

/* One device's credentials, everything borrowed. password for password templates;
 * certificate and private_key (PEM) for certificate templates. */
typedef struct {
	const char *device_id, *serial, *account_id, *template_id;
	const char *password;
	const char *certificate, *private_key;
	size_t nchannels;
	const char **channel_names, **channel_topics, **channel_permissions;
} batch_bundle;

/* The header line that starts a csv or nvs output (cert: for a certificate template), or
 * "" for the others. */
const char *batch_header(batch_format f, int cert);
/* Appends one bundle in format f (jsonl, csv, nvs: one record; dir: the file's JSON) to out.
 * NVS strings hold at most 4000 bytes: a channel list longer than that is cut after its
 * last whole channel and *cut set (the topic prefix is always there). IMP_ERR_TOO_LARGE
 * past out's cap. */
imp_err batch_bundle_write(batch_format f, const batch_bundle *b, const batch_broker *br, batch_buf *out, int *cut);
/* The config CSV that ESP-IDF's mfg_gen.py reads with the nvs values CSV. */
const char *batch_nvs_config(int cert);
/* The file name of a serial's bundle in a dir output: the serial with every byte outside
 * [A-Za-z0-9._-] (and a leading '.') written %XX, then ".json"; the device id instead when
 * that would pass 200 bytes. out holds 256 bytes. */
void batch_file_name(const char *serial, const char *device_id, char out[256]);

/* ---- the server's answers (batch_answer.c) ---- */

/* The device template's channels (every device of it has them, in this order) and its
 * account, read once at the start. With them (ok) the CLI asks for minimal answers
 * (Prefer: return=minimal: a device is then only its id, serial number, state and version)
 * and writes each device's topics itself, as the server does:
 * xi/blue/v1/<accountId>/d/<deviceId>/<channel name>. An answer that does carry the
 * device's channels is taken as it is. */
typedef struct {
	int ok;
	char account_id[IMP_UUID_LEN + 1], template_id[IMP_UUID_LEN + 1];
	size_t n;
	char **names, **permissions;
} batch_channels;

void batch_channels_free(batch_channels *c);

typedef enum {
	BATCH_ANSWER_BUNDLE,  /* a bundle was appended to out */
	BATCH_ANSWER_REFUSED, /* the server refused the line: why holds its reason */
	BATCH_ANSWER_BROKEN   /* not what the protocol promises (wrong line number, not JSON...) */
} batch_answer_kind;

/* Reads one line of the batch endpoint's NDJSON answer, which must be for file line
 * expect_line, and appends the device's bundle in format f to out (for dir: the file name,
 * a NUL, the JSON, a NUL). A device without channels in the answer (a minimal one) takes
 * ch's (NULL or not ok: such an answer is broken). private_key: the PEM made for the
 * line's CSR, or NULL for a password template. out NULL: only the line number is checked (a placeholder's answer).
 * why: why_len bytes; it never holds a secret. */
batch_answer_kind batch_answer(const char *text, size_t n, long expect_line, batch_format f, const batch_broker *br,
                               const batch_channels *ch, const char *private_key, batch_buf *out, int *cut, char *why,
                               size_t why_len);

/* ---- the resumption state (batch_state.c) ---- */

/* What a batch has made durable: written next to the output as <out>.state, replaced
 * (write, fsync, rename) only after the output it describes is on disk. (The command's own
 * copy runs up to two chunks ahead: written, being made durable or waiting to be.) */
typedef struct {
	char name[IMP_NAME_MAX + 1];      /* the Idempotency-Key */
	char template_id[IMP_UUID_LEN + 1];
	char format[8];
	long lines;                       /* input lines consumed */
	int64_t input_offset;             /* bytes of input consumed */
	int64_t output_bytes;             /* bytes of output that are durable (0 for dir) */
	long ok, failed;                  /* devices written, lines that failed */
	int64_t run;                      /* runs of the batch so far, this one included */
} batch_state;

/* Reads path. IMP_ERR_NOT_FOUND when missing, IMP_ERR_IO when unreadable or malformed. */
imp_err batch_state_load(const char *path, batch_state *st);
/* Replaces path with st durably: a temporary file, fsync, rename, fsync of the directory. */
imp_err batch_state_save(const char *path, const batch_state *st);

/* ---- making chunks durable, off the main thread (batch_sync.c) ---- */

/* A thread that makes each written chunk durable: the output's data (fdatasync; for dir,
 * syncfs and the directory's fsync), then the state that counts the chunk as done. The
 * main thread meanwhile reads the next chunk's answer and writes its bundles. */
typedef struct batch_syncer batch_syncer;
/* out_fd: the output file or directory (dir: nonzero for the dir format); out_path and
 * state_path name them in error messages and state_path is where states go. Both strings
 * must outlive the syncer. Caller stops it with batch_syncer_stop(). IMP_ERR_NOMEM or
 * IMP_ERR_IO (no thread). */
imp_err batch_syncer_start(int out_fd, int dir, const char *out_path, const char *state_path, batch_syncer **out);
/* Waits until no chunk handed before waits its turn (the one before may still be being made
 * durable): 0, or -1 when an earlier chunk could not be made durable (the syncer said why on
 * stderr). Called before a chunk is written, so at most two are written and not counted. */
int batch_syncer_room(batch_syncer *s);
/* Waits for room as batch_syncer_room, then hands st (the state once this chunk is on
 * disk). -1, and st not taken, when an earlier chunk could not be made durable. */
int batch_syncer_push(batch_syncer *s, const batch_state *st);
/* Waits until every chunk handed is durable: 0, or -1 when one could not be. */
int batch_syncer_wait(batch_syncer *s);
/* Waits as batch_syncer_wait, then ends the thread; NULLs *s. */
void batch_syncer_stop(batch_syncer **s);

/* ---- key pairs (batch_csr.c) ---- */

/* A new EC P-256 key pair and a CSR for it (CN = cn), both PEM. The private key never
 * leaves this process but in the output. Caller frees both with imp_free(). */
imp_err batch_keypair_csr(const char *cn, char **key_pem, char **csr_pem);

#endif
