/* shardlm eval: loss and perplexity of a model folder on token shards.
 *
 * Every rank holds the whole model (model_local hooks; fp32 on the CPU
 * backend, bf16 on the GPU of its local rank with --backend cuda) and evaluates
 * its slice of each global batch (data/loader.h with dp_rank/dp_size = the
 * MPI rank/size); the loss sums and token counts are all-reduced. The
 * batches are those of the loader's epoch-0 order for --batch G samples, so
 * the set of evaluated samples, and the result, do not depend on the number
 * of ranks or on --micro-batch. */
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
#include "data/shard.h"
#include "model/model_dir.h"
#include "train/train_model.h"
#include "model/model.h"
#include "parallel/topology.h"
#include "runtime/check.h"
#include "runtime/log.h"

void cmd_eval_usage(FILE *out) {
    fprintf(out,
            "usage: [mpirun -np N] shardlm eval --model DIR --data SHARDS [--seq-len T]\n"
            "                      [--batch G] [--micro-batch B] [--batches N]\n"
            "                      [--mode pretrain|sft] [--seed S] [--threads K]\n"
            "                      [--backend cpu|cuda] [--json]\n\n"
            "Mean cross-entropy loss and perplexity of a model folder (shardlm or Hugging\n"
            "Face) or a checkpoint (a step_NNNNNNNN folder, or a checkpoints folder: its latest)\n"
            "on shards written by shardlm prepare. Prints on rank 0:\n"
            "  eval loss X.XXXX | ppl Y.YY | tokens N\n"
            "SHARDS     a .h5 file, a folder of them, or a glob\n"
            "--seq-len  tokens per sample (default: data.seq_len, at most max_seq_len)\n"
            "--batch    samples per global batch, split over the ranks (default 8; must be\n"
            "           a multiple of N x B)\n"
            "--micro-batch  samples per forward pass on a rank (default G / N)\n"
            "--batches  global batches to evaluate (default: every full batch of one pass)\n"
            "--mode     pretrain: documents packed with EOS, every target counts;\n"
            "           sft: one document per sample, only loss-mask targets count\n"
            "           (default: sft when the shards' loss mask hides prompt tokens, as\n"
            "           prepare writes for chat and instruction data; else pretrain)\n"
            "--seed     the sample order (default 0); the result does not depend on N or B\n"
            "--backend  cpu (default, fp32) or cuda (bf16 weights and activations, fp32\n"
            "           accumulation; one GPU per local rank)\n"
            "--json     also print {\"loss\": ..., \"ppl\": ..., \"tokens\": ...} with full precision\n\n"
            "Other modes (each prints its own usage on a mistake):\n"
            "  shardlm eval --model DIR --tokenizer PATH --generate PROMPTS.jsonl --out GEN.jsonl ...\n"
            "      generation for every prompt, scored with BLEU and ROUGE against references\n"
            "  shardlm eval --model DIR --tokenizer PATH --choices MC.jsonl ...\n"
            "      multiple-choice accuracy (acc, acc_norm) as lm-evaluation-harness defines them\n"
            "  shardlm eval --model DIR --reward PAIR_SHARDS ...\n"
            "      a reward model's pairwise accuracy, margin and Bradley-Terry loss\n");
    cmd_eval_generate_usage(out);
    fputc('\n', out);
    cmd_eval_choices_usage(out);
    fputc('\n', out);
    cmd_eval_reward_usage(out);
}

/* The mode an option selects: --generate, --choices, --reward, else the loss on shards. */
static bool has_option(int argc, char **argv, const char *opt) {
    size_t n = strlen(opt);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strncmp(argv[i], opt, n) == 0 && (argv[i][n] == '\0' || argv[i][n] == '='))
            return true;
    }
    return false;
}

typedef struct {
    const char *model_dir, *data;
    int seq_len, batch, micro_batch, mode, threads;
    bool cuda; /* --backend cuda */
    int64_t batches; /* 0: one pass */
    uint64_t seed;
    bool json;
} eval_opts;

static sl_status parse_opts(const cli_args *a, eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->model_dir = cli_get(a, "model");
    o->data = cli_get(a, "data");
    o->json = cli_has(a, "json");
    if (!o->model_dir || !o->data)
        return sl_errorf(SL_ERR_INVALID, "--model DIR and --data SHARDS are required");
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
    SL_TRY(cli_get_int(a, "batches", 1, INT64_MAX, &v));
    o->batches = v;
    v = 0;
    SL_TRY(cli_get_int(a, "seed", 0, INT64_MAX, &v));
    o->seed = (uint64_t)v;
    v = 0;
    SL_TRY(cli_get_int(a, "threads", 0, 4096, &v));
    o->threads = (int)v;
    SL_TRY(cli_get_backend(a, &o->cuda));
    const char *m = cli_get(a, "mode");
    o->mode = -1; /* default: the shards' (eval_default_mode) */
    if (m && strcmp(m, "pretrain") == 0)
        o->mode = DATA_MODE_PRETRAIN;
    else if (m && strcmp(m, "sft") == 0)
        o->mode = DATA_MODE_SFT;
    else if (m && strcmp(m, "pretrain") != 0)
        return sl_errorf(SL_ERR_INVALID, "--mode \"%s\": expected pretrain or sft", m);
    return SL_OK;
}

