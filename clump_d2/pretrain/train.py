"""Pretrain an encoder on galaxy images: supervised (morphology label) and/or VICReg.

Objectives, combined by weights (``sup_weight``, ``ssl_weight``):

* **supervised**: a linear head on the pooled last feature level, cross-entropy against the
  folder class (Galaxy Zoo spiral vs non-spiral), averaged over the two views;
* **self-supervised, non-contrastive**: VICReg (Bardes et al. 2022) on two sky-respecting views
  of each galaxy through an MLP expander: invariance (MSE between views), variance (hinge on
  each dimension's standard deviation) and covariance (off-diagonal decorrelation). It needs no
  negatives and no momentum encoder, so it works with the small batches a CPU affords.

Resumption: after each epoch a checkpoint (``checkpoints/last.safetensors``: model, head,
expander and AdamW moments as tensors; ``checkpoints/last.json``: epoch, history, settings)
replaces the previous one. Re-running the same command continues after the last finished epoch
and returns at once when the final encoder exists. All randomness is seeded per epoch, so an
interrupted and resumed run ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .augment import SkyAugmentation
from .encoder import PooledEncoder, build_pooled_encoder, read_hub_config, save_hub_layout
from .images import list_image_folder, load_images, select, split_by_galaxy, write_split

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
HISTORY_FILE = "history.json"
# Settings that must match for a checkpoint to be resumed (the rest, e.g. threads, may change).
_RESUME_KEYS = ("data_root", "arch", "init", "size", "crop", "holdout_fraction", "seed", "epochs",
                "batch_size", "lr", "weight_decay", "warmup_epochs", "sup_weight", "ssl_weight",
                "expander_dim", "pixel_mean", "pixel_std", "augmentation")


@dataclass
class PretrainConfig:
    """Everything a pretraining run depends on.

    Attributes:
        data_root: folder with one sub-folder of images per class.
        out_dir: output directory (hub layout + split + checkpoints).
        arch: timm architecture.
        init: ``"random"``, ``"imagenet:efficientnet_lite0"`` or a weights source.
        size: input side in pixels after the central crop.
        crop: central crop, as a fraction of the image side, before resizing.
        holdout_fraction: galaxies per class held out of pretraining (for the probe).
        seed: the one seed (split, initialisation, order, augmentations).
        epochs: epochs in total.
        batch_size: galaxies per step (two views each with VICReg).
        lr: peak AdamW learning rate (linear warm-up, then cosine to 0, per step).
        weight_decay: AdamW weight decay.
        warmup_epochs: epochs of linear warm-up.
        sup_weight: weight of the supervised cross-entropy (0: off).
        ssl_weight: weight of the VICReg loss (0: off; one view per galaxy then).
        expander_dim: width of VICReg's 2-layer expander.
        pixel_mean: normalisation mean of [0, 1] RGB (0.5: the ImageNet Lite convention).
        pixel_std: normalisation std of [0, 1] RGB.
        augmentation: :class:`SkyAugmentation` settings.
        threads: ``torch.set_num_threads`` (0: leave as is).
    """

    data_root: str
    out_dir: str
    arch: str = "tf_efficientnet_lite0"
    init: str = "random"
    size: int = 96
    crop: float = 0.5
    holdout_fraction: float = 0.3
    seed: int = 0
    epochs: int = 15
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    sup_weight: float = 1.0
    ssl_weight: float = 0.04
    expander_dim: int = 512
    pixel_mean: float = 0.5
    pixel_std: float = 0.5
    augmentation: dict = dataclasses.field(default_factory=dict)
    threads: int = 0

    def settings(self) -> dict:
        """The settings that decide the result (compared on resumption)."""
        d = dataclasses.asdict(self)
        return {k: d[k] for k in _RESUME_KEYS}


class PretrainModel(nn.Module):
    """Encoder + linear class head + VICReg expander."""

    def __init__(self, encoder: PooledEncoder, num_classes: int, expander_dim: int):
        super().__init__()
        self.encoder = encoder
        c = encoder.num_features
        self.head = nn.Linear(c, num_classes)
        self.expander = nn.Sequential(
            nn.Linear(c, expander_dim), nn.BatchNorm1d(expander_dim), nn.ReLU(inplace=True),
            nn.Linear(expander_dim, expander_dim))


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim: float = 25.0, var: float = 25.0,
                cov: float = 1.0, eps: float = 1e-4) -> Dict[str, torch.Tensor]:
    """VICReg's loss of two ``(N, D)`` embeddings of the same galaxies (standard weights)."""
    n, d = z1.shape
    inv = F.mse_loss(z1, z2)
    std_loss = 0.0
    cov_loss = 0.0
    for z in (z1, z2):
        z = z - z.mean(dim=0)
        std = torch.sqrt(z.var(dim=0) + eps)
        std_loss = std_loss + F.relu(1 - std).mean() / 2
        c = (z.T @ z) / (n - 1)
        off = c - torch.diag(torch.diag(c))
        cov_loss = cov_loss + off.pow(2).sum() / d
    total = sim * inv + var * std_loss + cov * cov_loss
    return {"loss": total, "invariance": inv.detach(),
            "variance": torch.as_tensor(std_loss).detach(),
            "covariance": torch.as_tensor(cov_loss).detach()}


