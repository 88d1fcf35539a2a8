/* launcher/eval_common.c: see eval_common.h. */
#include "launcher/eval_common.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/device_info.h"
#include "launcher/cli.h"
#include "runtime/check.h"
#include "runtime/log.h"
#include "runtime/fsutil.h"
#include "runtime/mem.h"
#include "train/train_model.h"

sl_status eval_jsonl_read(const char *path, eval_jsonl *out) {
    memset(out, 0, sizeof *out);
    size_t len = 0;
    SL_TRY(fs_read_file(path, &out->text, &len, (size_t)1 << 30));
    size_t cap = 0;
    int64_t lineno = 0;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && out->text[e] != '\n')
            e++;
        lineno++;
        size_t end = e;
        if (end > i && out->text[end - 1] == '\r')
            end--;
        out->text[end] = '\0'; /* the '\n', the '\r' or the file's own NUL */
        bool blank = true;
        for (size_t k = i; k < end && blank; k++)
            blank = out->text[k] == ' ' || out->text[k] == '\t';
        if (!blank) {
            if (out->n == cap) {
                cap = cap ? 2 * cap : 256;
                char **l = realloc(out->line, cap * sizeof *l);
                size_t *n = l ? realloc(out->len, cap * sizeof *n) : NULL;
                int64_t *ln = n ? realloc(out->lineno, cap * sizeof *ln) : NULL;
                if (l)
                    out->line = l;
                if (n)
                    out->len = n;
                if (!ln)
                    return sl_errorf(SL_ERR_NOMEM, "%s: out of memory indexing %zu lines", path, cap);
                out->lineno = ln;
            }
            out->line[out->n] = out->text + i;
            out->len[out->n] = end - i;
            out->lineno[out->n++] = lineno;
        }
        i = e + 1;
    }
    if (out->n == 0)
        return sl_errorf(SL_ERR_INVALID, "%s holds no JSON line (expected one JSON object per line)", path);
    return SL_OK;
}

void eval_jsonl_free(eval_jsonl *j) {
    free(j->text);
    free(j->line);
    free(j->len);
    free(j->lineno);
    memset(j, 0, sizeof *j);
}

sl_status eval_buf_add(eval_buf *b, const void *data, size_t n) {
    SL_TRY(mem_grow_bytes(&b->buf, &b->cap, b->len + n + 1, 4096));
    memcpy(b->buf + b->len, data, n);
    b->len += n;
    b->buf[b->len] = '\0';
    return SL_OK;
}

sl_status eval_buf_printf(eval_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return sl_errorf(SL_ERR_INVALID, "eval: bad format \"%s\"", fmt);
    if ((size_t)n < sizeof small)
        return eval_buf_add(b, small, (size_t)n);
    SL_TRY(mem_grow_bytes(&b->buf, &b->cap, b->len + (size_t)n + 1, 4096));
    va_start(ap, fmt);
    vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return SL_OK;
}

/* The UTF-8 sequence at s (n bytes left): its length when valid, else 0
 * with *bad = the length of its maximal valid prefix (at least 1): the bytes
 * one U+FFFD replaces, as Python's decode(errors="replace") and the Unicode
 * standard's "maximal subpart" practice do. Overlong forms, surrogates and
 * code points past U+10FFFF are invalid. */
static size_t utf8_valid_len(const unsigned char *s, size_t n, size_t *bad) {
    unsigned c = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    *bad = 1;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    for (size_t k = 1; k < need; k++) {
        unsigned a = k == 1 ? lo : 0x80, b = k == 1 ? hi : 0xBF;
        if (k >= n || s[k] < a || s[k] > b) {
            *bad = k;
            return 0;
        }
    }
    return need;
}

/* n bytes of s with each invalid UTF-8 subpart replaced by U+FFFD; with
 * json, also escaped for a JSON string. */
