#!/usr/bin/env bash
# Preemption under Slurm on 2 namespaced nodes x 2 tasks: a job of the
# multi-node template gets `scancel --signal=USR1` mid-run (what Slurm's
# --signal=USR1@120 does before a time limit). Every rank saves at the next
# step boundary and exits 75; the template requeues the job (scontrol
# requeue), which runs again (restart count 1) with --resume auto, continues
# from that checkpoint, and ends COMPLETED. Its final export is byte-identical
# to that of the same job run without interruption. The job's output file
# holds both runs (--open-mode=append).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
rig_start 2
HEAD_BYTES=60000 fortune_shards fortunes
STEPS=300
cluster_config $STEPS
sbatch_train() { # RUN_DIR
  submit --nodes=2 --ntasks-per-node=2 --gpus-per-node=2 --cpus-per-task=1 --time=10 \
    --output="$TMP/job-%j.out" "$SRC/cluster/slurm/multi_node.sbatch" "$TMP/run.json" "$1" \
    --set parallel.fsdp_mode=hybrid --set train.micro_batch=3
}
steps_in() { [ -f "$1/metrics.jsonl" ] && grep -c '"loss"' "$1/metrics.jsonl" || echo 0; }

# ---- the uninterrupted job ----
sbatch_train "$TMP/whole"
wait_job "$JOB" 300
[ "$JOB_STATE" = COMPLETED ] && [ "$JOB_EXIT" = 0:0 ] || fail "uninterrupted job $JOB ended $JOB_STATE $JOB_EXIT"

# ---- the preempted job ----
sbatch_train "$TMP/pre"
end=$((SECONDS + 120))
until [ "$(steps_in "$TMP/pre")" -ge 10 ]; do
  [ $SECONDS -lt $end ] || fail "job $JOB did not reach step 10 in 120 s: $(cat "$TMP/job-$JOB.out")"
  sleep 0.1
done
on login scancel --signal=USR1 "$JOB" || fail "scancel --signal=USR1 $JOB failed"
sig_at=$(steps_in "$TMP/pre")
# the requeue first (Restarts 1), then the end: between the first run's exit
# and the requeue scontrol can report a transient end state of the first run
end=$((SECONDS + 300))
until [ "$(job_field "$JOB" Restarts)" = 1 ]; do
  [ $SECONDS -lt $end ] || fail "job $JOB was not requeued within 300 s of SIGUSR1: $(cat "$TMP/job-$JOB.out")"
  sleep 0.5
done
wait_job "$JOB" 300
log="$TMP/job-$JOB.out"
OUT=$(cat "$log")
[ "$JOB_STATE" = COMPLETED ] && [ "$JOB_EXIT" = 0:0 ] || fail "preempted job $JOB ended $JOB_STATE $JOB_EXIT; log:
$OUT"
restarts=$(job_field "$JOB" Restarts)
[ "$restarts" = 1 ] || fail "job $JOB restarted $restarts times, expected 1; log:
$OUT"
grep -Eo "stopped by SIGUSR1 at step [0-9]+" <<< "$OUT" | head -1 | grep -q . || fail "no rank reported 'stopped by SIGUSR1'; log:
$OUT"
s=$(grep -Eo "stopped by SIGUSR1 at step [0-9]+" <<< "$OUT" | head -1 | grep -Eo "[0-9]+$")
[ "$s" -ge 10 ] && [ "$s" -lt $STEPS ] || fail "stopped at step $s, signalled after step $sig_at of $STEPS"
expect_out "shardlm job $JOB: preempted, checkpoint saved: requeueing (restart 1)"
expect_out "shardlm job $JOB, run 2 (restart count 1)"
expect_out "resumed from $TMP/pre/checkpoints/step_$(printf %08d "$s") at step $s"
expect_out "step $STEPS/$STEPS"
expect_out "shardlm job $JOB: training finished"
# the first run's lines are still in the file: appended, not truncated
expect_out "shardlm job $JOB, run 1 (restart count 0)"
for f in model.safetensors config.json; do
  cmp "$TMP/whole/export/$f" "$TMP/pre/export/$f" || fail "export/$f of the preempted job differs from the uninterrupted job's"
done
echo "ok: USR1 after step $sig_at, saved at step $s, exit 75, requeued, resumed, export byte-identical"
