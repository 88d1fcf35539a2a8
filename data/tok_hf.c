/* data/tok_hf.c: the Hugging Face tokenizer.json loader.
 *
 * model.type BPE with vocab and merges ("a b" strings or ["a", "b"] pairs)
 * and added_tokens, in one of two shapes:
 *   byte-level   pre_tokenizer ByteLevel (GPT-2 regex) or Sequence [Split
 *                Regex, ByteLevel] (Llama 3, Qwen); normalizer none, NFC or
 *                NFKC; decoder ByteLevel.
 *   chars        SentencePiece-style BPE (Llama 2, Mistral, Gemma): vocab of
 *                UTF-8 strings with "\u2581" for space, byte_fallback with
 *                all 256 <0xNN> tokens; normalizer Prepend / Replace (the
 *                legacy Llama-2 form) or none; pre_tokenizer none, Metaspace
 *                or Split on a literal; decoder a Sequence of Replace,
 *                ByteFallback, Fuse, Strip, or Metaspace.
 * Normalizers: Sequence, Prepend, Replace (literal pattern), NFC, NFKC.
 * Every other normalizer, pre-tokenizer, decoder or model field that changes
 * the ids or the decoded text is refused with its JSON path. The
 * post_processor (what add_special_tokens=True adds) is not applied:
 * tok_encode equals the library's encode(text, add_special_tokens=False).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tok_internal.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"

static int json_true(const cJSON *o, const char *key) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static const char *json_type(const cJSON *o) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : "";
}

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* pattern {"String": "..."}: the literal, or NULL for a Regex. */
static const char *json_literal(const cJSON *o) {
    return json_str(cJSON_GetObjectItemCaseSensitive(o, "pattern"), "String");
}

static sl_status dup_str(char **out, const char *s) {
    *out = strdup(s);
    SL_CHECK_ALLOC(*out, strlen(s) + 1);
    return SL_OK;
}

void tok_pipeline_free(tokenizer *t) {
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].from);
        free(t->norm[i].to);
    }
    for (int i = 0; i < t->n_dec; i++) {
        free(t->dec[i].from);
        free(t->dec[i].to);
    }
    t->n_norm = t->n_dec = 0;
    free(t->pipeline);
    t->pipeline = NULL;
}

/* ---- normalizer ---- */

static sl_status hf_norm_step(tokenizer *t, const cJSON *n, const char *path, const char *where) {
    const char *ty = json_type(n);
    if (t->n_norm == TOK_MAX_STEPS)
        return sl_errorf(SL_ERR_UNSUPPORTED, "%s: %s: more than %d normalizer steps", path, where,
                         TOK_MAX_STEPS);
    tok_norm *s = &t->norm[t->n_norm];
    if (strcmp(ty, "Prepend") == 0) {
        const char *p = json_str(n, "prepend");
        if (!p || !p[0])
            return sl_errorf(SL_ERR_FORMAT, "%s: %s.prepend must be a non-empty string", path,
                             where);
        s->kind = TOK_NORM_PREPEND;
        SL_TRY(dup_str(&s->to, p));
    } else if (strcmp(ty, "Replace") == 0) {
        const char *from = json_literal(n), *to = json_str(n, "content");
        if (!from || !from[0] || !to)
            return sl_errorf(SL_ERR_UNSUPPORTED,
                             "%s: %s: a Replace normalizer needs a {\"String\": ...} pattern and "
                             "a content string (Regex patterns are not implemented)",
                             path, where);
        s->kind = TOK_NORM_REPLACE;
        SL_TRY(dup_str(&s->from, from));
        SL_TRY(dup_str(&s->to, to));
    } else if (strcmp(ty, "NFC") == 0 || strcmp(ty, "NFKC") == 0) {
        s->kind = ty[2] == 'C' ? TOK_NORM_NFC : TOK_NORM_NFKC;
    } else {
        return sl_errorf(SL_ERR_UNSUPPORTED,
                         "%s: %s: normalizer \"%s\" is not supported (supported: Sequence, "
                         "Prepend, Replace with a literal, NFC, NFKC)",
                         path, where, ty);
    }
    t->n_norm++;
    return SL_OK;
}