static sl_status add_text(eval_buf *b, const char *s, size_t n, bool json) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        if (json && (c == '"' || c == '\\')) {
            char e[2] = {'\\', (char)c};
            SL_TRY(eval_buf_add(b, e, 2));
            i++;
        } else if (json && c < 0x20) {
            const char *e = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
            if (e)
                SL_TRY(eval_buf_add(b, e, 2));
            else
                SL_TRY(eval_buf_printf(b, "\\u%04x", c));
            i++;
        } else {
            size_t bad = 1, k = utf8_valid_len(u + i, n - i, &bad);
            if (k == 0) {
                SL_TRY(eval_buf_add(b, "\xEF\xBF\xBD", 3)); /* U+FFFD */
                i += bad;
            } else {
                SL_TRY(eval_buf_add(b, u + i, k));
                i += k;
            }
        }
    }
    return SL_OK;
}

sl_status eval_buf_json_string(eval_buf *b, const char *s, size_t n) {
    SL_TRY(eval_buf_add(b, "\"", 1));
    SL_TRY(add_text(b, s, n, true));
    return eval_buf_add(b, "\"", 1);
}

sl_status eval_buf_utf8(eval_buf *b, const char *s, size_t n) {
    return add_text(b, s, n, false);
}

void eval_buf_free(eval_buf *b) {
    free(b->buf);
    memset(b, 0, sizeof *b);
}

/* --backend cuda: the GPU of this rank (one per local rank), or an error
 * naming the host when there is none for it. */
static sl_status eval_gpu_pick(const topology *t, int *dev) {
    device_info di;
    device_info_query(&di);
    if (di.count <= 0)
        return sl_errorf(SL_ERR_UNSUPPORTED, "--backend cuda on %s: no usable GPU (%s)", t->host, di.note);
    *dev = device_info_pick(&di, t->local_rank, t->local_world);
    if (*dev < 0)
        return sl_errorf(SL_ERR_INVALID, "--backend cuda: %d ranks on %s but %d GPU(s) visible; one GPU per "
                         "local rank (or one bound to each rank)", t->local_world, t->host, di.count);
    return SL_OK;
}

sl_status eval_model_open(const char *dir, bool cuda, int threads, const topology *t, eval_model *m) {
    memset(m, 0, sizeof *m);
    if (cuda) { /* before loading the model: no GPU is a quick error */
        int dev = -1;
        SL_TRY(eval_gpu_pick(t, &dev));
        SL_TRY(train_model_open(dir, &m->md));
        SL_TRY(backend_create_cuda(dev, 0, NULL, &m->be));
        SL_TRY(model_dir_upload(&m->md, m->be, &m->dev_params, &m->dev_bytes));
        m->params = m->dev_params;
        return SL_OK;
    }
    SL_TRY(train_model_open(dir, &m->md));
    SL_TRY(backend_create_cpu(threads, NULL, &m->be));
    m->params = m->md.params; /* the CPU backend's memory is the host's */
    return SL_OK;
}

void eval_model_close(eval_model *m) {
    if (m->dev_params)
        backend_free(m->be, MEM_CATEGORY_PARAMS, m->dev_params, m->dev_bytes);
    backend_destroy(m->be);
    model_dir_close(&m->md);
    memset(m, 0, sizeof *m);
}

bool eval_ranks_agree(const topology *t, sl_status st, int *code) {
    /* the first failing rank prints it (the [rN host] prefix names it) and
     * all exit without MPI_Abort */
    int32_t mine[2] = {st != SL_OK ? t->world - t->rank : 0, (int32_t)st}, all[2] = {mine[0], mine[1]};
    if (t->world > 1 && MPI_Allreduce(mine, all, 2, MPI_INT32_T, MPI_MAX, t->comm) != MPI_SUCCESS)
        all[0] = -1;
    if (all[0] > 0) {
        *code = t->rank == t->world - all[0] ? cli_report("eval", st) : cli_exit_code((sl_status)all[1]);
        return false;
    }
    if (all[0] < 0) {
        *code = cli_report("eval", sl_errorf(SL_ERR_COMM, "the ranks could not agree on the eval's outcome"));
        topology_abort(t, *code);
    }
    *code = 0;
    return true;
}

