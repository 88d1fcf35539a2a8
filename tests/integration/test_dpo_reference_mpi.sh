#!/usr/bin/env bash
# The DPO reference test (tests/unit/test_dpo_reference.c: each step's DPO
# loss, step 1's TRL metrics and gradients, the parameters after 3 steps of
# full fine-tuning and LoRA against PyTorch with TRL's formulas) through the
# training job at world sizes 2 and 4: every global batch's pairs split over
# the ranks (2 pairs per rank in one micro-batch at world 2; 1 per rank at
# world 4), each unit and the full fine-tuning reference sharded over all of
# them (FSDP full_shard). World size 1 (grad_accum 2) is the ctest unit run.
# Every rank must pass every test.
source "$(dirname "$0")/lib.sh"
BIN="$BUILD/tests/test_dpo_reference"
[ -x "$BIN" ] || fail "$BIN not built"
n=$(grep -o 'cmocka_unit_test(' "$SRC/tests/unit/test_dpo_reference.c" | wc -l)
for np in 2 4; do
    expect_exit 0 $MPIRUN -np $np "$BIN"
    expect_out "test_dpo_reference: world size $np"
    passed=$(printf '%s\n' "$OUT" | grep -c "^\[  PASSED  \] $n test(s)")
    [ "$passed" -eq "$np" ] || fail "world $np: $passed of $np ranks passed all $n tests; output:
$OUT"
    printf '%s\n' "$OUT" | grep -E '^(test_dpo_reference:|(full|lora)_[a-z0-9_]+ +loss)'
done
echo "ok"
