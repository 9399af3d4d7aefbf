/* The broker's configuration: options checked, mosquitto and the plugin found, the TLS
 * files and the client-certificate trust directory prepared, DATA/broker/mosquitto.conf
 * written. Regenerated at every start, so the options of `imprint serve` are the one place
 * the broker is configured. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/broker.h"
#include "core/capath.h"
#include "core/files.h"
#include "core/mem.h"
#include "core/servertls.h"
#include "core/x509.h"

#define PATH_CAP 4096
#define CONF_CAP (16 * 1024)

typedef struct {
	int on;
	char host[256];
	unsigned port;
} listen_addr;

/* "HOST:PORT", "[IPv6]:PORT" or "off". */
static imp_err parse_listen(const char *flag, const char *text, listen_addr *a)
{
	memset(a, 0, sizeof *a);
	if(strcmp(text, "off") == 0) return IMP_OK;
	const char *colon = strrchr(text, ':');
	const char *host = text;
	size_t hlen = colon ? (size_t)(colon - text) : 0;
	if(hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
		host++;
		hlen -= 2;
	}
	char *end = NULL;
	unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
	int ok = colon && hlen > 0 && hlen < sizeof a->host && end && !*end && colon[1] && port >= 1 && port <= 65535;
	for(size_t i = 0; ok && i < hlen; i++)
		ok = host[i] > ' ' && host[i] != '#' && host[i] != 0x7f;
	if(!ok) {
		fprintf(stderr, "imprint serve: %s %s: expected HOST:PORT (port 1-65535) or off\n", flag, text);
		return IMP_ERR_INVALID;
	}
	memcpy(a->host, host, hlen);
	a->host[hlen] = '\0';
	a->port = (unsigned)port;
	a->on = 1;
	return IMP_OK;
}

static int is_loopback(const char *host)
{
	unsigned char ip[16];
	if(strcmp(host, "localhost") == 0) return 1;
	if(inet_pton(AF_INET, host, ip) == 1) return ip[0] == 127;
	if(inet_pton(AF_INET6, host, ip) == 1) return memcmp(ip, in6addr_loopback.s6_addr, 16) == 0;
	return 0;
}

/* mosquitto's configuration reader splits values at spaces and knows no quoting. */
static imp_err conf_safe(const char *what, const char *path)
{
	for(const char *p = path; *p; p++) {
		if((unsigned char)*p <= ' ' || *p == 0x7f) {
			fprintf(stderr, "imprint serve: %s %s holds a space or control character, which mosquitto's "
			                "configuration cannot express; use a path without one\n",
			        what, path);
			return IMP_ERR_INVALID;
		}
	}
	return IMP_OK;
}

static int executable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

static imp_err find_mosquitto(const char *given, char *out, size_t cap)
{
	if(given) {
		if(executable(given)) {
			snprintf(out, cap, "%s", given);
			return IMP_OK;
		}
		fprintf(stderr, "imprint serve: --mosquitto %s is not an executable file\n", given);
		return IMP_ERR_INVALID;
	}
	const char *path = getenv("PATH");
	while(path && *path) {
		size_t n = strcspn(path, ":");
		if(n > 0 && n < cap - 16) {
			snprintf(out, cap, "%.*s/mosquitto", (int)n, path);
			if(executable(out)) return IMP_OK;
		}
		path += n;
		if(*path == ':') path++;
	}
	snprintf(out, cap, "/usr/sbin/mosquitto");
	if(executable(out)) return IMP_OK;
	fprintf(stderr, "imprint serve: mosquitto is not installed (apt-get install mosquitto, or point --mosquitto at "
	                "it); --no-broker serves the API alone\n");
	return IMP_ERR_INVALID;
}

/* The plugin beside the running binary, unless given. *found is 0 when it is not there. */
static imp_err find_plugin(const char *given, char *out, size_t cap, int *found)
{
	if(given) {
		if(!realpath(given, out)) snprintf(out, cap, "%s", given);
	} else {
		char self[PATH_CAP];
		ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
		if(n <= 0) return IMP_ERR_IO;
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if(slash) *slash = '\0';
		snprintf(out, cap, "%s/%s", self, IMP_BROKER_PLUGIN);
	}
	struct stat st;
	*found = stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, R_OK) == 0;
	return IMP_OK;
}

/* Every account's device CA (DATA/ca/<accountId>.crt) into the capath. One that fails is
 * reported and skipped: its devices cannot connect by certificate, the rest can. */
