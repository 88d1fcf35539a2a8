#!/usr/bin/env bash
# shardlm eval and shardlm generate end to end, on a random tiny Llama (GQA,
# untied head) written as a Hugging Face folder by generate_eval_ref.py and
# imported with shardlm import, and shards from shardlm prepare:
#   eval   equals PyTorch's float64 mean loss over every sample (1e-6); the
#          same global batches give the same loss (1e-5) at np 1 and np 2, with
#          any micro-batch, from either folder kind; --mode sft counts only the
#          assistant tokens; an id past the model's vocab names shard and offset.
#   generate  greedy equals PyTorch's greedy continuation byte for byte (raw
#          and --chat prompts, the latter also stopping at <|im_end|>);
#          --temperature 0 equals --top-k 1; a seed reproduces its text and
#          another seed does not; --stop cuts the text before the stop string;
#          generation stops at max_seq_len; --backend cpu is the default,
#          --backend cuda runs or says there is no GPU; bad options are usage
#          errors.
source "$(dirname "$0")/lib.sh"
mktmp
export HDF5_PLUGIN_PATH="$BUILD"
REF="$SRC/tests/integration/generate_eval_ref.py"
HEAD_BYTES=40000 fortune_shards fortunes  # small: ~27k tokens keep eval fast under ASan
expect_out "<|im_end|> 321"   # vocab 320 + the two chat markers: the model needs 322
"$PYTHON" "$REF" model "$TMP/hf" 322 || fail "generate_eval_ref.py model failed"
expect_exit 0 "$SHARDLM" import "$TMP/hf" "$TMP/model"

# ---- eval ----
loss_of() { printf '%s' "$OUT" | sed -n 's/^{"loss": \([^,]*\),.*/\1/p'; }
tokens_of() { printf '%s' "$OUT" | sed -n 's/.*"tokens": \([0-9]*\),.*/\1/p'; }
close() { # close A B TOL NAME
  "$PYTHON" -c "import sys; a, b, t = map(float, sys.argv[1:4]); sys.exit(0 if abs(a - b) <= t * abs(b) else 1)" \
    "$1" "$2" "$3" || fail "$4: $1 vs $2 (relative tolerance $3)"
}

ref=$("$PYTHON" "$REF" eval "$TMP/hf" 32 "$TMP"/shards/train-*.h5) || fail "reference eval failed"
ref_loss=$(printf '%s' "$ref" | sed -n 's/^{"loss": \([^,]*\),.*/\1/p')
ref_tokens=$(printf '%s' "$ref" | sed -n 's/.*"tokens": \([0-9]*\),.*/\1/p')
expect_exit 0 "$SHARDLM" eval --model "$TMP/model" --data "$TMP/shards" --seq-len 32 --batch 1 --json
expect_out "eval loss "
expect_out " | ppl "
[ "$(tokens_of)" = "$ref_tokens" ] || fail "eval counted $(tokens_of) tokens, PyTorch $ref_tokens"
close "$(loss_of)" "$ref_loss" 1e-6 "eval loss against PyTorch"

run_eval() { # run_eval NP MODEL [options...]; sets L and N
  local np=$1 model=$2; shift 2
  expect_exit 0 $MPIRUN -np "$np" "$SHARDLM" eval --model "$model" --data "$TMP/shards/train-*.h5" \
    --seq-len 32 --json "$@"
  L=$(loss_of); N=$(tokens_of)
  [ -n "$L" ] && [ -n "$N" ] || fail "no loss in: $OUT"
}
run_eval 1 "$TMP/model" --batch 4 --batches 40; L1=$L; N1=$N
run_eval 2 "$TMP/model" --batch 4 --batches 40; close "$L" "$L1" 1e-5 "np 2 vs np 1"; [ "$N" = "$N1" ] || fail "np 2 tokens $N vs $N1"
run_eval 2 "$TMP/hf" --batch 4 --batches 40 --micro-batch 1; close "$L" "$L1" 1e-5 "np 2 micro-batch 1 (HF folder) vs np 1"
[ "$N" = "$N1" ] || fail "np 2 micro 1 tokens $N vs $N1"
[ "$N" = $((40 * 4 * 32)) ] || fail "--batches 40 of 4 x 32 counted $N tokens"
run_eval 1 "$TMP/model" --batch 4 --micro-batch 2; close "$L" "$ref_loss" 0.01 "one pass of batches of 4 vs every sample"

