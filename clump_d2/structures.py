"""Facts about clumps with one home: class names, the Clump Scout box (a square of side
2.5 x PSF FWHM centred on the clump), box geometry, and the rule for boxes at the image edge.

Edge rule (used by every converter): a box whose *centre* lies outside the frame
``[0, W) x [0, H)`` is dropped (the clump is not in the picture; counted as
``centre_outside_<frame>``); a box whose centre is inside but which crosses the edge is
clipped to the frame (counted as ``clipped`` among the kept boxes). A clipped box keeps at
least half its side in each direction, so it never degenerates; a box with a non-finite or
non-positive size is dropped as ``non_positive_size`` / ``nan_coordinates``.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

#: Class names in contiguous id order (COCO category ids 1 and 2).
CLUMP_CLASSES = ["clump", "odd_clump"]
#: COCO categories of every clump JSON clump_d2 writes.
CATEGORIES = [{"id": i + 1, "name": name} for i, name in enumerate(CLUMP_CLASSES)]
#: Clump Scout: the box side is 2.5 x the PSF FWHM, centred on the clump.
BOX_SIDE_PER_FWHM = 2.5
#: Field of a ground-truth ``Instances`` marking ignore regions (annotations with ``iscrowd``:
#: real but unlabelled, e.g. a host's own knots); see ``modeling/ignore_regions.py``.
IGNORE_FIELD = "gt_ignore"
#: Half the box side in PSF FWHM: the distance rule's tolerance for a Clump Scout box.
BOX_HALF_SIDE_PER_FWHM = BOX_SIDE_PER_FWHM / 2


def is_number(value) -> bool:
    """A real number (int/float, numpy too), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


def parse_attribute_limits(specs: Sequence[str]) -> Dict[str, float]:
    """``["flux_frac_u:0.03", ...]`` -> ``{"flux_frac_u": 0.03}``: the limits on a clump's
    numeric attributes of ``TEST.CLUMP_EVAL.IGNORE_BELOW`` (evaluation) and
    ``MODEL.IGNORE_REGIONS.BELOW`` (training)."""
    out = {}
    for spec in specs:
        name, sep, value = str(spec).partition(":")
        try:
            limit = float(value)
        except ValueError:
            limit = float("nan")
        if not sep or not name.strip() or not math.isfinite(limit):
            raise ValueError(f"ignore rule {spec!r}: expected 'attribute:limit' with a finite "
                             "number, e.g. 'flux_frac_u:0.03'")
        out[name.strip()] = limit
    return out


def below_limits(anno: Dict, limits: Dict[str, float]) -> List[str]:
    """The attributes of ``limits`` on which annotation ``anno`` has a finite value below the
    limit (a clump without the attribute is not below it)."""
    out = []
    for name, limit in limits.items():
        value = anno.get(name)
        if is_number(value) and math.isfinite(value) and value < limit:
            out.append(name)
    return out


def square_box(cx: float, cy: float, side: float) -> Tuple[float, float, float, float]:
    """XYXY square of side ``side`` centred on ``(cx, cy)``."""
    h = side / 2.0
    return (cx - h, cy - h, cx + h, cy + h)


def clump_box_xyxy(cx: float, cy: float, psf_fwhm_px: float) -> Tuple[float, float, float, float]:
    """The Clump Scout box (XYXY) of a clump at ``(cx, cy)``: side 2.5 x PSF FWHM."""
    return square_box(cx, cy, BOX_SIDE_PER_FWHM * psf_fwhm_px)


def clump_box_xywh_in_frame(cx: float, cy: float, psf_fwhm_px: float, width: float,
                            height: float) -> Optional[List[float]]:
    """The Clump Scout box (XYWH) clipped to the frame ``[0, width) x [0, height)``; None if
    nothing of it is inside."""
    x1, y1, x2, y2 = clump_box_xyxy(cx, cy, psf_fwhm_px)
    x1, y1 = max(0.0, x1), max(0.0, y1)
    x2, y2 = min(float(width), x2), min(float(height), y2)
    if x2 <= x1 or y2 <= y1:
        return None
    return [x1, y1, x2 - x1, y2 - y1]


def check_box(x1: float, y1: float, x2: float, y2: float) -> Optional[str]:
    """``None`` if the XYXY box is usable, else the drop reason."""
    if not all(math.isfinite(float(v)) for v in (x1, y1, x2, y2)):
        return "nan_coordinates"
    if not (x2 > x1 and y2 > y1):
        return "non_positive_size"
    return None


def fit_box_to_frame(box_xyxy: Sequence[float], width: float, height: float,
                     frame: str = "image") -> Tuple[Optional[Tuple[float, ...]], str]:
    """Apply the edge rule to one XYXY box in frame coordinates.

    Returns:
        ``(box, status)``: ``box`` is the clipped XYXY box or ``None`` if dropped; ``status``
        is ``"inside"``, ``"clipped"`` or the drop reason (``"nan_coordinates"``,
        ``"non_positive_size"``, ``"centre_outside_<frame>"``).
    """
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    bad = check_box(x1, y1, x2, y2)
    if bad:
        return None, bad
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    if not (0.0 <= cx < width and 0.0 <= cy < height):
        return None, f"centre_outside_{frame}"
    cx1, cy1 = max(x1, 0.0), max(y1, 0.0)
    cx2, cy2 = min(x2, float(width)), min(y2, float(height))
    if (cx1, cy1, cx2, cy2) == (x1, y1, x2, y2):
        return (x1, y1, x2, y2), "inside"
    return (cx1, cy1, cx2, cy2), "clipped"


def xyxy_to_xywh(box: Sequence[float]) -> list:
    x1, y1, x2, y2 = box
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def clump_position(ann: dict) -> Tuple[float, float]:
    """(x, y) of a clump annotation: its catalogue position ``x``/``y`` where the converter
    kept one (exact even when the box was clipped at the frame's edge), else the centre of
    its ``bbox`` (XYWH)."""
    if "x" in ann and "y" in ann:
        return float(ann["x"]), float(ann["y"])
    x, y, w, h = ann["bbox"]
    return x + w / 2, y + h / 2


# --- box geometry on arrays (XYXY, continuous pixel coordinates) ------------------------------


def as_boxes(boxes) -> np.ndarray:
    """Any (N, 4) array-like (or empty) -> float64 array of shape (N, 4)."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def box_iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of boxes in XYXY (0 where a union is empty)."""
    a, b = as_boxes(a), as_boxes(b)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def box_centres(boxes) -> np.ndarray:
    """(N, 2) centres of XYXY boxes."""
    b = as_boxes(boxes)
    return (b[:, :2] + b[:, 2:]) / 2


def box_centre_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance matrix (len(a), len(b)) between the centres of XYXY boxes."""
    ca, cb = box_centres(a), box_centres(b)
    return np.hypot(ca[:, None, 0] - cb[None, :, 0], ca[:, None, 1] - cb[None, :, 1])
