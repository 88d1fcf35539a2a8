/* data/dedup.c: normalization, MinHash signatures, exact set and LSH tables. */
#include "data/dedup.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <xxhash.h>

#include "data/utf8.h"
#include "runtime/check.h"
#include "runtime/rng.h"

#define DEDUP_SHINGLE 5

/* uint64 key -> uint32 value, open addressing; key 0 means empty (keys are
 * hashes remapped away from 0). */
typedef struct {
    uint64_t *keys;
    uint32_t *vals;
    size_t cap, count;
} u64map;

static uint64_t nz(uint64_t k) { return k ? k : 1; }

static sl_status u64map_grow(u64map *m) {
    size_t nc = m->cap ? m->cap * 2 : 1024;
    uint64_t *k = calloc(nc, sizeof *k);
    uint32_t *v = malloc(nc * sizeof *v);
    if (!k || !v) {
        free(k);
        free(v);
        return sl_errorf(SL_ERR_NOMEM, "out of memory growing a dedup table to %zu entries", nc);
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        size_t j = (size_t)(m->keys[i] * 0x9E3779B97F4A7C15ULL >> 7) & (nc - 1);
        while (k[j])
            j = (j + 1) & (nc - 1);
        k[j] = m->keys[i];
        v[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = k;
    m->vals = v;
    m->cap = nc;
    return SL_OK;
}

/* Returns the slot of key (found, or the empty slot where it would go). */
static size_t u64map_slot(const u64map *m, uint64_t key) {
    size_t j = (size_t)(key * 0x9E3779B97F4A7C15ULL >> 7) & (m->cap - 1);
    while (m->keys[j] && m->keys[j] != key)
        j = (j + 1) & (m->cap - 1);
    return j;
}

static sl_status u64map_reserve(u64map *m) {
    if (m->cap == 0 || (m->count + 1) * 2 > m->cap)
        SL_TRY(u64map_grow(m));
    return SL_OK;
}

struct dedup {
    dedup_opts o;
    int rows;
    uint32_t *a, *b; /* [perms] */
    u64map exact;
    u64map bands;    /* (band, band hash) -> kept document index */
    uint8_t *sig8;   /* [kept * perms] low byte of each MinHash value */
    size_t kept, sig_cap;
};

sl_status dedup_create(const dedup_opts *o, dedup **out) {
    *out = NULL;
    SL_CHECK_ARG(!o->near || (o->perms >= 1 && o->perms <= 1024 && o->bands >= 1 &&
                              o->perms % o->bands == 0),
                 "minhash_perms %d must be a multiple of minhash_bands %d (and at most 1024)",
                 o->perms, o->bands);
    dedup *d = calloc(1, sizeof *d);
    SL_CHECK_ALLOC(d, sizeof *d);
    d->o = *o;
    if (o->near) {
        d->rows = o->perms / o->bands;
        d->a = malloc(sizeof *d->a * (size_t)o->perms);
        d->b = malloc(sizeof *d->b * (size_t)o->perms);
        if (!d->a || !d->b) {
            dedup_destroy(d);
            return sl_errorf(SL_ERR_NOMEM, "out of memory for MinHash parameters");
        }
        rng_stream s = rng_stream_make(o->seed, RNG_PURPOSE_DEDUP, 0);
        for (int j = 0; j < o->perms; j++) {
            uint64_t r = rng_u64(&s, (uint64_t)j);
            d->a[j] = (uint32_t)r | 1u;
            d->b[j] = (uint32_t)(r >> 32);
        }
    }
    *out = d;
    return SL_OK;
}

void dedup_destroy(dedup *d) {
    if (!d)
        return;
    free(d->a);
    free(d->b);
    free(d->exact.keys);
    free(d->exact.vals);
    free(d->bands.keys);
    free(d->bands.vals);
    free(d->sig8);
    free(d);
}

/* Case fold (ASCII fast path) and collapse whitespace into scratch. */
static sl_status normalize(const char *text, size_t len, clean_buf *scratch) {
    bool ascii = true;
    for (size_t i = 0; i < len && ascii; i++)
        ascii = (unsigned char)text[i] < 0x80;
    const char *src = text;
    size_t n = len;
    utf8proc_uint8_t *folded = NULL;
    if (!ascii) {
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)len,
                                          &folded, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_CASEFOLD);
        if (r < 0)
            return sl_errorf(SL_ERR_INTERNAL, "utf8proc case folding failed: %s", utf8proc_errmsg(r));
        src = (const char *)folded;
        n = (size_t)r;
    }
    sl_status st = clean_buf_reserve(scratch, n);
    if (st == SL_OK) {
        char *dst = scratch->p;
        bool space = false;
        for (size_t i = 0; i < n; i++) {
            char c = src[i];
            if (c == ' ' || c == '\n' || c == '\t') {
                space = dst != scratch->p;
                continue;
            }
            if (space)
                *dst++ = ' ';
            space = false;
            *dst++ = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        scratch->len = (size_t)(dst - scratch->p);
        scratch->p[scratch->len] = 0;
    }
    free(folded);
    return st;
}

static inline uint32_t mix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x7feb352dU;
    h ^= h >> 15;
    return h;
}

