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
