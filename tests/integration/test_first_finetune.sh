#!/usr/bin/env bash
# Issue 16, "a first fine-tune without surprises": each numbered point and
# each lesser point, as a new user meets it (exit codes and messages).
# Point 1 (run directories), retention, keep_best, restart markers, ETA,
# TensorBoard groups and plot are in test_run_dir.sh; the README key table in
# test_readme_keys.sh; refused resumes of damaged checkpoints (exit 2) in
# test_checkpoint_errors.sh.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ckpt_lib.sh"
mktmp
ckpt_data
G="$TMP/run.json"

# an SFT set: 300 generated Q&A pairs, one with a bad line
"$PYTHON" - "$TMP/qa.jsonl" <<'P'
import json, random, sys
r = random.Random(5)
with open(sys.argv[1], "w") as f:
    for i in range(300):
        a, b = r.randrange(50), r.randrange(50)
        f.write(json.dumps({"prompt": f"What is {a} plus {b}?", "response": f"{a} plus {b} is {a + b}."}) + "\n")
        if i == 1:
            f.write("{not json\n")
P

# --- point 8: prepare locates bad JSONL lines; tokenizer train reads JSONL text
expect_exit 0 "$SHARDLM" tokenizer train --vocab-size 300 --input "$TMP/qa.jsonl" --output "$TMP/newdir/tok/qa.json" \
  --special '<|endoftext|>'
expect_out "qa.jsonl: 1 line(s) are not JSON objects; skipped"
"$PYTHON" - "$TMP/newdir/tok/qa.json" <<'P' || fail "tokenizer train learned JSON syntax from a .jsonl input"
import json, sys
v = json.load(open(sys.argv[1]))["model"]["vocab"]
bad = [t for t in v if '":' in t or '{"' in t or "prompt" in t or "response" in t]
assert not bad, bad[:10]
print("ok: no JSON syntax among", len(v), "tokens")
P
expect_exit 0 "$SHARDLM" prepare --input "$TMP/qa.jsonl" --output "$TMP/sft" --tokenizer "$TMP/tok.json" \
  --set prepare.dedup_near=false --set prepare.eval_fraction=0.1
expect_out "not a JSON object: $TMP/qa.jsonl:3"
grep -q "\"$TMP/qa.jsonl:3\"" "$TMP/sft/report.json" || fail "report.json does not locate the bad line"
# tokenize --decode accepts the chat-marker ids prepare registered
im_start=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokenizer"]["im_start_id"])' "$TMP/sft/report.json")
echo "$im_start 72 $im_start" > "$TMP/ids.txt"
expect_exit 0 "$SHARDLM" tokenize --tokenizer "$TMP/tok.json" --decode < "$TMP/ids.txt"
expect_out "<|im_start|>"

# --- point 2: data.tokenizer against the shards' tokenizer hash
expect_exit 2 "$SHARDLM" config check --config "$G" --set data.tokenizer="$TMP/newdir/tok/qa.json"
expect_out "\"data.tokenizer\" = $TMP/newdir/tok/qa.json has tokenizer hash"
expect_out "were tokenized with"
expect_exit 2 $MPIRUN -np 2 "$SHARDLM" train --config "$G" --set train.run_dir="$TMP/tokbad" \
  --set data.tokenizer="$TMP/newdir/tok/qa.json"
expect_out "\"data.tokenizer\" = $TMP/newdir/tok/qa.json has tokenizer hash"
[ "$(grep -c 'error: shardlm train' <<< "$OUT")" -eq 1 ] || fail "the error was printed $(grep -c 'error:' <<< "$OUT") times: $OUT"
[ ! -e "$TMP/tokbad/export" ] || fail "a run with the wrong tokenizer exported"
expect_exit 0 "$SHARDLM" config check --config "$G" --set data.tokenizer="$TMP/tok.json"

# --- point 5: fine-tuning learning rates
expect_exit 0 "$SHARDLM" config show --set optim.lr=1e-5
grep -Eq '"lr_min":[[:space:]]+1e-06' <<< "$OUT" || fail "lr_min did not follow lr: $OUT"
expect_exit 2 "$SHARDLM" config check --set optim.lr=1e-5 --set optim.lr_min=3e-5
expect_out '"optim.lr_min" = 3e-05 exceeds "optim.lr" = 1e-05'

