/* data/handoff.h: the tokenizer half of a Hugging Face export folder.
 *
 * defines: tok_handoff_write
 *
 * Writes, beside the config.json and safetensors that model/hf.c writes:
 *   tokenizer.json         the source tokenizer.json with the added tokens
 *                          the chat template registers (chatml markers on a
 *                          GPT-2 vocabulary) appended to added_tokens; a
 *                          source in another format (GPT-2 files, tiktoken)
 *                          is copied unchanged.
 *   tokenizer_config.json  the source's, with chat_template (the Jinja text
 *                          of the format prepare used, when the source has
 *                          none), bos_token, eos_token and pad_token.
 *   generation_config.json bos_token_id, eos_token_id (EOS and the chat
 *                          end-of-turn token), pad_token_id.
 * Does not: convert GPT-2 or tiktoken files to tokenizer.json.
 */
#ifndef SL_DATA_HANDOFF_H
#define SL_DATA_HANDOFF_H

#include "runtime/status.h"

/* tokenizer_src: what tok_load takes (file or folder); a folder without a
 * tokenizer is not an error (nothing is written). out_dir exists. The chat
 * format is the one prepare.chat_template=auto picks. Errors name the file. */
sl_status tok_handoff_write(const char *tokenizer_src, const char *out_dir);

#endif
