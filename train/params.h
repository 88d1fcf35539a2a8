/* train/params.h: parameter groups: an FSDP instance over a model layout,
 * composed with the model (unit hooks) and the optimizer (shard lists).
 *
 * defines: train_group, train_group_create, train_group_hooks, train_group_init,
 *          train_group_load, train_group_load_from, train_group_gather,
 *          train_group_export, train_group_add_to_optim,
 *          train_local_add_to_optim
 *
 * A group is one flat-sharded set of parameters: the model's (trainable, or
 * frozen under LoRA) or the LoRA adapters' (model/lora.h's adapter layout).
 * parallel/fsdp knows units as sizes and optim/ knows shards and decay
 * segments; this is where the two meet the model's parameter table, so that
 * neither has to know models (DESIGN section 1). A training step drives every
 * group the same way (fsdp_begin_step, fsdp_begin_micro, fsdp_finish_grads;
 * a frozen group does nothing there), and only trainable groups give shards
 * to the optimizer.
 *
 * Host arrays of a whole layout are in the model's contiguous order (unit u
 * at element layout->units[u].offset), as model/hf and model/lora read and
 * write them.
 */
#ifndef SL_TRAIN_PARAMS_H
#define SL_TRAIN_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

#include "model/hf_stream.h"
#include "model/layout.h"
#include "model/model.h"
#include "optim/optim.h"
#include "parallel/fsdp.h"
#include "runtime/status.h"

typedef struct {
    const char *name;            /* "model", "lora": the checkpoint part */
    fsdp *fs;                    /* owned by the job */
    const model_layout *layout;  /* borrowed */
    bool trainable;
} train_group;

/* Creates g's fsdp instance over layout's units with base's comms, plan and
 * pool (base->unit_numel and n_units are ignored); a frozen group holds
 * parameter shards only (fsdp_opts.frozen). g->fs is owned by the caller
 * (fsdp_destroy). */
sl_status train_group_create(train_group *g, const char *name, const model_layout *layout,
                             const fsdp_opts *base, bool trainable);

/* Fills h so that the model's unit protocol (model/model.h) runs on f:
 * h->ctx = f, the five entries call fsdp_prefetch/acquire/release/
 * grad_buffer/grads_ready; h->adapter NULL. Valid while f lives. */
void train_group_hooks(fsdp *f, model_unit_hooks *h);

/* Initializes the group's shards with model_init_unit_range (the same
 * weights at every world size). */
sl_status train_group_init(const train_group *g, uint64_t seed);

/* Sets every unit's shards from host (the layout's total_numel floats, the
 * same on every rank): a Hugging Face import, a PEFT adapter. */
sl_status train_group_load(const train_group *g, const float *host);

/* Sets this rank's shards from a model folder, reading only their elements
 * (hf_reader_range): no memory proportional to the whole model. */
sl_status train_group_load_from(const train_group *g, hf_reader *r);

/* Writes the group's parameters as a Hugging Face folder one unit at a time
 * (collective: every unit is gathered over the shard group; the rank
 * holding a writer writes, w is NULL on the others). A write error on
 * that rank is returned on every rank, after every unit's collective ran. */
sl_status train_group_export(const train_group *g, hf_writer *w, comm *world);

/* Gathers every unit into host (total_numel floats) on every rank
 * (collective over the shard group). */
sl_status train_group_gather(const train_group *g, float *host);

/* Gives the group's shards to the optimizer, unit by unit in unit order,
 * with the layout's decay segments cut to each rank's shard range. */
sl_status train_group_add_to_optim(const train_group *g, optimizer *o);

/* The same for one process's contiguous buffers of a whole layout (params,
 * grads, m, v: total_numel floats of backend memory each, unit u at
 * units[u].offset): the reference tests' way into the production step. */
sl_status train_local_add_to_optim(optimizer *o, const model_layout *l, float *params, const float *grads,
                                   float *m, float *v);

#endif
