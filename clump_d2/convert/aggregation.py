"""Volunteers' point marks -> consensus clumps -> clump COCO JSON.

Algorithm, per subject (parameters in :class:`AggregationParams`, lengths in units of the
subject's PSF FWHM so that it works at any seeing and pixel scale):

1. Marks outside the image are dropped (``outside_image``), and so are marks within
   ``bulge_radius_fwhm`` of the galaxy centre (``bulge``: volunteers marking the bulge).
2. The remaining marks are clustered by agglomerative clustering (scikit-learn,
   ``linkage="average"``) cut at ``cluster_radius_fwhm``: two groups merge while their mean
   pairwise distance is below the cut, so marks of one clump (scatter ~ 0.1-0.3 FWHM) stay
   together and clumps one FWHM apart stay apart. Average linkage does not chain distinct
   clumps through stray marks as single linkage (DBSCAN) does.
3. A cluster is a consensus clump when the number of *distinct volunteers* with a mark in it
   is at least ``min_volunteers`` and at least ``min_volunteer_fraction`` of the subject's
   classifications (volunteers who marked nothing count in the denominator: they saw no clump
   there). Others are dropped (``too_few_volunteers``).
4. Its position is the median of its marks; its class is ``odd_clump`` when the fraction of
   its marks made with the odd-clump tool exceeds ``odd_tool_fraction`` (``mean_tool`` on the
   annotation), else ``clump``.
5. Its box is a square of side ``box_side_fwhm`` (2.5) x PSF FWHM around that position; the
   edge rule of :mod:`clump_d2.structures` applies (clip, or drop if the centre is outside).

The PSF FWHM of a subject comes from its metadata (``psf_key``) or the subject table, else
``default_psf_fwhm_px``; the galaxy centre from ``centre_x_key``/``centre_y_key``, else the
image centre.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from sklearn.cluster import AgglomerativeClustering
from tqdm import tqdm

from clump_d2.structures import BOX_SIDE_PER_FWHM, fit_box_to_frame, square_box, xyxy_to_xywh
from .coco_writer import CocoBuilder, ConversionReport, is_safe_relative_name
from .images import image_problem
from clump_d2.data.tables import read_table
from .zooniverse import Classification, ExportOptions, read_export

logger = logging.getLogger(__name__)


@dataclass
class AggregationParams:
    """Parameters of the mark aggregation (lengths in PSF FWHM of the subject)."""

    cluster_radius_fwhm: float = 1.0  # average-linkage cut: marks closer belong together
    min_volunteer_fraction: float = 0.3  # of the subject's classifications
    min_volunteers: int = 2  # never fewer distinct volunteers than this
    odd_tool_fraction: float = 0.5  # odd_clump when more than this fraction used tool 1
    bulge_radius_fwhm: float = 0.5  # marks this close to the galaxy centre are the bulge
    box_side_fwhm: float = BOX_SIDE_PER_FWHM  # Clump Scout box: 2.5 x PSF FWHM


@dataclass
class ConsensusClump:
    x: float
    y: float
    category: str
    n_volunteers: int
    volunteer_fraction: float
    n_marks: int
    mean_tool: float
    scatter_px: float  # RMS distance of the marks from the consensus position


def cluster_marks(xy: np.ndarray, radius_px: float) -> np.ndarray:
    """Cluster labels of points ``xy`` (N, 2): average linkage cut at ``radius_px``."""
    if len(xy) == 0:
        return np.zeros(0, dtype=int)
    if len(xy) == 1:
        return np.zeros(1, dtype=int)
    model = AgglomerativeClustering(n_clusters=None, distance_threshold=radius_px,
                                    linkage="average")
    return model.fit_predict(xy)


def aggregate_subject(xy: np.ndarray, tools: np.ndarray, volunteers: Sequence[str],
                      n_classifications: int, psf_fwhm_px: float,
                      params: AggregationParams) -> Tuple[List[ConsensusClump], int]:
    """Consensus clumps of one subject from its (already bounded) marks.

    Args:
        xy: (N, 2) mark positions in image pixels.
        tools: (N,) tool index of each mark (1 = odd clump).
        volunteers: (N,) who made each mark.
        n_classifications: classifications of the subject (the vote denominator).
        psf_fwhm_px: PSF FWHM in image pixels.
        params: the thresholds.

    Returns:
        ``(clumps, n_clusters)``: the kept clumps (sorted by y, then x) and the number of
        clusters found (kept + dropped for too few volunteers).
    """
    labels = cluster_marks(np.asarray(xy, dtype=float),
                           params.cluster_radius_fwhm * psf_fwhm_px)
    volunteers = np.asarray(volunteers)
    clumps = []
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    need = max(params.min_volunteers, params.min_volunteer_fraction * n_classifications)
    for k in range(n_clusters):
        member = labels == k
        n_vol = len(set(volunteers[member].tolist()))
        if n_vol < need - 1e-9:
            continue
        pts = xy[member]
        cx, cy = np.median(pts[:, 0]), np.median(pts[:, 1])
        mean_tool = float(np.mean(tools[member] == 1))
        clumps.append(ConsensusClump(
            x=float(cx), y=float(cy),
            category="odd_clump" if mean_tool > params.odd_tool_fraction else "clump",
            n_volunteers=n_vol, volunteer_fraction=n_vol / max(n_classifications, 1),
            n_marks=int(member.sum()), mean_tool=mean_tool,
            scatter_px=float(np.sqrt(np.mean(np.sum((pts - [cx, cy]) ** 2, axis=1))))))
    clumps.sort(key=lambda c: (c.y, c.x))
    return clumps, n_clusters


@dataclass
class SubjectOptions:
    """Where the per-subject facts come from (``subject_data`` keys or subject-table columns)."""

    subject_table: Optional[str] = None  # CSV/Parquet/FITS with one row per subject
    subject_id_column: str = "subject_id"  # its subject id column
    file_key: str = "file_name"  # image file name (relative to images/)
    file_template: str = "{subject_id}.png"  # used when file_key is absent
    psf_key: str = "psf_fwhm_px"  # PSF FWHM in image pixels
    default_psf_fwhm_px: Optional[float] = None  # used when psf_key is absent
    width_key: str = "width"  # image size, when the classification metadata lacks it
    height_key: str = "height"
    default_image_size: Tuple[int, int] = (400, 400)  # (width, height), the last resort
    centre_x_key: str = "centre_x"  # galaxy centre; default: the image centre
    centre_y_key: str = "centre_y"
    crop: Optional[Tuple[float, float, int, int]] = None  # (x0, y0, w, h): output in this crop
    min_classifications: int = 1  # subjects with fewer are dropped (too_few_classifications)


def convert_export(path: str | os.PathLike, export_options: Optional[ExportOptions] = None,
                   subject_options: Optional[SubjectOptions] = None,
                   params: Optional[AggregationParams] = None,
                   image_dir: Optional[str | os.PathLike] = None,
                   ) -> Tuple[CocoBuilder, ConversionReport]:
    """A Zooniverse classification export -> consensus clump boxes (see module docstring).

    Tallies in the report: ``classifications``, ``marks``, ``subjects``, ``clusters``
    (found -> kept as consensus clumps or dropped), ``boxes`` (edge rule).
    """
    export_options = export_options or ExportOptions()
    so = subject_options or SubjectOptions()
    params = params or AggregationParams()
    path = Path(path)
    if image_dir is not None and not Path(image_dir).is_dir():  # a typo would drop them all
        raise FileNotFoundError(f"image folder {image_dir} does not exist")
    report = ConversionReport(
        "export", [path] + ([so.subject_table] if so.subject_table else []),
        params={"export": _plain(export_options), "subjects": _plain(so),
                "aggregation": _plain(params),
                "image_dir": os.fspath(image_dir) if image_dir else None})
    classifications, subject_data, all_subjects = read_export(path, export_options, report)
    table = _subject_table(so) if so.subject_table else {}
    marks_t, subj_t = report.tally("marks"), report.tally("subjects")
    clus_t, box_t = report.tally("clusters"), report.tally("boxes")
    by_subject: Dict[str, List[Classification]] = {}
    for c in classifications:
        by_subject.setdefault(c.subject_id, []).append(c)
    coco = CocoBuilder(info={"description": f"consensus clumps aggregated from {path.name}",
                             "aggregation": _plain(params)})
    image_dir = Path(image_dir) if image_dir else None
    subj_t.add_read(len(all_subjects))
    subj_t.drop("no_usable_classification", len(all_subjects - set(by_subject)))
    for subject in tqdm(sorted(by_subject, key=int), desc="aggregating", disable=len(
            by_subject) < 500):
        cls = by_subject[subject]
        n_marks = sum(len(c.marks) for c in cls)
        meta = {**subject_data.get(subject, {}), **table.get(subject, {})}

        def drop_subject(reason: str, detail: str = "") -> None:
            subj_t.drop(reason)
            marks_t.drop("subject_dropped", n_marks)
            if detail:
                logger.warning("subject %s dropped (%s): %s", subject, reason, detail)

        if len(cls) < so.min_classifications:
            drop_subject("too_few_classifications")
            continue
        fwhm = _number(meta.get(so.psf_key), so.default_psf_fwhm_px)
        if fwhm is None or not fwhm > 0:
            drop_subject("missing_psf", f"no positive {so.psf_key!r} in its metadata and no "
                         "default PSF FWHM given")
            continue
        file_name = str(meta.get(so.file_key) or so.file_template.format(subject_id=subject))
        if not is_safe_relative_name(file_name):  # from the export: never leaves images/
            drop_subject("unsafe_file_name", f"image name {file_name!r} leaves the images folder")
            continue
        if image_dir is not None and not (image_dir / file_name).is_file():
            drop_subject("missing_image", f"{image_dir / file_name} not found")
            continue
        problem = image_problem(image_dir / file_name) if image_dir is not None else None
        if problem:  # 0-byte, truncated, text saved as .png: training would stop on it
            drop_subject("undecodable_image", f"{image_dir / file_name} {problem}")
            continue
        width, height = _image_size(cls, meta, so)
        cx = _number(meta.get(so.centre_x_key), width / 2.0)
        cy = _number(meta.get(so.centre_y_key), height / 2.0)
        xy, tools, vols = [], [], []
        for c in cls:
            for m in c.marks:
                if not (0.0 <= m.x < width and 0.0 <= m.y < height):
                    marks_t.drop("outside_image")
                elif math.hypot(m.x - cx, m.y - cy) < params.bulge_radius_fwhm * fwhm:
                    marks_t.drop("bulge")
                else:
                    marks_t.keep()
                    xy.append((m.x, m.y))
                    tools.append(m.tool)
                    vols.append(c.volunteer)
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        clumps, n_clusters = aggregate_subject(xy, np.asarray(tools), vols, len(cls), fwhm,
                                               params)
        clus_t.add_read(n_clusters)
        clus_t.keep(len(clumps))
        clus_t.drop("too_few_volunteers", n_clusters - len(clumps))
        frame_w, frame_h, ox, oy = width, height, 0.0, 0.0
        extra = {"galaxy_id": subject, "n_classifications": len(cls), "psf_fwhm_px": fwhm,
                 "galaxy_centre": [cx, cy]}
        if so.crop:
            ox, oy, frame_w, frame_h = so.crop
            extra["crop"] = [float(ox), float(oy), int(frame_w), int(frame_h)]
        coco.add_image(int(subject), file_name, frame_w, frame_h, **extra)
        subj_t.keep()
        for clump in clumps:
            box_t.add_read()
            side = params.box_side_fwhm * fwhm
            box = square_box(clump.x - ox, clump.y - oy, side)
            fitted, status = fit_box_to_frame(box, frame_w, frame_h,
                                              frame="crop" if so.crop else "image")
            if fitted is None:
                box_t.drop(status)
                continue
            if status == "clipped":
                box_t.note("clipped")
            attrs = {k: v for k, v in asdict(clump).items() if k not in ("category",)}
            attrs["x"], attrs["y"] = clump.x - ox, clump.y - oy
            coco.add_box(int(subject), xyxy_to_xywh(fitted), clump.category,
                         clipped=status == "clipped", **attrs)
            box_t.keep()
    report.check()
    return coco, report


def _subject_table(so: SubjectOptions) -> Dict[str, Dict[str, Any]]:
    df = read_table(so.subject_table)
    if so.subject_id_column not in df.columns:
        raise ValueError(f"{so.subject_table}: no column {so.subject_id_column!r}; columns are "
                         f"{list(df.columns)}")
    ids = df[so.subject_id_column].map(lambda v: str(int(v)) if isinstance(v, float) and
                                       float(v).is_integer() else str(v).strip())
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        lines = [int(i) + 2 for i in dup.index[:6]]
        raise ValueError(f"{so.subject_table}: duplicate subject id(s) {sorted(set(dup))[:3]} "
                         f"on lines {lines}; each subject must appear once")
    records = df.to_dict("records")
    return {sid: rec for sid, rec in zip(ids, records)}


def _image_size(cls: List[Classification], meta: Dict[str, Any], so: SubjectOptions):
    sizes = [c.natural_size for c in cls if c.natural_size]
    if sizes:  # the most common natural size reported by the volunteers' browsers
        return max(set(sizes), key=sizes.count)
    w, h = _number(meta.get(so.width_key)), _number(meta.get(so.height_key))
    if w and h:
        return int(w), int(h)
    return so.default_image_size


def _number(value, default=None):
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def _plain(obj) -> Dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(obj).items()}
