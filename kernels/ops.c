/* kernels/ops.c: the backend-neutral entry points of kernels/ops.h.
 *
 * Each ops_* function checks what holds for every backend (presence, rank,
 * shapes, dtypes, device, aliasing) and dispatches through be->ops. The checks
 * stay on in release builds: a wrong shape in the model is reported at the op
 * that received it, naming the op, the tensor, and the expected and found
 * shapes, instead of corrupting memory.
 */
#include "kernels/ops.h"

#include <inttypes.h>
#include <stdio.h>

/* ------------------------------------------------------------------------ */
/* helpers */

typedef struct {
    char s[96];
} shape_buf;

static shape_buf shape_str(sl_tensor t) {
    shape_buf b;
    int n = snprintf(b.s, sizeof b.s, "(");
    for (int i = 0; i < t.ndim && i < SL_TENSOR_MAX_DIMS && n > 0 && (size_t)n < sizeof b.s; i++)
        n += snprintf(b.s + n, sizeof b.s - (size_t)n, "%s%" PRId64, i ? ", " : "", t.shape[i]);
    if (n > 0 && (size_t)n < sizeof b.s)
        snprintf(b.s + n, sizeof b.s - (size_t)n, ")");
    return b;
}

static bool present(sl_tensor t) { return t.data != NULL; }


static int64_t cols_of(sl_tensor t) { return t.shape[t.ndim - 1]; }

static int64_t rows_of(sl_tensor t) {
    int64_t r = 1;
    for (int i = 0; i + 1 < t.ndim; i++)
        r *= t.shape[i];
    return r;
}

/* Present, well-formed, on the backend's device, with dtype dt1 or dt2. */
static sl_status check_t2(const sl_backend *be, const char *op, const char *name, sl_tensor t,
                          sl_dtype dt1, sl_dtype dt2) {
    if (!t.data)
        return sl_errorf(SL_ERR_INVALID, "%s: tensor '%s' is missing (data is NULL)", op, name);
    if (t.ndim < 1 || t.ndim > SL_TENSOR_MAX_DIMS)
        return sl_errorf(SL_ERR_INVALID, "%s: tensor '%s' has ndim %d, expected 1..%d", op, name,
                         t.ndim, SL_TENSOR_MAX_DIMS);
    for (int i = 0; i < t.ndim; i++)
        if (t.shape[i] < 0)
            return sl_errorf(SL_ERR_INVALID, "%s: tensor '%s' has a negative dim: %s", op, name,
                             shape_str(t).s);
    if (t.dtype != dt1 && t.dtype != dt2)
        return sl_errorf(SL_ERR_INVALID, "%s: tensor '%s' has dtype %s, expected %s%s%s", op,
                         name, dtype_name(t.dtype), dtype_name(dt1), dt2 != dt1 ? " or " : "",
                         dt2 != dt1 ? dtype_name(dt2) : "");
    if (t.dev != be->device)
        return sl_errorf(SL_ERR_INVALID, "%s: tensor '%s' lives on the %s but the backend is %s",
                         op, name, t.dev == SL_DEVICE_CUDA ? "GPU" : "host",
                         be->ops ? be->ops->name : "?");
    return SL_OK;
}

static sl_status check_t(const sl_backend *be, const char *op, const char *name, sl_tensor t,
                         sl_dtype dt) {
    return check_t2(be, op, name, t, dt, dt);
}

/* A tensor with the name the messages give it; ARG(x) names it after the variable. */
typedef struct {
    const char *name;
    sl_tensor t;
} named_tensor;

#define ARG(x) ((named_tensor){#x, (x)})

/* check_t on each of a list, in order: the first failure is the one reported. */
static sl_status check_each(const sl_backend *be, const char *op, sl_dtype dt,
                            const named_tensor *ts, size_t n) {
    for (size_t i = 0; i < n; i++)
        SL_TRY(check_t(be, op, ts[i].name, ts[i].t, dt));
    return SL_OK;
}

#define CHECK_EACH(dt, ...)                                                                    \
    SL_TRY(check_each(be, op, (dt), (const named_tensor[]){__VA_ARGS__},                       \
                      sizeof((const named_tensor[]){__VA_ARGS__}) / sizeof(named_tensor)))

/* Optional tensor: absent is fine, present must pass check_t2. */
static sl_status check_opt2(const sl_backend *be, const char *op, const char *name, sl_tensor t,
                            sl_dtype dt1, sl_dtype dt2) {
    return present(t) ? check_t2(be, op, name, t, dt1, dt2) : SL_OK;
}

static sl_status check_numel(const char *op, const char *name, sl_tensor t, int64_t n,
                             const char *what) {
    if (tensor_numel(&t) != n)
        return sl_errorf(SL_ERR_INVALID, "%s: tensor '%s' %s has %" PRId64
                         " elements, expected %" PRId64 " (%s)",
                         op, name, shape_str(t).s, tensor_numel(&t), n, what);
    return SL_OK;
}

static sl_status check_ndim(const char *op, const char *name, sl_tensor t, int ndim,
                            const char *layout) {
    if (t.ndim != ndim)
        return sl_errorf(SL_ERR_INVALID, "%s: tensor '%s' is %s, expected a %d-d %s view", op,
                         name, shape_str(t).s, ndim, layout);
    return SL_OK;
}

static size_t nbytes(sl_tensor t) { return tensor_nbytes(&t); }

static bool overlap(sl_tensor a, sl_tensor b) {
    if (!a.data || !b.data)
        return false;
    uintptr_t a0 = (uintptr_t)a.data, a1 = a0 + nbytes(a);
    uintptr_t b0 = (uintptr_t)b.data, b1 = b0 + nbytes(b);
    return a0 < b1 && b0 < a1 && a1 > a0 && b1 > b0;
}

/* Same buffer exactly (allowed in-place) or disjoint. */
static sl_status check_inplace_or_disjoint(const char *op, const char *na, sl_tensor a,
                                           const char *nb, sl_tensor b) {
    if (overlap(a, b) && (a.data != b.data || nbytes(a) != nbytes(b)))
        return sl_errorf(SL_ERR_INVALID, "%s: '%s' and '%s' partly overlap; they must be the "
                         "same buffer or disjoint", op, na, nb);
    return SL_OK;
}

