/* shardlm eval --choices: multiple-choice accuracy as lm-evaluation-harness
 * defines acc and acc_norm for its multiple_choice output type
 * (lm_eval/api/task.py ConfigurableTask.construct_requests and
 * process_results; lm_eval/api/model.py TemplateLM.loglikelihood and
 * _encode_pair):
 *   request   (context, target_delimiter + choice), delimiter " "
 *   encoding  trailing whitespace of the context moves to the front of the
 *             continuation; context_enc = encode(context), continuation_enc
 *             = encode(context + continuation)[len(context_enc):]; an empty
 *             context is [prefix token] (BOS, else EOS, as HFLM's
 *             prefix_token_id) and the continuation encode(continuation)
 *   loglik    sum over the continuation tokens of log softmax(logits) at the
 *             token, the model reading context_enc + continuation_enc[:-1]
 *   acc       argmax of the logliks (ties: the first) == gold
 *   acc_norm  argmax of loglik / len(choice) in characters (the choice
 *             without the delimiter; Python's len counts code points) == gold
 * The choices of one question are one decode batch (model/decode.h): the
 * context is prefilled once for all rows, then each row is fed its own
 * continuation (a row whose continuation is done is fed its last token
 * again; its logits are not read). Question q is computed on rank q mod N;
 * each question's numbers depend on that question only, so the result does
 * not depend on N. Not here: few-shot contexts, acc_mutual_info, the
 * harness's left truncation of inputs longer than the model (an error). */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "launcher/eval_common.h"
#include "model/decode.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/log.h"

void cmd_eval_choices_usage(FILE *out) {
    fprintf(out,
            "usage: [mpirun -np N] shardlm eval --model DIR --tokenizer PATH --choices MC.jsonl\n"
            "                      [--out SCORES.jsonl] [--backend cpu|cuda] [--threads K] [--json]\n\n"
            "Multiple-choice accuracy as lm-evaluation-harness computes acc and acc_norm (zero-shot,\n"
            "continuation = \" \" + choice): prints on rank 0\n"
            "  eval choices acc X.XXXX | acc_norm Y.YYYY | n N\n"
            "MC.jsonl   one JSON object per line: \"context\" (or \"query\"), \"choices\" (or\n"
            "           \"endings\"; a list of strings) and \"gold\" (or \"label\"; the index of the\n"
            "           right choice, a number or a string of digits); optional \"id\"\n"
            "--out      write {\"index\", \"id\", \"gold\", \"logliks\", \"pred\", \"pred_norm\"} per question\n"
            "--json     also print {\"acc\": ..., \"acc_norm\": ..., \"n\": ...} with full precision\n");
}

typedef struct {
    const char *model_dir, *tok_path, *in_path, *out_path;
    bool cuda, json;
    int threads;
} ech_opts;

static sl_status parse_opts(const cli_args *a, ech_opts *o) {
    memset(o, 0, sizeof *o);
    o->model_dir = cli_get(a, "model");
    o->tok_path = cli_get(a, "tokenizer");
    o->in_path = cli_get(a, "choices");
    o->out_path = cli_get(a, "out");
    o->json = cli_has(a, "json");
    if (!o->model_dir || !o->tok_path || !o->in_path)
        return sl_errorf(SL_ERR_INVALID, "--model DIR, --tokenizer PATH and --choices MC.jsonl are required");
    long long v = 0;
    SL_TRY(cli_get_int(a, "threads", 0, 4096, &v));
    o->threads = (int)v;
    SL_TRY(cli_get_backend(a, &o->cuda));
    return SL_OK;
}

/* ---- questions ---- */

typedef struct {
    int64_t lineno;
    char *id_json;   /* or NULL */
    int gold, n_choices;
    double *len;     /* (n_choices) characters of each choice */
    uint32_t *ctx;   /* (n_ctx) context_enc */
    size_t n_ctx;
    uint32_t **cont; /* (n_choices) continuation_enc */
    size_t *n_cont;
} ech_question;

static void question_free(ech_question *q) {
    for (int c = 0; q->cont && c < q->n_choices; c++)
        free(q->cont[c]);
    free(q->cont);
    free(q->n_cont);
    free(q->len);
    free(q->ctx);
    free(q->id_json);
}

