#!/usr/bin/env python3
"""The peer of `shardlm bench`: the same model, batch and optimizer step in
PyTorch on the CPU (fp32), from the same weights (a Hugging Face folder that
`shardlm bench --save-init` wrote) and the same synthetic tokens
(splitmix64 of the global row, as train_synthetic_tokens in train/train.h
defines them: row index*B + b of micro-step index = step*grad_accum + a).

A step: zero grads, forward, mean cross-entropy, backward,
clip_grad_norm_, torch.optim.AdamW (decay on linear weights and an untied
head only; foreach implementation as torch defaults). The model is
tests/reference/models.py (plain PyTorch modules' math, explicit causal
attention: torch 1.13 has no fused scaled_dot_product_attention).

usage: torch_step.py --hf DIR --batch B --seq T --steps N --warmup W
                     --threads K --seed S [--lr ... see --help]
Prints "loss0 X", "median_step_s X", "tokens_per_s X".
"""
import argparse
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "reference"))
import hf_io  # noqa: E402
import models  # noqa: E402

M64 = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def tokens(seed, index, B, T, V):
    base = (seed * 0x9E3779B97F4A7C15) & M64
    rows = []
    for b in range(B):
        row = (index * B + b) * (T + 1)
        rows.append([splitmix64((base + row + t) & M64) % V for t in range(T + 1)])
    ids = torch.tensor(rows, dtype=torch.int64)
    return ids[:, :-1].contiguous(), ids[:, 1:].contiguous()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.95)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(os.path.join(a.hf, "config.json")))
    P = {k: v.requires_grad_(True) for k, v in hf_io.read_safetensors(os.path.join(a.hf, "model.safetensors")).items()}
    V = cfg["vocab_size"]
    decay = [p for k, p in P.items() if models.decays(k)]
    no_decay = [p for k, p in P.items() if not models.decays(k)]
    # constant LR: the peer compares step time, and the step-0 loss is before any update
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps)
    params = list(P.values())

    def step(i):
        inp, tgt = tokens(a.seed, i, a.batch, a.seq, V)
        opt.zero_grad(set_to_none=False)
        lg = models.logits(P, cfg, inp)
        loss = torch.nn.functional.cross_entropy(lg.reshape(-1, V), tgt.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, a.grad_clip)
        opt.step()
        return loss.item()

    loss0 = step(0)
    for i in range(a.warmup):
        step(1 + i)
    times = []
    for i in range(a.steps):
        t0 = time.perf_counter()
        step(1 + a.warmup + i)
        times.append(time.perf_counter() - t0)
    times.sort()
    n = len(times)
    med = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"loss0 {loss0:.6f}")
    print(f"median_step_s {med:.4f}")
    print(f"min_step_s {times[0]:.4f}")
    print(f"tokens_per_s {a.batch * a.seq / med:.1f}")


if __name__ == "__main__":
    main()
