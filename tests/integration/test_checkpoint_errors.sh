#!/usr/bin/env bash
# Bad checkpoints are refused with errors that say what is wrong and where:
# a missing or truncated rank file, a flipped byte in a dataset (Fletcher32),
# a wrong stored XXH3 (the second line of defense), another model (the key
# that differs), another tokenizer; and shardlm inspect describes and
# verifies checkpoint folders and rank files.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ckpt_lib.sh"
mktmp
ckpt_data
train 2 "$TMP/base" --set train.steps=3
GOOD="$TMP/base/checkpoints/step_00000003"

expect_exit 0 "$SHARDLM" inspect "$GOOD"
expect_out "step            3 (0 skipped"
expect_out "world           2 = shard 2 x replicate 1 (full_shard)"
expect_out "rank_00001.h5   model: 4 units"
expect_out "verified"
expect_exit 0 "$SHARDLM" inspect "$GOOD/rank_00001.h5"
expect_out "rank            1 of 2 (shard 1 of 2"
expect_exit 0 "$SHARDLM" inspect "$TMP/base/checkpoints"
expect_out "1 complete checkpoint: step_00000003"

# bad COPY_NAME: a copy of the good checkpoint to damage
bad() { rm -rf "$TMP/$1"; cp -r "$GOOD" "$TMP/$1"; B="$TMP/$1"; }
resume() { # resume EXIT PATH [ARGS...]: resume from PATH in one process (MPI singleton)
  local want=$1 path=$2; shift 2
  expect_exit "$want" "$SHARDLM" train --config "$TMP/run.json" --set train.run_dir="$TMP/r" \
    --set train.micro_batch=4 --resume "$path" "$@"
}
resume 0 "$GOOD" --set train.steps=4
expect_out "resharded checkpoint from world 2"

# a refused resume exits 2 (README; issue 16 points 7 and 10: it was 1)
bad missing; rm "$B/rank_00001.h5"
resume 2 "$B"
expect_out "checkpoint $B is incomplete: rank file $B/rank_00001.h5 is missing"

bad truncated; size=$(stat -c %s "$B/rank_00001.h5"); truncate -s $((size / 2)) "$B/rank_00001.h5"
resume 2 "$B"
expect_out "checkpoint rank file $B/rank_00001.h5 is $((size / 2)) bytes, meta.json records $size: the file is truncated"

bad flipped
"$PYTHON" - "$B/rank_00000.h5" <<'P' || fail "could not flip a byte"
import h5py, sys
with h5py.File(sys.argv[1], "r") as f:
    off = f["model/00001/param"].id.get_chunk_info(0).byte_offset
with open(sys.argv[1], "r+b") as f:
    f.seek(off + 100); b = f.read(1); f.seek(off + 100); f.write(bytes([b[0] ^ 0x10]))
P
resume 2 "$B"
expect_out "dataset /model/00001/param cannot be read: a chunk fails its Fletcher32 checksum"
expect_exit 1 "$SHARDLM" inspect "$B"
expect_out "Fletcher32"

bad hash
"$PYTHON" - "$B" <<'P' || fail "could not change the stored hash"
import h5py, json, os, sys
import numpy as np
d = sys.argv[1]
with h5py.File(d + "/rank_00001.h5", "r+") as f:
    a = f["model/00002/m"].attrs
    a.modify("xxh3", np.uint64(int(a["xxh3"]) ^ 1))
m = json.load(open(d + "/meta.json"))
m["files"][1]["bytes"] = os.path.getsize(d + "/rank_00001.h5")
json.dump(m, open(d + "/meta.json", "w"))
P
resume 2 "$B"
expect_out "dataset /model/00002/m has XXH3"
expect_out "the stored hash is"

resume 2 "$GOOD" --set model.n_layer=3
expect_out "checkpoint $GOOD was made for another model: model.n_layer: checkpoint 2, now 3"

bad tok
"$PYTHON" -c 'import json,sys; p=sys.argv[1]+"/meta.json"; m=json.load(open(p)); m["tokenizer_hash"]="0123456789abcdef"; json.dump(m,open(p,"w"))' "$B"
resume 2 "$B"
expect_out "was trained on data tokenized with tokenizer hash 0123456789abcdef, but data.train ($TMP/shards) has tokenizer hash"

bad nometa; rm "$B/meta.json"
resume 2 "$B"
expect_out "not a complete checkpoint (no meta.json)"
echo ok