static sl_status check_disjoint(const char *op, const char *na, sl_tensor a, const char *nb,
                                sl_tensor b) {
    if (overlap(a, b))
        return sl_errorf(SL_ERR_INVALID, "%s: '%s' and '%s' overlap; pass separate buffers", op,
                         na, nb);
    return SL_OK;
}

/* a must not overlap any of others (in order). */
static sl_status check_disjoint_from(const char *op, named_tensor a, const named_tensor *others,
                                     size_t n) {
    for (size_t i = 0; i < n; i++)
        SL_TRY(check_disjoint(op, a.name, a.t, others[i].name, others[i].t));
    return SL_OK;
}

#define CHECK_DISJOINT_FROM(a, ...)                                                            \
    SL_TRY(check_disjoint_from(op, (a), (const named_tensor[]){__VA_ARGS__},                   \
                               sizeof((const named_tensor[]){__VA_ARGS__}) /                   \
                                   sizeof(named_tensor)))

static sl_status check_backend(const sl_backend *be, const char *op, const void *fn) {
    if (!be || !be->ops)
        return sl_errorf(SL_ERR_INVALID, "%s: backend is NULL or not initialized", op);
    if (!fn)
        return sl_errorf(SL_ERR_UNSUPPORTED, "%s: the %s backend does not implement this op", op,
                         be->ops->name);
    return SL_OK;
}

#define OPS_ENTRY(fn) SL_TRY(check_backend(be, __func__, be && be->ops ? (const void *)be->ops->fn : NULL))

/* ------------------------------------------------------------------------ */
/* backends */

#ifndef SHARDLM_HAVE_CUDA
sl_status backend_create_cuda(int device_ordinal, size_t workspace_bytes, mem_accountant *acct,
                              sl_backend **out) {
    if (out)
        *out = NULL;
    return sl_errorf(SL_ERR_UNSUPPORTED,
                     "CUDA backend requested (device %d) but this shardlm was built without "
                     "CUDA; rebuild with nvcc available (-DSHARDLM_CUDA=ON) or use the CPU backend",
                     device_ordinal);
}
#endif

void backend_destroy(sl_backend *be) {
    if (be && be->ops && be->ops->destroy)
        be->ops->destroy(be);
}

sl_status backend_alloc(sl_backend *be, mem_category cat, size_t bytes, void **out) {
    SL_CHECK_ARG(out != NULL, "backend_alloc: out is NULL");
    *out = NULL;
    OPS_ENTRY(alloc);
    return be->ops->alloc(be, cat, bytes, out);
}

void backend_free(sl_backend *be, mem_category cat, void *ptr, size_t bytes) {
    if (be && be->ops && be->ops->free && ptr)
        be->ops->free(be, cat, ptr, bytes);
}

sl_status backend_memcpy(sl_backend *be, void *dst, const void *src, size_t bytes,
                         backend_copy_kind kind) {
    OPS_ENTRY(memcpy);
    if (bytes == 0)
        return SL_OK;
    SL_CHECK_ARG(dst && src, "backend_memcpy: NULL pointer (dst %p, src %p) for %zu bytes", dst,
                 src, bytes);
    SL_CHECK_ARG(kind >= BACKEND_COPY_H2D && kind <= BACKEND_COPY_D2D,
                 "backend_memcpy: unknown copy kind %d", (int)kind);
    return be->ops->memcpy(be, dst, src, bytes, kind);
}

sl_status backend_memset_zero(sl_backend *be, void *dst, size_t bytes) {
    OPS_ENTRY(memset_zero);
    if (bytes == 0)
        return SL_OK;
    SL_CHECK_ARG(dst != NULL, "backend_memset_zero: dst is NULL for %zu bytes", bytes);
    return be->ops->memset_zero(be, dst, bytes);
}

sl_status backend_synchronize(sl_backend *be) {
    OPS_ENTRY(synchronize);
    return be->ops->synchronize(be);
}

/* ------------------------------------------------------------------------ */
/* GEMM and linear */

sl_status ops_matmul(sl_backend *be, sl_tensor c, sl_tensor a, sl_tensor b, sl_tensor bias,
                     bool trans_a, bool trans_b, float alpha, float beta) {
    OPS_ENTRY(matmul);
    const char *op = "ops_matmul";
    sl_dtype act = be->act_dtype;
    CHECK_EACH(act, ARG(a), ARG(b));
    SL_TRY(check_t2(be, op, "c", c, act, SL_DTYPE_F32));
    SL_TRY(check_opt2(be, op, "bias", bias, act, SL_DTYPE_F32));
    int64_t m = trans_a ? cols_of(a) : rows_of(a), k = trans_a ? rows_of(a) : cols_of(a);
    int64_t kb = trans_b ? cols_of(b) : rows_of(b), n = trans_b ? rows_of(b) : cols_of(b);
    if (k != kb)
        return sl_errorf(SL_ERR_INVALID, "%s: inner dims differ: op(a) is (%" PRId64 ", %" PRId64
                         ") from a %s%s, op(b) is (%" PRId64 ", %" PRId64 ") from b %s%s",
                         op, m, k, shape_str(a).s, trans_a ? "^T" : "", kb, n, shape_str(b).s,
                         trans_b ? "^T" : "");
    if (rows_of(c) != m || cols_of(c) != n)
        return sl_errorf(SL_ERR_INVALID, "%s: c is %s but op(a) op(b) is (%" PRId64 ", %" PRId64
                         ")", op, shape_str(c).s, m, n);
    if (present(bias))
        SL_TRY(check_numel(op, "bias", bias, n, "one per output column"));
    CHECK_DISJOINT_FROM(ARG(c), ARG(a), ARG(b));
    return be->ops->matmul(be, c, a, b, bias, trans_a, trans_b, alpha, beta);
}

