/* Reading serial numbers: a line reader whose memory does not depend on the input (one
 * read buffer and at most BATCH_LINE_KEEP bytes of a line), and the rules that find a
 * serial number on a line. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/batch.h"
#include "core/mem.h"

#define READ_BUF 65536

struct batch_reader {
	int fd;
	size_t pos, len;      /* the unread part of buf */
	int eof;
	int64_t offset;       /* bytes of the file consumed up to the end of the last line */
	long line;            /* number of the last line returned */
	size_t keep_len;
	char keep[BATCH_LINE_KEEP + 2];
	char buf[READ_BUF];
};

imp_err batch_reader_open(const char *path, batch_reader **out)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if(fd < 0) return errno == ENOENT ? IMP_ERR_NOT_FOUND : IMP_ERR_IO;
	struct stat st;
	if(fstat(fd, &st) || S_ISDIR(st.st_mode)) {
		close(fd);
		return IMP_ERR_IO;
	}
	batch_reader *r = imp_calloc(1, sizeof *r);
	if(!r) {
		close(fd);
		return IMP_ERR_NOMEM;
	}
	r->fd = fd;
	*out = r;
	return IMP_OK;
}

imp_err batch_reader_seek(batch_reader *r, int64_t offset, long line)
{
	struct stat st;
	if(offset < 0 || line < 0 || fstat(r->fd, &st)) return IMP_ERR_IO;
	if(offset > st.st_size) return IMP_ERR_INVALID;
	if(offset > 0) {
		char c;
		if(pread(r->fd, &c, 1, offset - 1) != 1) return IMP_ERR_IO;
		/* the end of a file without a final newline is also the end of a line */
		if(c != '\n' && offset != st.st_size) return IMP_ERR_INVALID;
	}
	if(lseek(r->fd, offset, SEEK_SET) < 0) return IMP_ERR_IO;
	r->pos = r->len = 0;
	r->eof = 0;
	r->offset = offset;
	r->line = line;
	return IMP_OK;
}

static int refill(batch_reader *r)
{
	for(;;) {
		ssize_t got = read(r->fd, r->buf, sizeof r->buf);
		if(got < 0 && errno == EINTR) continue;
		if(got < 0) return -1;
		r->pos = 0;
		r->len = (size_t)got;
		if(got == 0) r->eof = 1;
		return 0;
	}
}

int batch_reader_next(batch_reader *r, const char **line, size_t *n, int *truncated)
{
	size_t total = 0;
	int any = 0;
	char last = 0;
	r->keep_len = 0;
	for(;;) {
		if(r->pos == r->len) {
			if(r->eof) break;
			if(refill(r)) return -(int)IMP_ERR_IO;
			if(r->eof) break;
		}
		const char *start = r->buf + r->pos;
		size_t avail = r->len - r->pos;
		const char *nl = memchr(start, '\n', avail);
		size_t seg = nl ? (size_t)(nl - start) : avail;
		/* one byte over the cap is kept so that a "\r" there can still be dropped */
		size_t room = BATCH_LINE_KEEP + 1 - r->keep_len;
		size_t take = seg < room ? seg : room;
		memcpy(r->keep + r->keep_len, start, take);
		r->keep_len += take;
		if(seg) last = start[seg - 1];
		total += seg;
		any = 1;
		r->pos += seg + (nl ? 1 : 0);
		r->offset += (int64_t)(seg + (nl ? 1 : 0));
		if(nl) break;
	}
	if(!any) return 0;
	r->line++;
	if(total && last == '\r') total--;
	if(r->keep_len > total) r->keep_len = total;
	*truncated = total > BATCH_LINE_KEEP;
	if(*truncated) r->keep_len = BATCH_LINE_KEEP;
	const char *p = r->keep;
	size_t len = r->keep_len;
	/* a byte order mark, as spreadsheets write before a CSV's first line */
	if(r->line == 1 && len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) {
		p += 3;
		len -= 3;
	}
	*line = p;
	*n = len;
	return 1;
}

long batch_reader_line(const batch_reader *r) { return r->line; }

int64_t batch_reader_offset(const batch_reader *r) { return r->offset; }

long batch_reader_count_rest(batch_reader *r)
{
	char *buf = imp_malloc(READ_BUF);
	if(!buf) return -1;
	long lines = 0;
	int64_t at = r->offset;
	char last = '\n';
	for(;;) {
		ssize_t got = pread(r->fd, buf, READ_BUF, at);
		if(got < 0 && errno == EINTR) continue;
		if(got <= 0) break;
		for(const char *p = buf, *end = buf + got; (p = memchr(p, '\n', (size_t)(end - p))); p++) lines++;
		last = buf[got - 1];
		at += got;
	}
	imp_free(buf);
	return lines + (last != '\n');
}

