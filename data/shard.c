/* data/shard.c: HDF5 token shards (format in shard.h and README). Every HDF5
 * call runs under h5io_lock(); functions named *_locked expect it held. */
#include "data/shard.h"

#include <hdf5.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/h5io.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"

#define SHARD_OFFSETS_CHUNK 16384
#define SHARD_PATH_MAX 1024
/* HDF5 chunk cache per dataset for readers: random access by the loader
 * touches many chunks; 8 chunks of 256 KiB stay decoded. */
#define SHARD_CACHE_CHUNKS 8

/* ------------------------------------------------------------------ */
/* writer */

struct shard_writer {
    char path[SHARD_PATH_MAX];
    char tmp[SHARD_PATH_MAX + 8];
    shard_meta meta;
    uint32_t chunk;
    bool with_mask;
    hid_t file, d_tokens, d_mask, d_offsets;
    uint32_t *tbuf; /* [chunk] pending tokens */
    uint8_t *mbuf;  /* [chunk] pending mask */
    size_t tfill;
    uint64_t *obuf; /* [SHARD_OFFSETS_CHUNK] pending offsets */
    size_t ofill;
    uint64_t t_written, o_written; /* elements already in the file */
    uint64_t n_tokens, n_docs;
};

static sl_status create_ext_locked(hid_t file, const char *name, hid_t type, hsize_t chunk,
                                   int level, hid_t *out) {
    hsize_t dims = 0, maxdims = H5S_UNLIMITED;
    hid_t sp = H5Screate_simple(1, &dims, &maxdims);
    SL_CHECK_HDF5(sp);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    unsigned cd = (unsigned)level;
    /* Order matters: zstd first, then Fletcher32 over the compressed bytes. */
    if (dcpl < 0 || H5Pset_chunk(dcpl, 1, &chunk) < 0 ||
        H5Pset_filter(dcpl, H5IO_FILTER_ZSTD, H5Z_FLAG_MANDATORY, 1, &cd) < 0 ||
        H5Pset_fletcher32(dcpl) < 0) {
        if (dcpl >= 0)
            H5Pclose(dcpl);
        H5Sclose(sp);
        return sl_check_hdf5_fail(__FILE__, __LINE__, "dataset creation properties");
    }
    hid_t d = H5Dcreate2(file, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    SL_CHECK_HDF5(d);
    *out = d;
    return SL_OK;
}

static sl_status append_locked(hid_t d, hid_t memtype, const void *buf, uint64_t n,
                               uint64_t *written) {
    if (n == 0)
        return SL_OK;
    hsize_t size = *written + n, start = *written, count = n;
    SL_CHECK_HDF5(H5Dset_extent(d, &size));
    hid_t fs = H5Dget_space(d);
    SL_CHECK_HDF5(fs);
    hid_t ms = H5Screate_simple(1, &count, NULL);
    herr_t rc = ms < 0 ? -1 : H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL);
    if (rc >= 0)
        rc = H5Dwrite(d, memtype, ms, fs, H5P_DEFAULT, buf);
    /* read the error stack now: the next HDF5 call clears it */
    sl_status st = rc < 0 ? sl_check_hdf5_fail(__FILE__, __LINE__, "H5Dwrite") : SL_OK;
    if (ms >= 0)
        H5Sclose(ms);
    H5Sclose(fs);
    SL_TRY(st);
    *written += n;
    return SL_OK;
}

static sl_status writer_flush_tokens_locked(shard_writer *w) {
    uint64_t before = w->t_written;
    SL_TRY(append_locked(w->d_tokens, H5T_NATIVE_UINT32, w->tbuf, w->tfill, &w->t_written));
    if (w->with_mask) {
        uint64_t mw = before;
        SL_TRY(append_locked(w->d_mask, H5T_NATIVE_UINT8, w->mbuf, w->tfill, &mw));
    }
    w->tfill = 0;
    return SL_OK;
}

static sl_status writer_flush_offsets_locked(shard_writer *w) {
    SL_TRY(append_locked(w->d_offsets, H5T_NATIVE_UINT64, w->obuf, w->ofill, &w->o_written));
    w->ofill = 0;
    return SL_OK;
}

