"""The Zoobot/timm backbones: feature levels, Faster R-CNN, freezing, N-band stems."""
from pathlib import Path

import pytest
import torch
from torch import nn

import clump_d2  # noqa: F401  (compat layer first)
import clump_d2.modeling  # noqa: F401  (registers the backbones)
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from clump_d2.config import add_clump_config
from clump_d2.modeling import ZoobotEncoder
from clump_d2.modeling.backbone import inflate_stem_weight
from clump_d2.modeling.backbone.zoobot import assign_stages, timm_feature_levels

# timm feature channels at strides 4, 8, 16, 32 (res2..res5).
CHANNELS = {
    "convnext_pico": [64, 128, 256, 512],
    "convnext_nano": [80, 160, 320, 640],
    "convnext_tiny": [96, 192, 384, 768],
    "efficientnet_b0": [24, 40, 112, 320],
    "resnet18": [64, 128, 256, 512],
    "resnet50": [256, 512, 1024, 2048],
}
LEVELS = ["res2", "res3", "res4", "res5"]

# Which parameter prefixes (in the timm features model) make up each stage, written out by hand
# from the architectures, independently of the code's stage assignment.
STAGE_PREFIXES = {
    "resnet18": {"stem": ["conv1.", "bn1."], "res2": ["layer1."], "res3": ["layer2."],
                 "res4": ["layer3."], "res5": ["layer4."]},
    "convnext_pico": {"stem": ["stem_0.", "stem_1."], "res2": ["stages_0."],
                      "res3": ["stages_1."], "res4": ["stages_2."], "res5": ["stages_3."]},
    "efficientnet_b0": {"stem": ["conv_stem.", "bn1.", "blocks.0."], "res2": ["blocks.1."],
                        "res3": ["blocks.2."], "res4": ["blocks.3.", "blocks.4."],
                        "res5": ["blocks.5.", "blocks.6."]},
}
STAGES = ["stem", "res2", "res3", "res4", "res5"]


REPO = Path(__file__).resolve().parents[2]


