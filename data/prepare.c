/* data/prepare.c: the prepare pipeline (prepare.h): batches of records,
 * processed in parallel, consumed in order. */
#include "data/prepare.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <xxhash.h>

#include "data/chat.h"
#include "data/clean.h"
#include "data/dedup.h"
#include "data/prepare_input.h"
#include "data/prepare_pairs.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/log.h"

#define PREP_MAX_TURNS 256

static const char *const drop_names[PREPARE_DROP_COUNT] = {
    "bad_json", "no_fields", "invalid_utf8", "empty", "too_short_chars", "too_long_chars",
    "too_short_tokens", "too_long_tokens", "exact_duplicate", "near_duplicate", "prompt_mismatch",
    "identical_pair"};

const char *prepare_drop_name(prepare_drop d) { return d < PREPARE_DROP_COUNT ? drop_names[d] : "?"; }

/* What a record is: undecided (unusable JSON), a document, a preference pair.
 * A run writes one kind. */
typedef enum { PREP_KIND_NONE = 0, PREP_KIND_DOC, PREP_KIND_PAIR } prep_kind;

/* One record of a batch and what the workers made of it. */
typedef struct {
    size_t off, len; /* raw bytes in the batch arena */
    bool is_json, oversize;
    int file;
    uint64_t line;
    int drop; /* prepare_drop, or -1: keep */
    bool chat, repaired, html;
    uint64_t pii[PII_TYPE_COUNT];
    prep_kind kind;
    chat_seq seq;        /* the document; a pair's prompt */
    chat_seq seq_c, seq_r; /* a pair's chosen and rejected responses */
    uint64_t exact;
    uint32_t *mh; /* [perms] */
    sl_status st;
    char err[512];
} prep_slot;

/* Per worker thread. */
typedef struct {
    clean_buf turn[PREP_MAX_TURNS];
    clean_buf scratch, dd_text, dd_scratch;
    clean_buf edge[3]; /* standard pairs: prompt, chosen, rejected with their outer whitespace */
    chat_turn other[PREP_MAX_TURNS]; /* a pair's second prompt, as parsed */
    pii_scratch *pii;
} prep_worker;

typedef struct {
    const cfg_prepare *cfg;
    clean_opts copts;
    tokenizer *tok;
    chat_template chat;
    pii_masker *pii;
    dedup *dd;
    dedup *dd_pairs; /* pairs: exact only (near matching would drop pairs that share a prompt) */
    bool pair_template; /* prepare.chat_template set (not auto): standard pairs use it */
    int perms;
} prep_ctx;

/* ---- record -> turns ---- */

