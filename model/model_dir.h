/* model/model_dir.h: a whole model folder in memory, for the inference
 * commands (generate, eval).
 *
 * defines: model_dir_params, model_dir_open, model_dir_close, model_dir_upload
 *
 * Opens a shardlm model folder or a Hugging Face folder (model/hf.h decides
 * which) and loads every parameter, as fp32, into one host buffer in
 * model_local order (unit u at layout->units[u].offset) -- what the CPU
 * backend, model_local_init and decode_create take as-is. Not sharded: each
 * process holds the whole model (4 bytes per parameter). Training does not
 * use this (FSDP loads only its shards). model_dir_upload copies that buffer
 * into backend memory in the backend's act dtype (the GPU's bf16 copy).
 */
#ifndef SL_MODEL_MODEL_DIR_H
#define SL_MODEL_MODEL_DIR_H

#include <stddef.h>

#include "kernels/ops.h"
#include "model/layout.h"
#include "runtime/config.h"
#include "runtime/status.h"

typedef struct {
    sl_config cfg;         /* defaults + the folder's model section, finalized */
    model_layout *layout;  /* owned */
    float *params;         /* owned, layout->total_numel floats, host */
} model_dir_params;

/* On error everything is freed and the message names the folder. */
sl_status model_dir_open(const char *dir, model_dir_params *out);
void model_dir_close(model_dir_params *m);

/* *out = a new backend buffer (MEM_CATEGORY_PARAMS, *bytes bytes, owned by
 * the caller: backend_free(be, MEM_CATEGORY_PARAMS, *out, *bytes)) holding
 * m->params in be->act_dtype (ops_cast: round to nearest even for bf16),
 * same order. Staged through an fp32 backend buffer of at most 64 MiB;
 * returns after the backend has finished. On error *out is NULL and nothing
 * stays allocated. */
sl_status model_dir_upload(const model_dir_params *m, sl_backend *be, void **out, size_t *bytes);

#endif
