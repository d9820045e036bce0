"""Read a raw Zooniverse (Panoptes) classification export: CSV rows with JSON columns.

Columns used (the layout every Panoptes project exports, e.g.
``zooniverse_export_sample/cls_export.csv``): ``classification_id``, ``user_name``,
``user_id``, ``workflow_id``, ``metadata`` (JSON; ``subject_dimensions[frame]`` gives the
natural image size), ``annotations`` (JSON list of ``{task, value}``; for a drawing task
``value`` is a list of point marks ``{x, y, tool, frame, ...}`` in natural-image pixels, and
an empty list means "nothing marked"), ``subject_data`` (JSON ``{subject_id: metadata}``) and
``subject_ids``.

What this module does is parse and validate, row by row; it never clusters. Every row and
every mark is counted in the report: kept, or dropped for a reason (``malformed_json``,
``other_workflow``, ``duplicate_classification``, ``repeat_volunteer``, ``unknown_tool``,
``other_frame``, ``nan_coordinates``, ``malformed_mark``, ``bad_natural_size``: a
``naturalWidth``/``naturalHeight`` that is not a positive whole number). With
``on_bad_row="error"`` a malformed row raises ``ValueError`` naming the file and line instead.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from .coco_writer import ConversionReport
from clump_d2.data.tables import read_table

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("classification_id", "annotations", "subject_ids")


@dataclass
class ExportOptions:
    """Which rows and marks of an export count."""

    workflow_id: Optional[int] = None  # keep only this workflow (None: every workflow)
    task: Optional[str] = None  # drawing task key, e.g. "T0" (None: every task with point marks)
    # tool index -> class; Clump Scout: tool 0 = clump, tool 1 = odd clump
    tools: Dict[int, str] = field(default_factory=lambda: {0: "clump", 1: "odd_clump"})
    frame: int = 0  # subject frame the marks must be on
    on_bad_row: str = "drop"  # "drop" (counted + logged) or "error"


@dataclass
class Mark:
    x: float
    y: float
    tool: int


@dataclass
class Classification:
    """One volunteer's classification of one subject, after validation."""

    classification_id: str
    subject_id: str
    volunteer: str
    marks: List[Mark]
    natural_size: Optional[Tuple[int, int]]  # (width, height) from metadata, if given
    line: int  # line of the CSV (1-based, header = 1), for messages


def read_export(path: str | os.PathLike, options: Optional[ExportOptions] = None,
                report: Optional[ConversionReport] = None,
                ) -> Tuple[List[Classification], Dict[str, Dict[str, Any]], set]:
    """Parse and validate a classification export.

    Returns:
        ``(classifications, subject_data, all_subjects)``: the usable classifications (at
        most one per volunteer and subject, the first), the merged ``subject_data`` metadata
        per subject id, and every subject id seen in any row (for the subject count).
    """
    options = options or ExportOptions()
    path = Path(path)
    report = report or ConversionReport("export", [path])
    cls_t, marks_t = report.tally("classifications"), report.tally("marks")
    # Read every column as text: ids must not become floats, JSON must stay verbatim.
    df = read_table(path, dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; is this a Zooniverse "
                         f"classification export? Columns: {list(df.columns)}")
    tools = {int(k): v for k, v in options.tools.items()}
    out: List[Classification] = []
    subject_data: Dict[str, Dict[str, Any]] = {}
    all_subjects: set = set()
    seen_ids: set = set()
    seen_pairs: set = set()

    def bad(line: int, reason: str, detail: str, tally=cls_t) -> None:
        msg = f"{path}: line {line}: {detail}"
        if options.on_bad_row == "error":
            raise ValueError(msg)
        tally.drop(reason)
        logger.warning("%s; dropped (%s)", msg, reason)

    for index, row in enumerate(tqdm(df.to_dict("records"), desc=f"reading {path.name}",
                                     disable=len(df) < 5000)):
        line = index + 2  # header is line 1 (true for exports without embedded newlines)
        cls_t.add_read()
        subject = str(row["subject_ids"]).strip()
        if subject:
            all_subjects.add(subject)
        if not subject.isdigit():
            bad(line, "bad_subject_id", f"subject_ids {row['subject_ids']!r} is not one id")
            continue
        if options.workflow_id is not None and str(row.get("workflow_id", "")).strip() != str(
                options.workflow_id):
            cls_t.drop("other_workflow")
            continue
        cid = str(row["classification_id"]).strip()
        if cid in seen_ids:
            bad(line, "duplicate_classification", f"classification_id {cid} repeats")
            continue
        try:
            annotations = json.loads(row["annotations"])
            metadata = json.loads(row["metadata"]) if row.get("metadata") else {}
            sdata = json.loads(row["subject_data"]) if row.get("subject_data") else {}
            if not isinstance(annotations, list):
                raise ValueError("annotations is not a JSON list")
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            bad(line, "malformed_json", f"classification {cid}: malformed JSON ({e})")
            continue
        seen_ids.add(cid)
        volunteer = _volunteer(row)
        if (volunteer, subject) in seen_pairs:
            # A volunteer who sees a subject twice must not vote twice for its clumps.
            cls_t.drop("repeat_volunteer")
            continue
        seen_pairs.add((volunteer, subject))
        if isinstance(sdata, dict):
            for sid, meta in sdata.items():
                if isinstance(meta, dict):
                    subject_data.setdefault(str(sid), {}).update(
                        {k: v for k, v in meta.items() if k != "retired"})
        try:
            natural_size = _natural_size(metadata, options.frame)
        except ValueError as e:
            bad(line, "bad_natural_size", f"classification {cid}: column 'metadata': {e}")
            continue
        marks = _marks(annotations, options, tools, marks_t, path, line)
        out.append(Classification(cid, subject, volunteer, marks, natural_size, line))
        cls_t.keep()
    return out, subject_data, all_subjects


