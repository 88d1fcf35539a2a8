/* runtime/safetensors.h: Hugging Face safetensors files, read (mmap, fully
 * validated) and written (atomic), plus sharded checkpoints
 * (model.safetensors.index.json).
 *
 * defines: safetensors_open, safetensors_open_memory, safetensors_close,
 *          safetensors_count, safetensors_get, safetensors_find,
 *          safetensors_metadata, safetensors_path,
 *          safetensors_writer_create, safetensors_writer_add, safetensors_writer_add_planned,
 *          safetensors_writer_set_metadata, safetensors_writer_write,
 *          safetensors_writer_destroy, safetensors_stream, safetensors_stream_open,
 *          safetensors_stream_put, safetensors_stream_close, safetensors_stream_abort,
 *          safetensors_index_open, safetensors_index_close,
 *          safetensors_index_count, safetensors_index_get,
 *          safetensors_index_find, safetensors_index_shard_count,
 *          safetensors_index_shard
 *
 * Format: 8 bytes little-endian u64 N, then N bytes of UTF-8 JSON (an object:
 * tensor name -> {"dtype","shape","data_offsets":[begin,end]}, plus an
 * optional "__metadata__" object of string -> string), then the data section.
 * data_offsets are relative to the start of the data section (file offset
 * 8 + N). Data is little-endian, row-major.
 *
 * What the reader accepts is what the reference Rust implementation
 * (huggingface/safetensors, SafeTensors::read_metadata + Metadata::validate)
 * accepts, checked in the same terms:
 *   - N <= 100,000,000 and 8 + N <= file size;
 *   - the header is valid UTF-8 and one JSON object (trailing spaces, the
 *     reference writer's padding, are allowed);
 *   - every tensor has begin <= end, end <= data size, and
 *     numel(shape) x dtype size == end - begin, computed with overflow checks;
 *   - sorted by (begin, end), each tensor starts exactly where the previous
 *     one ended (the first at 0) and the last ends at the end of the file:
 *     the tensors tile the data section with no overlap, no gap and no
 *     trailing bytes. (The reference's rule; a gap is an error too.)
 * It is stricter than the reference in four documented ways: duplicate
 * tensor names or duplicate fields are an error (the reference keeps the
 * last), raw control bytes in the header are an error, shape dims and offsets
 * must be below 2^53 (they are read through cJSON's doubles), and at most 8
 * dims. Valid safetensors dtypes that shardlm has no sl_dtype for (F64, I8,
 * I16, U64, BOOL, C64, F8_*, F4, F6_*) are refused with a message naming the
 * dtype and the tensor. Unknown fields inside a tensor entry are ignored, as
 * the reference does.
 *
 * Every error is SL_ERR_FORMAT (content) or SL_ERR_IO (open/stat/mmap/write)
 * and its message names the file, the tensor and the file byte offset where
 * that applies.
 *
 * Not done here: dtype conversion (runtime/tensor.h), name mapping to a
 * model's layout (model/hf_*.h), reading from GPU or into GPU memory.
 */
#ifndef SL_RUNTIME_SAFETENSORS_H
#define SL_RUNTIME_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"
#include "runtime/tensor.h"

#define SAFETENSORS_MAX_HEADER 100000000ull /* the reference's MAX_HEADER_SIZE */
#define SAFETENSORS_MAX_DIMS 8

typedef struct safetensors_file safetensors_file;
typedef struct safetensors_writer safetensors_writer;
typedef struct safetensors_index safetensors_index;

/* One tensor of an open file. Every pointer is owned by the file and valid
 * until safetensors_close. data points into the read-only mapping: writing
 * through it faults. It is aligned to the dtype size when the header length
 * and begin are (the reference writer sorts tensors by alignment; files from
 * other writers may not be), so read unaligned data with memcpy. */
typedef struct {
    const char *name;
    sl_dtype dtype;
    int ndim;                              /* 0 (scalar) .. 8 */
    int64_t shape[SAFETENSORS_MAX_DIMS];   /* unused dims are 0 */
    const void *data;                      /* nbytes bytes, host memory */
    size_t nbytes;
    uint64_t begin;                        /* file offset of data: 8 + N + data_offsets[0] */
} safetensors_tensor;

/* ---- reading ---- */

/* Maps path read-only and validates it as described above. On success *out
 * is a file the caller closes; on error *out is NULL and nothing is held.
 * The file must not be truncated while open (reads through a mapping of a
 * shrunk file raise SIGBUS); replacing it by rename, as the writer does, is
 * safe. */
sl_status safetensors_open(const char *path, safetensors_file **out);

/* Same validation over a caller-owned buffer that must outlive the result
 * (no copy is made; used by the fuzzer and by tests). label names the buffer
 * in error messages. */