static const char *json_str(const cJSON *o, const char *field) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Fills turns (pointing into root's strings or raw); returns the count, 0 for
 * a text document (turns[0] holds it), -1 with *drop set when unusable. */
static int record_turns(const prep_ctx *c, const prep_slot *s, const char *raw, cJSON **root,
                        chat_turn *turns, char **joined, int *drop) {
    if (!s->is_json) {
        turns[0] = (chat_turn){CHAT_ROLE_USER, raw, s->len};
        return 0;
    }
    const cfg_prepare *f = c->cfg;
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(*root, f->messages_field);
    if (cJSON_IsArray(msgs)) {
        int n = 0;
        const cJSON *m;
        cJSON_ArrayForEach(m, msgs) {
            const char *role = json_str(m, f->role_field), *content = json_str(m, f->content_field);
            int r = role ? chat_role_parse(role) : -1;
            if (r < 0 || !content || n == PREP_MAX_TURNS) {
                *drop = PREPARE_DROP_NO_FIELDS;
                return -1;
            }
            turns[n++] = (chat_turn){r, content, strlen(content)};
        }
        if (n == 0) {
            *drop = PREPARE_DROP_NO_FIELDS;
            return -1;
        }
        return n;
    }
    const char *p = json_str(*root, f->prompt_field), *r = json_str(*root, f->response_field);
    if (p && r) {
        turns[0] = (chat_turn){CHAT_ROLE_USER, p, strlen(p)};
        turns[1] = (chat_turn){CHAT_ROLE_ASSISTANT, r, strlen(r)};
        return 2;
    }
    const char *ins = json_str(*root, f->instruction_field), *out = json_str(*root, f->output_field);
    if (ins && out) {
        const char *inp = json_str(*root, f->input_field);
        if (inp && inp[0]) { /* instruction, blank line, input */
            size_t a = strlen(ins), b = strlen(inp);
            *joined = malloc(a + b + 3);
            if (!*joined) {
                *drop = PREPARE_DROP_NO_FIELDS;
                return -1;
            }
            memcpy(*joined, ins, a);
            memcpy(*joined + a, "\n\n", 2);
            memcpy(*joined + a + 2, inp, b + 1);
            ins = *joined;
        }
        turns[0] = (chat_turn){CHAT_ROLE_USER, ins, strlen(ins)};
        turns[1] = (chat_turn){CHAT_ROLE_ASSISTANT, out, strlen(out)};
        return 2;
    }
    const char *t = json_str(*root, f->text_field);
    if (t) {
        turns[0] = (chat_turn){CHAT_ROLE_USER, t, strlen(t)};
        return 0;
    }
    *drop = PREPARE_DROP_NO_FIELDS;
    return -1;
}

/* ---- the worker: one record ---- */

/* Cleans turns[i] into w->turn[i] (and PII-masks it); points the turn at the
 * result. *invalid: dropped for invalid UTF-8. */
static sl_status clean_turn(const prep_ctx *c, prep_worker *w, prep_slot *s, chat_turn *turns, int i,
                            size_t *chars, bool *invalid) {
    clean_result cr;
    SL_TRY(clean_text(&c->copts, turns[i].text, turns[i].len, &w->turn[i], &w->scratch, &cr));
    *invalid = cr.dropped_invalid_utf8;
    if (*invalid)
        return SL_OK;
    s->repaired |= cr.repaired_utf8;
    s->html |= cr.had_html;
    if (c->cfg->pii)
        SL_TRY(pii_mask(c->pii, w->pii, &w->turn[i], s->pii));
    *chars += cr.n_chars; /* PII tags change lengths a little; the filter uses the cleaned text */
    turns[i].text = w->turn[i].p;
    turns[i].len = w->turn[i].len;
    return SL_OK;
}

/* The dedup text of a turn: "role\ntext\n". */
static sl_status dd_append_turn(prep_worker *w, const char *role, const chat_turn *t) {
    SL_TRY(clean_buf_append(&w->dd_text, role, strlen(role)));
    SL_TRY(clean_buf_append(&w->dd_text, "\n", 1));
    SL_TRY(clean_buf_append(&w->dd_text, t->text, t->len));
    return clean_buf_append(&w->dd_text, "\n", 1);
}

/* Standard (untemplated) pairs are concatenated text, so the whitespace that
 * cleaning trims at a segment's ends is part of the data ("The sky is" +
 * " blue."): the raw leading (a response) or trailing (the prompt) run of
 * spaces, tabs and line breaks goes back around the cleaned text (CR
 * dropped, as cleaning drops it). */
static bool is_edge_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; }

static sl_status restore_edge(const char *raw, size_t raw_len, bool lead, chat_turn *t, clean_buf *out) {
    size_t a = 0, b = raw_len;
    while (lead && a < raw_len && is_edge_ws(raw[a]))
        a++;
    while (!lead && b > 0 && is_edge_ws(raw[b - 1]))
        b--;
    const char *ws = lead ? raw : raw + b;
    size_t nws = lead ? a : raw_len - b;
    out->len = 0;
    for (size_t i = 0; lead && i < nws; i++)
        if (ws[i] != '\r')
            SL_TRY(clean_buf_append(out, ws + i, 1));
    SL_TRY(clean_buf_append(out, t->text, t->len));
    for (size_t i = 0; !lead && i < nws; i++)
        if (ws[i] != '\r')
            SL_TRY(clean_buf_append(out, ws + i, 1));
    t->text = out->p;
    t->len = out->len;
    return SL_OK;
}

