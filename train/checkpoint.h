/* launcher/checkpoint.h: checkpoints of the training job: save, find,
 * resume with resharding, describe (DESIGN section 9, README "Checkpoints").
 *
 * defines: ckpt_root, ckpt_save, ckpt_find_resume, ckpt_load, ckpt_describe,
 *          ckpt_looks_like
 *
 * Layout of <checkpoint.dir> (default <run_dir>/checkpoints):
 *   step_NNNNNNNN/rank_RRRRR.h5   one per rank (data/ckpt_file.h): its shard
 *                                 range of every unit: params (the fp32
 *                                 master on the CPU backend), Adam m and v;
 *                                 part "model", and "lora" for the adapters
 *                                 (a frozen LoRA base is not saved: it is
 *                                 model.init_from, reloaded at setup)
 *   step_NNNNNNNN/meta.json       written last: format, step, skipped steps,
 *                                 world/mode/shard sizes, the rank files with
 *                                 their byte sizes, loader state, config
 *                                 hashes and the resolved config, layout
 *                                 hashes, tokenizer hash, version, git hash
 *   latest                        "step_NNNNNNNN\n", replaced atomically
 *
 * Save protocol (collective; a crash at any point leaves either the
 * previous checkpoint or the new one as latest):
 *   1. rank 0 removes stale step_*.tmp folders and creates step_N.tmp/;
 *   2. every rank writes rank_R.h5.tmp, fsyncs it, renames it to rank_R.h5;
 *   3. the ranks agree that every file is in place (an all-reduce that also
 *      carries failures, so no rank is left waiting);
 *   4. rank 0 writes meta.json atomically, fsyncs the folder, renames
 *      step_N.tmp to step_N, replaces `latest`, and deletes all but the last
 *      checkpoint.keep complete checkpoints.
 * A step folder without meta.json, or any *.tmp, is incomplete and ignored.
 *
 * Resume: meta.json is checked against the job: the layout hash and the
 * model (and lora) config sections must match (an error names each key
 * that differs); optim, data and batch keys may differ (a warning lists
 * them); the data's tokenizer hash must equal the checkpoint's. Every rank
 * file must exist with the byte size meta.json records. At the same world
 * size and mode each rank reads its own file and training continues
 * bitwise identically; otherwise each rank reads, for every unit, the old
 * shards that overlap its new range (old ranges from the files' start/len/
 * valid attributes) and copies the overlap: resharding across world sizes
 * and FSDP modes. Then the step, the skipped-step count and the loader
 * state (epoch, next global sample: valid at any data-parallel size) are
 * restored; AdamW's bias correction and the LR schedule follow from the step.
 * Gradients are not saved: a checkpoint is taken at a step boundary.
 *
 * Shards are read and written in host memory (the CPU backend); every rank
 * must see the same checkpoint folder (a shared filesystem across nodes).
 */
#ifndef SL_LAUNCHER_CHECKPOINT_H
#define SL_LAUNCHER_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "train/train.h"

#define CKPT_META_FORMAT "shardlm-checkpoint-meta"
#define CKPT_META_VERSION 1

/* <checkpoint.dir>, or <run_dir>/checkpoints when it is empty. */
sl_status ckpt_root(const sl_config *cfg, char *out, size_t cap);

/* Saves the job's state at j->step (collective); sets j->saved_step. */
sl_status ckpt_save(train_job *j);

/* Resolves checkpoint.resume (collective: rank 0 decides, the others
 * follow): "none" -> *found false; "auto" -> the checkpoint `latest` names
 * if it is complete, else the complete step folder with the highest step,
 * else *found false; a path -> that step folder (or the latest complete
 * one of a checkpoints folder), an error when there is none. */
sl_status ckpt_find_resume(train_job *j, char *dir, size_t cap, bool *found);

/* Loads the step folder dir into the job (collective): checks, shards,
 * step, loader state. Call after setup built the fsdp instances and the
 * loader, before the first step. */
sl_status ckpt_load(train_job *j, const char *dir);

/* shardlm inspect: path is a step folder, a checkpoints folder (lists the
 * checkpoints, describes the latest) or a rank file. Prints the metadata
 * and reads every dataset, verifying checksums and hashes. */
sl_status ckpt_describe(const char *path);
/* Whether path is a folder ckpt_describe knows (has meta.json, `latest` or
 * step_* folders). */
bool ckpt_looks_like(const char *path);

#endif
