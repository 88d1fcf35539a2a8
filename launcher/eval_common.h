/* launcher/eval_common.h: what the eval modes share: the command's frame
 * (eval_mode_main: options, MPI, the ranks' agreement on a failure, the
 * gather of per-item records to rank 0) for all four (loss on shards,
 * --generate, --choices, --reward); for the modes that read JSONL
 * (--generate, --choices) the lines of a JSONL file, a growing text buffer
 * with a JSON string writer and the model on a backend; for the modes that
 * evaluate token shards (loss on shards, --reward) their options, the
 * model, loader and micro-batch buffers, and the loop over the batches.
 *
 * defines: eval_jsonl, eval_jsonl_read, eval_jsonl_free, eval_buf,
 *          eval_buf_add, eval_buf_printf, eval_buf_json_string, eval_buf_utf8,
 *          eval_buf_free, eval_model,
 *          eval_model_open, eval_model_close, eval_ranks_agree, eval_gather,
 *          eval_mode, eval_mode_main, eval_shards_opts, eval_shards_parse,
 *          eval_shards_data, eval_shards, eval_shards_load, eval_shards_model,
 *          eval_shards_run, eval_shards_free
 *
 * Not here: the modes themselves (cmd_eval.c, cmd_eval_generate.c,
 * cmd_eval_choices.c, cmd_eval_reward.c).
 */
#ifndef SL_LAUNCHER_EVAL_COMMON_H
#define SL_LAUNCHER_EVAL_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data/loader.h"
#include "kernels/ops.h"
#include "launcher/cli.h"
#include "model/model.h"
#include "model/model_dir.h"
#include "parallel/topology.h"
#include "runtime/status.h"

/* A JSONL file: the non-blank lines, NUL-terminated in place. */
typedef struct {
    char *text;    /* the whole file, owned */
    char **line;   /* (n) start of each non-blank line */
    size_t *len;   /* (n) its length without the newline */
    int64_t *lineno; /* (n) 1-based line number in the file */
    size_t n;
} eval_jsonl;

/* Reads path (at most 1 GiB); an empty file (no non-blank line) is
 * SL_ERR_INVALID naming it. */
sl_status eval_jsonl_read(const char *path, eval_jsonl *out);
void eval_jsonl_free(eval_jsonl *j);

typedef struct {
    char *buf; /* NUL-terminated when len > 0 */
    size_t len, cap;
} eval_buf;

