/* kernels/device_info.h: what accelerators this process can see.
 *
 * defines: device_info, device_info_query, device_build_has_cuda
 *
 * In a build without CUDA, device_info_query reports zero devices and says
 * why in `note`. Does not select or initialize a device for compute (the
 * CUDA backend does that).
 */
#ifndef SL_KERNELS_DEVICE_INFO_H
#define SL_KERNELS_DEVICE_INFO_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    int count;
    char name0[256];       /* name of device 0, "" when none */
    size_t mem0_bytes;    /* total memory of device 0 */
    int cc_major, cc_minor;
    int runtime_version;  /* e.g. 13000; 0 without CUDA */
    int driver_version;
    int nccl_version;
    size_t cublaslt_version;
    char note[128];       /* why count is 0, when it is */
} device_info;

bool device_build_has_cuda(void);
void device_info_query(device_info *info);

#endif