def _marks(annotations: Sequence[Any], options: ExportOptions, tools: Dict[int, str],
           marks_t, path: Path, line: int) -> List[Mark]:
    marks = []
    for task in annotations:
        if not isinstance(task, dict):
            continue
        if options.task is not None and task.get("task") != options.task:
            continue
        value = task.get("value")
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            continue  # a question task (text answer), not a drawing task
        if options.task is None and value and not any("x" in v for v in value):
            continue
        for mark in value:
            marks_t.add_read()
            try:
                x, y = float(mark["x"]), float(mark["y"])
                tool = int(mark.get("tool", 0))
                frame = int(mark.get("frame", 0) or 0)
            except (KeyError, TypeError, ValueError):
                marks_t.drop("malformed_mark")
                logger.warning("%s: line %d: malformed mark %r; dropped", path, line, mark)
                continue
            if not (math.isfinite(x) and math.isfinite(y)):
                marks_t.drop("nan_coordinates")
                continue
            if tool not in tools:
                marks_t.drop("unknown_tool")
                logger.warning("%s: line %d: unknown tool id %d (known: %s); mark dropped",
                               path, line, tool, sorted(tools))
                continue
            if frame != options.frame:
                marks_t.drop("other_frame")
                continue
            marks.append(Mark(x, y, tool))
            # "kept" for marks is decided by the aggregator (image bounds, bulge).
    return marks


def _volunteer(row: Dict[str, str]) -> str:
    """Logged-in volunteers by user id; others by their per-session name (or IP hash)."""
    for key in ("user_id", "user_name", "user_ip"):
        value = str(row.get(key, "")).strip()
        if value and value.lower() != "nan":
            return f"{key}:{value}"
    return f"classification:{row['classification_id']}"


def _natural_size(metadata: Dict[str, Any], frame: int) -> Optional[Tuple[int, int]]:
    """(naturalWidth, naturalHeight) of the frame, None if not given.

    Raises:
        ValueError: a size that is not a positive whole number (naming the key).
    """
    dims = metadata.get("subject_dimensions") if isinstance(metadata, dict) else None
    if isinstance(dims, list) and len(dims) > frame and isinstance(dims[frame], dict):
        w, h = dims[frame].get("naturalWidth"), dims[frame].get("naturalHeight")
        if not w or not h:  # absent, or 0 (the browser had not loaded the image): unknown
            return None
        size = []
        for key, v in (("naturalWidth", w), ("naturalHeight", h)):
            try:
                number = float(v)
            except (TypeError, ValueError):
                number = float("nan")
            if not (math.isfinite(number) and number >= 1 and number.is_integer()):
                raise ValueError(f"subject_dimensions[{frame}].{key} = {v!r} is not a positive "
                                 "whole number of pixels")
            size.append(int(number))
        return size[0], size[1]
    return None
