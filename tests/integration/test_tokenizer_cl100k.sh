#!/usr/bin/env bash
# cl100k_base equals tiktoken, id for id: shardlm on encoders/cl100k_base.json
# from npm tiktoken@1.0.22 against that package's WASM encoder (Rust core)
# under node, on the fortunes corpus and edge cases (invalid UTF-8 replaced
# by U+FFFD for both, as the reference takes strings), with special tokens
# allowed and not. The same ranks written as a plain tiktoken rank file
# (cl100k_base.tiktoken) must load to the same content hash and ids.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tok_lib.sh"
tok_require tiktoken
mktmp
TOK="$ASSETS/tiktoken/encoders/cl100k_base.json"

tok_ref_corpus_edges cl100k tiktoken "edge cases, specials as text" "shardlm failed on edge cases"
"$SHARDLM" tokenize --tokenizer "$TOK" --special < "$TMP/edge.txt" > "$TMP/ours_s.txt" || fail "shardlm --special failed"
node "$REF" cl100k "$ASSETS" "$TMP/edge.txt" all > "$TMP/ref_s.txt" || fail "tiktoken (allowed_special=all) failed"
tok_compare "edge cases, specials allowed" "$TMP/ours_s.txt" "$TMP/ref_s.txt"
grep -qw 100258 "$TMP/ours_s.txt" || fail "<|fim_prefix|> (100258) not found with --special"

"$SHARDLM" tokenize --tokenizer "$TOK" < "$TMP/edge.bin" > "$TMP/raw_ids.txt" || fail "encode of raw bytes failed"
"$SHARDLM" tokenize --tokenizer "$TOK" --decode < "$TMP/raw_ids.txt" > "$TMP/raw_back.bin" || fail "decode failed"
cmp -s "$TMP/edge.bin" "$TMP/raw_back.bin" || fail "raw bytes do not round-trip"

# The plain rank file form: "base64 rank" lines, specials and regex by name.
"$PYTHON" - "$TOK" "$TMP/cl100k_base.tiktoken" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    for line in j["bpe_ranks"].split("\n"):
        if not line: continue
        fields = line.split(" ")
        for i, tok in enumerate(fields[2:]):
            f.write(f"{tok} {int(fields[1]) + i}\n")
PY
expect_exit 0 "$SHARDLM" tokenize --tokenizer "$TOK" --info
H1=$(printf '%s' "$OUT" | grep '^hash')
expect_out "vocab_size 100277"
expect_out "eos_id 100257"
expect_exit 0 "$SHARDLM" tokenize --tokenizer "$TMP/cl100k_base.tiktoken" --info
expect_out "name cl100k_base"
H2=$(printf '%s' "$OUT" | grep '^hash')
[ "$H1" = "$H2" ] || fail "JSON and rank-file forms hash differently: $H1 vs $H2"
"$SHARDLM" tokenize --tokenizer "$TMP/cl100k_base.tiktoken" --special < "$TMP/edge.txt" > "$TMP/ours_r.txt"
tok_compare "rank file form" "$TMP/ours_r.txt" "$TMP/ref_s.txt"
cp "$TMP/cl100k_base.tiktoken" "$TMP/mystery.tiktoken"
expect_exit 1 "$SHARDLM" tokenize --tokenizer "$TMP/mystery.tiktoken"
expect_out "shardlm knows them for files named cl100k_base"
echo "100261" | "$SHARDLM" tokenize --tokenizer "$TOK" --decode > /dev/null 2> "$TMP/err.txt" && fail "decoding the unused id 100261 succeeded"
grep -q "id 100261 at position 0 is not in tokenizer cl100k_base" "$TMP/err.txt" || fail "unexpected error: $(cat "$TMP/err.txt")"
echo "ok"
