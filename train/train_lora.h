/* train/train_lora.h: the LoRA part of the training job.
 *
 * defines: train_lora_setup, train_lora_export, train_lora_teardown
 *
 * With lora.enabled the job's base fsdp is created frozen (fsdp_opts.frozen:
 * parameter shards only) and train_lora_setup adds, on the same comms, a
 * trainable fsdp over the adapter layout (model/lora.h), initialized from
 * the seed (B = 0) or loaded from the PEFT folder lora.init_from (whose
 * adapter_config.json then sets lora.r/alpha/dropout/targets/rslora), as
 * the job's second parameter group (train/params.h): the step drives both
 * groups alike, and only the adapters are trainable, so the gradient norm,
 * clipping and AdamW cover them alone. The job attaches the spec to the
 * model and hangs the adapters' hooks on the base's. train_lora_export writes the PEFT adapter folder (rank 0; the
 * gather is collective). `shardlm lora merge` turns base + adapter into a
 * full model.
 */
#ifndef SL_TRAIN_TRAIN_LORA_H
#define SL_TRAIN_TRAIN_LORA_H

#include "train/train.h"

/* After the base fsdp exists and holds its weights and before the model is
 * created: sets j->lora, j->lora_fs and the job's group 1. base_opts: the base fsdp's options
 * (comms, plan, pool) reused for the adapters. */
sl_status train_lora_setup(train_job *j, const fsdp_opts *base_opts);
/* Gathers the adapters (collective) and writes dir as a PEFT adapter folder
 * on rank 0 (base_model_name_or_path = model.init_from). */
sl_status train_lora_export(train_job *j, const char *dir);
/* Frees what train_lora_setup made (NULLs are no-ops). */
void train_lora_teardown(train_job *j);

#endif
