"""Training hooks: validation loss over all validation batches, early stopping, and a
progress bar.

Best-checkpointing uses Detectron2's own ``BestCheckpointer``; periodic evaluation comes
from ``DefaultTrainer``'s ``EvalHook`` (``TEST.EVAL_PERIOD``). ``ClumpTrainer.build_hooks``
wires them together.
"""
from __future__ import annotations

import logging
import math
import zlib
from collections import defaultdict
from typing import Dict, Iterable, Mapping, Optional

import torch
from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.events import EventStorage
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

logger = logging.getLogger(__name__)

_NORM_AND_DROPOUT = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm,
                     torch.nn.LayerNorm, torch.nn.Dropout)


class ProgressBar(HookBase):
    """A tqdm bar over the training iterations (``SOLVER.PROGRESS_BAR``), on the main
    process; a resumed run starts the bar at the iteration it resumes from."""

    def __init__(self, file=None):
        self._file = file
        self.bar: Optional[tqdm] = None

    def before_train(self):
        if comm.is_main_process():
            self.bar = tqdm(total=self.trainer.max_iter, initial=self.trainer.start_iter,
                            desc="training", unit="it", file=self._file, dynamic_ncols=True)

    def after_step(self):
        if self.bar is not None:
            self.bar.update(1)

    def after_train(self):
        if self.bar is not None:
            self.bar.close()


class EarlyStop(BaseException):
    """Raised by :class:`EarlyStopping` to end training (a ``BaseException``, so that the
    training loop's ``except Exception`` does not log it as a failure)."""


def _stable_id(image_id) -> int:
    """An integer for an image id that is the same in every process (``hash`` of a string
    is salted per process)."""
    if isinstance(image_id, int):
        return image_id
    return zlib.crc32(str(image_id).encode())


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def _loss_mode(model: torch.nn.Module):
    """Training mode (so the model returns its losses) with normalisation and dropout layers
    in inference mode (so validation neither updates BN statistics nor drops units)."""
    model.train()
    for m in model.modules():
        if isinstance(m, _NORM_AND_DROPOUT):
            m.eval()


def validation_losses(model: torch.nn.Module, data_loader: Iterable, seed: int = 0
                      ) -> Dict[str, float]:
    """Mean of each loss term, and of their sum ``loss``, over all images of ``data_loader``
    on all processes.

    Every batch counts with its number of images (batches hold one image with Detectron2's
    test loader, so this is a mean over images). Random sampling inside the model (RPN and
    ROI-head minibatches) is seeded per image from ``seed`` and the image id, under a forked
    RNG: the number does not depend on the number of processes, and training's random
    state is left untouched. What the model logs meanwhile goes to a throwaway
    ``EventStorage``, not training's. Call it on every process (it all-gathers).

    Returns:
        {"loss": ..., "loss_cls": ..., ...}; empty if no process saw an image.
    """
    net = _unwrap(model)
    was_training = net.training
    sums: Dict[str, float] = defaultdict(float)
    n_images = 0
    device = next(net.parameters()).device
    devices = [device] if device.type == "cuda" else []
    try:
        _loss_mode(net)
        # A throwaway EventStorage: in training mode the ROI heads log their sampling
        # statistics, which must not mix with training's (and need a storage at all).
        with torch.no_grad(), torch.random.fork_rng(devices=devices), EventStorage():
            for batch in data_loader:
                image_id = batch[0].get("image_id", n_images) if batch else n_images
                torch.manual_seed((seed + _stable_id(image_id)) % (2**31))
                losses = net(batch)
                total = 0.0
                for name, value in losses.items():
                    v = float(value.detach())
                    sums[name] += v * len(batch)
                    total += v
                sums["loss"] += total * len(batch)
                n_images += len(batch)
    finally:
        net.train(was_training)
    gathered = comm.all_gather((dict(sums), n_images))
    total_sums: Dict[str, float] = defaultdict(float)
    total_n = 0
    for part_sums, part_n in gathered:
        total_n += part_n
        for name, value in part_sums.items():
            total_sums[name] += value
    if total_n == 0:
        return {}
    return {name: value / total_n for name, value in sorted(total_sums.items())}