/* A preference pair: prompt (s->seq), chosen (s->seq_c), rejected (s->seq_r). */
static sl_status process_pair(const prep_ctx *c, prep_worker *w, prep_slot *s, const cJSON *root) {
    const cfg_prepare *f = c->cfg;
    chat_turn turns[PREP_MAX_TURNS];
    prep_pair p = {.prompt = turns};
    s->kind = PREP_KIND_PAIR;
    s->seq_c.n = s->seq_r.n = 0;
    if (!prep_pair_parse(root, f, PREP_MAX_TURNS - 2, w->other, &p)) {
        s->drop = PREPARE_DROP_NO_FIELDS;
        return SL_OK;
    }
    if (p.prompt_mismatch) {
        s->drop = PREPARE_DROP_PROMPT_MISMATCH;
        return SL_OK;
    }
    bool raw = p.shape == PREP_PAIR_STANDARD && !c->pair_template;
    int n = p.n_prompt;
    chat_turn orig[3] = {raw ? turns[0] : p.chosen, p.chosen, p.rejected}; /* raw: n == 1 */
    turns[n] = p.chosen;
    turns[n + 1] = p.rejected;
    size_t chars = 0;
    w->dd_text.len = 0;
    for (int i = 0; i < n + 2; i++) {
        bool invalid;
        SL_TRY(clean_turn(c, w, s, turns, i, &chars, &invalid));
        if (invalid) {
            s->drop = PREPARE_DROP_INVALID_UTF8;
            return SL_OK;
        }
    }
    if (raw) {
        SL_TRY(restore_edge(orig[0].text, orig[0].len, false, &turns[0], &w->edge[0]));
        SL_TRY(restore_edge(orig[1].text, orig[1].len, true, &turns[1], &w->edge[1]));
        SL_TRY(restore_edge(orig[2].text, orig[2].len, true, &turns[2], &w->edge[2]));
    }
    const chat_turn *ch = &turns[n], *rj = &turns[n + 1];
    for (int i = 0; i < n; i++)
        SL_TRY(dd_append_turn(w, chat_role_name((chat_role)turns[i].role), &turns[i]));
    SL_TRY(dd_append_turn(w, "chosen", ch));
    SL_TRY(dd_append_turn(w, "rejected", rj));
    if (ch->len == rj->len && memcmp(ch->text, rj->text, ch->len) == 0) {
        s->drop = PREPARE_DROP_IDENTICAL_PAIR;
        return SL_OK;
    }
    if (chars == 0) {
        s->drop = PREPARE_DROP_EMPTY;
        return SL_OK;
    }
    if (chars < (size_t)f->min_chars || chars > (size_t)f->max_chars) {
        s->drop = chars < (size_t)f->min_chars ? PREPARE_DROP_SHORT_CHARS : PREPARE_DROP_LONG_CHARS;
        return SL_OK;
    }
    s->chat = !raw;
    if (raw) {
        /* TRL's standard format: prompt and responses tokenized apart, each
         * response followed by EOS (DPOTrainer.tokenize_row) */
        int64_t eos = tok_eos_id(c->tok);
        if (eos < 0)
            return sl_errorf(SL_ERR_INVALID,
                             "tokenizer %s has no EOS token, which ends each response of a standard "
                             "(untemplated) preference pair; set prepare.chat_template to the "
                             "model's chat format",
                             tok_name(c->tok));
        SL_TRY(chat_encode_text(c->tok, turns[0].text, turns[0].len, 0, &s->seq));
        chat_seq *outs[2] = {&s->seq_c, &s->seq_r};
        for (int k = 0; k < 2; k++) {
            SL_TRY(chat_encode_text(c->tok, turns[1 + k].text, turns[1 + k].len, 1, outs[k]));
            SL_TRY(chat_seq_reserve(outs[k], outs[k]->n + 1));
            outs[k]->ids[outs[k]->n] = (uint32_t)eos;
            outs[k]->mask[outs[k]->n++] = 1;
        }
    } else {
        SL_TRY(chat_encode_generation_prompt(&c->chat, c->tok, turns, n, &s->seq));
        /* earlier assistant turns are context here: nothing in the prompt trains */
        memset(s->seq.mask, 0, s->seq.n);
        SL_TRY(chat_encode_answer(&c->chat, c->tok, turns, n, ch, &s->seq_c));
        SL_TRY(chat_encode_answer(&c->chat, c->tok, turns, n, rj, &s->seq_r));
    }
    size_t ntok = s->seq.n + s->seq_c.n + s->seq_r.n;
    if (ntok < (size_t)f->min_tokens || ntok > (size_t)f->max_tokens) {
        s->drop = ntok < (size_t)f->min_tokens ? PREPARE_DROP_SHORT_TOKENS : PREPARE_DROP_LONG_TOKENS;
        return SL_OK;
    }
    if (f->dedup_exact || f->eval_fraction > 0)
        SL_TRY(dedup_signature(c->dd_pairs, w->dd_text.p, w->dd_text.len, &w->dd_scratch, &s->exact, s->mh));
    return SL_OK;
}

