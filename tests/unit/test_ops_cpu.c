/* Unit tests for kernels/ops.h on the CPU backend: the layer ops (matmul and
 * linear, layernorm/rmsnorm, gelu/swiglu, rope, attention, embedding,
 * cross-entropy). The optimizer and elementwise tail (AdamW, casts, add,
 * scale, dropout), the backend checks, cpu_expf and device_info_pick are in
 * tests/unit/test_ops_cpu_misc.c.
 *
 * Forward values are compared with straightforward double-precision
 * re-implementations written here; backward values with central finite
 * differences of those double references (the scalar being differentiated
 * is L = sum(dout * forward), so dL/dx is exactly what a backward computes).
 * Inputs are fp32 values; the references run in double on the same values.
 *
 * Errors are relative by norm: ||got - want|| / ||want||. Tolerances:
 *   forward ops vs double reference           1e-5 (fp32 arithmetic)
 *   backward vs finite differences (h = 1e-5)  1e-4 (fp32 backward, FD
 *                                               truncation ~1e-9)
 * Shapes are small and deliberately odd: head dims and sequence lengths that
 * are not powers of two, T = 70 > the 64-row attention block, GQA with
 * n_head = 3 x n_kv_head, vocab chunks that do not divide the vocab.
 * The backend runs with 2 threads so the parallel paths are exercised
 * (helpers shared with test_ops_cpu_misc.c: tests/unit/support/ops_check.h).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/ops.h"
#include "support/ops_check.h"

#define TOL_BWD 1e-4
#define FD_H 1e-5

/* ------------------------------------------------------------------------ */
/* helpers */

/* Central finite differences of f at x[idx[i]] for i < n_idx (idx NULL: all
 * n_idx elements). */
typedef double (*loss_fn)(void *ctx);

static void fd_grad(loss_fn f, void *ctx, double *x, int64_t n_idx, const int64_t *idx,
                    double *grad) {
    for (int64_t ii = 0; ii < n_idx; ii++) {
        int64_t i = idx ? idx[ii] : ii;
        double save = x[i];
        x[i] = save + FD_H;
        double lp = f(ctx);
        x[i] = save - FD_H;
        double lm = f(ctx);
        x[i] = save;
        grad[ii] = (lp - lm) / (2 * FD_H);
    }
}

static double dot_d(const double *a, const double *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* ------------------------------------------------------------------------ */
/* matmul and linear */

static void ref_matmul(double *c, const float *a, const float *b, const float *bias, int64_t m,
                       int64_t n, int64_t k, bool ta, bool tb, double alpha, double beta,
                       const float *c0) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t l = 0; l < k; l++) {
                double av = ta ? a[l * m + i] : a[i * k + l];
                double bv = tb ? b[j * k + l] : b[l * n + j];
                s += av * bv;
            }
            c[i * n + j] = alpha * s + (beta != 0 ? beta * c0[i * n + j] : 0) + (bias ? bias[j] : 0);
        }
}

static void test_matmul_all_transposes(void **state) {
    sl_backend *be = *state;
    const int64_t m = 13, n = 7, k = 19;
    for (int combo = 0; combo < 16; combo++) {
        bool ta = combo & 1, tb = combo & 2, with_bias = combo & 4, acc = combo & 8;
        float *a = rand_f(m * k, 1), *b = rand_f(k * n, 1), *bias = rand_f(n, 1);
        float *c = rand_f(m * n, 1), *c0 = malloc(sizeof(float) * (size_t)(m * n));
        memcpy(c0, c, sizeof(float) * (size_t)(m * n));
        if (!acc) /* beta = 0 must ignore C entirely, NaNs included */
            for (int64_t i = 0; i < m * n; i++)
                c[i] = NAN;
        double *want = zeros_d(m * n);
        float alpha = 0.75f, beta = acc ? 1.0f : 0.0f;
        ref_matmul(want, a, b, with_bias ? bias : NULL, m, n, k, ta, tb, alpha, beta, c0);
        sl_tensor ta_v = ta ? V2(a, k, m) : V2(a, m, k);
        sl_tensor tb_v = tb ? V2(b, n, k) : V2(b, k, n);
        OK(ops_matmul(be, V2(c, m, n), ta_v, tb_v, with_bias ? V1(bias, n) : ops_none(), ta, tb,
                      alpha, beta));
        char what[64];
        snprintf(what, sizeof what, "matmul ta=%d tb=%d bias=%d acc=%d", ta, tb, with_bias, acc);
        ASSERT_REL(c, want, m * n, TOL_FWD, what);
        free(a), free(b), free(bias), free(c), free(c0), free(want);
    }
    /* (B, T, K) activations are (B*T, K) matrices */
    float *x = rand_f(2 * 3 * 4, 1), *w = rand_f(5 * 4, 1), *y = zeros_f(2 * 3 * 5);
    double *want = zeros_d(30);
    ref_matmul(want, x, w, NULL, 6, 5, 4, false, true, 1, 0, NULL);
    OK(ops_matmul(be, V3(y, 2, 3, 5), V3(x, 2, 3, 4), V2(w, 5, 4), ops_none(), false, true, 1, 0));
    ASSERT_REL(y, want, 30, TOL_FWD, "matmul 3-d view");
    /* shape errors are reported, not executed */
    assert_int_equal(ops_matmul(be, V2(y, 6, 4), V3(x, 2, 3, 4), V2(w, 5, 4), ops_none(), false,
                                true, 1, 0),
                     SL_ERR_INVALID);
    assert_int_equal(ops_matmul(be, V2(y, 6, 5), V3(x, 2, 3, 4), V2(w, 4, 5), ops_none(), false,
                                true, 1, 0),
                     SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "inner dims"));
    free(x), free(w), free(y), free(want);
}