expect_exit 2 $MPIRUN -np 2 "$SHARDLM" eval --model "$TMP/model" --data "$TMP/shards" --batch 3
expect_out "--batch 3 is not a multiple of the 2 ranks"

# SFT: only the assistant tokens (content and <|im_end|>) are targets
cat > "$TMP/sft.jsonl" <<'J'
{"prompt": "What is two plus two?", "response": "It is four."}
{"prompt": "Name a colour.", "response": "Blue."}
{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there, friend."}]}
{"prompt": "Say nothing much.", "response": "Fine."}
J
expect_exit 0 "$SHARDLM" prepare --input "$TMP/sft.jsonl" --output "$TMP/sft" --tokenizer "$TMP/tok.json" \
  --set prepare.dedup_near=false
expect_exit 0 "$SHARDLM" eval --model "$TMP/model" --data "$TMP/sft" --mode sft --seq-len 64 --batch 4 --json
want=$("$PYTHON" - "$TMP"/sft/train-*.h5 <<'PY'
import sys, h5py, hdf5plugin  # noqa: F401
n = 0
for p in sys.argv[1:]:
    with h5py.File(p, "r") as f:
        m, off = f["loss_mask"][:], [int(x) for x in f["doc_offsets"][:]]
        for d in range(len(off) - 1):
            n += int(m[off[d] + 1:off[d + 1]].sum())  # targets are tokens 1..n-1
print(n)
PY
) || fail "mask count failed"
[ "$(tokens_of)" = "$want" ] || fail "sft eval counted $(tokens_of) targets, the loss masks hold $want"

# a model whose vocabulary lacks the chat markers the SFT shards hold (<|im_end|> = 321)
"$PYTHON" "$REF" model "$TMP/small" 321 || fail "generate_eval_ref.py model 321 failed"
OUT=$("$SHARDLM" eval --model "$TMP/small" --data "$TMP/sft" --mode sft --seq-len 64 --batch 1 2>&1) \
  && fail "eval accepted ids >= vocab: $OUT"
expect_out "sft/train-00000.h5"
expect_out "offset"

# ---- generate ----
PROMPT="The meaning of life is"
gen() { "$SHARDLM" generate --tokenizer "$TMP/tok.json" --max-new-tokens 40 "$@"; }
gen --model "$TMP/model" --prompt "$PROMPT" --temperature 0 > "$TMP/greedy.txt" || fail "greedy generate failed"
[ -s "$TMP/greedy.txt" ] || fail "greedy generate wrote nothing"
gen --model "$TMP/hf" --prompt "$PROMPT" --top-k 1 --seed 9 > "$TMP/topk1.txt" || fail "top-k 1 failed"
cmp -s "$TMP/greedy.txt" "$TMP/topk1.txt" || fail "--top-k 1 (HF folder) differs from --temperature 0"

# greedy against PyTorch (full forward per token, no cache), decoded by shardlm tokenize
ids=$(printf '%s' "$PROMPT" | "$SHARDLM" tokenize --tokenizer "$TMP/tok.json") || fail "tokenize failed"
py_greedy() { # py_greedy N IDS... -> decoded continuation on stdout, up to EOS (319) or <|im_end|> (321)
  "$PYTHON" "$REF" greedy "$TMP/hf" "$@" > "$TMP/pyg.json" || fail "reference greedy failed"
  "$PYTHON" - "$TMP/pyg.json" <<'PY' | "$SHARDLM" tokenize --tokenizer "$TMP/tok.json" --decode
import json, sys
j = json.load(open(sys.argv[1]))
assert j["min_gap"] > 1e-3, f"top-2 logit gap {j['min_gap']} too small for an fp32/fp64 comparison"
out = []
for t in j["ids"]:
    if t in (319, 321):
        break
    out.append(str(t))
print(" ".join(out))
PY
}
py_greedy 40 $ids > "$TMP/py.txt"
cmp -s "$TMP/py.txt" "$TMP/greedy.txt" || fail "greedy text differs from PyTorch's greedy continuation"

# --chat: the chatml generation prompt, stopping at <|im_end|>
enc() { printf "$1" | "$SHARDLM" tokenize --tokenizer "$TMP/tok.json"; }
chat_ids="320 $(enc 'user\n') $(enc 'Tell me a joke.') 321 $(enc '\n') 320 $(enc 'assistant\n')"
py_greedy 40 $chat_ids > "$TMP/pychat.txt"
gen --model "$TMP/model" --chat --prompt "Tell me a joke." --temperature 0 > "$TMP/chat.txt" || fail "--chat failed"
cmp -s "$TMP/pychat.txt" "$TMP/chat.txt" || fail "--chat greedy text differs from PyTorch on the chatml prompt"

# sampling: a seed reproduces its text, another seed does not
for opts in "--temperature 1" "--temperature 0.8 --top-k 20" "--top-p 0.9"; do
  gen --model "$TMP/model" --prompt "$PROMPT" $opts --seed 5 > "$TMP/s5a.txt" || fail "sample $opts failed"
  printf '%s' "$PROMPT" | gen --model "$TMP/model" $opts --seed 5 > "$TMP/s5b.txt" || fail "sample from stdin failed"
  gen --model "$TMP/model" --prompt "$PROMPT" $opts --seed 6 > "$TMP/s6.txt" || fail "sample $opts failed"
  cmp -s "$TMP/s5a.txt" "$TMP/s5b.txt" || fail "$opts: seed 5 gave two different texts"
  cmp -s "$TMP/s5a.txt" "$TMP/s6.txt" && fail "$opts: seeds 5 and 6 gave the same text"
  cmp -s "$TMP/s5a.txt" "$TMP/greedy.txt" && fail "$opts: sampling gave the greedy text"
done

# --stop: the text up to the first occurrence of the stop string
"$PYTHON" - "$TMP/greedy.txt" "$TMP/stop" <<'PY' || fail "could not pick a stop string"
import sys
b = open(sys.argv[1], "rb").read()
for i in range(8, len(b) - 2):
    s = b[i:i + 2]
    if all(32 < c < 127 for c in s):
        open(sys.argv[2] + ".arg", "wb").write(s)
        open(sys.argv[2] + ".want", "wb").write(b[:b.find(s)])
        sys.exit(0)
sys.exit(1)
PY
gen --model "$TMP/model" --prompt "$PROMPT" --temperature 0 --stop "$(cat "$TMP/stop.arg")" > "$TMP/stopped.txt" \
  || fail "--stop failed"
cmp -s "$TMP/stopped.txt" "$TMP/stop.want" || fail "--stop '$(cat "$TMP/stop.arg")' did not cut before the stop text"

# the model's max_seq_len (128) ends a long generation
expect_exit 0 "$SHARDLM" generate --model "$TMP/model" --tokenizer "$TMP/tok.json" --prompt "$PROMPT" \
  --max-new-tokens 500 --temperature 0 --verbose
expect_out "stopped at max_seq_len"

# --backend: cpu is the default (same text); cuda runs where a GPU is (its
# bf16 numbers are checked by tests/gpu/test_decode_cuda) and elsewhere says why
gen --model "$TMP/model" --prompt "$PROMPT" --temperature 0 --backend cpu > "$TMP/greedy_cpu.txt" \
  || fail "--backend cpu failed"
cmp -s "$TMP/greedy.txt" "$TMP/greedy_cpu.txt" || fail "--backend cpu differs from the default backend"
OUT=$(gen --model "$TMP/model" --prompt "$PROMPT" --temperature 0 --backend cuda --verbose 2>&1); rc=$?
if [ $rc -eq 0 ]; then
  expect_out "[cuda backend: "
else
  [ $rc -eq 1 ] || fail "--backend cuda without a usable GPU exited $rc, expected 1; output:
$OUT"
  expect_out "no usable GPU"
fi
expect_exit 2 "$SHARDLM" generate --model "$TMP/model" --tokenizer "$TMP/tok.json" --backend tpu
expect_out "--backend \"tpu\": expected cpu or cuda"
expect_exit 2 "$SHARDLM" generate --model "$TMP/model" --tokenizer "$TMP/tok.json" --top-p 1.5
expect_out "--top-p"
expect_exit 2 "$SHARDLM" generate --model "$TMP/model" --tokenizer "$TMP/tok.json" --temperature -1
expect_exit 2 "$SHARDLM" generate --model "$TMP/model" --prompt x
expect_out "--tokenizer"
echo "generate and eval ok"
