/* ckpt/ckpt_file.c: HDF5 checkpoint rank files (format in ckpt_file.h).
 * Every HDF5 call runs under h5io_lock(); functions named *_locked expect
 * it held. */
#include "ckpt/ckpt_file.h"

#include <hdf5.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/h5io.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"

#define CKPT_PATH_MAX 1024

static void unit_group_name(char *buf, size_t cap, const char *part, int unit) {
    snprintf(buf, cap, "/%s/%05d", part, unit);
}

/* ---- writer ---- */

struct ckpt_writer {
    char path[CKPT_PATH_MAX];
    char tmp[CKPT_PATH_MAX + 8];
    hid_t file;
    int64_t bytes;
};

static sl_status write_root_attrs_locked(hid_t f, const ckpt_file_info *in) {
    SL_TRY(h5io_attr_write_str_locked(f, "format", CKPT_FILE_FORMAT_NAME));
    SL_TRY(h5io_attr_write_i64_locked(f, "version", CKPT_FILE_FORMAT_VERSION));
    SL_TRY(h5io_attr_write_i64_locked(f, "rank", in->rank));
    SL_TRY(h5io_attr_write_i64_locked(f, "world", in->world));
    SL_TRY(h5io_attr_write_i64_locked(f, "shard_rank", in->shard_rank));
    SL_TRY(h5io_attr_write_i64_locked(f, "shard_size", in->shard_size));
    SL_TRY(h5io_attr_write_i64_locked(f, "replicate_rank", in->replicate_rank));
    SL_TRY(h5io_attr_write_i64_locked(f, "replicate_size", in->replicate_size));
    SL_TRY(h5io_attr_write_str_locked(f, "fsdp_mode", in->fsdp_mode));
    SL_TRY(h5io_attr_write_i64_locked(f, "step", in->step));
    return SL_OK;
}

sl_status ckpt_writer_open(const char *path, const ckpt_file_info *info, ckpt_writer **out) {
    *out = NULL;
    SL_TRY(h5io_init());
    ckpt_writer *w = calloc(1, sizeof *w);
    SL_CHECK_ALLOC(w, sizeof *w);
    w->file = -1;
    int n = snprintf(w->path, sizeof w->path, "%s", path);
    if (n < 0 || (size_t)n >= sizeof w->path) {
        free(w);
        return sl_errorf(SL_ERR_IO, "checkpoint path too long: %s", path);
    }
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    h5io_lock();
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    sl_status st = SL_OK;
    if (w->file < 0)
        st = sl_errorf(SL_ERR_IO, "cannot create checkpoint file %s (is the folder writable?)", w->tmp);
    else
        st = write_root_attrs_locked(w->file, info);
    h5io_unlock();
    if (st != SL_OK) {
        ckpt_writer_abort(w);
        return sl_error_wrapf(st, "checkpoint file %s", w->tmp);
    }
    *out = w;
    return SL_OK;
}

static sl_status write_dataset_locked(hid_t g, const char *name, const float *data, int64_t len) {
    hsize_t dims = (hsize_t)len;
    /* Equal chunks of at most CKPT_FILE_CHUNK: HDF5 stores a partial last
     * chunk at full size, so an uneven split would waste up to a chunk. */
    int64_t n_chunks = (len + CKPT_FILE_CHUNK - 1) / CKPT_FILE_CHUNK;
    hsize_t chunk = (hsize_t)((len + n_chunks - 1) / n_chunks);
    hid_t sp = H5Screate_simple(1, &dims, NULL);
    SL_CHECK_HDF5(sp);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl < 0 || H5Pset_chunk(dcpl, 1, &chunk) < 0 || H5Pset_fletcher32(dcpl) < 0) {
        if (dcpl >= 0)
            H5Pclose(dcpl);
        H5Sclose(sp);
        return sl_check_hdf5_fail(__FILE__, __LINE__, "H5Pset_fletcher32");
    }
    hid_t d = H5Dcreate2(g, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    SL_CHECK_HDF5(d);
    herr_t rc = H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    sl_status st = rc < 0 ? sl_check_hdf5_fail(__FILE__, __LINE__, "H5Dwrite") : SL_OK;
    if (st == SL_OK)
        st = h5io_attr_write_u64_locked(d, "xxh3", fs_hash64(data, (size_t)len * sizeof(float)));
    H5Dclose(d);
    return st;
}

