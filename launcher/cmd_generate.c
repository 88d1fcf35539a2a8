/* shardlm generate: text from a model folder with a KV cache (model/decode.h)
 * and a sampler (model/sample.h), streamed to stdout as it is produced.
 * One process, no MPI. --backend cpu (default): the fp32 host parameters as
 * they were loaded; --backend cuda: GPU 0 (of those visible), the parameters
 * and the KV cache in bf16 on the device, F32 logits copied to the host each
 * step for the sampler. The decode loop is the same for both. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/chat.h"
#include "data/tokenizer.h"
#include "kernels/device_info.h"
#include "kernels/ops.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "launcher/sample_cli.h"
#include "model/model_dir.h"
#include "train/train_model.h"
#include "model/decode.h"
#include "model/sample.h"
#include "runtime/check.h"
#include "runtime/mem.h"

void cmd_generate_usage(FILE *out) {
    fprintf(out,
            "usage: shardlm generate --model DIR --tokenizer PATH [--prompt TEXT] [--chat]\n"
            "                        [--system TEXT] [--max-new-tokens N] [--temperature T]\n"
            "                        [--top-k K] [--top-p P] [--seed S] [--stop TEXT] [--bos]\n"
            "                        [--backend cpu|cuda] [--threads N] [--verbose]\n\n"
            "Continues the prompt with a model folder of either kind (shardlm import/train\n"
            "export, or a Hugging Face folder) and writes only the new text to stdout as it is\n"
            "generated. Without --prompt the prompt is stdin (one trailing newline removed).\n"
            "--chat            wrap the prompt in the chat template prepare uses (the format of\n"
            "                  tokenizer_config.json's chat_template: llama3, llama2 [INST],\n"
            "                  chatml, qwen3, gemma; chatml when there is none, e.g.\n"
            "                  <|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n)\n"
            "                  and stop at its end-of-turn token; --system TEXT adds a system turn\n"
            "                  first\n"
            "--max-new-tokens  tokens to generate at most (default 128); generation also\n"
            "                  stops at EOS, at --stop, and at the model's max_seq_len\n"
            "--temperature T   0 = greedy; default 1\n"
            "--top-k K         sample among the K most likely tokens (default 0: all)\n"
            "--top-p P         nucleus: the fewest tokens whose probability reaches P\n"
            "                  (default 1: all); applied after --top-k\n"
            "--seed S          the same seed, prompt and options give the same text (default 0)\n"
            "--stop TEXT       stop when the output contains TEXT (not printed)\n"
            "--bos             start with the tokenizer's BOS token (Llama-family models\n"
            "                  trained with one); an empty prompt always starts with BOS, or\n"
            "                  EOS when the tokenizer has no BOS\n"
            "--backend B       cpu (default, fp32) or cuda (first visible GPU; bf16 weights,\n"
            "                  activations and KV cache, fp32 accumulation and logits)\n"
            "--threads N       CPU threads of --backend cpu (default: OMP_NUM_THREADS or the\n"
            "                  core count)\n"
            "--verbose         print token counts and tokens/s on stderr\n"
            "Special tokens written in the prompt are encoded as ordinary text.\n");
}

typedef struct {
    const char *model_dir, *tok_path, *prompt;
    bool verbose;
    sample_cli s; /* the sampling options, --backend and --threads */
} gen_opts;

/* ---- option parsing ---- */

static sl_status parse_opts(const cli_args *a, gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->model_dir = cli_get(a, "model");
    o->tok_path = cli_get(a, "tokenizer");
    o->prompt = cli_get(a, "prompt");
    o->verbose = cli_has(a, "verbose");
    if (!o->model_dir || !o->tok_path)
        return sl_errorf(SL_ERR_INVALID, "--model DIR and --tokenizer PATH are required");
    return sample_cli_parse(a, &o->s);
}

/* ---- prompt ---- */

/* stdin, less one trailing newline (CRLF or LF). */
static sl_status read_stdin(char **out, size_t *len) {
    SL_TRY(cli_read_stream(stdin, "the prompt from stdin", out, len));
    size_t n = *len;
    if (n > 0 && (*out)[n - 1] == '\n')
        n--;
    if (n > 0 && (*out)[n - 1] == '\r')
        n--;
    *len = n;
    return SL_OK;
}

/* ---- streamed output ----
 * Text is printed as soon as it cannot be part of the stop text and does
 * not end inside a UTF-8 sequence (a token may hold half a character). */

typedef struct {
    char *buf;
    size_t len, cap, printed;
    const char *stop;
    size_t stop_len;
} out_stream;

static sl_status out_reserve(out_stream *s, size_t extra) {
    return mem_grow_bytes(&s->buf, &s->cap, s->len + extra, 1024);
}

static sl_status out_emit(out_stream *s, size_t end) {
    if (end > s->printed) {
        size_t n = end - s->printed;
        if (fwrite(s->buf + s->printed, 1, n, stdout) != n || fflush(stdout) != 0)
            return sl_errorf(SL_ERR_IO, "error writing the generated text to stdout");
        s->printed = end;
    }
    return SL_OK;
}

