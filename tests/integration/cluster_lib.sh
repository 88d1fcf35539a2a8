# Helpers for the multi-host tests (sourced after lib.sh): a rig of network
# namespaces from cluster/local/rig.sh, with or without Slurm, torn down when
# the test ends however it ends. Test files live in $TMP under /var/tmp, which
# every rig host sees (each host has a /tmp of its own, like real nodes).
# These tests need root (network namespaces, slurmd): CI runs as root. Not
# root: exit 77 (ctest SKIP) with the reason, unless SHARDLM_REQUIRE_RIG=1.

RIGSH="$SRC/cluster/local/rig.sh"

rig_require() {
  if [ "$(id -u)" -ne 0 ]; then
    [ "${SHARDLM_REQUIRE_RIG:-0}" = 1 ] && fail "the multi-host tests need root (network namespaces, slurmd)"
    echo "SKIP: the multi-host tests need root for network namespaces and slurmd (CI runs them as root)" >&2
    exit 77
  fi
  local c
  for c in ip nsenter unshare bc munged slurmctld slurmd sbatch srun scontrol; do
    command -v "$c" >/dev/null || fail "$c is missing: run make setup (iproute2, util-linux, bc, munge, slurm-wlm, slurmctld, slurmd, slurm-client)"
  done
}

rig_cleanup() {
  local rc=$?
  if [ $rc -ne 0 ] && [ -d "$RIG/log" ]; then
    echo "---- rig logs (last lines) ----" >&2
    tail -n 15 "$RIG"/log/*.log >&2 2>/dev/null
    for f in "$TMP"/*.out; do [ -f "$f" ] && { echo "---- $f ----"; tail -n 30 "$f"; } >&2; done
  fi
  [ -f "$RIG/rig.env" ] && "$RIGSH" down "$RIG" >&2
  rm -rf "$TMP"
  exit $rc
}

# rig_start K [--no-slurm]: $TMP (shared), $RIG (the rig), trap for teardown
rig_start() {
  rig_require
  TMP=$(mktemp -d /var/tmp/shardlm_cluster.XXXXXX)
  RIG="$TMP/rig"
  trap rig_cleanup EXIT
  trap 'exit 130' INT TERM
  "$RIGSH" up "$RIG" "$@" || fail "the rig did not come up"
}

# on HOST CMD...: CMD on a rig host (login, node1, ...)
on() { "$RIGSH" exec "$RIG" "$@"; }

# tiny Llama config in $TMP/run.json (data from fortune_shards)
cluster_config() { # STEPS
  cat > "$TMP/run.json" <<J
{
  "model": {"arch": "llama", "n_layer": 2, "d_model": 48, "n_head": 6, "n_kv_head": 2,
            "d_ff": 80, "vocab_size": 320, "max_seq_len": 64, "tie_embeddings": false},
  "data": {"train": "$TMP/shards", "seq_len": 24},
  "train": {"steps": $1, "seed": 7, "export_final": true},
  "optim": {"lr": 3e-3, "lr_warmup": 2, "lr_min": 3e-4, "grad_clip": 0.5, "weight_decay": 0.1},
  "checkpoint": {"every": 0, "keep": 10},
  "logging": {"log_every": 1}
}
J
}

# job_field JOBID FIELD: a field of scontrol show job (JobState, ExitCode, Restarts, ...)
job_field() {
  on login scontrol -o show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}

# wait_job JOBID SECONDS: until the job has ended (COMPLETED, FAILED, ...);
# sets JOB_STATE and JOB_EXIT ("rc:signal"). Requeued jobs are followed.
wait_job() {
  local id=$1 end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do
    JOB_STATE=$(job_field "$id" JobState)
    case $JOB_STATE in
      COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED)
        JOB_EXIT=$(job_field "$id" ExitCode); return 0 ;;
    esac
    sleep 0.5
  done
  fail "job $id still ${JOB_STATE:-unknown} after $2 s: $(on login scontrol show job "$id")"
}

# submit ARGS...: sbatch on the login host; sets JOB
submit() {
  JOB=$(cd "$TMP" && on login sbatch --parsable "$@") || fail "sbatch $* failed: $JOB"
  JOB=${JOB%%;*}
  [[ $JOB =~ ^[0-9]+$ ]] || fail "sbatch printed [$JOB], not a job id"
}
