#!/usr/bin/env python3
"""Peer of benchmarks/bench_cuda_attention.c: torch SDPA (flash backend),
causal, bf16, same configs (16384 tokens, width 2048, D in {64, 128},
T in {1024..8192}), same FLOP counts (forward 4 B H T^2 D / 2, backward 2.5x),
median of 20 timed runs after 3 warm-ups, CUDA events. Prints the same table.
Run on the GPU machine: python3 benchmarks/peers/torch_attention_bench.py
"""
import statistics
import sys

import torch
import torch.nn.functional as F


def main():
    if not torch.cuda.is_available():
        print("skipped: no CUDA device for torch")
        return 77
    from torch.nn.attention import SDPBackend, sdpa_kernel
    dev = torch.device("cuda")
    print(f"# torch {torch.__version__}, {torch.cuda.get_device_name(0)}, SDPA flash")
    print(f"{'D':<4} {'T':<5} {'B':<3} {'H':<3} {'fwd_ms':>10} {'fwd_TF/s':>10} {'bwd_ms':>10} {'bwd_TF/s':>10}")
    for d in (64, 128):
        h = 2048 // d
        for t in (1024, 2048, 4096, 8192):
            b = 16384 // t
            q, k, v = (torch.randn(b, h, t, d, device=dev, dtype=torch.bfloat16, requires_grad=True)
                       for _ in range(3))
            dout = torch.randn(b, h, t, d, device=dev, dtype=torch.bfloat16)
            tf, tb = [], []
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                for it in range(23):
                    e0, e1, e2 = (torch.cuda.Event(enable_timing=True) for _ in range(3))
                    e0.record()
                    o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                    e1.record()
                    o.backward(dout)
                    e2.record()
                    torch.cuda.synchronize()
                    if it >= 3:
                        tf.append(e0.elapsed_time(e1) / 1e3)
                        tb.append(e1.elapsed_time(e2) / 1e3)
                    q.grad = k.grad = v.grad = None
            flops = 4.0 * b * h * t * t * d / 2.0
            mf, mb = statistics.median(tf), statistics.median(tb)
            print(f"{d:<4} {t:<5} {b:<3} {h:<3} {mf*1e3:10.3f} {flops/mf/1e12:10.1f} "
                  f"{mb*1e3:10.3f} {2.5*flops/mb/1e12:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