static sl_status hf_normalizer(tokenizer *t, const cJSON *n, const char *path) {
    if (!n || cJSON_IsNull(n))
        return SL_OK;
    if (strcmp(json_type(n), "Sequence") != 0)
        return hf_norm_step(t, n, path, "normalizer");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
    if (!cJSON_IsArray(list))
        return sl_errorf(SL_ERR_FORMAT, "%s: normalizer.normalizers must be an array", path);
    int i = 0;
    char where[64];
    for (const cJSON *e = list->child; e; e = e->next, i++) {
        snprintf(where, sizeof where, "normalizer.normalizers[%d]", i);
        if (strcmp(json_type(e), "Sequence") == 0)
            return sl_errorf(SL_ERR_UNSUPPORTED, "%s: %s: nested Sequence is not supported", path,
                             where);
        SL_TRY(hf_norm_step(t, e, path, where));
    }
    return SL_OK;
}

/* ---- pre-tokenizer ---- */

static int has_bytelevel(const cJSON *pt) {
    if (strcmp(json_type(pt), "ByteLevel") == 0)
        return 1;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
    for (const cJSON *e = cJSON_IsArray(list) ? list->child : NULL; e; e = e->next)
        if (strcmp(json_type(e), "ByteLevel") == 0)
            return 1;
    return 0;
}

/* Byte-level: the regex; *pattern NULL means GPT-2's (ByteLevel with
 * use_regex). */
static sl_status hf_pretok_bytelevel(const cJSON *pt, const char *path, const char **pattern) {
    *pattern = NULL;
    const char *ty = json_type(pt);
    if (strcmp(ty, "ByteLevel") == 0) {
        if (json_true(pt, "add_prefix_space"))
            return sl_errorf(SL_ERR_UNSUPPORTED,
                             "%s: pre_tokenizer.add_prefix_space=true is not supported", path);
        const cJSON *ur = cJSON_GetObjectItemCaseSensitive(pt, "use_regex");
        if (ur && !cJSON_IsTrue(ur))
            return sl_errorf(SL_ERR_UNSUPPORTED,
                             "%s: a ByteLevel pre_tokenizer without use_regex and without a "
                             "Split before it is not supported",
                             path);
        return SL_OK;
    }
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
    if (strcmp(ty, "Sequence") != 0 || cJSON_GetArraySize(list) != 2)
        return sl_errorf(SL_ERR_UNSUPPORTED,
                         "%s: pre_tokenizer of type \"%s\" is not supported (expected ByteLevel, "
                         "or Sequence [Split, ByteLevel])",
                         path, ty);
    const cJSON *split = cJSON_GetArrayItem(list, 0), *bl = cJSON_GetArrayItem(list, 1);
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(split, "pattern");
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    const char *behavior = json_str(split, "behavior");
    if (strcmp(json_type(split), "Split") != 0 || !cJSON_IsString(re) || !behavior ||
        strcmp(behavior, "Isolated") != 0 || json_true(split, "invert"))
        return sl_errorf(SL_ERR_UNSUPPORTED,
                         "%s: pre_tokenizer.pretokenizers[0] must be a Split with a Regex "
                         "pattern, behavior Isolated and invert false",
                         path);
    if (strcmp(json_type(bl), "ByteLevel") != 0 || json_true(bl, "add_prefix_space") ||
        json_true(bl, "use_regex"))
        return sl_errorf(SL_ERR_UNSUPPORTED,
                         "%s: pre_tokenizer.pretokenizers[1] must be a ByteLevel with "
                         "add_prefix_space and use_regex false",
                         path);
    *pattern = re->valuestring;
    return SL_OK;
}

/* Metaspace's prepend scheme: prepend_scheme, or add_prefix_space in older
 * files (true = always). */
