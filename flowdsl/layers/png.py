"""A small dependency-free PNG reader with bounds checked before decoding (the texture layer's source images).

Only regular files of at most :data:`MAX_PNG_BYTES` are read; the header's width x height is
checked against ``max_pixels`` before anything is decompressed, and the image data is
decompressed to exactly the size the header implies (a forged header or a zlib bomb cannot make
it allocate more). Row filters run on plain byte arrays, vectorised across the row where the
filter allows (none, up) and byte by byte otherwise (sub, average, Paeth).

Example:
    >>> import struct, tempfile, zlib, os
    >>> def chunk(kind, body):
    ...     return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    >>> rows = b"\\x01\\x05\\x01" + b"\\x04\\x00\\x02"   # a 2x2 grey image: filter sub, then filter Paeth
    >>> png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0))
    ...        + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    >>> path = os.path.join(tempfile.mkdtemp(), "t.png")
    >>> _ = open(path, "wb").write(png)
    >>> pixels, top = read_png(path)
    >>> pixels[0].tolist(), top
    ([[5, 6], [5, 8]], 255)
    >>> read_png(path, max_pixels=3)
    Traceback (most recent call last):
    ...
    flowdsl.layers.png.PNGError: the image is 2x2 = 4 pixels (limit 3)
"""

from __future__ import annotations

import os
import stat
import struct
import zlib

import numpy as np

__all__ = ["PNGError", "read_png", "MAX_PNG_BYTES"]

MAX_PNG_BYTES = 64 * 2**20


class PNGError(ValueError):
    """The file is not a PNG this reader understands, or is larger than allowed."""


def _read(path) -> bytes:
    try:
        info = os.stat(path)
    except OSError as err:
        raise PNGError(f"cannot read the file: {err.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise PNGError("not a regular file")
    if info.st_size > MAX_PNG_BYTES:
        raise PNGError(f"the file is too large ({info.st_size:,} bytes; limit {MAX_PNG_BYTES:,})")
    with open(path, "rb") as handle:
        return handle.read(MAX_PNG_BYTES + 1)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = bytearray(stride)
    for r in range(height):
        pos = r * (stride + 1)
        kind, line = raw[pos], raw[pos + 1: pos + 1 + stride]
        if kind == 0:
            cur = bytearray(line)
        elif kind == 2:
            cur = bytearray(((np.frombuffer(line, np.uint8).astype(np.uint16) + np.frombuffer(bytes(prev), np.uint8))
                             & 0xFF).astype(np.uint8).tobytes())
        elif kind in (1, 3, 4):
            cur = bytearray(line)
            for i in range(stride):  # sequential: each byte depends on the one bpp to its left
                a = cur[i - bpp] if i >= bpp else 0
                if kind == 1:
                    pred = a
                elif kind == 3:
                    pred = (a + prev[i]) >> 1
                else:
                    pred = _paeth(a, prev[i], prev[i - bpp] if i >= bpp else 0)
                cur[i] = (cur[i] + pred) & 0xFF
        else:
            raise PNGError(f"unknown row filter {kind}")
        out[r] = np.frombuffer(bytes(cur), dtype=np.uint8)
        prev = cur
    return out


def _chunks(data: bytes):
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise PNGError("not a PNG file")
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos: pos + 8])
        yield kind, data[pos + 8: pos + 8 + length]
        pos += 12 + length
        if kind == b"IEND":
            return


def _decompress(idat: list[bytes], size: int) -> bytes:
    """Exactly ``size`` bytes of image data: never more is decompressed (a zlib bomb stops there)."""
    z = zlib.decompressobj()
    out = bytearray()
    for part in idat:
        out += z.decompress(part, size + 1 - len(out))
        if len(out) > size:
            raise PNGError("the image data is larger than its header declares")
        while z.unconsumed_tail and len(out) <= size:
            out += z.decompress(z.unconsumed_tail, size + 1 - len(out))
            if len(out) > size:
                raise PNGError("the image data is larger than its header declares")
    if len(out) < size:
        raise PNGError("the image data is truncated")
    return bytes(out)


def read_png(path, max_pixels: int = 2**20) -> tuple[np.ndarray, int]:
    """``(pixels [C, H, W] int64, largest value)`` of a non-interlaced PNG (grey, grey+alpha, RGB, RGBA, palette;
    alpha is dropped). Raises :class:`PNGError` (a message that never quotes the file) or ``OSError``."""
    idat, header, palette = [], None, None
    for kind, body in _chunks(_read(path)):
        if kind == b"IHDR":
            if len(body) != 13:
                raise PNGError("a malformed image header")
            header = struct.unpack(">IIBBBBB", body)
            width, height = header[0], header[1]
            if width < 1 or height < 1:
                raise PNGError(f"the image is {width}x{height}: empty")
            if width * height > max_pixels:  # from the header, before any pixel is decoded
                raise PNGError(f"the image is {width}x{height} = {width * height:,} pixels (limit {max_pixels:,})")
        elif kind == b"PLTE":
            palette = np.frombuffer(body[: len(body) // 3 * 3], dtype=np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            idat.append(body)
    if header is None or not idat:
        raise PNGError("no image header or data")
    width, height, depth, colour, _, _, interlace = header
    if interlace:
        raise PNGError("interlaced PNGs are not supported")
    samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if samples is None or depth not in (1, 2, 4, 8, 16) or (depth < 8 and colour not in (0, 3)):
        raise PNGError(f"unsupported colour type {colour} with bit depth {depth}")
    bits = samples * depth
    stride, bpp = (width * bits + 7) // 8, max(1, bits // 8)
    rows = _unfilter(_decompress(idat, height * (stride + 1)), height, stride, bpp)
    if depth == 16:
        values = rows.reshape(height, -1, 2).astype(np.int64)
        values = (values[..., 0] << 8) | values[..., 1]
    elif depth == 8:
        values = rows.astype(np.int64)
    else:
        unpacked = np.unpackbits(rows, axis=1)[:, : width * depth].reshape(height, width, depth)
        values = (unpacked * (1 << np.arange(depth - 1, -1, -1))).sum(axis=-1)
    pixels = values.reshape(height, width, samples).transpose(2, 0, 1)
    if colour == 3:
        if palette is None:
            raise PNGError("palette image without a palette")
        if int(pixels.max()) >= len(palette):
            raise PNGError("a palette index beyond the palette")
        pixels = palette[pixels[0]].transpose(2, 0, 1).astype(np.int64)
        return pixels, 255
    if colour in (4, 6):
        pixels = pixels[:-1]  # drop alpha
    return pixels, (1 << depth) - 1
