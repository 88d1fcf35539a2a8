/* shardlm bench: training steps on synthetic data, tokens/s (single process);
 * `shardlm bench comm` is dispatched to cmd_bench_comm.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/bench.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "runtime/log.h"

void cmd_bench_usage(FILE *out) {
    fprintf(out,
            "usage: shardlm bench comm ...   (collectives; shardlm bench comm --help)\n"
            "       shardlm bench --config run.json [--set k=v]... [--steps N] [--warmup W]\n"
            "                     [--threads K] [--save-init DIR]\n"
            "       mpirun -np N shardlm bench --fsdp --config run.json [--steps N] [--warmup W]\n\n"
            "Runs 1 + W + N optimizer steps of train.micro_batch x data.seq_len synthetic\n"
            "tokens (train.grad_accum micro-steps each) in one process on the CPU backend and\n"
            "prints the step-0 loss, the median step time and tokens/s over the N timed steps.\n"
            "--steps N       timed steps (default 10)\n"
            "--warmup W      untimed steps after step 0 (default 2)\n"
            "--threads K     CPU threads (default: OMP_NUM_THREADS or all cores)\n"
            "--save-init DIR write the initial weights as a Hugging Face folder (for a peer)\n"
            "Set model.init_from to start from a Hugging Face or shardlm model folder.\n\n"
            "--fsdp          the distributed benchmark (implied under mpirun/srun with more than\n"
            "                one rank): the training job with parallel.fsdp_mode on synthetic\n"
            "                tokens; prints median step time, tokens/s (global and per rank),\n"
            "                exposed comm, total comm (the step's collectives without compute)\n"
            "                and the overlap 1 - exposed/total\n");
    bench_comm_usage(out);
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "comm") == 0)
        return bench_comm_main(argc - 1, argv + 1);
    cli_args a;
    static const char *const known[] = {"config", "set", "steps", "warmup", "threads", "save-init", "fsdp", NULL};
    static const char *const flags[] = {"fsdp", NULL};
    sl_status st = cli_parse(&a, argc, argv, flags);
    if (st == SL_OK)
        st = cli_check_known(&a, known);
    sl_config cfg;
    if (st == SL_OK)
        st = cli_load_config(&a, &cfg);
    if (st != SL_OK) {
        int code = cli_report("bench", st);
        cmd_bench_usage(stderr);
        return code;
    }
    log_init(-1, "", LOG_LEVEL_WARN);
    log_level lv;
    if (log_level_parse(cfg.logging.level, &lv))
        log_set_level(lv);
    bench_opts o = {2, 10, 0, cli_get(&a, "save-init")};
    const char *v;
    if ((v = cli_get(&a, "steps")))
        o.steps = atoi(v);
    if ((v = cli_get(&a, "warmup")))
        o.warmup = atoi(v);
    if ((v = cli_get(&a, "threads")))
        o.threads = atoi(v);
    if (o.steps < 1 || o.warmup < 0) {
        fprintf(stderr, "shardlm bench: error: --steps must be >= 1 and --warmup >= 0\n");
        return SL_EXIT_USAGE;
    }
    const char *np = getenv("OMPI_COMM_WORLD_SIZE");
    if (!np)
        np = getenv("SLURM_NTASKS");
    if (cli_has(&a, "fsdp") || (np && atoi(np) > 1))
        return bench_fsdp_main(&cfg, &o, &argc, &argv);
    bench_result r;
    st = bench_run(&cfg, &o, &r);
    if (st != SL_OK)
        return cli_report("bench", st);
    int B = cfg.train.micro_batch, T = cfg.data.seq_len;
    printf("model %s: %lld params, micro_batch %d x seq_len %d x grad_accum %d, %d timed steps\n",
           cfg.model.arch == MODEL_ARCH_GPT2 ? "gpt2" : "llama", (long long)r.params, B, T,
           cfg.train.grad_accum, o.steps);
    printf("loss0 %.6f\n", r.loss0);
    printf("median_step_s %.4f\n", r.median_step_s);
    printf("min_step_s %.4f\n", r.min_step_s);
    printf("tokens_per_s %.1f\n", r.tokens_per_s);
    printf("gflops_per_s %.2f\n", r.tokens_per_s * r.flops_per_token / 1e9);
    printf("activation_mib %.1f\n", (double)r.activation_bytes / (1 << 20));
    printf("peak_mib %.1f\n", (double)r.peak_bytes / (1 << 20));
    return SL_EXIT_OK;
}
