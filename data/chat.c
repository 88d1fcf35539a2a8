/* data/chat.c: the chat templates (chat.h). A conversation is rendered to
 * segments (a special token id, or text with a mask), then encoded: the
 * text between two special tokens as one string. */
#include "data/chat.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/mem.h"

static const char *const role_names[CHAT_ROLE_COUNT] = {"system", "user", "assistant", "tool"};

int chat_role_parse(const char *s) {
    for (int i = 0; i < CHAT_ROLE_COUNT; i++)
        if (strcmp(s, role_names[i]) == 0)
            return i;
    if (strcmp(s, "human") == 0)
        return CHAT_ROLE_USER;
    if (strcmp(s, "gpt") == 0)
        return CHAT_ROLE_ASSISTANT;
    return -1;
}

const char *chat_role_name(chat_role r) { return r < CHAT_ROLE_COUNT ? role_names[r] : "?"; }

sl_status chat_seq_reserve(chat_seq *s, size_t cap) {
    if (cap <= s->cap)
        return SL_OK;
    size_t nc = mem_grow_cap(s->cap, cap, 256);
    uint32_t *ids = realloc(s->ids, nc * sizeof *ids);
    SL_CHECK_ALLOC(ids, nc * sizeof *ids);
    s->ids = ids;
    uint8_t *mask = realloc(s->mask, nc);
    SL_CHECK_ALLOC(mask, nc);
    s->mask = mask;
    s->cap = nc;
    return SL_OK;
}

void chat_seq_free(chat_seq *s) {
    free(s->ids);
    free(s->mask);
    memset(s, 0, sizeof *s);
}

/* ---- templates ---- */

static sl_status need_special(const tokenizer *t, const char *text, const char *fmt,
                              uint32_t *out) {
    int64_t id = tok_special_id(t, text);
    if (id < 0)
        return sl_errorf(SL_ERR_INVALID,
                         "chat template \"%s\" needs the special token \"%s\", which tokenizer %s "
                         "lacks; pick the template of this tokenizer's model "
                         "(prepare.chat_template)",
                         fmt, text, tok_name(t));
    *out = (uint32_t)id;
    return SL_OK;
}

static sl_status ensure_special(tokenizer *t, const char *text, uint32_t *out) {
    int64_t id = tok_special_id(t, text);
    if (id >= 0) {
        *out = (uint32_t)id;
        return SL_OK;
    }
    return tok_add_special(t, text, -1, out);
}

sl_status chat_template_init(const char *name, tokenizer *t, chat_template *out) {
    *out = (chat_template){.bos = -1};
    uint32_t id = 0;
    if (!strcmp(name, "chatml") || !strcmp(name, "qwen3")) {
        out->format = name[0] == 'c' ? CHAT_FORMAT_CHATML : CHAT_FORMAT_QWEN3;
        SL_TRY(ensure_special(t, "<|im_start|>", &out->im_start));
        return ensure_special(t, "<|im_end|>", &out->im_end);
    }
    if (!strcmp(name, "llama3")) {
        out->format = CHAT_FORMAT_LLAMA3;
        SL_TRY(need_special(t, "<|begin_of_text|>", name, &id));
        out->bos = id;
        SL_TRY(need_special(t, "<|start_header_id|>", name, &out->im_start));
        SL_TRY(need_special(t, "<|end_header_id|>", name, &out->header_end));
        return need_special(t, "<|eot_id|>", name, &out->im_end);
    }
    if (!strcmp(name, "llama2") || !strcmp(name, "mistral") || !strcmp(name, "inst")) {
        out->format = CHAT_FORMAT_LLAMA2;
        SL_TRY(need_special(t, "<s>", name, &out->im_start));
        return need_special(t, "</s>", name, &out->im_end);
    }
    if (!strcmp(name, "gemma")) {
        out->format = CHAT_FORMAT_GEMMA;
        SL_TRY(need_special(t, "<bos>", name, &id));
        out->bos = id;
        SL_TRY(need_special(t, "<start_of_turn>", name, &out->im_start));
        return need_special(t, "<end_of_turn>", name, &out->im_end);
    }
    return sl_errorf(SL_ERR_INVALID,
                     "prepare.chat_template \"%s\" is not known; the templates are auto, chatml, "
                     "qwen3, llama3, llama2 (mistral, inst) and gemma",
                     name);
}

