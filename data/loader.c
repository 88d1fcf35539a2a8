/* data/loader.c: sample order, sample assembly and the reader thread
 * (semantics in loader.h). */
#include "data/loader.h"

#include <dirent.h>
#include <glob.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/shard.h"
#include "runtime/check.h"
#include "runtime/config.h"
#include "runtime/rng.h"

typedef struct {
    uint32_t *inputs;  /* [R*T], R = B rows (2B in pairs mode) */
    int32_t *targets;  /* [R*T] */
    loader_state batch; /* the global batch this micro-batch belongs to */
    int k;              /* micro-step within it */
    uint64_t truncated; /* pairs mode: pairs with a row that has no target */
    sl_status st;
    char err[1024];
} loader_slot;

struct loader {
    loader_opts o; /* paths not kept */
    int n_shards;
    shard_reader **shards;
    uint64_t *stream_start; /* [n_shards + 1] pretrain: tokens + one EOS per document */
    uint64_t *doc_start;    /* [n_shards + 1] */
    uint64_t n_samples, G, batches_per_epoch;
    int rows; /* rows per sample: 1, or 2 in pairs mode */
    uint32_t eos, pad;
    int perm_bits; /* Feistel half width */

    /* producer (reader thread) */
    pthread_t thread;
    int running;
    uint64_t p_epoch, p_sample;
    int p_k;
    uint32_t *tok; /* [T+1] raw tokens read from a shard */
    uint8_t *mask; /* [T+1] their loss mask */
    uint32_t *row; /* [T+1] the assembled sample */

    pthread_mutex_t mu;
    pthread_cond_t cv_free, cv_full;
    int stop;
    loader_slot *slots;
    int n_slots, head, count;

    loader_state cstate; /* consumer's */
    uint64_t pairs_truncated; /* consumer's: sum of the returned slots' truncated */
};

/* ------------------------------------------------------------------ */
/* order: a keyed Feistel permutation of [0, 2^(2h)) with cycle walking onto
 * [0, N): O(1) memory and time per index, a pure function of (seed, epoch). */

static uint64_t perm_index(const loader *l, uint64_t epoch, uint64_t i) {
    rng_stream s = rng_stream_make(l->o.seed, RNG_PURPOSE_SHUFFLE, (uint32_t)epoch);
    int h = l->perm_bits;
    uint64_t mask = (h >= 64) ? UINT64_MAX : ((uint64_t)1 << h) - 1;
    uint64_t x = i;
    do {
        uint64_t left = x >> h, right = x & mask;
        for (uint64_t round = 0; round < 4; round++) {
            uint64_t f = rng_u64(&s, (round << 56) ^ right) & mask;
            uint64_t nl = right;
            right = left ^ f;
            left = nl;
        }
        x = (left << h) | right;
    } while (x >= l->n_samples);
    return x;
}

/* ------------------------------------------------------------------ */
/* sample assembly (reader thread) */

static size_t upper_bound(const uint64_t *a, size_t n, uint64_t v) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] <= v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static sl_status check_ids(const loader *l, int s, uint64_t t0, const uint32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= l->o.vocab_size)
            return sl_errorf(SL_ERR_FORMAT,
                             "shard %s: token id %u at token offset %" PRIu64
                             " is not below the model's vocab_size %u (the shard's tokenizer has "
                             "%u ids; raise model.vocab_size or prepare with the model's tokenizer)",
                             shard_path(l->shards[s]), ids[i], t0 + i, l->o.vocab_size,
                             shard_info_get(l->shards[s])->meta.vocab_size);
    return SL_OK;
}

