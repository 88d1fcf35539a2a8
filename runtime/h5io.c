/* runtime/h5io.c: HDF5 lock, the zstd filter (32015) and its registration.
 * With -DSHARDLM_H5Z_PLUGIN this file alone builds the dynamically loaded
 * HDF5 plugin (no lock, no sl_status: only the filter and the two H5PL entry
 * points). */
#include "runtime/h5io.h"

#include <H5PLextern.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* Compress (write) or decompress (read, H5Z_FLAG_REVERSE) one chunk in
 * place. Returns the new byte count, 0 on failure (HDF5's convention; HDF5
 * then reports "filter returned failure"). Buffers are HDF5's, so they are
 * allocated and freed with H5allocate_memory / H5free_memory. */
static size_t h5io_zstd_filter(unsigned int flags, size_t cd_nelmts, const unsigned int cd_values[],
                               size_t nbytes, size_t *buf_size, void **buf) {
    if (flags & H5Z_FLAG_REVERSE) {
        unsigned long long size = ZSTD_getFrameContentSize(*buf, nbytes);
        if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
            return 0;
        void *out = H5allocate_memory(size ? (size_t)size : 1, 0);
        if (!out)
            return 0;
        size_t got = ZSTD_decompress(out, (size_t)size, *buf, nbytes);
        if (ZSTD_isError(got) || got != size) {
            H5free_memory(out);
            return 0;
        }
        H5free_memory(*buf);
        *buf = out;
        *buf_size = (size_t)size;
        return got;
    }
    int level = cd_nelmts > 0 ? (int)cd_values[0] : ZSTD_CLEVEL_DEFAULT;
    size_t bound = ZSTD_compressBound(nbytes);
    void *out = H5allocate_memory(bound, 0);
    if (!out)
        return 0;
    size_t got = ZSTD_compress(out, bound, *buf, nbytes, level);
    if (ZSTD_isError(got)) {
        H5free_memory(out);
        return 0;
    }
    H5free_memory(*buf);
    *buf = out;
    *buf_size = bound;
    return got;
}

const H5Z_class2_t h5io_zstd_class[1] = {{
    .version = H5Z_CLASS_T_VERS,
    .id = (H5Z_filter_t)H5IO_FILTER_ZSTD,
    .encoder_present = 1,
    .decoder_present = 1,
    .name = "Zstandard compression: http://www.zstd.net",
    .can_apply = NULL,
    .set_local = NULL,
    .filter = h5io_zstd_filter,
}};

#ifdef SHARDLM_H5Z_PLUGIN

H5PL_type_t H5PLget_plugin_type(void) { return H5PL_TYPE_FILTER; }
const void *H5PLget_plugin_info(void) { return h5io_zstd_class; }

#else

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#include "runtime/check.h"

/* Process-wide because libhdf5's own state is (see the header). */
static pthread_mutex_t h5io_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t h5io_once = PTHREAD_ONCE_INIT;
static herr_t h5io_init_rc = -1;

static void h5io_init_once(void) {
    pthread_mutex_lock(&h5io_mutex);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    h5io_init_rc = H5Zfilter_avail(H5IO_FILTER_ZSTD) > 0 ? 0 : H5Zregister(h5io_zstd_class);
    pthread_mutex_unlock(&h5io_mutex);
}

sl_status h5io_init(void) {
    pthread_once(&h5io_once, h5io_init_once);
    if (h5io_init_rc < 0)
        return sl_errorf(SL_ERR_INTERNAL,
                         "could not register the zstd HDF5 filter (id %d) with the HDF5 library",
                         H5IO_FILTER_ZSTD);
    return SL_OK;
}

