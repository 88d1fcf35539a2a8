/* Unit tests for data/loader: the union of rank slices of every global batch
 * is the same for world sizes 1, 2 and 3; restoring a mid-epoch state gives
 * exactly the batches of an uninterrupted run; packed pretraining rows and
 * SFT rows hold the right tokens and targets; out-of-range ids are reported
 * with the shard and the offset. Pairs mode: rows 2b/2b+1 are prompt+chosen
 * and prompt+rejected with targets from the loss mask, truncation (counted)
 * and padding, the same global batches at dp 1 and 2, a restored state, and
 * the refusal of the other layout in each direction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "data/loader.h"
#include "data/shard.h"
#include "runtime/config.h"
#include "runtime/status.h"

#define VOCAB 50000u
#define EOS (VOCAB - 1)
#define T 16
#define N_SHARDS 3
#define MAX_STREAM 4096

static void check_ok(sl_status st) {
    if (st != SL_OK)
        fail_msg("%s: %s", sl_status_name(st), sl_error_message());
}

/* The shard metadata of the test corpora (documents or, with pairs, pair
 * rows): tokenizer "test", VOCAB tokens, EOS, no BOS or chat markers. */
static shard_meta corpus_meta(bool pairs) {
    shard_meta m = {0};
    snprintf(m.tokenizer_name, sizeof m.tokenizer_name, "test");
    snprintf(m.tokenizer_hash, sizeof m.tokenizer_hash, "00000000deadbeef");
    m.vocab_size = VOCAB;
    m.bos_id = -1;
    m.eos_id = EOS;
    m.im_start_id = m.im_end_id = -1;
    m.pairs = pairs;
    return m;
}

/* Removes a corpus's n shard files, then the corpus. */
static void free_shards(void *corpus, char (*paths)[256], int n) {
    for (int s = 0; s < n; s++)
        unlink(paths[s]);
    free(corpus);
}

/* The test corpus: shard s has 9 + 4*s documents; document lengths vary
 * (zero-length included); token values are unique (1, 2, 3, ...) so a row
 * tells where it came from. mask: value % 4 != 0. */
typedef struct {
    char paths[N_SHARDS][256];
    const char *pp[N_SHARDS];
    uint32_t stream[MAX_STREAM]; /* pretraining stream: docs + EOS */
    int64_t stream_pos[VOCAB];   /* token value -> stream position */
    int n_stream;
    uint32_t doc_tok[128][64];
    int doc_len[128];
    int n_docs;
} corpus;

static corpus *make_corpus(const char *tag) {
    corpus *c = calloc(1, sizeof *c);
    assert_non_null(c);
    uint32_t next = 1;
    for (int s = 0; s < N_SHARDS; s++) {
        snprintf(c->paths[s], sizeof c->paths[s], "/tmp/shardlm_test_loader_%d_%s_%d.h5",
                 (int)getpid(), tag, s);
        c->pp[s] = c->paths[s];
        shard_meta m = corpus_meta(false);
        shard_writer *w;
        check_ok(shard_writer_open(c->paths[s], &m, 64, 3, true, &w));
        for (int d = 0; d < 9 + 4 * s; d++) {
            int len = (d * 13 + s * 7) % 41;
            int id = c->n_docs++;
            uint8_t mask[64];
            for (int i = 0; i < len; i++) {
                c->doc_tok[id][i] = next;
                mask[i] = next % 4 != 0;
                c->stream_pos[next] = c->n_stream;
                c->stream[c->n_stream++] = next++;
            }
            c->doc_len[id] = len;
            c->stream[c->n_stream++] = EOS;
            check_ok(shard_writer_add_doc(w, c->doc_tok[id], mask, (size_t)len));
        }
        check_ok(shard_writer_close(w));
    }
    return c;
}

static void free_corpus(corpus *c) { free_shards(c, c->paths, N_SHARDS); }

