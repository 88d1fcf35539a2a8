/* shardlm env: the topology and the build as every rank sees them.
 * Rank 0 gathers one fixed-size record per rank and prints a table. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/device_info.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "parallel/topology.h"
#include "runtime/check.h"
#include "runtime/log.h"

void cmd_env_usage(FILE *out) {
    fprintf(out,
            "usage: [mpirun -np N] shardlm env [--ranks-per-node K]\n\n"
            "Prints the nodes and hosts (and under Slurm the job id, node list and\n"
            "task layout), one row per rank: host, pid, node, local rank, OpenMP\n"
            "threads, visible GPUs; then the build (version, git hash, CUDA, libraries).\n"
            "--ranks-per-node K  group consecutive ranks into pretend nodes of K\n");
}

typedef struct {
    int rank, world, local_rank, local_world, node, n_nodes, pid, threads, gpus;
    char host[64];
    char gpu0[256];
} env_row;

static sl_status env_run(topology *t) {
    env_row me = {0};
    device_info di;
    device_info_query(&di);
    me.rank = t->rank;
    me.world = t->world;
    me.local_rank = t->local_rank;
    me.local_world = t->local_world;
    me.node = t->node;
    me.n_nodes = t->n_nodes;
    me.pid = (int)getpid();
    me.threads = omp_get_max_threads();
    me.gpus = di.count;
    snprintf(me.host, sizeof me.host, "%s", t->host);
    snprintf(me.gpu0, sizeof me.gpu0, "%s", di.count ? di.name0 : di.note);
    env_row *rows = NULL;
    if (t->rank == 0) {
        rows = calloc((size_t)t->world, sizeof *rows);
        SL_CHECK_ALLOC(rows, sizeof *rows * (size_t)t->world);
    }
    int rc = MPI_Gather(&me, (int)sizeof me, MPI_BYTE, rows, (int)sizeof me, MPI_BYTE, 0, t->comm);
    if (rc != MPI_SUCCESS) {
        free(rows);
        SL_CHECK_MPI(rc);
    }
    if (t->rank == 0) {
        char where[512];
        topology_describe(t, where, sizeof where);
        printf("world %d, nodes %d%s\n", t->world, t->n_nodes, t->pretend_nodes ? " (pretend)" : "");
        printf("%s\n", where);
        printf("%-5s %-20s %-8s %-5s %-6s %-7s %-5s %s\n", "rank", "host", "pid", "node", "local",
               "threads", "gpus", "gpu0");
        for (int r = 0; r < t->world; r++) {
            const env_row *w = &rows[r];
            printf("%-5d %-20s %-8d %-5d %d/%-4d %-7d %-5d %s\n", w->rank, w->host, w->pid, w->node,
                   w->local_rank, w->local_world, w->threads, w->gpus, w->gpu0);
        }
        printf("\n");
        cli_print_version(stdout);
        fflush(stdout);
        free(rows);
    }
    return SL_OK;
}

int cmd_env(int argc, char **argv) {
    cli_args a;
    static const char *const known[] = {"ranks-per-node", NULL};
    sl_status st = cli_parse(&a, argc, argv, NULL);
    if (st == SL_OK)
        st = cli_check_known(&a, known);
    if (st != SL_OK) {
        cli_report("env", st);
        cmd_env_usage(stderr);
        return SL_EXIT_USAGE;
    }
    const char *rpn = cli_get(&a, "ranks-per-node");
    topology t;
    st = topology_init(&t, &argc, &argv, rpn ? atoi(rpn) : 0);
    if (st == SL_OK) {
        log_init(t.rank, t.host, LOG_LEVEL_INFO);
        st = env_run(&t);
    }
    int code = cli_report("env", st);
    if (code != SL_EXIT_OK && t.world > 1)
        topology_abort(&t, code);
    topology_finalize(&t);
    return code;
}
