#include "core/capath.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/files.h"
#include "core/crypto.h"
#include "core/mem.h"
#include "core/x509.h"

#define PATH_CAP   4096
#define SUFFIX_MAX 100 /* certificates sharing one subject hash */

static int no_password(char *buf, int size, int rwflag, void *u) { return -1; }

static X509 *pem_cert(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, no_password, NULL) : NULL;
	BIO_free(b);
	return x;
}

/* 1 when path holds the certificate x, 0 when another, -1 when it is missing, -2 when it
 * cannot be read. */
static int holds(const char *path, X509 *x)
{
	char *pem = NULL;
	imp_err rc = imp_file_read(path, IMP_PEM_MAX, &pem);
	if(rc) return rc == IMP_ERR_NOT_FOUND ? -1 : -2;
	X509 *y = pem_cert(pem);
	imp_free(pem);
	int same = y && X509_cmp(x, y) == 0;
	X509_free(y);
	return same;
}

static imp_err cert_pem(X509 *x, char **out)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long n;
	imp_err rc = IMP_ERR_NOMEM;
	if(b && PEM_write_bio_X509(b, x) == 1 && (n = BIO_get_mem_data(b, &p)) > 0 && (*out = imp_malloc((size_t)n + 1))) {
		memcpy(*out, p, (size_t)n);
		(*out)[n] = '\0';
		rc = IMP_OK;
	}
	BIO_free(b);
	return rc;
}

/* Writes text to a file of its own in dir, mode 0644, synced; its name into tmp. */
static imp_err write_tmp(const char *dir, const char *text, char *tmp, size_t cap)
{
	uint8_t r[8];
	char hex[17];
	if(imp_random(r, sizeof r)) return IMP_ERR_IO;
	imp_hex(r, sizeof r, hex);
	int len = snprintf(tmp, cap, "%s/.tmp-%s", dir, hex);
	if(len < 0 || (size_t)len >= cap) return IMP_ERR_IO;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if(fd < 0) return IMP_ERR_IO;
	int ok = fchmod(fd, 0644) == 0;
	for(size_t n = strlen(text), done = 0; ok && done < n;) {
		ssize_t w = write(fd, text + done, n - done);
		if(w < 0 && errno == EINTR) continue;
		ok = w > 0;
		if(ok) done += (size_t)w;
	}
	ok = fsync(fd) == 0 && ok;
	ok = close(fd) == 0 && ok;
	if(!ok) unlink(tmp);
	return ok ? IMP_OK : IMP_ERR_IO;
}

/* OpenSSL reads <hash>.0, <hash>.1, ... and stops at the first missing one, so names are
 * taken in order without gaps: link() claims the first free one or fails with EEXIST when
 * another writer got there first, and the next is tried. */
static imp_err add_locked(const char *dir, X509 *x)
{
	char path[PATH_CAP], tmp[PATH_CAP], *pem = NULL;
	unsigned long h = X509_subject_name_hash(x);
	imp_err rc = cert_pem(x, &pem);
	if(rc) return rc;
	int have_tmp = 0;
	rc = IMP_ERR_IO;
	for(int k = 0; k < SUFFIX_MAX; k++) {
		int n = snprintf(path, sizeof path, "%s/%08lx.%d", dir, h, k);
		if(n < 0 || (size_t)n >= sizeof path) break;
		int same = holds(path, x);
		if(same == 1) {
			rc = IMP_OK;
			break;
		}
		if(same == 0) continue;
		if(same == -2) break;
		if(!have_tmp) {
			if(write_tmp(dir, pem, tmp, sizeof tmp)) break;
			have_tmp = 1;
		}
		if(link(tmp, path) == 0) {
			rc = IMP_OK;
			break;
		}
		if(errno != EEXIST) break;
		k--; /* taken meanwhile: look at what was put there */
	}
	if(have_tmp) unlink(tmp);
	imp_free(pem);
	return rc;
}

imp_err imp_broker_capath_add(const char *data_dir, const char *pem)
{
	char broker[PATH_CAP], dir[PATH_CAP];
	int a = snprintf(broker, sizeof broker, "%s/broker", data_dir);
	int b = snprintf(dir, sizeof dir, "%s/%s", data_dir, IMP_CAPATH_DIR);
	if(a < 0 || b < 0 || (size_t)b + 32 >= sizeof dir) return IMP_ERR_IO;
	if((mkdir(broker, 0700) != 0 && errno != EEXIST) || (mkdir(dir, 0700) != 0 && errno != EEXIST)) return IMP_ERR_IO;
	ERR_set_mark();
	X509 *x = pem ? pem_cert(pem) : NULL;
	imp_err rc = x ? add_locked(dir, x) : IMP_ERR_INVALID;
	X509_free(x);
	ERR_pop_to_mark();
	return rc;
}