static loader *open_loader(corpus *c, int mode, int mb, int ga, int rank, int dp, int prefetch) {
    loader_opts o = {0};
    o.paths = c->pp;
    o.n_paths = N_SHARDS;
    o.seq_len = T;
    o.micro_batch = mb;
    o.grad_accum = ga;
    o.dp_rank = rank;
    o.dp_size = dp;
    o.seed = 1234;
    o.mode = mode;
    o.vocab_size = VOCAB;
    o.prefetch = prefetch;
    o.eos_id = -1;
    loader *l;
    check_ok(loader_create(&o, &l));
    return l;
}

/* Global batches b0 .. b0+nb-1 assembled from dp ranks: out[b][j][T] with
 * j = r*(mb*ga) + k*mb + i. */
static void global_batches(corpus *c, int mode, int mb, int ga, int dp, int nb, uint32_t *in_out,
                           int32_t *tg_out) {
    int G = mb * ga * dp;
    for (int r = 0; r < dp; r++) {
        loader *l = open_loader(c, mode, mb, ga, r, dp, 1 + r);
        uint32_t in[16 * T];
        int32_t tg[16 * T];
        for (int b = 0; b < nb; b++)
            for (int k = 0; k < ga; k++) {
                check_ok(loader_next(l, in, tg));
                size_t j = (size_t)b * G + (size_t)r * mb * ga + (size_t)k * mb;
                memcpy(in_out + j * T, in, sizeof(uint32_t) * mb * T);
                memcpy(tg_out + j * T, tg, sizeof(int32_t) * mb * T);
            }
        loader_destroy(l);
    }
}

static void check_world_sizes(int mode) {
    corpus *c = make_corpus(mode == DATA_MODE_SFT ? "ws_sft" : "ws_pre");
    enum { NB = 9, G = 12 };
    static const int cfgs[][3] = {{4, 3, 1}, {2, 3, 2}, {4, 1, 3}, {1, 4, 3}, {6, 1, 2}};
    size_t n = (size_t)NB * G * T;
    uint32_t *ref_in = malloc(n * 4), *in = malloc(n * 4);
    int32_t *ref_tg = malloc(n * 4), *tg = malloc(n * 4);
    global_batches(c, mode, 12, 1, 1, NB, ref_in, ref_tg);
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        global_batches(c, mode, cfgs[i][0], cfgs[i][1], cfgs[i][2], NB, in, tg);
        for (size_t j = 0; j < n; j++)
            if (in[j] != ref_in[j] || tg[j] != ref_tg[j])
                fail_msg("mb %d ga %d dp %d: global batch %zu row %zu differs from dp 1",
                         cfgs[i][0], cfgs[i][1], cfgs[i][2], j / (G * T), (j / T) % G);
    }
    free(ref_in);
    free(in);
    free(ref_tg);
    free(tg);
    free_corpus(c);
}

static void test_world_sizes_pretrain(void **s) { (void)s; check_world_sizes(DATA_MODE_PRETRAIN); }
static void test_world_sizes_sft(void **s) { (void)s; check_world_sizes(DATA_MODE_SFT); }

/* Every pretraining row is stream[p, p+T+1) for p a multiple of T, and each
 * sample appears once per epoch. */
static void test_pretrain_rows(void **state) {
    (void)state;
    corpus *c = make_corpus("rows");
    loader *l = open_loader(c, DATA_MODE_PRETRAIN, 2, 1, 0, 1, 3);
    uint64_t N = loader_samples_per_epoch(l);
    assert_int_equal(N, (uint64_t)(c->n_stream - 1) / T);
    uint64_t nb = loader_batches_per_epoch(l);
    assert_int_equal(nb, N / 2);
    char *seen = calloc(N, 1);
    uint32_t in[2 * T];
    int32_t tg[2 * T];
    for (uint64_t b = 0; b < nb; b++) {
        check_ok(loader_next(l, in, tg));
        for (int i = 0; i < 2; i++) {
            const uint32_t *row = in + i * T;
            int j = 0;
            while (j < T && row[j] == EOS)
                j++;
            assert_true(j < T);
            int64_t p = c->stream_pos[row[j]] - j;
            assert_int_equal(p % T, 0);
            assert_false(seen[p / T]);
            seen[p / T] = 1;
            for (int t = 0; t < T; t++) {
                assert_int_equal(row[t], c->stream[p + t]);
                assert_int_equal(tg[i * T + t], (int32_t)c->stream[p + t + 1]);
            }
        }
    }
    loader_state st = loader_state_get(l);
    assert_int_equal(st.epoch, 1);
    assert_int_equal(st.sample, 0);
    free(seen);
    loader_destroy(l);
    free_corpus(c);
}