static void test_linear_forward_backward(void **state) {
    sl_backend *be = *state;
    const int64_t r = 11, kin = 9, nout = 6;
    float *x = rand_f(r * kin, 1), *w = rand_f(nout * kin, 1), *bias = rand_f(nout, 1);
    float *y = zeros_f(r * nout), *dy = rand_f(r * nout, 1);
    OK(ops_linear_forward(be, V2(y, r, nout), V2(x, r, kin), V2(w, nout, kin), V1(bias, nout)));
    double *want = zeros_d(r * nout);
    ref_matmul(want, x, w, bias, r, nout, kin, false, true, 1, 0, NULL);
    ASSERT_REL(y, want, r * nout, TOL_FWD, "linear forward");

    /* dweight/dbias accumulate onto what is there; dinp overwrite then accumulate */
    float *dw = rand_f(nout * kin, 1), *db = rand_f(nout, 1), *dx = rand_f(r * kin, 1);
    double *want_dw = to_d(dw, nout * kin), *want_db = to_d(db, nout), *want_dx = zeros_d(r * kin);
    for (int64_t i = 0; i < nout; i++)
        for (int64_t j = 0; j < kin; j++)
            for (int64_t t = 0; t < r; t++)
                want_dw[i * kin + j] += (double)dy[t * nout + i] * x[t * kin + j];
    for (int64_t i = 0; i < nout; i++)
        for (int64_t t = 0; t < r; t++)
            want_db[i] += dy[t * nout + i];
    for (int64_t t = 0; t < r; t++)
        for (int64_t j = 0; j < kin; j++)
            for (int64_t i = 0; i < nout; i++)
                want_dx[t * kin + j] += (double)dy[t * nout + i] * w[i * kin + j];
    OK(ops_linear_backward(be, V2(dx, r, kin), V2(dw, nout, kin), V1(db, nout), V2(dy, r, nout),
                           V2(x, r, kin), V2(w, nout, kin), false));
    ASSERT_REL(dw, want_dw, nout * kin, TOL_FWD, "linear dweight (+=)");
    ASSERT_REL(db, want_db, nout, TOL_FWD, "linear dbias (+=)");
    ASSERT_REL(dx, want_dx, r * kin, TOL_FWD, "linear dinp");
    OK(ops_linear_backward(be, V2(dx, r, kin), ops_none(), ops_none(), V2(dy, r, nout),
                           ops_none(), V2(w, nout, kin), true));
    for (int64_t i = 0; i < r * kin; i++)
        want_dx[i] *= 2;
    ASSERT_REL(dx, want_dx, r * kin, TOL_FWD, "linear dinp accumulate");
    free(x), free(w), free(bias), free(y), free(dy), free(want), free(dw), free(db), free(dx);
    free(want_dw), free(want_db), free(want_dx);
}

/* ------------------------------------------------------------------------ */
/* norms */

typedef struct {
    double *x, *w, *b, *dy;
    int64_t r, c;
    double eps;
    bool rms;
} norm_ctx;

static void ref_norm(const norm_ctx *n, double *y) {
    for (int64_t i = 0; i < n->r; i++) {
        const double *xr = n->x + i * n->c;
        double m = 0, v = 0;
        if (!n->rms) {
            for (int64_t j = 0; j < n->c; j++)
                m += xr[j];
            m /= n->c;
        }
        for (int64_t j = 0; j < n->c; j++)
            v += (xr[j] - m) * (xr[j] - m);
        v /= n->c;
        double rs = 1 / sqrt(v + n->eps);
        for (int64_t j = 0; j < n->c; j++)
            y[i * n->c + j] = (xr[j] - m) * rs * n->w[j] + (n->rms ? 0 : n->b[j]);
    }
}

static double norm_loss(void *ctx) {
    norm_ctx *n = ctx;
    double *y = zeros_d(n->r * n->c);
    ref_norm(n, y);
    double l = dot_d(y, n->dy, n->r * n->c);
    free(y);
    return l;
}

/* The backward of rmsnorm (rms) or layernorm on (r, c) host buffers. */
static sl_status norm_backward(sl_backend *be, bool rms, float *dx, float *dw, float *db,
                               float *dy, float *x, float *w, float *mean, float *rstd, int64_t r,
                               int64_t c, bool accumulate) {
    if (rms)
        return ops_rmsnorm_backward(be, V2(dx, r, c), V1(dw, c), V2(dy, r, c), V2(x, r, c),
                                    V1(w, c), V1(rstd, r), accumulate);
    return ops_layernorm_backward(be, V2(dx, r, c), V1(dw, c), V1(db, c), V2(dy, r, c),
                                  V2(x, r, c), V1(w, c), V1(mean, r), V1(rstd, r), accumulate);
}

