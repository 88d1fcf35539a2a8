#!/usr/bin/env bash
# DPO end to end, as a user runs it: a generated preference set whose chosen
# answers follow a rule the rejected ones break (the answer to "Shout the
# word cat." is shouted, "CAT!", not "cat."), prepared into SFT documents and
# pair shards, an SFT model, then `shardlm train` with train.objective = dpo
# from the SFT export (full fine-tuning, 2 ranks: FSDP over the policy and
# the frozen reference), and:
#   - the eval on held-out pairs (prompt phrasings x words never in the DPO
#     training set) reports rewards/accuracies 0 before training (policy ==
#     reference: every reward 0) and >= 0.8 after;
#   - the DPO model's greedy answers (`shardlm generate --chat`) are shouted
#     more often than the SFT model's;
#   - metrics.jsonl holds TRL's metric names (rewards/*, logps/*, eval_*);
#   - resume from the step-30 checkpoint (the reference rebuilt from
#     model.init_from) reaches step 60 bitwise equal to the uninterrupted
#     run; a changed dpo.beta is named in the resume warning;
#   - a LoRA DPO run (reference = the base with the adapters off) trains and
#     exports a PEFT adapter; a non-finite loss skips the step;
#   - configs that cannot work are refused: data.mode = sft with dpo, a
#     document shard as pair data, train.objective = reward with LoRA.
# The SFT documents answer in either form at random (the rule followed by
# chance), so that the SFT model knows the answer format but not the rule,
# which only the preference pairs teach.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ckpt_lib.sh"
mktmp

"$PYTHON" - "$TMP" <<'P'
import json, random, sys
out = sys.argv[1]
r = random.Random(11)
words = ["cat", "dog", "sun", "tree", "fish", "bird", "rain", "milk", "book", "door", "road", "ship",
         "frog", "lamp", "rock", "wind"]
asks = ["Shout the word {}.", "Say {} loudly.", "Give me {}, loud."]
combos = [(w, a) for w in words for a in range(len(asks))]
held = set(r.sample(combos, 12))  # eval pairs: (word, phrasing) never in the DPO training pairs
def rec(w, a):
    return {"prompt": asks[a].format(w), "chosen": w.upper() + "!", "rejected": w + "."}
train = [c for c in combos if c not in held]
with open(f"{out}/pairs.jsonl", "w") as f:
    for i in range(480):
        f.write(json.dumps(rec(*r.choice(train))) + "\n")
with open(f"{out}/pairs_eval.jsonl", "w") as f:
    for c in sorted(held):
        f.write(json.dumps(rec(*c)) + "\n")
with open(f"{out}/sft.jsonl", "w") as f:
    for i in range(480):
        x = rec(*r.choice(combos))
        f.write(json.dumps({"prompt": x["prompt"], "response": x[r.choice(["chosen", "rejected"])]}) + "\n")
with open(f"{out}/corpus.txt", "w") as f:
    for c in combos:
        x = rec(*c)
        f.write(f"{x['prompt']} {x['chosen']} {x['rejected']}\n\n")
with open(f"{out}/words.txt", "w") as f:
    f.write("\n".join(words) + "\n")
P
expect_exit 0 "$SHARDLM" tokenizer train --vocab-size 400 --input "$TMP/corpus.txt" --output "$TMP/tok.json" \
  --special '<|endoftext|>'
PREP=(--tokenizer "$TMP/tok.json" --set prepare.chat_template=chatml --set prepare.dedup_exact=false
      --set prepare.dedup_near=false --set prepare.pii=false)
expect_exit 0 "$SHARDLM" prepare --input "$TMP/sft.jsonl" --output "$TMP/sft" "${PREP[@]}"
expect_exit 0 "$SHARDLM" prepare --input "$TMP/pairs.jsonl" --output "$TMP/pairs" "${PREP[@]}"
expect_exit 0 "$SHARDLM" prepare --input "$TMP/pairs_eval.jsonl" --output "$TMP/pairs_eval" "${PREP[@]}"

