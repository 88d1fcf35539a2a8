#!/usr/bin/env python3
"""Compares the tensors of two Hugging Face folders, each one
model.safetensors or model.safetensors.index.json plus its shards, read from
the format description alone (u64 little-endian header length, JSON header,
data; the index's weight_map names each tensor's file): the same names, and
per tensor the same dtype, shape and bytes. With --expect-shards N the first
folder must be an index over exactly N files, each of at most --max-bytes
data bytes, whose metadata.total_size is the sum of its tensors' bytes.

usage: hf_compare.py A B [--expect-shards N --max-bytes M]; exit 1 on any difference.
"""
import json
import os
import struct
import sys


def read_file(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        out[name] = (e["dtype"], tuple(e["shape"]), data[a:b])
    return out, len(data)


def read_folder(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if not os.path.exists(idx):
        t, _ = read_file(os.path.join(d, "model.safetensors"))
        return t, None
    with open(idx) as f:
        index = json.load(f)
    files = sorted(set(index["weight_map"].values()))
    tensors, sizes = {}, {}
    for fn in files:
        t, size = read_file(os.path.join(d, fn))
        sizes[fn] = size
        for name, v in t.items():
            if index["weight_map"].get(name) != fn:
                sys.exit(f"{d}: {name} is in {fn} but the index says {index['weight_map'].get(name)}")
            tensors[name] = v
    if set(tensors) != set(index["weight_map"]):
        sys.exit(f"{d}: the index lists {len(index['weight_map'])} tensors, the files hold {len(tensors)}")
    total = sum(len(v[2]) for v in tensors.values())
    if index["metadata"]["total_size"] != total:
        sys.exit(f"{d}: metadata.total_size {index['metadata']['total_size']} != {total} bytes of tensors")
    return tensors, sizes


def main():
    args = sys.argv[1:]
    a, b = args[0], args[1]
    ta, sizes = read_folder(a)
    tb, _ = read_folder(b)
    if "--expect-shards" in args:
        n = int(args[args.index("--expect-shards") + 1])
        cap = int(args[args.index("--max-bytes") + 1])
        if sizes is None or len(sizes) != n:
            sys.exit(f"{a}: expected an index over {n} files, found {0 if sizes is None else len(sizes)}")
        for fn, size in sizes.items():
            if size > cap:
                sys.exit(f"{a}/{fn}: {size} data bytes exceed {cap}")
        print(f"{a}: {n} files, each at most {cap} data bytes: {sorted(sizes.values())}")
    if set(ta) != set(tb):
        sys.exit(f"tensor names differ: only in {a}: {sorted(set(ta) - set(tb))[:5]}; "
                 f"only in {b}: {sorted(set(tb) - set(ta))[:5]}")
    for name in sorted(ta):
        if ta[name] != tb[name]:
            sys.exit(f"{name} differs between {a} and {b} (dtype/shape {ta[name][:2]} vs {tb[name][:2]})")
    print(f"ok: {len(ta)} tensors byte-identical between {a} and {b}")


if __name__ == "__main__":
    main()
