/* shardlm tokenizer train: learn a byte-level BPE from text files and write
 * a Hugging Face tokenizer.json (data/tok_train.h). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/tok_train.h"
#include "data/tokenizer.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "runtime/fsutil.h"

void cmd_tokenizer_usage(FILE *out) {
    fprintf(out,
            "usage: shardlm tokenizer train --vocab-size N --input FILE [--input FILE ...]\n"
            "                               --output tokenizer.json [--special TOKEN ...]\n"
            "                               [--pretokenizer gpt2|cl100k]\n\n"
            "Learns a byte-level BPE (256 byte tokens, then the most frequent pairs merged\n"
            "until N ids, specials included) and writes a Hugging Face tokenizer.json.\n"
            "--input         a text file; each is pre-tokenized on its own (repeatable); a\n"
            "                .jsonl file contributes the text fields prepare reads (text,\n"
            "                instruction/input/output, prompt/response, messages[].content)\n"
            "--output        the tokenizer.json to write (its folder is created)\n"
            "--special       a special token (e.g. \"<|endoftext|>\"), given the ids after the\n"
            "                merges; its occurrences in the input are not learned from\n"
            "--pretokenizer  the regex words are split with (default gpt2)\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static sl_status train(const cli_args *a, const char *const *specials, size_t n_specials,
                       const char *const *inputs, size_t n_inputs) {
    const char *vs = cli_get(a, "vocab-size"), *out = cli_get(a, "output");
    const char *pt = cli_get(a, "pretokenizer");
    char *end = NULL;
    unsigned long vocab = vs ? strtoul(vs, &end, 10) : 0;
    if (!vs || *end || vocab == 0 || vocab > (1u << 24))
        return sl_errorf(SL_ERR_INVALID, "--vocab-size must be an integer in 257..16777216, got %s",
                         vs ? vs : "nothing");
    if (!out)
        return sl_errorf(SL_ERR_INVALID, "--output tokenizer.json is required");
    if (n_inputs == 0)
        return sl_errorf(SL_ERR_INVALID, "at least one --input FILE is required");
    tok_train_opts o = {.vocab_size = (uint32_t)vocab,
                        .pretok = TOK_PRETOKENIZER_GPT2,
                        .specials = specials,
                        .n_specials = n_specials};
    if (pt && strcmp(pt, "cl100k") == 0)
        o.pretok = TOK_PRETOKENIZER_CL100K;
    else if (pt && strcmp(pt, "gpt2") != 0)
        return sl_errorf(SL_ERR_INVALID, "--pretokenizer must be gpt2 or cl100k, got %s", pt);
    tok_trainer *tr;
    SL_TRY(tok_train_create(&o, &tr));
    double t0 = now_s();
    sl_status st = SL_OK;
    for (size_t i = 0; i < n_inputs && st == SL_OK; i++) {
        char *text;
        size_t len;
        st = fs_read_file(inputs[i], &text, &len, (size_t)16 << 30);
        size_t nl = strlen(inputs[i]);
        bool jsonl = nl > 6 && strcmp(inputs[i] + nl - 6, ".jsonl") == 0;
        if (st == SL_OK && jsonl) {
            /* the text fields, as prepare reads them, not the JSON syntax */
            uint64_t bad = 0;
            st = tok_train_feed_jsonl(tr, text, len, &bad);
            if (st == SL_OK && bad)
                fprintf(stderr, "shardlm tokenizer train: %s: %llu line(s) are not JSON objects; skipped\n",
                        inputs[i], (unsigned long long)bad);
            free(text);
        } else if (st == SL_OK) {
            st = tok_train_feed(tr, text, len);
            free(text);
        }
    }
    double t1 = now_s();
    if (st == SL_OK)
        st = tok_train_run(tr);
    double t2 = now_s();
    /* the folder of --output is created, as prepare and import do */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", out);
    char *slash = strrchr(dir, '/');
    if (st == SL_OK && slash && slash != dir) {
        *slash = 0;
        st = fs_mkdirs(dir);
    }
    if (st == SL_OK)
        st = tok_train_write(tr, out);
    if (st == SL_OK) {
        tok_train_stats s;
        tok_train_get_stats(tr, &s);
        printf("read %llu bytes in %zu file(s): %llu words, %llu unique (%.2f s)\n",
               (unsigned long long)s.bytes, n_inputs, (unsigned long long)s.words,
               (unsigned long long)s.unique_words, t1 - t0);
        printf("learned %u merges (%.2f s): vocabulary %u ids = 256 bytes + %u merges + %zu "
               "specials\n",
               s.merges, t2 - t1, 256 + s.merges + (uint32_t)n_specials, s.merges, n_specials);
        if (256 + s.merges + n_specials < vocab)
            printf("note: the input ran out of pairs before --vocab-size %lu\n", vocab);
        printf("the input is %llu tokens after the merges (%.2f bytes per token)\n",
               (unsigned long long)s.tokens, s.tokens ? (double)s.bytes / (double)s.tokens : 0.0);
        printf("wrote %s\n", out);
    }
    tok_train_destroy(tr);
    return st;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "train") != 0) {
        fprintf(stderr, "shardlm tokenizer: expected the subcommand \"train\"\n");
        cmd_tokenizer_usage(stderr);
        return SL_EXIT_USAGE;
    }
    cli_args a;
    static const char *const known[] = {"vocab-size", "input", "output", "special",
                                        "pretokenizer", NULL};
    sl_status st = cli_parse(&a, argc - 1, argv + 1, NULL);
    if (st == SL_OK)
        st = cli_check_known(&a, known);
    const char *specials[CLI_MAX_OPTS], *inputs[CLI_MAX_OPTS + CLI_MAX_POS];
    size_t n_specials = 0, n_inputs = 0;
    for (int i = 0; st == SL_OK && i < a.n_opts; i++) {
        if (strcmp(a.opts[i].name, "special") == 0)
            specials[n_specials++] = a.opts[i].value;
        else if (strcmp(a.opts[i].name, "input") == 0)
            inputs[n_inputs++] = a.opts[i].value;
    }
    for (int i = 0; st == SL_OK && i < a.n_pos; i++)
        inputs[n_inputs++] = a.pos[i];
    if (st == SL_OK)
        st = train(&a, specials, n_specials, inputs, n_inputs);
    int code = cli_report("tokenizer train", st);
    if (code == SL_EXIT_USAGE)
        cmd_tokenizer_usage(stderr);
    return code;
}
