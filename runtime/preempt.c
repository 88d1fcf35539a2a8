#define _GNU_SOURCE
#include "runtime/preempt.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

static volatile sig_atomic_t g_preempt_signal = 0;

static void on_signal(int sig) { g_preempt_signal = sig; }

sl_status preempt_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* blocking reads and MPI waits resume */
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGUSR1, &sa, NULL) != 0)
        return sl_errorf(SL_ERR_INTERNAL, "cannot install SIGTERM/SIGUSR1 handlers: %s", strerror(errno));
    return SL_OK;
}

bool preempt_requested(void) { return g_preempt_signal != 0; }
int preempt_signal(void) { return (int)g_preempt_signal; }
void preempt_reset(void) { g_preempt_signal = 0; }
