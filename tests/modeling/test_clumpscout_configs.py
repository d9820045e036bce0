"""Every config in configs/ClumpScout/ builds its backbone and trains on the tiny synthetic set."""
import math
from pathlib import Path

import pytest
import torch

import clump_d2  # noqa: F401  (compat layer first)
import clump_d2.modeling  # noqa: F401  (registers the backbones)
from detectron2.engine import SimpleTrainer
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer

from clump_d2.engine import ClumpTrainer, build_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "ClumpScout").glob("*.yaml"))

# (backbone builder, encoder, frozen stages, FrozenBN everywhere) each config must reproduce.
EXPECTED = {
    "imagenet_resnet50_frozen": ("build_resnet_fpn_backbone", "R50", 5, True),
    "imagenet_resnet50_3trainable": ("build_resnet_fpn_backbone", "R50", 2, True),
    "zoobot_resnet50_frozen": ("build_zoobot_fpn_backbone", "resnet50", 5, True),
    "zoobot_resnet50_3trainable": ("build_zoobot_fpn_backbone", "resnet50", 2, True),
    "zoobot_convnext_nano_finetune": ("build_zoobot_fpn_backbone", "convnext_nano", 0, False),
    "zoobot_convnext_tiny_finetune": ("build_zoobot_fpn_backbone", "convnext_tiny", 0, False),
    "imagenet_efficientnet_lite0_finetune": ("build_zoobot_fpn_backbone",
                                             "tf_efficientnet_lite0", 0, True),
    "imagenet_efficientnet_lite0_frozen": ("build_zoobot_fpn_backbone",
                                           "tf_efficientnet_lite0", 5, True),
}
#: Weights each config names out of the box: none to download (Zoobot's are not reachable
#: offline), or the ImageNet weights that a registry package installs.
ENCODER_WEIGHTS = {"imagenet_efficientnet_lite0_finetune": "imagenet:efficientnet_lite0",
                   "imagenet_efficientnet_lite0_frozen": "imagenet:efficientnet_lite0"}
# Parameter prefixes (of backbone.bottom_up) of the stem and res2 in each encoder family.
FIRST_STAGES = {
    "R50": ("stem.", "res2."),
    "resnet50": ("encoder.conv1.", "encoder.bn1.", "encoder.layer1."),
    "convnext": ("encoder.stem_", "encoder.stages_0."),
    "tf_efficientnet_lite0": ("encoder.conv_stem.", "encoder.bn1.", "encoder.blocks_0."),
}


def test_every_config_is_covered():
    assert sorted(p.stem for p in CONFIGS) == sorted(EXPECTED)


def _lean_opts(tiny_model_opts, output_dir):
    """The shared tiny-model overrides minus the ResNet depth/width ones: the configs' own
    backbones (ResNet50, ConvNeXt) are what is tested. Two iterations of one 96 px image: the
    heavy encoders (ResNet50, ConvNeXt-tiny) cost seconds per iteration on a shared CPU."""
    opts = list(tiny_model_opts(output_dir))
    pairs = [(k, v) for k, v in zip(opts[::2], opts[1::2]) if not k.startswith("MODEL.RESNETS.")]
    pairs += [("SOLVER.MAX_ITER", "2"), ("SOLVER.IMS_PER_BATCH", "1"),
              ("MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200")]
    return [x for pair in pairs for x in pair]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_trains(config, tiny_synthetic, tiny_model_opts, tmp_path):
    builder, encoder_name, freeze_at, frozen_bn = EXPECTED[config.stem]
    # Out of the box, every config trains on the synthetic set with no weights to download.
    raw = build_config(str(config), ["MODEL.DEVICE", "cpu"])
    assert raw.DATASETS.TRAIN == ("clumpsim_train",) and raw.DATASETS.TEST == ("clumpsim_val",)
    assert raw.MODEL.WEIGHTS == ""
    assert raw.MODEL.ZOOBOT.WEIGHTS == ENCODER_WEIGHTS.get(config.stem, "")
    assert raw.INPUT.FORMAT == "RGB"
    if encoder_name == "tf_efficientnet_lite0":  # Lite's own normalisation, to [-1, 1]
        assert list(raw.MODEL.PIXEL_MEAN) == [127.5] * 3 and list(raw.MODEL.PIXEL_STD) == [127.5] * 3
    elif builder == "build_zoobot_fpn_backbone":
        assert list(raw.MODEL.PIXEL_MEAN) == [0.0] * 3 and list(raw.MODEL.PIXEL_STD) == [255.0] * 3
    else:
        assert [round(m, 3) for m in raw.MODEL.PIXEL_MEAN] == [123.675, 116.28, 103.53]
        assert raw.MODEL.RESNETS.STRIDE_IN_1X1 is False

    cfg = build_config(str(config), _lean_opts(tiny_model_opts, tmp_path))
    assert cfg.MODEL.BACKBONE.NAME == builder
    torch.manual_seed(0)
    model = build_model(cfg)
    bottom_up = model.backbone.bottom_up
    if builder == "build_zoobot_fpn_backbone":
        assert cfg.MODEL.ZOOBOT.ARCH == encoder_name
        assert bottom_up.freeze_at == freeze_at
    else:
        assert cfg.MODEL.RESNETS.DEPTH == 50 and cfg.MODEL.BACKBONE.FREEZE_AT == freeze_at
    assert [bottom_up.output_shape()[f].stride for f in ("res2", "res3", "res4", "res5")] == [
        4, 8, 16, 32]

    params = dict(bottom_up.named_parameters())
    first = FIRST_STAGES["convnext" if "convnext" in encoder_name else encoder_name]
    frozen = {n for n, p in params.items() if not p.requires_grad}
    if freeze_at == 5:
        assert frozen == set(params)
    elif freeze_at == 2:
        assert frozen == {n for n in params if n.startswith(first)} and frozen
    else:
        assert not frozen
    bn = [m for m in bottom_up.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert (not bn) == frozen_bn or "convnext" in encoder_name

    before = {n: p.detach().clone() for n, p in params.items()}
    trainer = SimpleTrainer(model, ClumpTrainer.build_train_loader(cfg),
                            build_optimizer(cfg, model))
    trainer.train(0, cfg.SOLVER.MAX_ITER)
    losses = trainer.storage.history("total_loss").values()
    assert len(losses) == 2 and all(math.isfinite(v) for v, _ in losses)
    for name, param in bottom_up.named_parameters():
        changed = not torch.equal(before[name], param.detach())
        if name in frozen:
            assert not changed, f"frozen {name} changed"
    trained = [n for n in params if n not in frozen]
    assert all(not torch.equal(before[n], params[n].detach()) for n in trained[-3:]), \
        "the deepest trainable encoder parameters moved"
