#!/usr/bin/env bash
# shardlm eval --generate on a random tiny Llama (generate_eval_ref.py) and a
# 320-token BPE:
#   - np 1 and np 2 write byte-identical GEN.jsonl for a seed, sampling
#     (temperature 0.8, top-k 20) and greedy, with prompts of several token
#     lengths (and repeats, so batches hold several rows); --batch 1 writes
#     the same file as --batch 4; another seed changes the sampled texts
#   - each greedy output equals `shardlm generate` on the same prompt (plain
#     and chat "messages"); prompt 0 sampled equals generate --seed S (the
#     generate output decoded with Python's errors="replace", as the JSON
#     holds it); --stop cuts there with finish_reason "stop"
#   - the fields: input order, id, reference (and its "answer" alias),
#     n_tokens, finish_reason
#   - references equal to the outputs: corpus BLEU 100 (sacrebleu: every
#     n-gram precision 100, brevity penalty 1) and ROUGE-N/L F1 per pair 1
#     when the pair has >= N tokens of rouge-score's tokenizer (lowercase,
#     [a-z0-9]+ runs), else 0, averaged (rouge-score rouge_scorer.py,
#     tokenize.py)
#   - a malformed line, a line without "prompt"/"messages" and a prompt past
#     max_seq_len fail naming FILE:LINE, and no GEN.jsonl is written
source "$(dirname "$0")/lib.sh"
mktmp
tiny_eval_model

cat > "$TMP/p.jsonl" <<'J'
{"id": "a", "prompt": "The meaning of life is", "reference": "to be happy"}
{"prompt": "A fool", "answer": "a fool and his money"}
{"id": 3, "prompt": "The meaning of life is"}

{"messages": [{"role": "user", "content": "Tell me a joke."}], "reference": "no"}
{"prompt": "Love is"}
{"prompt": "You will meet a tall, dark stranger; he will"}
{"prompt": "A fool"}
{"prompt": "Q: What"}
{"prompt": "The meaning of life is"}
J
N=9
ev() { # ev NP OUT [options...]
  local np=$1 out=$2; shift 2
  expect_exit 0 $MPIRUN -np "$np" "$SHARDLM" eval --model "$TMP/model" --tokenizer "$TMP/tok.json" \
    --generate "$TMP/p.jsonl" --out "$out" --max-new-tokens 24 "$@"
  [ -s "$out" ] || fail "no $out"
}
SAMPLE="--temperature 0.8 --top-k 20"
ev 1 "$TMP/s5_np1.jsonl" $SAMPLE --seed 5 --batch 4
ev 2 "$TMP/s5_np2.jsonl" $SAMPLE --seed 5 --batch 4
cmp -s "$TMP/s5_np1.jsonl" "$TMP/s5_np2.jsonl" || fail "sampling: np 2 wrote another file than np 1"
ev 2 "$TMP/s5_b1.jsonl" $SAMPLE --seed 5 --batch 1
cmp -s "$TMP/s5_np1.jsonl" "$TMP/s5_b1.jsonl" || fail "sampling: --batch 1 wrote another file than --batch 4"
ev 1 "$TMP/s6.jsonl" $SAMPLE --seed 6 --batch 4
ev 1 "$TMP/g_np1.jsonl" --temperature 0 --batch 4
ev 2 "$TMP/g_np2.jsonl" --temperature 0 --batch 2 --json
cmp -s "$TMP/g_np1.jsonl" "$TMP/g_np2.jsonl" || fail "greedy: np 2 --batch 2 wrote another file than np 1 --batch 4"
expect_out "eval generate: $N prompts"
expect_out "eval generate: 3 references | bleu "

