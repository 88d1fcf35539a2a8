#!/usr/bin/env bash
# shardlm eval --reward end to end: a random tiny reward model written by
# reward_eval_ref.py as transformers' LlamaForSequenceClassification folder,
# preference pairs prepared by shardlm prepare (TRL's standard format) with a
# BPE trained on Debian's fortunes. Checks: accuracy, margin and the
# Bradley-Terry loss equal PyTorch's over every pair (each row scored as
# transformers scores one unpadded sequence; fp32 against float64: loss and
# margin within 2e-5 (rewards of size ~5), accuracy
# and the pair count exactly); the same at np 1 and np 2, any --micro-batch,
# from the HF folder or its shardlm import; a reward model trained from a
# causal LM (train.objective = reward) exports as LlamaForSequenceClassification
# and scores as PyTorch scores its export; an LM folder is refused naming
# the score head; generate refuses a reward model; bad options are usage errors.
source "$(dirname "$0")/lib.sh"
mktmp
export HDF5_PLUGIN_PATH="$BUILD"
REF="$SRC/tests/integration/reward_eval_ref.py"
head -c 30000 /usr/share/games/fortunes/fortunes > "$TMP/corpus.txt" ||
  fail "Debian package fortunes is missing: run make setup"
expect_exit 0 "$SHARDLM" tokenizer train --vocab-size 320 --input "$TMP/corpus.txt" \
  --output "$TMP/tok.json" --special '<|endoftext|>'
cat > "$TMP/pairs.jsonl" <<'J'
{"prompt": "The sky is", "chosen": " blue today.", "rejected": " made of green cheese."}
{"prompt": "Question: what is two plus two?\nAnswer:", "chosen": " Four.", "rejected": " Five, I think."}
{"prompt": "Write a greeting.", "chosen": "Hello, world!", "rejected": "Go away."}
{"prompt": "Name a fruit.", "chosen": " An apple.", "rejected": " A brick."}
{"prompt": "What do cats say?", "chosen": " Meow.", "rejected": " They recite poetry at dawn."}
{"prompt": "Is fire hot?", "chosen": " Yes, it is hot.", "rejected": " No."}
{"prompt": "Count to three.", "chosen": " One, two, three.", "rejected": " Three, two."}
{"prompt": "Say something kind.", "chosen": " You did well today.", "rejected": " Whatever."}
{"prompt": "Where is Paris?", "chosen": " In France.", "rejected": " On the moon, near the big crater."}
{"prompt": "A long prompt about the weather, the seasons, the rain and the wind, and what people do when it snows in winter:", "chosen": " They stay inside.", "rejected": " They swim."}
{"prompt": "Pick a colour.", "chosen": " Red.", "rejected": " Seven."}
J
expect_exit 0 "$SHARDLM" prepare --input "$TMP/pairs.jsonl" --output "$TMP/pairs" --tokenizer "$TMP/tok.json" \
  --set prepare.dedup_near=false
