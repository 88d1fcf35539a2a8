#!/usr/bin/env bash
# shardlm bench, the training-job driver (--fsdp / --backend cuda /
# --find-batch) on the CPU backend: validation (step-0 loss near ln V, the
# bitwise repeat check), the report's keys, MFU = tokens/s x FLOPs per token
# / peak with the PyTorch peer's FLOP count (6 N + 6 L T C, N = parameters
# without wte/wpe, plus the tied head), --find-batch with --mem-cap, and the
# refusals (CUDA without a GPU or without a CUDA build, --save-init or
# --mem-cap where they do not apply); the job benchmark at world size 2 (its
# report's relations; params and step-0 loss equal world size 1's). The GPU
# side runs in benchmarks/gpu_step.sh on a GPU machine.
source "$(dirname "$0")/lib.sh"
mktmp
cd "$TMP" || fail "cd $TMP"
export OMP_NUM_THREADS=1
get() { awk -v k="$1" '$1 == k {print $2; exit}' <<< "$OUT"; }

# the job benchmark on the CPU, tied GPT-2 (wpe excluded from N)
expect_exit 0 "$SHARDLM" bench --fsdp --config "$SRC/configs/tiny-gpt2.json" --steps 3 --warmup 1 --peak 0.002
for k in "device cpu | backend cpu" "peak_tflops 0.002 (--peak)" "repeat_check bitwise" "median_step_s" \
  "tokens_per_s_per_rank" "exposed_comm_ms" "total_comm_ms" "overlap_pct" "peak_mib" "mfu_pct" \
  "micro_batch 2 x seq 64 x accum 1"; do
  expect_out "$k"
done
"$PYTHON" - "$(get params)" "$(get flops_per_token)" "$(get tokens_per_s)" "$(get mfu_pct)" \
  "$(get loss0)" "$(get loss0_ln_v)" <<'PYEOF' || fail "gpt2 report inconsistent; output:
$OUT"
import math, sys
params, fpt, tok, mfu, loss0, lnv = map(float, sys.argv[1:])
L, C, T, V, maxT = 2, 64, 64, 512, 128
want = 6 * (params - maxT * C) + 6 * L * T * C  # wte out, tied head in, wpe out
assert abs(fpt - want) <= 1e-5 * want, (fpt, want)
assert abs(lnv - math.log(V)) < 1e-5, lnv
assert abs(loss0 - lnv) < 1.0, (loss0, lnv)
want_mfu = 100 * tok * fpt / 2e9
assert abs(mfu - want_mfu) <= 0.05 + 1e-3 * want_mfu, (mfu, want_mfu)
PYEOF

# the same job at world size 2 (FULL_SHARD over MPI): the report's keys and
# their relations; the synthetic global batch of 2 ranks x micro_batch 2 is
# world size 1's with micro_batch 4, so params and step-0 loss must equal
# that run's (loss to 1e-5 relative)
expect_exit 0 "$SHARDLM" bench --fsdp --config "$SRC/configs/tiny-gpt2.json" --set train.micro_batch=4 \
  --steps 1 --warmup 0 --no-repeat-check
params1=$(get params); loss1=$(get loss0)
expect_exit 0 $MPIRUN -np 2 "$SHARDLM" bench --fsdp --config "$SRC/configs/tiny-gpt2.json" --steps 3 --warmup 1 \
  --peak 0.002
for k in "device cpu | backend cpu" "world 2, fsdp full_shard" "repeat_check bitwise" \
  "identical on every rank" "micro_batch 2 x seq 64 x accum 1"; do
  expect_out "$k"
done
[ "$(grep -c '^median_step_s' <<< "$OUT")" -eq 1 ] || fail "np 2: the report is not printed once (rank 0 only); output:
$OUT"
"$PYTHON" - "$params1" "$loss1" "$(get params)" "$(get loss0)" "$(get loss0_ln_v)" "$(get median_step_s)" \
  "$(get min_step_s)" "$(get tokens_per_s)" "$(get tokens_per_s_per_rank)" "$(get flops_per_token)" \
  "$(get mfu_pct)" "$(get exposed_comm_ms)" "$(get total_comm_ms)" "$(get overlap_pct)" "$(get peak_mib)" \
  <<'PYEOF' || fail "np 2 report inconsistent; output:
$OUT"
import math, sys
(params1, loss1, params, loss0, lnv, med, mn, tok, tok_rank, fpt, mfu, exposed, total, overlap,
 peak) = map(float, sys.argv[1:])
