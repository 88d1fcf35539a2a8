#include "parallel/topology.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/check.h"

static sl_status detect_nodes(topology *t) {
    SL_CHECK_MPI(MPI_Comm_split_type(t->comm, MPI_COMM_TYPE_SHARED, t->rank, MPI_INFO_NULL, &t->node_comm));
    SL_CHECK_MPI(MPI_Comm_rank(t->node_comm, &t->local_rank));
    SL_CHECK_MPI(MPI_Comm_size(t->node_comm, &t->local_world));
    /* Node index: order the nodes by the world rank of their local rank 0. */
    int root = t->rank;
    SL_CHECK_MPI(MPI_Bcast(&root, 1, MPI_INT, 0, t->node_comm));
    int *roots = malloc(sizeof(int) * (size_t)t->world);
    SL_CHECK_ALLOC(roots, sizeof(int) * (size_t)t->world);
    int rc = MPI_Allgather(&root, 1, MPI_INT, roots, 1, MPI_INT, t->comm);
    if (rc != MPI_SUCCESS) {
        free(roots);
        SL_CHECK_MPI(rc);
    }
    t->n_nodes = 0;
    t->node = 0;
    for (int r = 0; r < t->world; r++) {
        if (roots[r] != r)
            continue; /* r is a node root */
        if (r < root)
            t->node++;
        t->n_nodes++;
    }
    int max_local = t->local_world, min_local = t->local_world;
    free(roots);
    SL_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &max_local, 1, MPI_INT, MPI_MAX, t->comm));
    SL_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &min_local, 1, MPI_INT, MPI_MIN, t->comm));
    t->uniform = max_local == min_local;
    return SL_OK;
}

/* The distinct host names in rank order: one allgather of 64-byte names. */
static sl_status gather_hosts(topology *t) {
    char *all = calloc((size_t)t->world, sizeof t->host);
    SL_CHECK_ALLOC(all, sizeof t->host * (size_t)t->world);
    int rc = MPI_Allgather(t->host, (int)sizeof t->host, MPI_CHAR, all, (int)sizeof t->host,
                           MPI_CHAR, t->comm);
    if (rc != MPI_SUCCESS) {
        free(all);
        SL_CHECK_MPI(rc);
    }
    size_t len = 0, cap = sizeof t->hosts;
    bool cut = false;
    t->n_hosts = 0;
    t->hosts[0] = 0;
    for (int r = 0; r < t->world; r++) {
        const char *h = all + (size_t)r * sizeof t->host;
        bool seen = false;
        for (int q = 0; q < r && !seen; q++)
            seen = strcmp(h, all + (size_t)q * sizeof t->host) == 0;
        if (seen)
            continue;
        t->n_hosts++;
        if (cut)
            continue;
        if (len + strlen(h) + 1 + 4 > cap) { /* no room for ",name" and "..." */
            snprintf(t->hosts + len, cap - len, "...");
            cut = true;
            continue;
        }
        len += (size_t)snprintf(t->hosts + len, cap - len, "%s%s", len ? "," : "", h);
    }
    free(all);
    return SL_OK;
}

static sl_status pretend_nodes(topology *t, int ranks_per_node) {
    if (t->world % ranks_per_node != 0)
        return sl_errorf(SL_ERR_INVALID,
                         "\"parallel.ranks_per_node\" = %d does not divide the world size %d "
                         "(world = nodes x ranks_per_node)",
                         ranks_per_node, t->world);
    t->node = t->rank / ranks_per_node;
    t->n_nodes = t->world / ranks_per_node;
    t->local_world = ranks_per_node;
    t->uniform = true;
    t->pretend_nodes = true;
    SL_CHECK_MPI(MPI_Comm_split(t->comm, t->node, t->rank, &t->node_comm));
    SL_CHECK_MPI(MPI_Comm_rank(t->node_comm, &t->local_rank));
    return SL_OK;
}

sl_status topology_init(topology *t, int *argc, char ***argv, int ranks_per_node) {
    memset(t, 0, sizeof *t);
    t->comm = MPI_COMM_NULL;
    t->node_comm = MPI_COMM_NULL;
    int inited = 0;
    SL_CHECK_MPI(MPI_Initialized(&inited));
    if (!inited) {
        int provided = 0;
        SL_CHECK_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided));
        t->mpi_owned = true;
        if (provided < MPI_THREAD_MULTIPLE)
            return sl_errorf(SL_ERR_COMM,
                             "MPI provides thread level %d, shardlm needs MPI_THREAD_MULTIPLE (%d): "
                             "use an Open MPI built with thread support",
                             provided, MPI_THREAD_MULTIPLE);
    }
    /* Errors come back as codes that SL_CHECK_MPI turns into messages. */
    SL_CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    SL_CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &t->comm));
    SL_CHECK_MPI(MPI_Comm_rank(t->comm, &t->rank));
    SL_CHECK_MPI(MPI_Comm_size(t->comm, &t->world));
    if (gethostname(t->host, sizeof t->host - 1) != 0)
        snprintf(t->host, sizeof t->host, "unknown");
    t->host[sizeof t->host - 1] = 0;
    SL_TRY(gather_hosts(t));
    if (ranks_per_node > 0)
        return pretend_nodes(t, ranks_per_node);
    return detect_nodes(t);
}

void topology_describe(const topology *t, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "nodes %d%s x ranks per node %s%d | hosts %d: %s", t->n_nodes,
                     t->pretend_nodes ? " (pretend)" : "", t->uniform ? "" : "<= ",
                     t->local_world, t->n_hosts, t->hosts);
    const char *job = getenv("SLURM_JOB_ID");
    if (!job || n < 0 || (size_t)n >= cap)
        return;
    const char *nodelist = getenv("SLURM_JOB_NODELIST");
    const char *tpn = getenv("SLURM_NTASKS_PER_NODE");
    if (!tpn) /* without --ntasks-per-node Slurm sets only the compressed form, "2(x3),1" */
        tpn = getenv("SLURM_TASKS_PER_NODE");
    snprintf(buf + n, cap - (size_t)n, " | slurm job %s, nodes %s, tasks per node %s", job,
             nodelist ? nodelist : "?", tpn ? tpn : "?");
}

void topology_finalize(topology *t) {
    if (t->node_comm != MPI_COMM_NULL)
        MPI_Comm_free(&t->node_comm);
    if (t->comm != MPI_COMM_NULL)
        MPI_Comm_free(&t->comm);
    int fin = 0;
    MPI_Finalized(&fin);
    if (t->mpi_owned && !fin)
        MPI_Finalize();
    t->mpi_owned = false;
}

void topology_abort(const topology *t, int code) {
    fflush(stdout);
    fflush(stderr);
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (inited && !fin && t && t->world > 1)
        MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}