# pad_token_id = the tokenizer's EOS (what README suggests for models without a pad token)
eos=$("$PYTHON" -c "import json, sys
print(next(t['id'] for t in json.load(open(sys.argv[1]))['added_tokens'] if t['content'] == '<|endoftext|>'))" \
  "$TMP/tok.json") || fail "no <|endoftext|> in tok.json"
"$PYTHON" "$REF" model "$TMP/hf" 330 "$eos" || fail "reward_eval_ref.py model failed"
expect_exit 0 "$SHARDLM" import "$TMP/hf" "$TMP/model"

field() { printf '%s' "$OUT" | "$PYTHON" -c "import json, sys
for line in sys.stdin:
    if line.startswith('{'):
        print(json.loads(line)['$1'])"; }
close() { # close A B TOL NAME (absolute tolerance)
  "$PYTHON" -c "import sys; a, b, t = map(float, sys.argv[1:4]); sys.exit(0 if abs(a - b) <= t else 1)" \
    "$1" "$2" "$3" || fail "$4: $1 vs $2 (tolerance $3)"
}
ref=$("$PYTHON" "$REF" eval "$TMP/hf" 64 "$TMP"/pairs/train-*.h5) || fail "reference eval failed"
OUT=$ref; r_acc=$(field accuracy); r_margin=$(field margin); r_loss=$(field loss); r_pairs=$(field pairs)
[ "$r_pairs" -ge 9 ] || fail "only $r_pairs pairs were prepared"
[ "$(field cut)" -ge 1 ] || fail "the long-prompt pair should be cut off at T = 64: $ref"
echo "PyTorch: $ref"

check() { # check NAME: the last eval output against PyTorch
  expect_out "reward accuracy "
  [ "$(field pairs)" = "$r_pairs" ] || fail "$1: $(field pairs) pairs, PyTorch $r_pairs"
  close "$(field accuracy)" "$r_acc" 1e-12 "$1 accuracy"
  close "$(field margin)" "$r_margin" 2e-5 "$1 margin"
  close "$(field loss)" "$r_loss" 2e-5 "$1 loss"
}
expect_exit 0 "$SHARDLM" eval --model "$TMP/hf" --reward "$TMP/pairs" --seq-len 64 --batch 4 --json
printf '%s\n' "$OUT" | grep '^reward accuracy'
check "np 1, HF folder"
expect_out "cuts off entirely"
expect_exit 0 "$SHARDLM" eval --model "$TMP/model" --reward "$TMP/pairs/train-*.h5" --seq-len 64 --batch 4 \
  --micro-batch 2 --json
check "np 1, micro-batch 2, shardlm folder"
m1=$(field margin)
expect_exit 0 $MPIRUN -np 2 "$SHARDLM" eval --model "$TMP/model" --reward "$TMP/pairs" --seq-len 64 --batch 4 --json
check "np 2"
# the same forward passes (2 pairs each) as np 1's micro-batch 2: equal up to the sum's order
close "$(field margin)" "$m1" 1e-12 "np 2 vs np 1 micro-batch 2 margin"
expect_exit 0 $MPIRUN -np 2 "$SHARDLM" eval --model "$TMP/hf" --reward "$TMP/pairs" --seq-len 64 --batch 6 \
  --micro-batch 1 --json
check "np 2, batch 6, micro-batch 1"

# training a reward model from a causal LM (its LM head dropped, a fresh score
# head), exported as LlamaForSequenceClassification, scored as PyTorch scores it
"$PYTHON" "$SRC/tests/integration/generate_eval_ref.py" model "$TMP/lm" 330 || fail "LM folder"
expect_exit 0 "$SHARDLM" train --set model.init_from="$TMP/lm" --set train.objective=reward --set data.mode=pairs \
  --set data.train="$TMP/pairs" --set data.seq_len=64 --set train.micro_batch=2 --set train.steps=3 \
  --set train.run_dir="$TMP/run" --set model.pad_token_id="$eos" --set train.export_final=true
expect_out "its LM head is dropped and the score head starts from normal(0, model.init_std"
expect_out "| accuracy "
expect_out "| margin "
"$PYTHON" - "$TMP/run/export/config.json" "$eos" <<'PY' || fail "the export's config.json"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["architectures"] == ["LlamaForSequenceClassification"], c["architectures"]
assert c["id2label"] == {"0": "LABEL_0"} and c["label2id"] == {"LABEL_0": 0}, c
assert c["pad_token_id"] == int(sys.argv[2]), c["pad_token_id"]
PY
ref=$("$PYTHON" "$REF" eval "$TMP/run/export" 64 "$TMP"/pairs/train-*.h5) || fail "reference eval of the export failed"
OUT=$ref; r_acc=$(field accuracy); r_margin=$(field margin); r_loss=$(field loss)
expect_exit 0 "$SHARDLM" eval --model "$TMP/run/export" --reward "$TMP/pairs" --seq-len 64 --batch 2 --json
check "the trained export"

# refusals: an LM folder, generation, options of the loss mode
expect_exit 2 "$SHARDLM" eval --model "$TMP/lm" --reward "$TMP/pairs" --seq-len 64
expect_out "score head"
expect_exit 2 "$SHARDLM" generate --model "$TMP/hf" --tokenizer "$TMP/tok.json" --prompt "Hi"
expect_out "reward model"
expect_exit 2 "$SHARDLM" eval --model "$TMP/hf" --reward "$TMP/pairs" --data "$TMP/pairs"
expect_out "drop --data"
expect_exit 2 $MPIRUN -np 2 "$SHARDLM" eval --model "$TMP/hf" --reward "$TMP/pairs" --batch 3
expect_out "--batch 3 is not a multiple of the 2 ranks"
echo "ok"
