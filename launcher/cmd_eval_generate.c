/* shardlm eval --generate: text for every prompt of a JSONL file with the
 * KV-cache decoder (model/decode.h) and sampler (model/sample.h) of shardlm
 * generate, over MPI ranks, written to one JSONL file in input order, scored
 * against references (corpus BLEU, ROUGE-1/2/L) when the prompts have them.
 *
 * Determinism: the batches are formed from the whole prompt list, the same
 * on every rank and at any rank count: prompt indices stable-sorted by token
 * length, cut into runs of equal length of at most --batch rows (decode.h
 * advances rows that share a position; there is no padding mask). Batch k
 * goes to rank k mod N. A row's draws come from the sampler's Philox
 * sub-stream = the prompt's index, at element = the token's position in the
 * generation (model/sample.h), so a prompt's text depends on the seed and
 * its place in the file only; prompt 0 gets what `shardlm generate --seed S`
 * gives. A finished row is still fed (its logits ignored) until every row
 * of its batch has stopped. Rank 0 gathers the texts and writes the file
 * (tmp + rename); an error anywhere writes nothing. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/chat.h"
#include "data/textmetrics.h"
#include "data/tokenizer.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "launcher/eval_common.h"
#include "launcher/sample_cli.h"
#include "model/decode.h"
#include "model/sample.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/log.h"

void cmd_eval_generate_usage(FILE *out) {
    fprintf(out,
            "usage: [mpirun -np N] shardlm eval --model DIR --tokenizer PATH --generate PROMPTS.jsonl\n"
            "                      --out GEN.jsonl [--batch B] [--max-new-tokens N] [--temperature T]\n"
            "                      [--top-k K] [--top-p P] [--seed S] [--stop TEXT] [--chat]\n"
            "                      [--system TEXT] [--bos] [--backend cpu|cuda] [--threads K] [--json]\n\n"
            "Generates a continuation of every prompt (the decoder and sampler of shardlm generate;\n"
            "the sampling options mean the same) and writes GEN.jsonl on rank 0, one line per\n"
            "prompt in input order. With references, prints corpus BLEU (sacrebleu's default)\n"
            "and ROUGE-1/2/L F1 (rouge-score, no stemmer).\n"
            "PROMPTS.jsonl  one JSON object per line: \"prompt\" (text) or \"messages\" (a chat\n"
            "               list of {\"role\", \"content\"}, rendered with the chat template and\n"
            "               its generation prompt); optional \"reference\" (or \"answer\") and \"id\"\n"
            "GEN.jsonl      {\"index\", \"id\", \"prompt\" or \"messages\", \"output\", \"n_tokens\",\n"
            "               \"finish_reason\": eos|stop|length, \"reference\"}\n"
            "--batch B      prompts of equal token length decoded together (default 8); the\n"
            "               texts do not depend on N or on B\n"
            "--seed S       prompt i samples from sub-stream i of seed S (default 0)\n"
            "--chat         wrap \"prompt\" lines in the chat template, as generate --chat\n"
            "--json         also print the counts and scores as JSON with full precision\n");
}

typedef struct {
    const char *model_dir, *tok_path, *in_path, *out_path;
    bool json;
    int batch;
    sample_cli s; /* the sampling options of shardlm generate, --backend and --threads */
} egen_opts;

static sl_status parse_opts(const cli_args *a, egen_opts *o) {
    memset(o, 0, sizeof *o);
    o->model_dir = cli_get(a, "model");
    o->tok_path = cli_get(a, "tokenizer");
    o->in_path = cli_get(a, "generate");
    o->out_path = cli_get(a, "out");
    o->json = cli_has(a, "json");
    if (!o->model_dir || !o->tok_path || !o->in_path || !o->out_path)
        return sl_errorf(SL_ERR_INVALID, "--model DIR, --tokenizer PATH, --generate PROMPTS.jsonl and --out "
                         "GEN.jsonl are required");
    SL_TRY(sample_cli_parse(a, &o->s));
    long long v = 8;
    SL_TRY(cli_get_int(a, "batch", 1, 4096, &v));
    o->batch = (int)v;
    return SL_OK;
}

/* ---- the prompts ---- */

typedef struct {
    int64_t lineno;
    char *id_json;     /* the "id" value as JSON, or NULL */
    char *shown;       /* "prompt": its JSON string; "messages": the list as JSON */
    bool messages, chat;
    char *reference;   /* or NULL */
    chat_seq seq;
} egen_prompt;

