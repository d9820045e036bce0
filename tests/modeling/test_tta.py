"""8-view test-time augmentation: views map back exactly, votes reward consistency, and the
config key wires it into every inference path."""
import pytest
import torch

import clump_d2  # noqa: F401  (compat layer first)
from detectron2.structures import Boxes, Instances

from clump_d2.modeling.tta import (VIEWS, DihedralTTA, boxes_to_input, merge_views,
                                   points_to_input, view_image)


@pytest.mark.parametrize("rotations,flip", VIEWS)
def test_every_view_maps_back_to_the_input_pixel(rotations, flip):
    """A lone bright pixel of a non-square image, seen in the view, maps back to its own
    centre (continuous coordinates, pixel i spans [i, i + 1))."""
    height, width, (row, col) = 7, 11, (2, 8)
    image = torch.zeros(1, height, width)
    image[0, row, col] = 1.0
    view = view_image(image, rotations, flip)
    assert view.shape[-2:] == ((width, height) if rotations % 2 else (height, width))
    r, c = [int(v) for v in torch.nonzero(view[0])[0]]
    back = points_to_input(torch.tensor([[c + 0.5, r + 0.5]]), height, width, rotations, flip)
    assert torch.allclose(back, torch.tensor([[col + 0.5, row + 0.5]]))
    box = boxes_to_input(torch.tensor([[c, r, c + 1.0, r + 1.0]]), height, width, rotations, flip)
    assert torch.allclose(box, torch.tensor([[col, row, col + 1.0, row + 1.0]]))


class _BrightestPixelDetector(torch.nn.Module):
    """Detects the brightest pixel of each input as a 4 px box; with ``only_upright`` it
    also fires (score 0.9) on a fixed spot in the view's frame, as an orientation-dependent
    artefact would."""

    def __init__(self, only_upright_artefact=False):
        super().__init__()
        self.artefact = only_upright_artefact
        self.calls = 0

    def forward(self, inputs):
        self.calls += 1
        outs = []
        for inp in inputs:
            img = inp["image"][0]
            r, c = divmod(int(torch.argmax(img)), img.shape[1])
            boxes = [[c - 1.5, r - 1.5, c + 2.5, r + 2.5]]
            scores = [0.8]
            if self.artefact and torch.equal(inp["image"], inp["_upright"]):
                boxes.append([1.0, 1.0, 5.0, 5.0])
                scores.append(0.9)
            inst = Instances((inp["height"], inp["width"]))
            inst.pred_boxes = Boxes(torch.tensor(boxes))
            inst.scores = torch.tensor(scores)
            inst.pred_classes = torch.zeros(len(scores), dtype=torch.long)
            outs.append({"instances": inst})
        return outs


def test_tta_keeps_a_consistent_clump_and_down_weights_a_one_view_artefact():
    image = torch.zeros(3, 40, 30)
    image[:, 25, 6] = 10.0
    model = _BrightestPixelDetector(only_upright_artefact=True)
    tta = DihedralTTA(model, merge_iou=0.4)
    out = tta([{"image": image, "_upright": image, "height": 40, "width": 30}])[0]["instances"]
    assert model.calls == 1  # all 8 views in one batch
    assert out.image_size == (40, 30)
    assert len(out) == 2
    # the clump: same box as every view found, score unchanged by the vote (8 x 0.8 / 8)
    assert torch.allclose(out.pred_boxes.tensor[0], torch.tensor([4.5, 23.5, 8.5, 27.5]))
    assert out.scores[0] == pytest.approx(0.8)
    # the artefact: one view of 8
    assert torch.allclose(out.pred_boxes.tensor[1], torch.tensor([1.0, 1.0, 5.0, 5.0]))
    assert out.scores[1] == pytest.approx(0.9 / 8)


def test_merge_counts_one_vote_per_view_and_weights_the_box():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10], [0.5, 0, 10.5, 10],
                          [50.0, 50, 60, 60]])
    scores = torch.tensor([0.8, 0.4, 0.6, 0.2])
    views = torch.tensor([0, 1, 0, 3])  # the 0.6 box is view 0's second vote: ignored
    b, s, c = merge_views(boxes, scores, torch.zeros(4, dtype=torch.long), views, 8, 0.5)
    assert s.tolist() == pytest.approx([(0.8 + 0.4) / 8, 0.2 / 8])
    assert b[0].tolist() == pytest.approx([(0.8 * 0 + 0.4 * 1) / 1.2, 0, (0.8 * 10 + 0.4 * 11) / 1.2, 10])
    empty = merge_views(boxes[:0], scores[:0], torch.zeros(0, dtype=torch.long), views[:0], 8, 0.5)
    assert all(len(t) == 0 for t in empty)


