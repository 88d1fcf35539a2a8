#!/usr/bin/env python3
"""Applies a PEFT LoRA adapter folder to a Hugging Face base folder the way
PEFT merges it, and writes the logits: for every lora_A/lora_B pair of
adapter_model.safetensors (read with hf_io's own safetensors reader), the
base weight of module <path> becomes W + s B A, or W + s (B A)^T when
adapter_config.json says fan_in_fan_out (GPT-2 Conv1D), s = lora_alpha / r
(lora_alpha / sqrt(r) with use_rslora). The model is models.py in float64.

usage: peft_apply.py BASE_HF_DIR ADAPTER_DIR IDS_H5 OUT_H5
  IDS_H5 holds input_ids (S, B, T); the logits of input_ids[0] go to
  OUT_H5/logits (B, T, V) float64.
"""
import json
import math
import os
import sys

import h5py
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_io  # noqa: E402
import models  # noqa: E402


def main():
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    base, adapter, ids_path, out = sys.argv[1:]
    cfg = json.load(open(os.path.join(base, "config.json")))
    acfg = json.load(open(os.path.join(adapter, "adapter_config.json")))
    assert acfg["peft_type"] == "LORA", acfg["peft_type"]
    r = acfg["r"]
    s = acfg["lora_alpha"] / math.sqrt(r) if acfg.get("use_rslora") else acfg["lora_alpha"] / r
    P = {k: v.to(torch.float64) for k, v in hf_io.read_safetensors(os.path.join(base, "model.safetensors")).items()}
    prefix = "transformer." if any(k.startswith("transformer.") for k in P) else ""
    ad = hf_io.read_safetensors(os.path.join(adapter, "adapter_model.safetensors"))
    pre = "base_model.model."
    n = 0
    for key in sorted(ad):
        if not key.endswith(".lora_A.weight"):
            continue
        path = key[len(pre):-len(".lora_A.weight")]
        A = ad[key].to(torch.float64)
        B = ad[f"{pre}{path}.lora_B.weight"].to(torch.float64)
        assert A.shape[0] == r and B.shape[1] == r, (key, A.shape, B.shape)
        wkey = path + ".weight"
        if cfg["model_type"] == "gpt2":
            wkey = prefix + wkey[len("transformer."):]
        d = s * (B @ A)
        P[wkey] = P[wkey] + (d.t() if acfg["fan_in_fan_out"] else d)
        n += 1
    if n == 0:
        raise SystemExit(f"{adapter}: no lora_A tensors")
    with h5py.File(ids_path, "r") as f:
        ids = torch.from_numpy(f["input_ids"][0]).long()
    with torch.no_grad():
        lg = models.logits(P, cfg, ids)
    with h5py.File(out, "w") as f:
        f["logits"] = lg.numpy()
    print(f"applied {n} adapters (scale {s}) -> {out}")


if __name__ == "__main__":
    main()
