#!/usr/bin/env bash
# The PyTorch reference test (tests/unit/test_model_reference.c: logits, loss,
# every gradient and the parameters after the optimizer steps, a skipped step
# included) through the training job at world size 2: every global batch
# split over two ranks, each unit sharded over both (FSDP full_shard). World
# size 1 is the ctest unit run. Every rank must pass every test.
source "$(dirname "$0")/lib.sh"
BIN="$BUILD/tests/test_model_reference"
[ -x "$BIN" ] || fail "$BIN not built"
n=$(grep -c '^ *cmocka_unit_test(' "$SRC/tests/unit/test_model_reference.c")
expect_exit 0 $MPIRUN -np 2 "$BIN"
expect_out "test_model_reference: world size 2"
passed=$(printf '%s\n' "$OUT" | grep -c "^\[  PASSED  \] $n test(s)")
[ "$passed" -eq 2 ] || fail "$passed of 2 ranks passed all $n tests; output:
$OUT"
printf '%s\n' "$OUT" | grep -E '^(test_model_reference:|[a-z0-9_]+ +(logits|step))'
echo "ok"