typedef struct {
    egen_prompt *p;
    size_t n;
    tokenizer *tok;
    chat_template ct;
    bool ct_ready;
} egen_set;

static void set_free(egen_set *s) {
    for (size_t i = 0; i < s->n; i++) {
        free(s->p[i].id_json);
        free(s->p[i].shown);
        free(s->p[i].reference);
        chat_seq_free(&s->p[i].seq);
    }
    free(s->p);
    tok_destroy(s->tok);
    memset(s, 0, sizeof *s);
}

static sl_status ensure_chat(egen_set *s, const egen_opts *o) {
    if (s->ct_ready)
        return SL_OK;
    char tmpl[32];
    SL_TRY(chat_template_detect(o->tok_path, tmpl, sizeof tmpl));
    SL_TRY(chat_template_init(tmpl, s->tok, &s->ct));
    s->ct_ready = true;
    return SL_OK;
}

#define EGEN_MAX_TURNS 256

/* One line into p: its fields, then its token ids (as generate encodes). */
static sl_status parse_prompt(egen_set *s, const egen_opts *o, const char *line, size_t len, int64_t lineno,
                              egen_prompt *p) {
    const char *f = o->in_path;
    p->lineno = lineno;
    cJSON *root = cJSON_ParseWithLength(line, len);
    if (!root || !cJSON_IsObject(root)) {
        const char *at = cJSON_GetErrorPtr();
        long col = root || !at || at < line || at > line + len ? 0 : (long)(at - line) + 1;
        cJSON_Delete(root);
        if (col > 0)
            return sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": not valid JSON (near column %ld); expected one JSON "
                             "object per line with \"prompt\" or \"messages\"", f, lineno, col);
        return sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": not a JSON object; expected one object per line with "
                         "\"prompt\" or \"messages\"", f, lineno);
    }
    sl_status st = SL_OK;
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(root, "reference");
    const char *ref_key = "reference";
    if (!ref) {
        ref = cJSON_GetObjectItemCaseSensitive(root, "answer");
        ref_key = "answer";
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    chat_turn turns[EGEN_MAX_TURNS + 1];
    int nt = 0;
    eval_buf shown = {0};
    if (ref && !cJSON_IsString(ref)) {
        st = sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": \"%s\" must be a string", f, lineno, ref_key);
    } else if (cJSON_IsString(prompt)) {
        st = eval_buf_json_string(&shown, prompt->valuestring, strlen(prompt->valuestring));
        p->chat = o->s.chat;
        if (o->s.system)
            turns[nt++] = (chat_turn){CHAT_ROLE_SYSTEM, o->s.system, strlen(o->s.system)};
        turns[nt++] = (chat_turn){CHAT_ROLE_USER, prompt->valuestring, strlen(prompt->valuestring)};
    } else if (cJSON_IsArray(msgs) && cJSON_GetArraySize(msgs) > 0) {
        p->messages = p->chat = true;
        const cJSON *first = cJSON_GetArrayItem(msgs, 0);
        const cJSON *r0 = cJSON_GetObjectItemCaseSensitive(first, "role");
        if (o->s.system && !(cJSON_IsString(r0) && chat_role_parse(r0->valuestring) == CHAT_ROLE_SYSTEM))
            turns[nt++] = (chat_turn){CHAT_ROLE_SYSTEM, o->s.system, strlen(o->s.system)};
        const cJSON *m;
        int k = 0;
        cJSON_ArrayForEach(m, msgs) {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
            int r = cJSON_IsString(role) ? chat_role_parse(role->valuestring) : -1;
            if (r < 0 || !cJSON_IsString(content)) {
                st = sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": messages[%d] needs \"role\" (system, user, "
                               "assistant or tool) and \"content\" (a string)", f, lineno, k);
                break;
            }
            if (nt == EGEN_MAX_TURNS) {
                st = sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": more than %d messages", f, lineno,
                               EGEN_MAX_TURNS);
                break;
            }
            turns[nt++] = (chat_turn){r, content->valuestring, strlen(content->valuestring)};
            k++;
        }
        if (st == SL_OK) {
            char *js = cJSON_PrintUnformatted(msgs);
            st = js ? eval_buf_add(&shown, js, strlen(js)) : sl_errorf(SL_ERR_NOMEM, "out of memory");
            cJSON_free(js);
        }
    } else {
        st = sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": no \"prompt\" (a string) or \"messages\" (a non-empty "
                       "list of {\"role\", \"content\"}) field", f, lineno);
    }
    if (st == SL_OK && ref) { /* cJSON passes invalid UTF-8 through: replaced as in the outputs */
        eval_buf r = {0};
        st = eval_buf_utf8(&r, ref->valuestring, strlen(ref->valuestring));
        if (st == SL_OK && !r.buf)
            st = eval_buf_add(&r, "", 0);
        p->reference = r.buf;
    }
    if (st == SL_OK && id) {
        p->id_json = cJSON_PrintUnformatted(id);
        if (!p->id_json)
            st = sl_errorf(SL_ERR_NOMEM, "out of memory");
    }
    if (st == SL_OK) {
        p->shown = shown.buf;
        shown.buf = NULL;
    }
    /* the ids, as generate encodes its prompt */
    if (st == SL_OK && p->chat) {
        st = ensure_chat(s, o);
        if (st == SL_OK && o->s.bos && tok_bos_id(s->tok) >= 0) {
            st = chat_seq_reserve(&p->seq, 1);
            if (st == SL_OK) {
                p->seq.ids[p->seq.n] = (uint32_t)tok_bos_id(s->tok);
                p->seq.mask[p->seq.n++] = 0;
            }
        }
        if (st == SL_OK)
            st = chat_encode_generation_prompt(&s->ct, s->tok, turns, nt, &p->seq);
    } else if (st == SL_OK) {
        const chat_turn *u = &turns[nt - 1];
        int64_t start = tok_bos_id(s->tok);
        if (start < 0 && u->len == 0)
            start = tok_eos_id(s->tok);
        if ((o->s.bos || u->len == 0) && start >= 0) {
            st = chat_seq_reserve(&p->seq, 1);
            if (st == SL_OK) {
                p->seq.ids[p->seq.n] = (uint32_t)start;
                p->seq.mask[p->seq.n++] = 0;
            }
        } else if (o->s.bos) {
            st = sl_errorf(SL_ERR_INVALID, "--bos: tokenizer %s has no BOS token", o->tok_path);
        }
        if (st == SL_OK && u->len > 0)
            st = chat_encode_text(s->tok, u->text, u->len, 0, &p->seq);
        if (st == SL_OK && p->seq.n == 0)
            st = sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": the prompt is empty and tokenizer %s has neither BOS "
                           "nor EOS to start from", f, lineno, o->tok_path);
    }
    eval_buf_free(&shown);
    cJSON_Delete(root);
    if (st != SL_OK && !strstr(sl_error_message(), f))
        st = sl_error_wrapf(st, "%s:%" PRId64, f, lineno);
    return st;
}