sl_status ops_linear_forward(sl_backend *be, sl_tensor out, sl_tensor inp, sl_tensor weight,
                             sl_tensor bias) {
    OPS_ENTRY(linear_forward);
    const char *op = "ops_linear_forward";
    sl_dtype act = be->act_dtype;
    CHECK_EACH(act, ARG(out), ARG(inp), ARG(weight));
    SL_TRY(check_opt2(be, op, "bias", bias, act, act));
    SL_TRY(check_ndim(op, "weight", weight, 2, "(out_features, in_features)"));
    int64_t n = weight.shape[0], k = weight.shape[1];
    if (cols_of(inp) != k || cols_of(out) != n || rows_of(out) != rows_of(inp))
        return sl_errorf(SL_ERR_INVALID, "%s: inp %s, weight %s, out %s do not fit "
                         "out (R, N) = inp (R, K) weight^T with weight (N, K)",
                         op, shape_str(inp).s, shape_str(weight).s, shape_str(out).s);
    if (present(bias))
        SL_TRY(check_numel(op, "bias", bias, n, "out_features"));
    CHECK_DISJOINT_FROM(ARG(out), ARG(inp), ARG(weight));
    return be->ops->linear_forward(be, out, inp, weight, bias);
}

sl_status ops_linear_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight, sl_tensor dbias,
                              sl_tensor dout, sl_tensor inp, sl_tensor weight,
                              bool dinp_accumulate) {
    OPS_ENTRY(linear_backward);
    const char *op = "ops_linear_backward";
    sl_dtype act = be->act_dtype;
    CHECK_EACH(act, ARG(dout), ARG(weight));
    SL_TRY(check_ndim(op, "weight", weight, 2, "(out_features, in_features)"));
    int64_t n = weight.shape[0], k = weight.shape[1], r = rows_of(dout);
    if (cols_of(dout) != n)
        return sl_errorf(SL_ERR_INVALID, "%s: dout %s has %" PRId64 " columns, weight %s has %"
                         PRId64 " out_features", op, shape_str(dout).s, cols_of(dout),
                         shape_str(weight).s, n);
    if (present(dinp)) {
        SL_TRY(check_t(be, op, "dinp", dinp, act));
        if (rows_of(dinp) != r || cols_of(dinp) != k)
            return sl_errorf(SL_ERR_INVALID, "%s: dinp is %s, expected (%" PRId64 ", %" PRId64
                             ") from dout %s and weight %s", op, shape_str(dinp).s, r, k,
                             shape_str(dout).s, shape_str(weight).s);
        CHECK_DISJOINT_FROM(ARG(dinp), ARG(dout), ARG(weight));
    }
    if (present(dweight)) {
        SL_TRY(check_t(be, op, "dweight", dweight, SL_DTYPE_F32));
        SL_TRY(check_t(be, op, "inp", inp, act));
        if (rows_of(inp) != r || cols_of(inp) != k)
            return sl_errorf(SL_ERR_INVALID, "%s: inp is %s, expected (%" PRId64 ", %" PRId64
                             ")", op, shape_str(inp).s, r, k);
        SL_TRY(check_numel(op, "dweight", dweight, n * k, "out_features x in_features"));
        CHECK_DISJOINT_FROM(ARG(dweight), ARG(dout), ARG(inp));
    }
    if (present(dbias)) {
        SL_TRY(check_t(be, op, "dbias", dbias, SL_DTYPE_F32));
        SL_TRY(check_numel(op, "dbias", dbias, n, "out_features"));
    }
    return be->ops->linear_backward(be, dinp, dweight, dbias, dout, inp, weight,
                                    dinp_accumulate);
}

/* ------------------------------------------------------------------------ */
/* normalization */

static sl_status check_rows_stat(const sl_backend *be, const char *op, const char *name,
                                 sl_tensor t, int64_t r) {
    SL_TRY(check_t(be, op, name, t, SL_DTYPE_F32));
    return check_numel(op, name, t, r, "one per row");
}

static sl_status check_same_shape(const char *op, const char *na, sl_tensor a, const char *nb,
                                  sl_tensor b) {
    if (rows_of(a) != rows_of(b) || cols_of(a) != cols_of(b))
        return sl_errorf(SL_ERR_INVALID, "%s: '%s' is %s but '%s' is %s; expected the same "
                         "(rows, cols)", op, na, shape_str(a).s, nb, shape_str(b).s);
    return SL_OK;
}

/* The checks layernorm and rmsnorm share; mean and bias are NULL for rmsnorm. */
static sl_status check_norm_forward(const sl_backend *be, const char *op, sl_tensor out,
                                    const sl_tensor *mean, sl_tensor rstd, sl_tensor inp,
                                    sl_tensor weight, const sl_tensor *bias, float eps) {
    CHECK_EACH(be->act_dtype, ARG(out), ARG(inp), ARG(weight));
    if (bias)
        SL_TRY(check_t(be, op, "bias", *bias, be->act_dtype));
    SL_TRY(check_same_shape(op, "out", out, "inp", inp));
    int64_t r = rows_of(inp), c = cols_of(inp);
    SL_CHECK_ARG(c > 0, "%s: inp %s has an empty last dim", op, shape_str(inp).s);
    if (mean)
        SL_TRY(check_rows_stat(be, op, "mean", *mean, r));
    SL_TRY(check_rows_stat(be, op, "rstd", rstd, r));
    SL_TRY(check_numel(op, "weight", weight, c, "one per channel"));
    if (bias)
        SL_TRY(check_numel(op, "bias", *bias, c, "one per channel"));
    SL_TRY(check_inplace_or_disjoint(op, "out", out, "inp", inp));
    SL_CHECK_ARG(eps >= 0.0f, "%s: eps is %g, expected >= 0", op, (double)eps);
    return SL_OK;
}

/* The backward checks both norms share; mean and dbias are NULL for rmsnorm. */
static sl_status check_norm_backward(const sl_backend *be, const char *op, sl_tensor dinp,
                                     sl_tensor dweight, const sl_tensor *dbias, sl_tensor dout,
                                     sl_tensor inp, sl_tensor weight, const sl_tensor *mean,
                                     sl_tensor rstd) {
    CHECK_EACH(be->act_dtype, ARG(dinp), ARG(dout), ARG(inp), ARG(weight));
    SL_TRY(check_same_shape(op, "dinp", dinp, "inp", inp));
    SL_TRY(check_same_shape(op, "dout", dout, "inp", inp));
    int64_t r = rows_of(inp), c = cols_of(inp);
    if (mean)
        SL_TRY(check_rows_stat(be, op, "mean", *mean, r));
    SL_TRY(check_rows_stat(be, op, "rstd", rstd, r));
    SL_TRY(check_numel(op, "weight", weight, c, "one per channel"));
    SL_TRY(check_opt2(be, op, "dweight", dweight, SL_DTYPE_F32, SL_DTYPE_F32));
    if (dbias)
        SL_TRY(check_opt2(be, op, "dbias", *dbias, SL_DTYPE_F32, SL_DTYPE_F32));
    if (present(dweight))
        SL_TRY(check_numel(op, "dweight", dweight, c, "one per channel"));
    if (dbias && present(*dbias))
        SL_TRY(check_numel(op, "dbias", *dbias, c, "one per channel"));
    CHECK_DISJOINT_FROM(ARG(dinp), ARG(dout), ARG(inp));
    return SL_OK;
}

