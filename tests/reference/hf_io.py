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


def write_folder(folder, config, tensors):
    import os
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    write_safetensors(os.path.join(folder, "model.safetensors"), tensors)