sl_status dedup_signature(const dedup *d, const char *text, size_t len, clean_buf *scratch,
                          uint64_t *exact_hash, uint32_t *mh) {
    SL_TRY(normalize(text, len, scratch));
    const char *s = scratch->p;
    size_t n = scratch->len;
    *exact_hash = nz(XXH3_64bits(s, n));
    if (!d->o.near)
        return SL_OK;
    int P = d->o.perms;
    for (int j = 0; j < P; j++)
        mh[j] = UINT32_MAX;
    /* code-point starts of the current window */
    size_t starts[DEDUP_SHINGLE + 1];
    size_t w = 0, i = 0;
    bool any = false;
    while (i <= n) {
        if (w == DEDUP_SHINGLE + 1) {
            memmove(starts, starts + 1, sizeof starts[0] * DEDUP_SHINGLE);
            w--;
        }
        starts[w++] = i;
        if (w == DEDUP_SHINGLE + 1 || (i == n && !any)) {
            uint32_t x = (uint32_t)XXH3_64bits(s + starts[0], i - starts[0]);
            for (int j = 0; j < P; j++) {
                uint32_t h = mix32(d->a[j] * x + d->b[j]);
                mh[j] = h < mh[j] ? h : mh[j];
            }
            any = true;
        }
        if (i == n)
            break;
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
    }
    return SL_OK;
}

static sl_status near_check_insert(dedup *d, const uint32_t *mh, dedup_verdict *v) {
    int P = d->o.perms, R = d->rows;
    uint64_t keys[1024];
    for (int b = 0; b < d->o.bands; b++)
        keys[b] = nz(XXH3_64bits_withSeed(mh + (size_t)b * R, sizeof *mh * (size_t)R, (uint64_t)b + 1));
    if (d->bands.cap)
        for (int b = 0; b < d->o.bands; b++) {
            size_t j = u64map_slot(&d->bands, keys[b]);
            if (!d->bands.keys[j])
                continue;
            const uint8_t *other = d->sig8 + (size_t)d->bands.vals[j] * (size_t)P;
            int same = 0;
            for (int k = 0; k < P; k++)
                same += other[k] == (uint8_t)mh[k];
            double frac = (double)same / P;
            double jac = (frac - 1.0 / 256) / (1.0 - 1.0 / 256);
            if (jac >= d->o.threshold) {
                *v = DEDUP_NEAR;
                return SL_OK;
            }
        }
    if (d->kept == d->sig_cap) {
        size_t nc = d->sig_cap ? d->sig_cap * 2 : 1024;
        uint8_t *ns = realloc(d->sig8, nc * (size_t)P);
        SL_CHECK_ALLOC(ns, nc * (size_t)P);
        d->sig8 = ns;
        d->sig_cap = nc;
    }
    for (int k = 0; k < P; k++)
        d->sig8[d->kept * (size_t)P + (size_t)k] = (uint8_t)mh[k];
    for (int b = 0; b < d->o.bands; b++) {
        SL_TRY(u64map_reserve(&d->bands));
        size_t j = u64map_slot(&d->bands, keys[b]);
        if (!d->bands.keys[j]) {
            d->bands.keys[j] = keys[b];
            d->bands.vals[j] = (uint32_t)d->kept;
            d->bands.count++;
        }
    }
    d->kept++;
    return SL_OK;
}

sl_status dedup_check_insert(dedup *d, uint64_t exact_hash, const uint32_t *mh, dedup_verdict *v) {
    *v = DEDUP_UNIQUE;
    if (d->o.exact) {
        SL_TRY(u64map_reserve(&d->exact));
        size_t j = u64map_slot(&d->exact, exact_hash);
        if (d->exact.keys[j]) {
            *v = DEDUP_EXACT;
            return SL_OK;
        }
        d->exact.keys[j] = exact_hash;
        d->exact.vals[j] = 0;
        d->exact.count++;
    }
    if (d->o.near)
        SL_TRY(near_check_insert(d, mh, v));
    return SL_OK;
}

size_t dedup_memory_bytes(const dedup *d) {
    return d->exact.cap * 12 + d->bands.cap * 12 + d->sig_cap * (size_t)d->o.perms;
}
