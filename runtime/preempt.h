/* runtime/preempt.h: preemption signals (SIGTERM, SIGUSR1).
 *
 * defines: preempt_install, preempt_requested, preempt_signal, preempt_reset
 *
 * Slurm sends SIGTERM (or the signal of --signal, commonly USR1) before a
 * time limit or a preemption. The handler only records the signal; the
 * training loop polls preempt_requested() at each step boundary, agrees with
 * the other ranks (a max all-reduce, so every rank stops at the same step),
 * saves a checkpoint and exits with SL_EXIT_PREEMPTED (75). A second SIGTERM
 * while saving is recorded but does not interrupt the save.
 * The recorded signal is process-wide state by necessity: a signal handler
 * can only reach static storage.
 */
#ifndef SL_RUNTIME_PREEMPT_H
#define SL_RUNTIME_PREEMPT_H

#include <stdbool.h>

#include "runtime/status.h"

sl_status preempt_install(void);
bool preempt_requested(void);
/* The signal number received (0 when none). */
int preempt_signal(void);
void preempt_reset(void);

#endif
