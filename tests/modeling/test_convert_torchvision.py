"""tools/convert_torchvision_to_d2.py: torchvision ResNet50 weights in Detectron2's ResNet."""
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import clump_d2  # noqa: F401  (compat layer first)
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.fpn import build_resnet_fpn_backbone

from clump_d2.modeling.backbone.convert import (convert_torchvision_file, save_d2_checkpoint,
                                                torchvision_to_d2)
from clump_d2.modeling.checkpoint import ClumpCheckpointer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def torchvision_resnet50(tmp_path_factory):
    """A randomly initialised torchvision ResNet50 (with non-trivial BN) and its saved file."""
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    path = tmp_path_factory.mktemp("tv") / "resnet50-random.pth"
    torch.save(model.state_dict(), str(path))
    return model, path


def d2_resnet_cfg():
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False  # torchvision strides in the 3x3 conv
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    return cfg


def test_names():
    state = torchvision.models.resnet18(weights=None).state_dict()
    out = torchvision_to_d2(state)
    assert "stem.conv1.weight" in out and "stem.conv1.norm.running_var" in out
    assert "res2.0.conv2.norm.bias" in out and "res3.0.shortcut.weight" in out
    assert "res3.0.shortcut.norm.running_mean" in out and "res5.1.conv2.weight" in out
    assert not [k for k in out if k.startswith("fc.") or k.endswith("num_batches_tracked")]
    assert len(out) == len([k for k in state if not k.startswith("fc.")
                            and not k.endswith("num_batches_tracked")])


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_converted_resnet50_matches_torchvision(tmp_path, torchvision_resnet50, suffix,
                                                load_tool):
    model, src = torchvision_resnet50
    dst = tmp_path / f"R-50-torchvision{suffix}"
    load_tool("convert_torchvision_to_d2").main([str(src), str(dst)])
    assert dst.is_file()

    # As the ImageNet configs use it: MODEL.WEIGHTS into build_resnet_fpn_backbone, where the
    # checkpointer's name matching finds backbone.bottom_up.* (here bottom_up.*); the FPN's own
    # layers start fresh, as those configs' MODEL.WEIGHTS_MAY_START_FRESH allows.
    fpn = build_resnet_fpn_backbone(d2_resnet_cfg(), ShapeSpec(channels=3))
    if suffix == ".pth":  # tensors only: the safe loader reads it
        assert len(torch.load(str(dst), weights_only=True)["model"]) == 265
    checkpointer = ClumpCheckpointer(fpn, may_start_fresh=[r"fpn_"])
    checkpointer.load(str(dst))
    assert checkpointer.last_load["loaded"] == 265 and checkpointer.last_load["fresh"] == 16
    backbone = fpn.bottom_up
    assert torch.equal(backbone.res5[2].conv3.weight, model.layer4[2].conv3.weight)
    assert torch.equal(backbone.stem.conv1.norm.running_var, model.bn1.running_var)
    backbone.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = backbone(x)
        h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        for name, layer in zip(["res2", "res3", "res4", "res5"],
                               [model.layer1, model.layer2, model.layer3, model.layer4]):
            h = layer(h)
            torch.testing.assert_close(out[name], h, rtol=1e-4, atol=1e-4)


def test_pkl_output_refused(tmp_path):
    """A .pkl would be a pickle (code runs when it is loaded): the converter writes none."""
    with pytest.raises(ValueError, match="runs code"):
        save_d2_checkpoint({"stem.conv1.weight": torch.zeros(1)}, str(tmp_path / "w.pkl"))
    assert list(tmp_path.iterdir()) == []


def test_imagenet_configs_train_from_converted_weights_but_never_infer(
        tmp_path, torchvision_resnet50):
    """The ImageNet configs' MODEL.WEIGHTS_MAY_START_FRESH lets training start from a converted
    backbone (FPN, RPN and box head fresh); inference with the same file is refused."""
    from detectron2.modeling import build_model

    from clump_d2.engine import build_config
    from clump_d2.modeling.checkpoint import WeightsNotLoadedError

    _, src = torchvision_resnet50
    dst = tmp_path / "R-50-torchvision.pth"
    convert_torchvision_file(str(src), str(dst))
    configs = [REPO / "configs" / "ClumpScout" / f"imagenet_resnet50_{v}.yaml"
               for v in ("frozen", "3trainable")]
    fresh = [build_config(str(c)).MODEL.WEIGHTS_MAY_START_FRESH for c in configs]
    assert fresh[0] == fresh[1] == [r"backbone\.fpn_", r"proposal_generator\.", r"roi_heads\."]
    cfg = build_config(str(configs[0]), ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(dst)])
    model = build_model(cfg)
    n_weights = len([k for k in model.state_dict() if not k.endswith(
        ("pixel_mean", "pixel_std", "num_batches_tracked"))])
    checkpointer = ClumpCheckpointer.from_config(cfg, model)
    checkpointer.load(cfg.MODEL.WEIGHTS)
    assert checkpointer.last_load["loaded"] == 265
    assert checkpointer.last_load["fresh"] == n_weights - 265 > 0
    with pytest.raises(WeightsNotLoadedError, match=f"only 265 of the model's {n_weights}"):
        ClumpCheckpointer.from_config(cfg, model, require_weights=True).load(cfg.MODEL.WEIGHTS)
