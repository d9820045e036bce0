"""How wide real clumps are, in PSF FWHMs: the measurement behind the injected clumps' widths
(:class:`clump_d2.sim.real_hosts.RealHostParams` ``width_psf``, docs/real_clumps.md).

For each clump of a COCO dataset of colour cut-outs (catalogued clumps, or a real-host set's own
knots, its ``host_knot`` ignore regions), in linear space (the display stretch inverted):

* the host light under it is a plane, fitted (3-sigma clipped) to the ring ``RING_FWHM`` x PSF
  FWHM around it, and subtracted (r channel, the G of an RGB cut-out);
* what is left within ``RADIUS_FWHM`` x FWHM, tapered to zero from ``TAPER_FWHM`` (cosine
  squared), gives the light-weighted second moment: its FWHM over the PSF's is the
  **moment ratio** (about 1 for a point source);
* the ratio is turned into the clump's **width** (the FWHM of the Gaussian clump, in PSF
  FWHMs, that gives the same ratio under the same cut: :func:`ratio_curve`). The cut loses a
  wide clump's wings, so the ratio saturates (1.4 at 3 PSF FWHMs): a ratio above the curve's
  last point is a width "> 3", and the table says how many.

A clump whose ring leaves the image (``edge``), with another clump (or knot) within
``NEIGHBOUR_FWHM`` FWHM (``neighbour``), or below ``min_snr`` (its plane-subtracted r flux over
the ring's residual scatter; ``faint``) is counted by reason, not measured.
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from clump_d2.convert.gzh_s82_degrade import robust_sigma
from clump_d2.data.image_io import read_display_image
from clump_d2.data.psf import FWHM_PER_SIGMA, gaussian_psf
from clump_d2.data.stretch import DisplayStretch

RADIUS_FWHM = 1.5  # measured within (PSF FWHM)
TAPER_FWHM = 1.0  # the taper starts here
RING_FWHM = (1.5, 2.5)  # background ring
NEIGHBOUR_FWHM = 2.0  # no other clump this close
#: Gaussian widths (PSF FWHMs) of the ratio -> width curve.
CURVE_WIDTHS = (0.8, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)


def _clipped_plane(dx: np.ndarray, dy: np.ndarray, values: np.ndarray,
                   rounds: int = 3) -> Tuple[np.ndarray, float]:
    """Plane a + b dx + c dy through ``values`` (3-sigma clipped); coefficients and the robust
    scatter of the kept residuals."""
    design = np.stack([np.ones_like(dx), dx, dy], axis=1)
    keep = np.ones(values.shape, bool)
    for _ in range(rounds):
        coef = np.linalg.lstsq(design[keep], values[keep], rcond=None)[0]
        resid = values - design @ coef
        new = np.abs(resid) <= 3 * max(robust_sigma(resid[keep]), 1e-12)
        if new.sum() < 6 or (new == keep).all():
            break
        keep = new
    return coef, robust_sigma((values - design @ coef)[keep])


def moment_ratio(image: np.ndarray, x: float, y: float, fwhm: float,
                 others: Sequence[Tuple[float, float]] = (), min_snr: float = 5.0
                 ) -> Tuple[float, float, str]:
    """(moment ratio, S/N, "") of the clump at continuous (x, y) of a linear (H, W) image of
    PSF FWHM ``fwhm``, or (NaN, S/N, reason) where it is not measured (module docstring)."""
    h, w = image.shape
    if any(math.hypot(x - ox, y - oy) < NEIGHBOUR_FWHM * fwhm for ox, oy in others):
        return math.nan, math.nan, "neighbour"
    half = int(math.ceil(RING_FWHM[1] * fwhm)) + 1
    ix, iy = int(math.floor(x)), int(math.floor(y))
    if ix - half < 0 or iy - half < 0 or ix + half + 1 > w or iy + half + 1 > h:
        return math.nan, math.nan, "edge"
    win = np.asarray(image[iy - half:iy + half + 1, ix - half:ix + half + 1], np.float64)
    yy, xx = np.mgrid[iy - half:iy + half + 1, ix - half:ix + half + 1]
    dx, dy = xx + 0.5 - x, yy + 0.5 - y
    r = np.hypot(dx, dy) / fwhm
    ring = (r >= RING_FWHM[0]) & (r <= RING_FWHM[1])
    coef, scatter = _clipped_plane(dx[ring], dy[ring], win[ring])
    taper = np.cos(0.5 * np.pi * np.clip((r - TAPER_FWHM) / (RADIUS_FWHM - TAPER_FWHM),
                                         0.0, 1.0)) ** 2
    light = (win - (coef[0] + coef[1] * dx + coef[2] * dy)) * taper
    total = float(light.sum())
    snr = total / (scatter * math.sqrt(float((taper ** 2).sum()))) if scatter > 0 else math.inf
    if not total > 0 or snr < min_snr:
        return math.nan, snr, "faint"
    p = np.clip(light, 0, None)
    sigma = math.sqrt(float((p * (dx ** 2 + dy ** 2)).sum() / p.sum()) / 2)
    return sigma * FWHM_PER_SIGMA / fwhm, snr, ""


def ratio_curve(fwhm: float = 6.5, widths: Sequence[float] = CURVE_WIDTHS) -> np.ndarray:
    """(len(widths), 2) of (width, moment ratio) for noiseless Gaussian clumps of ``widths``
    PSF FWHMs on a flat background: the measurement's own response."""
    size = int(2 * math.ceil(RING_FWHM[1] * fwhm * max(widths))) + 8
    edges = np.arange(size + 1)
    c = size / 2 + 0.3
    return np.array([(wd, moment_ratio(1.0 + 100 * gaussian_psf(edges, edges, c, c, fwhm * wd),
                                       c, c, fwhm, min_snr=0)[0]) for wd in widths])


