"""Damage a saved checkpoint the way a bad disk or transfer does (shared by the checkpoint and
batch-evaluation tests)."""
import struct
import zipfile
from pathlib import Path


def flip_tensor_bytes(path, n_bytes: int = 4096) -> str:
    """Invert ``n_bytes`` bytes of the largest tensor stored in a ``torch.save`` file (a zip of
    uncompressed records) in place, leaving the archive readable; returns the record's name."""
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename),
                   key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    # A local file header is 30 bytes, then the name and the extra field, then the data.
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:
                                                     info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    for i in range(start, start + min(n_bytes, info.file_size)):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    return info.filename