static sl_status read_prompts(egen_set *s, const egen_opts *o) {
    eval_jsonl j;
    sl_status st = eval_jsonl_read(o->in_path, &j);
    if (st == SL_OK) {
        s->p = calloc(j.n, sizeof *s->p);
        if (!s->p)
            st = sl_errorf(SL_ERR_NOMEM, "out of memory for %zu prompts", j.n);
    }
    for (size_t i = 0; st == SL_OK && i < j.n; i++) {
        s->n = i + 1;
        st = parse_prompt(s, o, j.line[i], j.len[i], j.lineno[i], &s->p[i]);
    }
    eval_jsonl_free(&j);
    return st;
}

/* ---- batches ---- */

typedef struct {
    size_t len, index;
} egen_key;

static int by_length(const void *a, const void *b) {
    const egen_key *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index ? 1 : 0; /* stable: input order among equals */
}

/* ---- one batch ---- */

enum { EGEN_FINISH_EOS = 0, EGEN_FINISH_STOP, EGEN_FINISH_LENGTH };
static const char *const finish_name[] = {"eos", "stop", "length"};

typedef struct {
    char *text;
    size_t len, cap;
    int n_tokens, finish;
    bool active;
} egen_row;

static sl_status row_push(egen_row *r, const tokenizer *t, uint32_t id, const char *stop, size_t stop_len,
                          bool *stopped) {
    size_t got = 0, old = r->len;
    SL_TRY(mem_grow_bytes(&r->text, &r->cap, r->len + 64, 256));
    sl_status st = tok_decode(t, &id, 1, r->text + r->len, r->cap - r->len, &got);
    if (st == SL_ERR_INVALID && got > r->cap - r->len) {
        sl_error_clear();
        SL_TRY(mem_grow_bytes(&r->text, &r->cap, r->len + got, 256));
        st = tok_decode(t, &id, 1, r->text + r->len, r->cap - r->len, &got);
    }
    SL_TRY(st);
    r->len += got;
    *stopped = false;
    if (stop) { /* the first occurrence starts no earlier than old - stop_len + 1 */
        size_t from = old >= stop_len ? old - stop_len + 1 : 0;
        for (size_t i = from; i + stop_len <= r->len; i++)
            if (memcmp(r->text + i, stop, stop_len) == 0) {
                r->len = i;
                *stopped = true;
                break;
            }
    }
    return SL_OK;
}

