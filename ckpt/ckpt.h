/* ckpt/ckpt.h: checkpoints: save, find, resume with resharding, describe
 * (DESIGN section 9, README "Checkpoints" and "Checkpoint format"). Works on
 * a list of parts {name, sharded buffers, layout hash} and the few values a
 * checkpoint records (ckpt_state), never on a training job: train/train_ckpt.h
 * builds those from the job.
 *
 * defines: CKPT_META_FORMAT, CKPT_META_VERSION, CKPT_PATH_MAX, ckpt_part,
 *          ckpt_state, ckpt_ctx, ckpt_rank_file, ckpt_root, ckpt_step_path,
 *          ckpt_save, ckpt_write_rank_file, ckpt_commit, ckpt_agree,
 *          ckpt_find_resume, ckpt_find_previous, ckpt_load, ckpt_describe,
 *          ckpt_looks_like, ckpt_is_step_dir, ckpt_read_config, ckpt_read_params
 *
 * Layout of <checkpoint.dir> (default <run_dir>/checkpoints):
 *   step_NNNNNNNN/rank_RRRRR.h5   one per rank (ckpt/ckpt_file.h): its shard
 *                                 range of every unit of every part: params
 *                                 (the fp32 master on the CPU backend), Adam
 *                                 m and v; part "model", and "lora" for the
 *                                 adapters (a frozen LoRA base is not a part:
 *                                 it is model.init_from, reloaded at setup)
 *   step_NNNNNNNN/meta.json       written last: format, step, skipped steps,
 *                                 optimizer steps, world/mode/shard sizes, the
 *                                 rank files with their byte sizes, loader
 *                                 state, config hashes and the resolved
 *                                 config, layout hashes, tokenizer hash,
 *                                 version, git hash
 *   latest                        "step_NNNNNNNN\n", replaced atomically
 *
 * Save protocol (collective; a crash at any point leaves either the
 * previous checkpoint or the new one as latest):
 *   1. rank 0 removes stale step_*.tmp folders and creates step_N.tmp/;
 *   2. every rank writes rank_R.h5.tmp, fsyncs it, renames it to rank_R.h5
 *      (ckpt_write_rank_file);
 *   3. the ranks agree that every file is in place (an all-reduce that also
 *      carries failures, so no rank is left waiting);
 *   4. rank 0 writes meta.json atomically, fsyncs the folder, renames
 *      step_N.tmp to step_N, replaces `latest`, and deletes all but the last
 *      checkpoint.keep complete checkpoints (ckpt_commit), never the one
 *      just written (which `latest` names) nor, with checkpoint.keep_best,
 *      the one with the lowest eval loss (named by `best`).
 * A step folder without meta.json, or any *.tmp, is incomplete and ignored.
 *
 * Resume: meta.json is checked against the run: each part's layout hash and
 * the model (and lora) config sections must match (an error names each key
 * that differs); optim, data and batch keys may differ (a warning lists
 * them); the data's tokenizer hash must equal the checkpoint's. Every rank
 * file must exist with the byte size meta.json records. At the same world
 * size and mode each rank reads its own file and training continues
 * bitwise identically; otherwise each rank reads, for every unit, the old
 * shards that overlap its new range (old ranges from the files' start/len/
 * valid attributes) and copies the overlap: resharding across world sizes
 * and FSDP modes. The step, skipped-step count, optimizer step count and
 * loader state (epoch, next global sample: valid at any data-parallel size)
 * come back in a ckpt_state for the caller to apply. Gradients are not
 * saved: a checkpoint is taken at a step boundary.
 *
 * Shards are read and written through host memory (fsdp_shard_read/_write),
 * so the files are the same whatever the backend; every rank must see the
 * same checkpoint folder (a shared filesystem across nodes).
 *
 * Does not: know the model (a part's layout hash and unit sizes are given),
 * the data loader (its state is two integers) or the job.
 */
#ifndef SL_CKPT_CKPT_H
#define SL_CKPT_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parallel/comm.h"
#include "parallel/fsdp.h"
#include "parallel/plan.h"
#include "runtime/config.h"
#include "runtime/status.h"

#define CKPT_META_FORMAT "shardlm-checkpoint-meta"
#define CKPT_META_VERSION 1
#define CKPT_PATH_MAX 1100

/* One trainable set of sharded buffers and its name in the rank files. All
 * pointers borrowed for the call. */
typedef struct {
    const char *name;          /* "model", "lora": the group in every rank file */
    fsdp *fs;                  /* its shards; may be NULL for ckpt_commit (meta.json only) */
    int n_units;               /* == fsdp_n_units(fs) */
    const int64_t *unit_numel; /* [n_units]: unpadded size N_u of each unit */
    const char *layout_hash;   /* identifies the parameter table (names, shapes,
                                * units, offsets), e.g. 16 hex digits; resume
                                * refuses a part whose hash differs */
} ckpt_part;

/* What a checkpoint records besides the shards. */
typedef struct {
    int64_t step;          /* last completed optimizer step */
    int64_t skipped_steps; /* steps skipped for non-finite values */
    int64_t optim_steps;   /* updates AdamW applied (its bias-correction step
                            * count: a skipped step does not advance it);
                            * meta.json without it loads as step - skipped */
    bool has_loader;       /* false: synthetic data (meta.json "loader": null) */
    int64_t loader_epoch;  /* the data loader's position: epoch and the first */
    int64_t loader_sample; /* sample of the next global batch */
    double eval_loss;      /* the eval loss at this step (meta.json "eval_loss",
                            * checkpoint.keep_best); NaN: none */
} ckpt_state;

