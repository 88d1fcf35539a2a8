#include "runtime/mem.h"

#include "runtime/check.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char *const category_names[MEM_CATEGORY_COUNT] = {
    "params", "grads", "optimizer", "gathered", "activations", "comm", "workspace", "data",
};

void mem_accountant_init(mem_accountant *acct) {
    for (int i = 0; i < MEM_CATEGORY_COUNT; i++) {
        atomic_init(&acct->current[i], 0);
        atomic_init(&acct->peak[i], 0);
    }
    atomic_init(&acct->total_current, 0);
    atomic_init(&acct->total_peak, 0);
}

const char *mem_category_name(mem_category cat) {
    return (unsigned)cat < MEM_CATEGORY_COUNT ? category_names[cat] : "?";
}

static void raise_peak(_Atomic int64_t *peak, int64_t value) {
    int64_t old = atomic_load(peak);
    while (value > old && !atomic_compare_exchange_weak(peak, &old, value)) {
    }
}

void mem_record_alloc(mem_accountant *acct, mem_category cat, size_t bytes) {
    if (!acct || (unsigned)cat >= MEM_CATEGORY_COUNT)
        return;
    int64_t now = atomic_fetch_add(&acct->current[cat], (int64_t)bytes) + (int64_t)bytes;
    raise_peak(&acct->peak[cat], now);
    int64_t tot = atomic_fetch_add(&acct->total_current, (int64_t)bytes) + (int64_t)bytes;
    raise_peak(&acct->total_peak, tot);
}

void mem_record_free(mem_accountant *acct, mem_category cat, size_t bytes) {
    if (!acct || (unsigned)cat >= MEM_CATEGORY_COUNT)
        return;
    atomic_fetch_sub(&acct->current[cat], (int64_t)bytes);
    atomic_fetch_sub(&acct->total_current, (int64_t)bytes);
}

int64_t mem_current(const mem_accountant *acct, mem_category cat) {
    return atomic_load(&((mem_accountant *)acct)->current[cat]);
}

int64_t mem_peak(const mem_accountant *acct, mem_category cat) {
    return atomic_load(&((mem_accountant *)acct)->peak[cat]);
}

int64_t mem_current_total(const mem_accountant *acct) {
    return atomic_load(&((mem_accountant *)acct)->total_current);
}

int64_t mem_peak_total(const mem_accountant *acct) {
    return atomic_load(&((mem_accountant *)acct)->total_peak);
}

void *mem_host_alloc(mem_accountant *acct, mem_category cat, size_t bytes) {
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded == 0)
        rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (!p)
        return NULL;
    memset(p, 0, rounded);
    mem_record_alloc(acct, cat, bytes);
    return p;
}

void mem_host_free(mem_accountant *acct, mem_category cat, void *ptr, size_t bytes) {
    if (!ptr)
        return;
    free(ptr);
    mem_record_free(acct, cat, bytes);
}

int64_t mem_process_peak_rss(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (int64_t)ru.ru_maxrss * 1024;
}

size_t mem_grow_cap(size_t cap, size_t need, size_t first) {
    size_t nc = cap ? cap : first;
    while (nc < need)
        nc *= 2;
    return nc;
}

sl_status mem_grow_bytes(char **buf, size_t *cap, size_t need, size_t first) {
    if (need <= *cap)
        return SL_OK;
    size_t nc = mem_grow_cap(*cap, need, first);
    char *p = realloc(*buf, nc);
    SL_CHECK_ALLOC(p, nc);
    *buf = p;
    *cap = nc;
    return SL_OK;
}