static void check_norm(sl_backend *be, bool rms) {
    const int64_t r = 6, c = 11;
    const float eps = 1e-5f;
    float *x = rand_f(r * c, 2), *w = rand_f(c, 1), *b = rand_f(c, 1), *dy = rand_f(r * c, 1);
    for (int64_t i = 0; i < r * c; i++) /* offset rows: layernorm must center well */
        x[i] += 3.0f * (float)(i / c);
    float *y = zeros_f(r * c), *mean = zeros_f(r), *rstd = zeros_f(r);
    norm_ctx n = {to_d(x, r * c), to_d(w, c), to_d(b, c), to_d(dy, r * c), r, c, eps, rms};
    if (rms)
        OK(ops_rmsnorm_forward(be, V2(y, r, c), V1(rstd, r), V2(x, r, c), V1(w, c), eps));
    else
        OK(ops_layernorm_forward(be, V2(y, r, c), V1(mean, r), V1(rstd, r), V2(x, r, c), V1(w, c),
                                 V1(b, c), eps));
    double *want = zeros_d(r * c);
    ref_norm(&n, want);
    ASSERT_REL(y, want, r * c, TOL_FWD, rms ? "rmsnorm forward" : "layernorm forward");

    float *dx = rand_f(r * c, 1), *dw = zeros_f(c), *db = zeros_f(c);
    OK(norm_backward(be, rms, dx, dw, db, dy, x, w, mean, rstd, r, c, false));
    double *gx = zeros_d(r * c), *gw = zeros_d(c), *gb = zeros_d(c);
    fd_grad(norm_loss, &n, n.x, r * c, NULL, gx);
    fd_grad(norm_loss, &n, n.w, c, NULL, gw);
    ASSERT_REL(dx, gx, r * c, TOL_BWD, rms ? "rmsnorm dinp" : "layernorm dinp");
    ASSERT_REL(dw, gw, c, TOL_BWD, rms ? "rmsnorm dweight" : "layernorm dweight");
    if (!rms) {
        fd_grad(norm_loss, &n, n.b, c, NULL, gb);
        ASSERT_REL(db, gb, c, TOL_BWD, "layernorm dbias");
    }
    /* accumulate: dinp += and the param grads += */
    OK(norm_backward(be, rms, dx, dw, db, dy, x, w, mean, rstd, r, c, true));
    for (int64_t i = 0; i < r * c; i++)
        gx[i] *= 2;
    for (int64_t i = 0; i < c; i++)
        gw[i] *= 2, gb[i] *= 2;
    ASSERT_REL(dx, gx, r * c, TOL_BWD, "norm dinp accumulate");
    ASSERT_REL(dw, gw, c, TOL_BWD, "norm dweight accumulate");
    /* in place forward */
    if (rms)
        OK(ops_rmsnorm_forward(be, V2(x, r, c), V1(rstd, r), V2(x, r, c), V1(w, c), eps));
    else
        OK(ops_layernorm_forward(be, V2(x, r, c), V1(mean, r), V1(rstd, r), V2(x, r, c), V1(w, c),
                                 V1(b, c), eps));
    ASSERT_REL(x, want, r * c, TOL_FWD, "norm forward in place");
    free(x), free(w), free(b), free(dy), free(y), free(mean), free(rstd), free(dx), free(dw);
    free(db), free(n.x), free(n.w), free(n.b), free(n.dy), free(want), free(gx), free(gw), free(gb);
}

static void test_layernorm(void **state) { check_norm(*state, false); }
static void test_rmsnorm(void **state) { check_norm(*state, true); }

/* ------------------------------------------------------------------------ */
/* activations */

typedef struct {
    double *x, *u, *dy;
    int64_t n;
    int kind; /* 0 gelu, 1 swiglu */
} act_ctx;

static double ref_gelu(double x) {
    return 0.5 * x * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
}

static double act_loss(void *ctx) {
    act_ctx *a = ctx;
    double l = 0;
    for (int64_t i = 0; i < a->n; i++) {
        double y = a->kind == 0 ? ref_gelu(a->x[i]) : a->x[i] / (1 + exp(-a->x[i])) * a->u[i];
        l += y * a->dy[i];
    }
    return l;
}

static void test_gelu(void **state) {
    sl_backend *be = *state;
    const int64_t n = 3 * 37;
    float *x = rand_f(n, 4), *y = zeros_f(n), *dy = rand_f(n, 1), *dx = zeros_f(n);
    act_ctx a = {to_d(x, n), NULL, to_d(dy, n), n, 0};
    double *want = zeros_d(n), *g = zeros_d(n);
    for (int64_t i = 0; i < n; i++)
        want[i] = ref_gelu(x[i]);
    OK(ops_gelu_forward(be, V2(y, 3, 37), V2(x, 3, 37)));
    ASSERT_REL(y, want, n, TOL_FWD, "gelu forward");
    OK(ops_gelu_backward(be, V1(dx, n), V1(x, n), V1(dy, n)));
    fd_grad(act_loss, &a, a.x, n, NULL, g);
    ASSERT_REL(dx, g, n, TOL_BWD, "gelu backward");
    OK(ops_gelu_backward(be, V1(dy, n), V1(x, n), V1(dy, n))); /* in place on dout */
    ASSERT_REL(dy, g, n, TOL_BWD, "gelu backward in place");
    free(x), free(y), free(dy), free(dx), free(a.x), free(a.dy), free(want), free(g);
}