static sl_status process_record(const prep_ctx *c, prep_worker *w, prep_slot *s, const char *raw) {
    const cfg_prepare *f = c->cfg;
    s->drop = -1;
    s->chat = s->repaired = s->html = false;
    memset(s->pii, 0, sizeof s->pii);
    s->seq.n = 0;
    s->kind = PREP_KIND_NONE;
    if (s->oversize) {
        s->drop = PREPARE_DROP_LONG_CHARS;
        return SL_OK;
    }
    chat_turn turns[PREP_MAX_TURNS];
    cJSON *root = NULL;
    char *joined = NULL;
    sl_status st = SL_OK;
    int n;
    if (s->is_json) {
        root = cJSON_ParseWithLength(raw, s->len);
        if (!root || !cJSON_IsObject(root)) {
            s->drop = PREPARE_DROP_BAD_JSON;
            goto done;
        }
        if (prep_pair_is(root, f)) {
            st = process_pair(c, w, s, root);
            goto done;
        }
    }
    n = record_turns(c, s, raw, &root, turns, &joined, &s->drop);
    if (n < 0)
        goto done;
    s->kind = PREP_KIND_DOC;
    s->chat = n > 0;
    int nt = n > 0 ? n : 1;
    size_t chars = 0;
    w->dd_text.len = 0;
    for (int i = 0; i < nt && st == SL_OK; i++) {
        clean_result cr;
        st = clean_text(&c->copts, turns[i].text, turns[i].len, &w->turn[i], &w->scratch, &cr);
        if (st != SL_OK)
            break;
        if (cr.dropped_invalid_utf8) {
            s->drop = PREPARE_DROP_INVALID_UTF8;
            goto done;
        }
        s->repaired |= cr.repaired_utf8;
        s->html |= cr.had_html;
        if (f->pii)
            st = pii_mask(c->pii, w->pii, &w->turn[i], s->pii);
        chars += cr.n_chars; /* PII tags change lengths a little; the filter uses the cleaned text */
        turns[i].text = w->turn[i].p;
        turns[i].len = w->turn[i].len;
        if (st == SL_OK && s->chat) {
            const char *rn = chat_role_name((chat_role)turns[i].role);
            st = clean_buf_append(&w->dd_text, rn, strlen(rn));
            if (st == SL_OK)
                st = clean_buf_append(&w->dd_text, "\n", 1);
        }
        if (st == SL_OK)
            st = clean_buf_append(&w->dd_text, turns[i].text, turns[i].len);
        if (st == SL_OK && s->chat)
            st = clean_buf_append(&w->dd_text, "\n", 1);
    }
    if (st != SL_OK)
        goto done;
    if (chars == 0) {
        s->drop = PREPARE_DROP_EMPTY;
        goto done;
    }
    if (chars < (size_t)f->min_chars) {
        s->drop = PREPARE_DROP_SHORT_CHARS;
        goto done;
    }
    if (chars > (size_t)f->max_chars) {
        s->drop = PREPARE_DROP_LONG_CHARS;
        goto done;
    }
    if (s->chat)
        st = chat_encode(&c->chat, c->tok, turns, n, &s->seq);
    else
        st = chat_encode_text(c->tok, turns[0].text, turns[0].len, 1, &s->seq);
    if (st != SL_OK)
        goto done;
    if (s->seq.n < (size_t)f->min_tokens) {
        s->drop = PREPARE_DROP_SHORT_TOKENS;
        goto done;
    }
    if (s->seq.n > (size_t)f->max_tokens) {
        s->drop = PREPARE_DROP_LONG_TOKENS;
        goto done;
    }
    if (f->dedup_exact || f->dedup_near)
        st = dedup_signature(c->dd, w->dd_text.p, w->dd_text.len, &w->dd_scratch, &s->exact, s->mh);
done:
    cJSON_Delete(root);
    free(joined);
    return st;
}

