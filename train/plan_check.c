/* train/plan_check.c: what a rank can use (host limits) and the pre-flight
 * check of train_job_setup (train/plan.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "runtime/check.h"
#include "runtime/log.h"
#include "train/bench_device.h"
#include "train/plan.h"

#define GIB(b) ((double)(b) / 1073741824.0)

/* The first integer after `key` in a "key value" file (/proc/meminfo in kB). */
static bool read_keyed(const char *path, const char *key, int64_t *out) {
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[256];
    bool found = false;
    size_t kl = strlen(key);
    while (!found && fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0)
            found = sscanf(line + kl, "%" SCNd64, out) == 1;
    fclose(f);
    return found;
}

/* One integer file (cgroup); false for "max" or a missing file. */
static bool read_int_file(const char *path, int64_t *out) {
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool ok = fscanf(f, "%" SCNd64, out) == 1;
    fclose(f);
    return ok;
}

static void note(plan_limit *o, const char *text) {
    size_t n = strlen(o->why);
    snprintf(o->why + n, sizeof o->why - n, "%s%s", n ? "; " : "", text);
}

static void take(plan_limit *o, int64_t avail) {
    if (avail < 0)
        avail = 0;
    if (avail < o->bytes)
        o->bytes = avail;
}

/* cgroup v2: this process's cgroup and its ancestors (the tightest
 * memory.max - memory.current); v1: the memory controller's limit. */
static void cgroup_limit(int ranks, plan_limit *o) {
    char rel[512] = "";
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f) {
        char line[600];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "0::", 3) == 0) {
                snprintf(rel, sizeof rel, "%s", line + 3);
                rel[strcspn(rel, "\n")] = 0;
            }
        fclose(f);
    }
    int64_t best = INT64_MAX, best_max = 0;
    for (int depth = 0; depth < 32; depth++) {
        char path[700];
        int64_t max = 0, cur = 0;
        snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.max", rel);
        if (read_int_file(path, &max)) {
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.current", rel);
            if (read_int_file(path, &cur) && max - cur < best) {
                best = max - cur;
                best_max = max;
            }
        }
        char *slash = strrchr(rel, '/');
        if (!slash || rel[0] == 0)
            break;
        *slash = 0;
    }
    int64_t lim = 0, use = 0;
    if (best == INT64_MAX && read_int_file("/sys/fs/cgroup/memory/memory.limit_in_bytes", &lim) &&
        lim < ((int64_t)1 << 60) && read_int_file("/sys/fs/cgroup/memory/memory.usage_in_bytes", &use)) {
        best = lim - use;
        best_max = lim;
    }
    if (best == INT64_MAX)
        return;
    take(o, best / ranks);
    char t[128];
    snprintf(t, sizeof t, "cgroup memory limit %.2f GiB, %.2f GiB free there, shared by %d rank(s)",
             GIB(best_max), GIB(best), ranks);
    note(o, t);
}

void plan_host_limit(int ranks_on_host, plan_limit *o) {
    memset(o, 0, sizeof *o);
    o->bytes = INT64_MAX;
    int ranks = ranks_on_host > 0 ? ranks_on_host : 1;
    int64_t kb = 0;
    if (read_keyed("/proc/meminfo", "MemAvailable:", &kb)) {
        take(o, kb * 1024 / ranks);
        char t[96];
        snprintf(t, sizeof t, "MemAvailable %.2f GiB / %d rank(s) on the host", GIB(kb * 1024), ranks);
        note(o, t);
    }
    cgroup_limit(ranks, o);
    struct rlimit rl;
    int64_t vm_kb = 0;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        read_keyed("/proc/self/status", "VmSize:", &vm_kb)) {
        take(o, (int64_t)rl.rlim_cur - vm_kb * 1024);
        char t[96];
        snprintf(t, sizeof t, "RLIMIT_AS %.2f GiB, %.2f GiB of address space in use", GIB(rl.rlim_cur),
                 GIB(vm_kb * 1024));
        note(o, t);
    }
    if (!o->why[0])
        snprintf(o->why, sizeof o->why, "no limit known (no /proc/meminfo, cgroup or RLIMIT_AS)");
}

/* Ranks sharing this host's memory (topology's local_world is a pretend node under
 * parallel.ranks_per_node): the MPI shared-memory group. */
static int ranks_on_host(const topology *t) {
    if (!t->pretend_nodes)
        return t->local_world;
    MPI_Comm host = MPI_COMM_NULL;
    int n = t->local_world;
    if (MPI_Comm_split_type(t->comm, MPI_COMM_TYPE_SHARED, t->rank, MPI_INFO_NULL, &host) == MPI_SUCCESS) {
        MPI_Comm_size(host, &n);
        MPI_Comm_free(&host);
    }
    return n;
}

