/* runtime/mem.h: the memory accountant, one per rank.
 *
 * defines: mem_category, mem_accountant, mem_accountant_init, mem_record_alloc,
 *          mem_record_free, mem_current, mem_peak, mem_peak_total,
 *          mem_category_name, mem_host_alloc, mem_host_free, mem_grow_cap,
 *          mem_grow_bytes
 *
 * Records current and peak bytes per category (params, grads, optimizer,
 * gathered, activations, comm buffers, workspace, data). params, grads and
 * optimizer are a rank's shards only; "gathered" holds the full-size unit
 * buffers FSDP keeps for the units it is computing (the all-gather pool,
 * SHARD_GRAD_OP's kept units, the gradient pool or per_step's full-size
 * gradients). Host allocations made through
 * mem_host_alloc are 64-byte aligned and recorded; device allocators record
 * through mem_record_alloc/free. Counters are atomic, so recording is safe
 * from the comm and loader threads. Does not own any memory itself.
 */
#ifndef SL_RUNTIME_MEM_H
#define SL_RUNTIME_MEM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

typedef enum {
    MEM_CATEGORY_PARAMS = 0,
    MEM_CATEGORY_GRADS,
    MEM_CATEGORY_OPTIMIZER,
    MEM_CATEGORY_GATHERED,
    MEM_CATEGORY_ACTIVATIONS,
    MEM_CATEGORY_COMM,
    MEM_CATEGORY_WORKSPACE,
    MEM_CATEGORY_DATA,
    MEM_CATEGORY_COUNT
} mem_category;

typedef struct {
    _Atomic int64_t current[MEM_CATEGORY_COUNT];
    _Atomic int64_t peak[MEM_CATEGORY_COUNT];
    _Atomic int64_t total_current;
    _Atomic int64_t total_peak;
} mem_accountant;

void mem_accountant_init(mem_accountant *acct);
const char *mem_category_name(mem_category cat);

void mem_record_alloc(mem_accountant *acct, mem_category cat, size_t bytes);
void mem_record_free(mem_accountant *acct, mem_category cat, size_t bytes);

int64_t mem_current(const mem_accountant *acct, mem_category cat);
int64_t mem_peak(const mem_accountant *acct, mem_category cat);
int64_t mem_current_total(const mem_accountant *acct);
/* Peak of the sum over categories (not the sum of per-category peaks). */
int64_t mem_peak_total(const mem_accountant *acct);

/* 64-byte aligned, zero-filled host memory recorded under cat. Returns NULL
 * on failure (and records nothing). acct may be NULL (not recorded).
 * Free with mem_host_free with the same acct, cat and bytes. */
void *mem_host_alloc(mem_accountant *acct, mem_category cat, size_t bytes);
void mem_host_free(mem_accountant *acct, mem_category cat, void *ptr, size_t bytes);

/* Growing buffers (not recorded). The capacity that holds need elements:
 * cap (first when cap is 0) doubled until it holds need; cap itself when it
 * already does. */
size_t mem_grow_cap(size_t cap, size_t need, size_t first);

/* Grows the byte buffer *buf of capacity *cap (realloc, by mem_grow_cap) to
 * hold at least need bytes. On SL_ERR_NOMEM ("out of memory allocating N
 * bytes") *buf and *cap are unchanged; the caller keeps owning *buf. */
sl_status mem_grow_bytes(char **buf, size_t *cap, size_t need, size_t first);

/* Peak resident set size of this process in bytes (from getrusage). */
int64_t mem_process_peak_rss(void);

#endif
