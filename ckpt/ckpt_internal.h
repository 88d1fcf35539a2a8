/* ckpt/ckpt_internal.h: what the files of the checkpoint module share:
 * ckpt_save.c (root, save, commit, find), ckpt_load.c (load with
 * resharding, meta.json reading) and ckpt_describe.c (shardlm inspect).
 * Nothing outside ckpt/ includes this header; the public interface and the
 * on-disk layout are in ckpt.h.
 *
 * defines: ckpt_config_json, ckpt_list_complete, ckpt_resolve_root,
 *          ckpt_meta_read, ckpt_meta_int, ckpt_meta_str, ckpt_old_run,
 *          ckpt_old_run_open, ckpt_old_run_close
 *
 * Does not: touch any device or stream.
 */
#ifndef SL_CKPT_CKPT_INTERNAL_H
#define SL_CKPT_CKPT_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ckpt/ckpt.h"
#include "ckpt/ckpt_file.h"

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

/* <dir>/meta.json parsed, its format and version checked (caller deletes). */
sl_status ckpt_meta_read(const char *dir, cJSON **out);
/* Number o[key] into *v; an error naming <dir>/meta.json and the key. */
sl_status ckpt_meta_int(const cJSON *o, const char *key, const char *dir, int64_t *v);
/* String o[key], "" when absent. */
const char *ckpt_meta_str(const cJSON *o, const char *key);

/* The old run's rank files: shard rank per rank, every file's size checked. */
typedef struct {
    int world, shard_size;
    int *shard_rank;       /* [world] */
    ckpt_reader **readers; /* [world], opened on demand */
    const char *dir;
    int64_t step;
} ckpt_old_run;

/* From meta.json: every rank file present with its recorded size. Close it
 * also on error. */
sl_status ckpt_old_run_open(const cJSON *meta, const char *dir, ckpt_old_run *o);
void ckpt_old_run_close(ckpt_old_run *o);

#endif
