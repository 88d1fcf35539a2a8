/* data/dedup.h: exact and near-duplicate detection for shardlm prepare.
 *
 * defines: dedup_opts, dedup, dedup_create, dedup_destroy, dedup_signature,
 *          dedup_verdict, dedup_check_insert, dedup_memory_bytes
 *
 * Normalized text: case-folded (utf8proc), whitespace runs as one space.
 * Exact: XXH3-64 of the normalized text; a document whose hash was seen is
 * an exact duplicate.
 * Near: MinHash over the normalized text's code-point 5-grams, `perms`
 * hash functions h_j(x) = mix32(a_j * x + b_j) with (a_j, b_j) drawn from
 * Philox (RNG_PURPOSE_DEDUP), so signatures depend only on the seed. LSH
 * with `bands` bands of perms/bands rows finds candidates; a candidate is a
 * duplicate when its stored 8-bit MinHash signature (b-bit MinHash, Li and
 * Koenig 2010) estimates a Jaccard similarity >= threshold.
 * dedup_signature is pure (many threads at once, each with its scratch);
 * dedup_check_insert is called in document order from one thread, which
 * makes the verdicts independent of the thread count.
 * Memory grows with the number of kept documents, not their size: about
 * 16 B (exact set) + 24 B x bands (LSH tables) + perms B (signatures) per
 * kept document, ~530 B with the defaults.
 */
#ifndef SL_DATA_DEDUP_H
#define SL_DATA_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/clean.h"
#include "runtime/status.h"

typedef struct {
    bool exact;
    bool near;
    int perms;        /* multiple of bands, <= 1024 */
    int bands;
    double threshold; /* estimated Jaccard similarity */
    uint64_t seed;
} dedup_opts;

typedef struct dedup dedup;

sl_status dedup_create(const dedup_opts *o, dedup **out);
void dedup_destroy(dedup *d);

/* Exact hash and (when near dedup is on) the MinHash signature mh[perms] of
 * text. scratch: the caller's buffer. */
sl_status dedup_signature(const dedup *d, const char *text, size_t len, clean_buf *scratch,
                          uint64_t *exact_hash, uint32_t *mh);

typedef enum { DEDUP_UNIQUE = 0, DEDUP_EXACT, DEDUP_NEAR } dedup_verdict;

/* Decides and, when unique, remembers the document. */
sl_status dedup_check_insert(dedup *d, uint64_t exact_hash, const uint32_t *mh, dedup_verdict *v);
size_t dedup_memory_bytes(const dedup *d);

#endif