sl_status eval_gather(const topology *t, const void *mine, size_t len, char **all, size_t *all_len) {
    *all = NULL;
    *all_len = 0;
    if (len > (size_t)INT32_MAX)
        return sl_errorf(SL_ERR_UNSUPPORTED, "eval: %zu bytes of results on rank %d exceed MPI's 2 GiB count",
                         len, t->rank);
    int n = (int)len;
    int *counts = t->rank == 0 ? calloc((size_t)t->world, sizeof *counts) : NULL;
    int *displs = t->rank == 0 ? calloc((size_t)t->world, sizeof *displs) : NULL;
    if (t->rank == 0 && (!counts || !displs)) {
        free(counts);
        free(displs);
        return sl_errorf(SL_ERR_NOMEM, "eval: out of memory for %d ranks' counts", t->world);
    }
    sl_status st = SL_OK;
    if (MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, t->comm) != MPI_SUCCESS)
        st = sl_errorf(SL_ERR_COMM, "eval: MPI_Gather of the result sizes failed");
    size_t total = 0;
    if (st == SL_OK && t->rank == 0) {
        for (int r = 0; r < t->world; r++) {
            if (total + (size_t)counts[r] > (size_t)INT32_MAX) {
                st = sl_errorf(SL_ERR_UNSUPPORTED, "eval: the results exceed MPI's 2 GiB count");
                break;
            }
            displs[r] = (int)total;
            total += (size_t)counts[r];
        }
        *all = malloc(total + 1);
        if (!*all && st == SL_OK)
            st = sl_errorf(SL_ERR_NOMEM, "eval: out of memory for %zu bytes of results", total);
    }
    if (st != SL_OK && t->rank == 0) /* the others are already in the gather: no way to tell them */
        topology_abort(t, cli_report("eval", st));
    if (MPI_Gatherv(mine, n, MPI_BYTE, *all, counts, displs, MPI_BYTE, 0, t->comm) != MPI_SUCCESS && st == SL_OK)
        st = sl_errorf(SL_ERR_COMM, "eval: MPI_Gatherv of the results failed");
    free(counts);
    free(displs);
    if (st != SL_OK) {
        free(*all);
        *all = NULL;
        return st;
    }
    *all_len = total;
    return SL_OK;
}

int eval_mode_main(const eval_mode *m, void *opts, void *state, int argc, char **argv) {
    cli_args a;
    sl_status st = cli_parse(&a, argc, argv, m->flags);
    if (st == SL_OK)
        st = cli_check_known(&a, m->known);
    if (st == SL_OK && a.n_pos > 0)
        st = sl_errorf(SL_ERR_INVALID, "unexpected argument \"%s\"", a.pos[0]);
    if (st == SL_OK)
        st = m->parse(&a, opts);
    if (st != SL_OK) {
        int code = cli_report("eval", st);
        m->usage(stderr);
        return code;
    }
    topology t;
    st = topology_init(&t, &argc, &argv, 0);
    log_init(t.rank, t.host, LOG_LEVEL_INFO);
    if (st != SL_OK) {
        int code = cli_report("eval", st);
        topology_finalize(&t);
        return code;
    }
    st = m->run(state, opts, &t);
    int code = 0;
    if (eval_ranks_agree(&t, st, &code)) {
        if (m->records) {
            const eval_buf *r = m->records(state);
            char *all = NULL;
            size_t len = 0;
            st = eval_gather(&t, r->buf, r->len, &all, &len);
            if (st == SL_OK && t.rank == 0)
                st = m->report(state, opts, all, len);
            free(all);
        } else {
            st = m->finish(state, opts, &t);
        }
        code = st == SL_OK || t.rank == 0 ? cli_report("eval", st) : cli_exit_code(st);
    }
    m->free_state(state);
    topology_finalize(&t);
    return code;
}

sl_status eval_shards_parse(const cli_args *a, eval_shards_opts *o) {
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
    return cli_get_backend(a, &o->cuda);
}

