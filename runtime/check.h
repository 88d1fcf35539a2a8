/* runtime/check.h: one macro family that turns the return codes of external
 * libraries into sl_status with the library's own error string.
 *
 * defines: SL_CHECK_MPI, SL_CHECK_HDF5, SL_CHECK_ZSTD, SL_CHECK_ALLOC
 *          (CUDA, cuBLASLt and NCCL are in kernels/cuda/cuda_check.h, built
 *          only with CUDA)
 *
 * Each macro evaluates the call once; on failure it records
 * "<call> failed: <library message>" at the caller's file:line and returns
 * from the enclosing function with the mapped status.
 */
#ifndef SL_RUNTIME_CHECK_H
#define SL_RUNTIME_CHECK_H

#include <stddef.h>

#include "runtime/status.h"

sl_status sl_check_mpi_fail(const char *file, int line, int rc, const char *call);
sl_status sl_check_hdf5_fail(const char *file, int line, const char *call);
sl_status sl_check_zstd_fail(const char *file, int line, size_t rc, const char *call);
int sl_zstd_is_error(size_t rc);

/* MPI calls return MPI_SUCCESS (0) on success. */
#define SL_CHECK_MPI(call)                                                    \
    do {                                                                      \
        int sl_mpi_rc_ = (call);                                              \
        if (sl_mpi_rc_ != 0)                                                  \
            return sl_check_mpi_fail(__FILE__, __LINE__, sl_mpi_rc_, #call);  \
    } while (0)

/* HDF5 calls return a negative herr_t or hid_t on failure. */
#define SL_CHECK_HDF5(call)                                                   \
    do {                                                                      \
        if ((long long)(call) < 0)                                            \
            return sl_check_hdf5_fail(__FILE__, __LINE__, #call);             \
    } while (0)

/* zstd calls return a size_t that ZSTD_isError() classifies. */
#define SL_CHECK_ZSTD(call)                                                   \
    do {                                                                      \
        size_t sl_zstd_rc_ = (call);                                          \
        if (sl_zstd_is_error(sl_zstd_rc_))                                    \
            return sl_check_zstd_fail(__FILE__, __LINE__, sl_zstd_rc_, #call);\
    } while (0)

#define SL_CHECK_ALLOC(ptr, bytes)                                            \
    do {                                                                      \
        if ((ptr) == NULL)                                                    \
            return sl_errorf_at(__FILE__, __LINE__, SL_ERR_NOMEM,             \
                                "out of memory allocating %zu bytes",         \
                                (size_t)(bytes));                             \
    } while (0)

#endif
