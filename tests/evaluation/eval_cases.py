"""Hand-made and random evaluation cases shared by the evaluation tests."""
import itertools

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

_counter = itertools.count()


def sq(x, y, half=5.0):
    """Square XYXY box of half side ``half`` centred on (x, y)."""
    return [x - half, y - half, x + half, y + half]


def clump(x, y, cls, **attrs):
    """A 10 px true clump annotation centred on (x, y)."""
    return {"bbox": [x - 5, y - 5, 10, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": cls,
            "iscrowd": 0, **attrs}


def register(dicts, prefix="handmade"):
    """Register ``dicts`` under a fresh name; returns it."""
    name = f"{prefix}_{next(_counter)}"
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["clump", "odd_clump"])
    return name


def random_case(rng, n_images=12):
    """Random galaxies (0-4 clumps, random classes and flux fractions) and predictions: some
    near true clumps (2 px jitter), some anywhere, random scores and classes."""
    dicts, preds = [], []
    for i in range(n_images):
        n = int(rng.integers(0, 5))
        xy = rng.uniform(10, 90, size=(n, 2))
        dicts.append({"image_id": i, "height": 100, "width": 100,
                      "annotations": [clump(x, y, int(rng.integers(2)),
                                            flux_frac=float(rng.uniform(0.03, 0.3)))
                                      for x, y in xy]})
        m = int(rng.integers(0, 7))
        centres = np.concatenate([xy + rng.normal(0, 2, xy.shape),
                                  rng.uniform(10, 90, size=(m, 2))])[:m]
        preds.append({"image_id": i,
                      "boxes": np.array([sq(x, y) for x, y in centres]).reshape(-1, 4),
                      "scores": rng.uniform(0, 1, len(centres)),
                      "classes": rng.integers(0, 2, len(centres))})
    return dicts, preds
