/* parallel/plan.h: how the world is divided, decided and checked in one place.
 *
 * defines: parallel_plan, parallel_plan_make, parallel_plan_describe
 *
 * shardlm is data parallel with FSDP sharding (no tensor or pipeline
 * parallelism yet), so the factors are:
 *     world = shard_size x replicate_size        (every rank is a DP rank)
 *     global batch = micro_batch x grad_accum x world   (sequences per step)
 * FULL_SHARD and SHARD_GRAD_OP shard over the whole world; NO_SHARD keeps a
 * full replica per rank; HYBRID shards within a node and replicates across
 * nodes (nodes from MPI shared-memory groups or parallel.ranks_per_node).
 * A mismatch is an error that prints every factor.
 */
#ifndef SL_PARALLEL_PLAN_H
#define SL_PARALLEL_PLAN_H

#include <stdint.h>

#include "parallel/topology.h"
#include "runtime/config.h"
#include "runtime/status.h"

typedef struct {
    int mode;           /* fsdp_mode */
    int world;
    int dp_rank, dp_size; /* data-parallel position = world rank/size */
    int shard_rank, shard_size;         /* within the shard group */
    int replicate_rank, replicate_size; /* across shard groups */
    int micro_batch, grad_accum;
    int64_t global_batch;   /* sequences per optimizer step */
    int64_t tokens_per_step; /* global_batch x seq_len */
} parallel_plan;

sl_status parallel_plan_make(const sl_config *cfg, const topology *t, parallel_plan *out);
/* One line: "world 4 = shard 2 x replicate 2 (hybrid) | global batch 32 = micro 4 x accum 2 x dp 4". */
void parallel_plan_describe(const parallel_plan *p, char *buf, size_t cap);

#endif
