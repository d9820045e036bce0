"""Completeness and purity of clump detections as a Detectron2 ``DatasetEvaluator``."""
from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from detectron2.config import configurable
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm

from clump_d2.structures import (BOX_SIDE_PER_FWHM, below_limits, is_number,
                                 parse_attribute_limits)
from . import metrics as M
from . import plots
from .matching import MatchCriterion

logger = logging.getLogger(__name__)

#: Annotation keys that are not clump attributes (never binned).
_NON_ATTRIBUTES = {"bbox", "bbox_mode", "category_id", "iscrowd", "segmentation", "keypoints",
                   "id", "image_id", "area"}
#: Derived attribute: side of the true box, sqrt(width x height) in pixels.
BOX_SIZE = "box_size"
METRICS_FILE = "clump_metrics.json"
CURVE_FILE = "clump_curve.csv"


def parse_bin_edges(specs: Sequence[str]) -> Dict[str, List[float]]:
    """``["flux_frac:0.03,0.1,0.35", ...]`` -> ``{"flux_frac": [0.03, 0.1, 0.35]}``."""
    out = {}
    for spec in specs:
        name, sep, values = spec.partition(":")
        if not sep:
            raise ValueError(f"bin edges {spec!r}: expected 'attribute:e1,e2,...'")
        edges = sorted(float(v) for v in values.split(",") if v.strip())
        if len(edges) < 2:
            raise ValueError(f"bin edges {spec!r}: need at least two edges")
        out[name.strip()] = edges
    return out


#: Reasons a true clump is an ignore region (``ignore_reason`` of :func:`truth_from_dicts`).
IGNORE_ISCROWD = "iscrowd"
IGNORE_CENTRE = "centre"


@dataclass(frozen=True)
class IgnoreRule:
    """Which true clumps are ignore regions besides the ``iscrowd`` ones (always ignored).

    Attributes:
        below: {attribute: limit}: a clump whose numeric attribute is < limit is ignored
            (reason ``below:<attribute>``).
        ignore_missing: a clump *without* a finite value of a ``below`` attribute is ignored
            too (reason ``missing:<attribute>``); False (default): it is kept, so a dataset
            without the attribute is evaluated as before.
        centre_fwhm: a clump whose box centre lies within this many PSF FWHM of the galaxy
            centre is ignored (reason ``centre``); 0 disables the rule. Galaxy centre: the
            image's ``centre_x``/``centre_y``, else the image centre (width/2, height/2);
            FWHM: the annotation's ``psf_fwhm_px``, else the image's, else the box's longer
            side / ``BOX_SIDE_PER_FWHM`` (2.5).
    """

    below: Mapping[str, float] = field(default_factory=dict)
    ignore_missing: bool = False
    centre_fwhm: float = 0.0

    @classmethod
    def from_config(cls, cfg) -> "IgnoreRule":
        """The rule of ``TEST.CLUMP_EVAL.IGNORE_BELOW``, ``IGNORE_MISSING`` and
        ``IGNORE_CENTRE_FWHM``."""
        ev = cfg.TEST.CLUMP_EVAL
        return cls(parse_attribute_limits(ev.IGNORE_BELOW), bool(ev.IGNORE_MISSING),
                   float(ev.IGNORE_CENTRE_FWHM))

    def describe(self) -> str:
        """Short human-readable form (``iscrowd`` always; the configured rules)."""
        parts = ["iscrowd"]
        parts += [f"{k} < {v:g}" + (" or missing" if self.ignore_missing else "")
                  for k, v in sorted(self.below.items())]
        if self.centre_fwhm > 0:
            parts.append(f"within {self.centre_fwhm:g} PSF FWHM of the centre")
        return ", ".join(parts)

    def reasons(self, record: Mapping, anno: Mapping, box_xyxy: Sequence[float]) -> List[str]:
        """Why one annotation of one image is an ignore region (empty list: it is kept)."""
        out = [IGNORE_ISCROWD] if anno.get("iscrowd", 0) else []
        below = below_limits(anno, self.below)
        out += [f"below:{name}" for name in below]
        if self.ignore_missing:
            out += [f"missing:{name}" for name in self.below
                    if not (is_number(anno.get(name)) and math.isfinite(anno[name]))]
        if self.centre_fwhm > 0:
            x0, y0, x1, y1 = (float(v) for v in box_xyxy)
            cx, cy = galaxy_centre(record)
            fwhm = _positive(anno.get("psf_fwhm_px")) or _positive(record.get("psf_fwhm_px")) \
                or max(x1 - x0, y1 - y0) / BOX_SIDE_PER_FWHM
            if math.hypot((x0 + x1) / 2 - cx, (y0 + y1) / 2 - cy) <= self.centre_fwhm * fwhm:
                out.append(IGNORE_CENTRE)
        return out


