/* train/train_ckpt.h: the training job's checkpoints: a thin adapter that
 * builds ckpt/ckpt.h's parts, context and state from the job's fields and
 * applies what a resume returns. The protocol, format and resharding are
 * ckpt/ckpt.h's.
 *
 * defines: train_ckpt_save, train_ckpt_find_resume, train_ckpt_load, train_ckpt_resume,
 *          train_ckpt_layout_hash
 *
 * The parts of a job: "model" unless it is a frozen LoRA base (that is
 * model.init_from, reloaded at setup), and "lora" for the adapters; each
 * with its layout hash (train_ckpt_layout_hash). Recorded with them: step,
 * skipped steps, optimizer steps (j->optim_steps), the train loader's state
 * (none on synthetic data), the tokenizer hash. Every function is
 * collective over j->world and sets j->stop_agreed when the ranks agreed on
 * a failure.
 */
#ifndef SL_TRAIN_TRAIN_CKPT_H
#define SL_TRAIN_TRAIN_CKPT_H

#include <stdbool.h>
#include <stddef.h>

#include "ckpt/ckpt.h"
#include "model/layout.h"
#include "train/train.h"

/* Saves the job's state at j->step; sets j->saved_step. */
sl_status train_ckpt_save(train_job *j);
/* Resolves checkpoint.resume (ckpt_find_resume). */
sl_status train_ckpt_find_resume(train_job *j, char *dir, size_t cap, bool *found);
/* Loads the step folder dir into the job: shards of its parts, then step,
 * n_skipped, optim_steps, the train loader's state and saved_step. Call
 * after setup built the fsdp instances and the loader, before the first
 * step. */
sl_status train_ckpt_load(train_job *j, const char *dir);
/* Resume from dir (train_ckpt_load); a checkpoint that cannot be read
 * (truncated, missing or corrupt rank file) is refused with SL_ERR_INVALID
 * (exit 2), except that checkpoint.resume = auto falls back to the newest
 * older complete checkpoint, with a warning naming both. */
sl_status train_ckpt_resume(train_job *j, const char *dir);
/* XXH3 of the parameter table (units, names, shapes, offsets) as 16 hex
 * digits: a checkpoint's part is refused by a run whose hash differs. */
void train_ckpt_layout_hash(const model_layout *l, char out[17]);

#endif
