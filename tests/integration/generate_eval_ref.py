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


def load(hf_dir):
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    P = {k: v.to(torch.float64) for k, v in hf_io.read_safetensors(os.path.join(hf_dir, "model.safetensors")).items()}
    return P, cfg


def cmd_model(out, vocab):
    C, H, Hk, F, L = 32, 4, 2, 64, 2
    g = torch.Generator().manual_seed(1)
    D = C // H

    def n(*shape, s=0.15):
        return torch.randn(*shape, generator=g) * s

    P = {"model.embed_tokens.weight": n(vocab, C, s=1.0)}
    for i in range(L):
        h = f"model.layers.{i}."
        P[h + "input_layernorm.weight"] = 1 + n(C, s=0.1)
        P[h + "self_attn.q_proj.weight"] = n(H * D, C, s=0.3)
        P[h + "self_attn.k_proj.weight"] = n(Hk * D, C, s=0.3)
        P[h + "self_attn.v_proj.weight"] = n(Hk * D, C)
        P[h + "self_attn.o_proj.weight"] = n(C, H * D)
        P[h + "post_attention_layernorm.weight"] = 1 + n(C, s=0.1)
        P[h + "mlp.gate_proj.weight"] = n(F, C)
        P[h + "mlp.up_proj.weight"] = n(F, C)
        P[h + "mlp.down_proj.weight"] = n(C, F)
    P["model.norm.weight"] = 1 + n(C, s=0.1)
    P["lm_head.weight"] = n(vocab, C, s=0.4)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C,
           "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": H,
           "num_key_value_heads": Hk, "vocab_size": vocab, "max_position_embeddings": 128,
           "rms_norm_eps": 1e-5, "hidden_act": "silu", "tie_word_embeddings": False,
           "rope_theta": 10000.0, "attention_bias": False, "mlp_bias": False}
    hf_io.write_folder(out, cfg, P)


def cmd_eval(hf_dir, T, shards):
    import h5py
    import hdf5plugin  # noqa: F401  (registers the zstd filter)
    P, cfg = load(hf_dir)
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
    P, cfg = load(hf_dir)
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
