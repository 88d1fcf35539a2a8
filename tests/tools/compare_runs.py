#!/usr/bin/env python3
"""Compares training runs against a reference run: per-step losses from
metrics.jsonl and the final parameters from export/model.safetensors, as
relative errors by norm. Exits non-zero naming the run, step or tensor.

usage: compare_runs.py [--tol 1e-5] [--file export/model.safetensors] REF_RUN_DIR RUN_DIR...
  --file: the safetensors file of each run to compare (e.g. a LoRA run's
  export/adapter_model.safetensors)
"""
import json
import struct
import sys

import numpy as np


def losses(run):
    out = {}
    for line in open(f"{run}/metrics.jsonl"):
        rec = json.loads(line)
        if "loss" in rec:
            out[rec["step"]] = rec["loss"]
    return out


def tensors(run, rel_path="export/model.safetensors"):
    path = f"{run}/{rel_path}"
    data = open(path, "rb").read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {t['dtype']}, expected F32")
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[base + b:base + e], dtype="<f4").astype(np.float64)
    return out


def rel(a, b):
    d = np.linalg.norm(np.asarray(a) - np.asarray(b))
    n = np.linalg.norm(np.asarray(b))
    return d / n if n > 0 else d


def main():
    args = sys.argv[1:]
    tol, rel_path = 1e-5, "export/model.safetensors"
    while args and args[0] in ("--tol", "--file"):
        if args[0] == "--tol":
            tol = float(args[1])
        else:
            rel_path = args[1]
        args = args[2:]
    ref, runs = args[0], args[1:]
    ref_l, ref_t = losses(ref), tensors(ref, rel_path)
    worst = 0.0
    for run in runs:
        l = losses(run)
        if sorted(l) != sorted(ref_l):
            sys.exit(f"{run}: steps {sorted(l)} differ from the reference's {sorted(ref_l)}")
        for s in sorted(ref_l):
            e = abs(l[s] - ref_l[s]) / abs(ref_l[s])
            worst = max(worst, e)
            if e > tol:
                sys.exit(f"{run}: step {s} loss {l[s]!r} vs reference {ref_l[s]!r}: relative error {e:.3e} > {tol}")
        t = tensors(run, rel_path)
        if sorted(t) != sorted(ref_t):
            sys.exit(f"{run}: tensor names differ from the reference")
        for name in sorted(ref_t):
            e = rel(t[name], ref_t[name])
            worst = max(worst, e)
            if e > tol:
                sys.exit(f"{run}: final {name}: relative error by norm {e:.3e} > {tol}")
        print(f"ok: {run} matches {ref} ({len(ref_l)} steps, {len(ref_t)} tensors)")
    print(f"worst relative error {worst:.3e} (tolerance {tol})")


if __name__ == "__main__":
    main()