/* out[0..n) = stream[p, p+n) of the pretraining stream. */
static sl_status read_stream(loader *l, uint64_t p, size_t n, uint32_t *out) {
    int s = (int)upper_bound(l->stream_start, (size_t)l->n_shards + 1, p) - 1;
    size_t done = 0;
    while (done < n) {
        if (s >= l->n_shards)
            return sl_errorf(SL_ERR_INTERNAL, "stream position %" PRIu64 " past the end", p + done);
        const shard_info *in = shard_info_get(l->shards[s]);
        const uint64_t *off = shard_doc_offsets(l->shards[s]);
        uint64_t q = p + done - l->stream_start[s];
        if (q >= in->n_tokens + in->n_docs) {
            s++;
            continue;
        }
        /* document d holds stream [off[d] + d, off[d+1] + d), then its EOS */
        size_t lo = 0, hi = in->n_docs;
        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            if (off[mid] + mid <= q)
                lo = mid;
            else
                hi = mid;
        }
        uint64_t d = lo;
        uint64_t t0 = off[d] + (q - (off[d] + d)); /* first token to read (or EOS when == off[d+1]) */
        uint64_t t1 = t0 + (n - done);
        if (t1 > in->n_tokens)
            t1 = in->n_tokens;
        size_t nt = (size_t)(t1 - t0);
        uint32_t *buf = l->tok;
        SL_TRY(shard_read_tokens(l->shards[s], t0, nt, buf, NULL));
        SL_TRY(check_ids(l, s, t0, buf, nt));
        uint64_t t = t0;
        size_t bi = 0;
        while (done < n) {
            if (d < in->n_docs && t == off[d + 1]) {
                out[done++] = l->eos;
                d++;
                if (d == in->n_docs)
                    break;
                continue;
            }
            if (bi == nt)
                break;
            out[done++] = buf[bi++];
            t++;
        }
        s++;
    }
    return SL_OK;
}

static sl_status fill_row_pretrain(loader *l, uint64_t sample, uint32_t *in, int32_t *tg) {
    size_t T = (size_t)l->o.seq_len;
    SL_TRY(read_stream(l, sample * T, T + 1, l->row));
    for (size_t j = 0; j < T; j++) {
        in[j] = l->row[j];
        tg[j] = (int32_t)l->row[j + 1];
    }
    return SL_OK;
}

static sl_status fill_row_sft(loader *l, uint64_t doc, uint32_t *in, int32_t *tg) {
    size_t T = (size_t)l->o.seq_len;
    int s = (int)upper_bound(l->doc_start, (size_t)l->n_shards + 1, doc) - 1;
    const uint64_t *off = shard_doc_offsets(l->shards[s]);
    uint64_t d = doc - l->doc_start[s];
    uint64_t len = off[d + 1] - off[d];
    size_t n = len < T + 1 ? (size_t)len : T + 1;
    SL_TRY(shard_read_tokens(l->shards[s], off[d], n, l->tok, l->mask));
    SL_TRY(check_ids(l, s, off[d], l->tok, n));
    for (size_t j = 0; j < T; j++) {
        if (j + 1 < n) {
            in[j] = l->tok[j];
            tg[j] = l->mask[j + 1] ? (int32_t)l->tok[j + 1] : -1;
        } else {
            in[j] = j < n ? l->tok[j] : l->pad;
            tg[j] = -1;
        }
    }
    return SL_OK;
}

/* Appends doc d of shard s, at most cap tokens, to l->tok/l->mask at *n. */
static sl_status read_doc(loader *l, int s, uint64_t d, size_t cap, size_t *n) {
    const uint64_t *off = shard_doc_offsets(l->shards[s]);
    uint64_t len = off[d + 1] - off[d];
    size_t k = len < cap - *n ? (size_t)len : cap - *n;
    if (k == 0)
        return SL_OK;
    SL_TRY(shard_read_tokens(l->shards[s], off[d], k, l->tok + *n, l->mask + *n));
    SL_TRY(check_ids(l, s, off[d], l->tok + *n, k));
    *n += k;
    return SL_OK;
}

/* l->tok[0..n) with its mask as a row: targets[j] = tok[j+1] where
 * mask[j+1] is 1; padding past n. Returns whether any target trains. */
static bool row_from_tokens(const loader *l, size_t n, uint32_t *in, int32_t *tg) {
    size_t T = (size_t)l->o.seq_len;
    bool any = false;
    for (size_t j = 0; j < T; j++) {
        if (j + 1 < n) {
            in[j] = l->tok[j];
            tg[j] = l->mask[j + 1] ? (int32_t)l->tok[j + 1] : -1;
            any |= l->mask[j + 1] != 0;
        } else {
            in[j] = j < n ? l->tok[j] : l->pad;
            tg[j] = -1;
        }
    }
    return any;
}

