/* Unit tests for ckpt/ (the checkpoint protocol over a list of parts) and
 * train/'s layout hash, without mpirun: a singleton MPI process.
 *   - 2 -> 1 reshard: rank files written as by a world of 2 ranks (a 2-way
 *     split of every unit of a tiny model) and committed with ckpt_commit
 *     are loaded into a world-1 fsdp instance: every element of params, m
 *     and v equals the full values; step, skipped steps, optimizer steps and
 *     loader state come back; a meta.json without optim_steps (older files)
 *     loads it as step - skipped; a truncated rank file is refused with an
 *     error that names it.
 *   - 1 -> 1 round trip through ckpt_save / ckpt_load: bitwise equal shards,
 *     `latest`, the state, no loader state on synthetic data.
 *   - the training job (train/, linked without the executable): a world-2
 *     checkpoint resumed into a world-1 job (train_ckpt_load: shards,
 *     step, Adam's step count), then one production step from there.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ckpt/ckpt.h"
#include "ckpt/ckpt_file.h"
#include "kernels/ops.h"
#include "model/layout.h"
#include "parallel/comm.h"
#include "parallel/fsdp.h"
#include "parallel/plan.h"
#include "parallel/topology.h"
#include "runtime/fsutil.h"
#include "runtime/log.h"
#include "train/train.h"
#include "train/train_ckpt.h"

static struct {
    topology topo;
    comm *world; /* size 1 */
    sl_backend *be;
} g;

static void check_ok(sl_status st) {
    if (st != SL_OK)
        fail_msg("%s: %s", sl_status_name(st), sl_error_message());
}

/* A run of a tiny model at world size 1, its checkpoints under a fresh
 * temporary run_dir. */
typedef struct {
    char run_dir[64];
    sl_config cfg;
    parallel_plan plan;
    model_layout *l;
    int64_t *numel;
    char hash[17];
} run;

static void run_make(run *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->run_dir, sizeof r->run_dir, "/tmp/test_ckpt_XXXXXX");
    assert_non_null(mkdtemp(r->run_dir));
    config_defaults(&r->cfg);
    r->cfg.model.n_layer = 2;
    r->cfg.model.d_model = 16;
    r->cfg.model.n_head = 2;
    r->cfg.model.vocab_size = 37; /* odd sizes: the 2-way split pads */
    r->cfg.model.max_seq_len = 8;
    r->cfg.data.seq_len = 8;
    r->cfg.train.steps = 100;
    snprintf(r->cfg.train.run_dir, sizeof r->cfg.train.run_dir, "%s", r->run_dir);
    check_ok(config_finalize(&r->cfg));
    check_ok(parallel_plan_make(&r->cfg, &g.topo, &r->plan));
    check_ok(model_layout_create(&r->cfg.model, false, &r->l));
    r->numel = malloc(sizeof(int64_t) * (size_t)r->l->n_units);
    assert_non_null(r->numel);
    for (int u = 0; u < r->l->n_units; u++)
        r->numel[u] = r->l->units[u].numel;
    train_ckpt_layout_hash(r->l, r->hash);
}

static void run_free(run *r) {
    check_ok(fs_remove_tree(r->run_dir));
    free(r->numel);
    model_layout_destroy(r->l);
}

static fsdp *make_fsdp(run *r) {
    fsdp_opts o = {.unit_numel = r->numel, .n_units = r->l->n_units, .be = g.be, .plan = &r->plan, .shard_comm = g.world,
                   .gather_buffers = 2, .overlap = false, .frozen = false};
    fsdp *f = NULL;
    check_ok(fsdp_create(&o, &f));
    return f;
}

static ckpt_part part_of(run *r, fsdp *f) {
    return (ckpt_part){"model", f, r->l->n_units, r->numel, r->hash};
}

static ckpt_ctx ctx_of(run *r) {
    return (ckpt_ctx){.cfg = &r->cfg, .world = g.world, .rank = 0, .world_size = 1, .plan = &r->plan,
                      .tokenizer_hash = "", .kill_in_save_step = -1};
}

