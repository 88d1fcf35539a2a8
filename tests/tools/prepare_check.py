"""Checks shardlm prepare output with h5py (zstd via HDF5_PLUGIN_PATH).

usage: prepare_check.py same DIR_A DIR_B     the shards of A and B hold identical datasets
       prepare_check.py sft DIR              DIR holds exactly the two SFT examples of
                                             test_prepare.sh with the expected ids and masks
Exits 1 naming the first difference.
"""
import glob
import os
import sys

import h5py
import numpy as np


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
    tok, mask, off = f["tokens"][:], f["loss_mask"][:], f["doc_offsets"][:]
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
    print("sft documents as expected")


if __name__ == "__main__":
    if sys.argv[1] == "same":
        same(sys.argv[2], sys.argv[3])
    else:
        sft(sys.argv[2])
