/* shardlm lora merge: base model folder + PEFT LoRA adapter -> merged Hugging Face folder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/cli.h"
#include "launcher/commands.h"
#include "model/hf.h"
#include "model/lora.h"
#include "runtime/check.h"

void cmd_lora_usage(FILE *out) {
    fprintf(out,
            "usage: shardlm lora merge BASE_DIR ADAPTER_DIR OUT_DIR [--dtype f32|bf16|f16]\n\n"
            "Merges a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors, as\n"
            "`shardlm train` with lora.enabled writes to <run_dir>/export) into its base model\n"
            "(a Hugging Face or shardlm model folder): every adapted weight becomes\n"
            "W + s B A (s = lora_alpha / r, or / sqrt(r) with use_rslora; GPT-2 Conv1D weights\n"
            "get the transpose, as PEFT's fan_in_fan_out), summed in double and rounded once.\n"
            "Writes a Hugging Face folder (config.json + model.safetensors, default f32) that\n"
            "shardlm generate/eval and transformers load without PEFT.\n");
}

static sl_status merge(const char *base, const char *adapter, const char *out, sl_dtype dt) {
    sl_config *cfg = malloc(sizeof *cfg);
    SL_CHECK_ALLOC(cfg, sizeof *cfg);
    config_defaults(cfg);
    model_layout *l = NULL;
    lora_spec *spec = NULL;
    float *w = NULL, *a = NULL;
    sl_status st = model_config_from_dir(base, cfg);
    if (st == SL_OK)
        st = model_layout_create(&cfg->model, false, &l);
    if (st == SL_OK)
        st = lora_peft_read_config(adapter, cfg->model.arch, &cfg->lora);
    if (st == SL_OK)
        st = lora_create(l, &cfg->lora, &spec);
    if (st == SL_OK) {
        w = malloc((size_t)l->total_numel * sizeof *w);
        a = calloc((size_t)(spec->layout->total_numel > 0 ? spec->layout->total_numel : 1), sizeof *a);
        if (!w || !a)
            st = sl_errorf(SL_ERR_NOMEM, "out of memory for the base (%lld floats) and the adapter",
                           (long long)l->total_numel);
    }
    if (st == SL_OK)
        st = model_weights_load(base, l, w);
    if (st == SL_OK)
        st = lora_peft_load(adapter, spec, a);
    if (st == SL_OK)
        st = lora_merge(spec, w, a);
    if (st == SL_OK)
        st = hf_save(out, l, w, dt, "");
    free(w);
    free(a);
    lora_destroy(spec);
    model_layout_destroy(l);
    free(cfg);
    return st;
}

int cmd_lora(int argc, char **argv) {
    cli_args a;
    static const char *const known[] = {"help", "dtype", NULL};
    static const char *const flags[] = {"help", NULL};
    sl_status st = cli_parse(&a, argc, argv, flags);
    if (st == SL_OK)
        st = cli_check_known(&a, known);
    if (st == SL_OK && cli_has(&a, "help")) {
        cmd_lora_usage(stdout);
        return SL_EXIT_OK;
    }
    if (st == SL_OK && (a.n_pos != 4 || strcmp(a.pos[0], "merge") != 0))
        st = sl_errorf(SL_ERR_INVALID, "expected: merge BASE_DIR ADAPTER_DIR OUT_DIR");
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
    st = merge(a.pos[1], a.pos[2], a.pos[3], dt);
    if (st != SL_OK)
        return cli_report("lora merge", st);
    printf("merged %s + %s -> %s\n", a.pos[1], a.pos[2], a.pos[3]);
    return SL_EXIT_OK;
}
