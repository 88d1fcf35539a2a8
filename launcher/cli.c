#include "launcher/cli.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>
#include <xxhash.h>
#include <zstd.h>

#include "kernels/device_info.h"
#include "runtime/check.h"
#include "runtime/log.h"

static bool is_flag(const char *name, const char *const *flags) {
    for (int i = 0; flags && flags[i]; i++)
        if (strcmp(flags[i], name) == 0)
            return true;
    return false;
}

sl_status cli_parse(cli_args *a, int argc, char **argv, const char *const *flags) {
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--") == 0) {
            for (i++; i < argc; i++) {
                if (a->n_pos >= CLI_MAX_POS)
                    return sl_errorf(SL_ERR_INVALID, "too many arguments");
                a->pos[a->n_pos++] = argv[i];
            }
            break;
        }
        if (strncmp(s, "--", 2) != 0 || s[2] == 0) {
            if (a->n_pos >= CLI_MAX_POS)
                return sl_errorf(SL_ERR_INVALID, "too many arguments");
            a->pos[a->n_pos++] = s;
            continue;
        }
        if (a->n_opts >= CLI_MAX_OPTS)
            return sl_errorf(SL_ERR_INVALID, "too many options");
        cli_opt *o = &a->opts[a->n_opts++];
        const char *eq = strchr(s, '=');
        if (eq) {
            /* --name=value: keep the name in argv by cutting at '=' */
            argv[i][eq - s] = 0;
            o->name = s + 2;
            o->value = eq + 1;
            if (is_flag(o->name, flags))
                return sl_errorf(SL_ERR_INVALID, "option --%s takes no value", o->name);
            continue;
        }
        o->name = s + 2;
        if (is_flag(o->name, flags))
            continue;
        if (i + 1 >= argc)
            return sl_errorf(SL_ERR_INVALID, "option --%s needs a value", o->name);
        o->value = argv[++i];
    }
    return SL_OK;
}

const char *cli_get(const cli_args *a, const char *name) {
    const char *v = NULL;
    for (int i = 0; i < a->n_opts; i++)
        if (strcmp(a->opts[i].name, name) == 0)
            v = a->opts[i].value;
    return v;
}

bool cli_has(const cli_args *a, const char *name) {
    for (int i = 0; i < a->n_opts; i++)
        if (strcmp(a->opts[i].name, name) == 0)
            return true;
    return false;
}

static int edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 63 || m > 63)
        return 99;
    int d[64][64];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            int x = d[i - 1][j] + 1, y = d[i][j - 1] + 1;
            d[i][j] = c < x ? (c < y ? c : y) : (x < y ? x : y);
            /* a swap of two neighbours ("trian") counts as one edit */
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < d[i][j])
                d[i][j] = d[i - 2][j - 2] + 1;
        }
    return d[n][m];
}

const char *cli_nearest(const char *name, const char *const *candidates) {
    const char *best = NULL;
    int bd = 1 << 30;
    size_t n = strlen(name);
    for (int k = 0; candidates[k]; k++) {
        int d = edit_distance(name, candidates[k]);
        /* a prefix ("--temp" for "--temperature") is a likely meaning too */
        if (n >= 3 && strncmp(candidates[k], name, n) == 0)
            d = 1;
        if (d < bd) {
            bd = d;
            best = candidates[k];
        }
    }
    return best && bd <= 2 + (int)n / 4 ? best : NULL;
}

sl_status cli_check_known(const cli_args *a, const char *const *known) {
    for (int i = 0; i < a->n_opts; i++) {
        bool ok = false;
        for (int k = 0; known[k]; k++)
            ok |= strcmp(known[k], a->opts[i].name) == 0;
        if (!ok) {
            const char *near = cli_nearest(a->opts[i].name, known);
            if (near)
                return sl_errorf(SL_ERR_INVALID, "unknown option --%s; did you mean --%s?", a->opts[i].name, near);
            return sl_errorf(SL_ERR_INVALID, "unknown option --%s", a->opts[i].name);
        }
    }
    return SL_OK;
}

sl_status cli_get_int(const cli_args *a, const char *name, long long lo, long long hi, long long *v) {
    const char *s = cli_get(a, name);
    if (!s)
        return SL_OK;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi)
        return sl_errorf(SL_ERR_INVALID, "--%s \"%s\": expected an integer in [%lld, %lld]", name, s, lo, hi);
    *v = x;
    return SL_OK;
}