/* Pair p: documents 3p (prompt), 3p+1 (chosen), 3p+2 (rejected) of the
 * shards' pair sequence; rows prompt+chosen and prompt+rejected, each cut to
 * T+1 tokens. *cut: a row has no target (T cut its whole response). */
static sl_status fill_rows_pair(loader *l, uint64_t pair, uint32_t *in, int32_t *tg, bool *cut) {
    size_t T = (size_t)l->o.seq_len;
    uint64_t doc = 3 * pair;
    int s = (int)upper_bound(l->doc_start, (size_t)l->n_shards + 1, doc) - 1;
    uint64_t d = doc - l->doc_start[s];
    size_t np = 0;
    SL_TRY(read_doc(l, s, d, T + 1, &np));
    *cut = false;
    for (int r = 0; r < 2; r++) {
        size_t n = np;
        SL_TRY(read_doc(l, s, d + 1 + (uint64_t)r, T + 1, &n));
        if (!row_from_tokens(l, n, in + (size_t)r * T, tg + (size_t)r * T))
            *cut = true;
    }
    return SL_OK;
}

static loader_state state_advance(const loader *l, loader_state b) {
    b.sample += l->G;
    /* once: a partial last batch is padded (fill_slot), so the epoch ends
     * only when no sample is left */
    if (l->o.once ? b.sample >= l->n_samples : b.sample + l->G > l->n_samples) {
        b.epoch++;
        b.sample = 0;
    }
    return b;
}

/* Micro-step k of the global batch starting at (epoch, sample), this rank's rows. */
static sl_status fill_slot(loader *l, loader_slot *sl) {
    size_t T = (size_t)l->o.seq_len, B = (size_t)l->o.micro_batch, R = (size_t)l->rows;
    uint64_t base = sl->batch.sample + (uint64_t)l->o.dp_rank * B * (uint64_t)l->o.grad_accum +
                    (uint64_t)sl->k * B;
    sl->truncated = 0;
    for (size_t i = 0; i < B; i++) {
        if (base + i >= l->n_samples) { /* once: past the last sample, nothing counts */
            for (size_t t = 0; t < R * T; t++) {
                sl->inputs[i * R * T + t] = l->pad;
                sl->targets[i * R * T + t] = -1;
            }
            continue;
        }
        uint64_t s = perm_index(l, sl->batch.epoch, base + i);
        if (l->o.mode == DATA_MODE_PAIRS) {
            bool cut;
            SL_TRY(fill_rows_pair(l, s, sl->inputs + i * R * T, sl->targets + i * R * T, &cut));
            sl->truncated += cut;
        } else if (l->o.mode == DATA_MODE_SFT)
            SL_TRY(fill_row_sft(l, s, sl->inputs + i * T, sl->targets + i * T));
        else
            SL_TRY(fill_row_pretrain(l, s, sl->inputs + i * T, sl->targets + i * T));
    }
    return SL_OK;
}

static void *reader_main(void *arg) {
    loader *l = arg;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        while (l->count == l->n_slots && !l->stop)
            pthread_cond_wait(&l->cv_free, &l->mu);
        if (l->stop) {
            pthread_mutex_unlock(&l->mu);
            return NULL;
        }
        loader_slot *sl = &l->slots[(l->head + l->count) % l->n_slots];
        pthread_mutex_unlock(&l->mu);

        sl->batch.epoch = l->p_epoch;
        sl->batch.sample = l->p_sample;
        sl->k = l->p_k;
        sl->st = fill_slot(l, sl);
        if (sl->st != SL_OK)
            snprintf(sl->err, sizeof sl->err, "%s", sl_error_message());
        if (++l->p_k == l->o.grad_accum) {
            loader_state nx = state_advance(l, sl->batch);
            l->p_epoch = nx.epoch;
            l->p_sample = nx.sample;
            l->p_k = 0;
        }

        pthread_mutex_lock(&l->mu);
        l->count++;
        pthread_cond_signal(&l->cv_full);
        int failed = sl->st != SL_OK;
        pthread_mutex_unlock(&l->mu);
        if (failed)
            return NULL; /* the consumer reports it; nothing after it is valid */
    }
}

