/* Unit tests for the parts of imprint batch: the bounded line reader, the serial number
 * rules (plain lines and a CSV's first column), the answer scanner, the output formats,
 * file names in a dir output, and the state file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "cli/batch.h"

static char tmp[64];

static int setup(void **state)
{
	snprintf(tmp, sizeof tmp, "/tmp/imprint-unit-XXXXXX");
	return mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *file_with(const char *name, const char *data, size_t n)
{
	static char p[200];
	snprintf(p, sizeof p, "%s/%s", tmp, name);
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	fclose(f);
	return p;
}

/* ---- the line reader ---- */

static void reader_lines_and_offsets(void **state)
{
	const char *text = "\xef\xbb\xbf"
	                   "a\r\nbb\n\nlast";
	batch_reader *r;
	assert_int_equal(batch_reader_open(file_with("r1", text, strlen(text)), &r), IMP_OK);
	const char *line;
	size_t n;
	int trunc;
	assert_int_equal(batch_reader_count_rest(r), 4);
	assert_int_equal(batch_reader_next(r, &line, &n, &trunc), 1);
	assert_int_equal(n, 1); /* the byte order mark and the \r are gone */
	assert_memory_equal(line, "a", 1);
	assert_int_equal(batch_reader_offset(r), 6);
	assert_int_equal(batch_reader_next(r, &line, &n, &trunc), 1);
	assert_int_equal(n, 2);
	assert_int_equal(batch_reader_next(r, &line, &n, &trunc), 1);
	assert_int_equal(n, 0);
	assert_int_equal(batch_reader_next(r, &line, &n, &trunc), 1);
	assert_int_equal(n, 4);
	assert_memory_equal(line, "last", 4);
	assert_int_equal(batch_reader_line(r), 4);
	assert_int_equal(batch_reader_next(r, &line, &n, &trunc), 0);
	/* continue after line 2, and refuse an offset inside a line */
	assert_int_equal(batch_reader_seek(r, 9, 2), IMP_OK);
	assert_int_equal(batch_reader_next(r, &line, &n, &trunc), 1);
	assert_int_equal(batch_reader_line(r), 3);
	assert_int_equal(batch_reader_seek(r, 7, 1), IMP_ERR_INVALID);
	assert_int_equal(batch_reader_seek(r, 100, 1), IMP_ERR_INVALID);
	batch_reader_free(&r);
	assert_null(r);
}

/* A line far past the cap comes back cut to BATCH_LINE_KEEP and marked; the next line is
 * whole. One byte over the cap that is a \r does not count. */
static void reader_long_lines(void **state)
{
	size_t big = 300000;
	char *text = malloc(big + 64 + BATCH_LINE_KEEP + 2);
	memset(text, 'x', big);
	size_t n = big;
	n += (size_t)snprintf(text + n, 64, "\nnext\n");
	memset(text + n, 'y', BATCH_LINE_KEEP);
	n += BATCH_LINE_KEEP;
	memcpy(text + n, "\r\n", 2);
	n += 2;
	batch_reader *r;
	assert_int_equal(batch_reader_open(file_with("r2", text, n), &r), IMP_OK);
	free(text);
	const char *line;
	size_t len;
	int trunc;
	assert_int_equal(batch_reader_next(r, &line, &len, &trunc), 1);
	assert_int_equal(len, BATCH_LINE_KEEP);
	assert_true(trunc);
	assert_int_equal(batch_reader_next(r, &line, &len, &trunc), 1);
	assert_int_equal(len, 4);
	assert_false(trunc);
	assert_int_equal(batch_reader_next(r, &line, &len, &trunc), 1);
	assert_int_equal(len, BATCH_LINE_KEEP);
	assert_false(trunc);
	assert_int_equal(batch_reader_offset(r), (int64_t)(big + 6 + BATCH_LINE_KEEP + 2));
	batch_reader_free(&r);
}

/* ---- serial numbers ---- */

