#include "gpu_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void gpu_die(const char *what) {
    fprintf(stderr, "FATAL %s: %s\n", what, sl_error_message());
    exit(1);
}

double gpu_rel_err(const float *got, const float *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - (double)want[i];
        num += d * d;
        den += (double)want[i] * (double)want[i];
    }
    if (!isfinite(num))
        return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
