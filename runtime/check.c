#include "runtime/check.h"

#include <hdf5.h>
#include <mpi.h>
#include <string.h>
#include <zstd.h>

sl_status sl_check_mpi_fail(const char *file, int line, int rc, const char *call) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        strcpy(msg, "unknown MPI error");
    return sl_errorf_at(file, line, SL_ERR_COMM, "%s failed: %s (MPI error %d)", call, msg, rc);
}

/* HDF5 keeps an error stack per thread; the innermost entry has the most
 * specific description (e.g. "Fletcher32 checksum failed"). */
typedef struct {
    char text[512];
} hdf5_err_walk;

static herr_t hdf5_walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    hdf5_err_walk *w = data;
    if (n == 0 || w->text[0] == 0) {
        const char *d = e->desc ? e->desc : "";
        snprintf(w->text, sizeof w->text, "%s (in %s)", d, e->func_name ? e->func_name : "?");
    }
    return 0;
}

sl_status sl_check_hdf5_fail(const char *file, int line, const char *call) {
    hdf5_err_walk w = {{0}};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, hdf5_walk_cb, &w);
    H5Eclear2(H5E_DEFAULT);
    return sl_errorf_at(file, line, SL_ERR_FORMAT, "%s failed: %s", call,
                        w.text[0] ? w.text : "HDF5 error");
}

int sl_zstd_is_error(size_t rc) { return ZSTD_isError(rc) ? 1 : 0; }

sl_status sl_check_zstd_fail(const char *file, int line, size_t rc, const char *call) {
    return sl_errorf_at(file, line, SL_ERR_FORMAT, "%s failed: %s", call, ZSTD_getErrorName(rc));
}