static void serial_rules(void **state)
{
	static const struct {
		const char *line;
		int csv;
		batch_line_kind kind;
		const char *serial;
	} v[] = {
		{"SN-1", 0, BATCH_LINE_SERIAL, "SN-1"},
		{"  SN 2\t", 0, BATCH_LINE_SERIAL, "SN 2"},
		{"Gerät-3", 0, BATCH_LINE_SERIAL, "Gerät-3"},
		{"", 0, BATCH_LINE_SKIP, ""},
		{" \t ", 0, BATCH_LINE_SKIP, ""},
		{"a\x01b", 0, BATCH_LINE_BAD, NULL},
		{"\xff\xfe", 0, BATCH_LINE_BAD, NULL},
		{"\xc0\xaf", 0, BATCH_LINE_BAD, NULL},      /* overlong '/' */
		{"\xed\xa0\x80", 0, BATCH_LINE_BAD, NULL},  /* a surrogate */
		{"a,b", 0, BATCH_LINE_SERIAL, "a,b"},
		{"a,b", 1, BATCH_LINE_SERIAL, "a"},
		{" \"q,1\" , x", 1, BATCH_LINE_SERIAL, "q,1"},
		{"\"say \"\"hi\"\"\",x", 1, BATCH_LINE_SERIAL, "say \"hi\""},
		{"\"open,x", 1, BATCH_LINE_BAD, NULL},
		{"\"q\"z,x", 1, BATCH_LINE_BAD, NULL},
		{",x", 1, BATCH_LINE_BAD, NULL},
		{"", 1, BATCH_LINE_SKIP, ""},
	};
	for(size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		char out[BATCH_SERIAL_BUF];
		const char *why;
		batch_line_kind k = batch_line_parse(v[i].line, strlen(v[i].line), 0, v[i].csv, out, &why);
		if(k != v[i].kind) fail_msg("case %zu (%s): kind %d, want %d", i, v[i].line, k, v[i].kind);
		if(v[i].serial) assert_string_equal(out, v[i].serial);
		if(k == BATCH_LINE_BAD) assert_non_null(why);
	}
}

/* 128 characters pass, 129 do not, counted in characters, not bytes. */
static void serial_length(void **state)
{
	char line[1024], out[BATCH_SERIAL_BUF];
	const char *why;
	memset(line, 'a', 129);
	assert_int_equal(batch_line_parse(line, 128, 0, 0, out, &why), BATCH_LINE_SERIAL);
	assert_int_equal(batch_line_parse(line, 129, 0, 0, out, &why), BATCH_LINE_BAD);
	size_t n = 0;
	for(int i = 0; i < 128; i++) n += (size_t)snprintf(line + n, sizeof line - n, "\xe2\x82\xac"); /* € */
	assert_int_equal(batch_line_parse(line, n, 0, 0, out, &why), BATCH_LINE_SERIAL);
	assert_int_equal(strlen(out), 384);
	n += (size_t)snprintf(line + n, sizeof line - n, "\xe2\x82\xac");
	assert_int_equal(batch_line_parse(line, n, 0, 0, out, &why), BATCH_LINE_BAD);
	assert_int_equal(batch_line_parse(line, n, 0, 1, out, &why), BATCH_LINE_BAD);
	/* a cut line is refused, but a CSV line's first column may end before the cut */
	assert_int_equal(batch_line_parse("abc", 3, 1, 0, out, &why), BATCH_LINE_BAD);
	assert_int_equal(batch_line_parse("abc,xx", 6, 1, 1, out, &why), BATCH_LINE_SERIAL);
	assert_int_equal(batch_line_parse("abcxx", 5, 1, 1, out, &why), BATCH_LINE_BAD);
}

/* ---- answers and formats ---- */

static const char ANSWER[] =
	"{\"line\":7,\"device\":{\"id\":\"01a215b9-0000-7000-8000-0000000000d1\",\"accountId\":\"01a215b9-0000-7000-8000-0000000000a1\",\"deviceTemplateId\":\"01a215b9-0000-7000-8000-0000000000f1\",\"organizationId\":null,"
	"\"serialNumber\":\"S\\u00e9 \\\"7\\\"\",\"disabled\":false,\"n\":[1,2.5e3,{\"x\":[]}],"
	"\"channels\":[{\"channelTemplateName\":\"temp\",\"permission\":\"publish\",\"channel\":\"xi/blue/v1/01a215b9-0000-7000-8000-0000000000a1/d/01a215b9-0000-7000-8000-0000000000d1/temp\"},"
	"{\"channelTemplateName\":\"cmd\",\"permission\":\"subscribe\",\"channel\":\"xi/blue/v1/01a215b9-0000-7000-8000-0000000000a1/d/01a215b9-0000-7000-8000-0000000000d1/cmd\"}]},"
	"\"mqttCredential\":{\"id\":\"C1\",\"secret\":\"c2VjcmV0\\/+=\"}}";

