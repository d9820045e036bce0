"""Deterministic, stratified splits by galaxy."""
import json

import pytest

from clump_d2.convert.coco_writer import CATEGORIES
from clump_d2.convert.splits import split_coco


def _coco(n=300):
    images, anns = [], []
    for i in range(1, n + 1):
        # two images (epochs) per galaxy: they must stay together
        images.append({"id": i, "file_name": f"{i}.png", "width": 50, "height": 50,
                       "galaxy_id": f"g{(i + 1) // 2}"})
        for k in range(i % 7):  # 0-6 clumps, odd ones on every third galaxy
            anns.append({"id": len(anns) + 1, "image_id": i, "bbox": [k, k, 5, 5],
                         "category_id": 2 if (i % 3 == 0 and k == 0) else 1})
    return {"images": images, "annotations": anns, "categories": CATEGORIES}


def test_split_is_by_galaxy_stratified_and_deterministic():
    coco = _coco()
    fr = {"train": 0.7, "val": 0.15, "test": 0.15}
    splits, report = split_coco(coco, fr, seed=3)
    galaxies = {n: {im["galaxy_id"] for im in s["images"]} for n, s in splits.items()}
    assert not (galaxies["train"] & galaxies["val"] or galaxies["train"] & galaxies["test"]
                or galaxies["val"] & galaxies["test"])
    assert sum(len(s["images"]) for s in splits.values()) == 300
    assert sum(len(s["annotations"]) for s in splits.values()) == len(coco["annotations"])
    sizes = [len(galaxies[n]) for n in fr]  # of 150 galaxies: 105 / 22.5 / 22.5 asked
    assert sizes == [105, 23, 22]
    # every stratum is split in the fractions, to within one galaxy per split
    for stratum, n_train in report.info["strata"]["train"].items():
        total = sum(report.info["strata"][n][stratum] for n in fr)
        for n in fr:
            assert abs(report.info["strata"][n][stratum] - fr[n] * total) <= 1.0
    # the same input in another order gives the same bytes; another seed another split
    shuffled = dict(coco, images=coco["images"][::-1])
    again, _ = split_coco(shuffled, fr, seed=3)
    assert json.dumps(again) == json.dumps(splits)
    other, _ = split_coco(coco, fr, seed=4)
    assert other["val"]["images"] != splits["val"]["images"]
    c = report.as_dict()["counts"]
    assert c["images"]["kept"] == c["images"]["read"] == 300


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="fractions"):
        split_coco(_coco(10), {"train": -1, "val": 1})
