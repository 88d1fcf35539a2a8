#!/usr/bin/env bash
# benchmarks/gpu_step.sh's own logic, without a GPU: stand-ins for shardlm
# (a script printing `shardlm bench`'s report keys) and for python3 (printing
# torch_gpu_bench.py's result line, out of memory above micro-batch 8) check
# the table rows, the shared peak handed to the peer, the halving of both
# batches when torch runs out of memory under --find-batch, the ratio line,
# the exit codes, and the skip (77) when shardlm sees no GPU.
source "$(dirname "$0")/lib.sh"
mktmp
cat > "$TMP/shardlm" <<'SH'
#!/usr/bin/env bash
if [[ $1 == env ]]; then echo "  CUDA: on (runtime 13.0); ${FAKE_GPUS:-1} device(s)"; exit 0; fi
echo "shardlm $*" >> "$FAKE_LOG"
b=$(sed -n 's/.*train.micro_batch=\([0-9]*\).*/\1/p' <<< "$*")
if [[ " $* " == *" --find-batch "* ]]; then echo "find_batch result: micro_batch 32 (x)"; b=32; fi
cat <<REPORT
device NVIDIA H200 | backend cuda | compute BF16
peak_tflops 989 (dense bf16 datasheet, table row "H200")
world 1, fsdp full_shard, gpt2 12 layers d_model 768, micro_batch $b x seq 1024 x accum 1
loss0 10.830000
loss0_ln_v 10.824905
median_step_s 0.2000
tokens_per_s $((b * 1024 * 5)).0
mfu_pct 41.5
peak_mib 20480.0
device_used_mib 30720.0
REPORT
SH
cat > "$TMP/python3" <<'SH'
#!/usr/bin/env bash
echo "python $*" >> "$FAKE_LOG"
args=" $* "
b=$(sed -n 's/.* --batch \([0-9]*\) .*/\1/p' <<< "$args")
m=$(sed -n 's/.* --model \([a-z0-9]*\) .*/\1/p' <<< "$args")
if [[ $b -gt 8 ]]; then echo "result model=$m B=$b T=1024 status=oom"; exit 3; fi
echo "result model=$m B=$b T=1024 step_ms=250.00 tok_s=$((b * 1024 * 4)).0 mfu_pct=33.20 peak_alloc_gib=25.00 device_used_gib=28.00 loss0=10.900000 ln_v=10.824905"
SH
chmod +x "$TMP/shardlm" "$TMP/python3"
export FAKE_LOG=$TMP/log SHARDLM=$TMP/shardlm PYTHON=$TMP/python3
STEP=$SRC/benchmarks/gpu_step.sh

expect_exit 0 bash "$STEP" --model gpt2 --batch 8
expect_out "| gpt2 | 8 x 1024 | shardlm | 200.0 | 40960.0 | 41.5 | 20.00 | 30.00 | 10.830000 (10.824905) |"
expect_out "| gpt2 | 8 x 1024 | torch | 250.00 | 32768.0 | 33.20 | 25.00 | 28.00 | 10.900000 (10.824905) |"
expect_out "gpt2: shardlm / torch tokens/s = 1.25"
expect_out "device: NVIDIA H200 | backend cuda"
grep -q -- "--peak 989" "$TMP/log" || fail "the peer did not get shardlm's peak: $(cat "$TMP/log")"

: > "$TMP/log"
expect_exit 0 bash "$STEP" --model gpt2 --find-batch --max-batch 32
expect_out "out of memory at micro-batch 32: both rerun at 16"
expect_out "out of memory at micro-batch 16: both rerun at 8"
expect_out "| gpt2 | 8 x 1024 | shardlm |"
expect_out "| gpt2 | 8 x 1024 | torch | 250.00 |"
grep -q -- "--max-batch 32" "$TMP/log" || fail "--max-batch not passed on: $(cat "$TMP/log")"
grep -q -- "train.micro_batch=8 " "$TMP/log" || fail "shardlm not rerun at 8: $(cat "$TMP/log")"

expect_exit 1 bash "$STEP" --model llama1b --batch 16 --peak 500
expect_out "| llama1b | 16 | torch | FAILED rc=3: oom |"
grep -q -- "--peak 500" "$TMP/log" || fail "--peak not passed on"

expect_exit 2 bash "$STEP" --model gpt3
expect_out "unknown model gpt3"
FAKE_GPUS=0 expect_exit 77 bash "$STEP"
expect_out "skipped: shardlm sees no CUDA device"
echo ok
