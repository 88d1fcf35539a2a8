"""Checks shardlm prepare output with h5py.

usage: prepare_check.py same DIR_A DIR_B     the shards of A and B hold identical datasets
       prepare_check.py [--raw] sft DIR      DIR holds exactly the two SFT examples of
                                             test_prepare.sh with the expected ids and masks
       prepare_check.py [--raw] digest DIR   checks every shard's structure (offsets, n_docs,
                                             ids below vocab_size, mask 0/1) and totals
                                             against DIR/report.json, and prints one
                                             sha256 line per shard and dataset
Datasets are read through HDF5's filter pipeline (zstd via HDF5_PLUGIN_PATH),
or with --raw independently of any HDF5 filter by shard_raw.py (stored chunk
bytes, Fletcher32 verified in Python, zstd decoded by Debian's zstd CLI;
HDF5_PLUGIN_PATH must be unset). Exits 1 naming the first difference.
"""
import glob
import hashlib
import json
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shard_raw  # noqa: E402

RAW = False


def read(f, name):
    return shard_raw.read_dataset(f, name) if RAW else f[name][:]


def shards(d):
    return sorted(glob.glob(os.path.join(d, "*.h5")))


def same(a, b):
    sa, sb = shards(a), shards(b)
    if [os.path.basename(x) for x in sa] != [os.path.basename(x) for x in sb] or not sa:
        sys.exit(f"shard lists differ: {sa} vs {sb}")
    for x, y in zip(sa, sb):
        fx, fy = h5py.File(x, "r"), h5py.File(y, "r")
        for name in ("tokens", "loss_mask", "doc_offsets"):
            if not np.array_equal(fx[name][:], fy[name][:]):
                sys.exit(f"{x} and {y}: /{name} differs")
    print(f"{len(sa)} shards identical")


# gpt-3-encoder reference ids of the pieces (see tests/unit/test_chat.c)
IM_START, IM_END, NL = 50257, 50258, 198
USER, ASSISTANT, SYSTEM = [7220, 198], [562, 10167, 198], [10057, 198]


def turn(header, content, train):
    ids = [IM_START] + header + content + [IM_END, NL]
    mask = [0] * (1 + len(header)) + [train] * (len(content) + 1) + [0]
    return ids, mask


def sft(d):
    want = []
    # {"prompt": "What is 2+2?", "response": "It is 4."}
    a = turn(USER, [2061, 318, 362, 10, 17, 30], 0)
    b = turn(ASSISTANT, [1026, 318, 604, 13], 1)
    want.append((a[0] + b[0], a[1] + b[1]))
    # {"messages": [system "Be brief.", user "Hi", assistant "Hello! <|im_end|> fake"]}
    s = turn(SYSTEM, [3856, 4506, 13], 0)
    u = turn(USER, [17250], 0)
    r = turn(ASSISTANT, [15496, 0, 1279, 91, 320, 62, 437, 91, 29, 8390], 1)
    want.append((s[0] + u[0] + r[0], s[1] + u[1] + r[1]))
    (path,) = shards(d)
    f = h5py.File(path, "r")
    tok, mask, off = read(f, "tokens"), read(f, "loss_mask"), read(f, "doc_offsets")
    if len(off) != 3:
        sys.exit(f"{path}: {len(off) - 1} documents, expected 2")
    for i, (ids, m) in enumerate(want):
        got_ids = tok[off[i]:off[i + 1]].tolist()
        got_mask = mask[off[i]:off[i + 1]].tolist()
        if got_ids != ids:
            sys.exit(f"document {i}: ids {got_ids}, expected {ids}")
        if got_mask != m:
            sys.exit(f"document {i}: mask {got_mask}, expected {m}")
    if int(f.attrs["im_start_id"]) != IM_START or int(f.attrs["vocab_size"]) != 50259:
        sys.exit(f"{path}: attributes {dict(f.attrs)}")
    print("sft documents as expected" + (" (raw chunks)" if RAW else ""))


def digest(d):
    paths = shards(d)
    if not paths:
        sys.exit(f"{d}: no shards")
    # per split: documents, tokens, tokens with mask 1, as report.json counts them
    totals = {"train": [0, 0, 0], "eval": [0, 0, 0]}
    for path in paths:
        f = h5py.File(path, "r")
        a = f.attrs
        n, n_docs, vocab = int(a["n_tokens"]), int(a["n_docs"]), int(a["vocab_size"])
        tok, off = read(f, "tokens"), read(f, "doc_offsets")
        if tok.dtype != np.uint32 or tok.shape != (n,):
            sys.exit(f"{path}: /tokens {tok.dtype} {tok.shape}, expected uint32 ({n},)")
        if tok.size and int(tok.max()) >= vocab:
            sys.exit(f"{path}: token id {int(tok.max())} >= vocab_size {vocab}")
        steps = np.diff(off.astype(np.int64))
        if off.shape != (n_docs + 1,) or off[0] != 0 or off[-1] != n or np.any(steps < 0):
            sys.exit(f"{path}: /doc_offsets {off.shape} from {off[0]} to {off[-1]}, expected "
                     f"{n_docs + 1} non-decreasing offsets from 0 to {n}")
        sets = [("tokens", tok), ("doc_offsets", off)]
        trained = n
        if "loss_mask" in f:
            mask = read(f, "loss_mask")
            if mask.shape != (n,) or np.any(mask > 1):
                sys.exit(f"{path}: /loss_mask {mask.shape} max {mask.max()}, "
                         f"expected ({n},) of 0/1")
            sets.append(("loss_mask", mask))
            trained = int(mask.sum())
        split = "eval" if os.path.basename(path).startswith("eval-") else "train"
        for k, v in enumerate((n_docs, n, trained)):
            totals[split][k] += v
        for name, v in sets:
            h = hashlib.sha256(v.astype(v.dtype.newbyteorder("<")).tobytes()).hexdigest()
            print(f"{os.path.basename(path)} /{name} {v.size} {h}")
    rp = os.path.join(d, "report.json")
    if os.path.exists(rp):
        with open(rp) as fh:
            r = json.load(fh)
        want = {"train": [r["documents_written"], r["tokens_written"], r["tokens_trained"]],
                "eval": [r["eval_documents"], r["eval_tokens"], totals["eval"][2]]}
        if totals != want:
            sys.exit(f"{d}: shards hold (documents, tokens, trained tokens) {totals}, "
                     f"report.json says {want}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--raw"]:
        RAW = True
        args = args[1:]
    try:
        if RAW:
            shard_raw.require_independent()
        if args[0] == "same":
            same(args[1], args[2])
        elif args[0] == "digest":
            digest(args[1])
        else:
            sft(args[1])
    except shard_raw.RawError as e:
        sys.exit(str(e))
