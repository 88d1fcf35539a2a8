"""Reads a shardlm token shard's datasets without any HDF5 filter: an
independent check of the on-disk format that does not run data/h5io.c.

h5py locates each chunk and hands back its stored bytes
(DatasetID.read_direct_chunk, no filter applied); this module then checks the
4-byte Fletcher32 trailer with its own implementation of HDF5's
H5_checksum_fletcher32 (16-bit big-endian words, sums folded every 360 words,
stored little-endian), decompresses the zstd frame with Debian's `zstd` command
line tool (package zstd) in a subprocess, and reassembles the dataset. It also
checks the filter pipeline from the dataset creation property list: zstd
(32015, cd_values[0] = level 1-22) first, then Fletcher32, both mandatory.

It refuses to run with HDF5_PLUGIN_PATH set or hdf5plugin imported, so a pass
cannot come from a zstd filter inside HDF5 (ours or anyone's).

usage as a module: read_dataset(h5py_file, name) -> numpy array
"""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

ZSTD_FILTER = 32015


class RawError(Exception):
    pass


def require_independent():
    """Fails unless no HDF5 zstd filter can take part in this process."""
    if os.environ.get("HDF5_PLUGIN_PATH"):
        raise RawError("HDF5_PLUGIN_PATH is set; the independent reader runs without "
                       "any HDF5 filter plugin (unset it)")
    if "hdf5plugin" in sys.modules:
        raise RawError("hdf5plugin is imported; the independent reader runs without it")
    if shutil.which("zstd") is None:
        raise RawError("the zstd command line tool is missing (Debian package zstd; "
                       "run bash scripts/setup.sh)")


def fletcher32(data):
    """HDF5's H5_checksum_fletcher32 over bytes, exactly (uint32 wraparound
    included): big-endian 16-bit words; an odd last byte is the high byte of
    a final word; sum1/sum2 folded ((s & 0xffff) + (s >> 16)) after every
    block of 360 words, after the odd byte and once more at the end."""
    buf = np.frombuffer(data, dtype=np.uint8)
    n_words = buf.size // 2
    words = buf[: 2 * n_words].view(">u2").astype(np.int64)
    sum1 = sum2 = 0
    m32 = 0xFFFFFFFF
    for start in range(0, n_words, 360):
        blk = words[start:start + 360]
        t = blk.size
        a = int(blk.sum())
        # sum2 gains sum1 after each word: t * sum1_before + sum of prefix sums
        b = int((blk * np.arange(t, 0, -1, dtype=np.int64)).sum())
        sum2 = (sum2 + t * sum1 + b) & m32
        sum1 = (sum1 + a) & m32
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    if buf.size % 2:
        sum1 = (sum1 + (int(buf[-1]) << 8)) & m32
        sum2 = (sum2 + sum1) & m32
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
    sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    return ((sum2 << 16) | sum1) & m32


def check_pipeline(path, dset):
    """The pipeline is [zstd(level), fletcher32], both mandatory."""
    dcpl = dset.id.get_create_plist()
    got = [dcpl.get_filter(k) for k in range(dcpl.get_nfilters())]
    codes = [g[0] for g in got]
    if codes != [ZSTD_FILTER, h5py.h5z.FILTER_FLETCHER32]:
        raise RawError(f"{path}: {dset.name} filter pipeline {codes}, expected "
                       f"[{ZSTD_FILTER} (zstd), {h5py.h5z.FILTER_FLETCHER32} (fletcher32)]")
    for code, flags, cd, _name in got:
        if flags & h5py.h5z.FLAG_OPTIONAL:
            raise RawError(f"{path}: {dset.name} filter {code} is optional, expected mandatory")
    cd = got[0][2]
    if len(cd) < 1 or not 1 <= cd[0] <= 22:
        raise RawError(f"{path}: {dset.name} zstd cd_values {tuple(cd)}, expected (level 1-22,)")


def zstd_decompress(frame, where):
    r = subprocess.run(["zstd", "-d", "-q", "-c"], input=frame, capture_output=True)
    if r.returncode != 0:
        raise RawError(f"{where}: zstd -d failed ({r.returncode}): "
                       f"{r.stderr.decode(errors='replace').strip()}")
    return r.stdout


def read_dataset(f, name):
    """Every chunk of /name, checksum-verified and decompressed outside HDF5's
    filter pipeline, reassembled into the dataset's values."""
    path = f.filename
    d = f[name]
    if d.ndim != 1 or d.chunks is None:
        raise RawError(f"{path}: /{name} shape {d.shape} chunks {d.chunks}, expected 1-D chunked")
    check_pipeline(path, d)
    n = d.shape[0]
    ch = d.chunks[0]
    ftype = d.id.get_type()
    if not isinstance(ftype, h5py.h5t.TypeIntegerID):
        raise RawError(f"{path}: /{name} is {d.dtype}, expected an integer type")
    # the stored bytes are in the file type's byte order, whatever this host's
    dt = d.dtype.newbyteorder("<" if ftype.get_order() == h5py.h5t.ORDER_LE else ">")
    n_chunks = (n + ch - 1) // ch
    if d.id.get_num_chunks() != n_chunks:
        raise RawError(f"{path}: /{name} stores {d.id.get_num_chunks()} chunks, expected "
                       f"{n_chunks} for {n} elements in chunks of {ch}")
    out = np.empty(n, dtype=d.dtype)  # native, like f[name][:]
    for c in range(n_chunks):
        where = f"{path}: /{name} chunk {c}"
        mask, raw = d.id.read_direct_chunk((c * ch,))
        if mask != 0:
            raise RawError(f"{where}: filter mask {mask:#x}, expected 0 (every filter applied)")
        if len(raw) < 5:
            raise RawError(f"{where}: {len(raw)} stored bytes, too short for zstd + Fletcher32")
        body, trailer = raw[:-4], raw[-4:]
        want = int.from_bytes(trailer, "little")
        got = fletcher32(body)
        if got != want:
            raise RawError(f"{where}: Fletcher32 {got:#010x} computed, {want:#010x} stored")
        plain = zstd_decompress(body, where)
        if len(plain) != ch * dt.itemsize:
            raise RawError(f"{where}: {len(plain)} bytes decompressed, expected {ch} x "
                           f"{dt.itemsize} (one full chunk)")
        vals = np.frombuffer(plain, dtype=dt)
        take = min(ch, n - c * ch)
        out[c * ch:c * ch + take] = vals[:take]
    return out
