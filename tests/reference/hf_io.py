"""Minimal Hugging Face folder writer/reader used by the reference scripts and
benchmarks/peers (the safetensors package is not installed on the CPU
machine). Written from the safetensors format description: u64 little-endian
header length, compact UTF-8 JSON header ({"__metadata__": {...}, name:
{"dtype", "shape", "data_offsets"}}), padded with spaces to a multiple of 8,
then the tensors' bytes; tensors are written sorted by name.
"""
import json
import struct

import numpy as np
import torch

_DT = {torch.float32: ("F32", np.float32), torch.float64: ("F64", np.float64)}


def write_safetensors(path, tensors):
    """tensors: dict name -> torch tensor (float32). Written sorted by name."""
    header = {"__metadata__": {"format": "pt"}}
    blobs, off = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous()
        b = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", f"{path}: {name} is {info['dtype']}, this reader takes F32 only"
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=np.float32).reshape(info["shape"]).copy()
        out[name] = torch.from_numpy(arr)
    return out


def read_folder(folder):
    """A Hugging Face folder's config.json and model.safetensors (F32) as
    (config dict, {name: float64 tensor})."""
    import os
    cfg = json.load(open(os.path.join(folder, "config.json")))
    P = {k: v.to(torch.float64) for k, v in read_safetensors(os.path.join(folder, "model.safetensors")).items()}
    return cfg, P


def write_folder(folder, config, tensors):
    import os
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    write_safetensors(os.path.join(folder, "model.safetensors"), tensors)


def write_random_llama(folder, vocab, seed, head, **config):
    """A random tiny Llama (C 32, 4 heads, 2 kv heads, d_ff 64, 2 layers,
    untied) written to folder: normal draws from a torch.Generator seeded
    with seed, the body's first, then the head's. head "lm": lm_head (vocab,
    C) and LlamaForCausalLM; head "score": score (1, C) and
    LlamaForSequenceClassification. config: more config.json keys
    (id2label, pad_token_id, ...)."""
    C, H, Hk, F, L = 32, 4, 2, 64, 2
    g = torch.Generator().manual_seed(seed)
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
    if head == "lm":
        P["lm_head.weight"] = n(vocab, C, s=0.4)
        arch = "LlamaForCausalLM"
    elif head == "score":
        P["score.weight"] = n(1, C, s=1.0)
        arch = "LlamaForSequenceClassification"
    else:
        raise ValueError(f"write_random_llama: head {head!r} is neither 'lm' nor 'score'")
    cfg = {"architectures": [arch], "model_type": "llama", "hidden_size": C,
           "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": H,
           "num_key_value_heads": Hk, "vocab_size": vocab, "max_position_embeddings": 128,
           "rms_norm_eps": 1e-5, "hidden_act": "silu", "tie_word_embeddings": False,
           "rope_theta": 10000.0, "attention_bias": False, "mlp_bias": False, **config}
    write_folder(folder, cfg, P)
