"""Linear probe: how well a frozen encoder's pooled features separate the classes.

Features are the global-average-pooled last feature level of each encoder (the level the
detector's FPN gets deepest), computed once, without augmentation, on the held-out galaxies of
the split (none of which any pretraining saw). A logistic regression (standardised features,
scikit-learn) is cross-validated on them (stratified K folds, fixed seed); the table gives the
pooled out-of-fold accuracy and ROC AUC, and the spread of the per-fold accuracy.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .encoder import RANDOM_INIT, build_pooled_encoder, encoder_spec, read_hub_config
from .images import list_image_folder, load_images, read_split, select, split_by_galaxy

logger = logging.getLogger(__name__)

TABLE_MD = "probe.md"
TABLE_JSON = "probe.json"


@torch.no_grad()
def encoder_features(encoder, pixels: torch.Tensor, pixel_mean: float = 0.5,
                     pixel_std: float = 0.5, batch_size: int = 64) -> np.ndarray:
    """Pooled last-level features ``(N, C)`` of uint8 images ``(N, 3, H, W)``, eval mode."""
    encoder.eval()
    out = []
    for i in range(0, pixels.shape[0], batch_size):
        x = pixels[i:i + batch_size].float() / 255.0
        out.append(encoder((x - pixel_mean) / pixel_std).numpy())
    return np.concatenate(out) if out else np.zeros((0, encoder.num_features))


def probe_features(features: np.ndarray, labels: np.ndarray, folds: int = 5,
                   seed: int = 0) -> Dict[str, float]:
    """Cross-validated logistic regression of ``labels`` on ``features``.

    Returns:
        ``accuracy`` and ``roc_auc`` of the pooled out-of-fold predictions (AUC for two classes
        only), ``accuracy_fold_std``, ``folds`` and ``n``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    folds = int(min(folds, np.bincount(labels).min()))
    if folds < 2:
        raise ValueError("every class needs at least 2 held-out galaxies for cross-validation")
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    proba = np.zeros((len(labels), labels.max() + 1))
    fold_acc = []
    for train, test in cv.split(features, labels):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
        clf.fit(features[train], labels[train])
        proba[test] = clf.predict_proba(features[test])
        fold_acc.append(accuracy_score(labels[test], proba[test].argmax(1)))
    result = {"accuracy": float(accuracy_score(labels, proba.argmax(1))),
              "accuracy_fold_std": float(np.std(fold_acc)), "folds": folds, "n": int(len(labels))}
    if proba.shape[1] == 2:
        result["roc_auc"] = float(roc_auc_score(labels, proba[:, 1]))
    return result


def run_probe(data_root: str, encoders: Sequence[str], out_dir: str, *,
              arch: str = "tf_efficientnet_lite0", size: int = 96, crop: float = 0.5,
              holdout_fraction: float = 0.3, seed: int = 0, folds: int = 5,
              threads: int = 0) -> List[dict]:
    """Probe each encoder on the held-out galaxies; write ``probe.md`` and ``probe.json``.

    Args:
        data_root: folder with one sub-folder of images per class.
        encoders: ``"random"``, ``"imagenet:efficientnet_lite0"``, or hub-layout directories
            written by :func:`~clump_d2.pretrain.train.pretrain` (their ``config.json`` gives
            the architecture, input size, crop and normalisation).
        out_dir: where the table goes.
        arch, size, crop: for encoders that do not say (random, ImageNet).
        holdout_fraction, seed: the split (must be the pretraining's; checked against the
            ``split.json`` of each pretrained directory).
        folds: cross-validation folds.
        threads: ``torch.set_num_threads`` (0: leave as is).

    Returns:
        One dict per encoder (the JSON rows).
    """
    if threads:
        torch.set_num_threads(threads)
    images, classes = list_image_folder(data_root)
    split = split_by_galaxy(images, holdout_fraction, seed)
    held = select(images, split["heldout"])
    cache: Dict[tuple, tuple] = {}
    rows = []
    for spec in encoders:
        enc_arch, init = encoder_spec(spec, arch)
        config = read_hub_config(init) if init != RANDOM_INIT else None
        e_size, e_crop, mean, std = size, crop, 0.5, 0.5
        if config:
            e_size = int(config.get("input_size", size))
            e_crop = float(config.get("central_crop", crop))
            mean = config.get("pixel_mean", [127.5])[0] / 255.0
            std = config.get("pixel_std", [127.5])[0] / 255.0
            written = read_split(init)
            if written is not None and sorted(written["heldout"]) != split["heldout"]:
                raise ValueError(f"{init} was pretrained with another split: its held-out "
                                 f"galaxies differ from this probe's (holdout_fraction "
                                 f"{holdout_fraction}, seed {seed})")
        key = (e_size, e_crop)
        if key not in cache:
            cache[key] = load_images(held, e_size, e_crop)
        pixels, labels = cache[key]
        encoder = build_pooled_encoder(enc_arch, init, seed)
        feats = encoder_features(encoder, pixels, mean, std)
        result = probe_features(feats, labels.numpy(), folds, seed)
        row = {"encoder": spec, "architecture": enc_arch, "input_size": e_size,
               "central_crop": e_crop, "features": int(feats.shape[1]), **result}
        logger.info("probe %s: accuracy %.3f, ROC AUC %s", spec, row["accuracy"],
                    f"{row['roc_auc']:.3f}" if "roc_auc" in row else "-")
        rows.append(row)
    write_table(rows, out_dir, classes=classes, data_root=data_root,
                holdout_fraction=holdout_fraction, seed=seed)
    return rows


def write_table(rows: List[dict], out_dir: str, **meta) -> str:
    """Write the rows as ``probe.json`` and a Markdown ``probe.md``; return the Markdown."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / TABLE_JSON).write_text(json.dumps({**meta, "rows": rows}, indent=1))
    classes = meta.get("classes", [])
    lines = [
        f"Linear probe ({' vs '.join(classes)}) on {rows[0]['n'] if rows else 0} held-out "
        f"galaxies, logistic regression, {rows[0]['folds'] if rows else 0}-fold CV",
        "",
        "| encoder | architecture | input px | features | accuracy | fold std | ROC AUC |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        auc = f"{r['roc_auc']:.3f}" if "roc_auc" in r else "-"
        lines.append(f"| {r['encoder']} | {r['architecture']} | {r['input_size']} | "
                     f"{r['features']} | {r['accuracy']:.3f} | {r['accuracy_fold_std']:.3f} | "
                     f"{auc} |")
    text = "\n".join(lines) + "\n"
    (out / TABLE_MD).write_text(text)
    return text


def format_table(out_dir: str) -> Optional[str]:
    """The Markdown table written in ``out_dir``, if any."""
    path = Path(out_dir) / TABLE_MD
    return path.read_text() if path.is_file() else None
