/* train/train_model.h: a model from any folder a user may name: a shardlm
 * model folder, a Hugging Face folder, or a checkpoint (a step folder or a
 * checkpoints folder, whose `latest` is taken). The inference commands
 * (eval, generate, export, lora merge) and model.init_from go through here.
 *
 * defines: train_model_config, train_model_open, train_model_is_checkpoint,
 *          train_model_export
 *
 * A checkpoint's model config is the resolved config in its meta.json; its
 * parameters are gathered from every rank file, whatever world size wrote
 * them (ckpt_read_params; one unit's shard staged at a time). A LoRA
 * checkpoint holds only the adapters: its base is reloaded from the
 * model.init_from it records and the adapters are merged in (W + s B A),
 * so the result is the fine-tuned model. Holds the whole model in host
 * memory (4 bytes per parameter), as model_dir_open does.
 *
 * Does not: train, shard or write anything.
 */
#ifndef SL_TRAIN_TRAIN_MODEL_H
#define SL_TRAIN_TRAIN_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "model/model_dir.h"
#include "runtime/config.h"
#include "runtime/status.h"

/* Whether path is a checkpoint; *step_dir (cap bytes) the step folder. */
bool train_model_is_checkpoint(const char *path, char *step_dir, size_t cap);
/* The model section (and, from a checkpoint or shardlm folder, data.*) of
 * path into cfg (defaults first), finalized. */
sl_status train_model_config(const char *path, sl_config *cfg);
/* Opens path as model_dir_open does (out->cfg, layout, fp32 params). */
sl_status train_model_open(const char *path, model_dir_params *out);

/* Writes path (any kind above) as a Hugging Face folder out (fp32
 * config.json + model.safetensors), with the tokenizer file its config
 * names (data.tokenizer) copied beside it. */
sl_status train_model_export(const char *path, const char *out);

#endif