/* SFT rows: a whole document, targets masked where loss_mask is 0, padding. */
static void test_sft_rows(void **state) {
    (void)state;
    corpus *c = make_corpus("sft");
    loader *l = open_loader(c, DATA_MODE_SFT, 3, 1, 0, 1, 2);
    assert_int_equal(loader_samples_per_epoch(l), (uint64_t)c->n_docs);
    uint32_t in[3 * T];
    int32_t tg[3 * T];
    int checked = 0;
    for (uint64_t b = 0; b < loader_batches_per_epoch(l); b++) {
        check_ok(loader_next(l, in, tg));
        for (int i = 0; i < 3; i++) {
            const uint32_t *row = in + i * T;
            if (row[0] == EOS) { /* an empty document: all padding */
                for (int t = 0; t < T; t++)
                    assert_int_equal(tg[i * T + t], -1);
                continue;
            }
            int64_t first = row[0];
            int d = 0;
            while (c->doc_len[d] == 0 || c->doc_tok[d][0] != (uint32_t)first)
                d++;
            int n = c->doc_len[d] < T + 1 ? c->doc_len[d] : T + 1;
            for (int t = 0; t < T; t++) {
                uint32_t want_in = t < n ? c->doc_tok[d][t] : EOS;
                int32_t want_tg = -1;
                if (t + 1 < n && c->doc_tok[d][t + 1] % 4 != 0)
                    want_tg = (int32_t)c->doc_tok[d][t + 1];
                assert_int_equal(row[t], want_in);
                assert_int_equal(tg[i * T + t], want_tg);
            }
            checked++;
        }
    }
    assert_true(checked > 10);
    loader_destroy(l);
    free_corpus(c);
}

/* Save mid-epoch, continue; a fresh loader restored from the state gives the
 * same batches; also across an epoch boundary and with another dp size. */
static void test_restore(void **state) {
    (void)state;
    corpus *c = make_corpus("restore");
    enum { MB = 2, GA = 3, DP = 2, NB = 8 };
    loader *a = open_loader(c, DATA_MODE_PRETRAIN, MB, GA, 1, DP, 2);
    uint64_t bpe = loader_batches_per_epoch(a);
    assert_true(bpe > 3 && bpe < NB);
    uint32_t in[MB * T], ref_in[NB * GA][MB * T];
    int32_t tg[MB * T], ref_tg[NB * GA][MB * T];
    for (int b = 0; b < 3; b++)
        for (int k = 0; k < GA; k++)
            check_ok(loader_next(a, in, tg));
    loader_state saved = loader_state_get(a);
    assert_int_equal(saved.epoch, 0);
    assert_int_equal(saved.sample, 3 * MB * GA * DP);
    for (int m = 0; m < NB * GA; m++)
        check_ok(loader_next(a, ref_in[m], ref_tg[m]));
    /* mid-step state = start of the current batch */
    check_ok(loader_next(a, in, tg));
    loader_state mid = loader_state_get(a);
    loader_destroy(a);

    loader *b = open_loader(c, DATA_MODE_PRETRAIN, MB, GA, 1, DP, 4);
    check_ok(loader_next(b, in, tg)); /* consume something first: set must discard it */
    check_ok(loader_state_set(b, saved));
    for (int m = 0; m < NB * GA; m++) {
        check_ok(loader_next(b, in, tg));
        assert_memory_equal(in, ref_in[m], sizeof in);
        assert_memory_equal(tg, ref_tg[m], sizeof tg);
    }
    assert_true(loader_state_get(b).epoch >= 1); /* crossed an epoch */
    check_ok(loader_state_set(b, mid));
    check_ok(loader_next(b, in, tg));
    loader_destroy(b);
    free_corpus(c);
}

