"""Adding clumps of known flux to images, in linear space: the primitives of injection-recovery
(:mod:`clump_d2.studies.injection`) and of training sets built on real host galaxies
(:mod:`clump_d2.sim.real_hosts`).

**Linear space.** Flux adds linearly, so clumps are added in flux units: FITS bands are fluxes
already; 8-bit PNG/JPEG colour images are *linearised* by inverting the Lupton et al. (2004)
asinh display stretch with softening ``Q`` (:class:`~clump_d2.data.stretch.DisplayStretch`),
exact for the SDSS-preset simulations (Q = 10) and an approximation for real survey JPEGs
(their stretch and JPEG compression are not known), and the stretch is re-applied after.

**Clumps** are noiseless Gaussian PSFs of the image's FWHM on top of the image's own noise:
SDSS images are sky-noise dominated at the clumps' surface brightness, so a clump gets the S/N
it would have had in that image.
"""
from __future__ import annotations

import math
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from clump_d2.baselines.classical import ClassicalParams, galaxy_mask
from clump_d2.data.fits_io import FitsReadOptions, fill_nonfinite, read_fits_bands
from clump_d2.data.image_io import read_display_image, reads_as_fits
from clump_d2.data.psf import gaussian_psf
from clump_d2.data.stretch import DisplayStretch
from clump_d2.data.stretch import stretch_bands
from clump_d2.structures import BOX_SIDE_PER_FWHM


def gaussian_psf_stamp(shape: Tuple[int, int], x: float, y: float, fwhm: float) -> np.ndarray:
    """Unit-flux Gaussian PSF centred on continuous position (x, y) over an image of
    ``shape`` (:func:`clump_d2.data.psf.gaussian_psf`; its sum is 1 well inside the image)."""
    h, w = shape
    return gaussian_psf(np.arange(w + 1), np.arange(h + 1), x, y, fwhm)


def host_properties(linear: np.ndarray, fwhm: float) -> Dict:
    """Segment, centre, sky level per channel, host flux per channel and R50 of a linear
    (H, W, C) image (or (C, H, W) bands transposed by the caller)."""
    lum = linear.mean(axis=2)
    mask, centre, _, sky_sigma = galaxy_mask(lum, fwhm, ClassicalParams())
    border = np.ones(lum.shape, bool)
    border[8:-8, 8:-8] = False
    sky = np.median(linear[border & ~mask], axis=0) if (border & ~mask).any() \
        else np.median(linear.reshape(-1, linear.shape[2]), axis=0)
    net = linear - sky[None, None, :]
    flux = net[mask].sum(axis=0)
    yy, xx = np.nonzero(mask)
    r = np.hypot(xx + 0.5 - centre[0] - 0.5, yy + 0.5 - centre[1] - 0.5)
    w = np.clip(net[mask].mean(axis=1), 0, None)
    order = np.argsort(r)
    cum = np.cumsum(w[order])
    r50 = float(r[order][np.searchsorted(cum, 0.5 * cum[-1])]) if cum[-1] > 0 else 10.0
    return {"mask": mask, "centre": (float(centre[0]) + 0.5, float(centre[1]) + 0.5),
            "sky": sky, "flux": flux, "r50": max(r50, fwhm), "sky_sigma": sky_sigma}


def inject(linear: np.ndarray, positions: Sequence[Tuple[float, float]],
           fluxes: Sequence[Sequence[float]], fwhm: "float | Sequence[float]") -> np.ndarray:
    """Add Gaussian clumps to a linear (H, W, C) image; ``fluxes[k]`` per channel. ``fwhm``:
    the PSF's (point-like clumps), or one FWHM per clump (resolved clumps: wider)."""
    out = np.array(linear, dtype=np.float64, copy=True)
    widths = [float(fwhm)] * len(positions) if np.ndim(fwhm) == 0 else list(fwhm)
    for (x, y), f, width in zip(positions, fluxes, widths):
        stamp = gaussian_psf_stamp(out.shape[:2], x, y, width)
        out += stamp[:, :, None] * np.asarray(f, dtype=np.float64)[None, None, :]
    return out


