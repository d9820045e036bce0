"""The GZH Stripe 82 clumps (Mehta et al. 2021) as a clump dataset.

The clump catalogue is placed on the 424 px Galaxy Zoo JPEGs by the ``catalog`` converter
(:func:`clump_d2.convert.catalog.convert_catalog`, its defaults are these tables), then moved to
the central 200x200 crop (``crop: [112, 112, 200, 200]``, as the Clump Scout detector sees its
images; the mapper cuts it) with the converter's edge rule, and split by galaxy with
:func:`clump_d2.convert.splits.split_coco` (fixed: ``train=0.5, test=0.5``, seed 0;
stratified by clump count). Every image carries ``psf_fwhm_px`` (median of its clumps' PSF
FWHM in px) and ``centre_x/centre_y``; every clump its ``flux_frac_<band>`` (clump / host
flux per band of the catalogue, the u band defining giant clumps).

**Orientation.** :func:`orientation_scores` measures, per galaxy, the mean grey level of the
JPEG under its catalogue positions turned by 0, 90, 180 and 270 degrees about the image centre:
clumps lie on the galaxy, so positions turned the wrong way fall on fainter pixels. The
catalogue's positions of galaxy 8647474690867200065 (26 of the 133 clumps of the 24 galaxies)
sit across its disc, a quarter turn from it (docs/real_clumps.md). ``rotations`` ({galaxy id:
quarter turns}) turns a galaxy's clumps and rejected candidates before anything else; it is off
by default (the catalogue as published) and recorded in each split's ``info.rotations``.
"""
from __future__ import annotations

import copy
import logging
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from astropy.table import Table

from clump_d2.convert.catalog import convert_catalog
from clump_d2.convert.layout import write_dataset
from clump_d2.convert.splits import split_coco
from clump_d2.structures import fit_box_to_frame, xyxy_to_xywh

logger = logging.getLogger(__name__)

#: Where the 200 px crop sits in the 424 px Galaxy Zoo JPEG.
GZ_SIZE, CROP_SIZE = 424, 200
CROP_OFFSET = (GZ_SIZE - CROP_SIZE) // 2
DEFAULT_SPLIT = {"train": 0.5, "test": 0.5}
DEFAULT_SEED = 0


def gzh_paths(gzh_dir: str | os.PathLike) -> Dict[str, Path]:
    """The files of a ``gzh_s82_clumps`` folder; FileNotFoundError naming a missing one."""
    d = Path(gzh_dir)
    paths = {"clumps": d / "GZH_S82_Clump_Catalog.fits", "galaxies": d / "final_clumpy_sample.fits",
             "images": d / "jpegs"}
    for name, p in paths.items():
        if not p.exists():
            raise FileNotFoundError(f"{p} not found: is {d} a gzh_s82_clumps folder?")
    return paths


#: SDSS native pixel scale (arcsec/px): Mehta et al.'s FITS stamps, in which the catalogue's
#: ``clump_x/y`` and the hand-rejected candidates' ``X/Y`` are given.
SDSS_PIXEL_SCALE = 0.396


