#!/usr/bin/env bash
# `make bench`: every benchmark that compares against a peer, on the release build.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build}
bash "$SRC/benchmarks/run_cpu_step.sh" "$BUILD"
bash "$SRC/benchmarks/fsdp_scaling.sh" "$BUILD"
bash "$SRC/benchmarks/tokenizer_bench.sh" "$BUILD"
bash "$SRC/benchmarks/data_bench.sh" "$BUILD"
