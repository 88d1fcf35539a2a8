/* shardlm eval --reward: a reward model (model.head = score) on preference
 * pair shards: pairwise accuracy, mean margin and Bradley-Terry loss.
 *
 * Every rank holds the whole model (model_local hooks; fp32 on the CPU
 * backend, bf16 on the GPU of its local rank with --backend cuda) and scores
 * its pairs of each global batch (data/loader.h, data.mode pairs, with
 * dp_rank/dp_size = the MPI rank/size and `once`: every pair of the shards
 * exactly once, the last batch padded with pairs that have no target and
 * are not counted). A pair's rows are prompt + chosen and prompt +
 * rejected; each row's reward is the score at its last real token
 * (model/model.h's row passes). Per pair: correct when r_chosen > r_rejected
 * (a tie is wrong), margin r_chosen - r_rejected, loss
 * -logsigmoid(margin) (train/pairs.h's pair_reward_loss, TRL RewardTrainer's
 * loss). The sums are all-reduced, so the result does not depend on the
 * number of ranks or on --micro-batch (up to the order of a double sum). */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/loader.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "launcher/eval_common.h"
#include "model/model.h"
#include "parallel/topology.h"
#include "runtime/check.h"
#include "runtime/log.h"
#include "train/pairs.h"
#include "train/train_model.h"

void cmd_eval_reward_usage(FILE *out) {
    fprintf(out,
            "usage: [mpirun -np N] shardlm eval --model DIR --reward PAIR_SHARDS [--seq-len T]\n"
            "                      [--batch G] [--micro-batch B] [--seed S] [--threads K]\n"
            "                      [--backend cpu|cuda] [--json]\n\n"
            "Pairwise accuracy, mean margin and Bradley-Terry loss of a reward model (a\n"
            "*ForSequenceClassification folder, or one trained with train.objective = reward)\n"
            "on preference pair shards (shardlm prepare on pair data), every pair once.\n"
            "Prints on rank 0:\n"
            "  reward accuracy X.XXXX | margin Y.YYYY | loss Z.ZZZZ | pairs N\n"
            "--seq-len  tokens per row (default: the model folder's data.seq_len, at most\n"
            "           max_seq_len); a pair whose response it cuts off entirely scores 0\n"
            "--batch    pairs per global batch, split over the ranks (default 8; a multiple\n"
            "           of N x B)\n"
            "--micro-batch  pairs per forward pass on a rank (default G / N; 2 rows each)\n"
            "--json     also print {\"accuracy\": ..., \"margin\": ..., \"loss\": ..., \"pairs\": ...}\n");
}

static sl_status parse_opts(const cli_args *a, eval_shards_opts *o) {
    memset(o, 0, sizeof *o);
    o->model_dir = cli_get(a, "model");
    o->data = cli_get(a, "reward");
    o->json = cli_has(a, "json");
    if (!o->model_dir || !o->data)
        return sl_errorf(SL_ERR_INVALID, "--model DIR and --reward PAIR_SHARDS are required");
    if (cli_get(a, "data") || cli_get(a, "mode") || cli_get(a, "batches"))
        return sl_errorf(SL_ERR_INVALID, "--reward takes the pair shards itself and scores every pair once: "
                                         "drop --data, --mode and --batches");
    return eval_shards_parse(a, o); /* o->batches stays 0: --batches was refused */
}

typedef struct {
    eval_shards s;  /* rows: prompt + chosen, prompt + rejected per pair */
    double *value;  /* (2B) each row's reward */
    int64_t *valid; /* (2B) */
    double sums[3]; /* correct, margin, loss over this rank's pairs */
    int64_t pairs, nb;
} reward_state;

static void reward_free(reward_state *e) {
    free(e->value);
    free(e->valid);
    eval_shards_free(&e->s);
}

/* One micro-batch of pairs: the sums of its pairs added to the rank's. */
static sl_status reward_step(eval_shards *s, void *ctx) {
    reward_state *e = ctx;
    SL_TRY(model_forward_rows(s->mdl, &s->hooks, s->inputs, s->targets, e->value, e->valid));
    for (int p = 0; p < s->B; p++) {
        /* the padding pairs of the last batch have no target at all: no
         * scored row (row_valid 0) */
        if (e->valid[2 * p] == 0 && e->valid[2 * p + 1] == 0)
            continue;
        pair_values v = {e->value[2 * p], e->value[2 * p + 1], 0, 0, e->valid[2 * p], e->valid[2 * p + 1]};
        double loss = 0, dc = 0, dr = 0, metric[PAIR_MAX_METRICS];
        pair_reward_loss(&s->m.md.cfg, &v, &loss, &dc, &dr, metric);
        e->sums[0] += metric[0];
        e->sums[1] += metric[1];
        e->sums[2] += loss;
        e->pairs++;
    }
    return SL_OK;
}