def galaxy_centre(record: Mapping) -> Tuple[float, float]:
    """(x, y) of the galaxy centre: ``centre_x``/``centre_y`` of the image record, else the
    image centre (width/2, height/2)."""
    cx, cy = record.get("centre_x"), record.get("centre_y")
    if is_number(cx) and is_number(cy) and math.isfinite(cx) and math.isfinite(cy):
        return float(cx), float(cy)
    if not (is_number(record.get("width")) and is_number(record.get("height"))):
        raise ValueError(f"image {record.get('image_id')} ({record.get('file_name')}): no "
                         "centre_x/centre_y and no width/height, so no galaxy centre for "
                         "TEST.CLUMP_EVAL.IGNORE_CENTRE_FWHM")
    return float(record["width"]) / 2.0, float(record["height"]) / 2.0


def _positive(value) -> Optional[float]:
    return float(value) if is_number(value) and math.isfinite(value) and value > 0 else None


def truth_from_dicts(dataset_dicts: Sequence[Mapping], rule: Optional[IgnoreRule] = None
                     ) -> Dict[int, Dict]:
    """Dataset dicts -> {image_id: {"boxes" XYXY, "classes", "ignore", "ignore_reason",
    "attributes": {name: array}}}.

    Every annotation is a true clump, ``iscrowd`` ones included: ``ignore`` (bool per clump)
    marks the ignore regions (``iscrowd``, and the clumps ``rule`` ignores), and
    ``ignore_reason`` says why ("" when kept; several reasons joined by "+"). Every numeric
    per-clump key becomes an attribute (NaN where a clump lacks it), plus the derived
    ``box_size`` (sqrt of the box area, px).
    """
    rule = rule or IgnoreRule()
    truth = {}
    names = sorted({k for d in dataset_dicts for a in d.get("annotations", [])
                    for k, v in a.items() if k not in _NON_ATTRIBUTES and is_number(v)})
    for record in dataset_dicts:
        annos = list(record.get("annotations", []))
        boxes = np.asarray([BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS)
                            for a in annos], dtype=np.float64).reshape(-1, 4)
        reasons = ["+".join(rule.reasons(record, a, b)) for a, b in zip(annos, boxes)]
        attrs = {n: np.asarray([a[n] if is_number(a.get(n)) else np.nan for a in annos],
                               dtype=np.float64) for n in names}
        attrs[BOX_SIZE] = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        truth[record["image_id"]] = {
            "boxes": boxes,
            "classes": np.asarray([a["category_id"] for a in annos], dtype=np.int64),
            "ignore": np.asarray([bool(r) for r in reasons], dtype=bool),
            "ignore_reason": reasons,
            "attributes": attrs,
        }
    return truth


def ignore_summary(truth: Mapping[object, Mapping]) -> Dict:
    """How many true clumps are ignore regions and why: ``{"n_ignored", "n_kept",
    "by_reason": {reason: n}}`` (a clump with several reasons counts under each)."""
    by_reason: Dict[str, int] = {}
    n_ignored = n_kept = 0
    for t in truth.values():
        for r in t["ignore_reason"]:
            if not r:
                n_kept += 1
                continue
            n_ignored += 1
            for part in r.split("+"):
                by_reason[part] = by_reason.get(part, 0) + 1
    return {"n_ignored": n_ignored, "n_kept": n_kept, "by_reason": dict(sorted(by_reason.items()))}


