/* shardlm prepare: text and JSONL in, token shards and a report out
 * (data/prepare.h does the work). Runs in one process with a thread pool;
 * no MPI. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/prepare.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "runtime/log.h"

void cmd_prepare_usage(FILE *out) {
    fprintf(out,
            "usage: shardlm prepare [--config FILE]... [--set prepare.KEY=VALUE]...\n"
            "                       [--input FILE|DIR|GLOB]... [--output DIR] [--tokenizer PATH]\n\n"
            "Reads text and JSONL (text; instruction/input/output; prompt/response; messages),\n"
            "cleans, filters by length, removes exact and near duplicates, masks PII,\n"
            "applies the chat template, tokenizes and writes HDF5 shards to DIR with\n"
            "DIR/report.json. Every prepare.* key applies (shardlm config keys).\n"
            "--input      an input file, folder or glob (repeatable; replaces prepare.inputs)\n"
            "--output     output folder (prepare.output)\n"
            "--tokenizer  tokenizer.json, GPT-2 encoder.json+vocab.bpe folder, or tiktoken file\n"
            "--threads N  worker threads (prepare.threads; 0 = all cores)\n");
}

static sl_status apply_flags(const cli_args *a, cfg_prepare *p) {
    int n_in = 0;
    for (int i = 0; i < a->n_opts; i++) {
        if (strcmp(a->opts[i].name, "input") != 0)
            continue;
        if (n_in == CFG_LIST_MAX)
            return sl_errorf(SL_ERR_INVALID, "more than %d --input options; use a folder or a glob",
                             CFG_LIST_MAX);
        if (!a->opts[i].value || strlen(a->opts[i].value) >= CFG_STR_MAX)
            return sl_errorf(SL_ERR_INVALID, "--input needs a path shorter than %d bytes", CFG_STR_MAX);
        snprintf(p->inputs.items[n_in++], CFG_STR_MAX, "%s", a->opts[i].value);
    }
    if (n_in)
        p->inputs.n = n_in;
    const char *v;
    if ((v = cli_get(a, "output")) != NULL)
        snprintf(p->output, sizeof p->output, "%s", v);
    if ((v = cli_get(a, "tokenizer")) != NULL)
        snprintf(p->tokenizer, sizeof p->tokenizer, "%s", v);
    if ((v = cli_get(a, "threads")) != NULL) {
        char *end;
        long t = strtol(v, &end, 10);
        if (*end || t < 0 || t > 1024)
            return sl_errorf(SL_ERR_INVALID, "--threads %s is not a number in 0..1024", v);
        p->threads = (int)t;
    }
    return SL_OK;
}

int cmd_prepare(int argc, char **argv) {
    cli_args a;
    static const char *const known[] = {"config", "set", "input", "output", "tokenizer", "threads", NULL};
    sl_status st = cli_parse(&a, argc, argv, NULL);
    if (st == SL_OK)
        st = cli_check_known(&a, known);
    if (st != SL_OK || a.n_pos != 0) {
        if (st != SL_OK)
            cli_report("prepare", st);
        cmd_prepare_usage(stderr);
        return SL_EXIT_USAGE;
    }
    cli_log_init_host();
    sl_config *cfg = malloc(sizeof *cfg);
    prepare_report *rep = malloc(sizeof *rep);
    if (!cfg || !rep) {
        free(cfg);
        free(rep);
        return cli_report("prepare", sl_errorf(SL_ERR_NOMEM, "out of memory"));
    }
    st = cli_load_config(&a, cfg);
    if (st == SL_OK)
        st = apply_flags(&a, &cfg->prepare);
    int code;
    if (st != SL_OK) {
        code = cli_report("prepare", st);
    } else {
        st = prepare_run(&cfg->prepare, rep);
        if (st == SL_OK) {
            prepare_report_print(rep, stdout);
            printf("shards and report.json in %s\n", cfg->prepare.output);
        }
        code = cli_report("prepare", st);
    }
    free(cfg);
    free(rep);
    return code;
}