static sl_status encode(const tokenizer *t, const char *s, size_t len, uint32_t **ids, size_t *n) {
    size_t cap = len + 8;
    *ids = malloc(cap * sizeof **ids);
    SL_CHECK_ALLOC(*ids, cap * sizeof **ids);
    sl_status st = tok_encode(t, s, len, 0, *ids, cap, n);
    if (st == SL_ERR_INVALID && *n > cap) { /* never for BPE (ids <= bytes), but the contract allows it */
        sl_error_clear();
        free(*ids);
        cap = *n;
        *ids = malloc(cap * sizeof **ids);
        SL_CHECK_ALLOC(*ids, cap * sizeof **ids);
        st = tok_encode(t, s, len, 0, *ids, cap, n);
    }
    return st;
}

/* Python's str.isspace for one ASCII byte (what rstrip() removes). */
static bool py_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* Code points in n bytes of UTF-8 (Python's len of the decoded string). */
static size_t utf8_chars(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

static const cJSON *field(const cJSON *o, const char *a, const char *b, const char **name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a);
    *name = a;
    if (!v) {
        v = cJSON_GetObjectItemCaseSensitive(o, b);
        *name = b;
    }
    return v;
}

static sl_status parse_question(const tokenizer *tok, const char *f, const char *line, size_t len,
                                int64_t lineno, ech_question *q) {
    q->lineno = lineno;
    cJSON *root = cJSON_ParseWithLength(line, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": not a JSON object; expected one object per line with "
                         "\"context\", \"choices\" and \"gold\"", f, lineno);
    }
    const char *kc, *kch, *kg;
    const cJSON *ctx = field(root, "context", "query", &kc);
    const cJSON *ch = field(root, "choices", "endings", &kch);
    const cJSON *gold = field(root, "gold", "label", &kg);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    sl_status st = SL_OK;
    int n = cJSON_IsArray(ch) ? cJSON_GetArraySize(ch) : 0;
    long g = -1;
    if (!cJSON_IsString(ctx))
        st = sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": no \"context\" (or \"query\") string", f, lineno);
    else if (n < 1)
        st = sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": no \"choices\" (or \"endings\"): a non-empty list of "
                       "strings", f, lineno);
    else if (n > 4096)
        st = sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": %d choices; at most 4096", f, lineno, n);
    if (st == SL_OK) {
        if (cJSON_IsNumber(gold) && gold->valuedouble == floor(gold->valuedouble))
            g = (long)gold->valuedouble;
        else if (cJSON_IsString(gold) && gold->valuestring[0] &&
                 strspn(gold->valuestring, "0123456789") == strlen(gold->valuestring) &&
                 strlen(gold->valuestring) < 6)
            g = atol(gold->valuestring);
        else
            st = sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": no \"gold\" (or \"label\"): the index of the right "
                           "choice, a whole number", f, lineno);
        if (st == SL_OK && (g < 0 || g >= n))
            st = sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": \"%s\" %ld is not the index of one of the %d choices",
                           f, lineno, kg, g, n);
    }
    q->n_choices = n;
    q->gold = (int)g;
    if (st == SL_OK) {
        q->cont = calloc((size_t)n, sizeof *q->cont);
        q->n_cont = calloc((size_t)n, sizeof *q->n_cont);
        q->len = calloc((size_t)n, sizeof *q->len);
        if (!q->cont || !q->n_cont || !q->len)
            st = sl_errorf(SL_ERR_NOMEM, "out of memory");
    }
    if (st == SL_OK && id && !(q->id_json = cJSON_PrintUnformatted(id)))
        st = sl_errorf(SL_ERR_NOMEM, "out of memory");
    /* _encode_pair: trailing whitespace of the context goes to the continuation */
    const char *c = st == SL_OK ? ctx->valuestring : "";
    size_t clen = strlen(c), keep = clen;
    while (keep > 0 && py_space((unsigned char)c[keep - 1]))
        keep--;
    if (st == SL_OK && clen > 0 && keep == 0)
        st = sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": \"%s\" is only whitespace (lm-evaluation-harness would "
                       "score it as no context at all); give a real context or an empty string", f, lineno, kc);
    if (st == SL_OK && clen > 0) {
        st = encode(tok, c, keep, &q->ctx, &q->n_ctx);
    } else if (st == SL_OK) {
        int64_t pre = tok_bos_id(tok) >= 0 ? tok_bos_id(tok) : tok_eos_id(tok);
        if (pre < 0)
            st = sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": an empty context needs a BOS or EOS token to start "
                           "from, and tokenizer %s has neither", f, lineno, tok_name(tok));
        q->ctx = malloc(sizeof *q->ctx);
        if (st == SL_OK && !q->ctx)
            st = sl_errorf(SL_ERR_NOMEM, "out of memory");
        if (st == SL_OK) {
            q->ctx[0] = (uint32_t)pre;
            q->n_ctx = 1;
        }
    }
    eval_buf whole = {0};
    for (int k = 0; st == SL_OK && k < n; k++) {
        const cJSON *it = cJSON_GetArrayItem(ch, k);
        if (!cJSON_IsString(it)) {
            st = sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": \"%s\"[%d] is not a string", f, lineno, kch, k);
            break;
        }
        const char *choice = it->valuestring;
        size_t chl = strlen(choice);
        q->len[k] = (double)utf8_chars(choice, chl);
        whole.len = 0;
        if (clen > 0)
            st = eval_buf_add(&whole, c, clen); /* context + (its spaces + " " + choice) */
        if (st == SL_OK)
            st = eval_buf_add(&whole, " ", 1);
        if (st == SL_OK)
            st = eval_buf_add(&whole, choice, chl);
        uint32_t *ids = NULL;
        size_t nids = 0;
        if (st == SL_OK)
            st = encode(tok, whole.buf, whole.len, &ids, &nids);
        size_t skip = clen > 0 ? q->n_ctx : 0;
        if (st == SL_OK && nids <= skip)
            st = sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": choice %d has no token of its own after the context "
                           "(the encoding of context + choice is no longer than the context's)", f, lineno, k);
        if (st == SL_OK) {
            memmove(ids, ids + skip, (nids - skip) * sizeof *ids);
            q->cont[k] = ids;
            q->n_cont[k] = nids - skip;
        } else {
            free(ids);
        }
    }
    eval_buf_free(&whole);
    if (q->ctx == NULL && st == SL_OK)
        st = sl_errorf(SL_ERR_INTERNAL, "no context tokens");
    cJSON_Delete(root);
    return st;
}

