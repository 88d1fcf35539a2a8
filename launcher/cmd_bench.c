/* shardlm bench: training steps of the training job on synthetic data,
 * tokens/s and MFU (one process on the CPU or one GPU, or any world under
 * mpirun);
 * `shardlm bench comm` is dispatched to cmd_bench_comm.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/device_info.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "parallel/topology.h"
#include "train/bench.h"
#include "train/train.h"
#include "runtime/log.h"

void cmd_bench_usage(FILE *out) {
    fprintf(out,
            "usage: shardlm bench comm ...   (collectives; shardlm bench comm --help)\n"
            "       shardlm bench --config run.json [--set k=v]... [--backend cpu|cuda] [--steps N]\n"
            "                     [--warmup W] [--peak TFLOPS] [--threads K] [--save-init DIR]\n"
            "                     [--find-batch [--mem-cap GIB] [--max-batch N]] [--no-repeat-check]\n"
            "       mpirun -np N shardlm bench --fsdp --config run.json [--steps N] [--warmup W]\n\n"
            "Runs 1 + W + N optimizer steps of train.micro_batch x data.seq_len synthetic\n"
            "tokens (train.grad_accum micro-steps each) and prints the step-0 loss, the\n"
            "median step time, tokens/s and MFU over the N timed steps.\n"
            "--backend B     cpu (fp32) or cuda (bf16, one GPU; sets train.dtype = bf16);\n"
            "                default train.backend (auto: CUDA for train.dtype = bf16 on a GPU)\n"
            "--steps N       timed steps (default 10)\n"
            "--warmup W      untimed steps after validation (default 2)\n"
            "--peak T        device peak in TFLOP/s for MFU (default: dense bf16 datasheet\n"
            "                figure by device name: H100 SXM/H200 989, A100 312, ...; the CPU\n"
            "                and unknown devices have none)\n"
            "--threads K     CPU threads of the CPU backend (default: all cores)\n"
            "--save-init DIR write the initial weights as a Hugging Face folder (for a peer;\n"
            "                one-process CPU benchmark only)\n"
            "Set model.init_from to start from a Hugging Face or shardlm model folder.\n\n"
            "Every benchmark runs the training job of `shardlm train` (FSDP, model, the\n"
            "same optimizer step; world 1 without mpirun) and validates before timing: step-0 loss finite, equal on every rank and within 1 of ln V for a\n"
            "random init; steps 0 and 1 bitwise equal to a second identical run. Each timed\n"
            "step ends with backend_synchronize (host clock). Prints median step, tokens/s\n"
            "(global and per rank), MFU, exposed and total comm, overlap, the memory\n"
            "accountant's peak and (GPU) the device memory in use by cudaMemGetInfo.\n"
            "--fsdp          accepted for compatibility: every benchmark is the training job\n"
            "--find-batch    first find the largest power-of-two micro_batch that fits\n"
            "                (setup + one step; doubling from 1 until an allocation fails),\n"
            "                then benchmark it (one process only)\n"
            "--mem-cap GIB   with --find-batch: a batch also has to keep the accountant's peak\n"
            "                within GIB (an 80 GB card's budget on a bigger one, say); required\n"
            "                on the CPU backend, where allocations rarely fail\n"
            "--max-batch N   with --find-batch: stop doubling at N (a batch a peer also fits)\n"
            "--no-repeat-check  skip the second run (saves one setup and two steps)\n");
    bench_comm_usage(out);
}

static bool wants_cuda(const sl_config *cfg) {
    device_info di;
    device_info_query(&di);
    return train_uses_cuda(cfg, &di);
}

static sl_status parse_opts(const cli_args *a, sl_config *cfg, bench_opts *o) {
    memset(o, 0, sizeof *o);
    o->warmup = 2;
    o->steps = 10;
    o->save_init = cli_get(a, "save-init");
    o->find_batch = cli_has(a, "find-batch");
    o->repeat_check = !cli_has(a, "no-repeat-check");
    long long v = o->steps;
    SL_TRY(cli_get_int(a, "steps", 1, 1000000, &v));
    o->steps = (int)v;
    v = o->warmup;
    SL_TRY(cli_get_int(a, "warmup", 0, 1000000, &v));
    o->warmup = (int)v;
    v = 0;
    SL_TRY(cli_get_int(a, "threads", 0, 4096, &v));
    o->threads = (int)v;
    float f = 0;
    SL_TRY(cli_get_float(a, "peak", &f));
    if (f < 0)
        return sl_errorf(SL_ERR_INVALID, "--peak %g: expected a peak in TFLOP/s > 0", (double)f);
    o->peak_tflops = f;
    f = 0;
    SL_TRY(cli_get_float(a, "mem-cap", &f));
    if (f < 0 || (cli_get(a, "mem-cap") && (f == 0 || !o->find_batch)))
        return sl_errorf(SL_ERR_INVALID, "--mem-cap %g: expected GiB > 0, together with --find-batch",
                         (double)f);
    o->mem_cap_gib = f;
    v = 0;
    SL_TRY(cli_get_int(a, "max-batch", 1, 65536, &v));
    if (v && !o->find_batch)
        return sl_errorf(SL_ERR_INVALID, "--max-batch %lld: only together with --find-batch", v);
    o->max_batch = (int)v;
    if (cli_get(a, "backend")) {
        bool cuda = false;
        SL_TRY(cli_get_backend(a, &cuda));
        if (cuda && !device_build_has_cuda())
            return sl_errorf(SL_ERR_INVALID, "--backend cuda: this shardlm is built without CUDA; rebuild with "
                                             "-DSHARDLM_CUDA=ON (scripts/gpu_bundle.sh builds one for a GPU machine)");
        cfg->train.backend = cuda ? BACKEND_KIND_CUDA : BACKEND_KIND_CPU;
        cfg->train.dtype = cuda ? COMPUTE_DTYPE_BF16 : COMPUTE_DTYPE_F32; /* the CUDA kernels compute in bf16 */
    }
    if (o->find_batch && !wants_cuda(cfg) && o->mem_cap_gib <= 0)
        return sl_errorf(SL_ERR_INVALID, "--find-batch on the CPU backend needs --mem-cap GIB: host "
                                         "allocations rarely fail, so doubling would run into swap");
    return SL_OK;
}