/* Bytes at the end that start a UTF-8 sequence not yet complete. */
static size_t utf8_incomplete_tail(const unsigned char *b, size_t len) {
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        unsigned char c = b[len - back];
        if ((c & 0xC0) == 0x80)
            continue; /* continuation byte: look further back */
        size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

/* Appends a token's bytes; *stopped when the stop text has appeared (the
 * text before it is printed, the rest dropped). */
static sl_status out_push(out_stream *s, const tokenizer *t, uint32_t id, bool *stopped) {
    size_t got = 0;
    SL_TRY(out_reserve(s, 64));
    sl_status st = tok_decode(t, &id, 1, s->buf + s->len, s->cap - s->len, &got);
    if (st == SL_ERR_INVALID && got > s->cap - s->len) {
        sl_error_clear();
        SL_TRY(out_reserve(s, got));
        st = tok_decode(t, &id, 1, s->buf + s->len, s->cap - s->len, &got);
    }
    SL_TRY(st);
    s->len += got;
    *stopped = false;
    size_t hold = 0;
    if (s->stop) {
        /* the stop text cannot start in printed text: its prefixes are held */
        for (size_t i = s->printed; i + s->stop_len <= s->len; i++)
            if (memcmp(s->buf + i, s->stop, s->stop_len) == 0) {
                *stopped = true;
                return out_emit(s, i);
            }
        for (size_t k = s->stop_len - 1; k > 0; k--)
            if (k <= s->len - s->printed && memcmp(s->buf + s->len - k, s->stop, k) == 0) {
                hold = k;
                break;
            }
    }
    size_t u = utf8_incomplete_tail((const unsigned char *)s->buf, s->len);
    if (u > hold)
        hold = u;
    return out_emit(s, s->len - hold);
}

/* ---- the run ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    tokenizer *tok;
    model_dir_params md;
    sl_backend *be;
    void *dev_params; /* --backend cuda: the params in the act dtype (device) */
    size_t dev_bytes;
    decode *dec;
    sampler *smp;
    char *stdin_text;
    chat_seq seq;
    float *logits;
    out_stream out;
} gen_state;

static void gen_free(gen_state *g) {
    free(g->out.buf);
    free(g->logits);
    chat_seq_free(&g->seq);
    free(g->stdin_text);
    sample_destroy(g->smp);
    decode_destroy(g->dec);
    if (g->dev_params)
        backend_free(g->be, MEM_CATEGORY_PARAMS, g->dev_params, g->dev_bytes);
    backend_destroy(g->be);
    model_dir_close(&g->md);
    tok_destroy(g->tok);
}

static sl_status encode_prompt(gen_state *g, const gen_opts *o, chat_template *ct) {
    const char *text = o->prompt;
    size_t len = text ? strlen(text) : 0;
    if (!text) {
        SL_TRY(read_stdin(&g->stdin_text, &len));
        text = g->stdin_text;
    }
    if (o->s.chat) {
        char tmpl[32];
        SL_TRY(chat_template_detect(o->tok_path, tmpl, sizeof tmpl));
        SL_TRY(chat_template_init(tmpl, g->tok, ct));
        if (o->s.bos && tok_bos_id(g->tok) >= 0) {
            SL_TRY(chat_seq_reserve(&g->seq, 1));
            g->seq.ids[g->seq.n] = (uint32_t)tok_bos_id(g->tok);
            g->seq.mask[g->seq.n++] = 0;
        }
        chat_turn turns[2];
        int n = 0;
        if (o->s.system)
            turns[n++] = (chat_turn){CHAT_ROLE_SYSTEM, o->s.system, strlen(o->s.system)};
        turns[n++] = (chat_turn){CHAT_ROLE_USER, text, len};
        return chat_encode_generation_prompt(ct, g->tok, turns, n, &g->seq);
    }
    int64_t start = tok_bos_id(g->tok);
    if (start < 0 && len == 0)
        start = tok_eos_id(g->tok);
    if ((o->s.bos || len == 0) && start >= 0) {
        SL_TRY(chat_seq_reserve(&g->seq, 1));
        g->seq.ids[g->seq.n] = (uint32_t)start;
        g->seq.mask[g->seq.n++] = 0;
    } else if (o->s.bos) {
        return sl_errorf(SL_ERR_INVALID, "--bos: tokenizer %s has no BOS token", o->tok_path);
    }
    if (len > 0)
        SL_TRY(chat_encode_text(g->tok, text, len, 0, &g->seq));
    if (g->seq.n == 0)
        return sl_errorf(SL_ERR_INVALID, "the prompt is empty and tokenizer %s has neither BOS nor EOS "
                         "to start from; give a --prompt", o->tok_path);
    return SL_OK;
}

