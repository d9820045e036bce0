"""Pictures to check a detector by eye: truth and predictions side by side, with Detectron2's
``Visualizer``, for chosen galaxies, the worst ones, or a random sample; and a contact sheet.

* Truth comes from a registered dataset (``DatasetCatalog``).
* Predictions come from a model, a COCO results JSON (``coco_instances_results.json`` of
  ``COCOEvaluator``), or a clump catalogue written by ``tools/predict_catalog.py``. A model's
  predictions are exactly the detections the evaluator counts: its raw output through the
  evaluation loader (:func:`clump_d2.engine.predict_on_dataset`) at the operating point
  ``TEST.CLUMP_EVAL.SCORE_THRESH``, *not* post-processed (a catalogue is: NMS, PSF merging,
  bulge flag). COCO results are cut at the same threshold; a catalogue is drawn as it is.
* Predictions are matched to the truth with the evaluator's own class-agnostic one-to-one
  matching (:func:`clump_d2.evaluation.metrics.match_masks`, criterion
  ``MatchCriterion.from_config(cfg)``), so a panel's found / missed / false counts are the
  evaluator's for that galaxy: matched boxes are drawn green, missed clumps and false
  positives red. "Worst" galaxies are those with the most missed clumps (``worst-missed``)
  or false positives (``worst-fp``).
* Catalogue detections flagged giant (its ``is_giant_<p>pct`` column of the lowest threshold,
  or the one named) are drawn in blue (matched) or orange (false) instead of green / red and
  labelled ``giant``.
* FITS images are shown through a display stretch (Lupton asinh by default) to RGB uint8,
  reddest band as red.

Each panel PNG is ``[title bar; truth | gap | predictions]``: ``TITLE_HEIGHT + H*scale`` rows
by ``2*W*scale + GAP`` columns.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils.visualizer import Visualizer, _create_text_labels
from matplotlib.patches import Rectangle
from PIL import Image, ImageDraw

from clump_d2.data.fits_io import FitsReadOptions, read_fits_for_network
from clump_d2.data.image_io import DEFAULT_MAX_PIXELS, read_display_image, reads_as_fits
from clump_d2.data.mapper import crop_image
from clump_d2.engine import build_model_for_inference, predict_on_dataset
from clump_d2.evaluation.matching import MatchCriterion, as_boxes
from clump_d2.evaluation.clump_evaluation import IgnoreRule, truth_from_dicts
from clump_d2.evaluation.metrics import match_masks_ignoring

from .catalogue import read_table

logger = logging.getLogger(__name__)

TITLE_HEIGHT = 18  # px of the caption above each panel
GAP = 4  # px between the truth and the prediction images
MATCHED_COLOUR = (0.1, 0.85, 0.1)
UNMATCHED_COLOUR = (1.0, 0.15, 0.15)
GIANT_MATCHED_COLOUR = (0.1, 0.45, 1.0)  # a detection flagged giant, matched
GIANT_UNMATCHED_COLOUR = (1.0, 0.6, 0.0)  # a detection flagged giant, false
IGNORED_COLOUR = (0.6, 0.6, 0.6)  # an ignore region, and a detection on one (neither)
SELECTIONS = ("worst-missed", "worst-fp", "random", "first", "ids")


@dataclass
class GalaxyPredictions:
    """Predicted boxes (XYXY), scores and contiguous classes of one galaxy; ``giant``: the
    catalogue's giant flag per detection (None: not known)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    giant: Optional[np.ndarray] = None

    @classmethod
    def empty(cls) -> "GalaxyPredictions":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))


@dataclass
class Panel:
    """One galaxy's picture and what was drawn on it."""

    galaxy_id: str
    image: np.ndarray  # (H, W, 3) uint8, the whole panel (title + both sides)
    truth_vis: object  # detectron2 VisImage of the truth side
    pred_vis: object  # VisImage of the prediction side
    n_true: int
    n_det: int
    n_matched: int
    labels: Dict[str, List[str]] = field(default_factory=dict)
    n_on_ignored: int = 0  # detections on ignore regions: neither matched nor false

    @property
    def n_missed(self) -> int:
        return self.n_true - self.n_matched

    @property
    def n_false(self) -> int:
        return self.n_det - self.n_matched - self.n_on_ignored