# --- point 10: exact range errors; config check sees what train would refuse
expect_exit 2 "$SHARDLM" config check --set train.steps=2000000000
expect_out '"train.steps" = 2000000000 is out of range [0, 1073741824]'
if ! "$SHARDLM" --version | grep -q "CUDA: on"; then
  expect_exit 2 "$SHARDLM" config check --config "$G" --set train.backend=cuda --set train.dtype=bf16
  expect_out "train.backend = cuda: no usable GPU"
  expect_exit 2 $MPIRUN -np 2 "$SHARDLM" train --config "$G" --set train.run_dir="$TMP/cuda" \
    --set train.backend=cuda --set train.dtype=bf16
  expect_out "train.backend = cuda: no usable GPU"
fi
# make build CUDA=OFF reconfigures an existing build folder
mkdir -p "$TMP/fakebuild" && echo 'SHARDLM_CUDA:STRING=AUTO' > "$TMP/fakebuild/CMakeCache.txt"
expect_exit 0 make -s -n -C "$SRC" build CUDA=OFF BUILD="$TMP/fakebuild"
expect_out "-DSHARDLM_CUDA=OFF"
# lesser: LoRA targets the architecture lacks fail at config check
expect_exit 2 "$SHARDLM" config check --set lora.enabled=true
expect_out "\"lora.targets\" item \"q_proj\" matches no gpt2 module"

# --- the SFT run (eval on the held-out 10%), kept as a model
S="$TMP/sftrun"
# the chat markers prepare registers take ids 320 and 321: the model's vocab must hold them
expect_exit 1 $MPIRUN -np 2 "$SHARDLM" train --config "$G" --set train.run_dir="$TMP/vocab" \
  --set data.train="$TMP/sft/train-*.h5" --set data.mode=sft --set train.steps=1
expect_out "is not below the model's vocab_size 320"
[ "$(grep -c 'error: shardlm train' <<< "$OUT")" -eq 1 ] || fail "the data error was not printed once: $OUT"
grep -q MPI_ABORT <<< "$OUT" && fail "the data error aborted MPI: $OUT"
train 2 "$S" --set data.train="$TMP/sft/train-*.h5" --set data.eval="$TMP/sft/eval-*.h5" --set data.mode=sft \
  --set model.vocab_size=384 --set data.seq_len=64 \
  --set data.tokenizer="$TMP/tok.json" --set train.steps=8 --set checkpoint.every=4 --set train.export_final=true \
  --set train.eval_every=4 --set optim.lr=1e-3 --set optim.lr_min=1e-4
expect_out "step 8/8"
[ -f "$S/export/tokenizer.json" ] || fail "the export lacks the tokenizer (hand-off tokenizer.json)"
# point 10: metrics.jsonl as the README describes it: step lines and separate eval lines, each with a time
"$PYTHON" - "$S/metrics.jsonl" <<'P' || fail "metrics.jsonl does not match the README"
import json, sys
L = [json.loads(l) for l in open(sys.argv[1])]
steps = [l for l in L if "loss" in l]
evals = [l for l in L if "eval_loss" in l]
assert [l["step"] for l in steps] == list(range(1, 9)), L
assert [l["step"] for l in evals] == [0, 4, 8], evals
assert all("loss" not in l and "eval_ppl" in l for l in evals), evals
assert all(set(l) >= {"step", "time", "lr", "gnorm", "tok_per_s"} for l in steps), steps[0]
assert all("time" in l for l in L)
print("ok: metrics.jsonl has", len(steps), "step lines and", len(evals), "eval lines, all timed")
P

# --- point 4: eval counts each held-out sample once, and agrees with shardlm eval
train_eval_tokens=$(grep -o 'eval after training (step 8) | loss [0-9.]* | ppl [0-9.]* | [0-9]* tokens' <<< "$OUT" | awk '{print $(NF-1)}')
train_eval_loss=$(grep -o 'eval after training (step 8) | loss [0-9.]*' <<< "$OUT" | awk '{print $NF}')
expect_exit 0 "$SHARDLM" eval --model "$S/export" --data "$TMP/sft/eval-*.h5" --seq-len 64 --batch 1
expect_out "eval mode sft (from the shards"
cli_tokens=$(grep -o 'tokens [0-9]*' <<< "$OUT" | awk '{print $2}')
cli_loss=$(grep -o 'eval loss [0-9.]*' <<< "$OUT" | awk '{print $3}')
[ "$train_eval_tokens" = "$cli_tokens" ] ||
  fail "in-training eval counted $train_eval_tokens tokens, shardlm eval over every sample once $cli_tokens"