static void writer_free(shard_writer *w) {
    free(w->tbuf);
    free(w->mbuf);
    free(w->obuf);
    free(w);
}

static void writer_close_handles_locked(shard_writer *w) {
    if (w->d_tokens >= 0)
        H5Dclose(w->d_tokens);
    if (w->d_mask >= 0)
        H5Dclose(w->d_mask);
    if (w->d_offsets >= 0)
        H5Dclose(w->d_offsets);
    if (w->file >= 0)
        H5Fclose(w->file);
    w->d_tokens = w->d_mask = w->d_offsets = w->file = -1;
}

static sl_status writer_open_locked(shard_writer *w, int level) {
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) {
        sl_check_hdf5_fail(__FILE__, __LINE__, "H5Fcreate");
        return sl_error_wrapf(SL_ERR_IO, "cannot create shard %s (is the folder writable?)", w->tmp);
    }
    SL_TRY(create_ext_locked(w->file, "tokens", H5T_STD_U32LE, w->chunk, level, &w->d_tokens));
    if (w->with_mask)
        SL_TRY(create_ext_locked(w->file, "loss_mask", H5T_STD_U8LE, w->chunk, level, &w->d_mask));
    SL_TRY(create_ext_locked(w->file, "doc_offsets", H5T_STD_U64LE, SHARD_OFFSETS_CHUNK, level,
                             &w->d_offsets));
    return SL_OK;
}

sl_status shard_writer_open(const char *path, const shard_meta *meta, uint32_t chunk_tokens,
                            int zstd_level, bool with_loss_mask, shard_writer **out) {
    *out = NULL;
    SL_CHECK_ARG(zstd_level >= 1 && zstd_level <= 22, "zstd level %d is outside 1..22", zstd_level);
    SL_CHECK_ARG(strlen(path) < SHARD_PATH_MAX, "shard path too long: %s", path);
    SL_CHECK_ARG(!meta->pairs || with_loss_mask,
                 "pair shard %s needs /loss_mask (with_loss_mask)", path);
    SL_TRY(h5io_init());
    shard_writer *w = calloc(1, sizeof *w);
    SL_CHECK_ALLOC(w, sizeof *w);
    w->chunk = chunk_tokens ? chunk_tokens : SHARD_DEFAULT_CHUNK_TOKENS;
    w->with_mask = with_loss_mask;
    w->meta = *meta;
    w->file = w->d_tokens = w->d_mask = w->d_offsets = -1;
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    w->tbuf = malloc(sizeof *w->tbuf * w->chunk);
    w->mbuf = malloc(w->chunk);
    w->obuf = malloc(sizeof *w->obuf * SHARD_OFFSETS_CHUNK);
    if (!w->tbuf || !w->mbuf || !w->obuf) {
        writer_free(w);
        return sl_errorf(SL_ERR_NOMEM, "out of memory for a shard writer of %u-token chunks",
                         chunk_tokens);
    }
    w->obuf[w->ofill++] = 0;
    h5io_lock();
    sl_status st = writer_open_locked(w, zstd_level);
    if (st != SL_OK) {
        writer_close_handles_locked(w);
        unlink(w->tmp);
    }
    h5io_unlock();
    if (st != SL_OK) {
        writer_free(w);
        return st;
    }
    *out = w;
    return SL_OK;
}

static sl_status writer_add_locked(shard_writer *w, const uint32_t *ids, const uint8_t *mask,
                                   size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t take = w->chunk - w->tfill;
        if (take > n - i)
            take = n - i;
        memcpy(w->tbuf + w->tfill, ids + i, take * sizeof *ids);
        if (mask)
            memcpy(w->mbuf + w->tfill, mask + i, take);
        else
            memset(w->mbuf + w->tfill, 1, take);
        w->tfill += take;
        i += take;
        if (w->tfill == w->chunk)
            SL_TRY(writer_flush_tokens_locked(w));
    }
    w->n_tokens += n;
    w->n_docs++;
    w->obuf[w->ofill++] = w->n_tokens;
    if (w->ofill == SHARD_OFFSETS_CHUNK)
        SL_TRY(writer_flush_offsets_locked(w));
    return SL_OK;
}

