"""Test-time augmentation over the 8 flips and 90-degree rotations of a cutout (or a
subgroup of them: ``TEST.DIHEDRAL_TTA.VIEWS`` 4 or 2, for speed).

A galaxy cutout has no preferred orientation (the training mapper already draws all 8), so
the detector's answer should not depend on it. :class:`DihedralTTA` runs the wrapped model
on all 8 views of each input, maps every box back to the input frame and merges them by
*score voting*: boxes overlapping the best remaining one (IoU >= ``merge_iou``) form a
cluster, whose score is the sum over views of each view's best score in it divided by the
number of views. A knot found in every view keeps its score; a noise peak that only one
orientation of the network fires on is down-weighted by up to 8x. The cluster's box is the
score-weighted mean of its members, its class that of its best member.

Enabled by ``TEST.DIHEDRAL_TTA.ENABLED`` (evaluation during training, tools/eval_real.py,
catalogues and injection-recovery build their model through :func:`clump_d2.modeling.runtime.
prepare_for_inference`); costs 8x the inference time.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from detectron2.structures import Boxes, Instances
from torch import nn
from torchvision.ops import box_iou

#: (number of 90-degree counter-clockwise rotations, horizontal flip first?) of each view.
VIEWS: Tuple[Tuple[int, bool], ...] = tuple((k, f) for f in (False, True) for k in range(4))
#: Fewer views (``TEST.DIHEDRAL_TTA.VIEWS``): subgroups of the 8, so that the voting stays
#: symmetric: 4 = the rotations by 0/90/180/270 degrees, 2 = upright and upside down, 1 = none.
SUBGROUPS: Dict[int, Tuple[Tuple[int, bool], ...]] = {
    8: VIEWS, 4: tuple((k, False) for k in range(4)), 2: ((0, False), (2, False)),
    1: ((0, False),)}


def dihedral_views(n: int) -> Tuple[Tuple[int, bool], ...]:
    """The ``n`` views of :data:`SUBGROUPS` (n in 1, 2, 4, 8)."""
    if n not in SUBGROUPS:
        raise ValueError(f"TEST.DIHEDRAL_TTA.VIEWS is {n}; use one of {sorted(SUBGROUPS)}")
    return SUBGROUPS[n]


def view_image(image: torch.Tensor, rotations: int, flip: bool) -> torch.Tensor:
    """A (C, H, W) image in the view: flipped left-right if ``flip``, then rotated
    ``rotations`` x 90 degrees counter-clockwise (``torch.rot90`` on the H, W axes)."""
    if flip:
        image = image.flip(-1)
    return torch.rot90(image, rotations, dims=(-2, -1)) if rotations % 4 else image


def view_size(height: int, width: int, rotations: int) -> Tuple[int, int]:
    """(height, width) of the view of a ``height`` x ``width`` image."""
    return (width, height) if rotations % 2 else (height, width)


def points_to_input(points: torch.Tensor, height: int, width: int, rotations: int,
                    flip: bool) -> torch.Tensor:
    """Map (N, 2) continuous (x, y) points of the view back to the ``height`` x ``width``
    input frame (pixel i spans [i, i + 1), as Detectron2's boxes)."""
    x, y = points[:, 0], points[:, 1]
    h, w = view_size(height, width, rotations)  # the view's size
    for _ in range(rotations % 4):
        # One counter-clockwise turn sends input (x, y) of an image w_in wide to
        # (y, w_in - x); undo it: x_in = h_view - y, y_in = x, and the size swaps back.
        x, y = h - y, x
        h, w = w, h
    if flip:
        x = width - x
    return torch.stack([x, y], dim=1)


def boxes_to_input(boxes: torch.Tensor, height: int, width: int, rotations: int,
                   flip: bool) -> torch.Tensor:
    """(N, 4) XYXY boxes of the view -> XYXY boxes in the input frame."""
    if len(boxes) == 0:
        return boxes
    corners = torch.stack([boxes[:, [0, 1]], boxes[:, [2, 3]]], dim=1).reshape(-1, 2)
    back = points_to_input(corners, height, width, rotations, flip).reshape(-1, 2, 2)
    return torch.cat([back.min(dim=1).values, back.max(dim=1).values], dim=1)


def merge_views(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
                view_ids: torch.Tensor, n_views: int, merge_iou: float):
    """Score voting over views (see the module docstring); returns (boxes, scores, classes)
    sorted by decreasing score."""
    order = torch.argsort(scores, descending=True)
    boxes, scores, classes, view_ids = boxes[order], scores[order], classes[order], view_ids[order]
    free = torch.ones(len(scores), dtype=torch.bool)
    iou = box_iou(boxes, boxes) if len(boxes) else torch.zeros((0, 0))
    out_boxes, out_scores, out_classes = [], [], []
    for i in range(len(scores)):
        if not free[i]:
            continue
        members = torch.nonzero(free & (iou[i] >= merge_iou)).flatten()
        free[members] = False
        # one vote per view: its best box in the cluster (members are sorted by score)
        best_per_view: Dict[int, int] = {}
        for m in members.tolist():
            best_per_view.setdefault(int(view_ids[m]), m)
        voters = torch.tensor(sorted(best_per_view.values()))
        weights = scores[voters]
        out_boxes.append((boxes[voters] * weights[:, None]).sum(0) / weights.sum())
        out_scores.append(weights.sum() / n_views)
        out_classes.append(classes[i])
    if not out_scores:
        return boxes[:0], scores[:0], classes[:0]
    merged_scores = torch.stack(out_scores)
    order = torch.argsort(merged_scores, descending=True)
    return torch.stack(out_boxes)[order], merged_scores[order], torch.stack(out_classes)[order]


def _output_size(inp: Dict) -> Tuple[int, int]:
    """(height, width) of the frame the model reports an input's boxes in."""
    h_img, w_img = inp["image"].shape[-2:]
    return int(inp.get("height", h_img)), int(inp.get("width", w_img))


class DihedralTTA(nn.Module):
    """Wraps a Detectron2 model: each input is predicted in its 8 orientations and the
    detections merged by score voting (module docstring). Inputs are Detectron2 dicts
    (``image`` (C, H, W), optional ``height``/``width`` of the output frame); outputs are
    ``{"instances": Instances}`` in the input's output frame, like the model's."""

    def __init__(self, model: nn.Module, merge_iou: float = 0.4,
                 max_detections: int = 100, views: int = 8):
        super().__init__()
        self.model = model
        self.merge_iou = float(merge_iou)
        self.max_detections = int(max_detections)
        self.views = dihedral_views(int(views))

    def forward(self, batched_inputs: Sequence[Dict]) -> List[Dict]:
        sizes = [_output_size(inp) for inp in batched_inputs]
        views = []
        for inp, (height, width) in zip(batched_inputs, sizes):
            for rotations, flip in self.views:
                vh, vw = view_size(height, width, rotations)
                views.append(dict(inp, image=view_image(inp["image"], rotations, flip),
                                  height=vh, width=vw))
        outputs = self.model(views)
        merged = []
        for i, (height, width) in enumerate(sizes):
            boxes, scores, classes, view_ids = [], [], [], []
            for v, (rotations, flip) in enumerate(self.views):
                inst = outputs[i * len(self.views) + v]["instances"].to("cpu")
                boxes.append(boxes_to_input(inst.pred_boxes.tensor.float(), height, width,
                                            rotations, flip))
                scores.append(inst.scores.float())
                classes.append(inst.pred_classes)
                view_ids.append(torch.full((len(inst),), v, dtype=torch.long))
            b, s, c = merge_views(torch.cat(boxes), torch.cat(scores), torch.cat(classes),
                                  torch.cat(view_ids), len(self.views), self.merge_iou)
            keep = slice(0, self.max_detections)
            result = Instances((height, width))
            result.pred_boxes = Boxes(b[keep])
            result.scores = s[keep]
            result.pred_classes = c[keep]
            merged.append({"instances": result})
        return merged
