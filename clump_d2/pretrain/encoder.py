"""The encoder being pretrained, how it starts, and the hub-layout directory it is written to.

The encoder is timm's ``features_only`` model of the architecture, exactly what the detector's
``ZoobotEncoder`` builds, read at its last (deepest) feature level and global-average pooled.
Training this form, not the classifier model, means no layer is trained that the detector drops
(EfficientNet's ``conv_head``, for example, sits after the last feature level).

Output (:func:`save_hub_layout`): a directory holding ``model.safetensors`` — the encoder's
tensors under timm's plain-model names (the keys of ``timm.create_model(arch).state_dict()``
that the features model has; no classifier, no head) — and ``config.json`` with
``{"architecture": arch, ...}``: the hub layout ``MODEL.ZOOBOT.WEIGHTS`` reads.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from clump_d2.modeling.backbone.imagenet import IMAGENET_PREFIX, resolve_imagenet_weights
from clump_d2.modeling.backbone.weights import (
    HUB_CONFIG_FILE,
    HUB_WEIGHT_FILES,
    canonical_key,
    load_encoder_weights,
)
from clump_d2.modeling.backbone.zoobot import timm_feature_levels

logger = logging.getLogger(__name__)

#: ``init`` value for random initialisation.
RANDOM_INIT = "random"


class PooledEncoder(nn.Module):
    """timm's ``features_only`` model at its last level, global-average pooled.

    Attributes:
        encoder: the features model (names as in the detector's ``ZoobotEncoder.encoder``).
        num_features: channels of the last level (the pooled feature size).
    """

    def __init__(self, arch: str, in_chans: int = 3):
        super().__init__()
        import timm  # the encoder zoo; heavy, imported where a model is built

        levels = timm_feature_levels(arch, in_chans)
        self.arch = arch
        self.encoder = timm.create_model(arch, pretrained=False, features_only=True,
                                         in_chans=in_chans, out_indices=(len(levels) - 1,))
        self.num_features = int(self.encoder.feature_info.channels()[-1])

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature level, ``(N, C, H / stride, W / stride)``."""
        return self.encoder(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(-2, -1))


def build_pooled_encoder(arch: str, init: str = RANDOM_INIT, seed: int = 0,
                         in_chans: int = 3) -> PooledEncoder:
    """A :class:`PooledEncoder` initialised from ``init``.

    Args:
        arch: the timm architecture.
        init: ``"random"`` (seeded by ``seed``), ``"imagenet:<name>"`` (weights installed by a
            registry package, see :mod:`clump_d2.modeling.backbone.imagenet`), or any source
            ``MODEL.ZOOBOT.WEIGHTS`` accepts (a hub-layout directory, a weight file, ...).
        seed: the seed of the random initialisation (also under loaded weights, for any tensor
            the weights do not provide).
        in_chans: input bands.
    """
    torch.manual_seed(seed)
    model = PooledEncoder(arch, in_chans)
    if not init or init == RANDOM_INIT:
        return model
    first_conv = model.encoder.pretrained_cfg.get("first_conv", "")
    # imagenet:<name>, hub layouts and files alike (the weights loader checks the architecture).
    report = load_encoder_weights(model.encoder, init, arch=arch, first_conv=first_conv)
    logger.info("encoder %s initialised from %s: %d tensors loaded, %d missing", arch, init,
                len(report.loaded), len(report.missing))
    if report.missing:
        raise ValueError(f"{init} leaves {len(report.missing)} encoder tensors uninitialised "
                         f"(e.g. {report.missing[:3]})")
    return model


def plain_state_dict(model: PooledEncoder) -> Dict[str, torch.Tensor]:
    """The features model's tensors under timm's plain-model names.

    Every key of the features model is matched, by canonical name (``.`` read as ``_``), to a
    key of ``timm.create_model(arch)``; the plain model is built on the ``meta`` device only
    for its names.
    """
    import timm  # the encoder zoo; heavy, imported where a model is built

    with torch.device("meta"):
        plain = timm.create_model(model.arch, pretrained=False, in_chans=_in_chans(model))
    names = {canonical_key(k): k for k in plain.state_dict()}
    out = {}
    for key, value in model.encoder.state_dict().items():
        name = names.get(canonical_key(key))
        if name is None:
            raise ValueError(f"{model.arch}: features key {key!r} has no plain-model name")
        out[name] = value.detach().clone().contiguous()
    return out


def _in_chans(model: PooledEncoder) -> int:
    first = model.encoder.pretrained_cfg.get("first_conv", "")
    for key, value in model.encoder.state_dict().items():
        if canonical_key(key) == canonical_key(first + ".weight"):
            return int(value.shape[1])
    return 3


def save_hub_layout(model: PooledEncoder, out_dir: str, extra: Optional[dict] = None) -> str:
    """Write ``out_dir/model.safetensors`` (plain names) and ``out_dir/config.json``.

    Args:
        model: the encoder.
        out_dir: the directory; created if needed.
        extra: more ``config.json`` entries (input size, normalisation, training summary).

    Returns:
        ``out_dir``: the value for ``MODEL.ZOOBOT.WEIGHTS``.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (HUB_WEIGHT_FILES[0] + ".tmp")
    save_file(plain_state_dict(model), str(tmp), metadata={"architecture": model.arch})
    tmp.replace(out / HUB_WEIGHT_FILES[0])
    config = {"architecture": model.arch, "num_features": model.num_features, **(extra or {})}
    (out / HUB_CONFIG_FILE).write_text(json.dumps(config, indent=1))
    return str(out)


def read_hub_config(path: str) -> Optional[dict]:
    """The ``config.json`` of a hub-layout directory, or None."""
    file = Path(path) / HUB_CONFIG_FILE
    return json.loads(file.read_text()) if Path(path).is_dir() and file.is_file() else None


def encoder_spec(init: str, default_arch: str) -> Tuple[str, str]:
    """(architecture, init) for a probe's encoder name: the arch of an ImageNet package or of a
    hub directory's ``config.json``, else ``default_arch``."""
    if init.startswith(IMAGENET_PREFIX):
        return resolve_imagenet_weights(init)[1], init
    config = read_hub_config(init) if init != RANDOM_INIT else None
    if config and config.get("architecture"):
        return config["architecture"], init
    return default_arch, init