typedef struct {
    decode *dec[4097]; /* by rows */
    sampler *smp;
    float *logits;     /* (batch, V) */
    uint32_t *tokens;  /* (batch, longest prompt) */
    egen_row *rows;    /* (n_rows) */
    int n_rows, dec_max_seq;
} egen_work;

static sl_status run_batch(egen_work *w, const egen_set *s, const egen_opts *o, const eval_model *m,
                           const size_t *idx, int R, eval_buf *rec) {
    const model_layout *l = m->md.layout;
    int64_t V = l->cfg.vocab_size, tv = tok_vocab_size(s->tok), eos = tok_eos_id(s->tok);
    int64_t n = (int64_t)s->p[idx[0]].seq.n, max_seq = l->cfg.max_seq_len;
    int64_t cache = n + o->s.max_new < max_seq ? n + o->s.max_new : max_seq;
    if (!w->dec[R])
        SL_TRY(decode_create(l, m->be, m->params, R, w->dec_max_seq, 0, &w->dec[R]));
    decode *d = w->dec[R];
    decode_reset(d);
    for (int r = 0; r < R; r++) {
        memcpy(w->tokens + (size_t)r * (size_t)n, s->p[idx[r]].seq.ids, (size_t)n * sizeof *w->tokens);
        w->rows[r] = (egen_row){.text = w->rows[r].text, .cap = w->rows[r].cap, .active = true};
    }
    SL_TRY(decode_prefill(d, w->tokens, n, w->logits));
    size_t stop_len = o->s.stop ? strlen(o->s.stop) : 0;
    for (int i = 0; i < o->s.max_new; i++) {
        int active = 0;
        for (int r = 0; r < R; r++) {
            egen_row *row = &w->rows[r];
            uint32_t id = 0;
            if (row->active) {
                bool end = false;
                sample_set_stream(w->smp, (uint32_t)idx[r]);
                SL_TRY(sample_cli_pick(w->smp, w->logits + (size_t)r * (size_t)V, V, tv, (uint64_t)i, eos,
                                       s->p[idx[r]].chat ? (int64_t)s->ct.im_end : -1, &id, &end));
                if (end) {
                    row->active = false;
                    row->finish = EGEN_FINISH_EOS;
                } else {
                    bool stopped = false;
                    row->n_tokens++;
                    SL_TRY(row_push(row, s->tok, id, o->s.stop, stop_len, &stopped));
                    if (stopped) {
                        row->active = false;
                        row->finish = EGEN_FINISH_STOP;
                    }
                }
            }
            w->tokens[r] = id; /* a finished row is fed token 0; its logits are not read */
            active += row->active;
        }
        if (active == 0)
            break;
        if (i + 1 == o->s.max_new || decode_pos(d) == cache) {
            for (int r = 0; r < R; r++)
                if (w->rows[r].active) {
                    w->rows[r].active = false;
                    w->rows[r].finish = EGEN_FINISH_LENGTH;
                }
            break;
        }
        SL_TRY(decode_step(d, w->tokens, w->logits));
    }
    /* records: index (int64), n_tokens (int32), finish (int32), text length (int64), text */
    for (int r = 0; r < R; r++) {
        int64_t index = (int64_t)idx[r], tl = (int64_t)w->rows[r].len;
        int32_t nt = w->rows[r].n_tokens, fin = w->rows[r].finish;
        SL_TRY(eval_buf_add(rec, &index, sizeof index));
        SL_TRY(eval_buf_add(rec, &nt, sizeof nt));
        SL_TRY(eval_buf_add(rec, &fin, sizeof fin));
        SL_TRY(eval_buf_add(rec, &tl, sizeof tl));
        SL_TRY(eval_buf_add(rec, w->rows[r].text ? w->rows[r].text : "", (size_t)tl));
    }
    return SL_OK;
}

