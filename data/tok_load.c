/* data/tok_load.c: the tokenizer file formats.
 *
 *   GPT-2:      encoder.json ({"byte-level token": id}) + vocab.bpe
 *               ("#version" line, then one "left right" merge per line).
 *   Hugging Face tokenizer.json: in tok_hf.c.
 *   tiktoken:   a rank file ("base64 rank" per line) or tiktoken's npm JSON
 *               ({pat_str, special_tokens, bpe_ranks}: bpe_ranks holds lines
 *               "! first_rank b64 b64 ..." with consecutive ranks).
 *
 * Also the helpers every loader shares (JSON reading, vocabulary and merge
 * entry). Anything a format allows that shardlm does not implement is
 * refused at load with the file and where in it, never ignored.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tok_internal.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"

/* ---- GPT-2 byte-level alphabet ---- */

static int printable_byte(int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

void tok_alphabet_init(tok_alphabet *a) {
    for (int c = 0; c < TOK_ALPHABET_CPS; c++)
        a->c2b[c] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        a->b2c[b] = printable_byte(b) ? (uint32_t)b : (uint32_t)(256 + n++);
        a->c2b[a->b2c[b]] = (int16_t)b;
    }
}

long tok_bytelevel_decode(const tok_alphabet *a, const char *s, size_t slen, uint8_t *out) {
    const uint8_t *p = (const uint8_t *)s, *end = p + slen;
    long n = 0;
    while (p < end) {
        uint32_t cp;
        if (p[0] < 0x80) {
            cp = p[0];
            p += 1;
        } else if ((p[0] & 0xe0) == 0xc0 && p + 1 < end && (p[1] & 0xc0) == 0x80) {
            cp = (uint32_t)(p[0] & 0x1f) << 6 | (p[1] & 0x3f);
            p += 2;
        } else {
            return -1; /* the alphabet ends at U+0143: two UTF-8 bytes at most */
        }
        if (cp >= TOK_ALPHABET_CPS || a->c2b[cp] < 0)
            return -1;
        out[n++] = (uint8_t)a->c2b[cp];
    }
    return n;
}

size_t tok_bytelevel_encode(const tok_alphabet *a, const uint8_t *b, size_t len, char *out) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        uint32_t cp = a->b2c[b[i]];
        if (cp < 0x80) {
            out[n++] = (char)cp;
        } else {
            out[n++] = (char)(0xc0 | (cp >> 6));
            out[n++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    out[n] = 0;
    return n;
}

/* ---- shared pieces ---- */

sl_status tok_read_json(const char *path, cJSON **out) {
    char *buf;
    size_t len;
    SL_TRY(fs_read_file(path, &buf, &len, TOK_MAX_FILE_BYTES));
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!j) {
        size_t off = end ? (size_t)(end - buf) : 0;
        free(buf);
        return sl_errorf(SL_ERR_FORMAT, "%s: invalid JSON near byte %zu", path, off);
    }
    free(buf);
    *out = j;
    return SL_OK;
}

int tok_json_id(const cJSON *v, uint32_t *id) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= (double)(1u << 30) ||
        v->valuedouble != (double)(uint32_t)v->valuedouble)
        return 0;
    *id = (uint32_t)v->valuedouble;
    return 1;
}

sl_status tok_add_vocab(tokenizer *t, const cJSON *vocab, const char *path, const char *where,
                        int gpt2_specials, int bytelevel) {
    if (!cJSON_IsObject(vocab))
        return sl_errorf(SL_ERR_FORMAT, "%s: %s must be an object of token: id", path, where);
    tok_alphabet a;
    tok_alphabet_init(&a);
    size_t cap = 256;
    uint8_t *buf = malloc(cap);
    SL_CHECK_ALLOC(buf, cap);
    sl_status st = SL_OK;
    for (const cJSON *e = vocab->child; e && st == SL_OK; e = e->next) {
        uint32_t id;
        if (!tok_json_id(e, &id)) {
            st = sl_errorf(SL_ERR_FORMAT, "%s: %s[\"%s\"] must be a token id (integer >= 0)",
                           path, where, e->string);
            break;
        }
        size_t slen = strlen(e->string);
        if (gpt2_specials && strcmp(e->string, "<|endoftext|>") == 0) {
            st = tok_put_special(t, e->string, slen, id, 0);
            continue;
        }
        if (slen > cap) {
            cap = slen;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                st = sl_errorf(SL_ERR_NOMEM, "out of memory for a %zu-byte token", slen);
                break;
            }
            buf = nb;
        }
        long n = (long)slen;
        if (bytelevel)
            n = tok_bytelevel_decode(&a, e->string, slen, buf);
        else
            memcpy(buf, e->string, slen);
        if (n <= 0) {
            st = sl_errorf(SL_ERR_FORMAT,
                           "%s: %s token \"%s\" (id %u) is not in GPT-2's byte-level alphabet; "
                           "only byte-level BPE vocabularies are supported",
                           path, where, e->string, id);
            break;
        }
        if (id < t->n_ids && t->kind[id] != TOK_KIND_GAP) {
            st = sl_errorf(SL_ERR_FORMAT, "%s: %s gives id %u to two tokens", path, where, id);
            break;
        }
        st = tok_set_token(t, id, buf, (size_t)n, TOK_KIND_ORDINARY);
    }
    free(buf);
    return st;
}

