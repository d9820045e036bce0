"""One-to-one matching of detections to true clumps, and the counts it yields.

Pure functions (numpy in, numbers out) so that tests can pin the maths down.

Matching rule (the reference for the README):

1. A (true clump, detection) pair is *admissible* under the criterion:
   ``"iou"``: IoU >= ``iou_thresh``; ``"distance"``: the distance between the box centres is
   <= ``distance_factor`` x the true box's half side (half of its longer side, so a box
   clipped at the image edge keeps its size; for Clump Scout boxes the half side is
   1.25 x PSF FWHM).
2. Among all one-to-one assignments using admissible pairs only, the one with the **most
   pairs** wins (a maximum bipartite matching: a detection claims at most one clump and
   vice versa, so a duplicate detection is a false positive, and no greedy order can lose
   a match that an optimal assignment would make).
3. Tie rule: among those, the largest total match quality wins (sum of IoU, or of
   ``1 - distance / limit``); totals that differ by less than 1e-6 are ties, resolved in
   favour of higher-scoring detections; remaining exact ties (e.g. one detection exactly
   between two clumps) are resolved by taking true clumps in image order (top to bottom,
   then left to right) and detections by decreasing score. The result depends only on the
   boxes and scores, never on the order in which they are listed. Ties never change the
   counts (the number of pairs is fixed by step 2), only which clump is called found.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from clump_d2.structures import as_boxes, box_centre_distance, box_iou_xyxy

MATCH_CRITERIA = ("iou", "distance")


def box_half_side(boxes: np.ndarray) -> np.ndarray:
    """Half of the longer side of each XYXY box (the unclipped half side of a square box
    cut by one image edge)."""
    boxes = as_boxes(boxes)
    return np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2


@dataclass(frozen=True)
class MatchCriterion:
    """When a detection may match a true clump, and how good the match is.

    Attributes:
        kind: ``"iou"`` or ``"distance"``.
        iou_thresh: a pair is admissible if IoU >= this (``kind="iou"``).
        distance_factor: a pair is admissible if the centre distance <= this x the true
            box's half side (``kind="distance"``).
    """

    kind: str = "iou"
    iou_thresh: float = 0.5
    distance_factor: float = 1.0

    def __post_init__(self):
        if self.kind not in MATCH_CRITERIA:
            raise ValueError(f"unknown match criterion {self.kind!r}; expected one of "
                             f"{MATCH_CRITERIA}")

    @classmethod
    def from_config(cls, cfg) -> "MatchCriterion":
        """The criterion of ``TEST.CLUMP_EVAL`` (``MATCH``, ``IOU_THRESH``,
        ``DISTANCE_FACTOR``): the one place a config becomes a criterion."""
        ev = cfg.TEST.CLUMP_EVAL
        return cls(str(ev.MATCH), iou_thresh=float(ev.IOU_THRESH),
                   distance_factor=float(ev.DISTANCE_FACTOR))

    def describe(self) -> str:
        """Short human-readable form, e.g. for plot titles."""
        if self.kind == "iou":
            return f"IoU >= {self.iou_thresh:g}"
        return f"centre distance <= {self.distance_factor:g} x box half side"

    def quality(self, true_boxes, det_boxes) -> Tuple[np.ndarray, np.ndarray]:
        """(admissible, quality) matrices of shape (n_true, n_det); quality in [0, 1]."""
        true_boxes, det_boxes = as_boxes(true_boxes), as_boxes(det_boxes)
        if self.kind == "iou":
            iou = box_iou_xyxy(true_boxes, det_boxes)
            return iou >= self.iou_thresh, iou
        limit = self.distance_factor * box_half_side(true_boxes)[:, None]
        dist = box_centre_distance(true_boxes, det_boxes)
        admissible = dist <= limit
        quality = np.where(limit > 0, 1.0 - dist / np.where(limit > 0, limit, 1.0), 0.0)
        return admissible, np.clip(quality, 0.0, 1.0)


def image_order(boxes: np.ndarray, scores: Optional[np.ndarray] = None) -> np.ndarray:
    """Canonical order of boxes: by decreasing score (if given), then top edge, left edge,
    bottom edge, right edge. A permutation of the inputs permutes the result alike."""
    boxes = as_boxes(boxes)
    keys = [boxes[:, 2], boxes[:, 3], boxes[:, 0], boxes[:, 1]]
    if scores is not None:
        keys.append(-np.asarray(scores, dtype=np.float64))
    return np.lexsort(keys)


def assign(admissible: np.ndarray, quality: np.ndarray, true_boxes, det_boxes,
           det_scores: Optional[np.ndarray] = None) -> List[Tuple[int, int]]:
    """Optimal one-to-one assignment on precomputed (admissible, quality) matrices.

    Implements steps 2 and 3 of the module's matching rule with one
    ``linear_sum_assignment`` whose weights order the objectives: every admissible pair is
    worth more than all quality terms together (so the number of pairs is maximised
    first), then quality, then a bonus for high-scoring detections below 1e-6 in total.
    Rows and columns are put in canonical order first (true clumps in image order,
    detections by decreasing score), which fixes the remaining exact ties independently of
    the order of the inputs.

    Returns:
        sorted list of (true_index, det_index) pairs, indices into the inputs.
    """
    n_true, n_det = admissible.shape
    if n_true == 0 or n_det == 0 or not admissible.any():
        return []
    t_perm = image_order(true_boxes)
    d_perm = image_order(det_boxes, np.zeros(n_det) if det_scores is None else det_scores)
    adm = admissible[np.ix_(t_perm, d_perm)]
    k = min(n_true, n_det)
    # Quality is in [0, 1] per pair and at most k pairs exist, so a base of k + 1 per pair
    # makes "one more pair" beat any quality total; the rank bonus sums to < 1e-6.
    rank_bonus = (1e-6 / (k + 1)) * (1.0 - np.arange(n_det) / n_det)
    weight = (k + 1.0) + quality[np.ix_(t_perm, d_perm)] + rank_bonus[None, :]
    weight = np.where(adm, weight, 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return sorted((int(t_perm[r]), int(d_perm[c])) for r, c in zip(rows, cols) if adm[r, c])


def match_boxes(true_boxes, det_boxes, iou_thresh: float = 0.5, *, det_scores=None,
                criterion: Optional[MatchCriterion] = None) -> List[Tuple[int, int]]:
    """Optimal one-to-one matching of detections to true boxes (XYXY).

    Args:
        true_boxes: (N, 4) true clump boxes.
        det_boxes: (M, 4) detected boxes.
        iou_thresh: IoU threshold, used when ``criterion`` is None.
        det_scores: (M,) detection scores, used only to break ties.
        criterion: the matching criterion (default: IoU >= ``iou_thresh``).

    Returns:
        sorted list of (true_index, det_index) pairs.
    """
    criterion = criterion or MatchCriterion("iou", iou_thresh=iou_thresh)
    true_boxes, det_boxes = as_boxes(true_boxes), as_boxes(det_boxes)
    if len(true_boxes) == 0 or len(det_boxes) == 0:
        return []
    admissible, quality = criterion.quality(true_boxes, det_boxes)
    return assign(admissible, quality, true_boxes, det_boxes, det_scores)


def safe_ratio(num: float, den: float) -> float:
    """num / den, or NaN (undefined) when den is 0."""
    return float(num) / float(den) if den else float("nan")


def f1_score(completeness: float, purity: float) -> float:
    """Harmonic mean of completeness and purity; NaN if either is undefined, 0 if both 0."""
    if np.isnan(completeness) or np.isnan(purity):
        return float("nan")
    if completeness + purity == 0:
        return 0.0
    return 2.0 * completeness * purity / (completeness + purity)


@dataclass
class MatchCounts:
    """Counts summed over images; the metrics follow from them."""

    n_true: int = 0
    n_det: int = 0
    n_matched: int = 0

    def __iadd__(self, other: "MatchCounts") -> "MatchCounts":
        self.n_true += other.n_true
        self.n_det += other.n_det
        self.n_matched += other.n_matched
        return self

    def __add__(self, other: "MatchCounts") -> "MatchCounts":
        return MatchCounts(self.n_true + other.n_true, self.n_det + other.n_det,
                           self.n_matched + other.n_matched)

    @property
    def completeness(self) -> float:
        """matched true clumps / true clumps (NaN when there are no true clumps)."""
        return safe_ratio(self.n_matched, self.n_true)

    @property
    def purity(self) -> float:
        """matched detections / detections (NaN, i.e. undefined, when nothing is detected)."""
        return safe_ratio(self.n_matched, self.n_det)

    @property
    def f1(self) -> float:
        """F1 of completeness and purity (NaN when either is undefined)."""
        return f1_score(self.completeness, self.purity)


def count_matches(true_boxes, det_boxes, iou_thresh: float = 0.5, *, det_scores=None,
                  criterion: Optional[MatchCriterion] = None) -> MatchCounts:
    """Counts (true, detected, matched) of one image under :func:`match_boxes`."""
    pairs = match_boxes(true_boxes, det_boxes, iou_thresh, det_scores=det_scores,
                        criterion=criterion)
    return MatchCounts(len(as_boxes(true_boxes)), len(as_boxes(det_boxes)), len(pairs))
