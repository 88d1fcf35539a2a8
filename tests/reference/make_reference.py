#!/usr/bin/env python3
"""Writes the golden data that tests/unit/test_model_reference.c compares with.

For each configuration: <out>/<name>/hf/ (a Hugging Face folder: config.json +
model.safetensors, F32, GPT-2 in Conv1D layout) and <out>/<name>/golden.h5:
  input_ids, targets   (S, B, T) int32, targets -100 = ignored; batch 0 is the
                       one logits/loss/grads are taken on, batch s the one of
                       optimizer step s+1
  logits               (B, T, V) float64
  loss                 scalar float64 (mean over non-ignored targets)
  grads/<hf name>      float64, Hugging Face layout
  params_after/<hf name>  float64 after S AdamW steps (warmup, cosine, clipping)
  attributes: the optimizer settings, and clip_active (steps where clipping
  scaled the gradients)
The model runs in float64 (weights are float32 values) with the plain PyTorch
definitions of models.py; AdamW is written out in golden.py (torch.optim.AdamW semantics)
with torch's clip_grad_norm_ factor.

usage: make_reference.py OUT_DIR [NAME ...]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden  # noqa: E402
import hf_io  # noqa: E402
import models  # noqa: E402

STEPS = 3
OPT = dict(lr=2e-3, lr_min=2e-4, lr_warmup=2, total_steps=5, schedule="cosine", beta1=0.9,
           beta2=0.95, eps=1e-8, weight_decay=0.1, grad_clip=0.05)

CONFIGS = {
    # tiny gpt2, tied head, saved with the "transformer." prefix (save_pretrained)
    "gpt2_tied": dict(kind="gpt2", prefix="transformer.", L=2, C=48, H=4, V=128, P=32, T=16, B=2, tied=True),
    # gpt2 untied, no prefix (hub layout), head dim 12 and T 11
    "gpt2_untied": dict(kind="gpt2", prefix="", L=2, C=36, H=3, V=101, P=16, T=11, B=2, tied=False),
    # llama with GQA (n_head = 3 x n_kv_head), tied, "rope_theta" key
    "llama_gqa": dict(kind="llama", L=2, C=48, H=6, Hk=2, F=80, V=96, P=64, T=16, B=2, tied=True,
                      theta=10000.0, rope_key="rope_theta"),
    # llama untied, head dim 10 and T 13 (not powers of two), theta 500000 via rope_parameters
    "llama_untied": dict(kind="llama", L=2, C=40, H=4, Hk=4, F=72, V=90, P=32, T=13, B=3, tied=False,
                         theta=500000.0, rope_key="rope_parameters"),
}


def make_params(c, g):
    P = {}
    std = 0.02

    def n(*shape, s=std):
        return torch.randn(*shape, generator=g) * s

    C, L, V = c["C"], c["L"], c["V"]
    if c["kind"] == "gpt2":
        F = 4 * C
        P["wte.weight"] = n(V, C)
        P["wpe.weight"] = n(c["P"], C, s=0.01)
        for i in range(L):
            h = f"h.{i}."
            P[h + "ln_1.weight"] = 1 + n(C, s=0.1)
            P[h + "ln_1.bias"] = n(C)
            P[h + "attn.c_attn.weight"] = n(C, 3 * C)
            P[h + "attn.c_attn.bias"] = n(3 * C)
            P[h + "attn.c_proj.weight"] = n(C, C)
            P[h + "attn.c_proj.bias"] = n(C)
            P[h + "ln_2.weight"] = 1 + n(C, s=0.1)
            P[h + "ln_2.bias"] = n(C)
            P[h + "mlp.c_fc.weight"] = n(C, F)
            P[h + "mlp.c_fc.bias"] = n(F)
            P[h + "mlp.c_proj.weight"] = n(F, C)
            P[h + "mlp.c_proj.bias"] = n(C)
        P["ln_f.weight"] = 1 + n(C, s=0.1)
        P["ln_f.bias"] = n(C)
        P = {c["prefix"] + k: v for k, v in P.items()}
    else:
        D = C // c["H"]
        P["model.embed_tokens.weight"] = n(V, C)
        for i in range(L):
            h = f"model.layers.{i}."
            P[h + "input_layernorm.weight"] = 1 + n(C, s=0.1)
            P[h + "self_attn.q_proj.weight"] = n(c["H"] * D, C)
            P[h + "self_attn.k_proj.weight"] = n(c["Hk"] * D, C)
            P[h + "self_attn.v_proj.weight"] = n(c["Hk"] * D, C)
            P[h + "self_attn.o_proj.weight"] = n(C, c["H"] * D)
            P[h + "post_attention_layernorm.weight"] = 1 + n(C, s=0.1)
            P[h + "mlp.gate_proj.weight"] = n(c["F"], C)
            P[h + "mlp.up_proj.weight"] = n(c["F"], C)
            P[h + "mlp.down_proj.weight"] = n(C, c["F"])
        P["model.norm.weight"] = 1 + n(C, s=0.1)
    if not c["tied"]:
        P["lm_head.weight"] = n(V, C)
    return P


def hf_config(c):
    if c["kind"] == "gpt2":
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_layer": c["L"],
                "n_embd": c["C"], "n_head": c["H"], "n_inner": None, "vocab_size": c["V"],
                "n_positions": c["P"], "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
                "tie_word_embeddings": c["tied"]}
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": c["C"],
           "intermediate_size": c["F"], "num_hidden_layers": c["L"], "num_attention_heads": c["H"],
           "num_key_value_heads": c["Hk"], "vocab_size": c["V"], "max_position_embeddings": c["P"],
           "rms_norm_eps": 1e-5, "hidden_act": "silu", "tie_word_embeddings": c["tied"],
           "attention_bias": False, "mlp_bias": False}
    if c["rope_key"] == "rope_theta":
        cfg["rope_theta"] = c["theta"]
        cfg["rope_scaling"] = None
    else:
        cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": c["theta"]}
    return cfg


def batches(c, g):
    S, B, T, V = STEPS, c["B"], c["T"], c["V"]
    ids = torch.randint(0, V, (S, B, T + 1), generator=g)
    inp, tgt = ids[..., :-1].clone(), ids[..., 1:].clone()
    ignore = torch.rand(S, B, T, generator=g) < 0.25
    tgt[ignore] = -100
    tgt[:, 0, 0] = 5  # at least one valid target per batch
    return inp, tgt


def run(name, c, out):
    g = torch.Generator().manual_seed(1000 + sum(map(ord, name)))
    P32 = make_params(c, g)
    cfg = hf_config(c)
    folder = os.path.join(out, name)
    hf_io.write_folder(os.path.join(folder, "hf"), cfg, P32)
    inp, tgt = batches(c, g)
    P = {k: v.to(torch.float64).requires_grad_(True) for k, v in P32.items()}
    lg, loss = golden.loss_of(P, cfg, inp[0], tgt[0])
    loss.backward()
    grads0 = {k: v.grad.detach().clone() for k, v in P.items()}
    m = {k: torch.zeros_like(v) for k, v in P.items()}
    v2 = {k: torch.zeros_like(v) for k, v in P.items()}
    clip_active = []
    for s in range(1, STEPS + 1):
        if s > 1:
            for t in P.values():
                t.grad = None
            _, ls = golden.loss_of(P, cfg, inp[s - 1], tgt[s - 1])
            ls.backward()
        clip_active.append(golden.adamw_step(P, m, v2, s, OPT, models.decays) < 1.0)
    if not all(clip_active):
        raise SystemExit(f"{name}: clipping was not active at every step ({clip_active}); lower grad_clip")
    golden.write(os.path.join(folder, "golden.h5"), inp, tgt, lg, loss, grads0, P, OPT, STEPS, clip_active,
                 name=name)
    print(f"{name}: loss {loss.item():.6f}, {len(P)} tensors -> {folder}")


if __name__ == "__main__":
    golden.main(__doc__, CONFIGS, run)
