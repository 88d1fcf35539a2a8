#include "runtime/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Set once by log_init before threads exist; read-only afterwards. The only
 * process-wide state in shardlm, because a log line must be writable from any
 * depth without threading a context through every call. */
static struct {
    int rank;
    char host[64];
    log_level level;
} g_log = {-1, "", LOG_LEVEL_INFO};

void log_init(int rank, const char *host, log_level level) {
    g_log.rank = rank;
    snprintf(g_log.host, sizeof g_log.host, "%s", host ? host : "");
    g_log.level = level;
}

void log_set_level(log_level level) { g_log.level = level; }
log_level log_get_level(void) { return g_log.level; }
int log_rank(void) { return g_log.rank; }

bool log_level_parse(const char *s, log_level *out) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (log_level)i;
            return true;
        }
    }
    return false;
}

void log_msg(log_level level, bool rank0_only, const char *fmt, ...) {
    if (level < g_log.level)
        return;
    if (rank0_only && g_log.rank > 0)
        return;
    static const char *tags[] = {"debug", "info", "warn", "error"};
    char line[8192];
    int n;
    if (g_log.rank >= 0)
        n = snprintf(line, sizeof line, "[r%d %s] %s: ", g_log.rank, g_log.host, tags[level]);
    else
        n = snprintf(line, sizeof line, "%s: ", tags[level]);
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m > 0 ? (size_t)m : 0);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}

bool log_is_tty(void) {
    return isatty(STDERR_FILENO) && getenv("SLURM_JOB_ID") == NULL;
}

double sl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct timespec sl_deadline_in(double seconds) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double whole = (double)(time_t)seconds;
    ts.tv_sec += (time_t)seconds;
    ts.tv_nsec += (long)((seconds - whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

void sl_sleep_us(long us) {
    struct timespec ts = {us / 1000000L, (us % 1000000L) * 1000L};
    nanosleep(&ts, NULL);
}

void log_progress_begin(log_progress *p, const char *what, uint64_t total) {
    p->what = what;
    p->total = total;
    p->done = 0;
    p->last_decile = -1;
    p->t_start = sl_now();
    p->tty = log_is_tty() && g_log.rank <= 0;
}

void log_progress_update(log_progress *p, uint64_t done) {
    p->done = done;
    if (g_log.rank > 0)
        return;
    double frac = p->total ? (double)done / (double)p->total : 0.0;
    if (frac > 1.0)
        frac = 1.0;
    if (p->tty) {
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r%s [%s] %5.1f%% %.1fs", p->what, bar, 100 * frac, sl_now() - p->t_start);
        fflush(stderr);
    } else {
        int decile = (int)(frac * 10);
        if (decile > p->last_decile) {
            p->last_decile = decile;
            log_msg(LOG_LEVEL_INFO, true, "%s: %d%% (%.1fs)", p->what, decile * 10, sl_now() - p->t_start);
        }
    }
}

void log_progress_end(log_progress *p) {
    if (g_log.rank > 0)
        return;
    if (p->tty) {
        log_progress_update(p, p->total);
        fputc('\n', stderr);
    } else if (p->last_decile < 10) {
        p->last_decile = 9;
        log_progress_update(p, p->total);
    }
}