sl_status eval_buf_add(eval_buf *b, const void *data, size_t n);
sl_status eval_buf_printf(eval_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* n bytes of s as a JSON string literal: quotes, backslashes and control
 * characters escaped; bytes that are not valid UTF-8 (a generation cut
 * inside a character) become U+FFFD as Python's decode(errors="replace")
 * replaces them (one per maximal invalid subpart). */
sl_status eval_buf_json_string(eval_buf *b, const char *s, size_t n);
/* n bytes of s, the invalid UTF-8 replaced as eval_buf_json_string does
 * (what a reader of the JSON string gets), not escaped. */
sl_status eval_buf_utf8(eval_buf *b, const char *s, size_t n);
void eval_buf_free(eval_buf *b);

/* The model of a folder on this rank's backend: fp32 host parameters on the
 * CPU, bf16 on the GPU of the local rank with cuda. */
typedef struct {
    model_dir_params md;
    sl_backend *be;
    void *dev_params;
    size_t dev_bytes;
    const void *params; /* md.params (cpu) or dev_params (cuda) */
} eval_model;

sl_status eval_model_open(const char *dir, bool cuda, int threads, const topology *t, eval_model *out);
void eval_model_close(eval_model *m);

/* Called by every rank after its own work (no collective inside the work):
 * true when every rank succeeded. Otherwise *code is the exit code; the
 * first failing rank prints its error (cli_report, named "eval"). */
bool eval_ranks_agree(const topology *t, sl_status st, int *code);

/* Concatenates each rank's bytes on rank 0 in rank order (*all, *all_len;
 * malloc'd, caller frees; NULL elsewhere). Collective. */
sl_status eval_gather(const topology *t, const void *mine, size_t len, char **all, size_t *all_len);

/* One eval mode's command: what eval_mode_main needs of it. */
typedef struct {
    const char *const *flags; /* cli_parse's value-less options */
    const char *const *known; /* every option it takes */
    void (*usage)(FILE *out);
    sl_status (*parse)(const cli_args *a, void *opts);
    /* this rank's work: no collective inside, every rank returns */
    sl_status (*run)(void *state, void *opts, const topology *t);
    /* after every rank succeeded: either records + report (the records of
     * every rank gathered to rank 0 in rank order, which reports them), or
     * finish (collective: all-reduce and print) */
    const eval_buf *(*records)(const void *state);
    sl_status (*report)(const void *state, const void *opts, const char *all, size_t len);
    sl_status (*finish)(const void *state, const void *opts, const topology *t);
    void (*free_state)(void *state);
} eval_mode;

/* The whole command: parse argv (no positional arguments; a mistake prints
 * the error and the mode's usage), start MPI, run, agree on failure
 * (eval_ranks_agree), then records/report or finish; frees the state and
 * finalizes MPI. opts and state are the mode's (state zeroed by the
 * caller). Returns the exit code. */
int eval_mode_main(const eval_mode *m, void *opts, void *state, int argc, char **argv);

/* ---- the modes on token shards (loss on shards, --reward) ----
 * Every rank holds the whole model (model_local hooks; fp32 on the CPU
 * backend, bf16 on the GPU of its local rank with --backend cuda) and
 * evaluates its slice of each global batch (data/loader.h with
 * dp_rank/dp_size = the MPI rank/size). */

typedef struct {
    const char *model_dir, *data; /* --model, the shards */
    int seq_len, batch, micro_batch, threads; /* 0: the default (batch: 8) */
    bool cuda, json;              /* --backend cuda, --json */
    int64_t batches;              /* --batches; 0: one pass */
    uint64_t seed;
} eval_shards_opts;

/* The numbers of o, in this order: --seq-len, --batch (default 8),
 * --micro-batch, --batches, --seed, --threads, --backend; the caller reads
 * model_dir, data and json. */
sl_status eval_shards_parse(const cli_args *a, eval_shards_opts *o);

/* What a mode's shards are. */
typedef struct {
    const char *opt;  /* the option that names them in errors ("--data") */
    const char *unit; /* what --batch counts ("samples") */
    int mode;         /* the loader's data mode (DATA_MODE_*) */
    bool once;        /* the loader's once: every sample exactly once */
} eval_shards_data;

typedef struct {
    eval_model m;        /* m.md by train_model_open (the caller's), the rest by eval_shards_model */
    model *mdl;
    loader *ld;
    uint32_t *inputs;    /* (rows, T) a micro-batch */
    int32_t *targets;    /* (rows, T) */
    model_local lh;
    model_unit_hooks hooks;
    int G, B, T, accum;  /* global batch, micro-batch, seq_len, micro-batches per rank and batch */
} eval_shards;

/* After the caller opened s->m.md: T (--seq-len or data.seq_len, at most
 * max_seq_len), G, B and accum (--batch a multiple of the ranks, the
 * per-rank share a multiple of --micro-batch), then the loader on o->data
 * for this rank. */
sl_status eval_shards_load(eval_shards *s, const eval_shards_opts *o, const eval_shards_data *d,
                           const topology *t);
/* The backend (--backend cuda: the GPU of the local rank), the model for
 * rows x T tokens a forward pass, the micro-batch buffers (rows x T) and
 * the hooks on the parameters (uploaded with cuda). */
sl_status eval_shards_model(eval_shards *s, const eval_shards_opts *o, int rows, const topology *t);
/* nb global batches: for each micro-batch of this rank, loader_next into
 * s->inputs/targets, then step(s, ctx). On a terminal on rank 0, "\r<what>
 * batch b/nb" on stderr after each batch. */
sl_status eval_shards_run(eval_shards *s, int64_t nb, const char *what, const topology *t,
                          sl_status (*step)(eval_shards *s, void *ctx), void *ctx);
void eval_shards_free(eval_shards *s);

#endif
