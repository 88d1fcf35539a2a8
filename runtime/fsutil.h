/* runtime/fsutil.h: file helpers with stated failure behaviour.
 *
 * defines: fs_read_file, fs_write_atomic, fs_mkdirs, fs_exists, fs_is_dir,
 *          fs_fsync_path, fs_rename_atomic, fs_remove_tree, fs_hash64, fs_join
 *
 * fs_write_atomic writes to "<path>.tmp.<pid>", fsyncs the file, renames it
 * over path and fsyncs the folder: after a crash the path holds either the
 * old content or the new, never a mix. On error the temporary file is
 * removed and the old content is untouched.
 */
#ifndef SL_RUNTIME_FSUTIL_H
#define SL_RUNTIME_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

/* Reads a whole file into a NUL-terminated buffer the caller frees. Files
 * larger than max_bytes are refused (SL_ERR_IO naming the size). */
sl_status fs_read_file(const char *path, char **out, size_t *len, size_t max_bytes);
sl_status fs_write_atomic(const char *path, const void *data, size_t len);
/* mkdir -p. */
sl_status fs_mkdirs(const char *path);
bool fs_exists(const char *path);
bool fs_is_dir(const char *path);
/* fsync a file or a folder by path. */
sl_status fs_fsync_path(const char *path);
/* rename(from, to) then fsync the destination's folder. */
sl_status fs_rename_atomic(const char *from, const char *to);
/* rm -rf; missing path is OK. */
sl_status fs_remove_tree(const char *path);
/* XXH3 64-bit hash. */
uint64_t fs_hash64(const void *data, size_t len);
/* out = a + "/" + b, refusing truncation. */
sl_status fs_join(char *out, size_t cap, const char *a, const char *b);

#endif
