/* shardlm tokenize: encode stdin to ids, decode ids to text, print a
 * tokenizer's facts, or time the encoder on a file (one thread). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "data/chat.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/log.h"
#include "runtime/metrics.h"

void cmd_tokenize_usage(FILE *out) {
    fprintf(out,
            "usage: shardlm tokenize --tokenizer PATH [--special] < text    (prints ids)\n"
            "       shardlm tokenize --tokenizer PATH --decode < ids        (prints text)\n"
            "       shardlm tokenize --tokenizer PATH --info\n"
            "       shardlm tokenize --tokenizer PATH --bench FILE [--runs N] [--special]\n\n"
            "PATH: a tokenizer.json, GPT-2's encoder.json/vocab.bpe (or their folder), a\n"
            "tiktoken rank file (cl100k_base.tiktoken) or tiktoken's JSON (cl100k_base.json).\n"
            "--special  encode special tokens written in the text (\"<|endoftext|>\") as their\n"
            "           ids; without it they are encoded as ordinary text\n"
            "--decode   read whitespace-separated ids from stdin and write the bytes\n"
            "--info     print name, content hash, vocabulary size, bos and eos ids\n"
            "--bench    encode FILE N times (default 5) on one thread; print the median MB/s\n");
}

/* Encodes into a buffer grown to fit; the caller frees *ids. */
static sl_status encode_all(const tokenizer *t, const char *text, size_t len, int special,
                            uint32_t **ids, size_t *n) {
    size_t cap = len / 3 + 16;
    uint32_t *buf = malloc(cap * sizeof *buf);
    SL_CHECK_ALLOC(buf, cap * sizeof *buf);
    sl_status st = tok_encode(t, text, len, special, buf, cap, n);
    if (st == SL_ERR_INVALID && *n > cap) {
        sl_error_clear();
        free(buf);
        cap = *n;
        buf = malloc(cap * sizeof *buf);
        SL_CHECK_ALLOC(buf, cap * sizeof *buf);
        st = tok_encode(t, text, len, special, buf, cap, n);
    }
    if (st != SL_OK) {
        free(buf);
        return st;
    }
    *ids = buf;
    return SL_OK;
}

static sl_status run_encode(const tokenizer *t, int special) {
    char *text;
    size_t len;
    SL_TRY(cli_read_stream(stdin, "stdin", &text, &len));
    uint32_t *ids = NULL;
    size_t n = 0;
    sl_status st = encode_all(t, text, len, special, &ids, &n);
    free(text);
    SL_TRY(st);
    for (size_t i = 0; i < n; i++)
        printf(i + 1 < n ? "%u " : "%u", ids[i]);
    printf("\n");
    free(ids);
    return fflush(stdout) == 0 ? SL_OK : sl_errorf(SL_ERR_IO, "error writing stdout");
}

static sl_status run_decode(const tokenizer *t) {
    char *text;
    size_t len;
    SL_TRY(cli_read_stream(stdin, "stdin", &text, &len));
    size_t n = 0, cap = len / 2 + 1;
    uint32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) {
        free(text);
        return sl_errorf(SL_ERR_NOMEM, "out of memory for %zu ids", cap);
    }
    sl_status st = SL_OK;
    for (size_t i = 0; i < len && st == SL_OK;) {
        while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r'))
            i++;
        if (i == len)
            break;
        unsigned long long v = 0;
        size_t start = i;
        while (i < len && text[i] >= '0' && text[i] <= '9' && v <= UINT32_MAX)
            v = v * 10 + (unsigned)(text[i++] - '0');
        if (i == start || v > UINT32_MAX ||
            (i < len && !(text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r')))
            st = sl_errorf(SL_ERR_INVALID, "stdin byte %zu: expected a token id", start);
        else
            ids[n++] = (uint32_t)v;
    }
    free(text);
    char *out = NULL;
    size_t out_len = 0;
    if (st == SL_OK) {
        st = tok_decode(t, ids, n, NULL, 0, &out_len);
        if (st == SL_ERR_INVALID && out_len > 0) {
            sl_error_clear();
            out = malloc(out_len);
            st = out ? tok_decode(t, ids, n, out, out_len, &out_len)
                     : sl_errorf(SL_ERR_NOMEM, "out of memory for %zu bytes", out_len);
        }
    }
    free(ids);
    if (st == SL_OK && out_len && fwrite(out, 1, out_len, stdout) != out_len)
        st = sl_errorf(SL_ERR_IO, "error writing stdout");
    free(out);
    return st;
}

static sl_status run_bench(const tokenizer *t, const char *path, int runs, int special) {
    char *text;
    size_t len;
    SL_TRY(fs_read_file(path, &text, &len, (size_t)4 << 30));
    uint32_t *ids = NULL;
    size_t n = 0;
    double times[64];
    sl_status st = SL_OK;
    for (int r = 0; r <= runs && st == SL_OK; r++) { /* run 0 warms up */
        free(ids);
        ids = NULL;
        double t0 = sl_now();
        st = encode_all(t, text, len, special, &ids, &n);
        if (r > 0)
            times[r - 1] = sl_now() - t0;
    }
    free(ids);
    free(text);
    SL_TRY(st);
    double med = metrics_median(times, runs); /* sorts: times[0] is the best */
    double mb = (double)len / 1e6;
    printf("tokenizer %s: %zu bytes -> %zu tokens; %d runs on one thread: median %.3f s = "
           "%.2f MB/s (best %.2f, worst %.2f)\n",
           tok_name(t), len, n, runs, med, mb / med, mb / times[0], mb / times[runs - 1]);
    return SL_OK;
}

int cmd_tokenize(int argc, char **argv) {
    cli_args a;
    static const char *const flags[] = {"decode", "special", "info", NULL};
    static const char *const known[] = {"tokenizer", "decode", "special", "info",
                                        "bench",     "runs",   NULL};
    sl_status st = cli_parse(&a, argc, argv, flags);
    if (st == SL_OK)
        st = cli_check_known(&a, known);
    if (st == SL_OK && !cli_get(&a, "tokenizer"))
        st = sl_errorf(SL_ERR_INVALID, "--tokenizer PATH is required");
    const char *runs_s = cli_get(&a, "runs");
    int runs = runs_s ? atoi(runs_s) : 5;
    if (st == SL_OK && (runs < 1 || runs > 64))
        st = sl_errorf(SL_ERR_INVALID, "--runs must be 1..64, got %s", runs_s);
    if (st != SL_OK) {
        int code = cli_report("tokenize", st);
        cmd_tokenize_usage(stderr);
        return code;
    }
    tokenizer *t = NULL;
    st = tok_load(cli_get(&a, "tokenizer"), &t);
    if (st == SL_OK) {
        int special = cli_has(&a, "special");
        if (cli_has(&a, "info")) {
            printf("name %s\nhash %s\nvocab_size %u\nbos_id %lld\neos_id %lld\n", tok_name(t),
                   tok_hash(t), tok_vocab_size(t), (long long)tok_bos_id(t),
                   (long long)tok_eos_id(t));
        } else if (cli_get(&a, "bench")) {
            st = run_bench(t, cli_get(&a, "bench"), runs, special);
        } else if (cli_has(&a, "decode")) {
            /* shards from prepare hold the chat markers it registers (at the
             * next free ids when the file lacks them): decode knows them too */
            chat_template ct;
            st = chat_template_init("chatml", t, &ct);
            if (st == SL_OK)
                st = run_decode(t);
        } else {
            st = run_encode(t, special);
        }
    }
    tok_destroy(t);
    return cli_report("tokenize", st);
}