void batch_reader_free(batch_reader **r)
{
	if(!*r) return;
	close((*r)->fd);
	imp_free(*r);
	*r = NULL;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when it is not one:
 * no overlong forms, no surrogates, nothing past U+10FFFF. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	if(c < 0x80) return 1;
	size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
	if(!len || c > 0xf4 || len > n) return 0;
	for(size_t i = 1; i < len; i++) {
		if((s[i] & 0xc0) != 0x80) return 0;
	}
	if(c == 0xe0 && s[1] < 0xa0) return 0;  /* overlong */
	if(c == 0xed && s[1] >= 0xa0) return 0; /* surrogate */
	if(c == 0xf0 && s[1] < 0x90) return 0;  /* overlong */
	if(c == 0xf4 && s[1] >= 0x90) return 0; /* past U+10FFFF */
	return len;
}

static int blank(char c) { return c == ' ' || c == '\t'; }

/* The first CSV field of line into out (cap bytes), unquoted. Returns NULL or why not. */
static const char *csv_first(const char *line, size_t n, int truncated, char *out, size_t cap, size_t *len)
{
	size_t i = 0, o = 0;
	while(i < n && blank(line[i])) i++;
	if(i < n && line[i] == '"') {
		for(i++;; i++) {
			if(i >= n) return truncated ? "the first column is longer than a serial number may be"
			                            : "unterminated quote in the first column (a line break inside a quoted "
			                              "CSV field is not supported)";
			if(line[i] == '"') {
				if(i + 1 < n && line[i + 1] == '"') i++;
				else break;
			}
			if(o + 1 >= cap) return "the serial number is longer than 128 characters";
			out[o++] = line[i];
		}
		for(i++; i < n && blank(line[i]); i++) {}
		if(i < n && line[i] != ',') return "characters after the quoted first column";
	} else {
		const char *comma = memchr(line + i, ',', n - i);
		size_t end = comma ? (size_t)(comma - line) : n;
		if(!comma && truncated) return "the first column is longer than a serial number may be";
		if(end - i >= cap) return "the serial number is longer than 128 characters";
		memcpy(out, line + i, end - i);
		o = end - i;
	}
	*len = o;
	return NULL;
}

batch_line_kind batch_line_parse(const char *line, size_t n, int truncated, int csv, char *out, const char **why)
{
	size_t len = 0;
	*why = NULL;
	out[0] = '\0';
	if(csv) {
		size_t i = 0;
		while(i < n && blank(line[i])) i++;
		if(i == n && !truncated) return BATCH_LINE_SKIP;
		*why = csv_first(line, n, truncated, out, BATCH_SERIAL_BUF, &len);
		if(*why) return BATCH_LINE_BAD;
	} else {
		if(truncated) {
			*why = "the line is longer than a serial number may be (128 characters)";
			return BATCH_LINE_BAD;
		}
		size_t i = 0;
		while(i < n && blank(line[i])) i++;
		if(n - i >= BATCH_SERIAL_BUF) {
			/* trailing blanks might still bring it under the cap */
			size_t e = n;
			while(e > i && blank(line[e - 1])) e--;
			if(e - i >= BATCH_SERIAL_BUF) {
				*why = "the serial number is longer than 128 characters";
				return BATCH_LINE_BAD;
			}
		}
		len = n - i < BATCH_SERIAL_BUF ? n - i : BATCH_SERIAL_BUF - 1;
		memcpy(out, line + i, len);
	}
	while(len && blank(out[len - 1])) len--;
	size_t start = 0;
	while(start < len && blank(out[start])) start++;
	if(start) memmove(out, out + start, len - start);
	len -= start;
	out[len] = '\0';
	if(!len) {
		if(!csv) return BATCH_LINE_SKIP;
		*why = "the first column is empty";
		return BATCH_LINE_BAD;
	}
	size_t chars = 0;
	for(size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)out[i];
		if(c < 0x20 || c == 0x7f) {
			*why = "the serial number holds a control character (binary data?)";
			return BATCH_LINE_BAD;
		}
		size_t k = utf8_char((const unsigned char *)out + i, len - i);
		if(!k) {
			*why = "the line is not UTF-8 text";
			return BATCH_LINE_BAD;
		}
		i += k;
		chars++;
	}
	if(chars > IMP_SERIAL_MAX) {
		*why = "the serial number is longer than 128 characters";
		return BATCH_LINE_BAD;
	}
	return BATCH_LINE_SERIAL;
}
