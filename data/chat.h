/* data/chat.h: the chat templates that turn conversations into token ids
 * and a loss mask, for shardlm prepare and shardlm generate --chat.
 *
 * defines: chat_role, chat_role_parse, chat_role_name, chat_turn, chat_seq,
 *          chat_seq_reserve, chat_seq_free, chat_format, chat_template,
 *          chat_template_init, chat_template_detect, chat_encode,
 *          chat_encode_generation_prompt, chat_encode_answer, chat_encode_text
 *
 * Formats (README "Chat templates"), each the rendering of its family's
 * tokenizer_config.json chat_template for system/user/assistant turns:
 *   chatml  <|im_start|>{role}\n{content}<|im_end|>\n
 *   qwen3   chatml, and a final assistant turn after the last user turn
 *           opens with "<think>\n\n</think>\n\n" (Qwen3's template)
 *   llama3  <|begin_of_text|> once, then per turn
 *           <|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>
 *   llama2  Llama-2-chat / Mistral [INST]: per user turn
 *           <s>[INST] {user|strip} [/INST], the first user turn prefixed by
 *           "<<SYS>>\n{system}\n<</SYS>>\n\n" when there is a system turn;
 *           per assistant turn " {content|strip} </s>"; turns must alternate
 *           user/assistant (the template raises otherwise).
 *   gemma   <bos> once, then <start_of_turn>{user|model}\n{content|trim}
 *           <end_of_turn>\n, the system text + "\n\n" before the first user
 *           content.
 * The loss mask is 1 on an assistant turn's content and its end marker
 * (chatml/qwen3: <|im_end|>, llama3: <|eot_id|>, llama2: </s>, gemma:
 * <end_of_turn>), 0 elsewhere. Content is encoded with specials disallowed,
 * so text that spells a marker cannot forge a turn boundary. The text
 * between two special tokens is encoded as one string, as the tokenizer
 * encodes the rendered template (SentencePiece-style tokenizers merge
 * across a role/content boundary); a token that straddles a mask boundary
 * takes the mask of the later part.
 * A generation prompt (shardlm generate) is the turns followed by the open
 * assistant header the template's add_generation_prompt writes.
 * chatml: when the tokenizer lacks <|im_start|>/<|im_end|>, chat_template_init
 * registers them with tok_add_special at the next free ids (GPT-2: 50257 and
 * 50258, so a model needs vocab_size >= 50259). The other formats need their
 * markers in the tokenizer and fail naming the missing one.
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

typedef enum {
    CHAT_FORMAT_CHATML = 0,
    CHAT_FORMAT_QWEN3,
    CHAT_FORMAT_LLAMA3,
    CHAT_FORMAT_LLAMA2,
    CHAT_FORMAT_GEMMA,
} chat_format;

typedef struct {
    chat_format format;
    uint32_t im_start, im_end; /* the turn's opening and closing special tokens
                                  (llama2: <s> and </s>); im_end ends generation */
    uint32_t header_end;       /* llama3: <|end_header_id|> */
    int64_t bos;               /* llama3 / gemma: written once at the start; -1 otherwise */
} chat_template;

/* name: "chatml", "qwen3", "llama3", "llama2" (also "mistral", "inst"),
 * "gemma". Registers the chatml markers on t when missing. */
sl_status chat_template_init(const char *name, tokenizer *t, chat_template *out);

/* The format of the chat_template in the tokenizer_config.json beside
 * tokenizer_path (a tokenizer file or its folder), written to name (cap >=
 * 16): by the markers it writes. No tokenizer_config.json or no
 * chat_template: "chatml". A template none of the formats matches is
 * SL_ERR_UNSUPPORTED naming the file. */
sl_status chat_template_detect(const char *tokenizer_path, char *name, size_t cap);

/* Appends the encoded conversation to out (out->n is not reset). */
sl_status chat_encode(const chat_template *c, const tokenizer *t, const chat_turn *turns, int n,
                      chat_seq *out);
/* Appends the encoded conversation, then the open assistant header (mask 0)
 * with no content and no end marker: the prompt a model answers. */
sl_status chat_encode_generation_prompt(const chat_template *c, const tokenizer *t, const chat_turn *turns,
                                        int n, chat_seq *out);
/* Appends what an assistant answer adds to turns[0..n): the rendering of
 * turns + answer after the rendering of the generation prompt of turns
 * (which is its prefix, as for Hugging Face's apply_chat_template with and
 * without add_generation_prompt), encoded as its own string; the mask as
 * chat_encode gives it (1 on the content and the end marker; qwen3: also the
 * empty <think> block). The preference pairs of shardlm prepare are
 * chat_encode_generation_prompt (prompt) + this (response), as TRL renders
 * and tokenizes them separately. */
sl_status chat_encode_answer(const chat_template *c, const tokenizer *t, const chat_turn *turns, int n,
                             const chat_turn *answer, chat_seq *out);
/* Appends text encoded as ordinary text (specials disallowed) with mask m. */
sl_status chat_encode_text(const tokenizer *t, const char *text, size_t len, uint8_t m,
                           chat_seq *out);

#endif
