#!/usr/bin/env python3
"""The PyTorch peer of a shardlm GPU training step: GPT-2 124M at seq 1024 and
a Llama-3.2-1B-shaped model at seq 2048, one GPU, bf16 autocast, fused AdamW,
SDPA flash attention, torch.compile. Random init and random tokens (the
loss at step 0 is printed as a sanity check: ~ln(vocab)).

MFU (DESIGN section 10): FLOPs per
token = 6 N (N = non-embedding parameters + the LM head) + 6 L T C for the
causal attention (12 L T C halved for the causal mask), over the device's
dense bf16 peak (989 TFLOP/s for H100/H200 SXM; --peak to change).

Timing: torch.cuda.synchronize() before and after each step, host clock
(as `shardlm bench --backend cuda` does with backend_synchronize). Peak
memory: torch.cuda.max_memory_allocated (the allocator's peak, like
shardlm's memory accountant) and the device memory in use at the end
(torch.cuda.mem_get_info: total - free, context and cache included).
Besides the human-readable line, each model prints one machine-readable line
  result model=gpt2 B=8 T=1024 step_ms=... tok_s=... mfu_pct=... \
         peak_alloc_gib=... device_used_gib=... loss0=... ln_v=...
(or `result model=... B=... status=oom|bad_loss0`) for benchmarks/gpu_step.sh.

Usage (GPU machine): python3 benchmarks/peers/torch_gpu_bench.py [--model gpt2|llama1b|all]
    [--batch B] [--steps N] [--warmup W] [--peak TFLOPS] [--no-compile]
"""
import argparse
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    # name: arch, layers, d_model, heads, kv heads, d_ff, vocab, seq, micro batch
    "gpt2": dict(arch="gpt2", L=12, C=768, H=12, Hkv=12, F=3072, V=50257, T=1024, B=8),
    "llama1b": dict(arch="llama", L=16, C=2048, H=32, Hkv=8, F=8192, V=128256, T=2048, B=4),
}


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        C, H, Hkv, Fd = c["C"], c["H"], c["Hkv"], c["F"]
        self.hd = C // H
        llama = c["arch"] == "llama"
        Norm = (lambda n: nn.RMSNorm(n, eps=1e-5)) if llama else (lambda n: nn.LayerNorm(n, eps=1e-5))
        self.n1, self.n2 = Norm(C), Norm(C)
        self.qkv = nn.Linear(C, (H + 2 * Hkv) * self.hd, bias=not llama)
        self.proj = nn.Linear(C, C, bias=not llama)
        if llama:
            self.gate_up = nn.Linear(C, 2 * Fd, bias=False)
            self.down = nn.Linear(Fd, C, bias=False)
        else:
            self.fc = nn.Linear(C, Fd)
            self.down = nn.Linear(Fd, C)
        self.llama = llama

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        H, Hkv, hd = self.c["H"], self.c["Hkv"], self.hd
        qkv = self.qkv(self.n1(x))
        q, k, v = qkv.split([H * hd, Hkv * hd, Hkv * hd], dim=-1)
        q = q.view(B, T, H, hd).transpose(1, 2)
        k = k.view(B, T, Hkv, hd).transpose(1, 2)
        v = v.view(B, T, Hkv, hd).transpose(1, 2)
        if self.llama:
            def rot(u):
                u1, u2 = u[..., : hd // 2], u[..., hd // 2:]
                return u * cos + torch.cat((-u2, u1), dim=-1) * sin
            q, k = rot(q), rot(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=Hkv != H)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        h = self.n2(x)
        if self.llama:
            g, u = self.gate_up(h).chunk(2, dim=-1)
            h = F.silu(g) * u
        else:
            h = F.gelu(self.fc(h), approximate="tanh")
        return x + self.down(h)


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.wte = nn.Embedding(c["V"], c["C"])
        self.wpe = nn.Embedding(c["T"], c["C"]) if c["arch"] == "gpt2" else None
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["L"]))
        self.nf = nn.RMSNorm(c["C"], eps=1e-5) if c["arch"] == "llama" else nn.LayerNorm(c["C"])
        self.head = nn.Linear(c["C"], c["V"], bias=False)
        self.head.weight = self.wte.weight  # tied (GPT-2, Llama-3.2-1B)
        hd = c["C"] // c["H"]
        inv = 1.0 / (500000.0 ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.outer(torch.arange(c["T"]).float(), inv)
        emb = torch.cat((ang, ang), dim=-1)
        self.register_buffer("cos", emb.cos()[None, None], persistent=False)
        self.register_buffer("sin", emb.sin()[None, None], persistent=False)
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, tgt):
        B, T = idx.shape
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))
        for blk in self.blocks:
            x = blk(x, self.cos[:, :, :T], self.sin[:, :, :T])
        logits = self.head(self.nf(x))
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), tgt.view(-1))


