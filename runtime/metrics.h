/* runtime/metrics.h: the run's metrics: metrics.jsonl and TensorBoard scalars.
 *
 * defines: metrics_writer, metrics_open, metrics_close, metrics_write,
 *          metrics_write_group, metrics_mark,
 *          metrics_median, crc32c, tfrecord_masked_crc
 *
 * One writer per run, on rank 0 only. Each metrics_write appends one JSON
 * line {"step": N, "time": unix seconds, "<key>": value, ...} to
 * <run_dir>/metrics.jsonl (flushed,
 * so a crash loses at most the line being written) and, when enabled, one
 * TensorBoard Event with a scalar summary per key to
 * <run_dir>/tb/events.out.tfevents.<time>.<host> (TFRecord framing: u64
 * length, masked CRC32C of the length, the Event protobuf, masked CRC32C of
 * the data). The protobuf is encoded by hand (wall_time = 1, step = 2,
 * file_version = 3, summary = 5; Summary.value = 1; Value.tag = 1,
 * Value.simple_value = 2). Does not read metrics back.
 */
#ifndef SL_RUNTIME_METRICS_H
#define SL_RUNTIME_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

typedef struct metrics_writer metrics_writer;

typedef struct {
    const char *key;
    double value;
} metric_kv;

/* Opens (appends to) <run_dir>/metrics.jsonl and, with tensorboard, creates
 * a new event file. The caller destroys with metrics_close. */
sl_status metrics_open(const char *run_dir, bool tensorboard, metrics_writer **out);
sl_status metrics_write(metrics_writer *w, int64_t step, const metric_kv *kv, int n);
/* The same with TensorBoard tags "<group>/<key>" (group NULL: "<key>");
 * metrics.jsonl keys stay bare. */
sl_status metrics_write_group(metrics_writer *w, int64_t step, const char *group, const metric_kv *kv, int n);
/* A marker line {"step": N, "time": t, "event": "<event>", "detail": "..."}
 * (a restart after resume; no metric values, no TensorBoard event). */
sl_status metrics_mark(metrics_writer *w, int64_t step, const char *event, const char *detail);
void metrics_close(metrics_writer *w);
/* Path of the event file ("" without TensorBoard). */
const char *metrics_event_path(const metrics_writer *w);

/* CRC-32C (Castagnoli), as TFRecord uses. */
uint32_t crc32c(const void *data, size_t len);
uint32_t tfrecord_masked_crc(const void *data, size_t len);

/* The median of v[0..n) (the mean of the two middle values when n is
 * even); sorts v ascending in place, so v[0] and v[n-1] are then the
 * minimum and maximum. n >= 1. */
double metrics_median(double *v, int n);

#endif
