#!/usr/bin/env python3
"""Writes the golden data that tests/unit/test_lora_reference.c compares with.

For each configuration: <out>/<name>/hf/ (the base model, a Hugging Face
folder), <out>/<name>/adapter/ (a PEFT adapter folder: adapter_config.json +
adapter_model.safetensors, A and B both non-zero so that every gradient is)
and <out>/<name>/golden.h5:
  input_ids, targets        (S, B, T) int32, -100 = ignored
  logits                    (B, T, V) float64 of base + adapter on batch 0
  loss                      scalar float64
  grads/<peft tensor name>  float64 gradients of lora_A (r, in) / lora_B (out, r)
  params_after/<peft name>  float64 after S AdamW steps on the adapters only
                            (the base frozen; clipping over the adapters' norm)
  attributes: optimizer settings, scale, clip_active, dropout (lora_dropout p),
  dropout_seed (the train seed of the masks), eval_loss (batch 0's loss
  without dropout: what eval and forward_logits give).
The model is models.py in float64 with PEFT's LoRA formula: every adapted
weight W (out, in) acts as W + s B A, and for GPT-2's Conv1D weights, stored
(in, out), as W + s (B A)^T (fan_in_fan_out); s = alpha / r, or alpha / sqrt(r)
with use_rslora. Gradients of A and B come from autograd through that.

With lora_dropout p > 0 (configuration "llama_dropout") the training passes
(loss, grads, every AdamW step) instead add s (dropout(x) A^T) B^T to each
adapted linear's output, x its input, with the exact mask shardlm draws
(philox.py: step s of the optimizer, sample b of the batch at global index b,
seed dropout_seed); logits and eval_loss stay without dropout.

usage: make_lora_reference.py OUT_DIR [NAME ...]
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden  # noqa: E402
import hf_io  # noqa: E402
import make_reference as mr  # noqa: E402
import models  # noqa: E402
import philox  # noqa: E402

STEPS = 3
OPT = dict(lr=5e-3, lr_min=5e-4, lr_warmup=1, total_steps=4, schedule="cosine", beta1=0.9,
           beta2=0.95, eps=1e-8, weight_decay=0.1, grad_clip=0.05)

CONFIGS = {
    # gpt2, tied head, "transformer." prefix; c_proj matches attn.c_proj and mlp.c_proj
    "gpt2": dict(base=dict(mr.CONFIGS["gpt2_tied"]), r=4, alpha=8.0, rslora=False,
                 targets=["c_attn", "c_proj", "c_fc"]),
    # llama GQA, untied, every linear, rank-stabilized scaling
    "llama": dict(base=dict(mr.CONFIGS["llama_gqa"], tied=False), r=3, alpha=5.0, rslora=True,
                  targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    # llama with adapter dropout on every linear (inputs of width C, C and F)
    "llama_dropout": dict(base=dict(mr.CONFIGS["llama_untied"]), r=4, alpha=8.0, rslora=False,
                          targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                          dropout=0.1, seed=1234),
}

# lora_module values (model/lora.h) of the modules inside a block
MODULE_ID = {"attn.c_attn": 0, "self_attn.q_proj": 1, "self_attn.k_proj": 2, "self_attn.v_proj": 3,
             "self_attn.o_proj": 4, "attn.c_proj": 4, "mlp.gate_proj": 5, "mlp.c_fc": 5,
             "mlp.up_proj": 6, "mlp.down_proj": 7, "mlp.c_proj": 7}

GPT2_MODULES = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
LLAMA_MODULES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def matches(path, targets):
    return any(path == t or path.endswith("." + t) for t in targets)


def adapted_modules(kind, L, targets):
    """PEFT module paths (as in the PEFT-wrapped model) and base weight keys."""
    out = []
    for i in range(L):
        for mod in (GPT2_MODULES if kind == "gpt2" else LLAMA_MODULES):
            if not matches(mod, targets):
                continue
            if kind == "gpt2":
                out.append((f"transformer.h.{i}.{mod}", f"h.{i}.{mod}.weight"))
            else:
                out.append((f"model.layers.{i}.{mod}", f"model.layers.{i}.{mod}.weight"))
    return out


def scale_of(c):
    return c["alpha"] / math.sqrt(c["r"]) if c["rslora"] else c["alpha"] / c["r"]


def effective(P, mods, A, B, s, conv1d):
    """Base params (HF names, prefix stripped) with W + s B A (Conv1D: + s (B A)^T)."""
    Q = dict(P)
    for path, wkey in mods:
        d = s * (B[path] @ A[path])
        Q[wkey] = Q[wkey] + (d.t() if conv1d else d)
    return Q


def dropout_adapt(kind, c, A, B, s, step):
    """models.py adapt: s (dropout(x) A^T) B^T with shardlm's masks of
    optimizer step `step`; row b of the batch is global sample b."""
    p = c["dropout"]
    sc = philox.dropout_scale(p)

    def f(i, mod, x):
        path = f"transformer.h.{i}.{mod}" if kind == "gpt2" else f"model.layers.{i}.{mod}"
        if path not in A:
            return None
        bsz, t, n_in = x.shape
        keep = philox.lora_mask(c["seed"], step, i, MODULE_ID[mod], 0, bsz, t, n_in, p)
        xd = x * torch.from_numpy(keep).to(x.dtype) * sc
        return s * ((xd @ A[path].t()) @ B[path].t())
    return f


def adapter_config(c, conv1d):
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": c["r"], "lora_alpha": c["alpha"],
            "lora_dropout": c.get("dropout", 0.0), "target_modules": c["targets"], "use_rslora": c["rslora"],
            "bias": "none", "fan_in_fan_out": conv1d, "base_model_name_or_path": None,
            "init_lora_weights": True, "use_dora": False, "rank_pattern": {}, "alpha_pattern": {}}


def peft_names(A, B):
    """{PEFT tensor name: tensor} of the per-module A and B dicts (keyed by
    module path), each module's lora_A then lora_B, in A's order."""
    out = {}
    for path in A:
        out[f"base_model.model.{path}.lora_A.weight"] = A[path]
        out[f"base_model.model.{path}.lora_B.weight"] = B[path]
    return out


def write_adapter(folder, A32, B32, c, conv1d):
    """A PEFT adapter folder: adapter_config.json (adapter_config(c, conv1d))
    and adapter_model.safetensors (the float32 A32/B32 under PEFT names)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(adapter_config(c, conv1d), f, indent=2)
    hf_io.write_safetensors(os.path.join(folder, "adapter_model.safetensors"), peft_names(A32, B32))


