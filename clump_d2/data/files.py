"""Files in and out, naming the file: JSON read with its line and column on error, and writes
whose ``OSError`` (a full disk, a read-only folder) names the path being written.

* :func:`read_json`: a JSON file; a syntax error names the file, line and column (and says
  when the file ends early, as a truncated download or a killed writer leaves it).
* :func:`json_list`: the list under a key of a JSON file, from ``FILE.json:KEY`` (the form of
  ``--ids-from``), naming the file and key when either is wrong.
* :func:`naming_path`: a context manager around a write; an ``OSError`` inside it is raised
  again with the path in its message and its ``errno`` kept. ``OSError(ENOSPC)`` from a
  ``write`` or a library (pyarrow, astropy) does not say which file it was writing, and a
  user with many outputs cannot tell which disk is full.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """The parsed content of the JSON file ``path``.

    Raises:
        FileNotFoundError: naming ``what`` and ``path``.
        ValueError: not valid JSON, naming the file, line and column.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} {path}: not a text file ({e.reason} at byte {e.start})") \
            from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        ends_early = e.pos >= len(e.doc.rstrip()) or e.msg.startswith("Unterminated")
        raise ValueError(f"{path}: not valid JSON at line {e.lineno} column {e.colno} "
                         f"({e.msg})" + ("; the file ends early (truncated?)" if ends_early
                                         else "")) from e


def json_list(spec: str) -> List[Any]:
    """The list at ``KEY`` of the JSON object in ``FILE``, from ``"FILE:KEY"``.

    Raises:
        ValueError: no ``:KEY``, invalid JSON (file, line, column), or no list at ``KEY``
            (naming the file and the keys it has).
    """
    path, sep, key = spec.rpartition(":")
    if not sep or not path or not key:
        raise ValueError(f"{spec!r}: expected FILE.json:KEY")
    data = read_json(path)
    if not isinstance(data, dict) or key not in data:
        keys = sorted(data)[:20] if isinstance(data, dict) else f"a {type(data).__name__}"
        raise ValueError(f"{path}: no key {key!r} (the file holds {keys})")
    if not isinstance(data[key], list):
        raise ValueError(f"{path}: key {key!r} holds a {type(data[key]).__name__}, not a list")
    return data[key]


@contextmanager
def naming_path(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise an ``OSError`` of the block with ``path`` in the message (``errno`` kept, so
    ``e.errno == errno.ENOSPC`` still holds); one that already names it passes unchanged."""
    try:
        yield
    except OSError as e:
        where = os.fspath(path)
        if where in str(e):
            raise
        reason = e.strerror or str(e) or type(e).__name__
        if e.errno is None:
            raise OSError(f"cannot write {where}: {reason}") from e
        raise OSError(e.errno, f"cannot write {where}: {reason}") from e
