/* train/train_check.h: what `shardlm train` checks before MPI starts (and
 * `shardlm config check` with it), so that a mistake costs no job launch,
 * exits 2 and is printed once.
 *
 * defines: train_check_opts, train_config_resolve, train_config_check,
 *          train_run_dir_prepare
 *
 * train_config_resolve: model.init_from (a model folder or a checkpoint,
 * train/train_model.h) sets model.*; a model.* key the user set that the
 * folder contradicts is an error naming both values (never silently
 * replaced); lora.init_from's adapter_config.json sets lora.* (r, alpha,
 * targets, dropout, rslora). Idempotent; train_job_setup calls it too.
 * train_config_check: the resolve, then the backend this machine can give
 * (train.backend = cuda without a GPU), the LoRA targets against the
 * architecture, data.tokenizer against the tokenizer hash recorded in the
 * shards of data.train, and the run directory rule (below).
 *
 * A run directory belongs to one run: a fresh run (checkpoint.resume =
 * none) into a train.run_dir that holds anything is refused with the ways
 * out (--resume auto, another run_dir, --overwrite). With --overwrite the
 * old folder is moved aside to <run_dir>.old-<UTC time> (never deleted) by
 * train_run_dir_prepare, which rank 0 calls.
 */
#ifndef SL_TRAIN_TRAIN_CHECK_H
#define SL_TRAIN_TRAIN_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/config.h"
#include "runtime/status.h"

typedef struct {
    bool run_dir;   /* apply the run directory rule (train; not config check) */
    bool overwrite; /* --overwrite: a non-empty run_dir is moved aside */
} train_check_opts;

sl_status train_config_resolve(sl_config *cfg);
sl_status train_config_check(sl_config *cfg, const train_check_opts *o);
/* Rank 0, with --overwrite on a fresh run: moves a non-empty run_dir aside;
 * moved (cap bytes) receives the new name ("" when nothing was moved). */
sl_status train_run_dir_prepare(const sl_config *cfg, bool overwrite, char *moved, size_t cap);

#endif
