#include "core/servertls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/files.h"
#include "core/mem.h"
#include "core/timeutil.h"
#include "core/x509.h"

#define PATH_CAP 4096

typedef struct {
	char dir[PATH_CAP], ca_crt[PATH_CAP], ca_key[PATH_CAP], crt[PATH_CAP], key[PATH_CAP];
} tls_paths;

static imp_err paths_of(const char *data_dir, tls_paths *p)
{
	int w[5] = {
	    snprintf(p->dir, PATH_CAP, "%s/%s", data_dir, IMP_TLS_DIR),
	    snprintf(p->ca_crt, PATH_CAP, "%s/%s", data_dir, IMP_TLS_CA_CRT),
	    snprintf(p->ca_key, PATH_CAP, "%s/%s/ca.key", data_dir, IMP_TLS_DIR),
	    snprintf(p->crt, PATH_CAP, "%s/%s", data_dir, IMP_TLS_SERVER_CRT),
	    snprintf(p->key, PATH_CAP, "%s/%s", data_dir, IMP_TLS_SERVER_KEY),
	};
	for(int i = 0; i < 5; i++) /* + 4: room for the ".tmp" of imp_file_write_atomic */
		if(w[i] < 0 || (size_t)w[i] + 4 >= PATH_CAP) return IMP_ERR_IO;
	return IMP_OK;
}

/* Key first, each rename made durable before the next, so a certificate is never there
 * without its key. */
static imp_err write_pair(int dir_fd, const char *crt_path, const char *crt, const char *key_path, const char *key)
{
	imp_err rc = imp_file_write_atomic(key_path, key, 0600);
	if(!rc && fsync(dir_fd) != 0) rc = IMP_ERR_IO;
	if(!rc) rc = imp_file_write_atomic(crt_path, crt, 0644);
	if(!rc && fsync(dir_fd) != 0) rc = IMP_ERR_IO;
	return rc;
}

static imp_err ca_locked(const tls_paths *p, int dir_fd)
{
	char *cert = NULL, *key = NULL;
	if(access(p->ca_crt, F_OK) == 0) return access(p->ca_key, F_OK) == 0 ? IMP_OK : IMP_ERR_IO;
	if(errno != ENOENT) return IMP_ERR_IO;
	imp_err rc = imp_ca_create("imprint server CA", IMP_TLS_CA_DAYS, &cert, &key);
	if(!rc) rc = write_pair(dir_fd, p->ca_crt, cert, p->ca_key, key);
	imp_free(cert);
	imp_key_pem_free(&key);
	return rc;
}

/* 1 when the server certificate and its key are there and it is good for longer than
 * IMP_TLS_RENEW_DAYS; 0 when it must be made. */
static int server_current(const tls_paths *p)
{
	char *pem = NULL;
	imp_cert_info info;
	if(access(p->key, F_OK) != 0 || imp_file_read(p->crt, IMP_PEM_MAX, &pem)) return 0;
	int ok = imp_cert_parse(pem, strlen(pem), &info, NULL, 0) == IMP_OK &&
	         info.not_after_ms > imp_now_ms() + (uint64_t)IMP_TLS_RENEW_DAYS * 86400000u;
	imp_free(pem);
	return ok;
}

static imp_err server_locked(const tls_paths *p, int dir_fd, int *renewed)
{
	char *ca_crt = NULL, *ca_key = NULL, *crt = NULL, *key = NULL, host[256] = "";
	if(server_current(p)) return IMP_OK;
	const char *names[4] = {"localhost", "127.0.0.1", "::1", NULL};
	size_t n = 3;
	/* The host name too, when it is one a certificate can hold (gethostname may truncate
	 * without a NUL). */
	if(gethostname(host, sizeof host - 1) == 0 && host[0] && strcmp(host, "localhost") != 0) names[n++] = host;
	imp_err rc = imp_file_read(p->ca_crt, IMP_PEM_MAX, &ca_crt);
	if(!rc) rc = imp_file_read(p->ca_key, IMP_PEM_MAX, &ca_key);
	if(rc == IMP_ERR_NOT_FOUND) rc = IMP_ERR_IO;
	if(!rc) {
		rc = imp_server_cert_create(ca_crt, ca_key, names, n, IMP_TLS_SERVER_DAYS, &crt, &key);
		if(rc == IMP_ERR_INVALID && n == 4) /* a host name no certificate can hold */
			rc = imp_server_cert_create(ca_crt, ca_key, names, 3, IMP_TLS_SERVER_DAYS, &crt, &key);
	}
	if(!rc) rc = write_pair(dir_fd, p->crt, crt, p->key, key);
	if(!rc && renewed) *renewed = 1;
	imp_free(ca_crt);
	imp_key_pem_free(&ca_key);
	imp_free(crt);
	imp_key_pem_free(&key);
	return rc;
}

imp_err imp_server_tls_ensure(const char *data_dir, int *renewed)
{
	tls_paths p;
	if(renewed) *renewed = 0;
	imp_err rc = paths_of(data_dir, &p);
	if(rc) return rc;
	if(mkdir(p.dir, 0700) != 0 && errno != EEXIST) return IMP_ERR_IO;
	int fd = open(p.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if(fd < 0) return IMP_ERR_IO;
	if(flock(fd, LOCK_EX) != 0) rc = IMP_ERR_IO;
	if(!rc) rc = ca_locked(&p, fd);
	if(!rc) rc = server_locked(&p, fd, renewed);
	close(fd); /* releases the flock */
	return rc;
}