static const batch_broker BROKER = {"mqtt.example.com", 8883, 8884};

static void answer_to_jsonl(void **state)
{
	batch_buf out = {.max = 1 << 20};
	char why[200];
	int cut = 0;
	assert_int_equal(batch_answer(ANSWER, strlen(ANSWER), 7, BATCH_JSONL, &BROKER, NULL, NULL, &out, &cut, why, sizeof why),
	                 BATCH_ANSWER_BUNDLE);
	assert_string_equal(out.p,
	                    "{\"deviceId\":\"01a215b9-0000-7000-8000-0000000000d1\",\"serialNumber\":\"S\xc3\xa9 \\\"7\\\"\",\"accountId\":\"01a215b9-0000-7000-8000-0000000000a1\","
	                    "\"deviceTemplateId\":\"01a215b9-0000-7000-8000-0000000000f1\",\"broker\":{\"host\":\"mqtt.example.com\",\"port\":8883,"
	                    "\"certificatePort\":8884},\"mqtt\":{\"clientId\":\"01a215b9-0000-7000-8000-0000000000d1\",\"username\":\"01a215b9-0000-7000-8000-0000000000d1\","
	                    "\"password\":\"c2VjcmV0/+=\"},\"topicPrefix\":\"xi/blue/v1/01a215b9-0000-7000-8000-0000000000a1/d/01a215b9-0000-7000-8000-0000000000d1/\",\"channels\":["
	                    "{\"name\":\"temp\",\"topic\":\"xi/blue/v1/01a215b9-0000-7000-8000-0000000000a1/d/01a215b9-0000-7000-8000-0000000000d1/temp\",\"permission\":\"publish\"},"
	                    "{\"name\":\"cmd\",\"topic\":\"xi/blue/v1/01a215b9-0000-7000-8000-0000000000a1/d/01a215b9-0000-7000-8000-0000000000d1/cmd\",\"permission\":\"subscribe\"}]}\n");
	/* The same device in a minimal answer (Prefer: return=minimal) with the template's
	 * channels: the same bundle. Without them such an answer is broken. */
	static const char MINIMAL[] =
		"{\"line\":7,\"device\":{\"id\":\"01a215b9-0000-7000-8000-0000000000d1\",\"serialNumber\":\"S\\u00e9 \\\"7\\\"\","
		"\"provisioningState\":\"activated\",\"version\":\"2\"},\"mqttCredential\":{\"id\":\"C1\",\"secret\":\"c2VjcmV0\\/+=\"}}";
	char *names[] = {"temp", "cmd"}, *perms[] = {"publish", "subscribe"};
	batch_channels ch = {1, "01a215b9-0000-7000-8000-0000000000a1", "01a215b9-0000-7000-8000-0000000000f1", 2, names, perms};
	batch_buf min = {.max = 1 << 20};
	assert_int_equal(batch_answer(MINIMAL, strlen(MINIMAL), 7, BATCH_JSONL, &BROKER, &ch, NULL, &min, &cut, why, sizeof why),
	                 BATCH_ANSWER_BUNDLE);
	assert_int_equal(min.n, out.n);
	assert_memory_equal(min.p, out.p, out.n);
	/* a full answer is taken as it is, template channels or not */
	min.n = 0;
	assert_int_equal(batch_answer(ANSWER, strlen(ANSWER), 7, BATCH_JSONL, &BROKER, &ch, NULL, &min, &cut, why, sizeof why),
	                 BATCH_ANSWER_BUNDLE);
	assert_int_equal(min.n, out.n);
	assert_memory_equal(min.p, out.p, out.n);
	min.n = 0;
	assert_int_equal(batch_answer(MINIMAL, strlen(MINIMAL), 7, BATCH_JSONL, &BROKER, NULL, NULL, &min, &cut, why, sizeof why),
	                 BATCH_ANSWER_BROKEN);
	ch.ok = 0;
	assert_int_equal(batch_answer(MINIMAL, strlen(MINIMAL), 7, BATCH_JSONL, &BROKER, &ch, NULL, &min, &cut, why, sizeof why),
	                 BATCH_ANSWER_BROKEN);
	assert_int_equal(min.n, 0);
	batch_buf_free(&min);
	/* another line number, or a broken answer, is not taken */
	assert_int_equal(batch_answer(ANSWER, strlen(ANSWER), 8, BATCH_JSONL, &BROKER, NULL, NULL, &out, &cut, why, sizeof why),
	                 BATCH_ANSWER_BROKEN);
	assert_int_equal(batch_answer(ANSWER, strlen(ANSWER) - 1, 7, BATCH_JSONL, &BROKER, NULL, NULL, &out, &cut, why, sizeof why),
	                 BATCH_ANSWER_BROKEN);
	const char *err = "{\"line\":9,\"error\":{\"code\":\"duplicate_serial\",\"message\":\"at line 3\\nalready\"}}";
	assert_int_equal(batch_answer(err, strlen(err), 9, BATCH_JSONL, &BROKER, NULL, NULL, &out, &cut, why, sizeof why),
	                 BATCH_ANSWER_REFUSED);
	assert_string_equal(why, "at line 3 already (duplicate_serial)");
	static const char *const broken[] = {"", "[]", "{\"line\":9,}", "{\"line\":9", "{\"line\":\"9\"}",
	                                     "{\"line\":9,\"device\":{\"id\":\"x\\u0000\"}}", "{\"line\":9} x"};
	for(size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
		assert_int_equal(batch_answer(broken[i], strlen(broken[i]), 9, BATCH_JSONL, &BROKER, NULL, NULL, &out, &cut, why,
		                              sizeof why),
		                 BATCH_ANSWER_BROKEN);
	}
	batch_buf_free(&out);
}

