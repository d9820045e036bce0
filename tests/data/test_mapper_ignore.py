"""The mapper keeps iscrowd annotations as ignore regions only for ignore-aware heads."""
import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from PIL import Image

from clump_d2.data.mapper import ClumpDatasetMapper
from clump_d2.engine import build_config
from clump_d2.modeling.ignore_regions import IGNORE_FIELD

SIZE = 96


def _record(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "host.png"
    Image.fromarray(rng.integers(0, 60, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)
    return {"file_name": str(path), "image_id": 1, "height": SIZE, "width": SIZE,
            "annotations": [
                {"bbox": [10.0, 12.0, 16.0, 16.0], "bbox_mode": 1, "category_id": 0,
                 "iscrowd": 0},
                {"bbox": [60.0, 58.0, 18.0, 18.0], "bbox_mode": 1, "category_id": 0,
                 "iscrowd": 1}]}


def _cfg(tmp_path, tiny_model_opts, ignore_heads):
    opts = list(tiny_model_opts(tmp_path)) + ["INPUT.AUG.HFLIP", "False", "INPUT.AUG.VFLIP",
                                              "False", "INPUT.AUG.ROT90", "False"]
    if ignore_heads:
        opts += ["MODEL.PROPOSAL_GENERATOR.NAME", "IgnoreRegionRPN",
                 "MODEL.ROI_HEADS.NAME", "IgnoreRegionROIHeads"]
    return build_config("configs/quickstart.yaml", opts)


def test_ignore_kept_for_ignore_aware_heads(tmp_path, tiny_model_opts):
    out = ClumpDatasetMapper(_cfg(tmp_path, tiny_model_opts, True), True)(_record(tmp_path))
    inst = out["instances"]
    assert len(inst) == 2
    assert inst.get(IGNORE_FIELD).tolist() == [False, True]
    # The ignore box is the annotation's box, as for a clump (no augmentation).
    assert torch.allclose(inst.gt_boxes.tensor[1], torch.tensor([60.0, 58.0, 78.0, 76.0]))


def test_ignore_dropped_for_standard_heads(tmp_path, tiny_model_opts):
    out = ClumpDatasetMapper(_cfg(tmp_path, tiny_model_opts, False), True)(_record(tmp_path))
    inst = out["instances"]
    assert len(inst) == 1 and not inst.has(IGNORE_FIELD)
    assert torch.allclose(inst.gt_boxes.tensor[0], torch.tensor([10.0, 12.0, 26.0, 28.0]))


def test_only_one_ignore_aware_head_is_enough(tmp_path, tiny_model_opts):
    cfg = _cfg(tmp_path, tiny_model_opts, False)
    cfg.defrost()
    cfg.MODEL.ROI_HEADS.NAME = "IgnoreRegionROIHeads"
    assert ClumpDatasetMapper(cfg, True).keep_ignore
    assert not ClumpDatasetMapper(cfg, False)(_record(tmp_path)).get("instances")


def test_training_step_on_a_record_with_an_ignore_region(tmp_path, tiny_model_opts):
    cfg = _cfg(tmp_path, tiny_model_opts, True)
    batch = [ClumpDatasetMapper(cfg, True)(_record(tmp_path))]
    model = build_model(cfg)
    model.train()
    with EventStorage():
        losses = model(batch)
    assert set(losses) >= {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    total = sum(losses.values())
    assert torch.isfinite(total) and total > 0
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_clumps_below_a_training_limit_become_ignore_regions(tmp_path, tiny_model_opts):
    """MODEL.IGNORE_REGIONS.BELOW: a clump below the limit is an ignore region, one at or
    above it, one without the attribute and one with NaN stay clumps; iscrowd stays ignored."""
    record = _record(tmp_path)
    base = record["annotations"][0]
    record["annotations"] = [
        {**base, "flux_frac_u": 0.005}, {**base, "bbox": [30.0, 30.0, 16.0, 16.0],
                                         "flux_frac_u": 0.01},
        {**base, "bbox": [50.0, 10.0, 16.0, 16.0]},
        {**base, "bbox": [10.0, 50.0, 16.0, 16.0], "flux_frac_u": float("nan")},
        record["annotations"][1]]
    cfg = _cfg(tmp_path, tiny_model_opts, True)
    cfg.defrost()
    cfg.MODEL.IGNORE_REGIONS.BELOW = ["flux_frac_u:0.01"]
    inst = ClumpDatasetMapper(cfg, True)(record)["instances"]
    assert inst.get(IGNORE_FIELD).tolist() == [True, False, False, False, True]
    # The dataset's own dicts are not changed.
    assert all(not a["iscrowd"] for a in record["annotations"][:4])


def test_training_limit_needs_ignore_aware_heads(tmp_path, tiny_model_opts):
    cfg = _cfg(tmp_path, tiny_model_opts, False)
    cfg.defrost()
    cfg.MODEL.IGNORE_REGIONS.BELOW = ["flux_frac_u:0.01"]
    with pytest.raises(ValueError, match="MODEL.IGNORE_REGIONS.BELOW needs the ignore-aware"):
        ClumpDatasetMapper(cfg, True)
