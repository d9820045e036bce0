"""One-to-one matching of detections to true clumps, and the counts it yields.

Pure functions (numpy in, numbers out) so that tests can pin the maths down.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


def box_iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of boxes in XYXY."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_boxes(true_boxes: np.ndarray, det_boxes: np.ndarray, iou_thresh: float = 0.5):
    """Optimal one-to-one matching under IoU >= ``iou_thresh``.

    Maximises the number of matched pairs, then their total IoU (Hungarian assignment on
    IoU over admissible pairs). A detection can claim at most one true clump and vice
    versa, so a duplicate detection of one clump is a false positive.

    Returns:
        list of (true_index, det_index) pairs.
    """
    true_boxes = np.asarray(true_boxes, dtype=np.float64).reshape(-1, 4)
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    if len(true_boxes) == 0 or len(det_boxes) == 0:
        return []
    iou = box_iou_xyxy(true_boxes, det_boxes)
    admissible = iou >= iou_thresh
    # A large bonus per admissible pair makes "more matches" dominate "higher IoU".
    weight = np.where(admissible, 1.0 + iou, 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if admissible[r, c]]


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

    @property
    def completeness(self) -> float:
        """matched true clumps / true clumps (NaN when there are no true clumps)."""
        return self.n_matched / self.n_true if self.n_true else float("nan")

    @property
    def purity(self) -> float:
        """matched detections / detections (NaN, i.e. undefined, when nothing is detected)."""
        return self.n_matched / self.n_det if self.n_det else float("nan")

    @property
    def f1(self) -> float:
        c, p = self.completeness, self.purity
        if np.isnan(c) or np.isnan(p) or c + p == 0:
            return float("nan") if (np.isnan(c) or np.isnan(p)) else 0.0
        return 2 * c * p / (c + p)


def count_matches(true_boxes, det_boxes, iou_thresh: float = 0.5) -> MatchCounts:
    pairs = match_boxes(true_boxes, det_boxes, iou_thresh)
    return MatchCounts(len(np.asarray(true_boxes).reshape(-1, 4)),
                       len(np.asarray(det_boxes).reshape(-1, 4)), len(pairs))