static sl_status hf_prepend_scheme(const cJSON *o, const char *path, const char *where,
                                   tok_prepend_scheme *out) {
    const char *ps = json_str(o, "prepend_scheme");
    if (!ps) {
        const cJSON *aps = cJSON_GetObjectItemCaseSensitive(o, "add_prefix_space");
        *out = aps && !cJSON_IsTrue(aps) ? TOK_PREPEND_NEVER : TOK_PREPEND_ALWAYS;
        return SL_OK;
    }
    if (strcmp(ps, "first") == 0)
        *out = TOK_PREPEND_FIRST;
    else if (strcmp(ps, "always") == 0)
        *out = TOK_PREPEND_ALWAYS;
    else if (strcmp(ps, "never") == 0)
        *out = TOK_PREPEND_NEVER;
    else
        return sl_errorf(SL_ERR_FORMAT, "%s: %s.prepend_scheme \"%s\" is not first/always/never",
                         path, where, ps);
    return SL_OK;
}

static sl_status copy_small(char *dst, size_t cap, const char *s, const char *path,
                            const char *where) {
    if (!s || !s[0] || strlen(s) >= cap)
        return sl_errorf(SL_ERR_UNSUPPORTED, "%s: %s must be a string of 1 to %zu bytes", path,
                         where, cap - 1);
    memcpy(dst, s, strlen(s) + 1);
    return SL_OK;
}

static sl_status hf_pretok_chars(tokenizer *t, const cJSON *pt, const char *path) {
    t->split = TOK_SPLIT_NONE;
    if (!pt || cJSON_IsNull(pt))
        return SL_OK;
    const char *ty = json_type(pt);
    if (strcmp(ty, "Metaspace") == 0) {
        t->split = TOK_SPLIT_METASPACE;
        SL_TRY(copy_small(t->split_str, sizeof t->split_str, json_str(pt, "replacement"), path,
                          "pre_tokenizer.replacement"));
        SL_TRY(hf_prepend_scheme(pt, path, "pre_tokenizer", &t->prepend));
        const cJSON *split = cJSON_GetObjectItemCaseSensitive(pt, "split");
        t->split_on = !split || cJSON_IsTrue(split);
        return SL_OK;
    }
    if (strcmp(ty, "Split") == 0) {
        const char *b = json_str(pt, "behavior");
        t->split = TOK_SPLIT_STRING;
        SL_TRY(copy_small(t->split_str, sizeof t->split_str, json_literal(pt), path,
                          "pre_tokenizer.pattern.String (Regex is only supported before ByteLevel)"));
        if (json_true(pt, "invert"))
            return sl_errorf(SL_ERR_UNSUPPORTED, "%s: pre_tokenizer.invert=true is not supported",
                             path);
        if (b && strcmp(b, "MergedWithPrevious") == 0)
            t->split_behavior = TOK_SPLIT_MERGED_WITH_PREVIOUS;
        else if (b && strcmp(b, "MergedWithNext") == 0)
            t->split_behavior = TOK_SPLIT_MERGED_WITH_NEXT;
        else if (b && strcmp(b, "Isolated") == 0)
            t->split_behavior = TOK_SPLIT_ISOLATED;
        else
            return sl_errorf(SL_ERR_UNSUPPORTED,
                             "%s: pre_tokenizer.behavior \"%s\" is not supported "
                             "(MergedWithPrevious, MergedWithNext, Isolated)",
                             path, b ? b : "?");
        return SL_OK;
    }
    return sl_errorf(SL_ERR_UNSUPPORTED,
                     "%s: pre_tokenizer \"%s\" is not supported with a SentencePiece-style "
                     "vocabulary (supported: none, Metaspace, Split on a literal)",
                     path, ty);
}

/* ---- decoder ---- */

