#!/usr/bin/env python3
"""Compares shardlm checkpoints (step folders) with h5py. Exits non-zero
naming the file, dataset and first differing element.

usage:
  ckpt_compare.py bitwise A_STEP_DIR B_STEP_DIR
      same world size: every dataset (param, m, v) of every rank file is
      bitwise equal, and the meta.json step and loader state are equal
  ckpt_compare.py gathered [--tol T] A_STEP_DIR B_STEP_DIR
      any world sizes: the units gathered from the rank files' valid ranges
      agree (max abs difference <= T; default 0 = bitwise)
  ckpt_compare.py same-params A_STEP_DIR B_STEP_DIR
      like gathered with T = 0, for two checkpoints of one run (a skipped
      step leaves every parameter and optimizer state unchanged)
"""
import json
import os
import sys

import h5py
import numpy as np


def meta(d):
    with open(os.path.join(d, "meta.json")) as f:
        return json.load(f)


def rank_files(d):
    m = meta(d)
    return [os.path.join(d, f["file"]) for f in m["files"]]


def gathered(d):
    """{(part, unit, name): full float32 array of numel} from every rank file."""
    out = {}
    for path in rank_files(d):
        with h5py.File(path, "r") as f:
            for part in f:
                for unit in f[part]:
                    g = f[part][unit]
                    start, valid, numel = int(g.attrs["start"]), int(g.attrs["valid"]), int(g.attrs["numel"])
                    for name in g:
                        key = (part, int(unit), name)
                        if key not in out:
                            out[key] = np.full(numel, np.nan, dtype=np.float32)
                        out[key][start:start + valid] = g[name][:valid]
    for key, a in out.items():
        if np.isnan(a).any():
            sys.exit(f"{d}: {key} has elements no rank file holds (or NaN values)")
    return out


def bitwise(a, b):
    ma, mb = meta(a), meta(b)
    for k in ("step", "world_size", "loader"):
        if ma[k] != mb[k]:
            sys.exit(f"meta.json {k}: {ma[k]} in {a}, {mb[k]} in {b}")
    n = 0
    for pa, pb in zip(rank_files(a), rank_files(b)):
        with h5py.File(pa, "r") as fa, h5py.File(pb, "r") as fb:
            def visit(name, obj):
                nonlocal n
                if not isinstance(obj, h5py.Dataset):
                    return
                if name not in fb:
                    sys.exit(f"{pb} lacks {name}")
                x, y = obj[()], fb[name][()]
                if x.shape != y.shape or x.tobytes() != y.tobytes():
                    i = int(np.argmax(x.view(np.uint32) != y.view(np.uint32))) if x.shape == y.shape else -1
                    sys.exit(f"{os.path.basename(pa)}:{name} differs at element {i}: "
                             f"{x[i] if i >= 0 else x.shape} vs {y[i] if i >= 0 else y.shape}")
                n += 1
            fa.visititems(visit)
    print(f"bitwise equal: {n} datasets in {len(rank_files(a))} rank files at step {ma['step']}")


def compare_gathered(a, b, tol):
    ga, gb = gathered(a), gathered(b)
    if ga.keys() != gb.keys():
        sys.exit(f"different units/datasets: {sorted(set(ga) ^ set(gb))[:5]}")
    worst = 0.0
    for key in sorted(ga):
        d = float(np.max(np.abs(ga[key].astype(np.float64) - gb[key]))) if ga[key].size else 0.0
        if not d <= tol:
            sys.exit(f"{key}: max abs difference {d:g} > {tol:g}")
        worst = max(worst, d)
    print(f"gathered state agrees: {len(ga)} datasets, max abs difference {worst:g} (tol {tol:g})")


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    mode, rest = argv[1], argv[2:]
    tol = 0.0
    if rest and rest[0] == "--tol":
        tol, rest = float(rest[1]), rest[2:]
    a, b = rest
    if mode == "bitwise":
        bitwise(a, b)
    elif mode in ("gathered", "same-params"):
        compare_gathered(a, b, tol)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
