/* Golden-file helpers of the model and training-job tests; see golden_job.h. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "golden.h"
#include "golden_job.h"
#include "runtime/fsutil.h"
#include "runtime/log.h"

/* golden_make on rank 0 of t (NULL: this process), its result and the
 * folder's name broadcast. */
static int golden_make_ranks(const topology *t, char *dir, size_t cap, const char *dir_template,
                             const char *script) {
    int rc = 0;
    snprintf(dir, cap, "%s", dir_template);
    if (!t || t->rank == 0)
        rc = golden_make(dir, script);
    if (t) {
        MPI_Bcast(&rc, 1, MPI_INT, 0, t->comm);
        MPI_Bcast(dir, (int)cap, MPI_CHAR, 0, t->comm);
    }
    return rc;
}

static void golden_remove_ranks(const topology *t, const char *dir) {
    if (t)
        MPI_Barrier(t->comm);
    if (!t || t->rank == 0)
        fs_remove_tree(dir);
}

/* golden_suite_main's suite, for its group setup and teardown (cmocka passes
 * them no context). */
static struct {
    const golden_suite *s;
    topology *t;
    char *dir;
    size_t cap;
} g_suite;

static int suite_setup(void **state) {
    (void)state;
    return golden_make_ranks(g_suite.t, g_suite.dir, g_suite.cap, g_suite.s->dir_template, g_suite.s->script);
}

static int suite_teardown(void **state) {
    (void)state;
    golden_remove_ranks(g_suite.t, g_suite.dir);
    return 0;
}

int golden_suite_main(int *argc, char ***argv, const golden_suite *s, topology *t, char *dir, size_t cap,
                      const struct CMUnitTest *tests, size_t n) {
    if (t) {
        if (topology_init(t, argc, argv, 0) != SL_OK) {
            fprintf(stderr, "topology_init: %s\n", sl_error_message());
            return 1;
        }
        log_init(t->rank, t->host, LOG_LEVEL_WARN);
        if (t->rank == 0) {
            printf("%s: world size %d (the training job, FSDP full_shard, CPU fp32)\n", s->name, t->world);
            fflush(stdout);
        }
    }
    g_suite.s = s;
    g_suite.t = t;
    g_suite.dir = dir;
    g_suite.cap = cap;
    int rc = _cmocka_run_group_tests("tests", tests, n, suite_setup, suite_teardown);
    if (t)
        topology_finalize(t);
    return rc;
}

void golden_job_config(sl_config *cfg, const char *hf, hid_t f, int micro_batch, int grad_accum, int seq_len) {
    config_defaults(cfg);
    snprintf(cfg->model.init_from, sizeof cfg->model.init_from, "%s", hf);
    cfg->train.backend = BACKEND_KIND_CPU;
    cfg->train.dtype = COMPUTE_DTYPE_F32;
    cfg->train.micro_batch = micro_batch;
    cfg->train.grad_accum = grad_accum;
    cfg->data.seq_len = seq_len;
    cfg->train.steps = golden_read_optim(f, &cfg->optim);
    cfg->optim.decay_embeddings = false;
    cfg->parallel.comm_timeout_s = 120;
}

double golden_compare_params(hid_t f, const char *group, const model_layout *l, const char *prefix,
                             const float *buf, char *worst, size_t worst_cap) {
    double max_err = 0;
    float *tmp = NULL;
    for (int i = 0; i < l->n_params; i++) {
        const model_param *p = &l->params[i];
        char name[300];
        snprintf(name, sizeof name, "%s/%s%s", group, p->role == MODEL_ROLE_SCORE ? "" : prefix, p->hf_name);
        size_t n = 0;
        double *want = golden_read(f, name, &n);
        assert_int_equal(n, (size_t)p->numel);
        const float *got = buf + l->units[p->unit].offset + p->offset;
        if (p->hf_transposed) { /* golden (in, out); ours (out, in) */
            tmp = realloc(tmp, n * sizeof *tmp);
            assert_non_null(tmp);
            for (int64_t r = 0; r < p->shape[0]; r++)
                for (int64_t c = 0; c < p->shape[1]; c++)
                    tmp[c * p->shape[0] + r] = got[r * p->shape[1] + c];
            got = tmp;
        }
        double e = golden_rel_err(got, want, n);
        if (e > max_err || isnan(e)) {
            max_err = e;
            snprintf(worst, worst_cap, "%s", name);
        }
        free(want);
    }
    free(tmp);
    return max_err;
}

void golden_gather_grads(comm *shard, fsdp *fs, const model_layout *l, float *host) {
    for (int u = 0; u < l->n_units; u++) {
        fsdp_unit_shard s = fsdp_shard(fs, u);
        if (s.len <= 0) /* a unit with no parameters in this group */
            continue;
        float *mine = malloc((size_t)s.len * sizeof *mine);
        float *full = malloc((size_t)s.len * (size_t)comm_size(shard) * sizeof *full);
        assert_true(mine && full);
        OK(fsdp_shard_read(fs, u, FSDP_BUF_GRAD, mine));
        OK(comm_all_gather(shard, mine, full, (size_t)s.len, SL_DTYPE_F32));
        memcpy(host + l->units[u].offset, full, (size_t)l->units[u].numel * sizeof *host);
        free(mine);
        free(full);
    }
}
