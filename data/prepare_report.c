/* data/prepare_report.c: the prepare report as JSON and as a table. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>

#include "data/prepare.h"

static void num(cJSON *o, const char *k, double v) { cJSON_AddNumberToObject(o, k, v); }

char *prepare_report_json(const prepare_report *r) {
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    num(o, "files", (double)r->files);
    num(o, "bytes_read", (double)r->bytes_read);
    num(o, "documents_read", (double)r->records);
    cJSON *d = cJSON_AddObjectToObject(o, "dropped");
    uint64_t total = 0;
    for (int i = 0; i < PREPARE_DROP_COUNT; i++) {
        num(d, prepare_drop_name((prepare_drop)i), (double)r->dropped[i]);
        total += r->dropped[i];
    }
    num(d, "total", (double)total);
    cJSON *bad = cJSON_AddArrayToObject(o, "bad_json_lines");
    for (int i = 0; bad && i < r->n_bad_json_shown; i++)
        cJSON_AddItemToArray(bad, cJSON_CreateString(r->bad_json_at[i]));
    num(o, "duplicates", (double)(r->dropped[PREPARE_DROP_EXACT_DUP] + r->dropped[PREPARE_DROP_NEAR_DUP]));
    num(o, "repaired_utf8", (double)r->repaired_utf8);
    num(o, "html_cleaned", (double)r->had_html);
    cJSON *p = cJSON_AddObjectToObject(o, "pii_masked");
    for (int i = 0; i < PII_TYPE_COUNT; i++)
        num(p, pii_type_name((pii_type)i), (double)r->pii[i]);
    num(o, "documents_text", (double)r->docs_text);
    num(o, "documents_chat", (double)r->docs_chat);
    num(o, "documents_written", (double)r->docs_written);
    num(o, "tokens_written", (double)r->tokens_written);
    num(o, "tokens_trained", (double)r->trained_tokens);
    num(o, "eval_documents", (double)r->eval_docs);
    num(o, "eval_tokens", (double)r->eval_tokens);
    num(o, "pairs_written", (double)r->pairs_written);
    num(o, "eval_pairs", (double)r->eval_pairs);
    num(o, "train_shards", r->train_shards);
    num(o, "eval_shards", r->eval_shards);
    cJSON *t = cJSON_AddObjectToObject(o, "tokenizer");
    cJSON_AddStringToObject(t, "name", r->tokenizer_name);
    cJSON_AddStringToObject(t, "hash", r->tokenizer_hash);
    num(t, "vocab_size", r->vocab_size);
    num(t, "eos_id", (double)r->eos_id);
    num(t, "im_start_id", (double)r->im_start_id);
    num(t, "im_end_id", (double)r->im_end_id);
    num(o, "threads", r->threads);
    num(o, "seconds", r->seconds);
    num(o, "mb_per_s", r->seconds > 0 ? (double)r->bytes_read / 1e6 / r->seconds : 0);
    num(o, "peak_rss_bytes", (double)r->peak_rss_bytes);
    num(o, "dedup_bytes", (double)r->dedup_bytes);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

void prepare_report_print(const prepare_report *r, FILE *out) {
    fprintf(out, "%-28s %14" PRIu64 "\n", "files", r->files);
    fprintf(out, "%-28s %14.1f\n", "MB read", (double)r->bytes_read / 1e6);
    fprintf(out, "%-28s %14" PRIu64 "\n", "documents read", r->records);
    for (int i = 0; i < PREPARE_DROP_COUNT; i++)
        fprintf(out, "  dropped: %-18s %14" PRIu64 "\n", prepare_drop_name((prepare_drop)i), r->dropped[i]);
    for (int i = 0; i < r->n_bad_json_shown; i++)
        fprintf(out, "  not a JSON object: %s%s\n", r->bad_json_at[i],
                i + 1 == r->n_bad_json_shown && r->dropped[PREPARE_DROP_BAD_JSON] > (uint64_t)r->n_bad_json_shown
                    ? " (and more; the first ones are shown)"
                    : "");
    fprintf(out, "%-28s %14" PRIu64 "\n", "repaired UTF-8 (kept)", r->repaired_utf8);
    fprintf(out, "%-28s %14" PRIu64 "\n", "HTML cleaned (kept)", r->had_html);
    for (int i = 0; i < PII_TYPE_COUNT; i++)
        fprintf(out, "  PII masked: %-15s %14" PRIu64 "\n", pii_type_name((pii_type)i), r->pii[i]);
    fprintf(out, "%-28s %14" PRIu64 " (%" PRIu64 " text, %" PRIu64 " chat)\n", "documents written",
            r->docs_written + r->eval_docs, r->docs_text, r->docs_chat);
    if (r->pairs_written + r->eval_pairs > 0)
        fprintf(out, "%-28s %14" PRIu64 " (%" PRIu64 " train, %" PRIu64 " eval; 3 documents each)\n",
                "preference pairs written", r->pairs_written + r->eval_pairs, r->pairs_written,
                r->eval_pairs);
    fprintf(out, "%-28s %14" PRIu64 " (%" PRIu64 " with loss)\n", "tokens written (train)",
            r->tokens_written, r->trained_tokens);
    fprintf(out, "%-28s %14" PRIu64 "\n", "tokens written (eval)", r->eval_tokens);
    fprintf(out, "%-28s %14d train, %d eval\n", "shards", r->train_shards, r->eval_shards);
    fprintf(out, "%-28s %s (hash %s), vocab_size %u, eos %" PRId64 ", <|im_start|> %" PRId64
                 ", <|im_end|> %" PRId64 "\n",
            "tokenizer", r->tokenizer_name, r->tokenizer_hash, r->vocab_size, r->eos_id,
            r->im_start_id, r->im_end_id);
    fprintf(out, "%-28s model.vocab_size must be >= %u when the shards hold chat documents\n", "note",
            r->vocab_size);
    fprintf(out, "%-28s %14.2f s, %.2f MB/s, %d threads\n", "time", r->seconds,
            r->seconds > 0 ? (double)r->bytes_read / 1e6 / r->seconds : 0, r->threads);
    fprintf(out, "%-28s %14.1f MB (dedup state %.1f MB)\n", "peak RSS", (double)r->peak_rss_bytes / 1e6,
            (double)r->dedup_bytes / 1e6);
}