static void test_out_of_range_ids(void **state) {
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "/tmp/shardlm_test_loader_%d_oor.h5", (int)getpid());
    shard_meta m = {0};
    snprintf(m.tokenizer_name, sizeof m.tokenizer_name, "test");
    snprintf(m.tokenizer_hash, sizeof m.tokenizer_hash, "0");
    m.vocab_size = 1000;
    m.bos_id = -1;
    m.eos_id = 3;
    m.im_start_id = m.im_end_id = -1;
    shard_writer *w;
    check_ok(shard_writer_open(path, &m, 32, 1, false, &w));
    uint32_t ids[100];
    for (int i = 0; i < 100; i++)
        ids[i] = (uint32_t)(i % 50 + 10);
    ids[37] = 700;
    check_ok(shard_writer_add_doc(w, ids, NULL, 100));
    check_ok(shard_writer_close(w));
    const char *pp[1] = {path};
    loader_opts o = {.paths = pp, .n_paths = 1, .seq_len = 8, .micro_batch = 1, .grad_accum = 1,
                     .dp_rank = 0, .dp_size = 1, .seed = 7, .mode = DATA_MODE_PRETRAIN,
                     .vocab_size = 500, .prefetch = 2, .eos_id = -1};
    loader *l;
    check_ok(loader_create(&o, &l));
    uint32_t in[8];
    int32_t tg[8];
    sl_status st = SL_OK;
    for (uint64_t b = 0; b < loader_batches_per_epoch(l) && st == SL_OK; b++)
        st = loader_next(l, in, tg);
    assert_int_equal(st, SL_ERR_FORMAT);
    const char *msg = sl_error_message();
    print_message("%s\n", msg);
    assert_non_null(strstr(msg, path));
    assert_non_null(strstr(msg, "token id 700 at token offset 37 "));
    assert_non_null(strstr(msg, "vocab_size 500"));
    loader_destroy(l);
    unlink(path);
}

static void test_expand_paths(void **state) {
    (void)state;
    char **p;
    int n;
    assert_int_equal(loader_expand_paths("/nonexistent/shardlm_*.h5", &p, &n), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "/nonexistent/shardlm_*.h5"));
}


/* ---- pairs ---- */

#define PAIR_SHARDS 2
#define MAX_PAIRS 32

/* Pair shards: shard s holds 5 + 3*s pairs; pair p has a prompt of 1..20
 * tokens (mask 0; some are longer than T, cutting the responses off), a
 * chosen and a rejected response of 0..9 tokens whose last token has mask 0
 * (as chatml's "\n" after <|im_end|>), the others 1. Unique token values. */
typedef struct {
    char paths[PAIR_SHARDS][256];
    const char *pp[PAIR_SHARDS];
    uint32_t tok[MAX_PAIRS][3][32];
    uint8_t mask[MAX_PAIRS][3][32];
    int len[MAX_PAIRS][3];
    int n_pairs;
} pair_corpus;