sl_status ops_layernorm_forward(sl_backend *be, sl_tensor out, sl_tensor mean, sl_tensor rstd,
                                sl_tensor inp, sl_tensor weight, sl_tensor bias, float eps) {
    OPS_ENTRY(layernorm_forward);
    SL_TRY(check_norm_forward(be, "ops_layernorm_forward", out, &mean, rstd, inp, weight, &bias,
                              eps));
    return be->ops->layernorm_forward(be, out, mean, rstd, inp, weight, bias, eps);
}

sl_status ops_layernorm_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                                 sl_tensor dbias, sl_tensor dout, sl_tensor inp,
                                 sl_tensor weight, sl_tensor mean, sl_tensor rstd,
                                 bool dinp_accumulate) {
    OPS_ENTRY(layernorm_backward);
    SL_TRY(check_norm_backward(be, "ops_layernorm_backward", dinp, dweight, &dbias, dout, inp,
                               weight, &mean, rstd));
    return be->ops->layernorm_backward(be, dinp, dweight, dbias, dout, inp, weight, mean, rstd,
                                       dinp_accumulate);
}

sl_status ops_rmsnorm_forward(sl_backend *be, sl_tensor out, sl_tensor rstd, sl_tensor inp,
                              sl_tensor weight, float eps) {
    OPS_ENTRY(rmsnorm_forward);
    SL_TRY(check_norm_forward(be, "ops_rmsnorm_forward", out, NULL, rstd, inp, weight, NULL,
                              eps));
    return be->ops->rmsnorm_forward(be, out, rstd, inp, weight, eps);
}

sl_status ops_rmsnorm_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                               sl_tensor dout, sl_tensor inp, sl_tensor weight, sl_tensor rstd,
                               bool dinp_accumulate) {
    OPS_ENTRY(rmsnorm_backward);
    SL_TRY(check_norm_backward(be, "ops_rmsnorm_backward", dinp, dweight, NULL, dout, inp,
                               weight, NULL, rstd));
    return be->ops->rmsnorm_backward(be, dinp, dweight, dout, inp, weight, rstd,
                                     dinp_accumulate);
}

/* ------------------------------------------------------------------------ */
/* activations */

static sl_status check_same_numel(const char *op, const char *na, sl_tensor a, const char *nb,
                                  sl_tensor b) {
    if (tensor_numel(&a) != tensor_numel(&b))
        return sl_errorf(SL_ERR_INVALID, "%s: '%s' %s and '%s' %s differ in element count", op,
                         na, shape_str(a).s, nb, shape_str(b).s);
    return SL_OK;
}

/* Each of ts has as many elements as ref (in order). */
static sl_status check_same_numel_as(const char *op, const named_tensor *ts, size_t n,
                                     named_tensor ref) {
    for (size_t i = 0; i < n; i++)
        SL_TRY(check_same_numel(op, ts[i].name, ts[i].t, ref.name, ref.t));
    return SL_OK;
}

/* out = f(inp) elementwise: same element count, in place or disjoint. */
static sl_status check_unary(const sl_backend *be, const char *op, sl_tensor out, sl_tensor inp) {
    CHECK_EACH(be->act_dtype, ARG(out), ARG(inp));
    SL_TRY(check_same_numel(op, "out", out, "inp", inp));
    return check_inplace_or_disjoint(op, "out", out, "inp", inp);
}

/* out = f(a, b) elementwise: all three the same element count; out may be a or b. */
static sl_status check_binary(const sl_backend *be, const char *op, sl_tensor out,
                              named_tensor a, named_tensor b) {
    CHECK_EACH(be->act_dtype, ARG(out), a, b);
    SL_TRY(check_same_numel_as(op, (const named_tensor[]){ARG(out), b}, 2, a));
    SL_TRY(check_inplace_or_disjoint(op, "out", out, a.name, a.t));
    return check_inplace_or_disjoint(op, "out", out, b.name, b.t);
}

sl_status ops_gelu_forward(sl_backend *be, sl_tensor out, sl_tensor inp) {
    OPS_ENTRY(gelu_forward);
    SL_TRY(check_unary(be, "ops_gelu_forward", out, inp));
    return be->ops->gelu_forward(be, out, inp);
}

sl_status ops_gelu_backward(sl_backend *be, sl_tensor dinp, sl_tensor inp, sl_tensor dout) {
    OPS_ENTRY(gelu_backward);
    const char *op = "ops_gelu_backward";
    CHECK_EACH(be->act_dtype, ARG(dinp), ARG(inp), ARG(dout));
    SL_TRY(check_same_numel_as(op, (const named_tensor[]){ARG(dinp), ARG(dout)}, 2, ARG(inp)));
    SL_TRY(check_inplace_or_disjoint(op, "dinp", dinp, "dout", dout));
    SL_TRY(check_disjoint(op, "dinp", dinp, "inp", inp));
    return be->ops->gelu_backward(be, dinp, inp, dout);
}

sl_status ops_swiglu_forward(sl_backend *be, sl_tensor out, sl_tensor gate, sl_tensor up) {
    OPS_ENTRY(swiglu_forward);
    SL_TRY(check_binary(be, "ops_swiglu_forward", out, ARG(gate), ARG(up)));
    return be->ops->swiglu_forward(be, out, gate, up);
}

