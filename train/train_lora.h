/* launcher/train_lora.h: the LoRA part of the training job.
 *
 * defines: train_lora_setup, train_lora_export, train_lora_teardown
 *
 * With lora.enabled the job's base fsdp is created frozen (fsdp_opts.frozen:
 * parameter shards only) and train_lora_setup adds, on the same comms, a
 * trainable fsdp over the adapter layout (model/lora.h), initialized from
 * the seed (B = 0) or loaded from the PEFT folder lora.init_from (whose
 * adapter_config.json then sets lora.r/alpha/dropout/targets/rslora), joins
 * it to the base (fsdp_attach_adapter: one step drives both; gradient norm,
 * clipping and AdamW cover the adapters only) and attaches the spec to the
 * model. train_lora_export writes the PEFT adapter folder (rank 0; the
 * gather is collective). `shardlm lora merge` turns base + adapter into a
 * full model.
 */
#ifndef SL_LAUNCHER_TRAIN_LORA_H
#define SL_LAUNCHER_TRAIN_LORA_H

#include "train/train.h"

/* After the base fsdp exists and holds its weights and before the model is
 * created: sets j->lora and j->lora_fs. base_opts: the base fsdp's options
 * (comms, plan, pool) reused for the adapters. */
sl_status train_lora_setup(train_job *j, const fsdp_opts *base_opts);
/* Gathers the adapters (collective) and writes dir as a PEFT adapter folder
 * on rank 0 (base_model_name_or_path = model.init_from). */
sl_status train_lora_export(train_job *j, const char *dir);
/* Frees what train_lora_setup made (NULLs are no-ops). */
void train_lora_teardown(train_job *j);

#endif
