#!/usr/bin/env bash
# Crash recovery: every rank SIGKILLed at a step after a checkpoint, then a
# relaunch with --resume auto, reaches the final step with every parameter
# and AdamW shard and the loader state bitwise equal to an uninterrupted run
# (world sizes 2 and 3), and logs the same losses. A crash while a
# checkpoint is being written (rank 0 killed after its rank file is in
# place) leaves an incomplete step_*.tmp that resume ignores: it continues
# from the previous complete checkpoint, and the next save removes it.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ckpt_lib.sh"
mktmp
ckpt_data
# 30 steps, checkpoints every 5; the killed run stalls after step 7
# (SHARDLM_FAULT_STALL) so that the kill lands there however loaded the
# machine is.
STEPS=30
for np in 2 3; do
  micro=$((6 / np))
  train "$np" "$TMP/ref$np" --set train.steps=$STEPS --set train.micro_batch=$micro
  # killed: SIGKILL to mpirun and every rank once step 7 is logged
  dir="$TMP/killed$np"
  SHARDLM_FAULT_STALL=7 $MPIRUN -np "$np" "$SHARDLM" train --config "$TMP/run.json" --set train.run_dir="$dir" \
    --set train.steps=$STEPS --set train.micro_batch=$micro > "$dir.log" 2>&1 &
  pid=$!
  wait_steps "$dir" 7 "$pid"
  pids="$pid $(rank_pids "$dir")"
  kill -9 $pids 2>/dev/null
  wait "$pid" 2>/dev/null
  killed_at=$(metric_steps "$dir")
  [ "$killed_at" -lt "$STEPS" ] || fail "np $np: the run finished before it was killed"
  latest=$(cat "$dir/checkpoints/latest")
  echo "np $np: killed after step $killed_at; latest checkpoint $latest"
  train "$np" "$dir" --set train.steps=$STEPS --set train.micro_batch=$micro --resume auto
  expect_out "resumed from $dir/checkpoints/$latest"
  ckpt_compare 0 bitwise "$TMP/ref$np/checkpoints/step_000000$STEPS" "$dir/checkpoints/step_000000$STEPS"
  for s in $((killed_at)) $((killed_at + 1)) $STEPS; do
    a=$(loss_at "$TMP/ref$np" $s); b=$(loss_at "$dir" $s)
    [ "$a" = "$b" ] || fail "np $np step $s: loss $b after resume, $a uninterrupted"
  done
done

# Killed during the save of step 10 (rank 0 dies after writing its file).
dir="$TMP/crash"
SHARDLM_FAULT_KILL_IN_SAVE=10 $MPIRUN -np 2 "$SHARDLM" train --config "$TMP/run.json" \
  --set train.run_dir="$dir" --set train.steps=$STEPS --set train.micro_batch=3 > "$dir.log" 2>&1
rc=$?
[ "$rc" -ne 0 ] || fail "the run with SHARDLM_FAULT_KILL_IN_SAVE=10 exited 0"
[ -f "$dir/checkpoints/step_00000010.tmp/rank_00000.h5" ] || fail "no partial step_00000010.tmp: $(ls -R "$dir/checkpoints")"
[ ! -e "$dir/checkpoints/step_00000010.tmp/meta.json" ] || fail "the partial checkpoint has a meta.json"
[ "$(cat "$dir/checkpoints/latest")" = step_00000005 ] || fail "latest is $(cat "$dir/checkpoints/latest"), expected step_00000005"
expect_exit 0 "$SHARDLM" inspect "$dir/checkpoints"
expect_out "1 complete checkpoint: step_00000005"
train 2 "$dir" --set train.steps=$STEPS --set train.micro_batch=3 --resume auto --set checkpoint.keep=2
expect_out "resumed from $dir/checkpoints/step_00000005 at step 5"
expect_out "removing the incomplete checkpoint $dir/checkpoints/step_00000010.tmp"
[ ! -e "$dir/checkpoints/step_00000010.tmp" ] || fail "step_00000010.tmp was not removed"
ckpt_compare 0 bitwise "$TMP/ref2/checkpoints/step_000000$STEPS" "$dir/checkpoints/step_000000$STEPS"
# retention: checkpoint.keep = 2 keeps the newest two complete ones
[ "$(ls "$dir/checkpoints" | tr '\n' ' ')" = "latest step_00000025 step_00000030 " ] ||
  fail "checkpoint.keep=2 left: $(ls "$dir/checkpoints" | tr '\n' ' ')"

# LoRA (random base from the seed, as for benchmarks): the checkpoint holds
# the adapters ("lora" part) and no frozen base; resume from step 5 of a
# 10-step run ends bitwise equal to the uninterrupted run.
LORA=(--set lora.enabled=true --set lora.r=4 --set lora.alpha=8 --set lora.targets=q_proj,v_proj,down_proj
      --set train.steps=10 --set train.micro_batch=3)
train 2 "$TMP/lora_ref" "${LORA[@]}"
mkdir -p "$TMP/lora_res/checkpoints"
cp -r "$TMP/lora_ref/checkpoints/step_00000005" "$TMP/lora_res/checkpoints/"
train 2 "$TMP/lora_res" "${LORA[@]}" --resume auto
expect_out "resumed from $TMP/lora_res/checkpoints/step_00000005 at step 5"
ckpt_compare 0 bitwise "$TMP/lora_ref/checkpoints/step_00000010" "$TMP/lora_res/checkpoints/step_00000010"
expect_exit 0 "$SHARDLM" inspect "$TMP/lora_res/checkpoints/step_00000010/rank_00000.h5"
expect_out "lora: 4 units"
grep -q "model:" <<< "$OUT" && fail "a LoRA checkpoint holds the frozen base: $OUT"
echo "ok"
