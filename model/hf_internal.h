/* model/hf_internal.h: what hf.c (config.json, whole-model load/save,
 * import/export) and hf_stream.c (ranged reads of a rank's shards, the
 * streamed and sharded export) share. Nothing outside model/hf*.c includes
 * this header; the public interfaces are hf.h and hf_stream.h.
 *
 * defines: PATH_CAP, named, hf_config_json, hf_write_text, hf_transpose_raw,
 *          hf_to_f32, hf_from_f32, hf_file_shape, hf_check_tensor,
 *          hf_find_param, hf_check_extras, hf_detect_prefix, hf_cmp_named,
 *          hf_reader_open_as, hf_file_name, hf_write_prefix
 */
#ifndef SL_MODEL_HF_INTERNAL_H
#define SL_MODEL_HF_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/hf_stream.h"
#include "model/layout.h"
#include "runtime/safetensors.h"
#include "runtime/status.h"

#define PATH_CAP 4096

/* A parameter with its name in a file (prefix + hf_name, or its shardlm name). */
typedef struct {
    const model_param *p;
    char name[2 * MODEL_NAME_MAX];
} named;

/* p's name in a file: prefix + hf_name (hf; the score head never takes the
 * prefix: transformers' *ForSequenceClassification keeps "score.weight"
 * beside "transformer.*" / "model.*"), or its shardlm name. */
void hf_file_name(const model_param *p, bool hf, const char *prefix, char *out, size_t cap);
/* The prefix an export writes for l: GPT-2 score models always
 * "transformer." (GPT2ForSequenceClassification's state dict), else given. */
const char *hf_write_prefix(const model_layout *l, const char *given);

/* config.json text of c (caller frees), NULL when out of memory. */
char *hf_config_json(const cfg_model *c);
sl_status hf_write_text(const char *dir, const char *name, const char *text);
/* dst (c, r) = src (r, c)^T for elements of esz bytes. */
void hf_transpose_raw(void *dst, const void *src, int64_t r, int64_t c, size_t esz);
/* n elements of dt (F32, BF16, F16) to and from fp32. */
void hf_to_f32(float *dst, const void *src, sl_dtype dt, size_t n);
void hf_from_f32(void *dst, const float *src, sl_dtype dt, size_t n);
/* Expected file shape of parameter p: HF orientation (hf) or shardlm's. */
void hf_file_shape(const model_param *p, bool hf, int64_t shape[2]);
/* t has p's file shape and a float dtype; errors name file and tensor. */
sl_status hf_check_tensor(const safetensors_tensor *t, const model_param *p, bool hf, const char *file);
/* p in ix under prefix + hf_name (hf) or its shardlm name; NULL when absent. */
const safetensors_tensor *hf_find_param(const safetensors_index *ix, const model_param *p, bool hf,
                                        const char *prefix);
/* Every tensor of ix is a parameter, a tied duplicate or skippable. */
sl_status hf_check_extras(const safetensors_index *ix, const model_layout *l, bool hf, const char *prefix,
                          const char *dir);
/* GPT-2's "transformer." prefix when the files use it, else "". */
sl_status hf_detect_prefix(const safetensors_index *ix, const model_layout *l, char *prefix, size_t cap);
/* qsort order of named by name (the reference writer's order for one dtype). */
int hf_cmp_named(const void *a, const void *b);
/* hf_reader_open with the folder kind given: hf (a Hugging Face folder) or a
 * shardlm model folder. */
sl_status hf_reader_open_as(const char *dir, const model_layout *l, bool hf, hf_reader **out);

#endif