sl_status chat_template_detect(const char *tokenizer_path, char *name, size_t cap) {
    char cfg[4096];
    snprintf(name, cap, "chatml");
    int n;
    if (fs_is_dir(tokenizer_path)) {
        n = snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", tokenizer_path);
    } else {
        const char *slash = strrchr(tokenizer_path, '/');
        n = slash ? snprintf(cfg, sizeof cfg, "%.*s/tokenizer_config.json",
                             (int)(slash - tokenizer_path), tokenizer_path)
                  : snprintf(cfg, sizeof cfg, "tokenizer_config.json");
    }
    if (n < 0 || (size_t)n >= sizeof cfg || !fs_exists(cfg))
        return SL_OK;
    char *buf;
    size_t len;
    SL_TRY(fs_read_file(cfg, &buf, &len, (size_t)64 << 20));
    cJSON *j = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!j)
        return sl_errorf(SL_ERR_FORMAT, "%s is not valid JSON", cfg);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
    sl_status st = SL_OK;
    if (cJSON_IsArray(ct)) { /* [{"name": "default", "template": ...}, ...] */
        const cJSON *def = NULL;
        for (const cJSON *e = ct->child; e; e = e->next) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
            if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default"))
                def = cJSON_GetObjectItemCaseSensitive(e, "template");
        }
        ct = def;
    }
    if (cJSON_IsString(ct)) {
        const char *s = ct->valuestring;
        if (strstr(s, "<|start_header_id|>"))
            snprintf(name, cap, "llama3");
        else if (strstr(s, "<|im_start|>"))
            snprintf(name, cap, strstr(s, "<think>") ? "qwen3" : "chatml");
        else if (strstr(s, "[INST]"))
            snprintf(name, cap, "llama2");
        else if (strstr(s, "<start_of_turn>"))
            snprintf(name, cap, "gemma");
        else
            st = sl_errorf(SL_ERR_UNSUPPORTED,
                           "%s: chat_template is none of the formats shardlm writes (chatml, "
                           "qwen3, llama3, llama2 [INST], gemma); set prepare.chat_template to "
                           "the one that matches, or convert the data to that format",
                           cfg);
    }
    cJSON_Delete(j);
    return st;
}

/* ---- rendering to segments ---- */

typedef struct {
    const char *text; /* NULL for a special token */
    size_t len;
    uint32_t id;
    uint8_t mask;
} chat_seg;

typedef struct {
    chat_seg *v;
    size_t n, cap;
} seg_list;

