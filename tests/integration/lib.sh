# Helpers for integration tests (sourced). Every check fails the test through
# its exit code with a message naming what differed.
set -uo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_exit CODE CMD...: runs CMD, captures stdout+stderr in $OUT.
expect_exit() {
  local want=$1; shift
  OUT=$("$@" 2>&1); local got=$?
  [ "$got" -eq "$want" ] || fail "'$*' exited $got, expected $want; output:
$OUT"
}
expect_out() { # expect_out SUBSTRING
  grep -qF -- "$1" <<< "$OUT" || fail "output lacks [$1]; output:
$OUT"
}
# expect_bad_input WHERE MESSAGE CMD...: CMD exits 2 (bad input) and its
# output names WHERE (FILE:LINE) and says MESSAGE.
expect_bad_input() {
  local where=$1 msg=$2; shift 2
  expect_exit 2 "$@"
  expect_out "$where"
  expect_out "$msg"
}
mktmp() { TMP=$(mktemp -d /tmp/shardlm_test.XXXXXX); trap 'rm -rf "$TMP"' EXIT; }
# expect_no_live_process PATTERN: a second after an abort, no process whose
# command line matches PATTERN is alive (zombies awaiting their reaper have
# exited).
expect_no_live_process() {
  local pid state
  sleep 1
  for pid in $(pgrep -f -- "$1"); do
    state=$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)
    [ -z "$state" ] || [ "$state" = Z ] || fail "process $pid ($state) of the aborted job is still alive: $(ps -o pid,stat,args -p "$pid")"
  done
}

# fortune_shards FILE... : the small training set most integration tests use.
# $TMP/corpus.txt = Debian's fortune files FILE... concatenated (fortunes,
# literature, riddles); with HEAD_BYTES=N only its first N bytes. Then a
# 320-token BPE $TMP/tok.json trained on it and token shards $TMP/shards
# (no near-dup removal: fortunes repeat themes). $OUT holds prepare's output.
fortune_shards() {
  local fort=/usr/share/games/fortunes f files=()
  [ -f "$fort/fortunes" ] || fail "Debian package fortunes is missing: run make setup"
  for f in "$@"; do files+=("$fort/$f"); done
  if [ -n "${HEAD_BYTES:-}" ]; then
    cat "${files[@]}" | head -c "$HEAD_BYTES" > "$TMP/corpus.txt"
  else
    cat "${files[@]}" > "$TMP/corpus.txt"
  fi
  expect_exit 0 "$SHARDLM" tokenizer train --vocab-size 320 --input "$TMP/corpus.txt" \
    --output "$TMP/tok.json" --special '<|endoftext|>'
  expect_exit 0 "$SHARDLM" prepare --input "$TMP/corpus.txt" --output "$TMP/shards" \
    --tokenizer "$TMP/tok.json" --set prepare.dedup_near=false
}

# tiny_eval_model: what the eval tests run on. $TMP/corpus.txt = the first
# 40000 bytes of Debian's fortunes, a 320-token BPE $TMP/tok.json trained on
# it (with <|endoftext|>), a random tiny Llama of vocabulary 322 (the BPE and
# the two chat markers) from generate_eval_ref.py as the Hugging Face folder
# $TMP/hf, imported as $TMP/model.
tiny_eval_model() {
  head -c 40000 /usr/share/games/fortunes/fortunes > "$TMP/corpus.txt"
  expect_exit 0 "$SHARDLM" tokenizer train --vocab-size 320 --input "$TMP/corpus.txt" --output "$TMP/tok.json" \
    --special '<|endoftext|>'
  "$PYTHON" "$SRC/tests/integration/generate_eval_ref.py" model "$TMP/hf" 322 || fail "generate_eval_ref.py model failed"
  expect_exit 0 "$SHARDLM" import "$TMP/hf" "$TMP/model"
}

# unit_test_at_ranks NAME SUMMARY_ERE NP...: runs the unit test executable
# $BUILD/tests/NAME under $MPIRUN at each world size NP. It must print
# "NAME: world size NP", and every rank must pass all the cmocka tests that
# $SRC/tests/unit/NAME.c registers; then the output lines matching
# SUMMARY_ERE are printed.
unit_test_at_ranks() {
  local name=$1 summary=$2 np n passed bin="$BUILD/tests/$1"
  shift 2
  [ -x "$bin" ] || fail "$bin not built"
  n=$(grep -o 'cmocka_unit_test(' "$SRC/tests/unit/$name.c" | wc -l)
  for np in "$@"; do
    expect_exit 0 $MPIRUN -np "$np" "$bin"
    expect_out "$name: world size $np"
    passed=$(printf '%s\n' "$OUT" | grep -c "^\[  PASSED  \] $n test(s)")
    [ "$passed" -eq "$np" ] || fail "world $np: $passed of $np ranks passed all $n tests; output:
$OUT"
    printf '%s\n' "$OUT" | grep -E -- "$summary"
  done
}