sl_status eval_shards_load(eval_shards *s, const eval_shards_opts *o, const eval_shards_data *d,
                           const topology *t) {
    const model_layout *l = s->m.md.layout;
    int T = o->seq_len ? o->seq_len : s->m.md.cfg.data.seq_len;
    if (T > l->cfg.max_seq_len)
        return sl_errorf(SL_ERR_INVALID, "--seq-len %d exceeds the model's max_seq_len %d", T, l->cfg.max_seq_len);
    int G = o->batch;
    if (G % t->world != 0)
        return sl_errorf(SL_ERR_INVALID, "--batch %d is not a multiple of the %d ranks", G, t->world);
    int per_rank = G / t->world, B = o->micro_batch ? o->micro_batch : per_rank;
    if (per_rank % B != 0)
        return sl_errorf(SL_ERR_INVALID, "--batch %d over %d ranks is %d %s per rank, not a multiple of "
                         "--micro-batch %d", G, t->world, per_rank, d->unit, B);
    s->G = G;
    s->B = B;
    s->T = T;
    s->accum = per_rank / B;
    char **paths = NULL;
    int n = 0;
    SL_TRY(loader_expand_paths(o->data, &paths, &n));
    loader_opts lo = {.paths = (const char *const *)paths,
                      .n_paths = n,
                      .seq_len = T,
                      .micro_batch = B,
                      .grad_accum = s->accum,
                      .dp_rank = t->rank,
                      .dp_size = t->world,
                      .seed = o->seed,
                      .mode = d->mode,
                      .vocab_size = (uint32_t)l->cfg.vocab_size,
                      .prefetch = 2,
                      .eos_id = -1,
                      .once = d->once};
    sl_status st = loader_create(&lo, &s->ld);
    loader_free_paths(paths, n);
    return st == SL_OK ? SL_OK : sl_error_wrapf(st, "%s \"%s\"", d->opt, o->data);
}

sl_status eval_shards_model(eval_shards *s, const eval_shards_opts *o, int rows, const topology *t) {
    eval_model *m = &s->m;
    const model_layout *l = m->md.layout;
    if (o->cuda) {
        int dev = -1;
        SL_TRY(eval_gpu_pick(t, &dev));
        SL_TRY(backend_create_cuda(dev, 0, NULL, &m->be));
    } else {
        SL_TRY(backend_create_cpu(o->threads, NULL, &m->be));
    }
    SL_TRY(model_create(l, m->be, rows, s->T, false, &s->mdl));
    size_t n = (size_t)rows * (size_t)s->T;
    s->inputs = malloc(n * sizeof *s->inputs);
    s->targets = malloc(n * sizeof *s->targets);
    if (!s->inputs || !s->targets)
        return sl_errorf(SL_ERR_NOMEM, "out of memory for a micro-batch of %zu tokens", n);
    if (!o->cuda) { /* the host fp32 buffer is the CPU backend's memory */
        m->params = m->md.params;
        return model_local_init(&s->lh, l, m->md.params, NULL, &s->hooks);
    }
    SL_TRY(model_dir_upload(&m->md, m->be, &m->dev_params, &m->dev_bytes));
    m->params = m->dev_params;
    return model_local_init_typed(&s->lh, l, m->be->act_dtype, m->dev_params, NULL, &s->hooks);
}

sl_status eval_shards_run(eval_shards *s, int64_t nb, const char *what, const topology *t,
                          sl_status (*step)(eval_shards *s, void *ctx), void *ctx) {
    bool tty = t->rank == 0 && log_is_tty();
    for (int64_t b = 0; b < nb; b++) {
        for (int k = 0; k < s->accum; k++) {
            SL_TRY(loader_next(s->ld, s->inputs, s->targets));
            SL_TRY(step(s, ctx));
        }
        if (tty)
            fprintf(stderr, "\r%s batch %" PRId64 "/%" PRId64, what, b + 1, nb);
    }
    if (tty)
        fprintf(stderr, "\n");
    return SL_OK;
}

void eval_shards_free(eval_shards *s) {
    free(s->inputs);
    free(s->targets);
    loader_destroy(s->ld);
    model_destroy(s->mdl);
    eval_model_close(&s->m);
}
