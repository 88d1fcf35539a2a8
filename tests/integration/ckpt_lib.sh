# Helpers for the checkpoint integration tests (sourced after lib.sh): a
# tiny Llama, data from Debian's fortunes, launch/kill helpers, and the checks
# of a skipped or fatal non-finite step.

ckpt_data() { # tokenizer + shards in $TMP, config in $TMP/run.json
  fortune_shards fortunes literature riddles
  cat > "$TMP/run.json" <<J
{
  "model": {"arch": "llama", "n_layer": 2, "d_model": 48, "n_head": 6, "n_kv_head": 2,
            "d_ff": 80, "vocab_size": 320, "max_seq_len": 64, "tie_embeddings": false},
  "data": {"train": "$TMP/shards", "seq_len": 24},
  "train": {"steps": 14, "seed": 7, "micro_batch": 2, "export_final": false},
  "optim": {"lr": 3e-3, "lr_warmup": 3, "lr_min": 3e-4, "grad_clip": 0.5, "weight_decay": 0.1},
  "checkpoint": {"every": 5, "keep": 10},
  "logging": {"log_every": 1}
}
J
}

# train NP RUN_DIR [ARGS...]: one training run, expected to exit 0.
train() {
  local np=$1 dir=$2; shift 2
  expect_exit 0 $MPIRUN -np "$np" "$SHARDLM" train --config "$TMP/run.json" --set train.run_dir="$dir" "$@"
}

# Steps in RUN_DIR/metrics.jsonl so far.
metric_steps() { awk '/"loss"/ {n++} END {print n + 0}' "$1/metrics.jsonl" 2>/dev/null || echo 0; }

# wait_steps RUN_DIR N PID: polls until N step lines exist; fails if PID ends first.
wait_steps() {
  local dir=$1 n=$2 pid=$3 i
  for i in $(seq 1 3000); do
    [ "$(metric_steps "$dir")" -ge "$n" ] && return 0
    kill -0 "$pid" 2>/dev/null || fail "the run in $dir ended before step $n: $(cat "$dir.log" 2>/dev/null | tail -5)"
    sleep 0.01
  done
  fail "the run in $dir did not reach step $n in 30 s"
}

# Pids of the rank processes (not mpirun) of the run whose run_dir is DIR.
rank_pids() { pgrep -f -- "^$SHARDLM train .*train.run_dir=$1( |\$)" | tr '\n' ' '; }

ckpt_compare() { expect_exit "$1" "$PYTHON" "$SRC/tests/tools/ckpt_compare.py" "${@:2}"; echo "$OUT"; }

# loss_at RUN_DIR STEP: the last logged loss of that step.
loss_at() {
  "$PYTHON" -c 'import json,sys
v=[json.loads(l)["loss"] for l in open(sys.argv[1]+"/metrics.jsonl") if "\"loss\"" in l and json.loads(l)["step"]==int(sys.argv[2])]
print(repr(v[-1]) if v else "none")' "$1" "$2"
}

# expect_skipped_step DIR STEP: the job in DIR skipped STEP: STEP's
# checkpoint holds the parameters of STEP - 1, STEP + 1 changed them again,
# and STEP + 1's meta.json counts one skipped step.
expect_skipped_step() {
  local c="$1/checkpoints" s=$2
  local before after next
  before=$(printf 'step_%08d' $((s - 1))) after=$(printf 'step_%08d' "$s") next=$(printf 'step_%08d' $((s + 1)))
  ckpt_compare 0 same-params "$c/$before" "$c/$after"
  ckpt_compare 1 same-params "$c/$after" "$c/$next"
  grep -Eq "\"skipped_steps\":[[:space:]]*1," "$c/$next/meta.json" || fail "meta.json does not count the skipped step"
}

# expect_fatal_nonfinite FAULT STEP WHAT NOUN: with FAULT=1:STEP (a
# SHARDLM_FAULT_* variable) and train.nonfinite=fatal, the 2-rank job in
# $TMP/fatal exits 2, rank 1 alone reports "step STEP: non-finite WHAT on
# rank(s) 1 (train.nonfinite = fatal)" (NOUN names WHAT in the failure) and
# MPI was not aborted.
expect_fatal_nonfinite() {
  local -x "$1=1:$2"
  expect_exit 2 $MPIRUN -np 2 "$SHARDLM" train --config "$TMP/run.json" \
    --set train.run_dir="$TMP/fatal" --set train.nonfinite=fatal
  # printed once (issue 16), by the rank that has the NaN, naming it
  grep -q "^\[r1 .*step $2: non-finite $3 on rank(s) 1 (train.nonfinite = fatal)" <<< "$OUT" ||
    fail "rank 1 did not report the fatal non-finite $4 naming rank 1: $OUT"
  [ "$(grep -c 'error: shardlm train' <<< "$OUT")" -eq 1 ] || fail "the fatal error was not printed exactly once: $OUT"
  grep -q "MPI_ABORT" <<< "$OUT" && fail "a fatal non-finite step aborted MPI: $OUT"
  return 0
}
