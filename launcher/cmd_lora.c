/* shardlm lora merge: base model folder + PEFT LoRA adapter -> merged Hugging Face folder. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/cli.h"
#include "launcher/commands.h"
#include "model/hf.h"
#include "model/lora.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "ckpt/ckpt.h"
#include "train/train.h"
#include "train/train_model.h"

void cmd_lora_usage(FILE *out) {
    fprintf(out,
            "usage: shardlm lora merge BASE_DIR ADAPTER_DIR OUT_DIR [--dtype f32|bf16|f16]\n"
            "       shardlm lora merge --base BASE_DIR --adapter ADAPTER_DIR --output OUT_DIR [--dtype ...]\n\n"
            "Merges a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors, as\n"
            "`shardlm train` with lora.enabled writes to <run_dir>/export) into its base model\n"
            "(a Hugging Face or shardlm model folder): every adapted weight becomes\n"
            "W + s B A (s = lora_alpha / r, or / sqrt(r) with use_rslora; GPT-2 Conv1D weights\n"
            "get the transpose, as PEFT's fan_in_fan_out), summed in double and rounded once.\n"
            "Writes a Hugging Face folder (config.json + model.safetensors, default f32) that\n"
            "shardlm generate/eval and transformers load without PEFT. BASE_DIR may be a\n"
            "checkpoint step folder; ADAPTER_DIR may be a LoRA run's checkpoint step folder\n"
            "(its adapters are merged into BASE_DIR). Tokenizer files found beside the base\n"
            "or the adapter (not weights or configs) are copied to OUT_DIR.\n");
}

/* Files beside the weights that generate needs (the tokenizer a training
 * export copies, tokenizer.json, vocab files ...): everything but weights,
 * model and adapter configs. */
static sl_status copy_side_files(const char *from, const char *out) {
    DIR *d = opendir(from);
    if (!d)
        return SL_OK;
    static const char *const skip[] = {"config.json", "shardlm.json", "adapter_config.json",
                                       "model.safetensors.index.json", "README.md", NULL};
    sl_status st = SL_OK;
    for (struct dirent *e; st == SL_OK && (e = readdir(d)) != NULL;) {
        const char *n = e->d_name;
        size_t len = strlen(n);
        bool weights = (len > 12 && strcmp(n + len - 12, ".safetensors") == 0) ||
                       (len > 4 && (strcmp(n + len - 4, ".bin") == 0 || strcmp(n + len - 4, ".pth") == 0)) ||
                       (len > 3 && strcmp(n + len - 3, ".pt") == 0);
        bool skipped = n[0] == '.' || weights || strcmp(n, "meta.json") == 0 ||
                       (len > 3 && strcmp(n + len - 3, ".h5") == 0);
        for (int i = 0; skip[i]; i++)
            skipped |= strcmp(n, skip[i]) == 0;
        char src[2048], dst[2048];
        if (skipped || fs_join(src, sizeof src, from, n) != SL_OK || fs_is_dir(src) ||
            fs_join(dst, sizeof dst, out, n) != SL_OK)
            continue;
        char *text = NULL;
        size_t tl = 0;
        st = fs_read_file(src, &text, &tl, (size_t)1 << 30);
        if (st == SL_OK)
            st = fs_write_atomic(dst, text, tl);
        free(text);
    }
    closedir(d);
    return st;
}