# --- SFT
cat > "$TMP/run.json" <<J
{
  "model": {"arch": "llama", "n_layer": 2, "d_model": 48, "n_head": 6, "n_kv_head": 2,
            "d_ff": 96, "vocab_size": 384, "max_seq_len": 48, "tie_embeddings": false},
  "data": {"train": "$TMP/sft", "seq_len": 32, "mode": "sft", "tokenizer": "$TMP/tok.json"},
  "train": {"steps": 200, "seed": 3, "micro_batch": 8, "export_final": true},
  "optim": {"lr": 1e-2, "lr_warmup": 5, "lr_min": 1e-3, "grad_clip": 1.0, "weight_decay": 0.0},
  "logging": {"log_every": 50}
}
J
train 2 "$TMP/sftrun"
expect_out "step 200/200"

# --- DPO from the SFT export (data.mode = pairs follows from the objective)
cat > "$TMP/dpo.json" <<J
{
  "model": {"init_from": "$TMP/sftrun/export"},
  "data": {"train": "$TMP/pairs", "eval": "$TMP/pairs_eval", "seq_len": 32, "tokenizer": "$TMP/tok.json"},
  "train": {"objective": "dpo", "steps": 60, "seed": 5, "micro_batch": 4, "export_final": true,
            "eval_every": 30},
  "dpo": {"beta": 0.1},
  "optim": {"lr": 2e-4, "lr_warmup": 5, "lr_min": 2e-5, "grad_clip": 1.0, "weight_decay": 0.0},
  "checkpoint": {"every": 30, "keep": 5},
  "logging": {"log_every": 10}
}
J
D="$TMP/dporun"
expect_exit 0 $MPIRUN -np 2 "$SHARDLM" train --config "$TMP/dpo.json" --set train.run_dir="$D"
expect_out "step 60/60"
expect_out "eval before training (step 0) | dpo loss 0.6931 | rewards/accuracies 0.0000 | rewards/margins 0.0000 | 12 pairs"
acc=$(grep -o 'eval after training (step 60) | dpo loss [0-9.]* | rewards/accuracies [0-9.]*' <<< "$OUT" | awk '{print $NF}')
[ -n "$acc" ] || fail "no eval after training: $OUT"
echo "held-out reward accuracy after DPO: $acc"
"$PYTHON" -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 0.8 else 1)" "$acc" ||
  fail "rewards/accuracies $acc on the held-out pairs after DPO, expected >= 0.8"
"$PYTHON" - "$D/metrics.jsonl" <<'P' || fail "metrics.jsonl lacks TRL's DPO metrics"
import json, math, sys
L = [json.loads(l) for l in open(sys.argv[1])]
steps = [l for l in L if "loss" in l]
evals = [l for l in L if "eval_loss" in l]
names = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
         "logps/rejected"]
assert [l["step"] for l in steps] == list(range(1, 61)), [l["step"] for l in steps]
assert all(all(n in l for n in names) for l in steps), steps[0]
assert abs(steps[0]["loss"] - math.log(2)) < 1e-8 and steps[0]["rewards/margins"] == 0, steps[0]  # 9 digits written
assert [l["step"] for l in evals] == [0, 30, 60], evals
assert all(all("eval_" + n in l for n in names) for l in evals), evals[0]
print("ok: metrics.jsonl has the TRL names on", len(steps), "step lines and", len(evals), "eval lines")
P