def place_rejected_candidates(coco: Dict, clump_table, rejects_table) -> int:
    """Put the clump candidates Mehta et al. rejected by hand (``custom_clump_rejects.fits``:
    ``survey_id``, ``X``, ``Y`` in their FITS stamps) on the JPEGs, as each image's
    ``rejected_candidates`` ([[x, y], ...], full-frame continuous pixels).

    The stamp -> JPEG map is fixed by the galaxy's own catalogue clumps: their stamp
    positions (``final_clump_catalog.fits`` ``clump_x/y`` about ``gal_x/y``, 0.396"/px, FITS
    rows counting up) scaled to the JPEG's pixel scale and flipped in y land on the
    catalogue's RA/Dec positions up to one shift per galaxy (checked on all 133 clumps of the
    24 galaxies: residual 1e-5 px); that shift, the mean over the galaxy's clumps, places its
    rejects. Galaxies without catalogue clumps get none. Returns the number placed."""
    rows = {(str(r["gzh_id"]), int(r["clump_id"])): r for r in clump_table}
    images = {im["id"]: im for im in coco["images"]}
    shifts: Dict[str, List[np.ndarray]] = {}
    frame: Dict[str, tuple] = {}
    for ann in coco["annotations"]:
        im = images[ann["image_id"]]
        row = rows.get((str(im["galaxy_id"]), int(ann.get("clump_id", -1))))
        if row is None or "x" not in ann:
            continue
        k = SDSS_PIXEL_SCALE / im["pixel_scale_arcsec"]
        gx, gy = float(row["gal_x"]), float(row["gal_y"])
        stamp = np.array([(row["clump_x"] - gx) * k, -(row["clump_y"] - gy) * k])
        shifts.setdefault(str(im["galaxy_id"]), []).append(np.array([ann["x"], ann["y"]]) - stamp)
        frame[str(im["galaxy_id"])] = (gx, gy, k)
    by_galaxy = {str(im["galaxy_id"]): im for im in coco["images"]}
    placed = 0
    for im in coco["images"]:
        im["rejected_candidates"] = []
    for r in rejects_table:
        gid = str(r["survey_id"])
        if gid not in shifts or gid not in by_galaxy:
            continue
        gx, gy, k = frame[gid]
        shift = np.mean(shifts[gid], axis=0)
        x, y = (r["X"] - gx) * k + shift[0], -(r["Y"] - gy) * k + shift[1]
        by_galaxy[gid]["rejected_candidates"].append([float(x), float(y)])
        placed += 1
    return placed


def to_crop_frame(coco: Dict, crop_size: int = CROP_SIZE) -> Dict:
    """Move a full-frame COCO dict to the central ``crop_size`` crop of each image: boxes
    shifted and put through the edge rule (centre outside dropped, crossing clipped), image
    records given ``crop``, ``width/height = crop_size``, ``psf_fwhm_px``, ``centre_x/y``."""
    out = copy.deepcopy(coco)
    images = {im["id"]: im for im in out["images"]}
    psf: Dict[int, List[float]] = {}
    anns = []
    dropped = 0
    for ann in out["annotations"]:
        im = images[ann["image_id"]]
        x0 = (im["width"] - crop_size) // 2
        y0 = (im["height"] - crop_size) // 2
        x, y, w, h = ann["bbox"]
        fitted, status = fit_box_to_frame((x - x0, y - y0, x - x0 + w, y - y0 + h),
                                          crop_size, crop_size, frame="crop")
        if ann.get("psf_fwhm_px"):
            psf.setdefault(im["id"], []).append(float(ann["psf_fwhm_px"]))
        if fitted is None:
            dropped += 1
            continue
        ann = dict(ann, bbox=xyxy_to_xywh(fitted), area=(fitted[2] - fitted[0])
                   * (fitted[3] - fitted[1]))
        for key in ("x", "y"):
            if key in ann:
                ann[key] = float(ann[key]) - (x0 if key == "x" else y0)
        ann["distance_px"] = float(math.hypot(ann.get("x", 0) - crop_size / 2,
                                              ann.get("y", 0) - crop_size / 2))
        anns.append(ann)
    for im in out["images"]:
        x0 = (im["width"] - crop_size) // 2
        y0 = (im["height"] - crop_size) // 2
        im["crop"] = [x0, y0, crop_size, crop_size]
        im["full_width"], im["full_height"] = im["width"], im["height"]
        im["width"] = im["height"] = crop_size
        im["psf_fwhm_px"] = float(np.median(psf[im["id"]])) if im["id"] in psf else None
        im["centre_x"] = im["centre_y"] = crop_size / 2.0
        if "rejected_candidates" in im:
            im["rejected_candidates"] = [
                [x - x0, y - y0] for x, y in im["rejected_candidates"]
                if 0 <= x - x0 < crop_size and 0 <= y - y0 < crop_size]
    out["annotations"] = anns
    logger.info("crop frame: %d boxes kept, %d dropped (centre outside the %d px crop)",
                len(anns), dropped, crop_size)
    return out


def _quarter_turn(x: float, y: float, cx: float, cy: float, turns: int) -> Tuple[float, float]:
    """(x, y) turned ``turns`` quarter turns about (cx, cy): one turn maps (x, y) to
    (cx + (y - cy), cy - (x - cx)) in image coordinates (y down)."""
    for _ in range(turns % 4):
        x, y = cx + (y - cy), cy - (x - cx)
    return x, y


