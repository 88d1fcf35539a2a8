/* shardlm train: the training job (train/train.h) from a config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/cli.h"
#include "launcher/commands.h"
#include "train/train.h"
#include "train/train_check.h"
#include "runtime/log.h"
#include "runtime/preempt.h"

void cmd_train_usage(FILE *out) {
    fprintf(out,
            "usage: [mpirun -np N | srun] shardlm train --config FILE [--config FILE]... [--set KEY=VALUE]...\n"
            "                                          [--resume auto|none|PATH] [--overwrite]\n\n"
            "Trains the model of the config on data.train (shards from shardlm prepare), FSDP-sharded\n"
            "over the ranks (parallel.fsdp_mode), evaluating on data.eval, and exports the final model\n"
            "to <train.run_dir>/export. Every config key: shardlm config keys.\n"
            "Checkpoints go to <train.run_dir>/checkpoints every checkpoint.every steps and at the end;\n"
            "--resume (checkpoint.resume) continues from the latest one (auto) or a step folder, at any\n"
            "world size. SIGTERM or SIGUSR1 saves at the next step boundary and exits %d.\n"
            "A run directory belongs to one run: a fresh run into a train.run_dir that holds files is\n"
            "refused; continue it with --resume auto, pick another run_dir, or pass --overwrite, which\n"
            "moves the old folder aside to <run_dir>.old-<time> (nothing is deleted).\n",
            SL_EXIT_PREEMPTED);
}

int cmd_train(int argc, char **argv) {
    cli_args a;
    static const char *const known[] = {"config", "set", "resume", "overwrite", NULL};
    static const char *const flags[] = {"overwrite", NULL};
    sl_status st = cli_parse(&a, argc, argv, flags);
    if (st == SL_OK)
        st = cli_check_known(&a, known);
    if (st == SL_OK && a.n_pos > 0)
        st = sl_errorf(SL_ERR_INVALID, "unexpected argument \"%s\"", a.pos[0]);
    if (st != SL_OK) {
        if (cli_env_rank() > 0) /* every rank has the same command line: one prints */
            return cli_exit_code(st);
        int code = cli_report("train", st);
        cmd_train_usage(stderr);
        return code;
    }
    sl_config *cfg = malloc(sizeof *cfg);
    if (!cfg)
        return cli_report("train", sl_errorf(SL_ERR_NOMEM, "out of memory"));
    /* The config is checked before MPI starts, so a typo costs no job launch. */
    st = cli_load_config(&a, cfg);
    const char *resume = cli_get(&a, "resume");
    if (st == SL_OK && resume) {
        int n = snprintf(cfg->checkpoint.resume, sizeof cfg->checkpoint.resume, "%s", resume);
        if (n < 0 || (size_t)n >= sizeof cfg->checkpoint.resume)
            st = sl_errorf(SL_ERR_INVALID, "--resume: path longer than %d bytes", CFG_STR_MAX - 1);
    }
    /* model.init_from, the backend, LoRA targets, data.tokenizer and the
     * run directory: still before MPI (train/train_check.h) */
    bool overwrite = cli_has(&a, "overwrite");
    train_check_opts tco = {.run_dir = true, .overwrite = overwrite};
    if (st == SL_OK)
        st = train_config_check(cfg, &tco);
    if (st != SL_OK) {
        free(cfg);
        /* every rank of the job finds the same error: one prints it */
        return cli_env_rank() > 0 ? cli_exit_code(st) : cli_report("train", st);
    }
    topology t;
    st = topology_init(&t, &argc, &argv, cfg->parallel.ranks_per_node);
    log_level lv = LOG_LEVEL_INFO;
    log_level_parse(cfg->logging.level, &lv);
    log_init(t.rank, t.host, lv);
    /* After MPI_Init, so that these handlers are the ones in place. */
    if (st == SL_OK)
        st = preempt_install();
    train_job *j = calloc(1, sizeof *j);
    if (st == SL_OK && !j)
        st = sl_errorf(SL_ERR_NOMEM, "out of memory");
    train_setup_opts so = {.overwrite = overwrite};
    if (st == SL_OK)
        st = train_job_setup(j, cfg, &t, &so);
    if (st == SL_OK)
        st = train_job_run(j);
    /* An error every rank agreed on is printed once, by the rank it
     * happened on (the log prefix names it). */
    bool agreed = j && j->stop_agreed;
    int code = agreed && t.rank != j->report_rank ? cli_exit_code(st) : cli_report("train", st);
    /* The others may be blocked in a collective, unless every rank stopped
     * at the same point (preemption, a fatal non-finite step). */
    if (code != SL_EXIT_OK && t.world > 1 && !(j && j->stop_agreed))
        topology_abort(&t, code);
    if (j)
        train_job_teardown(j);
    free(j);
    topology_finalize(&t);
    free(cfg);
    return code;
}