static sl_status add_unit_locked(ckpt_writer *w, const char *part, int unit, const ckpt_range *r,
                                 const float *param, const float *m, const float *v) {
    char gpath[160];
    snprintf(gpath, sizeof gpath, "/%s", part);
    if (H5Lexists(w->file, gpath, H5P_DEFAULT) <= 0) {
        hid_t pg = H5Gcreate2(w->file, gpath, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        SL_CHECK_HDF5(pg);
        H5Gclose(pg);
    }
    unit_group_name(gpath, sizeof gpath, part, unit);
    hid_t g = H5Gcreate2(w->file, gpath, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    SL_CHECK_HDF5(g);
    sl_status st = h5io_attr_write_i64_locked(g, "start", r->start);
    if (st == SL_OK)
        st = h5io_attr_write_i64_locked(g, "len", r->len);
    if (st == SL_OK)
        st = h5io_attr_write_i64_locked(g, "valid", r->valid);
    if (st == SL_OK)
        st = h5io_attr_write_i64_locked(g, "numel", r->numel);
    const float *data[3] = {param, m, v};
    static const char *const names[3] = {"param", "m", "v"};
    for (int i = 0; i < 3 && st == SL_OK; i++) {
        if (!data[i])
            continue;
        st = write_dataset_locked(g, names[i], data[i], r->len);
        if (st == SL_OK)
            w->bytes += r->len * (int64_t)sizeof(float);
    }
    H5Gclose(g);
    return st;
}

sl_status ckpt_writer_add_unit(ckpt_writer *w, const char *part, int unit, const ckpt_range *r,
                               const float *param, const float *m, const float *v) {
    SL_CHECK_ARG(param && r->len > 0 && r->valid >= 0 && r->valid <= r->len,
                 "ckpt_writer_add_unit: %s unit %d: bad range (len %" PRId64 ", valid %" PRId64 ")",
                 part, unit, r->len, r->valid);
    SL_CHECK_ARG(strlen(part) > 0 && strlen(part) < 64 && !strchr(part, '/'),
                 "ckpt_writer_add_unit: bad part name \"%s\"", part);
    h5io_lock();
    sl_status st = add_unit_locked(w, part, unit, r, param, m, v);
    h5io_unlock();
    if (st != SL_OK)
        return sl_error_wrapf(st, "writing %s unit %d to %s", part, unit, w->tmp);
    return SL_OK;
}

int64_t ckpt_writer_bytes(const ckpt_writer *w) { return w->bytes; }

sl_status ckpt_writer_close(ckpt_writer *w) {
    h5io_lock();
    herr_t rc = H5Fclose(w->file);
    h5io_unlock();
    w->file = -1;
    sl_status st = SL_OK;
    if (rc < 0)
        st = sl_errorf(SL_ERR_IO, "cannot flush and close checkpoint file %s (disk full?)", w->tmp);
    if (st == SL_OK)
        st = fs_fsync_path(w->tmp);
    if (st == SL_OK)
        st = fs_rename_atomic(w->tmp, w->path);
    if (st != SL_OK)
        unlink(w->tmp);
    free(w);
    return st;
}

void ckpt_writer_abort(ckpt_writer *w) {
    if (!w)
        return;
    if (w->file >= 0) {
        h5io_lock();
        H5Fclose(w->file);
        h5io_unlock();
    }
    unlink(w->tmp);
    free(w);
}

/* ---- reader ---- */

struct ckpt_reader {
    char path[CKPT_PATH_MAX];
    hid_t file;
    ckpt_file_info info;
};

static sl_status read_root_locked(ckpt_reader *r) {
    int64_t version = 0;
    const char *p = r->path;
    char what[CKPT_PATH_MAX + 32];
    snprintf(what, sizeof what, "checkpoint file %s (root)", p);
    SL_TRY(h5io_attr_read_i64_locked(r->file, what, "version", &version));
    if (version != CKPT_FILE_FORMAT_VERSION)
        return sl_errorf(SL_ERR_FORMAT,
                         "checkpoint file %s has format version %" PRId64 "; this shardlm reads "
                         "version %d",
                         p, version, CKPT_FILE_FORMAT_VERSION);
    struct {
        const char *name;
        int *dst;
    } ints[] = {{"rank", &r->info.rank},
                {"world", &r->info.world},
                {"shard_rank", &r->info.shard_rank},
                {"shard_size", &r->info.shard_size},
                {"replicate_rank", &r->info.replicate_rank},
                {"replicate_size", &r->info.replicate_size}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int64_t v = 0;
        SL_TRY(h5io_attr_read_i64_locked(r->file, what, ints[i].name, &v));
        if (v < 0 || v > (1 << 30))
            return sl_errorf(SL_ERR_FORMAT, "checkpoint file %s: attribute %s = %" PRId64 " is out of range",
                             p, ints[i].name, v);
        *ints[i].dst = (int)v;
    }
    SL_TRY(h5io_attr_read_i64_locked(r->file, what, "step", &r->info.step));
    SL_TRY(h5io_attr_read_str_locked(r->file, what, "fsdp_mode", r->info.fsdp_mode, sizeof r->info.fsdp_mode));
    return SL_OK;
}

sl_status ckpt_reader_open(const char *path, ckpt_reader **out) {
    *out = NULL;
    if (!fs_exists(path))
        return sl_errorf(SL_ERR_IO, "checkpoint rank file %s is missing", path);
    char format[64];
    SL_TRY(h5io_read_format(path, format, sizeof format));
    if (strcmp(format, CKPT_FILE_FORMAT_NAME) != 0)
        return sl_errorf(SL_ERR_FORMAT, "%s is not a checkpoint rank file (format \"%s\", expected \"%s\")",
                         path, format, CKPT_FILE_FORMAT_NAME);
    ckpt_reader *r = calloc(1, sizeof *r);
    SL_CHECK_ALLOC(r, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    h5io_lock();
    r->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    sl_status st = r->file < 0 ? sl_errorf(SL_ERR_FORMAT, "cannot open checkpoint rank file %s", path)
                               : read_root_locked(r);
    h5io_unlock();
    if (st != SL_OK) {
        ckpt_reader_close(r);
        return st;
    }
    *out = r;
    return SL_OK;
}

void ckpt_reader_close(ckpt_reader *r) {
    if (!r)
        return;
    if (r->file >= 0) {
        h5io_lock();
        H5Fclose(r->file);
        h5io_unlock();
    }
    free(r);
}

const ckpt_file_info *ckpt_reader_info(const ckpt_reader *r) { return &r->info; }
const char *ckpt_reader_path(const ckpt_reader *r) { return r->path; }

sl_status ckpt_reader_n_units(ckpt_reader *r, const char *part, int *n) {
    *n = 0;
    char gpath[160];
    snprintf(gpath, sizeof gpath, "/%s", part);
    h5io_lock();
    sl_status st = SL_OK;
    if (H5Lexists(r->file, gpath, H5P_DEFAULT) > 0) {
        H5G_info_t gi;
        hid_t g = H5Gopen2(r->file, gpath, H5P_DEFAULT);
        if (g < 0 || H5Gget_info(g, &gi) < 0)
            st = sl_errorf(SL_ERR_FORMAT, "checkpoint file %s: cannot list group %s", r->path, gpath);
        else
            *n = (int)gi.nlinks;
        if (g >= 0)
            H5Gclose(g);
    }
    h5io_unlock();
    return st;
}

static sl_status range_locked(ckpt_reader *r, const char *gpath, ckpt_range *out) {
    if (H5Lexists(r->file, gpath, H5P_DEFAULT) <= 0)
        return sl_errorf(SL_ERR_FORMAT, "checkpoint file %s has no group %s", r->path, gpath);
    hid_t g = H5Gopen2(r->file, gpath, H5P_DEFAULT);
    SL_CHECK_HDF5(g);
    char what[CKPT_PATH_MAX + 64];
    snprintf(what, sizeof what, "checkpoint file %s: group %s", r->path, gpath);
    sl_status st = h5io_attr_read_i64_locked(g, what, "start", &out->start);
    if (st == SL_OK)
        st = h5io_attr_read_i64_locked(g, what, "len", &out->len);
    if (st == SL_OK)
        st = h5io_attr_read_i64_locked(g, what, "valid", &out->valid);
    if (st == SL_OK)
        st = h5io_attr_read_i64_locked(g, what, "numel", &out->numel);
    H5Gclose(g);
    SL_TRY(st);
    if (out->start < 0 || out->len <= 0 || out->valid < 0 || out->valid > out->len || out->numel < 0 ||
        (out->valid > 0 && out->start + out->valid > out->numel))
        return sl_errorf(SL_ERR_FORMAT,
                         "checkpoint file %s: %s has inconsistent range start %" PRId64 ", len %" PRId64
                         ", valid %" PRId64 ", numel %" PRId64,
                         r->path, gpath, out->start, out->len, out->valid, out->numel);
    return SL_OK;
}

sl_status ckpt_reader_range(ckpt_reader *r, const char *part, int unit, ckpt_range *out) {
    char gpath[160];
    unit_group_name(gpath, sizeof gpath, part, unit);
    h5io_lock();
    sl_status st = range_locked(r, gpath, out);
    h5io_unlock();
    return st;
}

bool ckpt_reader_has(ckpt_reader *r, const char *part, int unit, const char *name) {
    char dpath[192];
    snprintf(dpath, sizeof dpath, "/%s/%05d/%s", part, unit, name);
    char gpath[160];
    unit_group_name(gpath, sizeof gpath, part, unit);
    h5io_lock();
    bool has = H5Lexists(r->file, gpath, H5P_DEFAULT) > 0 && H5Lexists(r->file, dpath, H5P_DEFAULT) > 0;
    h5io_unlock();
    return has;
}

static sl_status read_locked(ckpt_reader *r, const char *dpath, int64_t len, float *dst) {
    hid_t d = H5Dopen2(r->file, dpath, H5P_DEFAULT);
    if (d < 0)
        return sl_errorf(SL_ERR_FORMAT, "checkpoint file %s has no dataset %s", r->path, dpath);
    sl_status st = SL_OK;
    hid_t sp = H5Dget_space(d);
    hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    if (sp >= 0)
        H5Sclose(sp);
    hid_t t = H5Dget_type(d);
    bool f32 = t >= 0 && H5Tequal(t, H5T_IEEE_F32LE) > 0;
    if (t >= 0)
        H5Tclose(t);
    if (n != (hssize_t)len || !f32)
        st = sl_errorf(SL_ERR_FORMAT,
                       "checkpoint file %s: dataset %s holds %lld elements%s, its group's len is %" PRId64,
                       r->path, dpath, (long long)n, f32 ? "" : " (not float32)", len);
    if (st == SL_OK && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        st = sl_errorf(SL_ERR_FORMAT,
                       "checkpoint file %s: dataset %s cannot be read: a chunk fails its Fletcher32 "
                       "checksum or the file is truncated; the file is corrupted, resume from another "
                       "checkpoint",
                       r->path, dpath);
    uint64_t want = 0;
    if (st == SL_OK) {
        char what[CKPT_PATH_MAX + 64];
        snprintf(what, sizeof what, "checkpoint file %s: dataset %s", r->path, dpath);
        st = h5io_attr_read_u64_locked(d, what, "xxh3", &want);
    }
    if (st == SL_OK) {
        uint64_t got = fs_hash64(dst, (size_t)len * sizeof(float));
        if (got != want)
            st = sl_errorf(SL_ERR_FORMAT,
                           "checkpoint file %s: dataset %s has XXH3 %016" PRIx64 ", the stored hash is "
                           "%016" PRIx64 "; the file is corrupted, resume from another checkpoint",
                           r->path, dpath, got, want);
    }
    H5Dclose(d);
    return st;
}

sl_status ckpt_reader_read(ckpt_reader *r, const char *part, int unit, const char *name, float *dst) {
    ckpt_range rg;
    SL_TRY(ckpt_reader_range(r, part, unit, &rg));
    char dpath[192];
    snprintf(dpath, sizeof dpath, "/%s/%05d/%s", part, unit, name);
    h5io_lock();
    sl_status st = read_locked(r, dpath, rg.len, dst);
    h5io_unlock();
    return st;
}
