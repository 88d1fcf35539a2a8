/* kernels/device_info.h: what accelerators this process can see.
 *
 * defines: device_info, device_info_query, device_build_has_cuda,
 *          device_info_pick
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

/* The CUDA device for one rank under "one GPU per local rank": local_rank
 * when the rank sees at least local_world GPUs (mpirun -npernode); 0 when it
 * sees exactly one (per-rank binding: srun --gpus-per-task=1 or a
 * CUDA_VISIBLE_DEVICES per rank; two ranks that still share a GPU are then
 * refused by the NCCL setup, which compares PCI bus ids); -1 when it sees
 * none, or fewer than local_world but more than one (the caller refuses). */
int device_info_pick(const device_info *info, int local_rank, int local_world);

#endif