/* The full value of element i of unit u in buffer d (0 param, 1 m, 2 v),
 * times g_scale (small for a model that is to train from them). */
static double g_scale = 1.0;
static float full_val(int u, int d, int64_t i) {
    return (float)(g_scale * ((double)(u * 10000 + d * 1000) + (double)i * 0.25 + (d == 2 ? 0.5 : 0.0)));
}

/* Writes <root>/step_<step> as a world of 2 ranks (full_shard, shard 2)
 * would: two rank files with the 2-way split of every unit, then meta.json
 * through ckpt_commit. */
static void write_world2(run *r, const ckpt_state *s) {
    char root[CKPT_PATH_MAX], tmp[CKPT_PATH_MAX];
    check_ok(ckpt_root(&r->cfg, root, sizeof root));
    check_ok(ckpt_step_path(tmp, sizeof tmp, root, s->step, ".tmp"));
    check_ok(fs_mkdirs(tmp));
    parallel_plan p2 = r->plan;
    p2.world = p2.dp_size = p2.shard_size = 2;
    p2.replicate_size = 1;
    p2.mode = FSDP_MODE_FULL_SHARD;
    ckpt_rank_file files[2];
    for (int rank = 0; rank < 2; rank++) {
        char path[CKPT_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/rank_%05d.h5", tmp, rank);
        ckpt_file_info in = {.rank = rank, .world = 2, .shard_rank = rank, .shard_size = 2,
                             .replicate_rank = 0, .replicate_size = 1, .step = s->step};
        snprintf(in.fsdp_mode, sizeof in.fsdp_mode, "full_shard");
        ckpt_writer *w;
        check_ok(ckpt_writer_open(path, &in, &w));
        for (int u = 0; u < r->l->n_units; u++) {
            int64_t n = r->numel[u], L = (n + 1) / 2, start = rank * L;
            int64_t valid = n - start < L ? n - start : L;
            ckpt_range rg = {start, L, valid, n};
            float *b = calloc((size_t)(3 * L), sizeof(float));
            assert_non_null(b);
            for (int d = 0; d < 3; d++)
                for (int64_t i = 0; i < valid; i++)
                    b[d * L + i] = full_val(u, d, start + i);
            check_ok(ckpt_writer_add_unit(w, "model", u, &rg, b, b + L, b + 2 * L));
            free(b);
        }
        check_ok(ckpt_writer_close(w));
        struct stat sb;
        assert_int_equal(stat(path, &sb), 0);
        files[rank] = (ckpt_rank_file){rank, 0, (int64_t)sb.st_size};
    }
    ckpt_ctx c2 = {.cfg = &r->cfg, .rank = 0, .world_size = 2, .plan = &p2, .tokenizer_hash = "",
                   .kill_in_save_step = -1};
    ckpt_part part = {"model", NULL, r->l->n_units, r->numel, r->hash};
    check_ok(ckpt_commit(&c2, tmp, &part, 1, s, files, 0.0));
}

static void expect_full_values(run *r, fsdp *f) {
    int64_t wrong = 0;
    for (int u = 0; u < r->l->n_units; u++) {
        fsdp_unit_shard sh = fsdp_shard(f, u);
        assert_int_equal(sh.valid, r->numel[u]);
        float *b = malloc((size_t)sh.len * sizeof(float));
        assert_non_null(b);
        for (int d = 0; d < 3; d++) {
            check_ok(fsdp_shard_read(f, u, (fsdp_buf)d, b));
            for (int64_t i = 0; i < sh.valid; i++)
                wrong += b[i] != full_val(u, d, i);
        }
        free(b);
    }
    assert_int_equal(wrong, 0);
}

static void test_reshard_2_to_1(void **state) {
    (void)state;
    run r;
    run_make(&r);
    ckpt_state s = {.step = 7, .skipped_steps = 2, .optim_steps = 4, .has_loader = true,
                    .loader_epoch = 1, .loader_sample = 96};
    write_world2(&r, &s);
    char dir[CKPT_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/checkpoints/step_00000007", r.run_dir);

    fsdp *f = make_fsdp(&r);
    ckpt_part part = part_of(&r, f);
    ckpt_ctx c = ctx_of(&r);
    ckpt_state got;
    bool own = false;
    check_ok(ckpt_load(&c, dir, &part, 1, true, &got, &own));
    expect_full_values(&r, f);
    assert_int_equal(got.step, 7);
    assert_int_equal(got.skipped_steps, 2);
    assert_int_equal(got.optim_steps, 4);
    assert_true(got.has_loader);
    assert_int_equal(got.loader_epoch, 1);
    assert_int_equal(got.loader_sample, 96);
    assert_true(own);
    assert_false(c.stop_agreed);

    /* an older meta.json without optim_steps: step - skipped */
    char meta[CKPT_PATH_MAX + 16];
    snprintf(meta, sizeof meta, "%s/meta.json", dir);
    char *text = NULL;
    size_t len = 0;
    check_ok(fs_read_file(meta, &text, &len, 1 << 24));
    cJSON *m = cJSON_Parse(text);
    free(text);
    assert_non_null(m);
    cJSON_DeleteItemFromObjectCaseSensitive(m, "optim_steps");
    text = cJSON_Print(m);
    cJSON_Delete(m);
    check_ok(fs_write_atomic(meta, text, strlen(text)));
    free(text);
    check_ok(ckpt_load(&c, dir, &part, 1, true, &got, &own));
    assert_int_equal(got.optim_steps, 5);

    /* a truncated rank file: refused, naming it */
    char rank1[CKPT_PATH_MAX + 16];
    snprintf(rank1, sizeof rank1, "%s/rank_00001.h5", dir);
    struct stat sb;
    assert_int_equal(stat(rank1, &sb), 0);
    assert_int_equal(truncate(rank1, sb.st_size / 2), 0);
    sl_status st = ckpt_load(&c, dir, &part, 1, true, &got, &own);
    assert_int_equal(st, SL_ERR_FORMAT);
    if (!strstr(sl_error_message(), rank1) || !strstr(sl_error_message(), "truncated"))
        fail_msg("the error does not name %s as truncated: %s", rank1, sl_error_message());
    assert_true(c.stop_agreed);
    fsdp_destroy(f);
    run_free(&r);
}

static void test_round_trip_1_to_1(void **state) {
    (void)state;
    run r;
    run_make(&r);
    fsdp *a = make_fsdp(&r);
    for (int u = 0; u < r.l->n_units; u++) {
        fsdp_unit_shard sh = fsdp_shard(a, u);
        float *b = malloc((size_t)sh.len * sizeof(float));
        assert_non_null(b);
        for (int d = 0; d < 3; d++) {
            for (int64_t i = 0; i < sh.len; i++)
                b[i] = i < sh.valid ? full_val(u, d, i) : 0.0f;
            check_ok(fsdp_shard_write(a, u, (fsdp_buf)d, b));
        }
        free(b);
    }
    ckpt_part pa = part_of(&r, a);
    ckpt_ctx c = ctx_of(&r);
    ckpt_state s = {.step = 3, .skipped_steps = 1, .optim_steps = 2};
    check_ok(ckpt_save(&c, &pa, 1, &s));

    char latest[CKPT_PATH_MAX], dir[CKPT_PATH_MAX];
    snprintf(latest, sizeof latest, "%s/checkpoints/latest", r.run_dir);
    char *text = NULL;
    size_t len = 0;
    check_ok(fs_read_file(latest, &text, &len, 4096));
    assert_string_equal(text, "step_00000003\n");
    free(text);
    bool found = false;
    snprintf(r.cfg.checkpoint.resume, sizeof r.cfg.checkpoint.resume, "auto");
    check_ok(ckpt_find_resume(&c, dir, sizeof dir, &found));
    assert_true(found);

    fsdp *b = make_fsdp(&r);
    ckpt_part pb = part_of(&r, b);
    ckpt_state got;
    bool own = false;
    check_ok(ckpt_load(&c, dir, &pb, 1, false, &got, &own));
    assert_int_equal(got.step, 3);
    assert_int_equal(got.skipped_steps, 1);
    assert_int_equal(got.optim_steps, 2);
    assert_false(got.has_loader);
    int64_t wrong = 0;
    for (int u = 0; u < r.l->n_units; u++) {
        fsdp_unit_shard sh = fsdp_shard(a, u);
        float *x = malloc((size_t)sh.len * sizeof(float)), *y = malloc((size_t)sh.len * sizeof(float));
        assert_true(x && y);
        for (int d = 0; d < 3; d++) {
            check_ok(fsdp_shard_read(a, u, (fsdp_buf)d, x));
            check_ok(fsdp_shard_read(b, u, (fsdp_buf)d, y));
            wrong += memcmp(x, y, (size_t)sh.len * sizeof(float)) != 0;
        }
        free(x);
        free(y);
    }
    assert_int_equal(wrong, 0);

    /* a run that reads data refuses a checkpoint made on synthetic data */
    assert_int_equal(ckpt_load(&c, dir, &pb, 1, true, &got, &own), SL_ERR_INVALID);
    if (!strstr(sl_error_message(), "no loader state"))
        fail_msg("unexpected error: %s", sl_error_message());
    fsdp_destroy(a);
    fsdp_destroy(b);
    run_free(&r);
}

static void test_job_resumes_world2_and_steps(void **state) {
    (void)state;
    run r;
    run_make(&r);
    g_scale = 1e-5; /* weights and moments a model can take a step from */
    ckpt_state s = {.step = 7, .skipped_steps = 2, .optim_steps = 5};
    write_world2(&r, &s);
    char dir[CKPT_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/checkpoints/step_00000007", r.run_dir);

    train_job *j = calloc(1, sizeof *j);
    assert_non_null(j);
    train_setup_opts so = {.synthetic = true, .cpu_threads = 1};
    check_ok(train_job_setup(j, &r.cfg, &g.topo, &so));
    check_ok(train_ckpt_load(j, dir));
    expect_full_values(&r, j->fs);
    assert_int_equal(j->step, 7);
    assert_int_equal(j->n_skipped, 2);
    assert_int_equal(optim_steps_applied(j->opt), 5);

    train_step_result res;
    check_ok(train_job_step(j, &res));
    assert_false(res.skipped);
    assert_true(isfinite(res.loss) && res.loss > 0);
    assert_int_equal(j->step, 8);
    assert_int_equal(optim_steps_applied(j->opt), 6);
    /* the update moved the parameters away from the checkpoint's */
    int64_t moved = 0;
    for (int u = 0; u < r.l->n_units; u++) {
        fsdp_unit_shard sh = fsdp_shard(j->fs, u);
        float *b = malloc((size_t)sh.len * sizeof(float));
        assert_non_null(b);
        check_ok(fsdp_shard_read(j->fs, u, FSDP_BUF_PARAM, b));
        for (int64_t i = 0; i < sh.valid; i++)
            moved += b[i] != full_val(u, 0, i);
        free(b);
    }
    assert_true(moved > 0);
    train_job_teardown(j);
    free(j);
    g_scale = 1.0;
    run_free(&r);
}

int main(int argc, char **argv) {
    if (topology_init(&g.topo, &argc, &argv, 0) != SL_OK) {
        fprintf(stderr, "topology_init: %s\n", sl_error_message());
        return 1;
    }
    log_init(g.topo.rank, g.topo.host, LOG_LEVEL_WARN);
    if (g.topo.world != 1) {
        fprintf(stderr, "test_ckpt runs as one process (world %d)\n", g.topo.world);
        return 1;
    }
    comm_opts o;
    comm_opts_default(&o);
    o.timeout_s = 60;
    if (comm_create_mpi(g.topo.comm, &o, &g.world) != SL_OK || backend_create_cpu(1, NULL, &g.be) != SL_OK) {
        fprintf(stderr, "setup: %s\n", sl_error_message());
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reshard_2_to_1),
        cmocka_unit_test(test_round_trip_1_to_1),
        cmocka_unit_test(test_job_resumes_world2_and_steps),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    backend_destroy(g.be);
    comm_destroy(g.world);
    topology_finalize(&g.topo);
    return rc;
}