sl_status safetensors_open_memory(const void *buf, size_t len, const char *label,
                                  safetensors_file **out);

/* NULL is a no-op. */
void safetensors_close(safetensors_file *f);

/* Tensors in file order (by data offset). get returns NULL when i is out of
 * range; find returns NULL for an unknown name (binary search). */
int safetensors_count(const safetensors_file *f);
const safetensors_tensor *safetensors_get(const safetensors_file *f, int i);
const safetensors_tensor *safetensors_find(const safetensors_file *f, const char *name);

/* The string value of key in "__metadata__", or NULL when absent. Owned by
 * the file. */
const char *safetensors_metadata(const safetensors_file *f, const char *key);
/* The path (or label) the file was opened with. */
const char *safetensors_path(const safetensors_file *f);

/* ---- writing ---- */

/* NULL when out of memory. */
safetensors_writer *safetensors_writer_create(void);

/* Queues a tensor. name is copied; data is NOT copied and must stay valid
 * (host memory) until safetensors_writer_write returns. Names must be unique,
 * valid UTF-8 and not "__metadata__"; dims >= 0; ndim 0..8; dtype one of the
 * sl_dtype values. data may be NULL only for a tensor with zero elements. */
sl_status safetensors_writer_add(safetensors_writer *w, const char *name, sl_dtype dt, int ndim,
                                 const int64_t *shape, const void *data);

/* Queues a tensor whose bytes a safetensors_stream writes later (same
 * checks as safetensors_writer_add; safetensors_writer_write refuses it). */
sl_status safetensors_writer_add_planned(safetensors_writer *w, const char *name, sl_dtype dt, int ndim,
                                         const int64_t *shape);

/* Sets (or replaces) one "__metadata__" entry; both strings are copied. */
sl_status safetensors_writer_set_metadata(safetensors_writer *w, const char *key,
                                          const char *value);

/* Writes the file: compact JSON exactly as serde_json prints it
 * ({"__metadata__":{...},"name":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}),
 * metadata keys sorted bytewise as the reference does, tensors in insertion
 * order with contiguous offsets, header padded with spaces to a multiple of
 * 8 bytes. (The reference's save_file instead orders tensors by dtype
 * alignment, then name: add them in that order for byte-identical output.)
 * Atomic: written to "<path>.tmp.<pid>", fsynced and renamed over path; on
 * error path is untouched and the temporary file removed. The writer can be
 * written again or destroyed afterwards. */
sl_status safetensors_writer_write(safetensors_writer *w, const char *path);

/* NULL is a no-op. Does not touch the tensors' data. */
void safetensors_writer_destroy(safetensors_writer *w);

/* ---- streamed writing (exports larger than memory) ---- */

typedef struct safetensors_stream safetensors_stream;

/* Writes the header of w's queued tensors (added with
 * safetensors_writer_add_planned: their bytes come later) to "<path>.tmp.<pid>" and sizes the file; the header is
 * byte for byte what safetensors_writer_write would write. w may be
 * destroyed afterwards. */
sl_status safetensors_stream_open(const safetensors_writer *w, const char *path, safetensors_stream **out);
/* Writes tensor `index` (insertion order; all of its nbytes) at its offset:
 * tensors may come in any order. */
sl_status safetensors_stream_put(safetensors_stream *s, int index, const void *data);
/* Every tensor must have been put: fsync, rename to path (atomic), free. On
 * error the temporary file is removed and s freed. */
sl_status safetensors_stream_close(safetensors_stream *s);
/* Removes the temporary file and frees s; NULL is a no-op. */
void safetensors_stream_abort(safetensors_stream *s);

/* ---- sharded checkpoints ---- */

/* Opens a Hugging Face checkpoint: path is a folder holding
 * model.safetensors.index.json (sharded) or model.safetensors (single file),
 * or the index .json itself, or one .safetensors file. Each shard named in
 * the index's "weight_map" is opened (and validated) once. The index and the
 * shards must agree exactly: every weight_map entry is found in the shard it
 * names, and every tensor of every shard is listed there; shard names are
 * plain file names in the index's folder (no '/'). */
sl_status safetensors_index_open(const char *path, safetensors_index **out);
void safetensors_index_close(safetensors_index *ix);

/* All tensors across shards, sorted by name. Pointers are valid until
 * safetensors_index_close. find sets *shard (when shard is not NULL) to the
 * file holding the tensor, for error messages; NULL when name is unknown. */
int safetensors_index_count(const safetensors_index *ix);
const safetensors_tensor *safetensors_index_get(const safetensors_index *ix, int i);
const safetensors_tensor *safetensors_index_find(const safetensors_index *ix, const char *name,
                                                 const safetensors_file **shard);
int safetensors_index_shard_count(const safetensors_index *ix);
const safetensors_file *safetensors_index_shard(const safetensors_index *ix, int i);

#endif