static sl_status seg_push(seg_list *l, const char *text, size_t len, uint32_t id, uint8_t mask) {
    if (text && len == 0)
        return SL_OK;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 32;
        chat_seg *v = realloc(l->v, cap * sizeof *v);
        SL_CHECK_ALLOC(v, cap * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (chat_seg){text, len, id, mask};
    return SL_OK;
}

#define TXT(l, s, m) seg_push(l, s, strlen(s), 0, m)
#define SPC(l, id, m) seg_push(l, NULL, 0, id, m)

/* Jinja's trim / Python's strip: whitespace at both ends. */
static void trim(const char **s, size_t *n, int left, int right) {
    static const char ws[] = " \t\n\r\v\f";
    while (left && *n && strchr(ws, (*s)[0]))
        (*s)++, (*n)--;
    while (right && *n && strchr(ws, (*s)[*n - 1]))
        (*n)--;
}

/* A turn's text, trimmed at both ends, then the end-of-turn marker; m: both
 * are trained on (an assistant turn). */
static sl_status turn_body(const chat_template *c, const chat_turn *t, uint8_t m, seg_list *l) {
    const char *s = t->text;
    size_t len = t->len;
    trim(&s, &len, 1, 1);
    SL_TRY(seg_push(l, s, len, 0, m));
    return SPC(l, c->im_end, m);
}

static sl_status render_chatml(const chat_template *c, const chat_turn *turns, int n, seg_list *l) {
    int last_user = -1;
    for (int i = 0; i < n; i++)
        if (turns[i].role == CHAT_ROLE_USER)
            last_user = i;
    for (int i = 0; i < n; i++) {
        uint8_t m = turns[i].role == CHAT_ROLE_ASSISTANT;
        SL_TRY(SPC(l, c->im_start, 0));
        SL_TRY(TXT(l, role_names[turns[i].role], 0));
        SL_TRY(TXT(l, "\n", 0));
        if (m && c->format == CHAT_FORMAT_QWEN3 && i == n - 1 && i > last_user) {
            const char *s = turns[i].text;
            size_t len = turns[i].len;
            while (len && s[0] == '\n') /* content.lstrip('\n') */
                s++, len--;
            SL_TRY(TXT(l, "<think>\n\n</think>\n\n", 1));
            SL_TRY(seg_push(l, s, len, 0, 1));
        } else {
            SL_TRY(seg_push(l, turns[i].text, turns[i].len, 0, m));
        }
        SL_TRY(SPC(l, c->im_end, m));
        SL_TRY(TXT(l, "\n", 0));
    }
    return SL_OK;
}

static sl_status render_llama3(const chat_template *c, const chat_turn *turns, int n, seg_list *l) {
    for (int i = 0; i < n; i++) {
        uint8_t m = turns[i].role == CHAT_ROLE_ASSISTANT;
        if (i == 0)
            SL_TRY(SPC(l, (uint32_t)c->bos, 0));
        SL_TRY(SPC(l, c->im_start, 0));
        SL_TRY(TXT(l, role_names[turns[i].role], 0));
        SL_TRY(SPC(l, c->header_end, 0));
        SL_TRY(TXT(l, "\n\n", 0));
        SL_TRY(turn_body(c, &turns[i], m, l));
    }
    return SL_OK;
}

static sl_status alternation(const chat_turn *turns, int n, int first, const char *fmt) {
    for (int i = first; i < n; i++) {
        int want = (i - first) % 2 == 0 ? CHAT_ROLE_USER : CHAT_ROLE_ASSISTANT;
        if (turns[i].role != want)
            return sl_errorf(SL_ERR_INVALID,
                             "chat template %s: turn %d is %s; after an optional system turn, "
                             "turns must alternate user/assistant (the template raises otherwise)",
                             fmt, i, role_names[turns[i].role]);
    }
    return SL_OK;
}

static sl_status render_llama2(const chat_template *c, const chat_turn *turns, int n, seg_list *l) {
    int first = n > 0 && turns[0].role == CHAT_ROLE_SYSTEM;
    SL_TRY(alternation(turns, n, first, "llama2"));
    for (int i = first; i < n; i++) {
        const char *s = turns[i].text;
        size_t len = turns[i].len;
        if (turns[i].role == CHAT_ROLE_USER) {
            SL_TRY(SPC(l, c->im_start, 0));
            SL_TRY(TXT(l, "[INST] ", 0));
            if (first && i == 1) {
                /* ('<<SYS>>\n' + system + '\n<</SYS>>\n\n' + content).strip() */
                SL_TRY(TXT(l, "<<SYS>>\n", 0));
                SL_TRY(seg_push(l, turns[0].text, turns[0].len, 0, 0));
                SL_TRY(TXT(l, "\n<</SYS>>\n\n", 0));
                trim(&s, &len, 0, 1);
            } else {
                trim(&s, &len, 1, 1);
            }
            SL_TRY(seg_push(l, s, len, 0, 0));
            SL_TRY(TXT(l, " [/INST]", 0));
        } else {
            trim(&s, &len, 1, 1);
            SL_TRY(TXT(l, " ", 1));
            SL_TRY(seg_push(l, s, len, 0, 1));
            SL_TRY(TXT(l, " ", 1));
            SL_TRY(SPC(l, c->im_end, 1));
        }
    }
    return SL_OK;
}

static sl_status render_gemma(const chat_template *c, const chat_turn *turns, int n, seg_list *l) {
    int first = n > 0 && turns[0].role == CHAT_ROLE_SYSTEM;
    SL_TRY(alternation(turns, n, first, "gemma"));
    SL_TRY(SPC(l, (uint32_t)c->bos, 0));
    for (int i = first; i < n; i++) {
        uint8_t m = turns[i].role == CHAT_ROLE_ASSISTANT;
        SL_TRY(SPC(l, c->im_start, 0));
        SL_TRY(TXT(l, m ? "model\n" : "user\n", 0));
        if (first && i == 1) {
            SL_TRY(seg_push(l, turns[0].text, turns[0].len, 0, 0));
            SL_TRY(TXT(l, "\n\n", 0));
        }
        SL_TRY(turn_body(c, &turns[i], m, l));
        SL_TRY(TXT(l, "\n", 0));
    }
    return SL_OK;
}

static sl_status render(const chat_template *c, const chat_turn *turns, int n, seg_list *l) {
    for (int i = 0; i < n; i++)
        SL_CHECK_ARG(turns[i].role >= 0 && turns[i].role < CHAT_ROLE_COUNT, "bad chat role %d",
                     turns[i].role);
    switch (c->format) {
    case CHAT_FORMAT_CHATML:
    case CHAT_FORMAT_QWEN3:
        return render_chatml(c, turns, n, l);
    case CHAT_FORMAT_LLAMA3:
        return render_llama3(c, turns, n, l);
    case CHAT_FORMAT_LLAMA2:
        return render_llama2(c, turns, n, l);
    case CHAT_FORMAT_GEMMA:
        return render_gemma(c, turns, n, l);
    }
    return sl_errorf(SL_ERR_INTERNAL, "unknown chat format %d", (int)c->format);
}

/* ---- encoding ---- */

sl_status chat_encode_text(const tokenizer *t, const char *text, size_t len, uint8_t m,
                           chat_seq *out) {
    /* usually no more tokens than bytes; a prefix space or U+FFFD can add a few */
    SL_TRY(chat_seq_reserve(out, out->n + len + 8));
    size_t got = 0;
    sl_status st = tok_encode(t, text, len, 0, out->ids + out->n, out->cap - out->n, &got);
    if (st != SL_OK && got > out->cap - out->n) {
        sl_error_clear();
        SL_TRY(chat_seq_reserve(out, out->n + got));
        st = tok_encode(t, text, len, 0, out->ids + out->n, out->cap - out->n, &got);
    }
    SL_TRY(st);
    memset(out->mask + out->n, m, got);
    out->n += got;
    return SL_OK;
}

/* Text segments v[0..k), encoded as one string; a token's mask is that of
 * the segment its encoding-by-prefix first includes it in. */
static sl_status encode_stretch(const tokenizer *t, const chat_seg *v, size_t k, chat_seq *out,
                                char **buf, size_t *bcap) {
    size_t total = 0;
    for (size_t i = 0; i < k; i++)
        total += v[i].len;
    if (total + 1 > *bcap) {
        char *b = realloc(*buf, total + 1);
        SL_CHECK_ALLOC(b, total + 1);
        *buf = b;
        *bcap = total + 1;
    }
    size_t off = 0;
    for (size_t i = 0; i < k; i++) {
        memcpy(*buf + off, v[i].text, v[i].len);
        off += v[i].len;
    }
    size_t start = out->n;
    SL_TRY(chat_encode_text(t, *buf, total, v[k - 1].mask, out));
    size_t n_all = out->n - start;
    /* boundaries where the mask changes: tokens before the common prefix of
     * encode(prefix) and encode(all) belong to the prefix */
    chat_seq pre = {0};
    size_t plen = 0, done = 0;
    sl_status st = SL_OK;
    for (size_t i = 0; i + 1 < k && st == SL_OK; i++) {
        plen += v[i].len;
        if (v[i].mask == v[i + 1].mask)
            continue;
        pre.n = 0;
        st = chat_encode_text(t, *buf, plen, 0, &pre);
        size_t lcp = 0;
        while (st == SL_OK && lcp < pre.n && lcp < n_all && pre.ids[lcp] == out->ids[start + lcp])
            lcp++;
        for (size_t j = done; j < lcp; j++)
            out->mask[start + j] = v[i].mask;
        if (lcp > done)
            done = lcp;
        for (size_t j = done; j < n_all; j++)
            out->mask[start + j] = v[i + 1].mask;
    }
    chat_seq_free(&pre);
    return st;
}

static sl_status encode_segments(const tokenizer *t, const seg_list *l, chat_seq *out) {
    char *buf = NULL;
    size_t bcap = 0;
    sl_status st = SL_OK;
    for (size_t i = 0; i < l->n && st == SL_OK;) {
        if (!l->v[i].text) {
            st = chat_seq_reserve(out, out->n + 1);
            if (st == SL_OK) {
                out->ids[out->n] = l->v[i].id;
                out->mask[out->n++] = l->v[i].mask;
            }
            i++;
            continue;
        }
        size_t j = i;
        while (j < l->n && l->v[j].text)
            j++;
        st = encode_stretch(t, l->v + i, j - i, out, &buf, &bcap);
        i = j;
    }
    free(buf);
    return st;
}

sl_status chat_encode(const chat_template *c, const tokenizer *t, const chat_turn *turns, int n,
                      chat_seq *out) {
    seg_list l = {0};
    sl_status st = render(c, turns, n, &l);
    if (st == SL_OK)
        st = encode_segments(t, &l, out);
    free(l.v);
    return st;
}

/* Appends the open assistant header add_generation_prompt writes. */
static sl_status render_generation_header(const chat_template *c, int n, seg_list *l) {
    sl_status st = SL_OK;
    switch (c->format) {
    case CHAT_FORMAT_CHATML:
    case CHAT_FORMAT_QWEN3:
        st = SPC(l, c->im_start, 0);
        if (st == SL_OK)
            st = TXT(l, "assistant\n", 0);
        break;
    case CHAT_FORMAT_LLAMA3:
        if (n == 0)
            st = SPC(l, (uint32_t)c->bos, 0);
        if (st == SL_OK)
            st = SPC(l, c->im_start, 0);
        if (st == SL_OK)
            st = TXT(l, "assistant", 0);
        if (st == SL_OK)
            st = SPC(l, c->header_end, 0);
        if (st == SL_OK)
            st = TXT(l, "\n\n", 0);
        break;
    case CHAT_FORMAT_LLAMA2:
        break; /* the prompt ends with " [/INST]" */
    case CHAT_FORMAT_GEMMA:
        st = SPC(l, c->im_start, 0);
        if (st == SL_OK)
            st = TXT(l, "model\n", 0);
        break;
    }
    return st;
}

sl_status chat_encode_generation_prompt(const chat_template *c, const tokenizer *t, const chat_turn *turns,
                                        int n, chat_seq *out) {
    seg_list l = {0};
    sl_status st = render(c, turns, n, &l);
    if (st == SL_OK)
        st = render_generation_header(c, n, &l);
    if (st == SL_OK)
        st = encode_segments(t, &l, out);
    free(l.v);
    return st;
}

/* out = full's segments after the rendering p (special ids and text, byte
 * for byte); text segments may split. SL_ERR_INVALID when p is not a prefix
 * of full. out's text points into full's. */
static sl_status seg_strip_prefix(const seg_list *full, const seg_list *p, seg_list *out) {
    size_t i = 0, off = 0; /* position in full: segment i, byte off of its text */
    for (size_t k = 0; k < p->n; k++) {
        const chat_seg *q = &p->v[k];
        if (!q->text) {
            if (off != 0 || i >= full->n || full->v[i].text || full->v[i].id != q->id)
                return SL_ERR_INVALID;
            i++;
            continue;
        }
        size_t done = 0;
        while (done < q->len) {
            if (i >= full->n || !full->v[i].text)
                return SL_ERR_INVALID;
            size_t take = full->v[i].len - off;
            if (take > q->len - done)
                take = q->len - done;
            if (memcmp(full->v[i].text + off, q->text + done, take) != 0)
                return SL_ERR_INVALID;
            done += take;
            off += take;
            if (off == full->v[i].len) {
                i++;
                off = 0;
            }
        }
    }
    for (; i < full->n; i++, off = 0) {
        const chat_seg *v = &full->v[i];
        SL_TRY(v->text ? seg_push(out, v->text + off, v->len - off, 0, v->mask)
                       : SPC(out, v->id, v->mask));
    }
    return SL_OK;
}

sl_status chat_encode_answer(const chat_template *c, const tokenizer *t, const chat_turn *turns, int n,
                             const chat_turn *answer, chat_seq *out) {
    SL_CHECK_ARG(n >= 0 && n < 4096, "conversation of %d turns", n);
    SL_CHECK_ARG(answer->role == CHAT_ROLE_ASSISTANT, "the answer must be an assistant turn");
    chat_turn *all = malloc(sizeof *all * (size_t)(n + 1));
    SL_CHECK_ALLOC(all, sizeof *all * (size_t)(n + 1));
    if (n > 0)
        memcpy(all, turns, sizeof *all * (size_t)n);
    all[n] = *answer;
    seg_list full = {0}, pre = {0}, rest = {0};
    sl_status st = render(c, all, n + 1, &full);
    if (st == SL_OK)
        st = render(c, turns, n, &pre);
    if (st == SL_OK)
        st = render_generation_header(c, n, &pre);
    if (st == SL_OK) {
        st = seg_strip_prefix(&full, &pre, &rest);
        if (st == SL_ERR_INVALID)
            st = sl_errorf(SL_ERR_INTERNAL,
                           "chat template %d: the generation prompt is not a prefix of the "
                           "conversation with its answer",
                           (int)c->format);
    }
    if (st == SL_OK)
        st = encode_segments(t, &rest, out);
    free(full.v);
    free(pre.v);
    free(rest.v);
    free(all);
    return st;
}