static void describe_need(const plan_result *r, int64_t extra, const char *extra_name, char *buf, size_t cap) {
    size_t n = 0;
    for (int c = 0; c < MEM_CATEGORY_COUNT && n < cap; c++) {
        if (r->bytes[c] == 0)
            continue;
        n += (size_t)snprintf(buf + n, cap - n, "%s%s %.2f GiB", n ? ", " : "", mem_category_name((mem_category)c),
                              GIB(r->bytes[c]));
    }
    if (n < cap && extra > 0)
        snprintf(buf + n, cap - n, ", %s %.2f GiB", extra_name, GIB(extra));
}

sl_status plan_preflight(const sl_config *cfg, const topology *t, bool cuda, comm *world) {
    const char *off = getenv("SHARDLM_NO_PREFLIGHT");
    if (off && strcmp(off, "1") == 0)
        return SL_OK;
    plan_opts o = {.nodes = t->n_nodes, .per_node = t->local_world, .gpu = cuda ? PLAN_GPU_H100 : PLAN_GPU_CPU,
                   .price = -1};
    if (!t->uniform) /* the memory per rank does not depend on how ranks are placed, except HYBRID's */
        o.nodes = 1, o.per_node = t->world;
    plan_result r;
    SL_TRY(plan_compute(cfg, &o, &r));
    plan_limit lim;
    int64_t extra = 0;
    const char *extra_name = "";
    if (cuda) { /* free device memory now: the CUDA context and cuBLASLt are already in use */
        bench_device d;
        SL_TRY(bench_device_query(true, &d));
        memset(&lim, 0, sizeof lim);
        lim.bytes = (int64_t)(d.mem_total - d.mem_used);
        snprintf(lim.why, sizeof lim.why, "free device memory %.2f GiB of %.2f GiB on %s", GIB(lim.bytes),
                 GIB(d.mem_total), d.name);
    } else {
        plan_host_limit(ranks_on_host(t), &lim);
        extra = PLAN_CPU_RUNTIME_BYTES;
        extra_name = "runtime outside the accountant";
    }
    int64_t need = r.total + extra;
    /* every rank refuses together: the largest shortfall decides */
    double v[2] = {(double)need - (double)lim.bytes, 0};
    double mine = v[0];
    SL_TRY(comm_all_reduce(world, v, v, 1, SL_DTYPE_F64, COMM_REDOP_MAX));
    if (v[0] <= 0)
        return SL_OK;
    char cats[512];
    describe_need(&r, extra, extra_name, cats, sizeof cats);
    if (mine <= 0) /* another rank is short: it says by how much; this one says what it needs */
        return sl_errorf(SL_ERR_INVALID, "pre-flight memory check: another rank lacks %.2f GiB for this run "
                         "(this rank needs %.2f GiB and has %.2f GiB); see rank 0's message for what to change",
                         GIB(v[0]), GIB(need), GIB(lim.bytes));
    char fix[600];
    int np = 0;
    np += snprintf(fix + np, sizeof fix - np, "more ranks (world %d now: params, grads and optimizer shrink "
                   "with it)", t->world);
    if (!cfg->train.recompute)
        np += snprintf(fix + np, sizeof fix - np, ", train.recompute = true (activations %.2f -> %.2f GiB)",
                       GIB(r.act_full), GIB(r.act_recompute));
    if (cfg->train.micro_batch > 1)
        np += snprintf(fix + np, sizeof fix - np, ", a smaller train.micro_batch (now %d; raise "
                       "train.grad_accum to keep the global batch)", cfg->train.micro_batch);
    if (!cfg->lora.enabled)
        np += snprintf(fix + np, sizeof fix - np, ", lora.enabled = true (no grads or optimizer state for the "
                       "base)");
    if (cfg->parallel.fsdp_mode != FSDP_MODE_FULL_SHARD)
        np += snprintf(fix + np, sizeof fix - np, ", parallel.fsdp_mode = full_shard");
    if (cfg->parallel.grad_sync == GRAD_SYNC_PER_STEP)
        snprintf(fix + np, sizeof fix - np, ", parallel.grad_sync = per_microstep");
    return sl_errorf(SL_ERR_INVALID,
                     "pre-flight memory check: this run needs %.2f GiB per rank (%s; world %d, %s, micro_batch "
                     "%d x seq_len %d) but rank %d on %s can use %.2f GiB (%s). Change: %s; `shardlm plan` "
                     "shows the plan (SHARDLM_NO_PREFLIGHT=1 skips this check)",
                     GIB(need), cats, t->world, config_enum_name("parallel.fsdp_mode", cfg->parallel.fsdp_mode),
                     cfg->train.micro_batch, cfg->data.seq_len, t->rank, t->host, GIB(lim.bytes), lim.why, fix);
}
