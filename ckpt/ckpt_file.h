/* ckpt/ckpt_file.h: the HDF5 container of one rank's checkpoint shards
 * (README "Checkpoint format", DESIGN section 9).
 *
 * defines: CKPT_FILE_FORMAT_NAME, CKPT_FILE_FORMAT_VERSION, ckpt_file_info,
 *          ckpt_range, ckpt_writer, ckpt_writer_open, ckpt_writer_add_unit,
 *          ckpt_writer_close, ckpt_writer_abort, ckpt_reader,
 *          ckpt_reader_open, ckpt_reader_close, ckpt_reader_info,
 *          ckpt_reader_path, ckpt_reader_n_units, ckpt_reader_range,
 *          ckpt_reader_has, ckpt_reader_read, ckpt_range_overlap
 *
 * One file per rank:
 *   /<part>/<unit as %05d>/   group per FSDP unit of a part ("model", "lora")
 *       attributes start, len, valid, numel (int64): this rank owns elements
 *       [start, start + len) of the unit's padded flat buffer, of which the
 *       first `valid` are below numel (the rest is zero padding)
 *       param, m, v           float32 [len]; chunked (equal chunks of at most
 *                             CKPT_FILE_CHUNK floats),
 *                             Fletcher32 per chunk, and an "xxh3" attribute
 *                             (uint64, XXH3-64 of the len floats as stored)
 *                             checked after every full read. m and v are
 *                             absent for a part without optimizer state.
 * Root attributes: format ("shardlm-checkpoint"), version, rank, world,
 * shard_rank, shard_size, replicate_rank, replicate_size, fsdp_mode (string),
 * step.
 * No compression: fp32 weights and Adam moments shrink by ~10% under zstd,
 * which is not worth the write time; h5py reads the files with no plugin.
 *
 * Every HDF5 call in the process holds runtime/h5io's lock (the loader's
 * reader thread reads token shards while a rank writes its checkpoint).
 * What goes into a checkpoint, meta.json, the atomic folder protocol and
 * resharding are ckpt/ckpt.h's; this container knows neither FSDP nor the
 * parts' meaning.
 *
 * The writer writes "<path>.tmp", and close flushes, fsyncs and renames it
 * to path (then fsyncs the folder): a rank file that exists under its name
 * is complete. Neither writer nor reader is thread-safe; different objects
 * may be used from different threads (the lock serializes HDF5).
 */
#ifndef SL_CKPT_CKPT_FILE_H
#define SL_CKPT_CKPT_FILE_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/status.h"

#define CKPT_FILE_FORMAT_NAME "shardlm-checkpoint"
#define CKPT_FILE_FORMAT_VERSION 1
#define CKPT_FILE_CHUNK (1 << 18) /* floats per HDF5 chunk (1 MiB) */

typedef struct {
    int rank, world;
    int shard_rank, shard_size;
    int replicate_rank, replicate_size;
    char fsdp_mode[32];
    int64_t step;
} ckpt_file_info;

typedef struct {
    int64_t start; /* first element of the unit held */
    int64_t len;   /* elements held, padding included */
    int64_t valid; /* held elements below numel */
    int64_t numel; /* the unit's unpadded size */
} ckpt_range;

/* ---- writer ---- */

typedef struct ckpt_writer ckpt_writer;

sl_status ckpt_writer_open(const char *path, const ckpt_file_info *info, ckpt_writer **out);
/* Writes unit `unit` of `part`: param, and m and v unless they are NULL
 * (each r->len floats, host memory, borrowed for the call). */
sl_status ckpt_writer_add_unit(ckpt_writer *w, const char *part, int unit, const ckpt_range *r,
                               const float *param, const float *m, const float *v);
/* Bytes of dataset payload written so far. */
int64_t ckpt_writer_bytes(const ckpt_writer *w);
/* Closes, fsyncs and renames into place; frees w (also on error, when the
 * temporary file is removed). */
sl_status ckpt_writer_close(ckpt_writer *w);
/* Closes and removes the temporary file; frees w. NULL is a no-op. */
void ckpt_writer_abort(ckpt_writer *w);

/* ---- reader ---- */

typedef struct ckpt_reader ckpt_reader;

/* Opens a rank file and validates its root attributes. A missing file, a
 * truncated one or a file of another format is an error naming the path. */
sl_status ckpt_reader_open(const char *path, ckpt_reader **out);
void ckpt_reader_close(ckpt_reader *r); /* NULL is a no-op */
const ckpt_file_info *ckpt_reader_info(const ckpt_reader *r);
const char *ckpt_reader_path(const ckpt_reader *r);
/* Units of a part (0 when the file has no such part). */
sl_status ckpt_reader_n_units(ckpt_reader *r, const char *part, int *n);
/* The range attributes of unit `unit` of `part`; an error naming the file
 * when the unit is absent or its attributes are inconsistent. */
sl_status ckpt_reader_range(ckpt_reader *r, const char *part, int unit, ckpt_range *out);
/* Whether dataset name ("param", "m", "v") exists for the unit. */
bool ckpt_reader_has(ckpt_reader *r, const char *part, int unit, const char *name);
/* Reads the whole dataset (range.len floats) into dst, verifying every
 * chunk's Fletcher32 checksum and then the XXH3 of the data. A mismatch is
 * SL_ERR_FORMAT naming the file, dataset and what failed. */
sl_status ckpt_reader_read(ckpt_reader *r, const char *part, int unit, const char *name, float *dst);

/* Intersection of the valid elements [a_start, a_start + a_valid) and
 * [b_start, b_start + b_valid): *lo, *hi (hi <= lo when empty). Resharding
 * copies these ranges between old and new shards. */
static inline void ckpt_range_overlap(const ckpt_range *a, const ckpt_range *b, int64_t *lo,
                                      int64_t *hi) {
    int64_t a_end = a->start + a->valid, b_end = b->start + b->valid;
    *lo = a->start > b->start ? a->start : b->start;
    *hi = a_end < b_end ? a_end : b_end;
}

#endif
