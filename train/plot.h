/* train/plot.h: `shardlm plot`: a run's metrics.jsonl drawn as a PNG.
 *
 * defines: plot_summary, plot_run
 *
 * Four panels against the step: training loss with the eval loss as
 * markers, learning rate, gradient norm, and eval loss alone. Each panel
 * has axes, a light grid, its title and the axis ranges printed (a built-in
 * 5x7 bitmap font: there is no plotting library in C here). After a
 * restart (metrics.jsonl's "restart" marker) a step logged twice is drawn
 * with its last value. The image is written by runtime/png.h.
 *
 * Does not: read TensorBoard files, or draw anything but these four.
 */
#ifndef SL_TRAIN_PLOT_H
#define SL_TRAIN_PLOT_H

#include <stdint.h>

#include "runtime/status.h"

typedef struct {
    int64_t train_points, eval_points, restarts;
    int64_t first_step, last_step;
    int64_t bad_lines, first_bad_line; /* lines that are not JSON (skipped) */
} plot_summary;

/* Reads <run_dir>/metrics.jsonl and writes a width x height PNG to out.
 * SL_ERR_INVALID when the file is missing or holds no step line. */
sl_status plot_run(const char *run_dir, const char *out, int width, int height, plot_summary *sum);

#endif