sl_status ops_swiglu_backward(sl_backend *be, sl_tensor dgate, sl_tensor dup, sl_tensor dout,
                              sl_tensor gate, sl_tensor up) {
    OPS_ENTRY(swiglu_backward);
    const char *op = "ops_swiglu_backward";
    CHECK_EACH(be->act_dtype, ARG(dgate), ARG(dup), ARG(dout), ARG(gate), ARG(up));
    const named_tensor like_gate[] = {ARG(dgate), ARG(dup), ARG(dout), ARG(up)};
    SL_TRY(check_same_numel_as(op, like_gate, 4, ARG(gate)));
    SL_TRY(check_inplace_or_disjoint(op, "dgate", dgate, "gate", gate));
    SL_TRY(check_inplace_or_disjoint(op, "dup", dup, "up", up));
    SL_TRY(check_disjoint(op, "dgate", dgate, "up", up));
    SL_TRY(check_disjoint(op, "dup", dup, "gate", gate));
    CHECK_DISJOINT_FROM(ARG(dgate), ARG(dup), ARG(dout));
    SL_TRY(check_disjoint(op, "dup", dup, "dout", dout));
    return be->ops->swiglu_backward(be, dgate, dup, dout, gate, up);
}

/* ------------------------------------------------------------------------ */
/* rope */

/* Two 4-d tensors with the same dims; q quotes the names in the message
 * ("'" or ""). */
static sl_status check_dims4_equal(const char *op, const char *na, sl_tensor a, const char *nb,
                                   sl_tensor b, const char *q) {
    for (int d = 0; d < 4; d++)
        if (a.shape[d] != b.shape[d])
            return sl_errorf(SL_ERR_INVALID, "%s: %s%s%s %s and %s%s%s %s differ", op, q, na, q,
                             shape_str(a).s, q, nb, q, shape_str(b).s);
    return SL_OK;
}

static sl_status check_rope(const sl_backend *be, const char *op, const char *no, sl_tensor o,
                            const char *ni, sl_tensor i, int64_t pos_offset, sl_tensor inv_freq) {
    CHECK_EACH(be->act_dtype, {no, o}, {ni, i});
    SL_TRY(check_ndim(op, ni, i, 4, "(B, T, H, D)"));
    SL_TRY(check_ndim(op, no, o, 4, "(B, T, H, D)"));
    SL_TRY(check_dims4_equal(op, no, o, ni, i, "'"));
    SL_CHECK_ARG(i.shape[3] % 2 == 0 && i.shape[3] > 0,
                 "%s: head dim D = %" PRId64 " must be even and positive", op, i.shape[3]);
    SL_CHECK_ARG(pos_offset >= 0, "%s: pos_offset %" PRId64 " is negative", op, pos_offset);
    SL_TRY(check_t(be, op, "inv_freq", inv_freq, SL_DTYPE_F32));
    SL_TRY(check_numel(op, "inv_freq", inv_freq, i.shape[3] / 2, "D/2 inverse frequencies"));
    return check_inplace_or_disjoint(op, no, o, ni, i);
}

sl_status ops_rope_forward(sl_backend *be, sl_tensor out, sl_tensor inp, int64_t pos_offset,
                           sl_tensor inv_freq) {
    OPS_ENTRY(rope_forward);
    SL_TRY(check_rope(be, "ops_rope_forward", "out", out, "inp", inp, pos_offset, inv_freq));
    return be->ops->rope_forward(be, out, inp, pos_offset, inv_freq);
}

sl_status ops_rope_backward(sl_backend *be, sl_tensor dinp, sl_tensor dout, int64_t pos_offset,
                            sl_tensor inv_freq) {
    OPS_ENTRY(rope_backward);
    SL_TRY(check_rope(be, "ops_rope_backward", "dinp", dinp, "dout", dout, pos_offset, inv_freq));
    return be->ops->rope_backward(be, dinp, dout, pos_offset, inv_freq);
}

/* ------------------------------------------------------------------------ */
/* attention */

/* q (B, Tq, H, D); k, v (B, Tk, Hkv, D) with H % Hkv == 0. */
static sl_status check_qkv(const sl_backend *be, const char *op, sl_tensor q, sl_tensor k,
                           sl_tensor v, const char *kname, const char *vname) {
    CHECK_EACH(be->act_dtype, ARG(q), {kname, k}, {vname, v});
    SL_TRY(check_ndim(op, "q", q, 4, "(B, T, n_head, head_dim)"));
    SL_TRY(check_ndim(op, kname, k, 4, "(B, T, n_kv_head, head_dim)"));
    SL_TRY(check_ndim(op, vname, v, 4, "(B, T, n_kv_head, head_dim)"));
    SL_TRY(check_dims4_equal(op, kname, k, vname, v, ""));
    if (k.shape[0] != q.shape[0] || k.shape[3] != q.shape[3])
        return sl_errorf(SL_ERR_INVALID, "%s: q %s and %s %s differ in batch or head dim", op,
                         shape_str(q).s, kname, shape_str(k).s);
    int64_t h = q.shape[2], hkv = k.shape[2];
    SL_CHECK_ARG(hkv > 0 && h % hkv == 0,
                 "%s: n_head %" PRId64 " is not a multiple of n_kv_head %" PRId64, op, h, hkv);
    SL_CHECK_ARG(q.shape[3] > 0, "%s: head dim is 0", op);
    return SL_OK;
}

static sl_status check_same4(const char *op, const char *na, sl_tensor a, const char *nb,
                             sl_tensor b) {
    for (int d = 0; d < 4; d++)
        if (a.ndim != 4 || a.shape[d] != b.shape[d])
            return sl_errorf(SL_ERR_INVALID, "%s: '%s' is %s, expected %s like '%s'", op, na,
                             shape_str(a).s, shape_str(b).s, nb);
    return SL_OK;
}

/* Training attention: check_qkv with k as long as q. */
static sl_status check_self_qkv(const sl_backend *be, const char *op, sl_tensor q, sl_tensor k,
                                sl_tensor v) {
    SL_TRY(check_qkv(be, op, q, k, v, "k", "v"));
    SL_CHECK_ARG(k.shape[1] == q.shape[1], "%s: q %s and k %s differ in sequence length", op,
                 shape_str(q).s, shape_str(k).s);
    return SL_OK;
}

sl_status ops_attention_forward(sl_backend *be, sl_tensor out, sl_tensor lse, sl_tensor q,
                                sl_tensor k, sl_tensor v) {
    OPS_ENTRY(attention_forward);
    const char *op = "ops_attention_forward";
    SL_TRY(check_self_qkv(be, op, q, k, v));
    SL_TRY(check_t(be, op, "out", out, be->act_dtype));
    SL_TRY(check_same4(op, "out", out, "q", q));
    if (present(lse)) {
        SL_TRY(check_t(be, op, "lse", lse, SL_DTYPE_F32));
        SL_TRY(check_numel(op, "lse", lse, q.shape[0] * q.shape[2] * q.shape[1],
                           "(B, n_head, T)"));
    }
    CHECK_DISJOINT_FROM(ARG(out), ARG(q), ARG(k), ARG(v));
    return be->ops->attention_forward(be, out, lse, q, k, v);
}