assert params == params1, (params, params1)
assert abs(loss0 - loss1) <= 1e-5 * abs(loss1), (loss0, loss1)
assert abs(lnv - math.log(512)) < 1e-5 and abs(loss0 - lnv) < 1.0, (loss0, lnv)
assert 0 < mn and 0 < med < 10, (mn, med)
tokens_per_step = 2 * 2 * 64  # micro 2 x seq 64 x dp 2
# median_step_s is printed to 0.1 ms
assert tokens_per_step / (med + 5e-5) * 0.999 <= tok <= tokens_per_step / (med - 5e-5) * 1.001, (tok, med)
assert abs(tok_rank - tok / 2) <= 1e-3 * tok_rank + 0.1, (tok_rank, tok)
assert abs(mfu - 100 * tok * fpt / 2 / 2e9) <= 0.05 + 1e-3 * mfu, (mfu, tok, fpt)
# two ranks exchange every unit: the comm-only replay takes time; exposed may
# exceed it (the step's waits also absorb the ranks' skew), never negative
assert total > 0 and exposed >= 0, (total, exposed)
lo = 100 * (1 - (exposed + 0.005) / max(total - 0.005, 1e-9)) - 0.05  # ms printed to 0.01
hi = 100 * (1 - max(exposed - 0.005, 0) / (total + 0.005)) + 0.05
assert lo <= overlap <= hi, (overlap, exposed, total)
assert 0 < peak < 1024, peak
PYEOF
# under mpirun without --fsdp: OMPI_COMM_WORLD_SIZE > 1 selects the job benchmark
expect_exit 0 $MPIRUN -np 2 "$SHARDLM" bench --config "$SRC/configs/tiny-gpt2.json" --steps 1 --warmup 0 \
  --no-repeat-check
expect_out "world 2, fsdp full_shard"

# Llama with tied embeddings: N = every parameter (wte out, head in)
expect_exit 0 "$SHARDLM" bench --fsdp --config "$SRC/configs/tiny-llama.json" --set model.tie_embeddings=true \
  --steps 2 --warmup 0 --no-repeat-check
expect_out "repeat_check off"
expect_out "peak_tflops n/a (unknown device"
expect_out "mfu_pct n/a"
"$PYTHON" - "$(get params)" "$(get flops_per_token)" <<'PYEOF' || fail "llama FLOPs per token; output:
$OUT"
import sys
params, fpt = map(float, sys.argv[1:])
want = 6 * params + 6 * 2 * 64 * 64
assert abs(fpt - want) <= 1e-5 * want, (fpt, want)
PYEOF

# --find-batch with a cap: the result fits, its double does not
expect_exit 0 "$SHARDLM" bench --config "$SRC/configs/tiny-llama.json" --find-batch --mem-cap 0.03 \
  --steps 1 --warmup 0 --no-repeat-check
res=$(awk '/^find_batch result/ {print $4}' <<< "$OUT")
[ -n "$res" ] && [ "$res" -ge 2 ] || fail "find_batch result '$res'; output:
$OUT"
expect_out "find_batch $res: fits"
expect_out "find_batch $((res * 2)): over --mem-cap"
expect_out "micro_batch $res x seq 64"
"$PYTHON" - "$(get peak_mib)" <<'PYEOF' || fail "peak over the cap; output:
$OUT"
import sys
assert float(sys.argv[1]) <= 0.03 * 1024, sys.argv[1]
PYEOF

# --max-batch stops the doubling
expect_exit 0 "$SHARDLM" bench --config "$SRC/configs/tiny-llama.json" --find-batch --mem-cap 1 --max-batch 4 \
  --steps 1 --warmup 0 --no-repeat-check
expect_out "find_batch result: micro_batch 4 (the largest power of two that fits, capped by --max-batch)"
grep -q "find_batch 8" <<< "$OUT" && fail "doubled past --max-batch 4; output:
$OUT"
expect_exit 2 "$SHARDLM" bench --config "$SRC/configs/tiny-llama.json" --max-batch 4
expect_out "only together with --find-batch"

# the one-process CPU benchmark takes --peak too
expect_exit 0 "$SHARDLM" bench --config "$SRC/configs/tiny-gpt2.json" --steps 1 --warmup 0 --threads 1 --peak 1
expect_out "mfu_pct"

# refusals
expect_exit 2 "$SHARDLM" bench --config "$SRC/configs/tiny-llama.json" --find-batch
expect_out "needs --mem-cap"
expect_exit 2 "$SHARDLM" bench --config "$SRC/configs/tiny-llama.json" --mem-cap 1
expect_out "together with --find-batch"
expect_exit 2 "$SHARDLM" bench --config "$SRC/configs/tiny-llama.json" --fsdp --save-init "$TMP/x"
expect_out "only for the one-process CPU benchmark"
expect_exit 2 "$SHARDLM" bench --config "$SRC/configs/tiny-llama.json" --backend tpu
expect_out "expected cpu or cuda"
ENV_OUT=$("$SHARDLM" env 2>&1)
if grep -q 'CUDA: off' <<< "$ENV_OUT"; then
  expect_exit 2 "$SHARDLM" bench --config "$SRC/configs/tiny-llama.json" --backend cuda
  expect_out "built without CUDA"
elif ! grep -Eq 'CUDA: on .*; [1-9][0-9]* device' <<< "$ENV_OUT"; then
  expect_exit 1 "$SHARDLM" bench --config "$SRC/configs/tiny-llama.json" --backend cuda
  expect_out "no usable GPU"
fi
echo "ok"
