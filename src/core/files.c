#include "core/files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mem.h"

#define PATH_CAP 4096

imp_err imp_file_read(const char *path, size_t cap, char **out)
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

imp_err imp_file_write_atomic(const char *path, const char *text, mode_t mode)
{
	char tmp[PATH_CAP + 8];
	int w = snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if(w < 0 || (size_t)w >= sizeof tmp) return IMP_ERR_IO;
	if(unlink(tmp) != 0 && errno != ENOENT) return IMP_ERR_IO;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if(fd < 0) return IMP_ERR_IO;
	/* fchmod: the mode given to open is cut by the umask */
	int ok = fchmod(fd, mode) == 0;
	for(size_t n = strlen(text), done = 0; ok && done < n;) {
		ssize_t wr = write(fd, text + done, n - done);
		if(wr < 0 && errno == EINTR) continue;
		ok = wr > 0;
		if(ok) done += (size_t)wr;
	}
	ok = ok && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	ok = ok && rename(tmp, path) == 0;
	if(!ok) unlink(tmp);
	return ok ? IMP_OK : IMP_ERR_IO;
}