sl_status ops_attention_backward(sl_backend *be, sl_tensor dq, sl_tensor dk, sl_tensor dv,
                                 sl_tensor dout, sl_tensor q, sl_tensor k, sl_tensor v,
                                 sl_tensor out, sl_tensor lse) {
    OPS_ENTRY(attention_backward);
    const char *op = "ops_attention_backward";
    SL_TRY(check_self_qkv(be, op, q, k, v));
    CHECK_EACH(be->act_dtype, ARG(dq), ARG(dk), ARG(dv), ARG(dout), ARG(out));
    SL_TRY(check_t(be, op, "lse", lse, SL_DTYPE_F32));
    SL_TRY(check_same4(op, "dq", dq, "q", q));
    SL_TRY(check_same4(op, "dk", dk, "k", k));
    SL_TRY(check_same4(op, "dv", dv, "v", v));
    SL_TRY(check_same4(op, "dout", dout, "q", q));
    SL_TRY(check_same4(op, "out", out, "q", q));
    SL_TRY(check_numel(op, "lse", lse, q.shape[0] * q.shape[2] * q.shape[1], "(B, n_head, T)"));
    const named_tensor outs[3] = {ARG(dq), ARG(dk), ARG(dv)};
    const named_tensor ins[6] = {ARG(dout), ARG(q), ARG(k), ARG(v), ARG(out), ARG(lse)};
    for (int i = 0; i < 3; i++) {
        SL_TRY(check_disjoint_from(op, outs[i], ins, 6));
        SL_TRY(check_disjoint_from(op, outs[i], outs + i + 1, (size_t)(2 - i)));
    }
    return be->ops->attention_backward(be, dq, dk, dv, dout, q, k, v, out, lse);
}

sl_status ops_attention_decode(sl_backend *be, sl_tensor out, sl_tensor q, sl_tensor k_cache,
                               sl_tensor v_cache, int64_t kv_len) {
    OPS_ENTRY(attention_decode);
    const char *op = "ops_attention_decode";
    SL_TRY(check_qkv(be, op, q, k_cache, v_cache, "k_cache", "v_cache"));
    SL_TRY(check_t(be, op, "out", out, be->act_dtype));
    SL_TRY(check_same4(op, "out", out, "q", q));
    int64_t tq = q.shape[1], s = k_cache.shape[1];
    SL_CHECK_ARG(tq >= 1 && tq <= kv_len && kv_len <= s,
                 "%s: need 1 <= Tq <= kv_len <= cache length, got Tq %" PRId64 ", kv_len %" PRId64
                 ", cache length %" PRId64, op, tq, kv_len, s);
    CHECK_DISJOINT_FROM(ARG(out), ARG(q), ARG(k_cache), ARG(v_cache));
    return be->ops->attention_decode(be, out, q, k_cache, v_cache, kv_len);
}

sl_status ops_kv_cache_append(sl_backend *be, sl_tensor cache, sl_tensor src, int64_t pos) {
    OPS_ENTRY(kv_cache_append);
    const char *op = "ops_kv_cache_append";
    CHECK_EACH(be->act_dtype, ARG(cache), ARG(src));
    SL_TRY(check_ndim(op, "cache", cache, 4, "(B, S, n_kv_head, head_dim)"));
    SL_TRY(check_ndim(op, "src", src, 4, "(B, Tn, n_kv_head, head_dim)"));
    if (cache.shape[0] != src.shape[0] || cache.shape[2] != src.shape[2] ||
        cache.shape[3] != src.shape[3])
        return sl_errorf(SL_ERR_INVALID, "%s: src %s does not fit cache %s (B, heads, head_dim "
                         "must match)", op, shape_str(src).s, shape_str(cache).s);
    SL_CHECK_ARG(pos >= 0 && pos + src.shape[1] <= cache.shape[1],
                 "%s: rows %" PRId64 "..%" PRId64 " do not fit a cache of %" PRId64 " positions",
                 op, pos, pos + src.shape[1] - 1, cache.shape[1]);
    SL_TRY(check_disjoint(op, "cache", cache, "src", src));
    return be->ops->kv_cache_append(be, cache, src, pos);
}

/* ------------------------------------------------------------------------ */
/* embeddings */

/* An embedding table (or its gradient) of width c: (V, C) or (P, C). */
static sl_status check_table(const sl_backend *be, const char *op, const char *name, sl_tensor t,
                             sl_dtype dt, const char *layout, int64_t c) {
    SL_TRY(check_t(be, op, name, t, dt));
    SL_TRY(check_ndim(op, name, t, 2, layout));
    SL_CHECK_ARG(t.shape[1] == c, "%s: %s %s has C != %" PRId64, op, name, shape_str(t).s, c);
    return SL_OK;
}

/* Positions pos_offset .. pos_offset + t - 1 are rows of the position table. */
static sl_status check_positions(const char *op, const char *name, sl_tensor table,
                                 int64_t pos_offset, int64_t t, const char *what) {
    SL_CHECK_ARG(pos_offset + t <= table.shape[0],
                 "%s: positions up to %" PRId64 " exceed the %" PRId64 " rows of %s%s", op,
                 pos_offset + t - 1, table.shape[0], name, what);
    return SL_OK;
}