/* An ordinary token, or an added token that the vocabulary also holds
 * (Gemma's whitespace runs are both, and merges name them). */
static uint32_t merge_part_id(const tokenizer *t, const void *b, size_t n) {
    uint32_t id = tok_bytemap_get(t, b, n);
    for (size_t i = 0; id == TOK_NONE && i < t->n_specials; i++)
        if (t->specials[i].len == n && memcmp(t->specials[i].text, b, n) == 0)
            id = t->specials[i].id;
    return id;
}

sl_status tok_add_merge(tokenizer *t, const tok_alphabet *a, int bytelevel, const char *l,
                        size_t ll, const char *r, size_t rl, uint32_t rank, const char *path,
                        const char *where) {
    uint8_t stack[512];
    uint8_t *buf = ll + rl <= sizeof stack ? stack : malloc(ll + rl);
    SL_CHECK_ALLOC(buf, ll + rl);
    long nl = (long)ll, nr = (long)rl;
    if (bytelevel) {
        nl = tok_bytelevel_decode(a, l, ll, buf);
        nr = nl > 0 ? tok_bytelevel_decode(a, r, rl, buf + nl) : -1;
    } else {
        memcpy(buf, l, ll);
        memcpy(buf + ll, r, rl);
    }
    sl_status st = SL_OK;
    if (nl <= 0 || nr <= 0) {
        st = sl_errorf(SL_ERR_FORMAT, "%s: %s \"%.*s %.*s\" is not byte-level text", path, where,
                       (int)ll, l, (int)rl, r);
    } else {
        uint32_t li = merge_part_id(t, buf, (size_t)nl);
        uint32_t ri = merge_part_id(t, buf + nl, (size_t)nr);
        uint32_t mi = merge_part_id(t, buf, (size_t)(nl + nr));
        if (li == TOK_NONE || ri == TOK_NONE || mi == TOK_NONE)
            st = sl_errorf(SL_ERR_FORMAT, "%s: %s \"%.*s %.*s\": %s is not in the vocabulary",
                           path, where, (int)ll, l, (int)rl, r,
                           li == TOK_NONE   ? "the left part"
                           : ri == TOK_NONE ? "the right part"
                                            : "the merged token");
        else
            st = tok_pairmap_put(&t->pairs, li, ri, rank, mi);
    }
    if (buf != stack)
        free(buf);
    return st;
}

/* ---- GPT-2 encoder.json + vocab.bpe ---- */

sl_status tok_load_gpt2_files(tokenizer *t, const char *encoder_json, const char *vocab_bpe) {
    cJSON *enc;
    SL_TRY(tok_read_json(encoder_json, &enc));
    sl_status st = tok_add_vocab(t, enc, encoder_json, "encoder.json", 1, 1);
    cJSON_Delete(enc);
    SL_TRY(st);
    SL_TRY(tok_index_vocab(t, encoder_json));
    char *bpe;
    size_t len;
    SL_TRY(fs_read_file(vocab_bpe, &bpe, &len, TOK_MAX_FILE_BYTES));
    tok_alphabet a;
    tok_alphabet_init(&a);
    st = tok_pairmap_init(&t->pairs, 65536);
    uint32_t rank = 0;
    size_t line_no = 0;
    char where[64];
    for (char *p = bpe, *end = bpe + len; p < end && st == SL_OK;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end;
        line_no++;
        size_t n = (size_t)(eol - p);
        if (n && p[n - 1] == '\r')
            n--;
        if (n && !(line_no == 1 && p[0] == '#')) {
            char *sp = memchr(p, ' ', n);
            if (!sp || sp == p || sp + 1 == p + n || memchr(sp + 1, ' ', (size_t)(p + n - sp - 1)))
                st = sl_errorf(SL_ERR_FORMAT, "%s:%zu: expected \"left right\", got \"%.*s\"",
                               vocab_bpe, line_no, (int)(n > 80 ? 80 : n), p);
            else {
                snprintf(where, sizeof where, "line %zu", line_no);
                st = tok_add_merge(t, &a, 1, p, (size_t)(sp - p), sp + 1, (size_t)(p + n - sp - 1),
                               rank++, vocab_bpe, where);
            }
        }
        p = eol + 1;
    }
    free(bpe);
    SL_TRY(st);
    t->merge_mode = TOK_MERGES_EXPLICIT;
    t->bos_id = t->eos_id = tok_special_id(t, "<|endoftext|>");
    return tok_set_pattern(t, TOK_PRETOKENIZER_GPT2, NULL, vocab_bpe);
}

