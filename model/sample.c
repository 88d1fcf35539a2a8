/* model/sample.c: greedy / temperature / top-k / top-p sampling (sample.h).
 *
 * top-k selects with a size-k min-heap (O(V log k)) and sorts only the k
 * survivors; top-p without top-k sorts the whole vocabulary (O(V log V),
 * a few milliseconds for 128k ids, small next to a decode step). */
#include "model/sample.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "runtime/check.h"
#include "runtime/rng.h"

typedef struct {
    float l;
    uint32_t id;
} cand;

struct sampler {
    sample_opts o;
    int64_t V;
    rng_stream rng;
    cand *c; /* (V) candidates */
    double *p; /* (V) their unnormalized probabilities */
};

sl_status sample_create(const sample_opts *o, int64_t vocab, sampler **out) {
    *out = NULL;
    SL_CHECK_ARG(vocab >= 1 && vocab <= (int64_t)UINT32_MAX, "sample_create: vocab %" PRId64 " out of range",
                 vocab);
    SL_CHECK_ARG(isfinite(o->temperature), "--temperature must be a finite number, got %g",
                 (double)o->temperature);
    SL_CHECK_ARG(o->top_p > 0.0f && o->top_p <= 1.0f, "--top-p must be in (0, 1], got %g", (double)o->top_p);
    SL_CHECK_ARG(o->top_k >= 0, "--top-k must be >= 0 (0: no limit), got %d", o->top_k);
    sampler *s = calloc(1, sizeof *s);
    SL_CHECK_ALLOC(s, sizeof *s);
    s->o = *o;
    s->V = vocab;
    s->rng = rng_stream_make(o->seed, RNG_PURPOSE_SAMPLE, o->stream);
    s->c = malloc((size_t)vocab * sizeof *s->c);
    s->p = malloc((size_t)vocab * sizeof *s->p);
    if (!s->c || !s->p) {
        sample_destroy(s);
        return sl_errorf(SL_ERR_NOMEM, "sample_create: out of memory for %" PRId64 " candidates", vocab);
    }
    *out = s;
    return SL_OK;
}

void sample_destroy(sampler *s) {
    if (!s)
        return;
    free(s->c);
    free(s->p);
    free(s);
}

void sample_set_stream(sampler *s, uint32_t stream) {
    s->o.stream = stream;
    s->rng = rng_stream_make(s->o.seed, RNG_PURPOSE_SAMPLE, stream);
}

uint32_t sample_argmax(const float *logits, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (logits[i] > logits[best] || isnan(logits[best]))
            best = i;
    return (uint32_t)best;
}

/* a ranks before b: higher logit, then lower id */
static int better(cand a, cand b) { return a.l > b.l || (a.l == b.l && a.id < b.id); }

static int cmp_desc(const void *x, const void *y) {
    const cand *a = x, *b = y;
    return better(*a, *b) ? -1 : better(*b, *a) ? 1 : 0;
}

/* Min-heap on "better": the root is the worst of the k kept. */
static void sift_down(cand *h, int64_t n, int64_t i) {
    for (;;) {
        int64_t w = i, a = 2 * i + 1, b = a + 1;
        if (a < n && better(h[w], h[a]))
            w = a;
        if (b < n && better(h[w], h[b]))
            w = b;
        if (w == i)
            return;
        cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void sift_up(cand *h, int64_t i) {
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!better(h[parent], h[i]))
            return;
        cand t = h[i];
        h[i] = h[parent];
        h[parent] = t;
        i = parent;
    }
}

static int64_t select_top_k(const float *logits, int64_t V, int64_t k, cand *h) {
    int64_t n = 0;
    for (int64_t i = 0; i < V; i++) {
        cand x = {logits[i], (uint32_t)i};
        if (n < k) {
            h[n] = x;
            sift_up(h, n++);
        } else if (better(x, h[0])) {
            h[0] = x;
            sift_down(h, n, 0);
        }
    }
    return n;
}

sl_status sample_next(sampler *s, const float *logits, uint64_t index, uint32_t *token) {
    int64_t V = s->V;
    bool any = false;
    for (int64_t i = 0; i < V; i++) {
        float x = logits[i];
        if (isnan(x) || (isinf(x) && x > 0))
            return sl_errorf(SL_ERR_INVALID, "sampling: the logit of token %" PRId64 " is %g (the model "
                             "produced a non-finite value)", i, (double)x);
        any |= !isinf(x);
    }
    if (!any)
        return sl_errorf(SL_ERR_INVALID, "sampling: every logit is -inf; no token can be chosen");
    if (s->o.temperature <= 0.0f) {
        *token = sample_argmax(logits, V);
        return SL_OK;
    }
    cand *c = s->c;
    int64_t n;
    bool sorted = false;
    if (s->o.top_k > 0 && s->o.top_k < V) {
        n = select_top_k(logits, V, s->o.top_k, c);
        sorted = true;
    } else {
        n = V;
        for (int64_t i = 0; i < V; i++)
            c[i] = (cand){logits[i], (uint32_t)i};
        sorted = s->o.top_p < 1.0f;
    }
    if (sorted)
        qsort(c, (size_t)n, sizeof *c, cmp_desc);
    float mx = c[0].l;
    if (!sorted)
        for (int64_t j = 1; j < n; j++)
            mx = c[j].l > mx ? c[j].l : mx;
    double inv_t = 1.0 / (double)s->o.temperature, sum = 0;
    for (int64_t j = 0; j < n; j++) {
        s->p[j] = exp(((double)c[j].l - (double)mx) * inv_t);
        sum += s->p[j];
    }
    double mass = sum;
    if (s->o.top_p < 1.0f) {
        double keep_below = (double)s->o.top_p * sum, before = 0;
        int64_t kept = 0;
        while (kept < n && (kept == 0 || before < keep_below))
            before += s->p[kept++];
        n = kept;
        mass = before;
    }
    double u = (double)(rng_u64(&s->rng, index) >> 11) * (1.0 / 9007199254740992.0) * mass;
    double acc = 0;
    int64_t last = 0;
    for (int64_t j = 0; j < n; j++) {
        if (s->p[j] <= 0)
            continue;
        last = j;
        acc += s->p[j];
        if (acc > u)
            break;
    }
    *token = c[last].id;
    return SL_OK;
}
