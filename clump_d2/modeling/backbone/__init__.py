"""Backbones: Zoobot/timm encoders (with or without FPN) and their weight loading."""
from .weights import (
    WeightLoadReport,
    WeightsUnavailableError,
    inflate_stem_weight,
    load_encoder_weights,
    read_encoder_state_dict,
)
from .zoobot import ZoobotEncoder, build_zoobot_backbone, build_zoobot_fpn_backbone

__all__ = [
    "WeightLoadReport",
    "WeightsUnavailableError",
    "ZoobotEncoder",
    "build_zoobot_backbone",
    "build_zoobot_fpn_backbone",
    "inflate_stem_weight",
    "load_encoder_weights",
    "read_encoder_state_dict",
]