static pair_corpus *make_pair_corpus(const char *tag) {
    pair_corpus *c = calloc(1, sizeof *c);
    assert_non_null(c);
    uint32_t next = 1;
    for (int s = 0; s < PAIR_SHARDS; s++) {
        snprintf(c->paths[s], sizeof c->paths[s], "/tmp/shardlm_test_loader_%d_%s_p%d.h5", (int)getpid(),
                 tag, s);
        c->pp[s] = c->paths[s];
        shard_meta m = corpus_meta(true);
        shard_writer *w;
        check_ok(shard_writer_open(c->paths[s], &m, 16, 3, true, &w));
        for (int q = 0; q < 5 + 3 * s; q++) {
            int p = c->n_pairs++;
            c->len[p][0] = 1 + (p * 7) % 20;
            c->len[p][1] = (p * 5 + 3) % 10;
            c->len[p][2] = (p * 3 + 1) % 10;
            for (int d = 0; d < 3; d++) {
                for (int i = 0; i < c->len[p][d]; i++) {
                    c->tok[p][d][i] = next++;
                    c->mask[p][d][i] = d > 0 && i + 1 < c->len[p][d];
                }
                check_ok(shard_writer_add_doc(w, c->tok[p][d], c->mask[p][d], (size_t)c->len[p][d]));
            }
        }
        check_ok(shard_writer_close(w));
    }
    return c;
}

static void free_pair_corpus(pair_corpus *c) { free_shards(c, c->paths, PAIR_SHARDS); }

static loader *open_pair_loader(pair_corpus *c, int mb, int ga, int rank, int dp, bool once) {
    loader_opts o = {.paths = c->pp, .n_paths = PAIR_SHARDS, .seq_len = T, .micro_batch = mb,
                     .grad_accum = ga, .dp_rank = rank, .dp_size = dp, .seed = 99,
                     .mode = DATA_MODE_PAIRS, .vocab_size = VOCAB, .prefetch = 2, .eos_id = -1,
                     .once = once};
    loader *l;
    check_ok(loader_create(&o, &l));
    return l;
}

/* Checks rows (in, tg) against pair p's side r (1 chosen, 2 rejected);
 * returns whether the row has a target. Written from the contract in
 * loader.h: sequence = prompt ++ response cut to T+1 tokens. */
static bool check_pair_row(const pair_corpus *c, int p, int r, const uint32_t *in, const int32_t *tg) {
    uint32_t seq[64];
    uint8_t m[64];
    int n = 0;
    for (int d = 0; d < 2; d++) {
        int side = d == 0 ? 0 : r;
        for (int i = 0; i < c->len[p][side] && n < T + 1; i++, n++) {
            seq[n] = c->tok[p][side][i];
            m[n] = c->mask[p][side][i];
        }
    }
    bool any = false;
    for (int j = 0; j < T; j++) {
        uint32_t want_in = j < n ? seq[j] : EOS;
        int32_t want_tg = j + 1 < n && m[j + 1] ? (int32_t)seq[j + 1] : -1;
        assert_int_equal(in[j], want_in);
        assert_int_equal(tg[j], want_tg);
        any |= want_tg >= 0;
    }
    return any;
}

static int pair_of(const pair_corpus *c, uint32_t first) {
    for (int p = 0; p < c->n_pairs; p++)
        if (c->tok[p][0][0] == first)
            return p;
    fail_msg("row starts with %u, no pair's prompt does", first);
    return -1;
}

static void test_pair_rows(void **state) {
    (void)state;
    pair_corpus *c = make_pair_corpus("rows");
    enum { MB = 3 };
    loader *l = open_pair_loader(c, MB, 1, 0, 1, false);
    assert_int_equal(loader_samples_per_epoch(l), (uint64_t)c->n_pairs);
    uint32_t in[2 * MB * T + 1];
    int32_t tg[2 * MB * T + 1];
    in[2 * MB * T] = 0xdeadbeef; /* sentinel: the loader writes 2*B*T */
    tg[2 * MB * T] = 12345;
    int seen[MAX_PAIRS] = {0};
    uint64_t cut = 0, bpe = loader_batches_per_epoch(l);
    assert_int_equal(bpe, (uint64_t)c->n_pairs / MB);
    for (uint64_t b = 0; b < bpe; b++) {
        check_ok(loader_next(l, in, tg));
        for (int i = 0; i < MB; i++) {
            int p = pair_of(c, in[2 * i * T]);
            seen[p]++;
            bool a = check_pair_row(c, p, 1, in + 2 * i * T, tg + 2 * i * T);
            bool r = check_pair_row(c, p, 2, in + (2 * i + 1) * T, tg + (2 * i + 1) * T);
            cut += !a || !r;
        }
    }
    assert_int_equal(in[2 * MB * T], 0xdeadbeef);
    assert_int_equal(tg[2 * MB * T], 12345);
    int distinct = 0;
    for (int p = 0; p < c->n_pairs; p++) {
        assert_true(seen[p] <= 1);
        distinct += seen[p];
    }
    assert_int_equal(distinct, (int)(bpe * MB));
    assert_true(cut > 0); /* the corpus has prompts of T tokens and more */
    assert_int_equal(loader_pairs_truncated(l), cut);
    loader_destroy(l);
    free_pair_corpus(c);
}