static void test_swiglu(void **state) {
    sl_backend *be = *state;
    const int64_t r = 5, f = 13, n = r * f;
    float *gt = rand_f(n, 4), *up = rand_f(n, 2), *y = zeros_f(n), *dy = rand_f(n, 1);
    float *dg = zeros_f(n), *du = zeros_f(n);
    act_ctx a = {to_d(gt, n), to_d(up, n), to_d(dy, n), n, 1};
    double *want = zeros_d(n), *gg = zeros_d(n), *gu = zeros_d(n);
    for (int64_t i = 0; i < n; i++)
        want[i] = a.x[i] / (1 + exp(-a.x[i])) * a.u[i];
    OK(ops_swiglu_forward(be, V2(y, r, f), V2(gt, r, f), V2(up, r, f)));
    ASSERT_REL(y, want, n, TOL_FWD, "swiglu forward");
    OK(ops_swiglu_backward(be, V2(dg, r, f), V2(du, r, f), V2(dy, r, f), V2(gt, r, f),
                           V2(up, r, f)));
    fd_grad(act_loss, &a, a.x, n, NULL, gg);
    fd_grad(act_loss, &a, a.u, n, NULL, gu);
    ASSERT_REL(dg, gg, n, TOL_BWD, "swiglu dgate");
    ASSERT_REL(du, gu, n, TOL_BWD, "swiglu dup");
    /* in place: dgate over gate, dup over up */
    OK(ops_swiglu_backward(be, V2(gt, r, f), V2(up, r, f), V2(dy, r, f), V2(gt, r, f),
                           V2(up, r, f)));
    ASSERT_REL(gt, gg, n, TOL_BWD, "swiglu dgate in place");
    ASSERT_REL(up, gu, n, TOL_BWD, "swiglu dup in place");
    free(gt), free(up), free(y), free(dy), free(dg), free(du), free(a.x), free(a.u), free(a.dy);
    free(want), free(gg), free(gu);
}

/* ------------------------------------------------------------------------ */
/* rope */

typedef struct {
    double *x, *dy;
    int64_t b, t, h, d, off;
    const float *inv; /* (d/2) inverse frequencies */
} rope_ctx;

static void ref_rope(const rope_ctx *c, double *y) {
    int64_t half = c->d / 2;
    for (int64_t b = 0; b < c->b; b++)
        for (int64_t t = 0; t < c->t; t++)
            for (int64_t h = 0; h < c->h; h++) {
                const double *x = c->x + ((b * c->t + t) * c->h + h) * c->d;
                double *o = y + ((b * c->t + t) * c->h + h) * c->d;
                for (int64_t i = 0; i < half; i++) {
                    double ang = (double)(c->off + t) * (double)c->inv[i];
                    /* HF: q * cos + rotate_half(q) * sin, rotate_half = cat(-x2, x1) */
                    o[i] = x[i] * cos(ang) - x[i + half] * sin(ang);
                    o[i + half] = x[i + half] * cos(ang) + x[i] * sin(ang);
                }
            }
}

static double rope_loss(void *ctx) {
    rope_ctx *c = ctx;
    int64_t n = c->b * c->t * c->h * c->d;
    double *y = zeros_d(n);
    ref_rope(c, y);
    double l = dot_d(y, c->dy, n);
    free(y);
    return l;
}

static void test_rope(void **state) {
    sl_backend *be = *state;
    const int64_t b = 2, t = 9, h = 3, d = 6, n = b * t * h * d;
    const double thetas[3] = {10000.0, 500000.0, 10000.0};
    for (int ti = 0; ti < 3; ti++) {
        int64_t off = ti == 0 ? 0 : 5;
        /* the default table 1 / theta^(2i/d) (ti 0, 1), and a scaled one
         * (ti 2: llama3-like, the lowest frequencies divided by 8): the op
         * rotates by whatever table it is given */
        float inv[3];
        for (int64_t i = 0; i < d / 2; i++)
            inv[i] = 1.0f / powf((float)thetas[ti], (float)(2 * i) / (float)d);
        if (ti == 2)
            inv[2] /= 8.0f;
        float *x = rand_f(n, 1), *y = zeros_f(n), *dy = rand_f(n, 1), *dx = zeros_f(n);
        rope_ctx c = {to_d(x, n), to_d(dy, n), b, t, h, d, off, inv};
        double *want = zeros_d(n), *g = zeros_d(n);
        ref_rope(&c, want);
        sl_tensor fr = ops_view1(be, SL_DTYPE_F32, inv, d / 2);
        OK(ops_rope_forward(be, V4(y, b, t, h, d), V4(x, b, t, h, d), off, fr));
        /* angles are computed in fp32 as transformers does: |angle error| <=
         * (off+t) ulp(1) ~ 1e-6, so fp32 tolerance holds at these positions */
        ASSERT_REL(y, want, n, TOL_FWD, "rope forward");
        OK(ops_rope_backward(be, V4(dx, b, t, h, d), V4(dy, b, t, h, d), off, fr));
        fd_grad(rope_loss, &c, c.x, n, NULL, g);
        ASSERT_REL(dx, g, n, TOL_BWD, "rope backward");
        OK(ops_rope_forward(be, V4(x, b, t, h, d), V4(x, b, t, h, d), off, fr));
        ASSERT_REL(x, want, n, TOL_FWD, "rope forward in place");
        free(x), free(y), free(dy), free(dx), free(c.x), free(c.dy), free(want), free(g);
    }
    float *x = zeros_f(2 * 2 * 1 * 5), inv[3] = {1, 1, 1};
    assert_int_equal(ops_rope_forward(be, V4(x, 2, 2, 1, 5), V4(x, 2, 2, 1, 5), 0,
                                      ops_view1(be, SL_DTYPE_F32, inv, 2)),
                     SL_ERR_INVALID);
    float *x6 = zeros_f(2 * 2 * 1 * 6); /* a table of the wrong length */
    assert_int_equal(ops_rope_forward(be, V4(x6, 2, 2, 1, 6), V4(x6, 2, 2, 1, 6), 0,
                                      ops_view1(be, SL_DTYPE_F32, inv, 2)),
                     SL_ERR_INVALID);
    free(x);
    free(x6);
}

