"""torchvision ResNet weights -> Detectron2's ResNet names (the ImageNet baseline backbone).

Detectron2's ``build_resnet_fpn_backbone`` names its ResNet ``stem.conv1``, ``res2.0.conv1``,
``res2.0.conv1.norm``, ``res2.0.shortcut``...; torchvision names the same tensors ``conv1``,
``layer1.0.conv1``, ``layer1.0.bn1``, ``layer1.0.downsample.0``... :func:`torchvision_to_d2`
renames them; :func:`save_d2_checkpoint` writes the result as a tensors-only file (``.pth``
read by ``torch.load(weights_only=True)``, or ``.safetensors``), which the checkpointer
(``MODEL.WEIGHTS``) aligns to ``backbone.bottom_up.*`` by name. Never a ``.pkl``: a pickle
runs code when loaded (see :mod:`clump_d2.modeling.checkpoint`).

The converted weights need ``MODEL.RESNETS.STRIDE_IN_1X1 False`` (torchvision strides in the
3x3 convolution), ``INPUT.FORMAT "RGB"`` and torchvision's ImageNet mean/std in 0-255 units
(``PIXEL_MEAN [123.675, 116.28, 103.53]``, ``PIXEL_STD [58.395, 57.12, 57.375]``).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Dict, Mapping

import torch

from ..checkpoint import safe_torch_load

logger = logging.getLogger(__name__)

_LAYER = re.compile(r"^layer(\d)\.(\d+)\.(.+)$")
_BN = re.compile(r"^bn(\d)\.(.+)$")


def _rename_block_part(rest: str) -> str:
    # Inside a bottleneck / basic block: convK, bnK -> convK.norm, downsample.0/1 -> shortcut.
    match = _BN.match(rest)
    if match:
        return f"conv{match.group(1)}.norm.{match.group(2)}"
    if rest.startswith("downsample.0."):
        return "shortcut." + rest[len("downsample.0."):]
    if rest.startswith("downsample.1."):
        return "shortcut.norm." + rest[len("downsample.1."):]
    return rest


def torchvision_to_d2(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename a torchvision ResNet state dict to Detectron2's ResNet names.

    The classifier (``fc.*``) and BatchNorm's ``num_batches_tracked`` counters are dropped
    (Detectron2's detector has no classifier; its FrozenBN has no counter).

    Args:
        state_dict: ``torchvision.models.resnet{18,34,50,101,152}().state_dict()`` or the
            file torchvision downloads (e.g. ``resnet50-0676ba61.pth``).

    Returns:
        ``{d2 name: tensor}``, e.g. ``stem.conv1.weight``, ``res2.0.conv1.norm.running_mean``.
    """
    out: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        if key.startswith("conv1."):
            new = "stem." + key
        elif key.startswith("bn1."):
            new = "stem.conv1.norm." + key[len("bn1."):]
        else:
            match = _LAYER.match(key)
            if not match:
                raise KeyError(f"not a torchvision ResNet key: {key!r}")
            stage = int(match.group(1)) + 1  # layer1 is res2 (stride 4)
            new = f"res{stage}.{match.group(2)}.{_rename_block_part(match.group(3))}"
        out[new] = value
    return out


def save_d2_checkpoint(state_dict: Mapping[str, torch.Tensor], path: str) -> None:
    """Write converted weights in a safe format the checkpointer reads: ``.pth``/``.pt``
    (``{"model": tensors, "__author__", "matching_heuristics"}``, loadable with
    ``torch.load(weights_only=True)``) or ``.safetensors`` (tensors only). Written to a
    temporary file and renamed, so a kill never leaves a truncated file.

    Raises:
        ValueError: for another suffix; ``.pkl`` (a pickle, which runs code when loaded) is
            not written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if path.suffix in (".pth", ".pt"):
            torch.save({"model": tensors, "__author__": "torchvision",
                        "matching_heuristics": True}, str(tmp))
        elif path.suffix == ".safetensors":
            from safetensors.torch import save_file  # optional dependency, for this format

            save_file(tensors, str(tmp), metadata={"__author__": "torchvision"})
        else:
            raise ValueError(f"output must end in .pth or .safetensors (a .pkl is a pickle, "
                             f"which runs code when loaded), got {path}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("wrote %d tensors to %s", len(state_dict), path)


def convert_torchvision_file(src: str, dst: str) -> Dict[str, torch.Tensor]:
    """Read a torchvision ResNet checkpoint, convert it, write it; returns the converted dict."""
    obj = safe_torch_load(src)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    state_dict = {k[len("module."):] if k.startswith("module.") else k: v
                  for k, v in obj.items()}
    converted = torchvision_to_d2(state_dict)
    save_d2_checkpoint(converted, dst)
    return converted