static sl_status hf_dec_step(tokenizer *t, const cJSON *d, const char *path, const char *where) {
    if (t->n_dec == TOK_MAX_STEPS)
        return sl_errorf(SL_ERR_UNSUPPORTED, "%s: %s: more than %d decoder steps", path, where,
                         TOK_MAX_STEPS);
    tok_dec *s = &t->dec[t->n_dec];
    const char *ty = json_type(d);
    *s = (tok_dec){0};
    if (strcmp(ty, "Replace") == 0) {
        const char *from = json_literal(d), *to = json_str(d, "content");
        if (!from || !from[0] || !to)
            return sl_errorf(SL_ERR_UNSUPPORTED,
                             "%s: %s: a Replace decoder needs a {\"String\": ...} pattern and a "
                             "content string",
                             path, where);
        s->kind = TOK_DEC_REPLACE;
        SL_TRY(dup_str(&s->from, from));
        SL_TRY(dup_str(&s->to, to));
    } else if (strcmp(ty, "ByteFallback") == 0) {
        s->kind = TOK_DEC_BYTE_FALLBACK;
    } else if (strcmp(ty, "Fuse") == 0) {
        s->kind = TOK_DEC_FUSE;
    } else if (strcmp(ty, "Strip") == 0) {
        const char *c = json_str(d, "content");
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(d, "start");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(d, "stop");
        uint32_t start, stop;
        if (!c || !c[0] || !tok_json_id(a, &start) || !tok_json_id(b, &stop))
            return sl_errorf(SL_ERR_FORMAT, "%s: %s: Strip needs content, start and stop", path,
                             where);
        s->kind = TOK_DEC_STRIP;
        SL_TRY(dup_str(&s->from, c));
        s->start = start;
        s->stop = stop;
    } else if (strcmp(ty, "Metaspace") == 0) {
        const char *r = json_str(d, "replacement");
        tok_prepend_scheme ps;
        if (!r || !r[0])
            return sl_errorf(SL_ERR_FORMAT, "%s: %s.replacement must be a string", path, where);
        SL_TRY(hf_prepend_scheme(d, path, where, &ps));
        s->kind = TOK_DEC_METASPACE;
        SL_TRY(dup_str(&s->from, r));
        s->prepend = ps != TOK_PREPEND_NEVER;
    } else {
        return sl_errorf(SL_ERR_UNSUPPORTED,
                         "%s: %s: decoder \"%s\" is not supported with a SentencePiece-style "
                         "vocabulary (supported: Replace, ByteFallback, Fuse, Strip, Metaspace)",
                         path, where, ty);
    }
    t->n_dec++;
    return SL_OK;
}

static sl_status hf_decoder_chars(tokenizer *t, const cJSON *d, const char *path) {
    if (!d || cJSON_IsNull(d))
        return sl_errorf(SL_ERR_UNSUPPORTED,
                         "%s: decoder is missing; a SentencePiece-style vocabulary needs one "
                         "(\"\\u2581\" and <0xNN> tokens would be left in the text)",
                         path);
    if (strcmp(json_type(d), "Sequence") != 0)
        return hf_dec_step(t, d, path, "decoder");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(d, "decoders");
    if (!cJSON_IsArray(list))
        return sl_errorf(SL_ERR_FORMAT, "%s: decoder.decoders must be an array", path);
    int i = 0;
    char where[64];
    for (const cJSON *e = list->child; e; e = e->next, i++) {
        snprintf(where, sizeof where, "decoder.decoders[%d]", i);
        SL_TRY(hf_dec_step(t, e, path, where));
    }
    return SL_OK;
}

/* ---- model ---- */

static sl_status hf_check_model(const cJSON *model, const char *path) {
    if (!cJSON_IsObject(model))
        return sl_errorf(SL_ERR_FORMAT, "%s: no \"model\" object", path);
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (ty && (!cJSON_IsString(ty) || strcmp(ty->valuestring, "BPE") != 0))
        return sl_errorf(SL_ERR_UNSUPPORTED, "%s: model.type is \"%s\"; only BPE is supported",
                         path, cJSON_IsString(ty) ? ty->valuestring : "?");
    static const char *const empty_ok[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = json_str(model, empty_ok[i]);
        if (v && v[0])
            return sl_errorf(SL_ERR_UNSUPPORTED, "%s: model.%s is not supported", path,
                             empty_ok[i]);
    }
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return sl_errorf(SL_ERR_UNSUPPORTED, "%s: model.dropout is not supported", path);
    return SL_OK;
}

