#!/usr/bin/env bash
# Reward-model training against PyTorch (tests/unit/test_reward_train.c: step
# 1's Bradley-Terry loss and reduced gradient, the parameters after 3 AdamW
# steps, the job's <Arch>ForSequenceClassification export) through the
# training job at world sizes 2 and 4: each global batch of 4 pairs split
# over the ranks (2 or 1 pairs each; at world 2 also as 2 micro-batches of
# 1, grad_accum 2), every unit sharded over all of them (FSDP full_shard).
# World size 1 is the ctest unit run. Every rank must pass every test.
source "$(dirname "$0")/lib.sh"
BIN="$BUILD/tests/test_reward_train"
[ -x "$BIN" ] || fail "$BIN not built"
n=$(grep -c '^ *cmocka_unit_test(' "$SRC/tests/unit/test_reward_train.c")
for np in 2 4; do
  expect_exit 0 $MPIRUN -np $np "$BIN"
  expect_out "test_reward_train: world size $np"
  passed=$(printf '%s\n' "$OUT" | grep -c "^\[  PASSED  \] $n test(s)")
  [ "$passed" -eq "$np" ] || fail "world $np: $passed of $np ranks passed all $n tests; output:
$OUT"
  printf '%s\n' "$OUT" | grep -E '^(gpt2|llama) +world'
done
echo "ok"