/* ---- tiktoken ---- */

static int b64_value(int c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Standard base64 with padding; out has room for 3*len/4 bytes. */
static long b64_decode(const char *s, size_t len, uint8_t *out) {
    if (len == 0 || len % 4)
        return -1;
    long n = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            v[k] = s[i + k] == '=' && i + 4 == len && k >= 2 ? -2 : b64_value((uint8_t)s[i + k]);
            if (v[k] == -1)
                return -1;
        }
        if (v[2] == -2 && v[3] != -2)
            return -1;
        out[n++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
        if (v[2] != -2)
            out[n++] = (uint8_t)((v[1] & 15) << 4 | v[2] >> 2);
        if (v[3] != -2)
            out[n++] = (uint8_t)((v[2] & 3) << 6 | v[3]);
    }
    return n;
}

static sl_status add_b64_token(tokenizer *t, const char *b64, size_t len, uint32_t rank,
                               const char *path, size_t line) {
    uint8_t buf[1024];
    if (len > 4 * sizeof buf / 3)
        return sl_errorf(SL_ERR_FORMAT, "%s:%zu: token of %zu base64 characters is too long", path,
                         line, len);
    long n = b64_decode(b64, len, buf);
    if (n <= 0)
        return sl_errorf(SL_ERR_FORMAT, "%s:%zu: \"%.*s\" is not base64", path, line,
                         (int)(len > 60 ? 60 : len), b64);
    if (rank < t->n_ids && t->kind[rank] != TOK_KIND_GAP)
        return sl_errorf(SL_ERR_FORMAT, "%s:%zu: rank %u appears twice", path, line, rank);
    return tok_set_token(t, rank, buf, (size_t)n, TOK_KIND_ORDINARY);
}

static sl_status finish_tiktoken(tokenizer *t, const char *path) {
    SL_TRY(tok_index_vocab(t, path));
    t->merge_mode = TOK_MERGES_RANKS;
    t->ignore_merges = 1;
    return tok_derive_rank_pairs(t);
}

static sl_status load_tiktoken_npm(tokenizer *t, const cJSON *root, const char *path) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(root, "pat_str");
    const cJSON *ranks = cJSON_GetObjectItemCaseSensitive(root, "bpe_ranks");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(root, "special_tokens");
    if (!cJSON_IsString(pat) || !cJSON_IsString(ranks))
        return sl_errorf(SL_ERR_FORMAT, "%s: tiktoken JSON needs string pat_str and bpe_ranks",
                         path);
    const char *p = ranks->valuestring;
    size_t line = 0;
    while (*p) {
        const char *eol = strchr(p, '\n');
        if (!eol)
            eol = p + strlen(p);
        line++;
        /* "! first_rank tok tok ...": the first field is a marker */
        const char *q = memchr(p, ' ', (size_t)(eol - p));
        char *after;
        unsigned long first = q ? strtoul(q + 1, &after, 10) : 0;
        if (q && (after == q + 1 || (*after != ' ' && after != eol)))
            q = NULL;
        if (!q)
            return sl_errorf(SL_ERR_FORMAT, "%s: bpe_ranks line %zu is not \"! rank b64 ...\"",
                             path, line);
        uint32_t rank = (uint32_t)first;
        for (const char *s = after; s < eol;) {
            while (s < eol && *s == ' ')
                s++;
            const char *e = s;
            while (e < eol && *e != ' ')
                e++;
            if (e > s)
                SL_TRY(add_b64_token(t, s, (size_t)(e - s), rank++, path, line));
            s = e;
        }
        p = *eol ? eol + 1 : eol;
    }
    if (specials && !cJSON_IsObject(specials))
        return sl_errorf(SL_ERR_FORMAT, "%s: special_tokens must be an object", path);
    for (const cJSON *s = specials ? specials->child : NULL; s; s = s->next) {
        uint32_t id;
        if (!tok_json_id(s, &id) || !s->string[0])
            return sl_errorf(SL_ERR_FORMAT, "%s: special_tokens[\"%s\"] must be an id", path,
                             s->string);
        SL_TRY(tok_put_special(t, s->string, strlen(s->string), id, 0));
    }
    SL_TRY(finish_tiktoken(t, path));
    return tok_set_pattern(t, TOK_PRETOKENIZER_GPT2, pat->valuestring, path);
}

