/* data/chat.c: the chatml template (chat.h). */
#include "data/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/check.h"
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

sl_status chat_template_init(const char *name, tokenizer *t, chat_template *out) {
    if (strcmp(name, "chatml") != 0)
        return sl_errorf(SL_ERR_INVALID,
                         "prepare.chat_template \"%s\" is not known; the one template is \"chatml\"",
                         name);
    int64_t s = tok_special_id(t, "<|im_start|>"), e = tok_special_id(t, "<|im_end|>");
    uint32_t id;
    if (s < 0) {
        SL_TRY(tok_add_special(t, "<|im_start|>", -1, &id));
        s = id;
    }
    if (e < 0) {
        SL_TRY(tok_add_special(t, "<|im_end|>", -1, &id));
        e = id;
    }
    out->im_start = (uint32_t)s;
    out->im_end = (uint32_t)e;
    return SL_OK;
}

sl_status chat_encode_text(const tokenizer *t, const char *text, size_t len, uint8_t m,
                           chat_seq *out) {
    /* byte-level BPE: never more tokens than bytes */
    SL_TRY(chat_seq_reserve(out, out->n + len + 1));
    size_t got = 0;
    SL_TRY(tok_encode(t, text, len, 0, out->ids + out->n, out->cap - out->n, &got));
    memset(out->mask + out->n, m, got);
    out->n += got;
    return SL_OK;
}

static sl_status push_id(chat_seq *out, uint32_t id, uint8_t m) {
    SL_TRY(chat_seq_reserve(out, out->n + 1));
    out->ids[out->n] = id;
    out->mask[out->n] = m;
    out->n++;
    return SL_OK;
}

/* <|im_start|>{role}\n, all masked out. */
static sl_status push_header(const chat_template *c, const tokenizer *t, int role, chat_seq *out) {
    char header[32];
    int hl = snprintf(header, sizeof header, "%s\n", role_names[role]);
    SL_TRY(push_id(out, c->im_start, 0));
    return chat_encode_text(t, header, (size_t)hl, 0, out);
}

sl_status chat_encode(const chat_template *c, const tokenizer *t, const chat_turn *turns, int n,
                      chat_seq *out) {
    for (int i = 0; i < n; i++) {
        SL_CHECK_ARG(turns[i].role >= 0 && turns[i].role < CHAT_ROLE_COUNT, "bad chat role %d",
                     turns[i].role);
        uint8_t train = turns[i].role == CHAT_ROLE_ASSISTANT;
        SL_TRY(push_header(c, t, turns[i].role, out));
        SL_TRY(chat_encode_text(t, turns[i].text, turns[i].len, train, out));
        SL_TRY(push_id(out, c->im_end, train));
        SL_TRY(chat_encode_text(t, "\n", 1, 0, out));
    }
    return SL_OK;
}

sl_status chat_encode_generation_prompt(const chat_template *c, const tokenizer *t, const chat_turn *turns,
                                        int n, chat_seq *out) {
    SL_TRY(chat_encode(c, t, turns, n, out));
    return push_header(c, t, CHAT_ROLE_ASSISTANT, out);
}