def width_from_ratio(ratios: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Widths (PSF FWHMs) of moment ratios by the curve; below its first point its first width,
    above its last point ``inf`` (wider than the curve can tell)."""
    ratios = np.asarray(ratios, np.float64)
    out = np.interp(ratios, curve[:, 1], curve[:, 0])
    out[ratios > curve[-1, 1]] = np.inf
    return out


def measure_widths(annotations_json: str | os.PathLike,
                   image_dir: Optional[str | os.PathLike] = None,
                   psf_source: Optional[str] = None, knots: bool = False, q: float = 10.0,
                   min_snr: float = 5.0, limit: Optional[int] = None) -> Dict:
    """Moment ratios and widths of a dataset's clumps.

    Args:
        annotations_json: COCO file whose images carry ``psf_fwhm_px`` (and ``psf_source``).
        image_dir: where its ``file_name``s are (default ``<dataset>/images``).
        psf_source: only images whose PSF came from this source (``"stars"``: measured).
        knots: measure the ``host_knot`` ignore regions (a real-host set's own real knots)
            instead of the labels.
        limit: the first ``limit`` images (in file order) with something to measure.

    Returns:
        ``rows`` (file, x, y, snr, ratio, width per measured clump), ``skipped`` (reason:
        count), ``n_images``, ``curve``.
    """
    path = Path(annotations_json)
    coco = json.loads(path.read_text())
    image_dir = Path(image_dir) if image_dir else path.parent.parent / "images"
    by_image: Dict[int, List[Dict]] = {}
    for a in coco["annotations"]:
        chosen = (a.get("ignore_reason") == "host_knot") if knots else not a.get("iscrowd", 0)
        if chosen:
            by_image.setdefault(a["image_id"], []).append(a)
    rows, skipped, n_images = [], Counter(), 0
    for im in coco["images"]:
        anns = by_image.get(im["id"])
        if not anns or (psf_source and im.get("psf_source") != psf_source):
            continue
        if knots and im.get("version", 0) != 0:  # a host's knots are the same in every version
            continue
        if limit is not None and n_images >= limit:
            break
        fwhm = im.get("psf_fwhm_px")
        if not fwhm:
            raise ValueError(f"{path}: image {im['file_name']} has no psf_fwhm_px")
        n_images += 1
        rgb = read_display_image(image_dir / im["file_name"], "RGB")
        seed = int.from_bytes(str(im["file_name"]).encode()[-8:].rjust(8, b"\0"), "little")
        r_band = DisplayStretch(q).linearise(rgb, np.random.default_rng(seed))[..., 1]
        xy = [(float(a["x"]), float(a["y"])) for a in anns]
        for k, (x, y) in enumerate(xy):
            ratio, snr, reason = moment_ratio(r_band, x, y, fwhm, xy[:k] + xy[k + 1:], min_snr)
            if reason:
                skipped[reason] += 1
            else:
                rows.append({"file": im["file_name"], "x": x, "y": y, "snr": snr,
                             "ratio": ratio})
    curve = ratio_curve()
    widths = width_from_ratio(np.array([r["ratio"] for r in rows]), curve)
    for r, wd in zip(rows, widths):
        r["width"] = float(wd)
    return {"source": str(path), "knots": knots, "psf_source": psf_source,
            "n_images": n_images, "rows": rows, "skipped": dict(skipped),
            "curve": curve.tolist()}


def summary_row(name: str, result: Dict) -> Dict:
    """One table row: counts and the 10/25/50/75/90th percentiles of the widths."""
    w = np.array([r["width"] for r in result["rows"]])
    # (nearest rank: a width "> 3" is inf, which interpolation would turn into NaN)
    pct = np.percentile(w, [10, 25, 50, 75, 90], method="nearest") if w.size else \
        [math.nan] * 5
    fmt = (lambda v: "> 3" if math.isinf(v) else f"{v:.2f}")
    return {"set": name, "images": result["n_images"], "measured": int(w.size),
            "skipped (neighbour / edge / faint)": " / ".join(
                str(result["skipped"].get(k, 0)) for k in ("neighbour", "edge", "faint")),
            **{f"width p{p}": fmt(v) for p, v in zip((10, 25, 50, 75, 90), pct)},
            "point-like (< 1.15)": f"{float(np.mean(w < 1.15)):.2f}" if w.size else "—"}


def parse_set(spec: str) -> Tuple[str, str, bool, Optional[str]]:
    """``NAME=ANNOTATIONS_JSON[:knots][:stars]`` -> (name, path, knots, psf_source)."""
    if "=" not in spec:
        raise ValueError(f"--set {spec!r}: expected NAME=ANNOTATIONS_JSON[:knots][:stars]")
    name, rest = spec.split("=", 1)
    parts = rest.split(":")
    path, flags = parts[0], set(parts[1:])
    unknown = flags - {"knots", "stars"}
    if unknown or not name or not path:
        raise ValueError(f"--set {spec!r}: expected NAME=ANNOTATIONS_JSON[:knots][:stars]")
    return name, path, "knots" in flags, "stars" if "stars" in flags else None


def write_widths(sets: Sequence[str], output: str | os.PathLike, command: str = "",
                 limit: Optional[int] = None, min_snr: float = 5.0) -> Path:
    """Measure every ``--set`` (:func:`parse_set`), write ``output`` (Markdown: the table, the
    ratio -> width curve, the command and machine) and ``output`` with ``.json`` (every row)."""
    from clump_d2.convert.coco_writer import atomic_write_text
    from clump_d2.data.tables import markdown_table
    from clump_d2.studies.giant_calibration import machine_description

    results, rows = {}, []
    for spec in sets:
        name, path, knots, psf_source = parse_set(spec)
        results[name] = measure_widths(path, psf_source=psf_source, knots=knots,
                                       min_snr=min_snr, limit=limit)
        rows.append(summary_row(name, results[name]))
    columns = list(rows[0])
    curve = next(iter(results.values()))["curve"]  # the same response for every set
    md = ["# Clump widths in PSF FWHMs", "",
          f"Written by `{command}` on a {machine_description()} "
          "(clump_d2.studies.clump_widths: plane-subtracted r light within 1.5 PSF FWHM, its "
          "second moment turned into the width of the Gaussian clump that gives it).", "",
          markdown_table(rows, columns),
          "Moment ratio of Gaussian clumps (the measurement's response): " + ", ".join(
              f"{w:g} PSF FWHM -> {r:.2f}" for w, r in curve), ""]
    out = Path(output)
    atomic_write_text(out.with_suffix(".json"), json.dumps(results, indent=1))
    return atomic_write_text(out, "\n".join(md))