/* Who saves or loads, and with which settings. Pointers borrowed. */
typedef struct {
    const sl_config *cfg;       /* checkpoint.dir/keep/resume, train.run_dir/steps,
                                 * lora.enabled, data.train (in messages), the
                                 * config hashes and resolved config of meta.json */
    comm *world;                /* every rank of the job, host memory; unused by
                                 * ckpt_write_rank_file and ckpt_commit */
    int rank, world_size;       /* this process in world */
    const parallel_plan *plan;  /* mode, shard/replicate ranks and sizes, global batch */
    const char *tokenizer_hash; /* of data.train's shards; "" on synthetic data */
    int kill_in_save_step;      /* test hook (SHARDLM_FAULT_KILL_IN_SAVE): rank 0
                                 * SIGKILLs itself after writing its rank file at
                                 * this step; -1 off */
    bool stop_agreed;           /* out: set when the ranks agreed on a failure, so
                                 * every rank returns the error (no MPI_Abort needed) */
    int failed_rank;            /* out, with stop_agreed: the lowest failing rank
                                 * (the one whose message is the error itself) */
} ckpt_ctx;

/* One rank's entry in meta.json's "files" list. */
typedef struct {
    int shard_rank, replicate_rank;
    int64_t bytes; /* size of rank_RRRRR.h5 */
} ckpt_rank_file;

/* <checkpoint.dir>, or <run_dir>/checkpoints when it is empty. */
sl_status ckpt_root(const sl_config *cfg, char *out, size_t cap);
/* "<root>/step_NNNNNNNN<suffix>" (suffix "", ".tmp"). */
sl_status ckpt_step_path(char *out, size_t cap, const char *root, int64_t step, const char *suffix);

/* Saves the parts and s at s->step (collective over c->world): the whole
 * protocol above. */
sl_status ckpt_save(ckpt_ctx *c, const ckpt_part *parts, int n_parts, const ckpt_state *s);

/* Step 2 (local): writes <dir>/rank_<c->rank>.h5 from this rank's shards of
 * the parts (root attributes from c->plan and step); *bytes = its size. */
sl_status ckpt_write_rank_file(const ckpt_ctx *c, const char *dir, const ckpt_part *parts, int n_parts,
                               int64_t step, int64_t *bytes);
/* Step 4 (local, rank 0): meta.json in tmp_dir (the folder step_N.tmp under
 * ckpt_root holding every rank file; files[c->world_size] their entries;
 * parts' names and layout hashes; s), then the rename to step_N, `latest`
 * and retention. A checkpoint of the same step already there is replaced. */
sl_status ckpt_commit(const ckpt_ctx *c, const char *tmp_dir, const ckpt_part *parts, int n_parts,
                      const ckpt_state *s, const ckpt_rank_file *files, double write_seconds);

/* Every rank learns whether any rank failed (collective): returns st on a
 * failing rank, on the others an error naming the lowest failing rank and
 * "could not <what>"; sets c->stop_agreed on failure. */
sl_status ckpt_agree(ckpt_ctx *c, sl_status st, const char *what);

/* Resolves checkpoint.resume (collective: rank 0 decides, the others
 * follow): "none" -> *found false; "auto" -> the checkpoint `latest` names
 * if it is complete, else the complete step folder with the highest step,
 * else *found false; a path -> that step folder (or the latest complete
 * one of a checkpoints folder), an error when there is none. */
sl_status ckpt_find_resume(ckpt_ctx *c, char *dir, size_t cap, bool *found);

/* After dir failed to load (corrupt, truncated, a missing rank file):
 * the newest complete checkpoint in the same folder with a lower step
 * (collective: rank 0 decides); *found false when there is none. */
sl_status ckpt_find_previous(ckpt_ctx *c, const char *failed, char *dir, size_t cap, bool *found);

/* Loads the step folder dir into the parts' shards (collective): checks
 * (config, layout hashes, tokenizer, rank files), reshards, and returns the
 * recorded state in *out. want_loader: the run reads data, so the
 * checkpoint must hold a loader state. *in_own_root: dir lies in this run's
 * checkpoint folder (the step is saved there already; a checkpoint from
 * elsewhere is saved again at the next save point). */
sl_status ckpt_load(ckpt_ctx *c, const char *dir, const ckpt_part *parts, int n_parts, bool want_loader,
                    ckpt_state *out, bool *in_own_root);

/* shardlm inspect: path is a step folder, a checkpoints folder (lists the
 * checkpoints, describes the latest) or a rank file. Prints the metadata
 * and reads every dataset, verifying checksums and hashes. */
sl_status ckpt_describe(const char *path);
/* Checkpoints as models (local, no comm; the inference commands and
 * model.init_from): whether path is a step folder (meta.json of this
 * format) or a checkpoints folder holding one, and which step folder it
 * means (a checkpoints folder: the one `latest` names). */
bool ckpt_is_step_dir(const char *path, char *step_dir, size_t cap);
/* The resolved config meta.json records, applied over cfg (defaults
 * first) and finalized. */
sl_status ckpt_read_config(const char *step_dir, sl_config *cfg);
/* The full parameters of part `name`, gathered from every rank file of the
 * step folder (any world size): unit u's unit_numel[u] floats to
 * out + unit_offset[u]. Rank files are checked as a resume checks them
 * (sizes, checksums); one unit's shard is staged at a time. */
sl_status ckpt_read_params(const char *step_dir, const char *name, int n_units, const int64_t *unit_numel,
                           const int64_t *unit_offset, float *out);

/* Whether path is a folder ckpt_describe knows (has meta.json, `latest` or
 * step_* folders). */
bool ckpt_looks_like(const char *path);

#endif
