/* Loader throughput per rank: tokens/s that loader_next delivers (reader
 * thread reading, decompressing and assembling ahead) for one rank of
 * dp_size, after validating that the union of the dp_size ranks' slices
 * equals the dp=1 global batches and every id is below vocab_size.
 *   bench_loader SHARDS seq_len micro_batch dp_size pretrain|sft batches runs */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/loader.h"
#include "runtime/config.h"
#include "runtime/log.h"

static loader *open_l(char **paths, int n, int T, int B, int rank, int dp, int mode) {
    loader_opts o = {(const char *const *)paths, n, T, B, 1, rank, dp, 1234, mode, 50304, 8, -1, false};
    loader *l;
    if (loader_create(&o, &l) != SL_OK) {
        fprintf(stderr, "loader_create: %s\n", sl_error_message());
        exit(1);
    }
    return l;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: bench_loader SHARDS seq_len micro_batch dp_size pretrain|sft batches runs\n");
        return 2;
    }
    char **paths;
    int n;
    if (loader_expand_paths(argv[1], &paths, &n) != SL_OK) {
        fprintf(stderr, "%s\n", sl_error_message());
        return 1;
    }
    int T = atoi(argv[2]), B = atoi(argv[3]), dp = atoi(argv[4]), nb = atoi(argv[6]), runs = atoi(argv[7]);
    int mode = strcmp(argv[5], "sft") == 0 ? DATA_MODE_SFT : DATA_MODE_PRETRAIN;
    size_t row = (size_t)B * T;
    uint32_t *in = malloc(row * 4 * dp), *ref = malloc(row * 4 * dp);
    int32_t *tg = malloc(row * 4 * dp);
    /* validate: dp ranks' slices of 4 global batches == the dp=1 batches */
    loader *one = open_l(paths, n, T, B * dp, 0, 1, mode);
    loader *ranks[64];
    for (int r = 0; r < dp; r++)
        ranks[r] = open_l(paths, n, T, B, r, dp, mode);
    for (int b = 0; b < 4; b++) {
        if (loader_next(one, ref, tg) != SL_OK) {
            fprintf(stderr, "%s\n", sl_error_message());
            return 1;
        }
        for (int r = 0; r < dp; r++)
            if (loader_next(ranks[r], in + r * row, tg) != SL_OK) {
                fprintf(stderr, "%s\n", sl_error_message());
                return 1;
            }
        if (memcmp(in, ref, row * 4 * dp) != 0) {
            fprintf(stderr, "FAIL: dp=%d slices differ from the dp=1 batch %d\n", dp, b);
            return 1;
        }
    }
    loader_destroy(one);
    for (int r = 0; r < dp; r++)
        loader_destroy(ranks[r]);
    printf("validated: %d ranks' slices == dp=1 global batches\n", dp);
    double *t = malloc(sizeof *t * (size_t)runs);
    for (int k = 0; k < runs + 1; k++) {
        loader *l = open_l(paths, n, T, B, 0, dp, mode);
        double t0 = sl_now();
        for (int b = 0; b < nb; b++)
            if (loader_next(l, in, tg) != SL_OK) {
                fprintf(stderr, "%s\n", sl_error_message());
                return 1;
            }
        double dt = sl_now() - t0;
        loader_destroy(l);
        if (k > 0) /* run 0 warms the page cache */
            t[k - 1] = dt;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_d);
    double med = t[runs / 2];
    printf("shardlm loader (%s, T=%d, B=%d, rank 0 of %d): %d micro-batches median %.3f s, "
           "%.0f tokens/s per rank\n", argv[5], T, B, dp, nb, med, (double)nb * (double)row / med);
    loader_free_paths(paths, n);
    free(in);
    free(ref);
    free(tg);
    free(t);
    return 0;
}
