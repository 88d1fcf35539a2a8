"""Philox4x32-10 and the LoRA dropout masks of shardlm, in numpy, for the
reference scripts (make_lora_reference.py). Written from the definitions in
runtime/rng.h (counter-based RNG), kernels/ops.h (ops_dropout: which word of
which block decides element j, the keep threshold, the scale) and
model/lora.h (lora_dropout_seed, the element counter of a sequence row).
Checked on import against Random123's known-answer vectors, the same three
runtime/rng's test uses.

  philox4x32_10(ctr, key)  ctr (..., 4) uint32, key (2,) -> (..., 4) uint32
  keep_mask(seed, offset, n, p)  bool (n,): ops_dropout's keep(offset + i)
  dropout_scale(p)         float: 1 / (1 - p) as ops_dropout_scale rounds it
  lora_dropout_seed(seed, step, layer, module)  int: lora.h's key
"""
import numpy as np

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF
PURPOSE_DROPOUT = 2  # RNG_PURPOSE_DROPOUT

# lora_module values of model/lora.h
LORA_MODULE = {"qkv": 0, "q": 1, "k": 2, "v": 3, "out": 4, "fc": 5, "up": 6, "proj": 7}


def philox4x32_10(ctr, key):
    c = np.array(ctr, dtype=np.uint64) & U32
    k0, k1 = int(key[0]) & U32, int(key[1]) & U32
    c0, c1, c2, c3 = (c[..., i] for i in range(4))
    for r in range(10):
        if r > 0:
            k0, k1 = (k0 + W0) & U32, (k1 + W1) & U32
        p0 = c0 * np.uint64(M0)  # < 2^64: 32-bit operands
        p1 = c2 * np.uint64(M1)
        hi0, lo0 = p0 >> np.uint64(32), p0 & np.uint64(U32)
        hi1, lo1 = p1 >> np.uint64(32), p1 & np.uint64(U32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def _self_test():
    kat = [
        ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
        ([U32] * 4, [U32, U32], [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
        ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
         [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
    ]
    for ctr, key, want in kat:
        got = philox4x32_10(np.array(ctr, dtype=np.uint64), key).tolist()
        if got != want:
            raise AssertionError(f"philox4x32_10 known-answer test: {got} != {want}")


def threshold(p):
    """ops_dropout_threshold: round(p * 2^32) clamped to 2^32 - 1 (p as float32)."""
    t = float(np.float32(p)) * 4294967296.0 + 0.5
    return 0 if t <= 0 else min(int(t), U32)


def dropout_scale(p):
    return float(np.float32(1.0 / (1.0 - float(np.float32(p)))))


def keep_mask(seed, offset, n, p):
    j = np.arange(n, dtype=np.uint64) + np.uint64(offset)
    q = j >> np.uint64(2)
    ctr = np.stack([q & np.uint64(U32), q >> np.uint64(32), np.zeros_like(q),
                    np.full_like(q, PURPOSE_DROPOUT)], axis=-1)
    w = philox4x32_10(ctr, (seed & U32, (seed >> 32) & U32))
    word = w[np.arange(n), (j & np.uint64(3)).astype(np.int64)]
    return word.astype(np.uint64) >= np.uint64(threshold(p))


def _mix64(z):
    z = (z + 0x9E3779B97F4A7C15) & U64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & U64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & U64
    return z ^ (z >> 31)


def lora_dropout_seed(seed, step, layer, module):
    h = _mix64((seed & U64) ^ _mix64(step & U64))
    return _mix64(h ^ (((layer & U32) << 8) | module))


def lora_mask(seed, step, layer, module, first_sample, batch, seq_len, in_features, p):
    """(batch, seq_len, in_features) bool keep mask of one adapted module, rows
    first_sample .. first_sample + batch - 1 of the step's global batch."""
    key = lora_dropout_seed(seed, step, layer, module)
    off = first_sample * seq_len * in_features
    return keep_mask(key, off, batch * seq_len * in_features, p).reshape(batch, seq_len, in_features)


_self_test()