/* The same global batches (2 rows per pair, pairs whole) at dp 1 and 2; a
 * state restored mid-epoch gives the same batches. */
static void test_pair_world_sizes(void **state) {
    (void)state;
    pair_corpus *c = make_pair_corpus("ws");
    enum { NB = 5, G = 4, R = 2 * T };
    static uint32_t in1[NB * G * R], in2[NB * G * R];
    static int32_t tg1[NB * G * R], tg2[NB * G * R];
    const int cfgs[2][3] = {{2, 2, 1}, {1, 2, 2}}; /* micro_batch, grad_accum, dp */
    for (int v = 0; v < 2; v++) {
        int mb = cfgs[v][0], ga = cfgs[v][1], dp = cfgs[v][2];
        uint32_t *io = v ? in2 : in1;
        int32_t *to = v ? tg2 : tg1;
        for (int r = 0; r < dp; r++) {
            loader *l = open_pair_loader(c, mb, ga, r, dp, false);
            uint32_t in[2 * 2 * T];
            int32_t tg[2 * 2 * T];
            for (int b = 0; b < NB; b++)
                for (int k = 0; k < ga; k++) {
                    check_ok(loader_next(l, in, tg));
                    size_t j = (size_t)b * G + (size_t)r * mb * ga + (size_t)k * mb;
                    memcpy(io + j * R, in, sizeof(uint32_t) * mb * R);
                    memcpy(to + j * R, tg, sizeof(int32_t) * mb * R);
                }
            loader_destroy(l);
        }
    }
    assert_memory_equal(in1, in2, sizeof in1);
    assert_memory_equal(tg1, tg2, sizeof tg1);
    /* restore: after 2 global batches at dp 2, rank 1 */
    loader *a = open_pair_loader(c, 1, 2, 1, 2, false);
    uint32_t in[2 * T];
    int32_t tg[2 * T];
    for (int m = 0; m < 4; m++)
        check_ok(loader_next(a, in, tg));
    loader_state st = loader_state_get(a);
    assert_int_equal(st.sample, 2 * G);
    loader *b = open_pair_loader(c, 1, 2, 1, 2, false);
    check_ok(loader_state_set(b, st));
    for (int m = 0; m < 6; m++) {
        uint32_t in_b[2 * T];
        int32_t tg_b[2 * T];
        check_ok(loader_next(a, in, tg));
        check_ok(loader_next(b, in_b, tg_b));
        assert_memory_equal(in, in_b, sizeof in);
        assert_memory_equal(tg, tg_b, sizeof tg);
    }
    loader_destroy(a);
    loader_destroy(b);
    free_pair_corpus(c);
}

/* once: a partial last batch; rows past the last pair are padding. */
static void test_pair_padding(void **state) {
    (void)state;
    pair_corpus *c = make_pair_corpus("pad");
    enum { MB = 4 };
    loader *l = open_pair_loader(c, MB, 1, 0, 1, true);
    uint64_t bpe = loader_batches_per_epoch(l);
    int rest = c->n_pairs % MB;
    assert_true(rest != 0);
    assert_int_equal(bpe, (uint64_t)(c->n_pairs + MB - 1) / MB);
    uint32_t in[2 * MB * T];
    int32_t tg[2 * MB * T];
    for (uint64_t b = 0; b < bpe; b++)
        check_ok(loader_next(l, in, tg));
    for (int i = rest; i < MB; i++)
        for (int t = 0; t < 2 * T; t++) {
            assert_int_equal(in[2 * i * T + t], EOS);
            assert_int_equal(tg[2 * i * T + t], -1);
        }
    loader_destroy(l);
    free_pair_corpus(c);
}

