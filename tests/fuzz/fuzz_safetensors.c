/* Fuzz target for the safetensors reader (runtime/safetensors.h).
 *
 * LLVMFuzzerTestOneInput is the libFuzzer entry point: build with
 *   clang -fsanitize=fuzzer,address -DSHARDLM_LIBFUZZER ...
 * Without SHARDLM_LIBFUZZER (the ctest build, gcc) main() either replays
 * files and folders given on the command line, or runs N seeded random
 * mutations of a valid file:
 *   fuzz_safetensors [--iterations N] [--seed S]
 *   fuzz_safetensors FILE_OR_DIR...
 * Any crash, sanitizer report, or broken invariant (an accepted file whose
 * tensors are not inside the buffer, a find that misses, an error without a
 * message) fails the run.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fsutil.h"
#include "runtime/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                           \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "fuzz_safetensors: invariant failed: %s (line %d)\n", \
                    #cond, __LINE__);                                              \
            abort();                                                               \
        }                                                                          \
    } while (0)

/* Returns 1 when the input was accepted, 0 when refused. */
static int check_one(const uint8_t *data, size_t size) {
    safetensors_file *f = NULL;
    sl_status st = safetensors_open_memory(data, size, "fuzz", &f);
    if (st != SL_OK) {
        FUZZ_CHECK(f == NULL);
        FUZZ_CHECK(st == SL_ERR_FORMAT || st == SL_ERR_NOMEM);
        FUZZ_CHECK(sl_error_message()[0] != 0);
        return 0;
    }
    uint64_t end = 0;
    unsigned sum = 0;
    for (int i = 0; i < safetensors_count(f); i++) {
        const safetensors_tensor *t = safetensors_get(f, i);
        const uint8_t *p = t->data;
        FUZZ_CHECK(p >= data && t->begin + t->nbytes <= size && p == data + t->begin);
        FUZZ_CHECK(t->begin >= end); /* sorted, no overlap */
        end = t->begin + t->nbytes;
        uint64_t n = dtype_size(t->dtype);
        for (int d = 0; d < t->ndim; d++)
            n *= (uint64_t)t->shape[d];
        FUZZ_CHECK(n == t->nbytes);
        if (t->nbytes) /* touch both ends so ASan sees any bad range */
            sum += p[0] + p[t->nbytes - 1];
        FUZZ_CHECK(safetensors_find(f, t->name) == t);
    }
    FUZZ_CHECK(safetensors_count(f) == 0 || end == size);
    (void)safetensors_metadata(f, "format");
    volatile unsigned sink = sum; /* keeps the reads above */
    (void)sink;
    safetensors_close(f);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)check_one(data, size);
    return 0;
}

#ifndef SHARDLM_LIBFUZZER

/* The seed: a small valid file with metadata, several dtypes, a scalar and
 * an empty tensor. */
static const char SEED_HEADER[] =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
    "\"h\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[32,34]},"
    "\"e\":{\"dtype\":\"I64\",\"shape\":[0,5],\"data_offsets\":[34,34]},"
    "\"u\":{\"dtype\":\"U8\",\"shape\":[6],\"data_offsets\":[34,40]}}";
#define SEED_DATA 40