static sl_status reader_start(loader *l, loader_state s) {
    if (s.sample + l->G > l->n_samples) { /* a state saved with a smaller G */
        s.epoch++;
        s.sample = 0;
    }
    l->p_epoch = s.epoch;
    l->p_sample = s.sample;
    l->p_k = 0;
    l->cstate = s;
    l->stop = 0;
    l->head = l->count = 0;
    int rc = pthread_create(&l->thread, NULL, reader_main, l);
    if (rc != 0)
        return sl_errorf(SL_ERR_INTERNAL, "cannot start the loader's reader thread (error %d)", rc);
    l->running = 1;
    return SL_OK;
}

static void reader_stop(loader *l) {
    if (!l->running)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv_free);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    l->running = 0;
}

/* ------------------------------------------------------------------ */

sl_status loader_next(loader *l, uint32_t *inputs, int32_t *targets) {
    pthread_mutex_lock(&l->mu);
    while (l->count == 0)
        pthread_cond_wait(&l->cv_full, &l->mu);
    loader_slot *sl = &l->slots[l->head];
    pthread_mutex_unlock(&l->mu);
    if (sl->st != SL_OK) /* stays queued: every later call reports it too */
        return sl_errorf(sl->st, "data loader: %s", sl->err);
    size_t n = (size_t)l->rows * (size_t)l->o.micro_batch * (size_t)l->o.seq_len;
    memcpy(inputs, sl->inputs, n * sizeof *inputs);
    memcpy(targets, sl->targets, n * sizeof *targets);
    l->pairs_truncated += sl->truncated;
    l->cstate = sl->k == l->o.grad_accum - 1 ? state_advance(l, sl->batch) : sl->batch;
    pthread_mutex_lock(&l->mu);
    l->head = (l->head + 1) % l->n_slots;
    l->count--;
    pthread_cond_signal(&l->cv_free);
    pthread_mutex_unlock(&l->mu);
    return SL_OK;
}

loader_state loader_state_get(const loader *l) { return l->cstate; }

sl_status loader_state_set(loader *l, loader_state s) {
    reader_stop(l);
    return reader_start(l, s);
}

uint64_t loader_samples_per_epoch(const loader *l) { return l->n_samples; }
uint64_t loader_pairs_truncated(const loader *l) { return l->pairs_truncated; }
uint64_t loader_batches_per_epoch(const loader *l) { return l->batches_per_epoch; }

void loader_destroy(loader *l) {
    if (!l)
        return;
    reader_stop(l);
    for (int i = 0; i < l->n_shards; i++)
        shard_close(l->shards[i]);
    if (l->slots)
        for (int i = 0; i < l->n_slots; i++) {
            free(l->slots[i].inputs);
            free(l->slots[i].targets);
        }
    free(l->slots);
    free(l->shards);
    free(l->stream_start);
    free(l->doc_start);
    free(l->tok);
    free(l->mask);
    free(l->row);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv_free);
    pthread_cond_destroy(&l->cv_full);
    free(l);
}

static sl_status loader_open_shards(loader *l, const loader_opts *o) {
    for (int i = 0; i < o->n_paths; i++) {
        SL_TRY(shard_open(o->paths[i], &l->shards[i]));
        l->n_shards = i + 1;
        const shard_info *a = shard_info_get(l->shards[0]), *b = shard_info_get(l->shards[i]);
        if (b->pairs && o->mode != DATA_MODE_PAIRS)
            return sl_errorf(SL_ERR_INVALID,
                             "%s holds preference pairs (layout=pairs): train it with "
                             "train.objective = dpo or reward (data.mode = pairs)",
                             o->paths[i]);
        if (!b->pairs && o->mode == DATA_MODE_PAIRS)
            return sl_errorf(SL_ERR_INVALID,
                             "%s holds documents (layout=docs), not preference pairs: data.mode = "
                             "pairs (train.objective = dpo or reward) reads the shards shardlm "
                             "prepare writes from chosen/rejected records; use data.mode = sft or "
                             "pretrain for this one",
                             o->paths[i]);
        if (strcmp(a->meta.tokenizer_hash, b->meta.tokenizer_hash) != 0)
            return sl_errorf(SL_ERR_INVALID,
                             "shards %s (tokenizer %s, hash %s) and %s (tokenizer %s, hash %s) "
                             "were made with different tokenizers; prepare them with one",
                             o->paths[0], a->meta.tokenizer_name, a->meta.tokenizer_hash,
                             o->paths[i], b->meta.tokenizer_name, b->meta.tokenizer_hash);
        l->stream_start[i + 1] = l->stream_start[i] + b->n_tokens + b->n_docs;
        l->doc_start[i + 1] = l->doc_start[i] + b->n_docs;
    }
    return SL_OK;
}

