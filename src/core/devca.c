#include "core/devca.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ids.h"
#include "core/mem.h"
#include "core/x509.h"

#define PATH_CAP 4096

typedef struct {
	char dir[PATH_CAP], crt[PATH_CAP], key[PATH_CAP];
	char id[IMP_UUID_LEN + 1]; /* lowercase, so one account never gets two CAs */
} ca_paths;

static imp_err paths_of(const char *data_dir, const char *account_id, ca_paths *p)
{
	if(!imp_id_valid(account_id)) return IMP_ERR_INVALID;
	for(size_t i = 0; i <= IMP_UUID_LEN; i++) p->id[i] = (char)tolower((unsigned char)account_id[i]);
	int a = snprintf(p->dir, sizeof p->dir, "%s/ca", data_dir);
	int c = snprintf(p->crt, sizeof p->crt, "%s/%s.crt", p->dir, p->id);
	int k = snprintf(p->key, sizeof p->key, "%s/%s.key", p->dir, p->id);
	/* + 4: room for the ".tmp" of write_atomic */
	if(a < 0 || c < 0 || k < 0 || (size_t)c + 4 >= sizeof p->crt || (size_t)k + 4 >= sizeof p->key) return IMP_ERR_IO;
	return IMP_OK;
}

/* Reads path (at most cap bytes) into a NUL-terminated buffer from imp_malloc; scrubs what
 * it read when it fails. IMP_ERR_NOT_FOUND when missing. */
static imp_err read_file(const char *path, size_t cap, char **out)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if(fd < 0) return errno == ENOENT ? IMP_ERR_NOT_FOUND : IMP_ERR_IO;
	struct stat st;
	imp_err rc = IMP_ERR_IO;
	char *buf = NULL;
	size_t n = 0;
	if(fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > cap) goto out;
	if(!(buf = imp_malloc((size_t)st.st_size + 1))) {
		rc = IMP_ERR_NOMEM;
		goto out;
	}
	while(n < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
		if(r < 0 && errno == EINTR) continue;
		if(r <= 0) goto out;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*out = buf;
	buf = NULL;
	rc = IMP_OK;
out:
	if(buf) {
		explicit_bzero(buf, n);
		imp_free(buf);
	}
	close(fd);
	return rc;
}

/* Writes text to path by way of path.tmp (created with O_EXCL, synced, renamed), so path
 * is never seen half written. Callers hold the lock, so a path.tmp already there is the
 * remains of a crash. */
static imp_err write_atomic(const char *path, const char *text, mode_t mode)
{
	char tmp[PATH_CAP + 8];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if(unlink(tmp) != 0 && errno != ENOENT) return IMP_ERR_IO;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if(fd < 0) return IMP_ERR_IO;
	/* fchmod: the mode given to open is cut by the umask */
	int ok = fchmod(fd, mode) == 0;
	for(size_t n = strlen(text), done = 0; ok && done < n;) {
		ssize_t w = write(fd, text + done, n - done);
		if(w < 0 && errno == EINTR) continue;
		ok = w > 0;
		if(ok) done += (size_t)w;
	}
	ok = ok && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	ok = ok && rename(tmp, path) == 0;
	if(!ok) unlink(tmp);
	return ok ? IMP_OK : IMP_ERR_IO;
}

/* With the lock held: the pair when it is there, else a new one, key first. Each rename is
 * made durable (fsync of the directory) before the next, so after a crash the certificate
 * is never there without its key. */
static imp_err create_locked(const ca_paths *p, int dir_fd)
{
	char *cert = NULL, *key = NULL, cn[64];
	if(access(p->crt, F_OK) == 0) return access(p->key, F_OK) == 0 ? IMP_OK : IMP_ERR_IO;
	if(errno != ENOENT) return IMP_ERR_IO;
	snprintf(cn, sizeof cn, "imprint device CA %s", p->id);
	imp_err rc = imp_ca_create(cn, IMP_DEVCA_DAYS, &cert, &key);
	if(rc) return rc;
	if(!(rc = write_atomic(p->key, key, 0600)) && fsync(dir_fd) != 0) rc = IMP_ERR_IO;
	if(!rc && !(rc = write_atomic(p->crt, cert, 0644)) && fsync(dir_fd) != 0) rc = IMP_ERR_IO;
	imp_free(cert);
	imp_key_pem_free(&key);
	return rc;
}

/* flock excludes other processes (imprint account create beside a running server) and,
 * since its locks belong to open file descriptions, other threads' opens too; the mutex
 * keeps threads apart even on file systems that implement flock as process-wide locks. */
static pthread_mutex_t create_mutex = PTHREAD_MUTEX_INITIALIZER;

imp_err imp_devca_ensure(const char *data_dir, const char *account_id)
{
	ca_paths p;
	imp_err rc = paths_of(data_dir, account_id, &p);
	if(rc) return rc;
	if(mkdir(p.dir, 0700) != 0 && errno != EEXIST) return IMP_ERR_IO;
	int fd = open(p.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if(fd < 0) return IMP_ERR_IO;
	pthread_mutex_lock(&create_mutex);
	if(flock(fd, LOCK_EX) == 0) rc = create_locked(&p, fd);
	else rc = IMP_ERR_IO;
	close(fd); /* releases the flock */
	pthread_mutex_unlock(&create_mutex);
	return rc;
}

/* Both files, or IMP_ERR_NOT_FOUND when the certificate is missing. */
static imp_err read_pair(const ca_paths *p, char **cert_pem, char **key_pem)
{
	imp_err rc = read_file(p->crt, IMP_PEM_MAX, cert_pem);
	if(rc) return rc;
	if((rc = read_file(p->key, IMP_PEM_MAX, key_pem))) {
		imp_free(*cert_pem);
		*cert_pem = NULL;
		if(rc == IMP_ERR_NOT_FOUND) rc = IMP_ERR_IO;
	}
	return rc;
}

imp_err imp_devca_load(const char *data_dir, const char *account_id, char **cert_pem, char **key_pem)
{
	ca_paths p;
	*cert_pem = *key_pem = NULL;
	imp_err rc = paths_of(data_dir, account_id, &p);
	if(rc) return rc;
	/* The certificate is renamed into place after its key, so once it is there the pair
	 * can be read without the lock. */
	if((rc = read_pair(&p, cert_pem, key_pem)) != IMP_ERR_NOT_FOUND) return rc;
	if((rc = imp_devca_ensure(data_dir, account_id))) return rc;
	return read_pair(&p, cert_pem, key_pem);
}
