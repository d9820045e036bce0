"""Hostile image files written by hand, shared by the reader, converter, real-host and
catalogue tests: a PNG declaring any size with as many rows of pixel data as asked."""
import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def write_png(path, width: int, height: int, rows=None, value: int = 120,
              interlaced: bool = False) -> Path:
    """An 8-bit RGB PNG whose header declares ``width`` x ``height`` and whose (complete,
    valid) zlib stream holds only ``rows`` rows of pixels (default: all). ``rows=1`` with a
    12000 x 12000 header is the 115-byte "decompression bomb"; ``rows < height`` is a PNG with
    truncated pixel data, which Pillow reads with the missing rows black."""
    rows = height if rows is None else rows
    raw = b"".join(b"\x00" + bytes([value]) * (3 * width) for _ in range(rows))
    data = (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0,
                                          int(interlaced)))
            + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b""))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
