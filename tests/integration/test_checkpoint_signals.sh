#!/usr/bin/env bash
# Preemption and non-finite steps.
# - SIGTERM sent to the rank processes (as Slurm does) mid-run: every rank
#   saves at the next step boundary and the job exits 75; --resume auto
#   continues from that step. SIGUSR1 sent to mpirun (which forwards it to
#   the ranks) does the same.
# - SHARDLM_FAULT_NAN_GRAD=1:4 puts a NaN into rank 1's gradient at step 4:
#   every rank skips the step (parameters and AdamW state unchanged, the
#   skip counted); with train.nonfinite = fatal every rank exits naming rank 1.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ckpt_lib.sh"
mktmp
ckpt_data
dir="$TMP/pre"
# run_bg NP STEPS [ARGS...]: a background run into $dir; sets $pid
run_bg() {
  local np=$1 steps=$2; shift 2
  $MPIRUN -np "$np" "$SHARDLM" train --config "$TMP/run.json" --set train.run_dir="$dir" \
    --set train.steps="$steps" --set checkpoint.every=0 --set optim.lr_schedule=constant "$@" > "$dir.log" 2>&1 &
  pid=$!
}
mkdir -p "$dir"
run_bg 2 100000
wait_steps "$dir" 3 "$pid"
kill -TERM $(rank_pids "$dir")
wait "$pid"; rc=$?
[ "$rc" -eq 75 ] || fail "SIGTERM to the ranks: exit $rc, expected 75; log: $(tail -5 "$dir.log")"
grep -q "stopped by SIGTERM at step" "$dir.log" || fail "no 'stopped by SIGTERM' line: $(tail -5 "$dir.log")"
first=$(cat "$dir/checkpoints/latest")
s1=$((10#${first#step_}))
[ "$s1" -ge 3 ] || fail "latest checkpoint $first is before step 3"
echo "SIGTERM: exit 75, checkpoint $first"

run_bg 2 100000 --resume auto
wait_steps "$dir" $((s1 + 3)) "$pid"
grep -q "resumed from $dir/checkpoints/$first at step $s1" "$dir.log" || fail "did not resume from $first: $(head -5 "$dir.log")"
kill -USR1 "$pid"
wait "$pid"; rc=$?
[ "$rc" -eq 75 ] || fail "SIGUSR1 to mpirun: exit $rc, expected 75; log: $(tail -5 "$dir.log")"
grep -q "stopped by SIGUSR1 at step" "$dir.log" || fail "no 'stopped by SIGUSR1' line: $(tail -5 "$dir.log")"
second=$(cat "$dir/checkpoints/latest")
s2=$((10#${second#step_}))
[ "$s2" -gt "$s1" ] || fail "the second checkpoint $second is not after $first"
echo "SIGUSR1: exit 75, checkpoint $second"
train 2 "$dir" --set train.steps=$((s2 + 2)) --set checkpoint.every=0 --set optim.lr_schedule=constant --resume auto
expect_out "resumed from $dir/checkpoints/$second at step $s2"
expect_out "step $((s2 + 2))/$((s2 + 2))"
# the metrics are continuous: every step from 1 to s2+2 logged (some twice: replayed after a kill)
expect_exit 0 "$PYTHON" -c 'import json,sys
s={json.loads(l)["step"] for l in open(sys.argv[1]) if "\"loss\"" in l}
sys.exit(0 if s==set(range(1,int(sys.argv[2])+1)) else f"steps logged: {sorted(s)}")' "$dir/metrics.jsonl" $((s2 + 2))

# NaN in rank 1's gradient at step 4: skipped everywhere, state unchanged
nan="$TMP/nan"
SHARDLM_FAULT_NAN_GRAD=1:4 train 2 "$nan" --set train.steps=5 --set checkpoint.every=1
expect_out "step 4: non-finite local gradient norm on rank(s) 1: skipping the step on every rank"
expect_out "1 of 5 steps were skipped"
ckpt_compare 0 same-params "$nan/checkpoints/step_00000003" "$nan/checkpoints/step_00000004"
ckpt_compare 1 same-params "$nan/checkpoints/step_00000004" "$nan/checkpoints/step_00000005"
grep -Eq "\"skipped_steps\":[[:space:]]*1," "$nan/checkpoints/step_00000005/meta.json" || fail "meta.json does not count the skipped step"
# fatal: every rank stops at step 4 and names rank 1
SHARDLM_FAULT_NAN_GRAD=1:4 expect_exit 2 $MPIRUN -np 2 "$SHARDLM" train --config "$TMP/run.json" \
  --set train.run_dir="$TMP/fatal" --set train.nonfinite=fatal
# printed once (issue 16: errors every rank agreed on come from one rank, naming the rank)
grep -q "^\[r1 .*step 4: non-finite local gradient norm on rank(s) 1 (train.nonfinite = fatal)" <<< "$OUT" ||
  fail "rank 1 did not report the fatal non-finite step naming rank 1: $OUT"
[ "$(grep -c 'error: shardlm train' <<< "$OUT")" -eq 1 ] || fail "the fatal error was not printed exactly once: $OUT"
grep -q "MPI_ABORT" <<< "$OUT" && fail "a fatal non-finite step aborted MPI: $OUT"
echo ok
