#!/usr/bin/env bash
# Faults injected into a real `shardlm train` job at world size 2 (README
# "Testing hooks"):
# - SHARDLM_FAULT_HANG=1:3: rank 1 stops responding in step 3, after it has
#   submitted the forward's first all-gather. With parallel.comm_timeout_s = 3
#   every rank ends within the timeout + 10 s, the job exits 124, the report
#   names the collective, its sequence number and rank 1, and no process of
#   the job is left behind.
# - SHARDLM_FAULT_NAN_LOSS=1:3: rank 1's loss is NaN at step 3 (its gradient
#   stays finite): every rank skips the step (parameters unchanged, the skip
#   counted); with train.nonfinite = fatal every rank exits 2 naming rank 1.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ckpt_lib.sh"
mktmp
HEAD_BYTES=40000 fortune_shards fortunes
cat > "$TMP/run.json" <<J
{
  "model": {"arch": "llama", "n_layer": 2, "d_model": 48, "n_head": 6, "n_kv_head": 2,
            "d_ff": 80, "vocab_size": 320, "max_seq_len": 64, "tie_embeddings": false},
  "data": {"train": "$TMP/shards", "seq_len": 24},
  "train": {"steps": 4, "seed": 7, "micro_batch": 2, "export_final": false},
  "optim": {"lr": 3e-3, "lr_warmup": 1, "grad_clip": 0.5, "weight_decay": 0.1},
  "checkpoint": {"every": 0, "keep": 10},
  "logging": {"log_every": 1}
}
J

# ---- a hung rank in the training job ----
TIMEOUT=3
hang="$TMP/hang_run" # unique: marks this job's processes for pgrep
start=$(date +%s.%N)
OUT=$(SHARDLM_FAULT_HANG=1:3 timeout 90 $MPIRUN -np 2 "$SHARDLM" train --config "$TMP/run.json" \
  --set train.run_dir="$hang" --set parallel.comm_timeout_s=$TIMEOUT 2>&1)
rc=$?
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
[ "$rc" -ne 0 ] || fail "the job with a hung rank exited 0; output:
$OUT"
expect_out "SHARDLM_FAULT_HANG: rank 1 stops responding in step 3"
expect_out "step 2/4 | loss"
grep -q "step 3/4" <<< "$OUT" && fail "step 3 completed although rank 1 hung in it; output:
$OUT"
# the collective, its sequence number and the rank that never submitted it
grep -Eq "collective all_gather #[0-9]+ on (world|shard) \([0-9]+ bytes, group of 2 ranks\) did not complete in 3\.0 s" <<< "$OUT" ||
  fail "no timeout report naming the all_gather and its sequence number; output:
$OUT"
seq=$(grep -Eo "collective all_gather #[0-9]+" <<< "$OUT" | head -1 | grep -Eo "[0-9]+$")
expect_out "ranks that did not arrive (world ranks): r1 (finished #$((seq - 1)), has not submitted #$seq)"
expect_out "Aborting the job (exit code 124)"
[ "$rc" -eq 124 ] || fail "mpirun exited $rc, expected 124 (SL_EXIT_TIMEOUT through MPI_Abort); output:
$OUT"
[ "$(echo "$elapsed < $TIMEOUT + 10" | bc)" -eq 1 ] || fail "took $elapsed s from launch, limit $TIMEOUT + 10 s; output:
$OUT"
sleep 1
for pid in $(pgrep -f -- "$hang"); do
  state=$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)
  [ -z "$state" ] || [ "$state" = Z ] || fail "process $pid ($state) of the aborted job is still alive: $(ps -o pid,stat,args -p "$pid")"
done
echo "hang: exit $rc after $elapsed s (timeout $TIMEOUT s), all_gather #$seq named"

# ---- a non-finite loss on one rank ----
nan="$TMP/nan"
SHARDLM_FAULT_NAN_LOSS=1:3 train 2 "$nan" --set checkpoint.every=1
expect_out "SHARDLM_FAULT_NAN_LOSS: replacing this rank's loss by NaN at step 3"
expect_out "step 3: non-finite loss on rank(s) 1: skipping the step on every rank"
grep -q "step 3: non-finite .*local gradient" <<< "$OUT" && fail "the NaN loss hook also made a gradient non-finite: $OUT"
expect_out "SKIPPED (non-finite; 1 so far)"
expect_out "1 of 4 steps were skipped"
ckpt_compare 0 same-params "$nan/checkpoints/step_00000002" "$nan/checkpoints/step_00000003"
ckpt_compare 1 same-params "$nan/checkpoints/step_00000003" "$nan/checkpoints/step_00000004"
grep -Eq "\"skipped_steps\":[[:space:]]*1," "$nan/checkpoints/step_00000004/meta.json" || fail "meta.json does not count the skipped step"
# fatal: every rank stops at step 3 and names rank 1
SHARDLM_FAULT_NAN_LOSS=1:3 expect_exit 2 $MPIRUN -np 2 "$SHARDLM" train --config "$TMP/run.json" \
  --set train.run_dir="$TMP/fatal" --set train.nonfinite=fatal
# printed once (issue 16), by the rank that has the NaN, naming it
grep -q "^\[r1 .*step 3: non-finite loss on rank(s) 1 (train.nonfinite = fatal)" <<< "$OUT" ||
  fail "rank 1 did not report the fatal non-finite loss naming rank 1: $OUT"
[ "$(grep -c 'error: shardlm train' <<< "$OUT")" -eq 1 ] || fail "the fatal error was not printed exactly once: $OUT"
grep -q "MPI_ABORT" <<< "$OUT" && fail "a fatal non-finite step aborted MPI: $OUT"
echo ok