# greedy answers: shouted (an upper-case word and "!") by the SFT and the DPO model
shouted() {
  local n=0 w out
  for w in $(cat "$TMP/words.txt"); do
    out=$("$SHARDLM" generate --model "$1" --tokenizer "$TMP/tok.json" --prompt "Shout the word $w." --chat \
      --temperature 0 --max-new-tokens 8) || fail "generate with $1 failed"
    printf '%s | ' "$out" >&2
    [[ "$out" =~ ^[A-Z]+!$ ]] && n=$((n + 1))
  done
  echo >&2
  echo "$n"
}
n_sft=$(shouted "$TMP/sftrun/export")
n_dpo=$(shouted "$D/export")
echo "greedy answers shouted: SFT $n_sft of 16, DPO $n_dpo of 16"
[ "$n_dpo" -gt "$n_sft" ] || fail "the DPO model shouts $n_dpo of 16 answers, the SFT model $n_sft: DPO did not move greedy answers to the rule"

# --- resume: from the step-30 checkpoint, bitwise the uninterrupted run
R="$TMP/resumed"
cp -r "$D" "$R"
rm -rf "$R/checkpoints/step_00000060" "$R/export"
echo step_00000030 > "$R/checkpoints/latest"
rm -f "$R/checkpoints/best"
expect_exit 0 $MPIRUN -np 2 "$SHARDLM" train --config "$TMP/dpo.json" --set train.run_dir="$R" --resume auto
expect_out "resumed from $R/checkpoints/step_00000030 at step 30"
ckpt_compare 0 bitwise "$D/checkpoints/step_00000060" "$R/checkpoints/step_00000060"
for s in 31 60; do
  a=$(loss_at "$D" $s); b=$(loss_at "$R" $s)
  [ "$a" = "$b" ] || fail "step $s: loss $b after resume, $a uninterrupted"
done
R2="$TMP/resumed_beta"
cp -r "$R" "$R2"
rm -rf "$R2/checkpoints/step_00000060" "$R2/export"
echo step_00000030 > "$R2/checkpoints/latest"
rm -f "$R2/checkpoints/best"
expect_exit 0 $MPIRUN -np 2 "$SHARDLM" train --config "$TMP/dpo.json" --set train.run_dir="$R2" --resume auto \
  --set dpo.beta=0.2 --set train.steps=31
expect_out "dpo.beta: checkpoint 0.1, now 0.2"

# --- LoRA DPO: the reference is the base with the adapters off
expect_exit 0 $MPIRUN -np 2 "$SHARDLM" train --config "$TMP/dpo.json" --set train.run_dir="$TMP/lora" \
  --set lora.enabled=true --set lora.targets=q_proj,v_proj,o_proj --set optim.lr=3e-3 --set train.steps=20 \
  --set train.eval_every=0 --set checkpoint.every=0
expect_out "eval before training (step 0) | dpo loss 0.6931 | rewards/accuracies 0.0000"
expect_out "step 20/20"
[ -f "$TMP/lora/export/adapter_model.safetensors" ] || fail "the LoRA DPO run wrote no adapter"

# --- a non-finite loss skips the step on every rank, as in SFT
SHARDLM_FAULT_NAN_LOSS=1:3 expect_exit 0 $MPIRUN -np 2 "$SHARDLM" train --config "$TMP/dpo.json" \
  --set train.run_dir="$TMP/nan" --set train.steps=4 --set train.eval_every=0 --set checkpoint.every=0
expect_out "step 3: non-finite loss on rank(s) 1: skipping the step on every rank"
expect_out "1 of 4 steps were skipped"

# --- refusals (before MPI starts: exit 2)
expect_exit 2 "$SHARDLM" train --config "$TMP/dpo.json" --set train.run_dir="$TMP/bad1" --set data.mode=sft
expect_out "train.objective = dpo trains on preference pairs but \"data.mode\" = sft"
expect_exit 2 "$SHARDLM" train --config "$TMP/dpo.json" --set train.run_dir="$TMP/bad2" --set data.train="$TMP/sft"
expect_out "$TMP/sft/train-00000.h5 holds documents (layout=docs), not preference pairs"
expect_exit 2 "$SHARDLM" train --config "$TMP/dpo.json" --set train.run_dir="$TMP/bad3" --set train.objective=reward \
  --set lora.enabled=true
expect_out "train.objective = reward with lora.enabled is not implemented"
echo ok