"$PYTHON" - "$TMP" "$N" <<'PY' || fail "GEN.jsonl content"
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
load = lambda f: [json.loads(l) for l in open(f"{d}/{f}", encoding="utf-8")]
s5, s6, g = load("s5_np1.jsonl"), load("s6.jsonl"), load("g_np1.jsonl")
for rows in (s5, s6, g):
    assert [r["index"] for r in rows] == list(range(n)), [r["index"] for r in rows]
    assert rows[0]["id"] == "a" and rows[2]["id"] == 3 and "id" not in rows[1]
    assert rows[0]["reference"] == "to be happy" and rows[1]["reference"] == "a fool and his money"
    assert rows[3]["reference"] == "no" and "reference" not in rows[2]
    assert rows[3]["messages"] == [{"role": "user", "content": "Tell me a joke."}] and "prompt" not in rows[3]
    assert rows[0]["prompt"] == "The meaning of life is"
    for r in rows:
        assert r["finish_reason"] in ("eos", "stop", "length"), r
        assert 0 <= r["n_tokens"] <= 24 and (r["finish_reason"] != "length" or r["n_tokens"] == 24), r
# the same prompt thrice: greedy gives one text, sampling (own sub-stream each) others
assert g[0]["output"] == g[2]["output"] == g[8]["output"]
assert len({s5[0]["output"], s5[2]["output"], s5[8]["output"]}) > 1, "repeated prompts sampled the same text"
assert sum(a["output"] != b["output"] for a, b in zip(s5, s6)) >= n - 1, "seeds 5 and 6 gave the same texts"
assert sum(a["output"] != b["output"] for a, b in zip(s5, g)) >= n - 1, "sampling gave the greedy texts"
PY

# against shardlm generate, prompt by prompt
jfield() { "$PYTHON" -c 'import json, sys; r = json.loads(open(sys.argv[1]).readlines()[int(sys.argv[2])]); print(eval(sys.argv[3]), end="")' "$@"; }
same_text() { # same_text RAW_FILE GEN_JSONL INDEX WHAT
  "$PYTHON" - "$@" <<'PY' || fail "$4: eval --generate differs from shardlm generate"
import json, sys
raw = open(sys.argv[1], "rb").read().decode("utf-8", errors="replace")
row = json.loads(open(sys.argv[2], encoding="utf-8").readlines()[int(sys.argv[3])])
assert row["output"] == raw, (row["output"], raw)
PY
}
for i in 0 1 4 5 6 7; do
  p=$(jfield "$TMP/g_np1.jsonl" "$i" 'r["prompt"]')
  "$SHARDLM" generate --model "$TMP/model" --tokenizer "$TMP/tok.json" --max-new-tokens 24 --temperature 0 \
    --prompt "$p" > "$TMP/gen_$i.txt" || fail "generate failed"
  same_text "$TMP/gen_$i.txt" "$TMP/g_np1.jsonl" "$i" "greedy prompt $i"
done
"$SHARDLM" generate --model "$TMP/model" --tokenizer "$TMP/tok.json" --max-new-tokens 24 --temperature 0 --chat \
  --prompt "Tell me a joke." > "$TMP/gen_chat.txt" || fail "generate --chat failed"
same_text "$TMP/gen_chat.txt" "$TMP/g_np1.jsonl" 3 "greedy messages line"
"$SHARDLM" generate --model "$TMP/model" --tokenizer "$TMP/tok.json" --max-new-tokens 24 $SAMPLE --seed 5 \
  --prompt "The meaning of life is" > "$TMP/gen_s5.txt" || fail "generate --seed 5 failed"
same_text "$TMP/gen_s5.txt" "$TMP/s5_np1.jsonl" 0 "sampled prompt 0 vs generate --seed 5"

# --stop: a two-character piece of prompt 5's greedy text
"$PYTHON" - "$TMP/g_np1.jsonl" "$TMP/stop" <<'PY' || fail "could not pick a stop string"
import json, sys
out = json.loads(open(sys.argv[1], encoding="utf-8").readlines()[5])["output"]
for i in range(4, len(out) - 2):
    s = out[i:i + 2]
    if all(c.isascii() and c.isalnum() for c in s):
        open(sys.argv[2] + ".arg", "w").write(s)
        open(sys.argv[2] + ".want", "w").write(out[:out.find(s)])
        sys.exit(0)