sl_status shard_writer_add_doc(shard_writer *w, const uint32_t *ids, const uint8_t *mask, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= w->meta.vocab_size)
            return sl_errorf(SL_ERR_INVALID,
                             "token id %u at position %zu of document %" PRIu64
                             " is not below the vocab size %u (shard %s)",
                             ids[i], i, w->n_docs, w->meta.vocab_size, w->path);
    if (mask)
        for (size_t i = 0; i < n; i++)
            SL_CHECK_ARG(mask[i] <= 1, "loss mask value %u is not 0 or 1", mask[i]);
    h5io_lock();
    sl_status st = writer_add_locked(w, ids, mask, n);
    h5io_unlock();
    if (st != SL_OK)
        return sl_error_wrapf(st, "writing shard %s", w->tmp);
    return SL_OK;
}

uint64_t shard_writer_tokens(const shard_writer *w) { return w->n_tokens; }
uint64_t shard_writer_docs(const shard_writer *w) { return w->n_docs; }

const char *shard_layout_name(bool pairs) { return pairs ? "pairs" : "docs"; }

static sl_status writer_finish_locked(shard_writer *w) {
    if (w->meta.pairs && w->n_docs % 3 != 0)
        return sl_errorf(SL_ERR_INTERNAL,
                         "pair shard %s: %" PRIu64 " documents is not a whole number of "
                         "(prompt, chosen, rejected) triples",
                         w->path, w->n_docs);
    SL_TRY(writer_flush_tokens_locked(w));
    SL_TRY(writer_flush_offsets_locked(w));
    hid_t f = w->file;
    const shard_meta *m = &w->meta;
    SL_TRY(h5io_attr_write_str_locked(f, "format", SHARD_FORMAT_NAME));
    SL_TRY(h5io_attr_write_i64_locked(f, "version", SHARD_FORMAT_VERSION));
    SL_TRY(h5io_attr_write_str_locked(f, "tokenizer_name", m->tokenizer_name));
    SL_TRY(h5io_attr_write_str_locked(f, "tokenizer_hash", m->tokenizer_hash));
    SL_TRY(h5io_attr_write_i64_locked(f, "vocab_size", m->vocab_size));
    SL_TRY(h5io_attr_write_i64_locked(f, "bos_id", m->bos_id));
    SL_TRY(h5io_attr_write_i64_locked(f, "eos_id", m->eos_id));
    SL_TRY(h5io_attr_write_i64_locked(f, "im_start_id", m->im_start_id));
    SL_TRY(h5io_attr_write_i64_locked(f, "im_end_id", m->im_end_id));
    SL_TRY(h5io_attr_write_i64_locked(f, "n_tokens", (int64_t)w->n_tokens));
    SL_TRY(h5io_attr_write_i64_locked(f, "n_docs", (int64_t)w->n_docs));
    SL_TRY(h5io_attr_write_i64_locked(f, "chunk_tokens", w->chunk));
    SL_TRY(h5io_attr_write_str_locked(f, "source", m->source));
    /* docs shards stay as they were before layouts existed: no attribute */
    if (m->pairs)
        SL_TRY(h5io_attr_write_str_locked(f, "layout", shard_layout_name(true)));
    SL_CHECK_HDF5(H5Fflush(f, H5F_SCOPE_GLOBAL));
    return SL_OK;
}

sl_status shard_writer_close(shard_writer *w) {
    h5io_lock();
    sl_status st = writer_finish_locked(w);
    writer_close_handles_locked(w);
    h5io_unlock();
    if (st == SL_OK)
        st = fs_fsync_path(w->tmp);
    if (st == SL_OK)
        st = fs_rename_atomic(w->tmp, w->path);
    if (st != SL_OK) {
        unlink(w->tmp);
        st = sl_error_wrapf(st, "finishing shard %s", w->path);
    }
    writer_free(w);
    return st;
}