static sl_status loader_setup(loader *l, const loader_opts *o) {
    size_t ns = (size_t)o->n_paths;
    l->shards = calloc(ns, sizeof *l->shards);
    l->stream_start = calloc(ns + 1, sizeof *l->stream_start);
    l->doc_start = calloc(ns + 1, sizeof *l->doc_start);
    size_t T1 = (size_t)o->seq_len + 1;
    l->tok = malloc(T1 * sizeof *l->tok);
    l->mask = malloc(T1);
    l->row = malloc(T1 * sizeof *l->row);
    if (!l->shards || !l->stream_start || !l->doc_start || !l->tok || !l->mask || !l->row)
        return sl_errorf(SL_ERR_NOMEM, "out of memory for a loader over %d shards", o->n_paths);
    l->rows = o->mode == DATA_MODE_PAIRS ? 2 : 1;
    SL_TRY(loader_open_shards(l, o));

    int64_t eos = o->eos_id >= 0 ? o->eos_id : shard_info_get(l->shards[0])->meta.eos_id;
    if (eos < 0 && o->mode == DATA_MODE_PRETRAIN)
        return sl_errorf(SL_ERR_INVALID, "shard %s has no eos_id and pretraining packs documents "
                         "with EOS; prepare with a tokenizer that has one", o->paths[0]);
    if (eos >= (int64_t)o->vocab_size)
        return sl_errorf(SL_ERR_INVALID, "EOS id %" PRId64 " of shard %s is not below the model's "
                         "vocab_size %u", eos, o->paths[0], o->vocab_size);
    l->eos = l->pad = eos >= 0 ? (uint32_t)eos : 0;

    uint64_t T = (uint64_t)o->seq_len;
    if (o->mode == DATA_MODE_SFT)
        l->n_samples = l->doc_start[l->n_shards];
    else if (o->mode == DATA_MODE_PAIRS)
        l->n_samples = l->doc_start[l->n_shards] / 3; /* every shard holds whole triples */
    else
        l->n_samples = l->stream_start[l->n_shards] > 0 ? (l->stream_start[l->n_shards] - 1) / T : 0;
    l->G = (uint64_t)o->micro_batch * (uint64_t)o->grad_accum * (uint64_t)o->dp_size;
    if (l->n_samples == 0 || (l->n_samples < l->G && !o->once))
        return sl_errorf(SL_ERR_INVALID,
                         "the shards hold %" PRIu64 " samples of %d tokens (%s), fewer than one "
                         "global batch of %" PRIu64 " = micro_batch %d x grad_accum %d x dp %d",
                         l->n_samples, o->seq_len,
                         o->mode == DATA_MODE_SFT ? "sft" : o->mode == DATA_MODE_PAIRS ? "pairs" : "pretrain",
                         l->G, o->micro_batch, o->grad_accum, o->dp_size);
    l->batches_per_epoch = o->once ? (l->n_samples + l->G - 1) / l->G : l->n_samples / l->G;
    int bits = 2;
    while (bits < 64 && ((uint64_t)1 << bits) < l->n_samples)
        bits += 2;
    l->perm_bits = bits / 2;

    l->n_slots = o->prefetch;
    l->slots = calloc((size_t)l->n_slots, sizeof *l->slots);
    SL_CHECK_ALLOC(l->slots, sizeof *l->slots * (size_t)l->n_slots);
    size_t n = (size_t)l->rows * (size_t)o->micro_batch * (size_t)o->seq_len;
    for (int i = 0; i < l->n_slots; i++) {
        l->slots[i].inputs = malloc(n * sizeof(uint32_t));
        l->slots[i].targets = malloc(n * sizeof(int32_t));
        if (!l->slots[i].inputs || !l->slots[i].targets)
            return sl_errorf(SL_ERR_NOMEM, "out of memory for %d prefetch buffers", l->n_slots);
    }
    return SL_OK;
}