static sl_status hf_merges(tokenizer *t, const cJSON *merges, const char *path) {
    if (!cJSON_IsArray(merges))
        return sl_errorf(SL_ERR_FORMAT, "%s: model.merges must be an array", path);
    tok_alphabet a;
    tok_alphabet_init(&a);
    SL_TRY(tok_pairmap_init(&t->pairs, (size_t)cJSON_GetArraySize(merges)));
    uint32_t rank = 0;
    char where[64];
    int bytelevel = t->model == TOK_MODEL_BYTELEVEL;
    for (const cJSON *m = merges->child; m; m = m->next, rank++) {
        snprintf(where, sizeof where, "model.merges[%u]", rank);
        const char *l = NULL, *r = NULL;
        size_t ll = 0, rl = 0;
        if (cJSON_IsString(m)) {
            /* "a b": SentencePiece vocabularies never hold ' ' ("\u2581"
             * stands for it), so the one space separates the parts */
            const char *sp = strchr(m->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                l = m->valuestring;
                ll = (size_t)(sp - l);
                r = sp + 1;
                rl = strlen(r);
            }
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
                   cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            l = m->child->valuestring;
            ll = strlen(l);
            r = m->child->next->valuestring;
            rl = strlen(r);
        }
        if (!l || !ll || !rl)
            return sl_errorf(SL_ERR_FORMAT, "%s: %s must be \"left right\" or [\"left\", \"right\"]",
                             path, where);
        SL_TRY(tok_add_merge(t, &a, bytelevel, l, ll, r, rl, rank, path, where));
    }
    return SL_OK;
}

static sl_status hf_added_tokens(tokenizer *t, const cJSON *added, const char *path) {
    if (!added || cJSON_IsNull(added))
        return SL_OK;
    if (!cJSON_IsArray(added))
        return sl_errorf(SL_ERR_FORMAT, "%s: added_tokens must be an array", path);
    int i = 0;
    for (const cJSON *a = added->child; a; a = a->next, i++) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
        uint32_t id;
        if (!cJSON_IsString(content) || !content->valuestring[0] ||
            !tok_json_id(cJSON_GetObjectItemCaseSensitive(a, "id"), &id))
            return sl_errorf(SL_ERR_FORMAT, "%s: added_tokens[%d] needs \"id\" and \"content\"",
                             path, i);
        static const char *const flags[] = {"lstrip", "rstrip", "single_word"};
        for (int f = 0; f < 3; f++)
            if (json_true(a, flags[f]))
                return sl_errorf(SL_ERR_UNSUPPORTED,
                                 "%s: added_tokens[%d] (\"%s\") sets %s, which shardlm does not "
                                 "implement",
                                 path, i, content->valuestring, flags[f]);
        /* normalized=true tokens are matched in the normalized text, after
         * the normalizer ran over the stretch around them */
        if (t->n_norm && json_true(a, "normalized"))
            return sl_errorf(SL_ERR_UNSUPPORTED,
                             "%s: added_tokens[%d] (\"%s\") sets normalized=true with a "
                             "normalizer; matching added tokens in normalized text is not "
                             "implemented",
                             path, i, content->valuestring);
        const cJSON *special = cJSON_GetObjectItemCaseSensitive(a, "special");
        SL_TRY(tok_put_special(t, content->valuestring, strlen(content->valuestring), id,
                               special && !cJSON_IsTrue(special)));
    }
    return SL_OK;
}

/* bos/eos from a tokenizer_config.json next to the tokenizer.json. */
static void hf_config_bos_eos(tokenizer *t, const char *path) {
    char cfg[4096];
    const char *slash = strrchr(path, '/');
    int n = slash ? snprintf(cfg, sizeof cfg, "%.*s/tokenizer_config.json", (int)(slash - path), path)
                  : snprintf(cfg, sizeof cfg, "tokenizer_config.json");
    if (n < 0 || (size_t)n >= sizeof cfg || !fs_exists(cfg))
        return;
    cJSON *j;
    if (tok_read_json(cfg, &j) != SL_OK) {
        sl_error_clear(); /* the config is optional; its absence or damage only loses bos/eos */
        return;
    }
    static const char *const keys[] = {"bos_token", "eos_token"};
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
        if (cJSON_IsObject(v))
            v = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (!cJSON_IsString(v))
            continue;
        int64_t id = tok_special_id(t, v->valuestring);
        if (id >= 0)
            *(k == 0 ? &t->bos_id : &t->eos_id) = id;
    }
    cJSON_Delete(j);
}

/* The chars model's byte tokens "<0x00>".."<0xFF>" (the spelling of Rust's
 * format!("<{b:#04X}>")). */
