#!/usr/bin/env bash
# shardlm eval --choices: acc and acc_norm as lm-evaluation-harness defines
# them, against eval_choices_ref.py: PyTorch float64 log-likelihoods of the
# same Hugging Face folder (tests/reference/models.py), the token ids from the
# Hugging Face tokenizers library (tests/tools/tok_ref.js hfjson), and
# lm-eval's _encode_pair / process_results mirrored from its source (cited
# there). acc and acc_norm equal exactly; every choice's log-likelihood
# (--out) to 1e-4; np 2 writes the same scores as np 1; the aliases
# query/endings/label, an empty context, a context ending in whitespace and
# multi-byte characters in a choice are covered; bad lines name file:line.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tok_lib.sh"
tok_require hf-tokenizers hf-tokenizers-linux-x64-gnu
mktmp
tiny_eval_model

cat > "$TMP/mc.jsonl" <<'J'
{"context": "The meaning of life is", "choices": ["to be happy", "forty-two", "a mystery wrapped in an enigma", "love"], "gold": 1, "id": "q0"}
{"context": "A fool and his money are ", "choices": ["soon parted", "good friends", "never apart"], "gold": 0}
{"query": "Q: What is the best thing in life?\nA:", "endings": ["Money.", "Friends and family, and a good book.", "Nothing at all."], "label": "2"}

{"context": "", "choices": ["Hello there.", "Goodbye, cruel world.", "café au lait"], "gold": 2}
{"context": "You will meet a tall, dark stranger", "choices": [" tomorrow", "at the café", "in your dreams tonight"], "gold": 2}
{"context": "Love is blind;", "choices": ["marriage is an eye-opener.", "hate is not.", "so is justice"], "gold": 0}
{"context": "He who laughs last\t", "choices": ["laughs best", "thinks slowest", "was too slow to get the joke"], "gold": 1}
{"context": "Never put off till tomorrow what you can", "choices": ["do today", "put off until the day after tomorrow", "avoid", "delegate"], "gold": 3}
{"context": "Ünïcödé", "choices": ["ñ", "an ordinary ending"], "gold": 0}
J
ref=$("$PYTHON" "$SRC/tests/integration/eval_choices_ref.py" "$TMP/hf" "$TMP/tok.json" "$TMP/mc.jsonl" \
  node "$REF" hfjson "$ASSETS" "$TMP/tok.json") || fail "eval_choices_ref.py failed"

expect_exit 0 "$SHARDLM" eval --model "$TMP/model" --tokenizer "$TMP/tok.json" --choices "$TMP/mc.jsonl" \
  --json --out "$TMP/s1.jsonl"
expect_out "eval choices acc "
printf '%s\n' "$OUT" | grep '^{"acc"' > "$TMP/ours.json" || fail "no JSON line in: $OUT"
"$PYTHON" - "$TMP/ours.json" "$TMP/s1.jsonl" "$ref" <<'PY' || fail "eval --choices differs from the reference"
import json, sys
ours = json.load(open(sys.argv[1]))
rows = [json.loads(l) for l in open(sys.argv[2])]
ref = json.loads(sys.argv[3])
assert ref["min_gap"] > 1e-3, f"best-vs-second gap {ref['min_gap']} too small for fp32 vs fp64"
assert ours["n"] == ref["n"] == 9, (ours["n"], ref["n"])
assert ours["acc"] == ref["acc"], f"acc {ours['acc']} vs lm-eval formula {ref['acc']}"
assert ours["acc_norm"] == ref["acc_norm"], f"acc_norm {ours['acc_norm']} vs lm-eval formula {ref['acc_norm']}"
assert 0 < ref["acc"] < 1 and ref["acc"] != ref["acc_norm"], "test data should separate acc and acc_norm"
assert [r["index"] for r in rows] == list(range(9))
assert rows[0]["id"] == "q0" and "id" not in rows[1]
for r, want in zip(rows, ref["logliks"]):
    assert len(r["logliks"]) == len(want)
    for a, b in zip(r["logliks"], want):
        assert abs(a - b) <= 1e-4, f"question {r['index']}: loglik {a} vs PyTorch {b}"
print("acc", ours["acc"], "acc_norm", ours["acc_norm"], "ok")
PY

# the same scores at 2 ranks (questions dealt round-robin)
expect_exit 0 $MPIRUN -np 2 "$SHARDLM" eval --model "$TMP/model" --tokenizer "$TMP/tok.json" \
  --choices "$TMP/mc.jsonl" --json --out "$TMP/s2.jsonl"
cmp -s "$TMP/s1.jsonl" "$TMP/s2.jsonl" || fail "np 2 scores differ from np 1"
printf '%s\n' "$OUT" | grep -qxF "$(cat "$TMP/ours.json")" || fail "np 2 printed other totals: $OUT"

# bad lines: file:line and what is wrong; no --out written
printf '{"context": "a", "choices": ["b", "c"], "gold": 0}\n{"context": "a", "choices": ["b", "c"], "gold": 2}\n' \
  > "$TMP/bad1.jsonl"
expect_bad_input "bad1.jsonl:2" "not the index of one of the 2 choices" \
  "$SHARDLM" eval --model "$TMP/model" --tokenizer "$TMP/tok.json" --choices "$TMP/bad1.jsonl" --out "$TMP/bad.out"
printf '{"context": "a", "choices": ["b", "c"], "gold": 0}\n{"context": "a", "gold": 0}\n' > "$TMP/bad2.jsonl"
expect_bad_input "bad2.jsonl:2" "no \"choices\"" \
  $MPIRUN -np 2 "$SHARDLM" eval --model "$TMP/model" --tokenizer "$TMP/tok.json" --choices "$TMP/bad2.jsonl" \
  --out "$TMP/bad.out"
printf '{"context": "a", "choices": ["b"], "gold": 0\n' > "$TMP/bad3.jsonl"
expect_exit 2 "$SHARDLM" eval --model "$TMP/model" --tokenizer "$TMP/tok.json" --choices "$TMP/bad3.jsonl"
expect_out "bad3.jsonl:1"
[ ! -e "$TMP/bad.out" ] || fail "a failed eval wrote --out"
# longer than the model (max_seq_len 128)
"$PYTHON" -c 'import json; print(json.dumps({"context": "word " * 200, "choices": ["a", "b"], "gold": 0}))' \
  > "$TMP/long.jsonl"
expect_bad_input "long.jsonl:1" "max_seq_len 128" \
  "$SHARDLM" eval --model "$TMP/model" --tokenizer "$TMP/tok.json" --choices "$TMP/long.jsonl"
echo "eval --choices ok"
