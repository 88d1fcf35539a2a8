/* data/chat.h: the chat template that turns conversations into token ids and
 * a loss mask, for shardlm prepare.
 *
 * defines: chat_role, chat_role_parse, chat_role_name, chat_turn, chat_seq,
 *          chat_seq_reserve, chat_seq_free, chat_template, chat_template_init,
 *          chat_encode, chat_encode_generation_prompt, chat_encode_text
 *
 * Template "chatml" (the only one; README "Chat template"): each turn is
 *   <|im_start|>{role}\n{content}<|im_end|>\n
 * with <|im_start|> and <|im_end|> single special tokens. The loss mask is 1
 * on an assistant turn's content and its <|im_end|>, 0 elsewhere (role
 * headers, system/user/tool turns, the newline after <|im_end|>). Content is
 * encoded with specials disallowed, so text that spells "<|im_end|>" cannot
 * forge a turn boundary. A prompt/response pair is the turns user, assistant.
 * A generation prompt (shardlm generate) is the turns followed by the open
 * header "<|im_start|>assistant\n" for the model to continue.
 * When the tokenizer lacks the markers, chat_template_init registers them
 * with tok_add_special at the next free ids (GPT-2: 50257 and 50258, so a
 * model needs vocab_size >= 50259).
 */
#ifndef SL_DATA_CHAT_H
#define SL_DATA_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"
#include "runtime/status.h"

typedef enum {
    CHAT_ROLE_SYSTEM = 0,
    CHAT_ROLE_USER,
    CHAT_ROLE_ASSISTANT,
    CHAT_ROLE_TOOL,
    CHAT_ROLE_COUNT
} chat_role;

/* "system", "user", "assistant", "tool"; also ShareGPT's "human" (user) and
 * "gpt" (assistant). Returns -1 when unknown. */
int chat_role_parse(const char *s);
const char *chat_role_name(chat_role r);

typedef struct {
    int role; /* chat_role */
    const char *text;
    size_t len;
} chat_turn;

/* Token ids and their loss mask; owned by the caller, zero-initialize. */
typedef struct {
    uint32_t *ids;
    uint8_t *mask;
    size_t n, cap;
} chat_seq;

sl_status chat_seq_reserve(chat_seq *s, size_t cap);
void chat_seq_free(chat_seq *s);

typedef struct {
    uint32_t im_start, im_end;
} chat_template;

/* name: "chatml". Registers the markers on t when missing. */
sl_status chat_template_init(const char *name, tokenizer *t, chat_template *out);

/* Appends the encoded conversation to out (out->n is not reset). */
sl_status chat_encode(const chat_template *c, const tokenizer *t, const chat_turn *turns, int n,
                      chat_seq *out);
/* Appends the encoded conversation, then "<|im_start|>assistant\n" (mask 0)
 * with no content and no <|im_end|>: the prompt a model answers. */
sl_status chat_encode_generation_prompt(const chat_template *c, const tokenizer *t, const chat_turn *turns,
                                        int n, chat_seq *out);
/* Appends text encoded as ordinary text (specials disallowed) with mask m. */
sl_status chat_encode_text(const tokenizer *t, const char *text, size_t len, uint8_t m,
                           chat_seq *out);

#endif
