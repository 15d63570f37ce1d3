"""Reading a PNG screenshot with the standard library alone: its size and its pixels."""

import struct
import zlib
from typing import NamedTuple

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Bytes a pixel of each 8-bit colour type: grey, RGB, grey and alpha, RGBA.
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


class Image(NamedTuple):
    width: int
    height: int
    bpp: int
    rows: list

    def colours(self):
        """How many pixels of each colour the image has."""
        counts = {}
        for row in self.rows:
            for i in range(0, len(row), self.bpp):
                pixel = row[i:i + self.bpp]
                counts[pixel] = counts.get(pixel, 0) + 1
        return counts


def read_png(data):
    """The Image of an 8-bit, non-interlaced PNG, each row its pixels' bytes."""
    assert data.startswith(SIGNATURE), "not a PNG"
    pos, idat = len(SIGNATURE), []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in _CHANNELS and not interlace
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    bpp = _CHANNELS[colour]
    return Image(width, height, bpp,
                 _unfilter(zlib.decompress(b"".join(idat)), width, height, bpp))


def _unfilter(raw, width, height, bpp):
    """The rows with PNG's per-row filters (RFC 2083 6) undone."""
    stride = width * bpp
    rows, prior = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, row = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                row[i] = (row[i] + row[i - bpp]) & 0xFF
        elif kind == 2:
            row = bytearray((a + b) & 0xFF for a, b in zip(row, prior))
        elif kind == 3:
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + ((left + prior[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = row[i - bpp] if i >= bpp else 0
                b, c = prior[i], prior[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) \
                    & 0xFF
        rows.append(bytes(row))
        prior = row
    return rows
