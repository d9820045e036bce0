"""A folder of galaxy images with one sub-folder per class, read small, and split by galaxy.

The layout is ``<root>/<class>/<galaxy>.<ext>`` (e.g. ``gz2_sdss_1400/jpegs/spiral/100008.jpg``):
the class is the folder name, the galaxy the file name without extension. Classes are numbered in
sorted order (``non_spiral`` 0, ``spiral`` 1).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from clump_d2.data.image_io import COLOUR_SUFFIXES, check_image_size

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = COLOUR_SUFFIXES  # galaxy images: colour cut-outs (data.image_io)
#: File names of the split lists written beside a pretraining output.
SPLIT_FILE = "split.json"


@dataclass(frozen=True)
class GalaxyImage:
    """One image: its file, its galaxy id (file stem) and its class."""

    path: str
    galaxy: str
    label: int
    class_name: str


def list_image_folder(root: str) -> Tuple[List[GalaxyImage], List[str]]:
    """Every image under ``root/<class>/``, sorted by class then galaxy.

    Returns:
        ``(images, class_names)``.

    Raises:
        FileNotFoundError: ``root`` has no class sub-folder holding images.
        ValueError: one galaxy id appears twice (a split by galaxy would then leak).
    """
    root_path = Path(root)
    classes = sorted(d.name for d in root_path.iterdir() if d.is_dir()
                     and any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir()))
    if not classes:
        raise FileNotFoundError(f"{root} has no class sub-folders with images "
                                f"({', '.join(IMAGE_SUFFIXES)})")
    images, seen = [], {}
    for label, name in enumerate(classes):
        for f in sorted((root_path / name).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if f.stem in seen:
                raise ValueError(f"galaxy {f.stem} appears twice: {seen[f.stem]} and {f}")
            seen[f.stem] = f
            images.append(GalaxyImage(str(f), f.stem, label, name))
    return images, classes


def split_by_galaxy(images: Sequence[GalaxyImage], holdout_fraction: float,
                    seed: int) -> Dict[str, List[str]]:
    """Deterministic split of galaxy ids into ``train`` and ``heldout``, stratified by class.

    Within each class the sorted ids are shuffled with ``numpy.random.RandomState(seed)`` and the
    first ``round(fraction * n)`` are held out, so the split depends only on the ids, the
    fraction and the seed.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    rng = np.random.RandomState(seed)
    train, heldout = [], []
    for label in sorted({im.label for im in images}):
        ids = sorted(im.galaxy for im in images if im.label == label)
        order = rng.permutation(len(ids))
        n_held = int(round(holdout_fraction * len(ids)))
        heldout += [ids[i] for i in order[:n_held]]
        train += [ids[i] for i in order[n_held:]]
    return {"train": sorted(train), "heldout": sorted(heldout)}


def write_split(split: Dict[str, List[str]], out_dir: str, **meta) -> str:
    """Write the split lists (and how they were made) as ``out_dir/split.json``."""
    path = Path(out_dir) / SPLIT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, **split}, indent=1))
    return str(path)


def read_split(out_dir: str) -> Optional[Dict[str, List[str]]]:
    """The split written by :func:`write_split` in ``out_dir``, or None."""
    path = Path(out_dir) / SPLIT_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def select(images: Sequence[GalaxyImage], galaxies: Sequence[str]) -> List[GalaxyImage]:
    """The images of ``galaxies``, in the order of ``images``."""
    wanted = set(galaxies)
    return [im for im in images if im.galaxy in wanted]


def load_image(path: str, size: int, crop: float) -> np.ndarray:
    """One image as ``(3, size, size)`` uint8 RGB: the central ``crop`` fraction of its side,
    resized with antialiasing (the galaxy sits at the centre of a Galaxy Zoo cut-out).

    Raises:
        ImageSizeError: naming the file, for a declared size over the default
            ``INPUT.MAX_PIXELS`` or under 16 px a side (checked before decoding).
    """
    with Image.open(path) as im:
        check_image_size(path, *im.size)  # from the header: a bomb is never decoded
        im = im.convert("RGB")
        w, h = im.size
        side = max(1, int(round(min(w, h) * crop)))
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
        if side != size:
            im = im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


def load_images(images: Sequence[GalaxyImage], size: int, crop: float
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """All ``images`` as a ``(N, 3, size, size)`` uint8 tensor and their ``(N,)`` labels."""
    arrays = [load_image(im.path, size, crop) for im in images]
    pixels = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, 3, size, size,
                                                                          dtype=torch.uint8)
    labels = torch.tensor([im.label for im in images], dtype=torch.long)
    logger.info("read %d images at %d px (central %.2f of the side)", len(images), size, crop)
    return pixels, labels
