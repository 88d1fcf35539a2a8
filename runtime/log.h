/* runtime/log.h: rank-prefixed logging on stderr.
 *
 * defines: log_init, log_set_level, log_msg, LOG_DEBUG/INFO/WARN/ERROR,
 *          LOG_INFO0 (rank 0 only), log_is_tty, log_progress, and the clock
 *          helpers sl_now, sl_deadline_in, sl_sleep_us
 *
 * Lines look like "[r1 host] warn: message". log_init is called once by the
 * launcher before any thread starts; afterwards the state is read-only, so
 * logging is safe from any thread (each line is one fwrite).
 * Does not write metrics files (runtime/metrics.h does).
 */
#ifndef SL_RUNTIME_LOG_H
#define SL_RUNTIME_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

typedef enum {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR,
} log_level;

/* rank < 0 means "not under MPI yet" (no rank prefix). */
void log_init(int rank, const char *host, log_level level);
void log_set_level(log_level level);
log_level log_get_level(void);
int log_rank(void);
/* Parses "debug", "info", "warn", "error"; returns false when unknown. */
bool log_level_parse(const char *s, log_level *out);

void log_msg(log_level level, bool rank0_only, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG_DEBUG(...) log_msg(LOG_LEVEL_DEBUG, false, __VA_ARGS__)
#define LOG_INFO(...) log_msg(LOG_LEVEL_INFO, false, __VA_ARGS__)
#define LOG_WARN(...) log_msg(LOG_LEVEL_WARN, false, __VA_ARGS__)
#define LOG_ERROR(...) log_msg(LOG_LEVEL_ERROR, false, __VA_ARGS__)
#define LOG_INFO0(...) log_msg(LOG_LEVEL_INFO, true, __VA_ARGS__)
#define LOG_WARN0(...) log_msg(LOG_LEVEL_WARN, true, __VA_ARGS__)

/* True when stderr is a terminal and not under Slurm: progress bars are
 * drawn in place; otherwise progress is printed as plain lines. */
bool log_is_tty(void);

/* Progress for long work (prepare, eval, checkpoint write), rank 0 only.
 * On a terminal redraws one line; elsewhere prints at most every 10%. */
typedef struct {
    const char *what;
    uint64_t total;
    uint64_t done;
    int last_decile;
    double t_start;
    bool tty;
} log_progress;

void log_progress_begin(log_progress *p, const char *what, uint64_t total);
void log_progress_update(log_progress *p, uint64_t done);
void log_progress_end(log_progress *p);

/* Monotonic wall clock in seconds. */
double sl_now(void);
/* CLOCK_MONOTONIC now + seconds, for pthread_cond_timedwait on a condition
 * variable whose clock is CLOCK_MONOTONIC. */
struct timespec sl_deadline_in(double seconds);
/* Sleeps us microseconds (any value; interrupted sleeps end early). */
void sl_sleep_us(long us);

#endif