/* ------------------------------------------------------------------------ */
/* attention */

typedef struct {
    double *q, *k, *v, *dy;
    int64_t b, t, h, hkv, d;
} attn_ctx;

/* out (B,T,H,D) and lse (B,H,T) in double, straight from the definition. */
static void ref_attention(const attn_ctx *c, double *out, double *lse) {
    int64_t g = c->h / c->hkv;
    double scale = 1 / sqrt((double)c->d);
    double *s = zeros_d(c->t);
    for (int64_t b = 0; b < c->b; b++)
        for (int64_t h = 0; h < c->h; h++)
            for (int64_t i = 0; i < c->t; i++) {
                const double *qi = c->q + ((b * c->t + i) * c->h + h) * c->d;
                double mx = -INFINITY;
                for (int64_t j = 0; j <= i; j++) {
                    const double *kj = c->k + ((b * c->t + j) * c->hkv + h / g) * c->d;
                    s[j] = scale * dot_d(qi, kj, c->d);
                    mx = fmax(mx, s[j]);
                }
                double sum = 0;
                for (int64_t j = 0; j <= i; j++)
                    sum += exp(s[j] - mx);
                double *o = out + ((b * c->t + i) * c->h + h) * c->d;
                for (int64_t e = 0; e < c->d; e++)
                    o[e] = 0;
                for (int64_t j = 0; j <= i; j++) {
                    double p = exp(s[j] - mx) / sum;
                    const double *vj = c->v + ((b * c->t + j) * c->hkv + h / g) * c->d;
                    for (int64_t e = 0; e < c->d; e++)
                        o[e] += p * vj[e];
                }
                if (lse)
                    lse[(b * c->h + h) * c->t + i] = mx + log(sum);
            }
    free(s);
}

static double attn_loss(void *ctx) {
    attn_ctx *c = ctx;
    int64_t n = c->b * c->t * c->h * c->d;
    double *y = zeros_d(n);
    ref_attention(c, y, NULL);
    double l = dot_d(y, c->dy, n);
    free(y);
    return l;
}

/* Checks forward, lse and backward (FD on all elements when few, else on a
 * fixed sample of max_fd elements per input). */
