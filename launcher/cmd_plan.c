/* shardlm plan: per-rank memory by the accountant's categories, comm
 * volume, FLOPs, step time, tokens/s, GPU-hours and cost of a run before it
 * runs (train/plan.h; no MPI, nothing allocated). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/cli.h"
#include "launcher/commands.h"
#include "train/plan.h"

#define GPUS_PER_NODE_DEFAULT 8

void cmd_plan_usage(FILE *out) {
    fprintf(out,
            "usage: shardlm plan --config RUN.json [--config ...] [--set KEY=VALUE]...\n"
            "                    (--world N | --nodes N [--gpus-per-node G])\n"
            "                    [--gpu cpu|a100-40g|a100-80g|h100|h200] [--price USD_PER_GPU_HOUR]\n"
            "                    [--mfu X] [--busbw GBPS] [--cores N]\n\n"
            "Prints, for the run of the config on that world and device, each rank's memory by the\n"
            "accountant's categories (params, grads, optimizer, gathered, activations with and\n"
            "without train.recompute, logits, comm, workspace), whether it fits and with what\n"
            "headroom, the largest train.micro_batch that fits, the bytes all-gathered,\n"
            "reduce-scattered and all-reduced per rank per step, FLOPs per step, a step time and\n"
            "tokens/s from the stated MFU and bus bandwidth, and GPU-hours and cost for train.steps.\n"
            "--world N         N ranks: one node of N (cpu, or N <= %d GPUs) or N/%d nodes of %d GPUs\n"
            "--nodes N         nodes, with --gpus-per-node G (default %d; cpu: ranks per host)\n"
            "--gpu KIND        device (default a100-80g): cpu is the fp32 CPU backend on this\n"
            "                  machine (limit: its available memory), the GPUs are bf16 CUDA\n"
            "--price USD       per GPU-hour (default per device, printed)\n"
            "--mfu X           model FLOPs utilization in (0, 1] (default per device, printed)\n"
            "--busbw GBPS      bus bandwidth in GB/s for every collective (default per device:\n"
            "                  one figure within a node, one across nodes)\n"
            "--cores N         cpu: cores of the host (default: this machine's)\n"
            "The memory model mirrors the allocations of fsdp_create, model_create and the\n"
            "backends exactly; `shardlm train` runs it as a pre-flight check.\n",
            GPUS_PER_NODE_DEFAULT, GPUS_PER_NODE_DEFAULT, GPUS_PER_NODE_DEFAULT, GPUS_PER_NODE_DEFAULT);
}

static void fmt_bytes(double b, char *buf, size_t cap) {
    if (fabs(b) >= 1073741824.0)
        snprintf(buf, cap, "%.2f GiB", b / 1073741824.0);
    else
        snprintf(buf, cap, "%.1f MiB", b / 1048576.0);
}

static void mem_line(const char *name, int64_t bytes, const char *note) {
    char b[32];
    fmt_bytes((double)bytes, b, sizeof b);
    printf("  %-12s %12s  %15lld bytes%s%s\n", name, b, (long long)bytes, note[0] ? "  " : "", note);
}

static sl_status parse_world(const cli_args *a, plan_opts *o) {
    const plan_device *d = plan_device_get(o->gpu);
    long long world = 0, nodes = 0, per = 0;
    SL_TRY(cli_get_int(a, "world", 1, 1 << 20, &world));
    SL_TRY(cli_get_int(a, "nodes", 1, 1 << 20, &nodes));
    SL_TRY(cli_get_int(a, "gpus-per-node", 1, 1024, &per));
    if ((world > 0) == (nodes > 0))
        return sl_errorf(SL_ERR_INVALID, "give the world either as --world N or as --nodes N [--gpus-per-node G]");
    if (world > 0 && per > 0)
        return sl_errorf(SL_ERR_INVALID, "--gpus-per-node goes with --nodes, not with --world");
    if (nodes > 0) {
        o->nodes = (int)nodes;
        o->per_node = per > 0 ? (int)per : (d->is_gpu ? GPUS_PER_NODE_DEFAULT : 1);
    } else if (!d->is_gpu || world <= GPUS_PER_NODE_DEFAULT) {
        o->nodes = 1;
        o->per_node = (int)world;
    } else {
        if (world % GPUS_PER_NODE_DEFAULT != 0)
            return sl_errorf(SL_ERR_INVALID, "--world %lld GPUs: more than %d must be whole nodes of %d; give "
                             "--nodes N --gpus-per-node G instead", world, GPUS_PER_NODE_DEFAULT,
                             GPUS_PER_NODE_DEFAULT);
        o->nodes = (int)(world / GPUS_PER_NODE_DEFAULT);
        o->per_node = GPUS_PER_NODE_DEFAULT;
    }
    return SL_OK;
}

static sl_status parse_opts(const cli_args *a, plan_opts *o) {
    memset(o, 0, sizeof *o);
    o->gpu = PLAN_GPU_A100_80G;
    o->price = -1;
    if (cli_get(a, "gpu"))
        SL_TRY(plan_device_parse(cli_get(a, "gpu"), &o->gpu));
    SL_TRY(parse_world(a, o));
    float f = -1;
    SL_TRY(cli_get_float(a, "price", &f));
    if (cli_get(a, "price") && f < 0)
        return sl_errorf(SL_ERR_INVALID, "--price %g: expected USD per GPU-hour >= 0", (double)f);
    o->price = f;
    f = 0;
    SL_TRY(cli_get_float(a, "mfu", &f));
    if (cli_get(a, "mfu") && !(f > 0 && f <= 1))
        return sl_errorf(SL_ERR_INVALID, "--mfu %g: expected a fraction in (0, 1], e.g. 0.4", (double)f);
    o->mfu = f;
    f = 0;
    SL_TRY(cli_get_float(a, "busbw", &f));
    if (cli_get(a, "busbw") && !(f > 0))
        return sl_errorf(SL_ERR_INVALID, "--busbw %g: expected GB/s > 0", (double)f);
    o->busbw_gbps = f;
    long long cores = 0;
    SL_TRY(cli_get_int(a, "cores", 1, 1 << 20, &cores));
    o->cpu_cores = (int)cores;
    return SL_OK;
}

static void print_memory(const sl_config *cfg, const plan_result *r, int64_t extra) {
    char note[160];
    printf("memory per rank (the accountant's categories%s):\n", r->is_gpu ? ", device memory" : ", host memory");
    for (int c = 0; c < MEM_CATEGORY_COUNT; c++) {
        note[0] = 0;
        if (c == MEM_CATEGORY_ACTIVATIONS) {
            char a[32], b[32], lg[32];
            fmt_bytes((double)(cfg->train.recompute ? r->act_full : r->act_recompute), a, sizeof a);
            fmt_bytes((double)r->act_logits, lg, sizeof lg);
            snprintf(b, sizeof b, "%s", cfg->train.recompute ? "off" : "on");
            snprintf(note, sizeof note, "recompute %s; %s %s; of it logits + cross-entropy %s (%lld vocab columns)",
                     cfg->train.recompute ? "on" : "off", b, a, lg, (long long)r->vchunk);
        } else if (c == MEM_CATEGORY_GATHERED) {
            snprintf(note, sizeof note, "full-size unit buffers: %d gather slots%s",
                     cfg->parallel.gather_buffers,
                     cfg->parallel.grad_sync == GRAD_SYNC_PER_STEP ? ", per_step gradients"
                                                                     : ", 3-slot gradient pool");
        }
        if (r->bytes[c] || c <= MEM_CATEGORY_ACTIVATIONS)
            mem_line(mem_category_name((mem_category)c), r->bytes[c], note);
    }
    mem_line("accountant", r->total, "the accountant's peak (bench: peak_bytes_total)");
    if (extra > 0)
        mem_line("runtime", extra, r->is_gpu ? "" : "libraries, MPI, OpenBLAS: outside the accountant (assumed)");
    if (extra > 0)
        mem_line("total", r->total + extra, "");
    if (r->is_gpu && r->host_bytes)
        mem_line("host", r->host_bytes, "MPI reduction scratch (host memory, not in the total)");
}

static void print_plan(const sl_config *cfg, const plan_opts *o, const plan_result *r, const plan_limit *lim,
                       int64_t extra, int best_mb) {
    const plan_device *d = plan_device_get(o->gpu);
    const parallel_plan *p = &r->plan;
    char b1[32], b2[32], b3[32];
    printf("model: %s, %d layers, d_model %d, %d heads (%d KV), d_ff %d, vocab %d, %s embeddings: %.3f B "
           "parameters\n",
           config_enum_name("model.arch", cfg->model.arch), cfg->model.n_layer, cfg->model.d_model,
           cfg->model.n_head, cfg->model.n_kv_head, cfg->model.d_ff, cfg->model.vocab_size,
           cfg->model.tie_embeddings ? "tied" : "untied", (double)r->params_total / 1e9);
    if (cfg->lora.enabled)
        printf("lora: r %d on %d target list(s): %.2f M trainable adapter parameters, the base frozen\n",
               cfg->lora.r, cfg->lora.targets.n, (double)r->lora_params / 1e6);
    printf("world %d = %d node(s) x %d %s | fsdp %s: shard %d x replicate %d | ", p->world, o->nodes, o->per_node,
           d->is_gpu ? "GPUs" : "ranks", config_enum_name("parallel.fsdp_mode", p->mode), p->shard_size,
           p->replicate_size);
    printf("grad_sync %s\n", config_enum_name("parallel.grad_sync", cfg->parallel.grad_sync));
    printf("batch: micro_batch %d x seq_len %d x grad_accum %d x dp %d = %lld tokens per step\n",
           cfg->train.micro_batch, cfg->data.seq_len, cfg->train.grad_accum, p->dp_size,
           (long long)p->tokens_per_step);
    printf("device: %s (%s)\n\n", d->name, d->label);
    print_memory(cfg, r, extra);
    int64_t need = r->total + extra;
    fmt_bytes((double)lim->bytes, b1, sizeof b1);
    fmt_bytes((double)(lim->bytes - need), b2, sizeof b2);
    printf("limit per rank: %s (%s)\n", b1, lim->why);
    if (need <= lim->bytes)
        printf("fits: yes, headroom %s (%.1f%% of the limit)\n", b2, 100.0 * (double)(lim->bytes - need) /
                                                                         (double)lim->bytes);
    else
        printf("fits: NO, short by %s: more ranks, train.recompute = true, a smaller micro_batch or "
               "lora.enabled = true\n", b2 + (b2[0] == '-'));
    if (best_mb > 0)
        printf("largest micro_batch that fits: %d (seq_len %d, recompute %s)\n", best_mb, cfg->data.seq_len,
               cfg->train.recompute ? "on" : "off");
    else
        printf("largest micro_batch that fits: none (not even 1 at seq_len %d)\n", cfg->data.seq_len);
    fmt_bytes(r->ag_bytes, b1, sizeof b1);
    fmt_bytes(r->rs_bytes, b2, sizeof b2);
    fmt_bytes(r->ar_bytes, b3, sizeof b3);
    printf("\ncomm per rank per step: all-gathered %s, reduce-scattered %s, all-reduced %s (%lld collectives)\n",
           b1, b2, b3, (long long)r->n_collectives);
    fmt_bytes(r->bus_bytes_node, b1, sizeof b1);
    fmt_bytes(r->bus_bytes_cross, b2, sizeof b2);
    printf("  bus bytes (nccl-tests convention): %s within a node, %s across nodes\n", b1, b2);
    bool pairs = cfg->train.objective != TRAIN_OBJECTIVE_SFT; /* 2 rows per pair; dpo: + the reference forward */
    bool dpo = cfg->train.objective == TRAIN_OBJECTIVE_DPO;
    const char *with = cfg->lora.enabled ? (cfg->train.recompute ? "LoRA and recomputation" : "LoRA (no frozen dW)")
                                         : (cfg->train.recompute ? "recomputation" : NULL);
    printf("FLOPs per step: %.4g (%.4g per token x %lld tokens%s; executed with %s%s%s: %.4g)\n", r->flops_per_step,
           r->flops_per_token, (long long)p->tokens_per_step * (pairs ? 2 : 1), pairs ? " (2 rows per pair)" : "",
           with ? with : (dpo ? "" : "nothing more"), with && dpo ? " and " : "",
           dpo ? "the DPO reference's forward" : "", r->exec_flops_per_step);
    printf("assumptions: MFU %.2f%s, peak %.4g TFLOP/s per rank%s, busbw %.4g GB/s within a node and %.4g "
           "across%s, $%.2f per %s-hour%s\n",
           r->mfu, o->mfu > 0 ? " (--mfu)" : "", r->peak_tflops, d->is_gpu ? " (dense bf16 datasheet)" : "",
           r->busbw_node_gbps, r->busbw_cross_gbps, o->busbw_gbps > 0 ? " (--busbw)" : "", r->price,
           d->is_gpu ? "GPU" : "rank", o->price >= 0 ? " (--price)" : "");
    printf("  defaults: %s\n", d->source);
    printf("step time: %.4g s (compute %.4g s, comm %.4g s, overlapped: the larger)\n", r->step_s, r->compute_s,
           r->comm_s);
    printf("tokens/s: %.5g (%.5g per rank)\n", r->tokens_per_s, r->tokens_per_s / p->world);
    printf("train.steps %d: %.4g %s-hours, %.4g h wall, cost $%.2f\n", cfg->train.steps, r->gpu_hours,
           d->is_gpu ? "GPU" : "rank", r->step_s * cfg->train.steps / 3600.0, r->cost);
}