def zoobot_cfg(arch, **zoobot):
    """The project's base Faster R-CNN config with a Zoobot FPN backbone, tiny FPN."""
    cfg = get_cfg()
    add_clump_config(cfg)
    cfg.merge_from_file(str(REPO / "configs" / "Base-ClumpRCNN-FPN.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "build_zoobot_fpn_backbone"
    cfg.MODEL.ZOOBOT.ARCH = arch
    for key, value in zoobot.items():
        setattr(cfg.MODEL.ZOOBOT, key.upper(), value)
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [0.0, 0.0, 0.0], [255.0, 255.0, 255.0]
    cfg.MODEL.FPN.IN_FEATURES = LEVELS
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    return cfg


@pytest.mark.parametrize("arch", list(CHANNELS))
def test_fpn_backbone_levels(arch):
    torch.manual_seed(0)
    backbone = build_backbone(zoobot_cfg(arch))
    encoder = backbone.bottom_up
    assert isinstance(encoder, ZoobotEncoder)
    shapes = encoder.output_shape()
    assert list(shapes) == LEVELS
    assert [shapes[n].channels for n in LEVELS] == CHANNELS[arch]
    assert [shapes[n].stride for n in LEVELS] == [4, 8, 16, 32]

    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        feats = encoder(x)
        out = backbone(x)
    for name, channels, stride in zip(LEVELS, CHANNELS[arch], [4, 8, 16, 32]):
        assert tuple(feats[name].shape) == (1, channels, 64 // stride, 64 // stride)
    fpn_shapes = backbone.output_shape()
    assert list(fpn_shapes) == ["p2", "p3", "p4", "p5", "p6"]
    for i, name in enumerate(fpn_shapes):
        stride = 4 * 2 ** i
        assert fpn_shapes[name].stride == stride
        assert tuple(out[name].shape) == (1, 32, 64 // stride, 64 // stride)
    assert backbone.size_divisibility == 32


def test_encoder_alone_and_level_subset():
    cfg = zoobot_cfg("efficientnet_b0", out_features=["res1", "res3", "res5"])
    cfg.MODEL.BACKBONE.NAME = "build_zoobot_backbone"
    encoder = build_backbone(cfg)
    assert isinstance(encoder, ZoobotEncoder)
    shapes = encoder.output_shape()
    assert {n: (s.channels, s.stride) for n, s in shapes.items()} == {
        "res1": (16, 2), "res3": (40, 8), "res5": (320, 32)}
    feats = encoder(torch.rand(2, 3, 64, 64))
    assert [tuple(feats[n].shape) for n in shapes] == [(2, 16, 32, 32), (2, 40, 8, 8),
                                                       (2, 320, 2, 2)]
    # Levels past the deepest one requested are not built (no unused parameters under DDP).
    cfg.MODEL.ZOOBOT.OUT_FEATURES = ["res2", "res3"]
    shallow = build_backbone(cfg)
    assert sum(p.numel() for p in shallow.parameters()) < 0.2 * sum(
        p.numel() for p in encoder.parameters())

    with pytest.raises(ValueError, match="no feature level"):
        ZoobotEncoder(arch="resnet18", out_features=["res6"])
    cfg = zoobot_cfg("resnet18", out_features=["res3", "res4", "res5"])
    with pytest.raises(ValueError, match="FPN.IN_FEATURES"):
        build_backbone(cfg)


# resnet18/resnet50 go through Faster R-CNN in tests/modeling/test_clumpscout_configs.py.
@pytest.mark.parametrize("arch", ["convnext_pico", "efficientnet_b0"])
def test_faster_rcnn_forward_backward(arch):
    torch.manual_seed(0)
    cfg = zoobot_cfg(arch)
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 16
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 20
    model = build_model(cfg)
    model.train()
    batch = []
    for i in range(2):
        inst = Instances((64, 64))
        inst.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 26.0, 28.0], [40.0, 30.0, 50.0, 40.0]]))
        inst.gt_classes = torch.tensor([0, 1])
        batch.append({"image": torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8).float(),
                      "instances": inst, "height": 64, "width": 64})
    with EventStorage(0):
        losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    encoder = model.backbone.bottom_up
    grads = {n: p.grad for n, p in encoder.encoder.named_parameters()}
    assert all(g is not None for g in grads.values()), "every encoder parameter gets a gradient"
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0

    model.eval()
    with torch.no_grad():
        out = model([{"image": batch[0]["image"], "height": 64, "width": 64}])
    assert out[0]["instances"].pred_boxes.tensor.shape[1] == 4


def _frozen_bn(module):
    from timm.layers import FrozenBatchNormAct2d
    from torchvision.ops.misc import FrozenBatchNorm2d

    return isinstance(module, (FrozenBatchNorm2d, FrozenBatchNormAct2d))


@pytest.mark.parametrize("arch", list(STAGE_PREFIXES))
@pytest.mark.parametrize("freeze_at,norm", [(2, ""), (1, "FrozenBN"), (5, "BN")])
def test_freezing(arch, freeze_at, norm):
    encoder = ZoobotEncoder(arch=arch, freeze_at=freeze_at, norm=norm)
    frozen_prefixes = [p for s in STAGES[:freeze_at] for p in STAGE_PREFIXES[arch][s]]
    all_prefixes = [p for s in STAGES for p in STAGE_PREFIXES[arch][s]]
    params = dict(encoder.encoder.named_parameters())
    assert all(any(n.startswith(p) for p in all_prefixes) for n in params), "prefix table"
    expect_frozen = {n for n in params if n.startswith(tuple(frozen_prefixes))}
    assert {n for n, p in params.items() if not p.requires_grad} == expect_frozen
    assert expect_frozen
    # The code's own stage table agrees with the hand-written one.
    stages = encoder.parameter_stages()
    for name, stage in stages.items():
        assert name.startswith(tuple(STAGE_PREFIXES[arch][stage])), (name, stage)

    # BatchNorm: frozen inside frozen stages always, everywhere with NORM=FrozenBN.
    bns = [(n, m) for n, m in encoder.encoder.named_modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) or _frozen_bn(m)]
    if arch.startswith("convnext"):
        assert not bns  # LayerNorm only
        return
    assert bns
    for name, module in bns:
        in_frozen_stage = (name + ".").startswith(tuple(frozen_prefixes))
        assert _frozen_bn(module) == (in_frozen_stage or norm == "FrozenBN"), name

    # Frozen statistics do not move in training mode; trained ones do.
    before = {n: m.running_mean.clone() for n, m in bns}
    encoder.train()
    encoder(torch.rand(2, 3, 64, 64))
    for name, module in bns:
        moved = not torch.equal(before[name], module.running_mean)
        assert moved == (not _frozen_bn(module)), name