static void check_attention(sl_backend *be, int64_t b, int64_t t, int64_t h, int64_t hkv,
                            int64_t d, int64_t max_fd) {
    int64_t nq = b * t * h * d, nk = b * t * hkv * d;
    float *q = rand_f(nq, 1.5f), *k = rand_f(nk, 1.5f), *v = rand_f(nk, 1), *dy = rand_f(nq, 1);
    float *out = zeros_f(nq), *lse = zeros_f(b * h * t);
    float *dq = zeros_f(nq), *dk = rand_f(nk, 1), *dv = rand_f(nk, 1); /* dk, dv: written */
    attn_ctx c = {to_d(q, nq), to_d(k, nk), to_d(v, nk), to_d(dy, nq), b, t, h, hkv, d};
    double *want = zeros_d(nq), *want_lse = zeros_d(b * h * t);
    ref_attention(&c, want, want_lse);
    OK(ops_attention_forward(be, V4(out, b, t, h, d), V3(lse, b, h, t), V4(q, b, t, h, d),
                             V4(k, b, t, hkv, d), V4(v, b, t, hkv, d)));
    char what[96];
    snprintf(what, sizeof what, "attention forward B%lld T%lld H%lld Hkv%lld D%lld",
             (long long)b, (long long)t, (long long)h, (long long)hkv, (long long)d);
    ASSERT_REL(out, want, nq, TOL_FWD, what);
    ASSERT_REL(lse, want_lse, b * h * t, TOL_FWD, "attention lse");
    OK(ops_attention_backward(be, V4(dq, b, t, h, d), V4(dk, b, t, hkv, d), V4(dv, b, t, hkv, d),
                              V4(dy, b, t, h, d), V4(q, b, t, h, d), V4(k, b, t, hkv, d),
                              V4(v, b, t, hkv, d), V4(out, b, t, h, d), V3(lse, b, h, t)));
    struct {
        double *x;
        float *got;
        int64_t n;
        const char *name;
    } ins[3] = {{c.q, dq, nq, "dq"}, {c.k, dk, nk, "dk"}, {c.v, dv, nk, "dv"}};
    for (int i = 0; i < 3; i++) {
        int64_t m = ins[i].n < max_fd ? ins[i].n : max_fd;
        int64_t *idx = malloc((size_t)m * sizeof(int64_t));
        float *got = malloc((size_t)m * sizeof(float));
        double *g = zeros_d(m);
        for (int64_t j = 0; j < m; j++) {
            idx[j] = m == ins[i].n ? j : (int64_t)(splitmix() % (uint64_t)ins[i].n);
            got[j] = ins[i].got[idx[j]];
        }
        fd_grad(attn_loss, &c, ins[i].x, m, idx, g);
        snprintf(what, sizeof what, "attention %s (T%lld, G%lld)", ins[i].name, (long long)t,
                 (long long)(h / hkv));
        if (dot_d(g, g, m) == 0.0 || (t == 1 && i == 0)) {
            /* T = 1: softmax over one key is constant, dq is exactly 0 in
             * real arithmetic; the fp32 result is rounding noise only */
            for (int64_t j = 0; j < m; j++)
                assert_true(fabsf(got[j]) <= 1e-6f);
        } else {
            ASSERT_REL(got, g, m, TOL_BWD, what);
        }
        free(idx), free(got), free(g);
    }

    /* KV-cache decode: the last 3 queries against a cache of S = t + 4 rows
     * holding the same keys give the same rows as the full forward. */
    int64_t s = t + 4, tq = 3 < t ? 3 : t;
    float *kc = rand_f(b * s * hkv * d, 1), *vc = rand_f(b * s * hkv * d, 1);
    OK(ops_kv_cache_append(be, V4(kc, b, s, hkv, d), V4(k, b, t, hkv, d), 0));
    OK(ops_kv_cache_append(be, V4(vc, b, s, hkv, d), V4(v, b, t, hkv, d), 0));
    float *qd = zeros_f(b * tq * h * d), *od = zeros_f(b * tq * h * d);
    double *wd = zeros_d(b * tq * h * d);
    for (int64_t bb = 0; bb < b; bb++)
        for (int64_t i = 0; i < tq; i++)
            for (int64_t e = 0; e < h * d; e++) {
                int64_t src = (bb * t + t - tq + i) * h * d + e, dst = (bb * tq + i) * h * d + e;
                qd[dst] = q[src];
                wd[dst] = want[src];
            }
    OK(ops_attention_decode(be, V4(od, b, tq, h, d), V4(qd, b, tq, h, d), V4(kc, b, s, hkv, d),
                            V4(vc, b, s, hkv, d), t));
    ASSERT_REL(od, wd, b * tq * h * d, TOL_FWD, "attention decode with KV cache");

    free(q), free(k), free(v), free(dy), free(out), free(lse), free(dq), free(dk), free(dv);
    free(c.q), free(c.k), free(c.v), free(c.dy), free(want), free(want_lse);
    free(kc), free(vc), free(qd), free(od), free(wd);
}

static void test_attention_small(void **state) {
    check_attention(*state, 2, 7, 2, 2, 5, 1 << 30); /* MHA, every element by FD */
    check_attention(*state, 2, 5, 6, 2, 3, 1 << 30); /* GQA n_head = 3 x n_kv_head */
    check_attention(*state, 1, 1, 3, 1, 4, 1 << 30); /* T = 1 */
}

static void test_attention_blocks(void **state) {
    /* T = 70 crosses the 64-row query block; sampled FD */
    check_attention(*state, 1, 70, 6, 2, 5, 40);
    check_attention(*state, 2, 67, 2, 2, 9, 30);
}

static void test_attention_errors(void **state) {
    sl_backend *be = *state;
    float *q = zeros_f(2 * 3 * 4 * 5), *k = zeros_f(2 * 3 * 3 * 5), *o = zeros_f(2 * 3 * 4 * 5);
    /* 4 query heads cannot share 3 kv heads */
    assert_int_equal(ops_attention_forward(be, V4(o, 2, 3, 4, 5), ops_none(), V4(q, 2, 3, 4, 5),
                                           V4(k, 2, 3, 3, 5), V4(k, 2, 3, 3, 5)),
                     SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "multiple of n_kv_head"));
    /* out aliasing q is rejected */
    assert_int_equal(ops_attention_forward(be, V4(q, 2, 3, 4, 5), ops_none(), V4(q, 2, 3, 4, 5),
                                           V4(k, 2, 3, 1, 5), V4(k, 2, 3, 1, 5)),
                     SL_ERR_INVALID);
    free(q), free(k), free(o);
}

/* ------------------------------------------------------------------------ */
/* embedding */

