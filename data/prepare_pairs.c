/* data/prepare_pairs.c: preference-pair records (prepare_pairs.h). */
#include "data/prepare_pairs.h"

#include <string.h>

static const char HH_HUMAN[] = "\n\nHuman:", HH_ASSISTANT[] = "\n\nAssistant:";

bool prep_pair_is(const cJSON *root, const cfg_prepare *f) {
    return cJSON_GetObjectItemCaseSensitive(root, f->chosen_field) &&
           cJSON_GetObjectItemCaseSensitive(root, f->rejected_field);
}

/* Appends the {role, content} messages of list to turns[*n..max). */
static bool push_messages(const cJSON *list, const cfg_prepare *f, int max, chat_turn *turns, int *n) {
    const cJSON *m;
    cJSON_ArrayForEach(m, list) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, f->role_field);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, f->content_field);
        int r = cJSON_IsString(role) ? chat_role_parse(role->valuestring) : -1;
        if (r < 0 || !cJSON_IsString(content) || *n == max)
            return false;
        turns[(*n)++] = (chat_turn){r, content->valuestring, strlen(content->valuestring)};
    }
    return true;
}

/* One side of a conversational pair: prompt list (or NULL) + side (a list,
 * or a string answer); the last turn is the answer. */
static bool parse_conv_side(const cJSON *prompt, const cJSON *side, const cfg_prepare *f, int max,
                            chat_turn *turns, int *n, chat_turn *answer) {
    *n = 0;
    if (prompt && !push_messages(prompt, f, max, turns, n))
        return false;
    if (cJSON_IsString(side)) {
        *answer = (chat_turn){CHAT_ROLE_ASSISTANT, side->valuestring, strlen(side->valuestring)};
        return true;
    }
    if (!push_messages(side, f, max, turns, n) || *n == 0 || turns[*n - 1].role != CHAT_ROLE_ASSISTANT)
        return false;
    *answer = turns[--(*n)];
    return true;
}

static const char *find_last(const char *s, size_t len, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = len >= k ? len - k + 1 : 0; i-- > 0;)
        if (memcmp(s + i, needle, k) == 0)
            return s + i;
    return NULL;
}

/* The next marker at or after p, or NULL; *human says which. */
static const char *next_marker(const char *p, const char *end, bool *human) {
    for (; p + sizeof HH_HUMAN - 1 <= end; p++) {
        if (p[0] != '\n' || p[1] != '\n')
            continue;
        if ((size_t)(end - p) >= sizeof HH_HUMAN - 1 && memcmp(p, HH_HUMAN, sizeof HH_HUMAN - 1) == 0) {
            *human = true;
            return p;
        }
        if ((size_t)(end - p) >= sizeof HH_ASSISTANT - 1 &&
            memcmp(p, HH_ASSISTANT, sizeof HH_ASSISTANT - 1) == 0) {
            *human = false;
            return p;
        }
    }
    return NULL;
}

/* After a marker: one space is the separator. */
static const char *skip_sep(const char *p, const char *end) { return p < end && *p == ' ' ? p + 1 : p; }

/* An HH-RLHF conversation string: prompt turns and the final answer. */
static bool parse_hh(const char *s, const cfg_prepare *f, int max, chat_turn *turns, int *n,
                     chat_turn *answer) {
    (void)f;
    size_t len = strlen(s);
    const char *last = find_last(s, len, HH_ASSISTANT), *end = s + len;
    if (!last)
        return false;
    const char *a = skip_sep(last + sizeof HH_ASSISTANT - 1, end);
    *answer = (chat_turn){CHAT_ROLE_ASSISTANT, a, (size_t)(end - a)};
    *n = 0;
    bool human;
    const char *p = next_marker(s, last + 2, &human); /* the first marker */
    if (p != s) /* text before the first "\n\nHuman:" is not HH-RLHF */
        return false;
    while (p < last) {
        size_t mk = human ? sizeof HH_HUMAN - 1 : sizeof HH_ASSISTANT - 1;
        const char *c = skip_sep(p + mk, last);
        bool next_human = false;
        const char *q = next_marker(c, last, &next_human);
        if (!q)
            q = last;
        if (*n == max)
            return false;
        turns[(*n)++] = (chat_turn){human ? CHAT_ROLE_USER : CHAT_ROLE_ASSISTANT, c, (size_t)(q - c)};
        p = q;
        human = next_human;
    }
    return *n > 0;
}

static bool same_turns(const chat_turn *a, int na, const chat_turn *b, int nb) {
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (a[i].role != b[i].role || a[i].len != b[i].len || memcmp(a[i].text, b[i].text, a[i].len) != 0)
            return false;
    return true;
}

bool prep_pair_parse(const cJSON *root, const cfg_prepare *f, int max_turns, chat_turn *other_prompt,
                     prep_pair *p) {
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(root, f->chosen_field);
    const cJSON *rj = cJSON_GetObjectItemCaseSensitive(root, f->rejected_field);
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(root, f->prompt_field);
    int n_other = 0;
    p->n_prompt = 0;
    p->prompt_mismatch = false;
    bool strings = cJSON_IsString(ch) && cJSON_IsString(rj);
    if (strings && cJSON_IsString(pr)) {
        p->shape = PREP_PAIR_STANDARD;
        p->prompt[0] = (chat_turn){CHAT_ROLE_USER, pr->valuestring, strlen(pr->valuestring)};
        p->n_prompt = 1;
        p->chosen = (chat_turn){CHAT_ROLE_ASSISTANT, ch->valuestring, strlen(ch->valuestring)};
        p->rejected = (chat_turn){CHAT_ROLE_ASSISTANT, rj->valuestring, strlen(rj->valuestring)};
        return true;
    }
    if (strings && !pr) {
        p->shape = PREP_PAIR_HH;
        if (!parse_hh(ch->valuestring, f, max_turns, p->prompt, &p->n_prompt, &p->chosen) ||
            !parse_hh(rj->valuestring, f, max_turns, other_prompt, &n_other, &p->rejected))
            return false;
    } else if ((cJSON_IsArray(ch) && cJSON_IsArray(rj)) || (strings && cJSON_IsArray(pr))) {
        p->shape = PREP_PAIR_CONV;
        const cJSON *plist = cJSON_IsArray(pr) ? pr : NULL;
        if (!parse_conv_side(plist, ch, f, max_turns, p->prompt, &p->n_prompt, &p->chosen) ||
            !parse_conv_side(plist, rj, f, max_turns, other_prompt, &n_other, &p->rejected))
            return false;
    } else {
        return false;
    }
    p->prompt_mismatch = !same_turns(p->prompt, p->n_prompt, other_prompt, n_other);
    return true;
}