/* The scanner steps eight bytes at a time through strings: a quote, backslash or control
 * character at any place in a serial number, after ASCII or UTF-8, is still found there. */
static void answer_strings_any_offset(void **state)
{
	batch_buf out = {.max = 1 << 20};
	char why[200], ans[512], serial[64], want[128];
	int cut = 0;
	static const char *const lead[] = {"x", "\xe2\x82\xac"};
	for(int l = 0; l < 2; l++) {
		for(int k = 0; k < 20; k++) {
			/* k lead characters, an escaped quote, a backslash escape, then 9 more */
			size_t n = 0;
			serial[0] = '\0';
			for(int i = 0; i < k; i++) n += (size_t)snprintf(serial + n, sizeof serial - n, "%s", l ? "\xe2\x82\xac" : "x");
			snprintf(ans, sizeof ans,
			         "{\"line\":1,\"device\":{\"id\":\"01a215b9-0000-7000-8000-0000000000d1\",\"accountId\":\"01a215b9-0000-7000-8000-0000000000a1\","
			         "\"deviceTemplateId\":\"01a215b9-0000-7000-8000-0000000000f1\",\"serialNumber\":\"%s\\\"q\\\\123456789\",\"channels\":[]},"
			         "\"mqttCredential\":{\"id\":\"C\",\"secret\":\"s\"}}",
			         serial);
			out.n = 0;
			if(batch_answer(ans, strlen(ans), 1, BATCH_JSONL, &BROKER, NULL, NULL, &out, &cut, why, sizeof why) !=
			   BATCH_ANSWER_BUNDLE)
				fail_msg("lead %s x%d: %s: %s", lead[l], k, why, ans);
			snprintf(want, sizeof want, "\"serialNumber\":\"%s\\\"q\\\\123456789\"", serial);
			if(!strstr(out.p, want)) fail_msg("lead %s x%d: %s", lead[l], k, out.p);
			/* a raw control character there instead: refused */
			snprintf(ans, sizeof ans,
			         "{\"line\":1,\"device\":{\"id\":\"01a215b9-0000-7000-8000-0000000000d1\",\"serialNumber\":\"%s\x01"
			         "123456789\"}}",
			         serial);
			assert_int_equal(batch_answer(ans, strlen(ans), 1, BATCH_JSONL, &BROKER, NULL, NULL, &out, &cut, why, sizeof why),
			                 BATCH_ANSWER_BROKEN);
		}
	}
	batch_buf_free(&out);
}