typedef struct {
    egen_set set;
    eval_model m;
    egen_work w;
    size_t *order;
    eval_buf rec;
} egen_state;

static void state_free(egen_state *e) {
    for (int r = 0; r <= 4096; r++)
        decode_destroy(e->w.dec[r]);
    sample_destroy(e->w.smp);
    free(e->w.logits);
    free(e->w.tokens);
    for (int r = 0; e->w.rows && r < e->w.n_rows; r++)
        free(e->w.rows[r].text);
    free(e->w.rows);
    free(e->order);
    eval_buf_free(&e->rec);
    eval_model_close(&e->m);
    set_free(&e->set);
}

/* This rank's batches; every rank parses and tokenizes the whole file (the
 * batches are formed from all of it). No collective inside. */
static sl_status egen_run(egen_state *e, const egen_opts *o, const topology *t) {
    egen_set *s = &e->set;
    SL_TRY(tok_load(o->tok_path, &s->tok));
    SL_TRY(read_prompts(s, o));
    SL_TRY(eval_model_open(o->model_dir, o->s.cuda, o->s.threads, t, &e->m));
    const model_layout *l = e->m.md.layout;
    int64_t V = l->cfg.vocab_size, max_seq = l->cfg.max_seq_len;
    size_t longest = 0;
    for (size_t i = 0; i < s->n; i++) {
        const egen_prompt *p = &s->p[i];
        for (size_t k = 0; k < p->seq.n; k++)
            if ((int64_t)p->seq.ids[k] >= V)
                return sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": prompt token %zu has id %u, but model.vocab_size "
                                 "of %s is %" PRId64 ": the tokenizer %s does not belong to this model%s",
                                 o->in_path, p->lineno, k, p->seq.ids[k], o->model_dir, V, o->tok_path,
                                 p->chat ? " (chat prompts add <|im_start|>/<|im_end|> at the next free ids when "
                                           "the tokenizer lacks them)" : "");
        if ((int64_t)p->seq.n >= max_seq)
            return sl_errorf(SL_ERR_INVALID, "%s:%" PRId64 ": the prompt is %zu tokens; the model's max_seq_len "
                             "%" PRId64 " leaves no room to generate; shorten it", o->in_path, p->lineno,
                             p->seq.n, max_seq);
        if (p->seq.n > longest)
            longest = p->seq.n;
    }
    /* the batches, the same on every rank */
    e->order = malloc(s->n * sizeof *e->order);
    egen_key *keys = malloc(s->n * sizeof *keys);
    if (!e->order || !keys) {
        free(keys);
        return sl_errorf(SL_ERR_NOMEM, "out of memory sorting %zu prompts", s->n);
    }
    for (size_t i = 0; i < s->n; i++)
        keys[i] = (egen_key){s->p[i].seq.n, i};
    qsort(keys, s->n, sizeof *keys, by_length);
    for (size_t i = 0; i < s->n; i++)
        e->order[i] = keys[i].index;
    free(keys);
    int B = o->batch;
    int64_t need = (int64_t)longest + o->s.max_new;
    e->w.dec_max_seq = (int)(need < max_seq ? need : max_seq);
    e->w.n_rows = B;
    e->w.rows = calloc((size_t)B, sizeof *e->w.rows);
    e->w.logits = malloc((size_t)B * (size_t)V * sizeof *e->w.logits);
    e->w.tokens = malloc((size_t)B * (longest > 0 ? longest : 1) * sizeof *e->w.tokens);
    if (!e->w.rows || !e->w.logits || !e->w.tokens)
        return sl_errorf(SL_ERR_NOMEM, "out of memory for a batch of %d x %" PRId64 " logits", B, V);
    sample_opts so = sample_cli_sampler(&o->s);
    SL_TRY(sample_create(&so, V, &e->w.smp));
    int64_t k = 0, mine = 0, total = 0;
    for (size_t i = 0; i < s->n; k++) {
        size_t e_ = i + 1;
        while (e_ < s->n && (int)(e_ - i) < B && s->p[e->order[e_]].seq.n == s->p[e->order[i]].seq.n)
            e_++;
        total++;
        if (k % t->world == t->rank) {
            SL_TRY(run_batch(&e->w, s, o, &e->m, e->order + i, (int)(e_ - i), &e->rec));
            mine++;
        }
        i = e_;
    }
    LOG_INFO("eval --generate: %" PRId64 " of %" PRId64 " batches on this rank", mine, total);
    return SL_OK;
}

