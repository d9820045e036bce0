"""Clump boxes: squares of side 2.5 x PSF FWHM, and the rule for boxes at the image edge.

Edge rule (used by every converter): a box whose *centre* lies outside the frame
``[0, W) x [0, H)`` is dropped (the clump is not in the picture; counted as
``centre_outside_<frame>``); a box whose centre is inside but which crosses the edge is
clipped to the frame (counted as ``clipped`` among the kept boxes). A clipped box keeps at
least half its side in each direction, so it never degenerates; a box with a non-finite or
non-positive size is dropped as ``non_positive_size`` / ``nan_coordinates``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

#: Clump Scout: the box side is 2.5 x the PSF FWHM, centred on the clump.
BOX_SIDE_PER_FWHM = 2.5


def square_box(cx: float, cy: float, side: float) -> Tuple[float, float, float, float]:
    """XYXY square of side ``side`` centred on ``(cx, cy)``."""
    h = side / 2.0
    return (cx - h, cy - h, cx + h, cy + h)


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