/* ---- scoring ---- */

typedef struct {
    decode *dec[4097]; /* by choices */
    float *logits;     /* (max choices, V) */
    uint32_t *tokens;  /* (max choices, longest context) */
    int max_seq;
} ech_work;

/* log softmax of one row at id, in double. */
static double log_prob(const float *lg, int64_t V, uint32_t id) {
    double mx = -INFINITY, sum = 0;
    for (int64_t v = 0; v < V; v++)
        if (lg[v] > mx)
            mx = lg[v];
    for (int64_t v = 0; v < V; v++)
        sum += exp((double)lg[v] - mx);
    return (double)lg[id] - mx - log(sum);
}

static sl_status score_question(ech_work *w, const eval_model *m, const ech_question *q, double *ll) {
    const model_layout *l = m->md.layout;
    int64_t V = l->cfg.vocab_size;
    int R = q->n_choices;
    size_t longest = 0;
    for (int r = 0; r < R; r++) {
        ll[r] = 0;
        if (q->n_cont[r] > longest)
            longest = q->n_cont[r];
    }
    if (!w->dec[R])
        SL_TRY(decode_create(l, m->be, m->params, R, w->max_seq, 0, &w->dec[R]));
    decode *d = w->dec[R];
    decode_reset(d);
    for (int r = 0; r < R; r++)
        memcpy(w->tokens + (size_t)r * q->n_ctx, q->ctx, q->n_ctx * sizeof *w->tokens);
    SL_TRY(decode_prefill(d, w->tokens, (int64_t)q->n_ctx, w->logits));
    for (size_t j = 0; j < longest; j++) {
        /* the logits after context + cont[:j] give cont[j] */
        for (int r = 0; r < R; r++)
            if (j < q->n_cont[r])
                ll[r] += log_prob(w->logits + (size_t)r * (size_t)V, V, q->cont[r][j]);
        if (j + 1 == longest)
            break;
        for (int r = 0; r < R; r++)
            w->tokens[r] = q->cont[r][j < q->n_cont[r] ? j : q->n_cont[r] - 1];
        SL_TRY(decode_step(d, w->tokens, w->logits));
    }
    return SL_OK;
}