/* Corpus BLEU and ROUGE of the outputs (as the file holds them: invalid
 * UTF-8 replaced) against the references, over the prompts that have one. */
typedef struct {
    textmetrics_bleu bleu;
    textmetrics_rouge rouge;
    int64_t n;
} egen_scores;

static sl_status score(const egen_set *s, const char *const *text, const int64_t *tl, egen_scores *out) {
    memset(out, 0, sizeof *out);
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->p[i].reference != NULL;
    if (n == 0)
        return SL_OK;
    const char **hyps = calloc(n, sizeof *hyps), **refs = calloc(n, sizeof *refs);
    size_t *off = calloc(n, sizeof *off);
    eval_buf all = {0};
    sl_status st = hyps && refs && off ? SL_OK : sl_errorf(SL_ERR_NOMEM, "out of memory scoring %zu outputs", n);
    size_t k = 0;
    for (size_t i = 0; st == SL_OK && i < s->n; i++) {
        if (!s->p[i].reference)
            continue;
        off[k] = all.len;
        refs[k++] = s->p[i].reference;
        st = eval_buf_utf8(&all, text[i], (size_t)tl[i]);
        if (st == SL_OK)
            st = eval_buf_add(&all, "", 1); /* NUL-separated */
    }
    for (size_t j = 0; st == SL_OK && j < n; j++)
        hyps[j] = all.buf + off[j];
    if (st == SL_OK)
        st = textmetrics_corpus_bleu(hyps, refs, n, &out->bleu);
    if (st == SL_OK)
        st = textmetrics_corpus_rouge(hyps, refs, n, &out->rouge);
    if (st != SL_OK)
        st = sl_error_wrapf(st, "scoring the outputs against the references");
    out->n = (int64_t)n;
    eval_buf_free(&all);
    free(hyps);
    free(refs);
    free(off);
    return st;
}

