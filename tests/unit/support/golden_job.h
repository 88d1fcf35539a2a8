/* tests/unit/support/golden_job.h: what the golden-file tests of models and
 * training jobs share (tests/unit/test_model_reference.c,
 * test_reward_reference.c, test_reward_train.c, test_dpo_reference.c;
 * golden_suite_main also test_lora_reference.c).
 *
 * defines: golden_suite, golden_suite_main, golden_job_config,
 *          golden_compare_params, golden_gather_grads
 *
 * Like golden.h, every helper fails the running cmocka test instead of
 * returning an error.
 * Does not: build the job or the model, pick the golden group or the
 * tolerances (each test owns those), or compare adapter layouts (LoRA tests
 * name PEFT tensors their own way). Include <setjmp.h>, <stdarg.h>,
 * <stddef.h> and <cmocka.h> first, as cmocka requires.
 */
#pragma once

#include <hdf5.h>
#include <stddef.h>

#include "model/layout.h"
#include "parallel/topology.h"
#include "train/train.h"

/* A golden-file test executable: its name (printed in the banner the
 * integration scripts look for) and its golden data (the golden_make
 * template and tests/reference/ script). */
typedef struct {
    const char *name;
    const char *dir_template;
    const char *script;
} golden_suite;

/* The main of such a test: topology_init into t (1 after printing why when
 * it fails), warn-level logging, on rank 0 "<name>: world size N (the
 * training job, FSDP full_shard, CPU fp32)", then the n cmocka tests as one
 * group whose setup runs golden_make(dir_template, script) on rank 0 and
 * broadcasts the result and the folder's name (dir, cap bytes) to every
 * rank (they share one machine: mpirun -np N from the integration tests),
 * and whose teardown waits for every rank, then removes the folder on rank
 * 0; topology_finalize. t NULL: a test of one process without MPI (argc and
 * argv unused, no banner). Returns cmocka's result. One suite per process. */
int golden_suite_main(int *argc, char ***argv, const golden_suite *s, topology *t, char *dir, size_t cap,
                      const struct CMUnitTest *tests, size_t n);

/* config_defaults, then what every golden training job shares: the model
 * from the Hugging Face folder hf, CPU fp32, micro_batch rows (pairs on a
 * pair objective) x grad_accum per rank, seq_len, the golden file's
 * optimizer settings and total steps (golden_read_optim), no decay of
 * embeddings and norms (the references decay linear weights and an untied
 * head only) and a 120 s comm timeout (a rank that left a test early makes
 * the others fail, not hang). Not finalized: the caller sets the rest. */
void golden_job_config(sl_config *cfg, const char *hf, hid_t f, int micro_batch, int grad_accum, int seq_len);

/* Each parameter of buf (the layout's host order) against the golden
 * dataset group/<prefix><hf_name> (a score head's without the prefix:
 * transformers keeps `score` outside the body's module), in the HF layout
 * (GPT-2 Conv1D weights are (in, out) there, ours (out, in)). Returns the
 * worst relative error by norm and writes that dataset's name to worst. */
double golden_compare_params(hid_t f, const char *group, const model_layout *l, const char *prefix,
                             const float *buf, char *worst, size_t worst_cap);

/* The gradient in fs's FSDP gradient shards (they still hold the last step's
 * reduce-scattered gradient after the optimizer used it: step 1's when read
 * right after it), all-gathered over shard into l's host order. A unit with
 * no shard here is left as it is in host. */
void golden_gather_grads(comm *shard, fsdp *fs, const model_layout *l, float *host);