typedef struct {
    eval_jsonl j;
    tokenizer *tok;
    ech_question *q;
    size_t n;
    eval_model m;
    ech_work w;
    eval_buf rec;
} ech_state;

static void state_free(ech_state *e) {
    for (int r = 0; r <= 4096; r++)
        decode_destroy(e->w.dec[r]);
    free(e->w.logits);
    free(e->w.tokens);
    for (size_t i = 0; e->q && i < e->n; i++)
        question_free(&e->q[i]);
    free(e->q);
    eval_buf_free(&e->rec);
    eval_model_close(&e->m);
    tok_destroy(e->tok);
    eval_jsonl_free(&e->j);
}

static sl_status ech_run(ech_state *e, const ech_opts *o, const topology *t) {
    SL_TRY(tok_load(o->tok_path, &e->tok));
    SL_TRY(eval_jsonl_read(o->in_path, &e->j));
    e->q = calloc(e->j.n, sizeof *e->q);
    SL_CHECK_ALLOC(e->q, e->j.n * sizeof *e->q);
    for (size_t i = 0; i < e->j.n; i++) {
        e->n = i + 1;
        SL_TRY(parse_question(e->tok, o->in_path, e->j.line[i], e->j.len[i], e->j.lineno[i], &e->q[i]));
    }
    SL_TRY(eval_model_open(o->model_dir, o->cuda, o->threads, t, &e->m));
    const model_layout *l = e->m.md.layout;
    int64_t V = l->cfg.vocab_size, max_seq = l->cfg.max_seq_len;
    size_t need = 1, ctx_max = 1;
    int most = 1;
    for (size_t i = 0; i < e->n; i++) {
        const ech_question *q = &e->q[i];
        size_t longest = 0;
        for (int r = 0; r < q->n_choices; r++) {
            if (q->n_cont[r] > longest)
                longest = q->n_cont[r];
            for (size_t k = 0; k < q->n_cont[r]; k++)
                if ((int64_t)q->cont[r][k] >= V)
                    return sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": choice %d has token id %u, but model."
                                     "vocab_size of %s is %" PRId64 ": the tokenizer does not belong to the model",
                                     o->in_path, q->lineno, r, q->cont[r][k], o->model_dir, V);
        }
        for (size_t k = 0; k < q->n_ctx; k++)
            if ((int64_t)q->ctx[k] >= V)
                return sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": context token id %u, but model.vocab_size of %s "
                                 "is %" PRId64 ": the tokenizer does not belong to the model", o->in_path,
                                 q->lineno, q->ctx[k], o->model_dir, V);
        size_t inputs = q->n_ctx + longest - 1; /* the last continuation token is never an input */
        if ((int64_t)inputs > max_seq)
            return sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": context (%zu tokens) and longest choice (%zu) are "
                             "%zu input tokens, more than the model's max_seq_len %" PRId64 "; shorten the "
                             "context", o->in_path, q->lineno, q->n_ctx, longest, inputs, max_seq);
        if (inputs > need)
            need = inputs;
        if (q->n_ctx > ctx_max)
            ctx_max = q->n_ctx;
        if (q->n_choices > most)
            most = q->n_choices;
    }
    e->w.max_seq = (int)need;
    e->w.logits = malloc((size_t)most * (size_t)V * sizeof *e->w.logits);
    e->w.tokens = malloc((size_t)most * ctx_max * sizeof *e->w.tokens);
    if (!e->w.logits || !e->w.tokens)
        return sl_errorf(SL_ERR_NOMEM, "out of memory for %d x %" PRId64 " logits", most, V);
    double *ll = malloc((size_t)most * sizeof *ll);
    SL_CHECK_ALLOC(ll, (size_t)most * sizeof *ll);
    sl_status st = SL_OK;
    int64_t mine = 0;
    /* records: index (int64), then the question's n_choices logliks (double) */
    for (size_t i = (size_t)t->rank; st == SL_OK && i < e->n; i += (size_t)t->world) {
        st = score_question(&e->w, &e->m, &e->q[i], ll);
        int64_t index = (int64_t)i;
        if (st == SL_OK)
            st = eval_buf_add(&e->rec, &index, sizeof index);
        if (st == SL_OK)
            st = eval_buf_add(&e->rec, ll, (size_t)e->q[i].n_choices * sizeof *ll);
        mine++;
    }
    free(ll);
    if (st == SL_OK)
        LOG_INFO("eval --choices: %" PRId64 " of %zu questions on this rank", mine, e->n);
    return st;
}

