/* runtime/h5io.h: the one place shardlm talks to the HDF5 library's global state.
 *
 * defines: H5IO_FILTER_ZSTD, h5io_zstd_class, h5io_init, h5io_lock,
 *          h5io_unlock, h5io_read_format, h5io_attr_write_{i64,u64,str}_locked,
 *          h5io_attr_read_{i64,u64,str}_locked
 *
 * Debian's libhdf5 is the serial build, which is not safe to call from two
 * threads at once. Every HDF5 call in shardlm (shard writer, shard reader,
 * the loader's background thread, checkpoints) runs between h5io_lock() and
 * h5io_unlock(). The lock is process-wide because the library state it
 * protects is process-wide: a runtime service of the whole process, used by
 * data/ (token shards) and ckpt/ (checkpoint rank files) alike.
 *
 * The zstd filter (id 32015, the id registered with The HDF Group and used by
 * hdf5plugin): cd_values[0] is the compression level (hdf5plugin's
 * convention; absent = ZSTD_CLEVEL_DEFAULT). Each chunk is one zstd frame
 * that records its decompressed size, so any zstd-32015 reader can decode it.
 * The same source is built as the HDF5 plugin libh5zstd.so (CMake target
 * h5zstd_plugin) for h5py on systems whose hdf5plugin lacks zstd (Debian 12):
 * HDF5_PLUGIN_PATH=<build dir> python3 -c 'import h5py; ...'.
 *
 * Does not open files or know the shard layout (data/shard.h does).
 */
#ifndef SL_RUNTIME_H5IO_H
#define SL_RUNTIME_H5IO_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

#define H5IO_FILTER_ZSTD 32015

/* The filter class (what H5Zregister takes). */
extern const H5Z_class2_t h5io_zstd_class[1];

/* Registers the zstd filter and turns off HDF5's printing of error stacks
 * (errors are reported through sl_status instead). Idempotent and
 * thread-safe; call before the first HDF5 use. */
sl_status h5io_init(void);

/* Serializes HDF5 calls across threads. Not recursive. h5io_lock also turns
 * off HDF5's automatic error printing for the calling thread. */
void h5io_lock(void);
void h5io_unlock(void);

/* Reads the string attribute "format" of the root group of an HDF5 file
 * into out[cap] ("" when the file has none), so that tools can dispatch on
 * the kind of file (token shard, checkpoint ...). */
sl_status h5io_read_format(const char *path, char *out, size_t cap);

/* Scalar attributes of loc (a file, group or dataset), shared by the shard
 * and checkpoint formats. The caller holds h5io_lock. Integers are stored
 * little-endian 64-bit; strings variable-length UTF-8 (h5py reads them as
 * str). Readers accept any integer width and fixed- or variable-length
 * strings. `what` names loc in messages ("shard /d/x.h5", "checkpoint file
 * /c/rank_00000.h5: /params/00003"); a missing attribute is SL_ERR_FORMAT
 * "<what> lacks attribute \"<name>\"". */
sl_status h5io_attr_write_i64_locked(hid_t loc, const char *name, int64_t v);
sl_status h5io_attr_write_u64_locked(hid_t loc, const char *name, uint64_t v);
sl_status h5io_attr_write_str_locked(hid_t loc, const char *name, const char *v);
sl_status h5io_attr_read_i64_locked(hid_t loc, const char *what, const char *name, int64_t *v);
sl_status h5io_attr_read_u64_locked(hid_t loc, const char *what, const char *name, uint64_t *v);
sl_status h5io_attr_read_str_locked(hid_t loc, const char *what, const char *name, char *out,
                                    size_t cap);

#endif