def learning_rate(cfg: PretrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to 0 at the last step."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def pretrain(cfg: PretrainConfig,
             on_epoch_end: Optional[Callable[[int, dict], None]] = None) -> str:
    """Pretrain (or resume, or skip when done) and write the hub-layout encoder.

    Args:
        cfg: the run's settings.
        on_epoch_end: called with ``(epoch, record)`` after each epoch's checkpoint is written
            (tests use it to interrupt a run).

    Returns:
        ``cfg.out_dir``, the value for ``MODEL.ZOOBOT.WEIGHTS``.
    """
    from tqdm import tqdm

    if cfg.sup_weight <= 0 and cfg.ssl_weight <= 0:
        raise ValueError("both sup_weight and ssl_weight are 0: nothing to train")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    done = _finished(out, cfg)
    if done:
        logger.info("%s already holds the finished encoder (%d epochs): nothing to do",
                    out, cfg.epochs)
        return str(out)

    images, classes = list_image_folder(cfg.data_root)
    split = split_by_galaxy(images, cfg.holdout_fraction, cfg.seed)
    write_split(split, cfg.out_dir, data_root=str(cfg.data_root), classes=classes,
                holdout_fraction=cfg.holdout_fraction, seed=cfg.seed)
    train_images = select(images, split["train"])
    pixels, labels = load_images(train_images, cfg.size, cfg.crop)
    n = len(train_images)
    if n < 2:
        raise ValueError(f"only {n} training images under {cfg.data_root}")
    batch = min(cfg.batch_size, n)
    steps_per_epoch = n // batch  # drop the ragged last batch: BatchNorm needs > 1 sample

    model = PretrainModel(build_pooled_encoder(cfg.arch, cfg.init, cfg.seed), len(classes),
                          cfg.expander_dim)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    augment = SkyAugmentation(**cfg.augmentation)
    start, history = _resume(out, cfg, model, optimizer)

    for epoch in range(start, cfg.epochs):
        record = _train_epoch(cfg, model, optimizer, augment, pixels, labels, epoch, batch,
                              steps_per_epoch, tqdm)
        history.append(record)
        _save_checkpoint(out, cfg, model, optimizer, epoch + 1, history)
        logger.info("epoch %d/%d: %s", epoch + 1, cfg.epochs,
                    ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch"))
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, record)

    summary = {"input_size": cfg.size, "central_crop": cfg.crop, "input_format": "RGB",
               # Detectron2 units (0-255): PIXEL_MEAN / PIXEL_STD for a detector using it.
               "pixel_mean": [255.0 * cfg.pixel_mean] * 3,
               "pixel_std": [255.0 * cfg.pixel_std] * 3,
               "classes": classes, "n_train_galaxies": n,
               "pretraining": cfg.settings(), "final_epoch": history[-1] if history else {}}
    save_hub_layout(model.encoder, cfg.out_dir, summary)
    (out / HISTORY_FILE).write_text(json.dumps(history, indent=1))
    logger.info("encoder written to %s (MODEL.ZOOBOT.WEIGHTS %s, MODEL.ZOOBOT.ARCH %s)",
                out, out, cfg.arch)
    return str(out)