def test_frozen_bn_keeps_outputs(tmp_path):
    """Freezing BN (incl. timm's BatchNormAct2d, whose activation must survive) changes no
    output in eval mode."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ref = ZoobotEncoder(arch="efficientnet_b0")
    for module in ref.modules():  # non-trivial statistics, so a lost BN would show
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    save_file(dict(ref.encoder.state_dict()), str(tmp_path / "w.safetensors"))
    frozen = ZoobotEncoder(arch="efficientnet_b0", weights=str(tmp_path / "w.safetensors"),
                           freeze_at=3, norm="FrozenBN")
    x = torch.rand(1, 3, 64, 64)
    ref.eval(), frozen.eval()
    with torch.no_grad():
        a, b = ref(x), frozen(x)
    for name in LEVELS:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


def test_assign_stages_rules():
    levels = [{"module": "act1", "reduction": 2}, {"module": "layer1", "reduction": 4},
              {"module": "layer2", "reduction": 8}]
    names = ["conv1.weight", "bn1.weight", "layer1.0.w", "mid.w", "layer2.0.w", "layer10.w"]
    assert assign_stages(names, levels) == {"conv1.weight": 0, "bn1.weight": 0, "layer1.0.w": 1,
                                            "mid.w": 2, "layer2.0.w": 2, "layer10.w": 2}
    assert [lv["name"] for lv in timm_feature_levels("resnet18")] == [
        "res1", "res2", "res3", "res4", "res5"]


def test_inflate_stem_weight_rule():
    torch.manual_seed(0)
    w3 = torch.randn(8, 3, 3, 3)
    g = torch.rand(1, 1, 10, 10)
    ref = nn.functional.conv2d(g.repeat(1, 3, 1, 1), w3)
    for n in (1, 2, 5):
        wn = inflate_stem_weight(w3, n)
        assert wn.shape == (8, n, 3, 3)
        # every band gets the same kernel: mean of the RGB kernels x 3/n
        torch.testing.assert_close(wn[:, :1], w3.mean(1, keepdim=True) * 3 / n)
        torch.testing.assert_close(nn.functional.conv2d(g.repeat(1, n, 1, 1), wn), ref,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch,bands", [("resnet18", 5), ("convnext_pico", 1)])
def test_nband_stem_keeps_3band_response(tmp_path, arch, bands):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    rgb = ZoobotEncoder(arch=arch)
    save_file(dict(rgb.encoder.state_dict()), str(tmp_path / "rgb.safetensors"))
    cfg = zoobot_cfg(arch, weights=str(tmp_path / "rgb.safetensors"))
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [0.0] * bands, [255.0] * bands
    multi = build_backbone(cfg, ShapeSpec(channels=bands)).bottom_up
    assert multi.in_chans == bands
    first_conv = {"resnet18": "conv1.weight", "convnext_pico": "stem_0.weight"}[arch]
    assert multi.load_report.inflated == [first_conv]
    assert multi.load_report.missing == []
    assert multi.encoder.state_dict()[first_conv].shape[1] == bands

    g = torch.rand(2, 1, 64, 64)
    rgb.eval(), multi.eval()
    with torch.no_grad():
        a, b = rgb(g.repeat(1, 3, 1, 1)), multi(g.repeat(1, bands, 1, 1))
    for name in LEVELS:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)