static sl_status generate(gen_state *g, const gen_opts *o) {
    chat_template ct = {.bos = -1};
    SL_TRY(tok_load(o->tok_path, &g->tok));
    SL_TRY(encode_prompt(g, o, &ct));
    if (o->s.cuda) { /* before loading the model: no GPU is a quick error */
        device_info di;
        device_info_query(&di);
        if (di.count <= 0)
            return sl_errorf(SL_ERR_UNSUPPORTED, "--backend cuda: no usable GPU (%s); use --backend cpu",
                             di.note);
    }
    SL_TRY(train_model_open(o->model_dir, &g->md));
    const model_layout *l = g->md.layout;
    int64_t V = l->cfg.vocab_size, tv = tok_vocab_size(g->tok);
    int64_t n = (int64_t)g->seq.n, max_seq = l->cfg.max_seq_len;
    for (int64_t i = 0; i < n; i++)
        if ((int64_t)g->seq.ids[i] >= V)
            return sl_errorf(SL_ERR_INVALID,
                             "prompt token %lld has id %u, but model.vocab_size of %s is %lld: the "
                             "tokenizer %s does not belong to this model%s",
                             (long long)i, g->seq.ids[i], o->model_dir, (long long)V, o->tok_path,
                             o->s.chat ? " (--chat adds <|im_start|>/<|im_end|> at the next free ids when "
                                         "the tokenizer lacks them)" : "");
    if (n >= max_seq)
        return sl_errorf(SL_ERR_INVALID, "the prompt is %lld tokens; the model's max_seq_len %lld leaves "
                         "no room to generate", (long long)n, (long long)max_seq);
    int64_t cache = n + o->s.max_new < max_seq ? n + o->s.max_new : max_seq;
    const void *params = g->md.params; /* the CPU backend's memory is the host's */
    if (o->s.cuda) {
        SL_TRY(backend_create_cuda(0, 0, NULL, &g->be));
        SL_TRY(model_dir_upload(&g->md, g->be, &g->dev_params, &g->dev_bytes));
        params = g->dev_params;
    } else {
        SL_TRY(backend_create_cpu(o->s.threads, NULL, &g->be));
    }
    SL_TRY(decode_create(l, g->be, params, 1, (int)cache, 0, &g->dec));
    sample_opts so = sample_cli_sampler(&o->s);
    SL_TRY(sample_create(&so, V, &g->smp));
    g->logits = malloc((size_t)V * sizeof *g->logits);
    SL_CHECK_ALLOC(g->logits, (size_t)V * sizeof *g->logits);
    g->out.stop = o->s.stop;
    g->out.stop_len = o->s.stop ? strlen(o->s.stop) : 0;

    double t0 = now_s();
    SL_TRY(decode_prefill(g->dec, g->seq.ids, n, g->logits));
    double t1 = now_s();
    int64_t eos = tok_eos_id(g->tok);
    const char *why = "max-new-tokens";
    int produced = 0;
    for (int i = 0; i < o->s.max_new; i++) {
        uint32_t id;
        bool end = false;
        SL_TRY(sample_cli_pick(g->smp, g->logits, V, tv, (uint64_t)i, eos, o->s.chat ? (int64_t)ct.im_end : -1,
                               &id, &end));
        if (end) {
            why = "end of text";
            break;
        }
        produced++;
        bool stopped = false;
        SL_TRY(out_push(&g->out, g->tok, id, &stopped));
        if (stopped) {
            why = "stop text";
            break;
        }
        if (i + 1 == o->s.max_new)
            break;
        if (decode_pos(g->dec) == cache) {
            why = "max_seq_len";
            break;
        }
        SL_TRY(decode_step(g->dec, &id, g->logits));
    }
    if (strcmp(why, "stop text") != 0)
        SL_TRY(out_emit(&g->out, g->out.len));
    double t2 = now_s();
    if (o->verbose)
        fprintf(stderr, "\n[%s backend: %lld prompt tokens in %.3f s; %d generated in %.3f s (%.1f tokens/s); "
                "stopped at %s]\n", o->s.cuda ? "cuda" : "cpu", (long long)n, t1 - t0, produced, t2 - t1,
                produced / (t2 - t1 > 0 ? t2 - t1 : 1e-9), why);
    return SL_OK;
}

int cmd_generate(int argc, char **argv) {
    cli_args a;
    static const char *const flags[] = {"chat", "bos", "verbose", NULL};
    static const char *const known[] = {"model", "tokenizer", "prompt", "chat", "system", "max-new-tokens",
                                        "temperature", "top-k", "top-p", "seed", "stop", "bos",
                                        "backend", "threads", "verbose", NULL};
    gen_opts o;
    sl_status st = cli_parse(&a, argc, argv, flags);
    if (st == SL_OK)
        st = cli_check_known(&a, known);
    if (st == SL_OK && a.n_pos > 0)
        st = sl_errorf(SL_ERR_INVALID, "unexpected argument \"%s\" (the prompt goes in --prompt or stdin)",
                       a.pos[0]);
    if (st == SL_OK)
        st = parse_opts(&a, &o);
    if (st != SL_OK) {
        int code = cli_report("generate", st);
        cmd_generate_usage(stderr);
        return code;
    }
    gen_state g;
    memset(&g, 0, sizeof g);
    st = generate(&g, &o);
    gen_free(&g);
    return cli_report("generate", st);
}