def _clean(value):
    """NaN/inf -> None and numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def instances_to_prediction(image_id, instances) -> Dict:
    """One model output's ``Instances`` as the evaluator keeps them: ``{"image_id", "boxes"
    (N, 4) XYXY float64, "scores" (N,) float64, "classes" (N,) int64}`` (every detection the
    model returned; the operating threshold is applied when counting)."""
    instances = instances.to("cpu")
    return {
        "image_id": image_id,
        "boxes": instances.pred_boxes.tensor.numpy().astype(np.float64),
        "scores": instances.scores.numpy().astype(np.float64),
        "classes": instances.pred_classes.numpy().astype(np.int64),
    }


class ClumpEvaluator(DatasetEvaluator):
    """Completeness, purity and F1 of clump detections, at an operating score threshold and
    swept over thresholds, class-agnostic and per class, binned by clump attributes.

    Matching is one-to-one and optimal (:mod:`clump_d2.evaluation.matching`); images without
    true clumps count (all their detections are false positives); ratios are computed from
    counts summed over all images of all processes (predictions are gathered to the main
    process with ``detectron2.utils.comm``, so N processes give the numbers of one).

    ``evaluate()`` returns ``{"clumps": {name: float}}`` on the main process (``{}`` on the
    others), flat so that ``EvalHook`` stores it as ``clumps/completeness``,
    ``clumps/purity``, ``clumps/F1``, ...; per-class figures are named ``completeness-clump``
    etc. (hidden from the copy-paste summary, like COCO's ``AP-<class>``). Undefined values
    (purity with no detections) are NaN. With ``output_dir`` it also writes
    ``clump_metrics.json``, ``clump_curve.csv`` and PNG plots there.

    After ``evaluate()``, :attr:`predictions` holds every image's raw predictions (as
    :func:`instances_to_prediction` makes them) and :attr:`report` the full report of
    :meth:`compute`; :meth:`image_counts` gives each image's counts at the operating point.
    """

    @configurable
    def __init__(self, dataset_name: str, *, score_thresh: float = 0.5,
                 match: str = "iou", iou_thresh: float = 0.5, distance_factor: float = 1.0,
                 curve_points: int = 101, num_bins: int = 5,
                 bin_attributes: Sequence[str] = (), bin_edges: Optional[Mapping] = None,
                 plot: bool = True, output_dir: Optional[str] = None,
                 distributed: bool = True, criterion: Optional[MatchCriterion] = None,
                 ignore_rule: Optional[IgnoreRule] = None):
        """
        Args:
            dataset_name: a registered dataset with clump annotations.
            score_thresh: operating score threshold (detections with score >= it count).
            match, iou_thresh, distance_factor: the :class:`MatchCriterion`.
            curve_points: number of evenly spaced thresholds in [0, 1] of the sweep.
            num_bins: bins per attribute (equal counts) where no edges are given.
            bin_attributes: attributes to bin by; empty: every numeric attribute present.
            bin_edges: {attribute: edges} overriding the equal-count bins.
            plot: write the PNG plots (with ``output_dir``).
            output_dir: where to write metrics, curve and plots (None: nothing written).
            distributed: gather predictions from all processes before evaluating.
            criterion: the matching criterion (overrides ``match``, ``iou_thresh`` and
                ``distance_factor``).
            ignore_rule: which true clumps besides ``iscrowd`` ones are ignore regions
                (:class:`IgnoreRule`; default: only ``iscrowd``).
        """
        self.dataset_name = dataset_name
        self.score_thresh = float(score_thresh)
        self.criterion = criterion or MatchCriterion(match, iou_thresh=iou_thresh,
                                                     distance_factor=distance_factor)
        self.ignore_rule = ignore_rule or IgnoreRule()
        self.thresholds = np.linspace(0.0, 1.0, int(curve_points))
        self.num_bins = int(num_bins)
        self.bin_attributes = list(bin_attributes)
        self.bin_edges = dict(bin_edges or {})
        self.plot = plot
        self.output_dir = output_dir
        self.distributed = distributed
        meta = MetadataCatalog.get(dataset_name)
        self.class_names = list(getattr(meta, "thing_classes", None) or ["clump", "odd_clump"])
        self._predictions: List[Dict] = []
        self.report: Optional[Dict] = None

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: Optional[str] = None,
                    distributed: bool = True):
        ev = cfg.TEST.CLUMP_EVAL
        return {
            "dataset_name": dataset_name,
            "score_thresh": ev.SCORE_THRESH,
            "criterion": MatchCriterion.from_config(cfg),
            "ignore_rule": IgnoreRule.from_config(cfg),
            "curve_points": ev.CURVE_POINTS,
            "num_bins": ev.NUM_BINS,
            "bin_attributes": list(ev.BIN_ATTRIBUTES),
            "bin_edges": parse_bin_edges(ev.BIN_EDGES),
            "plot": ev.PLOTS,
            "output_dir": output_dir,
            "distributed": distributed,
        }

    @property
    def predictions(self) -> List[Dict]:
        """This process's raw predictions so far, one dict per image
        (:func:`instances_to_prediction`)."""
        return self._predictions

    def reset(self):
        self._predictions = []
        self.report = None

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            self._predictions.append(instances_to_prediction(inp["image_id"],
                                                             out["instances"]))

    # --- evaluation ---------------------------------------------------------------------------

    def evaluate(self):
        predictions = self._predictions
        if self.distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        report = self.compute(predictions, DatasetCatalog.get(self.dataset_name))
        self.report = report
        if self.output_dir:
            self.write(report, self.output_dir)
        m = report["operating"]["all"]
        logger.info("clumps on %s at score >= %.2f, %s: completeness %.3f, purity %.3f, "
                    "F1 %.3f (%d true, %d detected, %d matched)", self.dataset_name,
                    self.score_thresh, self.criterion.describe(), m["completeness"],
                    m["purity"], m["F1"], m["n_true"], m["n_detections"], m["n_matched"])
        ig = report["ignore"]
        if ig["n_ignored"]:
            logger.info("ignore regions (%s): %d true clumps %s, %d detections on them count "
                        "as neither true nor false", ig["rule"], ig["n_ignored"],
                        ig["by_reason"], ig["n_detections_on_ignored"])
        return OrderedDict(clumps=report["metrics"])

    def compute(self, predictions: Sequence[Mapping], dataset_dicts: Sequence[Mapping]) -> Dict:
        """All numbers from predictions (dicts with image_id, boxes XYXY, scores, classes)
        and the dataset's dicts; pure (no I/O), so tests can call it directly."""
        truth = truth_from_dicts(dataset_dicts, self.ignore_rule)
        by_image = {}
        for p in predictions:  # sorted below; a repeated image (padded sampler) counts once
            by_image.setdefault(p["image_id"], p)
        unknown = set(by_image) - set(truth)
        if unknown:
            logger.warning("%d predicted images are not in %s; they are ignored",
                           len(unknown), self.dataset_name)
        missing = set(truth) - set(by_image)
        if missing:
            logger.warning("%d images of %s had no prediction; their clumps count as missed",
                           len(missing), self.dataset_name)
        thresholds = np.concatenate([[self.score_thresh], self.thresholds])
        n_cls = len(self.class_names)
        counts = np.zeros((len(thresholds), 1 + n_cls, 3), dtype=np.int64)
        found, attrs = [], {}
        n_det_on_ignored = 0
        empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "classes": np.zeros(0, int)}
        for image_id in sorted(truth):
            t, p = truth[image_id], by_image.get(image_id, empty)
            counts += M.sweep_image(t["boxes"], t["classes"], p["boxes"], p["scores"],
                                    p["classes"], thresholds, self.criterion, n_cls,
                                    ignore=t["ignore"])
            hit, _, on_ignored = M.match_masks_ignoring(
                t["boxes"], p["boxes"], p["scores"], self.score_thresh, self.criterion,
                t["ignore"])
            n_det_on_ignored += int(on_ignored.sum())
            # Binned completeness is over the kept clumps, like the totals.
            kept = ~t["ignore"]
            found.append(hit[kept])
            for name, values in t["attributes"].items():
                attrs.setdefault(name, []).append(values[kept])
        found = np.concatenate(found) if found else np.zeros(0, bool)
        attrs = {k: np.concatenate(v) for k, v in attrs.items()}
        report = self._report(counts, thresholds, found, attrs, len(truth))
        report["ignore"] = {"rule": self.ignore_rule.describe(), **ignore_summary(truth),
                            "n_detections_on_ignored": n_det_on_ignored}
        report["metrics"]["n_ignored"] = report["ignore"]["n_ignored"]
        report["metrics"]["n_detections_on_ignored"] = n_det_on_ignored
        return report

    def image_counts(self, predictions: Sequence[Mapping], dataset_dicts: Sequence[Mapping]
                     ) -> Dict[object, Dict[str, int]]:
        """Per image: ``{"n_true", "n_detections", "n_matched"}`` at the operating threshold,
        class-agnostic, with the same matching and ignore regions as :meth:`compute` (their
        sums are its operating counts: ignored clumps and the detections on them are in
        neither)."""
        truth = truth_from_dicts(dataset_dicts, self.ignore_rule)
        by_image = {}
        for p in predictions:
            by_image.setdefault(p["image_id"], p)
        empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "classes": np.zeros(0, int)}
        out = {}
        for image_id in sorted(truth):
            t, p = truth[image_id], by_image.get(image_id, empty)
            c = M.sweep_image(t["boxes"], t["classes"], p["boxes"], p["scores"], p["classes"],
                              [self.score_thresh], self.criterion, 0, ignore=t["ignore"])[0, 0]
            out[image_id] = {"n_true": int(c[M.N_TRUE]), "n_detections": int(c[M.N_DET]),
                             "n_matched": int(c[M.N_MATCHED])}
        return out

    def _report(self, counts, thresholds, found, attrs, n_images) -> Dict:
        scopes = ["all"] + self.class_names
        r = M.ratios(counts)
        operating, summary, curves = {}, {}, {}
        for s, scope in enumerate(scopes):
            operating[scope] = {
                "completeness": float(r["completeness"][0, s]),
                "purity": float(r["purity"][0, s]),
                "F1": float(r["F1"][0, s]),
                "n_true": int(counts[0, s, M.N_TRUE]),
                "n_detections": int(counts[0, s, M.N_DET]),
                "n_matched": int(counts[0, s, M.N_MATCHED]),
            }
            curves[scope] = {k: r[k][1:, s] for k in ("completeness", "purity", "F1")}
            curves[scope].update(n_true=counts[1:, s, M.N_TRUE],
                                 n_detections=counts[1:, s, M.N_DET],
                                 n_matched=counts[1:, s, M.N_MATCHED])
            eq_t, eq_v = M.equal_point(self.thresholds, curves[scope]["completeness"],
                                       curves[scope]["purity"])
            f1_t, f1_v = M.f1_peak(self.thresholds, curves[scope]["F1"])
            summary[scope] = {"equal_CP_thresh": eq_t, "equal_CP_value": eq_v,
                              "F1_max": f1_v, "F1_max_thresh": f1_t}
        binned = {}
        wanted = self.bin_attributes or sorted(attrs)
        for name in wanted:
            if name not in attrs:
                logger.warning("cannot bin by %r: no such numeric attribute in %s (have %s)",
                               name, self.dataset_name, sorted(attrs))
                continue
            values = attrs[name]
            if not np.isfinite(values).any():
                continue
            edges = np.asarray(self.bin_edges[name]) if name in self.bin_edges else \
                M.quantile_edges(values, self.num_bins)
            binned[name] = {"edges": edges.tolist(),
                            "n_without_value": int((~np.isfinite(values)).sum()),
                            "bins": M.bin_completeness(values, found, edges)}
        flat = OrderedDict()
        for key in ("completeness", "purity", "F1", "n_true", "n_detections", "n_matched"):
            flat[key] = operating["all"][key]
        flat["score_thresh"] = self.score_thresh
        flat.update(summary["all"])
        for scope in self.class_names:
            for key in ("completeness", "purity", "F1"):
                flat[f"{key}-{scope}"] = operating[scope][key]
            flat[f"F1_max-{scope}"] = summary[scope]["F1_max"]
            flat[f"equal_CP_value-{scope}"] = summary[scope]["equal_CP_value"]
        return {
            "dataset": self.dataset_name,
            "n_images": n_images,
            "match": {"criterion": self.criterion.kind, "iou_thresh": self.criterion.iou_thresh,
                      "distance_factor": self.criterion.distance_factor,
                      "rule": self.criterion.describe()},
            "score_thresh": self.score_thresh,
            "operating": operating,
            "curve_summary": summary,
            "binned": binned,
            "thresholds": self.thresholds,
            "curves": curves,
            # plain Python scalars: counts stay int, everything else float (NaN if undefined)
            "metrics": {k: v if isinstance(v, int) else float(v) for k, v in flat.items()},
        }

    # --- output -------------------------------------------------------------------------------

    def write(self, report: Dict, output_dir: str) -> Dict[str, str]:
        """Write clump_metrics.json, clump_curve.csv and the PNG plots; returns their paths."""
        os.makedirs(output_dir, exist_ok=True)
        paths = {"metrics": os.path.join(output_dir, METRICS_FILE),
                 "curve": os.path.join(output_dir, CURVE_FILE)}
        with open(paths["metrics"], "w") as f:
            # The flat metrics (as in EventStorage) first, then the details.
            body = {"dataset": report["dataset"], **report["metrics"]}
            body.update((k, v) for k, v in report.items() if k not in ("curves", "metrics"))
            json.dump(_clean(body), f, indent=2)
        write_curve_csv(paths["curve"], report["thresholds"], report["curves"])
        if self.plot:
            paths.update(self._plot(report, output_dir))
        return paths

    def _plot(self, report: Dict, output_dir: str) -> Dict[str, str]:
        title = f"{self.dataset_name}: {self.criterion.describe()}"
        curves = report["curves"]
        op = {s: (v["completeness"], v["purity"]) for s, v in report["operating"].items()}
        eq = report["curve_summary"]["all"]
        out = {
            "vs_threshold": plots.plot_vs_threshold(
                os.path.join(output_dir, "completeness_purity_vs_threshold.png"),
                report["thresholds"], curves, self.score_thresh,
                (eq["equal_CP_thresh"], eq["equal_CP_value"]), title),
            "purity_vs_completeness": plots.plot_purity_vs_completeness(
                os.path.join(output_dir, "purity_vs_completeness.png"), curves, op,
                self.score_thresh, title),
        }
        for name, b in report["binned"].items():
            out[f"completeness_vs_{name}"] = plots.plot_binned_completeness(
                os.path.join(output_dir, f"completeness_vs_{name}.png"), name, b["bins"],
                self.score_thresh, f"{self.dataset_name} ({self.criterion.describe()})")
        return out


def write_curve_csv(path: str, thresholds, curves: Mapping[str, Mapping]) -> None:
    """One row per threshold; columns per scope (class-agnostic unsuffixed, classes as
    ``_<class>``); undefined values written as ``nan``."""
    keys = ("completeness", "purity", "F1", "n_true", "n_detections", "n_matched")
    header = ["score_thresh"]
    for scope in curves:
        header += [k if scope == "all" else f"{k}_{scope}" for k in keys]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, t in enumerate(thresholds):
            row = [f"{t:.4f}"]
            for c in curves.values():
                row += [f"{float(c[k][i]):.6g}" if k in ("completeness", "purity", "F1")
                        else int(c[k][i]) for k in keys]
            writer.writerow(row)