def rotate_positions(coco: Dict, rotations: Dict[str, int]) -> Dict:
    """A copy of a full-frame COCO dict with the clumps (positions and boxes) and rejected
    candidates of each galaxy in ``rotations`` turned by its quarter turns about the image
    centre. A galaxy id that is not in ``coco`` is a ValueError naming it."""
    out = copy.deepcopy(coco)
    by_gal = {str(im.get("galaxy_id")): im for im in out["images"]}
    unknown = sorted(set(map(str, rotations)) - set(by_gal))
    if unknown:
        raise ValueError(f"rotations name galaxies that are not in the catalogue: {unknown}")
    turns_of = {by_gal[str(g)]["id"]: int(t) for g, t in rotations.items()}
    for im in out["images"]:
        t = turns_of.get(im["id"])
        if t and "rejected_candidates" in im:
            cx, cy = im["width"] / 2, im["height"] / 2
            im["rejected_candidates"] = [list(_quarter_turn(x, y, cx, cy, t))
                                         for x, y in im["rejected_candidates"]]
    images = {im["id"]: im for im in out["images"]}
    for ann in out["annotations"]:
        t = turns_of.get(ann["image_id"])
        if not t:
            continue
        im = images[ann["image_id"]]
        cx, cy = im["width"] / 2, im["height"] / 2
        bx, by, bw, bh = ann["bbox"]
        mx, my = _quarter_turn(bx + bw / 2, by + bh / 2, cx, cy, t)
        if t % 2:
            bw, bh = bh, bw
        ann["bbox"] = [mx - bw / 2, my - bh / 2, bw, bh]
        if "x" in ann and "y" in ann:
            ann["x"], ann["y"] = _quarter_turn(float(ann["x"]), float(ann["y"]), cx, cy, t)
        ann["rotated_quarter_turns"] = t
    return out


def orientation_scores(coco: Dict, image_dir: str | os.PathLike) -> List[Dict]:
    """Per galaxy of a crop-frame COCO dict: its clump count and the mean grey level of its
    image under its clumps' positions turned by 0, 1, 2 and 3 quarter turns about the crop
    centre (``grey_0`` ... ``grey_3``); sorted by how much the best turn beats none."""
    from clump_d2.data.image_io import read_display_image  # (the bounded reader)

    clumps_of: Dict[int, List[Dict]] = {}
    for a in coco["annotations"]:
        clumps_of.setdefault(a["image_id"], []).append(a)
    rows = []
    for im in (im for im in coco["images"] if im["id"] in clumps_of):
        anns = clumps_of[im["id"]]
        grey = np.asarray(read_display_image(Path(image_dir) / im["file_name"], "L"),
                          float)[..., 0]
        if "crop" in im and grey.shape[0] > im["height"]:
            x0, y0, w, h = im["crop"]
            grey = grey[y0:y0 + h, x0:x0 + w]
        h, w = grey.shape
        cx, cy = im.get("centre_x", w / 2), im.get("centre_y", h / 2)
        row = {"galaxy_id": str(im.get("galaxy_id", im["file_name"])), "clumps": len(anns)}
        for t in range(4):
            vals = []
            for a in anns:
                x, y = _quarter_turn(float(a["x"]), float(a["y"]), cx, cy, t)
                vals.append(grey[min(max(int(y), 0), h - 1), min(max(int(x), 0), w - 1)])
            row[f"grey_{t}"] = float(np.mean(vals))
        row["best_turns"] = int(np.argmax([row[f"grey_{t}"] for t in range(4)]))
        row["gain"] = row[f"grey_{row['best_turns']}"] - row["grey_0"]
        rows.append(row)
    return sorted(rows, key=lambda r: -r["gain"])


