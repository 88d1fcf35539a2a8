/* data/handoff.c: tok_handoff_write (handoff.h). */
#include "data/handoff.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/chat.h"
#include "data/tokenizer.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"

/* The chatml template as Hugging Face writes it (no think blocks). */
static const char chatml_jinja[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

static sl_status read_json_file(const char *path, cJSON **out) {
    char *buf;
    size_t len;
    *out = NULL;
    SL_TRY(fs_read_file(path, &buf, &len, (size_t)1 << 30));
    *out = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!*out)
        return sl_errorf(SL_ERR_FORMAT, "%s is not valid JSON", path);
    return SL_OK;
}

static sl_status write_json_file(const char *path, const cJSON *j) {
    char *text = cJSON_Print(j);
    SL_CHECK_ALLOC(text, 64);
    sl_status st = fs_write_atomic(path, text, strlen(text));
    free(text);
    return st;
}

static sl_status join(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return sl_errorf(SL_ERR_INVALID, "path too long: %s/%s", dir, name);
    return SL_OK;
}

static int has_added(const cJSON *added, const char *content) {
    for (const cJSON *a = added ? added->child : NULL; a; a = a->next) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content");
        if (cJSON_IsString(c) && strcmp(c->valuestring, content) == 0)
            return 1;
    }
    return 0;
}

static sl_status add_token(cJSON *added, const char *content, uint32_t id) {
    cJSON *o = cJSON_CreateObject();
    SL_CHECK_ALLOC(o, 64);
    cJSON_AddNumberToObject(o, "id", id);
    cJSON_AddStringToObject(o, "content", content);
    cJSON_AddBoolToObject(o, "single_word", 0);
    cJSON_AddBoolToObject(o, "lstrip", 0);
    cJSON_AddBoolToObject(o, "rstrip", 0);
    cJSON_AddBoolToObject(o, "normalized", 0);
    cJSON_AddBoolToObject(o, "special", 1);
    cJSON_AddItemToArray(added, o);
    return SL_OK;
}

static void set_str(cJSON *o, const char *key, const char *v) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    cJSON_AddStringToObject(o, key, v);
}

static void set_num(cJSON *o, const char *key, double v) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    cJSON_AddNumberToObject(o, key, v);
}

