#!/usr/bin/env bash
# The time-limit path of preemption and the template's requeue cap, under
# Slurm on 2 namespaced nodes x 2 tasks: a job of the multi-node template with
# --time=1 --signal=USR1@45 and far more steps than a minute holds, and
# SHARDLM_MAX_REQUEUES=1.
# - Run 1: Slurm sends SIGUSR1 before the limit; every rank saves and exits 75;
#   the template requeues the job.
# - Run 2 (restart count 1) resumes from that checkpoint, is signalled the
#   same way and saves again; the cap is reached, so the template does not
#   requeue: the job ends FAILED with exit code 75 instead of looping, with
#   every step from 1 to the second stop logged.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
rig_start 2
HEAD_BYTES=60000 fortune_shards fortunes
cluster_config 1000000
# sbatch passes its environment (SHARDLM_MAX_REQUEUES) to the job
SHARDLM_MAX_REQUEUES=1 submit --time=1 --signal=USR1@45 --nodes=2 --ntasks-per-node=2 --gpus-per-node=2 --cpus-per-task=1 \
  --output="$TMP/job-%j.out" "$SRC/cluster/slurm/multi_node.sbatch" "$TMP/run.json" "$TMP/tl" \
  --set train.micro_batch=3 --set logging.log_every=100
wait_job "$JOB" 240
OUT=$(cat "$TMP/job-$JOB.out")
echo "$OUT" | grep -E "shardlm job|stopped by|resumed from" | cut -c1-160
[ "$JOB_STATE" = FAILED ] && [ "$JOB_EXIT" = 75:0 ] || fail "job $JOB ended $JOB_STATE $JOB_EXIT, expected FAILED 75:0; log:
$OUT"
[ "$(job_field "$JOB" Restarts)" = 1 ] || fail "job $JOB restarted $(job_field "$JOB" Restarts) times, expected 1"
mapfile -t stops < <(grep -Eo "^\[r0 node1\] error: .*stopped by SIGUSR1 at step [0-9]+" <<< "$OUT" | grep -Eo "[0-9]+$")
[ "${#stops[@]}" -eq 2 ] || fail "expected rank 0 to stop twice on SIGUSR1, found ${#stops[@]}; log:
$OUT"
expect_out "shardlm job $JOB: preempted, checkpoint saved: requeueing (restart 1)"
expect_out "shardlm job $JOB, run 2 (restart count 1)"
expect_out "resumed from $TMP/tl/checkpoints/step_$(printf %08d "${stops[0]}") at step ${stops[0]}"
expect_out "already restarted 1 times (SHARDLM_MAX_REQUEUES=1): not requeueing"
[ "${stops[1]}" -gt "${stops[0]}" ] || fail "the second stop (${stops[1]}) is not after the first (${stops[0]})"
[ "$(cat "$TMP/tl/checkpoints/latest")" = "step_$(printf %08d "${stops[1]}")" ] || fail "latest is not the second stop's checkpoint"
expect_exit 0 "$PYTHON" -c 'import json,sys
s={json.loads(l)["step"] for l in open(sys.argv[1]) if "\"loss\"" in l}
sys.exit(0 if s==set(range(1,int(sys.argv[2])+1)) else f"steps logged: {min(s)}..{max(s)}, {len(s)} of them")' \
  "$TMP/tl/metrics.jsonl" "${stops[1]}"
echo "ok: time limit -> USR1 at steps ${stops[0]} and ${stops[1]}, one requeue, then FAILED 75 (cap)"