/* ---- output ---- */

typedef struct {
    const char *prefix; /* "train" / "eval" */
    shard_writer *w;
    int index;
} prep_out;

/* Appends the documents q[0..n) (a document, or a pair's three) to one shard. */
static sl_status out_add(const prep_ctx *c, const shard_meta *meta, prep_out *o, const chat_seq *const *q,
                         int n) {
    const cfg_prepare *f = c->cfg;
    uint64_t total = 0;
    for (int i = 0; i < n; i++)
        total += q[i]->n;
    if (o->w && shard_writer_tokens(o->w) > 0 &&
        shard_writer_tokens(o->w) + total > (uint64_t)f->shard_tokens) {
        shard_writer *w = o->w;
        o->w = NULL;
        SL_TRY(shard_writer_close(w));
    }
    if (!o->w) {
        char name[64], path[CFG_STR_MAX + 64];
        snprintf(name, sizeof name, "%s-%05d.h5", o->prefix, o->index++);
        SL_TRY(fs_join(path, sizeof path, f->output, name));
        SL_TRY(shard_writer_open(path, meta, 0, f->zstd_level, true, &o->w));
    }
    for (int i = 0; i < n; i++)
        SL_TRY(shard_writer_add_doc(o->w, q[i]->ids, q[i]->mask, q[i]->n));
    return SL_OK;
}

/* ---- the run ---- */

typedef struct {
    prep_ctx c;
    prep_input *in;
    prep_slot *slots;
    prep_worker *workers;
    int n_workers;
    clean_buf arena;
    prep_out train, eval;
    shard_meta meta;
    prep_kind kind;    /* of the run: its first record that has one */
    char kind_at[320]; /* "file:line" of that record */
} prep_run;

/* A run writes documents or pairs, not both. */
static sl_status check_kind(prep_run *r, const prep_slot *s) {
    if (s->kind == PREP_KIND_NONE)
        return SL_OK;
    const char *file = prep_input_file_name(r->in, s->file);
    if (r->kind == PREP_KIND_NONE) {
        r->kind = s->kind;
        r->meta.pairs = s->kind == PREP_KIND_PAIR;
        snprintf(r->kind_at, sizeof r->kind_at, "%s:%" PRIu64, file, s->line);
        return SL_OK;
    }
    if (s->kind == r->kind)
        return SL_OK;
    const cfg_prepare *f = r->c.cfg;
    bool pair = s->kind == PREP_KIND_PAIR;
    return sl_errorf(SL_ERR_INVALID,
                     "%s:%" PRIu64 " is %s, but the first record of this run (%s) is %s: a prepare run "
                     "writes either preference pairs (records with \"%s\" and \"%s\") or plain "
                     "documents; prepare them into separate outputs",
                     file, s->line, pair ? "a preference pair" : "a plain document (no pair)", r->kind_at,
                     pair ? "a plain document" : "a preference pair", f->chosen_field, f->rejected_field);
}

