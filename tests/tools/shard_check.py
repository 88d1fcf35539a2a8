"""Reads a shardlm token shard with h5py and checks it against the pattern
tests/unit/test_shard.c wrote: token i = (i * 7919 + 13) % vocab, loss_mask
i = (i % 3 != 0), document d has (d * 37) % 101 + 1 tokens. Exits 1 naming the
first difference.

usage: shard_check.py FILE.h5         through HDF5's filter pipeline (zstd from
                                      HDF5_PLUGIN_PATH or hdf5plugin)
       shard_check.py --raw FILE.h5   independently of any HDF5 filter: every
                                      chunk's stored bytes, Fletcher32 and zstd
                                      checked and decoded by shard_raw.py
"""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shard_raw  # noqa: E402


def main(path, raw):
    if raw:
        shard_raw.require_independent()
    else:
        try:
            import hdf5plugin  # noqa: F401  (registers its filters where it has them)
        except ImportError:
            pass
    f = h5py.File(path, "r")

    def read(name):
        return shard_raw.read_dataset(f, name) if raw else f[name][:]

    a = f.attrs
    if a["format"] != "shardlm-tokens" or int(a["version"]) != 1:
        sys.exit(f"{path}: format {a['format']!r} version {a['version']}")
    vocab = int(a["vocab_size"])
    n = int(a["n_tokens"])
    tokens = read("tokens")
    if tokens.dtype != np.uint32 or tokens.shape != (n,):
        sys.exit(f"{path}: /tokens dtype {tokens.dtype} shape {tokens.shape}, expected uint32 ({n},)")
    i = np.arange(n, dtype=np.uint64)
    want = ((i * 7919 + 13) % vocab).astype(np.uint32)
    bad = np.nonzero(tokens != want)[0]
    if bad.size:
        j = bad[0]
        sys.exit(f"{path}: token {j} is {tokens[j]}, expected {want[j]}")
    mask = read("loss_mask")
    want_mask = (i % 3 != 0).astype(np.uint8)
    bad = np.nonzero(mask != want_mask)[0]
    if bad.size:
        sys.exit(f"{path}: loss_mask {bad[0]} is {mask[bad[0]]}, expected {want_mask[bad[0]]}")
    off = read("doc_offsets")
    lens = np.diff(off)
    d = np.arange(lens.size)
    if off[0] != 0 or off[-1] != n or not np.array_equal(lens, (d * 37) % 101 + 1):
        sys.exit(f"{path}: doc_offsets differ from the expected document lengths")
    if int(a["n_docs"]) != lens.size:
        sys.exit(f"{path}: n_docs {a['n_docs']} but {lens.size} offsets")
    dcpl = f["tokens"].id.get_create_plist()
    filters = [dcpl.get_filter(k)[0] for k in range(dcpl.get_nfilters())]
    if filters != [32015, h5py.h5z.FILTER_FLETCHER32]:
        sys.exit(f"{path}: /tokens filters {filters}, expected [32015, fletcher32]")
    how = "every chunk read raw, Fletcher32 and zstd (CLI) checked" if raw else "HDF5 filters"
    print(f"{path}: {n} tokens, {lens.size} documents, tokenizer {a['tokenizer_name']} ok ({how})")


if __name__ == "__main__":
    args = sys.argv[1:]
    raw = args[:1] == ["--raw"]
    try:
        main(args[-1], raw)
    except shard_raw.RawError as e:
        sys.exit(str(e))
