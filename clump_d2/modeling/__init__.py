"""Models: importing this package registers the Zoobot/timm backbones in Detectron2's
``BACKBONE_REGISTRY`` (``build_zoobot_backbone``, ``build_zoobot_fpn_backbone``) and the
ignore-region heads (``IgnoreRegionRPN``, ``IgnoreRegionROIHeads``)."""
from .ignore_regions import IgnoreRegionROIHeads, IgnoreRegionRPN
from .backbone import (
    ZoobotEncoder,
    build_zoobot_backbone,
    build_zoobot_fpn_backbone,
    load_encoder_weights,
)

__all__ = [
    "IgnoreRegionROIHeads",
    "IgnoreRegionRPN",
    "ZoobotEncoder",
    "build_zoobot_backbone",
    "build_zoobot_fpn_backbone",
    "load_encoder_weights",
]
