#!/usr/bin/env python3
"""Decodes a PNG written by `shardlm plot` with zlib and struct only (no
imaging library) and checks what a reader would see: the signature, every
chunk CRC, the size, 8-bit RGB; in each of the four panels a vertical and a
horizontal axis line (dark pixels along a column and a row) and a plotted
series (pixels of the series colours).

usage: png_check.py FILE WIDTH HEIGHT"""
import struct
import sys
import zlib


def die(msg):
    sys.exit(f"png_check: {msg}")


def main():
    path, W, H = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        die("not a PNG signature")
    i, idat, hdr = 8, b"", None
    while i < len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        typ, body = data[i + 4:i + 8], data[i + 8:i + 8 + n]
        (crc,) = struct.unpack(">I", data[i + 8 + n:i + 12 + n])
        if zlib.crc32(typ + body) & 0xFFFFFFFF != crc:
            die(f"chunk {typ!r} CRC mismatch")
        if typ == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif typ == b"IDAT":
            idat += body
        i += 12 + n
    if not hdr:
        die("no IHDR")
    w, h, depth, ctype = hdr[:4]
    if (w, h) != (W, H) or depth != 8 or ctype != 2:
        die(f"{w}x{h} depth {depth} colour type {ctype}; expected {W}x{H} RGB 8-bit")
    raw = zlib.decompress(idat)
    stride = 3 * w + 1
    if len(raw) != stride * h:
        die(f"{len(raw)} bytes of image data, expected {stride * h}")
    rows = []
    for y in range(h):
        f = raw[y * stride]
        if f != 0:
            die(f"row {y} uses filter {f}; this checker reads filter 0 only")
        rows.append(raw[y * stride + 1:(y + 1) * stride])

    def px(x, y):
        r = rows[y]
        return r[3 * x], r[3 * x + 1], r[3 * x + 2]

    dark = lambda p: max(p) < 60
    series = {(31, 119, 180): "train loss", (255, 127, 14): "eval loss", (44, 160, 44): "lr",
              (214, 39, 40): "grad norm"}
    hw, hh = w // 2, h // 2
    panels = [(0, 0, hw, hh), (hw, 0, w, hh), (0, hh, hw, h), (hw, hh, w, h)]
    for k, (x0, y0, x1, y1) in enumerate(panels):
        cols = [x for x in range(x0, x1) if sum(dark(px(x, y)) for y in range(y0, y1)) > (y1 - y0) // 2]
        rws = [y for y in range(y0, y1) if sum(dark(px(x, y)) for x in range(x0, x1)) > (x1 - x0) // 2]
        if not cols or not rws:
            die(f"panel {k}: no axis lines (vertical {len(cols)}, horizontal {len(rws)})")
        seen = {}
        for y in range(y0, y1):
            for x in range(x0, x1):
                p = px(x, y)
                if p in series:
                    seen[series[p]] = seen.get(series[p], 0) + 1
        if not seen or max(seen.values()) < 20:
            die(f"panel {k}: no plotted series ({seen})")
        print(f"panel {k}: axes at x={cols[0]} y={rws[-1]}, series {seen}")
    print(f"ok: {w}x{h} RGB, 4 panels with axes and data")


if __name__ == "__main__":
    main()