/* MPI (a singleton without mpirun), logging, the benchmark; the exit code. */
static int bench_main(sl_config *cfg, const bench_opts *o, int *argc, char ***argv) {
    topology topo;
    sl_status st = topology_init(&topo, argc, argv, cfg->parallel.ranks_per_node);
    log_level lv = LOG_LEVEL_WARN;
    log_level_parse(cfg->logging.level, &lv);
    log_init(topo.rank, topo.host, lv < LOG_LEVEL_WARN ? lv : LOG_LEVEL_INFO);
    if (st == SL_OK)
        st = train_bench_run(cfg, &topo, o);
    int code = cli_exit_code(st);
    if (st != SL_OK) {
        LOG_ERROR("shardlm bench: %s [%s]", sl_error_message(), sl_status_name(st));
        if (topo.world > 1)
            topology_abort(&topo, code);
    }
    topology_finalize(&topo);
    return code;
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "comm") == 0)
        return bench_comm_main(argc - 1, argv + 1);
    cli_args a;
    static const char *const known[] = {"config", "set",  "steps",      "warmup",  "threads",
                                        "save-init", "fsdp", "backend", "peak",    "find-batch",
                                        "mem-cap", "max-batch", "no-repeat-check", NULL};
    static const char *const flags[] = {"fsdp", "find-batch", "no-repeat-check", NULL};
    sl_status st = cli_parse(&a, argc, argv, flags);
    if (st == SL_OK)
        st = cli_check_known(&a, known);
    sl_config cfg;
    if (st == SL_OK)
        st = cli_load_config(&a, &cfg);
    bench_opts o;
    if (st == SL_OK)
        st = parse_opts(&a, &cfg, &o);
    if (st != SL_OK) {
        int code = cli_report("bench", st);
        cmd_bench_usage(stderr);
        return code;
    }
    log_init(-1, "", LOG_LEVEL_WARN);
    log_level lv;
    if (log_level_parse(cfg.logging.level, &lv))
        log_set_level(lv);
    /* --save-init writes the weights a one-process PyTorch peer starts from
     * (benchmarks/run_cpu_step.sh); elsewhere it has no use */
    const char *np = getenv("OMPI_COMM_WORLD_SIZE");
    if (!np)
        np = getenv("SLURM_NTASKS");
    bool one_cpu = !cli_has(&a, "fsdp") && !o.find_batch && !(np && atoi(np) > 1) && !wants_cuda(&cfg);
    if (!one_cpu && o.save_init) {
        fprintf(stderr, "shardlm bench: error: --save-init is only for the one-process CPU benchmark "
                        "(--backend cpu without --fsdp/--find-batch)\n");
        return SL_EXIT_USAGE;
    }
    return bench_main(&cfg, &o, &argc, &argv);
}
