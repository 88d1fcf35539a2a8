/* data/prepare_input.h: the record reader of shardlm prepare (internal to
 * data/prepare*.c).
 *
 * defines: prep_input, prep_record, prep_input_open, prep_input_next,
 *          prep_input_close, prep_input_total_bytes, prep_input_bytes_done,
 *          prep_input_files
 *
 * Streams the input files in order, one record at a time: a JSONL line, a
 * blank-line-separated block of a text file, or a whole text file. A record
 * longer than max_bytes is returned with oversize set and no data (counted as
 * too long), so memory stays bounded by max_bytes.
 */
#ifndef SL_DATA_PREPARE_INPUT_H
#define SL_DATA_PREPARE_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/config.h"
#include "runtime/status.h"

typedef struct prep_input prep_input;

typedef struct {
    const char *data; /* valid until the next prep_input_next */
    size_t len;
    bool is_json;
    bool oversize;
    int file;      /* index into the expanded input list */
    uint64_t line; /* first line of the record, 1-based */
} prep_record;

sl_status prep_input_open(const cfg_prepare *cfg, size_t max_bytes, prep_input **out);
/* *eof set at the end of the last file. */
sl_status prep_input_next(prep_input *in, prep_record *rec, bool *eof);
void prep_input_close(prep_input *in);
uint64_t prep_input_total_bytes(const prep_input *in);
uint64_t prep_input_bytes_done(const prep_input *in);
int prep_input_files(const prep_input *in);
const char *prep_input_file_name(const prep_input *in, int file);

#endif