/* batch_plain_run against the byte rule, for every length to 40 and every position of
 * one byte of each kind among plain ones: it stops exactly at the first '"', '\\' or
 * control character (0x00-0x1f), never at 0x20, 0x7f or bytes of UTF-8. */
static void plain_run_matches_bytes(void **state)
{
	static const unsigned char kinds[] = {'"', '\\', 0x00, 0x01, 0x0a, 0x1f, 0x20, 0x7f, 0x80, 0xe2, 0xff, 'a'};
	char buf[48];
	for(size_t n = 0; n <= 40; n++) {
		for(size_t at = 0; at < n; at++) {
			for(size_t k = 0; k < sizeof kinds; k++) {
				memset(buf, 'x', sizeof buf);
				buf[at] = (char)kinds[k];
				size_t want = 0;
				while(want < n && buf[want] != '"' && buf[want] != '\\' && (unsigned char)buf[want] >= 0x20) want++;
				size_t got = batch_plain_run(buf, n);
				if(got != want) fail_msg("length %zu, byte 0x%02x at %zu: %zu, want %zu", n, kinds[k], at, got, want);
			}
		}
	}
}

static void answer_to_csv_and_nvs(void **state)
{
	batch_buf out = {.max = 1 << 20};
	char why[200];
	int cut = 0;
	assert_int_equal(batch_answer(ANSWER, strlen(ANSWER), 7, BATCH_CSV, &BROKER, NULL, NULL, &out, &cut, why, sizeof why),
	                 BATCH_ANSWER_BUNDLE);
	assert_string_equal(out.p, "\"S\xc3\xa9 \"\"7\"\"\",01a215b9-0000-7000-8000-0000000000d1,01a215b9-0000-7000-8000-0000000000a1,01a215b9-0000-7000-8000-0000000000f1,mqtt.example.com,8883,8884,01a215b9-0000-7000-8000-0000000000d1,01a215b9-0000-7000-8000-0000000000d1,c2VjcmV0/+=,,,"
	                           "xi/blue/v1/01a215b9-0000-7000-8000-0000000000a1/d/01a215b9-0000-7000-8000-0000000000d1/,\"[{\"\"name\"\":\"\"temp\"\",\"\"topic\"\":\"\"xi/blue/v1/01a215b9-0000-7000-8000-0000000000a1/d/01a215b9-0000-7000-8000-0000000000d1/"
	                           "temp\"\",\"\"permission\"\":\"\"publish\"\"},{\"\"name\"\":\"\"cmd\"\",\"\"topic\"\":\"\""
	                           "xi/blue/v1/01a215b9-0000-7000-8000-0000000000a1/d/01a215b9-0000-7000-8000-0000000000d1/cmd\"\",\"\"permission\"\":\"\"subscribe\"\"}]\"\n");
	out.n = 0;
	assert_int_equal(batch_answer(ANSWER, strlen(ANSWER), 7, BATCH_NVS, &BROKER, NULL, NULL, &out, &cut, why, sizeof why),
	                 BATCH_ANSWER_BUNDLE);
	assert_string_equal(out.p, "01a215b9-0000-7000-8000-0000000000d1,\"S\xc3\xa9 \"\"7\"\"\",01a215b9-0000-7000-8000-0000000000a1,mqtt.example.com,8883,8884,01a215b9-0000-7000-8000-0000000000d1,01a215b9-0000-7000-8000-0000000000d1,c2VjcmV0/+=,"
	                           "xi/blue/v1/01a215b9-0000-7000-8000-0000000000a1/d/01a215b9-0000-7000-8000-0000000000d1/,temp=publish;cmd=subscribe\n");
	assert_false(cut);
	/* the header names the config's keys in order, each at most 15 characters */
	for(int cert = 0; cert < 2; cert++) {
		char keys[512];
		size_t kn = 0;
		const char *p = strchr(batch_nvs_config(cert), '\n') + 1;
		while(*p) {
			size_t k = strcspn(p, ",");
			assert_true(k >= 1 && k <= 15);
			kn += (size_t)snprintf(keys + kn, sizeof keys - kn, "%s%.*s", kn ? "," : "", (int)k, p);
			p = strchr(p, '\n') + 1;
		}
		snprintf(keys + kn, sizeof keys - kn, "\n");
		assert_string_equal(keys, batch_header(BATCH_NVS, cert));
	}
	batch_buf_free(&out);
}