/* A pair shard in sft/pretrain mode and a docs shard in pairs mode are
 * refused naming the file; a writer cannot close a pair shard of 3k+1 docs. */
static void test_pair_layout_refused(void **state) {
    (void)state;
    pair_corpus *c = make_pair_corpus("ref");
    for (int mode = DATA_MODE_PRETRAIN; mode <= DATA_MODE_SFT; mode++) {
        loader_opts o = {.paths = c->pp, .n_paths = PAIR_SHARDS, .seq_len = T, .micro_batch = 1,
                         .grad_accum = 1, .dp_rank = 0, .dp_size = 1, .seed = 1, .mode = mode,
                         .vocab_size = VOCAB, .prefetch = 1, .eos_id = -1};
        loader *l = NULL;
        assert_int_equal(loader_create(&o, &l), SL_ERR_INVALID);
        assert_null(l);
        const char *msg = sl_error_message();
        assert_non_null(strstr(msg, c->paths[0]));
        assert_non_null(strstr(msg, "holds preference pairs (layout=pairs): train it with "
                                    "train.objective = dpo or reward"));
    }
    corpus *d = make_corpus("ref_docs");
    loader_opts o = {.paths = d->pp, .n_paths = N_SHARDS, .seq_len = T, .micro_batch = 1, .grad_accum = 1,
                     .dp_rank = 0, .dp_size = 1, .seed = 1, .mode = DATA_MODE_PAIRS,
                     .vocab_size = VOCAB, .prefetch = 1, .eos_id = -1};
    loader *l = NULL;
    assert_int_equal(loader_create(&o, &l), SL_ERR_INVALID);
    const char *msg = sl_error_message();
    print_message("%s\n", msg);
    assert_non_null(strstr(msg, d->paths[0]));
    assert_non_null(strstr(msg, "holds documents (layout=docs), not preference pairs"));
    free_corpus(d);

    shard_meta m = {0};
    snprintf(m.tokenizer_hash, sizeof m.tokenizer_hash, "0");
    m.vocab_size = 100;
    m.bos_id = m.eos_id = m.im_start_id = m.im_end_id = -1;
    m.pairs = true;
    char path[256];
    snprintf(path, sizeof path, "/tmp/shardlm_test_loader_%d_badpair.h5", (int)getpid());
    shard_writer *w;
    assert_int_equal(shard_writer_open(path, &m, 16, 1, false, &w), SL_ERR_INVALID); /* no mask */
    check_ok(shard_writer_open(path, &m, 16, 1, true, &w));
    uint32_t ids[2] = {1, 2};
    for (int k = 0; k < 4; k++)
        check_ok(shard_writer_add_doc(w, ids, NULL, 2));
    assert_int_not_equal(shard_writer_close(w), SL_OK);
    assert_non_null(strstr(sl_error_message(), "triples"));
    assert_int_equal(access(path, F_OK), -1);
    free_pair_corpus(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_world_sizes_pretrain), cmocka_unit_test(test_world_sizes_sft),
        cmocka_unit_test(test_pretrain_rows),        cmocka_unit_test(test_sft_rows),
        cmocka_unit_test(test_restore),              cmocka_unit_test(test_out_of_range_ids),
        cmocka_unit_test(test_expand_paths),         cmocka_unit_test(test_pair_rows),
        cmocka_unit_test(test_pair_world_sizes),     cmocka_unit_test(test_pair_padding),
        cmocka_unit_test(test_pair_layout_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
