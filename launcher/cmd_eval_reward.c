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
#include "kernels/device_info.h"
#include "kernels/ops.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "launcher/eval_common.h"
#include "model/model.h"
#include "model/model_dir.h"
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

typedef struct {
    const char *model_dir, *data;
    int seq_len, batch, micro_batch, threads;
    bool cuda, json;
    uint64_t seed;
} reward_opts;

static sl_status parse_opts(const cli_args *a, reward_opts *o) {
    memset(o, 0, sizeof *o);
    o->model_dir = cli_get(a, "model");
    o->data = cli_get(a, "reward");
    o->json = cli_has(a, "json");
    if (!o->model_dir || !o->data)
        return sl_errorf(SL_ERR_INVALID, "--model DIR and --reward PAIR_SHARDS are required");
    if (cli_get(a, "data") || cli_get(a, "mode") || cli_get(a, "batches"))
        return sl_errorf(SL_ERR_INVALID, "--reward takes the pair shards itself and scores every pair once: "
                                         "drop --data, --mode and --batches");
    long long v = 0;
    SL_TRY(cli_get_int(a, "seq-len", 1, 1 << 24, &v));
    o->seq_len = (int)v;
    v = 8;
    SL_TRY(cli_get_int(a, "batch", 1, 1 << 24, &v));
    o->batch = (int)v;
    v = 0;
    SL_TRY(cli_get_int(a, "micro-batch", 1, 1 << 24, &v));
    o->micro_batch = (int)v;
    v = 0;
    SL_TRY(cli_get_int(a, "seed", 0, INT64_MAX, &v));
    o->seed = (uint64_t)v;
    v = 0;
    SL_TRY(cli_get_int(a, "threads", 0, 4096, &v));
    o->threads = (int)v;
    return cli_get_backend(a, &o->cuda);
}

typedef struct {
    model_dir_params md;
    sl_backend *be;
    model *mdl;
    loader *ld;
    uint32_t *inputs;
    int32_t *targets;
    double *value;
    int64_t *valid;
    void *dev_params;
    size_t dev_bytes;
    model_local lh;
    double sums[3]; /* correct, margin, loss over this rank's pairs */
    int64_t pairs, nb;
    int G, T;
} reward_state;

static void reward_free(reward_state *e) {
    free(e->inputs);
    free(e->targets);
    free(e->value);
    free(e->valid);
    loader_destroy(e->ld);
    model_destroy(e->mdl);
    if (e->dev_params)
        backend_free(e->be, MEM_CATEGORY_PARAMS, e->dev_params, e->dev_bytes);
    backend_destroy(e->be);
    model_dir_close(&e->md);
}

static bool row_has_target(const int32_t *tg, int T, int row) {
    for (int t = 0; t < T; t++)
        if (tg[(size_t)row * (size_t)T + (size_t)t] >= 0)
            return true;
    return false;
}