static void test_embedding(void **state) {
    sl_backend *be = *state;
    const int64_t b = 2, t = 5, c = 7, vocab = 4, p = 9, off = 3;
    uint32_t tok[10] = {0, 3, 3, 1, 0, 2, 3, 3, 3, 1}; /* repeats: scatter-add must sum */
    float *wte = rand_f(vocab * c, 1), *wpe = rand_f(p * c, 1), *out = zeros_f(b * t * c);
    OK(ops_embedding_forward(be, V3(out, b, t, c), ops_view2(be, SL_DTYPE_U32, tok, b, t),
                             V2(wte, vocab, c), V2(wpe, p, c), off));
    double *want = zeros_d(b * t * c);
    for (int64_t r = 0; r < b * t; r++)
        for (int64_t i = 0; i < c; i++)
            want[r * c + i] = (double)wte[tok[r] * c + i] + wpe[(off + r % t) * c + i];
    ASSERT_REL(out, want, b * t * c, TOL_FWD, "embedding forward");

    float *dy = rand_f(b * t * c, 1), *dwte = rand_f(vocab * c, 1), *dwpe = rand_f(p * c, 1);
    double *wte_g = to_d(dwte, vocab * c), *wpe_g = to_d(dwpe, p * c);
    for (int64_t r = 0; r < b * t; r++)
        for (int64_t i = 0; i < c; i++) {
            wte_g[tok[r] * c + i] += dy[r * c + i];
            wpe_g[(off + r % t) * c + i] += dy[r * c + i];
        }
    OK(ops_embedding_backward(be, V2(dwte, vocab, c), V2(dwpe, p, c), V3(dy, b, t, c),
                              ops_view2(be, SL_DTYPE_U32, tok, b, t), off));
    ASSERT_REL(dwte, wte_g, vocab * c, TOL_FWD, "embedding dwte (+=)");
    ASSERT_REL(dwpe, wpe_g, p * c, TOL_FWD, "embedding dwpe (+=)");

    /* no wpe (Llama) */
    OK(ops_embedding_forward(be, V3(out, b, t, c), ops_view2(be, SL_DTYPE_U32, tok, b, t),
                             V2(wte, vocab, c), ops_none(), 0));
    for (int64_t i = 0; i < c; i++)
        assert_true(out[1 * c + i] == wte[3 * c + i]);
    /* out-of-vocab id and too many positions are errors naming the problem */
    tok[7] = 4;
    assert_int_equal(ops_embedding_forward(be, V3(out, b, t, c),
                                           ops_view2(be, SL_DTYPE_U32, tok, b, t),
                                           V2(wte, vocab, c), ops_none(), 0),
                     SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "t 2"));
    tok[7] = 3;
    assert_int_equal(ops_embedding_forward(be, V3(out, b, t, c),
                                           ops_view2(be, SL_DTYPE_U32, tok, b, t),
                                           V2(wte, vocab, c), V2(wpe, p, c), 5),
                     SL_ERR_INVALID);
    free(wte), free(wpe), free(out), free(want), free(dy), free(dwte), free(dwpe), free(wte_g);
    free(wpe_g);
}

/* ------------------------------------------------------------------------ */
/* cross-entropy */

/* loss_sum and grad_scale * d(loss_sum)/dlogits in double */
static double ref_xent(const float *z, const int32_t *tgt, int64_t r, int64_t vocab, double gs,
                       double *dz, double *losses, int64_t *n_valid) {
    double total = 0;
    *n_valid = 0;
    for (int64_t i = 0; i < r; i++) {
        const float *zr = z + i * vocab;
        double mx = -INFINITY, s = 0;
        for (int64_t j = 0; j < vocab; j++)
            mx = fmax(mx, zr[j]);
        for (int64_t j = 0; j < vocab; j++)
            s += exp(zr[j] - mx);
        double lse = mx + log(s);
        losses[i] = tgt[i] < 0 ? 0 : lse - zr[tgt[i]];
        for (int64_t j = 0; j < vocab; j++)
            dz[i * vocab + j] =
                tgt[i] < 0 ? 0 : gs * (exp(zr[j] - lse) - (j == tgt[i] ? 1.0 : 0.0));
        if (tgt[i] >= 0) {
            total += losses[i];
            (*n_valid)++;
        }
    }
    return total;
}

