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
  printf '%s' "$OUT" | grep -qF -- "$1" || fail "output lacks [$1]; output:
$OUT"
}
mktmp() { TMP=$(mktemp -d /tmp/shardlm_test.XXXXXX); trap 'rm -rf "$TMP"' EXIT; }
