#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int h_run(char *out, size_t cap, const char *const *args)
{
	int pipefd[2];
	if(pipe(pipefd)) return -1;
	pid_t pid = fork();
	if(pid < 0) return -1;
	if(pid == 0) {
		dup2(pipefd[1], 1);
		close(pipefd[0]);
		close(pipefd[1]);
		execv(IMP_BIN, (char *const *)args);
		_exit(127);
	}
	close(pipefd[1]);
	size_t n = 0;
	ssize_t got;
	while((got = read(pipefd[0], out + n, cap - 1 - n)) > 0) {
		n += (size_t)got;
		if(n >= cap - 1) break;
	}
	out[n] = '\0';
	close(pipefd[0]);
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int parse_account(const char *text, h_account *a)
{
	json_t *o = json_loads(text, 0, NULL);
	if(!o) return -1;
	const char *id = json_string_value(json_object_get(o, "accountId"));
	const char *email = json_string_value(json_object_get(o, "email"));
	const char *pw = json_string_value(json_object_get(o, "password"));
	const char *key = json_string_value(json_object_get(o, "apiKey"));
	int rc = id && email && pw && key ? 0 : -1;
	if(!rc) {
		snprintf(a->account_id, sizeof a->account_id, "%s", id);
		snprintf(a->email, sizeof a->email, "%s", email);
		snprintf(a->password, sizeof a->password, "%s", pw);
		snprintf(a->api_key, sizeof a->api_key, "%s", key);
	}
	json_decref(o);
	return rc;
}

static int spawn(h_server *s)
{
	int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	if(fd < 0) return -1;
	off_t start = lseek(fd, 0, SEEK_END);
	pid_t pid = fork();
	if(pid < 0) return -1;
	if(pid == 0) {
		dup2(fd, 2);
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		const char *argv[6 + 16 + 1] = {IMP_BIN, "serve", "--data", s->data, "--listen", "127.0.0.1:0"};
		for(int i = 0; i < s->nargs; i++) argv[6 + i] = s->args[i];
		argv[6 + s->nargs] = NULL;
		execv(IMP_BIN, (char *const *)argv);
		_exit(127);
	}
	close(fd);
	s->pid = pid;
	/* Wait for "listening on http://127.0.0.1:PORT" in the new part of the log. */
	for(int i = 0; i < 1500; i++) {
		FILE *f = fopen(s->log, "r");
		if(f) {
			char line[512];
			fseek(f, start, SEEK_SET);
			while(fgets(line, sizeof line, f)) {
				const char *p = strstr(line, "listening on ");
				if(p) {
					snprintf(s->url, sizeof s->url, "%s", p + strlen("listening on "));
					s->url[strcspn(s->url, "\n")] = '\0';
					fclose(f);
					return 0;
				}
			}
			fclose(f);
		}
		int st;
		if(waitpid(pid, &st, WNOHANG) == pid) {
			s->pid = 0;
			s->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
			return -1;
		}
		usleep(10000);
	}
	return -1;
}

int h_server_start(h_server *s) { return h_server_start_args(s, NULL); }

int h_server_start_args(h_server *s, const char *const *serve_args)
{
	static const char *const no_broker[] = {"--no-broker", NULL};
	memset(s, 0, sizeof *s);
	for(const char *const *a = serve_args ? serve_args : no_broker; *a && s->nargs < 16; a++)
		snprintf(s->args[s->nargs++], sizeof s->args[0], "%s", *a);
	snprintf(s->data, sizeof s->data, "/tmp/imprint-test-XXXXXX");
	if(!mkdtemp(s->data)) return -1;
	snprintf(s->log, sizeof s->log, "%s.log", s->data);
	char out[4096];
	const char *const args[] = {IMP_BIN, "init", "--data", s->data, "--json", NULL};
	if(h_run(out, sizeof out, args) != 0) return -1;
	if(parse_account(out, &s->admin)) return -1;
	return spawn(s);
}

int h_server_restart(h_server *s) { return spawn(s); }

int h_server_stop(h_server *s)
{
	if(s->pid <= 0) return -1;
	kill(s->pid, SIGTERM);
	int st = 0;
	for(int i = 0; i < 2000; i++) {
		if(waitpid(s->pid, &st, WNOHANG) == s->pid) {
			s->pid = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		}
		usleep(10000);
	}
	kill(s->pid, SIGKILL);
	waitpid(s->pid, &st, 0);
	s->pid = 0;
	return -1;
}

void h_server_kill(h_server *s)
{
	if(s->pid <= 0) return;
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
}

void h_server_destroy(h_server *s)
{
	if(s->pid > 0) h_server_stop(s);
	char cmd[600];
	if(s->data[0] && strncmp(s->data, "/tmp/imprint-test-", 18) == 0) {
		snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", s->data, s->log);
		if(system(cmd) != 0) fprintf(stderr, "harness: could not remove %s\n", s->data);
	}
}

int h_account_create(h_server *s, h_account *out)
{
	char buf[4096];
	const char *const args[] = {IMP_BIN, "account", "create", "--data", s->data, "--json", NULL};
	if(h_run(buf, sizeof buf, args) != 0) return -1;
	return parse_account(buf, out);
}

struct buf {
	char *p;
	size_t n;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t n = size * nmemb;
	char *np = realloc(b->p, b->n + n + 1);
	if(!np) return 0;
	memcpy(np + b->n, data, n);
	b->p = np;
	b->n += n;
	b->p[b->n] = '\0';
	return n;
}

static void header_value(const char *line, size_t n, const char *name, char *out, size_t cap)
{
	size_t ln = strlen(name);
	if(n <= ln + 1 || strncasecmp(line, name, ln) != 0 || line[ln] != ':') return;
	const char *v = line + ln + 1;
	while(*v == ' ') v++;
	size_t vn = n - (size_t)(v - line);
	while(vn && (v[vn - 1] == '\r' || v[vn - 1] == '\n')) vn--;
	if(vn >= cap) vn = cap - 1;
	memcpy(out, v, vn);
	out[vn] = '\0';
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	h_resp *r = arg;
	size_t n = size * nmemb;
	header_value(data, n, "Etag", r->etag, sizeof r->etag);
	header_value(data, n, "Retry-After", r->retry_after, sizeof r->retry_after);
	header_value(data, n, "Content-Type", r->content_type, sizeof r->content_type);
	return n;
}

static __thread CURL *curl;

h_resp h_call_raw(h_server *s, const char *method, const char *path, const char *token, const char *body, size_t len,
                  const char *extra)
{
	h_resp r = {0};
	struct buf b = {NULL, 0};
	char url[2048], auth[1024];
	if(!curl) curl = curl_easy_init();
	curl_easy_reset(curl);
	snprintf(url, sizeof url, "%s%s", s->url, path);
	struct curl_slist *hdr = NULL;
	if(token) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
		hdr = curl_slist_append(hdr, auth);
	}
	if(body) hdr = curl_slist_append(hdr, "Content-Type: application/json");
	hdr = curl_slist_append(hdr, "Expect:");
	if(extra) hdr = curl_slist_append(hdr, extra);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
	if(body) {
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	if(strcmp(method, "HEAD") == 0) curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
	CURLcode rc = curl_easy_perform(curl);
	curl_slist_free_all(hdr);
	if(rc != CURLE_OK) {
		r.status = -1;
	} else {
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
	}
	r.body = b.p ? b.p : calloc(1, 1);
	r.len = b.n;
	r.json = json_loadb(r.body, r.len, 0, NULL);
	return r;
}

h_resp h_call(h_server *s, const char *method, const char *path, const char *token, const char *body, const char *extra)
{
	return h_call_raw(s, method, path, token, body, body ? strlen(body) : 0, extra);
}

void h_thread_done(void)
{
	if(curl) curl_easy_cleanup(curl);
	curl = NULL;
}

void h_resp_free(h_resp *r)
{
	free(r->body);
	json_decref(r->json);
	r->body = NULL;
	r->json = NULL;
}

json_t *h_at(json_t *root, const char *path)
{
	char key[128];
	json_t *cur = root;
	while(cur && *path) {
		size_t n = strcspn(path, ".");
		if(n >= sizeof key) return NULL;
		memcpy(key, path, n);
		key[n] = '\0';
		if(json_is_array(cur)) {
			char *end;
			long i = strtol(key, &end, 10);
			cur = *end ? NULL : json_array_get(cur, (size_t)i);
		} else {
			cur = json_object_get(cur, key);
		}
		path += n;
		if(*path == '.') path++;
	}
	return cur;
}

const char *h_str(const h_resp *r, const char *path) { return json_string_value(h_at(r->json, path)); }

int h_create(h_server *s, const char *token, const char *path, const char *body, const char *id_path, char *out, size_t cap)
{
	h_resp r = h_call(s, "POST", path, token, body, NULL);
	int rc = -1;
	const char *id = h_str(&r, id_path);
	if(r.status == 201 && id) {
		snprintf(out, cap, "%s", id);
		rc = 0;
	} else {
		fprintf(stderr, "h_create %s: %ld %s\n", path, r.status, r.body);
	}
	h_resp_free(&r);
	return rc;
}

int h_login(h_server *s, const h_account *a, char *out, size_t cap)
{
	json_t *b = json_pack("{s:s, s:s}", "emailAddress", a->email, "password", a->password);
	char *text = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	h_resp r = h_call(s, "POST", "/api/v1/auth/login-user", NULL, text, NULL);
	free(text);
	int rc = -1;
	if(r.status == 200 && h_str(&r, "jwt")) {
		snprintf(out, cap, "%s", h_str(&r, "jwt"));
		rc = 0;
	}
	h_resp_free(&r);
	return rc;
}

/* Occurrences of needle in the server's log. */
static int log_count(h_server *s, const char *needle)
{
	FILE *f = fopen(s->log, "r");
	if(!f) return 0;
	char line[4096];
	int n = 0;
	while(fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

int h_log_sync(h_server *s)
{
	const char *mark = "GET /healthz 200 ";
	int before = log_count(s, mark);
	h_resp r = h_call(s, "GET", "/healthz", NULL, NULL, NULL);
	long status = r.status;
	h_resp_free(&r);
	if(status != 200) return -1;
	for(int waited = 0; waited < 5000; waited += 5) {
		if(log_count(s, mark) > before) return 0;
		usleep(5000);
	}
	return -1;
}

int h_log_contains(h_server *s, const char *needle)
{
	FILE *f = fopen(s->log, "r");
	if(!f) return 0;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *text = malloc((size_t)n + 1);
	size_t got = text ? fread(text, 1, (size_t)n, f) : 0;
	fclose(f);
	if(!text) return 0;
	text[got] = '\0';
	int found = strstr(text, needle) != NULL;
	free(text);
	return found;
}

unsigned h_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t n = sizeof a;
	unsigned port = 0;
	if(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &n) == 0)
		port = ntohs(a.sin_port);
	if(fd >= 0) close(fd);
	return port;
}
