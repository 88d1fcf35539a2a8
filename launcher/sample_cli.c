/* launcher/sample_cli.c: see sample_cli.h. */
#include "launcher/sample_cli.h"

#include <math.h>

#include <string.h>

#include "runtime/check.h"

sl_status sample_cli_parse(const cli_args *a, sample_cli *s) {
    memset(s, 0, sizeof *s);
    s->system = cli_get(a, "system");
    s->stop = cli_get(a, "stop");
    s->chat = cli_has(a, "chat");
    s->bos = cli_has(a, "bos");
    s->temperature = 1.0f;
    s->top_p = 1.0f;
    if (s->system && !s->chat)
        return sl_errorf(SL_ERR_INVALID, "--system needs --chat");
    if (s->stop && !s->stop[0])
        return sl_errorf(SL_ERR_INVALID, "--stop needs a non-empty text");
    long long v = 128;
    SL_TRY(cli_get_int(a, "max-new-tokens", 1, 1 << 24, &v));
    s->max_new = (int)v;
    v = 0;
    SL_TRY(cli_get_int(a, "top-k", 0, 1 << 30, &v));
    s->top_k = (int)v;
    v = 0;
    SL_TRY(cli_get_int(a, "threads", 0, 4096, &v));
    s->threads = (int)v;
    v = 0;
    SL_TRY(cli_get_int(a, "seed", 0, INT64_MAX, &v));
    s->seed = (uint64_t)v;
    SL_TRY(cli_get_float(a, "temperature", &s->temperature));
    SL_TRY(cli_get_float(a, "top-p", &s->top_p));
    SL_TRY(cli_get_backend(a, &s->cuda));
    if (s->temperature < 0)
        return sl_errorf(SL_ERR_INVALID, "--temperature %g: expected >= 0 (0 = greedy)", (double)s->temperature);
    if (!(s->top_p > 0 && s->top_p <= 1))
        return sl_errorf(SL_ERR_INVALID, "--top-p %g: expected a value in (0, 1]", (double)s->top_p);
    return SL_OK;
}

sample_opts sample_cli_sampler(const sample_cli *s) {
    return (sample_opts){.temperature = s->temperature, .top_k = s->top_k, .top_p = s->top_p, .seed = s->seed};
}

sl_status sample_cli_pick(sampler *smp, float *logits, int64_t V, int64_t tok_vocab, uint64_t step,
                          int64_t end_id_a, int64_t end_id_b, uint32_t *id, bool *end) {
    for (int64_t v = tok_vocab; v < V; v++)
        logits[v] = -INFINITY;
    SL_TRY(sample_next(smp, logits, step, id));
    *end = (end_id_a >= 0 && *id == (uint32_t)end_id_a) || (end_id_b >= 0 && *id == (uint32_t)end_id_b);
    return SL_OK;
}