# --- images ------------------------------------------------------------------------------------


def _to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 2:
        image = np.concatenate([image, image.mean(axis=2, keepdims=True)], axis=2)
    elif image.shape[2] > 3:
        image = image[:, :, :3]
    if image.dtype != np.uint8:
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def display_image(record: Dict, bands: Sequence[str] = ("g", "r", "i"),
                  stretch: str = "lupton", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The record's image as RGB uint8 for display (cut to its ``crop`` if any); an image
    declaring more than ``max_pixels`` (``INPUT.MAX_PIXELS``) is refused before decoding.

    PNG/JPEG are read as RGB. FITS bands (as ``clump_d2.data.fits_io`` reads them, in
    ``bands`` order, bluest first) go through ``stretch`` (``clump_d2.data.stretch``) and are
    shown reddest band as red.
    """
    file_name = os.fspath(record["file_name"])
    band_files = record.get("band_files")
    if reads_as_fits(file_name, band_files):
        options = FitsReadOptions(bands=tuple(bands), stretch=stretch, output_scale=255.0,
                                  expected_channels=None, max_pixels=int(max_pixels))
        image = read_fits_for_network(file_name, options, band_files=band_files)
        image = image[:, :, ::-1]  # g, r, i -> shown as B, G, R
    else:
        # 16-bit: scaled as the network sees it
        image = read_display_image(file_name, "RGB", int(max_pixels))
    if record.get("crop"):
        image = crop_image(image, record["crop"], file_name)
    return _to_rgb_uint8(image)


# --- truth and predictions ---------------------------------------------------------------------


def truth_boxes(record: Dict, rule: Optional[IgnoreRule] = None) -> tuple:
    """(boxes XYXY, classes, ignore mask) of a dataset dict's clumps, exactly as the evaluator
    sees them (:func:`~clump_d2.evaluation.clump_evaluation.truth_from_dicts`): ``iscrowd``
    clumps and those the ``rule`` (``TEST.CLUMP_EVAL.IGNORE_*``) names are ignore regions."""
    t = truth_from_dicts([record], rule or IgnoreRule())[record["image_id"]]
    return as_boxes(t["boxes"]), np.asarray(t["classes"], np.int64), np.asarray(t["ignore"], bool)


def _keys(record: Dict) -> List[str]:
    """Names a galaxy may carry in predictions: its image id, its path, its file stem."""
    file_name = os.fspath(record.get("file_name", ""))
    keys = [str(record.get("image_id", "")), os.path.normpath(file_name)]
    stem = Path(file_name).name
    for suffix in (".gz", ".fz"):
        stem = stem[: -len(suffix)] if stem.endswith(suffix) else stem
    keys.append(Path(stem).stem)
    return [k for k in keys if k]


def _by_record(records: Sequence[Dict], found: Dict[str, GalaxyPredictions]
               ) -> Dict[str, GalaxyPredictions]:
    """Predictions per image id of ``records``, looked up by image id, path or file stem."""
    out = {}
    for record in records:
        pred = next((found[k] for k in _keys(record) if k in found), GalaxyPredictions.empty())
        out[str(record["image_id"])] = pred
    return out


def giant_column(columns: Sequence[str], wanted: Optional[str] = None) -> Optional[str]:
    """The catalogue's giant-flag column to draw: ``wanted`` if given, else the
    ``is_giant_<p>pct`` of the lowest threshold; None when the catalogue has none.

    Raises:
        ValueError: ``wanted`` is not a column.
    """
    if wanted:
        if wanted not in columns:
            raise ValueError(f"catalogue has no giant-flag column {wanted!r}")
        return wanted
    flags = [c for c in columns if c.startswith("is_giant_") and c.endswith("pct")]

    def pct(name: str) -> float:
        try:
            return float(name[len("is_giant_"):-len("pct")].replace("p", "."))
        except ValueError:
            return math.inf

    return min(flags, key=pct) if flags else None


def predictions_from_catalogue(path, records: Sequence[Dict], class_names: Sequence[str],
                               giant_flag: Optional[str] = None
                               ) -> Dict[str, GalaxyPredictions]:
    """Predictions per image id from a clump catalogue (``tools/predict_catalog.py``);
    galaxies are matched by id, path or file stem. ``giant`` comes from
    :func:`giant_column` (``giant_flag``)."""
    cat = read_table(path)
    cat = cat[cat["clump_id"] > 0]
    flag = giant_column(list(cat.columns), giant_flag)
    found: Dict[str, GalaxyPredictions] = {}
    for gid, g in cat.groupby("galaxy_id", sort=False):
        pred = GalaxyPredictions(g[["x1", "y1", "x2", "y2"]].to_numpy(np.float64),
                                 g["score"].to_numpy(np.float64),
                                 g["class_id"].to_numpy(np.int64),
                                 g[flag].to_numpy(bool) if flag else None)
        found[str(gid)] = pred
        file_name = str(g["file_name"].iloc[0])
        if file_name:
            found.setdefault(os.path.normpath(file_name), pred)
    return _by_record(records, found)


def predictions_from_coco_results(path, records: Sequence[Dict], dataset_name: str,
                                  score_thresh: float = 0.0) -> Dict[str, GalaxyPredictions]:
    """Predictions per image id from a COCO results JSON (``[{image_id, category_id, bbox
    (XYWH), score}, ...]``), keeping scores >= ``score_thresh``."""
    results = json.loads(Path(path).read_text())
    meta = MetadataCatalog.get(dataset_name)
    id_map = getattr(meta, "thing_dataset_id_to_contiguous_id", None) or {}
    grouped: Dict[str, list] = {}
    for r in results:
        if r["score"] >= score_thresh:
            grouped.setdefault(str(r["image_id"]), []).append(r)
    found = {}
    for image_id, rs in grouped.items():
        boxes = [BoxMode.convert(r["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) for r in rs]
        found[image_id] = GalaxyPredictions(
            as_boxes(boxes), np.array([r["score"] for r in rs], np.float64),
            np.array([id_map.get(r["category_id"], r["category_id"]) for r in rs], np.int64))
    return _by_record(records, found)


def predictions_from_model(cfg, records: Sequence[Dict], model=None, *,
                           dataset_name: str = "") -> Dict[str, GalaxyPredictions]:
    """The detections the evaluator counts on ``records``: the model's raw output through
    the evaluation loader and wrapping (:func:`clump_d2.engine.predict_on_dataset`), kept
    at the operating point ``TEST.CLUMP_EVAL.SCORE_THRESH`` (no catalogue post-processing).

    Args:
        model: an unwrapped model (default: :func:`clump_d2.engine.build_model_for_inference`).
    """
    model = build_model_for_inference(cfg) if model is None else model
    thresh = float(cfg.TEST.CLUMP_EVAL.SCORE_THRESH)
    out = {}
    for p in predict_on_dataset(cfg, model, dataset_name, records):
        keep = p["scores"] >= thresh
        out.setdefault(str(p["image_id"]), GalaxyPredictions(
            p["boxes"][keep], p["scores"][keep], p["classes"][keep]))
    return out


# --- drawing -----------------------------------------------------------------------------------


def match_galaxy(truth_boxes, pred: GalaxyPredictions, criterion: MatchCriterion,
                 ignore=None):
    """(matched true clumps, detections matched to kept clumps, detections on ignore regions)
    under the evaluator's two-stage matching
    (:func:`~clump_d2.evaluation.metrics.match_masks_ignoring`); every prediction given counts
    (they are cut at the operating point where they are made)."""
    return match_masks_ignoring(truth_boxes, pred.boxes, pred.scores, -math.inf, criterion,
                                ignore)


def count_boxes(vis_image, colour: Optional[Sequence[float]] = None) -> int:
    """Boxes drawn on a Detectron2 ``VisImage`` (its matplotlib Rectangle patches); with
    ``colour`` (RGB in [0, 1]) only those whose edge has that colour."""
    boxes = [p for p in vis_image.ax.patches if isinstance(p, Rectangle)]
    if colour is None:
        return len(boxes)
    return sum(np.allclose(p.get_edgecolor()[:3], colour, atol=1e-3) for p in boxes)


def _caption(image: np.ndarray, text: str) -> np.ndarray:
    bar = Image.new("RGB", (image.shape[1], TITLE_HEIGHT), (255, 255, 255))
    ImageDraw.Draw(bar).text((3, 3), text, fill=(0, 0, 0))
    return np.concatenate([np.asarray(bar), image], axis=0)


def _labels(classes, scores, class_names: Sequence[str]) -> List[str]:
    """Detectron2's "name 93%" labels; a class id without a name is shown as its number."""
    names = [class_names[c] if 0 <= c < len(class_names) else str(c) for c in classes]
    return _create_text_labels(list(range(len(names))), None if scores is None else
                               list(scores), names) or []


def draw_galaxy(record: Dict, pred: GalaxyPredictions, class_names: Sequence[str],
                criterion: Optional[MatchCriterion] = None, scale: float = 2.0,
                image: Optional[np.ndarray] = None, metadata=None,
                rule: Optional[IgnoreRule] = None) -> Panel:
    """Truth (left) and predictions (right) of one galaxy, matched boxes green, missed and
    false ones red, ignore regions and the detections on them grey (they count as neither),
    detections flagged giant blue (matched) / orange (false) and labelled ``giant``; labelled
    with class names (and scores on the right)."""
    criterion = criterion or MatchCriterion()
    image = display_image(record) if image is None else _to_rgb_uint8(image)
    metadata = metadata if metadata is not None else MetadataCatalog.get("__clump_d2_vis__")
    t_boxes, t_classes, t_ignore = truth_boxes(record, rule)
    t_hit, d_hit, d_ignored = match_galaxy(t_boxes, pred, criterion, t_ignore)
    n_kept = int((~t_ignore).sum())
    n_matched = int((t_hit & ~t_ignore).sum())

    def side(boxes, labels, hits, giant, ignored):
        vis = Visualizer(image, metadata, scale=scale)
        if len(boxes):
            colours = [IGNORED_COLOUR if i else
                       (GIANT_MATCHED_COLOUR if h else GIANT_UNMATCHED_COLOUR) if g else
                       (MATCHED_COLOUR if h else UNMATCHED_COLOUR)
                       for h, g, i in zip(hits, giant, ignored)]
            return vis.overlay_instances(boxes=boxes, labels=labels, assigned_colors=colours)
        return vis.output

    giant = (np.zeros(len(pred.boxes), bool) if pred.giant is None
             else np.asarray(pred.giant, bool))
    t_labels = _labels(t_classes, None, class_names)
    p_labels = [f"{label} giant" if g else label
                for label, g in zip(_labels(pred.classes, pred.scores, class_names), giant)]
    truth_vis = side(t_boxes, t_labels, t_hit, np.zeros(len(t_boxes), bool), t_ignore)
    pred_vis = side(pred.boxes, p_labels, d_hit, giant, d_ignored)
    left, right = truth_vis.get_image(), pred_vis.get_image()
    gap = np.full((left.shape[0], GAP, 3), 255, np.uint8)
    galaxy_id = str(record.get("image_id", record.get("galaxy_id", "")))
    text = (f"{galaxy_id}: truth {n_kept} | found {n_matched}, missed "
            f"{n_kept - n_matched}, false "
            f"{len(pred.boxes) - int(d_hit.sum()) - int(d_ignored.sum())}")
    if t_ignore.any():
        text += f" | ignored {int(t_ignore.sum())} ({int(d_ignored.sum())} det.)"
    panel = _caption(np.concatenate([left, gap, right], axis=1), text)
    return Panel(galaxy_id, panel, truth_vis, pred_vis, n_kept, len(pred.boxes),
                 n_matched, {"truth": t_labels, "predictions": p_labels},
                 int(d_ignored.sum()))


def contact_sheet(images: Sequence[np.ndarray], columns: Optional[int] = None,
                  pad: int = 6) -> np.ndarray:
    """Panels on a grid (row-major), each cell the size of the largest panel, white padding."""
    if not images:
        raise ValueError("no panels for the contact sheet")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    cell_h = max(im.shape[0] for im in images)
    cell_w = max(im.shape[1] for im in images)
    sheet = np.full((rows * cell_h + (rows + 1) * pad, columns * cell_w + (columns + 1) * pad, 3),
                    255, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, columns)
        y, x = pad + r * (cell_h + pad), pad + c * (cell_w + pad)
        sheet[y:y + im.shape[0], x:x + im.shape[1]] = im
    return sheet


# --- selection and the whole job ---------------------------------------------------------------


def match_counts(records: Sequence[Dict], predictions: Dict[str, GalaxyPredictions],
                 criterion: MatchCriterion, rule: Optional[IgnoreRule] = None
                 ) -> Dict[str, tuple]:
    """image id -> (missed, false positives) under the evaluator's matching (ignore regions
    and the detections on them count as neither)."""
    out = {}
    for record in records:
        gid = str(record["image_id"])
        t_boxes, _, ignore = truth_boxes(record, rule)
        pred = predictions.get(gid, GalaxyPredictions.empty())
        found, used, on_ignored = match_galaxy(t_boxes, pred, criterion, ignore)
        out[gid] = (int((~ignore).sum() - (found & ~ignore).sum()),
                    len(pred.boxes) - int(used.sum()) - int(on_ignored.sum()))
    return out


def select_galaxies(records: Sequence[Dict], predictions: Dict[str, GalaxyPredictions],
                    how: str, num: int, criterion: MatchCriterion, ids: Sequence = (),
                    seed: int = 0, rule: Optional[IgnoreRule] = None) -> List[Dict]:
    """The records to draw: ``ids`` (in that order), ``first`` ``num``, a ``random`` sample
    (seeded), or the ``worst-missed`` / ``worst-fp`` ``num`` (ties: dataset order)."""
    if how not in SELECTIONS:
        raise ValueError(f"unknown selection {how!r}; choose one of {SELECTIONS}")
    if how == "ids":
        by_id = {str(r["image_id"]): r for r in records}
        missing = [str(i) for i in ids if str(i) not in by_id]
        if missing:
            raise ValueError(f"galaxies {missing} are not in the dataset")
        return [by_id[str(i)] for i in ids]
    if how == "first":
        return list(records[:num])
    if how == "random":
        rng = np.random.default_rng(seed)
        index = rng.choice(len(records), size=min(num, len(records)), replace=False)
        return [records[i] for i in sorted(index)]
    counts = match_counts(records, predictions, criterion, rule)
    which = 0 if how == "worst-missed" else 1
    order = sorted(range(len(records)),
                   key=lambda i: (-counts[str(records[i]["image_id"])][which], i))
    return [records[i] for i in order[:num]]


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:120] or "galaxy"


