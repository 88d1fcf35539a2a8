/* train/pairs.c: pair objectives and their step (pairs.h).
 *
 * DPO follows TRL's DPOTrainer, v0.23.0 (github.com/huggingface/trl,
 * trl/trainer/dpo_trainer.py: dpo_loss, concatenated_forward,
 * get_batch_loss_metrics), the version whose sigmoid loss still carries
 * label_smoothing (cDPO):
 *   logps        the response tokens' summed log p (loss_mask sum over the
 *                completion); loss_type "ipo" divides them by the response
 *                length (all_logps / loss_mask.sum(-1)), policy and
 *                reference alike, and the rewards and logps metrics are
 *                then those averages
 *   h            (chosen - rejected) - (ref_chosen - ref_rejected)
 *   sigmoid      -(1 - eps) logsigmoid(beta h) - eps logsigmoid(-beta h)
 *   robust       (-(1 - eps) logsigmoid(beta h) + eps logsigmoid(-beta h)) / (1 - 2 eps)
 *   ipo          (h - 1 / (2 beta))^2
 *   rewards      beta (logps - ref_logps), detached; accuracy: chosen
 *                reward > rejected reward; margin: their difference
 *   loss         losses.mean() over the batch
 * (eps = dpo.label_smoothing, beta = dpo.beta.)
 *
 * The reward model (train.objective = reward) is pair_reward_loss below.
 */
#include "train/pairs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/check.h"
#include "train/train.h"

/* log(sigmoid(x)), without overflow either way */
static double log_sigmoid(double x) { return x < 0 ? x - log1p(exp(x)) : -log1p(exp(-x)); }
static double sigmoid(double x) { return x < 0 ? exp(x) / (1.0 + exp(x)) : 1.0 / (1.0 + exp(-x)); }

void pair_dpo_loss(const sl_config *c, const pair_values *v, double *loss, double *d_chosen, double *d_rejected,
                   double *metric) {
    double beta = c->dpo.beta, eps = c->dpo.label_smoothing;
    double pc = v->chosen, pr = v->rejected, rc = v->ref_chosen, rr = v->ref_rejected;
    double sc = 1.0, sr = 1.0; /* d(logps)/d(row value) */
    if (c->dpo.loss == DPO_LOSS_IPO) {
        /* TRL clamps nothing here; an empty response (0 tokens) would be a
         * division by zero there: count it as one token */
        sc = 1.0 / (double)(v->n_chosen > 0 ? v->n_chosen : 1);
        sr = 1.0 / (double)(v->n_rejected > 0 ? v->n_rejected : 1);
        pc *= sc;
        rc *= sc;
        pr *= sr;
        rr *= sr;
    }
    double h = (pc - pr) - (rc - rr), dh = 0;
    switch (c->dpo.loss) {
    case DPO_LOSS_IPO: {
        double e = h - 1.0 / (2.0 * beta);
        *loss = e * e;
        dh = 2.0 * e;
        break;
    }
    case DPO_LOSS_ROBUST:
        *loss = (-(1.0 - eps) * log_sigmoid(beta * h) + eps * log_sigmoid(-beta * h)) / (1.0 - 2.0 * eps);
        dh = (-(1.0 - eps) * beta * sigmoid(-beta * h) - eps * beta * sigmoid(beta * h)) / (1.0 - 2.0 * eps);
        break;
    default: /* sigmoid */
        *loss = -(1.0 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h);
        dh = -(1.0 - eps) * beta * sigmoid(-beta * h) + eps * beta * sigmoid(beta * h);
        break;
    }
    *d_chosen = dh * sc;
    *d_rejected = -dh * sr;
    double rw_c = beta * (pc - rc), rw_r = beta * (pr - rr);
    metric[0] = rw_c;
    metric[1] = rw_r;
    metric[2] = rw_c > rw_r ? 1.0 : 0.0;
    metric[3] = rw_c - rw_r;
    metric[4] = pc;
    metric[5] = pr;
}

/* The reward model's Bradley-Terry loss, TRL's RewardTrainer.compute_loss
 * (trl/trainer/reward_trainer.py) without margin or center_rewards_coefficient:
 *   loss = -logsigmoid(r_chosen - r_rejected), mean over the pairs
 * with d = r_chosen - r_rejected: dL/dr_chosen = -sigmoid(-d),
 * dL/dr_rejected = +sigmoid(-d). Metrics: accuracy (r_chosen > r_rejected; a
 * tie counts as wrong), margin d, and the mean rewards. */
