"""Zoobot (timm) encoders as Detectron2 backbones, alone or inside an FPN.

Any timm architecture that builds with ``features_only=True`` works through the same code;
the Zoobot encoder families are ConvNeXt (``convnext_pico``/``nano``/``tiny``...),
EfficientNet (``efficientnet_b0``...) and ResNet (``resnet18``/``resnet50``...).

* **Feature names** come from timm's ``feature_info``: the level at stride 2**k is ``res<k>``
  (stride 4 -> ``res2`` ... stride 32 -> ``res5``), as in Detectron2's ResNet.
* **Stages** for freezing, in Detectron2's sense: ``stem`` is everything before the first
  stride-4 level (ResNet's conv1/bn1, ConvNeXt's patchify stem, EfficientNet's conv_stem and
  its stride-2 block); ``res<k>`` is everything after level ``res<k-1>`` up to and including
  level ``res<k>`` (so ResNet's ``layer1`` is ``res2`` and EfficientNet's ``blocks.3`` joins
  ``res4``). ``FREEZE_AT = k`` freezes the first k of ``stem, res2, res3, res4, res5``:
  0 trains everything, 2 trains res3..res5 (the paper's "3 trainable layers"), 5 freezes the
  whole encoder. Frozen stages get ``requires_grad=False`` and their BatchNorm layers become
  frozen (fixed statistics and affine), as in Detectron2's ``ResNet.freeze``.
* **Norm** (``MODEL.ZOOBOT.NORM``) for the stages that are trained: ``"FrozenBN"`` freezes
  every BatchNorm (statistics and affine), ``""``/``"BN"`` trains them, ``"SyncBN"`` syncs them
  across GPUs. LayerNorm (ConvNeXt) is a plain trainable layer either way.
"""
from __future__ import annotations

import logging
import math
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from torch import nn

from .weights import WeightLoadReport, canonical_key, load_encoder_weights

logger = logging.getLogger(__name__)

STAGE_NAMES = ("stem", "res2", "res3", "res4", "res5")
NORM_CHOICES = ("", "BN", "FrozenBN", "SyncBN")


def level_name(stride: int) -> str:
    """Detectron2's name of the feature level at ``stride`` (4 -> ``res2``, 32 -> ``res5``)."""
    k = math.log2(stride)
    return f"res{int(k)}" if k.is_integer() else f"stride{stride}"


def timm_feature_levels(arch: str, in_chans: int = 3) -> List[dict]:
    """timm's ``feature_info`` of ``arch``: one dict per level (``index``, ``module``,
    ``num_chs``, ``reduction``) plus its Detectron2 ``name``.

    The model is built on the ``meta`` device, so nothing is allocated or initialised.
    Where two levels share a stride, the deeper one keeps the name.
    """
    # Local: timm costs ~1.4 s, paid only when a Zoobot backbone is built.
    import timm

    with torch.device("meta"):
        probe = timm.create_model(arch, pretrained=False, features_only=True, in_chans=in_chans)
    levels = []
    for index, info in enumerate(probe.feature_info.info):
        levels.append({"index": index, "module": info["module"], "num_chs": info["num_chs"],
                       "reduction": info["reduction"], "name": level_name(info["reduction"])})
    return levels


def stage_index(stride: Optional[int]) -> int:
    """0 for the stem (``None``: before the first level, or stride < 4), else log2(stride) - 1."""
    if stride is None or stride < 4:
        return 0
    return int(math.log2(stride)) - 1


def assign_stages(names: Sequence[str], levels: Sequence[dict]) -> Dict[str, int]:
    """Map parameter or module names (in forward order) to their stage index.

    A name inside a feature level's module gets that level's stage; a name between two levels
    belongs to the later one (it computes towards it); a name before the first level is stem.
    Names after the last level (rare: extra modules a features wrapper kept) join the last one.

    Args:
        names: names of the timm features model, in registration (= forward) order.
        levels: :func:`timm_feature_levels`.

    Returns:
        ``{name: stage index}`` (0 = stem, 1 = res2, ..., 4 = res5).
    """
    prefixes = [(canonical_key(lv["module"]), lv["reduction"]) for lv in levels]
    result: Dict[str, int] = {}
    pending: List[str] = []
    seen_level = False
    last_stride: Optional[int] = None
    for name in names:
        cname = canonical_key(name)
        stride = next((s for p, s in prefixes if cname == p or cname.startswith(p + "_")), None)
        if stride is None:
            pending.append(name)
            continue
        for other in pending:
            result[other] = stage_index(stride) if seen_level else 0
        pending = []
        result[name] = stage_index(stride)
        seen_level, last_stride = True, stride
    for other in pending:
        result[other] = stage_index(last_stride)
    return result


