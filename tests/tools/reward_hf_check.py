#!/usr/bin/env python3
"""Checks a reward model folder shardlm exported against the Hugging Face
folder tests/reference/make_reward_reference.py wrote (the names and layout
transformers' *ForSequenceClassification state dicts have):

  reward_hf_check.py [--layout-only] EXPORTED REFERENCE

- the same tensor names (GPT-2: "transformer.*" + "score.weight"; llama-like:
  "model.*" + "score.weight"), shapes and F32 values (bit-equal; with
  --layout-only, a trained model's export, names, shapes and dtypes only);
- config.json: architectures [<Arch>ForSequenceClassification], the single
  label as PretrainedConfig.to_dict writes num_labels = 1 (id2label
  {"0": "LABEL_0"}, label2id {"LABEL_0": 0}), pad_token_id, model_type and
  every size key of the reference equal.
Reads safetensors from the format description (u64 little-endian header
length, JSON header, data). Exit code 1 on any difference.
"""
import json
import os
import struct
import sys


def tensors(folder):
    raw = open(os.path.join(folder, "model.safetensors"), "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        out[name] = (info["dtype"], info["shape"], data[b:e])
    return out


def main():
    args = sys.argv[1:]
    layout_only = args[0] == "--layout-only"
    exp, ref = args[1:3] if layout_only else args[0:2]
    bad = []
    te, tr = tensors(exp), tensors(ref)
    if sorted(te) != sorted(tr):
        bad.append(f"names differ: only exported {sorted(set(te) - set(tr))}, only reference "
                   f"{sorted(set(tr) - set(te))}")
    for k in sorted(set(te) & set(tr)):
        if te[k][:2] != tr[k][:2]:
            bad.append(f"{k}: exported {te[k][:2]}, reference {tr[k][:2]}")
        elif not layout_only and te[k][2] != tr[k][2]:
            bad.append(f"{k}: values differ")
    if "score.weight" not in te:
        bad.append("no top-level score.weight")
    ce = json.load(open(os.path.join(exp, "config.json")))
    cr = json.load(open(os.path.join(ref, "config.json")))
    want = {"architectures": cr["architectures"], "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0},
            "pad_token_id": cr["pad_token_id"]}
    for k in ("model_type", "n_layer", "n_embd", "n_head", "vocab_size", "n_positions", "hidden_size",
              "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
              "max_position_embeddings"):
        if k in cr:
            want[k] = cr[k]
    for k, v in want.items():
        if ce.get(k) != v:
            bad.append(f"config.json {k}: exported {ce.get(k)!r}, expected {v!r}")
    if not ce["architectures"][0].endswith("ForSequenceClassification"):
        bad.append(f"architectures {ce['architectures']}")
    for b in bad:
        print("reward_hf_check:", b)
    if bad:
        sys.exit(1)
    print(f"reward_hf_check: {len(te)} tensors and config.json agree ({ce['architectures'][0]})")


if __name__ == "__main__":
    main()