void pair_reward_loss(const sl_config *c, const pair_values *v, double *loss, double *d_chosen,
                      double *d_rejected, double *metric) {
    (void)c;
    double d = v->chosen - v->rejected, s = sigmoid(-d);
    *loss = -log_sigmoid(d);
    *d_chosen = -s;
    *d_rejected = s;
    metric[0] = d > 0 ? 1.0 : 0.0;
    metric[1] = d;
    metric[2] = v->chosen;
    metric[3] = v->rejected;
}

/* on a score model (model.head = score) the row passes give each row's reward */
static const pair_objective REWARD = {
    .name = "reward",
    .needs_reference = false,
    .pair_loss = pair_reward_loss,
    .n_metrics = 4,
    .metric_names = {"accuracy", "margin", "rewards/chosen", "rewards/rejected"},
    .on_step_line = {true, true, false, false},
};

static const pair_objective DPO = {
    .name = "dpo",
    .needs_reference = true,
    .pair_loss = pair_dpo_loss,
    .n_metrics = 6,
    .metric_names = {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                     "logps/rejected"},
    .on_step_line = {false, false, true, true, false, false},
};

sl_status pair_objective_for(const sl_config *c, const pair_objective **out) {
    *out = NULL;
    switch (c->train.objective) {
    case TRAIN_OBJECTIVE_SFT:
        return SL_OK;
    case TRAIN_OBJECTIVE_DPO:
        *out = &DPO;
        return SL_OK;
    case TRAIN_OBJECTIVE_REWARD:
        if (c->lora.enabled) /* a config error: refused before launch (exit 2) */
            return sl_errorf(SL_ERR_INVALID,
                             "train.objective = reward with lora.enabled is not implemented: the new score "
                             "head must train in full beside the adapters (PEFT's modules_to_save = "
                             "[\"score\"]); train the reward model without LoRA");
        if (c->model.head != MODEL_HEAD_SCORE)
            return sl_errorf(SL_ERR_INTERNAL, "train.objective = reward on a model without a score head");
        *out = &REWARD;
        return SL_OK;
    default:
        return sl_errorf(SL_ERR_INVALID, /* a config error: refused before launch (exit 2) */
                         "train.objective = %s is not implemented in this build (objectives: sft, dpo, reward)",
                         config_enum_name("train.objective", c->train.objective));
    }
}

/* ---- the step ---- */

/* What the policy pass's row-gradient callback needs and sums. */
typedef struct {
    const sl_config *cfg;
    const pair_objective *obj;
    const double *ref;       /* (2B) reference row values; NULL: none */
    double scale;            /* 1 / (counted pairs of the global batch) */
    double loss_sum;
    double *metric_sums;
} row_ctx;

static bool row_counts(const int32_t *targets, int T, int row) {
    for (int t = 0; t < T; t++)
        if (targets[(size_t)row * (size_t)T + (size_t)t] >= 0)
            return true;
    return false;
}

static bool pair_counts(const int32_t *targets, int T, int b) {
    return row_counts(targets, T, 2 * b) || row_counts(targets, T, 2 * b + 1);
}

/* The loss, the metrics and (row_grad != NULL) the scaled per-row gradient
 * of a micro-batch's pairs. */
static void pairs_objective(row_ctx *x, int rows, const double *value, const int64_t *valid, double *row_grad) {
    double metric[PAIR_MAX_METRICS];
    for (int b = 0; b < rows / 2; b++) {
        if (row_grad)
            row_grad[2 * b] = row_grad[2 * b + 1] = 0.0;
        if (valid[2 * b] == 0 && valid[2 * b + 1] == 0)
            continue;
        pair_values v = {value[2 * b], value[2 * b + 1], x->ref ? x->ref[2 * b] : 0.0,
                         x->ref ? x->ref[2 * b + 1] : 0.0, valid[2 * b], valid[2 * b + 1]};
        double loss = 0, dc = 0, dr = 0;
        x->obj->pair_loss(x->cfg, &v, &loss, &dc, &dr, metric);
        x->loss_sum += loss;
        for (int i = 0; i < x->obj->n_metrics; i++)
            x->metric_sums[i] += metric[i];
        if (row_grad) {
            row_grad[2 * b] = dc * x->scale;
            row_grad[2 * b + 1] = dr * x->scale;
        }
    }
}

static sl_status row_grad_cb(void *ctx, int rows, const double *value, const int64_t *valid, double *row_grad) {
    pairs_objective(ctx, rows, value, valid, row_grad);
    return SL_OK;
}

/* The reference's hooks: LoRA: the model's without the adapters (the base);
 * full fine-tuning: the frozen reference instance's. */
static const model_unit_hooks *reference_hooks(train_job *j, model_unit_hooks *tmp) {
    if (j->ref_fs)
        return &j->ref_hooks;
    *tmp = j->hooks;
    tmp->adapter = NULL;
    return tmp;
}

