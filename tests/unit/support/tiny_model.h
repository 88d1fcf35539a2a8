/* tests/unit/support/tiny_model.h: the tiny models the model tests build.
 *
 * defines: tiny_model_dims, tiny_model_config, tiny_model_params
 *
 * Shared by the CPU unit tests (tests/unit) and the GPU-vs-CPU tests
 * (tests/gpu/support links it). Does not: finalize the config, create the
 * layout or allocate anything (the caller owns every buffer).
 */
#pragma once

#include <stdint.h>

#include "model/layout.h"
#include "runtime/config.h"
#include "runtime/status.h"

/* What differs between the tests' tiny models; n_kv_head and d_ff apply to
 * llama only. */
typedef struct {
    int n_layer, d_model, n_head, vocab_size, max_seq_len;
    int n_kv_head, d_ff; /* llama-like */
    int seq_len;
    double init_std;
} tiny_model_dims;

/* config_defaults, then d; llama-like archs: untied head, rope_theta 10000; gpt2: tied
 * head, n_kv_head and d_ff 0 (the defaults the config derives). Not
 * finalized (the caller may change more first). */
void tiny_model_config(sl_config *cfg, int arch, const tiny_model_dims *d);

/* Fills params (total_numel floats, units back to back) with
 * model_init_unit_range(seed), then perturbs the norm weights and biases and
 * the linear biases (init to exactly 1 and 0) by 0.1 x N(0, 1) from the test
 * rng stream 7, element e of param i drawn at i * stride + e, so that a
 * misplaced or skipped norm or bias shows. Returns the first error. */
sl_status tiny_model_params(const model_layout *l, uint64_t seed, int64_t stride, float *params);
