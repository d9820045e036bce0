"""The on-disk layout of a clump dataset, as ``clump_d2.data.datasets.builtin`` registers it::

    <root>/<name>/annotations/<split>.json          COCO JSON -> dataset "<name>_<split>"
    <root>/<name>/annotations/<split>.report.json   what the converter read/kept/dropped
    <root>/<name>/images/<file_name>                images (links to, or copies of, the source)
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Dict, Optional

from tqdm import tqdm

from .coco_writer import CocoBuilder, ConversionReport, write_coco

logger = logging.getLogger(__name__)

LINK_MODES = ("symlink", "copy", "none")


def annotation_path(dataset_dir: str | os.PathLike, split: str) -> Path:
    return Path(dataset_dir) / "annotations" / f"{split}.json"


def write_split(dataset_dir: str | os.PathLike, split: str, coco: Dict | CocoBuilder,
                report: Optional[ConversionReport] = None) -> Path:
    """Write ``annotations/<split>.json`` and its ``.report.json`` under ``dataset_dir``."""
    return write_coco(coco, annotation_path(dataset_dir, split), report)


def place_images(coco: Dict | CocoBuilder, source_dir: str | os.PathLike,
                 dataset_dir: str | os.PathLike, mode: str = "symlink") -> int:
    """Make ``<dataset_dir>/images/<file_name>`` for every image of ``coco`` from
    ``source_dir`` (symlink, copy, or nothing). Returns the number of files placed.

    Per-band FITS names (``{band}`` or ``band_files``) are placed band by band.

    Raises:
        FileNotFoundError: naming the first source file that does not exist.
    """
    if mode not in LINK_MODES:
        raise ValueError(f"link mode {mode!r} not in {LINK_MODES}")
    if mode == "none":
        return 0
    images = coco.images if isinstance(coco, CocoBuilder) else coco["images"]
    source_dir, target_dir = Path(source_dir).resolve(), Path(dataset_dir) / "images"
    names = []
    for im in images:
        if isinstance(im.get("band_files"), dict):
            names.extend(im["band_files"].values())
        else:
            names.append(im["file_name"])
    n = 0
    for name in tqdm(sorted(set(names)), desc=f"{mode} images", disable=len(names) < 2000):
        src, dst = source_dir / name, target_dir / name
        if not src.exists():
            raise FileNotFoundError(f"image {src} (listed in the annotations) does not exist")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.exists():
            if dst.resolve() == src.resolve():
                continue
            dst.unlink()
        if mode == "symlink":
            dst.symlink_to(src)
        else:
            shutil.copy2(src, dst)
        n += 1
    logger.info("%s %d images into %s", "linked" if mode == "symlink" else "copied", n,
                target_dir)
    return n
