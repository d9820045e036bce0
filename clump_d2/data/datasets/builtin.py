"""Register clump datasets with Detectron2's catalogues.

Layout under ``$CLUMP_D2_DATASETS`` (default ``./datasets``)::

    <root>/<name>/annotations/<split>.json   COCO JSON (bbox XYWH in image pixels)
    <root>/<name>/annotations/<split>.report.json   the converter's report (not registered)
    <root>/<name>/images/...                 image files, paths relative to images/

Each ``<split>.json`` is registered as ``<name>_<split>`` (e.g. ``clumpsim_train``).
Registration is lazy (the JSON is read when the dataset is first used) and registering the
same name again for the same files is not an error.
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from clump_d2.structures import CLUMP_CLASSES

logger = logging.getLogger(__name__)

#: The embedded synthetic dataset and its splits; always registered.
SYNTHETIC_NAME = "clumpsim"
SYNTHETIC_SPLITS = ("train", "val")
#: What a split name may be: a plain identifier (letters, digits, ``_``, ``-``). It becomes a
#: file name (``annotations/<split>.json``, ``images/<split>/``) and part of a registered name,
#: so ``../x``, ``a/b`` or ``x.report`` (which would overwrite split x's report) are refused.
SPLIT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def check_split_name(name: str, where: str = "split name") -> str:
    """``name`` if it is a plain identifier (:data:`SPLIT_NAME`), else a ValueError naming it
    (and ``where`` it came from: an option, a file)."""
    if not isinstance(name, str) or not SPLIT_NAME.fullmatch(name):
        raise ValueError(f"{where}: {name!r} is not a plain split name (letters, digits, '_' "
                         "and '-' only): it becomes a file name under the dataset folder")
    return name


#: Annotation keys handled by the loader itself; every other key is kept as an attribute.
_COCO_ANNOTATION_KEYS = {"id", "image_id", "bbox", "category_id", "area", "iscrowd",
                         "segmentation"}


def datasets_root() -> Path:
    """``$CLUMP_D2_DATASETS`` or ``./datasets`` (relative to the working directory)."""
    return Path(os.environ.get("CLUMP_D2_DATASETS", "datasets"))


def load_clump_json(json_file: str | os.PathLike, image_root: str | os.PathLike,
                    dataset_name: Optional[str] = None) -> List[Dict]:
    """Read a clump COCO JSON into Detectron2's dataset dicts.

    Every image is kept, also those without clumps (real negatives). Category ids 1, 2 map
    to contiguous 0, 1 (``CLUMP_CLASSES``). Extra per-clump keys (flux, flux fraction, RA/Dec,
    volunteer counts, ...) and per-image keys are kept for binned evaluation and catalogues.

    Raises:
        ValueError: naming the file and the offending image or annotation.
    """
    json_file = Path(json_file)
    try:
        coco = json.loads(json_file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{json_file}: not valid JSON ({e})") from e
    categories = {c["id"]: c["name"] for c in coco.get("categories", [])}
    id_map = {}
    for cat_id, name in categories.items():
        if name not in CLUMP_CLASSES:
            raise ValueError(f"{json_file}: unknown category {name!r} (id {cat_id}); "
                             f"expected {CLUMP_CLASSES}")
        id_map[cat_id] = CLUMP_CLASSES.index(name)
    records: Dict[int, Dict] = {}
    for index, image in enumerate(coco["images"]):
        if image["id"] in records:
            raise ValueError(f"{json_file}: images[{index}] repeats image id {image['id']}")
        record = {k: v for k, v in image.items() if k not in ("id", "file_name")}
        if isinstance(image.get("band_files"), dict):  # per-band FITS files
            record["band_files"] = {b: os.path.join(image_root, f)
                                    for b, f in image["band_files"].items()}
        record.update(
            file_name=os.path.join(image_root, image["file_name"]),
            image_id=image["id"],
            height=image["height"],
            width=image["width"],
            annotations=[],
        )
        records[image["id"]] = record
    for index, ann in enumerate(coco.get("annotations", [])):
        where = f"{json_file}: annotations[{index}] (id {ann.get('id')})"
        if ann["image_id"] not in records:
            raise ValueError(f"{where} refers to unknown image id {ann['image_id']}")
        if ann["category_id"] not in id_map:
            raise ValueError(f"{where} has unknown category id {ann['category_id']}")
        x, y, w, h = ann["bbox"]
        if not (w > 0 and h > 0):
            raise ValueError(f"{where} has a box of non-positive size {ann['bbox']}")
        obj = {k: v for k, v in ann.items() if k not in _COCO_ANNOTATION_KEYS}
        obj.update(bbox=[x, y, w, h], bbox_mode=BoxMode.XYWH_ABS,
                   category_id=id_map[ann["category_id"]], iscrowd=ann.get("iscrowd", 0))
        records[ann["image_id"]]["annotations"].append(obj)
    dicts = list(records.values())
    logger.info("loaded %d images (%d without clumps), %d clumps from %s",
                len(dicts), sum(not d["annotations"] for d in dicts),
                sum(len(d["annotations"]) for d in dicts), json_file)
    return dicts


def register_clump_dataset(name: str, json_file: str | os.PathLike,
                           image_root: str | os.PathLike, **metadata) -> None:
    """Register a clump COCO JSON under ``name``, like ``register_coco_instances``.

    Registering the same name again with the same files is a no-op; with other files it is
    an error (two datasets must not share a name).
    """
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    if name in DatasetCatalog.list():
        existing = MetadataCatalog.get(name)
        if (getattr(existing, "json_file", None) == json_file
                and getattr(existing, "image_root", None) == image_root):
            return
        raise ValueError(
            f"dataset {name!r} is already registered with json_file="
            f"{getattr(existing, 'json_file', None)!r}; cannot re-register it with {json_file!r}"
        )
    DatasetCatalog.register(name, lambda: load_clump_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        thing_classes=list(CLUMP_CLASSES), evaluator_type="clump", json_file=json_file,
        thing_dataset_id_to_contiguous_id={1: 0, 2: 1},
        image_root=image_root, **metadata,
    )


def register_all_clump_datasets(root: Optional[str | os.PathLike] = None,
                                synthetic: bool = True) -> List[str]:
    """Register the synthetic dataset (unless ``synthetic=False``, e.g. for a second root)
    and every ``<name>/annotations/<split>.json`` under ``root``; returns the names
    registered."""
    root = Path(root) if root is not None else datasets_root()
    names = []
    for split in (SYNTHETIC_SPLITS if synthetic else ()):
        base = root / SYNTHETIC_NAME
        register_clump_dataset(f"{SYNTHETIC_NAME}_{split}", base / "annotations" / f"{split}.json",
                               base / "images", synthetic=True)
        names.append(f"{SYNTHETIC_NAME}_{split}")
    if root.is_dir():
        for json_file in sorted(root.glob("*/annotations/*.json")):
            if json_file.name.endswith(".report.json"):  # a converter's report, not a split
                continue
            dataset_dir = json_file.parent.parent
            name = f"{dataset_dir.name}_{json_file.stem}"
            if name in names:
                continue
            register_clump_dataset(name, json_file, dataset_dir / "images")
            names.append(name)
    return names
