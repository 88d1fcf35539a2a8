/* shardlm inspect: print an HDF5 file's attributes and statistics and verify
 * every chunk. Dispatches on the root "format" attribute through the table
 * below: token shards today; checkpoint shards add a row when they land. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/ckpt_file.h"
#include "runtime/h5io.h"
#include "data/shard.h"
#include "ckpt/ckpt.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "runtime/log.h"

void cmd_inspect_usage(FILE *out) {
    fprintf(out,
            "usage: shardlm inspect FILE.h5|CHECKPOINT_DIR...\n\n"
            "Prints each file's attributes and statistics and reads every chunk, verifying\n"
            "checksums and token ids (< vocab_size). Exit 1 when any file fails, naming the\n"
            "file and the chunk. Knows: token shards (format \"%s\"), checkpoint rank files\n"
            "(\"%s\"), checkpoint step folders (meta.json + rank files) and checkpoints folders\n"
            "(lists them, describes the latest).\n",
            SHARD_FORMAT_NAME, CKPT_FILE_FORMAT_NAME);
}

static sl_status inspect_token_shard(const char *path) {
    shard_reader *r;
    SL_TRY(shard_open(path, &r));
    const shard_info *in = shard_info_get(r);
    const shard_meta *m = &in->meta;
    printf("%s\n", path);
    printf("  format          %s version %d\n", in->format, in->version);
    printf("  tokenizer       %s (hash %s)\n", m->tokenizer_name, m->tokenizer_hash);
    printf("  vocab_size      %u\n", m->vocab_size);
    printf("  special ids     bos %" PRId64 ", eos %" PRId64 ", im_start %" PRId64 ", im_end %" PRId64 "\n",
           m->bos_id, m->eos_id, m->im_start_id, m->im_end_id);
    printf("  source          %s\n", m->source);
    if (in->pairs)
        printf("  layout          pairs: %" PRIu64 " preference pairs (prompt, chosen, rejected; "
               "data.mode = pairs)\n", in->n_docs / 3);
    else
        printf("  layout          docs\n");
    printf("  documents       %" PRIu64 "\n", in->n_docs);
    printf("  tokens          %" PRIu64 " in chunks of %u\n", in->n_tokens, in->chunk_tokens);
    printf("  loss_mask       %s\n", in->has_loss_mask ? "yes" : "no (all tokens train)");
    shard_verify_stats vs;
    sl_status st = shard_verify(r, &vs);
    if (st == SL_OK) {
        double raw = (double)in->n_tokens * (4 + (in->has_loss_mask ? 1 : 0));
        printf("  doc length      min %" PRIu64 ", mean %.1f, max %" PRIu64 " tokens\n", vs.min_doc,
               in->n_docs ? (double)in->n_tokens / (double)in->n_docs : 0.0, vs.max_doc);
        printf("  trained tokens  %" PRIu64 " (%.1f%%)\n", vs.mask_ones,
               in->n_tokens ? 100.0 * (double)vs.mask_ones / (double)in->n_tokens : 0.0);
        printf("  max token id    %u\n", vs.max_id);
        printf("  stored          %.2f MB (%.2fx smaller than raw)\n", (double)vs.stored_bytes / 1e6,
               vs.stored_bytes ? raw / (double)vs.stored_bytes : 0.0);
        printf("  verified        %" PRIu64 " chunks ok\n", vs.chunks);
    }
    shard_close(r);
    return st;
}

typedef struct {
    const char *format;
    sl_status (*inspect)(const char *path);
} inspector;

static const inspector inspectors[] = {
    {SHARD_FORMAT_NAME, inspect_token_shard},
    {CKPT_FILE_FORMAT_NAME, ckpt_describe},
};

static sl_status inspect_file(const char *path) {
    if (ckpt_looks_like(path)) /* a checkpoint folder (ckpt/ckpt.h) */
        return ckpt_describe(path);
    char format[128];
    SL_TRY(h5io_read_format(path, format, sizeof format));
    for (size_t i = 0; i < sizeof inspectors / sizeof inspectors[0]; i++)
        if (strcmp(format, inspectors[i].format) == 0)
            return inspectors[i].inspect(path);
    return sl_errorf(SL_ERR_UNSUPPORTED, "%s: format \"%s\" is not one shardlm inspect knows (%s, %s)",
                     path, format, SHARD_FORMAT_NAME, CKPT_FILE_FORMAT_NAME);
}

int cmd_inspect(int argc, char **argv) {
    cli_args a;
    sl_status st = cli_parse(&a, argc, argv, NULL);
    if (st == SL_OK) {
        static const char *const known[] = {NULL};
        st = cli_check_known(&a, known);
    }
    if (st != SL_OK || a.n_pos == 0) {
        if (st != SL_OK)
            cli_report("inspect", st);
        cmd_inspect_usage(stderr);
        return SL_EXIT_USAGE;
    }
    cli_log_init_host();
    int code = SL_EXIT_OK;
    for (int i = 0; i < a.n_pos; i++) {
        st = inspect_file(a.pos[i]);
        if (st != SL_OK) {
            fflush(stdout);
            code = cli_report("inspect", st);
        }
    }
    return code;
}
