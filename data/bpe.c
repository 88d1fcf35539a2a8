/* data/bpe.c: the BPE merge loop of one pre-token.
 *
 * Symbols form a doubly linked list indexed by their position (a byte for
 * byte-level BPE, a character or fallback byte for SentencePiece-style BPE);
 * candidate merges sit in a binary min-heap keyed (rank << 32 | offset), so
 * the pop order is "lowest rank, leftmost on ties", the order of tiktoken's
 * and Hugging Face's merge loops. Entries are not removed when a merge makes
 * them stale: a popped entry is checked against the current pair (alive,
 * same rank) and skipped otherwise. A piece of n bytes costs O(n log n);
 * GPT-2's reference rescans every pair after each merge (O(n^2) or worse),
 * which matters for long runs of spaces, digits or punctuation.
 *
 * Staleness check soundness: a heap entry (r, i) was pushed for the pair
 * starting at i; the pair at i only ever grows to a longer byte string, and
 * distinct byte strings of a pair map to distinct ranks (explicit merges
 * have one rank per pair, tiktoken ranks one per token), so an equal rank
 * means the entry is current.
 */
#include <stdlib.h>

#include "data/tok_internal.h"
#include "runtime/check.h"
#include "runtime/mem.h"

void bpe_scratch_free(bpe_scratch *s) {
    free(s->id);
    free(s->prev);
    free(s->next);
    free(s->heap);
    *s = (bpe_scratch){0};
}

static sl_status scratch_reserve(bpe_scratch *s, size_t n) {
    if (n <= s->cap)
        return SL_OK;
    size_t cap = mem_grow_cap(s->cap, n, 64);
    uint32_t *id = realloc(s->id, cap * sizeof *id);
    if (id)
        s->id = id;
    uint32_t *prev = realloc(s->prev, cap * sizeof *prev);
    if (prev)
        s->prev = prev;
    uint32_t *next = realloc(s->next, cap * sizeof *next);
    if (next)
        s->next = next;
    /* initial pairs (n-1) plus at most two pushes per merge (n-1 merges) */
    uint64_t *heap = realloc(s->heap, 3 * cap * sizeof *heap);
    if (heap)
        s->heap = heap;
    if (!id || !prev || !next || !heap)
        return sl_errorf(SL_ERR_NOMEM, "out of memory for BPE scratch of a %zu-byte piece", n);
    s->cap = cap;
    s->heap_cap = 3 * cap;
    return SL_OK;
}

static inline void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v)
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static inline uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0];
    uint64_t v = h[--(*n)];
    size_t m = *n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m)
            break;
        if (c + 1 < m && h[c + 1] < h[c])
            c++;
        if (v <= h[c])
            break;
        h[i] = h[c];
        i = c;
    }
    if (m)
        h[i] = v;
    return top;
}

static inline void push_pair(const tok_pairmap *pm, const uint32_t *id, uint64_t *heap,
                             size_t *hn, uint32_t left, uint32_t right) {
    size_t slot = tok_pairmap_find(pm, id[left], id[right]);
    if (slot != SIZE_MAX)
        heap_push(heap, hn, (uint64_t)pm->slots[slot].rank << 32 | left);
}

sl_status bpe_reserve(bpe_scratch *s, size_t n) {
    if (n >= UINT32_MAX)
        return sl_errorf(SL_ERR_INVALID, "pre-token of %zu symbols is longer than 4 Gi", n);
    return scratch_reserve(s, n);
}

sl_status bpe_merge_symbols(const tokenizer *t, bpe_scratch *s, size_t len, const uint32_t **ids,
                            size_t *n) {
    uint32_t *id = s->id, *prev = s->prev, *next = s->next;
    uint64_t *heap = s->heap;
    const tok_pairmap *pm = &t->pairs;
    const uint32_t end = (uint32_t)len;
    for (uint32_t i = 0; i < end; i++) {
        prev[i] = i ? i - 1 : TOK_NONE;
        next[i] = i + 1;
    }
    size_t hn = 0;
    for (uint32_t i = 0; i + 1 < end; i++)
        push_pair(pm, id, heap, &hn, i, i + 1);
    while (hn) {
        uint64_t top = heap_pop(heap, &hn);
        uint32_t i = (uint32_t)top, rank = (uint32_t)(top >> 32);
        if (id[i] == TOK_NONE)
            continue; /* merged into its left neighbour */
        uint32_t j = next[i];
        if (j >= end)
            continue;
        size_t slot = tok_pairmap_find(pm, id[i], id[j]);
        if (slot == SIZE_MAX || pm->slots[slot].rank != rank)
            continue; /* stale: the pair at i changed since the push */
        id[i] = pm->slots[slot].merged;
        id[j] = TOK_NONE;
        next[i] = next[j];
        if (next[j] < end)
            prev[next[j]] = i;
        if (prev[i] != TOK_NONE)
            push_pair(pm, id, heap, &hn, prev[i], i);
        if (next[i] < end)
            push_pair(pm, id, heap, &hn, i, next[i]);
    }
    /* Compact the survivors into id[0..k): k <= i at every step, and all
     * positions < i have been read already. */
    size_t k = 0;
    for (uint32_t i = 0; i < end; i = next[i])
        id[k++] = id[i];
    *ids = id;
    *n = k;
    return SL_OK;
}

sl_status bpe_merge(const tokenizer *t, bpe_scratch *s, const uint8_t *piece, size_t len,
                    const uint32_t **ids, size_t *n) {
    SL_TRY(bpe_reserve(s, len));
    for (size_t i = 0; i < len; i++)
        s->id[i] = t->byte_id[piece[i]];
    return bpe_merge_symbols(t, s, len, ids, n);
}
