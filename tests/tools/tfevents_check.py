#!/usr/bin/env python3
"""Reads a TensorBoard event file with an independent TFRecord + protobuf
decoder, checks every CRC, and compares the scalars with metrics.jsonl.

usage: tfevents_check.py RUN_DIR
Exits non-zero with a message naming the record and what differs."""
import glob
import json
import math
import struct
import sys


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(buf, i):
    shift = v = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def fields(buf):
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 1:
            v = buf[i:i + 8]; i += 8
        elif wt == 2:
            n, i = varint(buf, i)
            v = buf[i:i + n]; i += n
        elif wt == 5:
            v = buf[i:i + 4]; i += 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        yield num, v


def read_events(path):
    data = open(path, "rb").read()
    i = rec = 0
    out = []
    while i < len(data):
        if i + 12 > len(data):
            sys.exit(f"{path}: record {rec}: truncated header at offset {i}")
        (n,) = struct.unpack_from("<Q", data, i)
        (lcrc,) = struct.unpack_from("<I", data, i + 8)
        if lcrc != masked(data[i:i + 8]):
            sys.exit(f"{path}: record {rec}: length CRC mismatch at offset {i}")
        body = data[i + 12:i + 12 + n]
        (dcrc,) = struct.unpack_from("<I", data, i + 12 + n)
        if dcrc != masked(body):
            sys.exit(f"{path}: record {rec}: data CRC mismatch at offset {i}")
        ev = {"scalars": {}}
        for num, v in fields(body):
            if num == 1:
                ev["wall_time"] = struct.unpack("<d", v)[0]
            elif num == 2:
                ev["step"] = v
            elif num == 3:
                ev["file_version"] = v.decode()
            elif num == 5:
                for snum, sv in fields(v):
                    if snum != 1:
                        continue
                    tag = val = None
                    for vnum, vv in fields(sv):
                        if vnum == 1:
                            tag = vv.decode()
                        elif vnum == 2:
                            val = struct.unpack("<f", vv)[0]
                    ev["scalars"][tag] = val
        out.append(ev)
        i += 12 + n + 4
        rec += 1
    return out


def main():
    run = sys.argv[1]
    files = sorted(glob.glob(f"{run}/tb/events.out.tfevents.*"))
    if not files:
        sys.exit(f"no event file under {run}/tb")
    events = []
    for f in files:
        evs = read_events(f)
        if not evs or evs[0].get("file_version") != "brain.Event:2":
            sys.exit(f"{f}: first record must carry file_version brain.Event:2")
        events += evs[1:]
    # marker lines (a restart) carry no scalars; "time" is the line's wall clock
    lines = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
    lines = [l for l in lines if "event" not in l]
    if len(lines) != len(events):
        sys.exit(f"{len(lines)} metrics lines but {len(events)} scalar events")
    for k, (line, ev) in enumerate(zip(lines, events)):
        if ev.get("step", 0) != line["step"]:
            sys.exit(f"event {k}: step {ev.get('step')} != metrics step {line['step']}")
        for key, val in line.items():
            if key in ("step", "time") or val is None:
                continue
            # TensorBoard tags are grouped: train/loss, eval/eval_loss
            got = ev["scalars"].get(key)
            if got is None:
                got = next((v for t, v in ev["scalars"].items() if t.endswith("/" + key)), None)
            if got is None:
                sys.exit(f"event {k}: scalar {key} missing")
            if not math.isclose(got, val, rel_tol=1e-6, abs_tol=1e-30):
                sys.exit(f"event {k}: {key} = {got} in TensorBoard, {val} in metrics.jsonl")
    print(f"ok: {len(events)} events, CRCs valid, scalars match metrics.jsonl")


if __name__ == "__main__":
    main()