def flops_per_token(m, c):
    n_params = sum(p.numel() for p in m.parameters())
    n_emb = m.wte.weight.numel() + (m.wpe.weight.numel() if m.wpe is not None else 0)
    n = n_params - n_emb + m.head.weight.numel()  # the head's matmul counts (tied weights)
    return 6 * n + 6 * c["L"] * c["T"] * c["C"], n_params


def run(name, args):
    c = dict(CONFIGS[name])
    if args.batch:
        c["B"] = args.batch
    try:
        return run_model(name, c, args)
    except torch.cuda.OutOfMemoryError as e:
        print(f"# {name}: out of memory at B {c['B']}: {str(e).splitlines()[0]}")
        print(f"result model={name} B={c['B']} T={c['T']} status=oom")
        return 3
    finally:
        torch.cuda.empty_cache()


def run_model(name, c, args):
    dev = torch.device("cuda")
    torch.manual_seed(0)
    m = Model(c).to(dev)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    step_fn = torch.compile(m) if not args.no_compile else m
    B, T, V = c["B"], c["T"], c["V"]
    g = torch.Generator(device=dev).manual_seed(1)
    idx = torch.randint(0, V, (B, T), device=dev, generator=g)
    tgt = torch.randint(0, V, (B, T), device=dev, generator=g)
    times = []
    torch.cuda.reset_peak_memory_stats()
    for s in range(1 + args.warmup + args.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_fn(idx, tgt)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if s == 0:
            l0 = loss.item()
            ok = abs(l0 - math.log(V)) < 1.0
            print(f"# {name}: step-0 loss {l0:.4f} (ln V = {math.log(V):.4f}) {'ok' if ok else 'SUSPICIOUS'}")
            if not ok:
                print(f"result model={name} B={c['B']} T={c['T']} status=bad_loss0 loss0={l0:.6f}")
                return 1
        elif s > args.warmup:
            times.append(dt)
    med = statistics.median(times)
    tok_s = B * T / med
    fpt, n_params = flops_per_token(m, c)
    mfu = tok_s * fpt / (args.peak * 1e12)
    peak_alloc = torch.cuda.max_memory_allocated() / 2**30
    free_b, total_b = torch.cuda.mem_get_info()
    used = (total_b - free_b) / 2**30
    print(f"{name:<8} params {n_params/1e6:7.1f}M B {B:<3} T {T:<5} step {med*1e3:8.1f} ms  "
          f"{tok_s:10.0f} tok/s  MFU {100*mfu:5.1f}%  peak mem {peak_alloc:.1f} GiB")
    print(f"result model={name} B={B} T={T} step_ms={med*1e3:.2f} tok_s={tok_s:.1f} mfu_pct={100*mfu:.2f} "
          f"peak_alloc_gib={peak_alloc:.2f} device_used_gib={used:.2f} loss0={l0:.6f} ln_v={math.log(V):.6f}")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="all", choices=["gpt2", "llama1b", "all"])
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--peak", type=float, default=989.0, help="dense bf16 TFLOP/s")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("skipped: no CUDA device for torch")
        return 77
    print(f"# torch {torch.__version__}, {torch.cuda.get_device_name(0)}, peak {args.peak} TFLOP/s")
    rc = 0
    for name in (["gpt2", "llama1b"] if args.model == "all" else [args.model]):
        rc |= run(name, args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