static sl_status consume(prep_run *r, prep_slot *s, prepare_report *rep) {
    rep->records++;
    if (s->st != SL_OK)
        return sl_errorf(s->st, "%s line %" PRIu64 ": %s", prep_input_file_name(r->in, s->file),
                         s->line, s->err);
    SL_TRY(check_kind(r, s));
    bool pair = s->kind == PREP_KIND_PAIR;
    if (s->drop >= 0) {
        rep->dropped[s->drop]++;
        if (s->drop == PREPARE_DROP_BAD_JSON && rep->n_bad_json_shown < PREPARE_BAD_JSON_SHOWN)
            snprintf(rep->bad_json_at[rep->n_bad_json_shown++], sizeof rep->bad_json_at[0], "%s:%" PRIu64,
                     prep_input_file_name(r->in, s->file), s->line);
        return SL_OK;
    }
    const cfg_prepare *f = r->c.cfg;
    bool dedup_on = pair ? f->dedup_exact : f->dedup_exact || f->dedup_near;
    if (dedup_on) {
        dedup_verdict v;
        SL_TRY(dedup_check_insert(pair ? r->c.dd_pairs : r->c.dd, s->exact, s->mh, &v));
        if (v != DEDUP_UNIQUE) {
            rep->dropped[v == DEDUP_EXACT ? PREPARE_DROP_EXACT_DUP : PREPARE_DROP_NEAR_DUP]++;
            return SL_OK;
        }
    }
    rep->repaired_utf8 += s->repaired;
    rep->had_html += s->html;
    for (int t = 0; t < PII_TYPE_COUNT; t++)
        rep->pii[t] += s->pii[t];
    if (!pair && s->chat)
        rep->docs_chat++;
    else if (!pair)
        rep->docs_text++;
    /* eval split by content, so it does not depend on order or threads */
    bool eval = f->eval_fraction > 0 &&
                (double)(XXH3_64bits_withSeed(&s->exact, sizeof s->exact, 0x65766131) >> 11) * 0x1p-53 <
                    f->eval_fraction;
    if (eval && !(f->dedup_exact || (!pair && f->dedup_near)))
        return sl_errorf(SL_ERR_INVALID, "prepare.eval_fraction needs dedup (the split hashes the "
                         "normalized text); enable prepare.dedup_exact");
    const chat_seq *docs[3] = {&s->seq, &s->seq_c, &s->seq_r};
    int nd = pair ? 3 : 1;
    SL_TRY(out_add(&r->c, &r->meta, eval ? &r->eval : &r->train, docs, nd));
    for (int d = 0; d < nd; d++) {
        if (eval) {
            rep->eval_docs++;
            rep->eval_tokens += docs[d]->n;
        } else {
            rep->docs_written++;
            rep->tokens_written += docs[d]->n;
            for (size_t i = 0; i < docs[d]->n; i++)
                rep->trained_tokens += docs[d]->mask[i];
        }
    }
    if (pair && eval)
        rep->eval_pairs++;
    else if (pair)
        rep->pairs_written++;
    return SL_OK;
}

static sl_status run_batches(prep_run *r, prepare_report *rep) {
    log_progress prog;
    log_progress_begin(&prog, "prepare", prep_input_total_bytes(r->in));
    bool eof = false;
    sl_status st = SL_OK;
    while (!eof && st == SL_OK) {
        int n = 0;
        r->arena.len = 0;
        while (n < PREPARE_BATCH_RECORDS && r->arena.len < PREPARE_BATCH_BYTES) {
            prep_record rec;
            SL_TRY(prep_input_next(r->in, &rec, &eof));
            if (eof)
                break;
            prep_slot *s = &r->slots[n++];
            s->off = r->arena.len;
            s->len = rec.len;
            s->is_json = rec.is_json;
            s->oversize = rec.oversize;
            s->file = rec.file;
            s->line = rec.line;
            SL_TRY(clean_buf_append(&r->arena, rec.data, rec.len));
            SL_TRY(clean_buf_append(&r->arena, "", 1)); /* NUL after each record */
        }
        const prep_ctx *c = &r->c;
#pragma omp parallel for schedule(dynamic, 8) num_threads(r->n_workers)
        for (int i = 0; i < n; i++) {
            prep_slot *s = &r->slots[i];
            s->st = process_record(c, &r->workers[omp_get_thread_num()], s, r->arena.p + s->off);
            if (s->st != SL_OK)
                snprintf(s->err, sizeof s->err, "%s", sl_error_message());
        }
        for (int i = 0; i < n && st == SL_OK; i++)
            st = consume(r, &r->slots[i], rep);
        log_progress_update(&prog, prep_input_bytes_done(r->in));
    }
    log_progress_end(&prog);
    rep->bytes_read = prep_input_bytes_done(r->in);
    return st;
}