static uint64_t rng_next(uint64_t *s) { /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static size_t rnd(uint64_t *s, size_t n) { return n ? (size_t)(rng_next(s) % n) : 0; }

/* Text edits that keep most of the JSON intact so that mutants reach the
 * checks behind the parser. */
static const char *const TOKENS[] = {
    "0", "1", "-1", "8", "24", "34", "40", "4294967296", "9007199254740992", "18446744073709551616",
    "1e300", "0.5", "[]", "{}", "null", "\"F32\"", "\"BF16\"", "\"F64\"", "\"Q\"", "[0,0]", "[40,34]",
    "\"w\"", "\"__metadata__\"", ",", ":", "\"", "\\", "\\u0000", "[2,3,4,5,6,7,8,9,10]"};

static size_t mutate_header(uint64_t *s, char *h, size_t len, size_t cap) {
    int edits = 1 + (int)rnd(s, 3);
    for (int k = 0; k < edits; k++) {
        size_t at = rnd(s, len + 1);
        size_t op = rnd(s, 8);
        switch (op < 5 ? 0 : op - 4) {
        case 0: { /* replace a run of digits (or any byte) by a token */
            const char *tok = TOKENS[rnd(s, sizeof TOKENS / sizeof *TOKENS)];
            size_t end = at;
            while (end < len && h[end] >= '0' && h[end] <= '9')
                end++;
            if (end == at && at < len)
                end++;
            size_t tl = strlen(tok);
            if (len - (end - at) + tl >= cap)
                break;
            memmove(h + at + tl, h + end, len - end);
            memcpy(h + at, tok, tl);
            len = len - (end - at) + tl;
            break;
        }
        case 1: /* delete a short span */
            if (at < len) {
                size_t n = 1 + rnd(s, 8);
                if (n > len - at)
                    n = len - at;
                memmove(h + at, h + at + n, len - at - n);
                len -= n;
            }
            break;
        case 2: /* duplicate a span */ {
            size_t n = 1 + rnd(s, 64);
            if (at + n > len || len + n >= cap)
                break;
            memmove(h + at + n, h + at, len - at);
            len += n;
            break;
        }
        default: /* one random byte */
            if (at < len)
                h[at] = (char)rng_next(s);
        }
    }
    return len;
}

/* One mutant: edit the header text (then frame it with its true length most
 * of the time), or corrupt the framed bytes directly. Returns a malloc'd
 * buffer of exactly *out_len bytes. */
static uint8_t *make_mutant(uint64_t *s, size_t *out_len) {
    char h[4096];
    size_t hl = sizeof SEED_HEADER - 1;
    memcpy(h, SEED_HEADER, hl);
    int mode = (int)rnd(s, 10);
    if (mode < 6)
        hl = mutate_header(s, h, hl, sizeof h);
    if (rnd(s, 2)) /* pad to 8 as the reference writer does */
        while (hl % 8 && hl < sizeof h)
            h[hl++] = ' ';
    size_t data = SEED_DATA;
    if (rnd(s, 4) == 0)
        data = rnd(s, 2 * SEED_DATA);
    size_t len = 8 + hl + data;
    uint8_t *buf = malloc(len);
    if (!buf)
        abort();
    uint64_t n = hl;
    if (mode >= 6 && mode < 8) { /* a lying header length */
        static const uint64_t lies[] = {0, 1, 7, 100000000, 100000001, UINT64_MAX, 1ull << 63};
        n = rnd(s, 2) ? lies[rnd(s, sizeof lies / sizeof *lies)] : hl + rnd(s, 17) - 8;
    }
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, h, hl);
    for (size_t i = 0; i < data; i++)
        buf[8 + hl + i] = (uint8_t)rng_next(s);
    if (mode >= 8) { /* flip bytes anywhere, then maybe truncate */
        int flips = 1 + (int)rnd(s, 4);
        for (int k = 0; k < flips; k++)
            buf[rnd(s, len)] ^= (uint8_t)(1u << rnd(s, 8));
        if (rnd(s, 2)) { /* truncate into an exact-size buffer so ASan sees over-reads */
            size_t cut = rnd(s, len + 1);
            uint8_t *t = malloc(cut ? cut : 1);
            if (!t)
                abort();
            memcpy(t, buf, cut);
            free(buf);
            buf = t;
            len = cut;
        }
    }
    *out_len = len;
    return buf;
}

static int replay_path(const char *path) {
    if (fs_is_dir(path)) {
        DIR *d = opendir(path);
        if (!d) {
            fprintf(stderr, "fuzz_safetensors: cannot open folder %s\n", path);
            return 1;
        }
        int rc = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char p[4096];
            if (fs_join(p, sizeof p, path, e->d_name) != SL_OK || replay_path(p) != 0)
                rc = 1;
        }
        closedir(d);
        return rc;
    }
    char *buf;
    size_t len;
    if (fs_read_file(path, &buf, &len, (size_t)1 << 30) != SL_OK) {
        fprintf(stderr, "fuzz_safetensors: %s\n", sl_error_message());
        return 1;
    }
    int ok = check_one((const uint8_t *)buf, len);
    printf("%s: %s%s%s\n", path, ok ? "accepted" : "refused", ok ? "" : ": ", ok ? "" : sl_error_message());
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    long iterations = 5000;
    uint64_t seed = 0x5eed5afe7e5ull;
    int files = 0, rc = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
            iterations = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 0);
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [--iterations N] [--seed S] | FILE_OR_DIR...\n", argv[0]);
            return 2;
        } else {
            files++;
            rc |= replay_path(argv[i]);
        }
    }
    if (files)
        return rc;

    /* the unmutated seed must be accepted, or the mutants test nothing */
    size_t hl = sizeof SEED_HEADER - 1, len = 8 + hl + SEED_DATA;
    uint8_t *seed_file = calloc(1, len);
    if (!seed_file)
        return 1;
    for (int i = 0; i < 8; i++)
        seed_file[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(seed_file + 8, SEED_HEADER, hl);
    if (!check_one(seed_file, len)) {
        fprintf(stderr, "fuzz_safetensors: the seed file is refused: %s\n", sl_error_message());
        return 1;
    }
    free(seed_file);

    uint64_t s = seed ? seed : 1;
    long accepted = 0;
    for (long it = 0; it < iterations; it++) {
        size_t n;
        uint8_t *m = make_mutant(&s, &n);
        accepted += check_one(m, n);
        free(m);
    }
    printf("fuzz_safetensors: %ld mutants (seed 0x%llx), %ld accepted, %ld refused with a message\n",
           iterations, (unsigned long long)seed, accepted, iterations - accepted);
    /* a mutator that only ever produces garbage, or never does, is broken */
    if (iterations >= 1000 && (accepted == 0 || accepted == iterations)) {
        fprintf(stderr, "fuzz_safetensors: mutants were all %s; the mutator is not exercising the reader\n",
                accepted ? "accepted" : "refused");
        return 1;
    }
    return 0;
}

#endif