static sl_status reward_run(reward_state *e, const reward_opts *o, const topology *t) {
    SL_TRY(train_model_open(o->model_dir, &e->md));
    const model_layout *l = e->md.layout;
    if (l->fin.score_w < 0)
        return sl_errorf(SL_ERR_INVALID,
                         "--model %s has an LM head, not a reward model's score head: --reward needs a "
                         "*ForSequenceClassification folder (num_labels 1) or a model trained with "
                         "train.objective = reward",
                         o->model_dir);
    int T = o->seq_len ? o->seq_len : e->md.cfg.data.seq_len;
    if (T > l->cfg.max_seq_len)
        return sl_errorf(SL_ERR_INVALID, "--seq-len %d exceeds the model's max_seq_len %d", T, l->cfg.max_seq_len);
    int G = o->batch;
    if (G % t->world != 0)
        return sl_errorf(SL_ERR_INVALID, "--batch %d is not a multiple of the %d ranks", G, t->world);
    int per_rank = G / t->world, B = o->micro_batch ? o->micro_batch : per_rank;
    if (per_rank % B != 0)
        return sl_errorf(SL_ERR_INVALID, "--batch %d over %d ranks is %d pairs per rank, not a multiple of "
                         "--micro-batch %d", G, t->world, per_rank, B);
    int accum = per_rank / B;
    char **paths = NULL;
    int n = 0;
    SL_TRY(loader_expand_paths(o->data, &paths, &n));
    loader_opts lo = {.paths = (const char *const *)paths, .n_paths = n, .seq_len = T, .micro_batch = B,
                      .grad_accum = accum, .dp_rank = t->rank, .dp_size = t->world, .seed = o->seed,
                      .mode = DATA_MODE_PAIRS, .vocab_size = (uint32_t)l->cfg.vocab_size, .prefetch = 2,
                      .eos_id = -1, .once = true};
    sl_status st = loader_create(&lo, &e->ld);
    loader_free_paths(paths, n);
    if (st != SL_OK)
        return sl_error_wrapf(st, "--reward \"%s\"", o->data);
    int64_t nb = (int64_t)loader_batches_per_epoch(e->ld);
    if (o->cuda) {
        device_info di;
        device_info_query(&di);
        if (di.count <= 0)
            return sl_errorf(SL_ERR_UNSUPPORTED, "--backend cuda on %s: no usable GPU (%s)", t->host, di.note);
        int dev = device_info_pick(&di, t->local_rank, t->local_world);
        if (dev < 0)
            return sl_errorf(SL_ERR_INVALID, "--backend cuda: %d ranks on %s but %d GPU(s) visible; one GPU per "
                             "local rank (or one bound to each rank)", t->local_world, t->host, di.count);
        SL_TRY(backend_create_cuda(dev, 0, NULL, &e->be));
    } else {
        SL_TRY(backend_create_cpu(o->threads, NULL, &e->be));
    }
    int R = 2 * B; /* rows: prompt + chosen, prompt + rejected per pair */
    SL_TRY(model_create(l, e->be, R, T, false, &e->mdl));
    size_t rows = (size_t)R * (size_t)T;
    e->inputs = malloc(rows * sizeof *e->inputs);
    e->targets = malloc(rows * sizeof *e->targets);
    e->value = malloc((size_t)R * sizeof *e->value);
    e->valid = malloc((size_t)R * sizeof *e->valid);
    if (!e->inputs || !e->targets || !e->value || !e->valid)
        return sl_errorf(SL_ERR_NOMEM, "out of memory for a micro-batch of %zu tokens", rows);
    model_unit_hooks hooks;
    if (!o->cuda) {
        SL_TRY(model_local_init(&e->lh, l, e->md.params, NULL, &hooks));
    } else {
        SL_TRY(model_dir_upload(&e->md, e->be, &e->dev_params, &e->dev_bytes));
        SL_TRY(model_local_init_typed(&e->lh, l, e->be->act_dtype, e->dev_params, NULL, &hooks));
    }
    bool tty = t->rank == 0 && log_is_tty();
    for (int64_t b = 0; b < nb; b++) {
        for (int k = 0; k < accum; k++) {
            SL_TRY(loader_next(e->ld, e->inputs, e->targets));
            SL_TRY(model_forward_rows(e->mdl, &hooks, e->inputs, e->targets, e->value, e->valid));
            for (int p = 0; p < B; p++) {
                /* the padding pairs of the last batch have no target at all */
                if (!row_has_target(e->targets, T, 2 * p) && !row_has_target(e->targets, T, 2 * p + 1))
                    continue;
                pair_values v = {e->value[2 * p], e->value[2 * p + 1], 0, 0, e->valid[2 * p], e->valid[2 * p + 1]};
                double loss = 0, dc = 0, dr = 0, metric[PAIR_MAX_METRICS];
                pair_reward_loss(&e->md.cfg, &v, &loss, &dc, &dr, metric);
                e->sums[0] += metric[0];
                e->sums[1] += metric[1];
                e->sums[2] += loss;
                e->pairs++;
            }
        }
        if (tty)
            fprintf(stderr, "\rreward eval batch %" PRId64 "/%" PRId64, b + 1, nb);
    }
    if (tty)
        fprintf(stderr, "\n");
    uint64_t cut = loader_pairs_truncated(e->ld);
    if (cut > 0)
        LOG_WARN("%" PRIu64 " pair(s) of this rank had a response that --seq-len %d cuts off entirely; "
                 "such a row scores 0 (raise --seq-len)", cut, T);
    e->nb = nb;
    e->G = G;
    e->T = T;
    return SL_OK;
}

static sl_status reward_finish(const reward_state *e, const reward_opts *o, const topology *t) {
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
                   acc, margin, loss, pairs, e->nb, e->G, e->T);
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
    reward_opts o;
    reward_state e;
    memset(&e, 0, sizeof e);
    return eval_mode_main(&mode, &o, &e, argc, argv);
}