void shard_writer_abort(shard_writer *w) {
    if (!w)
        return;
    h5io_lock();
    writer_close_handles_locked(w);
    h5io_unlock();
    unlink(w->tmp);
    writer_free(w);
}

/* ------------------------------------------------------------------ */
/* reader */

struct shard_reader {
    char path[SHARD_PATH_MAX];
    hid_t file, d_tokens, d_mask;
    shard_info info;
    uint64_t *offsets; /* [n_docs + 1] */
};

static sl_status dataset_len_locked(hid_t d, uint64_t *n) {
    hid_t sp = H5Dget_space(d);
    SL_CHECK_HDF5(sp);
    hsize_t dims[2] = {0, 0};
    int nd = H5Sget_simple_extent_ndims(sp);
    if (nd == 1)
        H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    if (nd != 1)
        return sl_errorf(SL_ERR_FORMAT, "dataset has %d dimensions, expected 1", nd);
    *n = dims[0];
    return SL_OK;
}

static sl_status open_dataset_locked(shard_reader *r, const char *name, hid_t *out) {
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    SL_CHECK_HDF5(dapl);
    size_t bytes = (size_t)SHARD_CACHE_CHUNKS * SHARD_DEFAULT_CHUNK_TOKENS * 4;
    H5Pset_chunk_cache(dapl, 521, bytes, 1.0);
    *out = H5Dopen2(r->file, name, dapl);
    H5Pclose(dapl);
    if (*out < 0) {
        H5Eclear2(H5E_DEFAULT);
        return sl_errorf(SL_ERR_FORMAT, "shard %s: dataset /%s is missing or unreadable", r->path,
                         name);
    }
    return SL_OK;
}

/* Reads elements [start, start + n) of a 1-D dataset. */
static sl_status read_range_locked(hid_t d, hid_t memtype, uint64_t start, uint64_t n, void *out) {
    hsize_t s = start, c = n;
    hid_t fs = H5Dget_space(d);
    SL_CHECK_HDF5(fs);
    hid_t ms = H5Screate_simple(1, &c, NULL);
    herr_t rc = ms < 0 ? -1 : H5Sselect_hyperslab(fs, H5S_SELECT_SET, &s, NULL, &c, NULL);
    if (rc >= 0)
        rc = H5Dread(d, memtype, ms, fs, H5P_DEFAULT, out);
    /* read the error stack now: the next HDF5 call clears it */
    sl_status st = rc < 0 ? sl_check_hdf5_fail(__FILE__, __LINE__, "H5Dread") : SL_OK;
    if (ms >= 0)
        H5Sclose(ms);
    H5Sclose(fs);
    SL_TRY(st);
    return SL_OK;
}