static sl_status reward_run(reward_state *e, const eval_shards_opts *o, const topology *t) {
    SL_TRY(train_model_open(o->model_dir, &e->s.m.md));
    if (e->s.m.md.layout->fin.score_w < 0)
        return sl_errorf(SL_ERR_INVALID,
                         "--model %s has an LM head, not a reward model's score head: --reward needs a "
                         "*ForSequenceClassification folder (num_labels 1) or a model trained with "
                         "train.objective = reward",
                         o->model_dir);
    static const eval_shards_data data = {"--reward", "pairs", DATA_MODE_PAIRS, true};
    SL_TRY(eval_shards_load(&e->s, o, &data, t));
    int64_t nb = (int64_t)loader_batches_per_epoch(e->s.ld);
    int R = 2 * e->s.B; /* rows: prompt + chosen, prompt + rejected per pair */
    SL_TRY(eval_shards_model(&e->s, o, R, t));
    e->value = malloc((size_t)R * sizeof *e->value);
    e->valid = malloc((size_t)R * sizeof *e->valid);
    if (!e->value || !e->valid)
        return sl_errorf(SL_ERR_NOMEM, "out of memory for a micro-batch of %zu tokens", (size_t)R * (size_t)e->s.T);
    SL_TRY(eval_shards_run(&e->s, nb, "reward eval", t, reward_step, e));
    uint64_t cut = loader_pairs_truncated(e->s.ld);
    if (cut > 0)
        LOG_WARN("%" PRIu64 " pair(s) of this rank had a response that --seq-len %d cuts off entirely; "
                 "such a row scores 0 (raise --seq-len)", cut, e->s.T);
    e->nb = nb;
    return SL_OK;
}

static sl_status reward_finish(const reward_state *e, const eval_shards_opts *o, const topology *t) {
    double g[3] = {0, 0, 0};
    int64_t pairs = 0;
    SL_CHECK_MPI(MPI_Allreduce(e->sums, g, 3, MPI_DOUBLE, MPI_SUM, t->comm));
    SL_CHECK_MPI(MPI_Allreduce(&e->pairs, &pairs, 1, MPI_INT64_T, MPI_SUM, t->comm));
    if (pairs == 0)
        return sl_errorf(SL_ERR_INVALID, "--reward \"%s\": no pair with a response target was scored", o->data);
    if (t->rank == 0) {
        double acc = g[0] / (double)pairs, margin = g[1] / (double)pairs, loss = g[2] / (double)pairs;
        printf("reward accuracy %.4f | margin %.4f | loss %.4f | pairs %" PRId64 "\n", acc, margin, loss, pairs);
        if (o->json)
            printf("{\"accuracy\": %.10g, \"margin\": %.10g, \"loss\": %.10g, \"pairs\": %" PRId64
                   ", \"batches\": %" PRId64 ", \"batch\": %d, \"seq_len\": %d}\n",
                   acc, margin, loss, pairs, e->nb, e->s.G, e->s.T);
        if (fflush(stdout) != 0)
            return sl_errorf(SL_ERR_IO, "error writing stdout");
    }
    return SL_OK;
}

static sl_status mode_parse(const cli_args *a, void *o) { return parse_opts(a, o); }
static sl_status mode_run(void *e, void *o, const topology *t) { return reward_run(e, o, t); }
static sl_status mode_finish(const void *e, const void *o, const topology *t) { return reward_finish(e, o, t); }
static void mode_free(void *e) { reward_free(e); }

int cmd_eval_reward(int argc, char **argv) {
    static const char *const flags[] = {"json", NULL};
    static const char *const known[] = {"model", "reward", "data", "mode", "batches", "seq-len", "batch",
                                        "micro-batch", "seed", "threads", "backend", "json", NULL};
    static const eval_mode mode = {flags, known, cmd_eval_reward_usage, mode_parse, mode_run, NULL, NULL,
                                   mode_finish, mode_free};
    eval_shards_opts o;
    reward_state e;
    memset(&e, 0, sizeof e);
    return eval_mode_main(&mode, &o, &e, argc, argv);
}