typedef struct {
    model_dir_params md;
    sl_backend *be;
    model *mdl;
    loader *ld;
    uint32_t *inputs;
    int32_t *targets;
    model_local lh;
    void *dev_params; /* --backend cuda: the params in the act dtype (device) */
    size_t dev_bytes;
    double sum;       /* this rank's loss sum and target count (eval_run) */
    int64_t count, nb;
    int G, T;
} eval_state;

static void eval_free(eval_state *e) {
    free(e->inputs);
    free(e->targets);
    loader_destroy(e->ld);
    model_destroy(e->mdl);
    if (e->dev_params)
        backend_free(e->be, MEM_CATEGORY_PARAMS, e->dev_params, e->dev_bytes);
    backend_destroy(e->be);
    model_dir_close(&e->md);
}

static sl_status open_loader(eval_state *e, const eval_opts *o, const topology *t, int T, int B, int accum) {
    char **paths = NULL;
    int n = 0;
    SL_TRY(loader_expand_paths(o->data, &paths, &n));
    loader_opts lo = {.paths = (const char *const *)paths,
                      .n_paths = n,
                      .seq_len = T,
                      .micro_batch = B,
                      .grad_accum = accum,
                      .dp_rank = t->rank,
                      .dp_size = t->world,
                      .seed = o->seed,
                      .mode = o->mode,
                      .vocab_size = (uint32_t)e->md.layout->cfg.vocab_size,
                      .prefetch = 2,
                      .eos_id = -1};
    sl_status st = loader_create(&lo, &e->ld);
    loader_free_paths(paths, n);
    return st == SL_OK ? SL_OK : sl_error_wrapf(st, "--data \"%s\"", o->data);
}

/* Without --mode: sft when the shards carry a loss mask (prepare wrote chat
 * or instruction data: only the answers count, as in training), else
 * pretrain. */
static sl_status eval_default_mode(eval_opts *o) {
    if (o->mode >= 0)
        return SL_OK;
    char **paths = NULL;
    int n = 0;
    SL_TRY(loader_expand_paths(o->data, &paths, &n));
    shard_reader *r = NULL;
    sl_status st = n > 0 ? shard_open(paths[0], &r) : SL_OK;
    /* prepare writes a mask for every shard: SFT data is the one whose mask
     * hides something (the prompts) in its first documents */
    o->mode = DATA_MODE_PRETRAIN;
    if (st == SL_OK && r && shard_info_get(r)->has_loss_mask) {
        uint64_t nt = shard_info_get(r)->n_tokens, k = nt < 65536 ? nt : 65536;
        uint32_t *ids = malloc((size_t)(k ? k : 1) * sizeof *ids);
        uint8_t *mask = malloc((size_t)(k ? k : 1));
        if (!ids || !mask)
            st = sl_errorf(SL_ERR_NOMEM, "out of memory reading a loss mask");
        if (st == SL_OK && k)
            st = shard_read_tokens(r, 0, k, ids, mask);
        for (uint64_t i = 0; st == SL_OK && i < k; i++)
            if (!mask[i]) {
                o->mode = DATA_MODE_SFT;
                break;
            }
        free(ids);
        free(mask);
    }
    shard_close(r);
    loader_free_paths(paths, n);
    if (st != SL_OK)
        return sl_error_wrapf(st, "--data \"%s\"", o->data);
    LOG_INFO0("eval mode %s (from the shards; --mode to choose)", o->mode == DATA_MODE_SFT ? "sft" : "pretrain");
    return SL_OK;
}