[ "$train_eval_loss" = "$cli_loss" ] || fail "in-training eval loss $train_eval_loss, shardlm eval $cli_loss"
expect_exit 0 "$SHARDLM" eval --model "$S/export" --data "$TMP/sft/eval-*.h5" --seq-len 64 --batch 1 --mode sft
[ "$(grep -o 'eval loss [0-9.]*' <<< "$OUT" | awk '{print $3}')" = "$cli_loss" ] || fail "default mode is not sft"
echo "ok: eval $train_eval_tokens tokens, loss $train_eval_loss, in training and in shardlm eval"
# an eval set smaller than one global batch (micro 8 x 2 ranks) trains and counts it once
head -c 300 "$TMP/corpus.txt" > "$TMP/tiny.txt"
expect_exit 0 "$SHARDLM" prepare --input "$TMP/tiny.txt" --output "$TMP/tiny" --tokenizer "$TMP/tok.json" \
  --set prepare.dedup_near=false
train 2 "$TMP/tinyeval" --set data.eval="$TMP/tiny" --set train.micro_batch=8 --set train.steps=1
expect_out "each eval covers every sample once"
tiny_train=$(grep -o 'eval after training (step 1) | loss [0-9.]* | ppl [0-9.]* | [0-9]* tokens' <<< "$OUT" | awk '{print $(NF-1)}')
expect_exit 0 "$SHARDLM" eval --model "$TMP/tinyeval/checkpoints" --data "$TMP/tiny" --seq-len 24 --batch 1 --mode pretrain
tiny_tokens=$(grep -o 'tokens [0-9]*' <<< "$OUT" | awk '{print $2}')
[ -n "$tiny_train" ] && [ "$tiny_train" = "$tiny_tokens" ] ||
  fail "a small eval set: $tiny_train tokens in training, $tiny_tokens in shardlm eval"
echo "ok: an eval set smaller than one global batch trains and counts $tiny_tokens tokens once"

# --- point 6: a checkpoint is a model: export, eval, generate, init_from
C="$S/checkpoints/step_00000008"
expect_exit 0 "$SHARDLM" export "$C" "$TMP/ckexp"
cmp -s "$TMP/ckexp/model.safetensors" "$S/export/model.safetensors" ||
  fail "export of the step-8 checkpoint differs from the run's export at step 8"
[ -f "$TMP/ckexp/tokenizer.json" ] || fail "the checkpoint export lacks the tokenizer (hand-off tokenizer.json)"
expect_exit 0 "$SHARDLM" eval --model "$C" --data "$TMP/sft/eval-*.h5" --seq-len 64 --batch 1
[ "$(grep -o 'eval loss [0-9.]*' <<< "$OUT" | awk '{print $3}')" = "$cli_loss" ] || fail "eval of the checkpoint differs: $OUT"
expect_exit 0 $MPIRUN -np 2 "$SHARDLM" eval --model "$S/checkpoints" --data "$TMP/sft/eval-*.h5" --seq-len 64 --batch 2
expect_exit 0 "$SHARDLM" generate --model "$C" --tokenizer "$TMP/tok.json" --prompt "What is 3 plus 4?" \
  --max-new-tokens 8 --temperature 0
ref=$OUT
expect_exit 0 "$SHARDLM" generate --model "$S/export" --tokenizer "$TMP/tok.json" --prompt "What is 3 plus 4?" \
  --max-new-tokens 8 --temperature 0
[ "$OUT" = "$ref" ] || fail "generate from the checkpoint and from the export differ"
# the run config without its model section: model.init_from sets the model
"$PYTHON" -c 'import json,sys; c=json.load(open(sys.argv[1])); c.pop("model"); c["optim"]={"lr": 0, "lr_min": 0}; json.dump(c, open(sys.argv[2], "w"))' "$G" "$TMP/init.json"
for from in ck:"$C" exp:"$S/export"; do
  expect_exit 0 "$SHARDLM" train --config "$TMP/init.json" --set train.run_dir="$TMP/from_${from%%:*}" \
    --set model.init_from="${from#*:}" --set train.steps=1 --set data.train="$TMP/sft/train-*.h5" \
    --set data.mode=sft --set data.seq_len=64
done
[ "$(loss_at "$TMP/from_ck" 1)" = "$(loss_at "$TMP/from_exp" 1)" ] || fail "model.init_from a checkpoint starts elsewhere"
echo "ok: a checkpoint exports, evals, generates and initializes like the export"

# --- point 9 and lesser: model.init_from with contradicting model.* keys
expect_exit 2 "$SHARDLM" config check --config "$SRC/configs/tiny-gpt2.json" --set model.n_layer=4 \
  --set model.init_from="$S/export"
expect_out "\"model.n_layer\" = 4, the folder's model has 2"
expect_out "\"model.arch\" = \"gpt2\", the folder's model has \"llama\""
expect_exit 2 $MPIRUN -np 2 "$SHARDLM" train --config "$G" --set train.run_dir="$TMP/conf" --set model.n_layer=4 \
  --set model.init_from="$S/export"