/* Rank 0: the file in input order, and the counts on stdout. */
static sl_status egen_write(const egen_state *e, const egen_opts *o, const char *all, size_t len) {
    const egen_set *s = &e->set;
    const char **text = calloc(s->n ? s->n : 1, sizeof *text);
    int64_t *tl = calloc(s->n ? s->n : 1, sizeof *tl);
    int32_t *nt = calloc(s->n ? s->n : 1, sizeof *nt), *fin = calloc(s->n ? s->n : 1, sizeof *fin);
    eval_buf out = {0};
    sl_status st = text && tl && nt && fin ? SL_OK : sl_errorf(SL_ERR_NOMEM, "out of memory");
    size_t got = 0;
    for (size_t off = 0; st == SL_OK && off < len;) {
        int64_t index, n;
        memcpy(&index, all + off, sizeof index);
        if (index < 0 || (size_t)index >= s->n || text[index]) {
            st = sl_errorf(SL_ERR_INTERNAL, "eval --generate: bad result record for prompt %" PRId64, index);
            break;
        }
        memcpy(&nt[index], all + off + 8, 4);
        memcpy(&fin[index], all + off + 12, 4);
        memcpy(&n, all + off + 16, 8);
        tl[index] = n;
        text[index] = all + off + 24;
        off += 24 + (size_t)n;
        got++;
    }
    if (st == SL_OK && got != s->n)
        st = sl_errorf(SL_ERR_INTERNAL, "eval --generate: %zu results for %zu prompts", got, s->n);
    int64_t tokens = 0, counts[3] = {0, 0, 0}, n_ref = 0;
    for (size_t i = 0; st == SL_OK && i < s->n; i++) {
        const egen_prompt *p = &s->p[i];
        st = eval_buf_printf(&out, "{\"index\": %zu", i);
        if (st == SL_OK && p->id_json)
            st = eval_buf_printf(&out, ", \"id\": %s", p->id_json);
        if (st == SL_OK)
            st = eval_buf_printf(&out, ", \"%s\": %s, \"output\": ", p->messages ? "messages" : "prompt", p->shown);
        if (st == SL_OK)
            st = eval_buf_json_string(&out, text[i], (size_t)tl[i]);
        if (st == SL_OK)
            st = eval_buf_printf(&out, ", \"n_tokens\": %d, \"finish_reason\": \"%s\"", nt[i], finish_name[fin[i]]);
        if (st == SL_OK && p->reference) {
            st = eval_buf_add(&out, ", \"reference\": ", 15);
            if (st == SL_OK)
                st = eval_buf_json_string(&out, p->reference, strlen(p->reference));
            n_ref++;
        }
        if (st == SL_OK)
            st = eval_buf_add(&out, "}\n", 2);
        tokens += nt[i];
        counts[fin[i]]++;
    }
    egen_scores sc;
    if (st == SL_OK)
        st = score(s, text, tl, &sc);
    if (st == SL_OK)
        st = fs_write_atomic(o->out_path, out.buf, out.len);
    if (st == SL_OK) {
        printf("eval generate: %zu prompts | %" PRId64 " tokens | finish eos %" PRId64 ", stop %" PRId64
               ", length %" PRId64 " | wrote %s\n", s->n, tokens, counts[0], counts[1], counts[2], o->out_path);
        if (n_ref > 0)
            printf("eval generate: %" PRId64 " references | bleu %.2f | rouge1 %.4f | rouge2 %.4f | rougeL %.4f\n",
                   n_ref, sc.bleu.score, sc.rouge.rouge1.f1, sc.rouge.rouge2.f1, sc.rouge.rougeL.f1);
        if (o->json && n_ref == 0)
            printf("{\"prompts\": %zu, \"tokens\": %" PRId64 ", \"eos\": %" PRId64 ", \"stop\": %" PRId64
                   ", \"length\": %" PRId64 ", \"references\": 0}\n", s->n, tokens, counts[0], counts[1],
                   counts[2]);
        else if (o->json)
            printf("{\"prompts\": %zu, \"tokens\": %" PRId64 ", \"eos\": %" PRId64 ", \"stop\": %" PRId64
                   ", \"length\": %" PRId64 ", \"references\": %" PRId64 ", \"bleu\": %.17g, \"bleu_bp\": %.17g, "
                   "\"bleu_sys_len\": %" PRId64 ", \"bleu_ref_len\": %" PRId64 ", \"rouge1\": %.17g, \"rouge2\": %.17g, "
                   "\"rougeL\": %.17g}\n", s->n, tokens, counts[0], counts[1], counts[2], n_ref, sc.bleu.score,
                   sc.bleu.bp, sc.bleu.sys_len, sc.bleu.ref_len, sc.rouge.rouge1.f1, sc.rouge.rouge2.f1,
                   sc.rouge.rougeL.f1);
        if (fflush(stdout) != 0)
            st = sl_errorf(SL_ERR_IO, "error writing stdout");
    }
    eval_buf_free(&out);
    free(text);
    free(tl);
    free(nt);
    free(fin);
    return st;
}

static sl_status mode_parse(const cli_args *a, void *o) { return parse_opts(a, o); }
static sl_status mode_run(void *e, void *o, const topology *t) { return egen_run(e, o, t); }
static const eval_buf *mode_records(const void *e) { return &((const egen_state *)e)->rec; }
static sl_status mode_report(const void *e, const void *o, const char *all, size_t len) {
    return egen_write(e, o, all, len);
}
static void mode_free(void *e) { state_free(e); }

int cmd_eval_generate(int argc, char **argv) {
    static const char *const flags[] = {"chat", "bos", "json", NULL};
    static const char *const known[] = {"model", "tokenizer", "generate", "out", "batch", "max-new-tokens",
                                        "temperature", "top-k", "top-p", "seed", "stop", "chat", "system", "bos",
                                        "backend", "threads", "json", NULL};
    static const eval_mode mode = {flags, known, cmd_eval_generate_usage, mode_parse, mode_run, mode_records,
                                   mode_report, NULL, mode_free};
    egen_opts o;
    egen_state e;
    memset(&e, 0, sizeof e);
    return eval_mode_main(&mode, &o, &e, argc, argv);
}
