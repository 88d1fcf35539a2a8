#include "parallel/plan.h"

#include <stdio.h>

sl_status parallel_plan_make(const sl_config *cfg, const topology *t, parallel_plan *p) {
    p->mode = cfg->parallel.fsdp_mode;
    p->world = t->world;
    p->dp_rank = t->rank;
    p->dp_size = t->world;
    switch (p->mode) {
    case FSDP_MODE_FULL_SHARD:
    case FSDP_MODE_SHARD_GRAD_OP:
        p->shard_size = t->world;
        p->shard_rank = t->rank;
        p->replicate_size = 1;
        p->replicate_rank = 0;
        break;
    case FSDP_MODE_NO_SHARD:
        p->shard_size = 1;
        p->shard_rank = 0;
        p->replicate_size = t->world;
        p->replicate_rank = t->rank;
        break;
    case FSDP_MODE_HYBRID:
        if (!t->uniform)
            return sl_errorf(SL_ERR_INVALID,
                             "hybrid sharding needs the same number of ranks on every node; "
                             "this job has uneven nodes (set parallel.ranks_per_node or launch "
                             "the same -npernode everywhere)");
        p->shard_size = t->local_world;
        p->shard_rank = t->local_rank;
        p->replicate_size = t->n_nodes;
        p->replicate_rank = t->node;
        break;
    default:
        return sl_errorf(SL_ERR_INVALID, "unknown parallel.fsdp_mode %d", p->mode);
    }
    /* The one check of the factors against the world size. A topology from
     * topology_init always passes it (pretend nodes must divide the world,
     * detected nodes must be uniform for HYBRID, and the other modes use
     * world x 1 or 1 x world), so no config reaches it today; it guards this
     * function's contract for any other topology (tests/unit/test_plan.c
     * builds one) and for factors a future parallelism adds. */
    if (p->shard_size * p->replicate_size != p->world)
        return sl_errorf(SL_ERR_INVALID,
                         "parallel factors do not multiply to the world size: shard %d x replicate "
                         "%d = %d, world = %d (mode %s, nodes %d, ranks per node %d)",
                         p->shard_size, p->replicate_size, p->shard_size * p->replicate_size,
                         p->world, config_enum_name("parallel.fsdp_mode", p->mode), t->n_nodes,
                         t->local_world);
    p->micro_batch = cfg->train.micro_batch;
    p->grad_accum = cfg->train.grad_accum;
    p->global_batch = (int64_t)p->micro_batch * p->grad_accum * p->dp_size;
    p->tokens_per_step = p->global_batch * cfg->data.seq_len;
    return SL_OK;
}

void parallel_plan_describe(const parallel_plan *p, char *buf, size_t cap) {
    snprintf(buf, cap,
             "world %d = shard %d x replicate %d (%s) | global batch %lld = micro %d x accum %d x dp %d"
             " sequences",
             p->world, p->shard_size, p->replicate_size,
             config_enum_name("parallel.fsdp_mode", p->mode), (long long)p->global_batch,
             p->micro_batch, p->grad_accum, p->dp_size);
}