sl_status ops_embedding_forward(sl_backend *be, sl_tensor out, sl_tensor tokens, sl_tensor wte,
                                sl_tensor wpe, int64_t pos_offset) {
    OPS_ENTRY(embedding_forward);
    const char *op = "ops_embedding_forward";
    SL_TRY(check_t(be, op, "out", out, be->act_dtype));
    SL_TRY(check_t(be, op, "tokens", tokens, SL_DTYPE_U32));
    SL_TRY(check_t(be, op, "wte", wte, be->act_dtype));
    SL_TRY(check_ndim(op, "out", out, 3, "(B, T, C)"));
    SL_TRY(check_ndim(op, "tokens", tokens, 2, "(B, T)"));
    SL_TRY(check_ndim(op, "wte", wte, 2, "(V, C)"));
    if (tokens.shape[0] != out.shape[0] || tokens.shape[1] != out.shape[1] ||
        wte.shape[1] != out.shape[2])
        return sl_errorf(SL_ERR_INVALID, "%s: out %s, tokens %s, wte %s do not fit out (B, T, C),"
                         " tokens (B, T), wte (V, C)", op, shape_str(out).s,
                         shape_str(tokens).s, shape_str(wte).s);
    SL_CHECK_ARG(pos_offset >= 0, "%s: pos_offset %" PRId64 " is negative", op, pos_offset);
    if (present(wpe)) {
        SL_TRY(check_table(be, op, "wpe", wpe, be->act_dtype, "(P, C)", out.shape[2]));
        SL_TRY(check_positions(op, "wpe", wpe, pos_offset, out.shape[1], " (max_seq_len)"));
    }
    return be->ops->embedding_forward(be, out, tokens, wte, wpe, pos_offset);
}

sl_status ops_embedding_backward(sl_backend *be, sl_tensor dwte, sl_tensor dwpe, sl_tensor dout,
                                 sl_tensor tokens, int64_t pos_offset) {
    OPS_ENTRY(embedding_backward);
    const char *op = "ops_embedding_backward";
    SL_TRY(check_t(be, op, "dout", dout, be->act_dtype));
    SL_TRY(check_t(be, op, "tokens", tokens, SL_DTYPE_U32));
    SL_TRY(check_ndim(op, "dout", dout, 3, "(B, T, C)"));
    SL_TRY(check_ndim(op, "tokens", tokens, 2, "(B, T)"));
    SL_CHECK_ARG(tokens.shape[0] == dout.shape[0] && tokens.shape[1] == dout.shape[1],
                 "%s: tokens %s and dout %s differ in (B, T)", op, shape_str(tokens).s,
                 shape_str(dout).s);
    SL_CHECK_ARG(pos_offset >= 0, "%s: pos_offset %" PRId64 " is negative", op, pos_offset);
    if (present(dwte))
        SL_TRY(check_table(be, op, "dwte", dwte, SL_DTYPE_F32, "(V, C)", dout.shape[2]));
    if (present(dwpe)) {
        SL_TRY(check_table(be, op, "dwpe", dwpe, SL_DTYPE_F32, "(P, C)", dout.shape[2]));
        SL_TRY(check_positions(op, "dwpe", dwpe, pos_offset, dout.shape[1], ""));
    }
    SL_TRY(check_disjoint(op, "dwte", dwte, "dwpe", dwpe));
    return be->ops->embedding_backward(be, dwte, dwpe, dout, tokens, pos_offset);
}

/* ------------------------------------------------------------------------ */
/* cross-entropy */

static sl_status check_targets(const sl_backend *be, const char *op, sl_tensor targets,
                               int64_t r) {
    SL_TRY(check_t(be, op, "targets", targets, SL_DTYPE_I32));
    return check_numel(op, "targets", targets, r, "one per logits row");
}

sl_status ops_cross_entropy(sl_backend *be, sl_tensor losses, sl_tensor dlogits, sl_tensor logits,
                            sl_tensor targets, float grad_scale, double *loss_sum,
                            int64_t *n_valid) {
    OPS_ENTRY(cross_entropy);
    const char *op = "ops_cross_entropy";
    SL_CHECK_ARG(loss_sum && n_valid, "%s: loss_sum and n_valid must not be NULL", op);
    SL_TRY(check_t(be, op, "logits", logits, be->act_dtype));
    int64_t r = rows_of(logits);
    SL_CHECK_ARG(cols_of(logits) > 0, "%s: logits %s have no vocab columns", op,
                 shape_str(logits).s);
    SL_TRY(check_targets(be, op, targets, r));
    if (present(losses)) {
        SL_TRY(check_rows_stat(be, op, "losses", losses, r));
        SL_TRY(check_disjoint(op, "losses", losses, "logits", logits));
    }
    if (present(dlogits)) {
        SL_TRY(check_t(be, op, "dlogits", dlogits, be->act_dtype));
        SL_TRY(check_same_shape(op, "dlogits", dlogits, "logits", logits));
        SL_TRY(check_inplace_or_disjoint(op, "dlogits", dlogits, "logits", logits));
    }
    return be->ops->cross_entropy(be, losses, dlogits, logits, targets, grad_scale, loss_sum,
                                  n_valid);
}

void ops_xent_sum_losses(const double *row_loss, const int32_t *targets, int64_t rows,
                         double *sum, int64_t *n_valid) {
    double s = 0.0;
    int64_t nv = 0;
    for (int64_t r = 0; r < rows; r++) {
        if (targets[r] < 0)
            continue;
        s += row_loss[r];
        nv++;
    }
    *sum = s;
    *n_valid = nv;
}

sl_status ops_xent_stats_chunk(sl_backend *be, sl_tensor stats, sl_tensor logits_chunk,
                               sl_tensor targets, int64_t vocab_offset, bool first_chunk) {
    OPS_ENTRY(xent_stats_chunk);
    const char *op = "ops_xent_stats_chunk";
    SL_TRY(check_t(be, op, "logits_chunk", logits_chunk, be->act_dtype));
    int64_t r = rows_of(logits_chunk);
    SL_TRY(check_targets(be, op, targets, r));
    SL_TRY(check_t(be, op, "stats", stats, SL_DTYPE_F32));
    SL_TRY(check_numel(op, "stats", stats, r * OPS_XENT_STATS, "(R, OPS_XENT_STATS)"));
    SL_CHECK_ARG(vocab_offset >= 0, "%s: vocab_offset %" PRId64 " is negative", op,
                 vocab_offset);
    SL_CHECK_ARG(cols_of(logits_chunk) > 0, "%s: logits_chunk %s is empty", op,
                 shape_str(logits_chunk).s);
    return be->ops->xent_stats_chunk(be, stats, logits_chunk, targets, vocab_offset, first_chunk);
}

