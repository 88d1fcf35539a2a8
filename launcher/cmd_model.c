/* shardlm import / shardlm export: Hugging Face folder <-> shardlm model folder. */
#include <stdio.h>

#include "data/handoff.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "model/hf.h"
#include "train/train_model.h"

void cmd_import_usage(FILE *out) {
    fprintf(out,
            "usage: shardlm import HF_DIR OUT_DIR\n\n"
            "Reads a Hugging Face model folder (config.json + model.safetensors or a sharded\n"
            "model.safetensors.index.json; gpt2, llama or mistral) and writes a shardlm model\n"
            "folder: shardlm.json (usable as --config) and model.safetensors in shardlm names\n"
            "and orientation, dtypes kept. See README \"shardlm model folder\".\n");
}

void cmd_export_usage(FILE *out) {
    fprintf(out,
            "usage: shardlm export MODEL_DIR OUT_DIR\n\n"
            "Writes a shardlm model folder back as a Hugging Face folder (config.json +\n"
            "model.safetensors); tensor data is byte-identical to what was imported.\n"
            "MODEL_DIR may also be a checkpoint (a step_NNNNNNNN folder, or a checkpoints\n"
            "folder: its latest): its shards are gathered, at any world size, into an fp32\n"
            "Hugging Face folder (a LoRA checkpoint: merged into its base), with the run's\n"
            "tokenizer file (data.tokenizer) beside it.\n");
}

static int two_dirs(const char *cmd, int argc, char **argv, void (*usage)(FILE *), const char **a0,
                    const char **a1) {
    cli_args a;
    static const char *const known[] = {"help", NULL};
    static const char *const flags[] = {"help", NULL};
    sl_status st = cli_parse(&a, argc, argv, flags);
    if (st == SL_OK)
        st = cli_check_known(&a, known);
    if (st == SL_OK && cli_has(&a, "help")) {
        usage(stdout);
        return -1;
    }
    if (st == SL_OK && a.n_pos != 2)
        st = sl_errorf(SL_ERR_INVALID, "expected two folders, got %d arguments", a.n_pos);
    if (st != SL_OK) {
        int code = cli_report(cmd, st);
        usage(stderr);
        return code;
    }
    *a0 = a.pos[0];
    *a1 = a.pos[1];
    return SL_EXIT_OK;
}

/* Two folders from the command line, convert(src, dst), then "<done> src -> dst". */
static int convert_dirs(const char *cmd, int argc, char **argv, void (*usage)(FILE *),
                        sl_status (*convert)(const char *, const char *), const char *done) {
    const char *src = NULL, *dst = NULL;
    int code = two_dirs(cmd, argc, argv, usage, &src, &dst);
    if (code != SL_EXIT_OK)
        return code < 0 ? SL_EXIT_OK : code;
    sl_status st = convert(src, dst);
    if (st != SL_OK)
        return cli_report(cmd, st);
    printf("%s %s -> %s\n", done, src, dst);
    return SL_EXIT_OK;
}

/* hf_export, then the model folder's tokenizer files with their hand-off
 * (tokenizer_config.json, generation_config.json; data/handoff.h) */
static sl_status export_with_tokenizer(const char *src, const char *dst) {
    char step[1200];
    if (train_model_is_checkpoint(src, step, sizeof step))
        return train_model_export(src, dst); /* a checkpoint step folder */
    SL_TRY(hf_export(src, dst));
    return tok_handoff_write(src, dst);
}

int cmd_import(int argc, char **argv) {
    return convert_dirs("import", argc, argv, cmd_import_usage, hf_import, "imported");
}

int cmd_export(int argc, char **argv) {
    return convert_dirs("export", argc, argv, cmd_export_usage, export_with_tokenizer, "exported");
}