static sl_status eval_run(eval_state *e, eval_opts *o, const topology *t) {
    SL_TRY(eval_default_mode(o));
    SL_TRY(train_model_open(o->model_dir, &e->md));
    const model_layout *l = e->md.layout;
    int T = o->seq_len ? o->seq_len : e->md.cfg.data.seq_len;
    if (T > l->cfg.max_seq_len)
        return sl_errorf(SL_ERR_INVALID, "--seq-len %d exceeds the model's max_seq_len %d", T, l->cfg.max_seq_len);
    int G = o->batch;
    if (G % t->world != 0)
        return sl_errorf(SL_ERR_INVALID, "--batch %d is not a multiple of the %d ranks", G, t->world);
    int per_rank = G / t->world;
    int B = o->micro_batch ? o->micro_batch : per_rank;
    if (per_rank % B != 0)
        return sl_errorf(SL_ERR_INVALID, "--batch %d over %d ranks is %d samples per rank, not a multiple of "
                         "--micro-batch %d", G, t->world, per_rank, B);
    int accum = per_rank / B;
    SL_TRY(open_loader(e, o, t, T, B, accum));
    uint64_t per_epoch = loader_batches_per_epoch(e->ld);
    if (per_epoch == 0)
        return sl_errorf(SL_ERR_INVALID, "--data \"%s\" holds %" PRIu64 " samples of %d tokens: fewer than one "
                         "batch of %d; lower --batch or --seq-len", o->data, loader_samples_per_epoch(e->ld), T, G);
    int64_t nb = o->batches ? o->batches : (int64_t)per_epoch;
    if ((uint64_t)nb > per_epoch) {
        LOG_WARN0("--batches %" PRId64 " is more than the %" PRIu64 " full batches of %d samples in the data; "
                  "evaluating each sample once instead", nb, per_epoch, G);
        nb = (int64_t)per_epoch;
    }
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
    SL_TRY(model_create(l, e->be, B, T, false, &e->mdl));
    size_t n = (size_t)B * (size_t)T;
    e->inputs = malloc(n * sizeof *e->inputs);
    e->targets = malloc(n * sizeof *e->targets);
    if (!e->inputs || !e->targets)
        return sl_errorf(SL_ERR_NOMEM, "out of memory for a micro-batch of %zu tokens", n);
    model_unit_hooks hooks;
    if (!o->cuda) { /* the host fp32 buffer is the CPU backend's memory */
        SL_TRY(model_local_init(&e->lh, l, e->md.params, NULL, &hooks));
    } else {
        SL_TRY(model_dir_upload(&e->md, e->be, &e->dev_params, &e->dev_bytes));
        SL_TRY(model_local_init_typed(&e->lh, l, e->be->act_dtype, e->dev_params, NULL, &hooks));
    }

    double sum = 0;
    int64_t count = 0;
    bool tty = t->rank == 0 && log_is_tty();
    for (int64_t b = 0; b < nb; b++) {
        for (int k = 0; k < accum; k++) {
            double ls = 0;
            int64_t nv = 0;
            SL_TRY(loader_next(e->ld, e->inputs, e->targets));
            SL_TRY(model_forward_loss(e->mdl, &hooks, e->inputs, e->targets, &ls, &nv));
            sum += ls;
            count += nv;
        }
        if (tty)
            fprintf(stderr, "\reval batch %" PRId64 "/%" PRId64, b + 1, nb);
    }
    if (tty)
        fprintf(stderr, "\n");
    e->sum = sum;
    e->count = count;
    e->nb = nb;
    e->G = G;
    e->T = T;
    return SL_OK;
}

/* After every rank's eval_run succeeded: the sums over the ranks, printed
 * on rank 0 (the same on every rank, so an error is printed there only). */
static sl_status eval_finish(const eval_state *e, const eval_opts *o, const topology *t) {
    double gsum = 0;
    int64_t gcount = 0;
    SL_CHECK_MPI(MPI_Allreduce(&e->sum, &gsum, 1, MPI_DOUBLE, MPI_SUM, t->comm));
    SL_CHECK_MPI(MPI_Allreduce(&e->count, &gcount, 1, MPI_INT64_T, MPI_SUM, t->comm));
    if (gcount == 0)
        return sl_errorf(SL_ERR_INVALID, "no target token was evaluated (every target is masked; with --mode sft "
                         "only assistant tokens count)");
    if (t->rank == 0) {
        double loss = gsum / (double)gcount, ppl = exp(loss);
        printf("eval loss %.4f | ppl %.2f | tokens %" PRId64 "\n", loss, ppl, gcount);
        if (o->json)
            printf("{\"loss\": %.10g, \"ppl\": %.10g, \"tokens\": %" PRId64 ", \"batches\": %" PRId64
                   ", \"batch\": %d, \"seq_len\": %d}\n", loss, ppl, gcount, e->nb, e->G, e->T);
        if (fflush(stdout) != 0)
            return sl_errorf(SL_ERR_IO, "error writing stdout");
    }
    return SL_OK;
}

static sl_status mode_parse(const cli_args *a, void *o) { return parse_opts(a, o); }
static sl_status mode_run(void *e, void *o, const topology *t) { return eval_run(e, o, t); }
static sl_status mode_finish(const void *e, const void *o, const topology *t) { return eval_finish(e, o, t); }
static void mode_free(void *e) { eval_free(e); }

int cmd_eval(int argc, char **argv) {
    if (has_option(argc, argv, "--generate"))
        return cmd_eval_generate(argc, argv);
    if (has_option(argc, argv, "--choices"))
        return cmd_eval_choices(argc, argv);
    if (has_option(argc, argv, "--reward"))
        return cmd_eval_reward(argc, argv);
    static const char *const flags[] = {"json", NULL};
    static const char *const known[] = {"model", "data", "seq-len", "batch", "micro-batch", "batches",
                                        "mode", "seed", "threads", "backend", "json", NULL};
    static const eval_mode mode = {flags, known, cmd_eval_usage, mode_parse, mode_run, NULL, NULL, mode_finish,
                                   mode_free};
    eval_opts o;
    eval_state e;
    memset(&e, 0, sizeof e);
    return eval_mode_main(&mode, &o, &e, argc, argv);
}
