/* parallel/plan.c, the one place the parallel factors are decided and
 * checked, on hand-built topologies (no MPI needed): each mode's factors and
 * batch arithmetic; HYBRID over uneven nodes refused; and the factors-vs-world
 * check, which topology_init's own guarantees keep unreachable from a config
 * (parallel.ranks_per_node not dividing the world is refused there first, see
 * tests/integration/test_env.sh), fires for an inconsistent topology with an
 * error that prints every factor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "parallel/plan.h"
#include "runtime/config.h"
#include "support/golden.h"

static sl_config run_cfg(int mode) {
    sl_config cfg;
    config_defaults(&cfg);
    cfg.parallel.fsdp_mode = mode;
    cfg.train.micro_batch = 3;
    cfg.train.grad_accum = 2;
    cfg.data.seq_len = 16;
    return cfg;
}

/* rank `rank` of `nodes` nodes of `per_node` ranks (world = nodes x per_node
 * unless world > 0 overrides it) */
static topology topo(int rank, int nodes, int per_node, int world, bool uniform) {
    topology t;
    memset(&t, 0, sizeof t);
    t.world = world > 0 ? world : nodes * per_node;
    t.rank = rank;
    t.n_nodes = nodes;
    t.local_world = per_node;
    t.node = rank / per_node;
    t.local_rank = rank % per_node;
    t.uniform = uniform;
    t.pretend_nodes = true;
    t.comm = t.node_comm = MPI_COMM_NULL;
    return t;
}

static void test_modes(void **state) {
    (void)state;
    parallel_plan p;
    sl_config c = run_cfg(FSDP_MODE_FULL_SHARD);
    topology t = topo(3, 2, 2, 0, true);
    OK(parallel_plan_make(&c, &t, &p));
    assert_int_equal(p.shard_size, 4);
    assert_int_equal(p.shard_rank, 3);
    assert_int_equal(p.replicate_size, 1);
    assert_int_equal(p.dp_size, 4);
    assert_int_equal(p.global_batch, 3 * 2 * 4);
    assert_int_equal(p.tokens_per_step, 3 * 2 * 4 * 16);
    c = run_cfg(FSDP_MODE_NO_SHARD);
    OK(parallel_plan_make(&c, &t, &p));
    assert_int_equal(p.shard_size, 1);
    assert_int_equal(p.replicate_size, 4);
    assert_int_equal(p.replicate_rank, 3);
    c = run_cfg(FSDP_MODE_HYBRID);
    OK(parallel_plan_make(&c, &t, &p));
    assert_int_equal(p.shard_size, 2);
    assert_int_equal(p.shard_rank, 1);
    assert_int_equal(p.replicate_size, 2);
    assert_int_equal(p.replicate_rank, 1);
    char line[256];
    parallel_plan_describe(&p, line, sizeof line);
    assert_string_equal(line, "world 4 = shard 2 x replicate 2 (hybrid) | global batch 24 = micro 3 x accum 2 x dp 4"
                              " sequences");
}

static void test_hybrid_uneven(void **state) {
    (void)state;
    parallel_plan p;
    sl_config c = run_cfg(FSDP_MODE_HYBRID);
    topology t = topo(0, 2, 2, 0, false);
    assert_int_equal(parallel_plan_make(&c, &t, &p), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "same number of ranks on every node"));
}

static void test_factors_check(void **state) {
    (void)state;
    parallel_plan p;
    sl_config c = run_cfg(FSDP_MODE_HYBRID);
    topology t = topo(1, 2, 3, 4, true); /* claims 2 nodes x 3 ranks in a world of 4 */
    assert_int_equal(parallel_plan_make(&c, &t, &p), SL_ERR_INVALID);
    const char *m = sl_error_message();
    assert_non_null(strstr(m, "parallel factors do not multiply to the world size: shard 3 x replicate 2 = 6, "
                              "world = 4 (mode hybrid, nodes 2, ranks per node 3)"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_modes),
        cmocka_unit_test(test_hybrid_uneven),
        cmocka_unit_test(test_factors_check),
    };
    return cmocka_run_group_tests_name("plan", tests, NULL, NULL);
}
