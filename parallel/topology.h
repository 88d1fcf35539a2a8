/* parallel/topology.h: who and where this process is.
 *
 * defines: topology, topology_init, topology_finalize, topology_abort,
 *          topology_describe
 *
 * Initializes MPI with MPI_THREAD_MULTIPLE (the comm thread issues MPI calls
 * while the main thread computes), works under mpirun, srun and as a
 * singleton (plain ./shardlm). Nodes come from MPI_Comm_split_type(SHARED);
 * ranks_per_node > 0 overrides that with pretend nodes of consecutive ranks,
 * which is how HYBRID sharding is tested on one machine.
 * topology_init also collects the distinct host names of the job (one
 * allgather of gethostname) so that logs can say where the nodes are;
 * topology_describe adds Slurm's view of the job when launched by Slurm.
 * Owns the MPI communicators it creates; topology_finalize frees them and
 * finalizes MPI if topology_init initialized it.
 */
#ifndef SL_PARALLEL_TOPOLOGY_H
#define SL_PARALLEL_TOPOLOGY_H

#include <mpi.h>
#include <stdbool.h>

#include "runtime/status.h"

typedef struct {
    int rank;        /* in MPI_COMM_WORLD */
    int world;
    int local_rank;  /* within the node (real or pretend) */
    int local_world; /* ranks on this node */
    int node;        /* node index, 0..n_nodes-1 */
    int n_nodes;
    bool uniform;    /* every node has the same number of ranks */
    bool pretend_nodes;
    char host[64];
    int n_hosts;     /* distinct host names among the ranks */
    char hosts[256]; /* those names in rank order, comma-separated; ends in "..." if cut */
    MPI_Comm comm;      /* dup of MPI_COMM_WORLD, owned */
    MPI_Comm node_comm; /* ranks of this node, owned */
    bool mpi_owned;     /* we called MPI_Init_thread */
} topology;

/* ranks_per_node: 0 = detect; > 0 must divide the world size. */
sl_status topology_init(topology *t, int *argc, char ***argv, int ranks_per_node);
void topology_finalize(topology *t);
/* One line for logs: nodes, hosts and ranks per node, then, when the
 * environment has SLURM_JOB_ID, the job id, its node list and its task
 * layout (SLURM_JOB_NODELIST, SLURM_NTASKS_PER_NODE or SLURM_TASKS_PER_NODE).
 * Reads only t and the environment; no communication. */
void topology_describe(const topology *t, char *buf, size_t cap);
/* Ends every rank of the job with code (MPI_Abort when under MPI). */
void topology_abort(const topology *t, int code) __attribute__((noreturn));

#endif
