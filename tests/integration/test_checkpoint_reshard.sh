#!/usr/bin/env bash
# Resharding: a checkpoint saved at world size 4 (full_shard) resumes at
# world sizes 2 and 3 (and at 2 in no_shard): the state gathered from the
# new rank files equals the old one bitwise, and training continues with
# losses within 1e-5 (relative) of the uninterrupted world-4 run and final
# parameters and AdamW moments within 1e-5 of it. The global batch is 12
# sequences everywhere (micro_batch x world).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ckpt_lib.sh"
mktmp
ckpt_data
train 4 "$TMP/ref" --set train.steps=16 --set checkpoint.every=8 --set train.micro_batch=3
REF8="$TMP/ref/checkpoints/step_00000008"
for spec in "2 full_shard 6" "3 full_shard 4" "2 no_shard 6"; do
  set -- $spec
  np=$1 mode=$2 micro=$3 dir="$TMP/np$1_$2"
  # resume at step 8 with train.steps = 8: no step runs, the state is saved again at this world size
  train "$np" "$dir" --set train.steps=8 --set train.micro_batch=$micro --set parallel.fsdp_mode=$mode --resume "$REF8"
  expect_out "resharded checkpoint from world 4 (full_shard, shard 4) to world $np ($mode"
  ckpt_compare 0 gathered "$REF8" "$dir/checkpoints/step_00000008"
  train "$np" "$dir" --set train.steps=16 --set train.micro_batch=$micro --set parallel.fsdp_mode=$mode --resume auto
  expect_out "resumed from $dir/checkpoints/step_00000008 at step 8"
  ckpt_compare 0 gathered --tol 1e-5 "$TMP/ref/checkpoints/step_00000016" "$dir/checkpoints/step_00000016"
  expect_exit 0 "$PYTHON" - "$TMP/ref" "$dir" <<'P'
import json, sys
def losses(d):
    return {r["step"]: r["loss"] for r in map(json.loads, open(d + "/metrics.jsonl")) if "loss" in r}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
for s in range(9, 17):
    rel = abs(a[s] - b[s]) / abs(a[s])
    if rel > 1e-5:
        sys.exit(f"step {s}: loss {b[s]} after resharding, {a[s]} at world 4 (rel {rel:.2e})")
print(f"losses of steps 9-16 within 1e-5: max rel {max(abs(a[s]-b[s])/abs(a[s]) for s in range(9,17)):.2e}")
P
  echo "np $np $mode: $OUT"
done
echo ok