def _train_epoch(cfg, model, optimizer, augment, pixels, labels, epoch, batch, steps, tqdm):
    model.train()
    # Per-epoch seeds: the epoch's order and views do not depend on earlier epochs having run
    # in this process (exact resumption).
    torch.manual_seed(cfg.seed * 100_003 + epoch)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    order = torch.randperm(pixels.shape[0], generator=gen)
    sums = {"loss": 0.0, "sup_loss": 0.0, "ssl_loss": 0.0, "accuracy": 0.0}
    start = time.time()
    bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)
    for step in bar:
        idx = order[step * batch:(step + 1) * batch]
        x = pixels[idx].float() / 255.0
        y = labels[idx]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, epoch * steps + step, steps)
        views = [augment(x, gen)] + ([augment(x, gen)] if cfg.ssl_weight > 0 else [])
        feats = [model.encoder((v - cfg.pixel_mean) / cfg.pixel_std) for v in views]
        loss = torch.zeros(())
        sup = ssl = torch.zeros(())
        acc = 0.0
        if cfg.sup_weight > 0:
            logits = [model.head(f) for f in feats]
            sup = sum(F.cross_entropy(lg, y) for lg in logits) / len(logits)
            acc = float((logits[0].argmax(1) == y).float().mean())
            loss = loss + cfg.sup_weight * sup
        if cfg.ssl_weight > 0:
            ssl = vicreg_loss(model.expander(feats[0]), model.expander(feats[1]))["loss"]
            loss = loss + cfg.ssl_weight * ssl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for key, value in (("loss", loss), ("sup_loss", sup), ("ssl_loss", ssl)):
            sums[key] += float(value.detach())
        sums["accuracy"] += acc
        bar.set_postfix(loss=f"{sums['loss'] / (step + 1):.3f}", refresh=False)
    bar.close()
    record = {k: v / steps for k, v in sums.items()}
    record.update(epoch=epoch + 1, seconds=time.time() - start,
                  lr_end=optimizer.param_groups[0]["lr"])
    return record


# --- checkpoints ------------------------------------------------------------------------------


def _finished(out: Path, cfg: PretrainConfig) -> bool:
    config = read_hub_config(str(out))
    if not config or not (out / "model.safetensors").is_file():
        return False
    if config.get("pretraining") != json.loads(json.dumps(cfg.settings())):
        raise ValueError(f"{out} holds an encoder pretrained with other settings; use another "
                         "output directory (or delete it)")
    return True


def _save_checkpoint(out: Path, cfg, model, optimizer, epochs_done: int,
                     history: List[dict]) -> None:
    from safetensors.torch import save_file

    ckpt = out / CHECKPOINT_DIR
    ckpt.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    state = optimizer.state_dict()["state"]
    for index, entries in state.items():
        for name, value in entries.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).contiguous()
    # Tensors first, then the JSON that marks the checkpoint complete (atomic renames).
    tmp = ckpt / "last.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(ckpt / "last.safetensors")
    meta = {"epochs_done": epochs_done, "settings": cfg.settings(), "history": history}
    tmp_json = ckpt / "last.json.tmp"
    tmp_json.write_text(json.dumps(meta, indent=1))
    tmp_json.replace(ckpt / "last.json")


def _resume(out: Path, cfg, model, optimizer):
    from safetensors.torch import load_file

    meta_file = out / CHECKPOINT_DIR / "last.json"
    if not meta_file.is_file():
        return 0, []
    meta = json.loads(meta_file.read_text())
    if meta["settings"] != json.loads(json.dumps(cfg.settings())):
        changed = [k for k in _RESUME_KEYS
                   if meta["settings"].get(k) != json.loads(json.dumps(cfg.settings()))[k]]
        raise ValueError(f"{meta_file} was written with other settings ({', '.join(changed)}); "
                         "use another output directory to train with these")
    tensors = load_file(str(out / CHECKPOINT_DIR / "last.safetensors"))
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items()
                           if k.startswith("model.")})
    state: Dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state,
                               "param_groups": optimizer.state_dict()["param_groups"]})
    logger.info("resuming %s after epoch %d of %d", out, meta["epochs_done"], cfg.epochs)
    return int(meta["epochs_done"]), list(meta["history"])