static sl_status run_setup(prep_run *r, const cfg_prepare *f, prepare_report *rep) {
    prep_ctx *c = &r->c;
    c->cfg = f;
    c->copts = (clean_opts){f->nfkc, f->fullwidth_punct, f->strip_html,
                            f->invalid_utf8 == PREPARE_INVALID_UTF8_DROP ? CLEAN_UTF8_DROP
                                                                         : CLEAN_UTF8_REPAIR};
    SL_CHECK_ARG(f->output[0], "prepare.output is empty (give --output DIR)");
    SL_CHECK_ARG(f->tokenizer[0], "prepare.tokenizer is empty (give --tokenizer PATH)");
    SL_CHECK_ARG(f->min_chars <= f->max_chars && f->min_tokens <= f->max_tokens,
                 "prepare.min_chars/min_tokens must not exceed max_chars/max_tokens");
    SL_TRY(tok_load(f->tokenizer, &c->tok));
    char tmpl[32];
    snprintf(tmpl, sizeof tmpl, "%s", f->chat_template);
    if (strcmp(tmpl, "auto") == 0)
        SL_TRY(chat_template_detect(f->tokenizer, tmpl, sizeof tmpl));
    SL_TRY(chat_template_init(tmpl, c->tok, &c->chat));
    SL_TRY(pii_create(&c->pii));
    c->perms = f->minhash_perms;
    dedup_opts dopt = {f->dedup_exact || f->eval_fraction > 0, f->dedup_near, f->minhash_perms,
                       f->minhash_bands, f->near_threshold, 0x5eed};
    SL_TRY(dedup_create(&dopt, &c->dd));
    dopt.near = false;
    SL_TRY(dedup_create(&dopt, &c->dd_pairs));
    c->pair_template = strcmp(f->chat_template, "auto") != 0;
    /* a record may hold max_chars characters of up to 4 bytes, JSON-escaped */
    size_t max_bytes = (size_t)f->max_chars * 8 + 4096;
    SL_TRY(prep_input_open(f, max_bytes, &r->in));
    rep->files = (uint64_t)prep_input_files(r->in);
    SL_TRY(fs_mkdirs(f->output));

    r->n_workers = f->threads > 0 ? f->threads : omp_get_num_procs();
    rep->threads = r->n_workers;
    r->workers = calloc((size_t)r->n_workers, sizeof *r->workers);
    SL_CHECK_ALLOC(r->workers, sizeof *r->workers * (size_t)r->n_workers);
    for (int i = 0; i < r->n_workers; i++)
        SL_TRY(pii_scratch_create(c->pii, &r->workers[i].pii));
    r->slots = calloc(PREPARE_BATCH_RECORDS, sizeof *r->slots);
    SL_CHECK_ALLOC(r->slots, sizeof *r->slots * PREPARE_BATCH_RECORDS);
    for (int i = 0; i < PREPARE_BATCH_RECORDS; i++) {
        r->slots[i].mh = malloc(sizeof(uint32_t) * (size_t)f->minhash_perms);
        SL_CHECK_ALLOC(r->slots[i].mh, sizeof(uint32_t) * (size_t)f->minhash_perms);
    }

    shard_meta *m = &r->meta;
    snprintf(m->tokenizer_name, sizeof m->tokenizer_name, "%s", tok_name(c->tok));
    snprintf(m->tokenizer_hash, sizeof m->tokenizer_hash, "%s", tok_hash(c->tok));
    m->vocab_size = tok_vocab_size(c->tok);
    m->bos_id = tok_bos_id(c->tok);
    m->eos_id = tok_eos_id(c->tok);
    m->im_start_id = c->chat.im_start;
    m->im_end_id = c->chat.im_end;
    snprintf(m->source, sizeof m->source, "shardlm prepare %s (chat_template %s)", SHARDLM_VERSION,
             tmpl);
    snprintf(rep->tokenizer_name, sizeof rep->tokenizer_name, "%s", m->tokenizer_name);
    snprintf(rep->tokenizer_hash, sizeof rep->tokenizer_hash, "%s", m->tokenizer_hash);
    rep->vocab_size = m->vocab_size;
    rep->eos_id = m->eos_id;
    rep->im_start_id = m->im_start_id;
    rep->im_end_id = m->im_end_id;
    r->train.prefix = "train";
    r->eval.prefix = "eval";
    return SL_OK;
}

