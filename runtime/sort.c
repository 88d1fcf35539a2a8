#include "runtime/sort.h"

#include <string.h>

void sort_stable(void *base, void *tmp, size_t n, size_t size, sort_cmp_fn cmp, void *ctx) {
    if (n < 2)
        return;
    char *v = base, *t = tmp;
    size_t h = n / 2;
    sort_stable(v, tmp, h, size, cmp, ctx);
    sort_stable(v + h * size, tmp, n - h, size, cmp, ctx);
    /* merge: the right element goes first only when strictly smaller */
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        size_t from = cmp(v + j * size, v + i * size, ctx) < 0 ? j++ : i++;
        memcpy(t + k++ * size, v + from * size, size);
    }
    memcpy(t + k * size, v + i * size, (h - i) * size);
    k += h - i;
    memcpy(t + k * size, v + j * size, (n - j) * size);
    memcpy(v, t, n * size);
}
