"""Ignore regions: anchors and proposals inside them are neither positives nor negatives."""
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from clump_d2.engine import build_config
from clump_d2.modeling.ignore_regions import IGNORE_FIELD, inside_ignore, split_ignore

IMAGE = 96


def _cfg(tmp_path, tiny_model_opts, ignore_heads=True):
    opts = list(tiny_model_opts(tmp_path))
    if ignore_heads:
        opts += ["MODEL.PROPOSAL_GENERATOR.NAME", "IgnoreRegionRPN",
                 "MODEL.ROI_HEADS.NAME", "IgnoreRegionROIHeads"]
    return build_config("configs/quickstart.yaml", opts)


def _targets(with_ignore=True):
    boxes = [[10.0, 10.0, 26.0, 26.0]]  # one real clump
    flags = [False]
    if with_ignore:
        boxes.append([60.0, 60.0, 80.0, 80.0])  # one unlabelled knot
        flags.append(True)
    inst = Instances((IMAGE, IMAGE))
    inst.gt_boxes = Boxes(torch.tensor(boxes))
    inst.gt_classes = torch.zeros(len(boxes), dtype=torch.int64)
    inst.set(IGNORE_FIELD, torch.tensor(flags))
    return inst


def test_split_and_inside():
    real, ignore = split_ignore(_targets())
    assert len(real) == 1 and len(ignore) == 1 and not real.has(IGNORE_FIELD)
    boxes = Boxes(torch.tensor([[62.0, 62.0, 70.0, 70.0],   # fully inside the ignore box
                                [75.0, 75.0, 85.0, 85.0],   # a quarter inside
                                [0.0, 0.0, 8.0, 8.0]]))     # outside
    assert inside_ignore(boxes, ignore, 0.5).tolist() == [True, False, False]
    assert inside_ignore(boxes, ignore, 0.2).tolist() == [True, True, False]


def test_rpn_ignores_anchors_in_ignore_regions(tmp_path, tiny_model_opts):
    model = build_model(_cfg(tmp_path, tiny_model_opts))
    rpn = model.proposal_generator
    rpn.batch_size_per_image = 10**6  # keep every label: look at the labelling itself
    images = torch.zeros(1, 3, IMAGE, IMAGE)
    features = model.backbone(images)
    anchors = rpn.anchor_generator([features[f] for f in rpn.in_features])
    all_anchors = Boxes.cat(anchors)
    _, ignore = split_ignore(_targets())
    inside = inside_ignore(all_anchors, ignore, 0.5)
    assert inside.sum() > 10
    labels_ign, _ = rpn.label_and_sample_anchors(anchors, [_targets(True)])
    labels_bg, _ = rpn.label_and_sample_anchors(anchors, [_targets(False)])
    labels_ign, labels_bg = labels_ign[0], labels_bg[0]
    # Without the ignore region those anchors are background; with it, ignored.
    assert (labels_bg[inside] == 0).all()
    assert (labels_ign[inside] == -1).all()
    # Everything else is labelled as without it (same real clump, same matcher).
    assert torch.equal(labels_ign[~inside], labels_bg[~inside])
    assert (labels_ign == 1).sum() >= 1


def test_roi_heads_drop_proposals_in_ignore_regions(tmp_path, tiny_model_opts):
    model = build_model(_cfg(tmp_path, tiny_model_opts))
    heads = model.roi_heads
    props = Instances((IMAGE, IMAGE))
    props.proposal_boxes = Boxes(torch.tensor([[61.0, 61.0, 79.0, 79.0],   # on the knot
                                               [11.0, 11.0, 25.0, 25.0],   # on the clump
                                               [40.0, 0.0, 56.0, 16.0]]))  # background
    props.objectness_logits = torch.zeros(3)
    kept, real = heads.drop_ignored_proposals([props], [_targets()])
    assert kept[0].proposal_boxes.tensor.tolist() == [[11.0, 11.0, 25.0, 25.0],
                                                      [40.0, 0.0, 56.0, 16.0]]
    assert len(real[0]) == 1


def test_training_step_runs_with_ignore_regions(tmp_path, tiny_model_opts):
    model = build_model(_cfg(tmp_path, tiny_model_opts))
    model.train()
    batch = [{"image": torch.randint(0, 255, (3, IMAGE, IMAGE)).float(),
              "height": IMAGE, "width": IMAGE, "instances": _targets()}]
    with EventStorage():
        losses = model(batch)
    assert set(losses) >= {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
