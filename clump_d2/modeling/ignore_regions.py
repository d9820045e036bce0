"""Ignore regions in training: places where the image holds something real but unlabelled.

A real host galaxy carries its own compact knots (unlabelled clumps) and, in Clump Scout,
clumps below a flux limit or on the bulge are not asked for. Labelling them as background would
punish the detector for finding real clumps; labelling them as clumps would teach it what the
labels do not say. So they are *ignore regions*: training neither rewards nor punishes
detections there, as COCO's crowd regions.

In the data, an ignore region is an annotation with ``iscrowd: 1``; the mapper turns it into a
ground-truth instance with ``gt_ignore = True``. The two registered heads then:

* ``IgnoreRegionRPN`` (``MODEL.PROPOSAL_GENERATOR.NAME``): anchors are matched to the real clumps
  only; an anchor that is not a positive and whose area lies within an ignore region by at
  least ``MODEL.IGNORE_REGIONS.IOA_THRESH`` (intersection over the anchor's area) gets the
  ignore label (-1) *before* the positive/negative sampling, so it is neither sampled as
  background nor counted.
* ``IgnoreRegionROIHeads`` (``MODEL.ROI_HEADS.NAME``): proposals inside an ignore region by the
  same measure are removed before sampling, unless they overlap a real clump enough to be a
  foreground proposal (IoU >= the head's foreground threshold); real clumps alone are the
  targets.

Without ``gt_ignore`` fields (or with no ignore regions in an image) both behave exactly as
Detectron2's ``RPN`` and ``StandardROIHeads``.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling.proposal_generator.build import PROPOSAL_GENERATOR_REGISTRY
from detectron2.modeling.proposal_generator.rpn import RPN
from detectron2.modeling.roi_heads.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Boxes, Instances, pairwise_ioa, pairwise_iou

from clump_d2.structures import IGNORE_FIELD



def split_ignore(instances: Instances) -> Tuple[Instances, Boxes]:
    """(the real instances, the ignore boxes) of one image's ground truth."""
    if not instances.has(IGNORE_FIELD):
        return instances, Boxes(instances.gt_boxes.tensor[:0])
    ignore = instances.get(IGNORE_FIELD).bool()
    real = instances[~ignore]
    real.remove(IGNORE_FIELD)
    return real, instances.gt_boxes[ignore]


def inside_ignore(boxes: Boxes, ignore_boxes: Boxes, ioa_thresh: float) -> torch.Tensor:
    """Bool per box: the fraction of its area inside some ignore box is >= ``ioa_thresh``."""
    if len(ignore_boxes) == 0 or len(boxes) == 0:
        return torch.zeros(len(boxes), dtype=torch.bool, device=boxes.tensor.device)
    # pairwise_ioa(a, b): intersection / area of b, shape (len(a), len(b)).
    return (pairwise_ioa(ignore_boxes, boxes) >= ioa_thresh).any(dim=0)


class _IgnoreThreshold:
    """``ignore_ioa_thresh`` (``MODEL.IGNORE_REGIONS.IOA_THRESH``) added to a configurable head."""

    @configurable
    def __init__(self, *, ignore_ioa_thresh: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.ignore_ioa_thresh = float(ignore_ioa_thresh)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["ignore_ioa_thresh"] = cfg.MODEL.IGNORE_REGIONS.IOA_THRESH
        return ret


@PROPOSAL_GENERATOR_REGISTRY.register()
class IgnoreRegionRPN(_IgnoreThreshold, RPN):
    """Detectron2's RPN whose anchors inside ignore regions are neither positives nor negatives."""

    @torch.no_grad()
    def label_and_sample_anchors(self, anchors: List[Boxes], gt_instances: List[Instances]):
        """As :meth:`RPN.label_and_sample_anchors`, with real clumps as the only matches and
        anchors inside ignore regions labelled -1 before sampling."""
        anchors = Boxes.cat(anchors)
        gt_labels, matched_gt_boxes = [], []
        for instances in gt_instances:
            real, ignore_boxes = split_ignore(instances)
            gt_boxes = real.gt_boxes
            quality = pairwise_iou(gt_boxes, anchors)
            matched_idxs, labels = self.anchor_matcher(quality)
            labels = labels.to(device=gt_boxes.device)
            del quality
            if self.anchor_boundary_thresh >= 0:
                labels[~anchors.inside_box(real.image_size, self.anchor_boundary_thresh)] = -1
            labels[(labels == 0) & inside_ignore(anchors, ignore_boxes, self.ignore_ioa_thresh)] = -1
            labels = self._subsample_labels(labels)
            if len(gt_boxes) == 0:
                matched = torch.zeros_like(anchors.tensor)  # unused: no anchor is positive
            else:
                matched = gt_boxes[matched_idxs].tensor
            gt_labels.append(labels)
            matched_gt_boxes.append(matched)
        return gt_labels, matched_gt_boxes


@ROI_HEADS_REGISTRY.register()
class IgnoreRegionROIHeads(_IgnoreThreshold, StandardROIHeads):
    """Detectron2's StandardROIHeads trained on real clumps only, with proposals inside ignore
    regions left out of the sampling."""

    def drop_ignored_proposals(self, proposals: List[Instances],
                               targets: List[Instances]) -> Tuple[List[Instances],
                                                                  List[Instances]]:
        """(proposals without those inside ignore regions, the real targets), per image."""
        fg_thresh = float(self.proposal_matcher.thresholds[1])
        kept, real_targets = [], []
        for props, instances in zip(proposals, targets):
            real, ignore_boxes = split_ignore(instances)
            boxes = props.proposal_boxes
            drop = inside_ignore(boxes, ignore_boxes, self.ignore_ioa_thresh)
            if drop.any() and len(real):
                drop &= pairwise_iou(real.gt_boxes, boxes).max(dim=0).values < fg_thresh
            kept.append(props[~drop])
            real_targets.append(real)
        return kept, real_targets

    def forward(self, images, features, proposals, targets: Optional[List[Instances]] = None):
        if self.training and targets is not None:
            proposals, targets = self.drop_ignored_proposals(proposals, targets)
        return super().forward(images, features, proposals, targets)


__all__ = ["IGNORE_FIELD", "IgnoreRegionROIHeads", "IgnoreRegionRPN", "inside_ignore",
           "split_ignore"]