/* A micro-batch's row values and counts (2B each), the policy's and the
 * reference's, in one allocation (value owns it). */
typedef struct {
    double *value, *ref;
    int64_t *valid, *ref_valid;
} row_bufs;

static sl_status row_bufs_alloc(row_bufs *rb, int B) {
    size_t rows = (size_t)2 * (size_t)B, bytes = rows * 2 * (sizeof(double) + sizeof(int64_t));
    rb->value = malloc(bytes);
    SL_CHECK_ALLOC(rb->value, bytes);
    rb->ref = rb->value + rows;
    rb->valid = (int64_t *)(rb->ref + rows);
    rb->ref_valid = rb->valid + rows;
    return SL_OK;
}

static sl_status pairs_micro(train_job *j, const uint32_t *in, const int32_t *tg, bool train, int step,
                             int64_t first_pair, row_ctx *x, const row_bufs *rb) {
    double *value = rb->value, *ref = rb->ref;
    int64_t *valid = rb->valid, *ref_valid = rb->ref_valid;
    const pair_objective *obj = j->pobj;
    int R = 2 * j->cfg->train.micro_batch;
    x->ref = NULL;
    if (obj->needs_reference) {
        model_unit_hooks tmp;
        SL_TRY(model_forward_rows(j->mdl, reference_hooks(j, &tmp), in, tg, ref, ref_valid));
        x->ref = ref;
    }
    if (!train) {
        SL_TRY(model_forward_rows(j->mdl, &j->hooks, in, tg, value, valid));
        pairs_objective(x, R, value, valid, NULL);
        return SL_OK;
    }
    /* LoRA dropout keys: row r of the micro-batch is global row 2 * first_pair + r */
    model_dropout_ctx dc = {(uint64_t)j->cfg->train.seed, step, 2 * first_pair};
    SL_TRY(model_set_dropout_ctx(j->mdl, &dc));
    return model_forward_backward_rows(j->mdl, train_faults_hooks(&j->faults, &j->hooks, step), in, tg, row_grad_cb,
                                       x, value, valid);
}

sl_status pairs_accumulate(train_job *j, const uint32_t *inputs, const int32_t *targets, int step,
                           double *loss_sum, int64_t *global_pairs, double *metric_sums) {
    const sl_config *c = j->cfg;
    int A = c->train.grad_accum, B = c->train.micro_batch, T = c->data.seq_len;
    size_t per = (size_t)2 * (size_t)B * (size_t)T;
    int64_t pairs = 0;
    for (int a = 0; a < A; a++)
        for (int b = 0; b < B; b++)
            pairs += pair_counts(targets + (size_t)a * per, T, b);
    SL_TRY(comm_all_reduce(j->world, &pairs, &pairs, 1, SL_DTYPE_I64, COMM_REDOP_SUM));
    *global_pairs = pairs;
    row_ctx x = {.cfg = c, .obj = j->pobj, .scale = pairs > 0 ? 1.0 / (double)pairs : 0.0,
                 .metric_sums = metric_sums};
    row_bufs rb;
    SL_TRY(row_bufs_alloc(&rb, B));
    sl_status st = SL_OK;
    for (int a = 0; st == SL_OK && a < A; a++) {
        for (int g = 0; st == SL_OK && g < j->n_groups; g++)
            st = fsdp_begin_micro(j->groups[g].fs, a);
        /* pairs of this micro-batch: dp_rank*B*A + a*B + b of the global batch (data/loader.h) */
        int64_t first_pair = ((int64_t)j->plan.dp_rank * A + a) * B;
        if (st == SL_OK)
            st = pairs_micro(j, inputs + (size_t)a * per, targets + (size_t)a * per, true, step, first_pair, &x,
                             &rb);
    }
    free(rb.value);
    *loss_sum = x.loss_sum;
    return st;
}

sl_status pairs_eval_batch(train_job *j, const uint32_t *inputs, const int32_t *targets, double *loss_sum,
                           double *metric_sums, int64_t *pairs) {
    const sl_config *c = j->cfg;
    int B = c->train.micro_batch, T = c->data.seq_len;
    for (int b = 0; b < B; b++)
        *pairs += pair_counts(targets, T, b);
    row_ctx x = {.cfg = c, .obj = j->pobj, .metric_sums = metric_sums};
    row_bufs rb;
    SL_TRY(row_bufs_alloc(&rb, B));
    sl_status st = pairs_micro(j, inputs, targets, false, 0, 0, &x, &rb);
    free(rb.value);
    *loss_sum += x.loss_sum;
    return st;
}