sl_status tok_load_json(tokenizer *t, const char *path) {
    cJSON *root;
    SL_TRY(tok_read_json(path, &root));
    sl_status st;
    if (cJSON_GetObjectItemCaseSensitive(root, "bpe_ranks"))
        st = load_tiktoken_npm(t, root, path);
    else if (cJSON_GetObjectItemCaseSensitive(root, "model"))
        st = tok_load_hf(t, root, path);
    else
        st = sl_errorf(SL_ERR_FORMAT,
                       "%s: neither a Hugging Face tokenizer.json (no \"model\") nor a tiktoken "
                       "JSON (no \"bpe_ranks\")",
                       path);
    cJSON_Delete(root);
    return st;
}

typedef struct {
    const char *name;
    tok_pretokenizer pretok;
    struct {
        const char *text;
        uint32_t id;
    } specials[5];
} tiktoken_known;

static const tiktoken_known known_encodings[] = {
    {"cl100k_base",
     TOK_PRETOKENIZER_CL100K,
     {{"<|endoftext|>", 100257},
      {"<|fim_prefix|>", 100258},
      {"<|fim_middle|>", 100259},
      {"<|fim_suffix|>", 100260},
      {"<|endofprompt|>", 100276}}},
    {"r50k_base", TOK_PRETOKENIZER_GPT2, {{"<|endoftext|>", 50256}}},
    {"gpt2", TOK_PRETOKENIZER_GPT2, {{"<|endoftext|>", 50256}}},
    {"p50k_base", TOK_PRETOKENIZER_GPT2, {{"<|endoftext|>", 50256}}},
};

sl_status tok_load_tiktoken_ranks(tokenizer *t, const char *path, const char *encoding) {
    const tiktoken_known *k = NULL;
    for (size_t i = 0; i < sizeof known_encodings / sizeof known_encodings[0]; i++)
        if (strcmp(encoding, known_encodings[i].name) == 0)
            k = &known_encodings[i];
    if (!k)
        return sl_errorf(SL_ERR_UNSUPPORTED,
                         "%s: a tiktoken rank file does not say its regex or special tokens; "
                         "shardlm knows them for files named cl100k_base, r50k_base, p50k_base "
                         "or gpt2 (.tiktoken), not \"%s\"; rename the file or use tiktoken's "
                         "JSON form (pat_str, special_tokens, bpe_ranks)",
                         path, encoding);
    char *buf;
    size_t len;
    SL_TRY(fs_read_file(path, &buf, &len, TOK_MAX_FILE_BYTES));
    sl_status st = SL_OK;
    size_t line = 0;
    for (char *p = buf, *end = buf + len; p < end && st == SL_OK;) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        line++;
        char *sp = memchr(p, ' ', (size_t)(eol - p));
        if (eol > p) {
            char *after = NULL;
            unsigned long rank = sp ? strtoul(sp + 1, &after, 10) : 0;
            if (!sp || after == sp + 1 || (after != eol && !(*after == '\r' && after + 1 == eol)) ||
                rank >= (1u << 30))
                st = sl_errorf(SL_ERR_FORMAT, "%s:%zu: expected \"base64 rank\"", path, line);
            else
                st = add_b64_token(t, p, (size_t)(sp - p), (uint32_t)rank, path, line);
        }
        p = eol + 1;
    }
    free(buf);
    SL_TRY(st);
    for (int i = 0; i < 5 && k->specials[i].text; i++)
        SL_TRY(tok_put_special(t, k->specials[i].text, strlen(k->specials[i].text),
                               k->specials[i].id, 0));
    SL_TRY(finish_tiktoken(t, path));
    return tok_set_pattern(t, k->pretok, NULL, path);
}