sl_status ops_xent_loss(sl_backend *be, sl_tensor losses, sl_tensor lse, sl_tensor stats,
                        sl_tensor targets, double *loss_sum, int64_t *n_valid) {
    OPS_ENTRY(xent_loss);
    const char *op = "ops_xent_loss";
    SL_CHECK_ARG(loss_sum && n_valid, "%s: loss_sum and n_valid must not be NULL", op);
    SL_TRY(check_t(be, op, "stats", stats, SL_DTYPE_F32));
    int64_t r = tensor_numel(&stats) / OPS_XENT_STATS;
    SL_TRY(check_numel(op, "stats", stats, r * OPS_XENT_STATS, "(R, OPS_XENT_STATS)"));
    SL_TRY(check_targets(be, op, targets, r));
    SL_TRY(check_rows_stat(be, op, "lse", lse, r));
    if (present(losses))
        SL_TRY(check_rows_stat(be, op, "losses", losses, r));
    return be->ops->xent_loss(be, losses, lse, stats, targets, loss_sum, n_valid);
}

sl_status ops_xent_backward_chunk(sl_backend *be, sl_tensor dlogits_chunk, sl_tensor logits_chunk,
                                  sl_tensor lse, sl_tensor targets, int64_t vocab_offset,
                                  float grad_scale) {
    OPS_ENTRY(xent_backward_chunk);
    const char *op = "ops_xent_backward_chunk";
    SL_TRY(check_t(be, op, "logits_chunk", logits_chunk, be->act_dtype));
    SL_TRY(check_t(be, op, "dlogits_chunk", dlogits_chunk, be->act_dtype));
    SL_TRY(check_same_shape(op, "dlogits_chunk", dlogits_chunk, "logits_chunk", logits_chunk));
    SL_TRY(check_inplace_or_disjoint(op, "dlogits_chunk", dlogits_chunk, "logits_chunk",
                                     logits_chunk));
    int64_t r = rows_of(logits_chunk);
    SL_TRY(check_targets(be, op, targets, r));
    SL_TRY(check_rows_stat(be, op, "lse", lse, r));
    SL_CHECK_ARG(vocab_offset >= 0, "%s: vocab_offset %" PRId64 " is negative", op,
                 vocab_offset);
    return be->ops->xent_backward_chunk(be, dlogits_chunk, logits_chunk, lse, targets,
                                        vocab_offset, grad_scale);
}

/* ------------------------------------------------------------------------ */
/* optimizer, casts, reductions */

sl_status ops_adamw(sl_backend *be, sl_tensor param, sl_tensor grad, sl_tensor m, sl_tensor v,
                    sl_tensor param_copy, const ops_adamw_args *args) {
    OPS_ENTRY(adamw);
    const char *op = "ops_adamw";
    SL_CHECK_ARG(args != NULL, "%s: args is NULL", op);
    CHECK_EACH(SL_DTYPE_F32, ARG(param), ARG(grad), ARG(m), ARG(v));
    int64_t n = tensor_numel(&param);
    const named_tensor state[] = {ARG(grad), ARG(m), ARG(v)};
    for (int i = 0; i < 3; i++)
        SL_TRY(check_numel(op, state[i].name, state[i].t, n, "same as param"));
    if (present(param_copy)) {
        SL_TRY(check_t2(be, op, "param_copy", param_copy, be->act_dtype, SL_DTYPE_F32));
        SL_TRY(check_numel(op, "param_copy", param_copy, n, "same as param"));
        SL_TRY(check_disjoint(op, "param_copy", param_copy, "param", param));
    }
    SL_CHECK_ARG(args->step >= 1, "%s: step %" PRId64 " must be >= 1 (1-based)", op, args->step);
    SL_CHECK_ARG(args->beta1 >= 0.0f && args->beta1 < 1.0f && args->beta2 >= 0.0f &&
                     args->beta2 < 1.0f,
                 "%s: betas (%g, %g) must lie in [0, 1)", op, (double)args->beta1,
                 (double)args->beta2);
    SL_CHECK_ARG(args->eps > 0.0f, "%s: eps %g must be positive", op, (double)args->eps);
    SL_TRY(check_disjoint(op, "param", param, "grad", grad));
    SL_TRY(check_disjoint(op, "m", m, "v", v));
    return be->ops->adamw(be, param, grad, m, v, param_copy, args);
}

sl_status ops_cast(sl_backend *be, sl_tensor dst, sl_tensor src) {
    OPS_ENTRY(cast);
    const char *op = "ops_cast";
    SL_TRY(check_t2(be, op, "dst", dst, SL_DTYPE_F32, SL_DTYPE_BF16));
    SL_TRY(check_t2(be, op, "src", src, SL_DTYPE_F32, SL_DTYPE_BF16));
    SL_TRY(check_same_numel(op, "dst", dst, "src", src));
    SL_TRY(check_disjoint(op, "dst", dst, "src", src));
    return be->ops->cast(be, dst, src);
}

sl_status ops_sq_norm(sl_backend *be, sl_tensor x, double *out) {
    OPS_ENTRY(sq_norm);
    SL_CHECK_ARG(out != NULL, "ops_sq_norm: out is NULL");
    SL_TRY(check_t2(be, "ops_sq_norm", "x", x, SL_DTYPE_F32, be->act_dtype));
    return be->ops->sq_norm(be, x, out);
}

sl_status ops_scale(sl_backend *be, sl_tensor x, float s) {
    OPS_ENTRY(scale);
    SL_TRY(check_t2(be, "ops_scale", "x", x, SL_DTYPE_F32, be->act_dtype));
    return be->ops->scale(be, x, s);
}

sl_status ops_add(sl_backend *be, sl_tensor out, sl_tensor a, sl_tensor b) {
    OPS_ENTRY(add);
    SL_TRY(check_binary(be, "ops_add", out, ARG(a), ARG(b)));
    return be->ops->add(be, out, a, b);
}

sl_status ops_dropout(sl_backend *be, sl_tensor out, sl_tensor inp, float p, uint64_t seed,
                      uint64_t offset) {
    OPS_ENTRY(dropout);
    const char *op = "ops_dropout";
    if (!(p >= 0.0f && p < 1.0f))
        return sl_errorf(SL_ERR_INVALID, "%s: p = %g is outside [0, 1)", op, (double)p);
    SL_TRY(check_unary(be, op, out, inp));
    if (offset + (uint64_t)tensor_numel(&inp) < offset)
        return sl_errorf(SL_ERR_INVALID, "%s: offset %" PRIu64 " + %" PRId64 " elements wraps the 64-bit counter",
                         op, offset, tensor_numel(&inp));
    return be->ops->dropout(be, out, inp, p, seed, offset);
}
