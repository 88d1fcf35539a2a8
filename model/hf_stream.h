/* model/hf_stream.h: model weights read and written a range at a time, so
 * that no process holds memory proportional to the whole model (DESIGN
 * section 6: "initial weights are read shard by shard from the safetensors
 * files, and export streams unit by unit").
 *
 * defines: hf_reader, hf_reader_open, hf_reader_range, hf_reader_info,
 *          hf_reader_close, hf_reader_set_seed, hf_writer, hf_writer_open, hf_writer_put_unit,
 *          hf_writer_close, hf_writer_abort, HF_INDEX_NAME
 *
 * Reading: a shardlm model folder or a Hugging Face folder (one
 * model.safetensors, or model.safetensors.index.json and its shards; every
 * tensor validated at open, as hf.h's loaders do). The files are mapped, not
 * read: hf_reader_range touches only the bytes of the elements asked for
 * (GPT-2's transposed Conv1D weights are read strided), converting
 * F32/BF16/F16 to fp32 element range by element range. A rank of an FSDP job
 * reads the [start, start + count) of every unit it owns and nothing else.
 *
 * Writing: a Hugging Face folder (config.json, the weights) filled unit by
 * unit: hf_writer_open plans every tensor's file and offset from the layout
 * (tensors sorted by name as hf_save sorts them, packed into files of at most
 * max_shard_bytes, the way transformers' save_pretrained shards: a tensor
 * that would overflow the current file starts the next one; one file is
 * model.safetensors, several are model-0000K-of-0000N.safetensors plus
 * model.safetensors.index.json with metadata.total_size and weight_map), and
 * hf_writer_put_unit converts one unit's parameters (fp32, shardlm
 * orientation) to the file dtype and orientation and writes them at their
 * offsets. Memory: one parameter's converted bytes at a time. A single file
 * is byte-identical to what hf_save writes for the same weights.
 *
 * Ownership: reader and writer borrow the layout, which must outlive them.
 */
#ifndef SL_MODEL_HF_STREAM_H
#define SL_MODEL_HF_STREAM_H

#include <stdint.h>

#include "model/hf.h"
#include "model/layout.h"
#include "runtime/status.h"

#define HF_INDEX_NAME "model.safetensors.index.json"

typedef struct hf_reader hf_reader;

/* Opens dir (a shardlm folder when it holds shardlm.json, else a Hugging
 * Face folder) for layout l: every parameter present with its shape, no
 * foreign tensor, a tied lm_head equal to the embeddings. */
sl_status hf_reader_open(const char *dir, const model_layout *l, hf_reader **out);
/* out[0 .. count) = elements [start, start + count) of unit `unit`'s flat
 * buffer (layout order), as fp32; start + count <= the unit's numel. */
sl_status hf_reader_range(hf_reader *r, int unit, int64_t start, int64_t count, float *out);
/* A causal-LM Hugging Face folder opened for a score layout (model.head =
 * score) lacks score.weight: the reader warns, drops lm_head.weight, and
 * hf_reader_range fills the score head with model_init_unit_range's
 * normal(0, init_std) under this seed (default 0; train passes train.seed),
 * as AutoModelForSequenceClassification.from_pretrained initializes it. */
void hf_reader_set_seed(hf_reader *r, uint64_t seed);
/* The file's dtype (of the first parameter) and GPT-2 name prefix. */
hf_info hf_reader_info(const hf_reader *r);
void hf_reader_close(hf_reader *r); /* NULL is a no-op */

typedef struct hf_writer hf_writer;

/* Creates dir with config.json and the planned weight files (temporary
 * names until close). dtype F32, BF16 or F16; prefix as hf_save's;
 * max_shard_bytes 0 = one file. */
sl_status hf_writer_open(const char *dir, const model_layout *l, sl_dtype dtype, const char *prefix,
                         uint64_t max_shard_bytes, hf_writer **out);
/* Writes every parameter of unit `unit` from full (the unit's numel fp32,
 * layout order). */
sl_status hf_writer_put_unit(hf_writer *w, int unit, const float *full);
/* Every unit must have been put: the files are renamed into place (and the
 * index written when there are several). Frees w, also on error. */
sl_status hf_writer_close(hf_writer *w);
/* Removes the temporary files; NULL is a no-op. */
void hf_writer_abort(hf_writer *w);

#endif