static void capath_fill(const char *data)
{
	char dir[PATH_CAP], path[PATH_CAP + 300];
	int len = snprintf(dir, sizeof dir, "%s/ca", data);
	if(len < 0 || (size_t)len >= sizeof dir) return;
	DIR *d = opendir(dir);
	if(!d) return;
	struct dirent *e;
	while((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if(n < 5 || strcmp(e->d_name + n - 4, ".crt") != 0) continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		char *pem = NULL;
		imp_err rc = imp_file_read(path, IMP_PEM_MAX, &pem);
		if(!rc) rc = imp_broker_capath_add(data, pem);
		if(rc) fprintf(stderr, "imprint: could not add %s to the broker's trust directory (%s)\n", path, imp_err_name(rc));
		imp_free(pem);
	}
	closedir(d);
}

/* The server certificate and key: the operator's, or DATA/tls made or renewed now. */
static imp_err tls_files(const imp_broker_opts *o, const char *data, char *crt, char *key, size_t cap)
{
	if(!o->tls_cert != !o->tls_key) {
		fprintf(stderr, "imprint serve: --tls-cert and --tls-key go together\n");
		return IMP_ERR_INVALID;
	}
	if(o->tls_cert) {
		const char *files[2] = {o->tls_cert, o->tls_key};
		char *outs[2] = {crt, key};
		for(int i = 0; i < 2; i++) {
			if(!realpath(files[i], outs[i]) || access(outs[i], R_OK) != 0) {
				fprintf(stderr, "imprint serve: cannot read %s: %s\n", files[i], strerror(errno));
				return IMP_ERR_INVALID;
			}
		}
		return IMP_OK;
	}
	int renewed = 0;
	imp_err rc = imp_server_tls_ensure(data, &renewed);
	if(rc) {
		fprintf(stderr, "imprint serve: cannot make the broker's TLS certificate in %s/%s (%s)\n", data, IMP_TLS_DIR,
		        imp_err_name(rc));
		return rc;
	}
	if(renewed) fprintf(stderr, "imprint: wrote the broker's TLS certificate %s/%s\n", data, IMP_TLS_SERVER_CRT);
	snprintf(crt, cap, "%s/%s", data, IMP_TLS_SERVER_CRT);
	snprintf(key, cap, "%s/%s", data, IMP_TLS_SERVER_KEY);
	return IMP_OK;
}

typedef struct {
	char *p;
	size_t n, cap;
	int full;
} text;

__attribute__((format(printf, 2, 3))) static void put(text *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int w = t->full ? -1 : vsnprintf(t->p + t->n, t->cap - t->n, fmt, ap);
	va_end(ap);
	if(w < 0 || (size_t)w >= t->cap - t->n) t->full = 1;
	else t->n += (size_t)w;
}

typedef struct {
	const char *data, *plugin, *crt, *key, *capath;
} conf_files;

enum { PLAIN, TLS, TLS_CERT };

static void listener(text *t, const listen_addr *a, int kind, const conf_files *f)
{
	if(!a->on) return;
	put(t, "\nlistener %u %s\n", a->port, a->host);
	if(kind != PLAIN) {
		put(t, "certfile %s\nkeyfile %s\ntls_version tlsv1.2\n", f->crt, f->key);
	}
	if(kind == TLS_CERT) {
		put(t, "require_certificate true\nuse_identity_as_username true\ncapath %s\n", f->capath);
	}
	if(f->plugin) put(t, "allow_anonymous false\nplugin %s\nplugin_opt_data %s\n", f->plugin, f->data);
	else put(t, "# --broker-insecure-no-plugin: every client is accepted\nallow_anonymous true\n");
}

static void port_line(broker__plan *plan, const char *scheme, const listen_addr *a, const char *what)
{
	size_t n = strlen(plan->ports);
	if(!a->on) return;
	int v6 = strchr(a->host, ':') != NULL;
	snprintf(plan->ports + n, sizeof plan->ports - n, "%s%s://%s%s%s:%u (%s)", n ? ", " : "", scheme, v6 ? "[" : "",
	         a->host, v6 ? "]" : "", a->port, what);
}

imp_err broker__prepare(const imp_broker_opts *o, broker__plan *plan)
{
	listen_addr plain, tls, tls_cert;
	char data[PATH_CAP], plugin[PATH_CAP + 64], crt[PATH_CAP + 64], key[PATH_CAP + 64], capath[PATH_CAP + 32], dir[PATH_CAP + 16];
	imp_err rc;
	memset(plan, 0, sizeof *plan);
	if((rc = parse_listen("--mqtt-listen", o->mqtt_listen, &plain)) ||
	   (rc = parse_listen("--mqtts-listen", o->mqtts_listen, &tls)) ||
	   (rc = parse_listen("--mqtts-cert-listen", o->mqtts_cert_listen, &tls_cert)))
		return rc;
	if(!plain.on && !tls.on && !tls_cert.on) {
		fprintf(stderr, "imprint serve: every MQTT listener is off; use --no-broker to run without the broker\n");
		return IMP_ERR_INVALID;
	}
	if(plain.on && !is_loopback(plain.host) && !o->mqtt_insecure) {
		fprintf(stderr,
		        "imprint serve: --mqtt-listen %s: plain MQTT sends device secrets in clear, so it listens only on "
		        "loopback (127.0.0.1, ::1, localhost); devices elsewhere use TLS (--mqtts-listen). "
		        "--mqtt-insecure allows it anyway\n",
		        o->mqtt_listen);
		return IMP_ERR_INVALID;
	}
	if(!realpath(o->data_dir, data)) {
		fprintf(stderr, "imprint serve: %s: %s\n", o->data_dir, strerror(errno));
		return IMP_ERR_IO;
	}
	if((rc = conf_safe("the data directory", data))) return rc;
	if((rc = find_mosquitto(o->mosquitto, plan->mosquitto, sizeof plan->mosquitto))) return rc;

	int have_plugin = 0;
	if((rc = find_plugin(o->plugin, plugin, sizeof plugin, &have_plugin))) return rc;
	if(!have_plugin && !o->insecure_no_plugin) {
		fprintf(stderr,
		        "imprint serve: the broker plugin %s is not there, and without it the broker cannot tell devices "
		        "apart. Build it (cmake --build build --target imprint_mosquitto) or point --broker-plugin at "
		        "it; --no-broker serves the API alone; --broker-insecure-no-plugin runs a development broker "
		        "that accepts every client on loopback\n",
		        plugin);
		return IMP_ERR_INVALID;
	}
	if(have_plugin && (rc = conf_safe("the plugin", plugin))) return rc;
	if(!have_plugin) {
		const listen_addr *all[3] = {&plain, &tls, &tls_cert};
		for(int i = 0; i < 3; i++) {
			if(all[i]->on && !is_loopback(all[i]->host)) {
				fprintf(stderr, "imprint serve: --broker-insecure-no-plugin accepts every client, so every MQTT "
				                "listener must be on loopback (%s is not)\n",
				        all[i]->host);
				return IMP_ERR_INVALID;
			}
		}
		fprintf(stderr, "imprint: WARNING: the broker runs without its plugin (--broker-insecure-no-plugin): "
		                "every client is accepted and may use every topic\n");
	}

	if((tls.on || tls_cert.on) && (rc = tls_files(o, data, crt, key, sizeof crt))) return rc;
	if((tls.on || tls_cert.on) && ((rc = conf_safe("the TLS certificate", crt)) || (rc = conf_safe("the TLS key", key))))
		return rc;
	snprintf(dir, sizeof dir, "%s/broker", data);
	snprintf(capath, sizeof capath, "%s/%s", data, IMP_CAPATH_DIR);
	if((mkdir(dir, 0700) != 0 && errno != EEXIST) || (mkdir(capath, 0700) != 0 && errno != EEXIST)) {
		fprintf(stderr, "imprint serve: cannot create %s: %s\n", capath, strerror(errno));
		return IMP_ERR_IO;
	}
	capath_fill(data);

	/* mosquitto started as root changes to the user "mosquitto", which cannot read the
	 * data directory (0700): keep it as the user imprint runs as. */
	struct passwd *pw = getpwuid(geteuid());
	conf_files f = {data, have_plugin ? plugin : NULL, crt, key, capath};
	char *buf = imp_malloc(CONF_CAP);
	if(!buf) return IMP_ERR_NOMEM;
	text t = {buf, 0, CONF_CAP, 0};
	put(&t, "# Written by imprint serve at every start from its options: edits here are lost.\n"
	        "per_listener_settings true\npersistence false\n"
	        "log_dest stderr\nlog_timestamp false\n"
	        "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n");
	if(pw && pw->pw_name && !conf_safe("the user name", pw->pw_name)) put(&t, "user %s\n", pw->pw_name);
	listener(&t, &plain, PLAIN, &f);
	listener(&t, &tls, TLS, &f);
	listener(&t, &tls_cert, TLS_CERT, &f);
	snprintf(plan->conf, sizeof plan->conf, "%s/%s", data, IMP_BROKER_CONF);
	rc = t.full ? IMP_ERR_INVALID : imp_file_write_atomic(plan->conf, buf, 0600);
	imp_free(buf);
	if(rc) {
		fprintf(stderr, "imprint serve: cannot write %s (%s)\n", plan->conf, imp_err_name(rc));
		return rc;
	}
	port_line(plan, "mqtt", &plain, "plain");
	port_line(plan, "mqtts", &tls, "TLS");
	port_line(plan, "mqtts", &tls_cert, "TLS, client certificates");
	return IMP_OK;
}
