/* launcher/checkpoint_internal.h: what the two halves of the checkpoint
 * module share: checkpoint.c (root, save, find) and checkpoint_load.c
 * (load with resharding, describe). Nothing outside launcher/checkpoint*.c
 * includes this header; the public interface and the on-disk layout are in
 * checkpoint.h.
 *
 * defines: CKPT_PATH_MAX, ckpt_part, ckpt_job_parts, ckpt_agree,
 *          ckpt_layout_hash, ckpt_config_json, ckpt_list_complete,
 *          ckpt_resolve_root
 *
 * Does not: touch any device or stream (the fsdp pointers in ckpt_part are
 * the job's, borrowed, not owned).
 */
#ifndef SL_LAUNCHER_CHECKPOINT_INTERNAL_H
#define SL_LAUNCHER_CHECKPOINT_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "train/checkpoint.h"

#define CKPT_PATH_MAX 1100

/* A trainable FSDP instance and the name of its part in the rank files
 * (borrowed from the job). */
typedef struct {
    const char *name;
    fsdp *fs;
    const model_layout *layout;
} ckpt_part;

/* The parts a job saves: the model unless it is a frozen LoRA base (that
 * is model.init_from, reloaded at setup), and the LoRA adapters. Returns
 * how many of out[] it filled. */
int ckpt_job_parts(train_job *j, ckpt_part out[2]);

/* Every rank learns whether any rank failed (collective). A failing rank
 * keeps its own message; the others get one naming the lowest failing
 * rank. Sets j->stop_agreed on failure. */
sl_status ckpt_agree(train_job *j, sl_status st, const char *what);

/* XXH3 of the parameter table (names, shapes, units, offsets) as 16 hex
 * digits. */
void ckpt_layout_hash(const model_layout *l, char out[17]);

/* The resolved config as a cJSON tree (caller deletes), NULL when out of
 * memory. */
cJSON *ckpt_config_json(const sl_config *cfg);

/* Complete checkpoints' steps under root, ascending; *steps freed by the
 * caller (NULL and *n = 0 when root does not exist). */
sl_status ckpt_list_complete(const char *root, int **steps, int *n);

/* Latest complete checkpoint under root into dir: `latest` if it names a
 * complete one, else the highest complete step folder; *found false when
 * there is none. */
sl_status ckpt_resolve_root(const char *root, char *dir, size_t cap, bool *found);

#endif
