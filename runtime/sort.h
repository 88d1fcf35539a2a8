/* runtime/sort.h: a stable sort with a context pointer (qsort_r is not C11).
 *
 * defines: sort_cmp_fn, sort_stable
 *
 * A merge sort: equal elements keep their order, so a result never depends
 * on the C library's qsort. Does not allocate: the caller passes scratch.
 */
#ifndef SL_RUNTIME_SORT_H
#define SL_RUNTIME_SORT_H

#include <stddef.h>

/* < 0, 0, > 0 as a sorts before, with, after b; ctx as given to sort_stable. */
typedef int (*sort_cmp_fn)(const void *a, const void *b, void *ctx);

/* Sorts the n elements of size bytes at base; tmp is scratch of n elements
 * (it must not overlap base). */
void sort_stable(void *base, void *tmp, size_t n, size_t size, sort_cmp_fn cmp, void *ctx);

#endif
