#!/usr/bin/env bash
# Issue 16: a run directory belongs to one run.
# - point 1: a fresh run into a train.run_dir that holds a run is refused
#   (exit 2, naming --resume auto, another run_dir and --overwrite) and the
#   old run loses nothing; --overwrite moves it aside whole (never deletes);
#   --resume auto continues it.
# - retention never deletes the checkpoint just written (which `latest`
#   names), even when older runs' steps sort higher; checkpoint.keep_best
#   keeps the lowest eval loss and names it in `best`.
# - metrics.jsonl: every line has a wall-clock "time", a resume writes a
#   "restart" marker; the step line has an ETA; TensorBoard tags are train/
#   and eval/; `shardlm plot` draws the run (PNG decoded: size, axes, lines).
# - errors are printed once under mpirun, without MPI_ABORT boilerplate.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ckpt_lib.sh"
mktmp
ckpt_data
R="$TMP/run"
snapshot() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }

# --- point 1: the second run into the same run_dir
train 2 "$R" --set train.steps=6 --set checkpoint.every=3 --set train.export_final=true
before=$(snapshot "$R")
lines=$(wc -l < "$R/metrics.jsonl")
expect_exit 2 $MPIRUN -np 2 "$SHARDLM" train --config "$TMP/run.json" --set train.run_dir="$R" --set train.steps=2
expect_out "train.run_dir $R already holds a run"
expect_out "--resume auto"
expect_out "--overwrite"
[ "$(grep -c 'error: shardlm train' <<< "$OUT")" -eq 1 ] || fail "the refusal was not printed exactly once: $OUT"
grep -q MPI_ABORT <<< "$OUT" && fail "the refusal aborted MPI: $OUT"
[ "$(snapshot "$R")" = "$before" ] || fail "the refused run changed $R"
[ "$(wc -l < "$R/metrics.jsonl")" -eq "$lines" ] || fail "metrics.jsonl grew"
echo "ok: a second fresh run into $R is refused and nothing changed"

# --overwrite: the old run is moved aside, whole
train 2 "$R" --set train.steps=2 --overwrite
expect_out "--overwrite: moved the previous run in $R to $R.old-"
old=$(ls -d "$R".old-* | head -1)
[ "$(snapshot "$old")" = "$before" ] || fail "the moved-aside run $old differs from the original"
[ "$(cat "$R/checkpoints/latest")" = "step_00000002" ] || fail "the new run's latest is $(cat "$R/checkpoints/latest")"
[ ! -d "$R/checkpoints/step_00000006" ] || fail "the new run holds the old run's checkpoints"
echo "ok: --overwrite moved the old run to $old intact"

# --resume auto continues it: a restart marker, then steps 3..4
train 2 "$R" --set train.steps=4 --resume auto
expect_out "eta "
"$PYTHON" - "$R/metrics.jsonl" <<'P' || fail "metrics.jsonl lacks times or the restart marker"
import json, sys
L = [json.loads(l) for l in open(sys.argv[1])]
assert all(isinstance(l.get("time"), float) and l["time"] > 1.6e9 for l in L), L
marks = [l for l in L if l.get("event") == "restart"]
assert len(marks) == 1 and marks[0]["step"] == 2 and "resumed" in marks[0]["detail"], marks
i = L.index(marks[0])
assert [l["step"] for l in L[:i] if "loss" in l] == [1, 2], L
assert [l["step"] for l in L[i:] if "loss" in l] == [3, 4], L
assert all("eta_s" in l for l in L if "loss" in l and l["step"] > 1 and l["step"] != 3) , L
print("ok: times on", len(L), "lines, restart marker at step 2")
P

# --- retention: the checkpoint just written survives keep, latest names it
K="$TMP/keep"
train 2 "$K" --set train.steps=12 --set checkpoint.every=3 --set checkpoint.keep=10
train 2 "$K" --set train.steps=4 --set checkpoint.keep=1 --resume "$K/checkpoints/step_00000003"
[ "$(cat "$K/checkpoints/latest")" = "step_00000004" ] || fail "latest is $(cat "$K/checkpoints/latest")"
[ -f "$K/checkpoints/step_00000004/meta.json" ] || fail "retention deleted the checkpoint just written (step 4): $(ls "$K/checkpoints")"
echo "ok: retention kept step_00000004 (latest) beside $(ls "$K/checkpoints" | tr '\n' ' ')"

# --- keep_best: the lowest eval loss is kept and named; TensorBoard groups; plot
B="$TMP/best"
train 2 "$B" --set train.steps=12 --set checkpoint.every=2 --set checkpoint.keep=1 --set checkpoint.keep_best=true \
  --set data.eval="$TMP/shards" --set train.eval_every=2 --set train.eval_batches=2 --set optim.lr=3 \
  --set optim.lr_warmup=12 --set optim.lr_min=0 --set optim.grad_clip=0
"$PYTHON" - "$B" <<'P' || fail "checkpoint.keep_best did not keep the best eval loss"
import json, os, sys
d = sys.argv[1]
ev = {}
for l in open(d + "/metrics.jsonl"):
    l = json.loads(l)
    if "eval_loss" in l and l["step"] > 0:
        ev[l["step"]] = l["eval_loss"]
best = min(ev, key=ev.get)
name = open(d + "/checkpoints/best").read().strip()
assert name == "step_%08d" % best, (name, ev)
kept = sorted(x for x in os.listdir(d + "/checkpoints") if x.startswith("step_"))
# a learning rate warming up to 3 diverges: the eval loss is lowest early, and that
# checkpoint survives checkpoint.keep = 1 beside the newest
assert best != 12 and kept == ["step_%08d" % best, "step_00000012"], (kept, ev)
m = json.load(open(d + "/checkpoints/%s/meta.json" % name))
assert abs(m["eval_loss"] - ev[best]) < 1e-6 * abs(ev[best]), (m["eval_loss"], ev[best])
print("ok: best", name, "eval loss", ev[best], "kept:", kept)
P
expect_exit 0 "$PYTHON" "$SRC/tests/tools/tfevents_check.py" "$B"
"$PYTHON" - "$B" "$SRC/tests/tools" <<'P' || fail "TensorBoard tags are not grouped as train/ and eval/"
import glob, sys
sys.path.insert(0, sys.argv[2])
from tfevents_check import read_events
tags = set()
for f in glob.glob(sys.argv[1] + "/tb/events.out.tfevents.*"):
    for e in read_events(f):
        tags |= set(e["scalars"])
assert {"train/loss", "train/lr", "train/gnorm", "eval/eval_loss"} <= tags, sorted(tags)
assert not [t for t in tags if "/" not in t], sorted(tags)
print("ok: tags", sorted(tags))
P
expect_exit 0 "$SHARDLM" plot "$B" --out "$TMP/loss.png"
expect_out "wrote $TMP/loss.png (1000x700)"
expect_out "12 train points"
expect_exit 0 "$SHARDLM" plot "$R"
expect_out "1 restart(s)"
[ -f "$R/loss.png" ] || fail "plot wrote no $R/loss.png"
expect_exit 0 "$PYTHON" "$SRC/tests/tools/png_check.py" "$TMP/loss.png" 1000 700
echo "$OUT"
expect_exit 2 "$SHARDLM" plot "$TMP/nothing"
expect_out "metrics.jsonl does not exist"
echo ok
