/* launcher/cli.h: option parsing and error reporting shared by commands.
 *
 * defines: cli_args, cli_parse, cli_opt, cli_get_int, cli_get_float, cli_get_backend,
 *          cli_read_stream, cli_load_config, cli_exit_code, cli_report,
 *          cli_log_init_host, cli_print_version
 *
 * Options are "--name value" or "--name=value"; flags are "--name".
 * cli_load_config applies the --config files in order, then the --set
 * overrides, then config_finalize.
 */
#ifndef SL_LAUNCHER_CLI_H
#define SL_LAUNCHER_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "runtime/config.h"
#include "runtime/status.h"

#define CLI_MAX_OPTS 64
#define CLI_MAX_POS 64

typedef struct {
    const char *name;  /* without leading dashes */
    const char *value; /* NULL for a flag */
} cli_opt;

typedef struct {
    cli_opt opts[CLI_MAX_OPTS];
    int n_opts;
    const char *pos[CLI_MAX_POS];
    int n_pos;
} cli_args;

/* flags: NULL-terminated names that take no value (e.g. {"help", NULL}).
 * Every other --option takes a value. */
sl_status cli_parse(cli_args *a, int argc, char **argv, const char *const *flags);
/* Last value of an option (or NULL); cli_has for flags. */
const char *cli_get(const cli_args *a, const char *name);
bool cli_has(const cli_args *a, const char *name);
/* Rejects options not in `known` (NULL-terminated), suggesting the nearest
 * known one ("did you mean --temperature?"); the usage text follows. */
sl_status cli_check_known(const cli_args *a, const char *const *known);
/* The candidate (NULL-terminated list) nearest to name by edit distance (a
 * swap of neighbours is one edit; a prefix of 3+ characters counts as
 * near), or NULL when none is close. */
const char *cli_nearest(const char *name, const char *const *candidates);
/* The value of --name as an integer in [lo, hi] into *v; *v is left as it
 * is (the caller's default) when the option is absent. SL_ERR_INVALID
 * naming the option and the range otherwise. */
sl_status cli_get_int(const cli_args *a, const char *name, long long lo, long long hi, long long *v);
/* The same for a finite number (no range). */
sl_status cli_get_float(const cli_args *a, const char *name, float *v);
/* --backend cpu|cuda: *cuda = true for cuda, false for cpu, left as it is
 * when the option is absent; SL_ERR_INVALID for any other value. */
sl_status cli_get_backend(const cli_args *a, bool *cuda);

/* Reads f to its end into a malloc'd buffer (*out, caller frees; not
 * NUL-terminated) of *len bytes. `what` names the stream in errors ("stdin"). */
sl_status cli_read_stream(FILE *f, const char *what, char **out, size_t *len);

sl_status cli_load_config(const cli_args *a, sl_config *cfg);

/* SL_ERR_INVALID -> 2, SL_ERR_TIMEOUT -> 124, SL_ERR_INTERRUPTED -> 75, else 1. */
int cli_exit_code(sl_status st);
/* Prints "shardlm <cmd>: error: <message>" (with rank and host under MPI)
 * and returns cli_exit_code(st). */
int cli_report(const char *cmd, sl_status st);
/* For commands that run as one process (no MPI rank): log lines name this
 * host, at level info. */
void cli_log_init_host(void);

/* This process's rank from the launcher's environment (mpirun, srun),
 * before MPI_Init; -1 when not launched as one of several ranks. */
int cli_env_rank(void);

void cli_print_version(FILE *out);

#endif
