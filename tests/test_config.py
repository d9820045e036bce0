"""add_clump_config and the shipped YAML configs."""
from pathlib import Path

import pytest
from detectron2.config import get_cfg

from clump_d2.config import add_clump_config
from clump_d2.engine import build_config

REPO = Path(__file__).resolve().parents[1]


def test_add_clump_config_adds_keys_without_touching_global_defaults():
    cfg = add_clump_config(get_cfg())
    assert cfg.TEST.CLUMP_EVAL.SCORE_THRESH == 0.5
    assert cfg.INPUT.AUG.ROT90 is True
    assert cfg.DATASETS.SYNTHETIC.NUM_TRAIN > 0
    fresh = get_cfg()
    assert "CLUMP_EVAL" not in fresh.TEST and "AUG" not in fresh.INPUT
    assert "CLUMP_EVAL" not in cfg.MODEL and "SCORE_THRESH" not in cfg.INFERENCE
    add_clump_config(cfg)  # twice on one config is harmless


def test_one_key_per_score_threshold():
    """Output floor (Detectron2's), operating point, and the catalogue at the operating point."""
    cfg = build_config(str(REPO / "configs" / "quickstart.yaml"))
    assert cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == pytest.approx(0.05)
    assert cfg.TEST.CLUMP_EVAL.SCORE_THRESH == pytest.approx(0.75)
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        c = build_config(str(path))
        assert c.MODEL.ROI_HEADS.SCORE_THRESH_TEST <= c.TEST.CLUMP_EVAL.SCORE_THRESH, path


@pytest.mark.parametrize("old,new", [
    ("MODEL.CLUMP_EVAL.SCORE_THRESH", "TEST.CLUMP_EVAL.SCORE_THRESH"),
    ("MODEL.CLUMP_EVAL.MATCH", "TEST.CLUMP_EVAL.MATCH"),
    ("MODEL.CLUMP_EVAL.PLOTS", "TEST.CLUMP_EVAL.PLOTS"),
    ("INFERENCE.SCORE_THRESH", "TEST.CLUMP_EVAL.SCORE_THRESH"),
])
def test_renamed_keys_in_overrides_name_the_new_key(old, new):
    with pytest.raises(KeyError, match=f"{old} was renamed to {new}"):
        build_config("", [old, "0.3"])
    cfg = build_config("", freeze=False).clone()  # a clone keeps the renames
    with pytest.raises(KeyError, match=f"{old} was renamed to {new}"):
        cfg.merge_from_list([old, "0.3"])


@pytest.mark.parametrize("yaml_text,old,new", [
    ("MODEL:\n  CLUMP_EVAL:\n    SCORE_THRESH: 0.3\n", "MODEL.CLUMP_EVAL", "TEST.CLUMP_EVAL"),
    ("INFERENCE:\n  SCORE_THRESH: 0.3\n", "INFERENCE.SCORE_THRESH",
     "TEST.CLUMP_EVAL.SCORE_THRESH"),
])
def test_renamed_keys_in_a_yaml_name_the_new_key(tmp_path, yaml_text, old, new):
    path = tmp_path / "old.yaml"
    path.write_text(f"_BASE_: {REPO / 'configs' / 'quickstart.yaml'}\n{yaml_text}")
    with pytest.raises(KeyError, match=f"{old} was renamed to {new}"):
        build_config(str(path))


def test_base_config_is_sized_for_clumps():
    cfg = build_config(str(REPO / "configs" / "Base-ClumpRCNN-FPN.yaml"))
    sizes = [s for level in cfg.MODEL.ANCHOR_GENERATOR.SIZES for s in level]
    # Clump boxes are 4-48 px: the smallest anchor must be below detectron2's 32 px.
    assert min(sizes) <= 8
    assert cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS == [[1.0]]
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 2
    assert cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS is False
    assert cfg.INPUT.AUG.HFLIP and cfg.INPUT.AUG.VFLIP and cfg.INPUT.AUG.ROT90


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=str)
def test_every_config_merges(path):
    cfg = build_config(str(path))
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 2
    assert cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS is False


def test_quickstart_uses_synthetic_data_and_overrides_apply():
    cfg = build_config(str(REPO / "configs" / "quickstart.yaml"), ["SOLVER.MAX_ITER", "7"])
    assert cfg.DATASETS.TRAIN == ("clumpsim_train",)
    assert cfg.DATASETS.TEST == ("clumpsim_val",)
    assert cfg.SOLVER.MAX_ITER == 7


def test_device_falls_back_to_cpu_with_warning(monkeypatch, caplog):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level("WARNING"):
        cfg = build_config(str(REPO / "configs" / "Base-ClumpRCNN-FPN.yaml"),
                           ["MODEL.DEVICE", "cuda"])
    assert cfg.MODEL.DEVICE == "cpu"
    assert "CUDA is not available" in caplog.text


def test_multi_process_training_without_cuda_fails_with_advice(monkeypatch):
    import argparse

    import torch

    from clump_d2.engine import check_launch_args

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--num-gpus 1"):
        check_launch_args(argparse.Namespace(num_gpus=2))
    check_launch_args(argparse.Namespace(num_gpus=1))  # one CPU process is fine


def test_800px_config_differs_from_the_quickstart_only_in_scale():
    """configs/Speed/quickstart_800px.yaml: the paper's upsampling and anchors, all else the
    quickstart's (so a comparison of the two measures upsampling alone)."""
    import numpy as np
    from detectron2.data import transforms as T

    from clump_d2.data.transforms import build_clump_augmentations

    native = build_config(str(REPO / "configs" / "quickstart.yaml"))
    up = build_config(str(REPO / "configs" / "Speed" / "quickstart_800px.yaml"))
    flat = lambda c: {k: v for k, v in _flatten(c).items()  # noqa: E731
                      if not k.startswith(("INPUT.MIN_SIZE", "INPUT.MAX_SIZE", "OUTPUT_DIR",
                                           "MODEL.ANCHOR_GENERATOR.SIZES"))}
    assert flat(native) == flat(up)
    assert [s * 4 for (s,) in native.MODEL.ANCHOR_GENERATOR.SIZES] == [
        s for (s,) in up.MODEL.ANCHOR_GENERATOR.SIZES] == [32, 64, 128, 256, 512]
    image = np.zeros((200, 200, 3), np.uint8)
    for is_train in (True, False):
        aug = T.AugmentationList(build_clump_augmentations(up, is_train))
        out = T.AugInput(image)
        aug(out)
        assert out.image.shape[:2] == (800, 800)
        aug = T.AugmentationList(build_clump_augmentations(native, is_train))
        out = T.AugInput(image)
        aug(out)
        assert out.image.shape[:2] == (200, 200)


def _flatten(node, prefix=""):
    out = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
