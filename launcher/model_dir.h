/* launcher/model_dir.h: a whole model folder in memory, for the inference
 * commands (generate, eval).
 *
 * defines: model_dir_params, model_dir_open, model_dir_close
 *
 * Opens a shardlm model folder or a Hugging Face folder (model/hf.h decides
 * which) and loads every parameter, as fp32, into one host buffer in
 * model_local order (unit u at the prefix sum of unit sizes) -- what the CPU
 * backend, model_local_init and decode_create take as-is. Not sharded: each
 * process holds the whole model (4 bytes per parameter). Training does not
 * use this (FSDP loads only its shards).
 */
#ifndef SL_LAUNCHER_MODEL_DIR_H
#define SL_LAUNCHER_MODEL_DIR_H

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

#endif