static void run_free(prep_run *r) {
    shard_writer_abort(r->train.w);
    shard_writer_abort(r->eval.w);
    if (r->slots)
        for (int i = 0; i < PREPARE_BATCH_RECORDS; i++) {
            free(r->slots[i].mh);
            chat_seq_free(&r->slots[i].seq);
            chat_seq_free(&r->slots[i].seq_c);
            chat_seq_free(&r->slots[i].seq_r);
        }
    free(r->slots);
    if (r->workers)
        for (int i = 0; i < r->n_workers; i++) {
            prep_worker *w = &r->workers[i];
            for (int t = 0; t < PREP_MAX_TURNS; t++)
                clean_buf_free(&w->turn[t]);
            clean_buf_free(&w->scratch);
            clean_buf_free(&w->dd_text);
            clean_buf_free(&w->dd_scratch);
            for (int k = 0; k < 3; k++)
                clean_buf_free(&w->edge[k]);
            pii_scratch_destroy(w->pii);
        }
    free(r->workers);
    clean_buf_free(&r->arena);
    prep_input_close(r->in);
    dedup_destroy(r->c.dd);
    dedup_destroy(r->c.dd_pairs);
    pii_destroy(r->c.pii);
    tok_destroy(r->c.tok);
}

sl_status prepare_run(const cfg_prepare *cfg, prepare_report *rep) {
    memset(rep, 0, sizeof *rep);
    double t0 = sl_now();
    prep_run *r = calloc(1, sizeof *r);
    SL_CHECK_ALLOC(r, sizeof *r);
    sl_status st = run_setup(r, cfg, rep);
    if (st == SL_OK)
        st = run_batches(r, rep);
    if (st == SL_OK && r->train.w) {
        shard_writer *w = r->train.w;
        r->train.w = NULL;
        st = shard_writer_close(w);
    }
    if (st == SL_OK && r->eval.w) {
        shard_writer *w = r->eval.w;
        r->eval.w = NULL;
        st = shard_writer_close(w);
    }
    if (st == SL_OK && rep->docs_written == 0)
        st = sl_errorf(SL_ERR_INVALID, "no %s survived the filters (see the report); "
                       "nothing was written to %s",
                       r->kind == PREP_KIND_PAIR ? "preference pair" : "document", cfg->output);
    rep->train_shards = r->train.index;
    rep->eval_shards = r->eval.index;
    rep->dedup_bytes = r->c.dd ? dedup_memory_bytes(r->c.dd) : 0;
    run_free(r);
    free(r);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        rep->peak_rss_bytes = (uint64_t)ru.ru_maxrss * 1024;
    rep->seconds = sl_now() - t0;
    if (st == SL_OK) {
        char *json = prepare_report_json(rep);
        char path[CFG_STR_MAX + 32];
        st = json ? fs_join(path, sizeof path, cfg->output, "report.json")
                  : sl_errorf(SL_ERR_NOMEM, "out of memory for the report");
        if (st == SL_OK)
            st = fs_write_atomic(path, json, strlen(json));
        free(json);
    }
    return st;
}