def catalogue_coco(gzh_dir: str | os.PathLike, galaxies: Optional[int] = None,
                   rotations: Optional[Dict[str, int]] = None):
    """The catalogue's clumps on the galaxies' central crops, as :func:`prepare_gzh_s82`
    writes them before splitting: (crop-frame COCO dict, the converter's report).

    Args:
        gzh_dir: the ``gzh_s82_clumps`` folder.
        galaxies: keep only the first N galaxies by id (tests use a tiny subset).
        rotations: {galaxy id: quarter turns} applied to its positions (module docstring).
    """
    paths = gzh_paths(gzh_dir)
    coco_builder, report = convert_catalog(paths["clumps"], paths["galaxies"], paths["images"])
    coco = coco_builder.to_dict()
    optional = {"clump_table": Path(gzh_dir) / "final_clump_catalog.fits",
                "rejects": Path(gzh_dir) / "custom_clump_rejects.fits"}
    if all(p.exists() for p in optional.values()):
        n = place_rejected_candidates(coco, Table.read(optional["clump_table"]),
                                      Table.read(optional["rejects"]))
        logger.info("%d hand-rejected candidates placed (%s)", n, optional["rejects"].name)
    else:
        logger.warning("%s or %s missing: no hand-rejected candidates", *optional.values())
    if galaxies is not None:
        keep = {im["id"] for im in sorted(coco["images"], key=lambda im: im["id"])[:galaxies]}
        coco["images"] = [im for im in coco["images"] if im["id"] in keep]
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
    if rotations:
        coco = rotate_positions(coco, rotations)
        coco.setdefault("info", {})["rotations"] = {str(k): int(v) for k, v in rotations.items()}
        logger.info("positions turned by quarter turns: %s", rotations)
    return to_crop_frame(coco), report


def fold_splits(coco: Dict, fractions: Optional[Dict[str, float]] = None,
                seed: int = DEFAULT_SEED) -> Dict[str, tuple]:
    """The folds of :func:`prepare_gzh_s82`: ``{split: (coco, report)}`` for ``train``,
    ``test`` (by galaxy, :func:`split_coco`) and their halves ``<split>_a`` / ``<split>_b``."""
    out = {}
    splits, split_report = split_coco(coco, fractions or DEFAULT_SPLIT, seed=seed)
    split_report.info["derived_from"] = "all"
    for name, sub in splits.items():
        out[name] = (sub, split_report)
        # Halves of each split (``<split>_a``, ``<split>_b``), for thresholds cross-fitted
        # on galaxies a fine-tuned model has not seen (see :class:`Method`).
        halves, halves_report = split_coco(sub, {"a": 0.5, "b": 0.5}, seed=seed)
        halves_report.info["derived_from"] = name
        for half, hsub in halves.items():
            out[f"{name}_{half}"] = (hsub, halves_report)
    return out


def prepare_gzh_s82(gzh_dir: str | os.PathLike, out_dir: str | os.PathLike,
                    fractions: Optional[Dict[str, float]] = None, seed: int = DEFAULT_SEED,
                    galaxies: Optional[int] = None,
                    rotations: Optional[Dict[str, int]] = None) -> Dict[str, Path]:
    """Convert ``gzh_s82_clumps`` to ``out_dir`` (splits ``all``, ``train``, ``test``, and
    the halves ``train_a``, ``train_b``, ``test_a``, ``test_b`` of the last two).

    Args:
        gzh_dir: the ``gzh_s82_clumps`` folder (read only; images are symlinked).
        out_dir: dataset folder, e.g. ``datasets/gzh_s82c`` -> ``gzh_s82c_train``, ...
        fractions: split fractions (default train 0.5 / test 0.5).
        seed: split seed (default 0).
        galaxies: keep only the first N galaxies by id (tests use a tiny subset).
        rotations: {galaxy id: quarter turns} of its positions (module docstring).

    Returns:
        {split: json path}.
    """
    coco, report = catalogue_coco(gzh_dir, galaxies, rotations)
    out_dir = Path(out_dir)
    unit = {"all": (coco, report)}  # every split written at once: all of them, or none
    unit.update(fold_splits(coco, fractions, seed))
    # images placed with the annotations, as one unit (a kill in between is undone)
    written = write_dataset(out_dir, unit, images_from=gzh_paths(gzh_dir)["images"],
                            link="symlink")
    for name, (sub, _) in unit.items():
        if name != "all":
            logger.info("%s: %d galaxies, %d clumps", name, len(sub["images"]),
                        len(sub["annotations"]))
    return written