static void certificate_bundle(void **state)
{
	const char *ans = "{\"line\":1,\"device\":{\"id\":\"01a215b9-0000-7000-8000-0000000000d2\",\"accountId\":\"01a215b9-0000-7000-8000-0000000000a2\",\"deviceTemplateId\":\"01a215b9-0000-7000-8000-0000000000f2\","
	                  "\"serialNumber\":\"S\",\"channels\":[]},\"mqttCredential\":{\"certificate\":"
	                  "\"-----BEGIN CERTIFICATE-----\\nQUJD\\nREVG\\n-----END CERTIFICATE-----\\n\"}}";
	const char *key = "-----BEGIN PRIVATE KEY-----\nS0VZ\n-----END PRIVATE KEY-----\n";
	batch_buf out = {.max = 1 << 20};
	char why[200];
	int cut = 0;
	assert_int_equal(batch_answer(ans, strlen(ans), 1, BATCH_NVS, &BROKER, NULL, key, &out, &cut, why, sizeof why),
	                 BATCH_ANSWER_BUNDLE);
	assert_string_equal(out.p, "01a215b9-0000-7000-8000-0000000000d2,S,01a215b9-0000-7000-8000-0000000000a2,mqtt.example.com,8883,8884,01a215b9-0000-7000-8000-0000000000d2,01a215b9-0000-7000-8000-0000000000d2,QUJDREVG,S0VZ,xi/blue/v1/01a215b9-0000-7000-8000-0000000000a2/d/01a215b9-0000-7000-8000-0000000000d2/,\n");
	out.n = 0;
	assert_int_equal(batch_answer(ans, strlen(ans), 1, BATCH_JSONL, &BROKER, NULL, key, &out, &cut, why, sizeof why),
	                 BATCH_ANSWER_BUNDLE);
	assert_non_null(strstr(out.p, "\"mqtt\":{\"clientId\":\"01a215b9-0000-7000-8000-0000000000d2\",\"username\":\"01a215b9-0000-7000-8000-0000000000d2\"},\"certificate\":\"-----BEGIN "
	                              "CERTIFICATE-----\\nQUJD\\nREVG\\n-----END CERTIFICATE-----\\n\",\"privateKey\""));
	/* a password answer for a certificate batch is broken */
	assert_int_equal(batch_answer(ANSWER, strlen(ANSWER), 7, BATCH_JSONL, &BROKER, NULL, key, &out, &cut, why, sizeof why),
	                 BATCH_ANSWER_BROKEN);
	batch_buf_free(&out);
}

static void key_pair_and_csr(void **state)
{
	char *key, *csr;
	assert_int_equal(batch_keypair_csr("SN-1", &key, &csr), IMP_OK);
	assert_non_null(strstr(key, "-----BEGIN PRIVATE KEY-----"));
	assert_non_null(strstr(csr, "-----BEGIN CERTIFICATE REQUEST-----"));
	free(key);
	free(csr);
}

static void dir_file_names(void **state)
{
	char out[256];
	batch_file_name("SN-1_a.b", "D", out);
	assert_string_equal(out, "SN-1_a.b.json");
	batch_file_name("../x/y", "D", out);
	assert_string_equal(out, "%2E.%2Fx%2Fy.json");
	batch_file_name("a%b c", "D", out);
	assert_string_equal(out, "a%25b%20c.json");
	char long_serial[129];
	memset(long_serial, '/', 128);
	long_serial[128] = '\0';
	batch_file_name(long_serial, "01a2-dev", out);
	assert_string_equal(out, "01a2-dev.json");
}