def test_config_key_wraps_inference_and_export_unwraps(tiny_model_opts, tmp_path,
                                                       initial_weights):
    from clump_d2.engine import build_config
    from clump_d2.inference.predict import build_inference_model
    from clump_d2.modeling.runtime import unwrap_inference_model

    opts = tiny_model_opts(tmp_path)
    opts += ["MODEL.WEIGHTS", initial_weights("configs/quickstart.yaml", opts,
                                              tmp_path / "init.pth")]
    plain = build_inference_model(build_config("configs/quickstart.yaml", opts))
    assert not isinstance(plain, DihedralTTA)
    cfg = build_config("configs/quickstart.yaml", opts + ["TEST.DIHEDRAL_TTA.ENABLED", "True",
                                                           "TEST.DIHEDRAL_TTA.MERGE_IOU", "0.3"])
    wrapped = build_inference_model(cfg)
    assert isinstance(wrapped, DihedralTTA) and wrapped.merge_iou == 0.3
    assert unwrap_inference_model(wrapped) is wrapped.model
    torch.manual_seed(0)
    image = torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
    with torch.inference_mode():
        out = wrapped([{"image": image, "height": 64, "width": 64}])[0]["instances"]
    assert out.image_size == (64, 64) and len(out) <= cfg.TEST.DETECTIONS_PER_IMAGE
    assert torch.all(out.scores[:-1] >= out.scores[1:])


@pytest.mark.parametrize("views", [4, 2])
def test_fewer_views_vote_over_a_subgroup(views):
    """VIEWS 4 / 2: the rotations only (a subgroup, so every view maps back exactly), one
    batch of that many views, and a one-view artefact down-weighted by that many."""
    image = torch.zeros(3, 40, 30)
    image[:, 25, 6] = 10.0
    model = _BrightestPixelDetector(only_upright_artefact=True)
    tta = DihedralTTA(model, merge_iou=0.4, views=views)
    out = tta([{"image": image, "_upright": image, "height": 40, "width": 30}])[0]["instances"]
    assert model.calls == 1 and len(out) == 2
    assert torch.allclose(out.pred_boxes.tensor[0], torch.tensor([4.5, 23.5, 8.5, 27.5]))
    assert out.scores[0] == pytest.approx(0.8)
    assert out.scores[1] == pytest.approx(0.9 / views)
    with pytest.raises(ValueError, match="VIEWS is 3"):
        DihedralTTA(model, views=3)


def test_traced_backbone_gives_the_eager_detections_and_follows_new_weights(tiny_model_opts,
                                                                           tmp_path):
    """TEST.TRACED_BACKBONE: the same detections as the eager backbone (float rounding), the
    model's state_dict unchanged, and a graph traced before a weight update is not reused."""
    from detectron2.modeling import build_model

    from clump_d2.engine import build_config
    from clump_d2.modeling.runtime import trace_backbone_for_inference

    cfg = build_config("configs/quickstart.yaml", tiny_model_opts(tmp_path))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    x = torch.rand(2, 3, 64, 64) * 255
    keys = list(model.state_dict())
    with torch.inference_mode():
        eager = model.backbone(x)
    trace_backbone_for_inference(model)
    with torch.inference_mode():
        traced = model.backbone(x)
    assert list(model.state_dict()) == keys
    assert set(traced) == set(eager)
    for k in eager:
        assert torch.allclose(traced[k], eager[k], rtol=1e-4, atol=1e-3), k
    with torch.no_grad():  # e.g. an optimizer step between two periodic evaluations
        next(model.backbone.parameters()).mul_(0.5)
    with torch.inference_mode():
        after = model.backbone(x)
    with torch.inference_mode():  # the class's own (eager) forward, on the new weights
        reference = type(model.backbone).forward(model.backbone, x)
    for k in eager:
        assert torch.allclose(after[k], reference[k], rtol=1e-4, atol=1e-3), k
    assert not torch.allclose(after["p2"], traced["p2"])
