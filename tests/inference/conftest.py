"""Fixtures of the inference tests: configs, a tiny random model, and an oracle predictor.

The oracle is a *stub* model: it returns the true clump boxes of each galaxy (looked up by
galaxy id) instead of detecting anything. It is used only where a test is about catalogue
bookkeeping (positions, statuses, shards, resuming), never to claim the detector works.
"""
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import pytest
import torch

import clump_d2  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


def make_cfg(tiny_model_opts, output_dir, extra: Sequence[str] = ()):
    from clump_d2.engine.defaults import build_config

    opts = list(tiny_model_opts(output_dir)) + list(extra)
    return build_config(str(REPO / "configs" / "quickstart.yaml"), opts)


class OracleModel:
    """Stub predictor: answers each galaxy with its true boxes (see the module docstring).

    Args:
        truth: galaxy_id -> (boxes XYXY (N, 4), classes (N,)); scores are 0.95, 0.90, ...
            in the given order, so the catalogue's clump ids follow that order.
        fail_on: galaxy ids on which the model raises (to test per-galaxy failures).
    """

    def __init__(self, truth: Dict[str, tuple], fail_on: Sequence[str] = ()):
        self.truth = truth
        self.fail_on = set(fail_on)
        self.seen = []  # galaxy ids, in call order
        self.batch_sizes = []

    def __call__(self, inputs):
        from detectron2.structures import Boxes, Instances

        self.batch_sizes.append(len(inputs))
        if any(i["galaxy_id"] in self.fail_on for i in inputs):
            raise RuntimeError("oracle told to fail")
        outputs = []
        for item in inputs:
            image = item["image"]
            assert image.ndim == 3 and image.shape[0] == 3
            h, w = int(item["height"]), int(item["width"])
            assert tuple(image.shape[1:]) == (h, w)
            self.seen.append(item["galaxy_id"])
            boxes, classes = self.truth.get(item["galaxy_id"], (np.zeros((0, 4)), np.zeros(0)))
            inst = Instances((h, w))
            inst.pred_boxes = Boxes(torch.as_tensor(np.asarray(boxes, np.float64).reshape(-1, 4)))
            inst.scores = torch.tensor([0.95 - 0.05 * k for k in range(len(boxes))],
                                       dtype=torch.float64)
            inst.pred_classes = torch.as_tensor(np.asarray(classes, np.int64))
            outputs.append({"instances": inst})
        return outputs


@pytest.fixture
def inference_cfg(tiny_model_opts, tmp_path):
    """``inference_cfg(*extra_opts)``: the tiny-model config with extra overrides."""
    return lambda *extra: make_cfg(tiny_model_opts, tmp_path / "out", extra)


@pytest.fixture
def tiny_weights(tiny_model_opts, tmp_path_factory):
    """Path of a checkpoint of the tiny Faster R-CNN, randomly initialised with a fixed seed
    (made once per session), so that separate processes run the very same model."""
    from detectron2.modeling import build_model

    folder = tmp_path_factory.getbasetemp() / "tiny_weights"
    path = folder / "model_random.pth"
    if not path.exists():
        cfg = make_cfg(tiny_model_opts, folder)
        torch.manual_seed(0)
        model = build_model(cfg)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict()}, path)
    return path


def truth_from_coco(json_file) -> Dict[str, tuple]:
    """galaxy_id (str(image id)) -> (true boxes XYXY, classes) of a clump COCO JSON."""
    import json

    coco = json.loads(Path(json_file).read_text())
    truth = {str(im["id"]): ([], []) for im in coco["images"]}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        truth[str(ann["image_id"])][0].append([x, y, x + w, y + h])
        truth[str(ann["image_id"])][1].append(ann["category_id"] - 1)
    return {k: (np.asarray(b, np.float64).reshape(-1, 4), np.asarray(c, np.int64))
            for k, (b, c) in truth.items()}


@pytest.fixture
def oracle():
    """The :class:`OracleModel` class (a stub predictor; see the module docstring)."""
    return OracleModel


@pytest.fixture
def coco_truth():
    """:func:`truth_from_coco`."""
    return truth_from_coco
