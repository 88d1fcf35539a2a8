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
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "launcher/eval_common.h"
#include "data/shard.h"
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
    eval_shards_opts s; /* s.data: --data */
    int mode;           /* --mode; -1: the shards' (eval_default_mode) */
} eval_opts;

static sl_status parse_opts(const cli_args *a, eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->s.model_dir = cli_get(a, "model");
    o->s.data = cli_get(a, "data");
    o->s.json = cli_has(a, "json");
    if (!o->s.model_dir || !o->s.data)
        return sl_errorf(SL_ERR_INVALID, "--model DIR and --data SHARDS are required");
    SL_TRY(eval_shards_parse(a, &o->s));
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
    eval_shards s;
    double sum;       /* this rank's loss sum and target count (eval_run) */
    int64_t count, nb;
} eval_state;

/* Without --mode: sft when the shards carry a loss mask (prepare wrote chat
 * or instruction data: only the answers count, as in training), else
 * pretrain. */
static sl_status eval_default_mode(eval_opts *o) {
    if (o->mode >= 0)
        return SL_OK;
    char **paths = NULL;
    int n = 0;
    SL_TRY(loader_expand_paths(o->s.data, &paths, &n));
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
        return sl_error_wrapf(st, "--data \"%s\"", o->s.data);
    LOG_INFO0("eval mode %s (from the shards; --mode to choose)", o->mode == DATA_MODE_SFT ? "sft" : "pretrain");
    return SL_OK;
}

/* One micro-batch: its loss sum and target count added to the rank's. */
static sl_status eval_step(eval_shards *s, void *ctx) {
    eval_state *e = ctx;
    double ls = 0;
    int64_t nv = 0;
    SL_TRY(model_forward_loss(s->mdl, &s->hooks, s->inputs, s->targets, &ls, &nv));
    e->sum += ls;
    e->count += nv;
    return SL_OK;
}

static sl_status eval_run(eval_state *e, eval_opts *o, const topology *t) {
    SL_TRY(eval_default_mode(o));
    SL_TRY(train_model_open(o->s.model_dir, &e->s.m.md));
    const eval_shards_data data = {"--data", "samples", o->mode, false};
    SL_TRY(eval_shards_load(&e->s, &o->s, &data, t));
    uint64_t per_epoch = loader_batches_per_epoch(e->s.ld);
    if (per_epoch == 0)
        return sl_errorf(SL_ERR_INVALID, "--data \"%s\" holds %" PRIu64 " samples of %d tokens: fewer than one "
                         "batch of %d; lower --batch or --seq-len", o->s.data, loader_samples_per_epoch(e->s.ld),
                         e->s.T, e->s.G);
    int64_t nb = o->s.batches ? o->s.batches : (int64_t)per_epoch;
    if ((uint64_t)nb > per_epoch) {
        LOG_WARN0("--batches %" PRId64 " is more than the %" PRIu64 " full batches of %d samples in the data; "
                  "evaluating each sample once instead", nb, per_epoch, e->s.G);
        nb = (int64_t)per_epoch;
    }
    SL_TRY(eval_shards_model(&e->s, &o->s, e->s.B, t));
    SL_TRY(eval_shards_run(&e->s, nb, "eval", t, eval_step, e));
    e->nb = nb;
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
        if (o->s.json)
            printf("{\"loss\": %.10g, \"ppl\": %.10g, \"tokens\": %" PRId64 ", \"batches\": %" PRId64
                   ", \"batch\": %d, \"seq_len\": %d}\n", loss, ppl, gcount, e->nb, e->s.G, e->s.T);
        if (fflush(stdout) != 0)
            return sl_errorf(SL_ERR_IO, "error writing stdout");
    }
    return SL_OK;
}

static sl_status mode_parse(const cli_args *a, void *o) { return parse_opts(a, o); }
static sl_status mode_run(void *e, void *o, const topology *t) { return eval_run(e, o, t); }
static sl_status mode_finish(const void *e, const void *o, const topology *t) { return eval_finish(e, o, t); }
static void mode_free(void *e) { eval_shards_free(&((eval_state *)e)->s); }

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