expect_out "\"model.n_layer\" = 4, the folder's model has 2"
[ ! -e "$TMP/conf" ] || fail "the refused run created its run_dir"

# --- point 3 and 10, lesser: LoRA with all-linear; the printed merge command works; merge copies the tokenizer
L="$TMP/lora"
cat > "$TMP/lora.json" <<J
{"model": {"init_from": "$S/export"},
 "data": {"train": "$TMP/sft/train-*.h5", "seq_len": 64, "mode": "sft", "tokenizer": "$TMP/tok.json"},
 "train": {"steps": 3, "micro_batch": 2, "export_final": true, "run_dir": "$L"},
 "lora": {"enabled": true, "r": 2, "targets": ["all-linear"]}}
J
expect_exit 0 $MPIRUN -np 2 "$SHARDLM" train --config "$TMP/lora.json"
cmd=$(grep -o 'merge with: shardlm lora merge [^)]*' <<< "$OUT" | sed 's/^merge with: shardlm //')
[ -n "$cmd" ] || fail "the LoRA run printed no merge command: $OUT"
expect_exit 0 "$SHARDLM" ${cmd/OUT_DIR/$TMP/merged}
[ -f "$TMP/merged/tokenizer.json" ] || fail "lora merge did not write the tokenizer: $(ls "$TMP/merged")"
expect_exit 0 "$SHARDLM" lora merge --base "$S/export" --adapter "$L/export" --output "$TMP/merged2"
cmp -s "$TMP/merged/model.safetensors" "$TMP/merged2/model.safetensors" || fail "the two merge forms differ"
expect_exit 0 "$SHARDLM" lora merge "$C" "$L/checkpoints/step_00000003" "$TMP/merged3"
cmp -s "$TMP/merged/model.safetensors" "$TMP/merged3/model.safetensors" ||
  fail "merging the LoRA checkpoint into the base checkpoint differs from merging the exports"
"$PYTHON" -c 'import json,sys; c=json.load(open(sys.argv[1])); assert c["target_modules"] == "all-linear", c' \
  "$L/export/adapter_config.json" || fail "target_modules is not the string all-linear"
expect_exit 0 "$SHARDLM" export "$L/checkpoints/step_00000003" "$TMP/lora_ck_exp"
cmp -s "$TMP/lora_ck_exp/model.safetensors" "$TMP/merged/model.safetensors" ||
  fail "exporting a LoRA checkpoint is not the merged model"
echo "ok: LoRA merge command, forms, checkpoint adapters, tokenizer, all-linear"

# --- point 7: a damaged latest checkpoint: exit 2 named once; --resume auto falls back
D="$TMP/dmg"
train 2 "$D" --set train.steps=6 --set checkpoint.every=3
f="$D/checkpoints/step_00000006/rank_00001.h5"
truncate -s $(( $(stat -c %s "$f") / 2 )) "$f"
expect_exit 2 $MPIRUN -np 2 "$SHARDLM" train --config "$G" --set train.run_dir="$D" --set train.steps=8 \
  --resume "$D/checkpoints/step_00000006"
expect_out "the file is truncated"
[ "$(grep -c 'error: shardlm train' <<< "$OUT")" -eq 1 ] || fail "the refusal was printed more than once: $OUT"
grep -q MPI_ABORT <<< "$OUT" && fail "the refusal aborted MPI: $OUT"
train 2 "$D" --set train.steps=8 --resume auto
expect_out "cannot be loaded"
expect_out "falling back to $D/checkpoints/step_00000003"
expect_out "resumed from $D/checkpoints/step_00000003 at step 3"
expect_out "step 8/8"

# errors of eval under mpirun: printed once, by the first rank, without MPI_ABORT
expect_exit 1 $MPIRUN -np 2 "$SHARDLM" eval --model "$TMP/no-such-model" --data "$TMP/shards" --seq-len 24 --batch 2
expect_out "$TMP/no-such-model"
[ "$(grep -c 'error: shardlm eval' <<< "$OUT")" -eq 1 ] || fail "the eval error was not printed once: $OUT"
grep -q MPI_ABORT <<< "$OUT" && fail "the eval error aborted MPI: $OUT"

# --- lesser: did-you-mean for commands and options
expect_exit 2 "$SHARDLM" trian
expect_out 'unknown command "trian"; did you mean "train"?'
expect_exit 2 "$SHARDLM" generate --model "$C" --tokenizer "$TMP/tok.json" --temp 0
expect_out "unknown option --temp; did you mean --temperature?"
echo ok
