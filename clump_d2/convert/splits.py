"""Deterministic train/val/test splits of a clump COCO JSON, by galaxy, stratified.

Rules:

* **by galaxy**: all images of one galaxy (same ``group_key`` value, default ``galaxy_id``,
  else the image id) go to one split, so no galaxy is seen in training and evaluation;
* **stratified**: galaxies are grouped into strata by clump count (0, 1, 2, 3-4, 5+) and by
  whether they hold an ``odd_clump``; each stratum is divided in the requested fractions
  (largest remainder on running totals, so the splits' sizes are also within one galaxy of
  the fractions), so every split has the same mix of negatives, few- and many-clump galaxies
  and odd clumps;
* **deterministic**: inside a stratum galaxies are ordered by ``sha256(seed:galaxy)``, a
  function of the galaxy and the seed only: the same input gives the same bytes whatever
  the input order, and adding a galaxy moves no other galaxy.
"""
from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from typing import Any, Dict, List, Sequence, Tuple

from .coco_writer import ConversionReport

logger = logging.getLogger(__name__)

COUNT_BINS = ((0, 0), (1, 1), (2, 2), (3, 4), (5, None))


def count_bin(n: int) -> str:
    for lo, hi in COUNT_BINS:
        if n >= lo and (hi is None or n <= hi):
            return f"{lo}+" if hi is None else (f"{lo}" if lo == hi else f"{lo}-{hi}")
    raise ValueError(n)


def split_coco(coco: Dict[str, Any], fractions: Dict[str, float], seed: int = 0,
               group_key: str = "galaxy_id") -> Tuple[Dict[str, Dict[str, Any]],
                                                      ConversionReport]:
    """Split ``coco`` into ``{split name: coco}`` (fractions normalised to sum to 1).

    Returns:
        (splits, report): the report tallies ``images`` and ``annotations`` (kept = assigned
        to some split) and records per split the stratum counts.
    """
    if not fractions or any(f < 0 for f in fractions.values()) or sum(fractions.values()) <= 0:
        raise ValueError(f"fractions must be non-negative and not all zero: {fractions}")
    total = sum(fractions.values())
    names = list(fractions)
    fracs = [fractions[n] / total for n in names]
    report = ConversionReport("split", params={"fractions": dict(zip(names, fracs)),
                                               "seed": seed, "group_key": group_key})
    boxes_of: Dict[Any, List[Dict]] = defaultdict(list)
    for ann in coco["annotations"]:
        boxes_of[ann["image_id"]].append(ann)
    groups: Dict[str, List[Dict]] = defaultdict(list)
    for im in coco["images"]:
        groups[str(im.get(group_key, im["id"]))].append(im)
    cat_odd = {c["id"] for c in coco.get("categories", []) if c["name"] == "odd_clump"} or {2}
    strata: Dict[str, List[str]] = defaultdict(list)
    for g, images in groups.items():
        anns = [a for im in images for a in boxes_of[im["id"]]]
        has_odd = any(a["category_id"] in cat_odd for a in anns)
        strata[f"n={count_bin(len(anns))},odd={int(has_odd)}"].append(g)
    assignment: Dict[str, str] = {}
    per_split_strata: Dict[str, Dict[str, int]] = {n: {} for n in names}
    cumulative, assigned = 0, [0] * len(names)
    for stratum in sorted(strata):
        members = sorted(strata[stratum], key=lambda g: _hash(seed, g))
        # Round the *running* totals, not each stratum alone: small strata would otherwise
        # all round towards the largest split (e.g. 24 galaxies at 0.8/0.1/0.1 -> 20/3/1).
        cumulative += len(members)
        counts = _stratum_counts(_largest_remainder(cumulative, fracs), assigned, len(members))
        assigned = [a + c for a, c in zip(assigned, counts)]
        start = 0
        for name, k in zip(names, counts):
            for g in members[start:start + k]:
                assignment[g] = name
            per_split_strata[name][stratum] = k
            start += k
    out = {}
    img_t, ann_t = report.tally("images"), report.tally("annotations")
    img_t.add_read(len(coco["images"]))
    ann_t.add_read(len(coco["annotations"]))
    for name in names:
        images = [im for g, ims in groups.items() if assignment[g] == name for im in ims]
        images.sort(key=lambda im: im["id"])
        ids = {im["id"] for im in images}
        anns = [a for a in coco["annotations"] if a["image_id"] in ids]
        out[name] = {**{k: v for k, v in coco.items() if k not in ("images", "annotations")},
                     "images": images, "annotations": anns}
        img_t.keep(len(images))
        ann_t.keep(len(anns))
    orphans = len(coco["annotations"]) - ann_t.kept
    ann_t.drop("unknown_image_id", orphans)  # annotations pointing to no image
    report.info["strata"] = per_split_strata
    report.info["splits"] = {n: {"images": len(out[n]["images"]),
                                 "annotations": len(out[n]["annotations"]),
                                 "galaxies": sum(1 for g in assignment.values() if g == n)}
                             for n in names}
    report.check()
    return out, report


def _hash(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def _stratum_counts(target: List[int], assigned: List[int], n: int) -> List[int]:
    """Counts of one stratum moving the running totals ``assigned`` towards ``target``."""
    counts = [max(t - a, 0) for t, a in zip(target, assigned)]
    while sum(counts) > n:  # a split already past its target gave up its +1 elsewhere
        i = max(range(len(counts)), key=lambda j: counts[j])
        counts[i] -= 1
    while sum(counts) < n:
        i = max(range(len(counts)), key=lambda j: target[j] - assigned[j] - counts[j])
        counts[i] += 1
    return counts


def _largest_remainder(n: int, fracs: Sequence[float]) -> List[int]:
    """Integer counts summing to ``n`` closest to ``n * fracs`` (ties to the earlier split)."""
    exact = [n * f for f in fracs]
    counts = [int(e) for e in exact]
    order = sorted(range(len(fracs)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts
