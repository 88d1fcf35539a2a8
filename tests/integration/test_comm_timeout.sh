#!/usr/bin/env bash
# A rank that stops responding: under mpirun -np 3, rank 1 sleeps 60 s before
# collective #3 while the comm timeout is 3 s. Every rank must end, non-zero,
# within timeout + 10 s; the report names the collective, its sequence number
# and the missing rank; no process of the job is left behind.
source "$(dirname "$0")/lib.sh"
BIN="$BUILD/tests/test_comm"
[ -x "$BIN" ] || fail "$BIN not built"
TAG="comm_timeout_$$_$RANDOM" # marks this job's processes for pgrep
TIMEOUT=3
start=$(date +%s.%N)
OUT=$(timeout 60 $MPIRUN -np 3 "$BIN" --hang 1:60 --timeout $TIMEOUT --tag "$TAG" 2>&1)
rc=$?
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
[ "$rc" -ne 0 ] || fail "the job exited 0; output:
$OUT"
[ "$rc" -ne 124 ] || [ "$(echo "$elapsed < 59" | bc)" -eq 1 ] || fail "the job hung until the test's own 60 s limit"
[ "$(echo "$elapsed < $TIMEOUT + 10" | bc)" -eq 1 ] || fail "took $elapsed s, limit $TIMEOUT + 10 s; output:
$OUT"
expect_out "collective all_gather #3 on world (24 bytes, group of 3 ranks) did not complete in 3.0 s"
expect_out "ranks that did not arrive (world ranks): r1 (finished #2, has not submitted #3)"
expect_out "Aborting the job (exit code 124)"
[ "$rc" -eq 124 ] || fail "mpirun exited $rc, expected 124 (SL_EXIT_TIMEOUT through MPI_Abort); output:
$OUT"
grep -q "hang test: woke up" <<< "$OUT" && fail "the sleeping rank outlived the abort: $OUT"
grep -q "collective #3 returned" <<< "$OUT" && fail "a rank returned from the stalled collective: $OUT"
expect_no_live_process "$TAG"
echo "ok ($elapsed s, exit $rc)"