static void buffer_cap(void **state)
{
	batch_buf b = {.max = 8};
	assert_int_equal(batch_buf_str(&b, "12345678"), IMP_OK);
	assert_int_equal(batch_buf_str(&b, "9"), IMP_ERR_TOO_LARGE);
	assert_string_equal(b.p, "12345678");
	batch_buf_free(&b);
}

/* ---- the state file ---- */

static void state_round_trip(void **state)
{
	char p[200];
	snprintf(p, sizeof p, "%s/out.state", tmp);
	batch_state st = {.name = "batch-1", .template_id = "T", .format = "csv", .lines = 12, .input_offset = 345,
	                  .output_bytes = 6789, .ok = 10, .failed = 2};
	batch_state back;
	assert_int_equal(batch_state_load(p, &back), IMP_ERR_NOT_FOUND);
	assert_int_equal(batch_state_save(p, &st), IMP_OK);
	assert_int_equal(batch_state_load(p, &back), IMP_OK);
	assert_memory_equal(&st, &back, sizeof st);
	char tmpfile[220];
	snprintf(tmpfile, sizeof tmpfile, "%s.tmp", p);
	assert_int_not_equal(access(tmpfile, F_OK), 0);
	static const char *const bad[] = {"", "{}", "{\"version\":2}", "not json",
	                                  "{\"version\":1,\"name\":\"n\",\"template\":\"t\",\"format\":\"csv\",\"lines\":-1,"
	                                  "\"inputOffset\":0,\"outputBytes\":0,\"ok\":0,\"failed\":0}"};
	for(size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		file_with("out.state", bad[i], strlen(bad[i]));
		assert_int_equal(batch_state_load(p, &back), IMP_ERR_IO);
	}
}

/* The syncer saves each state handed to it, in order, once the output is synced; a state it
 * cannot save makes every later hand-over and wait fail, and it still stops. */
static void syncer_states(void **state)
{
	char out[200], p[200], bad[220];
	snprintf(out, sizeof out, "%s/out.jsonl", tmp);
	snprintf(p, sizeof p, "%s/sync.state", tmp);
	snprintf(bad, sizeof bad, "%s/no-such-dir/sync.state", tmp);
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	batch_syncer *s;
	assert_int_equal(batch_syncer_start(fd, 0, out, p, &s), IMP_OK);
	batch_state st = {.name = "b", .template_id = "T", .format = "jsonl"};
	for(int i = 1; i <= 50; i++) {
		assert_int_equal(write(fd, "0123456789\n", 11), 11);
		st.lines = i;
		st.output_bytes = 11 * i;
		st.ok = i;
		assert_int_equal(batch_syncer_push(s, &st), 0);
	}
	assert_int_equal(batch_syncer_wait(s), 0);
	batch_state back;
	assert_int_equal(batch_state_load(p, &back), IMP_OK);
	assert_memory_equal(&st, &back, sizeof st);
	batch_syncer_stop(&s);
	assert_null(s);

	assert_int_equal(batch_syncer_start(fd, 0, out, bad, &s), IMP_OK);
	assert_int_equal(batch_syncer_push(s, &st), 0); /* taken; its save fails later */
	assert_int_equal(batch_syncer_wait(s), -1);
	assert_int_equal(batch_syncer_push(s, &st), -1);
	assert_int_equal(batch_syncer_wait(s), -1);
	batch_syncer_stop(&s);
	assert_null(s);
	batch_syncer_stop(&s); /* a stopped one: nothing */
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reader_lines_and_offsets), cmocka_unit_test(reader_long_lines),
		cmocka_unit_test(serial_rules),             cmocka_unit_test(serial_length),
		cmocka_unit_test(answer_to_jsonl),          cmocka_unit_test(answer_strings_any_offset),
		cmocka_unit_test(plain_run_matches_bytes),
		cmocka_unit_test(answer_to_csv_and_nvs),
		cmocka_unit_test(certificate_bundle),       cmocka_unit_test(key_pair_and_csr),
		cmocka_unit_test(dir_file_names),           cmocka_unit_test(buffer_cap),
		cmocka_unit_test(state_round_trip),         cmocka_unit_test(syncer_states),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
