#include "runtime/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define SL_ERROR_BUF 4096

/* One message per thread: errors are recorded where they happen and read by
 * the launcher on the same thread, so no locking is needed. */
static _Thread_local char tls_error[SL_ERROR_BUF];

static const char *const status_names[SL_STATUS_COUNT] = {
    [SL_OK] = "SL_OK",
    [SL_ERR_INVALID] = "SL_ERR_INVALID",
    [SL_ERR_IO] = "SL_ERR_IO",
    [SL_ERR_FORMAT] = "SL_ERR_FORMAT",
    [SL_ERR_NOMEM] = "SL_ERR_NOMEM",
    [SL_ERR_CUDA] = "SL_ERR_CUDA",
    [SL_ERR_COMM] = "SL_ERR_COMM",
    [SL_ERR_TIMEOUT] = "SL_ERR_TIMEOUT",
    [SL_ERR_UNSUPPORTED] = "SL_ERR_UNSUPPORTED",
    [SL_ERR_INTERNAL] = "SL_ERR_INTERNAL",
    [SL_ERR_INTERRUPTED] = "SL_ERR_INTERRUPTED",
};

const char *sl_status_name(sl_status st) {
    if ((int)st < 0 || st >= SL_STATUS_COUNT)
        return "SL_ERR_UNKNOWN";
    return status_names[st];
}

static const char *basename_of(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

sl_status sl_errorf_at(const char *file, int line, sl_status st, const char *fmt, ...) {
    int n = snprintf(tls_error, sizeof tls_error, "%s:%d: ", basename_of(file), line);
    if (n < 0 || (size_t)n >= sizeof tls_error)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_error + n, sizeof tls_error - (size_t)n, fmt, ap);
    va_end(ap);
    return st;
}

sl_status sl_error_wrapf_at(const char *file, int line, sl_status st, const char *fmt, ...) {
    char prev[SL_ERROR_BUF];
    memcpy(prev, tls_error, sizeof prev);
    int n = snprintf(tls_error, sizeof tls_error, "%s:%d: ", basename_of(file), line);
    if (n < 0 || (size_t)n >= sizeof tls_error)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(tls_error + n, sizeof tls_error - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t used = (size_t)n + (size_t)m;
    if (prev[0] && used + 3 < sizeof tls_error)
        snprintf(tls_error + used, sizeof tls_error - used, ": %s", prev);
    return st;
}

const char *sl_error_message(void) { return tls_error; }

void sl_error_clear(void) { tls_error[0] = '\0'; }
