#!/usr/bin/env python3
"""PyTorch side of tests/integration/test_generate_eval.sh (Debian's python3
with torch, h5py, hdf5plugin; the model definitions of tests/reference).

  model OUT_DIR VOCAB         a random tiny Llama (GQA 4:2, untied head) as a
                              Hugging Face folder (float32)
  eval HF_DIR T SHARD...      mean loss (float64) over every pretraining
                              sample of the shards, as data/loader.h defines
                              them: documents in file order, each followed by
                              EOS; sample i = stream[i*T, i*T+T+1)
  greedy HF_DIR N ID...       N greedy tokens after the prompt ids (full
                              forward each step, no cache); prints the ids and
                              the smallest gap between the best and second
                              logit (a tiny gap would make fp32 and fp64 disagree)
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import hf_io  # noqa: E402
import models  # noqa: E402


def cmd_model(out, vocab):
    hf_io.write_random_llama(out, vocab, 1, "lm")


def cmd_eval(hf_dir, T, shards):
    import h5py
    import hdf5plugin  # noqa: F401  (registers the zstd filter)
    cfg, P = hf_io.read_folder(hf_dir)
    stream = []
    for path in shards:
        with h5py.File(path, "r") as f:
            tok = f["tokens"][:].tolist()
            off = f["doc_offsets"][:].tolist()
            eos = int(f.attrs["eos_id"])
        for d in range(len(off) - 1):
            stream += tok[off[d]:off[d + 1]] + [eos]
    N = (len(stream) - 1) // T
    ids = torch.tensor(stream[:N * T + 1])
    total, count = 0.0, 0
    for s in range(0, N, 16):
        rows = range(s, min(N, s + 16))
        x = torch.stack([ids[i * T:i * T + T] for i in rows])
        y = torch.stack([ids[i * T + 1:i * T + T + 1] for i in rows])
        lg = models.logits(P, cfg, x)
        total += torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), y.reshape(-1),
                                                   reduction="sum").item()
        count += y.numel()
    print(json.dumps({"loss": total / count, "tokens": count, "samples": N}))


def cmd_greedy(hf_dir, n, prompt):
    cfg, P = hf_io.read_folder(hf_dir)
    ids = list(prompt)
    gap = float("inf")
    for _ in range(n):
        lg = models.logits(P, cfg, torch.tensor([ids]))[0, -1]
        top = torch.topk(lg, 2)
        gap = min(gap, (top.values[0] - top.values[1]).item())
        ids.append(int(top.indices[0]))
    print(json.dumps({"ids": ids[len(prompt):], "min_gap": gap}))


def main():
    cmd = sys.argv[1]
    torch.set_num_threads(1)
    if cmd == "model":
        cmd_model(sys.argv[2], int(sys.argv[3]))
    elif cmd == "eval":
        cmd_eval(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
    elif cmd == "greedy":
        cmd_greedy(sys.argv[2], int(sys.argv[3]), [int(x) for x in sys.argv[4:]])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