def choose_positions(rng: np.random.Generator, n: int, centre: Tuple[float, float], r50: float,
                     fwhm: float, shape: Tuple[int, int], avoid_xy: Sequence[Tuple[float, float]],
                     radius_r50: Tuple[float, float] = (0.3, 2.0), bulge_fwhm: float = 1.5,
                     sep_fwhm: float = 2.5, max_tries_per_clump: int = 200
                     ) -> List[Tuple[float, float, float]]:
    """Up to ``n`` positions ``(x, y, radius / r50)``: radius uniform in ``radius_r50`` x R50
    around ``centre``, angle uniform; at least ``bulge_fwhm`` FWHM from the centre and
    ``sep_fwhm`` FWHM from ``avoid_xy`` and from each other; the whole clump box inside the
    image. Fewer than ``n`` when the galaxy has no room left."""
    h, w = shape
    cx, cy = centre
    margin = BOX_SIDE_PER_FWHM * fwhm / 2 + 1
    chosen: List[Tuple[float, float, float]] = []
    for _ in range(max_tries_per_clump * n):
        if len(chosen) == n:
            break
        u = rng.uniform(*radius_r50)
        ang = rng.uniform(0, 2 * np.pi)
        x, y = cx + u * r50 * np.cos(ang), cy + u * r50 * np.sin(ang)
        if not (margin <= x <= w - margin and margin <= y <= h - margin):
            continue
        if math.hypot(x - cx, y - cy) < bulge_fwhm * fwhm:
            continue
        pts = list(avoid_xy) + [(p[0], p[1]) for p in chosen]
        if any(math.hypot(x - px, y - py) < sep_fwhm * fwhm for px, py in pts):
            continue
        chosen.append((x, y, u))
    return chosen


# --- reading images into linear space and back --------------------------------------------------

def load_linear(file_name: str, crop: Optional[Sequence[int]] = None, q: float = 10.0,
                fits_options=None, band_files: Optional[Dict[str, str]] = None
                ) -> Tuple[np.ndarray, str]:
    """A linear (H, W, C) image and its kind (``"display"`` or ``"fits"``).

    PNG/JPEG: RGB, linearised with :class:`DisplayStretch` (``q``). FITS: the bands of
    ``fits_options`` (:class:`~clump_d2.data.fits_io.FitsReadOptions`), NaN/inf filled, in
    flux units. ``crop = [x0, y0, w, h]`` is cut before anything else. Both refuse an image
    over ``fits_options.max_pixels`` (``INPUT.MAX_PIXELS``) before decoding it.
    """
    o = fits_options or FitsReadOptions()
    if reads_as_fits(file_name, band_files):
        bands = read_fits_bands(file_name, o.bands, band_files=band_files,
                                cube_bands=o.cube_bands, hdu=o.hdu, max_pixels=o.max_pixels)
        bands, _ = fill_nonfinite(bands, o.nan_fill, o.max_nonfinite_fraction,
                                  name=os.fspath(file_name))
        linear, kind = np.ascontiguousarray(bands.transpose(1, 2, 0), dtype=np.float64), "fits"
    else:
        # The network's reader: a 16-bit PNG scaled to 0..255 (float), not clipped at 255.
        rgb = read_display_image(file_name, "RGB", o.max_pixels)
        # Dither seeded by the file name, so a rerun gives the same numbers.
        seed = int.from_bytes(os.fspath(file_name).encode()[-8:].rjust(8, b"\0"), "little")
        linear = DisplayStretch(q).linearise(rgb, np.random.default_rng(seed))
        kind = "display"
    if crop:
        x0, y0, w, h = (int(round(float(v))) for v in crop)
        linear = linear[y0:y0 + h, x0:x0 + w]
    return linear, kind


def network_input_fn(kind: str, q: float = 10.0, fits_options=None
                     ) -> Callable[[np.ndarray, Dict], np.ndarray]:
    """Linear image -> what the detector sees: the 8-bit display (PNG/JPEG) or the FITS
    stretch of the data loader, both as float (H, W, C) in [0, 255]-like units."""
    if kind == "display":
        model = DisplayStretch(q)
        return lambda linear, im: model.display(linear).astype(np.float32)
    o = fits_options or FitsReadOptions()

    def fits_to_network(linear, im):
        img = stretch_bands(linear.transpose(2, 0, 1), o.stretch, o.percentiles, o.asinh_a,
                            o.lupton_q, o.lupton_stretch)
        return img * np.float32(o.output_scale)

    return fits_to_network
