/* tests/tools/textmetrics_cli.c: data/textmetrics as a command for the
 * oracle test (tests/integration/test_textmetrics_oracle.sh).
 *
 *   textmetrics_cli --hyps FILE --refs FILE
 *
 * Each FILE holds one JSON string per line (JSON, so a segment may hold
 * newlines). Prints one JSON object: "bleu" (sacrebleu defaults, 'exp'
 * smoothing), "bleu_none" (smooth_method='none'), "rouge" (corpus means) and
 * "pairs" (per-pair ROUGE as [precision, recall, f1]). Exit 0, or 1 with the
 * error on stderr.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/textmetrics.h"

static char **read_jsonl(const char *path, size_t *count) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "textmetrics_cli: cannot open %s\n", path);
        return NULL;
    }
    char **v = NULL;
    size_t n = 0, cap = 0, lcap = 0;
    char *line = NULL;
    ssize_t len;
    size_t lineno = 0;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        if (len == 0 || (len == 1 && line[0] == '\n'))
            continue;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)len);
        if (!j || !cJSON_IsString(j)) {
            fprintf(stderr, "textmetrics_cli: %s line %zu is not a JSON string\n", path, lineno);
            cJSON_Delete(j);
            exit(1);
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            v = realloc(v, cap * sizeof *v);
            if (!v)
                exit(1);
        }
        v[n++] = strdup(j->valuestring);
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    *count = n;
    return v;
}

static void print_bleu(const char *name, const textmetrics_bleu *b) {
    printf("\"%s\": {\"score\": %.17g, \"bp\": %.17g, \"sys_len\": %lld, \"ref_len\": %lld, \"precisions\": [", name,
           b->score, b->bp, (long long)b->sys_len, (long long)b->ref_len);
    for (int i = 0; i < 4; i++)
        printf("%s%.17g", i ? ", " : "", b->precisions[i]);
    printf("], \"counts\": [");
    for (int i = 0; i < 4; i++)
        printf("%s%lld", i ? ", " : "", (long long)b->counts[i]);
    printf("], \"totals\": [");
    for (int i = 0; i < 4; i++)
        printf("%s%lld", i ? ", " : "", (long long)b->totals[i]);
    printf("]}");
}

static void print_rouge(const textmetrics_rouge *r) {
    const textmetrics_prf *k[3] = {&r->rouge1, &r->rouge2, &r->rougeL};
    const char *names[3] = {"rouge1", "rouge2", "rougeL"};
    printf("{");
    for (int i = 0; i < 3; i++)
        printf("%s\"%s\": [%.17g, %.17g, %.17g]", i ? ", " : "", names[i], k[i]->precision, k[i]->recall,
               k[i]->f1);
    printf("}");
}

static int fail(sl_status st) {
    fprintf(stderr, "textmetrics_cli: %s: %s\n", sl_status_name(st), sl_error_message());
    return 1;
}

int main(int argc, char **argv) {
    const char *hp = NULL, *rp = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--hyps"))
            hp = argv[i + 1];
        else if (!strcmp(argv[i], "--refs"))
            rp = argv[i + 1];
    }
    if (!hp || !rp) {
        fprintf(stderr, "usage: textmetrics_cli --hyps FILE --refs FILE (one JSON string per line)\n");
        return 2;
    }
    size_t nh = 0, nr = 0;
    char **h = read_jsonl(hp, &nh), **r = read_jsonl(rp, &nr);
    if (!h || !r || nh != nr) {
        fprintf(stderr, "textmetrics_cli: %zu hypotheses but %zu references\n", nh, nr);
        return 1;
    }
    const char *const *hc = (const char *const *)h, *const *rc = (const char *const *)r;
    textmetrics_bleu be, bn;
    textmetrics_rouge rg;
    sl_status st;
    if ((st = textmetrics_corpus_bleu(hc, rc, nh, &be)) != SL_OK)
        return fail(st);
    if ((st = textmetrics_corpus_bleu_smooth(hc, rc, nh, TEXTMETRICS_SMOOTH_NONE, &bn)) != SL_OK)
        return fail(st);
    if ((st = textmetrics_corpus_rouge(hc, rc, nh, &rg)) != SL_OK)
        return fail(st);
    printf("{\"n\": %zu, ", nh);
    print_bleu("bleu", &be);
    printf(", ");
    print_bleu("bleu_none", &bn);
    printf(", \"rouge\": ");
    print_rouge(&rg);
    printf(", \"pairs\": [");
    for (size_t i = 0; i < nh; i++) {
        textmetrics_rouge one;
        if ((st = textmetrics_rouge_pair(h[i], r[i], &one)) != SL_OK)
            return fail(st);
        printf("%s", i ? ", " : "");
        print_rouge(&one);
    }
    printf("]}\n");
    for (size_t i = 0; i < nh; i++) {
        free(h[i]);
        free(r[i]);
    }
    free(h);
    free(r);
    return 0;
}
