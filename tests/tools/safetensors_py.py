"""Independent safetensors writer/reader for tests/unit/test_safetensors.c,
written from the format description only (the safetensors package is not
installed): u64 little-endian header length, UTF-8 JSON header, data.

  safetensors_py.py write PATH   writes F32/BF16/F16 tensors the way another
                                 tool might: json.dumps spacing, no padding,
                                 header entries out of offset order
  safetensors_py.py check PATH   reads the file the C test wrote and checks
                                 layout and values; exit code 1 on mismatch
"""
import json
import struct
import sys

import numpy as np
import torch

F32 = (np.arange(6, dtype=np.float32) * 0.5 - 1.0).reshape(2, 3)
BF16_SRC = [1.0, 3.14159, -2.5e-3, 65504.0, 1e30]
F16 = np.array([[0.1, -2.0], [65504.0, 6e-8]], dtype=np.float16)


def bf16_bytes(vals):
    t = torch.tensor(vals, dtype=torch.float32).to(torch.bfloat16)
    return t.view(torch.int16).numpy().tobytes()


def write(path):
    blobs = [("f32", "F32", [2, 3], F32.tobytes()),
             ("bf16", "BF16", [5], bf16_bytes(BF16_SRC)),
             ("f16", "F16", [2, 2], F16.tobytes())]
    header, data = {}, b""
    for name, dt, shape, b in blobs:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    header = dict(reversed(list(header.items())))
    header["__metadata__"] = {"format": "pt", "source": "python"}
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def check(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0, f"header length {n} is not a multiple of 8"
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    assert header.pop("__metadata__") == {"format": "pt", "note": "round trip"}
    end = 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        b, e = info["data_offsets"]
        assert b == end, f"{name}: begins at {b}, expected {end}"
        end = e
    assert end == len(data), f"tensors end at {end}, data is {len(data)} bytes"

    def arr(name, dtype):
        b, e = header[name]["data_offsets"]
        return np.frombuffer(data[b:e], dtype=dtype).reshape(header[name]["shape"])

    assert header["f32"]["dtype"] == "F32" and np.array_equal(arr("f32", np.float32), F32)
    assert header["bf16"]["dtype"] == "BF16"
    assert arr("bf16", np.int16).tobytes() == bf16_bytes(BF16_SRC)
    assert header["f16"]["dtype"] == "F16" and np.array_equal(arr("f16", np.float16), F16)


if __name__ == "__main__":
    {"write": write, "check": check}[sys.argv[1]](sys.argv[2])
