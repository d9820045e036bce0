"""Post-processing of one galaxy's detections, as in Popp et al. (2024): score cut,
class-agnostic NMS, merging of detections closer than a PSF FWHM, and a flag for detections
on the galaxy centre (the bulge, which volunteers are told not to mark).

Pure numpy functions on (boxes XYXY, scores, classes) so that tests can pin them down. Every
step is deterministic and independent of the order in which detections are listed (ties in
score are broken by position: top to bottom, then left to right).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np

from clump_d2.structures import BOX_SIDE_PER_FWHM, as_boxes, box_iou_xyxy


@dataclass
class Detections:
    """Detections of one galaxy; ``n_merged`` counts the detections each one absorbed."""

    boxes: np.ndarray  # (N, 4) XYXY, continuous pixel coordinates
    scores: np.ndarray  # (N,)
    classes: np.ndarray  # (N,) contiguous class ids
    n_merged: Optional[np.ndarray] = None  # (N,) int
    on_centre: Optional[np.ndarray] = None  # (N,) bool

    def __post_init__(self):
        self.boxes = as_boxes(self.boxes)
        self.scores = np.asarray(self.scores, np.float64).reshape(-1)
        self.classes = np.asarray(self.classes, np.int64).reshape(-1)
        n = len(self.boxes)
        if self.n_merged is None:
            self.n_merged = np.zeros(n, np.int64)
        if self.on_centre is None:
            self.on_centre = np.zeros(n, bool)

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, index) -> "Detections":
        return Detections(self.boxes[index], self.scores[index], self.classes[index],
                          self.n_merged[index], self.on_centre[index])

    @property
    def centres(self) -> np.ndarray:
        return (self.boxes[:, :2] + self.boxes[:, 2:]) / 2.0


def canonical_order(det: Detections) -> np.ndarray:
    """Indices sorting detections by score (descending), then top-to-bottom, left-to-right."""
    b = det.boxes
    return np.lexsort((b[:, 2], b[:, 3], b[:, 0], b[:, 1], -det.scores))


def class_agnostic_nms(det: Detections, iou_thresh: float) -> Detections:
    """Greedy NMS over all classes: a box overlapping a higher-ranked kept box with IoU >
    ``iou_thresh`` is suppressed (so one clump found as both classes is kept once, with its
    better class)."""
    if len(det) == 0 or iou_thresh <= 0:
        return det
    det = det.select(canonical_order(det))
    iou = box_iou_xyxy(det.boxes, det.boxes)
    keep = np.ones(len(det), bool)
    for i in range(len(det)):
        if keep[i]:
            suppressed = iou[i] > iou_thresh
            suppressed[: i + 1] = False
            keep &= ~suppressed
    return det.select(np.flatnonzero(keep))


def estimate_fwhm(det: Detections, psf_fwhm_px: Optional[float] = None) -> np.ndarray:
    """PSF FWHM (px) for each detection: the galaxy's if known, else box side / 2.5 (Clump
    Scout boxes are squares of side 2.5 x FWHM; the longer side survives clipping at an
    image edge)."""
    if psf_fwhm_px is not None and np.isfinite(psf_fwhm_px) and psf_fwhm_px > 0:
        return np.full(len(det), float(psf_fwhm_px))
    side = np.maximum(det.boxes[:, 2] - det.boxes[:, 0], det.boxes[:, 3] - det.boxes[:, 1])
    return side / BOX_SIDE_PER_FWHM


def merge_close(det: Detections, fwhm_factor: float,
                psf_fwhm_px: Optional[float] = None) -> Detections:
    """Merge detections whose centres are closer than ``fwhm_factor`` x PSF FWHM: two clumps
    closer than the seeing are not resolved, so they are one clump. Greedy in canonical
    order: each kept detection absorbs every not-yet-absorbed one within the distance (using
    the larger of the two FWHM estimates) and keeps its own box, score and class."""
    if len(det) == 0 or fwhm_factor <= 0:
        return det
    det = det.select(canonical_order(det))
    fwhm = estimate_fwhm(det, psf_fwhm_px)
    c = det.centres
    dist = np.hypot(c[:, None, 0] - c[None, :, 0], c[:, None, 1] - c[None, :, 1])
    limit = fwhm_factor * np.maximum(fwhm[:, None], fwhm[None, :])
    alive = np.ones(len(det), bool)
    n_merged = det.n_merged.copy()
    for i in range(len(det)):
        if not alive[i]:
            continue
        absorbed = alive & (dist[i] < limit[i])
        absorbed[i] = False
        absorbed[:i] = False
        n_merged[i] += int(absorbed.sum() + n_merged[absorbed].sum())
        alive &= ~absorbed
    det = Detections(det.boxes, det.scores, det.classes, n_merged, det.on_centre)
    return det.select(np.flatnonzero(alive))


def flag_centre(det: Detections, centre_xy, fwhm_factor: float,
                psf_fwhm_px: Optional[float] = None) -> Detections:
    """Set ``on_centre`` for detections whose centre lies within ``fwhm_factor`` x PSF FWHM of
    the galaxy centre (continuous pixel coordinates)."""
    if len(det) == 0 or fwhm_factor <= 0 or centre_xy is None:
        return det
    fwhm = estimate_fwhm(det, psf_fwhm_px)
    c = det.centres
    dist = np.hypot(c[:, 0] - centre_xy[0], c[:, 1] - centre_xy[1])
    return Detections(det.boxes, det.scores, det.classes, det.n_merged,
                      dist <= fwhm_factor * fwhm)


@dataclass(frozen=True)
class PostProcessConfig:
    """Options of :func:`postprocess` (``cfg.INFERENCE``; see ``clump_d2.config``).

    ``score_thresh`` is the operating point ``TEST.CLUMP_EVAL.SCORE_THRESH``: the catalogue
    keeps the detections the evaluation counts, then post-processes them (NMS, PSF
    merging, bulge flag)."""

    score_thresh: float = 0.5
    nms_thresh: float = 0.5
    merge_fwhm: float = 1.0
    bulge_fwhm: float = 1.0
    drop_bulge: bool = False
    psf_fwhm_px: float = 0.0

    @classmethod
    def from_cfg(cls, cfg) -> "PostProcessConfig":
        inf = cfg.INFERENCE
        return cls(float(cfg.TEST.CLUMP_EVAL.SCORE_THRESH), float(inf.NMS_THRESH),
                   float(inf.MERGE_FWHM), float(inf.BULGE_FWHM), bool(inf.DROP_BULGE),
                   float(inf.PSF_FWHM_PX))


def postprocess(det: Detections, options: PostProcessConfig, centre_xy=None,
                psf_fwhm_px: Optional[float] = None) -> Detections:
    """Score cut -> class-agnostic NMS -> PSF merging -> bulge flag (-> drop), returned in
    canonical order. ``psf_fwhm_px`` (the galaxy's) overrides ``options.psf_fwhm_px``."""
    if psf_fwhm_px is None or not np.isfinite(psf_fwhm_px) or psf_fwhm_px <= 0:
        psf_fwhm_px = options.psf_fwhm_px if options.psf_fwhm_px > 0 else None
    det = det.select(np.flatnonzero(det.scores >= options.score_thresh))
    det = class_agnostic_nms(det, options.nms_thresh)
    det = merge_close(det, options.merge_fwhm, psf_fwhm_px)
    det = flag_centre(det, centre_xy, options.bulge_fwhm, psf_fwhm_px)
    if options.drop_bulge:
        det = det.select(np.flatnonzero(~det.on_centre))
    return det.select(canonical_order(det))


def postprocess_uncut(det: Detections, options: PostProcessConfig, centre_xy=None,
                      psf_fwhm_px: Optional[float] = None) -> Detections:
    """:func:`postprocess` without its score cut: the catalogue's detections at every score,
    for studies that apply many thresholds to one pass. NMS and merging are greedy by score,
    so the detections above any threshold are those :func:`postprocess` keeps at it (only
    ``n_merged`` also counts absorbed detections below it)."""
    return postprocess(det, dataclasses.replace(options, score_thresh=-np.inf), centre_xy,
                       psf_fwhm_px)