def _replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


class ZoobotEncoder(Backbone):
    """A timm encoder (``features_only``) as a Detectron2 ``Backbone``.

    Outputs ``{"res2": ..., "res5": ...}`` (the requested levels) with channels and strides
    read from timm's ``feature_info``. Weights are loaded, and stages frozen, at construction.
    """

    @configurable
    def __init__(
        self,
        *,
        arch: str,
        in_chans: int = 3,
        out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        weights: str = "",
        freeze_at: int = 0,
        norm: str = "",
        allow_shape_mismatch: bool = False,
        allow_pickle: bool = False,
    ):
        """
        Args:
            arch: timm architecture, e.g. ``"convnext_nano"``.
            in_chans: input channels (bands).
            out_features: levels to output, named by stride (``res2`` = stride 4).
            weights: ``""`` (random initialisation) or any source accepted by
                :func:`~clump_d2.modeling.backbone.weights.load_encoder_weights`.
            freeze_at: number of leading stages (``stem, res2, ..., res5``) to freeze.
            norm: ``""``/``"BN"``, ``"FrozenBN"`` or ``"SyncBN"`` (see the module docstring).
            allow_shape_mismatch: skip, rather than fail on, checkpoint tensors of another shape.
            allow_pickle: read pickle-only weight files (``MODEL.WEIGHTS_ALLOW_PICKLE``).
        """
        super().__init__()
        # Local: timm costs ~1.4 s, paid only when a Zoobot backbone is built.
        import timm

        if norm not in NORM_CHOICES:
            raise ValueError(f"MODEL.ZOOBOT.NORM must be one of {NORM_CHOICES}, got {norm!r}")
        if not 0 <= freeze_at <= len(STAGE_NAMES):
            raise ValueError(f"MODEL.ZOOBOT.FREEZE_AT must be in 0..{len(STAGE_NAMES)}, "
                             f"got {freeze_at}")
        levels = timm_feature_levels(arch, in_chans)
        by_name = {lv["name"]: lv for lv in levels}  # deeper levels win a shared stride
        unknown = [f for f in out_features if f not in by_name]
        if unknown:
            raise ValueError(f"{arch} has no feature level {unknown}; it offers "
                             f"{sorted(by_name, key=lambda n: by_name[n]['reduction'])}")
        chosen = sorted((by_name[f] for f in out_features), key=lambda lv: lv["index"])

        self.arch = arch
        self.in_chans = in_chans
        self.encoder = timm.create_model(
            arch, pretrained=False, features_only=True, in_chans=in_chans,
            out_indices=tuple(lv["index"] for lv in chosen),
        )
        self._out_features = [lv["name"] for lv in chosen]
        self._out_feature_channels = {n: c for n, c in zip(
            self._out_features, self.encoder.feature_info.channels())}
        self._out_feature_strides = {n: s for n, s in zip(
            self._out_features, self.encoder.feature_info.reduction())}
        self._levels = levels
        self._prune_after(max(stage_index(lv["reduction"]) for lv in chosen))

        self.load_report: Optional[WeightLoadReport] = None
        if weights:
            self.load_report = load_encoder_weights(
                self.encoder, weights, arch=arch,
                first_conv=self.encoder.pretrained_cfg.get("first_conv", ""),
                allow_shape_mismatch=allow_shape_mismatch, allow_pickle=allow_pickle,
            )
        elif freeze_at > 0 or norm == "FrozenBN":
            logger.warning("%s has no weights (MODEL.ZOOBOT.WEIGHTS is empty) but FREEZE_AT=%d, "
                           "NORM=%r: frozen parts keep their random initialisation",
                           arch, freeze_at, norm)
        self.freeze_at = freeze_at
        self.norm = norm
        self._apply_norm(norm)
        self._freeze(freeze_at)

    @classmethod
    def from_config(cls, cfg, input_shape: Optional[ShapeSpec] = None):
        channels = input_shape.channels if input_shape is not None else None
        return {
            "arch": cfg.MODEL.ZOOBOT.ARCH,
            "in_chans": channels or len(cfg.MODEL.PIXEL_MEAN),
            "out_features": list(cfg.MODEL.ZOOBOT.OUT_FEATURES),
            "weights": cfg.MODEL.ZOOBOT.WEIGHTS,
            "freeze_at": cfg.MODEL.ZOOBOT.FREEZE_AT,
            "norm": cfg.MODEL.ZOOBOT.NORM,
            "allow_shape_mismatch": cfg.MODEL.ZOOBOT.ALLOW_SHAPE_MISMATCH,
            "allow_pickle": cfg.MODEL.WEIGHTS_ALLOW_PICKLE,
        }

    # -- stages -------------------------------------------------------------------------------

    def parameter_stages(self) -> Dict[str, str]:
        """``{parameter name in self.encoder: stage name}`` (``stem``, ``res2``, ...)."""
        names = [n for n, _ in self.encoder.named_parameters()]
        return {n: STAGE_NAMES[i] for n, i in assign_stages(names, self._levels).items()}

    def _prune_after(self, last_stage: int) -> None:
        """Replace modules past the deepest requested level by ``nn.Identity``.

        timm's FeatureListNet already stops there, but some wrappers (EfficientNetFeatures) run
        every block: the extra blocks would cost time and leave parameters without gradients,
        which DistributedDataParallel rejects.
        """
        modules = [(n, m) for n, m in self.encoder.named_modules() if n]
        stages = assign_stages([n for n, _ in modules], self._levels)
        pruned = []
        for name, _ in modules:
            parent = name.rpartition(".")[0]
            if stages[name] > last_stage and (not parent or stages[parent] <= last_stage):
                _replace_module(self.encoder, name, nn.Identity())
                pruned.append(name)
        if pruned:
            logger.debug("%s: modules past the last output level removed: %s", self.arch, pruned)

    def _apply_norm(self, norm: str) -> None:
        # Local: timm costs ~1.4 s, paid only when a Zoobot backbone is built.
        from timm.layers import convert_sync_batchnorm, freeze_batch_norm_2d

        if norm == "FrozenBN":
            freeze_batch_norm_2d(self.encoder)
        elif norm == "SyncBN":
            self.encoder = convert_sync_batchnorm(self.encoder)

    def _freeze(self, freeze_at: int) -> None:
        if freeze_at <= 0:
            return
        # Local: timm costs ~1.4 s, paid only when a Zoobot backbone is built.
        from timm.layers import freeze_batch_norm_2d

        params = assign_stages([n for n, _ in self.encoder.named_parameters()], self._levels)
        for name, param in self.encoder.named_parameters():
            if params[name] < freeze_at:
                param.requires_grad_(False)
        modules = [(n, m) for n, m in self.encoder.named_modules() if n]
        stages = assign_stages([n for n, _ in modules], self._levels)
        for name, module in modules:
            # Only BatchNorm needs replacing (its running statistics would still update);
            # freeze_batch_norm_2d leaves other modules as they are.
            if stages[name] < freeze_at and isinstance(module, nn.modules.batchnorm._BatchNorm):
                _replace_module(self.encoder, name, freeze_batch_norm_2d(module))
        logger.info("%s: stages %s frozen", self.arch, ", ".join(STAGE_NAMES[:freeze_at]))

    # -- Backbone -----------------------------------------------------------------------------

    @property
    def size_divisibility(self) -> int:
        # Inputs padded to the deepest stride keep every level aligned with the image grid.
        return max(lv["reduction"] for lv in self._levels)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"{self.arch} expects (N, {self.in_chans}, H, W) input, got "
                             f"{tuple(x.shape)}")
        return dict(zip(self._out_features, self.encoder(x)))


@BACKBONE_REGISTRY.register()
def build_zoobot_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """The Zoobot/timm encoder alone (``MODEL.ZOOBOT.*``), outputs ``MODEL.ZOOBOT.OUT_FEATURES``."""
    return ZoobotEncoder(cfg, input_shape)


@BACKBONE_REGISTRY.register()
def build_zoobot_fpn_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """The Zoobot/timm encoder in Detectron2's FPN, with a max-pooled P6 (as
    ``build_resnet_fpn_backbone``): outputs ``p2..p6`` for ``res2..res5`` inputs."""
    bottom_up = ZoobotEncoder(cfg, input_shape)
    in_features = list(cfg.MODEL.FPN.IN_FEATURES)
    missing = [f for f in in_features if f not in bottom_up.output_shape()]
    if missing:
        raise ValueError(f"MODEL.FPN.IN_FEATURES {missing} are not among "
                         f"MODEL.ZOOBOT.OUT_FEATURES {bottom_up._out_features}")
    return FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
