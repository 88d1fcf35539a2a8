/* train/pairs.h: pair objectives: the training and eval step on preference
 * pairs (train.objective = dpo; a reward model plugs into the same table).
 *
 * defines: pair_values, pair_objective, PAIR_MAX_METRICS, pair_objective_for,
 *          pairs_reference_hooks, pairs_accumulate, pairs_eval_batch,
 *          pair_dpo_loss, pair_reward_loss
 *
 * Data (data/loader.h, DATA_MODE_PAIRS): a micro-batch of B pairs is 2B rows
 * of T tokens; row 2b = prompt + chosen, row 2b+1 = prompt + rejected;
 * targets are -1 on the prompt and the padding, so a row's value from the
 * model's row passes (model/model.h) is the response's summed log p. A pair
 * counts when either of its rows has a target (the padding pairs of an eval
 * set's last batch do not).
 *
 * A step (pairs_accumulate, called by train_step_batch between the groups'
 * fsdp_begin_step and fsdp_finish_grads), for each micro-batch:
 *   the reference's row values, forward only (objectives that need one:
 *   LoRA: the job's model with the adapter hooks left off, i.e. the base;
 *   full fine-tuning: the frozen FSDP instance j->ref, the policy's start);
 *   then the policy's row pass, whose row-gradient callback computes every
 *   pair's loss and d(loss)/d(row value) from the table entry, scaled by
 *   1 / (pairs of the whole global batch), so that the gradients the
 *   backward accumulates sum to the gradient of the MEAN loss over the
 *   global batch, as TRL's DPOTrainer (loss.mean() per device, averaged by
 *   DDP and gradient accumulation over equal batches) has it.
 * The loss sum and the metric sums are this rank's; the caller all-reduces.
 *
 * The table (pair_objective): whether a reference is needed (a row's value
 * comes from the model's row passes: its log-likelihood with an LM head,
 * its score with a score head; model/model.h), the per-pair loss with its two
 * derivatives and metrics, and the metric names (TRL's). train.objective =
 * reward: a score model's row passes (model.head = score: each row's value
 * is its reward), no reference, TRL RewardTrainer's Bradley-Terry loss
 * (pair_reward_loss); refused with LoRA (not implemented).
 *
 * Not here: dpo.precompute_ref (reference log-probs written beside the
 * shards) and the other TRL loss types (hinge, exo_pair, ...).
 */
#ifndef SL_TRAIN_PAIRS_H
#define SL_TRAIN_PAIRS_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"
#include "runtime/config.h"
#include "runtime/status.h"

struct train_job_s;

#define PAIR_MAX_METRICS 8

/* One pair's row values. */
typedef struct {
    double chosen, rejected;         /* the policy's row values */
    double ref_chosen, ref_rejected; /* the reference's (0 when the objective needs none) */
    int64_t n_chosen, n_rejected;    /* counted targets of each row (response tokens) */
} pair_values;

typedef struct pair_objective {
    const char *name; /* "dpo" */
    bool needs_reference;
    /* One pair: *loss, d(loss)/d(chosen) and d(loss)/d(rejected) (the
     * policy's row values), metric[0 .. n_metrics) (averaged over the
     * counted pairs of a batch by the caller). */
    void (*pair_loss)(const sl_config *c, const pair_values *v, double *loss, double *d_chosen, double *d_rejected,
                      double *metric);
    int n_metrics;
    const char *metric_names[PAIR_MAX_METRICS];
    bool on_step_line[PAIR_MAX_METRICS]; /* shown on the step and eval lines too */
} pair_objective;

/* The entry of c->train.objective: NULL for sft; SL_ERR_INVALID (a config
 * error) for reward with LoRA (not implemented). reward needs
 * model.head = score (config_apply_objective sets it). */
sl_status pair_objective_for(const sl_config *c, const pair_objective **out);

/* DPO as TRL's DPOTrainer computes it (train/pairs.c cites the source). */
void pair_dpo_loss(const sl_config *c, const pair_values *v, double *loss, double *d_chosen, double *d_rejected,
                   double *metric);

/* The reward model's -logsigmoid(r_chosen - r_rejected) (train/pairs.c cites
 * TRL); metrics accuracy, margin, rewards/chosen, rewards/rejected. */
void pair_reward_loss(const sl_config *c, const pair_values *v, double *loss, double *d_chosen,
                      double *d_rejected, double *metric);

/* One step's micro-batches (inputs/targets: grad_accum micro-batches of
 * 2 * micro_batch rows): reference rows, then the policy's row pass with
 * its backward. *loss_sum and metric_sums (this rank's sums over its
 * pairs), *global_pairs (all-reduced over the world before the first
 * backward). Collective. */
sl_status pairs_accumulate(struct train_job_s *j, const uint32_t *inputs, const int32_t *targets, int step,
                           double *loss_sum, int64_t *global_pairs, double *metric_sums);

/* Forward only, one micro-batch (2 * micro_batch rows): this rank's loss
 * sum, metric sums and counted pairs (added to the outputs). */
sl_status pairs_eval_batch(struct train_job_s *j, const uint32_t *inputs, const int32_t *targets,
                           double *loss_sum, double *metric_sums, int64_t *pairs);

#endif
