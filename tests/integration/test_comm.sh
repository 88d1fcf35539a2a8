#!/usr/bin/env bash
# Collective correctness (tests/unit/test_comm.c) at 2, 3 and 4 ranks: every
# rank must report all of its tests passed. World size 1 is the ctest unit run.
source "$(dirname "$0")/lib.sh"
BIN="$BUILD/tests/test_comm"
[ -x "$BIN" ] || fail "$BIN not built"
for np in 2 3 4; do
  expect_exit 0 $MPIRUN -np $np "$BIN"
  passed=$(printf '%s\n' "$OUT" | grep -c '^\[  PASSED  \] 9 test(s)')
  [ "$passed" -eq "$np" ] || fail "np $np: $passed of $np ranks passed all 9 tests; output:
$OUT"
done
echo "ok"