static const char *id_text(const tokenizer *t, int64_t id, char *buf, size_t cap) {
    size_t n = 0;
    uint32_t u = (uint32_t)id;
    if (id < 0 || tok_decode(t, &u, 1, buf, cap - 1, &n) != SL_OK) {
        sl_error_clear();
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

static sl_status write_all(tokenizer *t, const char *json_src, const char *cfg_src,
                           const char *fmt, const char *out_dir) {
    chat_template ct;
    SL_TRY(chat_template_init(fmt, t, &ct));
    char path[4096];
    sl_status st = SL_OK;
    /* tokenizer.json, with the markers prepare registered */
    if (json_src) {
        cJSON *j;
        SL_TRY(read_json_file(json_src, &j));
        cJSON *added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
        if (!cJSON_IsArray(added)) {
            cJSON_DeleteItemFromObjectCaseSensitive(j, "added_tokens");
            added = cJSON_AddArrayToObject(j, "added_tokens");
        }
        static const char *const marks[] = {"<|im_start|>", "<|im_end|>"};
        for (int i = 0; i < 2 && st == SL_OK; i++) {
            int64_t id = tok_special_id(t, marks[i]);
            if (id >= 0 && !has_added(added, marks[i]))
                st = add_token(added, marks[i], (uint32_t)id);
        }
        if (st == SL_OK)
            st = join(path, sizeof path, out_dir, "tokenizer.json");
        if (st == SL_OK)
            st = write_json_file(path, j);
        cJSON_Delete(j);
        SL_TRY(st);
    }
    /* tokenizer_config.json */
    cJSON *cfg = NULL;
    if (cfg_src && fs_exists(cfg_src))
        SL_TRY(read_json_file(cfg_src, &cfg));
    else
        cfg = cJSON_CreateObject();
    SL_CHECK_ALLOC(cfg, 64);
    char bos[256], eos[256];
    const char *bos_s = id_text(t, tok_bos_id(t), bos, sizeof bos);
    const char *eos_s = id_text(t, tok_eos_id(t), eos, sizeof eos);
    if (!cJSON_GetObjectItemCaseSensitive(cfg, "chat_template")) {
        if (ct.format == CHAT_FORMAT_CHATML)
            cJSON_AddStringToObject(cfg, "chat_template", chatml_jinja);
    }
    if (bos_s && !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(cfg, "bos_token")))
        set_str(cfg, "bos_token", bos_s);
    if (eos_s && !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(cfg, "eos_token")))
        set_str(cfg, "eos_token", eos_s);
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(cfg, "pad_token")) && eos_s)
        set_str(cfg, "pad_token", eos_s);
    if (!cJSON_GetObjectItemCaseSensitive(cfg, "tokenizer_class"))
        cJSON_AddStringToObject(cfg, "tokenizer_class", "PreTrainedTokenizerFast");
    st = join(path, sizeof path, out_dir, "tokenizer_config.json");
    if (st == SL_OK)
        st = write_json_file(path, cfg);
    /* generation_config.json */
    cJSON *gen = cJSON_CreateObject();
    if (!gen) {
        cJSON_Delete(cfg);
        return sl_errorf(SL_ERR_NOMEM, "out of memory for generation_config.json");
    }
    if (tok_bos_id(t) >= 0)
        set_num(gen, "bos_token_id", (double)tok_bos_id(t));
    cJSON *eos_ids = cJSON_AddArrayToObject(gen, "eos_token_id");
    if (tok_eos_id(t) >= 0)
        cJSON_AddItemToArray(eos_ids, cJSON_CreateNumber((double)tok_eos_id(t)));
    if ((int64_t)ct.im_end != tok_eos_id(t))
        cJSON_AddItemToArray(eos_ids, cJSON_CreateNumber(ct.im_end));
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(cfg, "pad_token");
    int64_t pad_id = cJSON_IsString(pad) ? tok_special_id(t, pad->valuestring) : -1;
    if (pad_id >= 0)
        set_num(gen, "pad_token_id", (double)pad_id);
    if (st == SL_OK)
        st = join(path, sizeof path, out_dir, "generation_config.json");
    if (st == SL_OK)
        st = write_json_file(path, gen);
    cJSON_Delete(gen);
    cJSON_Delete(cfg);
    return st;
}

sl_status tok_handoff_write(const char *src, const char *out_dir) {
    char json_src[4096], cfg_src[4096];
    int is_dir = fs_is_dir(src);
    if (is_dir) {
        SL_TRY(join(json_src, sizeof json_src, src, "tokenizer.json"));
        if (!fs_exists(json_src))
            return SL_OK;
        SL_TRY(join(cfg_src, sizeof cfg_src, src, "tokenizer_config.json"));
    } else {
        snprintf(json_src, sizeof json_src, "%s", src);
        const char *slash = strrchr(src, '/');
        int n = slash ? snprintf(cfg_src, sizeof cfg_src, "%.*s/tokenizer_config.json",
                                 (int)(slash - src), src)
                      : snprintf(cfg_src, sizeof cfg_src, "tokenizer_config.json");
        if (n < 0 || (size_t)n >= sizeof cfg_src)
            return sl_errorf(SL_ERR_INVALID, "path too long: %s", src);
    }
    size_t sl = strlen(json_src);
    int is_hf_json = sl >= 5 && strcmp(json_src + sl - 5, ".json") == 0;
    if (!is_hf_json) {
        /* GPT-2 / tiktoken files: copied unchanged (no tokenizer.json) */
        char *text = NULL, dst[4096];
        size_t len = 0;
        const char *base = strrchr(src, '/');
        SL_TRY(join(dst, sizeof dst, out_dir, base ? base + 1 : src));
        SL_TRY(fs_read_file(src, &text, &len, (size_t)1 << 30));
        sl_status st = fs_write_atomic(dst, text, len);
        free(text);
        return st;
    }
    char fmt[32];
    SL_TRY(chat_template_detect(src, fmt, sizeof fmt));
    tokenizer *t;
    SL_TRY(tok_load(src, &t));
    sl_status st = write_all(t, json_src, cfg_src, fmt, out_dir);
    tok_destroy(t);
    return st;
}
