"""Deterministic SDSS-like galaxy cutouts with clumps of known position and flux.

The embedded default dataset (``clumpsim_train`` / ``clumpsim_val``). Each galaxy is drawn
in three bands (g, r, i) in units of the sky noise (sky sigma = 1 per pixel per band):

* host: exponential disc (Sersic n=1) + de Vaucouleurs-like bulge (n=4, smoothed by the
  PSF), random inclination and position angle, centred within a few pixels of the image
  centre; disc bluer than bulge;
* PSF: Gaussian with FWHM = seeing (1.0-1.8 arcsec) / pixel scale (0.16-0.26 arcsec/px),
  i.e. about 4-11 px, as for the Clump Scout cutouts;
* clumps: point sources (PSF-shaped) in the disc, 3-35 % of the host's r flux, blue;
  "odd" clumps (about a quarter) are red; a quarter of the galaxies have none;
* distractors: foreground stars (PSF-shaped, yellow-white, anywhere) and small background
  galaxies (extended, red);
* gri composite with the Lupton et al. (2004) asinh stretch (astropy's make_lupton_rgb), as
  SDSS / Galaxy Zoo colour images are made.

Labels follow Clump Scout: a square box of side 2.5 x PSF FWHM around each clump, clipped
to the image, classes ``clump`` (COCO id 1) and ``odd_clump`` (id 2). The same seed gives
the same bytes: galaxy ``k`` of a split is drawn from ``SeedSequence([seed, split, k])``,
independent of how many galaxies are made or in which process.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

logger = logging.getLogger(__name__)

CATEGORIES = [{"id": 1, "name": "clump"}, {"id": 2, "name": "odd_clump"}]
BOX_SIDE_PER_FWHM = 2.5  # Clump Scout: the box side is 2.5 x PSF FWHM
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
BANDS = ("g", "r", "i")


@dataclass
class SyntheticParams:
    """Ranges of the generator; each documented with the physical quantity it stands for."""

    image_size: int = 200  # pixels (the paper's 200x200 centre crop)
    pixel_scale: tuple = (0.16, 0.26)  # arcsec / px, varies per galaxy in Clump Scout
    seeing: tuple = (1.0, 1.8)  # arcsec FWHM, SDSS r-band seeing
    host_flux_r: tuple = (2.0e4, 1.2e5)  # host r flux in units of the per-pixel sky sigma
    disc_re: tuple = (14.0, 40.0)  # disc effective radius, px
    bulge_re: tuple = (2.0, 6.0)  # bulge effective radius, px
    bulge_frac: tuple = (0.0, 0.4)  # bulge-to-total r flux
    axis_ratio: tuple = (0.3, 1.0)  # disc minor/major axis (inclination)
    clump_frac: tuple = (0.03, 0.35)  # clump r flux / host r flux, log-uniform
    max_clumps: int = 6  # clumps per clumpy galaxy, uniform in 1..max_clumps
    empty_fraction: float = 0.25  # fraction of galaxies without clumps (real negatives)
    odd_fraction: float = 0.25  # fraction of clumps of class odd_clump
    star_rate: float = 0.8  # mean number of foreground stars per image (Poisson)
    bg_galaxy_rate: float = 1.0  # mean number of background galaxies per image (Poisson)
    lupton_q: float = 8.0  # asinh softening of make_lupton_rgb
    lupton_stretch: float = 12.0  # linear stretch of make_lupton_rgb (sky sigma units)
    # Band flux ratios g:r:i of each component (r = 1); disc blue, bulge red.
    colour_disc: tuple = (0.85, 1.0, 1.1)
    colour_bulge: tuple = (0.55, 1.0, 1.3)
    colour_clump: tuple = (1.3, 1.0, 0.85)
    colour_odd: tuple = (0.5, 1.0, 1.45)
    colour_star: tuple = (0.75, 1.0, 1.1)
    colour_bg: tuple = (0.45, 1.0, 1.5)


@dataclass
class SyntheticGalaxy:
    """One rendered galaxy: the RGB image, the per-band fluxes and the truth."""

    rgb: np.ndarray  # (H, W, 3) uint8
    bands: np.ndarray  # (3, H, W) float32, g r i in sky-sigma units
    psf_fwhm_px: float
    pixel_scale: float
    centre: tuple
    clumps: List[Dict] = field(default_factory=list)


def _sersic_b(n: float) -> float:
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n)


def _sersic_image(xx, yy, x0, y0, re, n, q, pa, total_flux):
    """Sersic profile sampled at pixel centres, normalised to ``total_flux`` in the stamp."""
    dx, dy = xx - x0, yy - y0
    cos, sin = np.cos(pa), np.sin(pa)
    xr = dx * cos + dy * sin
    yr = (-dx * sin + dy * cos) / q
    r = np.sqrt(xr**2 + yr**2)
    profile = np.exp(-_sersic_b(n) * ((r / re) ** (1.0 / n) - 1.0))
    return profile * (total_flux / profile.sum())


def _point_source(xx, yy, x0, y0, sigma, flux):
    g = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2.0 * sigma**2))
    return g * (flux / (2.0 * np.pi * sigma**2))


def _log_uniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def render_galaxy(rng: np.random.Generator, params: SyntheticParams) -> SyntheticGalaxy:
    """Draw one galaxy (host, clumps, distractors, noise) and its Clump Scout labels."""
    size = params.image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    pixel_scale = rng.uniform(*params.pixel_scale)
    fwhm = rng.uniform(*params.seeing) / pixel_scale
    sigma = fwhm / 2.3548
    x0, y0 = (size - 1) / 2 + rng.uniform(-3, 3, size=2)
    flux_r = _log_uniform(rng, *params.host_flux_r)
    disc_re = rng.uniform(*params.disc_re)
    q = rng.uniform(*params.axis_ratio)
    pa = rng.uniform(0, np.pi)
    b_t = rng.uniform(*params.bulge_frac)
    bulge_re = rng.uniform(*params.bulge_re)

    disc = _sersic_image(xx, yy, x0, y0, disc_re, 1.0, q, pa, flux_r * (1 - b_t))
    bulge = _sersic_image(xx, yy, x0, y0, bulge_re, 4.0, min(1.0, q + 0.3), pa, flux_r * b_t)
    # Smooth components are convolved with the PSF; point sources are drawn PSF-shaped.
    bands = np.stack(
        [
            gaussian_filter(disc * cd + bulge * cb, sigma)
            for cd, cb in zip(params.colour_disc, params.colour_bulge)
        ]
    )

    clumps: List[Dict] = []
    if rng.uniform() >= params.empty_fraction:
        n_clumps = int(rng.integers(1, params.max_clumps + 1))
        for _ in range(n_clumps):
            # Position in the disc plane, then projected: radius 0.3-1.6 disc Re, so beyond
            # the bulge (marks on the bulge are not clumps) and on the visible disc.
            radius = disc_re * rng.uniform(0.3, 1.6)
            angle = rng.uniform(0, 2 * np.pi)
            xr, yr = radius * np.cos(angle), radius * np.sin(angle) * q
            cx = x0 + xr * np.cos(pa) - yr * np.sin(pa)
            cy = y0 + xr * np.sin(pa) + yr * np.cos(pa)
            if not (2 <= cx <= size - 3 and 2 <= cy <= size - 3):
                continue
            if any(np.hypot(cx - c["x"], cy - c["y"]) < 1.2 * fwhm for c in clumps):
                continue  # blended clumps would be one mark for a volunteer
            frac = _log_uniform(rng, *params.clump_frac)
            odd = bool(rng.uniform() < params.odd_fraction)
            colour = params.colour_odd if odd else params.colour_clump
            flux = frac * flux_r
            for b, c in enumerate(colour):
                bands[b] += _point_source(xx, yy, cx, cy, sigma, flux * c)
            clumps.append(
                {"x": float(cx), "y": float(cy), "flux_r": float(flux), "flux_frac": float(frac),
                 "odd": odd, "distance_px": float(np.hypot(cx - x0, cy - y0))}
            )

    for _ in range(int(rng.poisson(params.star_rate))):
        sx, sy = rng.uniform(5, size - 5, size=2)
        sflux = flux_r * _log_uniform(rng, 0.02, 0.6)
        for b, c in enumerate(params.colour_star):
            bands[b] += _point_source(xx, yy, sx, sy, sigma, sflux * c)
    for _ in range(int(rng.poisson(params.bg_galaxy_rate))):
        gx, gy = rng.uniform(5, size - 5, size=2)
        gal = _sersic_image(
            xx, yy, gx, gy, rng.uniform(2.0, 5.0), 1.0, rng.uniform(0.4, 1.0),
            rng.uniform(0, np.pi), flux_r * _log_uniform(rng, 0.01, 0.1),
        )
        gal = gaussian_filter(gal, sigma)
        for b, c in enumerate(params.colour_bg):
            bands[b] += gal * c

    bands += rng.normal(0.0, 1.0, size=bands.shape)
    rgb = lupton_composite(bands, params.lupton_q, params.lupton_stretch)
    return SyntheticGalaxy(
        rgb=rgb, bands=bands.astype(np.float32), psf_fwhm_px=float(fwhm),
        pixel_scale=float(pixel_scale), centre=(float(x0), float(y0)), clumps=clumps,
    )


def lupton_composite(bands: np.ndarray, q: float, stretch: float) -> np.ndarray:
    """g, r, i fluxes -> RGB uint8 with the Lupton asinh stretch (i->R, r->G, g->B)."""
    from astropy.visualization import make_lupton_rgb

    g, r, i = bands
    return make_lupton_rgb(i, r, g, minimum=0.0, stretch=stretch, Q=q)


def clump_box(x: float, y: float, fwhm: float, size: int) -> Optional[List[float]]:
    """Clump Scout box (XYWH) of side 2.5 x FWHM around (x, y), clipped to the image."""
    half = BOX_SIDE_PER_FWHM * fwhm / 2.0
    x1, y1 = max(0.0, x - half), max(0.0, y - half)
    x2, y2 = min(float(size), x + half), min(float(size), y + half)
    if x2 <= x1 or y2 <= y1:
        return None
    return [x1, y1, x2 - x1, y2 - y1]


def galaxy_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], index]))


def make_split(
    out_dir: str | os.PathLike,
    split: str,
    num: int,
    seed: int = 0,
    params: Optional[SyntheticParams] = None,
    show_progress: bool = True,
) -> Path:
    """Write ``num`` galaxies as PNGs under ``out_dir/images/<split>/`` and a COCO JSON
    ``out_dir/annotations/<split>.json``; returns the JSON path.

    The JSON is written last and atomically, so its presence means the split is complete.
    """
    params = params or SyntheticParams()
    out_dir = Path(out_dir)
    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    iterator = range(num)
    if show_progress:
        iterator = tqdm(iterator, desc=f"synthetic {split}", unit="galaxy")
    for index in iterator:
        galaxy = render_galaxy(galaxy_rng(seed, split, index), params)
        image_id = SPLIT_CODES[split] * 10_000_000 + index + 1  # stable, unique across splits
        file_name = f"{split}/sim_{split}_{index:06d}.png"
        Image.fromarray(galaxy.rgb).save(out_dir / "images" / file_name)
        images.append(
            {"id": image_id, "file_name": file_name, "width": params.image_size,
             "height": params.image_size, "psf_fwhm_px": galaxy.psf_fwhm_px,
             "pixel_scale": galaxy.pixel_scale, "centre_x": galaxy.centre[0],
             "centre_y": galaxy.centre[1]}
        )
        for clump in galaxy.clumps:
            box = clump_box(clump["x"], clump["y"], galaxy.psf_fwhm_px, params.image_size)
            if box is None:
                continue
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "bbox": box,
                 "area": box[2] * box[3], "iscrowd": 0, "category_id": 2 if clump["odd"] else 1,
                 "flux_r": clump["flux_r"], "flux_frac": clump["flux_frac"],
                 "distance_px": clump["distance_px"], "psf_fwhm_px": galaxy.psf_fwhm_px}
            )
    coco = {
        "info": {"description": "clump_d2 synthetic SDSS-like galaxies", "seed": seed,
                 "split": split, "generator": "clump_d2.data.synthetic"},
        "images": images, "annotations": annotations, "categories": CATEGORIES,
    }
    json_path = out_dir / "annotations" / f"{split}.json"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(coco))
    tmp.replace(json_path)
    logger.info("wrote %d galaxies, %d clumps to %s", len(images), len(annotations), json_path)
    return json_path


def make_dataset(out_dir, splits: Dict[str, int], seed: int = 0,
                 params: Optional[SyntheticParams] = None) -> Dict[str, Path]:
    """Write several splits (e.g. ``{"train": 600, "val": 150}``)."""
    return {split: make_split(out_dir, split, n, seed, params) for split, n in splits.items()}
