/* data/prepare_pairs.h: preference-pair records of shardlm prepare (internal
 * to data/prepare*.c): which JSONL records are pairs and their prompt turns
 * and two answers.
 *
 * defines: prep_pair_shape, prep_pair, prep_pair_is, prep_pair_parse
 *
 * A record is a pair when it has both prepare.chosen_field and
 * prepare.rejected_field (whatever their values). Shapes (README
 * "Preference pairs"):
 *   STANDARD  prompt, chosen and rejected are strings (TRL's "standard"
 *             format): one prompt text and two response texts.
 *   CONV      chosen and rejected are lists of {role, content}: each side's
 *             conversation is prompt (when it is a list: TRL's explicit
 *             prompt) followed by that list, and must end with an assistant
 *             message, the answer; the messages before it are that side's
 *             prompt (UltraFeedback-binarized: the list is the whole
 *             conversation, and a "prompt" string beside it is ignored).
 *             A prompt list with string answers is read the same way.
 *   HH        chosen and rejected are strings and there is no prompt
 *             (Anthropic HH-RLHF): each is a conversation
 *             "\n\nHuman: ...\n\nAssistant: ...". Its prompt is everything
 *             up to and including the last "\n\nAssistant:", split into
 *             user/assistant turns at each "\n\nHuman:" and
 *             "\n\nAssistant:" (one space after the marker is the
 *             separator, as TRL's hh-rlhf-helpful-base script splits at
 *             "\n\nHuman: " and "\n\nAssistant: "); the answer is the rest.
 * The two prompts (as parsed) must be equal, else prompt_mismatch is set.
 * Turns point into the JSON strings: valid while the cJSON tree lives.
 */
#ifndef SL_DATA_PREPARE_PAIRS_H
#define SL_DATA_PREPARE_PAIRS_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "data/chat.h"
#include "runtime/config.h"

typedef enum { PREP_PAIR_STANDARD = 0, PREP_PAIR_CONV, PREP_PAIR_HH } prep_pair_shape;

typedef struct {
    prep_pair_shape shape;
    chat_turn *prompt; /* [max_turns] caller's array: the chosen side's prompt */
    int n_prompt;
    chat_turn chosen, rejected; /* the answers (STANDARD: role assistant, raw text) */
    bool prompt_mismatch;
} prep_pair;

/* Whether root (a JSON object) has both the chosen and the rejected field. */
bool prep_pair_is(const cJSON *root, const cfg_prepare *f);

/* Fills p from a pair record; p->prompt and other_prompt are caller arrays of
 * max_turns. Returns false when the record is unusable (wrong types, an
 * unknown role, no final assistant message, not HH-RLHF text, too many
 * turns): the caller drops it as no_fields. */
bool prep_pair_parse(const cJSON *root, const cfg_prepare *f, int max_turns, chat_turn *other_prompt,
                     prep_pair *p);

#endif
