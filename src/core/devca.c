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

#include "core/files.h"
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
	/* + 4: room for the ".tmp" of imp_file_write_atomic */
	if(a < 0 || c < 0 || k < 0 || (size_t)c + 4 >= sizeof p->crt || (size_t)k + 4 >= sizeof p->key) return IMP_ERR_IO;
	return IMP_OK;
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
	if(!(rc = imp_file_write_atomic(p->key, key, 0600)) && fsync(dir_fd) != 0) rc = IMP_ERR_IO;
	if(!rc && !(rc = imp_file_write_atomic(p->crt, cert, 0644)) && fsync(dir_fd) != 0) rc = IMP_ERR_IO;
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
	imp_err rc = imp_file_read(p->crt, IMP_PEM_MAX, cert_pem);
	if(rc) return rc;
	if((rc = imp_file_read(p->key, IMP_PEM_MAX, key_pem))) {
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