static sl_status hf_byte_fallback(tokenizer *t, const char *path) {
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        uint32_t id = tok_bytemap_get(t, name, 6);
        if (id == TOK_NONE)
            return sl_errorf(SL_ERR_UNSUPPORTED,
                             "%s: model.byte_fallback is true but model.vocab has no \"%s\"; "
                             "characters outside the vocabulary would become the unknown "
                             "token, which shardlm does not implement",
                             path, name);
        t->byte_id[b] = id;
    }
    return SL_OK;
}

/* The pipeline's canonical text, hashed with the vocabulary. */
static sl_status hf_pipeline_text(tokenizer *t, const cJSON *root) {
    static const char *const keys[] = {"normalizer", "pre_tokenizer", "decoder"};
    cJSON *o = cJSON_CreateObject();
    SL_CHECK_ALLOC(o, 64);
    for (int i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, keys[i]);
        cJSON *c = v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull();
        if (c)
            cJSON_AddItemToObject(o, keys[i], c);
    }
    cJSON_AddNumberToObject(o, "model", t->model);
    t->pipeline = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    SL_CHECK_ALLOC(t->pipeline, 64);
    return SL_OK;
}

sl_status tok_load_hf(tokenizer *t, const cJSON *root, const char *path) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    SL_TRY(hf_check_model(model, path));
    SL_TRY(hf_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), path));
    const char *pattern = NULL;
    if (pt && !cJSON_IsNull(pt) && has_bytelevel(pt)) {
        t->model = TOK_MODEL_BYTELEVEL;
        if (json_true(model, "byte_fallback"))
            return sl_errorf(SL_ERR_UNSUPPORTED,
                             "%s: model.byte_fallback with a ByteLevel pre_tokenizer is not "
                             "supported",
                             path);
        for (int i = 0; i < t->n_norm; i++)
            if (t->norm[i].kind != TOK_NORM_NFC && t->norm[i].kind != TOK_NORM_NFKC)
                return sl_errorf(SL_ERR_UNSUPPORTED,
                                 "%s: normalizer: only NFC or NFKC is supported before a "
                                 "ByteLevel pre_tokenizer",
                                 path);
        SL_TRY(hf_pretok_bytelevel(pt, path, &pattern));
        const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
        if (dec && !cJSON_IsNull(dec) && strcmp(json_type(dec), "ByteLevel") != 0)
            return sl_errorf(SL_ERR_UNSUPPORTED,
                             "%s: decoder \"%s\" with a ByteLevel pre_tokenizer is not supported "
                             "(expected ByteLevel)",
                             path, json_type(dec));
    } else {
        t->model = TOK_MODEL_CHARS;
        if (!json_true(model, "byte_fallback"))
            return sl_errorf(SL_ERR_UNSUPPORTED,
                             "%s: model.byte_fallback is false and the pre_tokenizer is not "
                             "ByteLevel: characters outside the vocabulary would become the "
                             "unknown token, which shardlm does not implement",
                             path);
        t->byte_fallback = 1;
        SL_TRY(hf_pretok_chars(t, pt, path));
        SL_TRY(hf_decoder_chars(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"), path));
    }
    t->replace_invalid = t->model == TOK_MODEL_CHARS || t->n_norm > 0;
    SL_TRY(tok_add_vocab(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"), path, "model.vocab",
                         0, t->model == TOK_MODEL_BYTELEVEL));
    SL_TRY(hf_added_tokens(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), path));
    SL_TRY(tok_index_vocab(t, path));
    if (t->model == TOK_MODEL_CHARS)
        SL_TRY(hf_byte_fallback(t, path));
    SL_TRY(hf_merges(t, cJSON_GetObjectItemCaseSensitive(model, "merges"), path));
    t->merge_mode = TOK_MERGES_EXPLICIT;
    t->ignore_merges = json_true(model, "ignore_merges");
    hf_config_bos_eos(t, path);
    if (t->model == TOK_MODEL_CHARS || t->n_norm)
        SL_TRY(hf_pipeline_text(t, root));
    if (t->model == TOK_MODEL_CHARS)
        return SL_OK;
    return tok_set_pattern(t, TOK_PRETOKENIZER_GPT2, pattern, path);
}