static void test_cross_entropy_fused(void **state) {
    sl_backend *be = *state;
    const int64_t r = 9, vocab = 37;
    const float gs = 1.0f / 7.0f;
    float *z = rand_f(r * vocab, 6);
    for (int64_t j = 0; j < vocab; j++) /* a row with huge logits: max subtraction */
        z[4 * vocab + j] += 1000.0f;
    int32_t tgt[9] = {3, -1, 36, 0, 17, -100, 5, 36, 2};
    double *want_dz = zeros_d(r * vocab), *want_l = zeros_d(r);
    int64_t want_nv;
    double want_sum = ref_xent(z, tgt, r, vocab, gs, want_dz, want_l, &want_nv);
    float *dz = rand_f(r * vocab, 1), *losses = zeros_f(r);
    double sum = 0;
    int64_t nv = 0;
    sl_tensor tv = ops_view1(be, SL_DTYPE_I32, tgt, r);
    OK(ops_cross_entropy(be, V1(losses, r), V2(dz, r, vocab), V2(z, r, vocab), tv, gs, &sum, &nv));
    assert_int_equal(nv, want_nv);
    assert_true(fabs(sum - want_sum) <= 1e-5 * fabs(want_sum));
    ASSERT_REL(losses, want_l, r, TOL_FWD, "cross-entropy per-row losses");
    ASSERT_REL(dz, want_dz, r * vocab, TOL_FWD, "cross-entropy dlogits");
    for (int64_t j = 0; j < vocab; j++) /* ignored rows: exactly zero */
        assert_true(dz[1 * vocab + j] == 0.0f && dz[5 * vocab + j] == 0.0f);
    /* dlogits = grad_scale * d(loss_sum)/dlogits, checked by FD in double */
    {
        double *zd = to_d(z, r * vocab);
        int64_t idx[4] = {0 * vocab + 3, 4 * vocab + 9, 8 * vocab + 2, 2 * vocab + 36};
        for (int i = 0; i < 4; i++) {
            double save = zd[idx[i]], lp = 0, lm = 0;
            for (int sgn = 0; sgn < 2; sgn++) {
                zd[idx[i]] = save + (sgn ? -1e-4 : 1e-4);
                int64_t rr = idx[i] / vocab; /* only that row changes */
                double mx = -INFINITY, s = 0;
                for (int64_t j = 0; j < vocab; j++)
                    mx = fmax(mx, zd[rr * vocab + j]);
                for (int64_t j = 0; j < vocab; j++)
                    s += exp(zd[rr * vocab + j] - mx);
                *(sgn ? &lm : &lp) = mx + log(s) - zd[rr * vocab + tgt[rr]];
            }
            zd[idx[i]] = save;
            double fd = gs * (lp - lm) / 2e-4;
            assert_true(fabs(dz[idx[i]] - fd) <= 1e-4 * fmax(fabs(fd), 1e-3));
        }
        free(zd);
    }
    /* forward only, and in place */
    double sum2 = 0;
    int64_t nv2 = 0;
    OK(ops_cross_entropy(be, ops_none(), ops_none(), V2(z, r, vocab), tv, gs, &sum2, &nv2));
    assert_true(sum2 == sum && nv2 == nv);
    OK(ops_cross_entropy(be, ops_none(), V2(z, r, vocab), V2(z, r, vocab), tv, gs, &sum2, &nv2));
    ASSERT_REL(z, want_dz, r * vocab, TOL_FWD, "cross-entropy dlogits in place");
    tgt[3] = 37;
    assert_int_equal(ops_cross_entropy(be, ops_none(), ops_none(), V2(dz, r, vocab), tv, gs,
                                       &sum2, &nv2),
                     SL_ERR_INVALID);
    free(z), free(want_dz), free(want_l), free(dz), free(losses);
}

static void test_cross_entropy_chunked(void **state) {
    sl_backend *be = *state;
    const int64_t r = 8, vocab = 37;
    const float gs = 0.5f;
    const int64_t chunk_sizes[4] = {10, 1, 37, 36};
    float *z = rand_f(r * vocab, 8);
    for (int64_t j = 20; j < vocab; j++) /* later chunk holds the max: rescaling path */
        z[2 * vocab + j] += 50.0f;
    int32_t tgt[8] = {0, 9, 10, 36, -1, 29, 30, 19}; /* targets on chunk boundaries */
    double *want_dz = zeros_d(r * vocab), *want_l = zeros_d(r);
    int64_t want_nv;
    double want_sum = ref_xent(z, tgt, r, vocab, gs, want_dz, want_l, &want_nv);
    sl_tensor tv = ops_view1(be, SL_DTYPE_I32, tgt, r);
    for (int ci = 0; ci < 4; ci++) {
        int64_t vc = chunk_sizes[ci];
        float *stats = zeros_f(r * OPS_XENT_STATS), *lse = zeros_f(r), *losses = zeros_f(r);
        float *chunk = zeros_f(r * vc), *dz = zeros_f(r * vocab);
        for (int64_t v0 = 0; v0 < vocab; v0 += vc) {
            int64_t w = v0 + vc < vocab ? vc : vocab - v0;
            for (int64_t i = 0; i < r; i++)
                memcpy(chunk + i * w, z + i * vocab + v0, (size_t)w * sizeof(float));
            OK(ops_xent_stats_chunk(be, V2(stats, r, OPS_XENT_STATS), V2(chunk, r, w), tv, v0,
                                    v0 == 0));
        }
        double sum = 0;
        int64_t nv = 0;
        OK(ops_xent_loss(be, V1(losses, r), V1(lse, r), V2(stats, r, OPS_XENT_STATS), tv, &sum,
                         &nv));
        assert_int_equal(nv, want_nv);
        assert_true(fabs(sum - want_sum) <= 1e-5 * fabs(want_sum));
        ASSERT_REL(losses, want_l, r, TOL_FWD, "chunked cross-entropy losses");
        for (int64_t v0 = 0; v0 < vocab; v0 += vc) {
            int64_t w = v0 + vc < vocab ? vc : vocab - v0;
            for (int64_t i = 0; i < r; i++)
                memcpy(chunk + i * w, z + i * vocab + v0, (size_t)w * sizeof(float));
            OK(ops_xent_backward_chunk(be, V2(chunk, r, w), V2(chunk, r, w), V1(lse, r), tv, v0,
                                       gs));
            for (int64_t i = 0; i < r; i++)
                memcpy(dz + i * vocab + v0, chunk + i * w, (size_t)w * sizeof(float));
        }
        char what[64];
        snprintf(what, sizeof what, "chunked cross-entropy dlogits (chunk %lld)", (long long)vc);
        ASSERT_REL(dz, want_dz, r * vocab, TOL_FWD, what);
        free(stats), free(lse), free(losses), free(chunk), free(dz);
    }
    free(z), free(want_dz), free(want_l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_all_transposes),
        cmocka_unit_test(test_linear_forward_backward),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention_small),
        cmocka_unit_test(test_attention_blocks),
        cmocka_unit_test(test_attention_errors),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_cross_entropy_fused),
        cmocka_unit_test(test_cross_entropy_chunked),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