static sl_status reader_open_locked(shard_reader *r) {
    r->file = H5Fopen(r->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (r->file < 0) {
        sl_check_hdf5_fail(__FILE__, __LINE__, "H5Fopen");
        return sl_error_wrapf(SL_ERR_FORMAT,
                              "shard %s cannot be opened (missing, truncated or not HDF5; "
                              "re-create it with shardlm prepare or copy it again)",
                              r->path);
    }
    shard_info *in = &r->info;
    int64_t v;
    char what[SHARD_PATH_MAX + 8];
    snprintf(what, sizeof what, "shard %s", r->path);
    SL_TRY(h5io_attr_read_str_locked(r->file, what, "format", in->format, sizeof in->format));
    if (strcmp(in->format, SHARD_FORMAT_NAME) != 0)
        return sl_errorf(SL_ERR_FORMAT, "shard %s: format is \"%s\", expected \"%s\"", r->path,
                         in->format, SHARD_FORMAT_NAME);
    SL_TRY(h5io_attr_read_i64_locked(r->file, what, "version", &v));
    if (v < 1 || v > SHARD_FORMAT_VERSION)
        return sl_errorf(SL_ERR_FORMAT,
                         "shard %s: format version %" PRId64 " is not supported (this build "
                         "reads 1..%d; upgrade shardlm)",
                         r->path, v, SHARD_FORMAT_VERSION);
    in->version = (int)v;
    shard_meta *m = &in->meta;
    SL_TRY(h5io_attr_read_str_locked(r->file, what, "tokenizer_name", m->tokenizer_name,
                                sizeof m->tokenizer_name));
    SL_TRY(h5io_attr_read_str_locked(r->file, what, "tokenizer_hash", m->tokenizer_hash,
                                sizeof m->tokenizer_hash));
    SL_TRY(h5io_attr_read_str_locked(r->file, what, "source", m->source, sizeof m->source));
    SL_TRY(h5io_attr_read_i64_locked(r->file, what, "vocab_size", &v));
    if (v < 1 || v > UINT32_MAX)
        return sl_errorf(SL_ERR_FORMAT, "shard %s: vocab_size %" PRId64 " is out of range", r->path,
                         v);
    m->vocab_size = (uint32_t)v;
    SL_TRY(h5io_attr_read_i64_locked(r->file, what, "bos_id", &m->bos_id));
    SL_TRY(h5io_attr_read_i64_locked(r->file, what, "eos_id", &m->eos_id));
    SL_TRY(h5io_attr_read_i64_locked(r->file, what, "im_start_id", &m->im_start_id));
    SL_TRY(h5io_attr_read_i64_locked(r->file, what, "im_end_id", &m->im_end_id));
    int64_t nt, nd, ch;
    SL_TRY(h5io_attr_read_i64_locked(r->file, what, "n_tokens", &nt));
    SL_TRY(h5io_attr_read_i64_locked(r->file, what, "n_docs", &nd));
    SL_TRY(h5io_attr_read_i64_locked(r->file, what, "chunk_tokens", &ch));
    if (nt < 0 || nd < 0 || ch < 1 || ch > UINT32_MAX)
        return sl_errorf(SL_ERR_FORMAT, "shard %s: counts out of range (n_tokens %" PRId64
                         ", n_docs %" PRId64 ", chunk_tokens %" PRId64 ")",
                         r->path, nt, nd, ch);
    in->n_tokens = (uint64_t)nt;
    in->n_docs = (uint64_t)nd;
    in->chunk_tokens = (uint32_t)ch;
    in->pairs = false;
    htri_t has_layout = H5Aexists(r->file, "layout");
    if (has_layout < 0)
        return sl_check_hdf5_fail(__FILE__, __LINE__, "H5Aexists layout");
    if (has_layout > 0) {
        char layout[32];
        SL_TRY(h5io_attr_read_str_locked(r->file, what, "layout", layout, sizeof layout));
        if (strcmp(layout, "pairs") == 0)
            in->pairs = true;
        else if (strcmp(layout, "docs") != 0)
            return sl_errorf(SL_ERR_FORMAT,
                             "shard %s: layout \"%s\" is not known (this build reads \"docs\" "
                             "and \"pairs\"; upgrade shardlm or prepare the data again)",
                             r->path, layout);
    }
    m->pairs = in->pairs;
    if (in->pairs && in->n_docs % 3 != 0)
        return sl_errorf(SL_ERR_FORMAT,
                         "shard %s: layout \"pairs\" needs 3 documents per pair (prompt, chosen, "
                         "rejected), but n_docs is %" PRIu64 "; prepare the data again",
                         r->path, in->n_docs);

    uint64_t len;
    SL_TRY(open_dataset_locked(r, "tokens", &r->d_tokens));
    SL_TRY(dataset_len_locked(r->d_tokens, &len));
    if (len != in->n_tokens)
        return sl_errorf(SL_ERR_FORMAT, "shard %s: /tokens has %" PRIu64
                         " elements but the n_tokens attribute says %" PRIu64,
                         r->path, len, in->n_tokens);
    in->has_loss_mask = H5Lexists(r->file, "loss_mask", H5P_DEFAULT) > 0;
    if (in->has_loss_mask) {
        SL_TRY(open_dataset_locked(r, "loss_mask", &r->d_mask));
        SL_TRY(dataset_len_locked(r->d_mask, &len));
        if (len != in->n_tokens)
            return sl_errorf(SL_ERR_FORMAT, "shard %s: /loss_mask has %" PRIu64
                             " elements, /tokens %" PRIu64, r->path, len, in->n_tokens);
    } else if (in->pairs) {
        return sl_errorf(SL_ERR_FORMAT,
                         "shard %s: layout \"pairs\" needs /loss_mask (which response tokens "
                         "train), and it is missing; prepare the data again", r->path);
    }
    hid_t d_off;
    SL_TRY(open_dataset_locked(r, "doc_offsets", &d_off));
    sl_status st = dataset_len_locked(d_off, &len);
    if (st == SL_OK && len != in->n_docs + 1)
        st = sl_errorf(SL_ERR_FORMAT, "shard %s: /doc_offsets has %" PRIu64
                       " elements, expected n_docs + 1 = %" PRIu64,
                       r->path, len, in->n_docs + 1);
    if (st == SL_OK) {
        r->offsets = malloc(sizeof *r->offsets * (size_t)len);
        if (!r->offsets)
            st = sl_errorf(SL_ERR_NOMEM, "out of memory for %" PRIu64 " document offsets", len);
    }
    if (st == SL_OK) {
        st = read_range_locked(d_off, H5T_NATIVE_UINT64, 0, len, r->offsets);
        if (st != SL_OK)
            st = sl_error_wrapf(st, "shard %s: /doc_offsets is corrupted", r->path);
    }
    H5Dclose(d_off);
    SL_TRY(st);
    if (r->offsets[0] != 0 || r->offsets[in->n_docs] != in->n_tokens)
        return sl_errorf(SL_ERR_FORMAT, "shard %s: /doc_offsets must run from 0 to n_tokens %" PRIu64,
                         r->path, in->n_tokens);
    for (uint64_t d = 0; d < in->n_docs; d++)
        if (r->offsets[d + 1] < r->offsets[d])
            return sl_errorf(SL_ERR_FORMAT, "shard %s: /doc_offsets decreases at document %" PRIu64,
                             r->path, d);
    return SL_OK;
}

static void reader_close_locked(shard_reader *r) {
    if (r->d_tokens >= 0)
        H5Dclose(r->d_tokens);
    if (r->d_mask >= 0)
        H5Dclose(r->d_mask);
    if (r->file >= 0)
        H5Fclose(r->file);
    r->d_tokens = r->d_mask = r->file = -1;
}

sl_status shard_open(const char *path, shard_reader **out) {
    *out = NULL;
    SL_CHECK_ARG(strlen(path) < SHARD_PATH_MAX, "shard path too long: %s", path);
    SL_TRY(h5io_init());
    shard_reader *r = calloc(1, sizeof *r);
    SL_CHECK_ALLOC(r, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    r->file = r->d_tokens = r->d_mask = -1;
    h5io_lock();
    sl_status st = reader_open_locked(r);
    if (st != SL_OK)
        reader_close_locked(r);
    h5io_unlock();
    if (st != SL_OK) {
        free(r->offsets);
        free(r);
        return st;
    }
    *out = r;
    return SL_OK;
}

void shard_close(shard_reader *r) {
    if (!r)
        return;
    h5io_lock();
    reader_close_locked(r);
    h5io_unlock();
    free(r->offsets);
    free(r);
}

const shard_info *shard_info_get(const shard_reader *r) { return &r->info; }
const char *shard_path(const shard_reader *r) { return r->path; }
const uint64_t *shard_doc_offsets(const shard_reader *r) { return r->offsets; }

/* Reads chunk-aligned pieces so that a failure names its chunk. */
static sl_status read_chunked_locked(shard_reader *r, hid_t d, const char *name, hid_t memtype,
                                     size_t elem, uint64_t start, uint64_t count, void *out) {
    uint64_t ch = r->info.chunk_tokens;
    uint64_t pos = start, end = start + count;
    while (pos < end) {
        uint64_t c = pos / ch;
        uint64_t stop = (c + 1) * ch < end ? (c + 1) * ch : end;
        sl_status st = read_range_locked(d, memtype, pos, stop - pos, (char *)out + (pos - start) * elem);
        if (st != SL_OK) {
            uint64_t c0 = c * ch, c1 = c0 + ch < r->info.n_tokens ? c0 + ch : r->info.n_tokens;
            return sl_error_wrapf(SL_ERR_FORMAT,
                                  "shard %s: /%s chunk %" PRIu64 " (elements [%" PRIu64 ", %" PRIu64
                                  ")) is corrupted (checksum or decompression failed; re-create "
                                  "the shard or restore a copy)",
                                  r->path, name, c, c0, c1);
        }
        pos = stop;
    }
    return SL_OK;
}

static sl_status read_tokens_locked(shard_reader *r, uint64_t start, uint64_t count, uint32_t *ids,
                                    uint8_t *mask) {
    SL_TRY(read_chunked_locked(r, r->d_tokens, "tokens", H5T_NATIVE_UINT32, 4, start, count, ids));
    if (mask) {
        if (r->info.has_loss_mask)
            SL_TRY(read_chunked_locked(r, r->d_mask, "loss_mask", H5T_NATIVE_UINT8, 1, start, count,
                                       mask));
        else
            memset(mask, 1, (size_t)count);
    }
    return SL_OK;
}

sl_status shard_read_tokens(shard_reader *r, uint64_t start, uint64_t count, uint32_t *ids,
                            uint8_t *mask) {
    SL_CHECK_ARG(start <= r->info.n_tokens && count <= r->info.n_tokens - start,
                 "shard %s: tokens [%" PRIu64 ", %" PRIu64 ") are outside its %" PRIu64 " tokens",
                 r->path, start, start + count, r->info.n_tokens);
    if (count == 0)
        return SL_OK;
    h5io_lock();
    sl_status st = read_tokens_locked(r, start, count, ids, mask);
    h5io_unlock();
    return st;
}

sl_status shard_verify(shard_reader *r, shard_verify_stats *out) {
    shard_verify_stats s = {0};
    const shard_info *in = &r->info;
    uint64_t ch = in->chunk_tokens;
    uint32_t *ids = malloc(sizeof *ids * ch);
    uint8_t *mask = malloc(ch);
    if (!ids || !mask) {
        free(ids);
        free(mask);
        return sl_errorf(SL_ERR_NOMEM, "out of memory for a %" PRIu64 "-token chunk", ch);
    }
    sl_status st = SL_OK;
    for (uint64_t pos = 0; pos < in->n_tokens && st == SL_OK; pos += ch) {
        uint64_t n = in->n_tokens - pos < ch ? in->n_tokens - pos : ch;
        st = shard_read_tokens(r, pos, n, ids, mask);
        for (uint64_t i = 0; i < n && st == SL_OK; i++) {
            if (ids[i] >= in->meta.vocab_size)
                st = sl_errorf(SL_ERR_FORMAT, "shard %s: token id %u at offset %" PRIu64
                               " is not below vocab_size %u",
                               r->path, ids[i], pos + i, in->meta.vocab_size);
            else if (mask[i] > 1)
                st = sl_errorf(SL_ERR_FORMAT, "shard %s: loss_mask %u at offset %" PRIu64
                               " is not 0 or 1", r->path, mask[i], pos + i);
            if (ids[i] > s.max_id)
                s.max_id = ids[i];
            s.mask_ones += mask[i];
        }
        s.chunks++;
    }
    free(ids);
    free(mask);
    SL_TRY(st);
    s.min_doc = in->n_docs ? UINT64_MAX : 0;
    for (uint64_t d = 0; d < in->n_docs; d++) {
        uint64_t len = r->offsets[d + 1] - r->offsets[d];
        if (len < s.min_doc)
            s.min_doc = len;
        if (len > s.max_doc)
            s.max_doc = len;
    }
    h5io_lock();
    s.stored_bytes = H5Dget_storage_size(r->d_tokens);
    if (in->has_loss_mask)
        s.stored_bytes += H5Dget_storage_size(r->d_mask);
    h5io_unlock();
    if (out)
        *out = s;
    return SL_OK;
}
