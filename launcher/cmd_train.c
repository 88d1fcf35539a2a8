/* shardlm train: the training job (launcher/train.h) from a config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/cli.h"
#include "launcher/commands.h"
#include "launcher/train.h"
#include "runtime/log.h"

void cmd_train_usage(FILE *out) {
    fprintf(out,
            "usage: [mpirun -np N | srun] shardlm train --config FILE [--config FILE]... [--set KEY=VALUE]...\n\n"
            "Trains the model of the config on data.train (shards from shardlm prepare), FSDP-sharded\n"
            "over the ranks (parallel.fsdp_mode), evaluating on data.eval, and exports the final model\n"
            "to <train.run_dir>/export. Every config key: shardlm config keys.\n");
}

int cmd_train(int argc, char **argv) {
    cli_args a;
    static const char *const known[] = {"config", "set", NULL};
    sl_status st = cli_parse(&a, argc, argv, NULL);
    if (st == SL_OK)
        st = cli_check_known(&a, known);
    if (st == SL_OK && a.n_pos > 0)
        st = sl_errorf(SL_ERR_INVALID, "unexpected argument \"%s\"", a.pos[0]);
    if (st != SL_OK) {
        int code = cli_report("train", st);
        cmd_train_usage(stderr);
        return code;
    }
    sl_config *cfg = malloc(sizeof *cfg);
    if (!cfg)
        return cli_report("train", sl_errorf(SL_ERR_NOMEM, "out of memory"));
    /* The config is checked before MPI starts, so a typo costs no job launch. */
    st = cli_load_config(&a, cfg);
    if (st != SL_OK) {
        free(cfg);
        return cli_report("train", st);
    }
    topology t;
    st = topology_init(&t, &argc, &argv, cfg->parallel.ranks_per_node);
    log_level lv = LOG_LEVEL_INFO;
    log_level_parse(cfg->logging.level, &lv);
    log_init(t.rank, t.host, lv);
    train_job *j = calloc(1, sizeof *j);
    if (st == SL_OK && !j)
        st = sl_errorf(SL_ERR_NOMEM, "out of memory");
    if (st == SL_OK)
        st = train_job_setup(j, cfg, &t, false);
    if (st == SL_OK)
        st = train_job_run(j);
    int code = cli_report("train", st);
    if (code != SL_EXIT_OK && t.world > 1)
        topology_abort(&t, code); /* the others may be blocked in a collective */
    if (j)
        train_job_teardown(j);
    free(j);
    topology_finalize(&t);
    free(cfg);
    return code;
}
