#!/usr/bin/env bash
# shardlm import / export on Hugging Face folders written by the PyTorch
# reference script (GPT-2 Conv1D layout with the "transformer." prefix, and
# Llama with rope_parameters, Llama-3 rope scaling, Qwen2 biases, Qwen3 q/k
# norms with an explicit head_dim, Mistral's sliding window): import ->
# export must give the same files
# byte for byte (the reference writer and shardlm's both sort tensors by
# name and pad the header the same way), and bad input must fail with a
# message naming the problem.
source "$(dirname "$0")/lib.sh"
mktmp
NAMES="gpt2_tied llama_untied llama3_rope qwen2_tied qwen3_gqa mistral"
"$PYTHON" "$SRC/tests/reference/make_reference.py" "$TMP/ref" $NAMES >/dev/null \
  || fail "make_reference.py failed"
for n in $NAMES; do
  expect_exit 0 "$SHARDLM" import "$TMP/ref/$n/hf" "$TMP/$n.shardlm"
  [ -f "$TMP/$n.shardlm/shardlm.json" ] || fail "$n: import wrote no shardlm.json"
  expect_exit 0 "$SHARDLM" config check --config "$TMP/$n.shardlm/shardlm.json"
  expect_exit 0 "$SHARDLM" export "$TMP/$n.shardlm" "$TMP/$n.hf"
  cmp "$TMP/ref/$n/hf/model.safetensors" "$TMP/$n.hf/model.safetensors" \
    || fail "$n: exported model.safetensors differs from the imported one"
  cmp "$TMP/ref/$n/hf/config.json" "$TMP/$n.hf/config.json" || fail "$n: config.json differs"
done
# a tensor the config does not have
sed 's/"n_layer": 2/"n_layer": 1/' "$TMP/ref/gpt2_tied/hf/config.json" > "$TMP/c.json"
mkdir -p "$TMP/bad" && cp "$TMP/ref/gpt2_tied/hf/model.safetensors" "$TMP/bad/" && cp "$TMP/c.json" "$TMP/bad/config.json"
expect_exit 1 "$SHARDLM" import "$TMP/bad" "$TMP/bad.out"
expect_out "transformer.h.1."
expect_out "is not a parameter of this gpt2 model"
# unsupported rope scaling, and llama3 scaling without its keys
sed 's/"rope_type": "default"/"rope_type": "yarn"/' "$TMP/ref/llama_untied/hf/config.json" > "$TMP/bad/config.json"
cp "$TMP/ref/llama_untied/hf/model.safetensors" "$TMP/bad/"
expect_exit 1 "$SHARDLM" import "$TMP/bad" "$TMP/bad.out"
expect_out "rope_parameters with rope_type yarn is not supported"
sed 's/"rope_type": "default"/"rope_type": "llama3"/' "$TMP/ref/llama_untied/hf/config.json" > "$TMP/bad/config.json"
expect_exit 1 "$SHARDLM" import "$TMP/bad" "$TMP/bad.out"
expect_out "rope_parameters.factor must be a number (missing)"
expect_exit 2 "$SHARDLM" import "$TMP/only-one"
expect_exit 0 "$SHARDLM" bench --config "$SRC/configs/tiny-gpt2.json" --steps 2 --warmup 0 --threads 1
expect_out "tokens_per_s"
echo ok