sys.exit(1)
PY
ev 2 "$TMP/stop.jsonl" --temperature 0 --stop "$(cat "$TMP/stop.arg")"
[ "$(jfield "$TMP/stop.jsonl" 5 'r["finish_reason"]')" = stop ] || fail "--stop: finish_reason is not stop"
[ "$(jfield "$TMP/stop.jsonl" 5 'r["output"]')" = "$(cat "$TMP/stop.want")" ] || fail "--stop did not cut before the stop text"

# scores: references equal to the greedy outputs
"$PYTHON" - "$TMP/g_np1.jsonl" "$TMP/p2.jsonl" "$TMP/want.json" <<'PY' || fail "could not write p2.jsonl"
import json, re, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for r in rows:
        q = {"messages": r["messages"]} if "messages" in r else {"prompt": r["prompt"]}
        q["reference"] = r["output"]
        f.write(json.dumps(q) + "\n")
def toks(t):  # rouge-score tokenize.py, use_stemmer=False
    return [w for w in re.sub(r"[^a-z0-9]+", " ", t.lower()).split() if w]
want = {f"rouge{k}": sum(1.0 if len(toks(r["output"])) >= m else 0.0 for r in rows) / len(rows)
        for k, m in (("1", 1), ("2", 2), ("L", 1))}
json.dump(want, open(sys.argv[3], "w"))
PY
expect_exit 0 $MPIRUN -np 2 "$SHARDLM" eval --model "$TMP/model" --tokenizer "$TMP/tok.json" \
  --generate "$TMP/p2.jsonl" --out "$TMP/g2.jsonl" --max-new-tokens 24 --temperature 0 --json
printf '%s\n' "$OUT" | grep '^{"prompts"' > "$TMP/scores.json" || fail "no JSON line: $OUT"
"$PYTHON" - "$TMP/scores.json" "$TMP/want.json" <<'PY' || fail "scores of outputs against themselves"
import json, sys
got, want = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert got["references"] == 9, got
assert abs(got["bleu"] - 100) < 1e-9 and got["bleu_bp"] == 1, got
for k, v in want.items():
    assert abs(got[k] - v) < 1e-12, (k, got[k], v)
PY

# bad input: FILE:LINE, exit 2, nothing written
printf '{"prompt": "a"}\n\n{"prompt": "b"\n' > "$TMP/bad1.jsonl"
expect_bad_input "bad1.jsonl:3" "not valid JSON" \
  $MPIRUN -np 2 "$SHARDLM" eval --model "$TMP/model" --tokenizer "$TMP/tok.json" --generate "$TMP/bad1.jsonl" \
  --out "$TMP/bad.jsonl"
printf '{"prompt": "a"}\n{"text": "b"}\n' > "$TMP/bad2.jsonl"
expect_bad_input "bad2.jsonl:2" "no \"prompt\"" \
  "$SHARDLM" eval --model "$TMP/model" --tokenizer "$TMP/tok.json" --generate "$TMP/bad2.jsonl" --out "$TMP/bad.jsonl"
"$PYTHON" -c 'import json; print(json.dumps({"prompt": "a"})); print(json.dumps({"prompt": "word " * 200}))' \
  > "$TMP/long.jsonl"
expect_bad_input "long.jsonl:2" "max_seq_len 128" \
  "$SHARDLM" eval --model "$TMP/model" --tokenizer "$TMP/tok.json" --generate "$TMP/long.jsonl" --out "$TMP/bad.jsonl"
[ ! -e "$TMP/bad.jsonl" ] || fail "a failed eval --generate wrote GEN.jsonl"
ls "$TMP" | grep -q '^bad.jsonl' && fail "a failed eval --generate left a temporary file"
expect_exit 2 "$SHARDLM" eval --model "$TMP/model" --tokenizer "$TMP/tok.json" --generate "$TMP/p.jsonl"
expect_out "--out GEN.jsonl"
echo "eval --generate ok"