sl_status loader_create(const loader_opts *o, loader **out) {
    *out = NULL;
    SL_CHECK_ARG(o->n_paths >= 1, "the loader needs at least one shard");
    SL_CHECK_ARG(o->seq_len >= 1 && o->micro_batch >= 1 && o->grad_accum >= 1,
                 "seq_len %d, micro_batch %d and grad_accum %d must be >= 1", o->seq_len,
                 o->micro_batch, o->grad_accum);
    SL_CHECK_ARG(o->dp_size >= 1 && o->dp_rank >= 0 && o->dp_rank < o->dp_size,
                 "dp_rank %d is not in [0, dp_size %d)", o->dp_rank, o->dp_size);
    SL_CHECK_ARG(o->prefetch >= 1, "prefetch %d must be >= 1", o->prefetch);
    SL_CHECK_ARG(o->mode == DATA_MODE_PRETRAIN || o->mode == DATA_MODE_SFT ||
                     o->mode == DATA_MODE_PAIRS,
                 "unknown data mode %d", o->mode);
    SL_CHECK_ARG(o->vocab_size >= 1, "vocab_size must be >= 1");
    loader *l = calloc(1, sizeof *l);
    SL_CHECK_ALLOC(l, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_free, NULL);
    pthread_cond_init(&l->cv_full, NULL);
    l->o = *o;
    l->o.paths = NULL;
    sl_status st = loader_setup(l, o);
    if (st == SL_OK)
        st = reader_start(l, (loader_state){0, 0});
    if (st != SL_OK) {
        loader_destroy(l);
        return st;
    }
    *out = l;
    return SL_OK;
}

/* ------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void loader_free_paths(char **paths, int n) {
    for (int i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

static sl_status push_path(char ***v, int *n, int *cap, const char *a, const char *b) {
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        char **nv = realloc(*v, sizeof *nv * (size_t)nc);
        SL_CHECK_ALLOC(nv, sizeof *nv * (size_t)nc);
        *v = nv;
        *cap = nc;
    }
    size_t len = strlen(a) + (b ? strlen(b) + 1 : 0) + 1;
    char *p = malloc(len);
    SL_CHECK_ALLOC(p, len);
    if (b)
        snprintf(p, len, "%s/%s", a, b);
    else
        snprintf(p, len, "%s", a);
    (*v)[(*n)++] = p;
    return SL_OK;
}

static sl_status expand_into(const char *spec, char ***v, int *n, int *cap) {
    struct stat sb;
    if (stat(spec, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        DIR *dir = opendir(spec);
        if (!dir)
            return sl_errorf(SL_ERR_IO, "cannot list folder %s", spec);
        struct dirent *e;
        sl_status st = SL_OK;
        while (st == SL_OK && (e = readdir(dir)) != NULL) {
            size_t len = strlen(e->d_name);
            if (len > 3 && strcmp(e->d_name + len - 3, ".h5") == 0)
                st = push_path(v, n, cap, spec, e->d_name);
        }
        closedir(dir);
        return st;
    }
    if (stat(spec, &sb) == 0)
        return push_path(v, n, cap, spec, NULL);
    glob_t g;
    int rc = glob(spec, 0, NULL, &g);
    if (rc != 0)
        return rc == GLOB_NOMATCH ? SL_OK : sl_errorf(SL_ERR_IO, "glob %s failed", spec);
    sl_status st = SL_OK;
    for (size_t i = 0; i < g.gl_pathc && st == SL_OK; i++)
        st = push_path(v, n, cap, g.gl_pathv[i], NULL);
    globfree(&g);
    return st;
}

sl_status loader_expand_paths(const char *spec, char ***paths, int *n) {
    char **v = NULL;
    int cnt = 0, cap = 0;
    sl_status st = expand_into(spec, &v, &cnt, &cap);
    if (st == SL_OK && cnt == 0)
        st = sl_errorf(SL_ERR_INVALID, "no shard matches \"%s\" (a .h5 file, a folder of .h5 "
                       "files, or a glob)", spec);
    if (st != SL_OK) {
        loader_free_paths(v, cnt);
        return st;
    }
    qsort(v, (size_t)cnt, sizeof *v, cmp_str);
    *paths = v;
    *n = cnt;
    return SL_OK;
}
