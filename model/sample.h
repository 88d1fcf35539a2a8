/* model/sample.h: choosing the next token from logits (generation).
 *
 * defines: sample_opts, sampler, sample_create, sample_destroy, sample_next,
 *          sample_set_stream, sample_argmax
 *
 * Greedy, temperature, top-k and top-p (nucleus), applied in the order
 * Hugging Face's generate applies its warpers: temperature, then top-k, then
 * top-p on what top-k kept.
 *   greedy       temperature <= 0: the highest logit (ties: the lowest id).
 *   temperature  p_i proportional to exp(logit_i / temperature).
 *   top-k        only the k highest logits (ties: lower ids first) stay.
 *   top-p        of the candidates sorted by probability (ties: lower ids
 *                first), the shortest prefix whose probability reaches top_p
 *                stays: candidate j stays when the sum of the ones before it
 *                is < top_p (so the first always stays).
 * The draw for index i is u = the 53-bit uniform of Philox stream (seed,
 * RNG_PURPOSE_SAMPLE, sub = stream) at element i (generate: stream 0; eval
 * --generate: the prompt's index, so a prompt's text depends only on the
 * seed and its place in the file, not on batching or ranks), and the token is the first kept
 * candidate (in sorted order when top-k or top-p sorted them, else in id
 * order) whose cumulative probability exceeds u x the kept mass. Everything
 * is a pure function of (logits, options, i): a seed reproduces a generation.
 * Probabilities are computed and summed in double.
 *
 * Logits: -inf is allowed (probability 0); NaN or +inf is an error naming
 * the id, as is a row whose logits are all -inf.
 * A sampler owns scratch for one vocabulary (16 bytes per id); it is used
 * by one thread at a time. Not here: repetition penalties, beam search.
 */
#ifndef SL_MODEL_SAMPLE_H
#define SL_MODEL_SAMPLE_H

#include <stdint.h>

#include "runtime/status.h"

typedef struct {
    float temperature; /* <= 0: greedy */
    int top_k;         /* <= 0: no limit */
    float top_p;       /* (0, 1]; >= 1: no limit */
    uint64_t seed;
    uint32_t stream;   /* Philox sub-stream (0 unless sample_set_stream) */
} sample_opts;

typedef struct sampler sampler;

/* Checks the options (top_p in (0, 1], temperature finite) and allocates
 * scratch for vocab ids. On error *out is NULL. */
sl_status sample_create(const sample_opts *o, int64_t vocab, sampler **out);
void sample_destroy(sampler *s); /* NULL is a no-op */

/* The token for draw `index` (generate passes the number of tokens generated
 * so far) from logits (vocab floats, host). */
sl_status sample_next(sampler *s, const float *logits, uint64_t index, uint32_t *token);

/* Switches the draws to sub-stream `stream` (same seed and options). */
void sample_set_stream(sampler *s, uint32_t stream);

/* The id of the largest of n values (ties: the lowest id); NaN never wins. */
uint32_t sample_argmax(const float *logits, int64_t n);

#endif