static sl_status merge(const char *base, const char *adapter, const char *out, sl_dtype dt) {
    sl_config *cfg = malloc(sizeof *cfg);
    SL_CHECK_ALLOC(cfg, sizeof *cfg);
    config_defaults(cfg);
    model_dir_params md;
    memset(&md, 0, sizeof md);
    lora_spec *spec = NULL;
    float *a = NULL;
    char step[1200];
    bool ck_adapter = train_model_is_checkpoint(adapter, step, sizeof step);
    sl_status st = train_model_open(base, &md);
    const model_layout *l = md.layout;
    if (st == SL_OK && ck_adapter) {
        /* a LoRA run's checkpoint: its lora section and "lora" part */
        st = ckpt_read_config(step, cfg);
        if (st == SL_OK && !cfg->lora.enabled)
            st = sl_errorf(SL_ERR_INVALID, "checkpoint %s is not a LoRA run's (lora.enabled is false): it is a "
                           "whole model; use it as the model itself", step);
    } else if (st == SL_OK) {
        st = lora_peft_read_config(adapter, md.cfg.model.arch, &cfg->lora);
    }
    if (st == SL_OK)
        st = lora_create(l, &cfg->lora, &spec);
    if (st == SL_OK) {
        a = calloc((size_t)(spec->layout->total_numel > 0 ? spec->layout->total_numel : 1), sizeof *a);
        if (!a)
            st = sl_errorf(SL_ERR_NOMEM, "out of memory for the adapter");
    }
    if (st == SL_OK && ck_adapter) {
        const model_layout *al = spec->layout;
        int64_t numel[1024], offset[1024];
        if (al->n_units > 1024)
            st = sl_errorf(SL_ERR_UNSUPPORTED, "%d adapter units", al->n_units);
        for (int u = 0; st == SL_OK && u < al->n_units; u++) {
            numel[u] = al->units[u].numel;
            offset[u] = al->units[u].offset;
        }
        if (st == SL_OK)
            st = ckpt_read_params(step, "lora", al->n_units, numel, offset, a);
    } else if (st == SL_OK) {
        st = lora_peft_load(adapter, spec, a);
    }
    if (st == SL_OK)
        st = lora_merge(spec, md.params, a);
    if (st == SL_OK)
        st = hf_save(out, l, md.params, dt, "");
    /* the tokenizer: the base's, then the adapter's (a training export's) */
    if (st == SL_OK)
        st = copy_side_files(base, out);
    if (st == SL_OK && !ck_adapter)
        st = copy_side_files(adapter, out);
    if (st == SL_OK && ck_adapter)
        st = train_copy_tokenizer(cfg, out);
    free(a);
    lora_destroy(spec);
    model_dir_close(&md);
    free(cfg);
    return st;
}

int cmd_lora(int argc, char **argv) {
    cli_args a;
    static const char *const known[] = {"help", "dtype", "base", "model", "adapter", "output", NULL};
    static const char *const flags[] = {"help", NULL};
    sl_status st = cli_parse(&a, argc, argv, flags);
    if (st == SL_OK)
        st = cli_check_known(&a, known);
    if (st == SL_OK && cli_has(&a, "help")) {
        cmd_lora_usage(stdout);
        return SL_EXIT_OK;
    }
    /* the folders as arguments, or as --base (--model) / --adapter / --output */
    const char *dirs[3] = {a.n_pos > 1 ? a.pos[1] : NULL, a.n_pos > 2 ? a.pos[2] : NULL,
                           a.n_pos > 3 ? a.pos[3] : NULL};
    const char *base_opt = cli_get(&a, "base") ? cli_get(&a, "base") : cli_get(&a, "model");
    if (base_opt)
        dirs[0] = base_opt;
    if (cli_get(&a, "adapter"))
        dirs[1] = cli_get(&a, "adapter");
    if (cli_get(&a, "output"))
        dirs[2] = cli_get(&a, "output");
    int want_pos = 1 + (base_opt ? 0 : 1) + (cli_get(&a, "adapter") ? 0 : 1) + (cli_get(&a, "output") ? 0 : 1);
    if (st == SL_OK && (a.n_pos < 1 || strcmp(a.pos[0], "merge") != 0 || a.n_pos != want_pos || !dirs[0] ||
                        !dirs[1] || !dirs[2]))
        st = sl_errorf(SL_ERR_INVALID, "expected: merge BASE_DIR ADAPTER_DIR OUT_DIR (or --base, --adapter, --output)");
    sl_dtype dt = SL_DTYPE_F32;
    const char *d = st == SL_OK ? cli_get(&a, "dtype") : NULL;
    if (d && strcmp(d, "bf16") == 0)
        dt = SL_DTYPE_BF16;
    else if (d && strcmp(d, "f16") == 0)
        dt = SL_DTYPE_F16;
    else if (d && strcmp(d, "f32") != 0)
        st = sl_errorf(SL_ERR_INVALID, "--dtype %s: expected f32, bf16 or f16", d);
    if (st != SL_OK) {
        int code = cli_report("lora", st);
        cmd_lora_usage(stderr);
        return code;
    }
    st = merge(dirs[0], dirs[1], dirs[2], dt);
    if (st != SL_OK)
        return cli_report("lora merge", st);
    printf("merged %s + %s -> %s\n", dirs[0], dirs[1], dirs[2]);
    return SL_EXIT_OK;
}