def visualize_dataset(cfg, dataset_name: str, output_dir, *, predictions: str = "model",
                      select: str = "worst-missed", num: int = 16, ids: Sequence = (),
                      seed: int = 0, scale: float = 2.0, columns: Optional[int] = None,
                      model=None) -> Dict:
    """Draw truth vs predictions for galaxies of a registered dataset; write one PNG each and
    ``contact_sheet.png`` under ``output_dir``.

    Args:
        predictions: ``"model"`` (``cfg`` + ``MODEL.WEIGHTS``, or ``model``: the detections
            the evaluator counts), a COCO results ``.json`` (cut at
            ``TEST.CLUMP_EVAL.SCORE_THRESH``), or a clump catalogue
            (``.parquet``/``.csv``/``.fits``, drawn as it is).
        select, num, ids, seed: which galaxies (:func:`select_galaxies`).
        model: an unwrapped model to use instead of building one from ``cfg``.

    Returns:
        {"panels": [Panel...], "files": [paths], "contact_sheet": path}
    """
    records = DatasetCatalog.get(dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    class_names = list(getattr(meta, "thing_classes", None) or ["clump", "odd_clump"])
    criterion = MatchCriterion.from_config(cfg)
    rule = IgnoreRule.from_config(cfg)
    if predictions == "model":
        # worst-* needs every galaxy's predictions; otherwise only the chosen ones
        todo = records if select.startswith("worst") else select_galaxies(
            records, {}, select, num, criterion, ids, seed)
        found = predictions_from_model(cfg, todo, model=model, dataset_name=dataset_name)
    elif predictions.lower().endswith(".json"):
        found = predictions_from_coco_results(predictions, records, dataset_name,
                                              cfg.TEST.CLUMP_EVAL.SCORE_THRESH)
    else:
        found = predictions_from_catalogue(predictions, records, class_names)
    chosen = select_galaxies(records, found, select, num, criterion, ids, seed, rule)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    panels, files = [], []
    for k, record in enumerate(chosen):
        pred = found.get(str(record["image_id"]), GalaxyPredictions.empty())
        panel = draw_galaxy(record, pred, class_names, criterion, scale,
                            image=display_image(record, max_pixels=cfg.INPUT.MAX_PIXELS),
                            metadata=meta,
                            rule=rule)
        path = output_dir / f"{k:03d}_{_safe_name(panel.galaxy_id)}.png"
        Image.fromarray(panel.image).save(path)
        panels.append(panel)
        files.append(path)
    sheet_path = output_dir / "contact_sheet.png"
    Image.fromarray(contact_sheet([p.image for p in panels], columns)).save(sheet_path)
    logger.info("%d galaxies of %s drawn (%s) to %s; contact sheet %s", len(panels),
                dataset_name, select, output_dir, sheet_path)
    return {"panels": panels, "files": files, "contact_sheet": sheet_path}


# --- a catalogue without truth -----------------------------------------------------------------

#: Colour of a catalogue detection not flagged giant (a giant is drawn GIANT_MATCHED_COLOUR).
CATALOGUE_COLOUR = MATCHED_COLOUR


def draw_catalogue_galaxy(record: Dict, rows, class_names: Sequence[str], scale: float = 1.0,
                          giant_flag: Optional[str] = None, metadata=None,
                          max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """One galaxy of a clump catalogue (``rows``: its catalogue rows, a DataFrame) drawn on
    its image: detections green, those flagged giant blue and labelled ``giant``; captioned
    with the galaxy id, its clump count and status. Returns the panel (H, W, 3) uint8."""
    image = display_image(record, max_pixels=max_pixels)
    metadata = metadata if metadata is not None else MetadataCatalog.get("__clump_d2_vis__")
    clumps = rows[rows["clump_id"] > 0]
    flag = giant_column(list(rows.columns), giant_flag)
    giant = clumps[flag].fillna(False).to_numpy(bool) if flag else np.zeros(len(clumps), bool)
    vis = Visualizer(image, metadata, scale=scale)
    if len(clumps):
        labels = [f"{label} giant" if g else label for label, g in
                  zip(_labels(clumps["class_id"].to_numpy(np.int64),
                              clumps["score"].to_numpy(np.float64), class_names), giant)]
        out = vis.overlay_instances(
            boxes=clumps[["x1", "y1", "x2", "y2"]].to_numpy(np.float64), labels=labels,
            assigned_colors=[GIANT_MATCHED_COLOUR if g else CATALOGUE_COLOUR for g in giant])
    else:
        out = vis.output
    status = str(rows["galaxy_status"].iloc[0]) if "galaxy_status" in rows else ""
    text = f"{rows['galaxy_id'].iloc[0]}: {len(clumps)} clumps"
    if flag:
        text += f", {int(giant.sum())} giant ({flag})"
    if status and status != "ok":
        text += f" [{status[:40]}]"
    return _caption(out.get_image(), text)


def catalogue_contact_sheet(records: Sequence[Dict], catalogue, output, *,
                            class_names: Sequence[str] = ("clump", "odd_clump"),
                            scale: float = 2.0, columns: Optional[int] = None,
                            max_galaxies: int = 64,
                            max_pixels: int = DEFAULT_MAX_PIXELS) -> Path:
    """A contact sheet of a clump catalogue: the first ``max_galaxies`` galaxies of
    ``records`` (the catalogue's input, in order) that have a readable image, each drawn with
    :func:`draw_catalogue_galaxy`; written to ``output`` (``.png`` / ``.jpg``)."""
    cat = read_table(catalogue) if isinstance(catalogue, (str, os.PathLike)) else catalogue
    by_id = {str(k): g for k, g in cat.groupby("galaxy_id", sort=False)}
    panels = []
    for record in records:
        if len(panels) >= max_galaxies:
            break
        rows = by_id.get(str(record["galaxy_id"]))
        if rows is None or str(rows["galaxy_status"].iloc[0]).startswith("unreadable"):
            continue
        try:
            panels.append(draw_catalogue_galaxy(record, rows, class_names, scale,
                                                max_pixels=max_pixels))
        except (OSError, ValueError) as e:  # a picture is not worth stopping for; say why
            logger.warning("contact sheet: %s not drawn (%s)", record.get("file_name"), e)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(contact_sheet(panels, columns)).save(output)
    logger.info("contact sheet of %d galaxies: %s", len(panels), output)
    return output