class ValidationLoss(HookBase):
    """Every ``period`` iterations (and after the last one), the validation loss over all
    batches of every validation loader, averaged across processes, stored as
    ``validation/loss`` and ``validation/<term>`` (``validation/<dataset>/...`` with more
    than one dataset). Must be present on all processes."""

    def __init__(self, period: int, data_loaders: Mapping[str, Iterable], seed: int = 0,
                 model: Optional[torch.nn.Module] = None):
        """
        Args:
            period: iterations between computations (<= 0: never).
            data_loaders: {dataset name: loader yielding batches with annotations}.
            seed: base seed of the model's random sampling during validation.
            model: the model (default: the trainer's).
        """
        self._period = int(period)
        self._loaders = dict(data_loaders)
        self._seed = seed
        self._model = model

    def compute(self) -> Dict[str, float]:
        """The scalars as stored (``validation/...``)."""
        model = self._model if self._model is not None else self.trainer.model
        out = {}
        for name, loader in self._loaders.items():
            prefix = "validation" if len(self._loaders) == 1 else f"validation/{name}"
            for term, value in validation_losses(model, loader, self._seed).items():
                out[f"{prefix}/{term}"] = value
        return out

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if self._period > 0 and (next_iter % self._period == 0
                                 or next_iter == self.trainer.max_iter):
            scalars = self.compute()
            if scalars:
                self.trainer.storage.put_scalars(**scalars, smoothing_hint=False)
                logger.info("validation loss at iteration %d: %s", next_iter,
                            ", ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in scalars.items()))
            comm.synchronize()


def should_stop(history, mode: str = "max", patience: int = 5, min_delta: float = 0.0) -> bool:
    """True if the last ``patience`` values of ``history`` bring no improvement larger than
    ``min_delta`` over the best value before them (NaN values never improve)."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
    if patience < 1 or len(history) <= patience:
        return False
    sign = 1.0 if mode == "max" else -1.0
    before = [sign * v for v in history[:-patience] if not math.isnan(v)]
    recent = [sign * v for v in history[-patience:] if not math.isnan(v)]
    if not before:
        return False
    return not any(v > max(before) + min_delta for v in recent)


class EarlyStopping(HookBase):
    """Stop training when a stored metric has not improved for ``patience`` evaluations.

    Runs right after each periodic evaluation (same schedule as ``EvalHook``); the main
    process decides (only it holds evaluation results) and tells the others, so every
    process stops at the same iteration. Stopping raises :class:`EarlyStop`, which
    ``ClumpTrainer.train`` catches.
    """

    def __init__(self, eval_period: int, metric: str, mode: str = "max", patience: int = 5,
                 min_delta: float = 0.0):
        self._period = int(eval_period)
        self._metric = metric
        self._mode = mode
        self._patience = int(patience)
        self._min_delta = float(min_delta)
        self.history = []
        self.stopped_at: Optional[int] = None

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if not (self._period > 0 and next_iter % self._period == 0
                and next_iter != self.trainer.max_iter):
            return
        stop = False
        if comm.is_main_process():
            latest = self.trainer.storage.latest().get(self._metric)
            if latest is None:
                logger.warning("early stopping: metric %r was not stored; not stopping",
                               self._metric)
            else:
                self.history.append(float(latest[0]))
                stop = should_stop(self.history, self._mode, self._patience, self._min_delta)
        stop = bool(comm.all_gather(stop)[0])
        if stop:
            self.stopped_at = next_iter
            logger.info("early stopping at iteration %d: %s has not improved for %d "
                        "evaluations (history %s)", next_iter, self._metric, self._patience,
                        [round(v, 4) for v in self.history])
            raise EarlyStop(next_iter)