sl_status cli_get_float(const cli_args *a, const char *name, float *v) {
    const char *s = cli_get(a, name);
    if (!s)
        return SL_OK;
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(x))
        return sl_errorf(SL_ERR_INVALID, "--%s \"%s\": expected a number", name, s);
    *v = (float)x;
    return SL_OK;
}

sl_status cli_get_backend(const cli_args *a, bool *cuda) {
    const char *b = cli_get(a, "backend");
    if (!b)
        return SL_OK;
    if (strcmp(b, "cuda") != 0 && strcmp(b, "cpu") != 0)
        return sl_errorf(SL_ERR_INVALID, "--backend \"%s\": expected cpu or cuda", b);
    *cuda = strcmp(b, "cuda") == 0;
    return SL_OK;
}

sl_status cli_read_stream(FILE *f, const char *what, char **out, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    SL_CHECK_ALLOC(buf, cap);
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return sl_errorf(SL_ERR_NOMEM, "out of memory reading %s (%zu bytes)", what, cap * 2);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        return sl_errorf(SL_ERR_IO, "error reading %s", what);
    }
    *out = buf;
    *len = n;
    return SL_OK;
}

sl_status cli_load_config(const cli_args *a, sl_config *cfg) {
    config_defaults(cfg);
    for (int i = 0; i < a->n_opts; i++)
        if (strcmp(a->opts[i].name, "config") == 0)
            SL_TRY(config_load_file(cfg, a->opts[i].value));
    for (int i = 0; i < a->n_opts; i++)
        if (strcmp(a->opts[i].name, "set") == 0)
            SL_TRY(config_set_override(cfg, a->opts[i].value));
    return config_finalize(cfg);
}

int cli_exit_code(sl_status st) {
    switch (st) {
    case SL_OK:
        return SL_EXIT_OK;
    case SL_ERR_INVALID:
        return SL_EXIT_USAGE;
    case SL_ERR_TIMEOUT:
        return SL_EXIT_TIMEOUT;
    case SL_ERR_INTERRUPTED:
        return SL_EXIT_PREEMPTED;
    default:
        return SL_EXIT_FAILURE;
    }
}

void cli_log_init_host(void) {
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    log_init(-1, host, LOG_LEVEL_INFO);
}

int cli_env_rank(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID", NULL};
    for (int i = 0; vars[i]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v)
            return atoi(v);
    }
    return -1;
}

int cli_report(const char *cmd, sl_status st) {
    if (st == SL_OK)
        return SL_EXIT_OK;
    /* The message goes through the logger for the rank/host prefix. */
    log_msg(LOG_LEVEL_ERROR, false, "shardlm %s: %s [%s]", cmd, sl_error_message(), sl_status_name(st));
    return cli_exit_code(st);
}

void cli_print_version(FILE *out) {
    device_info di;
    device_info_query(&di);
    fprintf(out, "shardlm %s (git %s)\n", SHARDLM_VERSION, SHARDLM_GIT_HASH);
    if (device_build_has_cuda())
        fprintf(out, "  CUDA: on (runtime %d.%d, driver %d.%d, cuBLASLt %zu, NCCL %d; %d device(s)%s%s)\n",
                di.runtime_version / 1000, (di.runtime_version % 1000) / 10, di.driver_version / 1000,
                (di.driver_version % 1000) / 10, di.cublaslt_version, di.nccl_version, di.count,
                di.note[0] ? ": " : "", di.note);
    else
        fprintf(out, "  CUDA: off (%s)\n", di.note);
    char mpi[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(mpi, &len);
    char *nl = strchr(mpi, ',');
    if (nl)
        *nl = 0;
    unsigned hmaj, hmin, hrel;
    H5get_libversion(&hmaj, &hmin, &hrel);
    char pcre[64] = "";
    pcre2_config(PCRE2_CONFIG_VERSION, pcre);
    unsigned xx = XXH_versionNumber();
    fprintf(out, "  MPI: %s\n", mpi);
    fprintf(out, "  HDF5 %u.%u.%u, zstd %s, cJSON %s, OpenBLAS (%s)\n", hmaj, hmin, hrel,
            ZSTD_versionString(), cJSON_Version(), openblas_get_config());
    fprintf(out, "  PCRE2 %s, utf8proc %s, xxHash %u.%u.%u\n", pcre, utf8proc_version(), xx / 10000,
            (xx / 100) % 100, xx % 100);
}
