#!/usr/bin/env bash
# shardlm tokenizer train: learns a byte-level BPE from 1.5 MB of fortunes,
# writes a tokenizer.json that loads back, round-trips text, and segments the
# training text exactly as the trainer did (same token count); training is
# deterministic; the file has the structure Hugging Face tokenizers reads
# (every merge's parts and result in the vocabulary, ids dense).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tok_lib.sh"
[ -f "$FORTUNES/fortunes" ] || fail "$FORTUNES/fortunes is missing; run 'make setup'"
mktmp
tok_corpus "$TMP/corpus.txt"
head -c 1500000 "$TMP/corpus.txt" > "$TMP/train.txt"

for pt in gpt2 cl100k; do
  mkdir -p "$TMP/$pt"
  J="$TMP/$pt/tokenizer.json"
  expect_exit 0 "$SHARDLM" tokenizer train --vocab-size 1500 --input "$TMP/train.txt" \
    --output "$J" --special '<|endoftext|>' --special '<|pad|>' --pretokenizer $pt
  expect_out "1242 merges"
  trained=$(printf '%s' "$OUT" | sed -n 's/^the input is \([0-9]*\) tokens.*/\1/p')
  [ -n "$trained" ] || fail "no token count in: $OUT"
  "$SHARDLM" tokenize --tokenizer "$J" < "$TMP/train.txt" > "$TMP/ids.txt" || fail "$pt: tokenize failed"
  got=$(wc -w < "$TMP/ids.txt")
  [ "$got" -eq "$trained" ] || fail "$pt: encoding the training text gave $got tokens, the trainer $trained"
  "$SHARDLM" tokenize --tokenizer "$J" --decode < "$TMP/ids.txt" | cmp -s - "$TMP/train.txt" || fail "$pt: training text does not round-trip"
  tok_edge_cases "$TMP/edge.bin"
  cat "$TMP/corpus.txt" "$TMP/edge.bin" > "$TMP/all.bin"
  "$SHARDLM" tokenize --tokenizer "$J" --special < "$TMP/all.bin" > "$TMP/ids_all.txt" || fail "$pt: tokenize of corpus failed"
  "$SHARDLM" tokenize --tokenizer "$J" --decode < "$TMP/ids_all.txt" | cmp -s - "$TMP/all.bin" || fail "$pt: corpus + edge cases do not round-trip"
  expect_exit 0 "$SHARDLM" tokenize --tokenizer "$J" --info
  expect_out "name $pt"
  expect_out "vocab_size 1500"
  expect_out "eos_id 1498"
  printf 'a<|pad|>b' | "$SHARDLM" tokenize --tokenizer "$J" --special > "$TMP/pad.txt"
  [ "$(cat "$TMP/pad.txt")" = "97 1499 98" ] || fail "$pt: a<|pad|>b gave $(cat "$TMP/pad.txt")"
  "$PYTHON" - "$J" $pt <<'PY' || fail "$pt: tokenizer.json structure check failed"
import json, sys
j = json.load(open(sys.argv[1]))
m = j["model"]
assert m["type"] == "BPE" and j["normalizer"] is None, "model/normalizer"
vocab = m["vocab"]
ids = sorted(vocab.values())
assert ids == list(range(len(ids))), "vocab ids not dense"
for k, merge in enumerate(m["merges"]):
    a, b = merge.split(" ")
    assert a in vocab and b in vocab and a + b in vocab, f"merge {k} {merge!r}"
    assert vocab[a + b] == 256 + k, f"merge {k} result id"
added = {t["content"]: t["id"] for t in j["added_tokens"]}
assert added == {"<|endoftext|>": len(ids), "<|pad|>": len(ids) + 1}, added
assert j["decoder"]["type"] == "ByteLevel"
pt = j["pre_tokenizer"]
if sys.argv[2] == "gpt2":
    assert pt["type"] == "ByteLevel" and pt["use_regex"] is True
else:
    split, bl = pt["pretokenizers"]
    assert split["pattern"]["Regex"].startswith("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+")
    assert bl["type"] == "ByteLevel" and bl["use_regex"] is False
PY
done

"$SHARDLM" tokenizer train --vocab-size 1500 --input "$TMP/train.txt" --output "$TMP/again.json" \
  --special '<|endoftext|>' --special '<|pad|>' > /dev/null || fail "second training failed"
cmp -s "$TMP/gpt2/tokenizer.json" "$TMP/again.json" || fail "training twice gave different files"

expect_exit 2 "$SHARDLM" tokenizer train --vocab-size 100 --input "$TMP/train.txt" --output "$TMP/x.json"
expect_out "leaves no room for the 256 byte tokens"
expect_exit 2 "$SHARDLM" tokenizer train --vocab-size 1000 --output "$TMP/x.json"
expect_out "at least one --input FILE is required"
expect_exit 2 "$SHARDLM" tokenizer frobnicate
expect_out 'expected the subcommand "train"'
echo "ok"
