"""Consensus tables (one row per consensus clump box) -> clump COCO JSON.

The form of ``clumpscout_frcnn_labels/`` (Popp et al. 2024): columns ``image_id`` (the
Zooniverse subject id), ``local_ids`` (the PNG's file stem), ``label`` (1 clump, 2 odd clump)
and box corners ``x1, x2, y1, y2`` in pixels of the 200x200 centre crop (``[100:300,
100:300]``) of the 400x400 Clump Scout PNG. Every column name, the label values, the crop
and the image size are options (:class:`ConsensusOptions`).

Output frame (``frame``):

* ``"crop"`` (default, as the paper's detector): boxes stay in crop pixels, the image
  record is ``crop_size`` large and carries ``crop: [x0, y0, w, h]`` so the mapper cuts the
  crop out of the full PNG when it reads it;
* ``"full"``: boxes are shifted by the crop offset into the full PNG's pixels.

Images (when ``image_dir`` is given) must exist (else ``missing_image``) and decode (else
``undecodable_image``: 0-byte, truncated, text saved as .png); either drops the image with its
boxes, counted. Subject ids must be all numeric (they become the image ids) or all text.

Edge rule (see :mod:`clump_d2.structures`): a box whose centre lies outside the frame is
dropped (``centre_outside_crop``), a box crossing the edge is clipped to it (noted as
``clipped``). Images left without boxes are kept: in the crop they are negatives.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from clump_d2.structures import BOX_SIDE_PER_FWHM, fit_box_to_frame, xyxy_to_xywh
from .coco_writer import CocoBuilder, ConversionReport, is_safe_relative_name
from .images import image_problem
from clump_d2.data.tables import read_table

logger = logging.getLogger(__name__)


@dataclass
class ConsensusOptions:
    """Column names and geometry of a consensus table."""

    subject_column: str = "image_id"  # stable unique id of the subject (becomes the image id)
    image_key_column: str = "local_ids"  # names the image file through ``file_template``
    label_column: str = "label"
    x1_column: str = "x1"
    x2_column: str = "x2"
    y1_column: str = "y1"
    y2_column: str = "y2"
    # label value -> class; anything else is dropped as unknown_label
    labels: Dict[str, str] = field(default_factory=lambda: {"1": "clump", "2": "odd_clump"})
    file_template: str = "{image_key}.png"  # image file name, relative to images/
    image_size: Tuple[int, int] = (400, 400)  # (width, height) of the full image
    crop_offset: Tuple[float, float] = (100.0, 100.0)  # (x0, y0) of the crop in the full image
    crop_size: Tuple[int, int] = (200, 200)  # (width, height) of the crop the boxes refer to
    frame: str = "crop"  # "crop" or "full": pixel frame of the output boxes
    # Columns copied onto each annotation (None: every column not used above, except the
    # authors' local file path and the label text).
    extra_columns: Optional[Sequence[str]] = None
    on_bad_row: str = "drop"  # "drop" (counted, logged with file and row) or "error"


def convert_consensus_tables(tables: Dict[str, str | os.PathLike],
                             options: Optional[ConsensusOptions] = None,
                             image_dir: Optional[str | os.PathLike] = None,
                             ) -> Dict[str, Tuple[CocoBuilder, ConversionReport]]:
    """Convert one table per split (``{"train": path, "val": path}``).

    A subject present in two tables is an error (it would leak between splits).

    Args:
        tables: split name -> table file (CSV, TSV or Parquet).
        options: column names and geometry.
        image_dir: if given, each image must exist there; images that do not are dropped
            (``missing_image``) with their boxes.

    Returns:
        split name -> (COCO builder, report).
    """
    options = options or ConsensusOptions()
    _require_folder(image_dir)
    seen: Dict[str, str] = {}
    out = {}
    for split, path in tables.items():
        coco, report = convert_consensus_table(path, options, image_dir=image_dir)
        for im in coco.images:
            other = seen.get(im["galaxy_id"])
            if other is not None:
                raise ValueError(f"subject {im['galaxy_id']} is in both {other} and {path}; "
                                 "a galaxy must belong to one split only")
            seen[im["galaxy_id"]] = os.fspath(path)
        out[split] = (coco, report)
    return out


def convert_consensus_table(path: str | os.PathLike, options: Optional[ConsensusOptions] = None,
                            image_dir: Optional[str | os.PathLike] = None,
                            ) -> Tuple[CocoBuilder, ConversionReport]:
    """Convert one consensus table (see the module docstring for the rules)."""
    options = options or ConsensusOptions()
    _require_folder(image_dir)
    if options.frame not in ("crop", "full"):
        raise ValueError(f"frame must be 'crop' or 'full', not {options.frame!r}")
    path = Path(path)
    df = read_table(path)
    o = options
    needed = [o.subject_column, o.image_key_column, o.label_column, o.x1_column, o.x2_column,
              o.y1_column, o.y2_column]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; columns are {list(df.columns)}")
    used = set(needed) | {"filename", "label_text"}
    extra = [c for c in (o.extra_columns if o.extra_columns is not None else df.columns)
             if c not in used]
    report = ConversionReport("consensus", [path], params=_params(o, image_dir))
    boxes_t, images_t = report.tally("boxes"), report.tally("images")
    labels = {str(k): v for k, v in o.labels.items()}

    def bad(row: int, reason: str, detail: str) -> None:
        msg = f"{path}: row {row + 1} (line {row + 2}): {detail}"  # 1-based; line 1 = header
        if o.on_bad_row == "error":
            raise ValueError(msg)
        boxes_t.drop(reason)
        logger.warning("%s; dropped (%s)", msg, reason)

    # Group rows by subject, checking that a subject names one image only.
    boxes_t.add_read(len(df))
    subjects: Dict[str, Dict] = {}
    for row, rec in enumerate(df[needed + extra].itertuples(index=False, name=None)):
        subject, key, label, x1, x2, y1, y2 = rec[:7]
        if _missing(subject) or _missing(key):
            bad(row, "missing_id", f"no subject id or image key ({subject!r}, {key!r})")
            continue
        subject, key = _as_key(subject), _as_key(key)
        entry = subjects.setdefault(subject, {"key": key, "rows": []})
        if entry["key"] != key:
            raise ValueError(f"{path}: row {row + 1} (line {row + 2}): subject {subject} names "
                             f"image {key!r}, but an earlier row named {entry['key']!r}")
        entry["rows"].append((row, _as_key(label), (x1, y1, x2, y2), rec[7:]))
    _check_id_kinds(subjects, path, o.subject_column)

    width, height = (o.crop_size if o.frame == "crop" else o.image_size)
    dx, dy = (0.0, 0.0) if o.frame == "crop" else o.crop_offset
    coco = CocoBuilder(info={"description": f"Clump Scout consensus boxes from {path.name}",
                             "frame": o.frame})
    image_dir = Path(image_dir) if image_dir is not None else None
    for subject in tqdm(sorted(subjects, key=_sort_key), desc=f"consensus {path.name}",
                        disable=len(subjects) < 2000):
        entry = subjects[subject]
        images_t.add_read()
        file_name = o.file_template.format(image_key=entry["key"], subject=subject)
        if not is_safe_relative_name(file_name):  # e.g. local_ids "../../x": never followed
            detail = (f"{path}: subject {subject}: image name {file_name!r} leaves the images "
                      "folder")
            if o.on_bad_row == "error":
                raise ValueError(detail)
            images_t.drop("unsafe_file_name")
            boxes_t.drop("unsafe_file_name", len(entry["rows"]))
            logger.warning("%s; dropped with its %d boxes", detail, len(entry["rows"]))
            continue
        if image_dir is not None and not (image_dir / file_name).is_file():
            images_t.drop("missing_image")
            boxes_t.drop("missing_image", len(entry["rows"]))
            logger.warning("%s: subject %s: image %s not found; dropped with its %d boxes",
                           path, subject, image_dir / file_name, len(entry["rows"]))
            continue
        problem = image_problem(image_dir / file_name) if image_dir is not None else None
        if problem:
            images_t.drop("undecodable_image")
            boxes_t.drop("undecodable_image", len(entry["rows"]))
            logger.warning("%s: subject %s: image %s %s; dropped with its %d boxes", path,
                           subject, image_dir / file_name, problem, len(entry["rows"]))
            continue
        numbers = [tuple(_float(v) for v in b) for _, _, b, _ in entry["rows"]]
        sides = [abs(b[2] - b[0]) for b in numbers if all(math.isfinite(v) for v in b)]
        side = float(np.median(sides)) if sides else None
        extra_image = {"galaxy_id": subject, "image_key": entry["key"],
                       "box_side_px": side,
                       "psf_fwhm_px": side / BOX_SIDE_PER_FWHM if side else None}
        if o.frame == "crop":
            extra_image["crop"] = [float(o.crop_offset[0]), float(o.crop_offset[1]),
                                   int(o.crop_size[0]), int(o.crop_size[1])]
        image_id = int(subject) if subject.isdigit() else images_t.read
        coco.add_image(image_id, file_name, width, height, **extra_image)
        images_t.keep()
        seen_boxes = set()
        for row, label, (x1, y1, x2, y2), extras in entry["rows"]:
            category = labels.get(label)
            if category is None:
                bad(row, "unknown_label", f"label {label!r} is not one of {sorted(labels)}")
                continue
            text = [c for c, v in zip((o.x1_column, o.y1_column, o.x2_column, o.y2_column),
                                      (x1, y1, x2, y2)) if _float(v, None) is None]
            if text:
                bad(row, "nan_coordinates", f"column {text[0]!r}: box ({x1}, {y1}, {x2}, "
                    f"{y2}) is not numeric")
                continue
            box = tuple(float(v) + s for v, s in zip((x1, y1, x2, y2), (dx, dy, dx, dy)))
            fitted, status = fit_box_to_frame(box, width, height, frame=o.frame)
            if fitted is None:
                if status in ("nan_coordinates", "non_positive_size"):
                    bad(row, status, f"box x1,y1,x2,y2 = {box} is unusable ({status})")
                else:  # the edge rule: an expected, counted drop, not a data error
                    boxes_t.drop(status)
                continue
            if box in seen_boxes:
                bad(row, "duplicate_box", f"box {box} repeats an earlier row of subject "
                    f"{subject}")
                continue
            seen_boxes.add(box)
            attrs = {c: v for c, v in zip(extra, extras)}
            attrs["source_row"] = row
            if status == "clipped":
                attrs["clipped"] = True
                boxes_t.note("clipped")
            coco.add_box(image_id, xyxy_to_xywh(fitted), category, **attrs)
            boxes_t.keep()
    report.info["images_without_boxes"] = images_t.kept - len(
        {a["image_id"] for a in coco.annotations})
    report.info["boxes_per_image_read"] = _per_image_range(subjects)
    report.check()
    return coco, report


def _float(v, default=float("nan")):
    """``float(v)``; ``default`` for text that is not a number (NaN stays NaN)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def _check_id_kinds(subjects: Dict[str, Dict], path: Path, column: str) -> None:
    """Numeric subject ids are the image ids; text ones get running numbers. Both in one
    table could give two images one id: an error naming a row of each kind."""
    numeric = [s for s in subjects if s.isdigit()]
    if numeric and len(numeric) < len(subjects):
        text = next(s for s in subjects if not s.isdigit())
        rows = [subjects[s]["rows"][0][0] for s in (text, numeric[0])]
        raise ValueError(f"{path}: column {column!r} mixes text ids ({text!r}, row {rows[0] + 1},"
                         f" line {rows[0] + 2}) and numeric ids ({numeric[0]!r}, row "
                         f"{rows[1] + 1}, line {rows[1] + 2}); subject ids must be all numbers or "
                         "all text")


def _require_folder(image_dir) -> None:
    """A given image folder must exist: a mistyped one would drop every image."""
    if image_dir is not None and not Path(image_dir).is_dir():
        raise FileNotFoundError(f"image folder {image_dir} does not exist")


def _per_image_range(subjects: Dict[str, Dict]) -> List[int]:
    n = [len(e["rows"]) for e in subjects.values()]
    return [min(n), max(n)] if n else [0, 0]


def _params(o: ConsensusOptions, image_dir) -> Dict:
    d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in o.__dict__.items()}
    d["image_dir"] = os.fspath(image_dir) if image_dir is not None else None
    return d


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and
                                                                      not v.strip())


def _as_key(v) -> str:
    """Ids as text, without a spurious ``.0`` from a float column."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (np.integer,)):
        return str(int(v))
    return str(v).strip()


def _sort_key(subject: str):
    return (0, int(subject), "") if subject.isdigit() else (1, 0, subject)
