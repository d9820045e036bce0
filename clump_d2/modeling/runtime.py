"""How a built model runs: memory format and mixed precision (GPU speed settings).

Both are off by default (the CPU is the default here, where neither helps) and behind config
keys, so the same YAML runs on a laptop and on a GPU:

* ``MODEL.CHANNELS_LAST``: convolution weights in channels-last (NHWC) memory format; with
  mixed precision on recent NVIDIA GPUs this lets cuDNN use its tensor-core kernels
  without layout transposes.
* ``TEST.AMP.ENABLED`` / ``TEST.AMP.DTYPE``: inference (evaluation, catalogues, benchmark)
  under ``torch.autocast``. Detectron2 decodes boxes in float32 and torchvision's ROIAlign
  casts to float32 under autocast, so box coordinates keep full precision.
* training uses Detectron2's own ``SOLVER.AMP.ENABLED`` (its ``AMPTrainer``), which needs
  CUDA; :func:`clump_d2.engine.resolve_device` turns it off with a warning on the CPU.
* ``TEST.TRACED_BACKBONE``: at inference the backbone runs as a frozen TorchScript graph
  (:func:`trace_backbone_for_inference`), a CPU speed setting.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Dict

import torch
from detectron2.structures import Boxes
from torch import nn

from .tta import DihedralTTA

logger = logging.getLogger(__name__)

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def autocast_dtype(cfg) -> torch.dtype:
    """The ``torch.dtype`` named by ``TEST.AMP.DTYPE``."""
    name = str(cfg.TEST.AMP.DTYPE)
    if name not in _DTYPES:
        raise ValueError(f"TEST.AMP.DTYPE is {name!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[name]


def inference_autocast(cfg):
    """Context manager: ``torch.autocast`` on ``MODEL.DEVICE`` when ``TEST.AMP.ENABLED``,
    else a no-op."""
    if not cfg.TEST.AMP.ENABLED:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(cfg.MODEL.DEVICE).type,
                          dtype=autocast_dtype(cfg))


def apply_channels_last(model: nn.Module, cfg) -> nn.Module:
    """Convert the model's 4-d parameters to channels-last when ``MODEL.CHANNELS_LAST``."""
    if cfg.MODEL.CHANNELS_LAST:
        model.to(memory_format=torch.channels_last)
    return model


class AutocastInference(nn.Module):
    """Wraps a model so that every forward pass runs under ``TEST.AMP``'s autocast.

    Used for evaluation (``inference_on_dataset`` calls the wrapper like the model); the
    wrapped model stays reachable as ``.model`` for checkpoints.
    """

    def __init__(self, model: nn.Module, cfg):
        super().__init__()
        self.model = model
        self._autocast = lambda: inference_autocast(cfg)

    def forward(self, *args, **kwargs):
        with self._autocast():
            outputs = self.model(*args, **kwargs)
        if isinstance(outputs, list):  # inference: hand float32 on, as without autocast
            return [_float32_outputs(o) for o in outputs]
        return outputs


def _float32_outputs(output):
    """Scores and other half-precision fields of an output's ``Instances`` as float32 (numpy,
    catalogues and evaluators expect float32; boxes are decoded in float32 already)."""
    instances = output.get("instances") if isinstance(output, dict) else None
    if instances is None:
        return output
    for name, value in instances.get_fields().items():
        if isinstance(value, Boxes) and value.tensor.dtype != torch.float32:
            instances.set(name, Boxes(value.tensor.float()))
        elif torch.is_tensor(value) and value.is_floating_point() and value.dtype != torch.float32:
            instances.set(name, value.float())
    return output


def _traced_graph(backbone: nn.Module, forward, x: torch.Tensor):
    """``forward`` (the backbone's own, eager) traced on ``x``, frozen and optimised for
    inference: BatchNorm folded into convolutions, constants inlined."""

    class _Eager(nn.Module):  # the backbone's parameters, called through its eager forward
        def __init__(self):
            super().__init__()
            self.backbone = backbone

        def forward(self, image):
            return forward(image)

    # Tracing records autograd-free ops only, but not inside inference mode; the input is an
    # inference tensor when the caller is in inference mode, hence the clone outside it.
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # TorchScript's deprecation notices, and tracer notes on shape checks that hold for
        # the traced shape (a new shape gets its own graph), say nothing a user can act on.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        example = x.clone()
        traced = torch.jit.trace(_Eager().eval(), example, strict=False, check_trace=False)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


def trace_backbone_for_inference(model: nn.Module) -> nn.Module:
    """Run ``model.backbone`` as a frozen, inference-optimised TorchScript graph, traced on
    first use for each input shape (a catalogue's batches have one or two shapes). The
    backbone module, its parameters and the model's ``state_dict`` are unchanged: only its
    ``forward`` is replaced, and it falls back to the eager one in training mode or when
    gradients are on. Returns ``model``."""
    backbone = model.backbone
    if getattr(backbone, "_clump_d2_traced", False):
        return model
    eager = backbone.forward
    graphs: Dict = {}
    weights_seen = [None]

    def weights_state():
        # Freezing bakes the weights in: a periodic evaluation during training must not reuse
        # a graph of older weights. Every in-place update bumps a tensor's _version.
        return tuple((p.data_ptr(), p._version) for p in backbone.parameters())

    def forward(x):
        if backbone.training or torch.is_grad_enabled():
            return eager(x)
        state = weights_state()
        if state != weights_seen[0]:
            graphs.clear()
            weights_seen[0] = state
        key = (tuple(x.shape), x.dtype, x.device, x.is_contiguous())
        if key not in graphs:
            logger.info("tracing the backbone for inputs of shape %s", tuple(x.shape))
            graphs[key] = _traced_graph(backbone, eager, x)
        return graphs[key](x)

    backbone.forward = forward
    backbone._clump_d2_traced = True
    return model


def wrap_for_inference(model: nn.Module, cfg) -> nn.Module:
    """Wrapped in :class:`AutocastInference` if ``TEST.AMP.ENABLED`` and in
    :class:`~clump_d2.modeling.tta.DihedralTTA` if ``TEST.DIHEDRAL_TTA.ENABLED`` (else the
    model as it is)."""
    if cfg.TEST.TRACED_BACKBONE:
        trace_backbone_for_inference(model)
    if cfg.TEST.AMP.ENABLED:
        logger.info("inference under torch.autocast(%s, %s)", cfg.MODEL.DEVICE,
                    cfg.TEST.AMP.DTYPE)
        model = AutocastInference(model, cfg)
    if cfg.TEST.DIHEDRAL_TTA.ENABLED:
        logger.info("inference with %d-view test-time augmentation (merge IoU %.2f)",
                    cfg.TEST.DIHEDRAL_TTA.VIEWS, cfg.TEST.DIHEDRAL_TTA.MERGE_IOU)
        model = DihedralTTA(model, merge_iou=cfg.TEST.DIHEDRAL_TTA.MERGE_IOU,
                            views=cfg.TEST.DIHEDRAL_TTA.VIEWS,
                            max_detections=cfg.TEST.DETECTIONS_PER_IMAGE)
    return model


def unwrap_inference_model(model: nn.Module) -> nn.Module:
    """The plain model under :func:`wrap_for_inference`'s wrappers."""
    while isinstance(model, (AutocastInference, DihedralTTA)):
        model = model.model
    return model


def prepare_for_inference(model: nn.Module, cfg) -> nn.Module:
    """The model as inference should call it: channels-last if configured, then
    :func:`wrap_for_inference` (autocast, test-time augmentation)."""
    apply_channels_last(model, cfg)
    return wrap_for_inference(model, cfg)