def run(name, c, out):
    b = c["base"]
    g = torch.Generator().manual_seed(2000 + sum(map(ord, name)))
    P32 = mr.make_params(b, g)
    cfg = mr.hf_config(b)
    folder = os.path.join(out, name)
    hf_io.write_folder(os.path.join(folder, "hf"), cfg, P32)
    conv1d = b["kind"] == "gpt2"
    mods = adapted_modules(b["kind"], b["L"], c["targets"])
    P = {k: v.to(torch.float64) for k, v in models.strip(P32).items()}
    r = c["r"]
    A32, B32 = {}, {}
    for path, wkey in mods:
        w = P[wkey]
        out_f, in_f = (w.shape[1], w.shape[0]) if conv1d else (w.shape[0], w.shape[1])
        bound = 1.0 / math.sqrt(in_f)
        A32[path] = (torch.rand(r, in_f, generator=g) * 2 - 1) * bound
        B32[path] = torch.randn(out_f, r, generator=g) * 0.05
    write_adapter(os.path.join(folder, "adapter"), A32, B32, c, conv1d)

    s = scale_of(c)
    A = {k: v.to(torch.float64).requires_grad_(True) for k, v in A32.items()}
    B = {k: v.to(torch.float64).requires_grad_(True) for k, v in B32.items()}
    inp, tgt = mr.batches(b, g)
    drop = c.get("dropout", 0.0) > 0

    def train_loss(step):
        if not drop:
            return golden.loss_of(effective(P, mods, A, B, s, conv1d), cfg, inp[step - 1], tgt[step - 1])
        return golden.loss_of(P, cfg, inp[step - 1], tgt[step - 1], dropout_adapt(b["kind"], c, A, B, s, step))

    with torch.no_grad():
        lg, eval_loss = golden.loss_of(effective(P, mods, A, B, s, conv1d), cfg, inp[0], tgt[0])
    _, loss = train_loss(1)
    if drop and abs(loss.item() - eval_loss.item()) < 1e-6:
        raise SystemExit(f"{name}: dropout left the loss unchanged")
    loss.backward()
    grads0 = peft_names({k: t.grad.detach().clone() for k, t in A.items()},
                        {k: t.grad.detach().clone() for k, t in B.items()})
    train = peft_names(A, B)
    m = {k: torch.zeros_like(v) for k, v in train.items()}
    v2 = {k: torch.zeros_like(v) for k, v in train.items()}
    clip_active = []
    for st in range(1, STEPS + 1):
        if st > 1:
            for t in train.values():
                t.grad = None
            _, ls = train_loss(st)
            ls.backward()
        # PEFT's adapters all decay (torch.optim.AdamW over the trainable tensors)
        clip_active.append(golden.adamw_step(train, m, v2, st, OPT, lambda k: True) < 1.0)
    if not any(clip_active):
        raise SystemExit(f"{name}: clipping never active ({clip_active}); lower grad_clip")
    golden.write(os.path.join(folder, "golden.h5"), inp, tgt, lg, loss, grads0, train, OPT, STEPS, clip_active,
                 scale=s, dropout=c.get("dropout", 0.0), dropout_seed=c.get("seed", 0),
                 eval_loss=eval_loss.item())
    print(f"{name}: loss {loss.item():.6f}, {len(train)} adapter tensors -> {folder}")


if __name__ == "__main__":
    golden.main(__doc__, CONFIGS, run)
