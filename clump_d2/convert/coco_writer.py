"""COCO JSON for clump datasets, and the conversion report that accounts for every input.

Every converter builds its output with :class:`CocoBuilder` and counts what it read with
:class:`ConversionReport`. A report holds one :class:`Tally` per kind of thing read (rows,
classifications, marks, subjects, boxes, clumps, images, ...); each thing read is either
kept or dropped for a named reason, so ``kept + sum(dropped) == read`` holds for every tally
(checked before anything is written).

Output conventions (shared by every converter):

* categories ``clump`` (id 1) and ``odd_clump`` (id 2);
* ``bbox`` is ``[x, y, w, h]`` in image pixels, continuous coordinates (pixel ``i`` spans
  ``[i, i + 1)``), origin at the top-left corner of the image;
* images without clumps are written too (they are real negatives);
* extra per-image and per-clump keys (galaxy id, PSF FWHM, volunteer counts, flux, RA/Dec,
  ...) sit beside the COCO keys and are kept by ``load_clump_json``;
* every file is written atomically (:func:`atomic_write_text`: a temporary file renamed over
  the target), so a kill or a full disk leaves the previous file intact, never a truncated one;
* an image ``file_name`` is a relative path that stays inside ``images/``
  (:func:`is_safe_relative_name`), whatever the input data says.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from clump_d2.data.files import naming_path, read_json
from clump_d2.structures import CATEGORIES

logger = logging.getLogger(__name__)

#: COCO categories of every clump dataset.
CATEGORY_IDS = {c["name"]: c["id"] for c in CATEGORIES}


class Tally:
    """Counts of one kind of input: ``read``, ``kept`` and ``dropped[reason]``.

    Extra named counters (e.g. ``clipped``: kept, but changed) go in ``notes``; they are
    sub-counts of ``kept`` or ``read`` and never enter the balance.
    """

    def __init__(self, name: str):
        self.name = name
        self.read = 0
        self.kept = 0
        self.dropped: Counter = Counter()
        self.notes: Counter = Counter()

    def add_read(self, n: int = 1) -> None:
        self.read += n

    def keep(self, n: int = 1) -> None:
        self.kept += n

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[reason] += n

    def note(self, what: str, n: int = 1) -> None:
        self.notes[what] += n

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def balanced(self) -> bool:
        return self.kept + self.n_dropped == self.read

    def as_dict(self) -> Dict[str, Any]:
        out = {"read": self.read, "kept": self.kept, "dropped": dict(sorted(self.dropped.items())),
               "dropped_total": self.n_dropped}
        if self.notes:
            out["notes"] = dict(sorted(self.notes.items()))
        return out


class ConversionReport:
    """What a converter read, kept and dropped (and why), plus its parameters."""

    def __init__(self, command: str, sources: Iterable[str | os.PathLike] = (),
                 params: Optional[Dict[str, Any]] = None):
        self.command = command
        self.sources = [os.fspath(s) for s in sources]
        self.params = dict(params or {})
        self.tallies: Dict[str, Tally] = {}
        self.info: Dict[str, Any] = {}

    def tally(self, name: str) -> Tally:
        """The tally called ``name`` (created on first use)."""
        if name not in self.tallies:
            self.tallies[name] = Tally(name)
        return self.tallies[name]

    def check(self) -> None:
        """Raise ``AssertionError`` if some tally does not balance (a converter bug)."""
        for t in self.tallies.values():
            if not t.balanced():
                raise AssertionError(
                    f"{self.command} report: {t.name} read {t.read} != kept {t.kept} + "
                    f"dropped {t.n_dropped} ({dict(t.dropped)})")

    def as_dict(self) -> Dict[str, Any]:
        return {"command": self.command, "sources": self.sources, "params": self.params,
                "counts": {k: t.as_dict() for k, t in self.tallies.items()}, **self.info}

    def log_summary(self) -> None:
        for t in self.tallies.values():
            logger.info("%s: %s read, %d kept, %d dropped %s", t.name, t.read, t.kept,
                        t.n_dropped, dict(t.dropped) if t.dropped else "")


class CocoBuilder:
    """Collects images and annotations and writes a clump COCO JSON."""

    def __init__(self, info: Optional[Dict[str, Any]] = None):
        self.images: List[Dict[str, Any]] = []
        self.annotations: List[Dict[str, Any]] = []
        self.info = dict(info or {})
        self._image_ids = set()

    def add_image(self, image_id: int, file_name: str, width: int, height: int,
                  **extra) -> Dict[str, Any]:
        """Add an image; ``image_id`` must be unique (a stable id from the source).

        Raises:
            ValueError: if ``file_name`` would leave the images folder (absolute, ``..``) or
                the size is not positive.
        """
        image_id = int(image_id)
        if not is_safe_relative_name(file_name):
            raise ValueError(f"image {image_id}: file name {file_name!r} is not a relative path "
                             "inside the images folder")
        if not (int(width) > 0 and int(height) > 0):
            raise ValueError(f"image {image_id} ({file_name}): size {width}x{height} is not "
                             "positive")
        if image_id in self._image_ids:
            raise ValueError(f"image id {image_id} ({file_name}) added twice")
        self._image_ids.add(image_id)
        record = {"id": image_id, "file_name": str(file_name), "width": int(width),
                  "height": int(height), **_jsonable(extra)}
        self.images.append(record)
        return record

    def add_box(self, image_id: int, bbox_xywh: List[float], category: str,
                **extra) -> Dict[str, Any]:
        """Add one clump box (XYWH, image pixels) of class ``category`` (clump/odd_clump)."""
        if int(image_id) not in self._image_ids:
            raise ValueError(f"box for unknown image id {image_id}")
        x, y, w, h = (float(v) for v in bbox_xywh)
        if not (w > 0 and h > 0) or not all(math.isfinite(v) for v in (x, y, w, h)):
            raise ValueError(f"box {bbox_xywh} of image {image_id} has non-positive or "
                             "non-finite size")
        ann = {"id": len(self.annotations) + 1, "image_id": int(image_id),
               "category_id": CATEGORY_IDS[category], "bbox": [x, y, w, h], "area": w * h,
               "iscrowd": 0, **_jsonable(extra)}
        self.annotations.append(ann)
        return ann

    def to_dict(self) -> Dict[str, Any]:
        return {"info": self.info, "images": self.images, "annotations": self.annotations,
                "categories": CATEGORIES}


def write_coco(coco: Dict[str, Any] | CocoBuilder, json_file: str | os.PathLike,
               report: Optional[ConversionReport] = None,
               report_file: Optional[str | os.PathLike] = None) -> Path:
    """Write ``coco`` to ``json_file`` and, if given, ``report`` beside it.

    The report goes to ``report_file`` (default: ``<json stem>.report.json`` next to the
    JSON); it is checked for balance first, so an unbalanced report never reaches disk.
    """
    if isinstance(coco, CocoBuilder):
        coco = coco.to_dict()
    json_file = Path(json_file)
    json_file.parent.mkdir(parents=True, exist_ok=True)
    if report is not None:
        report.check()
        report.info.setdefault("outputs", []).append(os.fspath(json_file))
        report_file = Path(report_file) if report_file else default_report_path(json_file)
        report_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json_file, coco_json_text(coco))
    logger.info("wrote %s: %d images (%d without clumps), %d boxes", json_file,
                len(coco["images"]), _n_empty(coco), len(coco["annotations"]))
    if report is not None:
        atomic_write_text(report_file, json.dumps(report.as_dict(), indent=2))
        logger.info("wrote report %s", report_file)
    return json_file


def coco_json_text(coco: Dict[str, Any]) -> str:
    """The compact JSON text of a COCO dict (as every converter writes it)."""
    return json.dumps(coco, indent=None, separators=(",", ":"))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` all or nothing (:func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` all or nothing.

    The bytes go to a temporary file beside ``path`` (same file system), are flushed to disk,
    and the file is renamed over ``path``: a kill or a full disk at any moment leaves either the
    old file or the new one, never a truncated one (a stale ``.<name>.tmp-<pid>`` at worst).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with naming_path(path):  # a full disk names the file it could not write
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (renames) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(os.fspath(folder), os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_safe_relative_name(name: Any) -> bool:
    """True if ``name`` is a non-empty relative path with no ``..`` part (so that
    ``folder / name`` stays inside ``folder``): names from input data must never point
    outside the dataset."""
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        return False
    parts = name.replace("\\", "/").split("/")
    return not (os.path.isabs(name) or name.startswith(("/", "\\")) or ".." in parts
                or (len(name) > 1 and name[1] == ":"))


def default_report_path(json_file: str | os.PathLike) -> Path:
    json_file = Path(json_file)
    return json_file.with_name(json_file.stem + ".report.json")


def read_coco(json_file: str | os.PathLike) -> Dict[str, Any]:
    """Read a COCO JSON, naming the file (and line, column) if it is not valid JSON."""
    json_file = Path(json_file)
    coco = read_json(json_file, "COCO file")
    for key in ("images", "annotations"):
        if not isinstance(coco, dict) or key not in coco:
            raise ValueError(f"{json_file}: not a COCO file (no {key!r} list)")
    return coco


def _n_empty(coco: Dict[str, Any]) -> int:
    with_boxes = {a["image_id"] for a in coco["annotations"]}
    return sum(im["id"] not in with_boxes for im in coco["images"])


def _jsonable(extra: Dict[str, Any]) -> Dict[str, Any]:
    """numpy scalars -> Python; NaN -> None (JSON has no NaN)."""
    out = {}
    for k, v in extra.items():
        if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
            v = v.item()
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out
