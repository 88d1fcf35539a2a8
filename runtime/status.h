/* runtime/status.h: status codes and error messages shared by every module.
 *
 * defines: sl_status, sl_errorf, sl_error_message, sl_error_clear, SL_TRY
 *
 * Library functions return an sl_status. On failure they record a message with
 * sl_errorf (thread-local buffer, prefixed with file:line) and return the code;
 * callers propagate with SL_TRY. Only launcher/ prints the message and exits.
 * This module does not print, allocate, or know about any external library
 * (the check macros for CUDA, MPI, HDF5 and zstd live in runtime/check.h).
 */
#ifndef SL_RUNTIME_STATUS_H
#define SL_RUNTIME_STATUS_H

typedef enum {
    SL_OK = 0,
    SL_ERR_INVALID,   /* bad argument, config value, or user input */
    SL_ERR_IO,        /* a file could not be opened, read or written */
    SL_ERR_FORMAT,    /* a file's content is malformed or corrupted */
    SL_ERR_NOMEM,     /* an allocation failed */
    SL_ERR_CUDA,      /* CUDA, cuBLASLt or NCCL reported an error */
    SL_ERR_COMM,      /* a collective or MPI call failed */
    SL_ERR_TIMEOUT,   /* a wait ran past its deadline */
    SL_ERR_UNSUPPORTED, /* valid request this build or device cannot do */
    SL_ERR_INTERNAL,  /* a broken invariant: a bug in shardlm */
    SL_ERR_INTERRUPTED, /* stopped by a signal (preemption) */
    SL_STATUS_COUNT
} sl_status;

/* Short stable name of a status ("SL_ERR_FORMAT"). Never NULL. */
const char *sl_status_name(sl_status st);

/* Records a formatted message for the calling thread and returns st. The
 * message is prefixed with "file:line: ". A later sl_errorf replaces it;
 * sl_error_wrapf prepends context to the current message instead. */
sl_status sl_errorf_at(const char *file, int line, sl_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
sl_status sl_error_wrapf_at(const char *file, int line, sl_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define sl_errorf(st, ...) sl_errorf_at(__FILE__, __LINE__, (st), __VA_ARGS__)
#define sl_error_wrapf(st, ...) sl_error_wrapf_at(__FILE__, __LINE__, (st), __VA_ARGS__)

/* The calling thread's last message ("" when none). Valid until the next
 * sl_errorf on this thread. */
const char *sl_error_message(void);
void sl_error_clear(void);

/* Propagates a non-OK status to the caller. */
#define SL_TRY(expr)                       \
    do {                                   \
        sl_status sl_try_st_ = (expr);     \
        if (sl_try_st_ != SL_OK)           \
            return sl_try_st_;             \
    } while (0)

/* Shape/dtype/argument assertion kept in release builds: records a message
 * naming the failed condition and returns SL_ERR_INVALID. */
#define SL_CHECK_ARG(cond, ...)                                              \
    do {                                                                     \
        if (!(cond))                                                         \
            return sl_errorf(SL_ERR_INVALID, __VA_ARGS__);                   \
    } while (0)

/* Exit codes of the shardlm program (documented in README). */
enum {
    SL_EXIT_OK = 0,
    SL_EXIT_FAILURE = 1,    /* runtime error (I/O, format, comm, CUDA ...) */
    SL_EXIT_USAGE = 2,      /* bad command line or config */
    SL_EXIT_PREEMPTED = 75, /* saved a checkpoint after SIGTERM/SIGUSR1; relaunch with --resume auto */
    SL_EXIT_TIMEOUT = 124,  /* a collective timed out */
};

#endif