static int argmax(const double *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) /* ties: the first, as np.argmax */
            b = i;
    return b;
}

static sl_status ech_report(const ech_state *e, const ech_opts *o, const char *all, size_t len) {
    const double **lls = calloc(e->n, sizeof *lls);
    SL_CHECK_ALLOC(lls, e->n * sizeof *lls);
    sl_status st = SL_OK;
    size_t got = 0;
    for (size_t off = 0; off < len;) {
        int64_t index;
        memcpy(&index, all + off, sizeof index);
        if (index < 0 || (size_t)index >= e->n || lls[index]) {
            st = sl_errorf(SL_ERR_INTERNAL, "eval --choices: bad result record for question %" PRId64, index);
            break;
        }
        lls[index] = (const double *)(all + off + 8); /* gathered at 8-byte offsets of a malloc'd block */
        off += 8 + (size_t)e->q[index].n_choices * sizeof(double);
        got++;
    }
    if (st == SL_OK && got != e->n)
        st = sl_errorf(SL_ERR_INTERNAL, "eval --choices: %zu results for %zu questions", got, e->n);
    double acc = 0, acc_norm = 0;
    eval_buf out = {0};
    double norm[4096];
    for (size_t i = 0; st == SL_OK && i < e->n; i++) {
        const ech_question *q = &e->q[i];
        for (int c = 0; c < q->n_choices; c++)
            norm[c] = lls[i][c] / q->len[c]; /* a 0-character choice gives +-inf or NaN, as numpy would */
        int pred = argmax(lls[i], q->n_choices), pred_norm = argmax(norm, q->n_choices);
        acc += pred == q->gold;
        acc_norm += pred_norm == q->gold;
        if (o->out_path) {
            st = eval_buf_printf(&out, "{\"index\": %zu", i);
            if (st == SL_OK && q->id_json)
                st = eval_buf_printf(&out, ", \"id\": %s", q->id_json);
            if (st == SL_OK)
                st = eval_buf_printf(&out, ", \"gold\": %d, \"logliks\": [", q->gold);
            for (int c = 0; st == SL_OK && c < q->n_choices; c++)
                st = eval_buf_printf(&out, "%s%.17g", c ? ", " : "", lls[i][c]);
            if (st == SL_OK)
                st = eval_buf_printf(&out, "], \"pred\": %d, \"pred_norm\": %d}\n", pred, pred_norm);
        }
    }
    if (st == SL_OK && o->out_path)
        st = fs_write_atomic(o->out_path, out.buf, out.len);
    if (st == SL_OK) {
        acc /= (double)e->n;
        acc_norm /= (double)e->n;
        printf("eval choices acc %.4f | acc_norm %.4f | n %zu\n", acc, acc_norm, e->n);
        if (o->json)
            printf("{\"acc\": %.17g, \"acc_norm\": %.17g, \"n\": %zu}\n", acc, acc_norm, e->n);
        if (fflush(stdout) != 0)
            st = sl_errorf(SL_ERR_IO, "error writing stdout");
    }
    eval_buf_free(&out);
    free(lls);
    return st;
}

static sl_status mode_parse(const cli_args *a, void *o) { return parse_opts(a, o); }
static sl_status mode_run(void *e, void *o, const topology *t) { return ech_run(e, o, t); }
static const eval_buf *mode_records(const void *e) { return &((const ech_state *)e)->rec; }
static sl_status mode_report(const void *e, const void *o, const char *all, size_t len) {
    return ech_report(e, o, all, len);
}
static void mode_free(void *e) { state_free(e); }

int cmd_eval_choices(int argc, char **argv) {
    static const char *const flags[] = {"json", NULL};
    static const char *const known[] = {"model", "tokenizer", "choices", "out", "backend", "threads", "json", NULL};
    static const eval_mode mode = {flags, known, cmd_eval_choices_usage, mode_parse, mode_run, mode_records,
                                   mode_report, NULL, mode_free};
    ech_opts o;
    ech_state e;
    memset(&e, 0, sizeof e);
    return eval_mode_main(&mode, &o, &e, argc, argv);
}
