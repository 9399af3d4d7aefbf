/* Small files of the data directory (keys, certificates), read with a cap and replaced
 * whole. */
#ifndef IMP_FILES_H
#define IMP_FILES_H
#include <stddef.h>
#include <sys/types.h>

#include "core/err.h"

/* Reads the regular file path (at most cap bytes; symbolic links refused) into a
 * NUL-terminated buffer. Caller frees *out with imp_free (scrub it first when it may hold
 * a key). IMP_ERR_NOT_FOUND when missing; IMP_ERR_IO when unreadable, not a regular file or
 * over cap; IMP_ERR_NOMEM. What was read is scrubbed on failure. */
imp_err imp_file_read(const char *path, size_t cap, char **out);

/* Writes text to path by way of path.tmp (created with O_EXCL and mode, synced, renamed),
 * so path is never seen half written. A path.tmp already there is taken for the remains of
 * a crash and removed: callers keep writers of one path apart (a lock). The directory is
 * not synced. IMP_ERR_IO. */
imp_err imp_file_write_atomic(const char *path, const char *text, mode_t mode);

#endif