void h5io_lock(void) {
    pthread_mutex_lock(&h5io_mutex);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5io_unlock(void) { pthread_mutex_unlock(&h5io_mutex); }

/* ---- scalar attributes (caller holds the lock) ---- */

static sl_status attr_write_scalar_locked(hid_t loc, const char *name, hid_t file_type,
                                          hid_t mem_type, const void *v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    SL_CHECK_HDF5(sp);
    hid_t a = H5Acreate2(loc, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(sp);
    SL_CHECK_HDF5(a);
    herr_t rc = H5Awrite(a, mem_type, v);
    H5Aclose(a);
    SL_CHECK_HDF5(rc);
    return SL_OK;
}

sl_status h5io_attr_write_i64_locked(hid_t loc, const char *name, int64_t v) {
    return attr_write_scalar_locked(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

sl_status h5io_attr_write_u64_locked(hid_t loc, const char *name, uint64_t v) {
    return attr_write_scalar_locked(loc, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}

sl_status h5io_attr_write_str_locked(hid_t loc, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    SL_CHECK_HDF5(t);
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return sl_check_hdf5_fail(__FILE__, __LINE__, "H5Tset_size");
    }
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp < 0 ? -1 : H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, t, &v);
    if (a >= 0)
        H5Aclose(a);
    if (sp >= 0)
        H5Sclose(sp);
    H5Tclose(t);
    SL_CHECK_HDF5(rc);
    return SL_OK;
}

static sl_status attr_read_int_locked(hid_t loc, const char *what, const char *name, hid_t mem_type,
                                      void *v) {
    if (H5Aexists(loc, name) <= 0)
        return sl_errorf(SL_ERR_FORMAT, "%s lacks attribute \"%s\"", what, name);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    SL_CHECK_HDF5(a);
    herr_t rc = H5Aread(a, mem_type, v);
    H5Aclose(a);
    if (rc < 0)
        return sl_errorf(SL_ERR_FORMAT, "%s: attribute \"%s\" is not an integer", what, name);
    return SL_OK;
}

sl_status h5io_attr_read_i64_locked(hid_t loc, const char *what, const char *name, int64_t *v) {
    return attr_read_int_locked(loc, what, name, H5T_NATIVE_INT64, v);
}

sl_status h5io_attr_read_u64_locked(hid_t loc, const char *what, const char *name, uint64_t *v) {
    return attr_read_int_locked(loc, what, name, H5T_NATIVE_UINT64, v);
}

sl_status h5io_attr_read_str_locked(hid_t loc, const char *what, const char *name, char *out,
                                    size_t cap) {
    out[0] = 0;
    if (H5Aexists(loc, name) <= 0)
        return sl_errorf(SL_ERR_FORMAT, "%s lacks attribute \"%s\"", what, name);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    SL_CHECK_HDF5(a);
    hid_t ft = H5Aget_type(a);
    sl_status st = SL_OK;
    if (ft < 0 || H5Tget_class(ft) != H5T_STRING) {
        st = sl_errorf(SL_ERR_FORMAT, "%s: attribute \"%s\" is not a string", what, name);
    } else {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_cset(mt, H5Tget_cset(ft)); /* ASCII <-> UTF-8 does not convert */
        bool ok = false;
        if (H5Tis_variable_str(ft) > 0) {
            char *s = NULL;
            H5Tset_size(mt, H5T_VARIABLE);
            if (H5Aread(a, mt, &s) >= 0 && s) {
                snprintf(out, cap, "%s", s);
                H5free_memory(s);
                ok = true;
            }
        } else {
            size_t n = H5Tget_size(ft);
            char *s = calloc(n + 1, 1);
            H5Tset_size(mt, n + 1);
            if (s && H5Aread(a, mt, s) >= 0) {
                snprintf(out, cap, "%s", s);
                ok = true;
            }
            free(s);
        }
        H5Tclose(mt);
        if (!ok)
            st = sl_errorf(SL_ERR_FORMAT, "%s: cannot read attribute \"%s\"", what, name);
    }
    if (ft >= 0)
        H5Tclose(ft);
    H5Aclose(a);
    return st;
}

static sl_status read_format_locked(const char *path, char *out, size_t cap) {
    out[0] = 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        sl_check_hdf5_fail(__FILE__, __LINE__, "H5Fopen");
        return sl_error_wrapf(SL_ERR_FORMAT, "%s cannot be opened as HDF5 (missing, truncated or "
                              "another format)", path);
    }
    /* a file without a readable "format" string is simply of no known kind */
    if (H5Aexists(f, "format") > 0 && h5io_attr_read_str_locked(f, path, "format", out, cap) != SL_OK) {
        sl_error_clear();
        out[0] = 0;
    }
    H5Fclose(f);
    return SL_OK;
}

sl_status h5io_read_format(const char *path, char *out, size_t cap) {
    SL_TRY(h5io_init());
    h5io_lock();
    sl_status st = read_format_locked(path, out, cap);
    h5io_unlock();
    return st;
}

#endif