int cmd_plan(int argc, char **argv) {
    cli_args a;
    static const char *const known[] = {"config", "set", "world", "nodes", "gpus-per-node", "gpu",
                                        "price", "mfu", "busbw", "cores", NULL};
    sl_status st = cli_parse(&a, argc, argv, NULL);
    if (st == SL_OK)
        st = cli_check_known(&a, known);
    if (st == SL_OK && a.n_pos > 0)
        st = sl_errorf(SL_ERR_INVALID, "unexpected argument \"%s\"", a.pos[0]);
    plan_opts o;
    if (st == SL_OK)
        st = parse_opts(&a, &o);
    if (st != SL_OK) {
        int code = cli_report("plan", st);
        cmd_plan_usage(stderr);
        return code;
    }
    sl_config *cfg = malloc(sizeof *cfg);
    if (!cfg)
        return cli_report("plan", sl_errorf(SL_ERR_NOMEM, "out of memory"));
    st = cli_load_config(&a, cfg);
    if (st == SL_OK) {
        /* the device decides the backend and dtype, as train.backend = auto would */
        cfg->train.dtype = plan_device_get(o.gpu)->is_gpu ? COMPUTE_DTYPE_BF16 : COMPUTE_DTYPE_F32;
    }
    plan_result r;
    if (st == SL_OK)
        st = plan_compute(cfg, &o, &r);
    plan_limit lim;
    int64_t extra = 0;
    if (st == SL_OK && r.is_gpu) {
        memset(&lim, 0, sizeof lim);
        lim.bytes = plan_device_get(o.gpu)->mem_bytes - PLAN_GPU_RESERVE_BYTES;
        snprintf(lim.why, sizeof lim.why, "%.1f GiB of device memory less %.1f GiB for the CUDA context, "
                 "cuBLASLt and NCCL", (double)plan_device_get(o.gpu)->mem_bytes / 1073741824.0,
                 (double)PLAN_GPU_RESERVE_BYTES / 1073741824.0);
    } else if (st == SL_OK) {
        plan_host_limit(o.per_node, &lim);
        extra = PLAN_CPU_RUNTIME_BYTES;
        if (lim.bytes == INT64_MAX)
            lim.bytes = (int64_t)1 << 62;
    }
    int best = 0;
    if (st == SL_OK)
        st = plan_max_micro_batch(cfg, &o, lim.bytes, extra, &best);
    if (st == SL_OK)
        print_plan(cfg, &o, &r, &lim, extra, best);
    free(cfg);
    return cli_report("plan", st);
}
